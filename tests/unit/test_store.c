/*
 * Unit tests for src/store: batches commit whole or not at all, reads, reload after reopen; the log
 * layout (records moved out of the shared log in cycles, reads across the move, reopening in the
 * middle of a cycle, rollbacks); space coming back after deletes (a soak); and the migration of a
 * data dir written by the layout before the log.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_sqlite.h" /* the move thresholds, lowered to run many cycles */
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

static void remove_dir(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
}

static void test_batches(void)
{
    char dir[] = "/tmp/agentd-store-XXXXXX", err[256];
    ok(mkdtemp(dir) != NULL, "temp dir");
    struct store *s;
    is_int(store_open(&s, dir, STORE_FSYNC, err, sizeof err), 0, "store opens a new data dir");
    struct store *twice = NULL;
    ok(store_open(&twice, dir, STORE_FSYNC, err, sizeof err) != 0 && strstr(err, "another agentd"),
       "a second store on the same data dir is refused (%s)", err);

    struct store_meta m = {
        .path = "a", .content_type = "text/plain", .ttl_s = -1, .expires_at_ms = -1, .shard = 7};
    is_int(store_stream_insert(s, &m), 0, "insert a stream");
    is_int(m.shard, 0, "SQLite has one shard: an insert sets shard 0");
    struct store_lease shards[2];
    ok(store_shards(s, shards, 2) == 1 && shards[0].self && shards[0].live,
       "SQLite: one shard, held by this process");
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
    is_int(store_load(s, NULL, on_stream, on_producer, &seen), 0, "load");
    is_int(seen.streams, 1, "the stream is still there");
    is_int(seen.producers, 1, "the producer state is still there");
    is_int(seen.tail, 11, "the tail is recomputed from the committed records only");
    is_int(store_read(s, m.id, 0, 100, 1 << 20, on_record, &seen), 2, "no record of a failed batch was kept");
    is_str(seen.data.p, "hello world", "committed data is intact");
    buf_free(&seen.data);

    /* The WAL's zero-filled region grows ahead of SQLite's frames, and checkpoints bound it: 48 MiB
     * of appends (and as much again moved out of the log), committed as fast as this loop can, go
     * through a WAL that never passes its hard bound (16,384 frames, ~64 MiB, where commits wait for
     * the checkpointer), and all of it reads back. */
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
    ok(biggest <= 72 << 20, "and stayed within 72 MiB: checkpoints recycle it (%lld)", (long long)biggest);
    store_free(s);
    is_int(store_open(&s, dir, STORE_FSYNC, err, sizeof err), 0, "reopen after 48 MiB");
    memset(&seen, 0, sizeof seen);
    is_int(store_load(s, NULL, on_stream, on_producer, &seen), 0, "load");
    is_int(seen.tail, off, "the tail covers every committed append");
    is_int(store_read(s, m.id, 11, off, (size_t)1 << 30, on_record, &seen), 768, "every record reads back");
    ok(seen.data.len == (size_t)768 * sizeof chunk && seen.data.p[0] == 'w' &&
           seen.data.p[seen.data.len - 1] == 'w',
       "with its bytes");
    buf_free(&seen.data);

    is_int(store_stream_delete(s, m.id), 0, "delete");
    is_int(store_commit(s), 0, "commit delete");
    memset(&seen, 0, sizeof seen);
    is_int(store_load(s, NULL, on_stream, on_producer, &seen), 0, "load after delete");
    ok(seen.streams == 0 && seen.producers == 0, "delete removes the stream and its producers");
    store_free(s);
    remove_dir(dir);
}

/* ================= the log layout: moves, reopen, rollback ================= */

#define NSTREAMS   200
#define MOVE_AT    2048 /* rows: a cycle every ~45 batches */
#define MOVE_BYTES (1 << 20)

/* What the store should hold: each stream's bytes from `base`, and its producers' states. */
struct model {
    int64_t id, base;
    struct buf data;
    int deleted;
    int64_t pepoch[3], pseq[3]; /* producers "p0".."p2"; pseq -1: never put */
};

static struct model models[NSTREAMS];
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* One read: the records it returned, which must be contiguous. */
struct pieces {
    struct buf data;
    int64_t start, next; /* offsets of the first byte and after the last; next -1 before any */
    int bad;
};

