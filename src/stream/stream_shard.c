/*
 * stream_shard — the registry by shard (doc/SHARDING-PLAN.md §4): which shards are loaded and
 * held, loading some (streams_load_shards) and dropping one (streams_drop_shard). See stream.h
 * ("shards") for the rules, and stream_int.h for the bits of struct stream this owns (foreign,
 * loading, needed, shard_unknown, shard).
 *
 * Stubs: a stream of a shard that is not loaded, kept only because a loaded stream reads through it
 * (its fork source, or further up the chain). A stub is in by_id (so forks loaded later link to it)
 * and never in by_path (so no lookup, write or subscriber reaches it); what a read through it needs
 * (its id, fork point and source) does not change below its forks' fork offsets. Stubs are made by
 * a drop (the shard's streams that are still read through) and by a load (the rows of other shards
 * that a new stream reads through); streams__sweep_stubs frees those nobody reads through any more.
 */
#include "stream/stream.h"
#include "stream/stream_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int stream__bit(const uint64_t *b, int k) { return (int)((b[k / 64] >> (k % 64)) & 1); }

int streams_shards(const struct streams *ss) { return ss->nshards; }

int streams_shard_of(const struct streams *ss, const char *path, size_t len)
{
    return store_shard_of(path, len, ss->nshards);
}

int streams_shard_loaded(const struct streams *ss, int k)
{
    return k >= 0 && k < ss->nshards && stream__bit(ss->loaded, k);
}

int streams_shard_held(const struct streams *ss, int k)
{
    return k >= 0 && k < ss->nshards && stream__bit(ss->held, k);
}

void streams_shard_hold(struct streams *ss, int k, int held)
{
    if (!streams_shard_loaded(ss, k))
        return;
    if (held)
        ss->held[k / 64] |= 1ull << (k % 64);
    else
        ss->held[k / 64] &= ~(1ull << (k % 64));
}

int stream__writable(const struct streams *ss, const struct stream *st)
{
    return !st->foreign && streams_shard_held(ss, (int)st->shard);
}

/* ================= stubs ================= */

struct stream__list {
    struct stream **v;
    size_t n, cap;
};

static void stream__list_add(struct stream__list *l, struct stream *st)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = st;
}

static void stream__unmark(const char *key, void *value, void *arg) { ((struct stream *)value)->needed = 0; }

/* Marks the stubs a loaded stream reads through (up its fork chain). */
static void stream__mark_needed(const char *key, void *value, void *arg)
{
    struct stream *st = value;
    if (st->foreign)
        return;
    for (struct stream *p = st->src; p && !p->needed; p = p->src)
        p->needed = p->foreign;
}

static void stream__collect_unneeded(const char *key, void *value, void *arg)
{
    struct stream *st = value;
    if (st->foreign && !st->needed)
        stream__list_add(arg, st);
}

void streams__sweep_stubs(struct streams *ss)
{
    struct stream__list l = {0};
    map_each(&ss->by_id, stream__unmark, NULL);
    map_each(&ss->by_id, stream__mark_needed, NULL);
    map_each(&ss->by_id, stream__collect_unneeded, &l);
    /* A freed stub may have read through another stub: that one was not marked by it (only loaded
     * streams mark), so it goes in the same pass. */
    for (size_t i = 0; i < l.n; i++) {
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)l.v[i]->m.id);
        map_del(&ss->by_id, key, strlen(key));
        stream__free(l.v[i]);
    }
    free(l.v);
}

struct stream *stream__stub_chain(struct streams *ss, const struct store_meta *chain, size_t n)
{
    struct stream *up = NULL; /* the stream chain[i] reads through */
    for (size_t i = n; i-- > 0;) {
        struct stream *st = stream__by_id(ss, chain[i].id);
        if (st == NULL) {
            st = stream__alloc(ss, &chain[i]);
            st->foreign = 1;
            /* a path-less one: its shard does not matter to a stub, which is never written */
            st->shard =
                chain[i].path ? (unsigned)streams_shard_of(ss, chain[i].path, strlen(chain[i].path)) : 0;
            st->src = up;
            stream__list(ss, st);
        }
        up = st;
    }
    return up;
}

