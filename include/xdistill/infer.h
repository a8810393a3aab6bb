/* The inference API of libxdistill: a trained checkpoint used from any C program.
 *
 * A model comes from a checkpoint (`xdistill train` writes them: best.safetensors, ...). It reads
 * either images or texts, which a batch turns into its input the way its training data was made:
 *   - an image (a PNG or JPEG file, or 8-bit pixels in memory) is composited over white, converted
 *     to the channels of the training images, centre-cropped to a square when those were square,
 *     resized to their size (area averaging when shrinking, bilinear when growing), then resized,
 *     centre-cropped and normalised as the recipe stored in the checkpoint says (data.augment);
 *   - a text (UTF-8) is tokenised with the recipe's text settings (data.text).
 * A classifier gives one probability per class (softmax of its head); a segmentation model one
 * per class at every position of its output map.
 *
 * Errors: every function that can fail returns a status and fills an xdistill_error (when not
 * NULL) with one line naming the file and the problem. Nothing prints, nothing exits.
 * A NULL pointer where a function needs one (a model, batch, path, name, text, pixels or
 * buffer; err may always be NULL) is XDISTILL_EARG with a message naming the argument; the
 * functions without a status give their stated failure value instead: xdistill_batch_new and
 * xdistill_class_name NULL, xdistill_rationale -1 and xdistill_top 0; given no model,
 * xdistill_max_batch, xdistill_num_classes and xdistill_outputs give 0, xdistill_map_size and
 * xdistill_batch_image_size (no batch) 0 and 0, xdistill_reads XDISTILL_READS_IMAGES and
 * xdistill_task_of XDISTILL_CLASSIFY; their NULL height or width pointers are skipped.
 *
 * Threads: predictions run in parallel inside (OpenMP; OMP_NUM_THREADS sets the count; one of
 * under some 20 MFLOP, such as one image through a small CNN, on one thread). A model
 * and its batches serve one xdistill_predict at a time; different slots of a batch may be filled
 * from different threads at once. All types are opaque: use them through these functions only. */
#ifndef XDISTILL_INFER_H
#define XDISTILL_INFER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    XDISTILL_OK = 0,
    XDISTILL_EIO,          /* a file cannot be opened, read or written */
    XDISTILL_EFORMAT,      /* a file is malformed: not a checkpoint, an image that does not decode */
    XDISTILL_EARG,         /* a bad argument */
    XDISTILL_ESHAPE,       /* an input that does not fit the model (a text for an image model) */
    XDISTILL_ENUM,         /* a non-finite value */
    XDISTILL_ENOMEM,       /* out of memory */
    XDISTILL_EUNSUPPORTED, /* valid, but not handled by this build */
} xdistill_status;

#define XDISTILL_ERROR_LEN 512
typedef struct {
    xdistill_status code;
    /* one line, no line break: a control character of a caller's path or name is written as
     * \n, \r, \t or \xNN (a message too long is cut before such an escape) */
    char message[XDISTILL_ERROR_LEN];
} xdistill_error;

typedef enum { XDISTILL_READS_IMAGES, XDISTILL_READS_TEXTS } xdistill_input_kind;
typedef enum { XDISTILL_CLASSIFY, XDISTILL_SEGMENT } xdistill_task;

typedef struct xdistill_model xdistill_model; /* a loaded checkpoint */
typedef struct xdistill_batch xdistill_batch; /* prepared inputs of one prediction */

/* The library's version, e.g. "0.1.0". */
const char *xdistill_version(void);

/* Loads the checkpoint at path for batches of up to max_batch inputs (1..65536). The file's
 * checksums, model and values are checked; *out is NULL on failure. The weights are packed once
 * for the matrix kernel (a second copy of them in memory), so no prediction repacks them. */
xdistill_status xdistill_load(const char *path, int max_batch, xdistill_model **out,
                              xdistill_error *err);
void xdistill_free(xdistill_model *m); /* NULL is fine */

/* Makes m's predictions those of its head `name` (an early exit of a model with several heads),
 * running only the layers that head reads. Its class names are the stored ones when it has as
 * many classes as the default head, else class numbers. A name that is no head is
 * XDISTILL_EARG naming the heads there are. */
xdistill_status xdistill_use_exit(xdistill_model *m, const char *name, xdistill_error *err);

