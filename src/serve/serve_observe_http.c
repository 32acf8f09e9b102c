/* serve_observe_http — commits of other nodes relayed to the subscription service on shard 0's
 * holder (see serve_observe_http.h). */
#include "serve/serve_observe_http.h"
#include "core/core.h"
#include "core/map.h"
#include "curlx/curlx_http.h"
#include "http/http.h"
#include "serve/serve_http.h"
#include "store/store.h"
#include "subs/subs.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* A request's bound: a relay is a hint (the next commit of a stream relays it again), so one that
 * does not end soon is given up rather than holding back the batches behind it. */
#define SERVE_OBSERVE_TIMEOUT_MS 5000

/* Ownership: the relay owns pending's int64_t tails, its curlx engine and the request in flight. */
struct serve_observe {
    uv_loop_t *loop;
    struct serve_forward *f;
    struct subs *const *subs;
    char *auth; /* "Authorization: Bearer <token>", or NULL with no --token */
    struct curlx_http *http;
    struct curlx_http_req *inflight;
    struct map pending; /* path -> int64_t tail, the newest committed since the last request */
    uv_timer_t batch;   /* sends what one commit batch observed once the batch has been published */
    int armed;
};

static void serve__observe_free_tail(const char *key, void *value, void *arg) { free(value); }

static void serve__observe_add(const char *key, void *value, void *arg)
{
    json_array_append_new(arg, json_pack("[s,I]", key, (json_int_t) * (int64_t *)value));
    free(value);
}

static void serve__observe_send(struct serve_observe *o);

static void serve__observe_done(void *arg, const struct curlx_http_answer *a)
{
    struct serve_observe *o = arg;
    o->inflight = NULL;
    if (!a->ok)
        log_debug("serve: relaying commits to the subscriptions failed (%ld%s%s): they wait for the streams' "
                  "next commits",
                  a->status, a->error ? ", " : "", a->error ? a->error : "");
    if (o->pending.count)
        serve__observe_send(o);
}

/* One request with everything pending, to shard 0's holder as this node sees it now. Nothing is
 * sent (and what is pending is dropped) while it has no live holder, or this node is it (its own
 * service observes its commits itself). */
static void serve__observe_send(struct serve_observe *o)
{
    if (o->inflight || o->pending.count == 0)
        return;
    struct store_lease l;
    serve_shard_view(o->f, 0, &l);
    json_t *pairs = json_array();
    map_each(&o->pending, serve__observe_add, pairs); /* frees the tails */
    map_clear(&o->pending);
    if (!l.live || l.self || !l.owner_url[0] || o->http == NULL) {
        json_decref(pairs);
        return;
    }
    json_t *msg = json_pack("{s:o}", "observed", pairs);
    char *body = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    char *url = xasprintf("%s%s", l.owner_url, SERVE_OBSERVE_PATH);
    o->inflight = curlx_http_request(o->http, &(struct curlx_http_opts){
                                                  .method = "POST",
                                                  .url = url,
                                                  .body = body,
                                                  .body_len = strlen(body),
                                                  .timeout_ms = SERVE_OBSERVE_TIMEOUT_MS,
                                                  .on_done = serve__observe_done,
                                                  .arg = o,
                                                  .header = o->auth,
                                              });
    free(url);
    free(body);
}

static void serve__observe_batch(uv_timer_t *t)
{
    struct serve_observe *o = t->data;
    o->armed = 0;
    serve__observe_send(o);
}

void serve_observe_relay(void *arg, const char *path, int64_t tail)
{
    struct serve_observe *o = arg;
    size_t n = strlen(path);
    if (n >= 4 && !memcmp(path, "__ds", 4) && (n == 4 || path[4] == '/'))
        return; /* subs_observe ignores the reserved namespace */
    int64_t *t = map_get(&o->pending, path, n);
    if (t == NULL) {
        t = xcalloc(1, sizeof *t);
        map_put(&o->pending, path, n, t);
    }
    if (tail > *t)
        *t = tail;
    /* The observer runs once per stream of a batch being published: the request goes once the
     * whole batch has been (the timer runs on the loop's next turn). */
    if (!o->armed) {
        o->armed = 1;
        uv_timer_start(&o->batch, serve__observe_batch, 0, 0);
    }
}

int serve_observe_scan(void *arg, const char *prefix,
                       void (*found)(const char *path, int64_t tail, void *farg), void *farg)
{
    return store_tails_pooled(arg, prefix, found, farg);
}

void serve_observe_http(struct http_req *req, void *arg)
{
    struct serve_observe *o = arg;
    if (http_req_method(req) != HTTP_POST)
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "POST only");
    struct subs *subs = *o->subs;
    if (subs == NULL)
        return http_res_error(req, ERR_OWNER_UNAVAILABLE, "this node does not run the subscriptions");
    size_t len;
    const char *body = http_req_body(req, &len);
    json_t *msg = body ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *pairs = json_object_get(msg, "observed");
    if (!json_is_array(pairs)) {
        json_decref(msg);
        return http_res_error(req, ERR_BAD_REQUEST, "expected {\"observed\":[[path, tail], ...]}");
    }
    size_t i;
    json_t *p;
    json_array_foreach (pairs, i, p) {
        const char *path = json_string_value(json_array_get(p, 0));
        json_t *tail = json_array_get(p, 1);
        if (path && *path && json_is_integer(tail) && json_integer_value(tail) >= 0)
            subs_observe_remote(subs, path, json_integer_value(tail));
    }
    json_decref(msg);
    http_res_send(req, 204, NULL, 0);
}

struct serve_observe *serve_observe_new(uv_loop_t *loop, struct serve_forward *f, const char *token,
                                        struct subs *const *subs)
{
    struct serve_observe *o = xcalloc(1, sizeof *o);
    o->loop = loop;
    o->f = f;
    o->subs = subs;
    o->auth = token && *token ? xasprintf("Authorization: Bearer %s", token) : NULL;
    if (curlx_http_new(&o->http, loop) != 0)
        log_warn("serve: cannot initialise libcurl: commits here will not reach the subscriptions");
    uv_timer_init(loop, &o->batch);
    o->batch.data = o;
    return o;
}

static void serve__observe_closed(uv_handle_t *h)
{
    struct serve_observe *o = h->data;
    free(o->auth);
    free(o);
}

void serve_observe_free(struct serve_observe *o)
{
    if (o == NULL)
        return;
    curlx_http_free(o->http); /* cancels the request in flight */
    map_each(&o->pending, serve__observe_free_tail, NULL);
    map_clear(&o->pending);
    uv_close((uv_handle_t *)&o->batch, serve__observe_closed);
}
