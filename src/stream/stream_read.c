/*
 * stream_read — reads of a stream's bytes through its fork chain: forwards on the loop (stream_read,
 * stream__read_range) or in libuv's thread pool (stream_read_start, for stores whose reads are
 * remote), and backwards (history pages: stream_read_back, stream_offset_is_boundary, and
 * stream_read_back_start off the loop); also a follower's view reads off the loop
 * (stream_view_start). Each runs the same plan the same way either side: the fork chain cut into
 * segments of one stream's own records each, read in offset order and sliced by
 * stream__read_record (forwards), or walked newest first (backwards).
 *
 * Ownership: a read in flight (struct stream_read) is the registry's: it is on ss->reads_waiting
 * until a thread-pool slot is free, then in the pool (counted by ss->reads_running and by the
 * store's struct stream__pool, which every registry on the store shares), and freed by
 * its completion on the loop; one cancelled while it waits is freed when its turn comes, unrun (a
 * client that leaves does not cost a query). Its owner only borrows it, to cancel it (cb cleared)
 * until cb runs.
 * Nothing in it points into a struct stream: everything the worker needs was copied at the start.
 */
#include "stream/jsonmode.h"
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
 * segment's tail cache, else the loop's connection), (pooled) on one of the store's readers, from
 * any thread, or (snap) in a follower's snapshot, from any thread. A segment read short
 * (a chunk's end, or rows gone) ends the read. 0, -EINVAL (from inside a JSON message) or the
 * store's -errno; *next: the offset after the last byte read. */
static int stream__read_segs(struct store *store, struct store_snapshot *snap, int pooled,
                             const struct stream__seg *segs, size_t n, int64_t from, size_t max,
                             struct buf *out, int64_t *next)
{
    *next = from;
    for (size_t i = 0; i < n; i++) {
        const struct stream__seg *g = &segs[i];
        size_t before = out->len;
        int64_t at = *next;
        struct stream__read_ctx c = {.out = out, .from = at, .limit = g->limit, .end = at, .json = g->json};
        int rc = snap     ? store_snapshot_read(snap, g->id, at, g->limit, max, stream__read_record, &c)
                 : pooled ? store_read_pooled(store, g->id, at, g->limit, max, stream__read_record, &c)
                          : stream__cache_read(g->st, at, g->limit, max, stream__read_record, &c);
        if (!snap && !pooled && rc == -ENOENT)
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

int stream__read_range(struct store *store, struct store_snapshot *snap, struct stream *st, int64_t from,
                       int64_t limit, size_t max, struct buf *out, int64_t *next)
{
    struct stream__seg *segs;
    size_t n = stream__plan(st, from, limit, &segs);
    int rc = stream__read_segs(store, snap, 0, segs, n, from, max, out, next);
    free(segs);
    return rc;
}

int stream_read(struct streams *ss, struct stream *st, int64_t from, size_t max_bytes, struct buf *out,
                int64_t *next)
{
    int rc =
        stream__read_range(ss->store, NULL, st, from, st->durable_tail, max_bytes ? max_bytes : 1, out, next);
    if (rc == 0 && *next >= st->durable_tail)
        stream__cache_watch(ss, st); /* read up to its tail: it will likely be read there again */
    return rc;
}

/* ================= reading backwards, and offsets of messages ================= */

/* A fork chain as a backward read walks it, newest first: each stream's id, and the offset below
 * which its source holds the bytes (has_src). */
struct stream__link {
    int64_t id, fork_off;
    int has_src;
};

static size_t stream__chain(const struct stream *st, struct stream__link **out)
{
    size_t n = 0, cap = 0;
    struct stream__link *l = NULL;
    for (; st; st = st->src) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            l = xrealloc(l, cap * sizeof *l);
        }
        l[n++] = (struct stream__link){st->m.id, st->m.fork_off, st->src != NULL};
    }
    *out = l;
    return n;
}

static int stream__read_back_one(struct store *store, int pooled, int64_t id, int64_t before,
                                 store_record_back_cb cb, void *arg)
{
    return pooled ? store_read_back_pooled(store, id, before, cb, arg)
                  : store_read_back(store, id, before, cb, arg);
}

struct stream__boundary {
    int64_t off;
    int found;
};

static int stream__boundary_record(int64_t off, const void *data, size_t len, void *arg)
{
    struct stream__boundary *b = arg;
    b->found = b->off >= off && stream__msg_starts_at(data, len, (size_t)(b->off - off));
    return 1; /* only the record that holds the offset */
}

/* Does a message start at off, inside the chain's bytes (0 < off < tail, a JSON stream)? */
static int stream__boundary_in(struct store *store, int pooled, const struct stream__link *l, int64_t off)
{
    while (l->has_src && off < l->fork_off)
        l++;
    if (l->has_src && off == l->fork_off)
        return 1;
    struct stream__boundary b = {.off = off};
    return stream__read_back_one(store, pooled, l->id, off + 1, stream__boundary_record, &b) >= 0 && b.found;
}

/* Is off 0, the tail, or (byte streams) anything in between: 1; beyond: 0; else -1, ask the store. */
static int stream__boundary_known(const struct stream *st, int64_t off)
{
    if (off < 0 || off > st->durable_tail)
        return 0;
    if (!stream_is_json(st) || off == 0 || off == st->durable_tail)
        return 1;
    return -1;
}

int stream_offset_is_boundary(struct streams *ss, struct stream *st, int64_t off)
{
    int known = stream__boundary_known(st, off);
    if (known >= 0)
        return known;
    struct stream__link *l;
    stream__chain(st, &l);
    int rc = stream__boundary_in(ss->store, 0, l, off);
    free(l);
    return rc;
}

#define STREAM_BACK_SPANS 64 /* spans kept on the stack; a record with more messages allocates */

struct stream__back {
    stream_msg_cb cb;
    void *arg;
    int64_t before;
    int stop;
    size_t n, cap;
    size_t *starts, *lens; /* the current record's message spans */
    size_t own_starts[STREAM_BACK_SPANS], own_lens[STREAM_BACK_SPANS];
    const char *base;
};

static void stream__back_span(const char *p, size_t n, void *arg)
{
    struct stream__back *b = arg;
    if (b->n == b->cap) {
        size_t cap = b->cap * 2;
        size_t *starts = xmalloc(cap * sizeof *starts), *lens = xmalloc(cap * sizeof *lens);
        memcpy(starts, b->starts, b->n * sizeof *starts);
        memcpy(lens, b->lens, b->n * sizeof *lens);
        if (b->starts != b->own_starts) {
            free(b->starts);
            free(b->lens);
        }
        b->starts = starts;
        b->lens = lens;
        b->cap = cap;
    }
    b->starts[b->n] = (size_t)(p - b->base);
    b->lens[b->n++] = n;
}

/* One record, newest first: its messages from the last to the first, those before b->before. */
static int stream__back_record(int64_t off, const void *data, size_t len, void *arg)
{
    struct stream__back *b = arg;
    b->n = 0;
    b->base = data;
    jsonmode_stored_split(data, len, stream__back_span, b);
    for (size_t i = b->n; i-- > 0;) {
        int64_t at = off + (int64_t)b->starts[i];
        if (at < b->before && b->cb(at, (const char *)data + b->starts[i], b->lens[i], b->arg)) {
            b->stop = 1;
            return 1;
        }
    }
    return 0;
}

/* Reads the chain backwards from bound (below the durable tail), each message to cb, until it
 * returns nonzero. 0 or the store's -errno. */
static int stream__back_in(struct store *store, int pooled, const struct stream__link *l, size_t n,
                           int64_t bound, stream_msg_cb cb, void *arg)
{
    struct stream__back b = {.cb = cb, .arg = arg, .cap = STREAM_BACK_SPANS};
    b.starts = b.own_starts;
    b.lens = b.own_lens;
    int rc = 0;
    /* A fork's own records all start at or after its fork offset; older ones are its source's. */
    for (size_t i = 0; i < n && !b.stop && rc >= 0; i++) {
        b.before = bound;
        rc = stream__read_back_one(store, pooled, l[i].id, bound, stream__back_record, &b);
        if (l[i].has_src && l[i].fork_off < bound)
            bound = l[i].fork_off;
    }
    if (b.starts != b.own_starts) {
        free(b.starts);
        free(b.lens);
    }
    return rc < 0 ? rc : 0;
}

int stream_read_back(struct streams *ss, struct stream *st, int64_t before, stream_msg_cb cb, void *arg)
{
    if (!stream_is_json(st))
        return -EINVAL;
    struct stream__link *l;
    size_t n = stream__chain(st, &l);
    int rc =
        stream__back_in(ss->store, 0, l, n, before < st->durable_tail ? before : st->durable_tail, cb, arg);
    free(l);
    return rc;
}

/* ================= reads off the loop ================= */

/* A read off the loop: forwards (stream_read_start: segs), backwards (stream_read_back_start:
 * links, back_*), or a follower's view (stream_view_start: view_*). */
struct stream_read {
    struct streams *ss;
    struct stream_read *next; /* ss->reads_waiting */
    uv_work_t work;
    stream_read_cb cb; /* NULL once cancelled */
    void *arg;
    struct stream__seg *segs;
    size_t nsegs, max;
    struct stream_read_done d; /* d.content_type: owned (a copy) */
    struct stream__link *links;
    size_t nlinks;
    int64_t back_before, back_bound; /* the offset checked (-1: none), where the read starts */
    stream_msg_cb back_cb;
    stream_back_done_cb back_done;
    stream_view_cb view_cb; /* NULL once cancelled */
    char *view_path;        /* the path, NUL-terminated; view_from: -1, or where d's read starts */
    int64_t view_from;
    struct stream_view_done vd; /* vd.view: owned, freed with the read */
};

static void stream__read_free(struct stream_read *rd)
{
    buf_free(&rd->d.data);
    free((char *)rd->d.content_type);
    free(rd->segs);
    free(rd->links);
    free(rd->view_path);
    stream_view_close(rd->vd.view);
    free(rd);
}

/* Runs cb (unless cancelled) and frees the read. */
static void stream__read_finish(struct stream_read *rd)
{
    if (rd->back_done)
        rd->back_done(rd->d.rc, rd->arg);
    else if (rd->view_cb) {
        rd->vd.read = rd->d;
        rd->view_cb(&rd->vd, rd->arg);
        rd->d.data = rd->vd.read.data; /* cb may have taken it */
    } else if (rd->cb)
        rd->cb(&rd->d, rd->arg);
    stream__read_free(rd);
}

/* A backward read's work, on the loop or pooled: the boundary check, then the messages. */
static int stream__read_back_run(struct stream_read *rd, int pooled)
{
    struct store *store = rd->ss->store;
    if (rd->back_before >= 0 && !stream__boundary_in(store, pooled, rd->links, rd->back_before))
        return -EDOM;
    return stream__back_in(store, pooled, rd->links, rd->nlinks, rd->back_bound, rd->back_cb, rd->arg);
}

/* What a read's answer describes of st from `from`, before anything is read (content_type: a copy,
 * which stream__read_free frees). */
static struct stream_read_done stream__done_of(const struct stream *st, int64_t from)
{
    struct stream_read_done d = {.from = from,
                                 .next = from,
                                 .tail = st->durable_tail,
                                 .closed = st->durable_closed,
                                 .json = stream_is_json(st),
                                 .content_type = xstrdup(st->m.content_type)};
    stream_identity(st, &d.id, &d.created);
    return d;
}

/* A view read's work, on the loop or pooled: the snapshot opened, the stream's row and its fork
 * sources' read in it, then (when the stream is found, is read from and has no expiry, which its
 * caller forwards) its bytes from view_from, bounded by the tail; the snapshot ends here, the
 * streams stay for the completion. */
static void stream__view_run(struct stream_read *rd)
{
    struct stream_view_done *vd = &rd->vd;
    vd->rc = stream_view_open(&vd->view, rd->ss->store, rd->view_path, strlen(rd->view_path), rd->view_from,
                              &vd->how);
    if (vd->rc == 0 && vd->how == STREAM_FOUND && !stream_view_expires(vd->view) && rd->view_from >= 0) {
        struct stream *st = stream_view_stream(vd->view);
        int64_t from = rd->view_from < st->durable_tail ? rd->view_from : st->durable_tail;
        rd->d = stream__done_of(st, from);
        rd->d.rc = stream_view_read(vd->view, from, rd->max, &rd->d.data, &rd->d.next);
    }
    if (vd->view)
        stream__view_end(vd->view);
}

static void stream__read_work(uv_work_t *w)
{
    struct stream_read *rd = w->data;
    if (rd->view_path)
        stream__view_run(rd);
    else if (rd->back_done)
        rd->d.rc = stream__read_back_run(rd, 1);
    else
        rd->d.rc = stream__read_segs(rd->ss->store, NULL, 1, rd->segs, rd->nsegs, rd->d.from, rd->max,
                                     &rd->d.data, &rd->d.next);
}

/* The reads of one store in libuv's thread pool, whichever registry queued them: a follower that
 * took the lease over has two registries on the same store_read_slots readers (its reader-only
 * one, for the catch-up reads it still answers, and the owner's). Counted per registry, up to
 * twice the slots would sit in the pool, the extra ones blocked waiting for a reader on threads
 * the committer's sync needs. The loop's only; freed when its last registry leaves. */
struct stream__pool {
    struct store *store;
    int running;
    struct streams *members; /* linked by pool_next; a registry being freed stays until it is */
    struct stream__pool *next;
};
static struct stream__pool *stream__pools;

static struct stream__pool *stream__pool_of(const struct store *store)
{
    struct stream__pool *p = stream__pools;
    while (p && p->store != store)
        p = p->next;
    return p;
}

static void stream__pool_join(struct streams *ss)
{
    struct stream__pool *p = stream__pool_of(ss->store);
    if (p == NULL) {
        p = xcalloc(1, sizeof *p);
        p->store = ss->store;
        p->next = stream__pools;
        stream__pools = p;
    }
    ss->pool = p;
    ss->pool_next = p->members;
    p->members = ss;
}

void streams__reads_leave(struct streams *ss)
{
    struct stream__pool *p = ss->pool;
    if (p == NULL)
        return;
    struct streams **m = &p->members;
    while (*m != ss)
        m = &(*m)->pool_next;
    *m = ss->pool_next;
    ss->pool = NULL;
    if (p->members)
        return;
    struct stream__pool **at = &stream__pools;
    while (*at != p)
        at = &(*at)->next;
    *at = p->next;
    free(p);
}

static void stream__reads_pump(struct streams *ss);
static void stream__read_queue(struct streams *ss, struct stream_read *rd);

/* A slot came free: every registry of the store may start its next read. */
static void stream__pool_pump(const struct store *store)
{
    struct stream__pool *p = stream__pool_of(store);
    for (struct streams *m = p ? p->members : NULL; m; m = m->pool_next)
        stream__reads_pump(m);
}

static void stream__read_done(uv_work_t *w, int status)
{
    struct stream_read *rd = w->data;
    struct streams *ss = rd->ss;
    const struct store *store = ss->store;
    ss->reads_running--;
    ss->pool->running--;
    if (ss->reads_cancelled) { /* its query was cancelled (or never sent): answered as a stop */
        if (rd->d.rc < 0)
            rd->d.rc = -ESHUTDOWN;
        if (rd->vd.rc < 0)
            rd->vd.rc = -ESHUTDOWN;
    }
    stream__read_finish(rd);
    if (ss->freeing && ss->reads_running == 0 && !ss->syncing) { /* the last one out frees it */
        streams__reads_leave(ss);
        free(ss);
    }
    stream__pool_pump(store);
}

/* Starts waiting reads while the store has a free reader: a read never waits for a reader inside
 * the thread pool, where it would hold a thread the committer's sync may need. */
static void stream__reads_pump(struct streams *ss)
{
    streams__load_pump(ss); /* a load of shards first: requests wait for it */
    while (ss->reads_waiting && ss->pool->running < store_read_slots(ss->store)) {
        struct stream_read *rd = ss->reads_waiting;
        if ((ss->reads_waiting = rd->next) == NULL)
            ss->reads_tail = &ss->reads_waiting;
        if (!rd->cb && !rd->view_cb && !rd->back_done) { /* cancelled: its owner is gone, nothing runs */
            stream__read_free(rd);
            continue;
        }
        ss->reads_running++;
        ss->pool->running++;
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
    rd->d = stream__done_of(st, from);
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
    stream__read_queue(ss, rd);
    return rd;
}

/* Queues rd for a reader of the store. */
static void stream__read_queue(struct streams *ss, struct stream_read *rd)
{
    if (ss->pool == NULL)
        stream__pool_join(ss);
    *ss->reads_tail = rd;
    ss->reads_tail = &rd->next;
    stream__reads_pump(ss);
}

void stream_read_back_start(struct streams *ss, struct stream *st, int64_t before, int check,
                            stream_msg_cb cb, stream_back_done_cb done, void *arg)
{
    struct stream_read *rd = xcalloc(1, sizeof *rd);
    rd->ss = ss;
    rd->arg = arg;
    rd->back_cb = cb;
    rd->back_done = done;
    rd->back_before = -1;
    int known = check ? stream__boundary_known(st, before) : 1;
    if (!stream_is_json(st) || known == 0) {
        rd->d.rc = known == 0 ? -EDOM : -EINVAL;
        stream__read_finish(rd);
        return;
    }
    if (known < 0)
        rd->back_before = before;
    rd->back_bound = before < st->durable_tail ? before : st->durable_tail;
    rd->nlinks = stream__chain(st, &rd->links);
    if (store_read_slots(ss->store) == 0) {
        rd->d.rc = stream__read_back_run(rd, 0);
        stream__read_finish(rd);
        return;
    }
    stream__read_queue(ss, rd);
}

struct stream_read *stream_view_start(struct streams *ss, const char *path, size_t plen, int64_t from,
                                      size_t max_bytes, stream_view_cb cb, void *arg)
{
    struct stream_read *rd = xcalloc(1, sizeof *rd);
    rd->ss = ss;
    rd->view_cb = cb;
    rd->arg = arg;
    rd->max = max_bytes ? max_bytes : 1;
    rd->view_path = xmalloc(plen + 1);
    memcpy(rd->view_path, path, plen);
    rd->view_path[plen] = '\0';
    rd->view_from = from;
    rd->d = (struct stream_read_done){.from = from, .next = from};
    if (store_read_slots(ss->store) == 0) { /* no reader connections: no snapshot either */
        stream__view_run(rd);
        stream__read_finish(rd);
        return NULL;
    }
    stream__read_queue(ss, rd);
    return rd;
}

void stream_read_cancel(struct stream_read *rd)
{
    if (rd)
        rd->cb = NULL, rd->view_cb = NULL;
}

int streams__pooled_start(struct streams *ss, uv_work_t *w, uv_work_cb work, uv_after_work_cb done)
{
    if (ss->pool == NULL)
        stream__pool_join(ss);
    if (ss->reads_cancelled || ss->pool->running >= store_read_slots(ss->store) ||
        uv_queue_work(ss->loop, w, work, done) != 0)
        return -EBUSY;
    ss->reads_running++;
    ss->pool->running++;
    return 0;
}

void streams__pooled_end(struct streams *ss)
{
    const struct store *store = ss->store;
    ss->reads_running--;
    ss->pool->running--;
    if (ss->freeing && ss->reads_running == 0 && !ss->syncing) { /* the last one out frees it */
        streams__reads_leave(ss);
        free(ss);
    }
    stream__pool_pump(store);
}

void streams__reads_stop(struct streams *ss)
{
    streams__load_stop(ss);
    /* The list is taken off ss before its callbacks run: one that queues a read (none does at a
     * stop today) queues it on ss's fresh list, which the next turn stops too (or the pump has
     * started it: its completion is counted in reads_running, as every read's is). */
    while (ss->reads_waiting) {
        struct stream_read *list = ss->reads_waiting;
        ss->reads_waiting = NULL;
        ss->reads_tail = &ss->reads_waiting;
        while (list) {
            struct stream_read *rd = list;
            list = rd->next;
            rd->d.rc = rd->vd.rc = -ESHUTDOWN;
            stream__read_finish(rd);
        }
    }
}

void streams_reads_cancel(struct streams *ss)
{
    ss->reads_cancelled = 1;
    streams__reads_stop(ss);
    if (ss->reads_running)
        store_reads_cancel(ss->store);
}
