/*
 * subs — Durable Streams subscriptions (PROTOCOL §6–7): named subscriptions that link streams
 * (explicitly or by glob pattern), remember per stream the last offset a consumer acknowledged,
 * and wake a consumer when a linked stream has unacknowledged data — by a signed webhook POST, or
 * by an event appended to a "wake stream" that workers watch and then claim.
 *
 * Invariants:
 * - Everything a consumer can observe (configurations, links, acked offsets, generations, wake
 *   ids, holders, lease deadlines) is written to the internal JSON stream __ds/state/subscriptions
 *   through stream_append before the HTTP answer that reveals it is sent; the service state is the
 *   replay of that stream, so it survives restarts and crashes.
 * - At most one wake per subscription is open; each new wake has a higher generation, and every
 *   callback, ack or release must name the open wake's generation and id (fencing).
 * - Acked offsets never move backwards and never pass a stream's durable tail; they are inclusive.
 * - Webhook deliveries never block the loop; failures retry from 1 s doubling to 60 s, ±20% jitter.
 *
 * The HTTP resource lives under SUBS_HTTP_PREFIX (see subs_http.c): subscriptions/:id (PUT, GET,
 * DELETE), its streams (POST, DELETE streams/:path), callback, claim, ack, release, and jwks.json.
 */
#ifndef AGENTD_SUBS_H
#define AGENTD_SUBS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"

struct subs;
struct streams;
struct http_req;

#define SUBS_HTTP_PREFIX  "/v1/stream/__ds/"
#define SUBS_STATE_STREAM "__ds/state/subscriptions"

struct subs_config {
    const char *data_dir; /* the signing key lives here */
    const char *base_url; /* "http://host:port", the server as clients reach it (callback and JWKS URLs) */
    /* Several nodes on one database (--shard-policy balance): reads the path and tail of every
     * stream whose path starts with prefix from the database, calling found for each; run off the
     * loop (libuv's thread pool). The service repairs with it what the relay of other nodes' commits
     * lost (subs_repair.c). NULL: no repair (one node sees every commit). */
    int (*scan)(void *arg, const char *prefix, void (*found)(const char *path, int64_t tail, void *farg),
                void *farg);
    void *scan_arg;
    /* Several nodes: appends text to the stream at path, whose shard another node holds (a pull-wake
     * subscription's wake stream), on that node; fire and forget. NULL: such a wake is dropped with
     * a warning (one node holds every shard). */
    void (*wake_remote)(void *arg, const char *path, const char *text);
    void *wake_remote_arg;
};

/*
 * Loads the signing key (creating it at first start), creates or replays the state stream, and
 * resumes open wakes. ss is borrowed for the service's lifetime. Must run before the loop does
 * and after streams_new. Returns 0 or -errno with a message in err.
 */
int subs_new(struct subs **out, uv_loop_t *loop, struct streams *ss, const struct subs_config *cfg, char *err,
             size_t errlen) CORE_UNUSED_RESULT;
/* Is a repair scan (subs_config.scan) running in the thread pool? The owner of what scan reads
 * (the store) waits for it to end (running the loop) before freeing that. NULL: 0. */
int subs_working(const struct subs *s);
/* Cancels deliveries and frees the service once its handles closed. Unset the streams observer
 * first, and wait for subs_working. NULL is a no-op. */
void subs_free(struct subs *s);

/* The streams observer (streams_set_observer(ss, subs_observe, s)): links streams that match a
 * pattern and wakes subscriptions with new data. */
void subs_observe(void *arg, const char *path, int64_t tail);
/* The same for a commit of another node (several nodes on one database: streams whose shard another
 * node holds, relayed to shard 0's holder, which runs the service: serve_observe_http.c). The tail
 * is remembered as the stream's (the registry here does not hold it), never moving backwards. */
void subs_observe_remote(struct subs *s, const char *path, int64_t tail);

/* The HTTP handler for SUBS_HTTP_PREFIX (http_route(srv, SUBS_HTTP_PREFIX, subs_http_handle, s)). */
void subs_http_handle(struct http_req *req, void *arg);

#endif
