/*
 * Unit tests for src/stream/stream_shard.c: the registry by shard (doc/SHARDING-PLAN.md §4,
 * increment 2), on a real SQLite store with a test-only shard count of 4. Dropping a shard tells its
 * live readers MOVED (not GONE), frees its tail caches and lets a read in flight complete; writes to
 * it are refused before they join a batch; loading it again brings the same tails and producers
 * back; forks in other shards keep reading through a dropped source. With one shard (the default)
 * nothing of this shows: test_stream.c and test_stream_cache.c run as before.
 */
#define NSHARDS 4
#include "stream_fixture.h"

/* ---- live readers, as stream_http's long-poll and SSE and the session WebSocket hold them ---- */

struct reader {
    struct stream_sub sub;
    int events[STREAM_EV_MOVED + 1];
    int leaves; /* unsubscribes itself on an ending event, as SSE and long-poll do */
};

static void reader_cb(struct stream_sub *sub, enum stream_event ev)
{
    struct reader *r = sub->arg;
    r->events[ev]++;
    if (r->leaves && ev != STREAM_EV_DATA && ev != STREAM_EV_CLOSED)
        stream_unsubscribe(sub);
}

static void reader_on(struct reader *r, struct stream *st, int leaves)
{
    memset(r, 0, sizeof *r);
    r->sub.cb = reader_cb;
    r->sub.arg = r;
    r->leaves = leaves;
    stream_subscribe(st, &r->sub);
}

/* ---- a read in libuv's thread pool ---- */

struct async_read {
    int done, rc;
    int64_t id, tail;
};

static void async_read_cb(struct stream_read_done *d, void *arg)
{
    struct async_read *a = arg;
    a->done = 1;
    a->rc = d->rc;
    a->id = d->id;
    a->tail = d->tail;
}

/* Paths of the tests: A and A2 in the shard dropped (k), B in another one; F forks A from B's shard
 * (reads through A), G forks B from A's (B's refcount counts it). */
static int k;
static const char *pa, *pa2, *pb, *pf, *pg;

static void test_defaults(void)
{
    char err[256];
    struct streams *one;
    struct streams_config cfg = {.max_append = 1 << 20, .read_chunk = 1 << 20};
    if (streams_new(&one, &loop, store, &cfg, err, sizeof err) != 0)
        return (void)ok(0, "a registry with the default configuration: %s", err);
    is_int(streams_shards(one), 1, "by default a registry has one shard");
    ok(streams_shard_loaded(one, 0) && streams_shard_held(one, 0), "... loaded and held");
    is_int(streams_shard_of(one, "t/x", 3), 0, "every path is in it");
    is_int(streams_shard_of(one, "sessions/abc/transcript", 23), 0, "sessions' paths too");
    streams_free(one);
    uv_run(&loop, UV_RUN_NOWAIT);
    cfg.shards = STORE_SHARDS + 1;
    is_int(streams_new(&one, &loop, store, &cfg, err, sizeof err), -EINVAL,
           "more than STORE_SHARDS is refused");
}

static void test_setup(void)
{
    k = shard("t/a0");
    pa = path_in("t/a", k, 0);
    pa2 = path_in("t/aa", k, 0);
    pb = path_in("t/b", k, 1);
    pf = path_in("t/f", shard(pb), 0);
    pg = path_in("t/g", k, 0);
    is_int(streams_shards(ss), NSHARDS, "the registry has the shard count it was given");
    is_int(create(pa, "a0.", NULL), STREAM_CREATED, "A created in shard %d", k);
    is_int(append(pa, "a1.", "p1", 0), STREAM_OK, "A appended by producer p1 (seq 0)");
    is_int(create(pa2, "x", NULL), STREAM_CREATED, "A2 created in shard %d", k);
    is_int(create(pb, "b0.", NULL), STREAM_CREATED, "B created in shard %d", shard(pb));
    is_int(create(pf, "f0.", pa), STREAM_CREATED, "F, in B's shard, forks A (another shard)");
    is_int(create(pg, "g0.", pb), STREAM_CREATED, "G, in A's shard, forks B");
}

