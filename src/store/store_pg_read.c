/*
 * store_pg_read — the PostgreSQL store's loop connection: reconnecting, loading, reads. Each
 * call is one or a few round trips on the loop (bounded: reads fetch PG_READ_ROWS rows per query);
 * writes never come here (store_pg.c sends them from the committer's thread). Also the readers'
 * pool: the same reads, from other threads, on connections of their own (store_pg_read_pooled),
 * and a follower's read snapshots there (store_pg_snapshot_open).
 */
#include "store/store_pg_int.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_READ_ROWS    256
#define PG_BACK_ROWS    64
/* A lost connection is tried again at most this often from the loop. */
#define PG_RECONNECT_US 200000

static int pg__reconnect(struct store_pg *s)
{
    char err[512];
    uint64_t now = clock_mono_us();
    if (now < s->retry_at_us || s->offline) /* offline: store_pg_offline */
        return -ENOTCONN;
    PQfinish(s->conn);
    s->conn = pg__connect(s->conninfo, err, sizeof err);
    if (s->conn) {
        log_info("store: connected to PostgreSQL again");
        s->reader_lost = 0;
        return 0;
    }
    if (!s->reader_lost) /* said once per outage, not at every try */
        log_warn("store: %s", err);
    s->reader_lost = 1;
    PQfinish(s->conn);
    s->conn = NULL;
    s->retry_at_us = now + PG_RECONNECT_US;
    return -ENOTCONN;
}

PGresult *pg__query(struct store_pg *s, const char *sql, int n, const char *const *vals, int binary)
{
    for (int attempt = 0;; attempt++) {
        if (s->conn == NULL && pg__reconnect(s) != 0)
            return NULL;
        PGresult *r = PQexecParams(s->conn, sql, n, NULL, vals, NULL, NULL, binary);
        if (PQstatus(s->conn) != CONNECTION_BAD)
            return r;
        PQfinish(s->conn);
        s->conn = NULL;
        if (attempt > 0)
            return r;
        PQclear(r);
    }
}

int store_pg_available(struct store_pg *s)
{
    s->offline = 0;
    PGresult *r = pg__query(s, "SELECT 1", 0, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -ENOTCONN;
    PQclear(r);
    pthread_mutex_lock(&s->mu);
    int fenced = 0;
    for (int k = 0; k < s->nshards; k++)
        fenced |= s->shard[k].fenced;
    pthread_mutex_unlock(&s->mu);
    if (rc == 0 && fenced) { /* back only once no other node holds a lease */
        char err[256];
        rc = pg__lease_take(s, s->conn, 0, err, sizeof err);
    }
    return rc;
}

void store_pg_offline(struct store_pg *s) { s->offline = 1; }

/* ---- the availability probe, off the loop ---- */

/* Held by its thread and by the loop until both let it go (the last frees it): at a stop the loop
 * lets go of a probe whose connect to a dead host still holds its thread (detached: the process
 * does not wait for it). */
struct store_probe {
    pthread_mutex_t mu; /* guards refs, done, rc */
    int refs, done, rc;
    char *conninfo;
};

static void pg__probe_put(struct store_probe *p)
{
    pthread_mutex_lock(&p->mu);
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p->conninfo);
    free(p);
}

static void *pg__probe_run(void *arg)
{
    struct store_probe *p = arg;
    char err[512];
    PGconn *c = pg__connect(p->conninfo, err, sizeof err);
    int rc = c && pg__exec(c, "SELECT 1", NULL, 0) == 0 ? 0 : -ENOTCONN;
    PQfinish(c);
    pthread_mutex_lock(&p->mu);
    p->rc = rc;
    p->done = 1;
    pthread_mutex_unlock(&p->mu);
    pg__probe_put(p);
    return NULL;
}

struct store_probe *store_pg_probe_start(struct store_pg *s)
{
    struct store_probe *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->refs = 2;
    p->conninfo = xstrdup(s->conninfo);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, pg__probe_run, p);
    pthread_attr_destroy(&attr);
    if (rc != 0) { /* no thread: the probe failed (the next one tries again) */
        p->refs = 1;
        p->done = 1;
        p->rc = -ENOTCONN;
    }
    return p;
}

