/*
 * stream_http — Durable Streams over HTTP. See stream_http.h and ../../doc/ARCHITECTURE.md.
 *
 * Ownership: each request that outlives its handler (a write waiting for its commit, a long-poll,
 * an SSE reader) gets a struct sh_req, malloc'd because it may embed a libuv timer whose close is
 * asynchronous. The HTTP layer's dispose callback detaches it from the request; the timer's close
 * callback (or dispose itself, when there is no timer) frees it.
 */
#include "stream/stream_http.h"
#include "http/http.h"
#include "stream/stream.h"
#include "stream/stream_parse.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* 2024-10-09T00:00:00Z: the protocol's cursor epoch; cursors count 20-second intervals from it. */
#define SH_CURSOR_EPOCH_MS    1728432000000LL
#define SH_CURSOR_INTERVAL_MS 20000LL

/*
 * The last SSE data event built, shared by every reader at the same offset: with many readers at
 * the tail, one append is read from the store and encoded once, not once per reader.
 */
struct sh_frame {
    int64_t id, created; /* which stream incarnation */
    int64_t from, to;
    struct buf event; /* "event: data\n" + data lines + blank line */
};

/*
 * The last control event built for readers without a cursor of their own: the same for every such
 * reader at the same offset within one cursor interval, so a fan-out formats it once.
 */
struct sh_ctl {
    int64_t id, created, offset, interval;
    int flags;
    struct buf text;
};

/*
 * An SSE data frame being read (stream_read_start) and the readers waiting for it: readers at the
 * same offset of the same stream wait for one read, as they share its frame once it is read. The
 * fill is stream_http's, not a reader's: a reader that leaves only leaves its waiters list.
 */
struct sh_fill {
    struct sh_fill *next; /* stream_http.fills */
    struct stream_http *sh;
    int64_t id, created, from;
    struct stream_read *rd; /* in flight */
    struct sh_req *waiters; /* linked by sh_req.fill_next */
};

struct stream_http {
    struct streams *ss;
    uv_loop_t *loop;
    struct stream_http_config cfg;
    struct sh_frame frame;
    struct sh_fill *fills;
    struct sh_ctl ctl;
    struct buf scratch; /* a control event for one reader, copied out at once */
};

enum sh_mode {
    SH_READ, /* a catch-up read waiting for its bytes (stream_read_start) */
    SH_WRITE,
    SH_LONG_POLL,
    SH_SSE
};

struct sh_req {
    struct stream_http *sh;
    struct http_req *req; /* NULL once the request ended */
    enum sh_mode mode;
    struct stream_op op;
    struct stream_sub sub;
    uv_timer_t timer;
    int has_timer;
    int64_t offset;           /* next offset to deliver (live readers) */
    char *client_cursor;      /* borrowed from the request's memory */
    const char *content_type; /* PUT: the stream's content type to echo (request memory) */
    int control_due;          /* SSE: an up-to-date control event is owed */
    int live;                 /* SH_READ: answers a long-poll (cursor, no ETag) */
    struct stream_read *rd;   /* SH_READ, SH_LONG_POLL: the read in flight, cancelled at dispose */
    struct sh_fill *fill;     /* SSE: the frame read this reader waits for */
    struct sh_req *fill_next;
    int pumping;      /* SSE: inside sh__sse_pump (a fill that completes at once does not re-enter) */
    int frame_failed; /* SSE: the frame read it waited for failed */
    uint64_t started_us;
};

/* ================= small helpers ================= */

static void sh__offset_header(struct http_req *req, int64_t off)
{
    char o[STREAM_OFFSET_LEN + 1];
    stream_offset_format(off, o);
    http_res_header(req, "Stream-Next-Offset", o);
}

/* The cursor for a live response: the current interval, but always ahead of the client's. */
static void sh__cursor(const char *client, char out[32])
{
    int64_t now = (clock_wall_ms() - SH_CURSOR_EPOCH_MS) / SH_CURSOR_INTERVAL_MS;
    if (client && *client && strspn(client, "0123456789") == strlen(client) && strlen(client) < 18) {
        int64_t c = strtoll(client, NULL, 10);
        if (c >= now)
            now = c + 1 + (int64_t)randombytes_uniform(180);
    }
    snprintf(out, 32, "%" PRId64, now);
}

