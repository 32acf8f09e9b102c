/*
 * stream_int — what stream.c (the registry, reads, subscribers, commits), stream_read.c (forward
 * reads, on the loop or off it) and stream_write.c (the write rules) share. Not for other modules.
 */
#ifndef AGENTD_STREAM_INT_H
#define AGENTD_STREAM_INT_H

#include "core/map.h"
#include "store/store.h"
#include "stream/stream.h"

/*
 * The tail cache (stream_cache.c): a stream's newest records, kept in memory as the store would
 * return them (JSON streams in their stored form), so that a read at or near a stream's durable tail
 * costs no store call. Live readers are woken together by each append and all read the same few
 * bytes: from the store that was a query each (SSE readers at one offset share one), on the loop's
 * connection: with PostgreSQL a round trip each while the loop waits. The cache follows every write
 * into the open batch; bytes past durable_tail are held but never served (reads end at the durable
 * tail), and a failed batch's are dropped (stream__cache_rollback) before the registry is reloaded
 * (which frees every stream and its cache). A read that starts before a stream's cache goes to the
 * store, as do history pages (stream_read_back).
 *
 * Which streams have one, and what it may cost (why: the loop saves a query only where someone
 * reads at the tail; everywhere else the bytes would be memory for nothing):
 * - a stream gets one when it is appended to while it has a live reader (a subscriber: SSE,
 *   long-poll, the session WebSocket), or after a read reached its tail (stream__cache_watch:
 *   webhook deliveries, clients polling with offsets: a bit in struct stream until the next append);
 *   it then keeps every append.
 * - it loses it at the first sweep (every 2 s) after STREAM_CACHE_IDLE_MS without an append, or
 *   without a read served and with no live reader: live readers read within milliseconds of an
 *   append, and a stream nobody reads (an idle session, 10,000 of them in bench/sessions; a run
 *   nobody watches) costs no cache bytes.
 * - per stream at most STREAM_CACHE_STREAM_MAX (64 KiB) in STREAM_CACHE_RECORDS_MAX records,
 *   trimmed by whole records from the oldest (to 3/4, so the moves cost a few bytes per byte
 *   appended); a single record
 *   bigger than that is not kept. 64 KiB holds hundreds of events or SSE chunks: far more than a
 *   live reader lags behind, small enough that 512 busy streams fill the default budget.
 * - in all at most streams_config.cache_bytes (--stream-cache, 32 MiB by default; 0: no cache);
 *   past it the streams appended to longest ago lose theirs.
 */
#define STREAM_CACHE_STREAM_MAX  (64 * 1024)
#define STREAM_CACHE_RECORDS_MAX 4096 /* their starts' index: 16 KiB (tiny appends) */
#define STREAM_CACHE_IDLE_MS     5000
struct stream__cache;
struct stream__caches {
    uv_loop_t *loop;                       /* whose time stamps the caches */
    struct stream__cache *newest, *oldest; /* by last append */
    size_t bytes;                          /* held by all of them, their structs included */
    size_t budget;
};

struct stream__producer {
    int64_t epoch, seq;
};

struct stream {
    struct store_meta m;  /* pending state: what the open batch makes true */
    int64_t durable_tail; /* what readers may see */
    /* flags in one word, so that the cache pointer below did not make every stream bigger */
    unsigned durable_closed : 1;
    unsigned gone : 1;    /* deleted (hard or soft) in the open batch: tell subscribers */
    unsigned dirty : 1;   /* in the open batch's list of touched streams */
    unsigned created : 1; /* created in the open batch */
    /* a read reached its tail while it had no cache: its next append starts one (stream_cache.c) */
    unsigned tail_read : 1;
    /* Shards (stream_shard.c): a stub of a shard not loaded, kept (in by_id only) while a loaded
     * fork reads through it; loaded by the streams_load_shards running; marked by the sweep of stubs
     * (a loaded stream reads through it); a path-less stream whose shard is not known yet. */
    unsigned foreign : 1;
    unsigned loading : 1;
    unsigned needed : 1;
    unsigned shard_unknown : 1;
    /* deleted here while its source is another node's: the unref goes there after the commit */
    unsigned unref_remote : 1;
    /* its shard in the registry's numbering (streams_shard_of: of its nshards), which m.shard (the
     * store's, of STORE_SHARDS) is only when the counts agree; < STORE_SHARDS */
    unsigned shard : 16;
    unsigned src_shard : 16; /* with unref_remote: the source's, the store's numbering (m.shard) */
    struct stream *src;      /* fork source */
    struct map producers;    /* pid -> struct stream__producer */
    int64_t last_access_ms;
    struct stream_sub subs; /* sentinel of the subscriber ring */
    struct stream *dirty_next;
    struct stream *grave_next;
    struct stream__cache *cache; /* its newest records, NULL when none (stream_cache.c) */
};

