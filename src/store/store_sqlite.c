/* store_sqlite — the stream log in SQLite with group commit: the database, batches, reads, loading.
 * See store.h; the layout and its moves are in store_sqlite.h and store_log.c. */
#include "store/store_sqlite.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const store__sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_STREAM_INSERT] =
        "INSERT INTO streams(path, content_type, created_ms, ttl_s, expires_at_ms, expires_at, closed,"
        " tail, fork_src, fork_off, fork_sub, refcount, deleted, last_seq, closer_pid, closer_epoch,"
        " closer_seq) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
    [ST_STREAM_UPDATE] =
        "UPDATE streams SET path=?1, content_type=?2, created_ms=?3, ttl_s=?4, expires_at_ms=?5,"
        " expires_at=?6, closed=?7, tail=?8, fork_src=?9, fork_off=?10, fork_sub=?11, refcount=?12,"
        " deleted=?13, last_seq=?14, closer_pid=?15, closer_epoch=?16, closer_seq=?17 WHERE id=?18",
    [ST_STREAM_DELETE] = "DELETE FROM streams WHERE id=?1",
    [ST_PURGE_ADD] = "INSERT OR IGNORE INTO purge(stream) VALUES(?1)",
    [ST_PRODUCERS_DELETE] = "DELETE FROM producers WHERE stream=?1",
    [ST_LOG_RECORD] = "INSERT INTO log0(seq, stream, off, data) VALUES(?1,?2,?3,?4)",
    [ST_LOG_RECORD_1] = "INSERT INTO log1(seq, stream, off, data) VALUES(?1,?2,?3,?4)",
    [ST_LOG_PRODUCER] = "INSERT INTO log0(seq, stream, pid, epoch, pseq) VALUES(?1,?2,?3,?4,?5)",
    [ST_LOG_PRODUCER_1] = "INSERT INTO log1(seq, stream, pid, epoch, pseq) VALUES(?1,?2,?3,?4,?5)",
    [ST_LOG_DATA] = "SELECT data FROM log0 WHERE seq=?1",
    [ST_LOG_DATA_1] = "SELECT data FROM log1 WHERE seq=?1",
    [ST_LOG_CLEAR] = "DELETE FROM log0",
    [ST_LOG_CLEAR_1] = "DELETE FROM log1",
    [ST_CHUNK_INSERT] = "INSERT INTO records(stream, off, data) VALUES(?1,?2,?3)",
    [ST_PRODUCER_PUT] = "INSERT OR REPLACE INTO producers(stream, pid, epoch, seq) VALUES(?1,?2,?3,?4)",
    /* The first row returned is the one containing ?2 when ?2 falls inside a row. */
    [ST_READ] = "SELECT off, data FROM records WHERE stream=?1 AND off >= coalesce((SELECT max(off)"
                " FROM records WHERE stream=?1 AND off <= ?2), ?2) AND off < ?3 ORDER BY off",
    /* A descending scan of the primary key (stream, off): cost grows with the records visited. */
    [ST_READ_BACK] = "SELECT off, data FROM records WHERE stream=?1 AND off < ?2 ORDER BY off DESC",
    [ST_COLD_END] = "SELECT off + length(data) FROM records WHERE stream=?1 ORDER BY off DESC LIMIT 1",
    [ST_PURGE_NEXT] = "SELECT stream FROM purge LIMIT 1",
    [ST_PURGE_SCAN] = "SELECT off, length(data) FROM records WHERE stream=?1 ORDER BY off LIMIT ?2",
    [ST_PURGE_RECORDS] = "DELETE FROM records WHERE stream=?1 AND off <= ?2",
    [ST_PURGE_DONE] = "DELETE FROM purge WHERE stream=?1",
};

/*
 * The schema, layout version 1 (PRAGMA user_version). Version 0 is the layout before the log: the
 * same streams, records (one row per append), producers and meta tables, without log and purge,
 * and with stream ids that SQLite could hand out again. Stream ids are never reused now: rows of a
 * deleted stream may outlive it for a while (in the log until its segment is emptied; in records
 * until the purge reaches them), and must not be taken for a new stream's.
 */