static const char *sh__header(struct http_req *req, const char *name, size_t *len)
{
    return http_req_header(req, name, len);
}

/* Copies a header's value as a string allocated with the request, or NULL. */
static char *sh__header_str(struct http_req *req, const char *name)
{
    size_t len;
    const char *v = sh__header(req, name, &len);
    if (v == NULL)
        return NULL;
    char *s = http_req_alloc(req, len + 1);
    memcpy(s, v, len);
    s[len] = '\0';
    return s;
}

static int sh__header_true(struct http_req *req, const char *name)
{
    size_t len;
    const char *v = sh__header(req, name, &len);
    return v && len == 4 && strncasecmp(v, "true", 4) == 0;
}

/* Maps a refusal from stream/ onto the protocol's status and headers. */
static void sh__respond_error(struct http_req *req, const struct stream_result *r)
{
    switch (r->status) {
    case STREAM_BAD_REQUEST: http_res_error(req, ERR_BAD_REQUEST, "%s", r->message); return;
    case STREAM_FENCED:
        http_res_headerf(req, "Producer-Epoch", "%" PRId64, r->producer_epoch);
        http_res_error(req, ERR_STALE_EPOCH, "%s", r->message);
        return;
    case STREAM_NOT_FOUND: http_res_error(req, ERR_NOT_FOUND, "%s", r->message); return;
    case STREAM_CLOSED:
        http_res_header(req, "Stream-Closed", "true");
        sh__offset_header(req, r->next_offset);
        http_res_error(req, ERR_STREAM_CLOSED, "%s", r->message);
        return;
    case STREAM_SEQ_GAP:
        http_res_headerf(req, "Producer-Expected-Seq", "%" PRId64, r->expected_seq);
        http_res_headerf(req, "Producer-Received-Seq", "%" PRId64, r->received_seq);
        http_res_error(req, ERR_SEQUENCE_GAP, "%s", r->message);
        return;
    case STREAM_CONFLICT: http_res_error(req, ERR_CONFLICT, "%s", r->message); return;
    case STREAM_GONE: http_res_error(req, ERR_GONE, "%s", r->message); return;
    case STREAM_STORE_ERROR:
        if (r->store_errno == -ENOSPC || r->store_errno == -EFBIG)
            http_res_error(req, ERR_STORAGE_FULL, "the write was not stored: no space left (%s)",
                           strerror(-r->store_errno));
        else
            http_res_error(req, errcode_for_store(r->store_errno), "the write was not stored (%s)",
                           strerror(r->store_errno ? -r->store_errno : EIO));
        return;
    default: http_res_error(req, ERR_INTERNAL, "unexpected outcome");
    }
}

/* ================= per-request state ================= */

static void sh__free_cb(uv_handle_t *h) { free(h->data); }

static void sh__dispose(void *p)
{
    struct sh_req *r = p;
    r->req = NULL;
    stream_unsubscribe(&r->sub);
    stream_op_cancel(r->sh->ss, &r->op);
    stream_read_cancel(r->rd);
    if (r->fill) { /* leaves the fill's waiters; the fill goes on for the others (or the frame) */
        struct sh_req **w = &r->fill->waiters;
        while (*w != r)
            w = &(*w)->fill_next;
        *w = r->fill_next;
    }
    if (r->has_timer) {
        uv_timer_stop(&r->timer);
        uv_close((uv_handle_t *)&r->timer, sh__free_cb);
    } else {
        free(r);
    }
}

static struct sh_req *sh__state(struct stream_http *sh, struct http_req *req, enum sh_mode mode)
{
    struct sh_req *r = xcalloc(1, sizeof *r);
    r->sh = sh;
    r->req = req;
    r->mode = mode;
    r->op.arg = r;
    r->sub.arg = r;
    r->started_us = clock_mono_us();
    http_req_set_data(req, r, sh__dispose);
    return r;
}

static void sh__timer(struct sh_req *r, uv_timer_cb cb, uint64_t first, uint64_t repeat)
{
    if (!r->has_timer) {
        uv_timer_init(r->sh->loop, &r->timer);
        r->timer.data = r;
        r->has_timer = 1;
    }
    uv_timer_start(&r->timer, cb, first, repeat);
}

