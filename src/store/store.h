/*
 * store — the durable log of every stream, behind one interface with two backends (store.c hands
 * each call to the backend the store was opened with):
 *   - SQLite (store_open; store_sqlite.c, store_log.c, store_wal.c): one database file in the data
 *     dir, WAL mode. The default: one machine, nothing to run beside agentd.
 *   - PostgreSQL (store_open_pg; store_pg.c): a database reached with libpq, for a store that
 *     outlives the machine agentd runs on.
 *
 * What a store owns: its database connections, statements, and the current write batch. It knows
 * rows (streams, records, producer states), not protocol rules; src/stream decides what to write.
 *
 * Group commit: every write call joins the open batch (begun lazily by the first write);
 * store_commit ends it. The caller acknowledges a batch's requests only after store_commit and a
 * store_sync that started after it have both returned 0 (store_sync may run in another thread while
 * the loop goes on writing and committing the next batches). Any failed write poisons the batch:
 * store_commit then drops it whole and returns the error, so a batch is stored whole or not at all
 * and nothing acknowledged before is touched.
 *   - SQLite: store_commit is one COMMIT, atomic and crash-consistent (WAL with
 *     synchronous=NORMAL: it survives kill -9 of agentd) but not yet durable: under STORE_FSYNC,
 *     store_sync (one fdatasync of the WAL) makes every commit that returned before it durable.
 *   - PostgreSQL: store_commit only seals the batch in memory; store_sync sends every sealed batch
 *     to the database in one transaction (pipelined: one round trip) and returns once its COMMIT
 *     has returned, PostgreSQL's own durability point. So the loop never waits for a commit.
 *
 * A stream's bytes are addressed by offset; each append is a record at the stream's end. Reads see
 * one contiguous byte range. Reads run on the loop's connection (PostgreSQL: also on a pool of
 * connections of their own, from other threads: store_read_pooled): with SQLite they can see rows
 * of the open batch, so callers bound every read by the durable tail they track.
 */
#ifndef AGENTD_STORE_H
#define AGENTD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Shards (doc/SHARDING-PLAN.md): the unit of ownership among nodes. A stream's shard follows from
 * its path alone (store_shard.c says how), so any node can route without a lookup. SQLite is the
 * degenerate case of one shard. STORE_SHARDS is the count a new PostgreSQL schema is created with. */
#define STORE_SHARDS 64
int store_shard_of(const char *path, size_t len, int nshards);
/* A set of shards: a bitmap of STORE_SHARDS bits, shard k at bit k % 64 of word k / 64. */
#define STORE_SHARD_WORDS ((STORE_SHARDS + 63) / 64)
/* Is shard k in the set? NULL is the set of every shard. */
static inline int store_shard_in(const uint64_t *shards, int k)
{
    return shards == NULL || (k >= 0 && k < STORE_SHARDS && (shards[k / 64] >> (k % 64) & 1));
}

struct store;

enum store_durability {
    STORE_FSYNC, /* store_sync fsyncs the WAL: a synced commit survives power loss */
    STORE_OS,    /* no fsync: a commit survives a crash of the process, not of the machine */
};

/* The persisted configuration and mutable state of one stream. Strings are heap copies owned by
 * the struct: free with store_meta_clear. */
struct store_meta {
    int64_t id;
    /* Its shard (store_shard_of its path), set by store_stream_insert and kept for good (a
     * detached row keeps it). SQLite has one shard: always 0. */
    int shard;
    char *path; /* NULL once detached: expired or replaced but still read by forks */
    char *content_type;
    int64_t created_ms;
    int64_t ttl_s;         /* -1: none */
    int64_t expires_at_ms; /* -1: none */
    char *expires_at;      /* the Stream-Expires-At text as given, NULL if none */
    int closed;
    int64_t tail;     /* end offset of the last record; recomputed from the records on load */
    int64_t fork_src; /* id of the source stream, 0 if not a fork */
    int64_t fork_off; /* offset the fork was taken at; reads below it go to the source */
    int64_t fork_sub; /* sub-offset asked for at fork time (compared on re-create) */
    int64_t refcount; /* forks that read through this stream */
    int deleted;      /* soft-deleted: kept only for its forks */
    char *last_seq;   /* last Stream-Seq, NULL if none */
    char *closer_pid; /* producer tuple whose append closed the stream, NULL if none */
    int64_t closer_epoch, closer_seq;
};
void store_meta_clear(struct store_meta *m);
void store_meta_copy(struct store_meta *dst, const struct store_meta *src);