#define STORE_LAYOUT 1
#define STORE_STREAMS_COLUMNS                                                                                \
    "(id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT, content_type TEXT NOT NULL,"                          \
    " created_ms INTEGER NOT NULL, ttl_s INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL, expires_at TEXT," \
    " closed INTEGER NOT NULL, tail INTEGER NOT NULL, fork_src INTEGER NOT NULL, fork_off INTEGER NOT NULL," \
    " fork_sub INTEGER NOT NULL, refcount INTEGER NOT NULL, deleted INTEGER NOT NULL, last_seq TEXT,"        \
    " closer_pid TEXT, closer_epoch INTEGER NOT NULL, closer_seq INTEGER NOT NULL);"
#define STORE_LOG_COLUMNS                                                                                 \
    "(seq INTEGER PRIMARY KEY, stream INTEGER NOT NULL, off INTEGER, data BLOB, pid TEXT, epoch INTEGER," \
    " pseq INTEGER);"
#define STORE_NEW_TABLES                                                        \
    "CREATE TABLE log0" STORE_LOG_COLUMNS "CREATE TABLE log1" STORE_LOG_COLUMNS \
    "CREATE TABLE purge(stream INTEGER PRIMARY KEY);"                           \
    "CREATE UNIQUE INDEX streams_path ON streams(path) WHERE path IS NOT NULL;" \
    "PRAGMA user_version=1;"

static const char store__create[] =
    "BEGIN; CREATE TABLE streams" STORE_STREAMS_COLUMNS
    "CREATE TABLE records(stream INTEGER NOT NULL, off INTEGER NOT NULL, data BLOB NOT NULL,"
    " PRIMARY KEY(stream, off)) WITHOUT ROWID;"
    "CREATE TABLE producers(stream INTEGER NOT NULL, pid TEXT NOT NULL, epoch INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, PRIMARY KEY(stream, pid)) WITHOUT ROWID;"
    "CREATE TABLE meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;" STORE_NEW_TABLES "COMMIT;";

/* From version 0: the old records are valid chunks as they are; streams is rebuilt with ids that
 * are never reused (AUTOINCREMENT starts above the largest id copied). */
static const char store__migrate_0[] =
    "BEGIN; CREATE TABLE streams_v1" STORE_STREAMS_COLUMNS "INSERT INTO streams_v1 SELECT * FROM streams;"
    "DROP TABLE streams;"
    "ALTER TABLE streams_v1 RENAME TO streams;" STORE_NEW_TABLES "COMMIT;";

/* Maps an SQLite result code to a negative errno the HTTP layer can classify. */
int store__errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN: return -EROFS;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_CONSTRAINT: return -EEXIST;
    default: return -EIO;
    }
}

/* Runs SQL on the open database; on failure describes it in err ("cannot WHAT DIR/agentd.db: ..."). */
static int store__exec(struct store_sqlite *s, const char *sql, const char *what, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "cannot %s %s/agentd.db: %s", what, s->dir, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return store__errno(rc);
}

/* Brings the schema to STORE_LAYOUT: creates it in a new database, migrates an older one, refuses a
 * newer one. One transaction: a crash leaves the old layout whole. */
static int store__schema(struct store_sqlite *s, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int version = -1, tables = 0, rc;
    if ((rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL)) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if ((rc = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master WHERE name='streams'", -1, &st,
                                 NULL)) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        tables = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0) {
        snprintf(err, errlen, "cannot read the layout version: %s", sqlite3_errmsg(s->db));
        return store__errno(rc);
    }
    if (version == STORE_LAYOUT)
        return 0;
    if (version > STORE_LAYOUT) {
        snprintf(err, errlen, "the database has layout %d, written by a newer agentd (this one knows %d)",
                 version, STORE_LAYOUT);
        return -EPROTO;
    }
    if ((rc = store__exec(s, tables ? store__migrate_0 : store__create,
                          tables ? "migrate the schema of" : "create the schema of", err, errlen)) != 0) {
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (tables)
        log_info("store: migrated %s/agentd.db from layout 0 to %d (records stay where they are)", s->dir,
                 STORE_LAYOUT);
    return 0;
}

