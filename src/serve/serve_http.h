/* serve_http — the server's own resources beside the modules': GET /v1/nodes, and the router: each
 * request goes to the shard it belongs to (serve_route), served here when this node holds that
 * shard, else forwarded to the node that does (doc/SHARDING-PLAN.md §2.1). */
#ifndef AGENTD_SERVE_HTTP_H
#define AGENTD_SERVE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

struct http_req;
struct http_server;
struct serve_hold;
struct serve_reads;
struct sessions;
struct store;
struct store_lease;

/* Where a request goes (serve_route). */
enum serve_route {
    SERVE_ROUTE_NODE,  /* this node answers for itself: /v1/health, /v1/nodes, fork refs */
    SERVE_ROUTE_LOCAL, /* any node that serves answers alike: /v1/agents, the dashboard, unknown paths */
    SERVE_ROUTE_SHARD, /* the node that holds the shard: streams, sessions, the sessions' list */
    SERVE_ROUTE_PLACE, /* a new session: the node placement picks (for now shard 0's holder) */
};
/* The routing table (doc/SHARDING-PLAN.md §2.1), pure: *shard is the request's shard (0 for NODE
 * and LOCAL). /v1/stream/<path> → store_shard_of(path) (so __ds/... and the control paths → 0);
 * /v1/sessions/<id>[/...] → the shard of the session's streams (sessions/<id>/...); GET /v1/sessions
 * → 0; POST /v1/sessions → PLACE, 0. */
enum serve_route serve_route_path(enum http_method method, const char *path, size_t len, int nshards,
                                  int *shard);
enum serve_route serve_route(struct http_req *req, int nshards, int *shard);

/* What both handlers read (serve.c owns it). */
struct serve_forward {
    struct store *store;
    struct http_server *http;
    struct sessions *const *sessions; /* the owner's (NULL on a follower): its live agents */
    uint64_t upstream_timeout_ms;     /* longest silence of a forwarded answer (a long-poll's) */
    int64_t lease_ms;                 /* --lease-ms on PostgreSQL (0 on SQLite: no lease to outlive) */
    char token_hash[80];              /* this node's --token as agentd_nodes records it (serve_token_hash) */
    int64_t mismatch_epoch;           /* the holder's lease that a token mismatch was last logged for */
    struct serve_hold *hold;          /* requests waiting out a failover (serve_hold_http.h), or NULL */
    struct serve_reads *reads;        /* catch-up reads of streams whose shard is held elsewhere */
    int nshards;                      /* the store's shards (store_shards: 64 on PostgreSQL, 1 on SQLite) */
    int serving;                      /* the registry and the services are loaded: held shards are served */
    struct store_lease *seen;         /* each shard's view at the last lease change serve.c handled */
    struct store_lease *views;        /* each shard's view as store_shards last said it (nshards) */
    uint64_t views_us;                /* clock_mono_us of that (0: read again before use) */
    /* --shard-policy balance: the shards whose streams are loaded here (serve.c's; NULL: every shard
     * held, once serving). One held but not loaded yet is not served here: its requests wait. */
    const uint64_t *loaded;
};

/* POST /v1/sessions under --shard-policy balance (serve_place_http.c): answered, forwarded to the
 * node placement picks, or created here (1); 0 when the default route applies (shard 0's holder:
 * the default policy, or no node to pick yet). */
int serve_place(struct http_req *req, struct serve_forward *f);
/* http_set_unreached's callback (arg: the struct serve_forward): a placement whose named node did not
 * take the forward is refused (503), any other request is held (serve_hold_unreached). */
int serve_place_unreached(void *arg, struct http_req *req);

/* This node's view of one shard's lease: who holds it, since when it was looked at, its holder's
 * URL and token, as store_shards says it. Read for all shards at once at most every
 * SERVE_VIEWS_MS (store_shards copies every shard's under the store's lock: 64 views per request
 * would cost microseconds), aged by the time since (left_ms, looked_ms_ago, live), and read again
 * at once after serve_shard_views_stale (the heartbeat saw a change). */
