/*
 * Unit tests for src/stream/stream_cache.c: reads at a stream's tail are served from memory (the
 * store's read counter does not move), reads from further back still go to the store and return
 * the same bytes, and the cache keeps to its per-stream cap, its budget and its idle time. Each test
 * runs on a real SQLite store in a temp dir; ops complete after streams_flush.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "stream/stream.h"
#include "stream/stream_int.h"
#include "tap.h"

static uv_loop_t loop;
static struct store *store;
static struct streams *ss;
static char dir[64];
static int failures;

static void done_cb(struct stream_op *op) { failures += op->result.status == STREAM_STORE_ERROR; }

static void open_registry(size_t cache_bytes)
{
    char err[256];
    struct streams_config cfg = {.max_append = 1 << 20, .read_chunk = 1 << 20, .cache_bytes = cache_bytes};
    if (streams_new(&ss, &loop, store, &cfg, err, sizeof err) != 0) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
}

static void close_registry(void)
{
    streams_free(ss);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static uint64_t store_reads(void)
{
    struct store_stats st;
    store_stats(store, &st);
    return st.reads;
}

static struct stream *get(const char *path)
{
    enum stream_lookup how;
    return streams_lookup(ss, path, strlen(path), &how);
}

static enum stream_status create(const char *path, const char *ct, const char *body)
{
    struct stream_op op = {.cb = done_cb};
    struct stream_create_args a = {.content_type = ct,
                                   .ttl_s = -1,
                                   .expires_at_ms = -1,
                                   .body = body,
                                   .body_len = body ? strlen(body) : 0};
    enum stream_status st = stream_create(ss, path, strlen(path), &a, &op);
    streams_flush(ss);
    return st;
}

static enum stream_status append_n(const char *path, const char *ct, const char *body, size_t n)
{
    struct stream_op op = {.cb = done_cb};
    struct stream_append_args a = {.content_type = ct, .body = body, .body_len = n};
    enum stream_status st = stream_append(ss, get(path), &a, &op);
    streams_flush(ss);
    return st;
}

static enum stream_status append(const char *path, const char *ct, const char *body)
{
    return append_n(path, ct, body, strlen(body));
}

/* A live reader of path (as SSE and long-poll readers are while they wait): its stream keeps what
 * is appended from now on. Readers go with their streams (stream__free unsubscribes them). */
#define READERS 64
static struct stream_sub readers[READERS];
static int nreaders;

static void reader_cb(struct stream_sub *sub, enum stream_event ev) {}

static void watch(const char *path)
{
    if (nreaders == READERS) {
        printf("Bail out! too many readers\n");
        exit(1);
    }
    readers[nreaders].cb = reader_cb;
    stream_subscribe(get(path), &readers[nreaders++]);
}

static void drop(const char *path)
{
    struct stream_op op = {.cb = done_cb};
    stream_delete(ss, get(path), &op);
    streams_flush(ss);
}

/* Everything from `from` to the tail (several reads when needed), as a string; *reads: the store
 * reads it took. NULL when a read fails (*rc). */
static char *read_counted(const char *path, int64_t from, uint64_t *reads, int *rc)
{
    struct stream *st = get(path);
    struct buf b = {0};
    uint64_t r0 = store_reads();
    int64_t next;
    *rc = 0;
    while (st && from < stream_tail(st) && (*rc = stream_read(ss, st, from, 1 << 20, &b, &next)) == 0 &&
           next > from)
        from = next;
    *reads = store_reads() - r0;
    if (st == NULL || *rc != 0) {
        buf_free(&b);
        return NULL;
    }
    buf_puts(&b, "");
    return b.p;
}

static char *read_at(const char *path, int64_t from, uint64_t *reads)
{
    int rc;
    return read_counted(path, from, reads, &rc);
}

/* Reads path from `from` to its tail: it must read want, from memory (no store read) or not. */
static void check_read(const char *path, int64_t from, const char *want, int from_memory, const char *what)
{
    uint64_t reads;
    char *s = read_at(path, from, &reads);
    is_str(s, want, "%s", what);
    if (from_memory)
        is_int((int)reads, 0, "... from memory");
    else
        ok(reads >= 1, "... from the store (%d reads)", (int)reads);
    free(s);
}

/* A byte pattern that tells offsets apart: the byte at offset i is 'a' + (i * 7 + i / 26) % 26. */
static void pattern(char *p, int64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t at = off + (int64_t)i;
        p[i] = (char)('a' + (at * 7 + at / 26) % 26);
    }
}