/* ================= loading ================= */

struct stream__load {
    struct streams *ss;
    const uint64_t *want;
    int by_id;                 /* the rows asked for by id: kept as stubs */
    int empty;                 /* store_load into a registry with no stream (a start, a reload) */
    struct stream__list fresh; /* what this load added or made a loaded stream again */
};

/* A row of the store. The ones of the shards loaded are registered; any other row (another shard's,
 * or a path-less one whose shard is not known yet) is kept as a stub until the load knows whether a
 * new stream reads through it. Rows of streams already in memory are skipped: the memory is ahead
 * (what the open batch will make true). */
static void stream__load_stream(const struct store_meta *m, void *arg)
{
    struct stream__load *c = arg;
    struct streams *ss = c->ss;
    struct stream *old = c->empty ? NULL : stream__by_id(ss, m->id);
    if (old && !old->foreign)
        return;
    int k = m->path ? streams_shard_of(ss, m->path, strlen(m->path)) : -1;
    /* a path-less row: the store's shard, where the store keeps it in this registry's numbering */
    if (k < 0 && ss->nshards == STORE_SHARDS && strcmp(store_backend(ss->store), "postgres") == 0)
        k = m->shard;
    /* a path-less stub of this registry (dropped with its shard) keeps the shard it had */
    if (k < 0 && old && !old->shard_unknown)
        k = (int)old->shard;
    int want = k >= 0 && stream__bit(c->want, k);
    /* another shard's row: loaded by id (a stub) only if a new stream reads through it */
    if (!want && (old || (k >= 0 && !c->by_id)))
        return;
    struct stream *st = old;
    if (old) { /* a stub of a shard loaded again: the same object, which forks point at */
        store_meta_clear(&old->m);
        store_meta_copy(&old->m, m);
        old->durable_tail = m->tail;
        old->durable_closed = m->closed != 0;
        old->last_access_ms = clock_wall_ms();
        old->foreign = 0;
        if (m->path)
            map_put(&ss->by_path, m->path, strlen(m->path), old);
    } else {
        st = stream__alloc(ss, m);
        st->foreign = !want;
        st->shard_unknown = k < 0;
        st->shard = k < 0 ? 0 : (unsigned)k;
        stream__list(ss, st);
    }
    st->loading = 1;
    stream__list_add(&c->fresh, st);
}

static void stream__load_producer(int64_t id, const char *pid, int64_t epoch, int64_t seq, void *arg)
{
    struct stream__load *c = arg;
    struct stream *st = stream__by_id(c->ss, id);
    if (st == NULL || !st->loading || st->foreign)
        return;
    struct stream__producer *p = xmalloc(sizeof *p);
    p->epoch = epoch;
    p->seq = seq;
    free(map_put(&st->producers, pid, strlen(pid), p));
}

/* Links the new streams to their sources; a path-less source takes the shard of the first loaded
 * stream that reads through it, and is loaded with it when that shard is being loaded. */
static void stream__load_link(struct stream__load *c)
{
    for (size_t i = 0; i < c->fresh.n; i++) {
        struct stream *st = c->fresh.v[i];
        if (st->m.fork_src)
            st->src = stream__by_id(c->ss, st->m.fork_src);
    }
    for (size_t i = 0; i < c->fresh.n; i++) {
        struct stream *st = c->fresh.v[i];
        if (st->foreign)
            continue;
        for (struct stream *p = st->src; p; p = p->src) {
            if (!p->shard_unknown)
                continue;
            p->shard_unknown = 0;
            p->shard = st->shard;
            p->foreign = !stream__bit(c->want, (int)p->shard);
        }
    }
}

/* The sources the new streams read through that are not in memory (rows of shards not loaded). */
static size_t stream__missing(struct stream__load *c, int64_t **ids)
{
    size_t n = 0;
    for (size_t i = 0; i < c->fresh.n; i++) {
        struct stream *st = c->fresh.v[i];
        if (st->m.fork_src && st->src == NULL && stream__by_id(c->ss, st->m.fork_src) == NULL) {
            *ids = xrealloc(*ids, (n + 1) * sizeof **ids);
            (*ids)[n++] = st->m.fork_src;
        }
    }
    return n;
}