/* The request a finished write answers, or NULL: when its client is gone, or when the write failed
 * (answered here with its error). STREAM_OK and also_ok are the statuses of success. */
static struct http_req *sh__done_req(struct stream_op *op, enum stream_status also_ok)
{
    struct sh_req *r = op->arg;
    if (r->req == NULL)
        return NULL;
    if (op->result.status != STREAM_OK && op->result.status != also_ok) {
        sh__respond_error(r->req, &op->result);
        return NULL;
    }
    return r->req;
}

/* ================= PUT: create or fork ================= */

static void sh__create_done(struct stream_op *op)
{
    struct sh_req *r = op->arg;
    struct http_req *req = sh__done_req(op, STREAM_CREATED);
    const struct stream_result *res = &op->result;
    if (req == NULL)
        return;
    size_t plen, hlen;
    const char *path = http_req_path(req, &plen);
    const char *host = http_req_authority(req, &hlen);
    if (res->status == STREAM_CREATED && hlen)
        http_res_headerf(req, "Location", "http://%.*s%.*s", (int)hlen, host, (int)plen, path);
    http_res_header(req, "Content-Type", r->content_type);
    sh__offset_header(req, res->next_offset);
    if (res->closed)
        http_res_header(req, "Stream-Closed", "true");
    http_res_send(req, res->status == STREAM_CREATED ? 201 : 200, NULL, 0);
}

static void sh__put(struct stream_http *sh, struct http_req *req, const char *path, size_t plen)
{
    struct stream_create_args a = {.ttl_s = -1, .expires_at_ms = -1};
    size_t tl, el, fl, ol, sl;
    const char *ttl = sh__header(req, "stream-ttl", &tl);
    const char *exp = sh__header(req, "stream-expires-at", &el);
    const char *from = sh__header(req, "stream-forked-from", &fl);
    const char *foff = sh__header(req, "stream-fork-offset", &ol);
    const char *fsub = sh__header(req, "stream-fork-sub-offset", &sl);

    if (ttl && exp)
        return http_res_error(req, ERR_BAD_REQUEST, "send Stream-TTL or Stream-Expires-At, not both");
    if (ttl && stream_parse_uint(ttl, tl, INT64_MAX / 1000, &a.ttl_s) != 0)
        return http_res_error(req, ERR_BAD_REQUEST, "Stream-TTL must be a non-negative integer of seconds");
    if (exp) {
        if (stream_parse_rfc3339(exp, el, &a.expires_at_ms) != 0)
            return http_res_error(req, ERR_BAD_REQUEST, "Stream-Expires-At must be an RFC 3339 timestamp");
        a.expires_at = sh__header_str(req, "stream-expires-at");
    }
    a.closed = sh__header_true(req, "stream-closed");
    a.content_type = sh__header_str(req, "content-type");
    if (fsub && !from)
        return http_res_error(req, ERR_BAD_REQUEST, "Stream-Fork-Sub-Offset needs Stream-Forked-From");
    if (foff && !from)
        return http_res_error(req, ERR_BAD_REQUEST, "Stream-Fork-Offset needs Stream-Forked-From");
    if (from) {
        /* Accept a full URL or a path; the stream's name is what follows /v1/stream/. */
        const char *p = from, *end = from + fl;
        const char *scheme = memmem(p, fl, "://", 3);
        if (scheme) {
            p = memchr(scheme + 3, '/', (size_t)(end - scheme - 3));
            if (p == NULL)
                return http_res_error(req, ERR_BAD_REQUEST, "Stream-Forked-From has no path");
        }
        size_t pl = (size_t)(end - p), prefix = strlen(STREAM_HTTP_PREFIX);
        if (pl >= prefix && memcmp(p, STREAM_HTTP_PREFIX, prefix) == 0)
            p += prefix, pl -= prefix;
        else if (pl && *p == '/')
            p++, pl--;
        const char *why = stream_parse_path(p, pl);
        if (why)
            return http_res_error(req, ERR_BAD_REQUEST, "Stream-Forked-From: %s", why);
        char *src = http_req_alloc(req, pl + 1);
        memcpy(src, p, pl);
        src[pl] = '\0';
        a.fork_from = src;
        if (foff) {
            char *o = sh__header_str(req, "stream-fork-offset");
            if (!strcmp(o, "-1"))
                a.fork_offset = 0;
            else if (stream_offset_parse(o, &a.fork_offset) != 0)
                return http_res_error(req, ERR_BAD_REQUEST, "Stream-Fork-Offset is not a valid offset");
            a.has_fork_offset = 1;
        }
        if (fsub) {
            if (stream_parse_uint(fsub, sl, INT64_MAX, &a.fork_sub) != 0)
                return http_res_error(req, ERR_BAD_REQUEST,
                                      "Stream-Fork-Sub-Offset must be a non-negative integer");
            if (a.fork_sub > 0 && !a.has_fork_offset)
                return http_res_error(req, ERR_BAD_REQUEST,
                                      "Stream-Fork-Sub-Offset needs Stream-Fork-Offset");
        }
    }
    a.body = http_req_body(req, &a.body_len);

    struct sh_req *r = sh__state(sh, req, SH_WRITE);
    r->op.cb = sh__create_done;
    stream_create(sh->ss, path, plen, &a, &r->op);
    if (!r->op.queued)
        return sh__respond_error(req, &r->op.result);
    /* Remember the content type to echo: the stream's, which a fork inherits. */
    enum stream_lookup how;
    struct stream *st = streams_lookup(sh->ss, path, plen, &how);
    const char *ct = st ? stream_content_type(st) : "application/octet-stream";
    char *copy = http_req_alloc(req, strlen(ct) + 1);
    strcpy(copy, ct);
    r->content_type = copy;
}

