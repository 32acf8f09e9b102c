/*
 * http_int — what http.c and http_ws.c share: the server and request structs behind http.h's
 * opaque types. Not for other modules (no h2o type leaves http/).
 *
 * Ownership: struct http_req lives in the h2o request's memory pool, registered as a shared
 * allocation so that http.c's dispose runs when h2o frees the request (response done or client
 * gone). Streamed output uses two buffers: `inflight` is owned by h2o from h2o_send until its
 * proceed callback (h2o requires the bytes to live until then, and allows one send in flight);
 * `pending` collects writes meanwhile and is bounded by max_queued.
 */
#ifndef AGENTD_HTTP_INT_H
#define AGENTD_HTTP_INT_H

#include <h2o.h>

#include "core/list.h"
#include "http/http.h"

#define HTTP_MAX_ROUTES 32

struct http__route {
    const char *prefix;
    size_t len;
    http_handler_cb cb;
    void *arg;
    unsigned flags;
};

struct http__handler {
    h2o_handler_t super; /* must be first: h2o hands us this pointer */
    struct http_server *srv;
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    struct http_config cfg;
    char *token;
    struct http__route routes[HTTP_MAX_ROUTES];
    size_t nroutes;
    int port;
    size_t nconns;
    int listening;
    http_authorizer_cb authorizer;
    void *authorizer_arg;
    struct buf cors_allow, cors_expose; /* header names, by http_cors_headers */
    struct http_ws *ws_list;            /* open WebSockets, closed with 1001 on shutdown */
    struct http_req *credentialed;      /* requests let in on a credential (http_server_revoke) */
    struct http_req *live;              /* every request between its handler call and its dispose */
    struct http__conn *conns;           /* every accepted connection until its handle closed */
    int stopping;                       /* http_server_shutdown ran: new requests get 503 */
    char *node;                         /* Agentd-Node on every answer served here, or NULL */
    struct http_upstream *upstreams;    /* every node forwarded to (http_forward.c) */
    http_unreached_cb unreached;        /* http_set_unreached's */
    void *unreached_arg;
    http_handler_cb front; /* http_set_front's, or NULL */
    void *front_arg;
};

/* Each accepted connection's uv_tcp_t, tagged with its server so the close callback can count, and
 * listed so that a stopping server can find the idle ones (http_server_drain). */
struct http__conn {
    uv_tcp_t tcp;
    struct http_server *srv;
    h2o_socket_t *sock;         /* h2o's socket over tcp; h2o owns it and closes tcp through it */
    LIST_LINK(http__conn) link; /* srv->conns */
    int read_shut;              /* its read side was shut because it sat idle while the server stopped */
    /* Where a WebSocket handshake on it was forwarded (http_req_forward): once upgraded, h2o's proxy
     * tunnels the connection without a request, so http_upstream_drop finds it by this. */
    struct http_upstream *tunnel;
    int tunnel_shard; /* the shard it was forwarded for (-1: none) */
};

struct http_req {
    h2o_req_t *h2o;
    struct http_server *srv;
    h2o_generator_t gen;
    void *data;
    http_dispose_cb dispose;
    http_drain_cb on_drain;
    void *drain_arg;
    struct buf inflight, pending;
    unsigned started : 1;   /* a response was started (whole or streamed) */
    unsigned streaming : 1; /* started with http_res_stream_start */
    unsigned sending : 1;   /* inflight is with h2o */
    unsigned ending : 1;    /* end requested */
    unsigned finished : 1;  /* FINAL or ERROR handed to h2o: do not touch h2o again */
    unsigned aborting : 1;
    unsigned stopped : 1;           /* the client went away */
    unsigned revoked : 1;           /* ended by http_server_revoke: its owner's answers are ignored */
    unsigned forwarded : 1;         /* handed to h2o's proxy (http_forward.c): its answer is the upstream's */
    unsigned marked : 1;            /* http_req_forward added this node's Agentd-Forwarded-By to it */
    struct http_upstream *upstream; /* where it was forwarded to (http_upstream_drop) */
    int shard;                      /* the shard it was forwarded for (-1: none) */
    char *credential;               /* set by the authorizer (pool memory); listed in srv->credentialed */
    LIST_LINK(http_req) cred_link;  /* srv->credentialed, while credential is set */
    h2o_socket_t *sock;             /* its connection's socket: a connection with a request is not idle */
    LIST_LINK(http_req) live_link;  /* srv->live */
    /* What http_req_forward hands h2o's proxy (h2o_req_t.overrides points here): kept in the request
     * so that a failed connect finds its request from the h2o one in O(1) (http__forward_unreached).
     * A request forwarded again still costs its pool a copy of its line and headers (h2o's proxy
     * builds the upstream request there) and an error log entry per refusal: serve_hold_http.c
     * forwards a held request again only when a probe of the holder connects or the lease changes. */
    h2o_req_overrides_t overrides;
};

/* Closes (1008) the WebSockets whose request was let in with credential; how many. In http_ws.c. */
size_t http__ws_revoke(struct http_server *srv, const char *credential);

/* Closes every open WebSocket with 1001 (http_server_shutdown). In http_ws.c. */
void http__ws_close_all(struct http_server *srv);

/* Appends the socket of every WebSocket past its upgrade to (*socks)[*n...], growing the array
 * (xmalloc'd, *cap entries) as needed. In http_ws.c. */
void http__ws_sockets(struct http_server *srv, h2o_socket_t ***socks, size_t *n, size_t *cap);

/* The request http_req_forward handed h2o's proxy as r (r->overrides is its own), or NULL: r's
 * overrides are not one of http_req_forward's (nothing else sets them today, but h2o's reproxy or
 * a delegated redirect would: finding a struct http_req around those would read wild memory).
 * In http_forward.c. */
struct http_req *http__forward_req(struct http_server *srv, h2o_req_t *r);

/* h2o's proxy answers 502 with errstr as the body: 1 when that was a connect failure of a request
 * forwarded here and http_set_unreached's callback took it back (nothing is answered then).
 * In http_forward.c. */
int http__forward_unreached(struct http_server *srv, h2o_req_t *r, const char *errstr);

/* Routes a request to its handler (the server token checked unless the route does its own). */
void http__dispatch(struct http_server *srv, struct http_req *req);

/* Frees every upstream (http_server_free, once no connection is left). In http_forward.c. */
void http__upstreams_free(struct http_server *srv);

#endif