static int is_pattern(const char *p, int64_t off, size_t n)
{
    char *want = xmalloc(n + 1);
    pattern(want, off, n);
    int same = memcmp(p, want, n) == 0;
    free(want);
    return same;
}

/* Appends total bytes of the pattern to path in appends of chunk bytes. */
static void fill(const char *path, size_t total, size_t chunk)
{
    char *p = xmalloc(chunk);
    for (size_t done = 0; done < total; done += chunk) {
        size_t n = total - done < chunk ? total - done : chunk;
        int64_t off = stream_tail(get(path));
        pattern(p, off, n);
        append_n(path, "text/plain", p, n);
    }
    free(p);
}

/* A stream nobody reads costs no cache; one read at its tail keeps what comes next. */
static void test_unread(void)
{
    size_t before = ss->caches.bytes;
    create("c/q", "text/plain", "one,");
    append("c/q", "text/plain", "two,");
    is_int((int)(ss->caches.bytes - before), 0, "a stream nobody reads has no cache");
    check_read("c/q", 0, "one,two,", 0, "it reads back");
    append("c/q", "text/plain", "three,");
    check_read("c/q", 8, "three,", 1, "once it was read at its tail, the next append reads back");
    stream__cache_sweep(ss, uv_now(&loop) + STREAM_CACHE_IDLE_MS);
    is_int((int)ss->caches.bytes, 0, "a sweep after the idle time drops it");
}

static void test_tail_reads(void)
{
    uint64_t reads;
    create("c/a", "text/plain", NULL);
    watch("c/a");
    append("c/a", "text/plain", "hello ");
    append("c/a", "text/plain", "world");
    char *s = read_at("c/a", 0, &reads);
    is_str(s, "hello world", "a new stream reads its bytes");
    is_int((int)reads, 0, "... from memory: no store read");
    free(s);
    check_read("c/a", 8, "rld", 1, "a read inside the last record is sliced");

    /* 200 KiB in 1 KiB appends: more than one stream keeps */
    create("c/big", "text/plain", NULL);
    watch("c/big");
    fill("c/big", 200 * 1024, 1024);
    int64_t tail = stream_tail(get("c/big"));
    s = read_at("c/big", tail - 1024, &reads);
    ok(s && strlen(s) == 1024 && is_pattern(s, tail - 1024, 1024),
       "the last append of a big stream reads back");
    is_int((int)reads, 0, "... from memory");
    free(s);
    ok(stream__cache_covers(get("c/big"), tail - 1024), "stream__cache_covers says so");
    ok(stream__cache_covers(get("c/big"), tail), "... and covers a read at the tail (nothing to read)");
    ok(!stream__cache_covers(get("c/big"), 0), "... but not a read from the start");
    s = read_at("c/big", 0, &reads);
    ok(s && strlen(s) == 200 * 1024 && is_pattern(s, 0, 200 * 1024),
       "a read from the start returns every byte");
    ok(reads >= 1, "... from the store (%d reads)", (int)reads);
    free(s);
    s = read_at("c/big", 1000, &reads);
    ok(s && strlen(s) == 200 * 1024 - 1000 && is_pattern(s, 1000, 200 * 1024 - 1000),
       "a read from inside an old record returns the bytes from there");
    free(s);
    ok(ss->caches.bytes <= STREAM_CACHE_STREAM_MAX + 4096 + 2 * (1 << 10),
       "one stream keeps about its cap (%zu bytes cached)", ss->caches.bytes);

    /* tiny appends: the cache keeps a bounded number of records */
    create("c/tiny", "text/plain", NULL);
    watch("c/tiny");
    size_t held = ss->caches.bytes;
    fill("c/tiny", 5000, 1);
    ok(ss->caches.bytes - held < 8 * 1024 + 16 * 1024 + 1024,
       "5,000 one-byte appends keep at most 4,096 records (%zu bytes cached)", ss->caches.bytes - held);
    uint64_t tiny_reads;
    char *t = read_at("c/tiny", 4900, &tiny_reads);
    ok(t && strlen(t) == 100 && is_pattern(t, 4900, 100) && tiny_reads == 0,
       "the newest read back from memory");
    free(t);
    ok(!stream__cache_covers(get("c/tiny"), 0), "... the oldest no longer from memory");

    /* an append bigger than the cap is read from the store; the next small one from memory */
    char *huge = xmalloc(100 * 1024);
    pattern(huge, tail, 100 * 1024);
    append_n("c/big", "text/plain", huge, 100 * 1024);
    free(huge);
    s = read_at("c/big", tail, &reads);
    ok(s && strlen(s) == 100 * 1024 && is_pattern(s, tail, 100 * 1024), "a record over the cap reads back");
    ok(reads >= 1, "... from the store");
    free(s);
    tail = stream_tail(get("c/big"));
    fill("c/big", 10, 10);
    s = read_at("c/big", tail, &reads);
    ok(s && strlen(s) == 10 && is_pattern(s, tail, 10), "the next append reads back");
    is_int((int)reads, 0, "... from memory again");
    free(s);
}

