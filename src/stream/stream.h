/*
 * stream — Durable Streams semantics on top of store/: the registry of streams, offsets, appends
 * with Stream-Seq and idempotent producers, closure, TTL/expiry, forks with refcounted soft delete,
 * catch-up reads through fork chains, and live subscribers. No HTTP here (stream_http.c maps this
 * onto the protocol's requests), so sessions and runtimes append to streams through the same calls.
 *
 * Invariants:
 * - Offsets are byte positions in a stream's offset space, printed as "%016d_%016d" (0, position).
 *   A fork shares its source's offset space below its fork offset.
 * - Every mutation is validated against the pending state (what the open batch will make true),
 *   written into the store's open batch, and completed (its stream_op callback runs) only after the
 *   batch committed. Readers and subscribers only ever see committed state: each stream keeps its
 *   durable tail apart from its pending one.
 * - If a commit fails, every operation of the batch fails, the in-memory registry is reloaded from
 *   the database, and every live subscriber is cut off (clients resume from their offsets).
 */
#ifndef AGENTD_STREAM_H
#define AGENTD_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"

struct store;
struct streams;
struct stream;

/* Outcomes, in the protocol's terms; stream_http maps them to HTTP statuses. */
enum stream_status {
    STREAM_OK = 0,
    STREAM_CREATED,     /* 201 */
    STREAM_DUPLICATE,   /* 204 duplicate producer append */
    STREAM_BAD_REQUEST, /* 400 */
    STREAM_FENCED,      /* 403 stale producer epoch */
    STREAM_NOT_FOUND,   /* 404 */
    STREAM_CONFLICT,    /* 409 */
    STREAM_CLOSED,      /* 409 with Stream-Closed */
    STREAM_SEQ_GAP,     /* 409 producer sequence gap */
    STREAM_GONE,        /* 410 soft-deleted */
    STREAM_STORE_ERROR, /* 500/507: the batch could not be made durable */
    STREAM_MOVED,       /* 503 shard_moved: the stream's shard is not held here (see "shards") */
};

/* Result details filled in by the mutating calls. */
struct stream_result {
    enum stream_status status;
    const char *message; /* static reason for errors */
    int64_t next_offset; /* tail after the operation (or current tail on conflicts) */
    int64_t offset;      /* an accepted append: where its bytes start (the tail before it) */
    int closed;          /* the stream is closed after the operation */
    int64_t producer_epoch, producer_seq, expected_seq, received_seq;
    int has_producer;
    int stored; /* the append stored a record (not only a close) */
    int store_errno;
};

/*
 * An asynchronous mutation. The caller embeds it (e.g. in per-request state), fills cb/arg, and
 * passes it to a mutating call. When the call returns STREAM_OK/CREATED the op is queued in the
 * batch and cb runs once the batch is durable, with op->result final (status changed to
 * STREAM_STORE_ERROR if the commit or the fsync failed). Otherwise cb is never called and
 * op->result holds the outcome. Cancel a queued op (its owner is going away) with stream_op_cancel;
 * the mutation itself still commits.
 *
 * at_commit: cb runs as soon as the batch has committed (its bytes are in the database file, which
 * survives a kill -9 of agentd) instead of after the fsync that follows (which makes them survive a
 * machine crash too); readers still see the write only after that fsync. For writes whose answer
 * cannot wait the fsync's latency (runtime calls); under --durability os the two moments are one.
 */
struct stream_op;
typedef void (*stream_op_cb)(struct stream_op *op);
struct stream_op {
    stream_op_cb cb;
    void *arg;
    struct stream_result result;
    struct stream_op *next; /* batch list, owned by the registry */
    int queued;
    int at_commit; /* set by the caller before queuing; see above */
    int shard;     /* set by the mutating call: the shard it writes (streams_shard_busy) */
};
void stream_op_cancel(struct streams *ss, struct stream_op *op);

