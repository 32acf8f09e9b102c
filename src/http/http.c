/*
 * http — libh2o on the libuv loop behind agentd's own request type. See http.h.
 *
 * Ownership: struct http_req lives in the h2o request's memory pool, registered as a shared
 * allocation so that http__req_dispose runs when h2o frees the request (response done or client
 * gone). Streamed output uses two buffers: `inflight` is owned by h2o from h2o_send until its
 * proceed callback (h2o requires the bytes to live until then, and allows one send in flight);
 * `pending` collects writes meanwhile and is bounded by max_queued.
 *
 * WebSockets: h2o writes the 101 (h2o_http1_upgrade) and hands over the socket; from there this
 * file drives wslay itself rather than through h2o's websocket connection, which has no hook for
 * "this write has completed" — the moment a bounded sender needs to queue its next message.
 */
#include "http/http.h"

#include <ctype.h>
#include <errno.h>
#include <h2o.h>
#include <h2o/websocket.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_MAX_ROUTES       32
/* h2o 2.2.5 accepts about 400 KiB of request headers; nothing legitimate here needs more than this. */
#define HTTP_MAX_HEADER_BYTES (64 * 1024)
#define HTTP_INPUT_BUFFER     2048

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
    struct http_ws *ws_list; /* open WebSockets, closed with 1001 on shutdown */
    int stopping;            /* http_server_shutdown ran: no new WebSockets */
};

/* Each accepted connection's uv_tcp_t, tagged with its server so the close callback can count. */
struct http__conn {
    uv_tcp_t tcp;
    struct http_server *srv;
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
    unsigned stopped : 1; /* the client went away */
};

static void http__ws_close_all(struct http_server *srv);

static const char http__expose[] =
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Producer-Epoch, Producer-Seq, "
    "Producer-Expected-Seq, Producer-Received-Seq, Stream-SSE-Data-Encoding, ETag, Content-Type, "
    "Content-Encoding, Vary, Location, Mcp-Session-Id";
static const char http__allow_headers[] =
    "Content-Type, Authorization, Stream-Seq, Stream-TTL, Stream-Expires-At, Stream-Closed, Producer-Id, "
    "Producer-Epoch, Producer-Seq, Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset, "
    "If-None-Match, Last-Event-ID, Cache-Control, Mcp-Session-Id, MCP-Protocol-Version";

static const char *http__reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* ================= request accessors ================= */

enum http_method http_req_method(const struct http_req *req)
{
    static const struct {
        const char *name;
        enum http_method m;
    } table[] = {{"GET", HTTP_GET},       {"HEAD", HTTP_HEAD},       {"POST", HTTP_POST},  {"PUT", HTTP_PUT},
                 {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS}, {"PATCH", HTTP_PATCH}};
    h2o_iovec_t m = req->h2o->method;
    for (size_t i = 0; i < CORE_ARRAY_LEN(table); i++)
        if (h2o_memis(m.base, m.len, table[i].name, strlen(table[i].name)))
            return table[i].m;
    return HTTP_OTHER;
}

const char *http_req_method_name(const struct http_req *req, size_t *len)
{
    *len = req->h2o->method.len;
    return req->h2o->method.base;
}

const char *http_req_path(const struct http_req *req, size_t *len)
{
    size_t q = req->h2o->query_at;
    *len = q != SIZE_MAX ? q : req->h2o->path.len;
    return req->h2o->path.base;
}

const char *http_req_query(const struct http_req *req, size_t *len)
{
    size_t q = req->h2o->query_at;
    if (q == SIZE_MAX) {
        *len = 0;
        return NULL;
    }
    *len = req->h2o->path.len - q - 1;
    return req->h2o->path.base + q + 1;
}

static ssize_t http__find(const struct http_req *req, const char *name, ssize_t cursor)
{
    char lower[128];
    size_t n = strlen(name);
    if (n >= sizeof lower)
        return -1;
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    return h2o_find_header_by_str(&req->h2o->headers, lower, n, cursor);
}

const char *http_req_header(const struct http_req *req, const char *name, size_t *len)
{
    ssize_t i = http__find(req, name, -1);
    if (i < 0) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = req->h2o->headers.entries[i].value.len;
    return req->h2o->headers.entries[i].value.base;
}

int http_req_header_count(const struct http_req *req, const char *name)
{
    int n = 0;
    for (ssize_t i = -1; (i = http__find(req, name, i)) >= 0;)
        n++;
    return n;
}

const char *http_req_body(const struct http_req *req, size_t *len)
{
    *len = req->h2o->entity.len;
    return req->h2o->entity.base ? req->h2o->entity.base : "";
}

const char *http_req_authority(const struct http_req *req, size_t *len)
{
    *len = req->h2o->authority.len;
    return req->h2o->authority.base;
}

