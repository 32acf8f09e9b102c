/*
 * map — a string-keyed hash table (separate chaining, power-of-two buckets, grows at load 1).
 * Keys are copied; values are borrowed pointers the caller owns.
 */
#ifndef AGENTD_MAP_H
#define AGENTD_MAP_H

#include <stddef.h>

struct map_entry {
    struct map_entry *next;
    size_t hash;
    size_t klen;
    void *value;
    char key[]; /* NUL-terminated copy */
};

struct map {
    struct map_entry **buckets;
    size_t nbuckets;
    size_t count;
};

/* Zero-initialised struct map is empty and valid. */
void *map_get(const struct map *m, const char *key, size_t klen);
/* Inserts or replaces; returns the previous value or NULL. */
void *map_put(struct map *m, const char *key, size_t klen, void *value);
/* Removes; returns the removed value or NULL. */
void *map_del(struct map *m, const char *key, size_t klen);
/* Calls cb for each entry; cb must not modify the map. */
void map_each(const struct map *m, void (*cb)(const char *key, void *value, void *arg), void *arg);
void map_clear(struct map *m);

#endif