/* Loads the rows of want's shards (the store filters them when its numbering is the registry's),
 * then by id the sources they read through in other shards, up the chains, as stubs; then the refs
 * of the new sources, which count them (m.refcount). */
static int stream__load_rows(struct stream__load *c)
{
    struct streams *ss = c->ss;
    c->empty = ss->by_id.count == 0; /* then every row is new: no lookup (the by-id rows may repeat) */
    int rc = store_load(ss->store, streams__store_filter(ss, c->want), stream__load_stream,
                        stream__load_producer, c);
    c->empty = 0;
    stream__load_link(c);
    int64_t *ids = NULL;
    size_t n, before;
    c->by_id = 1;
    while (rc == 0 && (n = stream__missing(c, &ids)) > 0) {
        before = c->fresh.n;
        rc = store_load_ids(ss->store, ids, n, stream__load_stream, c);
        stream__load_link(c);
        if (c->fresh.n == before) /* a source whose row is gone: nothing more to find */
            break;
    }
    free(ids);
    for (size_t i = 0; i < c->fresh.n; i++)
        if (!c->fresh.v[i]->foreign)
            c->fresh.v[i]->m.refcount = 0;
    return rc ? rc : streams__load_refs(ss, streams__store_filter(ss, c->want));
}

/* The end of a load: the new streams settle; a failed one with undo leaves nothing of it loaded. */
static int stream__load_end(struct stream__load *c, int rc, int undo)
{
    struct streams *ss = c->ss;
    const uint64_t *want = c->want;
    for (int k = 0; rc != 0 && undo && k < ss->nshards; k++)
        if (stream__bit(want, k))
            streams__drop_refs(ss, k);
    size_t stubs = 0;
    for (size_t i = 0; i < c->fresh.n; i++) {
        struct stream *st = c->fresh.v[i];
        st->loading = 0;
        /* undo: a failed load leaves nothing of it loaded: every new stream is a stub, swept below
         * (unless a loaded fork reads through it) */
        if (rc != 0 && undo && st->m.path && map_get(&ss->by_path, st->m.path, strlen(st->m.path)) == st)
            map_del(&ss->by_path, st->m.path, strlen(st->m.path));
        if (rc != 0 && undo) {
            st->foreign = 1;
            stream__free_producers(st);
        }
        stubs += st->foreign;
    }
    free(c->fresh.v);
    /* A load that made no stub leaves none unneeded (one that becomes loaded only marks more): with
     * one shard, always; the sweep would walk every stream three times. */
    if (stubs)
        streams__sweep_stubs(ss);
    return rc;
}

int streams__load_bits(struct streams *ss, const uint64_t *want, int undo)
{
    struct stream__load c = {.ss = ss, .want = want};
    return stream__load_end(&c, stream__load_rows(&c), undo);
}

/* The shards of bitmap not loaded yet, in want: 0 when there is none. */
static int stream__to_load(const struct streams *ss, const uint64_t *bitmap, uint64_t *want)
{
    int any = 0;
    memset(want, 0, STORE_SHARD_WORDS * sizeof *want);
    for (int k = 0; k < ss->nshards; k++)
        if (stream__bit(bitmap, k) && !stream__bit(ss->loaded, k)) {
            want[k / 64] |= 1ull << (k % 64);
            any = 1;
        }
    return any;
}

static void stream__loaded(struct streams *ss, const uint64_t *want)
{
    for (int w = 0; w < STORE_SHARD_WORDS; w++) {
        ss->loaded[w] |= want[w];
        ss->held[w] |= want[w];
    }
}

int streams_load_shards(struct streams *ss, const uint64_t *bitmap)
{
    uint64_t want[STORE_SHARD_WORDS];
    if (!stream__to_load(ss, bitmap, want))
        return 0;
    int rc = streams__load_bits(ss, want, 1);
    if (rc == 0)
        stream__loaded(ss, want);
    return rc;
}

/* ================= loading off the loop ================= */