void *http_req_alloc(struct http_req *req, size_t n) { return h2o_mem_alloc_pool(&req->h2o->pool, n); }

static int http__hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int http_query_param(const char *q, size_t qlen, const char *name, struct buf *out)
{
    size_t nlen = strlen(name);
    int count = 0;
    for (size_t i = 0; q && i <= qlen;) {
        size_t end = i;
        while (end < qlen && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        size_t klen = eq ? (size_t)(eq - (q + i)) : end - i;
        if (klen == nlen && memcmp(q + i, name, nlen) == 0 && count++ == 0) {
            const char *v = eq ? eq + 1 : q + end;
            size_t vlen = (size_t)(q + end - v);
            buf_reserve(out, vlen);
            for (size_t j = 0; j < vlen; j++) {
                int hi, lo;
                /* A decoded NUL would silently cut the value short: keep it encoded instead, so
                 * that validation sees it and rejects it. */
                if (v[j] == '%' && j + 2 < vlen && (hi = http__hex(v[j + 1])) >= 0 &&
                    (lo = http__hex(v[j + 2])) >= 0 && (hi | lo) != 0) {
                    char c = (char)(hi * 16 + lo);
                    buf_append(out, &c, 1);
                    j += 2;
                } else if (v[j] == '\0') {
                    buf_puts(out, "%00"); /* a raw NUL (not from HTTP, which refuses it) likewise */
                } else {
                    buf_append(out, &v[j], 1);
                }
            }
        }
        i = end + 1;
    }
    return count;
}

int http_req_query_param(struct http_req *req, const char *name, char **out)
{
    size_t qlen;
    const char *q = http_req_query(req, &qlen);
    struct buf b = {0};
    int count = http_query_param(q, qlen, name, &b);
    *out = NULL;
    if (count) {
        *out = http_req_alloc(req, b.len + 1);
        memcpy(*out, b.p ? b.p : "", b.len);
        (*out)[b.len] = '\0';
    }
    buf_free(&b);
    return count;
}

/* ================= responses ================= */

void http_req_set_data(struct http_req *req, void *data, http_dispose_cb dispose)
{
    req->data = data;
    req->dispose = dispose;
}

void http_res_header(struct http_req *req, const char *name, const char *value)
{
    h2o_req_t *r = req->h2o;
    size_t nl = strlen(name), vl = strlen(value);
    char *lname = h2o_mem_alloc_pool(&r->pool, nl);
    for (size_t i = 0; i < nl; i++)
        lname[i] = (char)tolower((unsigned char)name[i]);
    h2o_iovec_t v = h2o_strdup(&r->pool, value, vl);
    h2o_add_header_by_str(&r->pool, &r->res.headers, lname, nl, 1, NULL, v.base, v.len);
}

void http_res_headerf(struct http_req *req, const char *name, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    http_res_header(req, name, tmp);
}

static void http__common_headers(struct http_req *req, int status)
{
    h2o_req_t *r = req->h2o;
    r->res.status = status;
    r->res.reason = http__reason(status);
    http_res_header(req, "X-Content-Type-Options", "nosniff");
    http_res_header(req, "Cross-Origin-Resource-Policy", "cross-origin");
    http_res_header(req, "Access-Control-Allow-Origin", "*");
    http_res_header(req, "Access-Control-Expose-Headers", http__expose);
    req->started = 1;
}

void http_res_send(struct http_req *req, int status, const void *body, size_t len)
{
    assert(!req->started);
    http__common_headers(req, status);
    h2o_req_t *r = req->h2o;
    int head = http_req_method(req) == HTTP_HEAD;
    if (status == 204 || status == 304)
        len = 0;
    r->res.content_length = head || status == 204 || status == 304 ? SIZE_MAX : len;
    if (head && status != 204 && status != 304)
        r->res.content_length = len; /* HEAD: the length the GET would have; no body is written */
    req->finished = 1;
    /* h2o may free the request before this returns: do not touch req afterwards. */
    h2o_send_inline(r, head ? NULL : body, head ? 0 : len);
}

/* {"error":{"code":code,"message":message}}, appended to b. */
static void http__error_body(struct buf *b, const char *code, const char *message, size_t len)
{
    buf_puts(b, "{\"error\":{\"code\":");
    buf_json_string(b, code, strlen(code));
    buf_puts(b, ",\"message\":");
    buf_json_string(b, message, len);
    buf_puts(b, "}}");
}

void http_res_error(struct http_req *req, enum errcode code, const char *fmt, ...)
{
    struct buf msg = {0}, body = {0};
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    http__error_body(&body, errcode_name(code), msg.p ? msg.p : "", msg.len);
    http_res_header(req, "Content-Type", "application/json");
    http_res_header(req, "Cache-Control", "no-store");
    http_res_send(req, errcode_status(code), body.p, body.len);
    buf_free(&msg);
    buf_free(&body);
}

int http_res_started(const struct http_req *req) { return req->started; }

/* Hands `pending` to h2o. The caller checked that nothing is in flight. */
static void http__flush(struct http_req *req)
{
    struct buf t = req->inflight;
    req->inflight = req->pending;
    req->pending = t;
    buf_reset(&req->pending);
    h2o_iovec_t v = h2o_iovec_init(req->inflight.p, req->inflight.len);
    h2o_send_state_t state = req->ending ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS;
    req->sending = 1;
    if (state == H2O_SEND_STATE_FINAL)
        req->finished = 1;
    h2o_send(req->h2o, &v, v.len ? 1 : 0, state);
}

static void http__proceed(h2o_generator_t *gen, h2o_req_t *r)
{
    struct http_req *req = H2O_STRUCT_FROM_MEMBER(struct http_req, gen, gen);
    req->sending = 0;
    buf_reset(&req->inflight); /* h2o is done with these bytes */
    if (req->finished)
        return;
    if (req->aborting) {
        req->finished = 1;
        h2o_send(r, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    if (req->pending.len || req->ending) {
        http__flush(req);
        return;
    }
    if (req->on_drain)
        req->on_drain(req, req->drain_arg);
}

static void http__stop(h2o_generator_t *gen, h2o_req_t *r)
{
    struct http_req *req = H2O_STRUCT_FROM_MEMBER(struct http_req, gen, gen);
    req->stopped = 1;
    req->finished = 1;
}

void http_res_stream_start(struct http_req *req, int status, http_drain_cb on_drain, void *arg)
{
    assert(!req->started);
    http__common_headers(req, status);
    req->streaming = 1;
    req->on_drain = on_drain;
    req->drain_arg = arg;
    req->gen.proceed = http__proceed;
    req->gen.stop = http__stop;
    req->h2o->res.content_length = SIZE_MAX;
    h2o_start_response(req->h2o, &req->gen);
}

int http_res_stream_write2(struct http_req *req, const void *a, size_t alen, const void *b, size_t blen)
{
    assert(req->streaming);
    if (req->stopped || req->finished)
        return -EPIPE;
    if (req->aborting)
        return -ENOBUFS;
    if (req->pending.len + alen + blen > req->srv->cfg.max_queued && req->sending) {
        http_res_stream_abort(req);
        return -ENOBUFS;
    }
    buf_append(&req->pending, a, alen);
    buf_append(&req->pending, b, blen);
    if (!req->sending)
        http__flush(req);
    return 0;
}

int http_res_stream_write(struct http_req *req, const void *data, size_t len)
{
    return http_res_stream_write2(req, data, len, NULL, 0);
}

size_t http_res_stream_queued(const struct http_req *req) { return req->pending.len + req->inflight.len; }

void http_res_stream_end(struct http_req *req)
{
    if (req->finished || req->ending)
        return;
    req->ending = 1;
    if (!req->sending)
        http__flush(req);
}

void http_res_stream_abort(struct http_req *req)
{
    if (req->finished || req->aborting)
        return;
    req->aborting = 1;
    if (!req->sending) {
        req->finished = 1;
        h2o_send(req->h2o, NULL, 0, H2O_SEND_STATE_ERROR);
    }
}

/* ================= dispatch ================= */

static void http__req_dispose(void *p)
{
    struct http_req *req = p;
    if (req->dispose)
        req->dispose(req->data);
    buf_free(&req->inflight);
    buf_free(&req->pending);
}

void http_res_unauthorized(struct http_req *req)
{
    http_res_header(req, "WWW-Authenticate", "Bearer");
    http_res_error(req, ERR_UNAUTHORIZED, "this server needs Authorization: Bearer <token>");
}

int http_req_authorized(const struct http_req *req)
{
    const char *tok = req->srv->token;
    if (tok == NULL)
        return 1;
    size_t len, tl = strlen(tok);
    const char *h = http_req_header(req, "authorization", &len);
    if (h == NULL || len != tl + 7 || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    return sodium_memcmp(h + 7, tok, tl) == 0;
}

static int http__on_req(h2o_handler_t *self, h2o_req_t *r)
{
    struct http_server *srv = ((struct http__handler *)self)->srv;
    struct http_req *req = h2o_mem_alloc_shared(&r->pool, sizeof *req, http__req_dispose);
    memset(req, 0, sizeof *req);
    req->h2o = r;
    req->srv = srv;

    if (http_req_method(req) == HTTP_OPTIONS) {
        http_res_header(req, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, HEAD, OPTIONS");
        http_res_header(req, "Access-Control-Allow-Headers", http__allow_headers);
        http_res_header(req, "Access-Control-Max-Age", "86400");
        http_res_send(req, 204, NULL, 0);
        return 0;
    }
    size_t header_bytes = r->path.len;
    for (size_t i = 0; i < r->headers.size; i++)
        header_bytes += r->headers.entries[i].name->len + r->headers.entries[i].value.len + 4;
    if (header_bytes > HTTP_MAX_HEADER_BYTES) {
        r->http1_is_persistent = 0;
        http_res_error(req, ERR_HEADERS_TOO_LARGE, "request headers are larger than %d bytes",
                       HTTP_MAX_HEADER_BYTES);
        return 0;
    }
    size_t plen;
    const char *path = http_req_path(req, &plen);
    const struct http__route *best = NULL;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const struct http__route *rt = &srv->routes[i];
        if (plen >= rt->len && memcmp(path, rt->prefix, rt->len) == 0 && (!best || rt->len > best->len))
            best = rt;
    }
    if ((best == NULL || !(best->flags & HTTP_ROUTE_OWN_AUTH)) && !http_req_authorized(req) &&
        !(srv->authorizer && srv->authorizer(srv->authorizer_arg, req))) {
        http_res_unauthorized(req);
        return 0;
    }
    if (best == NULL) {
        http_res_error(req, ERR_NOT_FOUND, "no such resource: %.*s", (int)(plen > 200 ? 200 : plen), path);
        return 0;
    }
    best->cb(req, best->arg);
    return 0;
}

static void http__conn_closed(uv_handle_t *h)
{
    struct http__conn *conn = (struct http__conn *)h;
    conn->srv->nconns--;
    free(conn);
}

static void http__on_accept(uv_stream_t *listener, int status)
{
    struct http_server *srv = listener->data;
    if (status != 0)
        return;
    struct http__conn *conn = xmalloc(sizeof *conn);
    conn->srv = srv;
    uv_tcp_init(listener->loop, &conn->tcp);
    if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0) {
        uv_close((uv_handle_t *)&conn->tcp, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    srv->nconns++;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&conn->tcp, http__conn_closed);
    h2o_accept(&srv->accept_ctx, sock);
}

void http_route_flags(struct http_server *srv, const char *prefix, http_handler_cb cb, void *arg,
                      unsigned flags)
{
    assert(srv->nroutes < HTTP_MAX_ROUTES);
    srv->routes[srv->nroutes++] = (struct http__route){prefix, strlen(prefix), cb, arg, flags};
}

void http_set_authorizer(struct http_server *srv, http_authorizer_cb cb, void *arg)
{
    srv->authorizer = cb;
    srv->authorizer_arg = arg;
}

void http_route(struct http_server *srv, const char *prefix, http_handler_cb cb, void *arg)
{
    http_route_flags(srv, prefix, cb, arg, 0);
}

int http_server_port(const struct http_server *srv) { return srv->port; }

int http_server_new(struct http_server **out, uv_loop_t *loop, const struct http_config *cfg, char *err,
                    size_t errlen)
{
    struct http_server *srv = xcalloc(1, sizeof *srv);
    struct sockaddr_storage addr;
    int rc;

    srv->loop = loop;
    srv->cfg = *cfg;
    srv->token = cfg->token && *cfg->token ? xstrdup(cfg->token) : NULL;
    srv->cfg.token = srv->token;

    /* Each connection keeps an input buffer of this initial size for its whole life; requests here
     * are small, and a bigger one (a large body) still grows on demand. h2o's default (8 KiB) made
     * up most of the memory of a thousand idle SSE readers. */
    h2o_socket_buffer_prototype._initial_buf.capacity = HTTP_INPUT_BUFFER;
    h2o_config_init(&srv->config);
    srv->config.max_request_entity_size = cfg->max_body;
    srv->config.http1.req_timeout = cfg->io_timeout_ms;
    srv->config.http2.idle_timeout = cfg->io_timeout_ms;
    h2o_hostconf_t *host =
        h2o_config_register_host(&srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    struct http__handler *h = (struct http__handler *)h2o_create_handler(pathconf, sizeof *h);
    h->super.on_req = http__on_req;
    h->srv = srv;
    h2o_context_init(&srv->ctx, loop, &srv->config);
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->config.hosts;

    if ((rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr)) != 0 &&
        (rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr)) != 0) {
        snprintf(err, errlen, "cannot parse listen address '%s'", cfg->host);
        goto fail;
    }
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    if ((rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&srv->listener, 1024, http__on_accept)) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port, uv_strerror(rc));
        uv_close((uv_handle_t *)&srv->listener, NULL);
        goto fail;
    }
    int alen = sizeof addr;
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&addr, &alen);
    srv->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                 : ((struct sockaddr_in *)&addr)->sin_port);
    srv->listening = 1;
    *out = srv;
    return 0;

