/*
 * stream_read — forward reads of a stream's bytes through its fork chain: on the loop (stream_read,
 * stream__read_range) or in libuv's thread pool (stream_read_start, for stores whose reads are
 * remote). Both run the same plan the same way: the fork chain cut into segments of one stream's
 * own records each, read in offset order and sliced by stream__read_record.
 *
 * Ownership: a read in flight (struct stream_read) is the registry's: it is on ss->reads_waiting
 * until a thread-pool slot is free, then in the pool (counted by ss->reads_running), and freed by
 * its completion on the loop. Its owner only borrows it, to cancel it (cb cleared) until cb runs.
 * Nothing in it points into a struct stream: everything the worker needs was copied at the start.
 */
#include "stream/stream.h"
#include "stream/stream_int.h"
#include "store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One segment of a read: [from, limit) of stream id's own records. st: the stream, for a read on
 * the loop (its tail cache is tried first); NULL in a plan copied for a worker, which reads only the
 * store (the cache is the loop's). */
struct stream__seg {
    int64_t id, from, limit;
    int json;
    struct stream *st;
};

struct stream__read_ctx {
    struct buf *out;
    int64_t from;
    int64_t limit; /* nothing at or after this offset is appended */
    int64_t end;   /* offset after the last byte appended */
    int json;      /* the stream holds JSON messages ("m1,m2,") */
    int bad;       /* `from` falls inside a JSON message */
};

static void stream__read_record(int64_t off, const void *data, size_t len, void *arg)
{
    struct stream__read_ctx *c = arg;
    size_t skip = off < c->from ? (size_t)(c->from - off) : 0;
    /* A fork source's record that runs past the fork offset is cut there (a message boundary in
     * JSON streams: stream_create checks it). */
    size_t end = off + (int64_t)len > c->limit ? (size_t)(c->limit - off) : len;
    if (c->bad || (skip && c->json && !stream__msg_starts_at(data, len, skip))) {
        c->bad = 1;
        return;
    }
    if (skip < end)
        buf_append(c->out, (const char *)data + skip, end - skip);
    c->end = off + (int64_t)end;
}

/* The segments of [from, limit) of st's offset space, oldest first (a fork's source before the
 * fork): *out, malloc'd; returns how many (0 when from >= limit). */
static size_t stream__plan(struct stream *st, int64_t from, int64_t limit, struct stream__seg **out)
{
    size_t n = 0, cap = 0;
    struct stream__seg *segs = NULL;
    for (; st && from < limit; st = st->src) {
        int below = st->src && from < st->m.fork_off; /* part of the read is the source's */
        int64_t lo = below ? st->m.fork_off : from;
        if (lo < limit) {
            if (n == cap) {
                cap = cap ? cap * 2 : 4;
                segs = xrealloc(segs, cap * sizeof *segs);
            }
            segs[n++] = (struct stream__seg){st->m.id, lo, limit, stream_is_json(st), st};
        }
        if (!below)
            break;
        limit = limit < st->m.fork_off ? limit : st->m.fork_off;
    }
    for (size_t i = 0; i < n / 2; i++) {
        struct stream__seg t = segs[i];
        segs[i] = segs[n - 1 - i];
        segs[n - 1 - i] = t;
    }
    *out = segs;
    return n;
}

/* Reads the segments in order from `from`, at most about max bytes, into out: on the loop (from a
 * segment's tail cache, else the loop's connection), or (pooled) on one of the store's readers,
 * from any thread. A segment read short
 * (a chunk's end, or rows gone) ends the read. 0, -EINVAL (from inside a JSON message) or the
 * store's -errno; *next: the offset after the last byte read. */
static int stream__read_segs(struct store *store, int pooled, const struct stream__seg *segs, size_t n,
                             int64_t from, size_t max, struct buf *out, int64_t *next)
{
    *next = from;
    for (size_t i = 0; i < n; i++) {
        const struct stream__seg *g = &segs[i];
        size_t before = out->len;
        int64_t at = *next;
        struct stream__read_ctx c = {.out = out, .from = at, .limit = g->limit, .end = at, .json = g->json};
        int rc = pooled ? store_read_pooled(store, g->id, at, g->limit, max, stream__read_record, &c)
                        : stream__cache_read(g->st, at, g->limit, max, stream__read_record, &c);
        if (!pooled && rc == -ENOENT)
            rc = store_read(store, g->id, at, g->limit, max, stream__read_record, &c);
        if (rc < 0)
            return rc;
        if (c.bad)
            return -EINVAL;
        *next = c.end > at ? c.end : at;
        if (out->len - before >= max || *next < g->limit)
            return 0;
        max -= out->len - before;
    }
    return 0;
}

int stream__read_range(struct store *store, struct stream *st, int64_t from, int64_t limit, size_t max,
                       struct buf *out, int64_t *next)
{
    struct stream__seg *segs;
    size_t n = stream__plan(st, from, limit, &segs);
    int rc = stream__read_segs(store, 0, segs, n, from, max, out, next);
    free(segs);
    return rc;
}

int stream_read(struct streams *ss, struct stream *st, int64_t from, size_t max_bytes, struct buf *out,
                int64_t *next)
{
    int rc = stream__read_range(ss->store, st, from, st->durable_tail, max_bytes ? max_bytes : 1, out, next);
    if (rc == 0 && *next >= st->durable_tail)
        stream__cache_watch(ss, st); /* read up to its tail: it will likely be read there again */
    return rc;
}

/* ================= reads off the loop ================= */

struct stream_read {
    struct streams *ss;
    struct stream_read *next; /* ss->reads_waiting */
    uv_work_t work;
    stream_read_cb cb; /* NULL once cancelled */
    void *arg;
    struct stream__seg *segs;
    size_t nsegs, max;
    struct stream_read_done d; /* d.content_type: owned (a copy) */
};

static void stream__read_free(struct stream_read *rd)
{
    buf_free(&rd->d.data);
    free((char *)rd->d.content_type);
    free(rd->segs);
    free(rd);
}

/* Runs cb (unless cancelled) and frees the read. */
static void stream__read_finish(struct stream_read *rd)
{
    if (rd->cb)
        rd->cb(&rd->d, rd->arg);
    stream__read_free(rd);
}

static void stream__read_work(uv_work_t *w)
{
    struct stream_read *rd = w->data;
    rd->d.rc = stream__read_segs(rd->ss->store, 1, rd->segs, rd->nsegs, rd->d.from, rd->max, &rd->d.data,
                                 &rd->d.next);
}

static void stream__reads_pump(struct streams *ss);

static void stream__read_done(uv_work_t *w, int status)
{
    struct stream_read *rd = w->data;
    struct streams *ss = rd->ss;
    ss->reads_running--;
    stream__read_finish(rd);
    if (ss->freeing) { /* streams_free ran meanwhile: the last one out frees the registry */
        if (ss->reads_running == 0 && !ss->syncing)
            free(ss);
        return;
    }
    stream__reads_pump(ss);
}

/* Starts waiting reads while the store has a free reader: a read never waits for a reader inside
 * the thread pool, where it would hold a thread the committer's sync may need. */
static void stream__reads_pump(struct streams *ss)
{
    while (ss->reads_waiting && ss->reads_running < store_read_slots(ss->store)) {
        struct stream_read *rd = ss->reads_waiting;
        if ((ss->reads_waiting = rd->next) == NULL)
            ss->reads_tail = &ss->reads_waiting;
        ss->reads_running++;
        rd->work.data = rd;
        uv_queue_work(ss->loop, &rd->work, stream__read_work, stream__read_done);
    }
}

struct stream_read *stream_read_start(struct streams *ss, struct stream *st, int64_t from, size_t max_bytes,
                                      stream_read_cb cb, void *arg)
{
    struct stream_read *rd = xcalloc(1, sizeof *rd);
    rd->ss = ss;
    rd->cb = cb;
    rd->arg = arg;
    rd->max = max_bytes ? max_bytes : 1;
    rd->d = (struct stream_read_done){.from = from,
                                      .next = from,
                                      .tail = st->durable_tail,
                                      .closed = st->durable_closed,
                                      .json = stream_is_json(st),
                                      .content_type = xstrdup(st->m.content_type)};
    stream_identity(st, &rd->d.id, &rd->d.created);
    /* A local store reads as fast as a copy would: at once, on the loop. So does a read the tail
     * cache serves whole (or one with nothing to read). */
    if (store_read_slots(ss->store) == 0 || stream__cache_covers(st, from)) {
        rd->d.rc = stream_read(ss, st, from, max_bytes, &rd->d.data, &rd->d.next);
        stream__read_finish(rd);
        return NULL;
    }
    rd->nsegs = stream__plan(st, from, st->durable_tail, &rd->segs);
    for (size_t i = 0; i < rd->nsegs; i++)
        rd->segs[i].st = NULL; /* the worker reads the store only */
    if (st->durable_tail - from <= (int64_t)rd->max)
        stream__cache_watch(ss, st); /* it reads up to the tail, as stream_read does when it gets there */
    *ss->reads_tail = rd;
    ss->reads_tail = &rd->next;
    stream__reads_pump(ss);
    return rd;
}

void stream_read_cancel(struct stream_read *rd)
{
    if (rd)
        rd->cb = NULL;
}

void streams__reads_stop(struct streams *ss)
{
    while (ss->reads_waiting) {
        struct stream_read *rd = ss->reads_waiting;
        ss->reads_waiting = rd->next;
        rd->d.rc = -ESHUTDOWN;
        stream__read_finish(rd);
    }
    ss->reads_tail = &ss->reads_waiting;
}
