/*
 * cli_sse.c — incremental text/event-stream parser (see cli_sse.h for the rules it follows).
 *
 * State: `line` accumulates the current, unterminated line; `data` and `type` accumulate the event
 * being built. `after_cr` remembers that the previous feed ended with CR, so an LF that starts the
 * next feed is not taken for a second (blank) line.
 */
#include "cli/cli_sse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

struct cli_sse {
    cli_sse_event_cb cb;
    void *arg;
    struct buf line;
    struct buf data;
    struct buf type;
    struct buf last_id;
    long retry_ms;
    int after_cr;
    int seen_data; /* a `data` field arrived for the event being built */
    int bom_checked;
};

struct cli_sse *cli_sse_new(cli_sse_event_cb cb, void *arg)
{
    struct cli_sse *sse = xcalloc(1, sizeof(*sse));
    sse->cb = cb;
    sse->arg = arg;
    sse->retry_ms = -1;
    return sse;
}

void cli_sse_free(struct cli_sse *sse)
{
    if (sse == NULL)
        return;
    buf_free(&sse->line);
    buf_free(&sse->data);
    buf_free(&sse->type);
    buf_free(&sse->last_id);
    free(sse);
}

void cli_sse_reset(struct cli_sse *sse)
{
    buf_reset(&sse->line);
    buf_reset(&sse->data);
    buf_reset(&sse->type);
    sse->after_cr = 0;
    sse->seen_data = 0;
    sse->bom_checked = 0;
}

long cli_sse_retry_ms(const struct cli_sse *sse) { return sse->retry_ms; }

/* A blank line: hand the event over (if it had data) and start a new one. */
static int cli_sse__dispatch(struct cli_sse *sse)
{
    int rc = 0;
    if (sse->seen_data) {
        size_t len = sse->data.len;
        if (len > 0 && sse->data.p[len - 1] == '\n')
            len--; /* every data line appended a '\n'; the last one is not part of the payload */
        struct cli_sse_event event = {
            .type = sse->type.len > 0 ? sse->type.p : "message",
            .data = len > 0 ? sse->data.p : "",
            .data_len = len,
            .last_id = sse->last_id.len > 0 ? sse->last_id.p : "",
        };
        if (len > 0)
            sse->data.p[len] = '\0';
        rc = sse->cb(sse->arg, &event);
    }
    buf_reset(&sse->data);
    buf_reset(&sse->type);
    sse->seen_data = 0;
    return rc;
}

static void cli_sse__field(struct cli_sse *sse, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon != NULL ? (size_t)(colon - line) : len;
    const char *value = colon != NULL ? colon + 1 : line + len;
    size_t value_len = (size_t)(line + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }

#define FIELD_IS(lit) (name_len == sizeof(lit) - 1 && memcmp(line, lit, name_len) == 0)
    if (FIELD_IS("data")) {
        buf_append(&sse->data, value, value_len);
        buf_append(&sse->data, "\n", 1);
        sse->seen_data = 1;
    } else if (FIELD_IS("event")) {
        buf_reset(&sse->type);
        buf_append(&sse->type, value, value_len);
    } else if (FIELD_IS("id")) {
        if (memchr(value, '\0', value_len) == NULL) {
            buf_reset(&sse->last_id);
            buf_append(&sse->last_id, value, value_len);
        }
    } else if (FIELD_IS("retry")) {
        long ms = 0;
        size_t i = 0;
        for (; i < value_len && value[i] >= '0' && value[i] <= '9' && ms < 100000000; i++)
            ms = ms * 10 + (value[i] - '0');
        if (i == value_len && value_len > 0)
            sse->retry_ms = ms;
    }
#undef FIELD_IS
    /* Any other field name is ignored, as the format requires. */
}

static int cli_sse__line(struct cli_sse *sse, const char *line, size_t len)
{
    if (len == 0)
        return cli_sse__dispatch(sse);
    if (line[0] != ':')
        cli_sse__field(sse, line, len);
    if (sse->data.len > CLI_SSE_MAX_EVENT)
        return -EMSGSIZE;
    return 0;
}

int cli_sse_feed(struct cli_sse *sse, const char *p, size_t n)
{
    const char *end = p + n;

    while (p < end) {
        if (!sse->bom_checked) {
            /* The BOM may itself arrive split; wait until three bytes (or a mismatch) are known. */
            static const char bom[] = "\xEF\xBB\xBF";
            size_t have = sse->line.len;
            size_t take = 0;
            while (have + take < 3 && p + take < end && p[take] == bom[have + take])
                take++;
            if (have + take == 3) {
                buf_reset(&sse->line);
                p += take;
                sse->bom_checked = 1;
                continue;
            }
            if (p + take == end) { /* still a BOM prefix: keep it and wait for more */
                buf_append(&sse->line, p, take);
                return 0;
            }
            sse->bom_checked = 1; /* not a BOM: the bytes kept so far are ordinary line bytes */
        }
        if (sse->after_cr) {
            sse->after_cr = 0;
            if (*p == '\n') {
                p++;
                continue;
            }
        }
        const char *eol = p;
        while (eol < end && *eol != '\n' && *eol != '\r')
            eol++;
        if (eol == end) {
            buf_append(&sse->line, p, (size_t)(end - p));
            if (sse->line.len > CLI_SSE_MAX_EVENT)
                return -EMSGSIZE;
            return 0;
        }
        int rc;
        if (sse->line.len > 0) {
            buf_append(&sse->line, p, (size_t)(eol - p));
            rc = cli_sse__line(sse, sse->line.p, sse->line.len);
            buf_reset(&sse->line);
        } else {
            rc = cli_sse__line(sse, p, (size_t)(eol - p));
        }
        if (*eol == '\r')
            sse->after_cr = 1;
        p = eol + 1;
        if (rc != 0)
            return rc;
    }
    return 0;
}
