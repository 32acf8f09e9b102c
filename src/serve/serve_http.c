/* serve_http — GET /v1/nodes, and a follower's forwarding (see serve_http.h). */
#include "serve/serve_http.h"
#include "core/core.h"
#include "serve/serve_hold_http.h"
#include "http/http.h"
#include "session/session.h"
#include "store/store.h"
#include "subs/subs.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVE_NODES_MAX 64

/* enum store_node_state's names in GET /v1/nodes */
static const char *const serve__node_states[] = {"live", "unreachable", "stopped"};

void serve_nodes_http(struct http_req *req, void *arg)
{
    const struct serve_forward *f = arg;
    struct store *store = f->store;
    if (http_req_method(req) != HTTP_GET) {
        http_res_header(req, "Allow", "GET");
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "/v1/nodes takes GET");
    }
    struct store_node *nodes = xcalloc(SERVE_NODES_MAX, sizeof *nodes);
    int n = store_nodes(store, nodes, SERVE_NODES_MAX);
    if (n < 0) {
        free(nodes);
        return http_res_error(req, errcode_for_store(n), "the nodes could not be read (%s)", strerror(-n));
    }
    json_t *list = json_array();
    for (int i = 0; i < n && i < SERVE_NODES_MAX; i++) {
        const struct store_node *o = &nodes[i];
        json_t *j =
            json_pack("{s:s, s:s, s:b, s:b, s:I, s:s}", "node", o->node, "role",
                      o->owner ? "owner" : "follower", "owner", o->owner, "self", o->self, "seen_ms_ago",
                      (json_int_t)o->seen_ms_ago, "state", serve__node_states[o->state]);
        /* Each node's load as its heartbeat recorded it (null: an older agentd's row); this node's
         * own, counted now. */
        int64_t agents = o->agents, runtimes = o->runtimes;
        if (o->self && *f->sessions) {
            size_t a, r;
            sessions_load(*f->sessions, &a, &r);
            agents = (int64_t)a, runtimes = (int64_t)r;
        }
        json_object_set_new(j, "agents", agents >= 0 ? json_integer(agents) : json_null());
        json_object_set_new(j, "runtimes", runtimes >= 0 ? json_integer(runtimes) : json_null());
        json_object_set_new(j, "url", *o->url ? json_string(o->url) : json_null());
        json_object_set_new(j, "shards", json_integer(o->shards));
        if (o->owner) {
            json_object_set_new(j, "epoch", json_integer(o->epoch));
            json_object_set_new(j, "lease_ms_left", json_integer(o->lease_ms_left));
        }
        json_array_append_new(list, j);
    }
    free(nodes);
    json_t *body = json_pack("{s:s, s:o}", "store", store_backend(store), "nodes", list);
    if (f->lease_ms > 0)
        json_object_set_new(body, "lease_ms", json_integer(f->lease_ms));
    http_res_json(req, 200, body);
}

/* Plain SHA-256, not a keyed or slow hash: whoever reads agentd_nodes reads the database, which
 * holds every stream and transcript the token guards, and every node must compute the same value
 * with nothing shared but the database (a key kept there would be no secret from that reader).
 * The hash only keeps the token itself out of the table. A token guessable offline from its hash
 * is one too weak for a listener off loopback anyway (README: a random one). */
void serve_token_hash(const char *token, char *out, size_t len)
{
    if (token == NULL || *token == '\0') {
        snprintf(out, len, "none");
        return;
    }
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[2 * crypto_hash_sha256_BYTES + 1];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(out, len, "sha256:%s", hex);
}

/* Does a request without this node's token carry something only the holder can check? Share
 * tokens (a bearer, or ?share=), an agent's ?agent_token= and a subscription wake's bearer are
 * kept in the holder's registry, which a follower does not load: those go on, and the holder
 * decides (its --token is this node's: serve__token_mismatch). A request that carries no
 * credential at all is refused by the holder too, unless its path is one the holder serves to
 * anybody: the dashboard (outside /v1) and the subscriptions' resource, which checks its own
 * tokens and publishes its JWKS. So this node answers 401 to the rest itself, which saves the hop,
 * and does not depend on the holder alone for the one check it can make. */
static int serve__forward_auth(struct http_req *req)
{
    size_t plen, hlen;
    const char *path = http_req_path(req, &plen);
    static const char subs[] = SUBS_HTTP_PREFIX;
    char *q = NULL;
    if (http_req_authorized(req) || http_req_header(req, "authorization", &hlen) != NULL)
        return 1;
    if (plen < 3 || memcmp(path, "/v1", 3) != 0 || (plen > 3 && path[3] != '/'))
        return 1; /* the dashboard */
    if (plen >= sizeof subs - 1 && memcmp(path, subs, sizeof subs - 1) == 0)
        return 1;
    return (http_req_query_param(req, "share", &q) && q) ||
           (http_req_query_param(req, "agent_token", &q) && q);
}

/* The holder was started with another --token than this node's (it restarted with another while
 * this node was not heard of, or both started at once): forwarding would let in what this node's
 * token should keep out, or refuse what it lets in. Said in the log once per lease of the holder. */