fail:
    /* The listener (if initialised) is closing; the loop still references it, so the server
     * struct is deliberately leaked on this startup-only path rather than freed under libuv. */
    *out = NULL;
    return rc;
}

void http_server_shutdown(struct http_server *srv)
{
    if (srv->listening) {
        srv->listening = 0;
        uv_close((uv_handle_t *)&srv->listener, NULL);
    }
    h2o_context_request_shutdown(&srv->ctx);
    srv->stopping = 1;
    http__ws_close_all(srv); /* h2o no longer sees upgraded connections */
}

size_t http_server_connections(const struct http_server *srv) { return srv->nconns; }

void http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    http_server_shutdown(srv);
    if (srv->nconns) {
        log_warn("http: %zu connections still open at exit", srv->nconns);
        return;
    }
    /* request_shutdown arms HTTP/2's graceful-shutdown timer; with no connection left it has
     * nothing to do, and h2o_context_dispose insists every timeout list is empty. */
    if (h2o_timeout_is_linked(&srv->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&srv->ctx.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&srv->ctx);
    h2o_config_dispose(&srv->config);
    free(srv->token);
    free(srv);
}

/* ================= errors raised inside libh2o ================= */

/*
 * libh2o answers some errors itself, before any handler runs: 413 when a body passes
 * max_request_entity_size, 400 on a malformed request, 417 on a bad Expect. Its body is plain text.
 * This definition interposes the library's exported h2o_send_error_generic (libh2o calls it through
 * its PLT, so the executable's definition wins), giving those responses the same JSON error body and
 * security headers as every other. It follows the library's own contract: pick the fallback path
 * when the request has not been routed yet, honour the close-connection and keep-headers flags.
 * libh2o chose the status, so it stays; the code is the table's first with that status (the table
 * lists the general code of each status first), else bad_request or internal.
 */
