/*
 * http_forward — a request passed on, whole, to another agentd (a follower forwarding to the node
 * that holds the write lease; see serve.c). libh2o 2.2.5's own reverse proxy does the work
 * (h2o__proxy_process_request with per-request overrides): it streams the answer back as it arrives
 * (SSE and long-poll events go out as soon as they are read, one send in flight, the upstream read
 * paused meanwhile), keeps upstream connections alive in a socket pool, closes the upstream
 * connection when the client goes, and ends the client's connection when the upstream one breaks
 * mid-answer (a killed owner): the client resumes from its offset. A WebSocket handshake is passed on
 * and the upgraded connection tunnelled (ws_timeout bounds its silences). A failed connect is answered 502
 * by h2o, which http.c's h2o_send_error_generic turns into 503 owner_unavailable.
 *
 * Ownership: the server owns every upstream (srv->upstreams, one per URL ever forwarded to: a
 * handful of nodes), each with its client context, timeouts and socket pool; they live as long as
 * the server, since requests in flight point at them.
 */
#include "http/http_int.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct http_upstream {
    struct http_upstream *next; /* srv->upstreams */
    char *url;
    char host[256];
    uint16_t port;
    h2o_http1client_ctx_t client;
    h2o_timeout_t io_timeout, ws_timeout;
    h2o_socketpool_t pool;
    struct sockaddr_storage sa; /* host and port, for http_upstream_probe */
};

/* http://HOST:PORT[/...] with a numeric IPv4 or [IPv6] host (nodes name themselves by address). */
static int http__parse_upstream(const char *url, char *host, size_t hostlen, uint16_t *port,
                                struct sockaddr_storage *sa, socklen_t *salen)
{
    if (strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    const char *h = url + 7, *end = h + strcspn(h, "/?#"), *colon;
    int v6 = *h == '[';
    if (v6) {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (close == NULL)
            return -EINVAL;
        colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
        if ((size_t)(close - h - 1) >= hostlen)
            return -EINVAL;
        memcpy(host, h + 1, (size_t)(close - h - 1));
        host[close - h - 1] = '\0';
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        const char *hend = colon ? colon : end;
        if ((size_t)(hend - h) >= hostlen)
            return -EINVAL;
        memcpy(host, h, (size_t)(hend - h));
        host[hend - h] = '\0';
    }
    long p = 80;
    if (colon) {
        char *e;
        p = strtol(colon + 1, &e, 10);
        if (e != end || p <= 0 || p > 65535)
            return -EINVAL;
    }
    *port = (uint16_t)p;
    memset(sa, 0, sizeof *sa);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, hostlen, "127.0.0.1");
    struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(*port);
        *salen = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(*port);
        *salen = sizeof *a6;
    } else {
        return -EINVAL;
    }
    return 0;
}

int http_upstream_check(const char *url)
{
    char host[256];
    uint16_t port;
    struct sockaddr_storage sa;
    socklen_t salen;
    return http__parse_upstream(url, host, sizeof host, &port, &sa, &salen);
}

struct http_upstream *http_upstream_get(struct http_server *srv, const char *url, uint64_t io_timeout_ms)
{
    for (struct http_upstream *u = srv->upstreams; u; u = u->next)
        if (strcmp(u->url, url) == 0)
            return u;
    socklen_t salen;
    struct http_upstream *u = xcalloc(1, sizeof *u);
    if (http__parse_upstream(url, u->host, sizeof u->host, &u->port, &u->sa, &salen) != 0) {
        free(u);
        return NULL;
    }
    u->url = xstrdup(url);
    h2o_timeout_init(srv->loop, &u->io_timeout, io_timeout_ms);
    h2o_timeout_init(srv->loop, &u->ws_timeout, io_timeout_ms);
    u->client = (h2o_http1client_ctx_t){
        .loop = srv->loop, .io_timeout = &u->io_timeout, .websocket_timeout = &u->ws_timeout};
    /* Idle upstream connections are kept a little: a forwarding node mostly talks to one owner. */
    h2o_socketpool_init_by_address(&u->pool, (struct sockaddr *)&u->sa, salen, 0, 4096);
    h2o_socketpool_set_timeout(&u->pool, srv->loop, 2000);
    u->next = srv->upstreams;
    srv->upstreams = u;
    return u;
}