int store_pg_probe_done(struct store_probe *p, int *rc)
{
    pthread_mutex_lock(&p->mu);
    int done = p->done;
    *rc = p->rc;
    pthread_mutex_unlock(&p->mu);
    return done;
}

void store_pg_probe_free(struct store_probe *p)
{
    if (p)
        pg__probe_put(p);
}

/* ---- loading ---- */

static char *pg__text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : xstrdup(PQgetvalue(r, row, col));
}

static int64_t pg__be64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return (int64_t)be64toh(v);
}

int64_t pg__int(const PGresult *r, int row, int col)
{
    if (PQfformat(r, col) == 1)
        return pg__be64(PQgetvalue(r, row, col));
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static struct pg__reader *pg__reader_take(struct store_pg *s);
static void pg__reader_give(struct store_pg *s, struct pg__reader *p);
static PGresult *pg__reader_query(struct store_pg *s, struct pg__reader *p, const char *sql, int n,
                                  const char *const *vals);

/* A load's query on the loop's connection (p NULL: text results) or on reader p (binary): 0 with
 * *out its rows, or -errno (-ENOTCONN: no connection). */
static int pg__load_query(struct store_pg *s, struct pg__reader *p, const char *sql, int n,
                          const char *const *vals, PGresult **out)
{
    PGresult *r = p ? pg__reader_query(s, p, sql, n, vals) : pg__query(s, sql, n, vals, 0);
    int rc = pg__rows(p ? p->conn : s->conn, r);
    *out = rc == 0 ? r : NULL;
    return rc;
}

/* shards: NULL, or the set as a PostgreSQL array. */
static int pg__load_producers(struct store_pg *s, struct pg__reader *p, const char *shards,
                              store_producer_cb on_producer, void *arg)
{
    PGresult *r;
    int rc = shards
                 ? pg__load_query(s, p,
                                  "SELECT stream, pid, epoch, seq FROM agentd_producers WHERE stream IN"
                                  " (SELECT id FROM agentd_streams WHERE shard = ANY($1::int[]))",
                                  1, &shards, &r)
                 : pg__load_query(s, p, "SELECT stream, pid, epoch, seq FROM agentd_producers", 0, NULL, &r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        on_producer(pg__int(r, i, 0), PQgetvalue(r, i, 1), pg__int(r, i, 2), pg__int(r, i, 3), arg);
    PQclear(r);
    return rc;
}

/* A stream's columns, as pg__meta reads them (every number a bigint, so that binary results read
 * alike). Its tail is not stored: it is the end of its last record (a fork without records of its
 * own ends at its fork offset). */
#define PG_META_COLUMNS                                                                     \
    "id, path, content_type, created_ms, ttl_s, expires_at_ms, expires_at, closed::bigint," \
    " coalesce((SELECT r.off + length(r.data) FROM agentd_records r WHERE r.stream = s.id"  \
    " ORDER BY r.off DESC LIMIT 1), fork_off) AS tail, fork_src, fork_off, fork_sub,"       \
    " refcount, deleted::bigint, last_seq, closer_pid, closer_epoch, closer_seq, shard::bigint"
#define PG_META_NCOLUMNS 19

/* Row i of a query of PG_META_COLUMNS (text or binary results); clear with store_meta_clear. */
static void pg__meta(const PGresult *r, int i, struct store_meta *m)
{
    *m = (struct store_meta){
        .id = pg__int(r, i, 0),
        .path = pg__text(r, i, 1),
        .content_type = pg__text(r, i, 2),
        .created_ms = pg__int(r, i, 3),
        .ttl_s = pg__int(r, i, 4),
        .expires_at_ms = pg__int(r, i, 5),
        .expires_at = pg__text(r, i, 6),
        .closed = (int)pg__int(r, i, 7),
        .tail = pg__int(r, i, 8),
        .fork_src = pg__int(r, i, 9),
        .fork_off = pg__int(r, i, 10),
        .fork_sub = pg__int(r, i, 11),
        .refcount = pg__int(r, i, 12),
        .deleted = (int)pg__int(r, i, 13),
        .last_seq = pg__text(r, i, 14),
        .closer_pid = pg__text(r, i, 15),
        .closer_epoch = pg__int(r, i, 16),
        .closer_seq = pg__int(r, i, 17),
        .shard = (int)pg__int(r, i, 18),
    };
}

/* Reports each row of a query of PG_META_COLUMNS; the loop's load (p NULL) puts each in the shard
 * map, a reader's leaves that to store_pg_loaded (the map is the loop's). */
static void pg__report(struct store_pg *s, struct pg__reader *p, const PGresult *r, store_meta_cb on_stream,
                       void *arg)
{
    for (int i = 0; i < PQntuples(r); i++) {
        struct store_meta m;
        pg__meta(r, i, &m);
        if (p == NULL)
            pg__ids_put(&s->ids, m.id, m.shard);
        on_stream(&m, arg);
        store_meta_clear(&m);
    }
}

void store_pg_loaded(struct store_pg *s, const struct store_meta *m)
{
    pg__ids_put(&s->ids, m->id, m->shard);
}

/* store_pg_load on the loop's connection (p NULL) or on reader p. Every stream the loop loads goes in
 * the shard map (what a batch's rows are fenced with); its load of every shard starts it afresh. */
static int pg__load(struct store_pg *s, struct pg__reader *p, const uint64_t *shards, store_meta_cb on_stream,
                    store_producer_cb on_producer, void *arg)
{
    char set[STORE_SHARDS * 4 + 3];
    size_t n = 0;
    set[n++] = '{';
    for (int k = 0; shards && k < STORE_SHARDS; k++)
        if (store_shard_in(shards, k))
            n += (size_t)snprintf(set + n, sizeof set - n, "%s%d", n > 1 ? "," : "", k);
    snprintf(set + n, sizeof set - n, "}");
    const char *v = set;
    PGresult *r;
    int rc = shards ? pg__load_query(s, p,
                                     "SELECT " PG_META_COLUMNS
                                     " FROM agentd_streams s WHERE shard = ANY($1::int[]) ORDER BY id",
                                     1, &v, &r)
                    : pg__load_query(s, p, "SELECT " PG_META_COLUMNS " FROM agentd_streams s ORDER BY id", 0,
                                     NULL, &r);
    if (rc == 0 && shards == NULL && p == NULL)
        pg__ids_clear(&s->ids);
    if (rc == 0)
        pg__report(s, p, r, on_stream, arg);
    PQclear(r);
    return rc ? rc : pg__load_producers(s, p, shards ? set : NULL, on_producer, arg);
}

int store_pg_load(struct store_pg *s, const uint64_t *shards, store_meta_cb on_stream,
                  store_producer_cb on_producer, void *arg)
{
    return pg__load(s, NULL, shards, on_stream, on_producer, arg);
}

int store_pg_load_pooled(struct store_pg *s, const uint64_t *shards, store_meta_cb on_stream,
                         store_producer_cb on_producer, void *arg)
{
    struct pg__reader *p = pg__reader_take(s);
    int rc = pg__load(s, p, shards, on_stream, on_producer, arg);
    pg__reader_give(s, p);
    return rc;
}

/* Stubs by id (store_load_ids): ids as a PostgreSQL array, in pieces so that the text stays small. */
static int pg__load_ids(struct store_pg *s, struct pg__reader *p, const int64_t *ids, size_t n,
                        store_meta_cb on_stream, void *arg)
{
    int rc = 0;
    for (size_t at = 0; rc == 0 && at < n;) {
        struct buf set = {0};
        buf_append(&set, "{", 1);
        for (size_t k = 0; at < n && k < 1000; k++, at++)
            buf_printf(&set, "%s%lld", k ? "," : "", (long long)ids[at]);
        buf_append(&set, "}", 2);
        const char *v = set.p;
        PGresult *r;
        rc = pg__load_query(
            s, p, "SELECT " PG_META_COLUMNS " FROM agentd_streams s WHERE id = ANY($1::bigint[])", 1, &v, &r);
        if (rc == 0)
            pg__report(s, p, r, on_stream, arg);
        PQclear(r);
        buf_free(&set);
    }
    return rc;
}

int store_pg_load_ids(struct store_pg *s, const int64_t *ids, size_t n, store_meta_cb on_stream, void *arg)
{
    return pg__load_ids(s, NULL, ids, n, on_stream, arg);
}

int store_pg_load_ids_pooled(struct store_pg *s, const int64_t *ids, size_t n, store_meta_cb on_stream,
                             void *arg)
{
    struct pg__reader *p = pg__reader_take(s);
    int rc = pg__load_ids(s, p, ids, n, on_stream, arg);
    pg__reader_give(s, p);
    return rc;
}

/* ---- the readers' pool: reads off the loop ---- */

static struct pg__reader *pg__reader_take(struct store_pg *s)
{
    struct pg__reader *p = NULL;
    pthread_mutex_lock(&s->pool_mu);
    for (;;) { /* the stream layer runs at most PG_READERS at once: a wait is the exception */
        for (int i = 0; i < PG_READERS && p == NULL; i++)
            if (!s->readers[i].busy)
                p = &s->readers[i];
        if (p)
            break;
        pthread_cond_wait(&s->pool_cv, &s->pool_mu);
    }
    p->busy = 1;
    pthread_mutex_unlock(&s->pool_mu);
    return p;
}

/* The cancels of a stop, sent from a thread of their own: PQcancel opens a connection to the server,
 * which a dead database host would hold for as long as TCP tries (the loop must go on with the
 * stop). It owns the PGcancel objects it was given (taken from their readers), so it sends each
 * again every PG_CANCEL_EVERY_US for the rest of the drain, as the loop's ticks did: a cancel can
 * come before its query. Once the reads are over a cancel finds nothing to cancel. */
#define PG_CANCEL_ROUNDS   20
#define PG_CANCEL_EVERY_US 50000
struct pg__cancels {
    int n;
    PGcancel *c[PG_READERS];
};

static void *pg__cancels_run(void *arg)
{
    struct pg__cancels *cs = arg;
    for (int round = 0; round < PG_CANCEL_ROUNDS; round++) {
        for (int i = 0; i < cs->n; i++) {
            char err[256];
            if (!PQcancel(cs->c[i], err, sizeof err))
                log_debug("store: a reader's query could not be cancelled: %s", err);
        }
        usleep(PG_CANCEL_EVERY_US);
    }
    for (int i = 0; i < cs->n; i++)
        PQfreeCancel(cs->c[i]);
    free(cs);
    return NULL;
}

void store_pg_reads_cancel(struct store_pg *s)
{
    struct pg__cancels *cs = xcalloc(1, sizeof *cs);
    pthread_mutex_lock(&s->pool_mu);
    s->readers_cancelled = 1;
    for (int i = 0; i < PG_READERS; i++) { /* taken from their readers: pg__cancels_run frees them */
        struct pg__reader *p = &s->readers[i];
        if (p->busy && p->cancel) {
            cs->c[cs->n++] = p->cancel;
            p->cancel = NULL;
        }
    }
    pthread_mutex_unlock(&s->pool_mu);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (cs->n == 0 || pthread_create(&t, &attr, pg__cancels_run, cs) != 0) {
        for (int i = 0; i < cs->n; i++)
            PQfreeCancel(cs->c[i]);
        free(cs);
    }
    pthread_attr_destroy(&attr);
}

static void pg__reader_give(struct store_pg *s, struct pg__reader *p)
{
    pthread_mutex_lock(&s->pool_mu);
    p->busy = 0;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}

/* Connects reader p when it has no connection (not more often than PG_RECONNECT_US after a failed
 * try): 0, or -ENOTCONN. */
static int pg__reader_connect(struct store_pg *s, struct pg__reader *p)
{
    char err[512];
    uint64_t now = clock_mono_us();
    if (p->conn)
        return 0;
    if (now < p->retry_at_us || (p->conn = pg__connect(s->conninfo, err, sizeof err)) == NULL) {
        if (!p->lost && now >= p->retry_at_us)
            log_warn("store: a reader: %s", err);
        p->lost = 1;
        p->retry_at_us = now >= p->retry_at_us ? now + PG_RECONNECT_US : p->retry_at_us;
        return -ENOTCONN;
    }
    PGcancel *cancel = PQgetCancel(p->conn);
    pthread_mutex_lock(&s->pool_mu);
    p->cancel = cancel;
    pthread_mutex_unlock(&s->pool_mu);
    if (p->connected) /* said once per connection lost: a read that fails keeps its connection */
        log_info("store: a reader connected to PostgreSQL again");
    p->connected = 1;
    p->lost = 0;
    p->view_prepared = 0;
    return 0;
}

/* Drops reader p's connection (its next use connects again). */
static void pg__reader_drop(struct store_pg *s, struct pg__reader *p)
{
    pthread_mutex_lock(&s->pool_mu);
    PQfreeCancel(p->cancel);
    p->cancel = NULL;
    pthread_mutex_unlock(&s->pool_mu);
    PQfinish(p->conn);
    p->conn = NULL;
    p->unread = 0;
}

/* Reads (and drops) the answer of a command p's connection sent without waiting for it (a
 * snapshot's ROLLBACK), before anything else uses the connection. */
static void pg__reader_settle(struct pg__reader *p)
{
    if (!p->unread)
        return;
    p->unread = 0;
    PGresult *r;
    while (p->conn && (r = PQgetResult(p->conn)) != NULL)
        PQclear(r);
}

/* A query on a reader's connection (its holder's thread), binary results: connected when it has
 * none, and once more when it is found dead; inside a snapshot, never (a new connection would read
 * outside it: the caller's read fails). */
static PGresult *pg__reader_query(struct store_pg *s, struct pg__reader *p, const char *sql, int n,
                                  const char *const *vals)
{
    pg__reader_settle(p);
    for (int attempt = 0;; attempt++) {
        pthread_mutex_lock(&s->pool_mu);
        int cancelled = s->readers_cancelled;
        pthread_mutex_unlock(&s->pool_mu);
        if (cancelled) /* the node stops: the read fails */
            return NULL;
        if (p->conn == NULL && (p->snapshot || pg__reader_connect(s, p) != 0))
            return NULL;
        PGresult *r = PQexecParams(p->conn, sql, n, NULL, vals, NULL, NULL, 1);
        if (PQstatus(p->conn) != CONNECTION_BAD)
            return r;
        pg__reader_drop(s, p);
        if (attempt > 0 || p->snapshot)
            return r;
        PQclear(r);
    }
}

/* Reads pages of records of one stream on the loop's connection (p NULL) or on reader p. */
static int pg__read_pages(struct store_pg *s, struct pg__reader *p, int64_t stream, int64_t at, int64_t to,
                          size_t max_bytes, store_record_cb cb, void *arg, size_t total, int count)
{
    while (total < max_bytes && at < to) {
        char a[24], b[24], c[24];
        snprintf(a, sizeof a, "%" PRId64, stream);
        snprintf(b, sizeof b, "%" PRId64, at);
        snprintf(c, sizeof c, "%" PRId64, to);
        const char *v[] = {a, b, c};
        /* The first row is the one containing $2 when $2 falls inside a record. */
        static const char sql[] =
            "SELECT off, data FROM agentd_records WHERE stream=$1 AND off >= coalesce((SELECT"
            " max(off) FROM agentd_records WHERE stream=$1 AND off <= $2), $2) AND off < $3"
            " ORDER BY off LIMIT " PG__STR(PG_READ_ROWS);
        PGresult *r = p ? pg__reader_query(s, p, sql, 3, v) : pg__query(s, sql, 3, v, 1);
        int rc = pg__rows(p ? p->conn : s->conn, r);
        if (rc != 0)
            return rc;
        int n = PQntuples(r);
        int64_t before = at;
        for (int i = 0; i < n && total < max_bytes; i++) {
            int64_t off = pg__be64(PQgetvalue(r, i, 0));
            size_t len = (size_t)PQgetlength(r, i, 1);
            cb(off, PQgetvalue(r, i, 1), len, arg);
            total += len;
            count++;
            at = off + (int64_t)len;
        }
        PQclear(r);
        if (n < PG_READ_ROWS || at <= before)
            break;
    }
    return count;
}

int store_pg_read(struct store_pg *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                  store_record_cb cb, void *arg)
{
    return pg__read_pages(s, NULL, stream, from, to, max_bytes, cb, arg, 0, 0);
}

int store_pg_read_pooled(struct store_pg *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                         store_record_cb cb, void *arg)
{
    struct pg__reader *p = pg__reader_take(s);
    int rc = pg__read_pages(s, p, stream, from, to, max_bytes, cb, arg, 0, 0);
    pg__reader_give(s, p);
    return rc;
}

int pg__pooled_query(struct store_pg *s, const char *sql, int n, const char *const *vals, PGresult **out)
{
    struct pg__reader *p = pg__reader_take(s);
    PGresult *r = pg__reader_query(s, p, sql, n, vals);
    int rc = r && PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : r ? pg__errno(p->conn, r) : -EIO;
    pg__reader_give(s, p);
    *out = r;
    return rc;
}

/* The tail as PG_META_COLUMNS computes it; starts_with on text uses no index, so a scan of the rows
 * (the records' (stream, off) index answers each tail). */
int store_pg_tails_pooled(struct store_pg *s, const char *prefix, store_tail_cb cb, void *arg)
{
    struct pg__reader *p = pg__reader_take(s);
    const char *v = prefix ? prefix : "";
    PGresult *r = pg__reader_query(
        s, p,
        "SELECT path, coalesce((SELECT r.off + length(r.data) FROM agentd_records r WHERE r.stream = s.id"
        " ORDER BY r.off DESC LIMIT 1), fork_off) FROM agentd_streams s"
        " WHERE path IS NOT NULL AND deleted = 0 AND starts_with(path, $1)",
        1, &v);
    int rc = r && PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : r ? pg__errno(p->conn, r) : -EIO;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        cb(PQgetvalue(r, i, 0), pg__int(r, i, 1), arg);
    PQclear(r);
    pg__reader_give(s, p);
    return rc;
}

/* ---- a follower's reads: one stream at a time, in a snapshot on a reader ---- */

/* The row of the stream at path (the first PG_META_NCOLUMNS columns) and the first page of its
 * own records from $2 (as store_pg_read's first query; none when $2 is negative or at the tail),
 * in one statement, prepared once per connection (its planning costs more than its execution).
 * Binary results. */
#define PG_VIEW_STMT "agentd_view"
static const char pg__row_and_page[] =
    "WITH m AS MATERIALIZED (SELECT " PG_META_COLUMNS " FROM agentd_streams s WHERE path = $1)"
    " SELECT m.*, r.off, r.data FROM m LEFT JOIN LATERAL (SELECT off, data FROM agentd_records"
    " WHERE stream = m.id AND $2::bigint >= 0 AND $2::bigint < m.tail"
    " AND off >= coalesce((SELECT max(off) FROM agentd_records WHERE stream = m.id AND off <= $2::bigint),"
    " $2::bigint) ORDER BY off LIMIT " PG__STR(PG_READ_ROWS) ") r ON true ORDER BY r.off";

/* The next result of a pipeline, and the NULL that ends it; NULL when it is not `want`. */
static PGresult *pg__pipe_result(PGconn *c, ExecStatusType want)
{
    PGresult *r = PQgetResult(c), *end = r && want != PGRES_PIPELINE_SYNC ? PQgetResult(c) : NULL;
    PQclear(end);
    if (r == NULL || PQresultStatus(r) == want)
        return r;
    PQclear(r);
    return NULL;
}

/* BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY and pg__row_and_page in one pipeline on reader
 * p's connection (one round trip): the row's result, the transaction left open; or NULL with -errno
 * in *rc and no transaction (a connection that fails mid-way is dropped: the next use reconnects).
 * A connection found dead at once (PostgreSQL restarted since) is replaced, once. */
static PGresult *pg__view_begin(struct store_pg *s, struct pg__reader *p, const char *const *v, int *rc)
{
    pg__reader_settle(p);
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((*rc = pg__reader_connect(s, p)) != 0)
            return NULL;
        PGconn *c = p->conn;
        if (!p->view_prepared) {
            PGresult *pr = PQprepare(c, PG_VIEW_STMT, pg__row_and_page, 2, NULL);
            p->view_prepared = PQresultStatus(pr) == PGRES_COMMAND_OK;
            *rc = p->view_prepared ? 0 : pg__errno(c, pr);
            PQclear(pr);
        }
        PGresult *r = NULL;
        if (p->view_prepared && PQenterPipelineMode(c) == 1) {
            int sent = PQsendQueryParams(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL,
                                         NULL, NULL, 0) == 1 &&
                       PQsendQueryPrepared(c, PG_VIEW_STMT, 2, v, NULL, NULL, 1) == 1 &&
                       PQpipelineSync(c) == 1;
            PGresult *b = sent ? pg__pipe_result(c, PGRES_COMMAND_OK) : NULL;
            r = b ? PQgetResult(c) : NULL; /* the row's, ok or not: its error says why */
            PQclear(b);
            if (r) {
                PQclear(PQgetResult(c)); /* the NULL after it */
                PGresult *sync = pg__pipe_result(c, PGRES_PIPELINE_SYNC);
                if (sync == NULL)
                    PQclear(r), r = NULL;
                PQclear(sync);
            }
            if (PQexitPipelineMode(c) != 1 && r)
                PQclear(r), r = NULL;
        }
        if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
            p->snapshot = 1;
            return r;
        }
        *rc = r ? pg__errno(c, r) : *rc ? *rc : pg__errno(c, NULL);
        PQclear(r);
        int dead = PQstatus(c) == CONNECTION_BAD, piped = PQpipelineStatus(c) != PQ_PIPELINE_OFF;
        if (!dead && !piped && PQtransactionStatus(c) == PQTRANS_INERROR && PQsendQuery(c, "ROLLBACK") == 1) {
            p->unread = 1; /* the row's query failed (a path that is not UTF-8): its transaction ends */
        } else if (dead || piped || PQtransactionStatus(c) != PQTRANS_IDLE) {
            pg__reader_drop(s, p); /* mid-pipeline or mid-transaction: start afresh */
        }
        if (!dead || *rc != -ENOTCONN)
            return NULL;
    }
    return NULL;
}