/*
 * streams_load_shards_start: the store's rows are read on a reader in libuv's thread pool (one of
 * store_read_slots, as a catch-up read: the loop's own connection would hold the loop for as long as
 * the database takes, a lock or a dark host) into memory, then taken in on the loop as
 * streams_load_shards takes them (stream__load_stream, the links, the refs). The worker cannot see
 * the registry: it reads every source up the chains its rows read through that it did not read
 * itself; the loop skips those it has (the memory is ahead), and the sweep frees stubs nobody needs.
 * Meanwhile nothing of the shards is in memory (they are not loaded), so nothing writes them here.
 */
struct stream__rows {
    struct store_meta *v;
    size_t n, cap;
};

struct stream__prod {
    int64_t id, epoch, seq;
    char *pid;
};

struct streams_load {
    uv_work_t work;
    struct streams *ss;
    struct store *store;
    uint64_t want[STORE_SHARD_WORDS];
    const uint64_t *filter; /* want, or NULL: the store's numbering is not the registry's */
    streams_load_cb done;
    void *arg;
    int rc;
    struct stream__rows rows; /* the shards' rows, then (from nshard on) the sources by id */
    size_t nshard;
    struct stream__prod *prods;
    size_t nprods, prods_cap;
    struct stream__pairs refs;
    int side;           /* streams_load_side's stream is read by this load */
    char side_path[64]; /* its path, copied for the worker */
    int side_state;     /* 1 read, 0 none, -errno */
    struct buf side_buf;
};

static void stream__rec_stream(const struct store_meta *m, void *arg)
{
    struct stream__rows *r = arg;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->v = xrealloc(r->v, r->cap * sizeof *r->v);
    }
    memset(&r->v[r->n], 0, sizeof r->v[r->n]);
    store_meta_copy(&r->v[r->n++], m);
}

static void stream__rec_producer(int64_t id, const char *pid, int64_t epoch, int64_t seq, void *arg)
{
    struct streams_load *l = arg;
    if (l->nprods == l->prods_cap) {
        l->prods_cap = l->prods_cap ? l->prods_cap * 2 : 64;
        l->prods = xrealloc(l->prods, l->prods_cap * sizeof *l->prods);
    }
    l->prods[l->nprods++] = (struct stream__prod){.id = id, .epoch = epoch, .seq = seq, .pid = xstrdup(pid)};
}

static void stream__rec_row(const struct store_meta *m, void *arg)
{
    stream__rec_stream(m, &((struct streams_load *)arg)->rows);
}

/* The sources the rows from `from` on read through that no row read so far is (ids, to read next). */
static size_t stream__rec_missing(struct streams_load *l, struct map *seen, size_t from, int64_t **ids)
{
    size_t n = 0;
    char key[24];
    for (size_t i = from; i < l->rows.n; i++)
        map_put(seen, key, (size_t)snprintf(key, sizeof key, "%lld", (long long)l->rows.v[i].id), l);
    for (size_t i = from; i < l->rows.n; i++) {
        int64_t src = l->rows.v[i].fork_src;
        size_t kn = (size_t)snprintf(key, sizeof key, "%lld", (long long)src);
        if (src == 0 || map_get(seen, key, kn))
            continue;
        map_put(seen, key, kn, l);
        *ids = xrealloc(*ids, (n + 1) * sizeof **ids);
        (*ids)[n++] = src;
    }
    return n;
}

/* On a reader: streams_load_side's stream whole, in one snapshot (a follower's view): 1, 0 none. */
static int stream__load_side_work(struct streams_load *l)
{
    struct stream_view *v;
    enum stream_lookup how;
    int rc = stream_view_open(&v, l->store, l->side_path, strlen(l->side_path), 0, &how);
    if (rc != 0 || how != STREAM_FOUND) {
        stream_view_close(v);
        return rc;
    }
    int64_t off = 0, next, tail = stream_view_stream(v)->durable_tail;
    while (rc == 0 && off < tail) {
        rc = stream_view_read(v, off, 1 << 20, &l->side_buf, &next);
        if (rc == 0 && next <= off)
            rc = -EIO; /* short of its tail: not the whole of it */
        off = next;
    }
    stream_view_close(v);
    return rc ? rc : 1;
}

