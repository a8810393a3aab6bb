/* Feeds: one view of a dataset split turned into model input batches.
 *
 * A view is "image" (the split's u8 images, resized/normalised/augmented to the model's input
 * through modalities/image) or "text.LANG" (that language's texts, tokenised once when the feed
 * opens into (N, L) ids through modalities/text). "text.*" keeps every language of the data set
 * and gives each example one of them per epoch, drawn from (seed, example, epoch), so a model sees
 * all languages over a run and the draw never depends on threads. A teacher and a student read
 * different views of the same example indices, which is what makes a pair. */
#ifndef XD_DISTILL_FEED_H
#define XD_DISTILL_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/dataset.h"
#include "modalities/image/augment.h"
#include "modalities/text/tokenizer.h"
#include "nn/model.h"

typedef enum { FEED_IMAGE, FEED_TEXT, FEED_KIND_COUNT } feed_kind;

typedef struct {
    feed_kind kind;
    size_t n;              /* examples in the split */
    size_t in_size;        /* floats (image) or ids (text) per example */
    /* image */
    const uint8_t *images; /* (n, h, w, c), memory-mapped */
    int h, w, c;
    img_batcher *batcher;
    /* text */
    int32_t *ids;          /* (n_langs, n, L), -1 padded */
    uint8_t *present;      /* (n_langs, n): 1 where the text is not empty */
    int n_langs, L;
} feed;

/* Opens view of split for the model's input shape. augment: img_opts words ("" = none; size,
 * crop and channels come from the model); text: txt_config words (max_ids comes from the model's
 * `tokens`). Errors name the data set file, the section and the problem. */
xd_status feed_open(feed *f, const io_dataset *ds, const char *split, const char *view,
                    const nn_model *m, const char *augment, const char *text, xd_err *e);
void feed_close(feed *f);

/* The image options an image feed uses for model m: augment words over defaults without crops
 * or flips, then the model's input size, crop and channels. For callers that batch their own
 * images (windows of a scene) exactly as a feed would. */
xd_status feed_image_opts(img_opts *o, const char *augment, const nn_model *m, xd_err *e);

/* The tokenizer a text feed uses for model m: text (txt_config words) with max_ids = m's
 * `tokens`; XD_ESHAPE when an embedding table of m is smaller than the ids it gives. For callers
 * that encode their own texts exactly as a feed would. */
xd_status feed_text_tokenizer(txt_tokenizer *tok, const char *text, const nn_model *m, xd_err *e);

/* Fills out with the inputs of examples idx[0..count): float (count, h, w, c) or int32
 * (count, L). augment = 1 draws augmentations / languages from (seed, example, epoch); 0 gives
 * the centre crop and the first present language. */
xd_status feed_fill(feed *f, const uint32_t *idx, int count, int augment, uint64_t seed,
                    uint64_t epoch, void *out, xd_err *e);

/* A text feed's rows in one language: ids of examples idx[0..count) in language lang (an index
 * into the data set's languages; 0 for a text.LANG feed), present (count) set to 1 where the
 * example has a text in it (the row is empty otherwise). For teachers that average over every
 * language, and evaluation over every (example, language) pair. */
xd_status feed_fill_lang(feed *f, const uint32_t *idx, int count, int lang, int32_t *out,
                         uint8_t *present, xd_err *e);

/* Bytes of one example's input (for sizing batch buffers). */
size_t feed_example_bytes(const feed *f);

#endif