/* Opens (creating if needed) DIR/agentd.db. On failure returns -errno and a message in err. */
int store_open(struct store **out, const char *dir, enum store_durability durability, char *err,
               size_t errlen) CORE_UNUSED_RESULT;
/*
 * Connects to PostgreSQL (conninfo: a postgres:// URL or a libpq key=value string; TLS and the
 * rest go in it), creates or migrates agentd's tables (versioned in agentd_meta), registers the
 * node and takes the database's write lease for it: one node writes at a time. A node that finds
 * another node's lease live waits, blocking, until it expires (a standby); the same node name
 * takes its own lease back at once (a restart). The lease is renewed by a heartbeat thread; every
 * batch's transaction checks it first (fencing), so a node that lost it (paused, cut off) cannot
 * store a single row after another node took over. Blocking: start-up only. STORE_OS commits with
 * synchronous_commit=off. -errno and a message in err: unreachable, a schema written by a newer
 * agentd.
 */
struct store_pg_config {
    const char *conninfo;
    const char *node;     /* this node's name, unique among the nodes on the database */
    const char *node_url; /* how clients reach it (GET /v1/nodes lists it), or NULL */
    /* What its --token is, as a string the store records and compares but does not interpret
     * (serve: "none", or "sha256:" and the hex of a SHA-256). NULL: "none". The store refuses to
     * open (-EACCES, naming the node in err) while another node that was heard of within the last
     * two leases plus a second recorded another one; store_lease reports the holder's. */
    const char *token_hash;
    int64_t lease_ms; /* how long the lease outlives its last renewal */
    enum store_durability durability;
    /* Follower mode: a live lease of another node is not waited for; the store opens without it
     * (writes are fenced) and the heartbeat thread watches the lease instead (store_lease says who
     * holds it), taking it as soon as it expires. on_lease then runs, on that thread, whenever what
     * store_lease says changed (taken by this node, another owner): a libuv async's send, say. It
     * runs too, once, when a node that held the lease finds it taken over (a renewal or a batch
     * fenced; then from the heartbeat thread or a sync's worker thread): store_lease's self is 0. */
    int follow;
    /* The take policy (doc/SHARDING-PLAN.md §1), experimental: 0, all or nothing (one node holds
     * every shard); 1, balance: each node takes free shards (expired, never held) up to
     * ceil(shards / live nodes), all it may in one beat, and a shard store_shard_want asks for first. */
    int balance;
    void (*on_lease)(void *arg);
    void *lease_arg;
};
int store_open_pg(struct store **out, const struct store_pg_config *cfg, char *err,
                  size_t errlen) CORE_UNUSED_RESULT;
/* Commits any open batch, then closes. NULL is a no-op. */
void store_free(struct store *s);
/* "sqlite" or "postgres". */
const char *store_backend(const struct store *s);
/* Does a batch survive kill -9 of agentd once store_commit has returned (SQLite), or only once the
 * store_sync after it has (PostgreSQL)? */
int store_commit_persists(const struct store *s);
/* Can the store write to its database? Reconnects when the connection was lost (blocking, bounded
 * by the connection timeout), and takes the lease back if this node lost it and it has expired.
 * 0; -ENOTCONN while the database cannot be reached; -EPERM while another node holds the lease.
 * SQLite: always 0. */
int store_available(struct store *s);
/* The database was found unreachable: until store_available runs again, the loop's connection is
 * not reconnected from the loop (against a host that drops packets each try would hold the loop for
 * the connect timeout): what needs it fails -ENOTCONN at once. SQLite: nothing. */
void store_offline(struct store *s);
/* Is the database reachable? Asked off the loop (a thread of its own, on a connection of its own):
 * store_probe_start starts it (NULL when there is nothing to ask: SQLite), store_probe_done says
 * whether it has finished (1, with 0 or -ENOTCONN in rc; NULL: 1 at once), store_probe_free lets go
 * of it, finished or not (a probe still connecting ends on its own). Once one has answered 0,
 * store_available reconnects the loop's connection (most likely at once). */
