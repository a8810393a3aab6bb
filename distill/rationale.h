/* Rationales (distilling step by step, Hsieh et al. 2023): the words of a large model's
 * explanation of a label, which a small decoder (nn/seqdec.h) learns to produce from the student's
 * representation of the example, next to the label.
 *
 * Words: a rationale is normalised and cut into words as the text pipeline does
 * (modalities/text: NFKC, case folded; words split at white space and punctuation, one token per
 * character in scripts written without spaces), so any language and script works. The
 * vocabulary holds the words of the training rationales a run may see (at most max_words, the
 * most frequent first); ids are NN_SEQ_SPECIALS + its index, and a word outside it is NN_SEQ_UNK.
 *
 * The decoder file: a safetensors file of the decoder's tensors (nn_seq_tensor_names) with
 * metadata "format" = "xdistill", "xdistill.rationale" = "IN HIDDEN EMBED VOCAB MAX_LEN",
 * "xdistill.rationale.tap" (the node of the student whose output it reads) and
 * "xdistill.rationale.vocab" (the vocabulary in the text vocabulary file format). The student's
 * checkpoint is unchanged: the label path deploys without it. */
#ifndef XD_DISTILL_RATIONALE_H
#define XD_DISTILL_RATIONALE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "modalities/text/config.h"
#include "modalities/text/vocab.h"
#include "nn/seqdec.h"

typedef struct {
    txt_config cfg;
    txt_vocab v;
} rat_vocab;

/* The words of texts[i] for every i with use[i] (use NULL: all), at most max_words. */
xd_status rat_vocab_build(const char *const *texts, size_t n, const uint8_t *use, int max_words,
                          rat_vocab *rv, xd_err *e);
void rat_vocab_free(rat_vocab *rv);
/* Decoder vocabulary size: the words and the special tokens. */
int rat_vocab_size(const rat_vocab *rv);
/* The ids of text's first max words into ids; returns how many (*n). */
xd_status rat_encode(const rat_vocab *rv, const char *text, int32_t *ids, int max, int *n,
                     xd_err *e);
/* ids[0, n) as words joined by spaces (an unknown word as "<unk>") into buf, cut to cap. */
void rat_decode(const rat_vocab *rv, const int32_t *ids, int n, char *buf, size_t cap);

/* The decoder file (see above). */
xd_status rat_save(const char *path, const nn_seqdec *d, const rat_vocab *rv, const char *tap,
                   xd_err *e);
/* Loads a decoder file for batches of up to max_batch: the decoder, its vocabulary and the tap
 * (*tap a new string). Every tensor must be the decoder's the metadata describes. The decoder is
 * made for greedy decoding alone (nn_seqdec_init_greedy: no training buffers): nn_seqdec_greedy,
 * never nn_seqdec_forward or backward. */
xd_status rat_load(const char *path, int max_batch, nn_seqdec *d, rat_vocab *rv, char **tap,
                   xd_err *e);

#endif