static void on_piece(int64_t off, const void *data, size_t len, void *arg)
{
    struct pieces *p = arg;
    if (p->next < 0)
        p->start = off;
    else if (off != p->next)
        p->bad = 1;
    buf_append(&p->data, data, len);
    p->next = off + (int64_t)len;
}

/* Reads [from, to) of a stream in reads of at most about max bytes each, slicing the records as a
 * caller does; 0 when the bytes equal the model. */
static int check_range(struct store *s, const struct model *m, int64_t from, int64_t to, size_t max)
{
    struct buf got = {0};
    int64_t at = from;
    int bad = 0;
    while (at < to && !bad) {
        struct pieces p = {.next = -1};
        int rc = store_read(s, m->id, at, to, max, on_piece, &p);
        /* the records hold `at`, follow each other, and stop once they hold max bytes or reach to */
        bad = rc <= 0 || p.bad || p.start > at || p.next <= at || (p.data.len < max && p.next < to);
        if (!bad) {
            int64_t end = p.next < to ? p.next : to;
            buf_append(&got, p.data.p + (at - p.start), (size_t)(end - at));
            at = end;
        }
        buf_free(&p.data);
    }
    int same = !bad && got.len == (size_t)(to - from) &&
               (got.len == 0 || memcmp(got.p, m->data.p + (from - m->base), got.len) == 0);
    buf_free(&got);
    return same ? 0 : -1;
}

struct back {
    struct buf data; /* the records, newest first, each prepended */
    int64_t start;   /* offset of the oldest record so far */
    int bad, left;   /* left: records still wanted */
};

static int on_back(int64_t off, const void *data, size_t len, void *arg)
{
    struct back *b = arg;
    if (b->start >= 0 && off + (int64_t)len != b->start)
        b->bad = 1;
    buf_reserve(&b->data, len);
    if (b->data.len)
        memmove(b->data.p + len, b->data.p, b->data.len);
    memcpy(b->data.p, data, len);
    b->data.len += len;
    b->start = off;
    return --b->left == 0;
}

/* Reads a stream backwards from its end, a few records at a time, down to its base. */
static int check_back(struct store *s, const struct model *m)
{
    int64_t end = m->base + (int64_t)m->data.len, before = end;
    struct back b = {.start = -1};
    while (before > m->base && !b.bad) {
        b.left = 1 + (int)(rng() % 40);
        int64_t start = b.start;
        if (store_read_back(s, m->id, before, on_back, &b) <= 0 || b.start == start)
            b.bad = 1;
        before = b.start;
    }
    int same = !b.bad && b.start == m->base && b.data.len == m->data.len &&
               (b.data.len == 0 || memcmp(b.data.p, m->data.p, m->data.len) == 0);
    buf_free(&b.data);
    return same || (m->data.len == 0 && b.start < 0) ? 0 : -1;
}

/* Every live stream reads back whole and in three random ranges with random read sizes. */
static int check_all(struct store *s)
{
    int bad = 0;
    for (int i = 0; i < NSTREAMS; i++) {
        struct model *m = &models[i];
        if (m->deleted)
            continue;
        int64_t end = m->base + (int64_t)m->data.len;
        bad += check_range(s, m, m->base, end, 1 << 20) != 0;
        bad += check_back(s, m) != 0;
        for (int k = 0; k < 3 && end > m->base; k++) {
            int64_t a = m->base + (int64_t)(rng() % (uint64_t)(end - m->base));
            int64_t b = a + 1 + (int64_t)(rng() % (uint64_t)(end - a));
            bad += check_range(s, m, a, b, 64 + rng() % 65536) != 0;
        }
    }
    return bad;
}

struct loaded {
    int streams, mismatched;
    int producers, producers_wrong;
};

static struct model *model_of(int64_t id)
{
    for (int i = 0; i < NSTREAMS; i++)
        if (models[i].id == id)
            return &models[i];
    return NULL;
}

static void load_stream(const struct store_meta *m, void *arg)
{
    struct loaded *l = arg;
    struct model *md = model_of(m->id);
    l->streams++;
    if (md == NULL || md->deleted || m->tail != md->base + (int64_t)md->data.len)
        l->mismatched++;
}

