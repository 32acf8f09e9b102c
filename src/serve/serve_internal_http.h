/* serve_internal_http — what nodes ask one another for a fork whose source's shard another node
 * holds (doc/SHARDING-PLAN.md §2.3): the routes the source's owner answers, and the client side
 * the fork's owner sends them with.
 *
 *   POST /v1/internal/stream-ref    {"src": path, "fork": id, "content_type": s|null,
 *                                    "has_offset": b, "offset": n, "sub": n}
 *     (fork 0: the checks and the source's identity only, no ref: a re-create of a fork's path)
 *     The owner runs streams_fork_ref (its checks, the ref written under the source's shard fence)
 *     and answers 200 once the ref is durable:
 *       {"status": n (enum stream_status), "message": s|null, "fork_off": n,
 *        "chain": [{"id", "shard", "path", "content_type", "created_ms", "ttl_s", "expires_at_ms",
 *                   "expires_at", "closed", "tail", "fork_src", "fork_off", "fork_sub"}, ...],
 *        "prefix": base64 (the sub-offset prefix, in stored form; "" when none)}
 *     A refusal (missing source: 404's status, deleted: 409's, ...) is a 200 with that status and
 *     no chain: the fork's owner answers its client as the local path would.
 *   POST /v1/internal/stream-unref  {"src": id, "fork": id}: 204; idempotent.
 *   POST /v1/internal/stream-append {"path": s, "text": s}: a pull-wake subscription's wake event
 *     for a wake stream in another node's shard (subs_config.wake_remote), appended there as the
 *     subscriptions' node appends one locally (the stream's content type, no producer); 204 once
 *     durable, 404 when no open stream is at path. Not idempotent: a retry after a lost answer
 *     may append the event twice (a wake event is a hint; workers claim, and a second is harmless).
 *   All: 503 owner_unavailable with Agentd-Not-Owner: <shard> when this node does not hold the
 *   source's shard (the sender looks at the leases again and retries).
 *
 * Authentication: the server's own token (Authorization: Bearer), checked here whatever other
 * credential an authorizer would accept (a share token never reaches these). A node without
 * --token listens on loopback only (serve.c refuses otherwise), so there the routes are open to
 * local processes, like every other route. Requests carry Agentd-Forwarded-By: the sender's node.
 *
 * The client side never blocks the loop: libcurl's multi interface (curlx_http). A ref is retried
 * (100 ms, doubling to 800 ms) while the source's shard has no live holder or its holder cannot be
 * reached or says it is not the owner, for the lease and a second; then the fork's create gets 503
 * owner_unavailable. An unref (sent after the fork's delete committed) is retried the same way for
 * a minute, then dropped: the owner's sweep removes the ref (stream_fork.c).
 */
#ifndef AGENTD_SERVE_INTERNAL_HTTP_H
#define AGENTD_SERVE_INTERNAL_HTTP_H

#include <stdint.h>
#include <uv.h>

#include "stream/stream_http.h"

struct serve_forward;
struct streams;
struct serve_internal;

#define SERVE_INTERNAL_PREFIX "/v1/internal/"        /* as serve_observe_http.h has it */
#define SERVE_INTERNAL_ROUTE  "/v1/internal/stream-" /* stream-ref, stream-unref */

/* streams: the registry's pointer (NULL while this node loads none); token: --token or NULL. */
struct serve_internal *serve_internal_new(uv_loop_t *loop, struct serve_forward *f,
                                          struct streams *const *streams, const char *token);
/* Cancels what is in flight (no callbacks run); after the HTTP server is freed. NULL: no-op. */
void serve_internal_free(struct serve_internal *si);
/* The route (arg: the struct serve_internal), mounted with HTTP_ROUTE_OWN_AUTH. */
void serve_internal_http(struct http_req *req, void *arg);
/* The hooks: stream_http_set_fork_remote's, and streams_set_unref_remote's callback. */
struct stream_http_fork_remote serve_internal_fork_remote(struct serve_internal *si);
void serve_internal_unref(void *arg, int64_t src, int src_shard, int64_t fork);
/* subs_config.wake_remote's callback: appends text to the stream at path on its shard's holder
 * (stream-append), retried as a ref is; fire and forget. */
void serve_internal_append(void *arg, const char *path, const char *text);

#endif
