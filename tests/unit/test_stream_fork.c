/*
 * Unit tests for src/stream/stream_fork.c and streams_fork_ref (stream_write.c): fork references
 * (doc/SHARDING-PLAN.md §2.3, increment 3) on a real SQLite store with a test-only shard count of
 * 4. The source's owner checks and answers a ref (the source's identity, its fork chain, the
 * sub-offset prefix) and counts it once however often it is sent; an unref likewise, and it reclaims
 * a deleted source left without refs; a source not held here is -EREMOTE; refs come back with a
 * reload; a fork whose source's shard is not loaded gets it loaded by id as a stub; the owner's
 * sweep reclaims a deleted source whose refs are gone.
 */
#define NSHARDS 4
#include "stream_fixture.h"

static struct stream *by_id(int64_t id) { return stream__by_id(ss, id); }

static int64_t id_of(const char *path)
{
    struct stream *st = get(path);
    return st ? st->m.id : -1;
}

static int fork_ref(const char *src, int64_t fork, const struct stream_fork_ask *ask0,
                    struct stream_fork_answer *out)
{
    struct stream_fork_ask ask = ask0 ? *ask0 : (struct stream_fork_ask){0};
    ask.fork = fork;
    int rc = streams_fork_ref(ss, src, strlen(src), &ask, out);
    streams_flush(ss);
    return rc;
}

static int unref(int64_t src, int64_t fork)
{
    int rc = streams_fork_unref(ss, src, fork);
    streams_flush(ss);
    return rc;
}

static enum stream_status delete (const char *path) {
    struct stream_op op = {.cb = done_cb}; enum stream_status s = stream_delete(ss, get(path), &op);
        streams_flush(ss); return s;
}

static void drop(int shard_k)
{
    streams_flush(ss);
    streams_drop_shard(ss, shard_k);
}

static void load(int shard_k)
{
    uint64_t bits[STORE_SHARD_WORDS] = {0};
    bits[shard_k / 64] |= 1ull << (shard_k % 64);
    is_int(streams_load_shards(ss, bits), 0, "shard %d loaded", shard_k);
}

static const char *ps, *pf, *pf2;
static int ks;

static void test_answer(void)
{
    struct stream_fork_answer a;
    ks = shard("t/s0");
    ps = path_in("t/s", ks, 0);
    pf = path_in("t/f", ks, 1);
    pf2 = path_in("t/ff", shard(pf), 0);
    is_int(create(ps, "abcdef", NULL), STREAM_CREATED, "S created in shard %d", ks);

    is_int(fork_ref(ps, 0, NULL, &a), 0, "a ref of S, asked where S's shard is held, is answered here");
    is_int(a.status, STREAM_OK, "... accepted");
    is_int(a.fork_off, 6, "... at S's tail when no offset is asked for");
    ok(a.n == 1 && a.chain[0].id == id_of(ps) && a.chain[0].tail == 6 && a.chain[0].fork_src == 0,
       "... answered with S's identity: its id, tail, and no source of its own");
    is_str(a.chain[0].content_type, "text/plain", "... and its content type");
    is_int(get(ps)->m.refcount, 0, "a ref asked with no fork id writes nothing");
    stream_fork_answer_clear(&a);

    struct stream_fork_ask ask = {.has_offset = 1, .offset = 2, .sub = 3};
    is_int(fork_ref(ps, 0, &ask, &a), 0, "a ref at offset 2 with sub-offset 3");
    ok(a.status == STREAM_OK && a.fork_off == 2, "... accepted at 2");
    ok(a.prefix.len == 3 && memcmp(a.prefix.p, "cde", 3) == 0, "... with the prefix the fork starts with");
    stream_fork_answer_clear(&a);

    ask = (struct stream_fork_ask){.has_offset = 1, .offset = 7};
    fork_ref(ps, 0, &ask, &a);
    is_int(a.status, STREAM_BAD_REQUEST, "an offset past S's tail is refused");
    stream_fork_answer_clear(&a);
    ask = (struct stream_fork_ask){.content_type = "application/json"};
    fork_ref(ps, 0, &ask, &a);
    is_int(a.status, STREAM_CONFLICT, "another content type is refused");
    stream_fork_answer_clear(&a);
    fork_ref("t/none", 0, NULL, &a);
    is_int(a.status, STREAM_NOT_FOUND, "a missing source: not found");
    stream_fork_answer_clear(&a);

    is_int(create(pf, "gh", ps), STREAM_CREATED, "F, in another shard, forks S");
    is_int(create(pf2, "ij", pf), STREAM_CREATED, "F2 forks F");
    is_int(get(ps)->m.refcount, 1, "S counts F's ref");
    is_int(fork_ref(pf2, 0, NULL, &a), 0, "a ref of F2");
    ok(a.n == 3 && a.chain[0].id == id_of(pf2) && a.chain[1].id == id_of(pf) && a.chain[2].id == id_of(ps),
       "... answers its fork chain: F2, F, S");
    ok(a.chain[1].fork_off == 6 && a.chain[0].fork_off == 8, "... with each fork point");
    stream_fork_answer_clear(&a);
}