struct store_probe;
struct store_probe *store_probe_start(struct store *s);
int store_probe_done(struct store_probe *p, int *rc);
void store_probe_free(struct store_probe *p);

/* Who holds the write lease, as the heartbeat last saw it (no query). SQLite: this process. */
struct store_lease {
    int self;        /* this node holds it (its registry may be loaded and written) */
    int live;        /* a node holds a lease that has not expired */
    int64_t epoch;   /* of the holder's lease */
    int64_t left_ms; /* until it expires, as last renewed (aged locally since) */
    /* since this node last read the lease (its own monotonic clock; a follower looks every 100 ms,
     * a holder renews every quarter lease; SQLite: 0). What the view says of the holder dates from
     * then: a view whose lease is live may still be older than the holder's current run. */
    int64_t looked_ms_ago;
    char owner[256];     /* the holder's name ("" when nobody ever held it) */
    char owner_url[256]; /* its --node-url ("" when it gave none) */
    char previous[256];  /* the node that held it before this node took it ("": nobody, or not taken) */
    /* the holder's store_pg_config.token_hash as it registered it ("" when it recorded none: an
     * agentd from before schema 3) */
    char owner_token[80];
};
/* Shard 0's lease. While shards are taken all or nothing (doc/SHARDING-PLAN.md §7, increment 1)
 * its holder holds every shard: "self" says this node may write, as schema 4's single lease did. */
void store_lease(struct store *s, struct store_lease *out);
/* Each shard's lease, as store_lease says shard 0's: fills out[k] for the first max shards and
 * returns how many shards there are (SQLite: 1, held by this process). */
int store_shards(struct store *s, struct store_lease *out, int max);
/* Any thread. Asks the heartbeat to try shard k first at its next beat, which it does at once (a
 * request waits for k, which no live node holds), within this node's share (balance policy only;
 * otherwise, and on SQLite, nothing). */
void store_shard_want(struct store *s, int k);
/* Any thread. Gives shard k up at the heartbeat's next beat: no longer held here (a batch that
 * writes it afterwards is fenced), its row expired for another node to take. The caller drained it
 * first (doc/SHARDING-PLAN.md §5). SQLite: nothing. */
void store_shard_release(struct store *s, int k);
/* Any thread. This node's share, ceil(shards / live nodes), as the balance heartbeat last computed
 * it (the voluntary hand-off gives up what it holds above it); 0 when unknown: not balance, SQLite,
 * the database unreachable, or the grace after an outage. */
int store_shard_share(struct store *s);
/* How long (ms) after it was last heard of a node that holds no shard still counts as live in the
 * share (a newcomer waiting for the hand-off; a dead node whose rows were all taken): a lease, at
 * least a second. Such a node says it is alive every quarter lease, at most a second apart; a
 * holder counts while one of its rows' leases lives. */
#define STORE_LIVE_ROWLESS_MS(lease_ms) ((lease_ms) > 1000 ? (int64_t)(lease_ms) : (int64_t)1000)

/* The nodes that use the store's database (SQLite: this one). */
enum store_node_state {
    STORE_NODE_LIVE,        /* heard of within a few of its heartbeats */
    STORE_NODE_UNREACHABLE, /* not heard of for longer: killed, paused, or cut off from the database */
    STORE_NODE_STOPPED      /* stopped cleanly (its store closed) and not started again */
};
struct store_node {
    char node[256];
    char url[256];         /* "" when it gave none */
    int owner;             /* holds the write lease */
    int self;              /* this process */
    int64_t epoch;         /* of the lease, for the owner */
    int64_t lease_ms_left; /* owner: until its lease expires (negative: expired) */
    int64_t seen_ms_ago;   /* since its last heartbeat */
    enum store_node_state state;
    int shards; /* how many shards it holds (agentd_shards names it; SQLite: 1) */
    /* Its load as its heartbeat last recorded it (store_set_load); -1: not recorded (a node of an
     * older agentd) */
    int64_t agents, runtimes;
};
/* Fills up to max nodes; returns how many there are (may exceed max), or -errno. No query: a copy
 * of the heartbeat's last read of the nodes (about once a second), with the lease as it last saw
 * it; -ENOTCONN when that read is older than three beats (store_pg_lease.c). Nodes not heard of
 * for a week are left out. */