/*
 * One agentd per data dir: a second one would keep its own registry of the same streams. SQLite's
 * locks do not say that (two servers could take turns writing), so an flock on DIR/agentd.lock,
 * held while the store is open, does. (It does not stop a sqlite3 shell from reading the database
 * meanwhile, which is safe.)
 */
static int store__lock_dir(struct store_sqlite *s, char *err, size_t errlen)
{
    char *path = xasprintf("%s/agentd.lock", s->dir);
    int rc = 0;
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path,
                 rc == -EWOULDBLOCK ? "another agentd uses this data dir" : strerror(-rc));
    }
    free(path);
    return rc;
}

static int store__txn(struct store_sqlite *s);

int store_sqlite_open(struct store_sqlite **out, const char *dir, enum store_durability durability, char *err,
                      size_t errlen)
{
    struct store_sqlite *s = xcalloc(1, sizeof *s);
    char *file = NULL;
    int rc;

    s->durability = durability;
    s->wal_fd = -1;
    s->lock_fd = -1;
    s->dir = xstrdup(dir);
    s->wal_path = xasprintf("%s/agentd.db-wal", dir);
    s->next_seq = 1;
    s->move_at = STORE_MOVE_AT;
    s->move_bytes = STORE_MOVE_BYTES;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        snprintf(err, errlen, "cannot create data dir %s: %s", dir, strerror(errno));
        goto fail;
    }
    if ((rc = store__lock_dir(s, err, errlen)) != 0)
        goto fail;
    file = xasprintf("%s/agentd.db", dir);
    if ((rc = sqlite3_open_v2(file, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                              NULL)) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", file, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        rc = store__errno(rc);
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    /* Keep the (preallocated) WAL file when the database closes instead of deleting it. */
    int persist = 1;
    sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    /* synchronous=NORMAL: commits write the WAL without fsync; checkpoints fsync before they copy
     * back. Durability comes from store_sync, which the stream layer runs off the loop thread.
     * secure_delete=FAST: freed pages are not overwritten with zeros (Debian's SQLite zeroes them by
     * default), so emptying a log segment or purging a deleted stream frees pages without writing
     * them; deleted bytes stay in free pages of the 0600 database until reused. */
    if ((rc = store__exec(s,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;"
                          " PRAGMA cache_size=-4000; PRAGMA secure_delete=FAST;",
                          "initialise", err, errlen)) != 0 ||
        (rc = store__schema(s, err, errlen)) != 0 ||
        (rc = store__exec(s,
                          "INSERT OR REPLACE INTO meta(k, v) VALUES('opened_ms', CAST(strftime('%s', 'now')"
                          " AS INTEGER) * 1000)",
                          "initialise", err, errlen)) != 0)
        goto fail;
    if ((rc = store__wal_open(s, file, err, errlen)) != 0)
        goto fail;
    for (int i = 0; i < ST__COUNT; i++) {
        if ((rc = sqlite3_prepare_v3(s->db, store__sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                                     NULL)) != SQLITE_OK) {
            snprintf(err, errlen, "cannot prepare statement: %s", sqlite3_errmsg(s->db));
            rc = store__errno(rc);
            goto fail;
        }
    }
    s->purge_pending = 1; /* the first upkeep looks */
    if ((rc = store__hot_rebuild(s)) != 0 || (rc = store__txn(s)) != 0) {
        snprintf(err, errlen, "cannot read the log of %s: %s", file, sqlite3_errmsg(s->db));
        goto fail;
    }
    free(file);
    *out = s;
    return 0;

fail:
    free(file);
    store_sqlite_free(s);
    *out = NULL;
    return rc < 0 ? rc : -EIO;
}

void store_sqlite_free(struct store_sqlite *s)
{
    if (s == NULL)
        return;
    if (s->in_batch && store_sqlite_commit(s) != 0)
        log_error("store: final commit failed: %s", store_sqlite_errmsg(s));
    if (s->txn && store__run(s->stmt[ST_COMMIT]) != 0) /* the read transaction */
        log_error("store: ending the read transaction failed: %s", store_sqlite_errmsg(s));
    store__wal_close(s); /* the checkpointer first: it reads what the connection wrote */
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    store__hot_clear(s);
    free(s->dir);
    free(s->wal_path);
    free(s);
}

