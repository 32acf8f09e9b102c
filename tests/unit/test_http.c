/*
 * Unit tests for src/http: the query-string decoder behind http_req_query_param, then a real server
 * on port 0 driven by a client thread with raw HTTP/1.1: longest-prefix routing, query parameters
 * and headers as handlers see them, error bodies from the error table (also for the errors libh2o
 * raises itself), the bearer token and the authorizer hook, CORS headers registered by modules,
 * deferred and streamed responses; forwarding to another server (http_forward.c) with Agentd-Node,
 * and a refused connect handed back (http_set_unreached) at a cost that does not grow with the
 * server's other live requests.
 * The loop closes cleanly at the end, so a leaked handle fails.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "http/http.h"
#include "http/http_int.h"
#include "rawhttp.h"
#include "tap.h"

/* Decodes `name` from q into a fresh buffer and returns it as a heap string ("(none)" when the
 * parameter is absent); the decoder's output must be a C string without the caller's help. */
static char *param(const char *q, const char *name, int *count)
{
    struct buf v = {0};
    *count = http_query_param(q, q ? strlen(q) : 0, name, &v);
    char *s = *count ? xstrdup(v.p ? v.p : "(null)") : xstrdup("(none)");
    if (*count && v.p && strlen(v.p) != v.len)
        s[0] = '!'; /* a NUL inside the value would cut it short */
    buf_free(&v);
    return s;
}

static void check(const char *q, const char *name, int want_count, const char *want, const char *what)
{
    int n;
    char *got = param(q, name, &n);
    is_int(n, want_count, "%s: count", what);
    is_str(got, want, "%s: value", what);
    free(got);
}

static void test_query_param(void)
{
    check("offset=", "offset", 1, "", "an empty value is an empty C string");
    check("a=1&offset=", "offset", 1, "", "an empty value at the end");
    check("offset=&a=1", "offset", 1, "", "an empty value before another parameter");
    check("offset", "offset", 1, "", "a bare name has the empty value");
    check("offset=12_34", "offset", 1, "12_34", "a plain value");
    check("offset=1&offset=2", "offset", 2, "1", "a repeated name counts each, keeps the first");
    check("live=long-poll", "offset", 0, "(none)", "an absent name");
    check(NULL, "offset", 0, "(none)", "no query at all");
    check("", "offset", 0, "(none)", "an empty query");
    check("cursor=a%20b%2Fc", "cursor", 1, "a b/c", "percent-escapes are decoded");
    check("cursor=%41%4", "cursor", 1, "A%4", "a cut-short escape stays as it is");
    check("cursor=%zz", "cursor", 1, "%zz", "a malformed escape stays as it is");
    check("cursor=a%00b", "cursor", 1, "a%00b", "%00 stays encoded, so the value is never cut short");
    check("offsetx=1&offset=2", "offset", 1, "2", "names match whole");
    check("x=offset=1", "offset", 0, "(none)", "a name inside a value is not a name");

    struct buf raw = {0};
    int nraw = http_query_param("cursor=a\0b", 10, "cursor", &raw);
    ok(nraw == 1 && raw.len == 5 && strcmp(raw.p, "a%00b") == 0,
       "a raw NUL byte comes out as %%00, like an encoded one");
    buf_free(&raw);

    /* The decoder appends: what the buffer held stays, and the result is still terminated. */
    struct buf v = {0};
    buf_puts(&v, "pre:");
    int n = http_query_param("offset=", 7, "offset", &v);
    ok(n == 1 && v.len == 4 && strcmp(v.p, "pre:") == 0,
       "appending an empty value keeps the buffer a C string");
    buf_free(&v);
}

/* ================= a real server ================= */

#define TOKEN "sekret"
#define AUTH  "Authorization: Bearer " TOKEN "\r\n"

static uv_loop_t loop;
static struct http_server *srv;
static uv_async_t client_done;
static int port;

