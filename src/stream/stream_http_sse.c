/*
 * stream_http_sse — SSE readers of the Durable Streams resource (GET with live=sse): one data
 * event per chunk, control events with the next offset and cursor, heartbeats, periodic closes.
 * Readers at one offset share the chunk's read and its encoding (struct sh_frame, struct sh_fill).
 * Their per-request state is stream_http.c's struct sh_req (freed at the request's dispose).
 */
#include "http/http.h"
#include "stream/stream.h"
#include "stream/stream_http_int.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ================= GET: SSE ================= */

static void sh__sse_lines(struct buf *out, const char *p, size_t n)
{
    /* One data: line per line of the payload; CR, LF and CRLF all end a line, which also keeps a
     * payload from injecting its own SSE fields. */
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '\n' || p[i] == '\r') {
            buf_puts(out, "data:");
            buf_append(out, p + start, i - start);
            buf_append(out, "\n", 1);
            if (i < n && p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            start = i + 1;
        }
    }
}

static int sh__binary(const char *ct)
{
    return strncasecmp(ct, "text/", 5) != 0 && strncasecmp(ct, "application/json", 16) != 0;
}

static void sh__sse_control(struct sh_req *r, struct stream *st, struct buf *out, int up_to_date, int closed)
{
    char o[STREAM_OFFSET_LEN + 1], c[32];
    stream_offset_format(r->offset, o);
    buf_printf(out, "event: control\ndata:{\"streamNextOffset\":\"%s\"", o);
    if (closed) {
        buf_puts(out, ",\"streamClosed\":true,\"upToDate\":true");
    } else {
        sh__cursor(r->client_cursor, c);
        buf_printf(out, ",\"streamCursor\":\"%s\"", c);
        if (up_to_date)
            buf_puts(out, ",\"upToDate\":true");
    }
    buf_puts(out, "}\n\n");
}

/* The control event for r, now at r->offset: shared (sh->ctl) when r sent no cursor, else built in
 * sh->scratch. Valid until the next call. */
static const struct buf *sh__sse_control_text(struct sh_req *r, struct stream *st, int up_to_date, int closed)
{
    struct stream_http *sh = r->sh;
    if (r->client_cursor && *r->client_cursor) {
        buf_reset(&sh->scratch);
        sh__sse_control(r, st, &sh->scratch, up_to_date, closed);
        return &sh->scratch;
    }
    struct sh_ctl *c = &sh->ctl;
    int64_t id, created, interval = (clock_wall_ms() - SH_CURSOR_EPOCH_MS) / SH_CURSOR_INTERVAL_MS;
    int flags = (up_to_date ? 1 : 0) | (closed ? 2 : 0);
    stream_identity(st, &id, &created);
    if (c->text.len && c->id == id && c->created == created && c->offset == r->offset &&
        c->interval == interval && c->flags == flags)
        return &c->text;
    buf_reset(&c->text);
    sh__sse_control(r, st, &c->text, up_to_date, closed);
    c->id = id;
    c->created = created;
    c->offset = r->offset;
    c->interval = interval;
    c->flags = flags;
    return &c->text;
}

/* Encodes a read into the shared frame. */
static void sh__sse_frame_set(struct stream_http *sh, struct stream_read_done *d)
{
    struct sh_frame *f = &sh->frame;
    if (d->json)
        stream_json_wrap(&d->data);
    buf_reset(&f->event);
    buf_puts(&f->event, "event: data\n");
    if (sh__binary(d->content_type)) {
        size_t cap = sodium_base64_ENCODED_LEN(d->data.len, sodium_base64_VARIANT_ORIGINAL);
        char *b64 = xmalloc(cap);
        sodium_bin2base64(b64, cap, (const unsigned char *)d->data.p, d->data.len,
                          sodium_base64_VARIANT_ORIGINAL);
        sh__sse_lines(&f->event, b64, strlen(b64));
        free(b64);
    } else {
        sh__sse_lines(&f->event, d->data.p, d->data.len);
    }
    buf_append(&f->event, "\n", 1);
    f->id = d->id;
    f->created = d->created;
    f->from = d->from;
    f->to = d->next;
}