struct streams_config {
    size_t max_append;  /* bytes */
    size_t read_chunk;  /* catch-up reads return at most about this many bytes */
    size_t cache_bytes; /* memory for streams' newest records, read without the store (0: none) */
    /* How many shards paths are spread over (store_shard_of): 0 or 1, one shard, as every store
     * has today; more only for tests (SQLite with a test-only shard count; see "shards"). At most
     * STORE_SHARDS. */
    int shards;
    /* The shards loaded and held from the start (a bitmap of STORE_SHARD_WORDS, read by streams_new
     * only); NULL: every one. A node holding only some shards (--shard-policy balance) loads only
     * those, not every stream of the database to drop most of them. */
    const uint64_t *first;
};

int streams_new(struct streams **out, uv_loop_t *loop, struct store *store, const struct streams_config *cfg,
                char *err, size_t errlen) CORE_UNUSED_RESULT;
/* Tells every live subscriber the server is stopping (they are unsubscribed by their callbacks or
 * by streams_free). */
void streams_shutdown(struct streams *ss);
/* 1 while an fsync or a read (stream_read_start) runs or waits for libuv's thread pool (it
 * completes on a later loop turn). A server that stops turns its loop until this is 0 before freeing
 * the store they use. */
int streams_syncing(const struct streams *ss);
/* Commits what is pending and frees the registry; subscribers are told the stream is gone. With an
 * fsync still in the thread pool, the registry itself is freed when it completes. */
void streams_free(struct streams *ss);
/* Commits the open batch now and runs its completions (also done automatically each loop turn). */
void streams_flush(struct streams *ss);

/* ---- shards (doc/SHARDING-PLAN.md §4) ----
 * Every stream belongs to one shard, fixed by its path (store_shard_of). The registry loads and
 * drops whole shards: `loaded` ones have their streams in memory (lookups find them, reads are
 * served); `held` ones (loaded and not draining) also take writes. A write to a shard that is not
 * held is refused with STREAM_MOVED before it touches the batch, so it can never fail a batch of
 * other shards' writes. streams_new loads every shard.
 *
 * A detached soft-deleted source (no path: expired or deleted while forks read through it) keeps
 * the shard it had when it had a path; one loaded from a store that does not say (SQLite) takes the
 * shard of the first loaded fork that reads through it. Either way it stays in memory as long as a
 * loaded stream of any shard reads through it, even when its own shard is dropped: it then remains
 * as a read-only stub (no path, no subscribers, no writes), freed once the last fork reading through
 * it goes. Forks that read through a stub do not touch its refcount (doc/SHARDING-PLAN.md §2.3
 * moves that to the source's owner; until then the reference is left in place, which only delays
 * the source's reclaiming). */
int streams_shards(const struct streams *ss);
int streams_shard_of(const struct streams *ss, const char *path, size_t len);
int streams_shard_loaded(const struct streams *ss, int k);
int streams_shard_held(const struct streams *ss, int k);
/* A loaded shard stops (held 0) or starts again (1) taking writes: the first step of a hand-off,
 * before the drain. */
void streams_shard_hold(struct streams *ss, int k, int held);
/* Fork references (doc/SHARDING-PLAN.md §2.3): what a fork's owner asks of its source's owner.
 * streams_fork_ref runs the checks a fork's create makes of its source (it exists and is not
 * deleted; the fork keeps its content type; the fork offset, its durable tail unless given, is
 * within it and on a message boundary), materializes the sub-offset prefix (sub > 0), writes the
 * fork's ref in the open batch when `fork` is given (0: only checks and answers: a local create
 * writes the ref itself, with the id it gets), and answers with the source's identity. Returns 0
 * with out->status STREAM_OK or the refusal (out->message), or -EREMOTE when the source's shard is
 * not held here: its owner answers (serve/ sends it there: POST /v1/internal/stream-ref). Clear out
 * with stream_fork_answer_clear. */
