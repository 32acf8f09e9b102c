/*
 * stream_fork — fork references (doc/SHARDING-PLAN.md §2.3): a source's refs are written only by
 * the registry that holds the source's shard (its owner), through ref and unref; a fork's own
 * owner asks for them. In one process both are here, and the calls are local; a source this
 * registry does not hold answers -EREMOTE, which serve/ is to turn into a request to the source's
 * owner (increment 4).
 *
 * What the owner keeps: the set of refs of its loaded sources (ss->refs, "src:fork" keys, loaded
 * with the shard: store_load_refs), whose size is the source's m.refcount. A set, so that a ref or
 * an unref sent twice (a retried request) counts once. The store keeps the same set (store.h, "Fork
 * references"); on PostgreSQL a ref can outlive its fork (the fork's create failed after the ref
 * committed; an unref lost), so the owner's sweep (every 60 s) reconciles: it unrefs the refs whose
 * fork row is gone (at two sweeps running), and reclaims each deleted source left without refs, up
 * the chain.
 */
#include "stream/stream.h"
#include "stream/stream_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_FORK_SWEEP_MS 60000

static size_t stream__ref_key(int64_t src, int64_t fork, char key[48])
{
    return (size_t)snprintf(key, 48, "%" PRId64 ":%" PRId64, src, fork);
}

int stream__ref_add(struct streams *ss, struct stream *src, int64_t fork)
{
    char key[48];
    size_t n = stream__ref_key(src->m.id, fork, key);
    if (map_get(&ss->refs, key, n))
        return 0;
    map_put(&ss->refs, key, n, ss);
    src->m.refcount++;
    int rc = store_fork_ref(ss->store, src->m.id, fork);
    /* the row's refcount column says it too (SQLite's record of the refs) */
    return rc ? rc : store_stream_update(ss->store, &src->m);
}

/* Is src's shard held here, so that its refs are this registry's to write? */
static struct stream *stream__owned_src(struct streams *ss, int64_t src_id)
{
    struct stream *src = stream__by_id(ss, src_id);
    return src && stream__writable(ss, src) ? src : NULL;
}

int streams_fork_unref(struct streams *ss, int64_t src_id, int64_t fork)
{
    struct stream *src = stream__owned_src(ss, src_id);
    if (src == NULL)
        return -EREMOTE;
    char key[48];
    size_t n = stream__ref_key(src_id, fork, key);
    int counted = map_del(&ss->refs, key, n) != NULL;
    if (counted)
        src->m.refcount--;
    /* written even when not counted: a ref of the store's the registry never loaded (leaked) */
    (void)store_fork_unref(ss->store, src_id, fork);
    streams__arm(ss);
    if (src->m.refcount <= 0 && src->m.deleted)
        stream__retire(ss, src, 0); /* reclaimed, and unrefs its own source in turn */
    else if (counted)
        (void)store_stream_update(ss->store, &src->m);
    return 0;
}

void streams_set_unref_remote(struct streams *ss, streams_unref_cb cb, void *arg)
{
    ss->unref_remote = cb;
    ss->unref_arg = arg;
}

int streams_reserve_id(struct streams *ss, int64_t *id) { return store_stream_id_reserve(ss->store, id); }

/* ---- loading and dropping a shard's refs ---- */

void streams__load_ref(int64_t src_id, int64_t fork, void *arg)
{
    struct streams *ss = arg;
    struct stream *src = stream__by_id(ss, src_id);
    if (src == NULL || !src->loading || src->foreign)
        return;
    char key[48];
    size_t n = stream__ref_key(src_id, fork, key);
    if (map_put(&ss->refs, key, n, ss) == NULL)
        src->m.refcount++;
}

int streams__load_refs(struct streams *ss, const uint64_t *filter)
{
    return store_load_refs(ss->store, filter, streams__load_ref, ss);
}

struct stream__refs_drop {
    struct streams *ss;
    int k;
    char **keys;
    size_t n, cap;
};

static void stream__collect_ref(const char *key, void *value, void *arg)
{
    struct stream__refs_drop *d = arg;
    struct stream *src = stream__by_id(d->ss, strtoll(key, NULL, 10));
    if (src && (int)src->shard != d->k)
        return;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->keys = xrealloc(d->keys, d->cap * sizeof *d->keys);
    }
    d->keys[d->n++] = xstrdup(key);
}

void streams__drop_refs(struct streams *ss, int k)
{
    struct stream__refs_drop d = {.ss = ss, .k = k};
    map_each(&ss->refs, stream__collect_ref, &d);
    for (size_t i = 0; i < d.n; i++) {
        map_del(&ss->refs, d.keys[i], strlen(d.keys[i]));
        free(d.keys[i]);
    }
    free(d.keys);
}

/* ---- the owner's sweep ---- */

void streams__collect_pair(int64_t src, int64_t fork, void *arg)
{
    struct stream__pairs *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n][0] = src;
    l->v[l->n++][1] = fork;
}

struct stream__orphans {
    struct streams *ss;
    struct stream__pairs ids; /* [0]: the id of a deleted source without refs */
};

