/* Reading a data set file in a test: each helper fails the current test, with the library's
 * message, where the file or the array is not what it asks for. */
#ifndef XD_TESTS_DSREAD_H
#define XD_TESTS_DSREAD_H

#include "io/dataset.h"

/* The data set file at path, opened. */
io_dataset *tu_open_ds(const char *path);
/* Array name of ds, of element type t and ndim dimensions. */
const io_tensor *tu_need(const io_dataset *ds, const char *name, io_dtype t, int ndim);
/* String table name of ds. */
const io_strings *tu_need_str(const io_dataset *ds, const char *name);

#endif