struct stream_fork_ask {
    int64_t fork;             /* the fork's stream id (streams_reserve_id's, remote), or 0 */
    const char *content_type; /* the one the fork's create names, or NULL */
    int has_offset;
    int64_t offset;
    int64_t sub; /* Stream-Fork-Sub-Offset, 0 when none */
    /* Optional, with fork: queued when the ref is written, its cb run once the ref is durable
     * (result.status STREAM_OK, or the store's failure): a remote fork's owner is answered only
     * then, so that no fork exists whose ref could be lost */
    struct stream_op *op;
};
struct stream_fork_answer {
    enum stream_status status;
    const char *message; /* static */
    int64_t fork_off;    /* the fork point */
    /* the source's row then its sources', up the chain: id, content type, fork_src/fork_off, tail
     * (durable), ttl_s/expires_at_ms/expires_at (what a fork inherits) */
    struct store_meta *chain;
    size_t n;
    struct buf prefix; /* sub > 0: the fork's first bytes, in stored form */
};
int streams_fork_ref(struct streams *ss, const char *src, size_t len, const struct stream_fork_ask *ask,
                     struct stream_fork_answer *out);
void stream_fork_answer_clear(struct stream_fork_answer *a);
/* Fork references (doc/SHARDING-PLAN.md §2.3, stream_fork.c): the fork's reference to its source
 * goes, in the open batch, and a deleted source left without any is reclaimed (up its chain).
 * Idempotent. -EREMOTE when src is not a stream of a shard held here: its owner's to do. */
int streams_fork_unref(struct streams *ss, int64_t src, int64_t fork);
/* A fork deleted here whose source is another node's (-EREMOTE above): once the delete has
 * committed, cb(arg, src, src_shard, fork), src_shard in the store's numbering, for serve/ to send
 * the unref to the source's owner (a lost one is repaired by that owner's sweep). */
typedef void (*streams_unref_cb)(void *arg, int64_t src, int src_shard, int64_t fork);
void streams_set_unref_remote(struct streams *ss, streams_unref_cb cb, void *arg);
/* An id for a stream about to be created here (stream_create_args.id): a remote fork's ref names
 * it before the fork's row exists. 0 or the store's -errno (-ENOTSUP: SQLite, never remote). */
int streams_reserve_id(struct streams *ss, int64_t *id);
/* Loads the shards set in bitmap (bit k of word k / 64; those loaded already are left alone) and
 * links the new streams to their fork sources; they are then loaded and held. 0, or the store's
 * -errno with nothing of them loaded. */
int streams_load_shards(struct streams *ss, const uint64_t *bitmap) CORE_UNUSED_RESULT;
/* streams_load_shards off the loop (a node taking shards while it serves others: the store's query
 * on the loop would hold every request for as long as the database takes): the rows are read on a
 * reader of the store (store_read_pooled's slots; it waits for one when all are busy, before the
 * reads waiting), then taken in on the loop, where done(ss, shards, rc, arg) runs: rc 0, the shards
 * (those of bitmap that were not loaded) are loaded and held; -errno, nothing of them is
 * (-ESHUTDOWN: reads were cancelled, streams_reads_cancel). Not called once streams_free ran. One load at
 * a time; meanwhile its shards must not be loaded by other means (streams_load_shards); other shards
 * may be dropped (a hand-off: the rows read of their streams are then taken as stubs, or skipped).
 * 0 (started or waiting), -EALREADY (every shard loaded: done is not called), -EBUSY (a load runs),
 * -ENOTSUP (a store without readers: SQLite; call streams_load_shards). */
typedef void (*streams_load_cb)(struct streams *ss, const uint64_t *shards, int rc, void *arg);
int streams_load_shards_start(struct streams *ss, const uint64_t *bitmap, streams_load_cb done, void *arg);
/* A stream of another shard that a streams_load_shards_start load also reads whole, off the loop
 * with its rows, when its shard is neither loaded here nor one of the load's: a node that holds
 * some shards but not that one learns its content, or that there is none, which streams_lookup
 * cannot tell it (sessions: the single registry of before the per-shard ones, in shard 0). Set it
 * before the first load (path shorter than 64 bytes). streams_load_side_read, in the load's
 * callback only: 1 and *out (appended to, stream_read's form) when the stream exists, 0 when it
 * does not (or is soft-deleted, or its shard is loaded here: streams_lookup answers), -errno when
 * it is not known (not read by this load, or the read failed). */