#define SERVE_VIEWS_MS 20
void serve_shard_view(struct serve_forward *f, int shard, struct store_lease *out);
void serve_shard_views_stale(struct serve_forward *f);
/* Is the shard served here (l: its view now)? When this node serves and holds it, or held it at the
 * last lease change: a shard lost since is still served here until serve.c handles the loss (the
 * node exits, and a write in between is fenced: 503 node_fenced), never forwarded meanwhile. */
int serve_shard_here(const struct serve_forward *f, int shard, const struct store_lease *l);

/* The front route of every node (arg: the struct serve_forward; http_set_front): NODE and LOCAL
 * requests go to this node's routes (LOCAL ones to shard 0's holder while this node serves nothing
 * yet); a request whose shard this node holds and serves, too; a catch-up read of a stream whose
 * shard is held elsewhere is answered here (serve_read_http); the rest go to serve_forward_http. */
void serve_dispatch_http(struct http_req *req, void *arg);

/* What agentd_nodes records of a --token (NULL or "": none), for nodes to compare theirs: "none",
 * or "sha256:" and the hex of its SHA-256. */
void serve_token_hash(const char *token, char *out, size_t len);

/* GET /v1/nodes (arg: the struct serve_forward): the nodes that use the store's database, each
 * with its role (owner: holds the write lease; follower), the lease's epoch and time left, since
 * when each was last heard of, and this node's live agents; on PostgreSQL also this node's
 * --lease-ms (`lease_ms`), past which a node not heard of is no longer taken to be running.
 * Answered by every node itself. */
void serve_nodes_http(struct http_req *req, void *arg);

/* A request to its shard's holder, wherever that is (arg: the struct serve_forward): served here
 * when this node holds the shard and serves; else to the holder's --node-url, its answer streamed
 * back unchanged (tagged with the shard: http_upstream_drop_shards). No live holder (it stopped, and
 * its lease has not expired yet), or one that refuses connections or answers Agentd-Not-Owner: the
 * request waits for the next holder (serve_hold), and past that wait gets 503 owner_unavailable,
 * Retry-After: 1, as does one when the holder has no usable URL.
 * A request another node forwarded here for a shard this node does not hold: 503 owner_unavailable
 * with Agentd-Not-Owner: <shard>, before anything is done (that node holds it and routes it again),
 * or without that header when it was this node that forwarded it (a --node-url that leads back).
 * A holder whose --token differs from this node's: 503 node_token_mismatch. A request this node
 * can tell the holder would refuse (no credential at all, on a path that needs one): 401 here. */
void serve_forward_http(struct http_req *req, void *arg);
/* The same for a request whose shard and view (l, not served here) the caller has already read:
 * the front's, which saves reading them twice per forwarded request. */
void serve_forward_shard(struct http_req *req, struct serve_forward *f, int shard,
                         const struct store_lease *l);

/* Does the holder of the lease l (store_lease's, now) record this node's --token? Only a view of a
 * live lease that this node read within SERVE_TOKEN_LOOK_MS says so, by its own monotonic clock
 * (the heartbeat looks every 100 ms). A node can restart with another token only once this one was
 * not heard of for two of its leases and a second, at least 3 s (pg__token_check): a view read
 * within 1 s is from after that. The lease's liveness alone is not enough: it lasts the old
 * holder's lease, which may be longer than the restarted holder's window (review7: --lease-ms
 * 10000, then 1000). Only nodes whose wall clocks disagree by more than the window get past this
 * (seen_ms is wall-clock). */
#define SERVE_TOKEN_LOOK_MS 1000
int serve_forward_same_token(const struct serve_forward *f, const struct store_lease *l);

/* Reads of streams whose shard another node holds (serve_dispatch_http; arg: a struct
 * serve_reads): catch-up reads (GET without live, HEAD) that carry the server's token (or with none
 * configured) are answered from the database by this node (stream_http_read_local); everything
 * else is serve_forward_http's, and so is a request with another credential (a share token: the
 * owner's sessions know them), and every request while the lease holder recorded another --token
 * than this node's. */
struct stream_http;
struct serve_reads {
    struct serve_forward *forward;
    struct stream_http *sh; /* stream_http_reader_new's */
};
void serve_read_http(struct http_req *req, void *arg);

#endif
