/*
 * store_pg internals, shared by store_pg.c (connections, schema, batches, commits) and
 * store_pg_read.c (loading and reads on the loop's connection, and reads on the readers' pool).
 * Not for other modules.
 */
#ifndef AGENTD_STORE_PG_INT_H
#define AGENTD_STORE_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>

#include "store/store_pg.h"

#define PG__STR2(x)     #x
#define PG__STR(x)      PG__STR2(x)
/* The advisory lock key that serializes the schema's creation and migrations. */
#define PG_LOCK_SCHEMA  "4437001"
/* The SQLSTATE agentd_fence_shards raises when the node does not hold a shard it writes to (-EPERM;
 * its DETAIL lists them), and schema 5's agentd_fence always (an older agentd). */
#define PG_FENCED_STATE "AGD01"

/* One row of a batch, in memory until store_pg_sync sends it. */
enum pg__kind {
    PG_INSERT,
    PG_UPDATE,
    PG_DELETE,
    PG_RECORD,
    PG_PRODUCER,
    PG_REF, /* agentd_fork_refs(stream, off): (source, fork) */
    PG_UNREF
};
struct pg__row {
    struct pg__row *next;
    enum pg__kind kind;
    int shard;           /* of its stream (-1: not known, fenced with every shard held) */
    struct store_meta m; /* PG_INSERT, PG_UPDATE */
    int64_t stream, off; /* PG_DELETE, PG_RECORD, PG_PRODUCER, PG_REF, PG_UNREF */
    char *pid;           /* PG_PRODUCER */
    int64_t epoch, seq;
    size_t len; /* PG_RECORD: its bytes */
    unsigned char data[];
};

/* The connections of reads run off the loop (store_pg_read_pooled), checked out under pool_mu.
 * Each is connected on its first use and again after it was lost. PG_READERS: store_pg.h. */
struct pg__reader {
    PGconn *conn;      /* NULL until connected, or while lost */
    int busy;          /* checked out */
    PGcancel *cancel;  /* pool_mu: its connection's, for store_pg_reads_cancel from the loop */
    int lost;          /* its loss was logged (once per outage) */
    int connected;     /* it was connected before (a new connection is logged as a reconnect) */
    int snapshot;      /* inside store_pg_snapshot_open's transaction: never reconnected */
    int unread;        /* has the answer of a command sent without waiting (a snapshot's ROLLBACK) */
    int view_prepared; /* store_pg_snapshot_open's statement is prepared on its connection */
    uint64_t retry_at_us;
};

/* A follower's read snapshot (store_pg_snapshot_open): reader p, checked out until it is closed,
 * and the first page of records read with the stream's row, which the store_pg_snapshot_read of
 * that stream from that offset reads instead of querying again. */
struct store_snapshot {
    struct store_pg *s;
    struct pg__reader *p;
    PGresult *ahead;
    int64_t ahead_stream, ahead_from;
};

/* The heartbeat thread (store_pg_lease.c). */
struct pg__heartbeat {
    pthread_t thread;
    pthread_mutex_t mu; /* guards stop */
    pthread_cond_t cv;
    int stop, started;
    int done;         /* mu: the thread is past its last beat (pg__lease_release waits for it) */
    int abandoned;    /* pg__lease_release did not wait: it still runs, the store is left to it */
    PGconn *conn;     /* its own */
    uint64_t seen_us; /* a follower's last agentd_nodes.seen_ms update (clock_mono_us) */
    uint64_t read_us; /* its last read of agentd_nodes into the store's nodes snapshot (clock_mono_us) */
    int connected;    /* it had a connection before (a new one is a reconnect: grace_us) */
    /* clock_mono_us until which it takes no shard it does not hold (SHARDING-PLAN §1, grace after an
     * outage): set when its connection comes back after a failure, so that after PostgreSQL
     * restarted (every lease then looks expired) the holders renew theirs before anybody takes them. */
    uint64_t grace_us;
    uint64_t renew_us; /* clock_mono_us of its last renewal (the balance policy beats more often) */
};

/* One shard's lease (agentd_shards), under store_pg.mu: this node's hold and what the heartbeat last
 * saw of the row. */
struct pg__shard {
    int64_t epoch; /* of this node's hold, which fences its batches (0: never taken) */
    int fenced;    /* this node held it and found it gone (a batch or a renewal) */
    char holder[256], holder_url[256];
    char holder_token[80]; /* its agentd_nodes.token_hash ("" when NULL: an older agentd) */
    char previous[256];    /* who held it before this node took it */
    int64_t holder_epoch;
    uint64_t holder_until_us; /* clock_mono_us when the holder's lease expires */
};