xdistill_input_kind xdistill_reads(const xdistill_model *m);
xdistill_task xdistill_task_of(const xdistill_model *m);
int xdistill_max_batch(const xdistill_model *m);
int xdistill_num_classes(const xdistill_model *m);
/* Class k's name as the training data named it; for checkpoints that do not store names (those
 * of earlier versions), its number ("0", "1", ...). NULL when k is out of range. */
const char *xdistill_class_name(const xdistill_model *m, int k);
/* The output map's height and width (1 and 1 for a classifier). */
void xdistill_map_size(const xdistill_model *m, int *height, int *width);
/* Floats xdistill_predict writes per input: height * width * classes. */
size_t xdistill_outputs(const xdistill_model *m);

/* A batch of max_batch slots for m (which must outlive it); NULL when out of memory. Every slot
 * starts blank: until filled it holds the input a failed fill leaves (an image of zero bytes
 * and no size, a text of no token), which predicts the same every time. */
xdistill_batch *xdistill_batch_new(const xdistill_model *m);
void xdistill_batch_free(xdistill_batch *b); /* NULL is fine */

/* Fill slot (0 <= slot < max batch) with an image file, PNG or JPEG (told apart by their bytes),
 * of any size up to 16384 pixels a side: a larger one (the decoders read up to 32768) is
 * XDISTILL_EUNSUPPORTED. On failure the slot holds a blank input and err names the file. */
xdistill_status xdistill_batch_set_image_file(xdistill_batch *b, int slot, const char *path,
                                              xdistill_error *err);
/* The same from 8-bit pixels in memory: height x width x channels, row-major, interleaved,
 * channels 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA); name stands for them in errors.
 * Sides of 1 to 16384 pixels; a larger one is XDISTILL_EUNSUPPORTED. */
xdistill_status xdistill_batch_set_image(xdistill_batch *b, int slot, const unsigned char *pixels,
                                         int height, int width, int channels, const char *name,
                                         xdistill_error *err);
/* Fill slot with a UTF-8 text of len bytes (a text model only); name stands for it in errors. */
xdistill_status xdistill_batch_set_text(xdistill_batch *b, int slot, const char *text, size_t len,
                                        const char *name, xdistill_error *err);

/* Runs m on slots 0..count-1 of b: probs (count, xdistill_outputs(m)), each position's class
 * probabilities summing to 1. A slot never filled, or whose last fill failed, is predicted as
 * the blank input it holds (xdistill_batch_new). A model output that is not finite (weights whose products overflow
 * float) gives no probabilities but XDISTILL_ENUM, naming the checkpoint and the input by the
 * name its slot was filled with. */
xdistill_status xdistill_predict(xdistill_model *m, const xdistill_batch *b, int count,
                                 float *probs, xdistill_error *err);

/* Adds a rationale decoder (a training run's best.rationale.safetensors or
 * last.rationale.safetensors, beside the checkpoint of the same name): each prediction then also
 * decodes, greedily, the rationale of every input from the node of m the decoder reads. Call it
 * after xdistill_use_exit. A file that is no decoder, or one whose node m lacks or gives another
 * width, is an error. */
xdistill_status xdistill_use_rationale(xdistill_model *m, const char *path, xdistill_error *err);
/* The last prediction's rationale of slot: its words joined by spaces into buf (cut to cap).
 * Returns its word count, or -1 when m has no decoder or slot is out of range. */
int xdistill_rationale(const xdistill_model *m, int slot, char *buf, size_t cap);

/* The height and width of the image last set in slot, as given (before any preprocessing); 0 and
 * 0 for a slot without one (never set, failed, a text model's). */
void xdistill_batch_image_size(const xdistill_batch *b, int slot, int *height, int *width);

/* A segmentation model's mask of one input at its image's own size: probs are that input's
 * probabilities (xdistill_outputs floats from xdistill_predict on slot of b), mask receives
 * height x width class numbers (xdistill_batch_image_size), row-major. Each pixel takes the most
 * probable class of the output position it falls on (nearest neighbour) in the part of the image
 * the model saw (the centre square when its training images were square; pixels outside it take
 * the nearest position's class). Models of more than 256 classes: XDISTILL_EUNSUPPORTED. */
xdistill_status xdistill_mask(const xdistill_batch *b, int slot, const float *probs,
                              unsigned char *mask, xdistill_error *err);

/* The k most probable of n classes (k <= n): classes[0..k) in order of falling probability, ties
 * to the lower class; a NaN probability comes after every number (NaNs in class order). Returns
 * k, or 0 on bad arguments. */
int xdistill_top(const float *probs, int n, int k, int *classes);

#ifdef __cplusplus
}
#endif

#endif
