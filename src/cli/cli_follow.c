/*
 * cli_follow.c — following a stream live over SSE with exact resume (cli_follow, declared in
 * cli.h), for `agentd session tail`, `send --wait` and `agentd stream tail`.
 */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli/cli_http.h"
#include "cli/cli_sse.h"
#include "core/core.h"

#define CLI_FOLLOW_IDLE_S         120L  /* silence after which a live read reconnects */
#define CLI_FOLLOW_BACKOFF_MAX_MS 5000L /* longest pause between reconnects */

/* One cli_follow, across reconnects. */
struct cli__follow {
    const struct cli_follow_cb *cb;
    struct cli_sse *sse;
    char **offset; /* the caller's: the last confirmed offset */
    /* Per connection: */
    int checked;  /* the response headers were looked at */
    int binary;   /* data events are base64 (Stream-SSE-Data-Encoding: base64) */
    int controls; /* control events received */
    /* Outcomes that end the transfer: */
    int stopped;         /* a callback asked to stop, or the stream is closed */
    const char *failure; /* why the response cannot be followed, or NULL */
    /* Data events waiting for the control event that confirms their offset. */
    struct buf *pending;
    size_t npending, pending_cap;
};

static void cli__follow_drop_pending(struct cli__follow *follow)
{
    for (size_t i = 0; i < follow->npending; i++)
        buf_free(&follow->pending[i]);
    follow->npending = 0;
}

static int cli__follow_data(struct cli__follow *follow, const struct cli_sse_event *event)
{
    if (follow->npending == follow->pending_cap) {
        follow->pending_cap = follow->pending_cap ? follow->pending_cap * 2 : 8;
        follow->pending = xrealloc(follow->pending, follow->pending_cap * sizeof(*follow->pending));
    }
    struct buf *data = &follow->pending[follow->npending++];
    memset(data, 0, sizeof(*data));
    if (!follow->binary) {
        buf_append(data, event->data, event->data_len);
        return 0;
    }
    /* Base64 may be split over several data: lines, which the parser joined with '\n'. */
    size_t decoded_len = 0;
    buf_reserve(data, event->data_len);
    if (sodium_base642bin((unsigned char *)data->p, event->data_len, event->data, event->data_len, "\r\n",
                          &decoded_len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
        follow->failure = "a data event is not valid base64";
        return 1;
    }
    data->len = decoded_len;
    return 0;
}

static int cli__follow_control(struct cli__follow *follow, const struct cli_sse_event *event)
{
    json_t *control = json_loadb(event->data, event->data_len, 0, NULL);
    if (!json_is_object(control)) {
        json_decref(control);
        follow->failure = "a control event is not a JSON object";
        return 1;
    }
    const char *next = json_string_value(json_object_get(control, "streamNextOffset"));
    if (next != NULL && strcmp(next, *follow->offset) != 0) {
        free(*follow->offset);
        *follow->offset = xstrdup(next);
    }
    int closed = json_is_true(json_object_get(control, "streamClosed"));
    int up_to_date = closed || json_is_true(json_object_get(control, "upToDate"));
    json_decref(control);
    follow->controls++;

    const struct cli_follow_cb *cb = follow->cb;
    int stop = 0;
    for (size_t i = 0; i < follow->npending && !stop; i++)
        stop = cb->on_data(cb->arg, follow->pending[i].p, follow->pending[i].len, *follow->offset);
    cli__follow_drop_pending(follow);
    if (!stop && cb->on_control != NULL)
        stop = cb->on_control(cb->arg, *follow->offset, up_to_date, closed);
    follow->stopped = stop || closed;
    return follow->stopped;
}

static int cli__follow_event(void *arg, const struct cli_sse_event *event)
{
    struct cli__follow *follow = arg;
    if (strcmp(event->type, "data") == 0)
        return cli__follow_data(follow, event);
    if (strcmp(event->type, "control") == 0)
        return cli__follow_control(follow, event);
    return 0; /* event types we do not know are skipped, for forward compatibility */
}

static int cli__follow_body(void *arg, const struct cli_http_response *resp, const char *p, size_t n)
{
    struct cli__follow *follow = arg;
    if (!follow->checked) {
        const char *type = cli_http_header(resp, "Content-Type");
        const char *encoding = cli_http_header(resp, "Stream-SSE-Data-Encoding");
        size_t type_len = type != NULL ? strcspn(type, "; \t") : 0;
        follow->checked = 1;
        follow->binary = encoding != NULL && strcasecmp(encoding, "base64") == 0;
        if (type_len != strlen("text/event-stream") ||
            strncasecmp(type, "text/event-stream", type_len) != 0) {
            follow->failure = "the server did not answer with an event stream";
            return 1;
        }
    }
    int rc = cli_sse_feed(follow->sse, p, n);
    if (rc < 0)
        follow->failure = "an event is too large";
    return rc;
}

static void cli__sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int cli_follow(struct cli_http *http, const char *what, const char *url_path, char **offset,
               const struct cli_follow_cb *cb)
{
    struct cli__follow follow = {.cb = cb, .offset = offset};
    struct cli_http_response resp = {0};
    struct buf url = {0};
    long backoff_ms = 0;
    int status = CLI_EXIT_OK, connected = 0, reported_outage = 0;

    follow.sse = cli_sse_new(cli__follow_event, &follow);
    for (;;) {
        cli_sse_reset(follow.sse);
        cli__follow_drop_pending(&follow);
        follow.checked = follow.binary = follow.controls = 0;
        buf_reset(&url);
        buf_puts(&url, url_path);
        buf_puts(&url, "?offset=");
        cli_http_path_escape(&url, *offset);
        buf_puts(&url, "&live=sse");
        struct cli_http_request req = {
            .method = "GET",
            .path = url.p,
            .headers = (const char *const[]){"Accept: text/event-stream", NULL},
            .on_body = cli__follow_body,
            .arg = &follow,
            .idle_timeout_s = CLI_FOLLOW_IDLE_S,
        };
        int rc = cli_http_request(http, &req, &resp);

        if (follow.stopped)
            break;
        if (follow.failure != NULL) {
            fprintf(stderr, "agentd: %s: %s\n", what, follow.failure);
            status = CLI_EXIT_HTTP;
            break;
        }
        if (rc == 0 && (resp.status < 200 || resp.status >= 300)) {
            status = cli_http_report(http, what, rc, &resp);
            if (status == CLI_EXIT_OK) /* a 3xx we did not follow */
                status = CLI_EXIT_HTTP;
            break;
        }
        if (rc < 0 && !connected && !follow.checked) {
            status = cli_http_report(http, what, rc, &resp);
            break;
        }
        connected = connected || follow.checked;
        if (rc < 0 && !reported_outage) {
            fprintf(stderr, "agentd: %s: %s; reconnecting from offset %s\n", what, cli_http_error(http),
                    *offset);
            reported_outage = 1;
        } else if (rc == 0) {
            reported_outage = 0;
        }
        /* The server ends live responses now and then (and may restart): resume from the last
         * confirmed offset, at once if this connection was useful, else with a growing pause. */
        if (follow.controls > 0)
            backoff_ms = 0;
        else
            backoff_ms = backoff_ms == 0 ? 250 : backoff_ms * 2;
        if (backoff_ms > CLI_FOLLOW_BACKOFF_MAX_MS)
            backoff_ms = CLI_FOLLOW_BACKOFF_MAX_MS;
        if (backoff_ms > 0)
            cli__sleep_ms(backoff_ms);
    }
    cli__follow_drop_pending(&follow);
    free(follow.pending);
    cli_sse_free(follow.sse);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}
