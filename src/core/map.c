/* map — string-keyed hash table. See map.h. */
#include "core/map.h"
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a: short keys (stream paths), no adversarial concern beyond chaining cost. */
static size_t map__hash(const char *k, size_t n)
{
    size_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h;
}

static struct map_entry **map__slot(const struct map *m, const char *key, size_t klen, size_t h)
{
    struct map_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
            break;
    return pp;
}

void *map_get(const struct map *m, const char *key, size_t klen)
{
    if (m->nbuckets == 0)
        return NULL;
    struct map_entry *e = *map__slot(m, key, klen, map__hash(key, klen));
    return e ? e->value : NULL;
}

static void map__grow(struct map *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
    struct map_entry **b = xcalloc(n, sizeof *b);
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (struct map_entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

void *map_put(struct map *m, const char *key, size_t klen, void *value)
{
    if (m->count >= m->nbuckets)
        map__grow(m);
    size_t h = map__hash(key, klen);
    struct map_entry **pp = map__slot(m, key, klen, h);
    if (*pp) {
        void *old = (*pp)->value;
        (*pp)->value = value;
        return old;
    }
    struct map_entry *e = xmalloc(sizeof *e + klen + 1);
    e->next = NULL;
    e->hash = h;
    e->klen = klen;
    e->value = value;
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    *pp = e;
    m->count++;
    return NULL;
}

void *map_del(struct map *m, const char *key, size_t klen)
{
    if (m->nbuckets == 0)
        return NULL;
    struct map_entry **pp = map__slot(m, key, klen, map__hash(key, klen));
    struct map_entry *e = *pp;
    if (e == NULL)
        return NULL;
    void *v = e->value;
    *pp = e->next;
    free(e);
    m->count--;
    return v;
}

void map_each(const struct map *m, void (*cb)(const char *key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct map_entry *e = m->buckets[i]; e; e = e->next)
            cb(e->key, e->value, arg);
}

void map_clear(struct map *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (struct map_entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof *m);
}
