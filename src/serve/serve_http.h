/* serve_http — the server's own resources beside the modules' (GET /v1/nodes). */
#ifndef AGENTD_SERVE_HTTP_H
#define AGENTD_SERVE_HTTP_H

struct http_req;

/* GET /v1/nodes: the nodes that use the store's database (arg: the struct store), which one holds
 * the write lease, and since when each was last heard of. */
void serve_nodes_http(struct http_req *req, void *arg);

#endif