static void test_busy_and_held(void)
{
    struct stream_op op = {0};
    is_int(append_q(get(pa), "a2.", "p1", 1, &op), STREAM_OK, "an append to A is queued");
    ok(streams_shard_busy(ss, k), "while it is queued, A's shard is busy");
    ok(!streams_shard_busy(ss, shard(pb)), "... and B's is not");
    streams_flush(ss);
    ok(!streams_shard_busy(ss, k), "once flushed (committed and durable) it is not");

    streams_shard_hold(ss, k, 0);
    ok(streams_shard_loaded(ss, k) && !streams_shard_held(ss, k), "a shard let go of is loaded, not held");
    memset(&op, 0, sizeof op);
    is_int(append_q(get(pa), "no.", NULL, 0, &op), STREAM_MOVED, "an append to it is refused: moved");
    ok(!op.queued && !streams_shard_busy(ss, k), "... before it joins the batch");
    is_read(pa, "a0.a1.a2.", "its streams are still read");
    streams_shard_hold(ss, k, 1);
}

/* A stream that expires in a shard let go of (loaded, not held: the first step of a hand-off) is
 * gone for its readers, but its expiry is not written here: that write would join the batch, which
 * the shard's fence (its next holder's now) would fail, with every other shard's writes in it, and
 * it would leave the shard busy for the drop that follows. Its next holder expires it. */
static void test_expiry_not_held(void)
{
    const char *pe = path_in("t/e", k, 0);
    struct stream_create_args a = {.content_type = "text/plain",
                                   .ttl_s = -1,
                                   .expires_at_ms = clock_wall_ms() + 50,
                                   .body = "e0.",
                                   .body_len = 3};
    struct stream_op op = {.cb = done_cb};
    is_int(stream_create(ss, pe, strlen(pe), &a, &op), STREAM_CREATED,
           "E created in shard %d, expiring in 50 ms", k);
    streams_flush(ss);
    streams_shard_hold(ss, k, 0);
    usleep(80 * 1000);
    ok(get(pe) == NULL, "E expired while its shard is let go of: not found");
    ok(!streams_shard_busy(ss, k), "... and its expiry joined no batch (the shard is not busy)");
    ok(!store_batch_open(store), "... nothing was written to the store");
    streams_shard_hold(ss, k, 1);
    ok(get(pe) == NULL, "held again: E is expired");
    ok(streams_shard_busy(ss, k), "... and now its expiry is written");
    streams_flush(ss);
}

static void test_drop(void)
{
    struct reader sse, lp, ws;
    struct stream *a = get(pa);
    reader_on(&sse, a, 1);
    reader_on(&lp, a, 1);
    reader_on(&ws, a, 0); /* one that does not leave by itself: the drop unsubscribes it */
    size_t subs_before = streams_subscriber_count(ss), cached_before = ss->caches.bytes;
    is_int(append(pa, "a3.", "p1", 2), STREAM_OK, "an append to A while it has live readers");
    is_int(sse.events[STREAM_EV_DATA], 1, "the readers are woken");
    ok(a->cache != NULL && ss->caches.bytes > 0, "A has a warm tail cache (%zu bytes)", ss->caches.bytes);

    /* A read of A2 (which the drop frees: no fork reads through it) in the thread pool, in flight
     * across the drop. SQLite's test slots queue it there as PostgreSQL's reader pool would, where
     * it fails -ENOTSUP: what it shows is that its completion uses nothing of the freed stream (ASan
     * would see it) and still describes A2 as it was when the read started. */
    store_test_read_slots(store, 1);
    struct async_read rd = {0};
    int64_t a2_id, a2_created;
    stream_identity(get(pa2), &a2_id, &a2_created);
    struct stream_read *inflight = stream_read_start(ss, get(pa2), 0, 1 << 20, async_read_cb, &rd);
    ok(inflight != NULL && !rd.done, "a read of A2 is in flight in the thread pool");

    ok(!streams_shard_busy(ss, k), "nothing of A's shard is in flight (reads do not count)");
    streams_drop_shard(ss, k);
    is_int(sse.events[STREAM_EV_MOVED], 1, "an SSE reader of A is told MOVED");
    is_int(lp.events[STREAM_EV_MOVED], 1, "a long-poll of A is told MOVED");
    is_int(ws.events[STREAM_EV_MOVED], 1, "a reader that stays subscribed is told MOVED");
    is_int(sse.events[STREAM_EV_GONE] + lp.events[STREAM_EV_GONE] + ws.events[STREAM_EV_GONE], 0,
           "none is told GONE (the stream was not deleted: no 404)");
    ok(ws.sub.stream == NULL, "every reader is unsubscribed");
    is_int(streams_subscriber_count(ss), subs_before - 3, "the registry counts none of them");
    is_int(ss->caches.bytes, cached_before, "A's tail cache is freed");
    ok(!streams_shard_loaded(ss, k) && !streams_shard_held(ss, k), "the shard is neither loaded nor held");
    ok(get(pa) == NULL && get(pa2) == NULL && get(pg) == NULL, "its streams are not found");
    ok(get(pb) != NULL && get(pf) != NULL, "other shards' streams are");

    for (int turns = 0; !rd.done && turns < 1000; turns++)
        uv_run(&loop, UV_RUN_ONCE);
    ok(rd.done, "the read in flight completes after the drop freed A2");
    is_int(rd.rc, -ENOTSUP, "... with what SQLite's pooled read answers (no error of the drop's)");
    ok(rd.id == a2_id && rd.tail == 1, "... describing A2 as it was when it started");
    store_test_read_slots(store, 0);

    is_read(pf, "a0.a1.f0.",
            "F, in another shard, still reads through A (kept as a stub while F reads through it)");
    is_read(pb, "b0.", "B reads as before");
}

