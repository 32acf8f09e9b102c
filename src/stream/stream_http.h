/*
 * stream_http — the Durable Streams HTTP resource at /v1/stream/<path>: PUT (create, fork), POST
 * (append, close), GET (catch-up, long-poll, SSE), HEAD, DELETE. Maps stream/ outcomes onto the
 * protocol's statuses and headers. Owns the per-request state of live readers.
 */
#ifndef AGENTD_STREAM_HTTP_H
#define AGENTD_STREAM_HTTP_H

#include <stdint.h>
#include <uv.h>

struct http_server;
struct http_req;
struct streams;
struct stream_http;

struct stream_http_config {
    uint64_t long_poll_timeout_ms; /* a long-poll with no data answers 204 after this */
    uint64_t sse_max_ms;           /* SSE connections are closed after this (clients reconnect) */
    size_t max_append;             /* 413 above this */
    size_t read_chunk;             /* bytes per catch-up response / SSE event */
};

#define STREAM_HTTP_PREFIX   "/v1/stream/"
/* Streams under this prefix hold agentd's internal records and are never served over HTTP. */
#define STREAM_HTTP_INTERNAL "__agentd/"

/* Registers the resource on srv. The returned object lives until stream_http_free. */
struct stream_http *stream_http_new(struct http_server *srv, uv_loop_t *loop, struct streams *ss,
                                    const struct stream_http_config *cfg);
void stream_http_free(struct stream_http *sh);

/* Forks whose source's shard another node holds (doc/SHARDING-PLAN.md §2.3): the create's ref is
 * asked of the source's owner (serve/: POST /v1/internal/stream-ref) with an id reserved here, and
 * the fork is created from its answer; the request waits meanwhile, without blocking the loop.
 * ask starts it and returns a handle for cancel (called when the request ends first); it calls
 * done(done_arg, answer) later on the loop, once, answer borrowed for the call: NULL when the owner
 * could not be reached (the request then gets 503 owner_unavailable, Retry-After: 1), or when the
 * source's shard is held here now (then the create looks the source up here). Without a
 * hook set such a fork is refused 503 shard_moved. */
struct stream_fork_ask;
struct stream_fork_answer;
struct stream_http_fork_remote {
    void *(*ask)(void *arg, const char *src, const struct stream_fork_ask *ask,
                 void (*done)(void *done_arg, const struct stream_fork_answer *answer), void *done_arg);
    void (*cancel)(void *arg, void *handle);
    void *arg;
};
void stream_http_set_fork_remote(struct stream_http *sh, const struct stream_http_fork_remote *fr);

/* Handles one request whose path begins with STREAM_HTTP_PREFIX (used by routes that share it). */
void stream_http_handle(struct stream_http *sh, struct http_req *req, const char *path, size_t plen);

/*
 * A follower's catch-up reads (doc/ARCHITECTURE.md "Several nodes on one database"): a node that
 * does not hold the write lease loads no registry, and answers GET (without live) and HEAD of a
 * stream from the store's database itself, with the same answer the owner would make (status,
 * body, Stream-* headers, ETag, Cache-Control). stream_http_reader_new makes the object for it (no
 * route; free with stream_http_free, after stream_http_reading is 0: the store must outlive the
 * reads). stream_http_read_local takes req (a request under STREAM_HTTP_PREFIX whose authorization
 * the caller checked) and returns 0, or returns 1 without taking it when the owner must answer:
 * writes and live reads. A request it takes is answered later, from the completion of one read
 * snapshot in libuv's thread pool (stream_view_start: one round trip for the row and up to 256
 * records), or handed to forward(req, forward_arg) then when the owner must answer after all: a
 * stream with a TTL or an expiry time (its last access is the owner's), or a database this node
 * cannot read. A request that ends first cancels its read.
 */
struct store;
struct http_req;
struct stream_http *stream_http_reader_new(const struct stream_http_config *cfg, uv_loop_t *loop,
                                           struct store *store);
int stream_http_read_local(struct stream_http *sh, struct http_req *req,
                           void (*forward)(struct http_req *req, void *arg), void *forward_arg);
int stream_http_reading(const struct stream_http *sh);
/* At a stop: streams_reads_cancel of its reads (they end 503). */
void stream_http_reads_cancel(struct stream_http *sh);

#endif