void streams_load_side(struct streams *ss, const char *path);
int streams_load_side_read(struct streams *ss, const char *path, struct buf *out);
/* Is a streams_load_shards_start load waiting or running? */
int streams_loading(const struct streams *ss);
/* Is anything of shard k in flight: an op queued in the open batch or waiting for its fsync, a
 * stream it touches or deletes not yet committed and durable? streams_flush, then turning the loop
 * until streams_syncing is 0, drains it (once the shard is not held, nothing new comes in). */
int streams_shard_busy(const struct streams *ss, int k);
/* Forgets shard k without a store call: its subscribers get STREAM_EV_MOVED (the shard will be
 * served elsewhere: clients resume from their offsets), its tail caches and producers are freed,
 * its streams leave the maps (those a loaded fork still reads through stay as stubs, see above).
 * Reads already started complete (they copied what they need). Requires !streams_shard_busy. */
void streams_drop_shard(struct streams *ss, int k);

/* ---- lookup ---- */
enum stream_lookup {
    STREAM_FOUND,
    STREAM_MISSING,
    STREAM_SOFT_DELETED
};
/* Finds the stream at path; an expired stream is treated as missing (and reclaimed). */
struct stream *streams_lookup(struct streams *ss, const char *path, size_t len, enum stream_lookup *how);

/* ---- metadata of a stream (borrowed from the stream) ---- */
const char *stream_content_type(const struct stream *st);
int stream_is_json(const struct stream *st);
int64_t stream_tail(const struct stream *st); /* durable */
int stream_closed(const struct stream *st);   /* durably closed */
int64_t stream_ttl(const struct stream *st);  /* -1 when none */
const char *stream_expires_at(const struct stream *st);
/* Identity of this incarnation of a path (changes when the path is re-created). */
void stream_identity(const struct stream *st, int64_t *id, int64_t *created_ms);
/* The state of producer `id` (Producer-Id) as the open batch makes it: its epoch and last seq. 0, or
 * -ENOENT when the stream has no such producer. For an internal writer that continues its own
 * producer's sequence (session/'s relay to the `sessions` feed). */
int stream_producer(const struct stream *st, const char *id, int64_t *epoch, int64_t *seq);
/* Reading or writing resets the sliding TTL. */
void stream_touch(struct stream *st);

/* ---- mutations ---- */
struct stream_create_args {
    const char *content_type; /* NULL: application/octet-stream, or the fork source's */
    int64_t ttl_s;            /* -1: none */
    int64_t expires_at_ms;    /* -1: none */
    const char *expires_at;
    int closed;
    const char *fork_from; /* source path (without /v1/stream/), NULL when not a fork */
    int has_fork_offset;
    int64_t fork_offset;
    int64_t fork_sub;
    /* A fork whose source's shard is not held here: the source owner's answer to the fork's ref
     * (streams_fork_ref, asked there with the same offset, sub-offset and content type; it wrote
     * the ref). The source and its chain become stubs here, and nothing of theirs is written.
     * NULL: the source is looked up here (a shard not held: STREAM_MOVED; stream_http asks its
     * owner first, through its fork_ref hook). */
    const struct stream_fork_answer *fork_ref;
    /* with fork_ref: the id the ref names (streams_reserve_id); 0: the answer wrote no ref (asked
     * for a path that exists: an idempotent re-create), so only an existing stream is answered, and
     * a new one is refused STREAM_MOVED (the client retries, and the next ask writes the ref) */
    int64_t id;
    const void *body;
    size_t body_len;
};
enum stream_status stream_create(struct streams *ss, const char *path, size_t plen,
                                 const struct stream_create_args *a, struct stream_op *op);