static void sh__sse_pump(struct sh_req *r);

/* A frame read completed: the frame is set (unless it failed) and its waiters go on. */
static void sh__sse_filled(struct stream_read_done *d, void *arg)
{
    struct sh_fill *fl = arg;
    struct stream_http *sh = fl->sh;
    struct sh_fill **p = &sh->fills;
    while (*p != fl)
        p = &(*p)->next;
    *p = fl->next;
    int ok = d->rc == 0 && d->next > d->from;
    if (ok)
        sh__sse_frame_set(sh, d);
    struct sh_req *w = fl->waiters;
    free(fl);
    for (struct sh_req *x = w; x; x = x->fill_next) { /* none points at fl any more */
        x->fill = NULL;
        x->frame_failed = !ok;
    }
    while (w) {
        struct sh_req *next = w->fill_next;
        w->fill_next = NULL;
        if (!w->pumping)
            sh__sse_pump(w);
        w = next;
    }
}

/* Makes r wait for the frame at r->offset of st: joins the fill of it in flight, or starts one
 * (which may complete before this returns). */
static void sh__sse_fill(struct sh_req *r, struct stream *st)
{
    struct stream_http *sh = r->sh;
    int64_t id, created;
    stream_identity(st, &id, &created);
    struct sh_fill *fl = sh->fills;
    while (fl && !(fl->id == id && fl->created == created && fl->from == r->offset))
        fl = fl->next;
    int start = fl == NULL;
    if (start) {
        fl = xcalloc(1, sizeof *fl);
        *fl = (struct sh_fill){.next = sh->fills, .sh = sh, .id = id, .created = created, .from = r->offset};
        sh->fills = fl;
    }
    r->fill = fl;
    r->fill_next = fl->waiters;
    fl->waiters = r;
    if (start) {
        struct stream_read *rd =
            stream_read_start(sh->ss, st, r->offset, sh->cfg.read_chunk, sh__sse_filled, fl);
        if (rd) /* else fl is gone already */
            fl->rd = rd;
    }
}

/* The data event for [r->offset, ...) of st: from the shared frame when it matches, else read into
 * it. NULL while r waits for the read (r->fill), or when the store could not be read. */
static const struct sh_frame *sh__sse_frame(struct sh_req *r, struct stream *st)
{
    struct sh_frame *f = &r->sh->frame;
    int64_t id, created;
    stream_identity(st, &id, &created);
    for (int tries = 0; tries < 2; tries++) {
        if (f->event.len && f->id == id && f->created == created && f->from == r->offset &&
            f->to <= stream_tail(st))
            return f;
        if (tries || r->frame_failed)
            break;
        sh__sse_fill(r, st);
    }
    return NULL;
}

static void sh__sse_pump_now(struct sh_req *r, struct stream *st, struct http_req *req);

/* Sends what the reader has not seen yet, one chunk per drain, then waits for more; a chunk not in
 * the shared frame is read first (the reader waits for it, the loop does not). */
static void sh__sse_pump(struct sh_req *r)
{
    struct stream *st = r->sub.stream;
    struct http_req *req = r->req;
    if (req == NULL || st == NULL || r->fill)
        return;
    r->pumping = 1;
    sh__sse_pump_now(r, st, req);
    r->pumping = 0;
}

