/*
 * cli_follow.c — following a stream live over SSE with exact resume (cli_follow, declared in
 * cli.h), for `agentd session tail`, `send --wait` and `agentd stream tail`: a reader that turns
 * one response's events into confirmed content (cli_follow.h), and the loop that reconnects.
 */
#include "cli/cli.h"
#include "cli/cli_follow.h"

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

/* One cli_follow's reading state, across reconnects (cli_follow.h). */
struct cli_follow_reader {
    const struct cli_follow_cb *cb;
    struct cli_sse *sse;
    char **offset; /* the caller's: the last confirmed offset */
    /* Per response: */
    int binary;   /* data events are base64 (Stream-SSE-Data-Encoding: base64) */
    int controls; /* control events received */
    /* Outcomes that end the transfer: */
    int stopped;         /* a callback asked to stop, or the stream is closed */
    const char *failure; /* why the response cannot be followed, or NULL */
    /* Data events waiting for the control event that confirms their offset. */
    struct buf *pending;
    size_t npending, pending_cap;
};

/* One cli_follow: a reader and what the reconnect loop needs of one response. */
struct cli_follow {
    struct cli_follow_reader *reader;
    int checked;         /* the response headers were looked at */
    const char *failure; /* the response is not an event stream */
};

static void cli_follow__drop_pending(struct cli_follow_reader *follow)
{
    for (size_t i = 0; i < follow->npending; i++)
        buf_free(&follow->pending[i]);
    follow->npending = 0;
}

static int cli_follow__data(struct cli_follow_reader *follow, const struct cli_sse_event *event)
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

static int cli_follow__control(struct cli_follow_reader *follow, const struct cli_sse_event *event)
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
    cli_follow__drop_pending(follow);
    if (!stop && cb->on_control != NULL)
        stop = cb->on_control(cb->arg, *follow->offset, up_to_date, closed);
    follow->stopped = stop || closed;
    return follow->stopped;
}

static int cli_follow__event(void *arg, const struct cli_sse_event *event)
{
    struct cli_follow_reader *follow = arg;
    if (strcmp(event->type, "data") == 0)
        return cli_follow__data(follow, event);
    if (strcmp(event->type, "control") == 0)
        return cli_follow__control(follow, event);
    return 0; /* event types we do not know are skipped, for forward compatibility */
}

struct cli_follow_reader *cli_follow_reader_new(const struct cli_follow_cb *cb, char **offset)
{
    struct cli_follow_reader *r = xcalloc(1, sizeof *r);
    r->cb = cb;
    r->offset = offset;
    r->sse = cli_sse_new(cli_follow__event, r);
    return r;
}

void cli_follow_reader_free(struct cli_follow_reader *r)
{
    if (r == NULL)
        return;
    cli_follow__drop_pending(r);
    free(r->pending);
    cli_sse_free(r->sse);
    free(r);
}

void cli_follow_reader_start(struct cli_follow_reader *r, int binary)
{
    cli_sse_reset(r->sse);
    cli_follow__drop_pending(r);
    r->binary = binary;
    r->controls = 0;
    r->failure = NULL;
}

int cli_follow_reader_feed(struct cli_follow_reader *r, const char *p, size_t n)
{
    if (r->stopped || r->failure)
        return 1;
    int rc = cli_sse_feed(r->sse, p, n);
    if (rc < 0)
        r->failure = "an event is too large";
    return rc != 0;
}

int cli_follow_reader_stopped(const struct cli_follow_reader *r) { return r->stopped; }
const char *cli_follow_reader_failure(const struct cli_follow_reader *r) { return r->failure; }

/* The response body callback: checks the headers once, then reads. */
static int cli_follow__body(void *arg, const struct cli_http_response *resp, const char *p, size_t n)
{
    struct cli_follow *f = arg;
    if (!f->checked) {
        const char *type = cli_http_header(resp, "Content-Type");
        const char *encoding = cli_http_header(resp, "Stream-SSE-Data-Encoding");
        size_t type_len = type != NULL ? strcspn(type, "; \t") : 0;
        f->checked = 1;
        cli_follow_reader_start(f->reader, encoding != NULL && strcasecmp(encoding, "base64") == 0);
        if (type_len != strlen("text/event-stream") ||
            strncasecmp(type, "text/event-stream", type_len) != 0) {
            f->failure = "the server did not answer with an event stream";
            return 1;
        }
    }
    return cli_follow_reader_feed(f->reader, p, n);
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
    struct cli_follow f = {.reader = cli_follow_reader_new(cb, offset)};
    struct cli_http_response resp = {0};
    struct buf url = {0};
    long backoff_ms = 0;
    int status = CLI_EXIT_OK, connected = 0, reported_outage = 0;

    for (;;) {
        cli_follow_reader_start(f.reader, 0);
        f.checked = 0;
        buf_reset(&url);
        buf_puts(&url, url_path);
        buf_puts(&url, "?offset=");
        cli_http_path_escape(&url, *offset);
        buf_puts(&url, "&live=sse");
        struct cli_http_request req = {
            .method = "GET",
            .path = url.p,
            .headers = (const char *const[]){"Accept: text/event-stream", NULL},
            .on_body = cli_follow__body,
            .arg = &f,
            .idle_timeout_s = CLI_FOLLOW_IDLE_S,
        };
        int rc = cli_http_request(http, &req, &resp);
        const char *failure = f.failure ? f.failure : cli_follow_reader_failure(f.reader);

        if (cli_follow_reader_stopped(f.reader))
            break;
        if (failure != NULL) {
            fprintf(stderr, "agentd: %s: %s\n", what, failure);
            status = CLI_EXIT_HTTP;
            break;
        }
        /* A stopping server answers 503 (shutting_down) until it is gone: once the stream has been
         * read, that is an outage like a refused connection, and following goes on after it. */
        int stopping = rc == 0 && resp.status == 503 && (connected || f.checked);
        if (rc == 0 && !stopping && (resp.status < 200 || resp.status >= 300)) {
            status = cli_http_report(http, what, rc, &resp);
            if (status == CLI_EXIT_OK) /* a 3xx we did not follow */
                status = CLI_EXIT_HTTP;
            break;
        }
        if (rc < 0 && !connected && !f.checked) {
            status = cli_http_report(http, what, rc, &resp);
            break;
        }
        connected = connected || f.checked;
        if ((rc < 0 || stopping) && !reported_outage) {
            fprintf(stderr, "agentd: %s: %s; reconnecting from offset %s\n", what,
                    stopping ? "the server is stopping" : cli_http_error(http), *offset);
            reported_outage = 1;
        } else if (rc == 0 && !stopping) {
            reported_outage = 0;
        }
        /* The server ends live responses now and then (and may restart): resume from the last
         * confirmed offset, at once if this connection was useful, else with a growing pause. */
        if (f.reader->controls > 0)
            backoff_ms = 0;
        else
            backoff_ms = backoff_ms == 0 ? 250 : backoff_ms * 2;
        if (backoff_ms > CLI_FOLLOW_BACKOFF_MAX_MS)
            backoff_ms = CLI_FOLLOW_BACKOFF_MAX_MS;
        if (backoff_ms > 0)
            cli__sleep_ms(backoff_ms);
    }
    cli_follow_reader_free(f.reader);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}