struct streams {
    uv_loop_t *loop;
    struct store *store;
    struct streams_config cfg;
    int nshards;                        /* cfg.shards, at least 1 */
    uint64_t loaded[STORE_SHARD_WORDS]; /* shards whose streams are in the maps (stream_shard.c) */
    uint64_t held[STORE_SHARD_WORDS];   /* loaded shards that take writes */
    struct map by_path;                 /* live and soft-deleted streams at their path */
    struct map by_id;                   /* every stream, keyed by decimal id */
    struct stream_op *ops, **ops_tail;
    struct stream *dirty;
    struct stream *graveyard;
    size_t nsubs;
    streams_observer_cb observer;
    void *observer_arg;
    streams_unref_cb unref_remote;
    void *unref_arg;
    uv_check_t check;
    uv_idle_t idle; /* keeps the loop from blocking while a batch waits for its commit */
    struct stream__group *groups, **groups_tail; /* committed, waiting for an fsync */
    uint64_t next_seq;
    uv_work_t sync_work;
    int syncing;        /* sync_work is in the thread pool */
    uint64_t sync_upto; /* the last group the running fsync covers */
    int sync_rc;
    int freeing; /* the registry was freed while an fsync ran: sync_done frees it */
    uv_timer_t sweep;
    /* -errno while the store cannot take writes (its database cannot be reached, or another node
     * holds its lease): writes are refused (stream.c) */
    int unavailable;
    uv_timer_t retry;          /* tries the reload again while unavailable */
    struct store_probe *probe; /* running while the database cannot be reached (streams__on_retry) */
    struct stream__caches caches;
    /* Reads off the loop (stream_read.c): at most store_read_slots of the store's in libuv's
     * thread pool at once, whichever registry queued them (pool); the others wait here in order. */
    struct stream_read *reads_waiting, **reads_tail;
    int reads_running;         /* this registry's reads in the thread pool */
    struct stream__pool *pool; /* the store's, joined at the first queued read; NULL before */
    struct streams *pool_next; /* the pool's other registries */
    int reads_cancelled;       /* streams_reads_cancel ran: a read that fails meanwhile ends by the stop */
    /* Fork references of the sources held here (stream_fork.c): "src:fork" keys, the value unused */
    struct map refs;
    int64_t fork_sweep_ms, fork_swept_ms; /* the owner's reconciling sweep: its period, last run */
    struct map suspects;                  /* the refs it found without a fork row last time ("src:fork") */
    int fork_sweeping;                    /* its query runs on a reader, off the loop (PostgreSQL) */
    int stopped; /* streams_free ran: what comes back from the thread pool is not applied */
    /* streams_load_shards_start's load (stream_shard.c): waiting for a reader, or running on one */
    struct streams_load *load_waiting, *loading_shards;
    /* streams_load_side: a stream of a shard not loaded here that each such load reads whole too
     * ("" none), and what the one whose callback runs now read of it (side_state: 1 found, 0 none,
     * -errno or -ENOENT unknown) */
    char side_path[64];
    int side_state;
    struct buf side;
};

/* Media types compare without parameters, case-insensitively. */
int stream__media_eq(const char *a, const char *b);
int stream__ct_is_json(const char *ct);
/* A stream for m (copied), registered at its path and id, in the shard of its path. */
struct stream *stream__new(struct streams *ss, const struct store_meta *m);
/* stream__new's stream, in no map yet (stream__list puts it in by_id, and at its path unless it is
 * a stub). */
struct stream *stream__alloc(struct streams *ss, const struct store_meta *m);
void stream__list(struct streams *ss, struct stream *st);
struct stream *stream__by_id(struct streams *ss, int64_t id);
/* Tells every subscriber of st (a callback may unsubscribe itself or others). */
void stream__notify(struct stream *st, enum stream_event ev);
/* Frees st, which left the maps; its remaining subscribers are told it is gone. */
void stream__free(struct stream *st);
/* Frees st's producers (a stream becoming a stub). */
void stream__free_producers(struct stream *st);
/* Shards (stream_shard.c). streams__load_bits: loads the shards of want (store_load, then only
 * the rows of those shards, their sources kept as stubs), 0 or -errno (with undo: none of them
 * loaded; else what loaded stays, read-only while the store is unavailable). streams__sweep_stubs: frees
 * the stubs no loaded stream reads through any more. stream__writable: does st's shard take writes
 * (and st is no stub)? */
int streams__load_bits(struct streams *ss, const uint64_t *want, int undo);
/* The stubs of a source's chain as its owner answered it (chain[0]: the source; streams_fork_ref),
 * linked; those already in memory are kept. Returns chain[0]'s. Unused ones go at the next
 * streams__sweep_stubs. */
struct stream *stream__stub_chain(struct streams *ss, const struct store_meta *chain, size_t n);
void streams__sweep_stubs(struct streams *ss);
int stream__writable(const struct streams *ss, const struct stream *st);
/* Fork references (stream_fork.c). stream__ref_add: fork's ref to src (held here), in the open
 * batch; 0 or the store's -errno. streams__load_refs: the refs of the sources being loaded (their
 * `loading` bit set; filter: the store's, streams__store_filter's). streams__drop_refs: forgets the
 * refs of shard k's sources. streams__fork_sweep: the owner's sweep, run from the registry's sweep
 * timer, doing its work once every fork_sweep_ms. streams__store_filter: bits as a set of the
 * store's shards, or NULL (every row) when the numberings differ. */