static const char *http__error_code(int status)
{
    for (int e = 0; e < ERRCODE_COUNT; e++)
        if (errcode_status((enum errcode)e) == status)
            return errcode_name((enum errcode)e);
    return errcode_name(status < 500 ? ERR_BAD_REQUEST : ERR_INTERNAL);
}

void h2o_send_error_generic(h2o_req_t *req, int status, const char *reason, const char *body, int flags)
{
    if (req->pathconf == NULL) {
        req->hostconf = req->conn->hosts[0];
        req->pathconf = &req->hostconf->fallback_path;
    }
    if ((flags & H2O_SEND_ERROR_HTTP1_CLOSE_CONNECTION) != 0)
        req->http1_is_persistent = 0;
    req->res.status = status;
    req->res.reason = reason;
    if ((flags & H2O_SEND_ERROR_KEEP_HEADERS) == 0)
        memset(&req->res.headers, 0, sizeof req->res.headers);
    struct buf b = {0};
    http__error_body(&b, http__error_code(status), body, strlen(body));
    h2o_iovec_t json = h2o_strdup(&req->pool, b.p, b.len);
    buf_free(&b);
    static const struct {
        const char *name, *value;
    } headers[] = {
        {"content-type", "application/json"},
        {"x-content-type-options", "nosniff"},
        {"cross-origin-resource-policy", "cross-origin"},
        {"access-control-allow-origin", "*"},
    };
    for (size_t i = 0; i < CORE_ARRAY_LEN(headers); i++)
        h2o_add_header_by_str(&req->pool, &req->res.headers, headers[i].name, strlen(headers[i].name), 1,
                              NULL, headers[i].value, strlen(headers[i].value));
    req->res.content_length = json.len;
    h2o_send_inline(req, json.base, json.len);
}

