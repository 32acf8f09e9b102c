/*
 * http — libh2o on the libuv loop behind agentd's own request type. See http.h.
 *
 * Who owns a request and its streamed output: see http_int.h. The WebSocket half (http_ws_*) is
 * http_ws.c.
 */
#include "http/http.h"
#include "http/http_int.h"

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
#include <sys/socket.h>

/* h2o 2.2.5 accepts about 400 KiB of request headers; nothing legitimate here needs more than this. */
#define HTTP_MAX_HEADER_BYTES (64 * 1024)
#define HTTP_INPUT_BUFFER     2048

/* The CORS header names http/ itself deals in; modules add theirs with http_cors_headers. */
static const char http__allow_generic[] =
    "Content-Type, Authorization, If-None-Match, Last-Event-ID, Cache-Control";
static const char http__expose_generic[] =
    "ETag, Content-Type, Content-Encoding, Vary, Location, Agentd-Node";

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

void http_req_add_header(struct http_req *req, const char *name, const char *value)
{
    h2o_req_t *r = req->h2o;
    h2o_add_header_by_str(&r->pool, &r->headers, h2o_strdup(&r->pool, name, SIZE_MAX).base, strlen(name), 0,
                          NULL, h2o_strdup(&r->pool, value, SIZE_MAX).base, strlen(value));
}

const char *http_req_authority(const struct http_req *req, size_t *len)
{
    *len = req->h2o->authority.len;
    return req->h2o->authority.base;
}

void *http_req_alloc(struct http_req *req, size_t n) { return h2o_mem_alloc_pool(&req->h2o->pool, n); }

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
                if (v[j] == '%' && j + 2 < vlen && (hi = hex_digit(v[j + 1])) >= 0 &&
                    (lo = hex_digit(v[j + 2])) >= 0 && (hi | lo) != 0) {
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
    if (req->revoked && req->started)
        return;
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
    http_res_header(req, "Access-Control-Expose-Headers", req->srv->cors_expose.p);
    if (req->srv->node)
        http_res_header(req, "Agentd-Node", req->srv->node);
    req->started = 1;
}

void http_res_send(struct http_req *req, int status, const void *body, size_t len)
{
    if (req->revoked && req->started) /* answered by http_server_revoke already */
        return;
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
    http_res_json_text(req, errcode_status(code), body.p, body.len);
    buf_free(&msg);
    buf_free(&body);
}

void http_res_json_text(struct http_req *req, int status, const char *text, size_t len)
{
    http_res_header(req, "Content-Type", "application/json");
    http_res_header(req, "Cache-Control", "no-store");
    http_res_send(req, status, text, len);
}

void http_res_json(struct http_req *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    http_res_json_text(req, status, text, text ? strlen(text) : 0);
    free(text);
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
    if (req->revoked && req->started)
        return;
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
    if (req->revoked)
        return -EPIPE;
    assert(req->streaming);
    if (req->stopped || req->finished || req->ending)
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
    list_remove(req, live_link);
    list_remove(req, cred_link);
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
    req->sock = r->conn->callbacks->get_socket ? r->conn->callbacks->get_socket(r->conn) : NULL;
    list_insert(&srv->live, req, live_link);

    /* Once the server stops, the modules behind the routes are being torn down (and then freed,
     * while h2o may still hold connections): nothing may reach them, and a client must not read a
     * 404 for what exists. It retries once the server is back. */
    if (srv->stopping) {
        http_res_header(req, "Retry-After", "1");
        http_res_error(req, ERR_SHUTTING_DOWN, "the server is stopping; retry once it is back");
        return 0;
    }
    if (http_req_method(req) == HTTP_OPTIONS) {
        http_res_header(req, "Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS");
        http_res_header(req, "Access-Control-Allow-Headers", srv->cors_allow.p);
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
    if (srv->front)
        srv->front(req, srv->front_arg);
    else
        http__dispatch(srv, req);
    return 0;
}

void http__dispatch(struct http_server *srv, struct http_req *req)
{
    size_t plen;
    const char *path = http_req_path(req, &plen);
    const struct http__route *best = NULL;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const struct http__route *rt = &srv->routes[i];
        if (plen >= rt->len && memcmp(path, rt->prefix, rt->len) == 0 && (!best || rt->len > best->len))
            best = rt;
    }
    if ((best == NULL || !(best->flags & HTTP_ROUTE_OWN_AUTH)) && !http_req_authorized(req)) {
        int let = srv->authorizer ? srv->authorizer(srv->authorizer_arg, req) : 0;
        if (let == 0)
            http_res_unauthorized(req);
        if (let <= 0)
            return;
    }
    if (best == NULL)
        return http_res_error(req, ERR_NOT_FOUND, "no such resource: %.*s", (int)(plen > 200 ? 200 : plen),
                              path);
    best->cb(req, best->arg);
}