const char *store_sqlite_errmsg(struct store_sqlite *s) { return sqlite3_errmsg(s->db); }

int store__run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store__errno(rc);
}

/* Opens the batch if none is open. */
/*
 * The connection stays inside a transaction from one commit to the next: reads between batches
 * then take SQLite's locks once per batch instead of once per statement (with two connections
 * sharing the WAL, each lock is a system call: a read measured 11 µs that way, 1 µs inside a
 * transaction). The first write turns it into the batch's write transaction. Only this
 * connection writes, so its snapshot is never stale.
 */
static int store__txn(struct store_sqlite *s)
{
    if (s->txn)
        return 0;
    int rc = store__run(s->stmt[ST_BEGIN]);
    if (rc != 0)
        log_error("store: BEGIN failed: %s", store_sqlite_errmsg(s));
    s->txn = rc == 0;
    return rc;
}

/* Opens the batch if none is open. */
static int store__begin(struct store_sqlite *s)
{
    if (s->in_batch)
        return 0;
    int rc = store__txn(s);
    s->in_batch = rc == 0;
    return rc;
}

void store__poison(struct store_sqlite *s, int rc)
{
    if (store__begin(s) == 0 && s->poisoned == 0)
        s->poisoned = rc;
}

/* Every batch write goes through here: opens the batch, runs, poisons on failure. */
int store__write(struct store_sqlite *s, sqlite3_stmt *st)
{
    int rc = s->poisoned;
    if (rc == 0)
        rc = store__begin(s);
    if (rc != 0) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return rc;
    }
    if ((rc = store__run(st)) != 0) {
        log_error("store: write failed: %s", store_sqlite_errmsg(s));
        s->poisoned = rc;
    }
    return rc;
}

static void store__bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void store__bind_meta(sqlite3_stmt *st, const struct store_meta *m)
{
    store__bind_text(st, 1, m->path);
    store__bind_text(st, 2, m->content_type);
    sqlite3_bind_int64(st, 3, m->created_ms);
    sqlite3_bind_int64(st, 4, m->ttl_s);
    sqlite3_bind_int64(st, 5, m->expires_at_ms);
    store__bind_text(st, 6, m->expires_at);
    sqlite3_bind_int(st, 7, m->closed);
    sqlite3_bind_int64(st, 8, m->tail);
    sqlite3_bind_int64(st, 9, m->fork_src);
    sqlite3_bind_int64(st, 10, m->fork_off);
    sqlite3_bind_int64(st, 11, m->fork_sub);
    sqlite3_bind_int64(st, 12, m->refcount);
    sqlite3_bind_int(st, 13, m->deleted);
    store__bind_text(st, 14, m->last_seq);
    store__bind_text(st, 15, m->closer_pid);
    sqlite3_bind_int64(st, 16, m->closer_epoch);
    sqlite3_bind_int64(st, 17, m->closer_seq);
}