int store_pg_snapshot_open(struct store_pg *s, const char *path, int64_t from, struct store_meta *out,
                           struct store_snapshot **snap)
{
    char f[24];
    snprintf(f, sizeof f, "%" PRId64, from);
    const char *v[] = {path, f};
    int rc = 0;
    struct pg__reader *p = pg__reader_take(s);
    PGresult *r = pg__view_begin(s, p, v, &rc);
    *snap = NULL;
    if (r == NULL) {
        pg__reader_give(s, p);
        return rc ? rc : -EIO;
    }
    struct store_snapshot *sn = xcalloc(1, sizeof *sn);
    sn->s = s;
    sn->p = p;
    *snap = sn;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    pg__meta(r, 0, out);
    sn->ahead = r;
    sn->ahead_stream = out->id;
    sn->ahead_from = from;
    return 1;
}

int store_pg_snapshot_get(struct store_snapshot *sn, int64_t id, struct store_meta *out)
{
    char idv[24];
    snprintf(idv, sizeof idv, "%" PRId64, id);
    const char *v[] = {idv};
    PGresult *r = pg__reader_query(sn->s, sn->p,
                                   "SELECT " PG_META_COLUMNS " FROM agentd_streams s WHERE id = $1", 1, v);
    int rc = pg__rows(sn->p->conn, r);
    if (rc != 0)
        return rc;
    int found = PQntuples(r) > 0;
    if (found)
        pg__meta(r, 0, out);
    PQclear(r);
    return found;
}

