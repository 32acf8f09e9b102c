/*
 * storebench — what one commit costs the store, by the number of streams it touches (make bench).
 *
 * A commit batch of appends (100-byte records) goes to S streams; the figure is the number of
 * database pages the commit writes, from SQLite's own counter (SQLITE_DBSTATUS_CACHE_WRITE: every
 * page the pager writes to the write-ahead log at a commit), averaged over many commits after a
 * warm-up, so that work the store does only now and then (moving records, checkpoints' frames) is
 * counted at its share. The counts are deterministic; the microseconds beside them are not (they
 * are CPU time on a shared machine, with no fsync: durability "os").
 *
 * Three layouts, each on a fresh database in its own directory:
 *   before     the layout agentd used until issue 12, reproduced here with its SQL: one table
 *              records(stream, off, data) WITHOUT ROWID, so each stream's newest records sit on a
 *              B-tree leaf of their own and a commit writes one page per stream it touches;
 *   log+index  the simple alternative: an append-only log keyed by a global sequence, plus an index
 *              (stream, off) -> sequence written with every append;
 *   agentd     src/store as built, through its API (store_record_append, store_commit).
 * The two reproductions use the store's pragmas (WAL, exclusive locking, synchronous=NORMAL, a
 * 4 MB cache, a checkpoint every 8192 pages).
 */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

#define RECORD_SIZE 100

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("storebench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---------------------------------------------------------------------------------------------- */
/* Layouts                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

/* One layout under test. append joins the open batch; commit ends it; pages is the running count. */
struct layout {
    const char *name;
    void *(*open)(const char *dir, int64_t nstreams);
    void (*append)(void *h, int64_t stream, int64_t off, const void *data, size_t len);
    void (*commit)(void *h);
    uint64_t (*pages)(void *h);
    void (*close)(void *h);
};

/* A reproduction in plain SQL: its schema, and the statements of one append. */
struct raw {
    sqlite3 *db;
    sqlite3_stmt *ins[2];
    int nins;
    int in_batch;
    int64_t seq;
};

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die("%s: %s", sql, msg ? msg : "?");
}