static void test_writes_after_drop(void)
{
    struct stream_op ob = {0}, oa = {0}, of = {0}, oc = {0};
    done_ok = done_failed = 0;
    is_int(append_q(get(pb), "b1.", NULL, 0, &ob), STREAM_OK, "an append to B joins the batch");
    is_int(create_q(pa, "new", NULL, &oa), STREAM_MOVED, "in the same batch, a create at A's path: moved");
    ok(!oa.queued, "... refused before it joins the batch");
    is_str(oa.result.message, "this node does not serve the stream's shard now", "... saying why");
    is_int(create_q(path_in("t/nf", k, 1), NULL, pa, &of), STREAM_MOVED,
           "a fork of A (its shard not held) from a held shard: moved, not 404");
    is_int(create_q(path_in("t/c", k, 1), "c0.", NULL, &oc), STREAM_CREATED,
           "a create in another shard joins it");
    streams_flush(ss);
    is_int(done_ok, 2, "B's append and the other create complete");
    is_int(done_failed, 0, "nothing of the batch failed");
    is_read(pb, "b0.b1.", "B's append is stored");
}

static void test_reload(void)
{
    uint64_t bits[STORE_SHARD_WORDS] = {0};
    bits[k / 64] |= 1ull << (k % 64);
    struct stream *stub = stream__by_id(ss, get(pf)->src->m.id);
    is_int(streams_load_shards(ss, bits), 0, "shard %d loads again", k);
    ok(streams_shard_loaded(ss, k) && streams_shard_held(ss, k), "it is loaded and held");
    struct stream *a = get(pa);
    ok(a != NULL, "A is found again");
    ok(a == stub && get(pf)->src == a, "A is the stub F read through (F's pointer stays good)");
    is_int(a ? stream_tail(a) : -1, 12, "A's tail is back");
    is_read(pa, "a0.a1.a2.a3.", "A's bytes");
    is_read(pa2, "x", "A2 is back");
    is_read(pg, "b0.g0.", "G (A's shard, forking B) is back and reads through B");
    ok(get(pg) && get(pg)->src == get(pb), "G links to the B already loaded");
    is_int(append(pa, "dup", "p1", 2), STREAM_DUPLICATE, "producer p1's state is back: seq 2 is a duplicate");
    is_int(append(pa, "a4.", "p1", 3), STREAM_OK, "... and seq 3 appends");
    is_read(pf, "a0.a1.f0.", "F reads as before");
    is_int(append(pb, "b2.", NULL, 0), STREAM_OK, "B (loaded all along) kept its in-memory state");
    is_read(pb, "b0.b1.b2.", "... and its bytes");
    is_int(streams_load_shards(ss, bits), 0, "loading a loaded shard again does nothing");
    is_read(pa, "a0.a1.a2.a3.a4.", "... A is the same");
}

/* A deleted source read by a fork of another shard, dropped and loaded again; a fork's delete does
 * not write the refcount of a source in a shard not held. */
static void test_deleted_source(void)
{
    struct stream_op op = {0};
    const char *ps = path_in("t/s", k, 0), *pfs = path_in("t/fs", k, 1);
    is_int(create(ps, "s0.", NULL), STREAM_CREATED, "S created in shard %d", k);
    is_int(create(pfs, "fs.", ps), STREAM_CREATED, "FS forks S from another shard");
    op.cb = done_cb;
    is_int(stream_delete(ss, get(ps), &op), STREAM_OK, "S deleted: soft, FS reads through it");
    streams_flush(ss);
    uint64_t bits[STORE_SHARD_WORDS] = {0};
    bits[k / 64] |= 1ull << (k % 64);
    streams_drop_shard(ss, k);
    is_read(pfs, "s0.fs.", "FS reads through deleted S with S's shard dropped");
    is_int(streams_load_shards(ss, bits), 0, "S's shard loads again");
    enum stream_lookup how;
    streams_lookup(ss, ps, strlen(ps), &how);
    is_int(how, STREAM_SOFT_DELETED, "S is soft-deleted again");
    is_read(pfs, "s0.fs.", "FS reads through it");
}