int store_sqlite_stream_insert(struct store_sqlite *s, struct store_meta *m)
{
    sqlite3_stmt *st = s->stmt[ST_STREAM_INSERT];
    store__bind_meta(st, m);
    int rc = store__write(s, st);
    if (rc == 0)
        m->id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int store_sqlite_stream_update(struct store_sqlite *s, const struct store_meta *m)
{
    sqlite3_stmt *st = s->stmt[ST_STREAM_UPDATE];
    store__bind_meta(st, m);
    sqlite3_bind_int64(st, 18, m->id);
    return store__write(s, st);
}

/* The row and the producers go now; the records go to the purge (store_log.c), a bounded share per
 * commit, so deleting a long stream never holds the loop; its rows in the log are dead from now on. */
int store_sqlite_stream_delete(struct store_sqlite *s, int64_t id)
{
    static const enum store__stmt order[] = {ST_PRODUCERS_DELETE, ST_STREAM_DELETE, ST_PURGE_ADD};
    for (size_t i = 0; i < CORE_ARRAY_LEN(order); i++) {
        sqlite3_stmt *st = s->stmt[order[i]];
        sqlite3_bind_int64(st, 1, id);
        int rc = store__write(s, st);
        if (rc)
            return rc;
    }
    store__hot_drop(s, id);
    s->purge_pending = 1;
    return 0;
}

int store_sqlite_record_append(struct store_sqlite *s, int64_t stream, int64_t off, const void *data,
                               size_t len)
{
    return store__log_record(s, stream, off, data, len);
}

int store_sqlite_producer_put(struct store_sqlite *s, int64_t stream, const char *pid, int64_t epoch,
                              int64_t seq)
{
    return store__log_producer(s, stream, pid, epoch, seq);
}

int store_sqlite_batch_open(const struct store_sqlite *s) { return s->in_batch; }

int store_sqlite_commit(struct store_sqlite *s)
{
    if (!s->in_batch)
        return 0;
    if (!s->poisoned)
        store__upkeep_step(s, 0);
    int rc = s->poisoned;
    if (rc == 0 && (rc = store__run(s->stmt[ST_COMMIT])) != 0)
        log_error("store: COMMIT failed: %s", store_sqlite_errmsg(s));
    if (rc != 0 && !sqlite3_get_autocommit(s->db) && store__run(s->stmt[ST_ROLLBACK]) != 0)
        log_error("store: ROLLBACK failed: %s", store_sqlite_errmsg(s));
    s->in_batch = 0;
    s->txn = 0;
    s->poisoned = 0;
    s->batch_rows = s->batch_bytes = 0;
    if (rc != 0) {
        /* The memory index may name rows the rollback took away: read it again. */
        int rrc = store__hot_rebuild(s);
        if (rrc != 0)
            log_error("store: cannot rebuild the log index after a rollback: %s", strerror(-rrc));
        (void)store__txn(s);
        return rc;
    }
    s->commits++;
    rc = store__wal_committed(s);
    (void)store__txn(s); /* a failure shows again at the next write */
    return rc;
}

void store_sqlite_rollback(struct store_sqlite *s)
{
    if (!s->in_batch)
        return;
    store__poison(s, -ECANCELED);
    int rc = store_sqlite_commit(s); /* a poisoned batch is rolled back, the log index read again */
    assert(rc == -ECANCELED);
    (void)rc;
}

int store_sqlite_upkeep(struct store_sqlite *s)
{
    if (s->in_batch)
        return 0;
    store__upkeep_step(s, 1);
    return s->in_batch;
}

void store_sqlite_stats(struct store_sqlite *s, struct store_stats *out)
{
    /* SQLite counts every page its pager writes at a commit (frames appended to the WAL); the
     * checkpoint's copies into the database file are not counted. */
    int cur = 0, hi = 0;
    sqlite3_db_status(s->db, SQLITE_DBSTATUS_CACHE_WRITE, &cur, &hi, 0);
    out->commits = s->commits;
    out->pages_written = (uint64_t)(unsigned)cur;
}

/* Reads the rows of records that overlap [from, to), whole. Returns the rows read. */
static int store__read_records(struct store_sqlite *s, int64_t stream, int64_t from, int64_t to,
                               size_t max_bytes, size_t *total, store_record_cb cb, void *arg)
{
    sqlite3_stmt *st = s->stmt[ST_READ];
    int n = 0, rc = SQLITE_DONE;
    sqlite3_bind_int64(st, 1, stream);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, to);
    while (*total < max_bytes && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t off = sqlite3_column_int64(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        if (off + (int64_t)len <= from)
            continue;
        cb(off, sqlite3_column_blob(st, 1), len, arg);
        *total += len;
        n++;
    }
    int err = *total >= max_bytes || rc == SQLITE_DONE ? 0 : store__errno(rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err ? err : n;
}

int store_sqlite_read(struct store_sqlite *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                      store_record_cb cb, void *arg)
{
    const struct store__hot *h = store__hot_get(s, stream, 0);
    int64_t cold_end = h && h->n ? h->ent[0].off : INT64_MAX;
    size_t total = 0;
    int n = 0, rc;
    if (from < cold_end && from < to) {
        if ((rc = store__read_records(s, stream, from, to < cold_end ? to : cold_end, max_bytes, &total, cb,
                                      arg)) < 0)
            return rc;
        n += rc;
    }
    if (total < max_bytes && cold_end < to) {
        if ((rc = store__read_log(s, h, from > cold_end ? from : cold_end, to, max_bytes, &total, cb, arg)) <
            0)
            return rc;
        n += rc;
    }
    return n;
}

int store_sqlite_read_back(struct store_sqlite *s, int64_t stream, int64_t before, store_record_back_cb cb,
                           void *arg)
{
    /* The log holds the newest rows: those first, then records, descending. */
    const struct store__hot *h = store__hot_get(s, stream, 0);
    int n = 0, stop = 0, rc;
    if (h && h->n && (n = store__read_log_back(s, h, before, cb, arg, &stop)) < 0)
        return n;
    if (stop)
        return n;
    sqlite3_stmt *st = s->stmt[ST_READ_BACK];
    sqlite3_bind_int64(st, 1, stream);
    sqlite3_bind_int64(st, 2, before);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        n++;
        if (cb(sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1),
               arg))
            break;
    }
    int err = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store__errno(rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err ? err : n;
}

static char *store__col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? xstrdup((const char *)t) : NULL;
}

