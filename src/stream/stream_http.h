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

/* Handles one request whose path begins with STREAM_HTTP_PREFIX (used by routes that share it). */
void stream_http_handle(struct stream_http *sh, struct http_req *req, const char *path, size_t plen);

/*
 * A follower's catch-up reads (doc/ARCHITECTURE.md "Several nodes on one database"): a node that
 * does not hold the write lease loads no registry, and answers GET (without live) and HEAD of a
 * stream from the store's database itself, with the same answer the owner would make (status,
 * body, Stream-* headers, ETag, Cache-Control). stream_http_reader_new makes the object for it (no
 * route; free with stream_http_free). stream_http_read_local answers req (a request under
 * STREAM_HTTP_PREFIX whose authorization the caller checked) and returns 0, or returns 1 without
 * answering when the owner must: writes, live reads, a stream with a TTL or an expiry time (its
 * last access is the owner's), or a database this node cannot read. One read snapshot per request,
 * on the loop (one round trip for up to 256 records: see store_snapshot_stream).
 */
struct store;
struct stream_http *stream_http_reader_new(const struct stream_http_config *cfg);
int stream_http_read_local(struct stream_http *sh, struct store *store, struct http_req *req);

#endif
