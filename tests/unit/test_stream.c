/*
 * Unit tests for src/stream: protocol rules without HTTP. Each test runs on a real store in a
 * temp dir and a real loop; ops complete only after streams_flush, as they do each loop turn.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "store/store.h"
#include "stream/jsonmode.h"
#include "stream/stream.h"
#include "tap.h"

static uv_loop_t loop;
static struct store *store;
static struct streams *ss;
static char dir[64];
static int completions;

static void done_cb(struct stream_op *op) { completions++; }

/*
 * A failing disk, for test_sync_failure: this definition of fdatasync is the one the library's
 * store_sync calls (the test binary links it statically, and its own definitions come first), so no
 * hook in the product is needed. Armed, the next call waits until the test opens the gate, then
 * fails with EIO, as a dying disk's fdatasync does; otherwise it is the real system call. It runs
 * in libuv's thread pool, hence the atomics.
 */
static atomic_int fsync_armed, fsync_gate, fsync_failed;

int fdatasync(int fd)
{
    if (atomic_exchange(&fsync_armed, 0)) {
        while (!atomic_load(&fsync_gate))
            usleep(1000);
        atomic_store(&fsync_failed, 1);
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}

static void open_all(void)
{
    char err[256];
    struct streams_config cfg = {.max_append = 1 << 20, .read_chunk = 1 << 20, .cache_bytes = 1 << 20};
    if (store_open(&store, dir, STORE_OS, err, sizeof err) != 0 ||
        streams_new(&ss, &loop, store, &cfg, err, sizeof err) != 0) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
}

static void close_all(void)
{
    streams_free(ss);
    uv_run(&loop, UV_RUN_NOWAIT);
    store_free(store);
}

static struct stream *get(const char *path)
{
    enum stream_lookup how;
    return streams_lookup(ss, path, strlen(path), &how);
}

static enum stream_status create(const char *path, const char *ct, const char *body, struct stream_op *op)
{
    struct stream_create_args a = {.content_type = ct,
                                   .ttl_s = -1,
                                   .expires_at_ms = -1,
                                   .body = body,
                                   .body_len = body ? strlen(body) : 0};
    op->cb = done_cb;
    enum stream_status st = stream_create(ss, path, strlen(path), &a, op);
    streams_flush(ss);
    return st;
}

static enum stream_status append(const char *path, const char *ct, const char *body, struct stream_op *op)
{
    struct stream_append_args a = {.content_type = ct, .body = body, .body_len = strlen(body)};
    op->cb = done_cb;
    enum stream_status st = stream_append(ss, get(path), &a, op);
    streams_flush(ss);
    return st;
}

static char *read_all(const char *path, int64_t from)
{
    struct buf b = {0};
    int64_t next;
    struct stream *st = get(path);
    if (stream_read(ss, st, from, 1 << 20, &b, &next) != 0)
        return NULL;
    if (stream_is_json(st))
        stream_json_wrap(&b);
    if (b.p == NULL)
        buf_puts(&b, "");
    return b.p;
}

static void test_basic(void)
{
    struct stream_op op = {0};
    is_int(create("t/a", "text/plain", "hello", &op), STREAM_CREATED, "create with a body");
    is_int(op.result.next_offset, 5, "the tail counts the initial body");
    is_int(create("t/a", "text/plain; charset=utf-8", NULL, &op), STREAM_OK,
           "re-create with the same media type is idempotent");
    is_int(create("t/a", "application/json", NULL, &op), STREAM_CONFLICT,
           "re-create with another type conflicts");

    completions = 0;
    struct stream_append_args a = {.content_type = "text/plain", .body = " world", .body_len = 6};
    op.cb = done_cb;
    is_int(stream_append(ss, get("t/a"), &a, &op), STREAM_OK, "append accepted");
    is_int(completions, 0, "the op does not complete before the commit");
    is_int(stream_tail(get("t/a")), 5, "readers do not see the uncommitted append");
    streams_flush(ss);
    is_int(completions, 1, "the op completes after the commit");
    is_int(stream_tail(get("t/a")), 11, "the durable tail moves at commit");
    char *s = read_all("t/a", 0);
    is_str(s, "hello world", "read everything back");
    free(s);
    s = read_all("t/a", 5);
    is_str(s, " world", "read from an offset");
    free(s);
    is_int(append("t/a", "application/json", "{}", &op), STREAM_CONFLICT,
           "a different content type conflicts");
    is_int(append("t/a", "text/plain", "", &op), STREAM_BAD_REQUEST, "an empty append is refused");
}

static void test_json(void)
{
    struct stream_op op = {0};
    is_int(create("t/j", "application/json", "[]", &op), STREAM_CREATED,
           "PUT [] creates an empty JSON stream");
    char *s = read_all("t/j", 0);
    is_str(s, "[]", "an empty JSON stream reads as []");
    free(s);
    is_int(append("t/j", "application/json", "[1, {\"a\": [2,3]}]", &op), STREAM_OK,
           "an array appends its elements");
    is_int(append("t/j", "application/json", "[[4,5]]", &op), STREAM_OK,
           "nested arrays flatten one level only");
    is_int(append("t/j", "application/json", " \"x\" ", &op), STREAM_OK, "a scalar appends one message");
    is_int(append("t/j", "application/json", "[]", &op), STREAM_BAD_REQUEST, "POST [] is refused");
    is_int(append("t/j", "application/json", "{bad", &op), STREAM_BAD_REQUEST, "invalid JSON is refused");
    s = read_all("t/j", 0);
    is_str(s, "[1,{\"a\": [2,3]},[4,5],\"x\"]", "messages keep their bytes and join into one array");
    free(s);
}

static void test_producers(void)
{
    struct stream_op op = {0};
    create("t/p", "text/plain", NULL, &op);
    struct stream_append_args a = {.content_type = "text/plain",
                                   .body = "x",
                                   .body_len = 1,
                                   .producer_id = "w",
                                   .producer_epoch = 0,
                                   .producer_seq = 0};
    op.cb = done_cb;
    is_int(stream_append(ss, get("t/p"), &a, &op), STREAM_OK, "producer seq 0 accepted");
    streams_flush(ss);
    is_int(stream_append(ss, get("t/p"), &a, &op), STREAM_DUPLICATE, "the same seq again is a duplicate");
    streams_flush(ss);
    is_int(op.result.producer_seq, 0, "a duplicate reports the highest accepted seq");
    a.producer_seq = 2;
    is_int(stream_append(ss, get("t/p"), &a, &op), STREAM_SEQ_GAP, "a skipped seq is a gap");
    is_int(op.result.expected_seq, 1, "the gap says which seq was expected");
    a.producer_epoch = 1;
    a.producer_seq = 0;
    is_int(stream_append(ss, get("t/p"), &a, &op), STREAM_OK, "a new epoch starts at 0");
    streams_flush(ss);
    a.producer_epoch = 0;
    is_int(stream_append(ss, get("t/p"), &a, &op), STREAM_FENCED, "an older epoch is fenced");
    is_int(op.result.producer_epoch, 1, "fencing reports the current epoch");
    a.producer_epoch = 1;
    a.producer_seq = 1;
    a.close = 1;
    is_int(stream_append(ss, get("t/p"), &a, &op), STREAM_OK, "append and close atomically");
    streams_flush(ss);
    ok(stream_closed(get("t/p")), "the stream is closed");
    is_int(stream_append(ss, get("t/p"), &a, &op), STREAM_DUPLICATE,
           "repeating the closing tuple is a duplicate");
    streams_flush(ss);
    a.producer_seq = 2;
    is_int(stream_append(ss, get("t/p"), &a, &op), STREAM_CLOSED,
           "anything else on a closed stream is refused");
}

static void test_fork(void)
{
    struct stream_op op = {0};
    create("t/src", "text/plain", "abc", &op);
    append("t/src", "text/plain", "def", &op);
    struct stream_create_args f = {
        .ttl_s = -1, .expires_at_ms = -1, .fork_from = "t/src", .has_fork_offset = 1, .fork_offset = 3};
    op.cb = done_cb;
    is_int(stream_create(ss, "t/fork", 6, &f, &op), STREAM_CREATED, "fork at an offset");
    streams_flush(ss);
    is_str(stream_content_type(get("t/fork")), "text/plain", "a fork inherits the content type");
    append("t/fork", "text/plain", "XYZ", &op);
    append("t/src", "text/plain", "ghi", &op);
    char *s = read_all("t/fork", 0);
    is_str(s, "abcXYZ", "a fork reads its source below the fork offset, then its own data");
    free(s);
    s = read_all("t/src", 0);
    is_str(s, "abcdefghi", "the source is unaffected by the fork");
    free(s);

    f.fork_offset = 4; /* inside the record "def" */
    is_int(stream_create(ss, "t/mid", 5, &f, &op), STREAM_CREATED, "fork of a byte stream inside a record");
    streams_flush(ss);
    append("t/mid", "text/plain", "Z", &op);
    s = read_all("t/mid", 0);
    is_str(s, "abcdZ", "the source's record is cut at the fork offset");
    free(s);
    stream_delete(ss, get("t/mid"), &op);
    streams_flush(ss);

    f.fork_from = "t/fork";
    f.fork_offset = 3;
    f.fork_sub = 2;
    is_int(stream_create(ss, "t/sub", 5, &f, &op), STREAM_CREATED, "fork with a sub-offset");
    streams_flush(ss);
    s = read_all("t/sub", 0);
    is_str(s, "abcXY", "the sub-offset prefix is materialized");
    free(s);
    f.fork_sub = 99;
    is_int(stream_create(ss, "t/sub2", 6, &f, &op), STREAM_BAD_REQUEST,
           "a sub-offset past the end is refused");

    op.cb = done_cb;
    is_int(stream_delete(ss, get("t/src"), &op), STREAM_OK, "delete a source with forks");
    streams_flush(ss);
    enum stream_lookup how;
    streams_lookup(ss, "t/src", 5, &how);
    is_int(how, STREAM_SOFT_DELETED, "the source is soft-deleted");
    s = read_all("t/fork", 0);
    is_str(s, "abcXYZ", "forks still read through a soft-deleted source");
    free(s);
    struct stream_op op2 = {.cb = done_cb};
    stream_delete(ss, get("t/sub"), &op);
    stream_delete(ss, get("t/fork"), &op2);
    streams_flush(ss);
    streams_lookup(ss, "t/src", 5, &how);
    is_int(how, STREAM_MISSING, "deleting the last fork frees the source");
}

struct back {
    struct buf text;
    int64_t offs[16];
    int n, stop_after;
};

static int back_cb(int64_t off, const char *p, size_t n, void *arg)
{
    struct back *b = arg;
    b->offs[b->n++] = off;
    buf_append(&b->text, p, n);
    buf_puts(&b->text, "|");
    return b->n == b->stop_after;
}

/* JSON messages have offsets of their own, inside records of several messages. */
static void test_message_offsets(void)
{
    struct stream_op op = {0};
    /* offsets: {"a":","} at 0 (9 bytes and a comma), "x\\"y" at 10, [1,2] at 17, 3 at 23 (its own record) */
    create("t/m", "application/json", "[{\"a\":\",\"}, \"x\\\"y\", [1,2]]", &op);
    append("t/m", "application/json", "3", &op);
    struct stream *st = get("t/m");
    is_int(stream_tail(st), 25, "four messages, stored comma-terminated");
    struct back b = {0};
    ok(stream_read_back(ss, st, INT64_MAX, back_cb, &b) == 0 && b.n == 4, "read back every message");
    is_str(b.text.p, "3|[1,2]|\"x\\\"y\"|{\"a\":\",\"}|", "newest first, each whole");
    ok(b.offs[0] == 23 && b.offs[1] == 17 && b.offs[2] == 10 && b.offs[3] == 0, "each at its own offset");
    buf_reset(&b.text);
    b.n = 0;
    b.stop_after = 1;
    ok(stream_read_back(ss, st, 17, back_cb, &b) == 0 && b.n == 1 && b.offs[0] == 10,
       "before 17: the message at 10 first; the callback stops the read");
    for (int64_t off = 0; off <= 25; off++) {
        int want = off == 0 || off == 10 || off == 17 || off == 23 || off == 25;
        if (stream_offset_is_boundary(ss, st, off) != want)
            ok(0, "offset %lld is %sa message boundary", (long long)off, want ? "" : "not ");
    }
    ok(!stream_offset_is_boundary(ss, st, 26) && !stream_offset_is_boundary(ss, st, -1),
       "boundaries: exactly the message starts and the tail");
    char *s = read_all("t/m", 17);
    is_str(s, "[[1,2],3]", "a read from a message inside a record starts with it");
    free(s);
    struct buf out = {0};
    int64_t next;
    is_int(stream_read(ss, st, 12, 1 << 20, &out, &next), -EINVAL, "a read from inside a message is refused");
    buf_free(&out);

    struct stream_create_args f = {
        .ttl_s = -1, .expires_at_ms = -1, .fork_from = "t/m", .has_fork_offset = 1, .fork_offset = 17};
    op.cb = done_cb;
    is_int(stream_create(ss, "t/mf", 4, &f, &op), STREAM_CREATED, "a JSON fork at a message inside a record");
    streams_flush(ss);
    append("t/mf", "application/json", "\"own\"", &op);
    s = read_all("t/mf", 0);
    is_str(s, "[{\"a\":\",\"},\"x\\\"y\",\"own\"]", "the fork reads its source up to the fork offset only");
    free(s);
    buf_reset(&b.text);
    b.n = 0;
    b.stop_after = 0;
    ok(stream_read_back(ss, get("t/mf"), INT64_MAX, back_cb, &b) == 0 && b.n == 3 && b.offs[0] == 17 &&
           b.offs[1] == 10 && b.offs[2] == 0,
       "reading the fork back goes through its source below the fork offset");
    f.fork_offset = 5;
    is_int(stream_create(ss, "t/mbad", 6, &f, &op), STREAM_BAD_REQUEST,
           "a JSON fork inside a message is refused");
    is_int(stream_read_back(ss, get("t/a"), INT64_MAX, back_cb, &b), -EINVAL,
           "a byte stream has no messages");
    buf_free(&b.text);
    size_t n = jsonmode_stored_split("{\"a,\":[1,{\"b\":\"}\\\\\"}]},2,tail", 27, NULL, NULL);
    is_int(n, 2,
           "stored split: commas in strings and nesting do not end messages; an unterminated tail is none");
}

static void test_restart(void)
{
    close_all();
    open_all();
    char *s = read_all("t/a", 0);
    is_str(s, "hello world", "data survives a restart");
    free(s);
    ok(stream_closed(get("t/p")), "closure survives a restart");
    struct stream_op op = {0};
    struct stream_append_args a = {.content_type = "text/plain",
                                   .body = "x",
                                   .body_len = 1,
                                   .producer_id = "w",
                                   .producer_epoch = 0,
                                   .producer_seq = 5};
    is_int(stream_append(ss, get("t/p"), &a, &op), STREAM_FENCED, "producer epochs survive a restart");
}

struct sync_op {
    struct stream_op op;
    int done;
    enum stream_status status;
};

static void sync_op_cb(struct stream_op *op)
{
    struct sync_op *o = (struct sync_op *)op;
    o->done = 1;
    o->status = op->result.status;
}

static enum stream_status append_to(struct streams *reg, const char *path, const char *body,
                                    struct sync_op *o)
{
    enum stream_lookup how;
    struct stream_append_args a = {.content_type = "text/plain", .body = body, .body_len = strlen(body)};
    o->op.cb = sync_op_cb;
    return stream_append(reg, streams_lookup(reg, path, strlen(path), &how), &a, &o->op);
}

static char *read_from(struct streams *reg, const char *path)
{
    enum stream_lookup how;
    struct buf b = {0};
    int64_t next;
    struct stream *st = streams_lookup(reg, path, strlen(path), &how);
    if (st == NULL || stream_read(reg, st, 0, 1 << 20, &b, &next) != 0)
        return NULL;
    if (b.p == NULL)
        buf_puts(&b, "");
    return b.p;
}

/*
 * An fsync fails (EIO) while appends wait in the open batch: they were written after the failing
 * fsync began, so the registry's reload must not leave the batch naming the streams it frees.
 * Every op in flight fails, the open batch included (rolled back: nothing of it is stored), the
 * registry matches the database, and the same registry takes writes again.
 */
static void test_sync_failure(void)
{
    char fdir[64], err[256];
    snprintf(fdir, sizeof fdir, "/tmp/agentd-stream-fsync-XXXXXX");
    if (mkdtemp(fdir) == NULL)
        return;
    struct store *fst;
    struct streams *fss;
    struct streams_config cfg = {.max_append = 1 << 20, .read_chunk = 1 << 20, .cache_bytes = 1 << 20};
    if (store_open(&fst, fdir, STORE_FSYNC, err, sizeof err) != 0 ||
        streams_new(&fss, &loop, fst, &cfg, err, sizeof err) != 0) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
    struct stream_create_args ca = {.content_type = "text/plain", .ttl_s = -1, .expires_at_ms = -1};
    struct sync_op c1 = {0}, c2 = {0};
    c1.op.cb = c2.op.cb = sync_op_cb;
    stream_create(fss, "f/a", 3, &ca, &c1.op);
    stream_create(fss, "f/b", 3, &ca, &c2.op);
    streams_flush(fss);
    ok(c1.done && c2.done, "two streams created under --durability fsync");

    struct sync_op a1 = {0}, b1 = {0}, after = {0};
    atomic_store(&fsync_armed, 1);
    is_int(append_to(fss, "f/a", "lost?", &a1), STREAM_OK, "an append is accepted");
    /* One loop turn: the check commits the batch and starts its fsync in the thread pool. */
    uv_run(&loop, UV_RUN_NOWAIT);
    ok(streams_syncing(fss), "its fsync runs in the thread pool");
    atomic_store(&fsync_gate, 1); /* the fsync fails now */
    /* Its completion is posted to the loop (the only descriptor the loop polls here), which has
     * not run since. */
    struct pollfd pfd = {.fd = uv_backend_fd(&loop), .events = POLLIN};
    ok(poll(&pfd, 1, 10000) == 1 && atomic_load(&fsync_failed), "the fsync failed (EIO)");
    is_int(append_to(fss, "f/b", "waiting", &b1), STREAM_OK,
           "another append waits in the open batch when the loop learns of the failure");
    for (int i = 0; i < 1000 && !(a1.done && b1.done); i++)
        uv_run(&loop, UV_RUN_ONCE);
    is_int(a1.status, STREAM_STORE_ERROR, "the append the failed fsync covered fails");
    is_int(b1.status, STREAM_STORE_ERROR, "the append waiting in the open batch fails too");
    char *s = read_from(fss, "f/b");
    is_str(s, "", "nothing of the failed open batch is readable");
    free(s);

    is_int(append_to(fss, "f/b", "after", &after), STREAM_OK, "the registry takes appends again");
    streams_flush(fss);
    is_int(after.status, STREAM_OK, "... and makes them durable");
    s = read_from(fss, "f/b");
    is_str(s, "after", "f/b holds exactly what was acknowledged");
    free(s);
    int64_t tail_a = stream_tail(streams_lookup(fss, "f/a", 3, &(enum stream_lookup){0}));

    streams_free(fss);
    uv_run(&loop, UV_RUN_NOWAIT);
    store_free(fst);
    if (store_open(&fst, fdir, STORE_FSYNC, err, sizeof err) != 0 ||
        streams_new(&fss, &loop, fst, &cfg, err, sizeof err) != 0) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
    s = read_from(fss, "f/b");
    is_str(s, "after", "after a reopen, f/b holds the same");
    free(s);
    is_int(stream_tail(streams_lookup(fss, "f/a", 3, &(enum stream_lookup){0})), tail_a,
           "and f/a's tail is the one the registry had");
    streams_free(fss);
    uv_run(&loop, UV_RUN_NOWAIT);
    store_free(fst);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fdir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", fdir);
}

static void count_msg(const char *p, size_t n, void *arg) { (*(int *)arg)++; }

static void test_jsonmode(void)
{
    static const struct {
        const char *in;
        int valid, msgs;
    } cases[] = {
        {"1", 1, 1},
        {"[1,2,3]", 1, 3},
        {"[]", 1, 0},
        {" {\"a\":1} ", 1, 1},
        {"[1,]", 0, 0},
        {"{\"a\"}", 0, 0},
        {"01", 0, 0},
        {"1.", 0, 0},
        {"\"\\x\"", 0, 0},
        {"\"a\nb\"", 0, 0},
        {"[1] x", 0, 0},
        {"-0.5e+3", 1, 1},
        {"\"\xc3\xa9\"", 1, 1},
        {"\"\xc3\"", 0, 0},
        {"\"\\ud800\"", 1, 1},
        {"nul", 0, 0},
        {"[[1,2],[3]]", 1, 2},
        {"", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = 0;
        size_t count;
        const char *why = jsonmode_split(cases[i].in, strlen(cases[i].in), 1, count_msg, &n, &count);
        ok((why == NULL) == cases[i].valid && (!cases[i].valid || n == cases[i].msgs),
           "jsonmode case %zu: %s (%d messages)", i, cases[i].valid ? "accepted" : "rejected", cases[i].msgs);
    }
    struct buf deep = {0};
    for (int i = 0; i < JSONMODE_MAX_DEPTH + 10; i++)
        buf_puts(&deep, "[");
    ok(jsonmode_split(deep.p, deep.len, 1, NULL, NULL, NULL) != NULL,
       "deep nesting is refused, not a stack overflow");
    buf_free(&deep);
}

static void test_offsets(void)
{
    char o[STREAM_OFFSET_LEN + 1];
    int64_t v;
    stream_offset_format(1234, o);
    is_str(o, "0000000000000000_0000000000001234", "offsets print as %%016d_%%016d");
    ok(stream_offset_parse(o, &v) == 0 && v == 1234, "offsets parse back");
    ok(stream_offset_parse("9999999999999999_9999999999999999", &v) == 0 && v == INT64_MAX,
       "a foreign epoch reads as beyond the tail");
    ok(stream_offset_parse("12", &v) != 0 && stream_offset_parse("_1", &v) != 0 &&
           stream_offset_parse("1_x", &v) != 0,
       "malformed offsets are refused");
}

/* test_shared_reads: the two registries of a node that took the lease over (the owner's and the
 * follower's reader-only one) on one store. */
static struct streams *pool_a, *pool_b;
static int pool_done, pool_max;

static void pool_count(void)
{
    int n = streams_reads_running(pool_a) + streams_reads_running(pool_b);
    if (n > pool_max)
        pool_max = n;
}

static void pool_view_cb(struct stream_view_done *d, void *arg)
{
    pool_done++;
    pool_count();
}

/* Reads in libuv's thread pool wait there for one of the store's readers (PostgreSQL has two):
 * any more than the slots in the pool at once would hold threads the committer's fsync needs. The
 * limit is the store's, not each registry's. */
static void test_shared_reads(void)
{
    int slots = 2;
    store_test_read_slots(store, slots);
    pool_a = ss;
    pool_b = streams_reader_new(&loop, store);
    pool_done = pool_max = 0;
    for (int i = 0; i < 6; i++) {
        const char *path = i % 2 ? "/a" : "/b";
        stream_view_start(i % 2 ? pool_a : pool_b, path, 2, 0, 100, pool_view_cb, NULL);
        pool_count();
    }
    is_int(pool_max, slots,
           "six reads queued on two registries of one store: the store's two slots in the pool");
    for (int turns = 0; pool_done < 6 && turns < 1000; turns++)
        uv_run(&loop, UV_RUN_ONCE);
    is_int(pool_done, 6, "every read completes, each registry's started as the other's finish");
    is_int(pool_max, slots, "never more reads in the pool than the store's slots");
    ok(!streams_syncing(pool_b), "no read left waiting");
    streams_reader_free(pool_b);
    store_test_read_slots(store, 0);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/agentd-stream-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    uv_loop_init(&loop);
    open_all();
    test_basic();
    test_json();
    test_producers();
    test_fork();
    test_message_offsets();
    test_restart();
    test_jsonmode();
    test_offsets();
    test_shared_reads();
    test_sync_failure();
    close_all();
    is_int(uv_loop_close(&loop), 0, "the loop closes cleanly (no leaked handles)");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
