/*
 * cli_http.c — the client subcommands' HTTP client, on one reused libcurl easy handle (see
 * cli_http.h).
 *
 * One handle per client keeps the connection alive between the requests of one command (a chunked
 * catch-up read, an append after a HEAD); curlx_easy_reset between requests clears options but keeps
 * that connection.
 */
#include "cli/cli_http.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "curlx/curlx.h"

struct cli_http {
    CURL *curl;
    char *server;      /* no trailing '/' */
    char *auth_header; /* "Authorization: Bearer ...", or NULL */
    char curl_error[CURL_ERROR_SIZE];
    char error[CURL_ERROR_SIZE + 128];
};

/* What the libcurl callbacks of one request share. Lives on cli_http_request's stack. */
struct cli_http__transfer {
    const struct cli_http_request *req;
    struct cli_http_response *resp;
    int cancelled; /* on_body asked to stop */
};

struct cli_http *cli_http_new(const char *server, const char *token)
{
    static int curl_ready;
    if (!curl_ready) {
        /* Single-threaded client: the first client loads and initialises libcurl for the process. */
        if (curlx_load() != 0) {
            fprintf(stderr, "agentd: %s (%s)\n", CURLX_MISSING_HINT, curlx_load_error());
            exit(CLI_EXIT_UNREACHABLE);
        }
        if (curlx_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            fprintf(stderr, "agentd: libcurl failed to initialise\n");
            abort();
        }
        curl_ready = 1;
    }
    struct cli_http *http = xcalloc(1, sizeof(*http));
    http->curl = curlx_easy_init();
    if (http->curl == NULL) {
        fprintf(stderr, "agentd: out of memory (curl_easy_init)\n");
        abort();
    }
    size_t len = strlen(server);
    while (len > 0 && server[len - 1] == '/')
        len--;
    http->server = xstrndup(server, len);
    if (token != NULL)
        http->auth_header = xasprintf("Authorization: Bearer %s", token);
    return http;
}

void cli_http_free(struct cli_http *http)
{
    if (http == NULL)
        return;
    curlx_easy_cleanup(http->curl);
    free(http->server);
    free(http->auth_header);
    free(http);
}

const char *cli_http_error(const struct cli_http *http) { return http->error; }

const char *cli_http_server(const struct cli_http *http) { return http->server; }

/* ---- Responses ---------------------------------------------------------------------------- */

