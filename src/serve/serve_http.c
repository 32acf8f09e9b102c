/* serve_http — GET /v1/nodes: the store's nodes as JSON (see serve_http.h). */
#include "serve/serve_http.h"
#include "core/core.h"
#include "http/http.h"
#include "store/store.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SERVE_NODES_MAX 64

void serve_nodes_http(struct http_req *req, void *arg)
{
    struct store *store = arg;
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
        json_t *j = json_pack("{s:s, s:b, s:b, s:I}", "node", o->node, "owner", o->owner, "self", o->self,
                              "seen_ms_ago", (json_int_t)o->seen_ms_ago);
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