struct stream_append_args {
    const char *content_type; /* NULL when the request had none */
    const void *body;
    size_t body_len;
    int close;
    const char *seq;         /* Stream-Seq or NULL */
    const char *producer_id; /* NULL when no producer headers */
    int64_t producer_epoch, producer_seq;
};
enum stream_status stream_append(struct streams *ss, struct stream *st, const struct stream_append_args *a,
                                 struct stream_op *op);

/* Deletes (soft when forks still read through the stream). Completes after commit. */
enum stream_status stream_delete(struct streams *ss, struct stream *st, struct stream_op *op);

/* ---- reads ---- */
/*
 * Appends to out the stored bytes from offset `from` up to the durable tail, at most about
 * max_bytes (always whole messages for JSON streams), following the fork chain. For JSON streams
 * the bytes are comma-terminated messages ("m1,m2,"); see stream_json_wrap. *next receives the
 * offset after the last byte returned. Returns 0, -EINVAL when `from` falls inside a message of a
 * JSON stream, or another negative errno.
 */
int stream_read(struct streams *ss, struct stream *st, int64_t from, size_t max_bytes, struct buf *out,
                int64_t *next) CORE_UNUSED_RESULT;
/*
 * stream_read, answered later: for a caller that must not hold the loop while a database answers.
 * On a store whose reads are remote (PostgreSQL: store_read_slots) the read runs in libuv's thread
 * pool on a connection of the store's reader pool, and cb runs on the loop once the bytes are there
 * (the loop goes on serving meanwhile); otherwise (SQLite: a local file), and when the tail cache
 * holds all of it, it runs at once and cb runs before stream_read_start returns. What the read needs of st (its fork chain's ids and offsets, its
 * JSON-ness, the durable tail it is bounded by) and what its answer describes (st's identity, tail,
 * closure and content type as they were when it started) are copied when it starts: st may be
 * deleted, expired or reloaded before cb runs, and the answer is the one stream_read would have
 * given then (a stream deleted meanwhile may have lost rows: the read then ends short of the tail,
 * as if at a chunk's end). `d` and its strings are valid for the call only; cb may take d->data
 * (leave a zeroed buf behind). Returns the read in flight, which the caller may cancel until cb ran
 * (cb is then never called), or NULL when cb already ran. d->rc: as stream_read's; -ESHUTDOWN when
 * the registry was freed before the read could start.
 */
struct stream_read;
struct stream_read_done {
    int rc;
    struct buf data; /* as stream_read's out: JSON streams' messages comma-terminated */
    int64_t from, next;
    int64_t id, created, tail; /* the stream when the read started */
    int closed, json;
    const char *content_type;
};
typedef void (*stream_read_cb)(struct stream_read_done *d, void *arg);
struct stream_read *stream_read_start(struct streams *ss, struct stream *st, int64_t from, size_t max_bytes,
                                      stream_read_cb cb, void *arg);
void stream_read_cancel(struct stream_read *rd);
/* At a stop, once the node has waited long enough for them: the reads waiting end (-ESHUTDOWN), the
 * store's readers' queries are cancelled, and a read that fails from now on ends -ESHUTDOWN. Called
 * again while reads run (a cancel that came before its query was sent does nothing). */
void streams_reads_cancel(struct streams *ss);
/*
 * Offsets of JSON messages. Every message of a JSON stream has its own offset: the byte position
 * where it starts (its record's offset plus the message's position in the stored "m1,m2," form).
 * These are offsets like any other: a read from one starts with that message, and a fork at one
 * ends just before it. An offset inside a message is refused: stream_read answers -EINVAL, forks
 * STREAM_BAD_REQUEST.
 */
/* Is off 0, the durable tail, or where a message starts (any offset up to the tail, for byte
 * streams)? Follows the fork chain; costs one indexed lookup of a record. */
