/*
 * serve_observe_http — the subscriptions' view of commits made on other nodes (several nodes on one
 * PostgreSQL with --shard-policy balance; doc/SHARDING-PLAN.md §2.4). The subscription service runs
 * on shard 0's holder only (its state stream is shard 0's), and hears of that node's own commits
 * through the streams observer. Every other node that holds shards relays its commits to it:
 *
 * - the sender (serve_observe_relay, the streams observer of a node without the service) gathers
 *   the committed (path, tail) pairs of each commit batch, the newest tail per path, and POSTs them
 *   to shard 0's holder as one `POST /v1/internal/observe`, at most one request in flight (batches
 *   committed meanwhile merge into the next). Fire and forget: an answer is not waited for beyond
 *   its request's end, and what a failed request carried is not sent again (a stream's next commit
 *   relays its newer tail).
 * - the receiver (serve_observe_http, mounted at SERVE_OBSERVE_PATH) feeds each pair to
 *   subs_observe_remote. The route is an ordinary one: the server's --token is checked before it
 *   runs (the sender carries it as a bearer, as a forwarded client request carries its own), and
 *   the router sends it to shard 0's holder (serve_route_path), so a sender's stale view costs a hop,
 *   not the batch.
 *
 * Internal routes (node to node) live under SERVE_INTERNAL_PREFIX, mounted with http_route (the
 * server token checked before the handler runs); the sending node carries its own --token as
 * `Authorization: Bearer` (the nodes of one database share it: serve_forward_same_token).
 */
#ifndef AGENTD_SERVE_OBSERVE_HTTP_H
#define AGENTD_SERVE_OBSERVE_HTTP_H

#include <stdint.h>
#include <uv.h>

#define SERVE_INTERNAL_PREFIX "/v1/internal/"
#define SERVE_OBSERVE_PATH    "/v1/internal/observe"

struct http_req;
struct serve_forward;
struct subs;
struct serve_observe;

/* f: the router's views (shard 0's holder, its URL); token: this node's --token or NULL; subs: where
 * serve.c keeps the service (NULL while this node does not run it). All borrowed. */
struct serve_observe *serve_observe_new(uv_loop_t *loop, struct serve_forward *f, const char *token,
                                        struct subs *const *subs);
/* Cancels the request in flight and frees the relay once its timer closed. NULL is a no-op. */
void serve_observe_free(struct serve_observe *o);

/* The streams observer (streams_set_observer(ss, serve_observe_relay, o)) of a node without the
 * subscription service. */
void serve_observe_relay(void *arg, const char *path, int64_t tail);

/* subs_config.scan on PostgreSQL (arg: the struct store): store_tails_pooled. */
int serve_observe_scan(void *arg, const char *prefix,
                       void (*found)(const char *path, int64_t tail, void *farg), void *farg);

/* POST SERVE_OBSERVE_PATH (arg: the struct serve_observe): {"observed":[[path, tail], ...]} fed to
 * the service; 204, or 503 when this node does not run it (the sender drops the batch). */
void serve_observe_http(struct http_req *req, void *arg);

#endif