static void test_ref_unref(void)
{
    struct stream_fork_answer a;
    int64_t s = id_of(ps);
    is_int(fork_ref(ps, 9001, NULL, &a), 0, "a ref of fork 9001");
    is_int(get(ps)->m.refcount, 2, "... counted");
    stream_fork_answer_clear(&a);
    fork_ref(ps, 9001, NULL, &a);
    stream_fork_answer_clear(&a);
    is_int(get(ps)->m.refcount, 2, "the same ref sent again counts once");
    is_int(unref(s, 9001), 0, "its unref");
    is_int(get(ps)->m.refcount, 1, "... uncounts it");
    is_int(unref(s, 9001), 0, "the same unref sent again");
    is_int(get(ps)->m.refcount, 1, "... changes nothing");

    drop(ks);
    is_int(fork_ref(ps, 9002, NULL, &a), -EREMOTE, "with S's shard dropped, a ref is its owner's (-EREMOTE)");
    is_int(unref(s, 9002), -EREMOTE, "... and so is an unref");
    load(ks);
    is_int(get(ps)->m.refcount, 1, "S loaded again counts F's ref");
    is_read(pf2, "abcdefghij", "F2 reads through F and S");
}

static void test_reclaim(void)
{
    struct stream_fork_answer a;
    const char *pt = path_in("t/t", ks, 0);
    is_int(create(pt, "t", NULL), STREAM_CREATED, "T created");
    fork_ref(pt, 9003, NULL, &a); /* a ref whose fork never comes: a create that failed after it */
    stream_fork_answer_clear(&a);
    int64_t t = id_of(pt);
    is_int(delete (pt), STREAM_OK, "T deleted");
    enum stream_lookup how;
    streams_lookup(ss, pt, strlen(pt), &how);
    is_int(how, STREAM_SOFT_DELETED, "... softly, while its ref stands");
    is_int(unref(t, 9003), 0, "the ref's unref");
    ok(by_id(t) == NULL, "... reclaims T");
    streams_lookup(ss, pt, strlen(pt), &how);
    is_int(how, STREAM_MISSING, "... and its path is free");

    /* the owner's sweep: a deleted source whose refs went while the registry was not looking */
    const char *pu = path_in("t/u", ks, 0);
    create(pu, "u", NULL);
    fork_ref(pu, 9004, NULL, &a);
    stream_fork_answer_clear(&a);
    int64_t u = id_of(pu);
    delete (pu);
    close_registry();
    open_registry(NSHARDS); /* SQLite's refs are its fork rows: 9004 has none */
    ok(by_id(u) && by_id(u)->m.deleted && by_id(u)->m.refcount == 0,
       "loaded again, deleted U has no refs left");
    is_int(get(ps)->m.refcount, 1, "... and S's ref from F is loaded");
    streams__fork_sweep(ss, clock_wall_ms() + 3600 * 1000);
    streams_flush(ss);
    ok(by_id(u) == NULL, "the owner's sweep reclaims U");
    ok(by_id(id_of(ps)) != NULL, "... and leaves S, which F reads through");
}