/* A path-less source (expired while a fork read through it), as a new registry loads it from a
 * store that keeps no shard of its own: it takes its fork's shard, goes with it, and comes back
 * with it. */
static void test_detached_source(void)
{
    const char *pd = path_in("t/d", k, 0), *pfd = path_in("t/fd", k, 1);
    struct stream_create_args a = {.content_type = "text/plain",
                                   .ttl_s = -1,
                                   .expires_at_ms = clock_wall_ms() + 50,
                                   .body = "d0.",
                                   .body_len = 3};
    struct stream_op op = {.cb = done_cb};
    is_int(stream_create(ss, pd, strlen(pd), &a, &op), STREAM_CREATED, "D created, expiring in 50 ms");
    streams_flush(ss);
    struct stream_create_args f = {.content_type = "text/plain",
                                   .ttl_s = 3600, /* its own: a fork inherits its source's expiry */
                                   .expires_at_ms = -1,
                                   .fork_from = pd,
                                   .body = "fd.",
                                   .body_len = 3};
    is_int(stream_create(ss, pfd, strlen(pfd), &f, &op), STREAM_CREATED, "FD forks D from another shard");
    streams_flush(ss);
    usleep(80 * 1000);
    ok(get(pd) == NULL, "D expired: its path is free");
    streams_flush(ss);
    is_read(pfd, "d0.fd.", "FD reads through detached D");

    close_registry();
    open_registry(NSHARDS);
    struct stream *d = get(pfd) ? get(pfd)->src : NULL;
    ok(d != NULL && d->m.path == NULL, "a new registry loads D without a path, linked from FD");
    is_int(d ? (int)d->shard : -1, shard(pfd), "D takes the shard of FD, the fork that reads through it");
    is_read(pfd, "d0.fd.", "FD reads through it");
    int j = shard(pfd);
    uint64_t bits[STORE_SHARD_WORDS] = {0};
    bits[j / 64] |= 1ull << (j % 64);
    streams_drop_shard(ss, j);
    ok(get(pfd) == NULL, "FD's shard dropped: FD is gone from memory (and D with it: no leak)");
    is_int(streams_load_shards(ss, bits), 0, "FD's shard loads again");
    is_read(pfd, "d0.fd.", "FD reads through D again");
}

/* A detached source whose forks are in two shards, its own shard (its former path's) dropped while
 * the other fork keeps it as a stub, then loaded again: it is that shard's loaded stream again, not a
 * stub for ever (its forks' unrefs would be another owner's, -EREMOTE, and it never reclaimed). */
static void test_detached_two_shards(void)
{
    const char *pd = path_in("t/dd", k, 0), *pin = path_in("t/din", k, 0), *pout = path_in("t/dout", k, 1);
    struct stream_create_args a = {.content_type = "text/plain",
                                   .ttl_s = -1,
                                   .expires_at_ms = clock_wall_ms() + 50,
                                   .body = "d0.",
                                   .body_len = 3};
    struct stream_op op = {.cb = done_cb};
    is_int(stream_create(ss, pd, strlen(pd), &a, &op), STREAM_CREATED,
           "D created in shard %d, expiring in 50 ms", k);
    streams_flush(ss);
    struct stream_create_args f = {
        .content_type = "text/plain", .ttl_s = 3600, .expires_at_ms = -1, .fork_from = pd};
    struct stream_op o2 = {.cb = done_cb};
    is_int(stream_create(ss, pin, strlen(pin), &f, &op), STREAM_CREATED, "DIN forks D in D's shard");
    is_int(stream_create(ss, pout, strlen(pout), &f, &o2), STREAM_CREATED, "DOUT forks D in another shard");
    streams_flush(ss);
    usleep(80 * 1000);
    ok(get(pd) == NULL, "D expired: detached, its forks read through it");
    streams_flush(ss);
    int64_t id = get(pin)->src->m.id;
    uint64_t bits[STORE_SHARD_WORDS] = {0};
    bits[k / 64] |= 1ull << (k % 64);
    streams_drop_shard(ss, k);
    ok(stream__by_id(ss, id) && stream__by_id(ss, id)->foreign,
       "D's shard dropped: D is a stub DOUT reads through");
    is_int(streams_load_shards(ss, bits), 0, "D's shard loads again");
    struct stream *d = stream__by_id(ss, id);
    ok(d && !d->foreign && (int)d->shard == k, "D is its shard's loaded stream again, not a stub");
    ok(get(pin) && get(pin)->src == d, "DIN reads through it");
    op = (struct stream_op){.cb = done_cb};
    stream_delete(ss, get(pin), &op);
    streams_flush(ss);
    op = (struct stream_op){.cb = done_cb};
    stream_delete(ss, get(pout), &op);
    streams_flush(ss);
    ok(stream__by_id(ss, id) == NULL, "both forks deleted: D is reclaimed");
}