/* Reports the producers of records (unless the log holds a newer state), then the log's. */
static int store__load_producers(struct store_sqlite *s, store_producer_cb on_producer, void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT stream, pid, epoch, seq FROM producers", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store__errno(rc);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t stream = sqlite3_column_int64(st, 0);
        const char *pid = (const char *)sqlite3_column_text(st, 1);
        const struct store__hot *h = store__hot_get(s, stream, 0);
        int newer = 0;
        for (size_t i = 0; h && i < h->np && !newer; i++)
            newer = strcmp(h->pp[i].pid, pid) == 0;
        if (!newer)
            on_producer(stream, pid, sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3), arg);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store__errno(rc);
    for (size_t b = 0; b < s->hot.nbuckets; b++) {
        for (const struct map_entry *e = s->hot.buckets[b]; e; e = e->next) {
            const struct store__hot *h = e->value;
            for (size_t i = 0; i < h->np; i++)
                on_producer(h->stream, h->pp[i].pid, h->pp[i].epoch, h->pp[i].seq, arg);
        }
    }
    return 0;
}

int store_sqlite_load(struct store_sqlite *s, store_meta_cb on_stream, store_producer_cb on_producer,
                      void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        s->db,
        "SELECT id, path, content_type, created_ms, ttl_s, expires_at_ms, expires_at,"
        " closed, coalesce((SELECT r.off + length(r.data) FROM records r WHERE r.stream = streams.id"
        " ORDER BY r.off DESC LIMIT 1), fork_off), fork_src, fork_off, fork_sub, refcount, deleted, last_seq,"
        " closer_pid, closer_epoch, closer_seq FROM streams ORDER BY id",
        -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store__errno(rc);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_meta m = {
            .id = sqlite3_column_int64(st, 0),
            .path = store__col_text(st, 1),
            .content_type = store__col_text(st, 2),
            .created_ms = sqlite3_column_int64(st, 3),
            .ttl_s = sqlite3_column_int64(st, 4),
            .expires_at_ms = sqlite3_column_int64(st, 5),
            .expires_at = store__col_text(st, 6),
            .closed = sqlite3_column_int(st, 7),
            .tail = sqlite3_column_int64(st, 8),
            .fork_src = sqlite3_column_int64(st, 9),
            .fork_off = sqlite3_column_int64(st, 10),
            .fork_sub = sqlite3_column_int64(st, 11),
            .refcount = sqlite3_column_int64(st, 12),
            .deleted = sqlite3_column_int(st, 13),
            .last_seq = store__col_text(st, 14),
            .closer_pid = store__col_text(st, 15),
            .closer_epoch = sqlite3_column_int64(st, 16),
            .closer_seq = sqlite3_column_int64(st, 17),
        };
        /* The newest bytes are in the log when the stream has rows there. */
        const struct store__hot *h = store__hot_get(s, m.id, 0);
        if (h && h->n)
            m.tail = h->ent[h->n - 1].off + (int64_t)h->ent[h->n - 1].len;
        on_stream(&m, arg);
        store_meta_clear(&m);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return store__errno(rc);
    return store__load_producers(s, on_producer, arg);
}
