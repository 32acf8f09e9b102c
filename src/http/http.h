/*
 * http — the HTTP server: listener, connections, routing by path prefix, request accessors, and
 * responses (whole, deferred, or streamed with backpressure). Built on libh2o over the one libuv
 * loop; no h2o type leaves this module.
 *
 * Every response carries the security and CORS headers, and every error is a JSON body
 * {"error":{"code","message"}}. With a token configured, every request but a CORS preflight must
 * carry `Authorization: Bearer <token>`; the others get 401 before any handler runs.
 *
 * Lifetime of a request: a struct http_req is valid from the handler call until its dispose
 * callback (http_req_set_data) runs, which happens exactly once, after the response has been sent
 * or the client has gone. A handler may answer at once, keep the request and answer later
 * (long-poll), or stream (SSE). Streamed output is queued per request up to a bound; a reader that
 * falls that far behind is cut off (it resumes from its last offset) rather than growing memory.
 */
#ifndef AGENTD_HTTP_H
#define AGENTD_HTTP_H

#include <stddef.h>
#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"
#include "core/errcode.h"

struct http_server;
struct http_req;

struct http_config {
    const char *host;       /* address to bind */
    int port;               /* 0 picks a free port */
    const char *token;      /* bearer token, NULL for none */
    size_t max_body;        /* request bodies over this get 413 */
    uint64_t io_timeout_ms; /* slow or idle clients are dropped after this */
    size_t max_queued;      /* bytes a streamed response may queue before the reader is cut off */
};

enum http_method {
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_PATCH,
    HTTP_OTHER
};

/* A route handler. It must answer or keep the request (see above). */
typedef void (*http_handler_cb)(struct http_req *req, void *arg);
/* Called when a streamed response has sent everything queued so far. */
typedef void (*http_drain_cb)(struct http_req *req, void *arg);
/* Called once when the request ends, with the pointer given to http_req_set_data. */
typedef void (*http_dispose_cb)(void *data);

int http_server_new(struct http_server **out, uv_loop_t *loop, const struct http_config *cfg, char *err,
                    size_t errlen) CORE_UNUSED_RESULT;
/* Stops accepting and asks open connections to finish (HTTP/1 ones close after their current
 * response, HTTP/2 ones get GOAWAY, idle ones close at once). From then on every request that
 * arrives is answered 503 shutting_down with Retry-After, without reaching its route: the modules
 * behind the routes may be freed while h2o still holds connections. Then call http_server_drain
 * until it returns 0 (or you stop waiting). */
void http_server_shutdown(struct http_server *srv);
/* After http_server_shutdown: closes the connections that have become idle since (a keep-alive
 * connection whose last response just ended) and returns how many are still open. */
size_t http_server_drain(struct http_server *srv);
/* Connections still open. */
size_t http_server_connections(const struct http_server *srv);
/* Frees the server. With connections still open their memory is left to the process exit (h2o
 * cannot close them from outside). NULL is a no-op. */
void http_server_free(struct http_server *srv);
int http_server_port(const struct http_server *srv);
/* Every answer this server makes itself carries `Agentd-Node: node` (copied; NULL: none). Answers
 * forwarded from another node (http_req_forward) carry that node's instead. */
void http_server_set_node(struct http_server *srv, const char *node);
/* That name, or "" when none was set. */
const char *http_server_node(const struct http_server *srv);
/* The loop the server runs on (for a handler's timer), and whether http_server_shutdown ran (a
 * request a handler keeps waiting is answered then). */
uv_loop_t *http_server_loop(const struct http_server *srv);
int http_server_stopping(const struct http_server *srv);
/* Registers a handler for paths starting with prefix; the longest matching prefix wins.
 * Unmatched paths get 404. The prefix string is borrowed for the server's lifetime. */
void http_route(struct http_server *srv, const char *prefix, http_handler_cb cb, void *arg);
/* Like http_route, with flags. HTTP_ROUTE_OWN_AUTH: the server token is not checked before the
 * handler runs; the handler authenticates (some requests carry their own bearer tokens) and calls
 * http_req_authorized for those that need the server's. */
#define HTTP_ROUTE_OWN_AUTH 1u
void http_route_flags(struct http_server *srv, const char *prefix, http_handler_cb cb, void *arg,
                      unsigned flags);
/* The front: a handler every request goes to before the routes (after CORS preflights and the
 * header limit, before the token check: it authenticates what it does not send to the routes). It
 * sends a request on to the routes with http_req_redispatch, or answers, forwards or keeps it
 * itself (serve/'s router: the request's shard is held here, or by another node). NULL: none. */
void http_set_front(struct http_server *srv, http_handler_cb cb, void *arg);
/* Removes the route registered with this prefix and handler (a follower's forwarding route, once
 * the node serves locally). */
