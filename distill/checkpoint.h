/* Model checkpoints as safetensors files.
 *
 * A checkpoint holds every parameter and state entry of a model as an F32 tensor named like
 * "conv1.weight" (shapes as in nn/model.h: conv weights are (OC, KH, KW, C), channels last), and
 * metadata strings: "format" = "xdistill", "xdistill.version", "xdistill.model" (the model's
 * text description, enough to rebuild it) plus whatever the caller adds (the recipe, the epoch,
 * the metrics). Python's safetensors or a plain json+numpy reader loads it unchanged.
 *
 * Loading never trusts the file: the safetensors layer validates the header and offsets and
 * verifies the tensors' checksums, then the tensors must be exactly the model's (names, dtype,
 * shapes) and every value finite. */
#ifndef XD_DISTILL_CHECKPOINT_H
#define XD_DISTILL_CHECKPOINT_H

#include <stddef.h>

#include "core/status.h"
#include "io/dataset.h"
#include "io/dtype.h"
#include "nn/model.h"

/* Writes m to path atomically; meta (n_meta pairs, may be NULL) goes into __metadata__. A model
 * holding NaN or Inf is refused (XD_ENUM), so a checkpoint is always loadable. */
xd_status ckpt_save(const char *path, const nn_model *m, const io_kv *meta, size_t n_meta,
                    xd_err *e);

/* Builds a model from the description stored in the file, for batches of up to max_batch, and
 * loads its values. On failure m is left empty (nothing to free). */
xd_status ckpt_load(const char *path, int max_batch, nn_model *m, xd_err *e);

/* Loads values into an existing model; the file must match it exactly. */
xd_status ckpt_load_into(const char *path, nn_model *m, xd_err *e);

/* The preprocessing a checkpoint's model was trained with: the image options and text settings
 * (data.augment, data.text) of the recipe stored in it, as new strings; both NULL when the file
 * holds no recipe (then the caller's own apply). Spatial augmentation words are included; they
 * only act when a feed is asked to augment. */
xd_status ckpt_preprocessing(const char *path, char **augment, char **text, xd_err *e);

/* The label set the checkpoint's model was trained on (the stored recipe's data.label, "label"
 * or "label.NAME") as a new string; "label" when the file holds no recipe. */
xd_status ckpt_trained_label(const char *path, char **label, xd_err *e);

/* The metadata key of the class names of a checkpoint's label set: a JSON array of strings, in
 * the order of the default head's outputs. Written at save time when the data set names its
 * classes; older checkpoints have none. */
#define CKPT_META_CLASSES "xdistill.classes"

/* n class names as the JSON array text CKPT_META_CLASSES holds (a new string). */
char *ckpt_classes_json(const char *const *names, size_t n);
/* The class names path stores: *names a new array of n new strings (ckpt_classes_free), NULL and
 * 0 when it stores none. Anything but a JSON array of strings is an error naming the file. */
xd_status ckpt_read_classes(const char *path, char ***names, size_t *n, xd_err *e);
void ckpt_classes_free(char **names, size_t n);

/* The model's classes (path's stored names, m its model) for the data set's label set `label`:
 * *map (a new array of the data set's class count) gives each data set class the model output of
 * the same name, NULL when both name their classes in the same order or either names none (then
 * the counts are what ckpt_check_fit compares). A data set class the model lacks is an error
 * listing both sets. */
xd_status ckpt_class_map(const char *path, const nn_model *m, const io_dataset *ds,
                         const char *label, int32_t **map, xd_err *e);

/* Whether the checkpoint's model m (from path) fits what it is about to read: split of ds
 * through view, with the image option words augment (the preprocessing its feed will use):
 *  - view image: the images are the model's input height x width and channels, unless augment
 *    resizes (size=) or converts the channels (channels=) explicitly;
 *  - a default head that is a map (H, W, C) is a segmentation model: the split needs S/mask of
 *    H x W and classes.mask of C classes;
 *  - any other head is a classifier: when the data set names the classes of label (`classes`,
 *    `classes.NAME`), every one is a class the checkpoint names (ckpt_class_map), or, for a
 *    checkpoint without names, the head has one output per class (label NULL: not checked).
 * Failing checks name the checkpoint, the data set and both values (XD_ESHAPE). */
xd_status ckpt_check_fit(const char *path, const nn_model *m, const io_dataset *ds,
                         const char *split, const char *view, const char *augment,
                         const char *label, xd_err *e);

/* Reads one metadata value of a checkpoint into a new string (NULL when absent). */
xd_status ckpt_read_meta(const char *path, const char *key, char **value, xd_err *e);

#endif