/* A registry made with only some shards (--shard-policy balance: a node's first take) loads those
 * alone, not every stream of the store to drop the rest; a fork reads through a source of a shard
 * not loaded as a stub. */
static void test_first(void)
{
    close_registry();
    uint64_t first[STORE_SHARD_WORDS] = {0};
    int kb = shard(pb);
    first[kb / 64] |= 1ull << (kb % 64);
    char err[256];
    struct streams_config cfg = {.max_append = 1 << 20,
                                 .read_chunk = 1 << 20,
                                 .cache_bytes = 1 << 20,
                                 .shards = NSHARDS,
                                 .first = first};
    is_int(streams_new(&ss, &loop, store, &cfg, err, sizeof err), 0, "a registry of shard %d only", kb);
    ok(streams_shard_held(ss, kb) && streams_shard_loaded(ss, kb), "shard %d is loaded and held", kb);
    ok(!streams_shard_loaded(ss, k) && !streams_shard_held(ss, k), "shard %d is not loaded", k);
    ok(get(pa2) == NULL, "A2 (shard %d) is not in memory", k);
    is_read(pb, "b0.b1.b2.", "B is");
    is_int(create(path_in("t/z", k, 0), "z", NULL), STREAM_MOVED, "a create in shard %d answers moved", k);
}

static int load_rc = 1, load_calls;

static void load_done(struct streams *r, const uint64_t *shards, int rc, void *arg)
{
    load_rc = rc;
    load_calls++;
}

/* streams_load_shards_start: a store without readers (SQLite) says so; with readers (here
 * pretended: the worker's query fails -ENOTSUP) one load at a time, and a failed one leaves
 * nothing of its shard loaded, its callback run once on the loop. */
static void test_load_off_loop(void)
{
    int kb = shard(pb);
    uint64_t bits[STORE_SHARD_WORDS] = {0}, loaded[STORE_SHARD_WORDS] = {0};
    bits[k / 64] |= 1ull << (k % 64);
    loaded[kb / 64] |= 1ull << (kb % 64);
    is_int(streams_load_shards_start(ss, bits, load_done, NULL), -ENOTSUP, "no readers: -ENOTSUP");
    store_test_read_slots(store, 2);
    is_int(streams_load_shards_start(ss, loaded, load_done, NULL), -EALREADY, "a loaded shard: -EALREADY");
    is_int(streams_load_shards_start(ss, bits, load_done, NULL), 0, "the load of shard %d starts", k);
    is_int(streams_load_shards_start(ss, bits, load_done, NULL), -EBUSY, "one load at a time");
    ok(streams_loading(ss) && !streams_shard_loaded(ss, k), "it runs; shard %d is not loaded meanwhile", k);
    for (int i = 0; i < 1000 && load_calls == 0; i++)
        uv_run(&loop, UV_RUN_ONCE);
    ok(load_calls == 1 && load_rc == -ENOTSUP && !streams_loading(ss),
       "its callback ran once with the failure");
    ok(!streams_shard_loaded(ss, k) && get(pa2) == NULL, "nothing of shard %d is loaded", k);
    is_read(pb, "b0.b1.b2.", "B still is");
    store_test_read_slots(store, 0);
}

int main(void)
{
    fixture_open("stream-shard");
    test_defaults();
    open_registry(NSHARDS);
    test_setup();
    test_busy_and_held();
    test_expiry_not_held();
    test_drop();
    test_writes_after_drop();
    test_reload();
    test_deleted_source();
    test_detached_source();
    test_detached_two_shards();
    test_first();
    test_load_off_loop();
    fixture_close();
    return done_testing();
}