static void test_stub_by_id(void)
{
    int kf = shard(pf);
    int64_t s = id_of(ps);
    drop(ks);
    ok(by_id(s) && by_id(s)->foreign, "S's shard dropped: S stays as a stub, F reads through it");
    drop(kf);
    drop(shard(pf2));
    ok(by_id(s) == NULL && get(pf) == NULL, "F's shard dropped too: S and F are gone from memory");
    load(kf);
    struct stream *st = by_id(s);
    ok(st && st->foreign, "F's shard loaded alone: S is loaded by id, as a stub");
    ok(get(ps) == NULL, "... not at its path");
    ok(get(pf) && get(pf)->src == st, "... and F reads through it");
    is_read(pf, "abcdefgh", "F reads S's bytes and its own");
    load(ks);
    ok(get(ps) == st && !st->foreign, "S's shard loaded: the stub is S again");
    is_int(st->m.refcount, 1, "... counting F's ref");
    load(shard(pf2));
}

/* A fork's create with its source owner's answer (what serve/ is to do for a source of another node,
 * increment 4): the source is read through as a stub, its prefix comes from the answer. */
static void test_remote_create(void)
{
    const char *pr = path_in("t/r", ks, 0), *pg = path_in("t/g", ks, 1);
    is_int(create(pr, "abcde", NULL), STREAM_CREATED, "R created in shard %d", ks);
    int64_t r = id_of(pr);
    struct stream_fork_answer ans;
    struct stream_fork_ask ask = {.has_offset = 1, .offset = 1, .sub = 2};
    fork_ref(pr, 0, &ask, &ans);
    drop(ks);
    ok(by_id(r) == NULL, "R's shard dropped: R is not in memory");

    struct stream_create_args a = {.content_type = "text/plain",
                                   .ttl_s = -1,
                                   .expires_at_ms = -1,
                                   .fork_from = pr,
                                   .has_fork_offset = 1,
                                   .fork_offset = 1,
                                   .fork_sub = 2,
                                   .body = "xy",
                                   .body_len = 2};
    struct stream_op op = {.cb = done_cb};
    is_int(stream_create(ss, pg, strlen(pg), &a, &op), STREAM_MOVED,
           "a fork of R, with no answer from R's owner: moved (serve/ is to ask the owner)");
    a.fork_ref = &ans;
    memset(&op, 0, sizeof op);
    op.cb = done_cb;
    is_int(stream_create(ss, pg, strlen(pg), &a, &op), STREAM_MOVED,
           "... with an answer but no id (the owner wrote no ref: asked for a path that existed): moved");
    ok(get(pg) == NULL, "... and nothing made");
    a.id = 424242; /* the id the owner's ref names (SQLite's insert takes its own rowid) */
    memset(&op, 0, sizeof op);
    op.cb = done_cb;
    is_int(stream_create(ss, pg, strlen(pg), &a, &op), STREAM_CREATED, "... with its answer: G created");
    streams_flush(ss);
    struct stream *stub = by_id(r);
    ok(stub && stub->foreign && get(pg)->src == stub, "G reads through R as a stub");
    is_read(pg, "abcxy", "G reads R's byte below the fork point, the owner's prefix, and its own");
    is_int(get(pg)->m.fork_src, r, "G's row names R as its source");

    struct stream_fork_answer no = {.status = STREAM_CONFLICT, .message = "the fork source was deleted"};
    const char *ph = path_in("t/h", ks, 1);
    a.fork_ref = &no;
    memset(&op, 0, sizeof op);
    op.cb = done_cb;
    is_int(stream_create(ss, ph, strlen(ph), &a, &op), STREAM_CONFLICT,
           "an answer that refuses refuses the create");
    stream_fork_answer_clear(&ans);

    load(ks);
    ok(get(pr) == stub && !stub->foreign, "R's shard loaded again: the stub is R");
    is_int(stub->m.refcount, 1, "... counting G's ref");
}

int main(void)
{
    fixture_open("stream-fork");
    open_registry(NSHARDS);
    test_answer();
    test_ref_unref();
    test_reclaim();
    test_stub_by_id();
    test_remote_create();
    fixture_close();
    return done_testing();
}