int serve_forward_same_token(const struct serve_forward *f, const struct store_lease *l)
{
    return l->live && l->looked_ms_ago < SERVE_TOKEN_LOOK_MS && strcmp(l->owner_token, f->token_hash) == 0;
}

/* A live lease this node has not looked at lately (it was paused, or its heartbeat cannot reach the
 * database): the holder may have restarted since, with another token. */
static int serve__view_old(const struct store_lease *l)
{
    return l->live && !l->self && l->looked_ms_ago >= SERVE_TOKEN_LOOK_MS;
}

static int serve__token_mismatch(struct http_req *req, struct serve_forward *f, const struct store_lease *l)
{
    if (serve_forward_same_token(f, l))
        return 0;
    if (serve__view_old(l)) {
        http_res_header(req, "Retry-After", "1");
        http_res_error(req, ERR_OWNER_UNAVAILABLE,
                       "this node has not read the write lease for %" PRId64
                       " ms: it cannot tell whether the holder (%s) still has its --token",
                       l->looked_ms_ago, l->owner);
        return 1;
    }
    const char *why = !*l->owner_token ? "runs an older agentd that does not record its --token"
                      : strcmp(l->owner_token, "none") == 0 ? "has no --token and this node has one"
                      : strcmp(f->token_hash, "none") == 0  ? "has a --token and this node has none"
                                                            : "has another --token than this node's";
    if (f->mismatch_epoch != l->epoch) {
        f->mismatch_epoch = l->epoch;
        log_error("serve: not forwarding to %s (epoch %" PRId64
                  "), the node that holds the write lease: it %s. Every node on one database needs the same "
                  "--token",
                  l->owner, l->epoch, why);
    }
    http_res_error(req, ERR_NODE_TOKEN_MISMATCH, "the node that holds the write lease (%s) %s: not forwarded",
                   l->owner, why);
    return 1;
}

/* A request another node forwarded here though this node does not hold its shard: answered before
 * anything is done, with Agentd-Not-Owner when another node sent it (its view is stale, or this node
 * just gave the shard up: it holds the request and routes it again, http_set_unreached), without
 * when this node sent it to itself (a holder's --node-url that leads back here: holding it would
 * only send it back here again). */
static void serve__not_owner(struct http_req *req, struct serve_forward *f, int shard, const char *by,
                             size_t blen, const struct store_lease *l)
{
    const char *self = http_server_node(f->http);
    http_res_header(req, "Retry-After", "1");
    if (blen != strlen(self) || memcmp(by, self, blen) != 0)
        http_res_headerf(req, "Agentd-Not-Owner", "%d", shard);
    http_res_error(req, ERR_OWNER_UNAVAILABLE,
                   "node %.*s forwarded this request here, to a node that does not hold its shard (%d) "
                   "either: the holder's --node-url (%s) must be its own address",
                   (int)(blen > 200 ? 200 : blen), by, shard, l->owner_url);
}

void serve_forward_http(struct http_req *req, void *arg)
{
    struct serve_forward *f = arg;
    int shard;
    (void)serve_route(req, f->nshards, &shard); /* NODE and LOCAL paths: shard 0's holder */
    struct store_lease l;
    serve_shard_view(f, shard, &l);
    if (serve_shard_here(f, shard, &l)) /* taken over meanwhile (a held request, a read's completion) */
        return http_req_redispatch(req);
    serve_forward_shard(req, f, shard, &l);
}

void serve_forward_shard(struct http_req *req, struct serve_forward *f, int shard,
                         const struct store_lease *l)
{
    size_t blen;
    const char *by = http_req_header(req, HTTP_FORWARDED_BY, &blen);
    if (by != NULL && !http_req_forwarded_here(req) && !l->self)
        return serve__not_owner(req, f, shard, by, blen, l);
    if (!serve__forward_auth(req))
        return http_res_unauthorized(req);
    struct http_upstream *up = NULL;
    if (l->live && !l->self && l->owner_url[0])
        up = http_upstream_get(f->http, l->owner_url, f->upstream_timeout_ms);
    else if (!l->live && !l->self) /* nobody holds it: this node takes it (within its share) */
        store_shard_want(f->store, shard);
    /* An old view is held too: the heartbeat looks again within 100 ms (serve_hold's probe then
     * sends it on, and serve__token_mismatch checks the holder's token on the new view). */
    if (((up == NULL && (l->self || !l->live)) || serve__view_old(l)) && serve_hold(f->hold, req, shard, l))
        return; /* forwarded, or served here, once a node holds the shard */
    if (up == NULL) {
        http_res_header(req, "Retry-After", "1");
        if (l->self) /* this node is taking the shard over (or giving it up) */
            return http_res_error(req, ERR_OWNER_UNAVAILABLE,
                                  "this node is taking over the write lease; retry");
        if (!l->live)
            return http_res_error(
                req, ERR_OWNER_UNAVAILABLE,
                "no node holds a live write lease (%s%s): another takes over once it expires",
                *l->owner ? "last holder: " : "none yet", l->owner);
        return http_res_error(req, ERR_OWNER_UNAVAILABLE,
                              "the node that holds the write lease (%s) gave no --node-url of the form "
                              "http://ADDRESS:PORT to forward to",
                              l->owner);
    }
    if (serve__token_mismatch(req, f, l))
        return;
    http_req_forward_shard(req, up, shard);
}
