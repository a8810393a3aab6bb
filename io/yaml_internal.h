/* What yaml.c shares with yaml_get.c: the longest path kept for messages, new nodes and mapping
 * pairs, a key's path and position for messages, and parsing text into a tree (an override's
 * value is parsed as YAML). Not part of the YAML interface. */
#ifndef XD_IO_YAML_INTERNAL_H
#define XD_IO_YAML_INTERNAL_H

#include <stddef.h>

#include "io/yaml.h"

/* Longest dotted path kept for messages. */
#define PATH_MAX_LEN 256

io_yaml_node *io_yaml_node_new(io_yaml_kind kind, int line, int col);
/* Appends value under key to a mapping; returns the pair. key is taken over. */
io_yaml_pair *io_yaml_map_add(io_yaml_node *map, char *key, int line, int col, io_yaml_node *value);
/* Path of a child key of map (map's path + "." + key). */
void io_yaml_child_path(const io_yaml_node *map, const char *key, char *buf, size_t size);
/* "--set ORIGIN" when origin is given, else "FILE:LINE". */
int io_yaml_where_at(const io_yaml_doc *d, int line, const char *origin, char *buf, size_t size);
/* Parses into d; an empty stream leaves d->root NULL. */
xd_status io_yaml_parse_text(io_yaml_doc *d, const char *name, const char *text, size_t n,
                             xd_err *e);

#endif