void http_route_remove(struct http_server *srv, const char *prefix, http_handler_cb cb);
/* CORS: adds header names (comma-separated; copied) that browsers may send (allow:
 * Access-Control-Allow-Headers) and read (expose: Access-Control-Expose-Headers). Each module
 * registers the headers of its own protocol when it mounts its routes; http/ names only generic
 * HTTP ones (Content-Type, Authorization, ETag, ...). Either may be NULL. */
void http_cors_headers(struct http_server *srv, const char *allow, const char *expose);
/* 1 when the server has no token or the request carries it as `Authorization: Bearer <token>`. */
int http_req_authorized(const struct http_req *req);
/* A second chance for a request without the server token (e.g. a read-only share token scoped to
 * some paths): return 1 to let it through, 0 to refuse it (401), or -1 when the authorizer answered
 * it itself (e.g. 403 for a credential that is valid but not for this). Runs before routing, for
 * every such request. */
typedef int (*http_authorizer_cb)(void *arg, struct http_req *req);
void http_set_authorizer(struct http_server *srv, http_authorizer_cb cb, void *arg);
/* An authorizer that lets a request through on a credential of its own (a share token, an agent's
 * token) names it here (copied), so that the request, and the WebSocket it may become, can be ended
 * when the credential is revoked. */
void http_req_set_credential(struct http_req *req, const char *credential);
/* A credential was revoked: ends at once every request and WebSocket it let through. A response
 * not yet started gets 401; a streamed one ends after what it already queued (later writes get
 * -EPIPE); a WebSocket closes with 1008. Their owners learn it as they would of a departed client
 * (dispose, on_close); an owner that answers a revoked request anyway is ignored. Returns how many
 * were ended. */
size_t http_server_revoke(struct http_server *srv, const char *credential);
/* Answers 401 with the JSON error every unauthorized request gets. */
void http_res_unauthorized(struct http_req *req);

/* ---- request accessors (borrowed until dispose) ----
 * Those that return a pointer and a length give the request's own bytes, not NUL-terminated: use
 * the length. http_req_query_param is the one that makes a C string. */
enum http_method http_req_method(const struct http_req *req);
const char *http_req_method_name(const struct http_req *req, size_t *len);
/* The raw path without the query string, and the raw query (NULL when there is none). */
const char *http_req_path(const struct http_req *req, size_t *len);
const char *http_req_query(const struct http_req *req, size_t *len);
/* The first value of a header (case-insensitive name), or NULL. count receives how many there are. */
const char *http_req_header(const struct http_req *req, const char *name, size_t *len);
int http_req_header_count(const struct http_req *req, const char *name);
const char *http_req_body(const struct http_req *req, size_t *len);
/* Adds a request header (name in lower case; both copied), e.g. before http_req_forward. */
void http_req_add_header(struct http_req *req, const char *name, const char *value);
/* The Host the client addressed (HTTP/1 Host header or HTTP/2 :authority). */
const char *http_req_authority(const struct http_req *req, size_t *len);
/* Copies a query parameter's value, percent-decoded, into a NUL-terminated string allocated with
 * the request (lives until dispose). Returns the number of occurrences; *out is the first or NULL. */
int http_req_query_param(struct http_req *req, const char *name, char **out);
/* The pure decoder behind http_req_query_param: finds `name` in a raw query string (q may be NULL
 * for none), appends the first value, percent-decoded, to out (%00 and a raw NUL byte come out as
 * "%00", so the value never holds a NUL), and returns the number of occurrences. When the name occurs, out->p is a
 * NUL-terminated string afterwards, an empty value included; when it does not, out is untouched. */
int http_query_param(const char *q, size_t qlen, const char *name, struct buf *out);
/* Memory that lives until the request ends. */
void *http_req_alloc(struct http_req *req, size_t n);
/* Attaches per-request state; dispose runs exactly once when the request ends. */
void http_req_set_data(struct http_req *req, void *data, http_dispose_cb dispose);

/* ---- responses ---- */
/* Adds a response header; name and value are copied. */
void http_res_header(struct http_req *req, const char *name, const char *value);
void http_res_headerf(struct http_req *req, const char *name, const char *fmt, ...) CORE_PRINTF(3, 4);
/* Sends the whole response; body is copied. For HEAD the body is omitted. */
void http_res_send(struct http_req *req, int status, const void *body, size_t len);
/* Sends {"error":{"code":...,"message":...}} with the code's status from the one table of error
 * codes (core/errcode.h); the message is the formatted sentence. */
