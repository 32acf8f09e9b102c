/*
 * serve_place_http — where a new session goes when several nodes hold shards (--shard-policy
 * balance; doc/SHARDING-PLAN.md §3 "Placement"). POST /v1/sessions goes to the node named in the
 * body ("node": its name or URL), else to the live node holding shards with the fewest live agents
 * (GET /v1/nodes' load, from the heartbeats; ties at random). The request is forwarded there marked
 * Agentd-Placed: 1, and that node creates the session in the shard it holds with the fewest sessions
 * (session/'s placement). With the default policy a new session goes to shard 0's holder, as before.
 */
#include "serve/serve_http.h"
#include "serve/serve_hold_http.h"
#include "store/store.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SERVE_PLACE_MAX_NODES 64
#define SERVE_PLACED          "agentd-placed"

/* The node the body names (name or URL): its index in v, -1 when none is named, -2 unknown. */
static int serve__named(struct http_req *req, const struct store_node *v, int n)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *name = json_string_value(json_object_get(j, "node"));
    int at = name ? -2 : -1;
    for (int i = 0; name && i < n && at == -2; i++)
        if (strcmp(v[i].node, name) == 0 || (v[i].url[0] && strcmp(v[i].url, name) == 0))
            at = i;
    json_decref(j);
    return at;
}

/* The live node holding shards with the fewest live agents (ties at random), or -1. */
static int serve__emptiest(const struct store_node *v, int n)
{
    int best = -1, ties = 0;
    for (int i = 0; i < n; i++) {
        if (v[i].state != STORE_NODE_LIVE || v[i].shards <= 0 || (!v[i].self && !v[i].url[0]))
            continue;
        int64_t a = v[i].agents < 0 ? 0 : v[i].agents;
        int64_t b = best < 0 ? 0 : v[best].agents < 0 ? 0 : v[best].agents;
        if (best < 0 || a < b)
            best = i, ties = 1;
        else if (a == b && rand() % ++ties == 0)
            best = i;
    }
    return best;
}

int serve_place(struct http_req *req, struct serve_forward *f)
{
    if (f->loaded == NULL) /* the default policy: shard 0's holder creates every session */
        return 0;
    struct store_node v[SERVE_PLACE_MAX_NODES];
    int n = store_nodes(f->store, v, SERVE_PLACE_MAX_NODES);
    if (n > SERVE_PLACE_MAX_NODES)
        n = SERVE_PLACE_MAX_NODES;
    int at = serve__named(req, v, n > 0 ? n : 0);
    if (http_req_header(req, SERVE_PLACED, NULL) != NULL) { /* placed here by another node */
        if (f->sessions && *f->sessions)
            return http_req_redispatch(req), 1;
        http_res_header(req, "Retry-After", "1");
        http_res_error(req, ERR_OWNER_UNAVAILABLE, "this node holds no shard yet; retry");
        return 1;
    }
    if (at == -2) {
        http_res_error(req, ERR_BAD_REQUEST,
                       "no such node (\"node\" is a node's name or URL, GET /v1/nodes)");
        return 1;
    }
    if (at >= 0 && v[at].state != STORE_NODE_LIVE) {
        http_res_header(req, "Retry-After", "1");
        http_res_error(req, ERR_OWNER_UNAVAILABLE, "node %s is not live", v[at].node);
        return 1;
    }
    if (at < 0)
        at = serve__emptiest(v, n > 0 ? n : 0);
    if (at < 0) /* nobody to place on (the nodes' list is not read yet): shard 0's holder */
        return 0;
    if (v[at].self) {
        if (f->sessions && *f->sessions) {
            http_req_redispatch(req);
            return 1;
        }
        return 0;
    }
    size_t hlen;
    if (!http_req_authorized(req) && http_req_header(req, "authorization", &hlen) == NULL) {
        http_res_unauthorized(req);
        return 1;
    }
    http_req_add_header(req, SERVE_PLACED, "1");
    http_req_forward(req, http_upstream_get(f->http, v[at].url, f->upstream_timeout_ms));
    return 1;
}

int serve_place_unreached(void *arg, struct http_req *req)
{
    struct serve_forward *f = arg;
    size_t len;
    const char *body = http_req_body(req, &len);
    json_t *j = http_req_header(req, SERVE_PLACED, NULL) && len ? json_loadb(body, len, 0, NULL) : NULL;
    int named = json_is_string(json_object_get(j, "node"));
    json_decref(j);
    /* The node the body named did not take it (killed since the nodes' list said live): 503
     * owner_unavailable (http's own answer), not a session started on another node. */
    return named ? 0 : serve_hold_unreached(f->hold, req);
}