/* The first page of a view's read, which came with the stream's row (store_pg_snapshot_open): read
 * once, by the store_pg_snapshot_read of that stream from that offset. Returns 1 when the page was
 * full (the read goes on with queries, in the same transaction). */
static int pg__read_ahead(struct store_snapshot *sn, int64_t to, size_t max_bytes, store_record_cb cb,
                          void *arg, size_t *total, int *count, int64_t *at)
{
    PGresult *r = sn->ahead;
    int rows = 0;
    sn->ahead_stream = 0; /* once */
    for (int i = 0; i < PQntuples(r) && *total < max_bytes; i++) {
        if (PQgetisnull(r, i, PG_META_NCOLUMNS))
            continue;
        int64_t off = pg__be64(PQgetvalue(r, i, PG_META_NCOLUMNS));
        size_t len = (size_t)PQgetlength(r, i, PG_META_NCOLUMNS + 1);
        if (off >= to)
            break;
        cb(off, PQgetvalue(r, i, PG_META_NCOLUMNS + 1), len, arg);
        *total += len;
        (*count)++;
        rows++;
        *at = off + (int64_t)len;
    }
    return rows == PG_READ_ROWS;
}

int store_pg_snapshot_read(struct store_snapshot *sn, int64_t stream, int64_t from, int64_t to,
                           size_t max_bytes, store_record_cb cb, void *arg)
{
    size_t total = 0;
    int count = 0;
    int64_t at = from;
    if (sn->ahead != NULL && stream == sn->ahead_stream && from == sn->ahead_from &&
        !pg__read_ahead(sn, to, max_bytes, cb, arg, &total, &count, &at))
        return count;
    return pg__read_pages(sn->s, sn->p, stream, at, to, max_bytes, cb, arg, total, count);
}

