/* serve_http — GET /v1/nodes, and a follower's forwarding (see serve_http.h). */
#include "serve/serve_http.h"
#include "core/core.h"
#include "http/http.h"
#include "session/session.h"
#include "store/store.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SERVE_NODES_MAX 64

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
            json_pack("{s:s, s:s, s:b, s:b, s:I}", "node", o->node, "role", o->owner ? "owner" : "follower",
                      "owner", o->owner, "self", o->self, "seen_ms_ago", (json_int_t)o->seen_ms_ago);
        if (o->self && *f->sessions)
            json_object_set_new(j, "agents", json_integer((json_int_t)sessions_live_agents(*f->sessions)));
        json_object_set_new(j, "url", *o->url ? json_string(o->url) : json_null());
        if (o->owner) {
            json_object_set_new(j, "epoch", json_integer(o->epoch));
            json_object_set_new(j, "lease_ms_left", json_integer(o->lease_ms_left));
        }
        json_array_append_new(list, j);
    }
    free(nodes);
    http_res_json(req, 200, json_pack("{s:s, s:o}", "store", store_backend(store), "nodes", list));
}

void serve_forward_http(struct http_req *req, void *arg)
{
    const struct serve_forward *f = arg;
    struct store_lease l;
    store_lease(f->store, &l);
    struct http_upstream *up = NULL;
    if (l.live && !l.self && l.owner_url[0])
        up = http_upstream_get(f->http, l.owner_url, f->upstream_timeout_ms);
    if (up == NULL) {
        http_res_header(req, "Retry-After", "1");
        if (l.self) /* this node just took the lease over and is loading the registry */
            return http_res_error(req, ERR_OWNER_UNAVAILABLE,
                                  "this node is taking over the write lease; retry");
        if (!l.live)
            return http_res_error(
                req, ERR_OWNER_UNAVAILABLE,
                "no node holds a live write lease (%s%s): another takes over once it expires",
                *l.owner ? "last holder: " : "none yet", l.owner);
        return http_res_error(req, ERR_OWNER_UNAVAILABLE,
                              "the node that holds the write lease (%s) gave no --node-url of the form "
                              "http://ADDRESS:PORT to forward to",
                              l.owner);
    }
    size_t blen;
    const char *by = http_req_header(req, HTTP_FORWARDED_BY, &blen);
    if (by != NULL) {
        /* Forwarded to this follower already: a --node-url names the wrong node (or a balancer). */
        http_res_header(req, "Retry-After", "1");
        return http_res_error(req, ERR_OWNER_UNAVAILABLE,
                              "node %.*s forwarded this request here, to a node that does not hold the "
                              "write lease either: the holder's --node-url (%s) must be its own address",
                              (int)(blen > 200 ? 200 : blen), by, l.owner_url);
    }
    http_req_forward(req, up);
}