int store_nodes(struct store *s, struct store_node *out, size_t max);
/* This node's load: its live agents and runtimes, which its heartbeat records in its row of the
 * database (no query here: a mutex-protected copy) for store_nodes to list on every node. The
 * loop's; cheap enough to call every second. */
void store_set_load(struct store *s, int64_t agents, int64_t runtimes);

/* Startup loading: the streams of the shards in `shards` (a STORE_SHARD_WORDS bitmap; NULL: all)
 * and their producers. PostgreSQL filters in its query (from schema 5 on, when the rows have a
 * shard); SQLite has one shard and loads everything. The callbacks borrow their arguments for the
 * duration of the call. */
typedef void (*store_meta_cb)(const struct store_meta *m, void *arg);
typedef void (*store_producer_cb)(int64_t stream, const char *pid, int64_t epoch, int64_t seq, void *arg);
int store_load(struct store *s, const uint64_t *shards, store_meta_cb on_stream,
               store_producer_cb on_producer, void *arg) CORE_UNUSED_RESULT;
/* A load off the loop (a balance node's take of shards, doc/ARCHITECTURE.md "Several nodes on one
 * database"): store_load, store_load_ids and store_load_refs from any thread, each on a reader of
 * store_read_pooled's (the same slots and waits; store_reads_cancel fails them). What they report is
 * not noted in the store: the loop, which keeps the rows, hands each to store_loaded (PostgreSQL:
 * the map of stream id to shard that fences a batch's rows naming only their stream). SQLite:
 * -ENOTSUP (its loads are of a local file, on the loop), and store_loaded does nothing. */
int store_load_pooled(struct store *s, const uint64_t *shards, store_meta_cb on_stream,
                      store_producer_cb on_producer, void *arg) CORE_UNUSED_RESULT;
void store_loaded(struct store *s, const struct store_meta *m);

/*
 * Fork references (doc/SHARDING-PLAN.md §2.3): the set of (source, fork) pairs, one per fork that
 * reads through its source. A source is reclaimed once it is deleted and has none left. Only the
 * source's owner writes them (store_fork_ref, store_fork_unref: batch writes, in the source's shard;
 * a ref or an unref sent twice changes nothing). PostgreSQL keeps them in agentd_fork_refs, where a
 * ref can outlive its fork (a fork's create that failed after its ref committed, an unref lost on
 * the way): the source's owner reconciles them (store_fork_refs_leaked). SQLite has one shard, so a
 * ref commits in the fork's own transaction: its refs are the fork rows themselves (fork_src), the
 * two calls write nothing and none ever leaks; the source row's refcount column counts them there,
 * as it always did.
 *
 * store_load_refs: the refs of the sources in `shards` (NULL: all), committed. store_fork_refs_leaked:
 * those whose fork row is gone. Both on the loop's connection, each callback borrowing nothing.
 */
typedef void (*store_ref_cb)(int64_t src, int64_t fork, void *arg);
int store_fork_ref(struct store *s, int64_t src, int64_t fork);
int store_fork_unref(struct store *s, int64_t src, int64_t fork);
int store_load_refs(struct store *s, const uint64_t *shards, store_ref_cb cb, void *arg) CORE_UNUSED_RESULT;
int store_fork_refs_leaked(struct store *s, const uint64_t *shards, store_ref_cb cb,
                           void *arg) CORE_UNUSED_RESULT;
/* store_fork_refs_leaked on a reader of store_read_pooled's, from any thread (SQLite: none, as
 * store_fork_refs_leaked). */
int store_fork_refs_leaked_pooled(struct store *s, const uint64_t *shards, store_ref_cb cb,
                                  void *arg) CORE_UNUSED_RESULT;
/* The rows of the given stream ids (those that exist), as store_load reports them, without their
 * producers: the fork sources of loaded streams that are in shards not loaded (stubs). */
int store_load_ids(struct store *s, const int64_t *ids, size_t n, store_meta_cb on_stream,
                   void *arg) CORE_UNUSED_RESULT;
/* store_load_ids and store_load_refs off the loop: see store_load_pooled. */
int store_load_ids_pooled(struct store *s, const int64_t *ids, size_t n, store_meta_cb on_stream,
                          void *arg) CORE_UNUSED_RESULT;
int store_load_refs_pooled(struct store *s, const uint64_t *shards, store_ref_cb cb,
                           void *arg) CORE_UNUSED_RESULT;

