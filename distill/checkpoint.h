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
 * shapes), every value finite and every batch norm's running variance >= 0: checksums are
 * recomputed by whoever crafts a file, so the values themselves are checked before any is copied
 * into the model. */
#ifndef XD_DISTILL_CHECKPOINT_H
#define XD_DISTILL_CHECKPOINT_H

#include <stddef.h>

#include "core/status.h"
#include "io/dataset.h"
#include "distill/feed.h"
#include "io/dtype.h"
#include "nn/model.h"

/* Writes m to path atomically; meta (n_meta pairs, may be NULL) goes into __metadata__. A model
 * holding NaN or Inf is refused (XD_ENUM), so a checkpoint is always loadable. */
xd_status ckpt_save(const char *path, const nn_model *m, const io_kv *meta, size_t n_meta,
                    xd_err *e);

/* ckpt_save for a model trained on ds through its feed f (label: the run's label set), adding
 * what using the model outside the toolkit needs: "xdistill.classes", the JSON list of the class
 * names of its default head (the data set's names of label, or classes.mask for a segmentation
 * head; left out when the data set names none), and for an image feed "xdistill.images", the
 * data set's image size "HxWxC", which is what the recipe's data.augment starts from. */
xd_status ckpt_save_trained(const char *path, const nn_model *m, const io_kv *meta, size_t n_meta,
                            const feed *f, const io_dataset *ds, const char *label, xd_err *e);

/* An int8 checkpoint: a model whose layers run on integers (nn/quant.h, its engine attached) with
 * metadata "xdistill.quant" = "int8". Its tensors are those of a float checkpoint, except that
 * each integer layer's weight is I8 (the values -127..127, shape as the float weight) followed by
 * "NAME.weight_scale" (F32, one scale per output: weight = scale * value). The activations' scales
 * are their "NAME.range" entries (scale = range / 127, zero point 128 in the engine's uint8 codes;
 * `unsigned` ones range / 255, zero point 0). ckpt_load reads it back with the engine attached:
 * a scale or a range that is not a finite number > 0, a weight of -128 or a tensor of another
 * dtype is an error naming the file and the tensor. */
#define CKPT_META_QUANT "xdistill.quant"
/* The metadata key of the model's description (nn/model.h), which every checkpoint holds. */
#define CKPT_META_MODEL "xdistill.model"
#define CKPT_QUANT_INT8 "int8"
xd_status ckpt_save_int8(const char *path, const nn_model *m, const io_kv *meta, size_t n_meta,
                         xd_err *e);
/* ckpt_save_int8 with the metadata of the checkpoint `source` (m's float or fake-quant form)
 * that is not about the model itself: the recipe, the class names, the image size, ... */
xd_status ckpt_save_int8_like(const char *path, const nn_model *m, const char *source, xd_err *e);
/* ckpt_save likewise: a float model made from the checkpoint source (e.g. a smaller one). */
xd_status ckpt_save_like(const char *path, const nn_model *m, const char *source, xd_err *e);

/* Builds a model from the description stored in the file, for batches of up to max_batch, and
 * loads its values. A checkpoint of a later xdistill version (major.minor) is XD_EUNSUPPORTED.
 * On failure m is left empty (nothing to free). */
xd_status ckpt_load(const char *path, int max_batch, nn_model *m, xd_err *e);

/* Loads values into an existing model; the file must match it exactly. */
xd_status ckpt_load_into(const char *path, nn_model *m, xd_err *e);
/* Whether the p->n values src of model entry p (read from file) may be loaded: each finite; a
 * batch norm's running variance >= 0 (the layer divides by its square root: a negative one makes
 * its outputs NaN, and checksums do not stop a crafted file); with int8 (an int8 checkpoint's
 * float entries) a moving range > 0, as the engine's scales come from the ranges. XD_ENUM names
 * the file, the entry, the value and the rule (XD_EFORMAT with int8, as that loader's checks). */
xd_status ckpt_param_values_ok(const char *file, const nn_param *p, const float *src, int int8,
                               xd_err *e);