static void stream__collect_orphan(const char *key, void *value, void *arg)
{
    struct stream__orphans *o = arg;
    struct stream *st = value;
    if (st->m.deleted && st->m.refcount <= 0 && stream__writable(o->ss, st))
        streams__collect_pair(st->m.id, 0, &o->ids);
}

int64_t streams__fork_sweep_ms(void)
{
    const char *e = getenv("AGENTD_TEST_FORK_SWEEP_MS"); /* tests only: pg_fork_refs.t */
    return e && atoll(e) > 0 ? atoll(e) : STREAM_FORK_SWEEP_MS;
}

const uint64_t *streams__store_filter(struct streams *ss, const uint64_t *bits)
{
    /* The registry's numbering is the store's only when the counts agree (a test-only count on
     * SQLite, or the default of one shard on PostgreSQL's 64, does not): otherwise every row. */
    return ss->nshards == store_shards(ss->store, NULL, 0) ? bits : NULL;
}

/* The refs found without a fork row: removed when the sweep before found them too. */
static void stream__sweep_leaked(struct streams *ss, const struct stream__pairs *l)
{
    /* A ref is removed only when the sweep before found it without a fork row too: a fork's owner
     * commits the fork after its ref (another node, once shards have several holders), and one sweep
     * apart is far longer than that takes. A fork in memory is in a batch not committed yet. */
    struct map seen = {0};
    for (size_t i = 0; i < l->n; i++) {
        char key[48];
        size_t n = stream__ref_key(l->v[i][0], l->v[i][1], key);
        if (stream__by_id(ss, l->v[i][1]) != NULL)
            continue;
        if (map_get(&ss->suspects, key, n) == NULL)
            map_put(&seen, key, n, ss);
        else if (streams_fork_unref(ss, l->v[i][0], l->v[i][1]) == 0)
            log_info("stream: fork reference %" PRId64 " -> %" PRId64 " had no fork; removed", l->v[i][1],
                     l->v[i][0]);
    }
    map_clear(&ss->suspects);
    ss->suspects = seen;
}

/* The sweep's query on a reader: its anti-join reads every ref of the held shards, which would
 * hold the loop (170 ms for 100,000 refs). */
struct stream__sweep_work {
    uv_work_t work;
    struct streams *ss;
    struct store *store;
    uint64_t shards[STORE_SHARD_WORDS];
    int all; /* every row (the numberings differ) */
    int rc;
    struct stream__pairs l;
};

static void stream__sweep_work(uv_work_t *w)
{
    struct stream__sweep_work *sw = w->data;
    sw->rc =
        store_fork_refs_leaked_pooled(sw->store, sw->all ? NULL : sw->shards, streams__collect_pair, &sw->l);
}

static void stream__sweep_done(uv_work_t *w, int status)
{
    struct stream__sweep_work *sw = w->data;
    struct streams *ss = sw->ss;
    ss->fork_sweeping = 0;
    if (!ss->stopped && !ss->unavailable && status == 0) {
        if (sw->rc != 0)
            log_warn("stream: cannot read the fork references to reconcile: %s", strerror(-sw->rc));
        else
            stream__sweep_leaked(ss, &sw->l);
    }
    free(sw->l.v);
    free(sw);
    streams__pooled_end(ss);
}

/* Queues the sweep's query on a reader: 0, or -EBUSY (every reader taken: the next tick tries). */
static int stream__sweep_queue(struct streams *ss)
{
    struct stream__sweep_work *sw = xcalloc(1, sizeof *sw);
    sw->ss = ss;
    sw->store = ss->store;
    sw->work.data = sw;
    const uint64_t *filter = streams__store_filter(ss, ss->held);
    sw->all = filter == NULL;
    if (filter)
        memcpy(sw->shards, filter, sizeof sw->shards);
    int rc = streams__pooled_start(ss, &sw->work, stream__sweep_work, stream__sweep_done);
    if (rc != 0)
        free(sw);
    else
        ss->fork_sweeping = 1;
    return rc;
}

void streams__fork_sweep(struct streams *ss, int64_t now_ms)
{
    if (ss->unavailable || ss->fork_sweeping || now_ms - ss->fork_swept_ms < ss->fork_sweep_ms)
        return;
    if (store_read_slots(ss->store) > 0) {
        if (stream__sweep_queue(ss) != 0)
            return;
    } else { /* SQLite: no ref leaks (the query reads nothing) */
        struct stream__pairs l = {0};
        if (store_fork_refs_leaked(ss->store, streams__store_filter(ss, ss->held), streams__collect_pair,
                                   &l) != 0)
            log_warn("stream: cannot read the fork references to reconcile: %s", store_errmsg(ss->store));
        stream__sweep_leaked(ss, &l);
        free(l.v);
    }
    ss->fork_swept_ms = now_ms;
    struct stream__orphans o = {.ss = ss};
    map_each(&ss->by_id, stream__collect_orphan, &o);
    for (size_t i = 0; i < o.ids.n; i++) {
        struct stream *st = stream__by_id(ss, o.ids.v[i][0]);
        if (st && st->m.refcount <= 0) /* a cascade above may have taken it */
            stream__retire(ss, st, 0);
    }
    free(o.ids.v);
}