static void sh__sse_pump_now(struct sh_req *r, struct stream *st, struct http_req *req)
{
    while (http_res_stream_queued(req) == 0) {
        int64_t tail = stream_tail(st);
        int closed_now = stream_closed(st);
        if (r->offset < tail) {
            const struct sh_frame *f = sh__sse_frame(r, st);
            if (f == NULL && r->fill)
                return; /* sh__sse_filled pumps again */
            if (f == NULL) {
                http_res_stream_abort(req);
                stream_unsubscribe(&r->sub);
                return;
            }
            r->offset = f->to;
            int at_tail = f->to >= tail;
            const struct buf *ctl = sh__sse_control_text(r, st, at_tail, at_tail && closed_now);
            r->control_due = 0;
            int rc = http_res_stream_write2(req, f->event.p, f->event.len, ctl->p, ctl->len);
            if (rc != 0) {
                stream_unsubscribe(&r->sub);
                return;
            }
            if (at_tail && closed_now) {
                stream_unsubscribe(&r->sub);
                http_res_stream_end(req);
                return;
            }
            continue;
        }
        /* At the tail. */
        if (closed_now || r->control_due) {
            const struct buf *ctl = sh__sse_control_text(r, st, 1, closed_now);
            r->control_due = 0;
            int rc = http_res_stream_write(req, ctl->p, ctl->len);
            if (rc != 0 || closed_now) {
                stream_unsubscribe(&r->sub);
                if (rc == 0)
                    http_res_stream_end(req);
                return;
            }
        }
        return;
    }
}

static void sh__sse_event(struct stream_sub *sub, enum stream_event ev)
{
    struct sh_req *r = sub->arg;
    if (r->req == NULL)
        return;
    if (ev == STREAM_EV_GONE || ev == STREAM_EV_SHUTDOWN || ev == STREAM_EV_MOVED) {
        /* clients reconnect from their last streamNextOffset (MOVED: to the shard's new owner) */
        stream_unsubscribe(&r->sub);
        http_res_stream_end(r->req);
        return;
    }
    sh__sse_pump(r);
}

static void sh__sse_drain(struct http_req *req, void *arg) { sh__sse_pump(arg); }

static void sh__sse_tick(uv_timer_t *t)
{
    struct sh_req *r = t->data;
    if (r->req == NULL || r->sub.stream == NULL)
        return;
    if ((clock_mono_us() - r->started_us) / 1000 >= r->sh->cfg.sse_max_ms) {
        /* Close periodically so that proxies and CDNs can collapse reconnects; clients resume. */
        stream_unsubscribe(&r->sub);
        http_res_stream_end(r->req);
        return;
    }
    if (http_res_stream_queued(r->req) == 0) {
        /* Heartbeat: also how a parked HTTP/1 connection notices its client has gone. */
        r->control_due = 1;
        sh__sse_pump(r);
    }
}

void sh__sse(struct stream_http *sh, struct http_req *req, struct stream *st, int64_t from, char *cursor)
{
    struct sh_req *r = sh__state(sh, req, SH_SSE);
    r->offset = from;
    r->client_cursor = cursor;
    r->control_due = 1;
    http_res_header(req, "Content-Type", "text/event-stream");
    http_res_header(req, "Cache-Control", "no-cache, no-store");
    http_res_header(req, "X-Accel-Buffering", "no");
    if (sh__binary(stream_content_type(st)))
        http_res_header(req, "Stream-SSE-Data-Encoding", "base64");
    http_res_stream_start(req, 200, sh__sse_drain, r);
    r->sub.cb = sh__sse_event;
    stream_subscribe(st, &r->sub);
    uint64_t tick = sh->cfg.long_poll_timeout_ms ? sh->cfg.long_poll_timeout_ms : 15000;
    sh__timer(r, sh__sse_tick, tick, tick);
    sh__sse_pump(r);
}

void sh__sse_leave(struct sh_req *r)
{
    if (r->fill == NULL)
        return;
    /* leaves the fill's waiters; the fill goes on for the others (and the shared frame) */
    struct sh_req **w = &r->fill->waiters;
    while (*w != r)
        w = &(*w)->fill_next;
    *w = r->fill_next;
    r->fill = NULL;
}

void sh__sse_free(struct stream_http *sh)
{
    while (sh->fills) { /* their readers are gone: the reads need not answer */
        struct sh_fill *fl = sh->fills;
        sh->fills = fl->next;
        stream_read_cancel(fl->rd);
        free(fl);
    }
    buf_free(&sh->frame.event);
    buf_free(&sh->ctl.text);
    buf_free(&sh->scratch);
}
