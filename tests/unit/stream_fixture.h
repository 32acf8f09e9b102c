/*
 * stream_fixture — what the unit tests of the stream registry by shard share (test_stream_shard.c,
 * test_stream_fork.c): a registry of NSHARDS shards (the includer defines it) on a real SQLite store,
 * and helpers to create, append and read by path. One translation unit each: everything is static.
 * main() brackets its tests with fixture_open (a temporary directory, the loop, the store) and
 * fixture_close (the registry, the store, a check that the loop closes cleanly, the directory).
 */
#ifndef AGENTD_TEST_STREAM_FIXTURE_H
#define AGENTD_TEST_STREAM_FIXTURE_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "stream/stream.h"
#include "stream/stream_int.h"
#include "tap.h"

static uv_loop_t loop;
static struct store *store;
static struct streams *ss;
static char dir[64];
static int done_ok, done_failed;

static inline void done_cb(struct stream_op *op)
{
    if (op->result.status == STREAM_STORE_ERROR)
        done_failed++;
    else
        done_ok++;
}

static inline void open_registry(int shards)
{
    char err[256];
    struct streams_config cfg = {
        .max_append = 1 << 20, .read_chunk = 1 << 20, .cache_bytes = 1 << 20, .shards = shards};
    if (streams_new(&ss, &loop, store, &cfg, err, sizeof err) != 0) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
}

static inline void close_registry(void)
{
    streams_free(ss);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* The store in a fresh /tmp/agentd-<name>-XXXXXX, on the loop; no registry yet (open_registry). */
static inline void fixture_open(const char *name)
{
    char err[256];
    snprintf(dir, sizeof dir, "/tmp/agentd-%s-XXXXXX", name);
    if (mkdtemp(dir) == NULL) {
        printf("Bail out! mkdtemp %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    uv_loop_init(&loop);
    if (store_open(&store, dir, STORE_OS, err, sizeof err) != 0) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
}

/* Closes the registry and the store, checks that nothing is left on the loop, removes the directory. */
static inline void fixture_close(void)
{
    char cmd[128];
    close_registry();
    store_free(store);
    is_int(uv_loop_close(&loop), 0, "the loop closes cleanly (no leaked handles)");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
}

static inline struct stream *get(const char *path)
{
    enum stream_lookup how;
    return streams_lookup(ss, path, strlen(path), &how);
}

static inline int shard(const char *path) { return store_shard_of(path, strlen(path), NSHARDS); }

/* A path "<prefix><n>" in shard k (or, with other, in any shard but k). */
static inline const char *path_in(const char *prefix, int k, int other)
{
    static char buf[32][64];
    static int next;
    char *p = buf[next++ % 32];
    for (int n = 0;; n++) {
        snprintf(p, 64, "%s%d", prefix, n);
        if ((shard(p) == k) != other)
            return p;
    }
}

static inline enum stream_status create_q(const char *path, const char *body, const char *fork_from,
                                          struct stream_op *op)
{
    struct stream_create_args a = {.content_type = "text/plain",
                                   .ttl_s = -1,
                                   .expires_at_ms = -1,
                                   .fork_from = fork_from,
                                   .body = body,
                                   .body_len = body ? strlen(body) : 0};
    op->cb = done_cb;
    return stream_create(ss, path, strlen(path), &a, op);
}

static inline enum stream_status create(const char *path, const char *body, const char *fork_from)
{
    struct stream_op op = {0};
    enum stream_status s = create_q(path, body, fork_from, &op);
    streams_flush(ss);
    return s;
}

static inline enum stream_status append_q(struct stream *st, const char *body, const char *pid, int64_t seq,
                                          struct stream_op *op)
{
    struct stream_append_args a = {.content_type = "text/plain",
                                   .body = body,
                                   .body_len = strlen(body),
                                   .producer_id = pid,
                                   .producer_epoch = 1,
                                   .producer_seq = seq};
    op->cb = done_cb;
    return stream_append(ss, st, &a, op);
}

static inline enum stream_status append(const char *path, const char *body, const char *pid, int64_t seq)
{
    struct stream_op op = {0};
    enum stream_status s = append_q(get(path), body, pid, seq, &op);
    streams_flush(ss);
    return s;
}

static inline char *read_all(const char *path);

/* Is what path reads from offset 0 want? */
static inline void is_read(const char *path, const char *want, const char *what)
{
    char *got = read_all(path);
    is_str(got, want, "%s", what);
    free(got);
}

static inline char *read_all(const char *path)
{
    struct buf b = {0};
    int64_t next;
    struct stream *st = get(path);
    if (st == NULL || stream_read(ss, st, 0, 1 << 20, &b, &next) != 0) {
        buf_free(&b);
        return NULL;
    }
    if (b.p == NULL)
        buf_puts(&b, "");
    return b.p;
}

#endif