void http__upstreams_free(struct http_server *srv)
{
    for (struct http_upstream *u = srv->upstreams, *next; u; u = next) {
        next = u->next;
        h2o_socketpool_dispose(&u->pool);
        h2o_timeout_dispose(srv->loop, &u->io_timeout);
        h2o_timeout_dispose(srv->loop, &u->ws_timeout);
        free(u->url);
        free(u);
    }
    srv->upstreams = NULL;
}

/* One http_upstream_probe: the connection lives until its close callback, which frees it. */
struct http_probe {
    uv_tcp_t tcp;
    uv_connect_t connect;
    http_probe_cb cb; /* NULL once cancelled */
    void *arg;
};

static void http__probe_closed(uv_handle_t *h) { free(h->data); }

/* Called once, also after uv_close of a connect still under way (UV_ECANCELED). */
static void http__probe_done(uv_connect_t *c, int status)
{
    struct http_probe *p = c->data;
    if (!uv_is_closing((uv_handle_t *)&p->tcp))
        uv_close((uv_handle_t *)&p->tcp, http__probe_closed);
    if (p->cb != NULL)
        p->cb(p->arg, status);
}

struct http_probe *http_upstream_probe(struct http_server *srv, struct http_upstream *up, http_probe_cb cb,
                                       void *arg)
{
    struct http_probe *p = xcalloc(1, sizeof *p);
    p->cb = cb;
    p->arg = arg;
    p->tcp.data = p->connect.data = p;
    if (uv_tcp_init(srv->loop, &p->tcp) != 0) {
        free(p);
        return NULL;
    }
    if (uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&up->sa, http__probe_done) != 0) {
        p->cb = NULL;
        uv_close((uv_handle_t *)&p->tcp, http__probe_closed);
        return NULL;
    }
    return p;
}

void http_probe_cancel(struct http_probe *p)
{
    p->cb = NULL;
    if (!uv_is_closing((uv_handle_t *)&p->tcp))
        uv_close((uv_handle_t *)&p->tcp, http__probe_closed);
}

/* A WebSocket handshake: its connection becomes a tunnel to up once upgraded (the request is gone
 * then), so the connection itself is tagged. A handshake the upstream refuses leaves the tag on a
 * plain connection: the drop would end it too, and the client reconnects. */
static void http__forward_mark_tunnel(struct http_req *req, struct http_upstream *up, int shard)
{
    if (req->h2o->upgrade.base == NULL) /* h2o keeps Upgrade apart from the other headers */
        return;
    for (struct http__conn *c = req->srv->conns; c; c = c->link.next)
        if (c->sock == req->sock) {
            c->tunnel = up;
            c->tunnel_shard = shard;
        }
}

void http_req_forward(struct http_req *req, struct http_upstream *up) { http_req_forward_shard(req, up, -1); }

void http_req_forward_shard(struct http_req *req, struct http_upstream *up, int shard)
{
    h2o_req_t *r = req->h2o;
    h2o_req_overrides_t *ov = &req->overrides;
    memset(ov, 0, sizeof *ov);
    ov->client_ctx = &up->client;
    ov->socketpool = &up->pool;
    ov->hostport.host = h2o_iovec_init(up->host, strlen(up->host));
    ov->hostport.port = up->port;
    r->overrides = ov;
    /* Marks the request: a node that receives it marked answers instead of forwarding it again
     * (serve_forward_http), so a --node-url that leads back to a follower costs one refused hop,
     * not a loop that takes every descriptor of the node within two seconds. */
    const char *node = http_server_node(req->srv);
    size_t nlen = strlen(node);
    if (!req->marked) /* once: a request held and forwarded again (http_set_unreached) has it */
        h2o_add_header_by_str(&r->pool, &r->headers, H2O_STRLIT(HTTP_FORWARDED_BY), 0, NULL,
                              h2o_strdup(&r->pool, node, nlen).base, nlen);
    req->marked = 1;
    http__forward_mark_tunnel(req, up, shard);
    req->started = 1;
    req->finished = 1; /* the answer is h2o's proxy's from here on */
    req->forwarded = 1;
    req->upstream = up;
    req->shard = shard;
    h2o__proxy_process_request(r);
}

