/*
 * libFuzzer target for WebSocket frames from clients (src/http/http_ws.c): a real agentd HTTP server
 * on the loop, a route that upgrades (as /v1/sessions/<id>/ws does) and echoes text messages back,
 * and for each input a fresh TCP connection that sends the handshake, then the input as the
 * client's frame bytes, then ends its half. The loop runs until the server has closed the
 * connection. So the bytes go through h2o's upgrade, http/'s reads and wslay as http/ drives them,
 * and the handlers. Checks, beyond memory safety: every WebSocket ends (on_close exactly once), no
 * connection is left open, and a message handed to on_message is valid UTF-8 when it is text.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "http/http.h"

static uv_loop_t loop;
static struct http_server *srv;
static int opened, closed;

static void fuzz_ws_message(struct http_ws *ws, void *arg, int binary, const char *data, size_t len)
{
    if (binary) {
        http_ws_close(ws, 1000, "binary: bye");
        return;
    }
    for (size_t i = 0, n; i < len; i += n)
        assert((n = utf8_seq_len(data + i, len - i)) != 0);
    (void)http_ws_send_text(ws, data, len);
}

static void fuzz_ws_closed(struct http_ws *ws, void *arg) { closed++; }

static void fuzz_ws_route(struct http_req *req, void *arg)
{
    const char *why = http_ws_handshake_error(req);
    if (why) {
        http_res_error(req, ERR_WEBSOCKET_REQUIRED, "%s", why);
        return;
    }
    static const struct http_ws_handlers h = {
        .on_message = fuzz_ws_message, .on_close = fuzz_ws_closed, .ping_ms = 0};
    if (http_ws_upgrade(req, &h, NULL))
        opened++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    struct http_config cfg = {
        .host = "127.0.0.1", .port = 0, .max_body = 1 << 16, .io_timeout_ms = 2000, .max_queued = 1 << 20};
    uv_loop_init(&loop);
    if (http_server_new(&srv, &loop, &cfg, err, sizeof err) != 0)
        abort();
    http_route(srv, "/ws", fuzz_ws_route, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char handshake[] =
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    int before_open = opened, before_closed = closed;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_server_port(srv))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        abort();
    fcntl(fd, F_SETFL, O_NONBLOCK);
    struct buf out = {0};
    buf_append(&out, handshake, sizeof handshake - 1);
    buf_append(&out, data, size);
    size_t sent = 0;
    int eof = 0, shut = 0;
    /* Feed the server, drain what it answers, until it closes (bounded: a stuck connection fails). */
    for (int turn = 0; !eof; turn++) {
        assert(turn < 200000);
        if (sent < out.len) {
            ssize_t n = send(fd, out.p + sent, out.len - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                sent = out.len; /* the server is gone already */
        } else if (!shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        char chunk[65536];
        ssize_t n;
        while ((n = recv(fd, chunk, sizeof chunk, 0)) > 0)
            ;
        eof = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
    close(fd);
    for (int turn = 0; http_server_connections(srv) > 0 || closed - before_closed < opened - before_open;
         turn++) {
        assert(turn < 100000);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    assert(opened - before_open <= 1 && closed - before_closed == opened - before_open);
    buf_free(&out);
    return 0;
}
