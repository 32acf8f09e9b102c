/*
 * store_log — the log's memory index, moves from the log into records, and the purge of deleted
 * streams. See store_int.h for the layout; everything here runs inside the open batch, so a failed
 * write poisons it and the rollback rebuilds the index from the database (store__hot_rebuild).
 */
#include "store/store_sqlite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Moved records are packed into rows of up to STORE_CHUNK bytes (an append larger than that keeps a
 * row of its own): a long transcript reads back in a few rows instead of one per append, and a
 * read from the middle of a chunk costs at most STORE_CHUNK of extra bytes.
 */
#define STORE_CHUNK          (64 << 10)
/*
 * A move cycle starts once the log holds STORE_MOVE_AT rows or STORE_MOVE_BYTES (store_int.h). Each cycle writes
 * each stream's pages once, so the longer the cycle, the less a stream costs per append (a page per
 * stream per cycle instead of per commit); the log, the memory index (~24 bytes a row) and the scan
 * at open grow with it. Each commit does a share (struct store__budget): STORE_MOVE_ROWS records,
 * STORE_MOVE_STEP bytes, STORE_MOVE_STREAMS streams, plus twice what the batch itself added (so a
 * cycle ends before the next one is due whatever the append rate) up to STORE_MOVE_EXTRA_MAX more
 * (so that a huge batch, after a slow loop turn, does not make a commit slower still: measured with
 * 200 sessions on a loaded machine, uncapped shares of ~20,000 rows made commits of 0.2-0.8 s); an
 * idle loop's upkeep takes STORE_IDLE_FACTOR shares at once.
 */
#define STORE_MOVE_ROWS      512
#define STORE_MOVE_STEP      ((int64_t)1 << 20)
#define STORE_MOVE_STREAMS   64
#define STORE_MOVE_EXTRA_MAX 4096 /* rows (and KiB) a share grows by at most, with its batch */
#define STORE_IDLE_FACTOR    8
#define STORE_PRODUCER_ROW   32 /* what a producer row counts as, in bytes */

/* What one share of upkeep may still do. */
struct store__budget {
    int64_t rows, bytes, streams;
};

/* Deleted streams give their records back in steps of at most this many bytes and rows. */
#define STORE_PURGE_BYTES ((int64_t)8 << 20)
#define STORE_PURGE_ROWS  256

/* The statement `which` for the segment holding log row `seq`. */
static sqlite3_stmt *store__seg_stmt(struct store_sqlite *s, enum store__stmt which, int64_t seq)
{
    int seg = seq >= s->seg_start ? s->seg : !s->seg;
    return s->stmt[which + seg];
}

/* ================= the memory index ================= */

struct store__hot *store__hot_get(struct store_sqlite *s, int64_t stream, int create)
{
    struct store__hot *h = map_get(&s->hot, (const char *)&stream, sizeof stream);
    if (h == NULL && create) {
        h = xcalloc(1, sizeof *h);
        h->stream = stream;
        h->end = -1;
        map_put(&s->hot, (const char *)&h->stream, sizeof h->stream, h);
    }
    return h;
}

static void store__hot_free(struct store__hot *h)
{
    for (size_t i = 0; i < h->np; i++)
        free(h->pp[i].pid);
    free(h->pp);
    free(h->ent);
    free(h);
}

void store__hot_drop(struct store_sqlite *s, int64_t stream)
{
    struct store__hot *h = map_del(&s->hot, (const char *)&stream, sizeof stream);
    if (h)
        store__hot_free(h);
}

static void store__hot_free_one(const char *key, void *value, void *arg) { store__hot_free(value); }

void store__hot_clear(struct store_sqlite *s)
{
    map_each(&s->hot, store__hot_free_one, NULL);
    map_clear(&s->hot);
    free(s->mv.streams);
    memset(&s->mv, 0, sizeof s->mv);
}

static void store__hot_push(struct store__hot *h, int64_t off, int64_t seq, size_t len)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 8;
        h->ent = xrealloc(h->ent, h->cap * sizeof *h->ent);
    }
    h->ent[h->n++] = (struct store__ent){.off = off, .seq = seq, .len = len};
}

/* Records the newest state of a producer (one per pid: an older one is only in the log). */
static void store__hot_producer(struct store__hot *h, const char *pid, int64_t epoch, int64_t seq,
                                int64_t logseq)
{
    struct store__pput *p = NULL;
    for (size_t i = 0; i < h->np && p == NULL; i++)
        if (strcmp(h->pp[i].pid, pid) == 0)
            p = &h->pp[i];
    if (p == NULL) {
        if (h->np == h->capp) {
            h->capp = h->capp ? h->capp * 2 : 2;
            h->pp = xrealloc(h->pp, h->capp * sizeof *h->pp);
        }
        p = &h->pp[h->np++];
        p->pid = xstrdup(pid);
    }
    p->epoch = epoch;
    p->seq = seq;
    p->logseq = logseq;
}