void http_set_unreached(struct http_server *srv, http_unreached_cb cb, void *arg)
{
    srv->unreached = cb;
    srv->unreached_arg = arg;
}

int http_req_forwarded_here(const struct http_req *req) { return req->marked; }

/* HTTP/1 stops reading a connection while it answers a request there, so h2o does not see a client
 * that went away before the answer's first write: a peek at the socket does. Pipelined bytes count
 * as a client still there; so does a socket this cannot look at. */
int http_req_client_gone(const struct http_req *req)
{
    char b;
    int fd = req->sock ? h2o_socket_get_fd(req->sock) : -1;
    if (fd < 0)
        return 0;
    ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* libh2o 2.2.5's words for a connect that failed (its socket pool: refused, unreachable; the
 * http1 client: no connection within the timeout). Each is said before a byte of the request was
 * written; what breaks after that ("I/O error (send request)", "(head)") is not among them. */
static int http__never_sent(const char *errstr)
{
    static const char *const words[] = {"connection failed", "failed to connect to host",
                                        "connection timeout"};
    for (size_t i = 0; errstr != NULL && i < CORE_ARRAY_LEN(words); i++)
        if (strcmp(errstr, words[i]) == 0)
            return 1;
    return 0;
}

struct http_req *http__forward_req(struct http_server *srv, h2o_req_t *r)
{
    const h2o_req_overrides_t *ov = r->overrides;
    if (ov == NULL)
        return NULL;
    /* ov's own fields can be read whoever set it; its client context is one of this server's
     * upstreams' (private to this file) only if http_req_forward set it, to its request's own. */
    struct http_upstream *u = srv->upstreams;
    while (u != NULL && ov->client_ctx != &u->client)
        u = u->next;
    if (u == NULL)
        return NULL;
    struct http_req *req = H2O_STRUCT_FROM_MEMBER(struct http_req, overrides, ov);
    return req->h2o == r && req->forwarded ? req : NULL;
}

int http__forward_unreached(struct http_server *srv, h2o_req_t *r, const char *errstr)
{
    if (srv->unreached == NULL || !http__never_sent(errstr))
        return 0;
    /* The request from its overrides: no search of the live requests (thousands may be held while a
     * dead owner's lease runs out). */
    struct http_req *req = http__forward_req(srv, r);
    if (req == NULL || !srv->unreached(srv->unreached_arg, req))
        return 0;
    /* Not answered, not forwarded: whoever took it back decides. h2o's proxy has let go of it (its
     * generator keeps no client), and the entity it read stays with the request. */
    req->started = req->finished = req->forwarded = 0;
    req->upstream = NULL;
    r->overrides = NULL;
    return 1;
}

size_t http_upstream_drop(struct http_server *srv, const char *url)
{
    return http_upstream_drop_shards(srv, url, NULL);
}

/* Is shard among shards (NULL: all; an untagged request, shard -1, only then)? */
static int http__shard_in(int shard, const uint64_t *shards)
{
    return shards == NULL || (shard >= 0 && (shards[shard / 64] >> (shard % 64) & 1));
}