int stream__ref_add(struct streams *ss, struct stream *src, int64_t fork);
int streams__load_refs(struct streams *ss, const uint64_t *filter);
void streams__drop_refs(struct streams *ss, int k);
void streams__fork_sweep(struct streams *ss, int64_t now_ms);
int64_t streams__fork_sweep_ms(void);
const uint64_t *streams__store_filter(struct streams *ss, const uint64_t *bits);
/* Deletes st in the open batch: softly while forks still read through it (with detach it also
 * leaves its path, which can then be re-created), for good otherwise. */
void stream__retire(struct streams *ss, struct stream *st, int detach);
/* Does a message of a stored JSON record start at byte `at` of it (or is `at` its end)? */
int stream__msg_starts_at(const void *data, size_t len, size_t at);
/* Reads [from, limit) of st's offset space (through its fork sources) into out, at most about max
 * bytes; *next: the offset after the last byte read. 0, -EINVAL (from inside a JSON message), or
 * the store's -errno. stream_read (on the loop: snap NULL) and stream_view_read (in the view's
 * snapshot, from any thread). */
int stream__read_range(struct store *store, struct store_snapshot *snap, struct stream *st, int64_t from,
                       int64_t limit, size_t max, struct buf *out, int64_t *next);
/* Ends a view's snapshot (its connection goes back to the store), keeping its streams: what the
 * loop answers from once a view read in the thread pool completes. */
void stream__view_end(struct stream_view *v);
/* The tail cache (see above). stream__cache_append: a record written into the open batch at off.
 * stream__cache_read: store_read's contract for st's own records, served from memory; -ENOENT when
 * [from, to) is not all cached and durable. stream__cache_watch: a read reached st's tail (keep
 * what is appended next). stream__cache_rollback: drops what is past each
 * stream's durable tail (a failed batch). stream__cache_sweep: drops the caches idle for
 * STREAM_CACHE_IDLE_MS at the loop's time now. stream__cache_free: st's, with st. */
void stream__cache_append(struct streams *ss, struct stream *st, int64_t off, const void *data, size_t len);
int stream__cache_read(struct stream *st, int64_t from, int64_t to, size_t max, store_record_cb cb,
                       void *arg);
void stream__cache_watch(struct streams *ss, struct stream *st);
void stream__cache_rollback(struct streams *ss);
void stream__cache_sweep(struct streams *ss, uint64_t now);
void stream__cache_free(struct stream *st);
/* Is [from, durable tail) of st's offset space (its fork sources' part included) served from
 * memory, with no store call? 1 also when from is at or past the tail (nothing to read). For a
 * caller that would otherwise read in another thread: what it covers is read on the loop. */
int stream__cache_covers(const struct stream *st, int64_t from);
/* Ends the reads still waiting for a slot (their callbacks run with -ESHUTDOWN); the running ones
 * end on their own: streams_syncing counts them. */
void streams__reads_stop(struct streams *ss);
/* Before ss is freed (no read of it in the thread pool any more): it leaves its store's pool. */
void streams__reads_leave(struct streams *ss);
/* Other work on a store reader in libuv's thread pool (the fork sweep's query), counted as a read
 * of ss (which outlives it) within store_read_slots: 0, or -EBUSY while every slot is taken.
 * streams__pooled_end, at the end of done: the slot back; ss may be freed there (it was stopped
 * and this was its last work). */
int streams__pooled_start(struct streams *ss, uv_work_t *w, uv_work_cb work, uv_after_work_cb done);
void streams__pooled_end(struct streams *ss);
/* The load of shards waiting for a reader (stream_shard.c): started when one is free (the pump of
 * reads runs it first), or failed -ESHUTDOWN at a stop (streams__reads_stop). */
void streams__load_pump(struct streams *ss);
void streams__load_stop(struct streams *ss);
/* Pairs of ids (a ref's source and fork) read from the store: streams__collect_pair, a store_ref_cb,
 * adds one (stream_fork.c). */
struct stream__pairs {
    int64_t (*v)[2];
    size_t n, cap;
};
void streams__collect_pair(int64_t src, int64_t fork, void *pairs);
/* A ref (src, fork) read by a load: counted when src is a stream it loads (stream_fork.c). */
void streams__load_ref(int64_t src, int64_t fork, void *ss);
/* The store cannot take writes (rc -ENOTCONN: its database cannot be reached; -EPERM: another node
 * holds its lease): writes are refused and the reload is tried again until it can (stream.c). */
void streams__unavailable(struct streams *ss, int rc);
/* The open batch: arm its commit for this loop turn, mark a stream it touches, queue an op that
 * completes when it is durable. */
void streams__arm(struct streams *ss);
void streams__mark(struct streams *ss, struct stream *st);
void streams__queue(struct streams *ss, struct stream_op *op);

#endif