/* "route=NAME path=P x=X nx=N h=H nh=N": what a handler saw of its request. */
static void echo(struct http_req *req, const char *route)
{
    size_t plen, hlen;
    const char *path = http_req_path(req, &plen), *h = http_req_header(req, "X-Test", &hlen);
    char *x = NULL;
    int nx = http_req_query_param(req, "x", &x);
    struct buf b = {0};
    buf_printf(&b, "route=%s path=%.*s x=%s nx=%d h=%.*s nh=%d", route, (int)plen, path, x ? x : "-", nx,
               h ? (int)hlen : 1, h ? h : "-", http_req_header_count(req, "x-test"));
    http_res_header(req, "Content-Type", "text/plain");
    http_res_send(req, 200, b.p, b.len);
    buf_free(&b);
}

static void on_t(struct http_req *req, void *arg) { echo(req, "t"); }
static void on_deep(struct http_req *req, void *arg) { echo(req, "deep"); }
static void on_err(struct http_req *req, void *arg) { http_res_error(req, ERR_CONFLICT, "busy %d", 7); }

static void on_stream(struct http_req *req, void *arg)
{
    http_res_stream_start(req, 200, NULL, NULL);
    ok(http_res_stream_write(req, "ab", 2) == 0 && http_res_stream_write2(req, "c", 1, "de", 2) == 0,
       "stream: writes are queued");
    http_res_stream_end(req);
}

/* A deferred answer: the handler keeps the request and a timer answers it on a later loop turn. */
struct late {
    uv_timer_t timer;
    struct http_req *req;
    int disposed;
};
static int late_disposals;
static void late_closed(uv_handle_t *h) { free(h->data); }
static void late_dispose(void *p)
{
    struct late *l = p;
    late_disposals++;
    l->req = NULL;
    uv_close((uv_handle_t *)&l->timer, late_closed);
}
static void late_fire(uv_timer_t *t)
{
    struct late *l = t->data;
    if (l->req)
        http_res_send(l->req, 200, "late", 4);
}
static void on_late(struct http_req *req, void *arg)
{
    struct late *l = xcalloc(1, sizeof *l);
    l->req = req;
    uv_timer_init(&loop, &l->timer);
    l->timer.data = l;
    http_req_set_data(req, l, late_dispose);
    uv_timer_start(&l->timer, late_fire, 20, 0);
}

/* Lets requests to /t/share through without the server token when they carry X-Share: ok. */
static int authorize(void *arg, struct http_req *req)
{
    size_t plen, hlen;
    const char *path = http_req_path(req, &plen), *h = http_req_header(req, "X-Share", &hlen);
    return plen >= 8 && memcmp(path, "/t/share", 8) == 0 && h && hlen == 2 && memcmp(h, "ok", 2) == 0;
}

/* ---- the client side (its own thread, blocking sockets: rawhttp.h) ---- */

static struct rawhttp_response get(const char *target, const char *extra_headers)
{
    char *raw = xasprintf("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", target,
                          extra_headers ? extra_headers : "");
    struct rawhttp_response r = rawhttp_exchange(port, raw, strlen(raw));
    free(raw);
    return r;
}

/* The code of an {"error":{"code":...}} body, as a static string, or "" when it is not one. */
static const char *error_code(const struct rawhttp_response *r)
{
    static char code[64];
    const char *p = strstr(r->body, "{\"error\":{\"code\":\"");
    code[0] = '\0';
    if (p == r->body) {
        p += strlen("{\"error\":{\"code\":\"");
        snprintf(code, sizeof code, "%.*s", (int)strcspn(p, "\""), p);
    }
    return code;
}

