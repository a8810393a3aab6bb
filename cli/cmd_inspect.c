/* `xdistill inspect FILE`: says what any file the toolkit reads or writes holds.
 *
 * The format comes from the first bytes, never the name: dataset container, safetensors, NPY, PNG,
 * JPEG, IDX (plain or gzip). Each is opened with its own validating reader, so a corrupt file gets
 * that reader's one-line message (file, offset, reason) and exit status 1. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "io/dataset.h"
#include "io/dtype.h"
#include "io/idx.h"
#include "io/image.h"
#include "io/npy.h"
#include "io/safetensors.h"

typedef enum {
    FMT_UNKNOWN,
    FMT_DATASET,
    FMT_SAFETENSORS,
    FMT_NPY,
    FMT_IMAGE,
    FMT_IDX_GZ,
    FMT_IDX,
    FMT_COUNT
} file_format;

/* The IDX type codes 0x08..0x0E that io/idx.h reads. */
static int idx_type_code(unsigned char c)
{
    return c == 0x08 || c == 0x09 || c == 0x0B || c == 0x0C || c == 0x0D || c == 0x0E;
}

static file_format sniff(const unsigned char *h, size_t n, size_t file_size)
{
    if (n >= 8 && memcmp(h, "XDSET\0\0\0", 8) == 0) return FMT_DATASET;
    if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0) return FMT_NPY;
    if (io_image_sniff(h, n) != IO_IMAGE_UNKNOWN) return FMT_IMAGE;
    if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b) return FMT_IDX_GZ;
    if (n >= 9 && h[8] == '{') {
        uint64_t len = io_le_u64(h);
        if (len >= 2 && len <= file_size - 8) return FMT_SAFETENSORS;
    }
    if (n >= 4 && h[0] == 0 && h[1] == 0 && idx_type_code(h[2]) && h[3] >= 1 &&
        h[3] <= IO_IDX_MAX_DIMS)
        return FMT_IDX;
    return FMT_UNKNOWN;
}

static const char *const channel_names[5] = {"", "grey", "grey+alpha", "RGB", "RGBA"};

static xd_status show_image(const char *path, const unsigned char *h, size_t n, xd_err *e)
{
    io_image img = {0};
    xd_status s = io_image_read(path, NULL, &img, e);
    if (s) return s;
    size_t npx = (size_t)img.w * (size_t)img.h;
    printf("%s: %s image, %d x %d, %d channel%s (%s as decoded)\n", path,
           io_image_kind_name(io_image_sniff(h, n)), img.w, img.h, img.c, img.c == 1 ? "" : "s",
           img.c >= 1 && img.c <= 4 ? channel_names[img.c] : "?");
    for (int c = 0; c < img.c; c++) {
        unsigned lo = 255, hi = 0;
        double sum = 0.0;
        for (size_t i = 0; i < npx; i++) {
            unsigned v = img.px[i * (size_t)img.c + (size_t)c];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            sum += v;
        }
        printf("  channel %d: %u .. %u, mean %.2f\n", c, lo, hi, npx ? sum / (double)npx : 0.0);
    }
    io_image_free(&img);
    return XD_OK;
}

static xd_status show_idx(const char *path, int gz, xd_err *e)
{
    io_idx x;
    xd_status s = io_idx_read(path, 0, &x, e);
    if (s) return s;
    io_tensor t;
    int64_t shape[IO_IDX_MAX_DIMS];
    static const io_dtype types[IO_IDX_TYPE_COUNT] = {IO_U8, IO_I8, IO_I16, IO_I32, IO_F32, IO_F64};
    for (int d = 0; d < x.ndim; d++) shape[d] = x.dims[d];
    io_tensor_set(&t, path, types[x.type], x.ndim, shape, x.data);
    char shape_txt[128];
    io_shape_format(x.ndim, shape, shape_txt, sizeof shape_txt);
    printf("%s: IDX array%s, %s %s, %zu elements\n", path, gz ? " (gzip)" : "",
           io_idx_type_name(x.type), shape_txt, x.count);
    io_tensor_print_values(&t, stdout, "  ");
    io_idx_free(&x);
    return XD_OK;
}

int cmd_inspect(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: xdistill inspect FILE [--verify]\n\n"
               "Prints what FILE holds: a dataset container (metadata, sections), safetensors\n"
               "(metadata, tensors), NPY (dtype, shape), PNG or JPEG (size, channels) or IDX\n"
               "(type, dimensions), with value ranges. The format is recognised by its first\n"
               "bytes. A corrupt or unknown file gets one line naming the problem and exit 1.\n\n"
               "  --verify  for a dataset or safetensors file: check every section or tensor\n"
               "            against its stored checksum, one line each (ok, damaged); exit 1 when\n"
               "            one is damaged\n");
        return 0;
    }
    /* --verify before or after FILE */
    int verify = argc == 3 ? (strcmp(argv[1], "--verify") == 0 ? 1 : strcmp(argv[2], "--verify") == 0 ? 2 : 0) : 0;
    if (argc != 2 + (verify != 0)) return cli_usage_error("inspect", "needs exactly one FILE");
    const char *path = argv[verify == 1 ? 2 : 1];
    xd_err e;
    xd_err_clear(&e);
    FILE *f = fopen(path, "rb");
    if (!f) {
        xd_fail(&e, XD_EIO, "%s: cannot open: %s", path, strerror(errno));
        return cli_report("inspect", &e);
    }
    unsigned char head[16];
    size_t n = fread(head, 1, sizeof head, f);
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    fclose(f);
    xd_status s = XD_OK;
    switch (sniff(head, n, size > 0 ? (size_t)size : 0)) {
    case FMT_DATASET: {
        io_dataset *ds;
        s = io_dataset_open(path, &ds, &e);
        if (!s) {
            if (verify) s = io_dataset_verify(ds, stdout, &e);
            else io_dataset_describe(ds, stdout);
            io_dataset_close(ds);
        }
        break;
    }
    case FMT_SAFETENSORS: {
        io_st_file *st;
        s = verify ? io_st_open_unverified(path, &st, &e) : io_st_open(path, &st, &e);
        if (!s) {
            if (verify) s = io_st_verify(st, stdout, &e);
            else io_st_describe(st, stdout);
            io_st_close(st);
        }
        break;
    }
    case FMT_NPY: {
        io_npy a;
        s = io_npy_open(path, &a, &e);
        if (!s) io_npy_describe(&a, stdout);
        io_npy_close(&a);
        break;
    }
    case FMT_IMAGE:
        s = show_image(path, head, n, &e);
        break;
    case FMT_IDX_GZ:
        s = show_idx(path, 1, &e);
        break;
    case FMT_IDX:
        s = show_idx(path, 0, &e);
        break;
    case FMT_UNKNOWN:
    case FMT_COUNT:
        s = xd_fail(&e, XD_EFORMAT, "%s: %s", path,
                    n == 0 ? "empty file"
                           : "unknown format (not a dataset, safetensors, NPY, PNG, JPEG or IDX file)");
        break;
    }
    return s ? cli_report("inspect", &e) : 0;
}