/* ================= WebSocket ================= */

#define HTTP_WS_MAX_MESSAGE   (64 * 1024)  /* longest message accepted from a client (else 1009) */
#define HTTP_WS_WRITE_BATCH   (256 * 1024) /* frame bytes gathered for one write (a larger frame goes whole) */
#define HTTP_WS_READ_PAUSE    (64 * 1024)  /* stop reading while this much output waits (ping floods) */
#define HTTP_WS_CLOSE_WAIT_MS 1000         /* after asking to close, how long the client has to answer */
#define HTTP_WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/*
 * One upgraded connection. Frames flow: a message queued with wslay -> wslay_event_send hands frame
 * bytes to http__ws_send, which collects them in `out` -> `out` becomes `inflight`, written with one
 * h2o_socket_write -> its completion runs wslay again, and when nothing is left, on_drain.
 *
 * Ending: http__ws_end runs only from loop callbacks (socket, timer, upgrade), so that a caller's
 * on_close never runs inside its own http_ws_* call; calls that find the connection over mark it
 * `dead` and let the timer end it on the next loop turn. The struct is freed by the timer's close
 * callback.
 */
struct http_ws {
    struct http_server *srv;
    h2o_socket_t *sock; /* NULL until the 101 has been written */
    wslay_event_context_ptr ctx;
    struct http_ws_handlers h;
    void *arg;
    uv_timer_t timer; /* heartbeat, stall and close-wait checks; deferred ends */
    struct buf out, inflight;
    uint64_t tick_ms;  /* the timer's period: often enough for pings and stall checks */
    uint64_t stall_ms; /* a write pending this long means the client stopped reading */
    uint64_t last_ping_ms, write_started_ms, close_deadline_ms;
    struct http_ws *prev, *next; /* srv->ws_list */
    unsigned upgrading : 1;      /* the 101 is being written: h2o still owns the socket */
    unsigned writing : 1;        /* inflight is with the socket */
    unsigned reading : 1;
    unsigned in_io : 1;   /* inside wslay: calls from handlers only queue */
    unsigned closing : 1; /* http_ws_close ran (or shutdown) */
    unsigned dead : 1;    /* to be ended on the next loop turn */
    unsigned ended : 1;
};