/* In libuv's thread pool, on a reader: the rows, the sources up their chains, the refs. */
static void stream__load_work(uv_work_t *w)
{
    struct streams_load *l = w->data;
    l->rc = store_load_pooled(l->store, l->filter, stream__rec_row, stream__rec_producer, l);
    l->nshard = l->rows.n;
    struct map seen = {0};
    int64_t *ids = NULL;
    size_t n;
    for (size_t from = 0; l->rc == 0 && (n = stream__rec_missing(l, &seen, from, &ids)) > 0;) {
        from = l->rows.n;
        l->rc = store_load_ids_pooled(l->store, ids, n, stream__rec_row, l);
    }
    free(ids);
    map_clear(&seen);
    if (l->rc == 0)
        l->rc = store_load_refs_pooled(l->store, l->filter, streams__collect_pair, &l->refs);
    if (l->rc == 0 && l->side)
        l->side_state = stream__load_side_work(l);
}

/* On the loop: the rows read taken in, as stream__load_rows takes the store's. */
static int stream__load_take(struct stream__load *c, struct streams_load *l)
{
    struct streams *ss = c->ss;
    c->empty = ss->by_id.count == 0;
    for (size_t i = 0; i < l->nshard; i++) {
        store_loaded(ss->store, &l->rows.v[i]);
        stream__load_stream(&l->rows.v[i], c);
    }
    c->empty = 0;
    for (size_t i = 0; i < l->nprods; i++)
        stream__load_producer(l->prods[i].id, l->prods[i].pid, l->prods[i].epoch, l->prods[i].seq, c);
    c->by_id = 1;
    for (size_t i = l->nshard; i < l->rows.n; i++) {
        store_loaded(ss->store, &l->rows.v[i]);
        stream__load_stream(&l->rows.v[i], c);
    }
    stream__load_link(c);
    for (size_t i = 0; i < c->fresh.n; i++)
        if (!c->fresh.v[i]->foreign)
            c->fresh.v[i]->m.refcount = 0;
    for (size_t i = 0; i < l->refs.n; i++)
        streams__load_ref(l->refs.v[i][0], l->refs.v[i][1], ss);
    return 0;
}

static void stream__load_free(struct streams_load *l)
{
    for (size_t i = 0; i < l->rows.n; i++)
        store_meta_clear(&l->rows.v[i]);
    free(l->rows.v);
    for (size_t i = 0; i < l->nprods; i++)
        free(l->prods[i].pid);
    free(l->prods);
    free(l->refs.v);
    buf_free(&l->side_buf);
    free(l);
}

static void stream__load_done(uv_work_t *w, int status)
{
    struct streams_load *l = w->data;
    struct streams *ss = l->ss;
    ss->loading_shards = NULL;
    int rc = status != 0 ? -ECANCELED : ss->reads_cancelled ? -ESHUTDOWN : l->rc;
    /* The database cannot be reached, as a failed commit finds it: the loop's connection is not
     * tried again until a probe says it is back (a stop's release of the lease would wait for a
     * connect to a dark host); a stop only notes it (no retry during the drain). */
    if (l->rc == -ENOTCONN && !ss->stopped && ss->reads_cancelled)
        store_offline(ss->store);
    else if (l->rc == -ENOTCONN && !ss->stopped && !ss->unavailable)
        streams__unavailable(ss, -ENOTCONN);
    if (!ss->stopped) {
        /* a shard dropped or loaded meanwhile is not the caller's to load any more: none is (see
         * streams_load_shards_start), so want is still what is not loaded */
        struct stream__load c = {.ss = ss, .want = l->want};
        if (rc == 0)
            rc = stream__load_end(&c, stream__load_take(&c, l), 1);
        if (rc == 0)
            stream__loaded(ss, l->want);
        ss->side_state = l->side && rc == 0 ? l->side_state : -ENOENT;
        ss->side = l->side_buf; /* lent for the callback */
        l->done(ss, l->want, rc, l->arg);
        ss->side_state = -ENOENT;
        ss->side = (struct buf){0};
    }
    stream__load_free(l);
    streams__pooled_end(ss); /* may free ss (stopped, its last work) */
}

