/* serve_route_http — which shard a request belongs to, and the front route that sends it there (see
 * serve_http.h; doc/SHARDING-PLAN.md §2.1). */
#include "core/core.h"
#include "http/http.h"
#include "serve/serve_hold_http.h"
#include "serve/serve_http.h"
#include "serve/serve_observe_http.h"
#include "serve/serve_internal_http.h"
#include "store/store.h"
#include "stream/stream_http.h"
#include "subs/subs.h"

#include <stdint.h>
#include <string.h>

static int serve__is(const char *path, size_t len, const char *what)
{
    size_t n = strlen(what);
    return len == n && memcmp(path, what, n) == 0;
}

static int serve__under(const char *path, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(path, prefix, n) == 0;
}

enum serve_route serve_route_path(enum http_method method, const char *path, size_t len, int nshards,
                                  int *shard)
{
    static const char stream[] = STREAM_HTTP_PREFIX, sessions[] = "/v1/sessions";
    *shard = 0;
    /* a fork's ref or unref: meant for the node it was sent to, which says itself when it is not
     * the source's owner (serve_internal_http.h) */
    if (serve__is(path, len, "/v1/health") || serve__is(path, len, "/v1/nodes") ||
        serve__under(path, len, SERVE_INTERNAL_ROUTE))
        return SERVE_ROUTE_NODE;
    /* A stream's shard is its path's, so the shard a request goes to is the one that writes it:
     * subscriptions (__ds/...) and the control paths land in shard 0 by the same function. */
    if (serve__under(path, len, stream)) {
        *shard = store_shard_of(path + sizeof stream - 1, len - (sizeof stream - 1), nshards);
        return SERVE_ROUTE_SHARD;
    }
    /* /v1/sessions/<id>[/...] (its /ws, /mcp, /events, ...): "/v1/" dropped leaves
     * "sessions/<id>/...", the form its streams' paths take, so the session goes to the shard its
     * streams are in whatever the id looks like. */
    if (serve__under(path, len, sessions) && len > sizeof sessions && path[sizeof sessions - 1] == '/') {
        *shard = store_shard_of(path + 4, len - 4, nshards);
        return SERVE_ROUTE_SHARD;
    }
    /* The list (the directory, shard 0's) and a new session (placement: shard 0 until sessions are
     * placed on several nodes, §3). */
    if (serve__under(path, len, sessions))
        return method == HTTP_POST && (len == sizeof sessions - 1 || len == sizeof sessions)
                   ? SERVE_ROUTE_PLACE
                   : SERVE_ROUTE_SHARD;
    /* commits of other nodes, for the subscriptions (serve_observe_http.h): shard 0's holder runs them */
    if (serve__is(path, len, SERVE_OBSERVE_PATH))
        return SERVE_ROUTE_SHARD;
    /* /v1/agents, the dashboard's files, and any other path: whichever node serves */
    return SERVE_ROUTE_LOCAL;
}

enum serve_route serve_route(struct http_req *req, int nshards, int *shard)
{
    size_t len;
    const char *path = http_req_path(req, &len);
    return serve_route_path(http_req_method(req), path, len, nshards, shard);
}

/* The one place that reads a shard's lease. */
void serve_shard_view(struct serve_forward *f, int shard, struct store_lease *out)
{
    uint64_t now = clock_mono_us();
    if (f->views_us == 0 || now - f->views_us >= SERVE_VIEWS_MS * 1000) {
        (void)store_shards(f->store, f->views, f->nshards);
        f->views_us = now;
    }
    *out = f->views[shard];
    int64_t aged = (int64_t)(now - f->views_us) / 1000;
    if (aged == 0)
        return;
    out->left_ms -= aged;
    if (out->looked_ms_ago != INT64_MAX)
        out->looked_ms_ago += aged;
    if (out->left_ms <= 0) /* expired since, as the store would say now */
        out->live = 0;
}

void serve_shard_views_stale(struct serve_forward *f) { f->views_us = 0; }

int serve_shard_here(const struct serve_forward *f, int shard, const struct store_lease *l)
{
    return f->serving && (l->self || (f->seen != NULL && f->seen[shard].self)) &&
           (f->loaded == NULL || store_shard_in(f->loaded, shard));
}

void serve_dispatch_http(struct http_req *req, void *arg)
{
    struct serve_forward *f = arg;
    int shard;
    enum serve_route r = serve_route(req, f->nshards, &shard);
    if (r == SERVE_ROUTE_NODE || (r == SERVE_ROUTE_LOCAL && f->serving))
        return http_req_redispatch(req);
    if (r == SERVE_ROUTE_PLACE && serve_place(req, f))
        return;
    struct store_lease l;
    serve_shard_view(f, shard, &l);
    if (serve_shard_here(f, shard, &l))
        return http_req_redispatch(req);
    size_t len;
    const char *path = http_req_path(req, &len);
    static const char stream[] = STREAM_HTTP_PREFIX, subs[] = SUBS_HTTP_PREFIX;
    /* a catch-up read is answered here (serve_read_http forwards the rest) */
    if (r == SERVE_ROUTE_SHARD && f->reads != NULL && serve__under(path, len, stream) &&
        !serve__under(path, len, subs))
        return serve_read_http(req, f->reads);
    serve_forward_shard(req, f, shard, &l);
}