/* http_ws_close never ends a WebSocket synchronously, so the list stays intact while walked. */
static void http__ws_close_all(struct http_server *srv)
{
    for (struct http_ws *ws = srv->ws_list; ws; ws = ws->next)
        http_ws_close(ws, 1001, "server shutting down");
}

/* The loop's clock, which its timers use too: a deadline checked by a timer must not be compared
 * with a clock that runs ahead of it. */
static uint64_t http__now_ms(const struct http_ws *ws) { return uv_now(ws->srv->loop); }

const char *http_ws_handshake_error(struct http_req *req)
{
    h2o_req_t *r = req->h2o;
    const char *key = NULL;
    if (r->version != 0x101)
        return "a WebSocket handshake needs HTTP/1.1";
    if (http_req_method(req) != HTTP_GET)
        return "a WebSocket handshake is a GET";
    if (h2o_is_websocket_handshake(r, &key) != 0)
        return "Sec-WebSocket-Key must be 16 bytes in base64 (24 characters)";
    if (key == NULL)
        return "this resource speaks WebSocket only: send a handshake (Connection: Upgrade, Upgrade: "
               "websocket, "
               "Sec-WebSocket-Key, Sec-WebSocket-Version: 13)";
    size_t vlen;
    const char *v = http_req_header(req, "sec-websocket-version", &vlen);
    if (v == NULL || vlen != 2 || memcmp(v, "13", 2) != 0)
        return "only Sec-WebSocket-Version 13 is supported";
    return NULL;
}

size_t http_ws_queued(const struct http_ws *ws)
{
    return wslay_event_get_queued_msg_length(ws->ctx) + ws->out.len + ws->inflight.len;
}

/* ---- wslay's I/O callbacks ---- */

static ssize_t http__ws_recv(wslay_event_context_ptr ctx, uint8_t *data, size_t len, int flags, void *p)
{
    struct http_ws *ws = p;
    (void)flags;
    h2o_buffer_t *in = ws->sock->input;
    if (in->size == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > in->size)
        len = in->size;
    memcpy(data, in->bytes, len);
    h2o_buffer_consume(&ws->sock->input, len);
    return (ssize_t)len;
}

static ssize_t http__ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *p)
{
    struct http_ws *ws = p;
    (void)flags;
    if (ws->out.len >= HTTP_WS_WRITE_BATCH) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    buf_append(&ws->out, data, len);
    return (ssize_t)len;
}

static void http__ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a, void *p)
{
    struct http_ws *ws = p;
    (void)ctx;
    /* Pings are answered and closes echoed by wslay itself. */
    if ((a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME) && ws->h.on_message && !ws->dead &&
        !ws->closing)
        ws->h.on_message(ws, ws->arg, a->opcode == WSLAY_BINARY_FRAME, (const char *)a->msg, a->msg_length);
}

/* ---- driving the connection ---- */

static void http__ws_on_read(h2o_socket_t *sock, const char *err);
static void http__ws_on_written(h2o_socket_t *sock, const char *err);

static void http__ws_free_cb(uv_handle_t *h) { free(h->data); }

/* Ends the connection: the handler hears on_close, then everything is released. Loop callbacks
 * only (see above). */
