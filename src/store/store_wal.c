/*
 * store_wal — SQLite's write-ahead log: zero-filled ahead of SQLite's writes, checkpointed by a
 * thread of its own on a connection of its own, and made durable by store_sync (one fdatasync of
 * our own descriptor, run by the stream layer in libuv's thread pool). See store_int.h.
 *
 * Threads: the loop thread owns the main connection (s->db) and everything else in struct store_sqlite;
 * the checkpointer owns s->ckpt_db, and the two meet only at s->ckpt (mutex and condition).
 */
#include "store/store_sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The WAL is zero-filled ahead of SQLite's writes. SQLite overwrites its WAL from the start after
 * each checkpoint (and, with PERSIST_WAL and no journal_size_limit, never shrinks it), so in steady
 * state every commit writes inside the filled region, and its fdatasync need not also persist a new
 * file size (measured here: 107 µs instead of 162 µs back to back). Zeros past the valid frames are
 * never taken for frames.
 *
 * A checkpoint copies each distinct page of the WAL into the database file once, then fsyncs it:
 * the longer the interval, the less it costs per append (32 writers on 32 streams: ~27k/s with
 * SQLite's default of 1000 pages, ~32k/s with 8192). It used to run on the loop thread inside a
 * commit, stalling the loop 0.2-0.4 s every few seconds under many sessions' load; it now runs in
 * the checkpointer thread, on its own connection (which is why the database is no longer opened
 * with exclusive locking: two connections share the WAL index in the -shm file). Commits go on
 * meanwhile, appending to the WAL. SQLite starts the WAL over only at a commit that finds every
 * frame copied, which a checkpoint running beside a busy writer never achieves on its own: so the
 * checkpointer goes over the WAL again while the writer added many frames during its last pass,
 * then hands over, and the loop copies the few frames left (a PASSIVE checkpoint on its own
 * connection, at its next commit: a few hundred pages and the database's fsync, instead of 8192).
 * The fill grows in steps up to the size a WAL reaches between checkpoints, on the loop thread
 * right after a commit, where SQLite is not writing.
 */
#define STORE_WAL_CHECKPOINT_PAGES 8192
#define STORE_WAL_FILL_STEP        ((off_t)8 << 20)
#define STORE_WAL_FILL_MAX         ((off_t)40 << 20) /* > (8192 pages + one large batch) x (4 KiB + 24) */
/* The checkpointer hands over once a pass finds fewer new frames than this (or after a few passes). */
#define STORE_WAL_TAIL_PAGES       512
#define STORE_WAL_PASSES           6
/* Backpressure: a WAL this long means checkpoints do not keep up with commits (a disk slower than
 * the appends); the loop then waits for the checkpointer and copies the rest itself, as it did before
 * the checkpointer, which bounds the WAL and slows the writers down to what the disk takes. */
#define STORE_WAL_HARD_PAGES       (2 * STORE_WAL_CHECKPOINT_PAGES)

/* Zero-fills fd from its current size up to `to` bytes; returns 0 or -errno. */
static int store__zero_fill(int fd, off_t to)
{
    static const char zeros[64 << 10];
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    for (off_t off = st.st_size; off < to;) {
        size_t n = to - off < (off_t)sizeof zeros ? (size_t)(to - off) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, off);
        if (w <= 0)
            return w < 0 ? -errno : -ENOSPC;
        off += w;
    }
    return 0;
}

/* The first step, at open: after SQLite has written the WAL's header (it resets a WAL whose header
 * is not valid); made durable with its directory entry. */
static int store__prealloc_wal(const struct store_sqlite *s)
{
    int rc = 0, fd = open(s->wal_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if ((rc = store__zero_fill(fd, STORE_WAL_FILL_STEP)) == 0 && fdatasync(fd) != 0)
        rc = -errno;
    close(fd);
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rc == 0 && dfd >= 0 && fsync(dfd) != 0)
        rc = -errno;
    if (dfd >= 0)
        close(dfd);
    return rc;
}

/* ================= the checkpointer ================= */

static void *store__ckpt_main(void *arg)
{
    struct store_sqlite *s = arg;
    pthread_mutex_lock(&s->ckpt.mu);
    for (;;) {
        while (!s->ckpt.wanted && !s->ckpt.stop)
            pthread_cond_wait(&s->ckpt.cv, &s->ckpt.mu);
        if (s->ckpt.stop)
            break;
        s->ckpt.wanted = 0;
        s->ckpt.running = 1;
        pthread_mutex_unlock(&s->ckpt.mu);
        /* PASSIVE: copies what no reader still needs, never waits for the writer. Each pass sees the
         * frames the writer added during the one before. */
        int log = 0, copied = 0, before = 0, passes = 0, rc = SQLITE_OK;
        uint64_t t0 = clock_mono_us();
        do {
            before = log;
            rc = sqlite3_wal_checkpoint_v2(s->ckpt_db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
        } while (rc == SQLITE_OK && ++passes < STORE_WAL_PASSES && log - before > STORE_WAL_TAIL_PAGES);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("store: checkpoint failed: %s", sqlite3_errmsg(s->ckpt_db));
        else
            log_debug("store: checkpoint copied %d of %d WAL pages in %d passes, %llu us (off the loop)",
                      copied, log, passes, (unsigned long long)(clock_mono_us() - t0));
        pthread_mutex_lock(&s->ckpt.mu);
        s->ckpt.runs++;
        s->ckpt.running = 0;
        s->ckpt.handed_over = rc == SQLITE_OK;
        pthread_cond_broadcast(&s->ckpt.idle);
    }
    pthread_mutex_unlock(&s->ckpt.mu);
    return NULL;
}

/*
 * SQLite's hook after each commit, with the WAL's frame count. Setting it replaces SQLite's own
 * auto-checkpoint, which would run on this (the loop's) thread; past the threshold it wakes the
 * checkpointer instead.
 */
static int store__wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct store_sqlite *s = arg;
    s->wal_frames = frames;
    if (!s->ckpt.started)
        return SQLITE_OK;
    int tail = 0;
    pthread_mutex_lock(&s->ckpt.mu);
    if (frames >= STORE_WAL_HARD_PAGES) {
        if (!s->ckpt.warned++)
            log_warn("store: the WAL holds %d pages: checkpoints do not keep up with commits, which now wait "
                     "for them",
                     frames);
        while (s->ckpt.running || s->ckpt.wanted)
            pthread_cond_wait(&s->ckpt.idle, &s->ckpt.mu);
        s->ckpt.handed_over = 1;
    }
    if (s->ckpt.handed_over && !s->ckpt.running && !s->ckpt.wanted) {
        tail = 1;
        s->ckpt.handed_over = 0;
    } else if (frames >= STORE_WAL_CHECKPOINT_PAGES && !s->ckpt.wanted && !s->ckpt.running &&
               !s->ckpt.handed_over) {
        s->ckpt.wanted = 1;
        pthread_cond_signal(&s->ckpt.cv);
    }
    pthread_mutex_unlock(&s->ckpt.mu);
    if (tail) { /* the checkpointer is idle: copy what is left, so that the next commit restarts the WAL */
        uint64_t t0 = clock_mono_us();
        int log = 0, copied = 0;
        if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &copied) != SQLITE_OK)
            log_warn("store: checkpoint failed: %s", sqlite3_errmsg(db));
        else
            log_debug("store: the checkpoint's tail: %d of %d WAL pages copied, %llu us on the loop", copied,
                      log, (unsigned long long)(clock_mono_us() - t0));
    }
    return SQLITE_OK;
}