/* The values a run starts from (a recipe's `init:`): every weight of m from the float (or
 * fake-quant) checkpoint path, names, shapes and dtype as m's; state entries the file lacks (a
 * fake-quant range, a pruning mask) keep m's. An int8 checkpoint, a missing weight, a
 * non-finite value or a negative running variance is an error naming the file and the tensor. */
xd_status ckpt_load_init(const char *path, nn_model *m, xd_err *e);
/* ckpt_load_init's checks alone, copying no value (m may be only planned). */
xd_status ckpt_check_init(const char *path, const nn_model *m, xd_err *e);

/* The preprocessing a checkpoint's model was trained with: the image options and text settings
 * (data.augment, data.text) of the recipe stored in it, as new strings; both NULL when the file
 * holds no recipe (then the caller's own apply). Spatial augmentation words are included; they
 * only act when a feed is asked to augment. */
xd_status ckpt_preprocessing(const char *path, char **augment, char **text, xd_err *e);

/* The label set the checkpoint's model was trained on (the stored recipe's data.label, "label"
 * or "label.NAME") as a new string; "label" when the file holds no recipe. */
xd_status ckpt_trained_label(const char *path, char **label, xd_err *e);

/* The metadata key of the class names of a checkpoint's default head: a JSON list of strings,
 * in the order of its outputs. ckpt_save_trained writes it when the data set names its classes;
 * older checkpoints have none. */
#define CKPT_META_CLASSES "xdistill.classes"

/* n class names as the JSON list text CKPT_META_CLASSES holds (a new string; NULL when out of
 * memory). */
char *ckpt_classes_json(const char *const *names, size_t n);

/* The class names ckpt_save_trained stored for m (path's model): a NULL-terminated array of a
 * new string per class of its default head (a map's channels, else its outputs), free with
 * ckpt_class_names_free; *names NULL when the file holds none (older checkpoints). XD_EFORMAT,
 * naming the file, when they are not a list of as many strings. */
xd_status ckpt_class_names(const char *path, const nn_model *m, char ***names, xd_err *e);
void ckpt_class_names_free(char **names);
/* The names of K classes that have none stored, their numbers: "0", "1", ... "K-1", NULL-
 * terminated (free with ckpt_class_names_free); NULL when out of memory. */
char **ckpt_class_numbers(int K);
/* The number of classes of m's head node: a map's channels, else its outputs. */
int ckpt_head_classes(const nn_model *m, int head);
/* The class names of m's head node (an early exit, say): the stored ones (ckpt_class_names, *names
 * NULL when none are stored) when it has as many classes as the default head, whose names they
 * are, else its class numbers. */
xd_status ckpt_head_class_names(const char *path, const nn_model *m, int head, char ***names,
                                xd_err *e);

/* The model's classes (path's stored names, m its model) for the data set's label set `label`:
 * *map (a new array of the data set's class count) gives each data set class the model output of
 * the same name, NULL when both name their classes in the same order or either names none (then
 * the counts are what ckpt_check_fit compares). A data set class the model lacks is an error
 * listing both sets. */
xd_status ckpt_class_map(const char *path, const nn_model *m, const io_dataset *ds,
                         const char *label, int32_t **map, xd_err *e);

/* ckpt_check_fit's check of view image alone: split's images are m's input height x width and
 * channels, unless augment resizes (size=) or converts the channels (channels=) explicitly
 * (XD_ESHAPE naming both); what reads no labels (a calibration) checks this much. */
xd_status ckpt_check_images(const char *path, const nn_model *m, const io_dataset *ds,
                            const char *split, const char *augment, xd_err *e);

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

/* The size of the images the model was trained on ("xdistill.images"); 0, 0, 0 when the file does
 * not say (older checkpoints). */
xd_status ckpt_trained_images(const char *path, int *h, int *w, int *c, xd_err *e);

/* Reads one metadata value of a checkpoint into a new string (NULL when absent). */
xd_status ckpt_read_meta(const char *path, const char *key, char **value, xd_err *e);

#endif