static struct raw *raw_open(const char *dir, const char *schema, const char *const *ins, int nins)
{
    struct raw *r = calloc(1, sizeof *r);
    char file[512];
    snprintf(file, sizeof file, "%s/bench.db", dir);
    if (r == NULL || sqlite3_open(file, &r->db) != SQLITE_OK)
        die("cannot open %s", file);
    raw_exec(r->db, "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                    " PRAGMA cache_size=-4000; PRAGMA wal_autocheckpoint=8192;");
    raw_exec(r->db, schema);
    for (int i = 0; i < nins; i++)
        if (sqlite3_prepare_v2(r->db, ins[i], -1, &r->ins[i], NULL) != SQLITE_OK)
            die("%s: %s", ins[i], sqlite3_errmsg(r->db));
    r->nins = nins;
    return r;
}

static void raw_append(void *h, int64_t stream, int64_t off, const void *data, size_t len)
{
    struct raw *r = h;
    if (!r->in_batch) {
        raw_exec(r->db, "BEGIN");
        r->in_batch = 1;
    }
    r->seq++;
    for (int i = 0; i < r->nins; i++) {
        sqlite3_stmt *st = r->ins[i];
        /* ?1 stream, ?2 offset, ?3 data (records and log), ?4 the log's sequence */
        sqlite3_bind_int64(st, 1, stream);
        sqlite3_bind_int64(st, 2, off);
        if (sqlite3_bind_parameter_count(st) >= 3)
            sqlite3_bind_blob(st, 3, data, (int)len, SQLITE_STATIC);
        if (sqlite3_bind_parameter_count(st) >= 4)
            sqlite3_bind_int64(st, 4, r->seq);
        if (sqlite3_step(st) != SQLITE_DONE)
            die("insert: %s", sqlite3_errmsg(r->db));
        sqlite3_reset(st);
    }
}

static void raw_commit(void *h)
{
    struct raw *r = h;
    if (r->in_batch)
        raw_exec(r->db, "COMMIT");
    r->in_batch = 0;
}

static uint64_t raw_pages(void *h)
{
    int cur = 0, hi = 0;
    sqlite3_db_status(((struct raw *)h)->db, SQLITE_DBSTATUS_CACHE_WRITE, &cur, &hi, 0);
    return (uint64_t)(unsigned)cur;
}

static void raw_close(void *h)
{
    struct raw *r = h;
    for (int i = 0; i < r->nins; i++)
        sqlite3_finalize(r->ins[i]);
    sqlite3_close(r->db);
    free(r);
}

static void *before_open(const char *dir, int64_t nstreams)
{
    static const char *const ins[] = {"INSERT INTO records(stream, off, data) VALUES(?1,?2,?3)"};
    return raw_open(dir,
                    "CREATE TABLE records(stream INTEGER NOT NULL, off INTEGER NOT NULL, data BLOB NOT NULL,"
                    " PRIMARY KEY(stream, off)) WITHOUT ROWID;",
                    ins, 1);
}

static void *logidx_open(const char *dir, int64_t nstreams)
{
    static const char *const ins[] = {"INSERT INTO log(seq, stream, off, data) VALUES(?4,?1,?2,?3)",
                                      "INSERT INTO idx(stream, off, seq) VALUES(?1,?2,?4)"};
    return raw_open(dir,
                    "CREATE TABLE log(seq INTEGER PRIMARY KEY, stream INTEGER NOT NULL, off INTEGER NOT NULL,"
                    " data BLOB NOT NULL);"
                    "CREATE TABLE idx(stream INTEGER NOT NULL, off INTEGER NOT NULL, seq INTEGER NOT NULL,"
                    " PRIMARY KEY(stream, off)) WITHOUT ROWID;",
                    ins, 2);
}

/* The store itself: streams are created first, so that appends have somewhere to go. */
struct real {
    struct store *s;
    int64_t *ids;
};

static void *agentd_open(const char *dir, int64_t nstreams)
{
    struct real *r = calloc(1, sizeof *r);
    char err[256];
    if (r == NULL || (r->ids = calloc((size_t)nstreams, sizeof *r->ids)) == NULL)
        die("out of memory");
    if (store_open(&r->s, dir, STORE_OS, err, sizeof err) != 0)
        die("store_open: %s", err);
    for (int64_t i = 0; i < nstreams; i++) {
        char path[64];
        snprintf(path, sizeof path, "bench/%" PRId64, i);
        struct store_meta m = {
            .path = path, .content_type = "application/octet-stream", .ttl_s = -1, .expires_at_ms = -1};
        if (store_stream_insert(r->s, &m) != 0)
            die("store_stream_insert: %s", store_errmsg(r->s));
        r->ids[i] = m.id;
    }
    if (store_commit(r->s) != 0)
        die("store_commit: %s", store_errmsg(r->s));
    return r;
}

static void agentd_append(void *h, int64_t stream, int64_t off, const void *data, size_t len)
{
    struct real *r = h;
    if (store_record_append(r->s, r->ids[stream], off, data, len) != 0)
        die("store_record_append: %s", store_errmsg(r->s));
}

static void agentd_commit(void *h)
{
    struct real *r = h;
    if (store_commit(r->s) != 0)
        die("store_commit: %s", store_errmsg(r->s));
}

static uint64_t agentd_pages(void *h)
{
    struct store_stats st;
    store_stats(((struct real *)h)->s, &st);
    return st.pages_written;
}

static void agentd_close(void *h)
{
    struct real *r = h;
    store_free(r->s);
    free(r->ids);
    free(r);
}

static const struct layout layouts[] = {
    {"before", before_open, raw_append, raw_commit, raw_pages, raw_close},
    {"log+index", logidx_open, raw_append, raw_commit, raw_pages, raw_close},
    {"agentd", agentd_open, agentd_append, agentd_commit, agentd_pages, agentd_close},
};
#define NLAYOUTS (sizeof layouts / sizeof layouts[0])

/* ---------------------------------------------------------------------------------------------- */
/* Workloads                                                                                      */
/* ---------------------------------------------------------------------------------------------- */

/* Commits of `batch` appends each, dealt round-robin over `streams` streams. */
struct workload {
    int64_t streams;
    int batch;
    int warmup, commits; /* batches */
};

struct figure {
    double pages;     /* per commit */
    double us;        /* per commit */
    uint64_t maxpage; /* the most pages one measured commit wrote */
};

static void run(const struct layout *l, const struct workload *w, const char *root, struct figure *out)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s-%" PRId64 "-%d", root, l->name[0] == 'l' ? "logidx" : l->name,
             w->streams, w->batch);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        die("mkdir %s: %s", dir, strerror(errno));
    void *h = l->open(dir, w->streams);
    int64_t *tail = calloc((size_t)w->streams, sizeof *tail);
    char rec[RECORD_SIZE];
    uint64_t next = 0, t0 = 0, p0 = 0;
    out->maxpage = 0;
    for (int c = 0; c < w->warmup + w->commits; c++) {
        if (c == w->warmup) {
            t0 = now_us();
            p0 = l->pages(h);
        }
        uint64_t before = l->pages(h);
        for (int i = 0; i < w->batch; i++, next++) {
            int64_t st = (int64_t)(next % (uint64_t)w->streams);
            memset(rec, 'a' + (int)(next % 26), sizeof rec);
            snprintf(rec, sizeof rec, "%" PRIu64 ":", next);
            l->append(h, st, tail[st], rec, sizeof rec);
            tail[st] += RECORD_SIZE;
        }
        l->commit(h);
        uint64_t wrote = l->pages(h) - before;
        if (c >= w->warmup && wrote > out->maxpage)
            out->maxpage = wrote;
    }
    out->pages = (double)(l->pages(h) - p0) / w->commits;
    out->us = (double)(now_us() - t0) / w->commits;
    l->close(h);
    free(tail);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "storebench: could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : NULL;
    char tmpl[] = "/tmp/agentd-storebench-XXXXXX";
    if (root == NULL && (root = mkdtemp(tmpl)) == NULL)
        die("mkdtemp: %s", strerror(errno));
    /* Each stream gets at least 40 records (4 KB, a page) in the warm-up, so that streams have
     * leaves of their own where a layout keeps them apart; then enough commits to span the
     * store's periodic work several times. */
    const struct workload work[] = {
        {1, 32, 200, 4000},
        {32, 32, 200, 4000},
        {1000, 32, 1300, 4000},
        {1000, 1000, 40, 200},
    };
    printf("pages written per commit (SQLite's own count; 100-byte appends, mean over the measured\n"
           "commits, [the most in one commit]; microseconds per commit without fsync beside it)\n\n");
    printf("%-34s", "batch");
    for (size_t l = 0; l < NLAYOUTS; l++)
        printf(" %24s", layouts[l].name);
    printf("\n");
    for (size_t i = 0; i < sizeof work / sizeof work[0]; i++) {
        const struct workload *w = &work[i];
        char label[64];
        int touched = w->batch < w->streams ? w->batch : (int)w->streams;
        snprintf(label, sizeof label, "%d appends, %d stream%s of %" PRId64, w->batch, touched,
                 touched == 1 ? "" : "s", w->streams);
        printf("%-34s", label);
        fflush(stdout);
        for (size_t l = 0; l < NLAYOUTS; l++) {
            struct figure f;
            run(&layouts[l], w, root, &f);
            char cell[64];
            snprintf(cell, sizeof cell, "%.1f [%" PRIu64 "] %.0fus", f.pages, f.maxpage, f.us);
            printf(" %24s", cell);
            fflush(stdout);
        }
        printf("\n");
    }
    if (argc <= 1)
        rmdir(root);
    return 0;
}
