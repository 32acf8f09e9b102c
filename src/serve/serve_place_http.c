/*
 * serve_place_http — where a new session goes when several nodes hold shards (--shard-policy
 * balance; doc/SHARDING-PLAN.md §3 "Placement"). POST /v1/sessions goes to the node named in the
 * body ("node": its name or URL), else to the live node holding shards with the fewest live agents
 * (GET /v1/nodes' load, from the heartbeats; ties at random). The request is forwarded there marked
 * Agentd-Placed: 1, and that node creates the session in the shard it holds with the fewest sessions
 * (session/'s placement). With the default policy a new session goes to shard 0's holder, as before.
 *
 * One owner per session: a session's shard follows from its id, and its agent runs on its shard's
 * holder, so the node placed a session must hold a shard to draw the id in. A node that holds none
 * yet (one just started, before the voluntary hand-off gives it its share; or one whose shards are
 * taken but not loaded yet) waits for one: the request is held here, looked at every
 * SERVE_PLACE_TICK_MS, created once a shard's sessions are loaded here, and answered 503 (Retry-After)
 * only past SERVE_PLACE_WAIT_MS. It is never created on another node instead: a named node is what
 * the client asked for, and an unnamed one was picked holding shards (the wait covers the moment
 * between its take and its load).
 */
#include "core/core.h"
#include "serve/serve_http.h"
#include "serve/serve_hold_http.h"
#include "session/session.h"
#include "store/store.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SERVE_PLACE_MAX_NODES 64
#define SERVE_PLACED          "agentd-placed"
/* How often a placed request waiting for a shard looks again, and how long it waits at most: the
 * hand-off gives a newcomer its first shard within a few leases (pg_placement.t: 3.8 s at
 * --lease-ms 1000), and within a client's patience. */
#define SERVE_PLACE_TICK_MS   50
#define SERVE_PLACE_WAIT_MS   30000

/* A placed request waiting here for a shard. Its own memory (the timer closes after the request
 * may have ended): freed by the timer's close, which the request's end or answer starts. */
struct serve__place_wait {
    uv_timer_t timer;
    struct http_req *req; /* NULL once it ended or was answered */
    struct serve_forward *f;
    uint64_t until_us; /* clock_mono_us past which it is answered 503 */
};

static int serve__placeable(const struct serve_forward *f)
{
    return f->sessions != NULL && sessions_placeable(*f->sessions);
}

static void serve__place_wait_closed(uv_handle_t *h) { free(h->data); }

/* The request ended (its client went away) or is answered or created: the wait ends. */
static void serve__place_wait_end(void *data)
{
    struct serve__place_wait *w = data;
    w->req = NULL;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, serve__place_wait_closed);
}

static void serve__place_unavailable(struct http_req *req)
{
    http_res_header(req, "Retry-After", "1");
    http_res_error(req, ERR_OWNER_UNAVAILABLE,
                   "this node holds no shard to create a session in yet (it gets its share from the "
                   "other nodes within a few leases); retry");
}

static void serve__place_tick(uv_timer_t *t)
{
    struct serve__place_wait *w = t->data;
    struct http_req *req = w->req;
    int stopping = http_server_stopping(w->f->http), ready = !stopping && serve__placeable(w->f);
    if (!ready && !stopping && clock_mono_us() < w->until_us && !http_req_client_gone(req))
        return;
    http_req_set_data(req, NULL, NULL); /* the routes may set their own */
    serve__place_wait_end(w);
    if (ready)
        http_req_redispatch(req);
    else if (stopping)
        http_res_error(req, ERR_SHUTTING_DOWN, "the server is stopping; retry once it is back");
    else
        serve__place_unavailable(req);
}

/* This node is the one placed: the session is created here, now or once it holds a shard. */
static int serve__place_here(struct http_req *req, struct serve_forward *f)
{
    if (serve__placeable(f))
        return http_req_redispatch(req), 1;
    if (http_req_data(req) != NULL) { /* held before (serve_hold's): not held twice */
        serve__place_unavailable(req);
        return 1;
    }
    struct serve__place_wait *w = xcalloc(1, sizeof *w);
    w->req = req;
    w->f = f;
    w->until_us = clock_mono_us() + (uint64_t)SERVE_PLACE_WAIT_MS * 1000;
    uv_timer_init(http_server_loop(f->http), &w->timer);
    w->timer.data = w;
    http_req_set_data(req, w, serve__place_wait_end);
    uv_timer_start(&w->timer, serve__place_tick, SERVE_PLACE_TICK_MS, SERVE_PLACE_TICK_MS);
    return 1;
}

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
    if (http_req_header(req, SERVE_PLACED, NULL) != NULL) /* placed here by another node */
        return serve__place_here(req, f);
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
    if (v[at].self)
        return serve__place_here(req, f);
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