size_t http_upstream_drop_shards(struct http_server *srv, const char *url, const uint64_t *shards)
{
    struct http_upstream *up = NULL;
    for (struct http_upstream *u = srv->upstreams; u; u = u->next)
        if (strcmp(u->url, url) == 0)
            up = u;
    if (up == NULL)
        return 0;
    /* h2o cannot end a request from outside: the client's connection is shut, h2o reads its end and
     * closes it, which disposes the request and closes its upstream connection (a tunnel's too). */
    size_t n = 0;
    for (struct http__conn *c = srv->conns; c; c = c->link.next) {
        int hit = c->tunnel == up && http__shard_in(c->tunnel_shard, shards);
        for (struct http_req *req = srv->live; req && !hit; req = req->live_link.next)
            hit = req->upstream == up && req->sock == c->sock && http__shard_in(req->shard, shards);
        uv_os_fd_t fd;
        if (hit && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && shutdown(fd, SHUT_RDWR) == 0)
            n++;
    }
    return n;
}

/* ================= Agentd-Not-Owner: an answer taken as a refused connect ================= */

/* A forwarded request's answer 503 Agentd-Not-Owner (the node forwarded to does not hold the
 * request's shard, and did nothing with it), while h2o's proxy delivers it: nothing reaches the
 * client. The proxy's body goes nowhere; once it is all in (the proxy is done with the request),
 * the request is handed to http_set_unreached's callback as a refused connect's is, or answered
 * 503 owner_unavailable when the callback does not take it. */
struct http__not_owner {
    h2o_ostream_t super;
    h2o_ostream_t *next; /* the request's output before: its connection's, untouched */
    struct http_req *req;
};

static void http__not_owner_send(h2o_ostream_t *self, h2o_req_t *r, h2o_iovec_t *bufs, size_t n,
                                 h2o_send_state_t state)
{
    struct http__not_owner *no = (struct http__not_owner *)self;
    if (h2o_send_state_is_in_progress(state)) {
        h2o_proceed_response(r); /* more of the body, to nowhere */
        return;
    }
    /* The proxy has let go (h2o_send cleared the generator): the request is as it was before it
     * was forwarded, its answer not started. */
    struct http_req *req = no->req;
    struct http_server *srv = req->srv;
    r->_ostr_top = no->next;
    r->res.status = 0;
    r->res.reason = NULL;
    r->res.content_length = SIZE_MAX;
    memset(&r->res.headers, 0, sizeof r->res.headers);
    req->started = req->finished = req->forwarded = 0;
    req->upstream = NULL;
    r->overrides = NULL;
    if (srv->unreached != NULL && srv->unreached(srv->unreached_arg, req))
        return;
    http_res_header(req, "Retry-After", "1");
    http_res_error(req, ERR_OWNER_UNAVAILABLE,
                   "the node this request was forwarded to does not hold its shard any more; retry");
}

/* Is r's answer, about to start, an Agentd-Not-Owner one to a request this server forwarded (with
 * someone to take it back)? Then it is set aside (above) instead of started. */
static int http__not_owner_start(h2o_req_t *r, h2o_generator_t *gen)
{
    struct http_server *srv = H2O_STRUCT_FROM_MEMBER(struct http_server, ctx, r->conn->ctx);
    if (srv->unreached == NULL ||
        h2o_find_header_by_str(&r->res.headers, H2O_STRLIT(HTTP_NOT_OWNER), -1) == -1)
        return 0;
    struct http_req *req = http__forward_req(srv, r);
    if (req == NULL)
        return 0;
    struct http__not_owner *no = h2o_mem_alloc_pool(&r->pool, sizeof *no);
    memset(no, 0, sizeof *no);
    no->super.do_send = http__not_owner_send;
    no->next = r->_ostr_top;
    no->req = req;
    r->_generator = gen;
    r->_ostr_top = &no->super;
    return 1;
}

/* Interposes libh2o's h2o_start_response (libh2o calls it through its PLT, as it does
 * h2o_send_error_generic, which http.c interposes: the executable's definition wins): h2o's proxy
 * calls it once it has copied an upstream's status and headers, the one point where an answer can
 * be looked at before any of it is sent. Every other answer goes to libh2o's own, unchanged. */
void h2o_start_response(h2o_req_t *req, h2o_generator_t *generator)
{
    static void (*real)(h2o_req_t *, h2o_generator_t *);
    if (req->res.status == 503 && http__not_owner_start(req, generator))
        return;
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "h2o_start_response");
    real(req, generator);
}