/* Every offset of a JSON stream reads the same (bytes, next offset, or -EINVAL inside a message)
 * from the cache as from the store. */
#define JSON_MAX 512
struct json_answers {
    int rc[JSON_MAX];
    char *text[JSON_MAX];
    int64_t tail;
};

static void json_answers(struct json_answers *a, uint64_t *reads)
{
    struct stream *st = get("c/j");
    uint64_t r0 = store_reads();
    a->tail = stream_tail(st);
    for (int64_t off = 0; off <= a->tail && off < JSON_MAX; off++) {
        struct buf b = {0};
        int64_t next;
        a->rc[off] = stream_read(ss, st, off, 1 << 20, &b, &next);
        stream_json_wrap(&b);
        a->text[off] = b.p;
    }
    *reads = store_reads() - r0;
}

static void test_json(void)
{
    uint64_t reads_cached, reads_store;
    create("c/j", "application/json", "[]");
    watch("c/j");
    append("c/j", "application/json", "[1, {\"a\": \"x,y\"}]");
    append("c/j", "application/json", "[[4, 5], \"s\\\"t\"]");
    append("c/j", "application/json", " {\"k\": [1, {\"z\": null}]} ");
    struct json_answers *cached = xcalloc(1, sizeof *cached), *stored = xcalloc(1, sizeof *stored);
    json_answers(cached, &reads_cached);
    is_str(cached->text[0], "[1,{\"a\": \"x,y\"},[4, 5],\"s\\\"t\",{\"k\": [1, {\"z\": null}]}]",
           "a JSON stream reads its messages");
    is_int((int)reads_cached, 0, "every offset of it reads from memory");
    close_registry();
    open_registry(0);
    json_answers(stored, &reads_store);
    ok(reads_store > 0, "the same reads without a cache go to the store");
    int same = cached->tail == stored->tail, bad = 0;
    for (int64_t off = 0; off <= cached->tail && off < JSON_MAX; off++) {
        same &= cached->rc[off] == stored->rc[off] && strcmp(cached->text[off], stored->text[off]) == 0;
        bad += cached->rc[off] == -EINVAL;
        free(cached->text[off]);
        free(stored->text[off]);
    }
    ok(same, "the cache answers every offset as the store does");
    ok(bad > 10, "... offsets inside messages included (%d refused)", bad);
    free(cached);
    free(stored);
    close_registry();
    open_registry(1 << 20);
}

static void test_fork(void)
{
    uint64_t reads;
    create("c/src", "text/plain", NULL);
    watch("c/src");
    append("c/src", "text/plain", "abc");
    append("c/src", "text/plain", "def");
    struct stream_op op = {.cb = done_cb};
    struct stream_create_args f = {
        .ttl_s = -1, .expires_at_ms = -1, .fork_from = "c/src", .has_fork_offset = 1, .fork_offset = 4};
    is_int(stream_create(ss, "c/fork", 6, &f, &op), STREAM_CREATED, "a fork inside a record of its source");
    streams_flush(ss);
    watch("c/fork");
    append("c/fork", "text/plain", "XY");
    append("c/src", "text/plain", "ghi");
    ok(stream__cache_covers(get("c/fork"), 0), "the fork's whole range is in memory, its source's part too");
    check_read("c/fork", 0, "abcdXY", 1,
               "the fork reads its source up to the fork offset, then its own bytes");
    check_read("c/fork", 2, "cdXY", 1, "and from inside its source's part");

    f.fork_from = "c/fork";
    f.fork_offset = 4;
    f.fork_sub = 1;
    is_int(stream_create(ss, "c/sub", 5, &f, &op), STREAM_CREATED, "a fork of the fork with a sub-offset");
    streams_flush(ss);
    char *s = read_at("c/sub", 0, &reads);
    is_str(s, "abcdX", "it reads its materialized prefix");
    is_int((int)reads, 1, "... its sources' part from memory, its own first record from the store");
    free(s);
    append("c/sub", "text/plain", "W");
    check_read("c/sub", 5, "W", 1, "what it appends after that read reads back");

    /* After a restart nothing is cached: the fork reads from the store, then from memory again. */
    close_registry();
    open_registry(1 << 20);
    ok(!stream__cache_covers(get("c/fork"), 0), "a reloaded registry has nothing in memory");
    s = read_at("c/fork", 0, &reads);
    is_str(s, "abcdXY", "the fork reads the same from the store");
    ok(reads >= 2, "... its source's part and its own");
    free(s);
    append("c/fork", "text/plain", "Z");
    check_read("c/fork", 6, "Z", 1, "what it appends next reads back");
}

