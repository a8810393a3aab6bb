/* Reader for tests/golden/kd_golden_seed7.txt and zoo_golden_seed7.txt (losses and gradients
 * computed by PyTorch).
 *
 * Values are addressed by (section, key):
 *   ("INPUTS", "s" | "t" | "fs" | "ft")  the float32 inputs, exact from their hex-float lines
 *   ("INPUTS", "y" | "cos_target")       integer vectors, as floats
 *   ("CE" | "KD_T1" | ... , "loss32" | "loss64" | "grad32" | "grad64")
 *   ("FSP", "grad32.1" | "grad64.1")    the gradient of a loss's second student tensor
 *   ("STABILITY", "CE" | "dCE/ds" | "KD_T4" | "dKD_T4/ds") */
#ifndef XD_TEST_GOLDEN_H
#define XD_TEST_GOLDEN_H

typedef struct golden golden;

/* Fails the test when the file is missing or malformed. */
golden *golden_load(const char *path);
void golden_free(golden *g);
/* Copies the values into out (at most max); fails the test if the entry is missing or longer. */
int golden_get(const golden *g, const char *section, const char *key, float *out, int max);
double golden_scalar(const golden *g, const char *section, const char *key);

#endif