void http_res_error(struct http_req *req, enum errcode code, const char *fmt, ...) CORE_PRINTF(3, 4);
/* Sends a JSON answer: Content-Type application/json and Cache-Control no-store (every JSON answer
 * of the API is about live state, which no cache may keep). http_res_json_text sends text already
 * encoded (copied); http_res_json encodes body compactly and takes ownership of it. */
void http_res_json_text(struct http_req *req, int status, const char *text, size_t len);
void http_res_json(struct http_req *req, int status, json_t *body);

/* Starts a streamed response (headers are sent with the first write). */
void http_res_stream_start(struct http_req *req, int status, http_drain_cb on_drain, void *arg);
/* Queues bytes (copied). Returns 0, -EPIPE when the client is gone, or -ENOBUFS when the queue bound
 * was passed, in which case the response is being aborted. */
int http_res_stream_write(struct http_req *req, const void *data, size_t len);
/* The same for two pieces sent as one (a shared event and a per-reader part: no copy to join them). */
int http_res_stream_write2(struct http_req *req, const void *a, size_t alen, const void *b, size_t blen);
/* Bytes queued and not yet handed to the socket. */
size_t http_res_stream_queued(const struct http_req *req);
/* Ends the stream after what is queued; or aborts the connection. */
void http_res_stream_end(struct http_req *req);
void http_res_stream_abort(struct http_req *req);

/* The request header http_req_forward adds (lower case): the forwarding node's name. */
#define HTTP_FORWARDED_BY "agentd-forwarded-by"

/* ---- forwarding (http_forward.c) ----
 * Another node, by URL: http://ADDRESS:PORT with a numeric address. Made on first use and kept
 * with the server (upstream connections are pooled); io_timeout_ms bounds each wait for the
 * upstream's bytes (it must exceed the longest long-poll). NULL when the URL is not of that form. */
struct http_upstream;
struct http_upstream *http_upstream_get(struct http_server *srv, const char *url, uint64_t io_timeout_ms);
/* 0 when url is one http_upstream_get takes, else -EINVAL. */
int http_upstream_check(const char *url);
/* Passes req, not yet answered, to up and streams up's answer back unchanged (status, headers, body,
 * as it arrives). A connect failure answers 503 owner_unavailable (unless http_set_unreached's
 * callback takes the request back); an upstream connection that
 * breaks mid-answer ends the client's connection; a client that goes closes the upstream one. */
void http_req_forward(struct http_req *req, struct http_upstream *up);
/* The same, tagged with the shard it is forwarded for (http_upstream_drop_shard ends it, or the
 * WebSocket it becomes, when that shard's holder leaves up). http_req_forward: no shard (-1). */
void http_req_forward_shard(struct http_req *req, struct http_upstream *up, int shard);
/* The answer a node gives to a request forwarded to it for a shard it does not hold (a stale view of
 * the forwarding node's, or a shard it just handed off), before acting on it: 503 with this header
 * naming the shard. The forwarding node's proxy takes such an answer as it takes a refused connect:
 * http_set_unreached's callback may take the request back (nothing of the answer reaches the
 * client then), else the client gets 503 owner_unavailable. */
#define HTTP_NOT_OWNER "agentd-not-owner"
/* A request http_req_forward could not deliver: its upstream refused or never answered the connect,
 * so the upstream never saw it (a connection that broke once the request was on it never counts:
 * the upstream may have acted on it). cb returns 1 to take the request back, 0 to have it
 * answered 503 owner_unavailable. It must not answer or forward req from within the call (h2o's
 * proxy is still unwinding): it holds it, and later forwards it again, answers it, or
 * http_req_redispatch-es it. */
typedef int (*http_unreached_cb)(void *arg, struct http_req *req);
void http_set_unreached(struct http_server *srv, http_unreached_cb cb, void *arg);
/* A plain TCP connect to up's address on the server's loop, nothing sent (the connection is closed
 * at once): does anything listen there? cb(arg, 0) once it connected, cb(arg, a negative libuv
 * error) when it failed. It is far cheaper than forwarding a request there to find out (h2o's proxy
 * copies the request's line and headers into the request's memory on each pass). NULL: it could not
 * start (cb is not called). The probe frees itself after cb; http_probe_cancel before that: cb is
 * not called. A connect that is never answered (an address that drops connects) lasts until the
 * kernel gives up, about 20 s to 2 minutes: the caller bounds it with http_probe_cancel
 * (serve_hold_http cancels one still under way at its next tick and starts another). */
struct http_probe;
typedef void (*http_probe_cb)(void *arg, int status);
struct http_probe *http_upstream_probe(struct http_server *srv, struct http_upstream *up, http_probe_cb cb,
                                       void *arg);