/* Stream id → shard, for the rows of a batch that name only their stream (records, producers,
 * deletes): filled by the load and by inserts. The loop's (pg__add). Open addressing, ids never 0. */
struct pg__shardmap {
    int64_t *id; /* 0: empty; -1: deleted */
    signed char *shard;
    size_t cap, used, live; /* used: slots not empty (deleted ones too) */
};

struct store_pg {
    char *conninfo;
    char *node, *node_url;
    char *token_hash; /* store_pg_config.token_hash ("none" when it gave none) */
    int64_t lease_ms;
    enum store_durability durability;
    struct pg__heartbeat hb;
    PGconn *conn;  /* the loop's: reads, loading, id blocks, the database lock; NULL while lost */
    PGconn *wconn; /* the committer's (store_pg_sync, under sync_mu); NULL until reconnected */
    pthread_mutex_t sync_mu;
    pthread_mutex_t mu; /* guards sealed, sealed_batches, mark_*, commits, shard[], looked_us */
    struct pg__row *sealed, **sealed_tail;
    uint64_t sealed_batches, commits;
    /* store_pg_sync_begin's mark: where the sealed list ended then, and how many batches it held */
    struct pg__row **mark_tail; /* NULL: no mark */
    uint64_t mark_batches;
    int nshards; /* agentd_meta('shards'), at most STORE_SHARDS */
    /* Each shard's lease (under mu). Taken all or nothing for now (SHARDING-PLAN §7, increment 1):
     * one node holds every shard, and a node that loses one gives all up. */
    struct pg__shard shard[STORE_SHARDS];
    /* The take policy (store_pg_config.balance, store_pg_shards.c): 0, all or nothing; 1, each node
     * takes free shards up to its share. want and release: under mu, shards store_shard_want and
     * store_shard_release asked the heartbeat for (it does both at its next beat). */
    int balance;
    uint64_t want[STORE_SHARD_WORDS], release[STORE_SHARD_WORDS];
    int share; /* under mu: the target the last beat computed (0: none yet, or the database is away) */
    uint64_t looked_us;       /* clock_mono_us of the last pg__look */
    struct pg__shardmap ids;  /* loop thread only */
    int follow;               /* follower mode: the heartbeat watches the lease until it takes it */
    int64_t agents, runtimes; /* store_pg_set_load's (under mu): what the heartbeat records */
    /* agentd_nodes as the heartbeat last read it (under mu; store_pg_nodes copies it, so that GET
     * /v1/nodes runs no query on the loop): each row's state judged and seen_ms_ago counted at the
     * read, whose clock_mono_us is nodes_us (0: none yet). */
    struct store_node *nodes;
    int nodes_n;
    uint64_t nodes_us;
    void (*on_lease)(void *arg);
    void *lease_arg;
    /* loop thread only */
    struct pg__row *open, **open_tail;
    int poisoned;
    int64_t next_id, id_end; /* the reserved block of stream ids not handed out yet */
    uint64_t retry_at_us;    /* no reconnect of the loop's connection before (a failed one waits) */
    int reader_lost;         /* the loop's connection is lost (its failure was logged) */
    int offline;             /* store_pg_offline: not reconnected from the loop until store_pg_available */
    int writer_lost;         /* the same for the committer's (its thread only) */
    pthread_mutex_t pool_mu; /* guards readers[].busy; a reader's other fields are its holder's */
    pthread_cond_t pool_cv;  /* a reader was given back */
    int readers_cancelled;   /* pool_mu: store_pg_reads_cancel ran: no reader query starts */
    struct pg__reader readers[PG_READERS];
};

/* Maps a failed result (or a broken connection) to a negative errno. */
int pg__errno(PGconn *c, const PGresult *r);
/* 0 when r holds rows (PGRES_TUPLES_OK); else clears r and returns pg__errno's -errno. */
int pg__rows(PGconn *c, PGresult *r);
PGconn *pg__connect(const char *conninfo, char *err, size_t errlen);
int pg__exec(PGconn *c, const char *sql, char *err, size_t errlen);

/* store_pg_lease.c */
/* Registers the node and takes the lease on c; with wait, waits for another node's to expire.
 * 0, -EPERM (another node holds it; without wait only), or -errno with a message in err. */