int stream_offset_is_boundary(struct streams *ss, struct stream *st, int64_t off);
/*
 * Reads a JSON stream backwards: each message that starts before `before` (and before the durable
 * tail), newest first, through the fork chain, until the callback returns nonzero or the first
 * message was given. The callback gets the message's offset and bytes (borrowed for the call) and
 * must not read streams itself. Cost: the records visited, never the whole stream. Returns 0,
 * -EINVAL for a stream that is not JSON, or another negative errno when the store fails.
 */
typedef int (*stream_msg_cb)(int64_t off, const char *p, size_t n, void *arg);
int stream_read_back(struct streams *ss, struct stream *st, int64_t before, stream_msg_cb cb,
                     void *arg) CORE_UNUSED_RESULT;
/*
 * A history page's reads, answered later (as stream_read_start is): with check, whether `before` is
 * an offset stream_offset_is_boundary accepts, then stream_read_back from it, bounded by the durable
 * tail when it started (what they need of st is copied). On a store whose reads are remote both run
 * in libuv's thread pool, and cb runs THERE, once per message: it must touch nothing but what arg
 * points to (no stream, no registry, nothing of the loop's). Otherwise both run before this returns.
 * done runs on the loop at the end, always, with 0, -EDOM (before is not a boundary), -EINVAL (st
 * is not a JSON stream), -ESHUTDOWN (the registry was freed first) or the store's -errno. There is
 * no cancel: arg must stay valid until done, so an owner that goes away first leaves done to free
 * it.
 */
typedef void (*stream_back_done_cb)(int rc, void *arg);
void stream_read_back_start(struct streams *ss, struct stream *st, int64_t before, int check,
                            stream_msg_cb cb, stream_back_done_cb done, void *arg);
/* Turns comma-terminated messages into a JSON array, in place. */
void stream_json_wrap(struct buf *b);

/* ---- a follower's view of one stream ---- */
/*
 * A read-only view of one stream as the store's database has it committed, for a node that loads
 * no registry: a follower of the write lease (doc/ARCHITECTURE.md "Several nodes on one
 * database"). From any thread (stream_view_start runs it in the thread pool), stream_view_open
 * opens a read snapshot of the store (store_snapshot_open, on a reader connection) and reads
 * the row of the stream at path and its fork sources' in it; stream_view_read reads in the same
 * snapshot, so the view's tail, closure and bytes agree with each other and include every batch
 * committed before the open (what the owner acknowledged). `from`: the offset the one
 * stream_view_read that follows will read from (-1 when none will): a read of up to a page of
 * records then comes in the same round trip as the row. The view's stream answers the metadata
 * calls above (stream_tail, stream_closed, ...; not the mutations, subscriptions or stream_read)
 * until stream_view_close, which ends the snapshot. Expiry is not decided here: a stream with a
 * TTL, whose last access is in the owner's memory, is stream_view_expires' caller's to forward.
 * 0 with *out and *how (STREAM_FOUND, STREAM_MISSING, STREAM_SOFT_DELETED; *out NULL unless
 * found or soft-deleted), or -errno (the store cannot be read, or is SQLite: -ENOTSUP).
 */
struct stream_view;
int stream_view_open(struct stream_view **out, struct store *store, const char *path, size_t plen,
                     int64_t from, enum stream_lookup *how) CORE_UNUSED_RESULT;
struct stream *stream_view_stream(struct stream_view *v);
/* Has the stream a TTL or an expiry time? */
int stream_view_expires(const struct stream_view *v);
/* stream_read of the view's stream, in its snapshot. */
int stream_view_read(struct stream_view *v, int64_t from, size_t max_bytes, struct buf *out,
                     int64_t *next) CORE_UNUSED_RESULT;
