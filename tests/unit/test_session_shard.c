/*
 * Unit tests for src/session/session_shard.c: sessions by shard (doc/SHARDING-PLAN.md §3), on a real
 * SQLite store with a test-only shard count of 8. New sessions go to the emptiest shard and their
 * ids hash there; a shard with an open runtime is not idle and refuses to unload; an idle shard
 * unloads without writing and loads again with the same sessions; a load as an adoption (the
 * shard's previous holder was another node) tells the feed of each adopted session again, as the
 * producer shard-<k> with the shard's epoch.
 */
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session/session_int.h"
#include "store/store.h"
#include "stream/stream.h"
#include "tap.h"

#define NSHARDS 8

static uv_loop_t loop;
static struct store *store;
static struct streams *ss;
static struct sessions *reg;
static char dir[64];

/* Commits what is pending and runs the completions. */
static void settle(void)
{
    for (int i = 0; i < 50; i++) {
        streams_flush(ss);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static struct session *create(void)
{
    json_t *b = json_pack("{s:s}", "agent", "none");
    struct session *se = NULL;
    const char *why = NULL;
    int rc = session__create(reg, b, NULL, &se, &why);
    json_decref(b);
    if (rc != 0)
        bail_out("create: %s", why ? why : strerror(-rc));
    return se;
}

static int rt_done;
static void rt_cb(void *arg, const struct session_rt_answer *a) { rt_done = a->rc == 0 ? 1 : -1; }

/* The feed's state for producer shard-<k>: epoch and seq (-1 -1 when it has none). */
static void feed_producer(int k, int64_t *epoch, int64_t *seq)
{
    enum stream_lookup how;
    struct stream *feed = streams_lookup(ss, SESSION_FEED_STREAM, strlen(SESSION_FEED_STREAM), &how);
    char p[32];
    snprintf(p, sizeof p, "shard-%d", k);
    if (feed == NULL || stream_producer(feed, p, epoch, seq) != 0)
        *epoch = *seq = -1;
}

static void test_shards(void)
{
    struct session *v[2 * NSHARDS];
    for (int i = 0; i < 2 * NSHARDS; i++)
        v[i] = create();
    settle();
    int spread = 1;
    for (int k = 0; k < NSHARDS; k++)
        spread &= sessions_shard_count(reg, k) == 2;
    ok(spread, "16 sessions: 2 in each of the 8 shards");
    int hashed = 1;
    for (int i = 0; i < 2 * NSHARDS; i++) {
        char path[128];
        session__stream_path(v[i]->id, "transcript", path);
        hashed &= v[i]->shard == store_shard_of(path, strlen(path), NSHARDS);
    }
    ok(hashed, "each session's shard is its streams' shard (the hash of its id)");

    /* A runtime makes its shard busy. */
    struct session *busy = v[0];
    int k = busy->shard, other = v[1]->shard;
    char bid[SESSION_ID_LEN + 1], oid[SESSION_ID_LEN + 1];
    memcpy(bid, busy->id, sizeof bid);
    memcpy(oid, v[1]->id, sizeof oid);
    struct session_rt_request req = {.action = SESSION_RT_EXEC, .code = "true", .code_len = 4};
    ok(session_rt_start(reg, bid, &req, rt_cb, NULL) != NULL || rt_done, "a runtime call started");
    for (int i = 0; i < 5000 && rt_done == 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    is_int(rt_done, 1, "the runtime call completed; its runtime stays open");
    settle();
    is_int(sessions_shard_idle(reg, k), 0, "the shard of a session with an open runtime is not idle");
    is_int(sessions_unload_shard(reg, k), -EBUSY, "unloading it is refused");
    ok(sessions_exists(reg, bid) && sessions_shard_count(reg, k) == 2, "and its sessions stay");

    /* An idle shard unloads without a write, and loads again. */
    is_int(sessions_shard_idle(reg, other), 1, "another shard is idle");
    enum stream_lookup how;
    struct stream *feed = streams_lookup(ss, SESSION_FEED_STREAM, strlen(SESSION_FEED_STREAM), &how);
    char regpath[64];
    session__registry_path(reg, other, regpath);
    struct stream *r = streams_lookup(ss, regpath, strlen(regpath), &how);
    int64_t feed_tail = stream_tail(feed), reg_tail = r ? stream_tail(r) : -1;
    is_int(sessions_unload_shard(reg, other), 0, "it unloads");
    settle();
    ok(!sessions_exists(reg, oid) && sessions_shard_count(reg, other) == 0,
       "its sessions are gone from here");
    ok(stream_tail(feed) == feed_tail && stream_tail(r) == reg_tail, "nothing was written");
    is_int(sessions_unload_shard(reg, other), -ENOENT, "a shard not loaded cannot unload");
    json_t *b = json_pack("{s:s}", "agent", "none");
    struct session *se = NULL;
    const char *why = NULL;
    int placed = 1;
    for (int i = 0; i < NSHARDS; i++) {
        if (session__create(reg, b, NULL, &se, &why) != 0 || se->shard == other)
            placed = 0;
    }
    json_decref(b);
    ok(placed, "new sessions go to the shards loaded here only");
    settle();

    /* Loading it again as an adoption: the same sessions, and the feed hears of them. */
    int64_t e0, s0, e1, s1;
    feed_producer(other, &e0, &s0);
    is_int(e0, 1, "the shard's relay wrote with epoch 1 (SQLite)");
    is_int(sessions_load_shard(reg, other, 7, 1), 0, "the shard loads again (adopted, epoch 7)");
    is_int(sessions_load_shard(reg, other, 7, 1), -EALREADY, "twice is refused");
    ok(sessions_exists(reg, oid) && sessions_shard_count(reg, other) == 2, "its two sessions are back");
    settle();
    feed_producer(other, &e1, &s1);
    ok(e1 == 7 && s1 == 1,
       "the feed got one update per adopted session, as shard-<k> epoch 7 from seq 0 "
       "(epoch %lld seq %lld)",
       (long long)e1, (long long)s1);
    feed_producer(k, &e0, &s0);
    ok(e0 == 1 && s0 >= 2, "the other shards' relay goes on at epoch 1 (seq %lld)", (long long)s0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    snprintf(dir, sizeof dir, "/tmp/agentd-session-shard-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    uv_loop_init(&loop);
    char err[256];
    if (store_open(&store, dir, STORE_OS, err, sizeof err) != 0)
        bail_out("%s", err);
    struct streams_config scfg = {.max_append = 1 << 20, .read_chunk = 1 << 20, .shards = NSHARDS};
    if (streams_new(&ss, &loop, store, &scfg, err, sizeof err) != 0)
        bail_out("%s", err);
    struct sessions_config cfg = {
        .data_dir = dir, .runtime_idle_ms = 600000, .runtime_spin_us = -1, .agent_idle_ms = 1000};
    if (sessions_new(&reg, &loop, ss, &cfg, err, sizeof err) != 0)
        bail_out("%s", err);
    test_shards();
    sessions_close_runtimes(reg);
    for (int i = 0; i < 5000 && sessions_working(reg); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    sessions_free(reg);
    settle();
    streams_free(ss);
    uv_run(&loop, UV_RUN_NOWAIT);
    store_free(store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
