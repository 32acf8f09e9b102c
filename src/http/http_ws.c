/*
 * http_ws — WebSockets (RFC 6455) on agentd's HTTP server. See http.h.
 *
 * h2o writes the 101 (h2o_http1_upgrade) and hands over the socket; from there this file drives
 * wslay itself rather than through h2o's websocket connection, which has no hook for "this write has
 * completed" — the moment a bounded sender needs to queue its next message.
 */
#include "http/http.h"
#include "core/list.h"
#include "http/http_int.h"

#include <assert.h>
#include <errno.h>
#include <h2o.h>
#include <h2o/websocket.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

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
    LIST_LINK(http_ws) link; /* srv->ws_list */
    unsigned upgrading : 1;  /* the 101 is being written: h2o still owns the socket */
    unsigned writing : 1;    /* inflight is with the socket */
    unsigned reading : 1;
    unsigned in_io : 1;   /* inside wslay: calls from handlers only queue */
    unsigned closing : 1; /* http_ws_close ran (or shutdown) */
    unsigned dead : 1;    /* to be ended on the next loop turn */
    unsigned ended : 1;
    char *credential; /* what its request was let in with (http_req_set_credential), or NULL */
};

/* http_ws_close never ends a WebSocket synchronously, so the list stays intact while walked. */
void http__ws_close_all(struct http_server *srv)
{
    for (struct http_ws *ws = srv->ws_list; ws; ws = ws->link.next)
        http_ws_close(ws, 1001, "server shutting down");
}

void http__ws_sockets(struct http_server *srv, h2o_socket_t ***socks, size_t *n, size_t *cap)
{
    for (struct http_ws *ws = srv->ws_list; ws; ws = ws->link.next) {
        if (ws->sock == NULL)
            continue;
        if (*n == *cap)
            *socks = xrealloc(*socks, (*cap *= 2) * sizeof **socks);
        (*socks)[(*n)++] = ws->sock;
    }
}

size_t http__ws_revoke(struct http_server *srv, const char *credential)
{
    size_t n = 0;
    for (struct http_ws *ws = srv->ws_list; ws; ws = ws->link.next) {
        if (ws->credential && !ws->closing && !strcmp(ws->credential, credential)) {
            http_ws_close(ws, 1008, "access revoked");
            n++;
        }
    }
    return n;
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

static void http__ws_free_cb(uv_handle_t *h)
{
    struct http_ws *ws = h->data;
    free(ws->credential);
    free(ws);
}

/* Ends the connection: the handler hears on_close, then everything is released. Loop callbacks
 * only (see above). */
static void http__ws_end(struct http_ws *ws)
{
    ws->dead = 1;
    if (ws->ended || ws->upgrading) /* the upgrade's completion ends it */
        return;
    ws->ended = 1;
    list_remove(ws, link);
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
    ws->credential = req->credential ? xstrdup(req->credential) : NULL;
    uv_timer_init(srv->loop, &ws->timer);
    ws->timer.data = ws;
    uv_timer_start(&ws->timer, http__ws_tick, ws->tick_ms, ws->tick_ms);
    list_insert(&srv->ws_list, ws, link);

    char accept[29];
    http__ws_accept_key(key, accept);
    r->res.status = 101;
    r->res.reason = "Switching Protocols";
    h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&r->pool, &r->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, accept,
                          strlen(accept));
    if (srv->node) /* like every answer made here (http.c) */
        h2o_add_header_by_str(&r->pool, &r->res.headers, H2O_STRLIT("agentd-node"), 0, NULL, srv->node,
                              strlen(srv->node));
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