static void http__ws_end(struct http_ws *ws)
{
    ws->dead = 1;
    if (ws->ended || ws->upgrading) /* the upgrade's completion ends it */
        return;
    ws->ended = 1;
    if (ws->prev)
        ws->prev->next = ws->next;
    else
        ws->srv->ws_list = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    uv_timer_stop(&ws->timer);
    ws->h.on_close(ws, ws->arg);
    if (ws->sock)
        h2o_socket_close(ws->sock); /* h2o drops a pending write's callback; its bytes are not read again */
    wslay_event_context_free(ws->ctx);
    buf_free(&ws->out);
    buf_free(&ws->inflight);
    uv_close((uv_handle_t *)&ws->timer, http__ws_free_cb);
}

static void http__ws_tick(uv_timer_t *t);

/* From inside an http_ws_* call: end on the next loop turn. */
static void http__ws_defer_end(struct http_ws *ws)
{
    ws->dead = 1;
    uv_timer_start(&ws->timer, http__ws_tick, 0, 0);
}

/*
 * Feeds wslay what the socket read, lets it produce frames while no write is in flight, starts
 * the next write, and reads only while little output waits. Returns 1 when the connection is over
 * (both close frames exchanged, the peer half-closed, or a protocol or I/O error), else 0.
 */
static int http__ws_io(struct http_ws *ws)
{
    if (ws->sock == NULL || ws->dead)
        return ws->dead;
    int rc = 0;
    ws->in_io = 1;
    if (ws->sock->input->size && wslay_event_want_read(ws->ctx))
        rc = wslay_event_recv(ws->ctx);
    if (rc == 0 && !ws->writing && wslay_event_want_write(ws->ctx))
        rc = wslay_event_send(ws->ctx);
    ws->in_io = 0;
    if (rc != 0)
        return 1;
    if (!ws->writing && ws->out.len) {
        struct buf t = ws->inflight;
        ws->inflight = ws->out;
        ws->out = t;
        buf_reset(&ws->out);
        ws->writing = 1;
        ws->write_started_ms = http__now_ms(ws);
        h2o_iovec_t v = h2o_iovec_init(ws->inflight.p, ws->inflight.len);
        h2o_socket_write(ws->sock, &v, 1, http__ws_on_written);
    }
    int want_read = wslay_event_want_read(ws->ctx);
    if (!want_read && !ws->writing && !wslay_event_want_write(ws->ctx))
        return 1;
    int read = want_read && http_ws_queued(ws) < HTTP_WS_READ_PAUSE;
    if (read && !ws->reading)
        h2o_socket_read_start(ws->sock, http__ws_on_read);
    else if (!read && ws->reading)
        h2o_socket_read_stop(ws->sock);
    ws->reading = (unsigned)read;
    return 0;
}

/* Runs the connection after a handler queued something or asked to close. */
static void http__ws_kick(struct http_ws *ws)
{
    if (!ws->in_io && http__ws_io(ws))
        http__ws_defer_end(ws);
}

static void http__ws_on_read(h2o_socket_t *sock, const char *err)
{
    struct http_ws *ws = sock->data;
    if (err != NULL || http__ws_io(ws))
        http__ws_end(ws);
}

static void http__ws_on_written(h2o_socket_t *sock, const char *err)
{
    struct http_ws *ws = sock->data;
    ws->writing = 0;
    buf_reset(&ws->inflight);
    if (err != NULL || http__ws_io(ws)) {
        http__ws_end(ws);
        return;
    }
    if (!ws->writing && !ws->closing && http_ws_queued(ws) == 0 && ws->h.on_drain)
        ws->h.on_drain(ws, ws->arg);
}

static void http__ws_tick(uv_timer_t *t)
{
    struct http_ws *ws = t->data;
    if (ws->dead) {
        http__ws_end(ws);
        return;
    }
    if (ws->upgrading)
        return;
    uint64_t now = http__now_ms(ws);
    if (ws->close_deadline_ms && now >= ws->close_deadline_ms) {
        log_debug("http: WebSocket client did not finish the closing handshake; dropping it");
        http__ws_end(ws);
        return;
    }
    if (ws->writing && now - ws->write_started_ms >= ws->stall_ms) {
        log_info("http: WebSocket client stopped reading (no write progress for %" PRIu64 " ms); dropping it",
                 now - ws->write_started_ms);
        http__ws_end(ws);
        return;
    }
    if (ws->h.ping_ms && !ws->closing && now - ws->last_ping_ms >= ws->h.ping_ms) {
        struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
        ws->last_ping_ms = now;
        if (wslay_event_queue_msg(ws->ctx, &ping) == 0 && http__ws_io(ws)) {
            http__ws_end(ws);
            return;
        }
    }
}