static void load_producer(int64_t stream, const char *pid, int64_t epoch, int64_t seq, void *arg)
{
    struct loaded *l = arg;
    struct model *md = model_of(stream);
    int k = pid[1] - '0';
    l->producers++;
    if (md == NULL || md->deleted || k < 0 || k > 2 || md->pseq[k] != seq || md->pepoch[k] != epoch)
        l->producers_wrong++;
}

static int expected_producers(void)
{
    int n = 0;
    for (int i = 0; i < NSTREAMS; i++)
        for (int k = 0; k < 3; k++)
            n += !models[i].deleted && models[i].pseq[k] >= 0;
    return n;
}

/* One batch of appends (and producer states) to random streams, committed. */
static int append_batch(struct store *s, int n)
{
    static char big[70000];
    int rc = 0;
    for (int j = 0; j < n && rc == 0; j++) {
        /* a few streams get most appends, as busy sessions do */
        int i = rng() % 4 ? (int)(rng() % 10) : (int)(rng() % NSTREAMS);
        struct model *m = &models[i];
        if (m->deleted)
            continue;
        size_t len = rng() % 256 == 0 ? sizeof big : 1 + rng() % 200;
        for (size_t b = 0; b < len; b++)
            big[b] = (char)('a' + (rng() + b) % 26);
        rc = store_record_append(s, m->id, m->base + (int64_t)m->data.len, big, len);
        buf_append(&m->data, big, len);
        if (rc == 0 && rng() % 8 == 0) {
            int k = (int)(rng() % 3);
            char pid[3] = {'p', (char)('0' + k), 0};
            m->pseq[k]++;
            rc = store_producer_put(s, m->id, pid, m->pepoch[k], m->pseq[k]);
        }
    }
    return rc ? rc : store_commit(s);
}