static int contains(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

static void client_checks(void)
{
    struct rawhttp_response r;

    r = get("/t/abc?x=a%20b&x=2", AUTH "X-Test: one\r\nX-Test: two\r\n");
    is_int(r.status, 200, "a routed GET answers 200");
    is_str(r.body, "route=t path=/t/abc x=a b nx=2 h=one nh=2",
           "the handler sees its path, the first decoded query value and count, the first header and count");
    is_str(rawhttp_header(&r, "X-Content-Type-Options"), "nosniff", "security header on every response");
    ok(contains(rawhttp_header(&r, "Access-Control-Expose-Headers"), "ETag") &&
           contains(rawhttp_header(&r, "Access-Control-Expose-Headers"), "X-Expose-Me"),
       "CORS exposes http/'s own headers and those a module registered");
    rawhttp_free(&r);

    r = get("/t/deep/x", AUTH);
    ok(r.status == 200 && strncmp(r.body, "route=deep ", 11) == 0, "the longest matching prefix wins");
    rawhttp_free(&r);

    r = get("/nothing/here", AUTH);
    ok(r.status == 404 && strcmp(error_code(&r), "not_found") == 0, "an unrouted path: 404 not_found");
    is_str(rawhttp_header(&r, "Content-Type"), "application/json", "error bodies are JSON");
    rawhttp_free(&r);

    r = get("/t/err", AUTH);
    ok(r.status == 409 && strcmp(error_code(&r), "conflict") == 0 &&
           contains(r.body, "\"message\":\"busy 7\""),
       "http_res_error: the table's status (409) and code, the formatted message");
    rawhttp_free(&r);

    r = get("/t/abc", NULL);
    ok(r.status == 401 && strcmp(error_code(&r), "unauthorized") == 0, "no token: 401 unauthorized");
    is_str(rawhttp_header(&r, "WWW-Authenticate"), "Bearer", "401 names the scheme");
    rawhttp_free(&r);
    r = get("/t/abc", "Authorization: Bearer sekreT\r\n");
    is_int(r.status, 401, "a wrong token: 401");
    rawhttp_free(&r);
    r = get("/t/share/1", "X-Share: ok\r\n");
    ok(r.status == 200 && strncmp(r.body, "route=t ", 8) == 0, "the authorizer lets a request through");
    rawhttp_free(&r);
    r = get("/t/abc", "X-Share: ok\r\n");
    is_int(r.status, 401, "the authorizer decides per request: elsewhere it refuses");
    rawhttp_free(&r);

    const char *pre = "OPTIONS /t/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    r = rawhttp_exchange(port, pre, strlen(pre));
    ok(r.status == 204 && contains(rawhttp_header(&r, "Access-Control-Allow-Headers"), "Authorization") &&
           contains(rawhttp_header(&r, "Access-Control-Allow-Headers"), "X-Allow-Me"),
       "a CORS preflight needs no token and lists the allowed headers, a module's included");
    rawhttp_free(&r);

    char *big = xasprintf("POST /t/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" AUTH
                          "Content-Type: text/plain\r\nContent-Length: 4096\r\n\r\n%4096s",
                          "");
    r = rawhttp_exchange(port, big, strlen(big));
    ok(r.status == 413 && strcmp(error_code(&r), "payload_too_large") == 0,
       "a body over max_body: libh2o's 413 carries the JSON body of the table");
    rawhttp_free(&r);
    free(big);

    struct buf huge = {0};
    buf_puts(&huge, "GET /t/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" AUTH);
    for (int i = 0; i < 80; i++)
        buf_printf(&huge, "X-Pad-%d: %01000d\r\n", i, 0);
    buf_puts(&huge, "\r\n");
    r = rawhttp_exchange(port, huge.p, huge.len);
    ok(r.status == 431 && strcmp(error_code(&r), "headers_too_large") == 0, "80 KB of headers: 431");
    rawhttp_free(&r);
    buf_free(&huge);

    const char *broken = "GET /t/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: abc\r\n\r\n";
    r = rawhttp_exchange(port, broken, strlen(broken));
    ok(r.status == 400 && strcmp(error_code(&r), "bad_request") == 0,
       "a malformed request: libh2o's 400 carries the JSON body");
    rawhttp_free(&r);
    /* Bytes that are not an HTTP request line at all are refused by libh2o's parser with a fixed
     * plain-text answer written straight to the socket (send_bad_request in its http1.c): nothing
     * of agentd runs, so only the status is agentd's contract there. */
    const char *garbage = "GARBAGE\r\n\r\n";
    r = rawhttp_exchange(port, garbage, strlen(garbage));
    is_int(r.status, 400, "not HTTP at all: 400");
    rawhttp_free(&r);

    r = get("/t/stream", AUTH);
    ok(r.status == 200 && strcmp(r.body, "abcde") == 0, "a streamed response arrives whole, in order");
    rawhttp_free(&r);

    r = get("/t/late", AUTH);
    ok(r.status == 200 && strcmp(r.body, "late") == 0, "a deferred answer from a later loop turn");
    rawhttp_free(&r);
}

static void *client_main(void *arg)
{
    client_checks();
    uv_async_send(&client_done);
    return NULL;
}

static void on_client_done(uv_async_t *a) { uv_stop(&loop); }

static void test_server(void)
{
    char err[256];
    struct http_config cfg = {.host = "127.0.0.1",
                              .port = 0,
                              .token = TOKEN,
                              .max_body = 1024,
                              .io_timeout_ms = 5000,
                              .max_queued = 1 << 20};
    uv_loop_init(&loop);
    if (!ok(http_server_new(&srv, &loop, &cfg, err, sizeof err) == 0, "the server starts on port 0 (%s)",
            err))
        return;
    port = http_server_port(srv);
    ok(port > 0, "it reports the port it bound");
    http_route(srv, "/t/", on_t, NULL);
    http_route(srv, "/t/deep/", on_deep, NULL);
    http_route(srv, "/t/err", on_err, NULL);
    http_route(srv, "/t/stream", on_stream, NULL);
    http_route(srv, "/t/late", on_late, NULL);
    http_set_authorizer(srv, authorize, NULL);
    http_cors_headers(srv, "X-Allow-Me", "X-Expose-Me");
    uv_async_init(&loop, &client_done, on_client_done);

    pthread_t client;
    pthread_create(&client, NULL, client_main, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(client, NULL);
    is_int(late_disposals, 1, "the deferred request's dispose ran once");

    for (int i = 0; i < 100 && http_server_connections(srv) > 0; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    is_int((int)http_server_connections(srv), 0, "every connection closed");
    http_server_free(srv);
    uv_close((uv_handle_t *)&client_done, NULL);
    for (int i = 0; i < 10; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    is_int(uv_loop_close(&loop), 0, "the loop closes: no handle leaked");
}

/* ---- forwarding (http_forward.c): a front server passes requests to an upstream one ---- */

static struct http_server *up_srv, *front_srv;
static int front_port, up_port;

static void on_up(struct http_req *req, void *arg)
{
    size_t blen, alen = 0, mlen;
    const char *body = http_req_body(req, &blen);
    const char *auth = http_req_header(req, "authorization", &alen);
    const char *method = http_req_method_name(req, &mlen);
    http_res_header(req, "X-Up", "yes");
    http_res_stream_start(req, 201, NULL, NULL);
    char *head = xasprintf("%.*s body=%.*s auth=%.*s;", (int)mlen, method, (int)blen, body ? body : "",
                           auth ? (int)alen : 0, auth ? auth : "");
    http_res_stream_write(req, head, strlen(head));
    http_res_stream_write(req, "streamed", 8);
    http_res_stream_end(req);
    free(head);
}

static void on_front(struct http_req *req, void *arg)
{
    struct http_upstream *u = http_upstream_get(front_srv, arg, 5000);
    if (u == NULL)
        return http_res_error(req, ERR_OWNER_UNAVAILABLE, "no upstream");
    http_req_forward(req, u);
}

static void forward_checks(void)
{
    char *raw = xasprintf("POST /up/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer "
                          "sekret\r\nContent-Length: 5\r\n\r\nhello");
    struct rawhttp_response r = rawhttp_exchange(front_port, raw, strlen(raw));
    free(raw);
    ok(r.status == 201 && strcmp(r.body, "POST body=hello auth=Bearer sekret;streamed") == 0,
       "a forwarded POST reaches the upstream with its body and Authorization; the streamed answer comes "
       "back "
       "whole (%d %s)",
       r.status, r.body ? r.body : "");
    is_str(rawhttp_header(&r, "X-Up"), "yes", "the upstream's headers come back");
    is_str(rawhttp_header(&r, "Agentd-Node"), "up",
           "Agentd-Node names the node that answered, not the front");
    rawhttp_free(&r);
    r = get("/dead/x", NULL);
    ok(r.status == 503 && strcmp(error_code(&r), "owner_unavailable") == 0,
       "an upstream that refuses connections: 503 owner_unavailable");
    is_str(rawhttp_header(&r, "Retry-After"), "1", "with Retry-After: 1");
    is_str(rawhttp_header(&r, "Agentd-Node"), "front", "answered by the front itself");
    rawhttp_free(&r);
    r = get("/local", NULL);
    is_str(rawhttp_header(&r, "Agentd-Node"), "front", "a local answer names the front");
    rawhttp_free(&r);
}

static void *forward_client(void *arg)
{
    int *p = arg;
    int saved = port;
    port = *p;
    forward_checks();
    port = saved;
    uv_async_send(&client_done);
    return NULL;
}

static void test_forward(void)
{
    char err[256];
    struct http_config cfg = {
        .host = "127.0.0.1", .port = 0, .max_body = 1024, .io_timeout_ms = 5000, .max_queued = 1 << 20};
    uv_loop_init(&loop);
    if (http_server_new(&up_srv, &loop, &cfg, err, sizeof err) != 0 ||
        http_server_new(&front_srv, &loop, &cfg, err, sizeof err) != 0) {
        ok(0, "two servers start (%s)", err);
        return;
    }
    up_port = http_server_port(up_srv);
    front_port = http_server_port(front_srv);
    http_server_set_node(up_srv, "up");
    http_server_set_node(front_srv, "front");
    char *up_url = xasprintf("http://127.0.0.1:%d", up_port);
    /* port 1: nobody listens there (tcpmux), so the connect is refused at once */
    http_route(up_srv, "/up/", on_up, NULL);
    http_route(front_srv, "/up/", on_front, up_url);
    http_route(front_srv, "/dead/", on_front, "http://127.0.0.1:1");
    http_route(front_srv, "/local", on_err, NULL);
    uv_async_init(&loop, &client_done, on_client_done);
    pthread_t client;
    pthread_create(&client, NULL, forward_client, &front_port);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(client, NULL);
    http_server_free(front_srv); /* closes its pooled upstream connections */
    for (int i = 0; i < 200 && http_server_connections(up_srv) > 0; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    is_int((int)http_server_connections(up_srv), 0, "the upstream's connections closed");
    http_server_free(up_srv);
    uv_close((uv_handle_t *)&client_done, NULL);
    for (int i = 0; i < 10; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    is_int(uv_loop_close(&loop), 0, "the loop closes: no handle leaked");
    free(up_url);
}

static void test_upstream_check(void)
{
    ok(http_upstream_check("http://127.0.0.1:4437") == 0, "http://ADDRESS:PORT is an upstream");
    ok(http_upstream_check("http://[::1]:4437/") == 0, "an IPv6 address too");
    ok(http_upstream_check("http://localhost:80") == 0, "localhost too");
    ok(http_upstream_check("http://a.test") != 0, "a name is not (no resolver on the loop)");
    ok(http_upstream_check("https://127.0.0.1:1") != 0, "nor https");
    ok(http_upstream_check("http://127.0.0.1:99999") != 0, "nor a port out of range");
}

/* ---- a refused connect handed back (http_set_unreached) ---- */

/* A follower holds thousands of requests while a dead owner's lease runs out, and every try of
 * each ends in a refused connect handed back to it: finding the request must not cost a walk over
 * the others. One request is forwarded to a refused port TRIES times, first alone, then parked while
 * IDLE_REQS other requests become live (newer, so ahead of it in the server's list), then again;
 * the loop's CPU time per try must not grow with them. */
#define IDLE_REQS 3000
#define TRIES     2000

static struct http_server *hold_srv;
static struct http_upstream *dead_up;
static struct http_req *idle_reqs[IDLE_REQS], *retrying;
static int n_idle, parked, tries, phase; /* read by the client thread through __atomic */
static uint64_t try_ns[2];
static uv_idle_t retry_idle;
static uv_async_t hold_go, hold_release;

static uint64_t thread_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void retry_now(uv_idle_t *i)
{
    uv_idle_stop(i);
    http_req_forward(retrying, dead_up);
}

/* Overrides that http_req_forward did not set (h2o's reproxy or a delegated redirect would), in
 * memory that happens to look like a forwarded request around them: a refused connect of that
 * request must not be taken for a forwarded one's (before, its struct http_req was found by its
 * address, whatever had set it). */
static struct http_req foreign;
static int foreign_taken;

static void on_foreign(struct http_req *req, void *arg)
{
    memset(&foreign, 0, sizeof foreign);
    foreign.h2o = req->h2o;
    foreign.forwarded = 1;
    req->started = req->finished = 1; /* h2o answers it from here on */
    req->h2o->overrides = &foreign.overrides;
    h2o_send_error_generic(req->h2o, 502, "Bad Gateway", "connection failed", 0);
}

/* Takes the request back TRIES times (each forwarded again on the next loop turn), then lets h2o
 * answer it (503). In the second phase the first refusal parks it until the idle requests are in. */
static int on_unreached(void *arg, struct http_req *req)
{
    if (req == &foreign) {
        foreign_taken = 1;
        return 0;
    }
    retrying = req;
    if (tries == 0 && phase == 1 && !__atomic_load_n(&parked, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&parked, 1, __ATOMIC_SEQ_CST);
        return 1;
    }
    if (tries == 0)
        try_ns[phase] = thread_ns();
    if (++tries < TRIES) {
        uv_idle_start(&retry_idle, retry_now);
        return 1;
    }
    try_ns[phase] = (thread_ns() - try_ns[phase]) / (TRIES - 1);
    tries = 0;
    __atomic_store_n(&phase, phase + 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void on_hold_go(uv_async_t *a) { http_req_forward(retrying, dead_up); }

static void on_hold_release(uv_async_t *a)
{
    for (int i = 0; i < n_idle; i++)
        http_res_send(idle_reqs[i], 200, "ok", 2);
    uv_stop(&loop);
}

static void on_idle_req(struct http_req *req, void *arg)
{
    idle_reqs[n_idle] = req;
    __atomic_store_n(&n_idle, n_idle + 1, __ATOMIC_SEQ_CST);
}

static void on_dead(struct http_req *req, void *arg) { http_req_forward(req, dead_up); }

static void wait_until(int *v, int want)
{
    while (__atomic_load_n(v, __ATOMIC_SEQ_CST) < want)
        usleep(1000);
}

static void *hold_client(void *arg)
{
    int p = *(int *)arg, saved = port;
    port = p;
    struct rawhttp_response r = get("/dead/alone", NULL);
    is_int(r.status, 503, "a refused connect taken back %d times, then answered 503", TRIES);
    rawhttp_free(&r);
    static int fds[IDLE_REQS];
    /* the second refused request is parked before the idle ones arrive */
    static const char dead_req[] = "GET /dead/behind HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int dfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok(connect(dfd, (struct sockaddr *)&a, sizeof a) == 0 && send(dfd, dead_req, sizeof dead_req - 1, 0) > 0,
       "the second request is sent");
    wait_until(&parked, 1);
    static const char idle_req[] = "GET /idle HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (int i = 0; i < IDLE_REQS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            send(fds[i], idle_req, sizeof idle_req - 1, 0) <= 0)
            bail_out("idle request %d: %s", i, strerror(errno));
    }
    wait_until(&n_idle, IDLE_REQS);
    uv_async_send(&hold_go);
    char buf[4096];
    ssize_t n = recv(dfd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    ok(strncmp(buf, "HTTP/1.1 503", 12) == 0, "behind %d live requests, the same after %d tries", IDLE_REQS,
       TRIES);
    close(dfd);
    wait_until(&phase, 2);
    r = get("/foreign", NULL);
    ok(r.status == 502 && !foreign_taken,
       "a 502 of a request whose overrides http_req_forward did not set is not taken for a refused forward "
       "(%d, taken %d)",
       r.status, foreign_taken);
    rawhttp_free(&r);
    uv_async_send(&hold_release);
    int answered = 0;
    for (int i = 0; i < IDLE_REQS; i++) {
        answered += recv(fds[i], buf, sizeof buf, 0) > 0;
        close(fds[i]);
    }
    is_int(answered, IDLE_REQS, "the idle requests are answered at the end");
    port = saved;
    return NULL;
}

static void test_unreached(void)
{
    char err[256];
    struct http_config cfg = {
        .host = "127.0.0.1", .port = 0, .max_body = 1024, .io_timeout_ms = 10000, .max_queued = 1 << 20};
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * IDLE_REQS + 256) {
        rl.rlim_cur = rl.rlim_max < 2 * IDLE_REQS + 256 ? rl.rlim_max : 2 * IDLE_REQS + 256;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < 2 * IDLE_REQS + 256)
        bail_out("needs %d file descriptors, may have %llu", 2 * IDLE_REQS + 256,
                 (unsigned long long)rl.rlim_cur);
    uv_loop_init(&loop);
    if (http_server_new(&hold_srv, &loop, &cfg, err, sizeof err) != 0) {
        ok(0, "the server starts (%s)", err);
        return;
    }
    int hold_port = http_server_port(hold_srv);
    /* port 1: nobody listens there (tcpmux), so the connect is refused at once */
    dead_up = http_upstream_get(hold_srv, "http://127.0.0.1:1", 5000);
    http_route(hold_srv, "/dead/", on_dead, NULL);
    http_route(hold_srv, "/idle", on_idle_req, NULL);
    http_route(hold_srv, "/foreign", on_foreign, NULL);
    http_set_unreached(hold_srv, on_unreached, NULL);
    uv_idle_init(&loop, &retry_idle);
    uv_async_init(&loop, &hold_go, on_hold_go);
    uv_async_init(&loop, &hold_release, on_hold_release);
    pthread_t client;
    pthread_create(&client, NULL, hold_client, &hold_port);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(client, NULL);
    ok(try_ns[1] < 2 * try_ns[0] + 20000,
       "a try costs the loop as much with %d other live requests as alone (%.1f vs %.1f us)", IDLE_REQS,
       try_ns[1] / 1000.0, try_ns[0] / 1000.0);
    for (int i = 0; i < 1000 && http_server_connections(hold_srv) > 0; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    is_int((int)http_server_connections(hold_srv), 0, "every connection closed");
    http_server_free(hold_srv);
    uv_close((uv_handle_t *)&retry_idle, NULL);
    uv_close((uv_handle_t *)&hold_go, NULL);
    uv_close((uv_handle_t *)&hold_release, NULL);
    for (int i = 0; i < 10; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    is_int(uv_loop_close(&loop), 0, "the loop closes: no handle leaked");
}

int main(void)
{
    test_query_param();
    test_upstream_check();
    test_server();
    test_forward();
    test_unreached();
    return done_testing();
}
