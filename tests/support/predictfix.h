/* The predict tests' fixtures (test_predict, test_predict_checks): the tiny data set, an image
 * and a text model trained on it once per test program with the program itself, and test images
 * as PNG files. */
#ifndef XD_TESTS_PREDICTFIX_H
#define XD_TESTS_PREDICTFIX_H

/* How many test images pf_setup writes: img0.png ... */
#define PF_IMAGES 12

/* toy.xds (tests/support/tinyset.h), the runs img/ (an MLP with a batch norm named bn) and txt/
 * (a bag of words), and the first PF_IMAGES test images as img0.png, ...; made once, fails the
 * test on any error. */
void pf_setup(void);

#endif
