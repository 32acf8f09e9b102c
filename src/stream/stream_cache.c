/*
 * stream_cache — each stream's newest records in memory, so that live readers (SSE, long-poll, the
 * session WebSocket, webhook deliveries) read what was just appended without a store call. See
 * struct stream__cache in stream_int.h for the policy.
 *
 * Ownership: a stream owns its cache (st->cache, NULL when it has none) and frees it with itself;
 * the registry links every cache into one list, newest append first, to evict by age and budget.
 */
#include "stream/stream_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct stream__cache {
    struct stream__cache *newer, *older; /* the registry's list, by last append */
    struct stream__caches *all;
    struct stream *st;
    int64_t off; /* the offset of data[0]: where a record starts */
    char *data;  /* the stored bytes of [off, off + len), as store_read returns them */
    size_t len, cap;
    uint32_t *starts; /* where each record starts in data, ascending (starts[0] == 0) */
    size_t n, ncap;
    uint64_t appended_ms; /* the loop's time at the last append */
    uint64_t read_ms;     /* ... at the last read it served, or that wanted it (stream__cache_watch) */
};

static size_t stream__cache_size(const struct stream__cache *c)
{
    return sizeof *c + c->cap + c->ncap * sizeof *c->starts;
}

static void stream__cache_unlink(struct stream__cache *c)
{
    struct stream__caches *all = c->all;
    *(c->newer ? &c->newer->older : &all->newest) = c->older;
    *(c->older ? &c->older->newer : &all->oldest) = c->newer;
    c->newer = c->older = NULL;
}

static void stream__cache_push(struct stream__cache *c)
{
    struct stream__caches *all = c->all;
    c->older = all->newest;
    c->newer = NULL;
    *(all->newest ? &all->newest->newer : &all->oldest) = c;
    all->newest = c;
}

void stream__cache_free(struct stream *st)
{
    struct stream__cache *c = st->cache;
    if (c == NULL)
        return;
    stream__cache_unlink(c);
    c->all->bytes -= stream__cache_size(c);
    free(c->data);
    free(c->starts);
    free(c);
    st->cache = NULL;
}

/* Drops the oldest records until at most keep bytes in at most keep_n records are left. */
static void stream__cache_trim(struct stream__cache *c, size_t keep, size_t keep_n)
{
    size_t k = c->n > keep_n ? c->n - keep_n : 0;
    while (k < c->n && c->len - c->starts[k] > keep)
        k++;
    size_t cut = k < c->n ? c->starts[k] : c->len;
    memmove(c->data, c->data + cut, c->len - cut);
    c->len -= cut;
    c->off += (int64_t)cut;
    for (size_t i = k; i < c->n; i++)
        c->starts[i - k] = c->starts[i] - (uint32_t)cut;
    c->n -= k;
}

/* Room for one more record of len bytes (len <= STREAM_CACHE_STREAM_MAX). */
static void stream__cache_reserve(struct stream__cache *c, size_t len)
{
    size_t before = stream__cache_size(c);
    if (c->len + len > STREAM_CACHE_STREAM_MAX || c->n == STREAM_CACHE_RECORDS_MAX)
        stream__cache_trim(c,
                           STREAM_CACHE_STREAM_MAX * 3 / 4 > len ? STREAM_CACHE_STREAM_MAX * 3 / 4 - len : 0,
                           STREAM_CACHE_RECORDS_MAX * 3 / 4);
    if (c->len + len > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->len + len)
            cap *= 2;
        c->cap = cap < STREAM_CACHE_STREAM_MAX ? cap : STREAM_CACHE_STREAM_MAX;
        c->data = xrealloc(c->data, c->cap);
    }
    if (c->n == c->ncap) {
        c->ncap = c->ncap ? c->ncap * 2 : 8;
        c->starts = xrealloc(c->starts, c->ncap * sizeof *c->starts);
    }
    c->all->bytes += stream__cache_size(c) - before;
}

/* Over the budget: the streams appended to longest ago lose theirs, st's last (a budget below
 * one stream's cap). */
static void stream__cache_evict(struct streams *ss, struct stream *st)
{
    while (ss->caches.bytes > ss->caches.budget && ss->caches.oldest != st->cache)
        stream__cache_free(ss->caches.oldest->st);
    if (ss->caches.bytes > ss->caches.budget)
        stream__cache_free(st);
}

/* An empty cache for st whose first record will be at off, newest in the list. */
static struct stream__cache *stream__cache_new(struct streams *ss, struct stream *st, int64_t off)
{
    struct stream__cache *c = st->cache = xcalloc(1, sizeof *c);
    c->all = &ss->caches;
    c->st = st;
    c->off = off;
    c->appended_ms = c->read_ms = uv_now(ss->caches.loop);
    c->all->bytes += stream__cache_size(c);
    stream__cache_push(c);
    return c;
}