/* Ends the snapshot and frees the view. NULL is a no-op. */
void stream_view_close(struct stream_view *v);
/*
 * A follower's read of the stream at path, answered later (as stream_read_start is): on
 * PostgreSQL, stream_view_open and (when the stream is found, has no TTL nor expiry time and from
 * >= 0) a stream_view_read of up to max_bytes from `from` (an offset past the tail reads from the
 * tail) run in libuv's thread pool, in one snapshot on one of the store's reader connections (the
 * same slots and queue as stream_read_start's), and cb runs on the loop with what they found.
 * Without reader connections (SQLite) they run before this returns (there stream_view_open answers
 * -ENOTSUP). `d` is valid for the call only: d->rc is stream_view_open's (-ESHUTDOWN when ss was
 * freed first) and d->how, d->view its results (the view's snapshot ended: its stream answers the
 * metadata calls, stream_view_read no more); d->read is the read's, as stream_read_start's (its
 * `from` after the tail bound; cb may take d->read.data). Returns the read in flight, which
 * stream_read_cancel cancels, or NULL when cb already ran. ss: a registry, or streams_reader_new's.
 */
struct stream_view_done {
    int rc;
    enum stream_lookup how;
    struct stream_view *view;
    struct stream_read_done read;
};
typedef void (*stream_view_cb)(struct stream_view_done *d, void *arg);
struct stream_read *stream_view_start(struct streams *ss, const char *path, size_t plen, int64_t from,
                                      size_t max_bytes, stream_view_cb cb, void *arg);
/* For a node that loads no registry (a follower): an empty one that only runs reads off the loop
 * (stream_view_start), on the store's reader connections. streams_syncing says whether reads are
 * still running; streams_reader_free ends the waiting ones (-ESHUTDOWN) and, once the last running
 * one completed, frees it (the store must outlive them: wait for streams_syncing first). */
struct streams *streams_reader_new(uv_loop_t *loop, struct store *store);
void streams_reader_free(struct streams *ss);
/* How many of ss's reads are in libuv's thread pool now. Every registry on one store together has
 * at most store_read_slots there: the others wait for a slot on the loop. */
int streams_reads_running(const struct streams *ss);

/* ---- offsets ---- */
#define STREAM_OFFSET_LEN 33
void stream_offset_format(int64_t off, char out[STREAM_OFFSET_LEN + 1]);
/* Parses "%d_%d"; returns 0 or -EINVAL. "-1" and "now" are handled by the caller. */
int stream_offset_parse(const char *s, int64_t *off) CORE_UNUSED_RESULT;

/* ---- live subscribers ---- */
enum stream_event {
    STREAM_EV_DATA,     /* the durable tail grew */
    STREAM_EV_CLOSED,   /* the stream was closed */
    STREAM_EV_GONE,     /* the stream was deleted (or the registry reloaded after a failed commit) */
    STREAM_EV_SHUTDOWN, /* the server is stopping: finish the response now */
    STREAM_EV_MOVED,    /* its shard was dropped (served elsewhere now): resume there from the offset */
};
struct stream_sub;
typedef void (*stream_sub_cb)(struct stream_sub *sub, enum stream_event ev);
struct stream_sub {
    stream_sub_cb cb;
    void *arg;
    struct stream *stream; /* set while subscribed */
    struct stream_sub *prev, *next;
};
/* Subscribes to durable changes of st. The sub is owned by the caller; unsubscribe before freeing. */
void stream_subscribe(struct stream *st, struct stream_sub *sub);
void stream_unsubscribe(struct stream_sub *sub);
/*
 * One observer (the subscription service) hears, after each commit, about every stream whose
 * durable tail grew or that was created, with its path and new durable tail. The path is borrowed
 * for the call. The observer may append to streams (its writes join the next batch).
 */
typedef void (*streams_observer_cb)(void *arg, const char *path, int64_t tail);
void streams_set_observer(struct streams *ss, streams_observer_cb cb, void *arg);

/* Number of live subscribers across all streams (for tests and metrics). */
size_t streams_subscriber_count(const struct streams *ss);

#endif