/* ================= POST: append and close ================= */

static void sh__append_done(struct stream_op *op)
{
    struct http_req *req = sh__done_req(op, STREAM_DUPLICATE);
    const struct stream_result *res = &op->result;
    if (req == NULL)
        return;
    if (res->has_producer) {
        http_res_headerf(req, "Producer-Epoch", "%" PRId64, res->producer_epoch);
        http_res_headerf(req, "Producer-Seq", "%" PRId64, res->producer_seq);
    }
    if (res->status == STREAM_OK || res->closed)
        sh__offset_header(req, res->next_offset);
    if (res->closed)
        http_res_header(req, "Stream-Closed", "true");
    /* 200 only when a producer's append stored data; close-only and duplicates are 204. */
    http_res_send(req, res->status == STREAM_OK && res->has_producer && res->stored ? 200 : 204, NULL, 0);
}

static void sh__post(struct stream_http *sh, struct http_req *req, struct stream *st)
{
    struct stream_append_args a = {0};
    size_t il, el, sl;
    const char *pid = sh__header(req, "producer-id", &il);
    const char *pep = sh__header(req, "producer-epoch", &el);
    const char *pseq = sh__header(req, "producer-seq", &sl);
    int nprod = !!pid + !!pep + !!pseq;
    if (nprod != 0 && nprod != 3)
        return http_res_error(req, ERR_BAD_REQUEST,
                              "send all of Producer-Id, Producer-Epoch and Producer-Seq, or none");
    if (nprod == 3) {
        if (il == 0)
            return http_res_error(req, ERR_BAD_REQUEST, "Producer-Id must not be empty");
        if (stream_parse_safe_int(pep, el, &a.producer_epoch) ||
            stream_parse_safe_int(pseq, sl, &a.producer_seq))
            return http_res_error(req, ERR_BAD_REQUEST,
                                  "Producer-Epoch and Producer-Seq must be integers up to 2^53-1");
        a.producer_id = sh__header_str(req, "producer-id");
    }
    a.body = http_req_body(req, &a.body_len);
    if (a.body_len > sh->cfg.max_append)
        return http_res_error(req, ERR_PAYLOAD_TOO_LARGE, "an append may hold at most %zu bytes",
                              sh->cfg.max_append);
    a.content_type = sh__header_str(req, "content-type");
    a.close = sh__header_true(req, "stream-closed");
    a.seq = sh__header_str(req, "stream-seq");

    struct sh_req *r = sh__state(sh, req, SH_WRITE);
    r->op.cb = sh__append_done;
    stream_append(sh->ss, st, &a, &r->op);
    if (!r->op.queued)
        sh__respond_error(req, &r->op.result);
}

