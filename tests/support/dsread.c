/* Reading a data set file in a test (see dsread.h). */
#include "tests/support/dsread.h"

#include "tests/support/testutil.h"

io_dataset *tu_open_ds(const char *path)
{
    io_dataset *ds = NULL;
    xd_err e;
    if (io_dataset_open(path, &ds, &e) != XD_OK) fail_msg("%s", e.msg);
    return ds;
}

const io_tensor *tu_need(const io_dataset *ds, const char *name, io_dtype t, int ndim)
{
    const io_tensor *x = NULL;
    xd_err e;
    if (io_dataset_require(ds, name, t, ndim, &x, &e) != XD_OK) fail_msg("%s", e.msg);
    return x;
}

const io_strings *tu_need_str(const io_dataset *ds, const char *name)
{
    const io_strings *s = NULL;
    xd_err e;
    if (io_dataset_require_strings(ds, name, &s, &e) != XD_OK) fail_msg("%s", e.msg);
    return s;
}
