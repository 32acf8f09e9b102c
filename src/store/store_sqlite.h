/*
 * store_sqlite — the SQLite backend's internals, shared by store_sqlite.c (the database, batches,
 * reads, loading), store_log.c (the log's in-memory index, moving records out of the log,
 * reclaiming deleted streams) and store_wal.c (SQLite's WAL: its zero fill, the checkpointer
 * thread, fsync). Not for other modules: src/store/store.h is the interface, and store.c hands
 * each of its calls to the store_sqlite_* functions below.
 *
 * The layout (see store.h and doc/ARCHITECTURE.md for why):
 *   log0, log1(seq, stream, off, data | pid, epoch, pseq)   every append of every stream, in commit
 *       order, keyed by a global sequence, so a commit adds rows at one end of one B-tree however
 *       many streams it touches. A row with data is a record; a row without is a producer state.
 *       Two segments: appends go to the active one; a move cycle switches segments, moves the
 *       other one's rows and then empties it whole (which frees its pages without rewriting them).
 *   records(stream, off, data) WITHOUT ROWID          a stream's older bytes, contiguous per stream,
 *       in chunks of consecutive appends (up to STORE_CHUNK bytes, or one larger append);
 *   producers(stream, pid, epoch, seq)                producer states moved out of the log;
 *   streams, purge(stream), meta.
 * A stream's bytes below its "cold end" are in records, the rest in the log. The log's rows are
 * indexed in memory only (struct store__hot per stream); moves copy them into records and producers
 * in bulk, a bounded share per commit, so each stream's pages are written once per move cycle
 * rather than once per commit; then the moved segment is emptied. Opening rebuilds the
 * memory index from what is left in the log, skipping rows a move already copied (offset below the
 * stream's cold end) and rows of deleted streams.
 */
#ifndef AGENTD_STORE_SQLITE_H
#define AGENTD_STORE_SQLITE_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/map.h"
#include "store/store.h"

enum store__stmt {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_STREAM_INSERT,
    ST_STREAM_UPDATE,
    ST_STREAM_DELETE,
    ST_PURGE_ADD,
    ST_PRODUCERS_DELETE,
    /* one statement per log segment: the segment's index is added (store__seg_stmt) */
    ST_LOG_RECORD,
    ST_LOG_RECORD_1,
    ST_LOG_PRODUCER,
    ST_LOG_PRODUCER_1,
    ST_LOG_DATA,
    ST_LOG_DATA_1,
    ST_LOG_CLEAR,
    ST_LOG_CLEAR_1,
    ST_CHUNK_INSERT,
    ST_PRODUCER_PUT,
    ST_READ,
    ST_READ_BACK,
    ST_COLD_END,
    ST_PURGE_NEXT,
    ST_PURGE_SCAN,
    ST_PURGE_RECORDS,
    ST_PURGE_DONE,
    ST__COUNT
};

/* One record in the log: its offsets and its row. */
struct store__ent {
    int64_t off;
    int64_t seq;
    size_t len;
};

/* The newest state of one producer, still only in the log. */
struct store__pput {
    char *pid;
    int64_t epoch, seq;
    int64_t logseq;
};

/* A stream's rows in the log, in offset (= sequence) order. Freed when both lists are empty. */
struct store__hot {
    int64_t stream;
    struct store__ent *ent;
    size_t n, cap;
    struct store__pput *pp;
    size_t np, capp;
    int64_t end; /* rebuild only: end of the stream's known bytes, -1 until looked up */
};

/* The move cycle in progress: every stream with rows in the other segment (up to `upto`), in turn. */
struct store__move {
    int64_t upto;     /* 0: no cycle */
    int64_t *streams; /* the streams to move, taken at the start */
    size_t n, pos;
};

/* The checkpointer thread and what the loop thread tells it (store_wal.c). */
struct store__ckpt {
    pthread_t thread;
    pthread_mutex_t mu;  /* guards wanted, stop, running, handed_over, warned and runs */
    pthread_cond_t cv;   /* to the checkpointer: wanted or stop */
    pthread_cond_t idle; /* from the checkpointer: a run ended */
    int wanted, stop, running;
    int handed_over; /* a run ended: the loop copies the frames left at its next commit */
    uint64_t runs;
    int started; /* loop thread only */
    int warned;  /* times the WAL grew past STORE_WAL_HARD_PAGES */
};

struct store_sqlite {
    sqlite3 *db;      /* the loop thread's connection: every read and write */
    sqlite3 *ckpt_db; /* the checkpointer's own connection */
    struct store__ckpt ckpt;
    int lock_fd; /* flock on DIR/agentd.lock: one agentd per data dir */
    enum store_durability durability;
    char *dir;
    int wal_fd; /* our own descriptor of agentd.db-wal, for store_sync; -1 until the WAL exists */
    char *wal_path;
    off_t wal_filled; /* bytes of the WAL zero-filled ahead of SQLite (store__grow_wal); 0: not known */
    int wal_frames;   /* frames in the WAL after the last commit (store__wal_hook) */
    int page_size;
    sqlite3_stmt *stmt[ST__COUNT];
    int txn;      /* the connection is inside a transaction (read, or the batch's) */
    int in_batch; /* a write joined the transaction: it is the open batch */
    int poisoned; /* negative errno of the first failed write in the open batch, or 0 */
    uint64_t commits;