/* Accept value: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2). */
static void http__ws_accept_key(const char *key, char out[29])
{
    unsigned char src[24 + sizeof HTTP_WS_GUID - 1], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    memcpy(src, key, 24);
    memcpy(src + 24, HTTP_WS_GUID, sizeof HTTP_WS_GUID - 1);
    if (EVP_Digest(src, sizeof src, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
        log_error("http: SHA-1 is unavailable; cannot answer a WebSocket handshake");
        abort();
    }
    sodium_bin2base64(out, 29, md, 20, sodium_base64_VARIANT_ORIGINAL);
}

static void http__ws_upgraded(void *data, h2o_socket_t *sock, size_t reqsize)
{
    struct http_ws *ws = data;
    ws->upgrading = 0;
    if (sock != NULL) {
        ws->sock = sock;
        sock->data = ws;
        h2o_buffer_consume(&sock->input, reqsize); /* the handshake; frames may follow it */
    }
    if (sock == NULL || http__ws_io(ws))
        http__ws_end(ws);
}

struct http_ws *http_ws_upgrade(struct http_req *req, const struct http_ws_handlers *handlers, void *arg)
{
    static const struct wslay_event_callbacks callbacks = {
        .recv_callback = http__ws_recv,
        .send_callback = http__ws_send,
        .on_msg_recv_callback = http__ws_on_msg,
    };
    struct http_server *srv = req->srv;
    h2o_req_t *r = req->h2o;
    const char *key = NULL;
    assert(!req->started && handlers->on_close != NULL);
    assert(http_ws_handshake_error(req) == NULL);
    if (srv->stopping) {
        http_res_error(req, ERR_SHUTTING_DOWN, "the server is shutting down");
        return NULL;
    }
    h2o_is_websocket_handshake(r, &key);

    struct http_ws *ws = xcalloc(1, sizeof *ws);
    ws->srv = srv;
    ws->h = *handlers;
    ws->arg = arg;
    if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws) != 0) {
        log_error("http: out of memory");
        abort();
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, HTTP_WS_MAX_MESSAGE);
    ws->stall_ms = srv->cfg.io_timeout_ms ? srv->cfg.io_timeout_ms : 30000;
    ws->tick_ms = ws->stall_ms / 2;
    if (ws->h.ping_ms && ws->h.ping_ms < ws->tick_ms)
        ws->tick_ms = ws->h.ping_ms;
    if (ws->tick_ms < 50)
        ws->tick_ms = 50;
    ws->last_ping_ms = http__now_ms(ws);
    uv_timer_init(srv->loop, &ws->timer);
    ws->timer.data = ws;
    uv_timer_start(&ws->timer, http__ws_tick, ws->tick_ms, ws->tick_ms);
    ws->next = srv->ws_list;
    if (ws->next)
        ws->next->prev = ws;
    srv->ws_list = ws;

    char accept[29];
    http__ws_accept_key(key, accept);
    r->res.status = 101;
    r->res.reason = "Switching Protocols";
    h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&r->pool, &r->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, accept,
                          strlen(accept));
    req->started = 1;
    req->finished = 1;
    ws->upgrading = 1;
    /* The request is disposed before http__ws_upgraded runs; nothing of it is kept. */
    h2o_http1_upgrade(r, NULL, 0, http__ws_upgraded, ws);
    return ws;
}

int http_ws_send_text(struct http_ws *ws, const void *data, size_t len)
{
    if (ws->dead || ws->closing)
        return -EPIPE;
    size_t queued = http_ws_queued(ws);
    if (queued > 0 && queued + len > ws->srv->cfg.max_queued) {
        log_info("http: WebSocket client is %zu bytes behind; dropping it", queued);
        http__ws_defer_end(ws);
        return -ENOBUFS;
    }
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, data, len}; /* wslay copies it */
    if (wslay_event_queue_msg(ws->ctx, &msg) != 0)
        return -EPIPE; /* the client's close arrived: wslay sends nothing more */
    http__ws_kick(ws);
    return 0;
}

void http_ws_close(struct http_ws *ws, unsigned code, const char *reason)
{
    if (ws->dead || ws->closing)
        return;
    assert(code >= 1000 && code <= 4999);
    ws->closing = 1;
    size_t rlen = strlen(reason);
    if (rlen > 123)
        rlen = 123;
    /* wslay sends control frames first, so queued messages behind the close are dropped: the client
     * resumes from the last thing it saw. */
    wslay_event_queue_close(ws->ctx, (uint16_t)code, (const uint8_t *)reason, rlen);
    ws->close_deadline_ms = http__now_ms(ws) + HTTP_WS_CLOSE_WAIT_MS;
    uv_timer_start(&ws->timer, http__ws_tick, HTTP_WS_CLOSE_WAIT_MS, ws->tick_ms);
    http__ws_kick(ws);
}