/* The end of a stream's bytes in records, or -1 when it has none there. */
static int store__cold_end(struct store_sqlite *s, int64_t stream, int64_t *end)
{
    sqlite3_stmt *st = s->stmt[ST_COLD_END];
    sqlite3_bind_int64(st, 1, stream);
    int rc = sqlite3_step(st);
    *end = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store__errno(rc);
}

/* ================= appends ================= */

int store__log_record(struct store_sqlite *s, int64_t stream, int64_t off, const void *data, size_t len)
{
    struct store__hot *h = store__hot_get(s, stream, 0);
    int64_t end = h && h->n ? h->ent[h->n - 1].off + (int64_t)h->ent[h->n - 1].len : -1;
    int rc = s->poisoned;
    /* Offsets must continue the stream exactly: anything else would corrupt it. */
    if (rc == 0 && end < 0)
        rc = store__cold_end(s, stream, &end);
    if (rc == 0 && end >= 0 && off != end)
        rc = off < end ? -EEXIST : -EINVAL;
    if (rc != 0) {
        if (!s->poisoned)
            log_error("store: append to stream %lld at %lld, its end is %lld", (long long)stream,
                      (long long)off, (long long)end);
        store__poison(s, rc);
        return rc;
    }
    sqlite3_stmt *st = store__seg_stmt(s, ST_LOG_RECORD, s->next_seq);
    sqlite3_bind_int64(st, 1, s->next_seq);
    sqlite3_bind_int64(st, 2, stream);
    sqlite3_bind_int64(st, 3, off);
    sqlite3_bind_blob64(st, 4, data, len, SQLITE_STATIC);
    if ((rc = store__write(s, st)) != 0)
        return rc;
    store__hot_push(store__hot_get(s, stream, 1), off, s->next_seq++, len);
    s->batch_rows++;
    s->batch_bytes += (int64_t)len;
    s->seg_bytes += (int64_t)len;
    return 0;
}

int store__log_producer(struct store_sqlite *s, int64_t stream, const char *pid, int64_t epoch, int64_t seq)
{
    sqlite3_stmt *st = store__seg_stmt(s, ST_LOG_PRODUCER, s->next_seq);
    sqlite3_bind_int64(st, 1, s->next_seq);
    sqlite3_bind_int64(st, 2, stream);
    sqlite3_bind_text(st, 3, pid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, epoch);
    sqlite3_bind_int64(st, 5, seq);
    int rc = store__write(s, st);
    if (rc != 0)
        return rc;
    store__hot_producer(store__hot_get(s, stream, 1), pid, epoch, seq, s->next_seq++);
    s->batch_rows++;
    s->batch_bytes += STORE_PRODUCER_ROW;
    s->seg_bytes += STORE_PRODUCER_ROW;
    return 0;
}

/* ================= reads ================= */

/*
 * Steps to the log row of e, checking it is there with e's length. On 0 the row's bytes are
 * sqlite3_column_blob(*out, 0) until the caller resets *out; on -errno it is reset already.
 */
static int store__log_row(struct store_sqlite *s, int64_t stream, const struct store__ent *e,
                          sqlite3_stmt **out)
{
    sqlite3_stmt *st = store__seg_stmt(s, ST_LOG_DATA, e->seq);
    sqlite3_bind_int64(st, 1, e->seq);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && (size_t)sqlite3_column_bytes(st, 0) == e->len) {
        *out = st;
        return 0;
    }
    sqlite3_reset(st);
    log_error("store: log row %lld of stream %lld is missing or the wrong size", (long long)e->seq,
              (long long)stream);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? -EIO : store__errno(rc);
}

/* Reads the log rows of h that overlap [from, to), whole. Returns the rows read. */
int store__read_log(struct store_sqlite *s, const struct store__hot *h, int64_t from, int64_t to,
                    size_t max_bytes, size_t *total, store_record_cb cb, void *arg)
{
    size_t lo = 0, hi = h->n;
    while (lo < hi) { /* the first record ending after `from` */
        size_t mid = lo + (hi - lo) / 2;
        if (h->ent[mid].off + (int64_t)h->ent[mid].len <= from)
            lo = mid + 1;
        else
            hi = mid;
    }
    int n = 0;
    for (size_t i = lo; i < h->n && h->ent[i].off < to && *total < max_bytes; i++) {
        const struct store__ent *e = &h->ent[i];
        sqlite3_stmt *st;
        int rc = store__log_row(s, h->stream, e, &st);
        if (rc != 0)
            return rc;
        cb(e->off, sqlite3_column_blob(st, 0), e->len, arg);
        sqlite3_reset(st);
        *total += e->len;
        n++;
    }
    return n;
}