/* ================= GET: catch-up ================= */

static void sh__etag(int64_t id, int64_t created, int64_t from, int64_t to, int closed, char out[128])
{
    snprintf(out, 128, "\"%" PRId64 "-%" PRId64 ":%" PRId64 ":%" PRId64 "%s\"", id, created, from, to,
             closed ? ":c" : "");
}

/* Answers a catch-up read with what it read (of the stream as it was when the read started). */
static void sh__answer_read(struct http_req *req, struct stream_read_done *d, const char *cursor_in, int live)
{
    if (d->rc != 0) {
        if (d->rc == -EINVAL)
            return http_res_error(req, ERR_BAD_REQUEST,
                                  "the offset falls inside a message of this JSON stream");
        return http_res_error(req, errcode_for_store(d->rc), "the stream could not be read (%s)",
                              strerror(-d->rc));
    }
    int up_to_date = d->next >= d->tail, closed = up_to_date && d->closed;
    char etag[128];
    sh__etag(d->id, d->created, d->from, d->next, closed, etag);
    size_t inm_len;
    const char *inm = sh__header(req, "if-none-match", &inm_len);
    http_res_header(req, "Content-Type", d->content_type);
    sh__offset_header(req, d->next);
    if (up_to_date)
        http_res_header(req, "Stream-Up-To-Date", "true");
    if (closed)
        http_res_header(req, "Stream-Closed", "true");
    if (live) {
        char c[32];
        sh__cursor(cursor_in, c);
        http_res_header(req, "Stream-Cursor", c);
        http_res_header(req, "Cache-Control", "no-store");
    } else {
        http_res_header(req, "ETag", etag);
        http_res_header(req, "Cache-Control",
                        up_to_date ? "no-cache" : "public, max-age=60, stale-while-revalidate=300");
    }
    if (!live && inm && inm_len == strlen(etag) && memcmp(inm, etag, inm_len) == 0)
        return http_res_send(req, 304, NULL, 0);
    if (d->json)
        stream_json_wrap(&d->data);
    http_res_send(req, 200, d->data.p, d->data.len);
}

static void sh__read_done(struct stream_read_done *d, void *arg)
{
    struct sh_req *r = arg;
    r->rd = NULL;
    sh__answer_read(r->req, d, r->client_cursor, r->live);
}

/* Answers a read of [from, ...) of st with what is there now (never waits for new bytes), from
 * the read's completion: r's request (a long-poll's), or req's with a state of its own. */
static void sh__respond_read(struct stream_http *sh, struct http_req *req, struct sh_req *r,
                             struct stream *st, int64_t from, char *cursor_in, int live)
{
    if (r == NULL)
        r = sh__state(sh, req, SH_READ);
    r->client_cursor = cursor_in;
    r->live = live;
    r->rd = stream_read_start(sh->ss, st, from, sh->cfg.read_chunk, sh__read_done, r);
}

/* The same, of a follower's view: at once, in its snapshot. */
static void sh__respond_view(struct stream_http *sh, struct http_req *req, struct stream_view *view,
                             int64_t from)
{
    struct stream *st = stream_view_stream(view);
    struct stream_read_done d = {.from = from,
                                 .tail = stream_tail(st),
                                 .closed = stream_closed(st),
                                 .json = stream_is_json(st),
                                 .content_type = stream_content_type(st)};
    stream_identity(st, &d.id, &d.created);
    d.rc = stream_view_read(view, from, sh->cfg.read_chunk, &d.data, &d.next);
    sh__answer_read(req, &d, NULL, 0);
    buf_free(&d.data);
}

/* ================= GET: long-poll ================= */

static void sh__lp_finish(struct sh_req *r)
{
    stream_unsubscribe(&r->sub);
    if (r->has_timer)
        uv_timer_stop(&r->timer);
}

