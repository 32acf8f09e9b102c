/*
 * curlx_http — HTTP requests on a libuv loop, through libcurl's multi interface: nothing blocks the
 * loop, a request's answer comes back as a callback. Made for talking to local servers agentd
 * started itself (OpenCode's `opencode serve`, src/session/session_agent.c): JSON bodies, basic
 * authentication, and answers either collected whole or streamed as they arrive (Server-Sent
 * Events). libcurl is loaded (curlx_load) with the first request, so a server that never makes one
 * never maps it.
 *
 * The same engine sends the subscription webhooks (src/subs/subs.c): a request marked `remote` may
 * go to any http or https URL, through the environment's proxy, with a caller's check on each
 * address right before it is dialled (the SSRF policy), a bounded answer and a header of its own.
 *
 * Ownership: a struct curlx_http owns its multi handle, its timer, a watcher per socket and every
 * request in flight; curlx_http_free cancels those without calling their callbacks. A request is
 * freed after its on_done returned, or by curlx_http_cancel / curlx_http_free.
 *
 * Callbacks run on the loop, never inside curlx_http_request. on_done may start new requests and
 * cancel others, but must not free the struct curlx_http (the owner frees it from elsewhere).
 */
#ifndef AGENTD_CURLX_HTTP_H
#define AGENTD_CURLX_HTTP_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "core/core.h"

struct curlx_http;
struct curlx_http_req;

/* The end of a request. ok: the server answered with a 2xx status; status: its status, 0 when it
 * did not answer (error then says why: refused, timed out, libcurl missing, ...; else NULL). The
 * body is what was not streamed (all of it without on_data), NUL-terminated; borrowed. */
struct curlx_http_answer {
    int ok;
    long status;
    const char *body;
    size_t len;
    const char *error;
};

struct curlx_http_opts {
    const char *method; /* "GET", "POST"; NULL: GET, or POST when there is a body */
    const char *url;
    const char *body; /* sent as application/json; NULL: none */
    size_t body_len;
    const char *userpwd; /* "user:password" for basic authentication, or NULL */
    long timeout_ms;     /* the whole request; 0: none (a stream) */
    /* Optional: the body as it arrives, chunk by chunk (a stream); the answer then has none. */
    void (*on_data)(void *arg, const char *data, size_t len);
    void (*on_done)(void *arg, const struct curlx_http_answer *answer);
    void *arg;
    /* For a URL that is not a local server agentd started (a webhook receiver). All optional. */
    int remote;             /* http and https, and the environment's proxy; else http only, no proxy */
    const char *header;     /* more request headers, "Name: value", one a line (\n between) */
    const char *user_agent; /* NULL: agentd/1 */
    size_t max_answer;      /* a collected answer longer than this fails the request; 0: no bound */
    /* Called with each address right before it is dialled; 0 refuses it (the request then fails
     * with status 0). It runs on new connections only: libcurl reuses an open one within the same
     * struct curlx_http, so requests under different address policies need separate ones. */
    int (*allow_addr)(void *arg, const struct sockaddr *addr);
};

int curlx_http_new(struct curlx_http **out, uv_loop_t *loop) CORE_UNUSED_RESULT;
/* Cancels every request in flight (no callbacks) and frees h once its handles have closed. */
void curlx_http_free(struct curlx_http *h);
/* Starts a request; strings are copied. Returns it (for curlx_http_cancel), never NULL: a request
 * that cannot start (no libcurl) ends through on_done on the next loop turn. */
struct curlx_http_req *curlx_http_request(struct curlx_http *h, const struct curlx_http_opts *o);
void curlx_http_cancel(struct curlx_http_req *r);

#endif