void cli_http_response_reset(struct cli_http_response *resp)
{
    for (int i = 0; i < resp->nheaders; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    resp->nheaders = 0;
    resp->status = 0;
    buf_free(&resp->body);
}

const char *cli_http_header(const struct cli_http_response *resp, const char *name)
{
    for (int i = resp->nheaders - 1; i >= 0; i--)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

static int cli_http__is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* libcurl hands over one header line at a time, status lines included (also those of 1xx interim
 * responses and redirects, which start a fresh header set). */
static size_t cli_http__on_header(char *p, size_t size, size_t count, void *arg)
{
    struct cli_http__transfer *transfer = arg;
    struct cli_http_response *resp = transfer->resp;
    size_t n = size * count;

    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        long status = resp->status;
        cli_http_response_reset(resp);
        const char *space = memchr(p, ' ', n);
        resp->status = space != NULL ? strtol(space + 1, NULL, 10) : status;
        return n;
    }
    const char *colon = memchr(p, ':', n);
    if (colon == NULL || resp->nheaders == CLI_HTTP_MAX_HEADERS)
        return n; /* the blank line ending the headers, or more headers than we keep */
    size_t name_len = (size_t)(colon - p);
    const char *value = colon + 1;
    const char *end = p + n;
    while (value < end && cli_http__is_space(*value))
        value++;
    while (end > value && cli_http__is_space(end[-1]))
        end--;
    struct cli_http_header *header = &resp->headers[resp->nheaders++];
    header->name = xstrndup(p, name_len);
    header->value = xstrndup(value, (size_t)(end - value));
    return n;
}

static size_t cli_http__on_body(char *p, size_t size, size_t count, void *arg)
{
    struct cli_http__transfer *transfer = arg;
    size_t n = size * count;
    long status = transfer->resp->status;

    if (transfer->req->on_body != NULL && status >= 200 && status < 300) {
        if (transfer->req->on_body(transfer->req->arg, transfer->resp, p, n) != 0) {
            transfer->cancelled = 1;
            return 0; /* any short count makes libcurl abort with CURLE_WRITE_ERROR */
        }
        return n;
    }
    buf_append(&transfer->resp->body, p, n);
    return n;
}

/* ---- Requests ----------------------------------------------------------------------------- */

static int cli_http__errno(CURLcode code, int cancelled)
{
    switch (code) {
    case CURLE_OK: return 0;
    case CURLE_WRITE_ERROR: return cancelled ? -ECANCELED : -EIO;
    case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING: return -ECONNRESET;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return -EINVAL;
    default: return -EIO;
    }
}

static int cli_http__has_header(const char *const *headers, const char *name)
{
    size_t len = strlen(name);
    for (; headers != NULL && *headers != NULL; headers++)
        if (strncasecmp(*headers, name, len) == 0 && (*headers)[len] == ':')
            return 1;
    return 0;
}

int cli_http_request(struct cli_http *http, const struct cli_http_request *req,
                     struct cli_http_response *resp)
{
    CURL *curl = http->curl;
    struct curl_slist *headers = NULL;
    struct cli_http__transfer transfer = {.req = req, .resp = resp};
    int has_body = req->body != NULL || strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0;

    cli_http_response_reset(resp);
    http->curl_error[0] = '\0';
    http->error[0] = '\0';
    curlx_easy_reset(curl);

    char *url = xasprintf("%s%s", http->server, req->path);
    curlx_easy_setopt(curl, CURLOPT_URL, url);
    curlx_easy_setopt(curl, CURLOPT_ERRORBUFFER, http->curl_error);
    curlx_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curlx_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curlx_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curlx_easy_setopt(curl, CURLOPT_USERAGENT, "agentd-cli");
    curlx_easy_setopt(curl, CURLOPT_HEADERFUNCTION, cli_http__on_header);
    curlx_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
    curlx_easy_setopt(curl, CURLOPT_WRITEFUNCTION, cli_http__on_body);
    curlx_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
    if (req->timeout_ms > 0)
        curlx_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    if (req->idle_timeout_s > 0) {
        curlx_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curlx_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, req->idle_timeout_s);
    }

    if (strcmp(req->method, "HEAD") == 0) {
        curlx_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (has_body) {
        curlx_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curlx_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
        curlx_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
        /* libcurl would otherwise wait for "100 Continue" on large bodies and label every body
         * application/x-www-form-urlencoded, which a stream would take as its content type. */
        headers = curlx_slist_append(headers, "Expect:");
        if (!cli_http__has_header(req->headers, "Content-Type"))
            headers = curlx_slist_append(headers, "Content-Type:");
    } else if (strcmp(req->method, "GET") != 0) {
        curlx_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
    }
    for (const char *const *h = req->headers; h != NULL && *h != NULL; h++)
        headers = curlx_slist_append(headers, *h);
    if (http->auth_header != NULL)
        headers = curlx_slist_append(headers, http->auth_header);
    curlx_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

    CURLcode code = curlx_easy_perform(curl);
    int rc = cli_http__errno(code, transfer.cancelled);
    if (rc != 0 && rc != -ECANCELED)
        snprintf(http->error, sizeof(http->error), "%s %s: %s", req->method, url,
                 http->curl_error[0] != '\0' ? http->curl_error : curlx_easy_strerror(code));

    curlx_slist_free_all(headers);
    free(url);
    return rc;
}

void cli_http_path_escape(struct buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                   c == '.' || c == '_' || c == '~' || c == '/';
        if (keep) {
            buf_append(out, s, 1);
        } else {
            char escaped[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(out, escaped, 3);
        }
    }
}

/* ---- Exit statuses and error reports ------------------------------------------------------ */

int cli_http_exit_for_status(long status)
{
    if (status >= 200 && status < 400)
        return CLI_EXIT_OK;
    if (status == 404)
        return CLI_EXIT_NOT_FOUND;
    if (status == 409 || status == 410)
        return CLI_EXIT_CONFLICT;
    return CLI_EXIT_HTTP;
}

int cli_http_exit_for_error(int rc)
{
    if (rc == 0 || rc == -ECANCELED)
        return CLI_EXIT_OK;
    if (rc == -EINVAL)
        return CLI_EXIT_USAGE; /* the --server URL itself is unusable */
    return CLI_EXIT_UNREACHABLE;
}

int cli_http_error_message(const char *body, size_t len, struct buf *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *error = json_object_get(root, "error");
    const char *message = json_string_value(json_object_get(error, "message"));
    const char *code = json_string_value(json_object_get(error, "code"));
    int rc = -EINVAL;

    if (json_is_string(error)) /* tolerate {"error":"text"} from other servers */
        message = json_string_value(error);
    if (message != NULL || code != NULL) {
        buf_puts(out, message != NULL ? message : code);
        if (message != NULL && code != NULL)
            buf_printf(out, " (%s)", code);
        rc = 0;
    }
    json_decref(root);
    return rc;
}

int cli_http_report(const struct cli_http *http, const char *what, int rc,
                    const struct cli_http_response *resp)
{
    if (rc < 0) {
        if (rc == -ECANCELED)
            return CLI_EXIT_OK;
        fprintf(stderr, "agentd: %s: cannot reach the server: %s\n", what, cli_http_error(http));
        return cli_http_exit_for_error(rc);
    }
    int status = cli_http_exit_for_status(resp->status);
    if (status == CLI_EXIT_OK)
        return CLI_EXIT_OK;

    struct buf message = {0};
    if (cli_http_error_message(resp->body.p, resp->body.len, &message) != 0) {
        /* Not our JSON error: show the start of a plain body, on one line. */
        size_t len = resp->body.len < 300 ? resp->body.len : 300;
        for (size_t i = 0; i < len; i++) {
            char c = resp->body.p[i];
            buf_append(&message, (c == '\n' || c == '\r') ? " " : &c, 1);
        }
        while (message.len > 0 && cli_http__is_space(message.p[message.len - 1]))
            message.p[--message.len] = '\0';
    }
    if (message.len == 0) /* HEAD answers, and servers that send no body */
        buf_puts(&message, status == CLI_EXIT_NOT_FOUND ? "not found"
                           : resp->status == 409        ? "conflict"
                           : resp->status == 410        ? "gone"
                                                        : "request failed");
    fprintf(stderr, "agentd: %s: HTTP %ld: %s\n", what, resp->status, message.p);
    buf_free(&message);
    return status;
}