int store__read_log_back(struct store_sqlite *s, const struct store__hot *h, int64_t before,
                         store_record_back_cb cb, void *arg, int *stop)
{
    size_t lo = 0, hi = h->n;
    while (lo < hi) { /* the first record starting at or after `before` */
        size_t mid = lo + (hi - lo) / 2;
        if (h->ent[mid].off < before)
            lo = mid + 1;
        else
            hi = mid;
    }
    int n = 0;
    while (lo-- > 0 && !*stop) {
        const struct store__ent *e = &h->ent[lo];
        sqlite3_stmt *st;
        int rc = store__log_row(s, h->stream, e, &st);
        if (rc != 0)
            return rc;
        n++;
        *stop = cb(e->off, sqlite3_column_blob(st, 0), e->len, arg);
        sqlite3_reset(st);
    }
    return n;
}

/* ================= moves ================= */

static int store__put_chunk(struct store_sqlite *s, int64_t stream, int64_t off, const struct buf *chunk)
{
    sqlite3_stmt *st = s->stmt[ST_CHUNK_INSERT];
    sqlite3_bind_int64(st, 1, stream);
    sqlite3_bind_int64(st, 2, off);
    sqlite3_bind_blob64(st, 3, chunk->p, chunk->len, SQLITE_STATIC);
    return store__write(s, st);
}

/*
 * Copies h's records with sequence <= upto (as many as the budget allows, at least one) into
 * records, packed into chunks, and its producer states up to there into producers; forgets what it
 * copied. 0 or -errno.
 */