    struct map hot;        /* stream id (8 bytes) -> struct store__hot */
    size_t hot_rows;       /* log rows the memory index holds (records and producer states) */
    int64_t batch_rows;    /* log rows written in the open batch */
    int64_t batch_bytes;   /* and their bytes */
    int64_t next_seq;      /* the next log row's sequence */
    int seg;               /* the active log segment, 0 or 1 */
    int64_t seg_start;     /* the first sequence in the active segment; all below are in the other */
    int64_t seg_bytes;     /* bytes of data in the active segment (a producer row counts as 32) */
    int old_pending;       /* the other segment holds rows: the next cycle moves it, no switch */
    int64_t move_at;       /* a cycle starts at this many rows in the active segment (STORE_MOVE_AT; */
    int64_t move_bytes;    /* or bytes: STORE_MOVE_BYTES); tests lower them to run many cycles */
    struct store__move mv; /* the move cycle in progress */
    int purge_pending;     /* the purge table may hold streams whose records remain */
};

/* The backend's side of store.h (store.c dispatches each call to it; see there for what each does). */
int store_sqlite_open(struct store_sqlite **out, const char *dir, enum store_durability durability, char *err,
                      size_t errlen) CORE_UNUSED_RESULT;
void store_sqlite_free(struct store_sqlite *s);
int store_sqlite_load(struct store_sqlite *s, store_meta_cb on_stream, store_producer_cb on_producer,
                      void *arg);
int store_sqlite_stream_insert(struct store_sqlite *s, struct store_meta *m);
int store_sqlite_stream_update(struct store_sqlite *s, const struct store_meta *m);
int store_sqlite_stream_delete(struct store_sqlite *s, int64_t id);
int store_sqlite_record_append(struct store_sqlite *s, int64_t stream, int64_t off, const void *data,
                               size_t len);
int store_sqlite_producer_put(struct store_sqlite *s, int64_t stream, const char *pid, int64_t epoch,
                              int64_t seq);
int store_sqlite_upkeep(struct store_sqlite *s);
int store_sqlite_needs_sync(const struct store_sqlite *s);
int store_sqlite_sync(struct store_sqlite *s);
int store_sqlite_batch_open(const struct store_sqlite *s);
void store_sqlite_rollback(struct store_sqlite *s);
int store_sqlite_commit(struct store_sqlite *s);
int store_sqlite_read(struct store_sqlite *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                      store_record_cb cb, void *arg);
int store_sqlite_read_back(struct store_sqlite *s, int64_t stream, int64_t before, store_record_back_cb cb,
                           void *arg);
void store_sqlite_stats(struct store_sqlite *s, struct store_stats *out);
const char *store_sqlite_errmsg(struct store_sqlite *s);
/* The SQLite backend of a store opened with store_open (tests lower its move thresholds). */
struct store_sqlite *store__sqlite(struct store *s);

/* Runs a prepared statement to completion; resets it in every case. 0 or -errno. */
int store__run(sqlite3_stmt *st);
/* Runs a statement inside the open batch (opening one): poisons the batch on failure. */
int store__write(struct store_sqlite *s, sqlite3_stmt *st);
/* Fails the open batch (opening one if none is open): it will roll back whole. */
void store__poison(struct store_sqlite *s, int rc);
/* Maps an SQLite result code to a negative errno. */
int store__errno(int rc);

/* store_wal.c */
/* After the schema: preallocates the WAL, opens the checkpointer's connection to `file` and starts
 * its thread. 0, or -errno with a message in err. */
int store__wal_open(struct store_sqlite *s, const char *file, char *err, size_t errlen) CORE_UNUSED_RESULT;
/* Stops the checkpointer and closes its connection (before the main connection closes). */
void store__wal_close(struct store_sqlite *s);
/* After each COMMIT: our WAL descriptor for store_sync, and the WAL's zero fill. 0 or -errno. */
int store__wal_committed(struct store_sqlite *s);

/* store_log.c */
#define STORE_MOVE_AT    65536
#define STORE_MOVE_BYTES ((int64_t)16 << 20)
struct store__hot *store__hot_get(struct store_sqlite *s, int64_t stream, int create);
void store__hot_drop(struct store_sqlite *s, int64_t stream);
void store__hot_clear(struct store_sqlite *s);
int store__hot_rebuild(struct store_sqlite *s) CORE_UNUSED_RESULT;
int store__log_record(struct store_sqlite *s, int64_t stream, int64_t off, const void *data, size_t len);
int store__log_producer(struct store_sqlite *s, int64_t stream, const char *pid, int64_t epoch, int64_t seq);
int store__read_log(struct store_sqlite *s, const struct store__hot *h, int64_t from, int64_t to,
                    size_t max_bytes, size_t *total, store_record_cb cb, void *arg);
/* store_read_back's part in the log: h's rows starting before `before`, newest first, until the
 * callback returns nonzero (then *stop is set). Returns the rows visited or -errno. */
int store__read_log_back(struct store_sqlite *s, const struct store__hot *h, int64_t before,
                         store_record_back_cb cb, void *arg, int *stop);
/* A bounded share of the upkeep (purge, then move) inside the open batch. 1 if work remains. */
int store__upkeep_step(struct store_sqlite *s, int idle);

#endif