int store__wal_open(struct store_sqlite *s, const char *file, char *err, size_t errlen)
{
    sqlite3_stmt *ps = NULL;
    s->page_size = 4096;
    if (sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &ps, NULL) == SQLITE_OK &&
        sqlite3_step(ps) == SQLITE_ROW)
        s->page_size = sqlite3_column_int(ps, 0);
    sqlite3_finalize(ps);
    /* Only an optimisation: a disk too full (or a file size limit too low) for it is not an error. */
    int rc = store__prealloc_wal(s);
    if (rc != 0)
        log_warn("store: WAL not preallocated in %s (%s); appends still work, a little slower", s->dir,
                 strerror(-rc));
    if ((rc = sqlite3_open_v2(file, &s->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)) !=
            SQLITE_OK ||
        (rc = sqlite3_exec(s->ckpt_db, "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;", NULL, NULL,
                           NULL)) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s for checkpoints: %s", file,
                 s->ckpt_db ? sqlite3_errmsg(s->ckpt_db) : sqlite3_errstr(rc));
        return store__errno(rc);
    }
    pthread_mutex_init(&s->ckpt.mu, NULL);
    pthread_cond_init(&s->ckpt.cv, NULL);
    pthread_cond_init(&s->ckpt.idle, NULL);
    if ((rc = pthread_create(&s->ckpt.thread, NULL, store__ckpt_main, s)) != 0) {
        snprintf(err, errlen, "cannot start the checkpointer: %s", strerror(rc));
        pthread_cond_destroy(&s->ckpt.cv);
        pthread_cond_destroy(&s->ckpt.idle);
        pthread_mutex_destroy(&s->ckpt.mu);
        return -rc;
    }
    s->ckpt.started = 1;
    sqlite3_wal_hook(s->db, store__wal_hook, s);
    return 0;
}