int pg__lease_take(struct store_pg *s, PGconn *c, int wait, char *err, size_t errlen);
/* Refuses (-EACCES, naming the node in err) to start beside a live node with another token_hash. */
int pg__token_check(struct store_pg *s, PGconn *c, char *err, size_t errlen);
/* The heartbeat thread: started once the lease is held; stopped (and the lease given up, so that
 * a standby takes over at once) when the store closes. */
void pg__heartbeat_start(struct store_pg *s);
void pg__lease_release(struct store_pg *s);
/* Refreshes the node's row (agentd_nodes.seen_ms, its load); with read, in the same statement,
 * reads every listed node's row into the nodes snapshot (store_pg_nodes). */
void pg__node_seen(struct store_pg *s, PGconn *c, int read);
/* Whether the heartbeat's next pg__node_seen reads the nodes too: about once a second. */
int pg__nodes_read_due(const struct store_pg *s);
/* Marks shards lost (lost: a STORE_SHARD_WORDS bitmap, or NULL: every shard held) and, the policy
 * being all or nothing, every other one held too; logged and told (on_lease) once. Any thread. */
void pg__fenced(struct store_pg *s, const uint64_t *lost);
/* Does this node hold a shard it has not lost (it may write)? Under mu. pg__held: how many. */
int pg__holds(const struct store_pg *s);
int pg__held(const struct store_pg *s);
/* The heartbeat's pieces the balance policy (store_pg_shards.c) beats with: its connection (made
 * again when lost, starting the grace), a renewal of every shard held, reading every row of
 * agentd_shards (0 or -errno), noting what a row says (under mu), and telling the node. */
int pg__hb_connect(struct store_pg *s);
void pg__renew(struct store_pg *s);
int pg__look(struct store_pg *s, PGconn *c);
void pg__saw(struct store_pg *s, int k, const char *holder, const char *url, const char *token, int64_t epoch,
             uint64_t until_us);
void pg__lease_notify(struct store_pg *s);

/* store_pg_shards.c */
/* Fills agentd_streams.shard and agentd_fork_refs in schema 5's migration, inside its transaction.
 * 0 or -errno with a message in err. */
int pg__migrate_shards(PGconn *c, char *err, size_t errlen);
/* The shard map (struct pg__shardmap). pg__ids_get: -1 when the id is not in it. */
void pg__ids_put(struct pg__shardmap *m, int64_t id, int shard);
int pg__ids_get(const struct pg__shardmap *m, int64_t id);
void pg__ids_del(struct pg__shardmap *m, int64_t id);
void pg__ids_clear(struct pg__shardmap *m);
/* One beat of the balance policy (SHARDING-PLAN §1), on the heartbeat thread: renews the shards
 * held when due, gives up those store_shard_release asked for, reads the rows, and takes free ones
 * (expired, never held, or this node's from before a restart) while it holds fewer than its share,
 * as many as its share allows in one beat, wanted ones first, then the lowest. on_lease when a view changed. */
void pg__balance(struct store_pg *s);
/* Parses agentd_fence_shards' DETAIL ("3,17,40") into a bitmap; 0 when it named none. */
int pg__shards_parse(const char *detail, uint64_t *out);
/* What a batch is fenced with: the shards its rows are in and this node's epoch of each, as
 * PostgreSQL arrays. pg__fence_of: those of rows (under s->mu: the epochs are snapshotted there). */
struct pg__fence {
    char shards[STORE_SHARDS * 4 + 3], epochs[STORE_SHARDS * 21 + 3];
};
void pg__fence_of(struct store_pg *s, const struct pg__row *rows, struct pg__fence *f);

/* store_pg_read.c */
/* Runs a query on the loop's connection, reconnecting once if it was lost (a query that never ran
 * is safe to send again: every query on it reads, or takes a lock or a block of ids). Parameters
 * are text; results binary when `binary`. NULL while the database cannot be reached (libpq's
 * accessors take NULL: PQresultStatus says PGRES_FATAL_ERROR). */
PGresult *pg__query(struct store_pg *s, const char *sql, int n, const char *const *vals, int binary);
/* One query on a reader of the pool (from any thread): 0 with *out its result (PQclear it, also on
 * a failure), or -errno. */
/* A bigint column, in either result format. */
int64_t pg__int(const PGresult *r, int row, int col);
int pg__pooled_query(struct store_pg *s, const char *sql, int n, const char *const *vals, PGresult **out);

#endif