static void sh__lp_empty(struct sh_req *r, struct stream *st, int closed)
{
    struct http_req *req = r->req;
    char c[32];
    sh__lp_finish(r);
    sh__offset_header(req, st ? stream_tail(st) : r->offset);
    http_res_header(req, "Stream-Up-To-Date", "true");
    if (closed) {
        http_res_header(req, "Stream-Closed", "true");
    } else {
        sh__cursor(r->client_cursor, c);
        http_res_header(req, "Stream-Cursor", c);
    }
    http_res_send(req, 204, NULL, 0);
}

static void sh__lp_timeout(uv_timer_t *t)
{
    struct sh_req *r = t->data;
    if (r->req == NULL || http_res_started(r->req))
        return;
    sh__lp_empty(r, r->sub.stream, 0);
}

static void sh__lp_event(struct stream_sub *sub, enum stream_event ev)
{
    struct sh_req *r = sub->arg;
    struct stream *st = sub->stream;
    if (r->req == NULL || http_res_started(r->req))
        return;
    if (ev == STREAM_EV_GONE) {
        sh__lp_finish(r);
        return http_res_error(r->req, ERR_NOT_FOUND, "the stream was deleted");
    }
    if (ev == STREAM_EV_SHUTDOWN) {
        sh__lp_finish(r);
        http_res_header(r->req, "Retry-After", "1");
        return http_res_error(r->req, ERR_SHUTTING_DOWN,
                              "the server is stopping; retry from the same offset");
    }
    if (stream_tail(st) > r->offset) {
        sh__lp_finish(r);
        return sh__respond_read(r->sh, r->req, r, st, r->offset, r->client_cursor, 1);
    }
    if (stream_closed(st))
        sh__lp_empty(r, st, 1);
}