void http_req_redispatch(struct http_req *req)
{
    req->data = NULL;
    req->dispose = NULL;
    req->started = req->finished = req->forwarded = 0;
    req->upstream = NULL;
    req->h2o->overrides = NULL;
    http__dispatch(req->srv, req);
}

void *http_req_data(const struct http_req *req) { return req->data; }

static void http__conn_closed(uv_handle_t *h)
{
    struct http__conn *conn = (struct http__conn *)h;
    list_remove(conn, link);
    conn->srv->nconns--;
    free(conn);
}

static void http__on_accept(uv_stream_t *listener, int status)
{
    struct http_server *srv = listener->data;
    if (status != 0)
        return;
    struct http__conn *conn = xcalloc(1, sizeof *conn);
    conn->srv = srv;
    uv_tcp_init(listener->loop, &conn->tcp);
    if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0) {
        uv_close((uv_handle_t *)&conn->tcp, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    srv->nconns++;
    list_insert(&srv->conns, conn, link);
    conn->sock = h2o_uv_socket_create((uv_stream_t *)&conn->tcp, http__conn_closed);
    h2o_accept(&srv->accept_ctx, conn->sock);
}

void http_route_flags(struct http_server *srv, const char *prefix, http_handler_cb cb, void *arg,
                      unsigned flags)
{
    assert(srv->nroutes < HTTP_MAX_ROUTES);
    srv->routes[srv->nroutes++] = (struct http__route){prefix, strlen(prefix), cb, arg, flags};
}

void http_set_front(struct http_server *srv, http_handler_cb cb, void *arg)
{
    srv->front = cb;
    srv->front_arg = arg;
}

void http_set_authorizer(struct http_server *srv, http_authorizer_cb cb, void *arg)
{
    srv->authorizer = cb;
    srv->authorizer_arg = arg;
}

void http_req_set_credential(struct http_req *req, const char *credential)
{
    struct http_server *srv = req->srv;
    if (req->credential)
        return;
    size_t n = strlen(credential);
    req->credential = h2o_mem_alloc_pool(&req->h2o->pool, n + 1);
    memcpy(req->credential, credential, n + 1);
    list_insert(&srv->credentialed, req, cred_link);
}

size_t http_server_revoke(struct http_server *srv, const char *credential)
{
    size_t n = 0;
    for (struct http_req *req = srv->credentialed, *next; req; req = next) {
        next = req->cred_link.next; /* answering may dispose req (and unlink it) before this returns */
        if (strcmp(req->credential, credential) != 0 || req->revoked || req->finished)
            continue;
        n++;
        if (!req->started) {
            req->revoked = 1; /* before the answer: h2o may dispose req inside it */
            http_res_header(req, "WWW-Authenticate", "Bearer");
            http_res_error(req, ERR_UNAUTHORIZED, "the credential this request was let in with was revoked");
        } else if (req->streaming) {
            http_res_stream_end(req);
            req->revoked = 1;
        }
    }
    return n + http__ws_revoke(srv, credential);
}

void http_route_remove(struct http_server *srv, const char *prefix, http_handler_cb cb)
{
    for (size_t i = 0; i < srv->nroutes; i++) {
        if (srv->routes[i].cb == cb && strcmp(srv->routes[i].prefix, prefix) == 0) {
            memmove(&srv->routes[i], &srv->routes[i + 1], (srv->nroutes - i - 1) * sizeof srv->routes[0]);
            srv->nroutes--;
            return;
        }
    }
}

void http_server_set_node(struct http_server *srv, const char *node)
{
    free(srv->node);
    srv->node = node ? xstrdup(node) : NULL;
}

const char *http_server_node(const struct http_server *srv) { return srv->node ? srv->node : ""; }

uv_loop_t *http_server_loop(const struct http_server *srv) { return srv->loop; }

int http_server_stopping(const struct http_server *srv) { return srv->stopping; }

void http_route(struct http_server *srv, const char *prefix, http_handler_cb cb, void *arg)
{
    http_route_flags(srv, prefix, cb, arg, 0);
}

/* Appends a comma-separated list of names to list, leaving out the empty. */
static void http__list_add(struct buf *list, const char *names)
{
    if (names == NULL || *names == '\0')
        return;
    if (list->len)
        buf_puts(list, ", ");
    buf_puts(list, names);
}

void http_cors_headers(struct http_server *srv, const char *allow, const char *expose)
{
    http__list_add(&srv->cors_allow, allow);
    http__list_add(&srv->cors_expose, expose);
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
    http_cors_headers(srv, http__allow_generic, http__expose_generic);
    srv->cfg.token = srv->token;

    /* Each connection keeps an input buffer of this initial size for its whole life; requests here
     * are small, and a bigger one (a large body) still grows on demand. h2o's default (8 KiB) made
     * up most of the memory of a thousand idle SSE readers. */
    h2o_socket_buffer_prototype._initial_buf.capacity = HTTP_INPUT_BUFFER;
    h2o_config_init(&srv->config);
    srv->config.max_request_entity_size = cfg->max_body;
    srv->config.http1.req_timeout = cfg->io_timeout_ms;
    srv->config.http2.idle_timeout = cfg->io_timeout_ms;
    /* Forwarded answers (http_forward.c) go back unchanged: no Via or X-Forwarded-* added. */
    srv->config.proxy.emit_x_forwarded_headers = 0;
    srv->config.proxy.emit_via_header = 0;
    srv->config.proxy.preserve_server_header = 0;
    h2o_hostconf_t *host =
        h2o_config_register_host(&srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    /* h2o's proxy would write a line to stderr for each forward that fails (the owner is down);
     * the 503 owner_unavailable answer says it, and the follower logs the lease's changes. */
    pathconf->error_log.emit_request_errors = 0;
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

static int http__sock_cmp(const void *a, const void *b)
{
    const h2o_socket_t *x = *(h2o_socket_t *const *)a, *y = *(h2o_socket_t *const *)b;
    return (uintptr_t)x < (uintptr_t)y ? -1 : (uintptr_t)x > (uintptr_t)y;
}

/*
 * Ends the connections that wait, idle, for a request that a stopping server would only refuse: an
 * HTTP/1 keep-alive connection between requests holds nothing, but h2o closes it only after its next
 * response, or after the idle timeout. h2o has no call to close a connection from outside, so the
 * connection's read side is shut: h2o reads an end of file and closes it itself. Idle means h2o is
 * reading with no byte of a request buffered, no request of ours is on it (HTTP/1 stops reading
 * while it answers one; HTTP/2 reads on) and it is not a WebSocket (closed with 1001 instead).
 */
static void http__close_idle(struct http_server *srv)
{
    size_t n = 0, cap = 16;
    h2o_socket_t **busy = xmalloc(cap * sizeof *busy);
    for (struct http_req *req = srv->live; req; req = req->live_link.next) {
        if (n == cap)
            busy = xrealloc(busy, (cap *= 2) * sizeof *busy);
        busy[n++] = req->sock;
    }
    http__ws_sockets(srv, &busy, &n, &cap);
    qsort(busy, n, sizeof *busy, http__sock_cmp);
    for (struct http__conn *c = srv->conns; c; c = c->link.next) {
        uv_os_fd_t fd;
        if (c->read_shut || !h2o_socket_is_reading(c->sock) || c->sock->input->size != 0 ||
            bsearch(&c->sock, busy, n, sizeof *busy, http__sock_cmp) != NULL)
            continue;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && shutdown(fd, SHUT_RD) == 0)
            c->read_shut = 1;
    }
    free(busy);
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
    http__close_idle(srv);
}

size_t http_server_connections(const struct http_server *srv) { return srv->nconns; }

size_t http_server_drain(struct http_server *srv)
{
    http__close_idle(srv);
    return srv->nconns;
}

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
    http__upstreams_free(srv);
    h2o_context_dispose(&srv->ctx);
    h2o_config_dispose(&srv->config);
    free(srv->token);
    free(srv->node);
    buf_free(&srv->cors_allow);
    buf_free(&srv->cors_expose);
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
    struct http_server *srv = H2O_STRUCT_FROM_MEMBER(struct http_server, ctx, req->conn->ctx);
    int forwarded = status == 502 && http__forward_req(srv, req) != NULL;
    if (forwarded && http__forward_unreached(srv, req, body))
        return; /* held, to go to the next lease holder */
    if ((flags & H2O_SEND_ERROR_HTTP1_CLOSE_CONNECTION) != 0)
        req->http1_is_persistent = 0;
    req->res.status = status;
    req->res.reason = reason;
    if ((flags & H2O_SEND_ERROR_KEEP_HEADERS) == 0)
        memset(&req->res.headers, 0, sizeof req->res.headers);
    const char *code = http__error_code(status);
    if (forwarded) { /* h2o's proxy could not reach the owner */
        status = errcode_status(ERR_OWNER_UNAVAILABLE);
        code = errcode_name(ERR_OWNER_UNAVAILABLE);
        body = "the node that holds the write lease cannot be reached; retry";
        req->res.status = status;
        req->res.reason = http__reason(status);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("retry-after"), 1, NULL,
                              H2O_STRLIT("1"));
    }
    if (srv->node)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("agentd-node"), 1, NULL, srv->node,
                              strlen(srv->node));
    struct buf b = {0};
    http__error_body(&b, code, body, strlen(body));
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