void stream__cache_watch(struct streams *ss, struct stream *st)
{
    if (st->cache)
        st->cache->read_ms = uv_now(ss->caches.loop);
    else
        st->tail_read = 1; /* a bit, not a cache: most such reads are followed by no append */
}

void stream__cache_append(struct streams *ss, struct stream *st, int64_t off, const void *data, size_t len)
{
    struct stream__cache *c = st->cache;
    if (len == 0 || ss->caches.budget == 0)
        return;
    /* A record too big to keep, or one that does not follow what is kept (never expected: the
     * cache follows every write), ends the cache; the next append starts a new one. */
    if (len > STREAM_CACHE_STREAM_MAX || (c && off != c->off + (int64_t)c->len)) {
        stream__cache_free(st);
        if (len > STREAM_CACHE_STREAM_MAX)
            return;
        c = NULL;
    }
    if (c == NULL && !st->tail_read && st->subs.next == &st->subs)
        return; /* nobody reads it live, nor read it at its tail: not worth memory */
    if (c == NULL) {
        c = stream__cache_new(ss, st, off);
        st->tail_read = 0;
    } else {
        stream__cache_unlink(c);
        stream__cache_push(c);
    }
    stream__cache_reserve(c, len);
    memcpy(c->data + c->len, data, len);
    c->starts[c->n++] = (uint32_t)c->len;
    c->len += len;
    c->appended_ms = uv_now(ss->caches.loop);
    stream__cache_evict(ss, st);
}

void stream__cache_rollback(struct streams *ss)
{
    for (struct stream__cache *c = ss->caches.newest, *next; c; c = next) {
        next = c->older;
        int64_t tail = c->st->durable_tail;
        if (c->off >= tail) {
            stream__cache_free(c->st);
            continue;
        }
        /* durable_tail is the end of a batch, so a record boundary */
        while (c->n && c->off + (int64_t)c->starts[c->n - 1] >= tail)
            c->n--;
        c->len = (size_t)(tail - c->off);
    }
}

void stream__cache_sweep(struct streams *ss, uint64_t now)
{
    for (struct stream__cache *c = ss->caches.oldest, *newer; c; c = newer) {
        newer = c->newer;
        int unread = c->st->subs.next == &c->st->subs && now - c->read_ms >= STREAM_CACHE_IDLE_MS;
        if (unread || now - c->appended_ms >= STREAM_CACHE_IDLE_MS)
            stream__cache_free(c->st);
    }
}

/* Is [from, to) of st's own records in its cache, and durable? */
static int stream__cache_has(const struct stream *st, int64_t from, int64_t to)
{
    const struct stream__cache *c = st->cache;
    if (from >= to)
        return 1;
    return c && c->n && from >= c->off && to <= c->off + (int64_t)c->len && to <= st->durable_tail;
}

int stream__cache_read(struct stream *st, int64_t from, int64_t to, size_t max, store_record_cb cb, void *arg)
{
    struct stream__cache *c = st->cache;
    if (from >= to || !stream__cache_has(st, from, to))
        return -ENOENT;
    c->read_ms = uv_now(c->all->loop);
    /* the record that holds from: the last one starting at or before it */
    size_t rel = (size_t)(from - c->off), lo = 0, hi = c->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->starts[mid] <= rel)
            lo = mid;
        else
            hi = mid;
    }
    size_t total = 0;
    int count = 0;
    for (size_t i = lo; i < c->n && c->off + (int64_t)c->starts[i] < to && total < max; i++) {
        size_t end = i + 1 < c->n ? c->starts[i + 1] : c->len;
        cb(c->off + (int64_t)c->starts[i], c->data + c->starts[i], end - c->starts[i], arg);
        total += end - c->starts[i];
        count++;
    }
    return count;
}

/* Mirrors stream__read_range: a fork's bytes below its fork offset are its source's. */
static int stream__cache_covers_range(const struct stream *st, int64_t from, int64_t limit)
{
    if (from >= limit)
        return 1;
    if (st->src && from < st->m.fork_off) {
        int64_t lim = limit < st->m.fork_off ? limit : st->m.fork_off;
        if (!stream__cache_covers_range(st->src, from, lim))
            return 0;
        from = lim;
    }
    return stream__cache_has(st, from, limit);
}

int stream__cache_covers(const struct stream *st, int64_t from)
{
    return stream__cache_covers_range(st, from, st->durable_tail);
}