static void sh__long_poll(struct stream_http *sh, struct http_req *req, struct stream *st, int64_t from,
                          char *cursor)
{
    if (from < stream_tail(st))
        return sh__respond_read(sh, req, NULL, st, from, cursor, 1);
    struct sh_req *r = sh__state(sh, req, SH_LONG_POLL);
    r->offset = from;
    r->client_cursor = cursor;
    if (stream_closed(st))
        return sh__lp_empty(r, st, 1);
    r->sub.cb = sh__lp_event;
    stream_subscribe(st, &r->sub);
    sh__timer(r, sh__lp_timeout, sh->cfg.long_poll_timeout_ms, 0);
}

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
    if (ev == STREAM_EV_GONE || ev == STREAM_EV_SHUTDOWN) {
        /* clients reconnect from their last streamNextOffset */
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

static void sh__sse(struct stream_http *sh, struct http_req *req, struct stream *st, int64_t from,
                    char *cursor)
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

/* ================= GET dispatch, HEAD, DELETE ================= */

/* A GET's query. */
struct sh_get_args {
    int sse, lp, now;
    int64_t from;
    char *cursor;
};

/* 0, or -1 having answered 400. */
static int sh__get_args(struct http_req *req, struct sh_get_args *g)
{
    char *offset = NULL, *live = NULL;
    int noff = http_req_query_param(req, "offset", &offset);
    int nlive = http_req_query_param(req, "live", &live);
    http_req_query_param(req, "cursor", &g->cursor);
    if (noff > 1)
        return http_res_error(req, ERR_BAD_REQUEST, "offset may be given only once"), -1;
    if (nlive > 1 || (live && strcmp(live, "long-poll") && strcmp(live, "sse") && strcmp(live, "true") &&
                      strcmp(live, "")))
        return http_res_error(req, ERR_BAD_REQUEST, "live must be long-poll or sse"), -1;
    g->sse = live && !strcmp(live, "sse");
    g->lp = live && (!strcmp(live, "long-poll") || !strcmp(live, "true"));
    g->from = 0;
    if (offset) {
        if (!strcmp(offset, "now"))
            g->now = 1;
        else if (!strcmp(offset, "-1"))
            g->from = 0;
        else if (stream_offset_parse(offset, &g->from) != 0)
            return http_res_error(req, ERR_BAD_REQUEST,
                                  "offset must be -1, now, or an offset this server returned"),
                   -1;
    } else if (g->sse || g->lp) {
        return http_res_error(req, ERR_BAD_REQUEST,
                              "live reads need an offset (use -1 for the start, or now)"),
               -1;
    }
    return 0;
}

/* A GET of st, or of a follower's view (then never live: the owner serves those). */
static void sh__get(struct stream_http *sh, struct http_req *req, struct stream *st, struct stream_view *view)
{
    struct sh_get_args g = {0};
    if (sh__get_args(req, &g) != 0)
        return;
    stream_touch(st);
    int64_t tail = stream_tail(st);
    if (g.now)
        g.from = tail;
    if (g.from > tail)
        g.from = tail; /* an offset beyond the tail reads as the tail */
    if (g.sse && view == NULL)
        return sh__sse(sh, req, st, g.from, g.cursor);
    if (g.lp && view == NULL)
        return sh__long_poll(sh, req, st, g.from, g.cursor);
    if (g.now) {
        http_res_header(req, "Content-Type", stream_content_type(st));
        sh__offset_header(req, tail);
        http_res_header(req, "Stream-Up-To-Date", "true");
        http_res_header(req, "Cache-Control", "no-store");
        if (stream_closed(st))
            http_res_header(req, "Stream-Closed", "true");
        return http_res_send(req, 200, stream_is_json(st) ? "[]" : "", stream_is_json(st) ? 2 : 0);
    }
    if (view)
        return sh__respond_view(sh, req, view, g.from);
    sh__respond_read(sh, req, NULL, st, g.from, NULL, 0);
}

static void sh__head(struct http_req *req, struct stream *st)
{
    char etag[128];
    int64_t id, created;
    stream_identity(st, &id, &created);
    sh__etag(id, created, 0, stream_tail(st), stream_closed(st), etag);
    http_res_header(req, "Content-Type", stream_content_type(st));
    sh__offset_header(req, stream_tail(st));
    if (stream_ttl(st) >= 0)
        http_res_headerf(req, "Stream-TTL", "%" PRId64, stream_ttl(st));
    if (stream_expires_at(st))
        http_res_header(req, "Stream-Expires-At", stream_expires_at(st));
    if (stream_closed(st))
        http_res_header(req, "Stream-Closed", "true");
    http_res_header(req, "Cache-Control", "no-store");
    http_res_header(req, "ETag", etag);
    http_res_send(req, 200, NULL, 0);
}

static void sh__delete_done(struct stream_op *op)
{
    struct http_req *req = sh__done_req(op, STREAM_OK);
    if (req != NULL)
        http_res_send(req, 204, NULL, 0);
}

static void sh__delete(struct stream_http *sh, struct http_req *req, struct stream *st)
{
    struct sh_req *r = sh__state(sh, req, SH_WRITE);
    r->op.cb = sh__delete_done;
    stream_delete(sh->ss, st, &r->op);
    if (!r->op.queued)
        sh__respond_error(req, &r->op.result);
}

/* Refuses a path that names no stream one may reach (answered: -1), else 0. */
static int sh__path_refused(struct http_req *req, const char *path, size_t plen)
{
    const char *why = stream_parse_path(path, plen);
    if (why)
        return http_res_error(req, ERR_INVALID_PATH, "%s", why), -1;
    /* agentd's own records (session environments) are not served. */
    if (plen >= strlen(STREAM_HTTP_INTERNAL) &&
        !memcmp(path, STREAM_HTTP_INTERNAL, strlen(STREAM_HTTP_INTERNAL)))
        return http_res_error(req, ERR_NOT_FOUND, "no stream at %.*s", (int)(plen > 200 ? 200 : plen), path),
               -1;
    return 0;
}

/* The answer to a stream that is not there (how: STREAM_MISSING or STREAM_SOFT_DELETED). */
static void sh__absent(struct http_req *req, enum stream_lookup how, const char *path, size_t plen)
{
    if (how == STREAM_SOFT_DELETED)
        return http_res_error(req, ERR_GONE, "the stream was deleted");
    http_res_error(req, ERR_NOT_FOUND, "no stream at %.*s", (int)(plen > 200 ? 200 : plen), path);
}

void stream_http_handle(struct stream_http *sh, struct http_req *req, const char *path, size_t plen)
{
    if (sh__path_refused(req, path, plen))
        return;
    enum http_method m = http_req_method(req);
    if (m == HTTP_PUT)
        return sh__put(sh, req, path, plen);
    if (m != HTTP_GET && m != HTTP_HEAD && m != HTTP_POST && m != HTTP_DELETE) {
        size_t ml;
        const char *mn = http_req_method_name(req, &ml);
        http_res_header(req, "Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS");
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "%.*s is not supported on streams", (int)ml, mn);
    }
    enum stream_lookup how;
    struct stream *st = streams_lookup(sh->ss, path, plen, &how);
    if (how != STREAM_FOUND)
        return sh__absent(req, how, path, plen);
    switch (m) {
    case HTTP_GET: return sh__get(sh, req, st, NULL);
    case HTTP_HEAD: return sh__head(req, st);
    case HTTP_POST: return sh__post(sh, req, st);
    default: return sh__delete(sh, req, st);
    }
}