static void test_recreate(void)
{
    create("c/d", "text/plain", NULL);
    watch("c/d");
    append("c/d", "text/plain", "old bytes");
    check_read("c/d", 0, "old bytes", 1, "a stream reads its bytes");
    drop("c/d");
    is_int(create("c/d", "text/plain", NULL), STREAM_CREATED, "the path is created again");
    check_read("c/d", 0, "", 1, "the new stream reads nothing of the old one");
    watch("c/d");
    append("c/d", "text/plain", "new");
    check_read("c/d", 0, "new", 1, "the new stream reads its own bytes");
    drop("c/d");
    create("c/d", "text/plain", "NEW");
    check_read("c/d", 0, "NEW", 0, "so does a third one, created with a body");
}

/* A failed batch's bytes leave the cache as it was (what fail_all does before the reload, which a
 * registry kept while PostgreSQL is unreachable depends on); what follows still reads right. */
static void test_rollback(void)
{
    create("c/r", "text/plain", NULL);
    watch("c/r");
    append("c/r", "text/plain", "kept,");
    struct stream_op op = {.cb = done_cb};
    struct stream_append_args a = {.content_type = "text/plain", .body = "pending,", .body_len = 8};
    stream_append(ss, get("c/r"), &a, &op); /* in the open batch, not durable */
    stream__cache_rollback(ss);
    check_read("c/r", 0, "kept,", 1, "after a rollback the durable bytes read back");
    streams_flush(ss); /* this batch did commit: its bytes are the store's only */
    check_read("c/r", 5, "pending,", 0, "bytes the cache dropped read back");
    append("c/r", "text/plain", "next,");
    check_read("c/r", 13, "next,", 1, "the next append reads back, the cache started again where it is");
}

static void test_budget(void)
{
    uint64_t reads;
    char path[32];
    close_registry();
    open_registry(100 * 1024);
    for (int i = 0; i < 10; i++) {
        snprintf(path, sizeof path, "c/b%d", i);
        create(path, "text/plain", NULL);
        watch(path);
        fill(path, 30 * 1024, 1024);
    }
    ok(ss->caches.bytes <= 100 * 1024, "the caches keep to the budget (%zu of %d bytes)", ss->caches.bytes,
       100 * 1024);
    char *s = read_at("c/b9", 0, &reads);
    ok(s && strlen(s) == 30 * 1024 && is_pattern(s, 0, 30 * 1024), "the stream appended to last reads back");
    is_int((int)reads, 0, "... from memory");
    free(s);
    s = read_at("c/b0", 0, &reads);
    ok(s && strlen(s) == 30 * 1024 && is_pattern(s, 0, 30 * 1024), "the one appended to first reads back");
    ok(reads >= 1, "... from the store: its cache was evicted");
    free(s);

    stream__cache_sweep(ss, uv_now(&loop) + STREAM_CACHE_IDLE_MS);
    is_int((int)ss->caches.bytes, 0, "idle streams lose their caches");
    s = read_at("c/b9", 30 * 1024 - 1024, &reads);
    ok(s && strlen(s) == 1024 && is_pattern(s, 30 * 1024 - 1024, 1024), "an idle stream reads back");
    ok(reads >= 1, "... from the store");
    free(s);

    close_registry();
    open_registry(0);
    create("c/none", "text/plain", "x");
    s = read_at("c/none", 0, &reads);
    is_str(s, "x", "with no cache (0 bytes) a stream reads back");
    ok(reads >= 1, "... from the store");
    is_int((int)ss->caches.bytes, 0, "... and nothing is cached");
    free(s);
    close_registry();
    open_registry(1 << 20);
}

int main(void)
{
    char err[256];
    snprintf(dir, sizeof dir, "/tmp/agentd-cache-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    uv_loop_init(&loop);
    if (store_open(&store, dir, STORE_OS, err, sizeof err) != 0) {
        printf("Bail out! %s\n", err);
        return 1;
    }
    open_registry(1 << 20);
    test_unread();
    test_tail_reads();
    test_json();
    test_fork();
    test_recreate();
    test_rollback();
    test_budget();
    is_int(failures, 0, "no write failed");
    close_registry();
    store_free(store);
    is_int(uv_loop_close(&loop), 0, "the loop closes cleanly (no leaked handles)");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
