/* What dataset.c (the reader) shares with dataset_write.c (the writer): the file's magic, the
 * metadata section's name, the header and table entry layout, and the table checksum. Not part of
 * the dataset's interface. */
#ifndef XD_IO_DATASET_INTERNAL_H
#define XD_IO_DATASET_INTERNAL_H

#include <assert.h>

#include "io/dataset.h"

extern const char ds_magic[8];
extern const char ds_meta_name[];

enum {
    DS_HEADER = 32,   /* magic, version, count, file size, table checksum, reserved */
    DS_TABLE_SUM = 24, /* offset of the table checksum (version 2) */
    DS_ENTRY = 160,   /* one table entry */
    DS_NAME = 64,     /* name field, NUL-padded */
    DS_ALIGN = 64,    /* every section starts at a multiple of this */
    DS_DEFAULT_SECTIONS = 64,
};
/* entry field offsets */
enum { E_KIND = 64, E_DTYPE = 68, E_NDIM = 72, E_SUM = 76, E_SHAPE = 80, E_OFFSET = 144, E_LENGTH = 152 };
static_assert(E_LENGTH + 8 == DS_ENTRY, "table entry layout must add up to DS_ENTRY");
static_assert(E_SHAPE + 8 * IO_MAX_DIMS == E_OFFSET, "shape must hold IO_MAX_DIMS dimensions");

/* The version-2 table checksum of a file's first table_end bytes: the header before the checksum,
 * then the table. */
static inline uint32_t ds_table_sum(const unsigned char *b, size_t table_end)
{
    return io_crc32(io_crc32(0, b, DS_TABLE_SUM), b + DS_HEADER, table_end - DS_HEADER);
}

#endif