void store_pg_snapshot_close(struct store_snapshot *sn)
{
    if (sn == NULL)
        return;
    struct pg__reader *p = sn->p;
    PQclear(sn->ahead);
    p->snapshot = 0;
    /* Sent without waiting: its answer is read before the reader's next query (pg__reader_settle),
     * so a read costs no round trip for it. Read only: ROLLBACK ends it as COMMIT would, and ends a
     * transaction a failed statement aborted too. A connection lost inside took it along. */
    if (p->conn && PQsendQuery(p->conn, "ROLLBACK"))
        p->unread = 1;
    else if (p->conn)
        pg__reader_drop(sn->s, p);
    pg__reader_give(sn->s, p);
    free(sn);
}

/* Reads records backwards on the loop's connection (p NULL) or on reader p. */
static int pg__read_back(struct store_pg *s, struct pg__reader *p, int64_t stream, int64_t before,
                         store_record_back_cb cb, void *arg)
{
    int visited = 0, stop = 0;
    while (!stop) {
        char a[24], b[24];
        snprintf(a, sizeof a, "%" PRId64, stream);
        snprintf(b, sizeof b, "%" PRId64, before);
        const char *v[] = {a, b};
        static const char sql[] = "SELECT off, data FROM agentd_records WHERE stream=$1 AND off < $2"
                                  " ORDER BY off DESC LIMIT " PG__STR(PG_BACK_ROWS);
        PGresult *r = p ? pg__reader_query(s, p, sql, 2, v) : pg__query(s, sql, 2, v, 1);
        int rc = pg__rows(p ? p->conn : s->conn, r);
        if (rc != 0)
            return rc;
        int n = PQntuples(r);
        for (int i = 0; i < n && !stop; i++) {
            before = pg__be64(PQgetvalue(r, i, 0));
            visited++;
            stop = cb(before, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1), arg);
        }
        PQclear(r);
        stop = stop || n < PG_BACK_ROWS;
    }
    return visited;
}

int store_pg_read_back(struct store_pg *s, int64_t stream, int64_t before, store_record_back_cb cb, void *arg)
{
    return pg__read_back(s, NULL, stream, before, cb, arg);
}

int store_pg_read_back_pooled(struct store_pg *s, int64_t stream, int64_t before, store_record_back_cb cb,
                              void *arg)
{
    struct pg__reader *p = pg__reader_take(s);
    int rc = pg__read_back(s, p, stream, before, cb, arg);
    pg__reader_give(s, p);
    return rc;
}