void http_probe_cancel(struct http_probe *p);
/* 1 once this node forwarded req: the Agentd-Forwarded-By it carries is its own. */
int http_req_forwarded_here(const struct http_req *req);
/* Routes req (taken back by an http_unreached_cb, held, or from the front) to the routes as they are
 * now (this node took the lease over: it serves locally), past the front. The per-request data is
 * cleared first (its dispose does not run). */
void http_req_redispatch(struct http_req *req);
/* 1 when req's client closed its connection (or it broke) while req waits unanswered: HTTP/1
 * does not read a connection whose request is being answered, so its dispose would not run until
 * the answer. A client that only shut its writing side counts as gone too. */
int http_req_client_gone(const struct http_req *req);
/* The data http_req_set_data attached, or NULL. */
void *http_req_data(const struct http_req *req);
/* Ends the client connection of every request forwarded to url and still going, and of every
 * WebSocket tunnelled to it (its node stopped being the one to forward to: a paused node's answers
 * would otherwise hang until the timeout, a tunnel's until its silence timeout). Returns how many. */
size_t http_upstream_drop(struct http_server *srv, const char *url);
/* The same for the requests and WebSockets forwarded to url for some shards (http_req_forward_shard):
 * those shards' holder is no longer there. shards: a bitmap (bit k of word k / 64) covering every
 * shard a request was tagged with; NULL: all of them, the untagged too (http_upstream_drop). One
 * pass over the connections, however many shards. */
size_t http_upstream_drop_shards(struct http_server *srv, const char *url, const uint64_t *shards);

/* Is a response already started or sent? */
int http_res_started(const struct http_req *req);

/* ---- WebSocket (RFC 6455; HTTP/1.1 only) ----
 *
 * A handler turns a handshake request into a struct http_ws with http_ws_upgrade; from then on the
 * request is gone (its dispose callback runs once the 101 has been written) and the connection is
 * the http_ws's. Output follows the streamed responses' rule: a sender queues a message, waits for
 * on_drain (everything queued has been handed to the socket and written), and only then queues the
 * next, so a slow client costs one message of memory; past max_queued bytes a send fails with
 * -ENOBUFS and the connection is dropped. A write that makes no progress for io_timeout_ms drops the
 * connection too (a client that stopped reading). The module answers pings, sends its own every
 * ping_ms, ends the closing handshake for the caller (waiting briefly for the client's close frame),
 * and closes every WebSocket with 1001 on http_server_shutdown.
 *
 * on_close runs exactly once, always from the loop (never from inside an http_ws_* call), and the
 * struct http_ws is invalid once it returns.
 */
struct http_ws;
/* A complete message from the client (text or binary); data is borrowed for the call. */
typedef void (*http_ws_message_cb)(struct http_ws *ws, void *arg, int binary, const char *data, size_t len);
/* Everything queued so far has been written; the place to queue the next message. */
typedef void (*http_ws_drain_cb)(struct http_ws *ws, void *arg);
/* The connection ended (closing handshake done, client gone, or dropped). */
typedef void (*http_ws_close_cb)(struct http_ws *ws, void *arg);

struct http_ws_handlers {
    http_ws_message_cb on_message; /* NULL: messages from the client are ignored */
    http_ws_drain_cb on_drain;     /* may be NULL */
    http_ws_close_cb on_close;     /* required */
    uint64_t ping_ms;              /* heartbeat interval; 0 sends none */
};

/* Is req a WebSocket handshake this server accepts (HTTP/1.1 GET, Upgrade: websocket,
 * Connection: upgrade, a Sec-WebSocket-Key, Sec-WebSocket-Version 13)? NULL when it is, else why
 * not, as a sentence for an error body. */
const char *http_ws_handshake_error(struct http_req *req);
/* Answers the handshake with 101 and returns the WebSocket; req must have passed
 * http_ws_handshake_error and must not have been answered. handlers is copied; arg is passed to
 * each handler. Messages may be queued at once; they leave once the 101 has been written. Returns
 * NULL, having answered 503, when the server is shutting down. */
struct http_ws *http_ws_upgrade(struct http_req *req, const struct http_ws_handlers *handlers, void *arg);
/* Queues one text message (data copied; it must be UTF-8). Returns 0, -EPIPE when the connection
 * is closing or gone, or -ENOBUFS when more than max_queued bytes would be waiting, in which case
 * the connection is being dropped. */
int http_ws_send_text(struct http_ws *ws, const void *data, size_t len) CORE_UNUSED_RESULT;
/* Bytes queued and not yet written to the socket. */
size_t http_ws_queued(const struct http_ws *ws);
/* Starts the closing handshake with code (1000..4999) and a reason (at most 123 bytes, copied),
 * after which nothing more is sent; on_close follows. A second call is a no-op. */
void http_ws_close(struct http_ws *ws, unsigned code, const char *reason);

#endif