void streams__load_pump(struct streams *ss)
{
    struct streams_load *l = ss->load_waiting;
    if (l == NULL || streams__pooled_start(ss, &l->work, stream__load_work, stream__load_done) != 0)
        return;
    ss->load_waiting = NULL;
    ss->loading_shards = l;
}

void streams__load_stop(struct streams *ss)
{
    struct streams_load *l = ss->load_waiting;
    if (l == NULL)
        return;
    ss->load_waiting = NULL;
    if (!ss->stopped)
        l->done(ss, l->want, -ESHUTDOWN, l->arg);
    stream__load_free(l);
}

int streams_load_shards_start(struct streams *ss, const uint64_t *bitmap, streams_load_cb done, void *arg)
{
    if (store_read_slots(ss->store) == 0)
        return -ENOTSUP;
    if (ss->load_waiting || ss->loading_shards)
        return -EBUSY;
    struct streams_load *l = xcalloc(1, sizeof *l);
    if (!stream__to_load(ss, bitmap, l->want)) {
        free(l);
        return -EALREADY;
    }
    l->ss = ss;
    l->store = ss->store;
    l->done = done;
    l->arg = arg;
    l->work.data = l;
    l->filter = streams__store_filter(ss, l->want) ? l->want : NULL;
    if (*ss->side_path) {
        int k = streams_shard_of(ss, ss->side_path, strlen(ss->side_path));
        l->side = !streams_shard_loaded(ss, k) && !stream__bit(l->want, k);
        snprintf(l->side_path, sizeof l->side_path, "%s", ss->side_path);
    }
    ss->load_waiting = l;
    streams__load_pump(ss); /* else it waits for a reader: the next read to end starts it */
    return 0;
}

int streams_loading(const struct streams *ss) { return ss->load_waiting || ss->loading_shards; }

void streams_load_side(struct streams *ss, const char *path)
{
    snprintf(ss->side_path, sizeof ss->side_path, "%s", path);
    ss->side_state = -ENOENT;
}

int streams_load_side_read(struct streams *ss, const char *path, struct buf *out)
{
    if (streams_shard_loaded(ss, streams_shard_of(ss, path, strlen(path))))
        return 0; /* its shard is here: streams_lookup knows */
    if (strcmp(path, ss->side_path) != 0 || ss->side_state < 0)
        return -ENOENT;
    if (ss->side_state == 1)
        buf_append(out, ss->side.p ? ss->side.p : "", ss->side.len);
    return ss->side_state;
}

/* ================= dropping ================= */

struct stream__drop {
    int k;
    struct stream__list l;
};

static void stream__collect_shard(const char *key, void *value, void *arg)
{
    struct stream__drop *d = arg;
    struct stream *st = value;
    if (!st->foreign && (int)st->shard == d->k)
        stream__list_add(&d->l, st);
}

void streams_drop_shard(struct streams *ss, int k)
{
    if (!streams_shard_loaded(ss, k))
        return;
    assert(!streams_shard_busy(ss, k));
    ss->loaded[k / 64] &= ~(1ull << (k % 64));
    ss->held[k / 64] &= ~(1ull << (k % 64));
    streams__drop_refs(ss, k);
    struct stream__drop d = {.k = k};
    map_each(&ss->by_id, stream__collect_shard, &d);
    /* Each becomes a stub first (out of by_path, no subscribers, producers or cache); the sweep then
     * frees those no loaded stream reads through. */
    for (size_t i = 0; i < d.l.n; i++) {
        struct stream *st = d.l.v[i];
        if (st->m.path && map_get(&ss->by_path, st->m.path, strlen(st->m.path)) == st)
            map_del(&ss->by_path, st->m.path, strlen(st->m.path));
        st->foreign = 1;
        stream__notify(st, STREAM_EV_MOVED);
        while (st->subs.next != &st->subs)
            stream_unsubscribe(st->subs.next);
        stream__free_producers(st);
        stream__cache_free(st);
        st->tail_read = 0;
    }
    free(d.l.v);
    streams__sweep_stubs(ss);
}