/* Batch writes. Each returns 0 or a negative errno; a failure also poisons the batch. */
int store_stream_insert(struct store *s, struct store_meta *m); /* sets m->id, unless one is set */
/* A new stream's id, handed out now for an insert to come (m->id preset): a fork whose source's
 * owner is another node writes the ref with it before the fork's row exists (doc/SHARDING-PLAN.md
 * §2.3). An id reserved and never inserted is lost, as ids are never reused anyway. PostgreSQL
 * only (SQLite's one shard is always local): -ENOTSUP there. */
int store_stream_id_reserve(struct store *s, int64_t *id);
int store_stream_update(struct store *s, const struct store_meta *m);
int store_stream_delete(struct store *s, int64_t id); /* the row, its records and producers */
/* Appends a record at `off`, which must be the stream's end (else -EEXIST or -EINVAL, and the batch
 * is poisoned). */
int store_record_append(struct store *s, int64_t stream, int64_t off, const void *data, size_t len);
int store_producer_put(struct store *s, int64_t stream, const char *pid, int64_t epoch, int64_t seq);

/*
 * Background upkeep: moving records out of the shared log and giving deleted streams' space back.
 * Every store_commit does a bounded share of it; store_upkeep does a (larger, still bounded) share
 * when no batch is open, for a caller with nothing else to do. Returns 1 when it opened a batch
 * (commit it as usual, then call again), 0 when nothing was pending.
 */
int store_upkeep(struct store *s);

/* Does store_sync do anything (SQLite under STORE_FSYNC; PostgreSQL always)? */
int store_needs_sync(const struct store *s);
/* Makes every commit that returned before this call durable. Safe to run in another thread while
 * the loop thread uses the store (SQLite: it only fsyncs a file descriptor; PostgreSQL: it has a
 * connection of its own). 0 or -errno (PostgreSQL: -ENOTCONN when the database cannot be reached;
 * then nothing sealed is kept, and the caller drops the open batch with store_rollback). */
int store_sync(struct store *s) CORE_UNUSED_RESULT;
/* A sync decided on the loop and run in another thread: store_sync_begin (on the loop) marks the
 * commits made so far, store_sync_marked (any thread) makes those durable. On PostgreSQL it sends
 * only the batches sealed before the mark: one sealed between the mark and the send is left to the
 * next sync, so that it is answered with the outcome of the sync that stored it (a later sync that
 * fails, fenced, must not fail what an earlier one stored). A store_sync meanwhile sends everything
 * and clears the mark. SQLite: the same as store_sync. */
void store_sync_begin(struct store *s);
int store_sync_marked(struct store *s) CORE_UNUSED_RESULT;

/* Is a batch open? */
int store_batch_open(const struct store *s);
/* Ends the open batch (no-op when none) keeping nothing of it: for a caller that cannot trust what
 * it wrote into it any more (the stream layer after a failed fsync). */
void store_rollback(struct store *s);
/* Ends the open batch (no-op when none) with one COMMIT. 0: committed, atomic and crash-consistent,
 * durable once a store_sync that starts after it returns (under STORE_FSYNC; at once under
 * STORE_OS). Negative errno: rolled back, nothing kept. */
int store_commit(struct store *s) CORE_UNUSED_RESULT;

/*
 * Reads the records of one stream (not its fork source) that end after `from` and start before
 * `to`, in order, stopping after the record that brings the total to max_bytes or more. A record is
 * one append, or a run of consecutive appends stored together once moved out of the shared log (up
 * to 64 KiB; an append larger than that stays whole). The first record may start before `from` and
 * the last may end after `to` (the caller slices them). The callback borrows data for the call
 * only. Returns the number of records read, or a negative errno.
 */
typedef void (*store_record_cb)(int64_t off, const void *data, size_t len, void *arg);
int store_read(struct store *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
               store_record_cb cb, void *arg);

/*
 * store_read from any thread, for reads run off the loop. PostgreSQL: on one of a few connections
 * of the store's own (store_read_slots of them, connected on first use, reconnected as the loop's
 * is; never the loop's nor the committer's), checked out for the call: a call made while all are
 * busy waits for one, so a caller that must not wait runs at most store_read_slots at once. It sees
 * only committed batches, as every PostgreSQL read does. SQLite: -ENOTSUP (its reads are of a local
 * file and run on the loop: call store_read there). Safe beside the loop's use of the store; the
 * store must not be freed while a call runs.
 */
