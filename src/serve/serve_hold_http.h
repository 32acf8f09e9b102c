/* serve_hold_http — a follower's requests that wait out a failover instead of failing it.
 *
 * While no node holds a live write lease (the owner stopped or died and its lease has not expired
 * yet; the follower that takes it is loading the registry), or the holder refuses connections (it
 * was killed: its lease lives on until it expires), a follower has nobody to forward to; nor while
 * it has not read the lease for a second (serve_forward_same_token: it was paused). Rather
 * than answer 503 at once (every client then retries through the failover), it holds the request
 * until the lease changes, or a probe finds the holder's address accepting connections again (one
 * TCP connect per tick, not a try of each request: each pass through h2o's proxy costs the request
 * a copy of its headers), then forwards it to the holder, or serves it itself if this node took the
 * lease (http_req_redispatch to the owner's routes). A request waits at most the lease's
 * time left plus SERVE_HOLD_EXTRA_MS, as the latest view of its shard says (each hold again pushes
 * its deadline back: the first view may have named no holder yet), and never more than max_ms
 * after its first hold; then it is answered 503 owner_unavailable as before. At most SERVE_HOLD_MAX requests, whose bodies add up to at most
 * max_bytes, wait at once; one more is answered that 503 at once. Only requests no owner can have
 * seen are held: those not forwarded yet, and those whose connect failed (http_set_unreached); a
 * request whose upstream connection broke after it was sent is not replayed.
 *
 * Ownership: serve.c creates one per follower and frees it at teardown; held requests are in the
 * h2o requests' memory (a request that ends unlinks itself) and listed here. HTTP/1 does not see
 * a client go while its request waits, so each forward first looks (http_req_client_gone): a request
 * whose client went away is answered, never sent on to be done once more by the client's retry.
 */
#ifndef AGENTD_SERVE_HOLD_HTTP_H
#define AGENTD_SERVE_HOLD_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store/store.h"

struct http_req;
struct serve_forward;
struct store_lease;
struct serve_hold;

/* How long past the lease's time left a request waits (the watching follower sees an expired lease
 * within 100 ms and loads the registry in about 50 ms). */
#define SERVE_HOLD_EXTRA_MS 1000
/* How many requests wait at once, at most (the others get the 503). */
#define SERVE_HOLD_MAX      4096

/* f: the forwarding route's state; held requests go through serve_forward_http again. max_ms: the
 * longest wait; max_bytes: the most bytes of request bodies held at once (--max-held). */
struct serve_hold *serve_hold_new(uv_loop_t *loop, struct serve_forward *f, uint64_t max_ms,
                                  size_t max_bytes);
/* Holds req (l: the lease as serve_forward_http saw it). 1: held; 0: not (too many held, or its
 * body does not fit in what max_bytes leaves, the node is stopping, or req has waited its time
 * already): the caller answers it. Requests sent on (a probe connected, or the lease changed) are
 * not counted while their connect is under way; a refused one is held again, and counted, a loop
 * turn or two later. That happens a few times a failover, not every tick, and a newcomer does not
 * take their room meanwhile: the holder is live then, so it is sent on too (and with no live holder,
 * the run holds them again before it returns). While the holder's address drops connects, each
 * tick's probe is cancelled at the next one, and the requests stay held and counted. Left: a lease that moves to a new holder whose address
 * drops connects leaves the requests sent on then uncounted until h2o's connect timeout, once.
 * Counting them until they are answered needs the proxy to say when its connect succeeded, which
 * libh2o 2.2.5 does not; until they end would count the holder's long-polls against the hold.
 * Once this node serves locally (serve_hold_retry's local), a request held (a follower's read
 * forwarded from its completion after the takeover) goes to its own routes at the next tick, at
 * once. */
int serve_hold(struct serve_hold *h, struct http_req *req, int shard, const struct store_lease *l);
/* http_unreached_cb for http_set_unreached (arg: the struct serve_hold). */
int serve_hold_unreached(void *arg, struct http_req *req);
/* The lease of some shards changed (changed: a bitmap of SERVE_SHARD_WORDS words; NULL: all): the
 * requests held for those shards try again now (served here if this node serves the shard now). */
#define SERVE_SHARD_WORDS ((STORE_SHARDS + 63) / 64)
void serve_hold_retry_shards(struct serve_hold *h, const uint64_t *changed);
/* The node stops: held requests are answered 503 shutting_down, and nothing more is held. */
void serve_hold_stop(struct serve_hold *h);
/* Frees (after serve_hold_stop; the loop must turn once more for the timer's close). NULL: no-op. */
void serve_hold_free(struct serve_hold *h);

#endif