/* Rows in a table, read with SQLite directly (the store must be closed: it locks the file). */
static long long count_rows(const char *dir, const char *sql)
{
    char file[300];
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;
    snprintf(file, sizeof file, "%s/agentd.db", dir);
    if (sqlite3_open(file, &db) == SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

static void test_moves(void)
{
    char dir[] = "/tmp/agentd-store-XXXXXX", err[256];
    ok(mkdtemp(dir) != NULL, "moves: temp dir");
    struct store *s;
    if (store_open(&s, dir, STORE_OS, err, sizeof err) != 0) {
        ok(0, "moves: open: %s", err);
        return;
    }
    store__sqlite(s)->move_at = MOVE_AT;
    store__sqlite(s)->move_bytes = MOVE_BYTES;
    for (int i = 0; i < NSTREAMS; i++) {
        char path[32];
        snprintf(path, sizeof path, "m/%d", i);
        struct store_meta m = {.path = path, .content_type = "text/plain", .ttl_s = -1, .expires_at_ms = -1};
        store_stream_insert(s, &m);
        models[i] = (struct model){.id = m.id, .base = i % 7 == 0 ? 1000 : 0, .pseq = {-1, -1, -1}};
    }
    is_int(store_commit(s), 0, "moves: %d streams created", NSTREAMS);

    int failed_commits = 0, bad_reads = 0, reopens = 0, bad_loads = 0, rolled_back = 0;
    for (int batch = 1; batch <= 800; batch++) {
        failed_commits += append_batch(s, 40) != 0;
        if (batch == 400) {
            /* Deleted streams disappear at once; their records go back in steps. */
            for (int i = 150; i < 170; i++) {
                store_stream_delete(s, models[i].id);
                models[i].deleted = 1;
            }
            failed_commits += store_commit(s) != 0;
        }
        if (batch % 97 == 0) {
            /* A batch that fails rolls back whole, moves of this commit included. */
            size_t lens[NSTREAMS];
            for (int i = 0; i < NSTREAMS; i++)
                lens[i] = models[i].data.len;
            struct model saved[NSTREAMS];
            memcpy(saved, models, sizeof saved);
            int rc = 0;
            for (int j = 0; j < 30 && rc == 0; j++) {
                struct model *m = &models[j % 10];
                rc = store_record_append(s, m->id, m->base + (int64_t)m->data.len, "lost", 4);
                buf_append(&m->data, "lost", 4);
            }
            int bad = store_record_append(s, models[3].id, models[3].base, "dup", 3);
            rolled_back += rc == 0 && bad == -EEXIST && store_commit(s) != 0;
            for (int i = 0; i < NSTREAMS; i++) {
                models[i].data.len = lens[i];
                memcpy(models[i].pseq, saved[i].pseq, sizeof saved[i].pseq);
            }
        }
        if (batch % 100 == 0)
            bad_reads += check_all(s);
        if (batch % 113 == 0) {
            /* Closing and opening again, often in the middle of a move cycle. */
            store_free(s);
            if (store_open(&s, dir, STORE_OS, err, sizeof err) != 0) {
                ok(0, "moves: reopen: %s", err);
                return;
            }
            store__sqlite(s)->move_at = MOVE_AT;
            store__sqlite(s)->move_bytes = MOVE_BYTES;
            struct loaded l = {0};
            bad_loads += store_load(s, NULL, load_stream, load_producer, &l) != 0 || l.mismatched ||
                         l.producers_wrong || l.producers != expected_producers();
            bad_reads += check_all(s);
            reopens++;
        }
    }
    is_int(failed_commits, 0, "moves: 800 batches of 40 appends commit (with 20 deletes)");
    is_int(rolled_back, 8, "moves: 8 poisoned batches rolled back");
    is_int(bad_reads, 0,
           "moves: every stream reads back byte-exact, whole, in ranges and backwards, across moves");
    is_int(bad_loads, 0, "moves: after %d reopens, tails and producers load as committed", reopens);
    while (store_upkeep(s))
        failed_commits += store_commit(s) != 0;
    store_free(s);

    long long records = count_rows(dir, "SELECT count(*) FROM records");
    long long log_rows = count_rows(dir, "SELECT (SELECT count(*) FROM log0) + (SELECT count(*) FROM log1)");
    ok(records > 0 && log_rows >= 0 && log_rows < 2 * MOVE_AT,
       "moves: records moved out of the log, the log holds under a cycle (%lld rows; records %lld)", log_rows,
       records);
    is_int(count_rows(dir, "SELECT count(*) FROM records WHERE stream NOT IN (SELECT id FROM streams)"), 0,
           "moves: the deleted streams' records are gone");
    is_int(count_rows(dir, "SELECT count(*) FROM purge"), 0, "moves: nothing left to purge");

    if (store_open(&s, dir, STORE_OS, err, sizeof err) == 0) {
        struct loaded l = {0};
        is_int(store_load(s, NULL, load_stream, load_producer, &l), 0, "moves: load after upkeep");
        ok(l.streams == NSTREAMS - 20 && l.mismatched == 0 && l.producers_wrong == 0 &&
               l.producers == expected_producers(),
           "moves: %d streams, %d producers as committed", l.streams, l.producers);
        is_int(check_all(s), 0, "moves: every stream reads back after upkeep");
        /* a new stream gets an id no deleted stream had */
        struct store_meta m = {
            .path = "m/new", .content_type = "text/plain", .ttl_s = -1, .expires_at_ms = -1};
        store_stream_insert(s, &m);
        ok(store_commit(s) == 0 && m.id > models[NSTREAMS - 1].id, "moves: stream ids are never reused");
        store_free(s);
    }
    for (int i = 0; i < NSTREAMS; i++)
        buf_free(&models[i].data);
    remove_dir(dir);
}

/* ================= space comes back ================= */

static long long file_size(const char *dir, const char *name)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* Create a stream, fill it with 2 MiB, read it, delete it; sixty times over. The database file must
 * stop growing: deleted streams' pages are reused. (It holds up to a move cycle's worth of log,
 * 16 MiB, and the stream in flight. It is measured after closing, which checkpoints the whole WAL
 * into it; the WAL itself is bounded by its checkpoints, see test_batches.) */
static void test_soak(void)
{
    char dir[] = "/tmp/agentd-store-XXXXXX", err[256];
    ok(mkdtemp(dir) != NULL, "soak: temp dir");
    struct store *s;
    if (store_open(&s, dir, STORE_OS, err, sizeof err) != 0) {
        ok(0, "soak: open: %s", err);
        return;
    }
    static char chunk[16 << 10];
    long long at[7] = {0}; /* the database file after rounds 10, 20, ... 60 */
    int bad = 0;
    for (int round = 1; round <= 60; round++) {
        char path[32];
        snprintf(path, sizeof path, "soak/%d", round);
        struct store_meta m = {.path = path, .content_type = "text/plain", .ttl_s = -1, .expires_at_ms = -1};
        bad += store_stream_insert(s, &m) != 0;
        int64_t off = 0;
        for (int i = 0; i < 128; i++, off += (int64_t)sizeof chunk) {
            memset(chunk, 'a' + (round + i) % 26, sizeof chunk);
            bad += store_record_append(s, m.id, off, chunk, sizeof chunk) != 0;
            if (i % 8 == 7)
                bad += store_commit(s) != 0;
        }
        bad += store_commit(s) != 0;
        struct seen seen = {0};
        bad += store_read(s, m.id, 0, off, (size_t)1 << 30, on_record, &seen) < 0 ||
               seen.data.len != (size_t)off;
        buf_free(&seen.data);
        bad += store_stream_delete(s, m.id) != 0 || store_commit(s) != 0;
        /* what an idle loop does between requests */
        for (int steps = 0; steps < 1000 && store_upkeep(s); steps++)
            bad += store_commit(s) != 0;
        if (round % 10 == 0) { /* closing checkpoints all of the WAL into the database file */
            store_free(s);
            at[round / 10] = file_size(dir, "agentd.db");
            if (store_open(&s, dir, STORE_OS, err, sizeof err) != 0) {
                ok(0, "soak: reopen: %s", err);
                return;
            }
        }
    }
    is_int(bad, 0, "soak: 60 rounds of create, 2 MiB of appends, read, delete");
    printf("# database file after 10, 20, ... 60 rounds: %lld %lld %lld %lld %lld %lld\n", at[1], at[2],
           at[3], at[4], at[5], at[6]);
    ok(at[6] <= at[2] + (2 << 20) && at[4] <= at[2] + (2 << 20),
       "soak: the database file stops growing (%lld bytes after 20 rounds, %lld after 60; 120 MiB written)",
       at[2], at[6]);
    store_free(s);
    is_int(count_rows(dir, "SELECT count(*) FROM records"), 0, "soak: no record of a deleted stream is left");
    remove_dir(dir);
}

/* ================= migration of the layout before the log ================= */

/* The layout agentd wrote before the log (layout 0), as its store created it. */
static const char old_schema[] =
    "CREATE TABLE IF NOT EXISTS streams("
    " id INTEGER PRIMARY KEY, path TEXT, content_type TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    " ttl_s INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL, expires_at TEXT, closed INTEGER NOT NULL,"
    " tail INTEGER NOT NULL, fork_src INTEGER NOT NULL, fork_off INTEGER NOT NULL,"
    " fork_sub INTEGER NOT NULL, refcount INTEGER NOT NULL, deleted INTEGER NOT NULL, last_seq TEXT,"
    " closer_pid TEXT, closer_epoch INTEGER NOT NULL, closer_seq INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS streams_path ON streams(path) WHERE path IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS records(stream INTEGER NOT NULL, off INTEGER NOT NULL,"
    " data BLOB NOT NULL, PRIMARY KEY(stream, off)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS producers(stream INTEGER NOT NULL, pid TEXT NOT NULL,"
    " epoch INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(stream, pid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;";

struct old_stream {
    int64_t id;
    const char *path, *ct;
    int64_t fork_src, fork_off, refcount;
    int deleted, closed;
    const char *last_seq;
    int records; /* appends written, one row each */
};

static const struct old_stream old_streams[] = {
    {1, "bytes/a", "application/octet-stream", 0, 0, 0, 0, 0, NULL, 3000},
    {2, "json/a", "application/json", 0, 0, 1, 0, 0, "seq-9", 40},
    {4, "json/fork", "application/json", 2, 0, 0, 0, 1, NULL, 5}, /* fork_off set below */
    {7, NULL, "text/plain", 0, 0, 1, 1, 0, NULL, 12},             /* detached, read by 8 */
    {8, "text/fork", "text/plain", 7, 0, 0, 0, 0, NULL, 0},
    {9, "empty", "text/plain", 0, 0, 0, 0, 0, NULL, 0},
};

/* The bytes of append k of an old stream. */
static void old_record(const struct old_stream *o, int k, struct buf *out)
{
    buf_reset(out);
    if (strcmp(o->ct, "application/json") == 0)
        buf_printf(out, "{\"s\":%lld,\"k\":%d},", (long long)o->id, k);
    else
        buf_printf(out, "%lld:%d:%.*s|", (long long)o->id, k, k % 50,
                   "................................................");
}

static int write_old_layout(const char *dir, int64_t *tails)
{
    char file[300];
    sqlite3 *db;
    snprintf(file, sizeof file, "%s/agentd.db", dir);
    if (sqlite3_open(file, &db) != SQLITE_OK)
        return -1;
    int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; BEGIN", NULL, NULL, NULL);
    rc |= sqlite3_exec(db, old_schema, NULL, NULL, NULL);
    sqlite3_stmt *ins, *rec;
    rc |= sqlite3_prepare_v2(
        db,
        "INSERT INTO streams VALUES(?1,?2,?3,1700000000000,-1,-1,NULL,?4,?5,?6,?7,0,?8,?9,?10,"
        "?11,0,?12)",
        -1, &ins, NULL);
    rc |= sqlite3_prepare_v2(db, "INSERT INTO records(stream, off, data) VALUES(?1,?2,?3)", -1, &rec, NULL);
    struct buf b = {0};
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof old_streams / sizeof old_streams[0]; i++) {
        const struct old_stream *o = &old_streams[i];
        /* a fork starts at its source's tail; its own records follow */
        int64_t base = o->fork_src ? tails[o->fork_src] : 0, off = base;
        for (int k = 0; k < o->records; k++) {
            old_record(o, k, &b);
            sqlite3_bind_int64(rec, 1, o->id);
            sqlite3_bind_int64(rec, 2, off);
            sqlite3_bind_blob(rec, 3, b.p, (int)b.len, SQLITE_TRANSIENT);
            rc |= sqlite3_step(rec) != SQLITE_DONE;
            sqlite3_reset(rec);
            off += (int64_t)b.len;
        }
        tails[o->id] = off;
        sqlite3_bind_int64(ins, 1, o->id);
        if (o->path)
            sqlite3_bind_text(ins, 2, o->path, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(ins, 2);
        sqlite3_bind_text(ins, 3, o->ct, -1, SQLITE_STATIC);
        sqlite3_bind_int(ins, 4, o->closed);
        sqlite3_bind_int64(ins, 5, off);
        sqlite3_bind_int64(ins, 6, o->fork_src);
        sqlite3_bind_int64(ins, 7, base);
        sqlite3_bind_int64(ins, 8, o->refcount);
        sqlite3_bind_int(ins, 9, o->deleted);
        if (o->last_seq)
            sqlite3_bind_text(ins, 10, o->last_seq, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(ins, 10);
        sqlite3_bind_null(ins, 11);
        sqlite3_bind_int64(ins, 12, 0);
        rc |= sqlite3_step(ins) != SQLITE_DONE;
        sqlite3_reset(ins);
    }
    rc |= sqlite3_exec(db,
                       "INSERT INTO producers VALUES(1,'writer-a',2,41);"
                       "INSERT INTO producers VALUES(2,'writer-b',0,7);"
                       "INSERT INTO meta VALUES('opened_ms', 1700000000000);"
                       "COMMIT",
                       NULL, NULL, NULL);
    sqlite3_finalize(ins);
    sqlite3_finalize(rec);
    sqlite3_close(db);
    buf_free(&b);
    return rc == SQLITE_OK ? 0 : -1;
}

struct migrated {
    int streams, right, producers;
    int64_t tails[16];
};

static void mig_stream(const struct store_meta *m, void *arg)
{
    struct migrated *g = arg;
    g->streams++;
    for (size_t i = 0; i < sizeof old_streams / sizeof old_streams[0]; i++) {
        const struct old_stream *o = &old_streams[i];
        if (o->id == m->id && m->tail == g->tails[o->id] && m->fork_src == o->fork_src &&
            m->refcount == o->refcount && m->deleted == o->deleted && m->closed == o->closed &&
            (o->path ? m->path && strcmp(o->path, m->path) == 0 : m->path == NULL) &&
            strcmp(o->ct, m->content_type) == 0 &&
            (o->last_seq ? m->last_seq && strcmp(o->last_seq, m->last_seq) == 0 : m->last_seq == NULL))
            g->right++;
    }
}

static void mig_producer(int64_t stream, const char *pid, int64_t epoch, int64_t seq, void *arg)
{
    struct migrated *g = arg;
    g->producers += (stream == 1 && strcmp(pid, "writer-a") == 0 && epoch == 2 && seq == 41) ||
                    (stream == 2 && strcmp(pid, "writer-b") == 0 && epoch == 0 && seq == 7);
}

static void test_migration(void)
{
    char dir[] = "/tmp/agentd-store-XXXXXX", err[256];
    ok(mkdtemp(dir) != NULL, "migration: temp dir");
    struct migrated g = {0};
    is_int(write_old_layout(dir, g.tails), 0, "migration: a data dir in the layout before the log");
    struct store *s;
    if (!ok(store_open(&s, dir, STORE_FSYNC, err, sizeof err) == 0, "migration: opens (%s)", err))
        return;
    is_int(store_load(s, NULL, mig_stream, mig_producer, &g), 0, "migration: loads");
    is_int(g.streams, 6, "migration: every stream is there");
    is_int(g.right, 6, "migration: with its path, type, tail, fork, refcount, deletion, closure and seq");
    is_int(g.producers, 2, "migration: producer states are kept");
    int exact = 0;
    struct buf want = {0}, b = {0};
    for (size_t i = 0; i < sizeof old_streams / sizeof old_streams[0]; i++) {
        const struct old_stream *o = &old_streams[i];
        buf_reset(&want);
        for (int k = 0; k < o->records; k++) {
            old_record(o, k, &b);
            buf_append(&want, b.p, b.len);
        }
        struct seen seen = {0};
        int64_t base = o->fork_src ? g.tails[o->fork_src] : 0;
        int rc = store_read(s, o->id, base, g.tails[o->id], (size_t)1 << 30, on_record, &seen);
        exact += rc >= 0 && seen.data.len == want.len &&
                 (want.len == 0 || memcmp(seen.data.p, want.p, want.len) == 0);
        buf_free(&seen.data);
    }
    is_int(exact, 6, "migration: every stream reads back byte-exact");
    /* appends continue at the old tails, and new ids come after the old ones */
    ok(store_record_append(s, 1, g.tails[1] - 1, "x", 1) == -EEXIST,
       "migration: an append below the tail fails");
    ok(store_commit(s) != 0, "migration: and its batch rolls back");
    is_int(store_record_append(s, 1, g.tails[1], "new", 3), 0, "migration: an append at the old tail");
    struct store_meta m = {.path = "after", .content_type = "text/plain", .ttl_s = -1, .expires_at_ms = -1};
    is_int(store_stream_insert(s, &m), 0, "migration: a new stream");
    is_int(store_commit(s), 0, "migration: commit");
    ok(m.id > 9, "migration: the new stream's id (%lld) is above every old one", (long long)m.id);
    store_free(s);
    is_int(count_rows(dir, "PRAGMA user_version"), 1, "migration: the database has layout 1");
    if (ok(store_open(&s, dir, STORE_FSYNC, err, sizeof err) == 0, "migration: opens again (%s)", err)) {
        struct pieces p = {.next = -1};
        int n = store_read(s, 1, g.tails[1] - 5, g.tails[1] + 3, 1 << 20, on_piece, &p);
        ok(n == 2 && !p.bad && p.next == g.tails[1] + 3 && memcmp(p.data.p + p.data.len - 3, "new", 3) == 0,
           "migration: old and new records read on");
        buf_free(&p.data);
        store_free(s);
    }
    /* a layout from the future is refused, not damaged */
    count_rows(dir, "PRAGMA user_version=2");
    ok(store_open(&s, dir, STORE_FSYNC, err, sizeof err) != 0 && strstr(err, "newer"),
       "migration: a newer layout is refused (%s)", err);
    buf_free(&want);
    buf_free(&b);
    remove_dir(dir);
}

int main(void)
{
    test_batches();
    test_moves();
    test_soak();
    test_migration();
    return done_testing();
}
