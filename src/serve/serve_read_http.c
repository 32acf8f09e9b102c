/* serve_read_http — catch-up reads of streams whose shard another node holds (see serve_http.h).
 * Apart from serve_http.c's forwarding so that each can change alone. */
#include "http/http.h"
#include "serve/serve_http.h"
#include "store/store.h"
#include "stream/stream_http.h"

#include <string.h>

void serve_read_http(struct http_req *req, void *arg)
{
    const struct serve_reads *r = arg;
    int shard;
    (void)serve_route(req, r->forward->nshards, &shard);
    struct store_lease l;
    serve_shard_view(r->forward, shard, &l);
    /* The check serve_forward_http makes before it forwards, made now: while the holder recorded
     * another --token than this node's (or this node's view of the lease is too old to say), the
     * read goes there too, to be refused alike. */
    if (serve_forward_same_token(r->forward, &l) && http_req_authorized(req) &&
        stream_http_read_local(r->sh, req, serve_forward_http, r->forward) == 0)
        return; /* answered, or forwarded from the read's completion */
    serve_forward_http(req, r->forward);
}