int store_read_pooled(struct store *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                      store_record_cb cb, void *arg);
/* The path and tail of every stream with a path, not soft-deleted, whose path starts with prefix
 * ("" for all), as store_read_pooled reads (off the loop, on a reader; the subscriptions' repair of
 * commits whose relay from another node was lost, doc/SHARDING-PLAN.md §2.4). cb borrows path for
 * the call. SQLite: -ENOTSUP (one node sees every commit). */
typedef void (*store_tail_cb)(const char *path, int64_t tail, void *arg);
int store_tails_pooled(struct store *s, const char *prefix, store_tail_cb cb, void *arg);
/* How many store_read_pooled calls can run at once without waiting: 0 when the backend has none
 * (SQLite). */
int store_read_slots(const struct store *s);
/* For unit tests of the reads off the loop: a SQLite store reports n slots, so that its readers
 * queue reads for libuv's thread pool as on PostgreSQL (where they fail: -ENOTSUP). */
void store_test_read_slots(struct store *s, int n);
/* At a stop, from the loop: the store_read_pooled (and store_read_back_pooled, view) calls running
 * fail soon (PostgreSQL: their queries are cancelled), and so does every one after. A read the
 * database holds (a lock) would otherwise hold the stop. SQLite: nothing runs off the loop. */
void store_reads_cancel(struct store *s);

/*
 * A follower's reads (it loads no registry; PostgreSQL only, SQLite: -ENOTSUP), from any thread, on
 * one of store_read_pooled's connections, checked out from store_snapshot_open to
 * store_snapshot_close (the same slots, the same waits). store_snapshot_open opens a read snapshot
 * (a REPEATABLE READ READ ONLY transaction) and reads in it the row of the stream at path, with its
 * tail, and the first page (256) of its own records from `from` (-1: none), all in one round trip
 * (one pipeline, the statement prepared once per connection): 1 and *out filled
 * (store_meta_clear it), 0 when there is none, each with *snap open; or -errno, *snap NULL and no
 * connection held. Every call on *snap (store_snapshot_get: the row of stream id;
 * store_snapshot_read: as store_read) sees that one committed state of the database, so a stream's
 * row, its tail and its records agree; the store_snapshot_read of that stream from `from` reads the
 * page already read (and goes on with queries when it was full); a connection lost inside fails
 * them (no reconnect into another snapshot). store_snapshot_close costs no round trip (its ROLLBACK
 * is sent without waiting for the answer, which is read before the connection's next query) and
 * gives the connection back; NULL is a no-op.
 */
struct store_snapshot;
int store_snapshot_open(struct store *s, const char *path, int64_t from, struct store_meta *out,
                        struct store_snapshot **snap);
int store_snapshot_get(struct store_snapshot *sn, int64_t id, struct store_meta *out);
int store_snapshot_read(struct store_snapshot *sn, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                        store_record_cb cb, void *arg);
void store_snapshot_close(struct store_snapshot *sn);

/* Counters since store_open, for benchmarks and debug logs. */
struct store_stats {
    uint64_t commits;       /* batches committed */
    uint64_t pages_written; /* SQLite: database pages those commits wrote (to the write-ahead log) */
    uint64_t reads;         /* store_read and store_read_back calls */
};
void store_stats(struct store *s, struct store_stats *out);

/*
 * Reads records (as store_read has them) of one stream that start before `before`, newest first, until
 * the callback returns nonzero (it stops after that record) or none are left. Bounded backward
 * reads (history pages) cost the records they visit, not the stream's size. The callback borrows
 * data for the call only and must not read from the store. Returns the number of records visited,
 * or a negative errno.
 */
typedef int (*store_record_back_cb)(int64_t off, const void *data, size_t len, void *arg);
int store_read_back(struct store *s, int64_t stream, int64_t before, store_record_back_cb cb, void *arg);

/* store_read_back from any thread, on the connections store_read_pooled uses (the same slots,
 * the same waits). SQLite: -ENOTSUP. */
int store_read_back_pooled(struct store *s, int64_t stream, int64_t before, store_record_back_cb cb,
                           void *arg);

/* The last error text of the database, for logs. */
const char *store_errmsg(struct store *s);

#endif