void store__wal_close(struct store_sqlite *s)
{
    if (s->ckpt.started) {
        pthread_mutex_lock(&s->ckpt.mu);
        s->ckpt.stop = 1;
        pthread_cond_signal(&s->ckpt.cv);
        pthread_mutex_unlock(&s->ckpt.mu);
        pthread_join(s->ckpt.thread, NULL);
        pthread_cond_destroy(&s->ckpt.cv);
        pthread_cond_destroy(&s->ckpt.idle);
        pthread_mutex_destroy(&s->ckpt.mu);
        s->ckpt.started = 0;
    }
    sqlite3_close(s->ckpt_db);
    s->ckpt_db = NULL;
}

/* ================= after each commit ================= */

/*
 * Opens our descriptor of the WAL (SQLite has created it by the first commit) and fsyncs the
 * directory once, so that the WAL's name is as durable as its contents.
 */
static int store__open_wal(struct store_sqlite *s)
{
    s->wal_fd = open(s->wal_path, O_RDONLY | O_CLOEXEC);
    int rc = s->wal_fd < 0 ? -errno : 0;
    if (rc != 0)
        log_error("store: cannot open %s for fsync: %s", s->wal_path, strerror(-rc));
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rc == 0 && (dfd < 0 || fsync(dfd) != 0))
        rc = -errno;
    if (dfd >= 0)
        close(dfd);
    return rc;
}

/* One more step of zeros once SQLite's frames come within half a step of the end of the fill. The
 * next store_sync makes the new size durable. Failure only costs speed. */
static void store__grow_wal(struct store_sqlite *s)
{
    struct stat st;
    off_t used = 32 + (off_t)s->wal_frames * (24 + s->page_size); /* header + frames */
    if (s->wal_filled >= STORE_WAL_FILL_MAX || used + STORE_WAL_FILL_STEP / 2 < s->wal_filled)
        return;
    if (s->wal_filled == 0 && fstat(s->wal_fd, &st) == 0 &&
        (s->wal_filled = st.st_size) >= used + STORE_WAL_FILL_STEP / 2)
        return; /* first look: the fill from store_open is still ahead */
    off_t to = s->wal_filled + STORE_WAL_FILL_STEP;
    if (to > STORE_WAL_FILL_MAX)
        to = STORE_WAL_FILL_MAX;
    int fd = open(s->wal_path, O_WRONLY | O_CLOEXEC);
    int rc = fd < 0 ? -errno : store__zero_fill(fd, to);
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        log_warn("store: cannot extend the WAL's preallocation (%s); appends still work", strerror(-rc));
    s->wal_filled = rc == 0 ? to : STORE_WAL_FILL_MAX; /* on failure, stop trying */
}

int store__wal_committed(struct store_sqlite *s)
{
    int rc = 0;
    if (s->durability == STORE_FSYNC && s->wal_fd < 0)
        rc = store__open_wal(s);
    if (rc == 0 && s->wal_fd >= 0)
        store__grow_wal(s);
    return rc;
}

/* ================= durability ================= */

int store_sqlite_needs_sync(const struct store_sqlite *s) { return s->durability == STORE_FSYNC; }

int store_sqlite_sync(struct store_sqlite *s)
{
    if (s->durability != STORE_FSYNC || s->wal_fd < 0)
        return 0;
    return fdatasync(s->wal_fd) == 0 ? 0 : -errno;
}
