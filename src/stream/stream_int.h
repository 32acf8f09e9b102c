/*
 * stream_int — what stream.c (the registry, reads, subscribers, commits) and stream_write.c (the
 * write rules) share. Not for other modules.
 */
#ifndef AGENTD_STREAM_INT_H
#define AGENTD_STREAM_INT_H

#include "core/map.h"
#include "store/store.h"
#include "stream/stream.h"

struct stream__producer {
    int64_t epoch, seq;
};

struct stream {
    struct store_meta m;  /* pending state: what the open batch makes true */
    int64_t durable_tail; /* what readers may see */
    int durable_closed;
    int gone;             /* deleted (hard or soft) in the open batch: tell subscribers */
    struct stream *src;   /* fork source */
    struct map producers; /* pid -> struct stream__producer */
    int64_t last_access_ms;
    struct stream_sub subs; /* sentinel of the subscriber ring */
    int dirty;
    int created; /* created in the open batch */
    struct stream *dirty_next;
    struct stream *grave_next;
};

struct streams {
    uv_loop_t *loop;
    struct store *store;
    struct streams_config cfg;
    struct map by_path; /* live and soft-deleted streams at their path */
    struct map by_id;   /* every stream, keyed by decimal id */
    struct stream_op *ops, **ops_tail;
    struct stream *dirty;
    struct stream *graveyard;
    size_t nsubs;
    streams_observer_cb observer;
    void *observer_arg;
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
    uv_timer_t retry; /* tries the reload again while unavailable */
};

/* Media types compare without parameters, case-insensitively. */
int stream__media_eq(const char *a, const char *b);
int stream__ct_is_json(const char *ct);
/* A stream for m (copied), registered at its path and id. */
struct stream *stream__new(struct streams *ss, const struct store_meta *m);
/* Deletes st in the open batch: softly while forks still read through it (with detach it also
 * leaves its path, which can then be re-created), for good otherwise. */
void stream__retire(struct streams *ss, struct stream *st, int detach);
/* Reads [from, limit) of st's offset space (through its fork sources) into out, at most about max
 * bytes; *next: the offset after the last byte read. 0, -EINVAL (from inside a JSON message), or
 * the store's -errno. stream_read and stream_view_read. */
int stream__read_range(struct store *store, struct stream *st, int64_t from, int64_t limit, size_t max,
                       struct buf *out, int64_t *next);
/* The open batch: arm its commit for this loop turn, mark a stream it touches, queue an op that
 * completes when it is durable. */
void streams__arm(struct streams *ss);
void streams__mark(struct streams *ss, struct stream *st);
void streams__queue(struct streams *ss, struct stream_op *op);

#endif