static int store__move_stream(struct store_sqlite *s, struct store__hot *h, int64_t upto,
                              struct store__budget *b)
{
    struct buf chunk = {0};
    int64_t chunk_off = 0;
    int rc = 0;
    size_t i = 0;
    for (; rc == 0 && i < h->n && h->ent[i].seq <= upto && (i == 0 || (b->rows > 0 && b->bytes > 0)); i++) {
        const struct store__ent *e = &h->ent[i];
        b->rows--;
        b->bytes -= (int64_t)e->len;
        if (chunk.len && chunk.len + e->len > STORE_CHUNK) {
            rc = store__put_chunk(s, h->stream, chunk_off, &chunk);
            buf_reset(&chunk);
        }
        if (chunk.len == 0)
            chunk_off = e->off;
        sqlite3_stmt *st;
        if (rc == 0 && (rc = store__log_row(s, h->stream, e, &st)) == 0) {
            buf_append(&chunk, sqlite3_column_blob(st, 0), e->len);
            sqlite3_reset(st);
        }
    }
    if (rc == 0 && chunk.len)
        rc = store__put_chunk(s, h->stream, chunk_off, &chunk);
    buf_free(&chunk);
    for (size_t j = 0; rc == 0 && j < h->np;) {
        struct store__pput *p = &h->pp[j];
        if (p->logseq > upto) {
            j++;
            continue;
        }
        sqlite3_stmt *put = s->stmt[ST_PRODUCER_PUT];
        sqlite3_bind_int64(put, 1, h->stream);
        sqlite3_bind_text(put, 2, p->pid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(put, 3, p->epoch);
        sqlite3_bind_int64(put, 4, p->seq);
        rc = store__write(s, put);
        free(p->pid);
        *p = h->pp[--h->np];
    }
    if (rc != 0) {
        store__poison(s, rc);
        return rc;
    }
    if (i)
        memmove(h->ent, h->ent + i, (h->n - i) * sizeof *h->ent);
    h->n -= i;
    b->streams--;
    return 0;
}

/* Does h still hold rows up to upto? */
static int store__hot_has(const struct store__hot *h, int64_t upto)
{
    if (h->n && h->ent[0].seq <= upto)
        return 1;
    for (size_t i = 0; i < h->np; i++)
        if (h->pp[i].logseq <= upto)
            return 1;
    return 0;
}

struct store__collect {
    struct store__move *mv;
    size_t cap;
};

static void store__collect_one(const char *key, void *value, void *arg)
{
    struct store__collect *c = arg;
    if (c->mv->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->mv->streams = xrealloc(c->mv->streams, c->cap * sizeof *c->mv->streams);
    }
    c->mv->streams[c->mv->n++] = ((struct store__hot *)value)->stream;
}

/* One share of the move cycle (starting one when the log is long enough). 1 if it wrote. */
static int store__move_step(struct store_sqlite *s, struct store__budget *b)
{
    struct store__move *mv = &s->mv;
    if (mv->upto == 0) {
        if (!s->old_pending && s->next_seq - s->seg_start < s->move_at && s->seg_bytes < s->move_bytes)
            return 0;
        if (!s->old_pending) { /* appends go to the other segment from now on */
            s->seg = !s->seg;
            s->seg_start = s->next_seq;
            s->seg_bytes = 0;
            s->old_pending = 1;
        }
        mv->upto = s->seg_start - 1;
        struct store__collect c = {.mv = mv};
        map_each(&s->hot, store__collect_one, &c);
        log_debug("store: moving %zu streams' rows up to %lld out of the log", mv->n, (long long)mv->upto);
    }
    int wrote = 0;
    while (mv->pos < mv->n && b->rows > 0 && b->bytes > 0 && b->streams > 0) {
        struct store__hot *h = store__hot_get(s, mv->streams[mv->pos], 0);
        if (h == NULL || !store__hot_has(h, mv->upto)) {
            mv->pos++;
            continue;
        }
        if (store__move_stream(s, h, mv->upto, b) != 0)
            return 1;
        wrote = 1;
        if (store__hot_has(h, mv->upto))
            break; /* out of budget inside this stream: it goes on next time */
        if (h->n == 0 && h->np == 0)
            store__hot_drop(s, h->stream);
        mv->pos++;
    }
    if (mv->pos < mv->n)
        return wrote;
    /* Everything up to upto is in records now: empty its segment in one go. */
    if (store__write(s, s->stmt[ST_LOG_CLEAR + !s->seg]) != 0)
        return 1;
    s->old_pending = 0;
    free(mv->streams);
    memset(mv, 0, sizeof *mv);
    return 1;
}

/* ================= purge ================= */

/* Gives back the records of deleted streams, a bounded number of bytes at a time. 1 if it wrote. */
static int store__purge_step(struct store_sqlite *s, int64_t bytes)
{
    int wrote = 0;
    while (s->purge_pending && bytes > 0 && !s->poisoned) {
        sqlite3_stmt *st = s->stmt[ST_PURGE_NEXT];
        int rc = sqlite3_step(st);
        int64_t stream = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_reset(st);
        if (rc != SQLITE_ROW) {
            s->purge_pending = rc != SQLITE_DONE;
            break;
        }
        st = s->stmt[ST_PURGE_SCAN];
        sqlite3_bind_int64(st, 1, stream);
        sqlite3_bind_int(st, 2, STORE_PURGE_ROWS);
        int rows = 0;
        int64_t last = -1;
        while (bytes > 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            last = sqlite3_column_int64(st, 0);
            bytes -= sqlite3_column_int64(st, 1);
            rows++;
        }
        int all = rc == SQLITE_DONE && rows < STORE_PURGE_ROWS;
        sqlite3_reset(st);
        if (rows) {
            st = s->stmt[ST_PURGE_RECORDS];
            sqlite3_bind_int64(st, 1, stream);
            sqlite3_bind_int64(st, 2, last);
            if (store__write(s, st) != 0)
                break;
            wrote = 1;
        }
        if (all) {
            st = s->stmt[ST_PURGE_DONE];
            sqlite3_bind_int64(st, 1, stream);
            if (store__write(s, st) != 0)
                break;
            wrote = 1;
        }
        bytes -= 4096; /* a stream costs a little even with nothing left */
    }
    return wrote;
}

int store__upkeep_step(struct store_sqlite *s, int idle)
{
    int64_t factor = idle ? STORE_IDLE_FACTOR : 1;
    int64_t rows = 2 * s->batch_rows, bytes = 2 * s->batch_bytes;
    if (rows > STORE_MOVE_EXTRA_MAX)
        rows = STORE_MOVE_EXTRA_MAX;
    if (bytes > (int64_t)STORE_MOVE_EXTRA_MAX << 10)
        bytes = (int64_t)STORE_MOVE_EXTRA_MAX << 10;
    struct store__budget b = {
        .rows = STORE_MOVE_ROWS * factor + rows,
        .bytes = STORE_MOVE_STEP * factor + bytes,
        .streams = STORE_MOVE_STREAMS * factor + rows,
    };
    int wrote = store__purge_step(s, STORE_PURGE_BYTES * factor);
    if (!s->poisoned)
        wrote |= store__move_step(s, &b);
    return wrote;
}

/* ================= rebuild ================= */

static void store__drop_empty(const char *key, void *value, void *arg)
{
    struct store__hot *h = value;
    int64_t **next = arg;
    if (h->n == 0 && h->np == 0)
        *(*next)++ = h->stream;
}

/* One row of the log at open: a record continues its stream or was already moved; a producer
 * state replaces the one before it. */
static int store__rebuild_row(struct store_sqlite *s, sqlite3_stmt *st)
{
    int64_t seq = sqlite3_column_int64(st, 0), stream = sqlite3_column_int64(st, 1);
    int64_t off = sqlite3_column_int64(st, 2);
    struct store__hot *h = store__hot_get(s, stream, 1);
    if (sqlite3_column_type(st, 4) == SQLITE_NULL) {
        store__hot_producer(h, (const char *)sqlite3_column_text(st, 3), sqlite3_column_int64(st, 5),
                            sqlite3_column_int64(st, 6), seq);
        return 0;
    }
    size_t len = (size_t)sqlite3_column_bytes(st, 4);
    int rc;
    if (h->end < 0 && (rc = store__cold_end(s, stream, &h->end)) != 0)
        return rc;
    if (h->end >= 0 && off < h->end)
        return 0; /* moved into records before its segment was emptied */
    if (h->end >= 0 && off > h->end) {
        log_error("store: stream %lld's log row %lld starts at %lld, after a gap from %lld; skipped",
                  (long long)stream, (long long)seq, (long long)off, (long long)h->end);
        return 0;
    }
    store__hot_push(h, off, seq, len);
    h->end = off + (int64_t)len;
    return 0;
}

/* One segment's extent: its lowest and highest sequence (both 0 when it is empty) and its bytes. */
static int store__seg_extent(struct store_sqlite *s, int seg, int64_t *lo, int64_t *hi, int64_t *bytes)
{
    char sql[200];
    sqlite3_stmt *st = NULL;
    /* length() of a blob reads the row's header only, not the blob */
    snprintf(sql, sizeof sql,
             "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0),"
             " total(CASE WHEN data IS NULL THEN %d ELSE length(data) END) FROM log%d",
             STORE_PRODUCER_ROW, seg);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *lo = sqlite3_column_int64(st, 0);
        *hi = sqlite3_column_int64(st, 1);
        *bytes = (int64_t)sqlite3_column_double(st, 2);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : store__errno(rc);
}

/* Feeds one segment's rows of live streams to the index, in order. The blobs are read (they are in
 * the log's recent pages anyway), which also checks that every row is readable. */
static int store__rebuild_seg(struct store_sqlite *s, int seg, size_t *rows)
{
    char sql[200];
    sqlite3_stmt *st = NULL;
    snprintf(sql, sizeof sql,
             "SELECT seq, stream, off, pid, data, epoch, pseq FROM log%d"
             " WHERE stream IN (SELECT id FROM streams) ORDER BY seq",
             seg);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        (*rows)++;
        if ((rc = store__rebuild_row(s, st)) != 0)
            break;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : rc < 0 ? rc : store__errno(rc);
}

int store__hot_rebuild(struct store_sqlite *s)
{
    store__hot_clear(s);
    int64_t lo[2], hi[2], bytes[2];
    int rc;
    for (int seg = 0; seg < 2; seg++)
        if ((rc = store__seg_extent(s, seg, &lo[seg], &hi[seg], &bytes[seg])) != 0)
            return rc;
    /* The active segment holds the newest row; the other one, if it holds rows, is the segment of
     * a move cycle cut short: the next cycle moves it without switching. */
    s->seg = hi[1] > hi[0];
    s->next_seq = hi[s->seg] + 1;
    s->seg_start = hi[s->seg] ? lo[s->seg] : s->next_seq;
    s->seg_bytes = bytes[s->seg];
    s->old_pending = hi[!s->seg] != 0;
    size_t rows = 0;
    if ((rc = store__rebuild_seg(s, !s->seg, &rows)) != 0 || (rc = store__rebuild_seg(s, s->seg, &rows)) != 0)
        return rc;
    int64_t *empty = xcalloc(s->hot.count + 1, sizeof *empty), *next = empty;
    map_each(&s->hot, store__drop_empty, &next);
    for (int64_t *p = empty; p < next; p++)
        store__hot_drop(s, *p);
    free(empty);
    log_debug("store: %zu log rows, %zu streams with rows in the log", rows, s->hot.count);
    return 0;
}
