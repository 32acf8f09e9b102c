/*
 * cli_http — the HTTP client the `agentd` client subcommands share: one request at a time against one
 * server, over a kept-alive connection, with either a buffered body or a streaming body callback
 * (for SSE and long reads). A thin wrapper around libcurl; no libcurl type appears here.
 *
 * Invariants:
 *   - requests are synchronous: cli_http_request returns when the whole response has been read, the
 *     body callback asked to stop, or the transfer failed;
 *   - a response's header values and body stay valid until the response is reset or freed, or is
 *     reused by another cli_http_request;
 *   - a non-2xx response's body is always buffered (never streamed), so callers can report the
 *     server's {"error":{"code","message"}} with cli_http_report.
 */
#ifndef AGENTD_CLI_HTTP_H
#define AGENTD_CLI_HTTP_H

#include <stddef.h>

#include "core/core.h"

struct cli_http;
struct cli_http_response;

/* Streaming body callback: called with each piece of a 2xx response body as it arrives. resp carries
 * the status and headers already. Return 0 to continue; a nonzero value aborts the transfer and
 * cli_http_request returns -ECANCELED. */
typedef int (*cli_http_body_cb)(void *arg, const struct cli_http_response *resp, const char *p, size_t n);

struct cli_http_request {
    const char *method; /* "GET", "HEAD", "PUT", "POST", "DELETE", ... */
    const char *path;   /* appended to the server URL; starts with '/', may carry a query */
    /* Extra request headers as "Name: value" strings, NULL-terminated; NULL for none. Borrowed. */
    const char *const *headers;
    const void *body; /* borrowed; NULL with body_len 0 sends no body (Content-Length: 0 for PUT/POST) */
    size_t body_len;
    cli_http_body_cb on_body; /* NULL: buffer the body in the response */
    void *arg;
    long timeout_ms;     /* whole-request limit; 0 for none (live reads) */
    long idle_timeout_s; /* abort when nothing arrives for this long; 0 for none */
};

#define CLI_HTTP_MAX_HEADERS 64

struct cli_http_header {
    char *name; /* owned by the response */
    char *value;
};

/* A response. Zero-initialised is empty and valid; release with cli_http_response_reset. */
struct cli_http_response {
    long status; /* 0 until a status line arrives */
    struct cli_http_header headers[CLI_HTTP_MAX_HEADERS];
    int nheaders;
    struct buf body; /* the buffered body (empty when streamed to on_body) */
};

/* A client for server (a base URL such as "http://127.0.0.1:4437"; a trailing '/' is ignored).
 * token, when not NULL, is sent as "Authorization: Bearer <token>". Both are copied. Free with
 * cli_http_free. The first call loads libcurl; when it is not installed this prints how to install
 * it and exits with CLI_EXIT_UNREACHABLE (2), since no command can do anything without it. */
struct cli_http *cli_http_new(const char *server, const char *token);
void cli_http_free(struct cli_http *http);

/*
 * Performs one request; resp is reset first. Returns 0 when an HTTP response was received (whatever
 * its status), or a negative errno: -ECONNREFUSED / -EHOSTUNREACH when the server could not be
 * reached, -ETIMEDOUT, -ECONNRESET when the connection broke mid-response, -ECANCELED when on_body
 * stopped the transfer, -EIO otherwise. cli_http_error tells the details.
 */
int cli_http_request(struct cli_http *http, const struct cli_http_request *req,
                     struct cli_http_response *resp) CORE_UNUSED_RESULT;
/* A human description of the last failure of cli_http_request (borrowed until the next request). */
const char *cli_http_error(const struct cli_http *http);
/* The server base URL, without a trailing '/' (borrowed for the client's life). */
const char *cli_http_server(const struct cli_http *http);

/* The value of the last header called name (case-insensitive), or NULL. Borrowed from resp. */
const char *cli_http_header(const struct cli_http_response *resp, const char *name);
/* Frees what resp owns and empties it. */
void cli_http_response_reset(struct cli_http_response *resp);

/* Percent-encodes s for use as a URL path (keeps '/' and RFC 3986 unreserved characters) and appends
 * it to out. */
void cli_http_path_escape(struct buf *out, const char *s);

/* The enum cli_exit status for an HTTP status code (2xx and 3xx map to CLI_EXIT_OK). */
int cli_http_exit_for_status(long status);
/* The enum cli_exit status for a negative errno from cli_http_request. */
int cli_http_exit_for_error(int rc);
/*
 * Reports a failed request on stderr as "agentd: <what>: <message>" and returns its exit status:
 * rc < 0 reports the transport error; otherwise the server's JSON error message (or its plain-text
 * body, or the status line when the body is empty). Returns CLI_EXIT_OK, printing nothing, when
 * rc == 0 and the status is 2xx/3xx.
 */
int cli_http_report(const struct cli_http *http, const char *what, int rc,
                    const struct cli_http_response *resp);
/* Extracts error.message (or error.code) from a JSON error body into out; returns 0 or -EINVAL. */
int cli_http_error_message(const char *body, size_t len, struct buf *out) CORE_UNUSED_RESULT;

#endif