static void sh__route(struct http_req *req, void *arg)
{
    size_t plen, prefix = strlen(STREAM_HTTP_PREFIX);
    const char *path = http_req_path(req, &plen);
    stream_http_handle(arg, req, path + prefix, plen - prefix);
}

struct stream_http *stream_http_new(struct http_server *srv, uv_loop_t *loop, struct streams *ss,
                                    const struct stream_http_config *cfg)
{
    struct stream_http *sh = xcalloc(1, sizeof *sh);
    sh->ss = ss;
    sh->loop = loop;
    sh->cfg = *cfg;
    http_route(srv, STREAM_HTTP_PREFIX, sh__route, sh);
    http_cors_headers(
        srv,
        "Stream-Seq, Stream-TTL, Stream-Expires-At, Stream-Closed, Producer-Id, Producer-Epoch, "
        "Producer-Seq, Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset",
        "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Producer-Epoch, "
        "Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, Stream-SSE-Data-Encoding");
    return sh;
}

/* ================= a follower's catch-up reads ================= */

struct stream_http *stream_http_reader_new(const struct stream_http_config *cfg)
{
    struct stream_http *sh = xcalloc(1, sizeof *sh);
    sh->cfg = *cfg;
    return sh;
}

/* Where a follower's GET will read from, as sh__get will find (so that its records come with the
 * stream's row): -1 when it will read none (HEAD, offset=now, an offset it refuses). An offset past
 * the tail reads none either; it is read from in vain. */
static int64_t sh__read_from(struct http_req *req)
{
    char *offset = NULL;
    int64_t from = 0;
    if (http_req_method(req) != HTTP_GET || http_req_query_param(req, "offset", &offset) > 1)
        return -1;
    if (offset == NULL || !strcmp(offset, "-1"))
        return 0;
    if (!strcmp(offset, "now") || stream_offset_parse(offset, &from) != 0)
        return -1;
    return from;
}

int stream_http_read_local(struct stream_http *sh, struct store *store, struct http_req *req)
{
    enum http_method m = http_req_method(req);
    char *live = NULL;
    if ((m != HTTP_GET && m != HTTP_HEAD) || http_req_query_param(req, "live", &live) != 0)
        return 1;
    size_t plen, prefix = strlen(STREAM_HTTP_PREFIX);
    const char *path = http_req_path(req, &plen);
    path += prefix;
    plen -= prefix;
    if (sh__path_refused(req, path, plen))
        return 0;
    struct stream_view *v;
    enum stream_lookup how;
    if (stream_view_open(&v, store, path, plen, sh__read_from(req), &how) != 0)
        return 1; /* this node cannot read the database: perhaps the owner can */
    if (how == STREAM_FOUND && stream_view_expires(v)) {
        stream_view_close(v);
        return 1;
    }
    if (how != STREAM_FOUND)
        sh__absent(req, how, path, plen);
    else if (m == HTTP_GET)
        sh__get(sh, req, stream_view_stream(v), v);
    else
        sh__head(req, stream_view_stream(v));
    stream_view_close(v);
    return 0;
}

void stream_http_free(struct stream_http *sh)
{
    if (sh == NULL)
        return;
    while (sh->fills) { /* their readers are gone: the reads need not answer */
        struct sh_fill *fl = sh->fills;
        sh->fills = fl->next;
        stream_read_cancel(fl->rd);
        free(fl);
    }
    buf_free(&sh->frame.event);
    buf_free(&sh->ctl.text);
    buf_free(&sh->scratch);
    free(sh);
}
