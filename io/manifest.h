/* Manifests: a user's own image-text pairs with a class label, as TSV or JSONL.
 *
 * TSV: the first non-empty line is a header naming the columns, tab-separated. The columns
 * image_path, text and label are required and may come in any order; other columns are allowed and
 * ignored. Then one example per line with exactly as many fields as the header. Fields are taken
 * literally (no quoting, so they cannot hold a tab or a line break). Empty lines are skipped, CRLF
 * line ends and a UTF-8 byte-order mark at the start are tolerated.
 *
 * JSONL: one JSON object per non-empty line with the keys "image" (string), "text" (string) and
 * "label"; other keys are ignored.
 *
 * Labels. TSV: if every label is a non-negative integer (decimal digits only), the labels are class
 * ids, which must be 0..K-1 with every id used by some example (an id past a gap is an error, never
 * a class without examples), and the class names are their decimal spellings "0".."K-1";
 * otherwise every label is a class name: the classes are the distinct names in byte order
 * (strcmp), ids 0, 1, ... in that order, so the ids do not depend on the order of the rows. In a
 * file of integer ids, a label that looks like a number but is not an id (-1, 2.5, 1e3, or an id
 * of IO_MANIFEST_MAX_CLASSES or more) is an error, not a name. JSONL: a JSON integer >= 0 is an
 * id, a JSON string is a name (even "7"); one file uses one kind, mixing them is an error. At most
 * IO_MANIFEST_MAX_CLASSES classes; a file without examples is an error. A label is read in one
 * spelling: NFC, invisible characters dropped, each run of white space one space and none at the
 * ends (modalities/text/normalize.h, without case folding or compatibility forms), so that a name
 * typed composed or decomposed, or with a stray space, is one class.
 *
 * Image paths that are not absolute are resolved against the manifest's folder, and each image must
 * exist as a regular file (it is not decoded here). Every field must be valid UTF-8; the image path
 * and the label must not be empty, nor a label blank (nothing but Unicode white space, txt_is_blank).
 * Any problem gives one error "FILE:LINE: column NAME: reason". */
#ifndef XD_IO_MANIFEST_H
#define XD_IO_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define IO_MANIFEST_MAX_CLASSES 100000

typedef struct {
    size_t max_bytes; /* whole file; default 1 GiB */
    size_t max_line;  /* bytes per line, line end excluded; default 64 KiB */
    size_t max_rows;  /* examples; default 10 million */
} io_manifest_limits;

typedef struct {
    size_t n;
    char **paths;    /* (n) image paths, resolved */
    char **texts;    /* (n) */
    int32_t *labels; /* (n) class ids in [0, n_classes) */
    size_t n_classes;
    char **class_names;   /* (n_classes) */
    int labels_are_names; /* 1 if labels were class names, 0 if integer ids */
    char **rationales;    /* (n) rationale records only (paths is then NULL), else NULL */
    size_t skipped;       /* rationale records with skip_bad: bad lines left out */
    char *first_skipped;  /* the first one's message, or NULL */
} io_manifest;

/* A classes file: one class name per line, in the order of their ids; a UTF-8 byte-order mark and
 * CRLF line ends are tolerated, names are spelled as labels are (NFC, invisible characters
 * dropped, white space runs one space, none at the ends). Invalid UTF-8, an empty or blank line, a
 * name given twice (in any spelling), or no names at all are errors "FILE:LINE: reason". */
typedef struct {
    char *path;
    size_t n;
    char **names; /* (n) */
} io_manifest_classes;

xd_status io_manifest_classes_read(const char *path, io_manifest_classes *c, xd_err *e);
void io_manifest_classes_free(io_manifest_classes *c);

/* Default limits, for filling in a few fields of your own. */
io_manifest_limits io_manifest_default_limits(void);

/* Reads a manifest; the format comes from the name's ending (.tsv or .jsonl). lim NULL = default.
 * The caller frees m with io_manifest_free (also safe after a failure). */
xd_status io_manifest_read(const char *path, const io_manifest_limits *lim, io_manifest *m,
                           xd_err *e);
/* The same with the classes of a classes file (NULL: as io_manifest_read): they are its names in
 * its order, classes without examples included, and every label must be one of them: TSV labels
 * and JSONL strings are names (even "7"), JSONL integers are ids below its count. A label that is
 * not is an error "FILE:LINE: column label: 'X' is not a class of CLASSES". */
xd_status io_manifest_read_classes(const char *path, const io_manifest_limits *lim,
                                   const io_manifest_classes *classes, io_manifest *m, xd_err *e);
xd_status io_manifest_read_tsv(const char *path, const io_manifest_limits *lim, io_manifest *m,
                               xd_err *e);
xd_status io_manifest_read_jsonl(const char *path, const io_manifest_limits *lim, io_manifest *m,
                                 xd_err *e);

/* Rationale records, as a large model's answers come: JSONL, one object per non-empty line with
 * "input" (a string, not blank), "label" (as a manifest's JSONL label) and "rationale" (a string,
 * not blank: the model's explanation of the label); other keys are ignored. The same reader as
 * a manifest's: limits, UTF-8, labels and classes file alike, the input in texts and the
 * rationale in rationales. A bad record (invalid UTF-8 or JSON, a missing key, a wrong type, a
 * blank input or rationale, a bad label) is an error "FILE:LINE: [column KEY: ]reason"; with
 * skip_bad it is left out instead, counted in skipped with the first message kept. */
xd_status io_manifest_read_rationales(const char *path, const io_manifest_limits *lim,
                                      const io_manifest_classes *classes, int skip_bad,
                                      io_manifest *m, xd_err *e);

void io_manifest_free(io_manifest *m);

/* The check of every manifest line, for other text read a line at a time (predict's standard
 * input): XD_OK, or XD_EFORMAT "WHERE:LINE: invalid UTF-8 at byte N of the line (0xXX)" at the
 * first byte that is not valid UTF-8. A NUL byte is one (the text would end there); only the bad
 * byte's value is quoted, never the line. */
xd_status io_manifest_check_line(const char *where, size_t line, const char *s, size_t n,
                                 xd_err *e);

#endif
