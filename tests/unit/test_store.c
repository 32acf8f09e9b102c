/* Unit tests for src/store: batches commit whole or not at all, reads, reload after reopen. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "tap.h"

struct seen {
    int streams, producers;
    int64_t tail;
    struct buf data;
};

static void on_stream(const struct store_meta *m, void *arg)
{
    struct seen *s = arg;
    s->streams++;
    s->tail = m->tail;
}

static void on_producer(int64_t stream, const char *pid, int64_t epoch, int64_t seq, void *arg)
{
    ((struct seen *)arg)->producers++;
}

static void on_record(int64_t off, const void *data, size_t len, void *arg)
{
    buf_append(&((struct seen *)arg)->data, data, len);
}

int main(void)
{
    char dir[] = "/tmp/agentd-store-XXXXXX", err[256];
    ok(mkdtemp(dir) != NULL, "temp dir");
    struct store *s;
    is_int(store_open(&s, dir, STORE_FSYNC, err, sizeof err), 0, "store opens a new data dir");

    struct store_meta m = {.path = "a", .content_type = "text/plain", .ttl_s = -1, .expires_at_ms = -1};
    is_int(store_stream_insert(s, &m), 0, "insert a stream");
    ok(store_batch_open(s), "a write opens a batch");
    is_int(store_record_append(s, m.id, 0, "hello ", 6), 0, "append record 1");
    is_int(store_record_append(s, m.id, 6, "world", 5), 0, "append record 2");
    is_int(store_producer_put(s, m.id, "p1", 0, 3), 0, "producer state joins the batch");
    is_int(store_commit(s), 0, "commit");
    ok(!store_batch_open(s), "commit closes the batch");

    struct seen seen = {0};
    is_int(store_read(s, m.id, 0, 11, 1 << 20, on_record, &seen), 2, "read returns both records");
    is_str(seen.data.p, "hello world", "records come back in order");
    buf_reset(&seen.data);
    is_int(store_read(s, m.id, 8, 11, 1 << 20, on_record, &seen), 1,
           "a read from inside a record returns that record");
    buf_reset(&seen.data);
    is_int(store_read(s, m.id, 0, 6, 1 << 20, on_record, &seen), 1, "the upper bound excludes later records");
    buf_reset(&seen.data);
    is_int(store_read(s, m.id, 0, 11, 1, on_record, &seen), 1,
           "max_bytes stops after the record that reaches it");
    buf_free(&seen.data);

    /* A failed write poisons the batch: nothing of it is kept. */
    is_int(store_record_append(s, m.id, 11, "!", 1), 0, "append in a new batch");
    ok(store_record_append(s, m.id, 11, "?", 1) == -EEXIST, "a duplicate key fails");
    ok(store_record_append(s, m.id, 12, "x", 1) == -EEXIST, "later writes of a poisoned batch fail too");
    ok(store_commit(s) != 0, "the poisoned batch does not commit");

    /* A file size limit (like a full disk) fails the commit and keeps what was there. */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, tiny = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    tiny.rlim_max = old.rlim_max;
    setrlimit(RLIMIT_FSIZE, &tiny);
    char big[65536];
    memset(big, 'z', sizeof big);
    int rc = store_record_append(s, m.id, 11, big, sizeof big);
    int rc2 = store_commit(s);
    if (rc == 0)
        rc = rc2;
    setrlimit(RLIMIT_FSIZE, &old);
    ok(rc != 0, "a write over the file size limit fails (%d)", rc);

    store_free(s);
    is_int(store_open(&s, dir, STORE_FSYNC, err, sizeof err), 0, "reopen");
    memset(&seen, 0, sizeof seen);
    is_int(store_load(s, on_stream, on_producer, &seen), 0, "load");
    is_int(seen.streams, 1, "the stream is still there");
    is_int(seen.producers, 1, "the producer state is still there");
    is_int(seen.tail, 11, "the tail is recomputed from the committed records only");
    is_int(store_read(s, m.id, 0, 100, 1 << 20, on_record, &seen), 2, "no record of a failed batch was kept");
    is_str(seen.data.p, "hello world", "committed data is intact");
    buf_free(&seen.data);

    /* The WAL's zero-filled region grows ahead of SQLite's frames, and checkpoints bound it: 48 MiB
     * of appends go through a WAL that never passes 40 MiB, and all of it reads back. */
    char path[400];
    snprintf(path, sizeof path, "%s/agentd.db-wal", dir);
    struct stat st = {0};
    int stat_rc = stat(path, &st);
    ok(stat_rc == 0 && st.st_size == 8 << 20, "the WAL starts 8 MiB preallocated (%lld)",
       (long long)st.st_size);
    static char chunk[64 << 10];
    memset(chunk, 'w', sizeof chunk);
    int64_t off = 11;
    off_t biggest = 0;
    int wrote = 0;
    for (int i = 0; i < 768; i++, off += (int64_t)sizeof chunk) {
        wrote += store_record_append(s, m.id, off, chunk, sizeof chunk) == 0 && store_commit(s) == 0;
        if (stat(path, &st) == 0 && st.st_size > biggest)
            biggest = st.st_size;
    }
    is_int(wrote, 768, "768 commits of 64 KiB");
    ok(biggest > 8 << 20, "the preallocation grew past its first 8 MiB (%lld)", (long long)biggest);
    ok(biggest <= 40 << 20, "and stayed within 40 MiB: checkpoints recycle it (%lld)", (long long)biggest);
    store_free(s);
    is_int(store_open(&s, dir, STORE_FSYNC, err, sizeof err), 0, "reopen after 48 MiB");
    memset(&seen, 0, sizeof seen);
    is_int(store_load(s, on_stream, on_producer, &seen), 0, "load");
    is_int(seen.tail, off, "the tail covers every committed append");
    is_int(store_read(s, m.id, 11, off, (size_t)1 << 30, on_record, &seen), 768, "every record reads back");
    ok(seen.data.len == (size_t)768 * sizeof chunk && seen.data.p[0] == 'w' &&
           seen.data.p[seen.data.len - 1] == 'w',
       "with its bytes");
    buf_free(&seen.data);

    is_int(store_stream_delete(s, m.id), 0, "delete");
    is_int(store_commit(s), 0, "commit delete");
    memset(&seen, 0, sizeof seen);
    is_int(store_load(s, on_stream, on_producer, &seen), 0, "load after delete");
    ok(seen.streams == 0 && seen.producers == 0, "delete removes the stream and its producers");
    store_free(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
