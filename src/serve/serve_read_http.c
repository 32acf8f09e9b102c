/* serve_read_http — a follower's catch-up reads of streams (see serve_http.h). Apart from
 * serve_http.c's forwarding so that each can change alone. */
#include "http/http.h"
#include "serve/serve_http.h"
#include "store/store.h"
#include "stream/stream_http.h"

#include <string.h>

void serve_read_http(struct http_req *req, void *arg)
{
    const struct serve_reads *r = arg;
    struct store_lease l;
    store_lease(r->forward->store, &l);
    /* This node's token is the owner's (the nodes cannot be split on --token: serve_forward_http
     * refuses to forward while they differ, and so the reads go there too, to be refused alike). */
    int same_token = strcmp(l.owner_token, r->forward->token_hash) == 0;
    if (same_token && http_req_authorized(req) && stream_http_read_local(r->sh, r->forward->store, req) == 0)
        return;
    serve_forward_http(req, r->forward);
}
