/*
 * stream_http — Durable Streams over HTTP. See stream_http.h and ../../doc/ARCHITECTURE.md.
 *
 * Ownership: each request that outlives its handler (a write waiting for its commit, a long-poll,
 * an SSE reader) gets a struct sh_req, malloc'd because it may embed a libuv timer whose close is
 * asynchronous. The HTTP layer's dispose callback detaches it from the request; the timer's close
 * callback (or dispose itself, when there is no timer) frees it. SSE readers: stream_http_sse.c.
 */
#include "stream/stream_http.h"
#include "http/http.h"
#include "stream/stream.h"
#include "stream/stream_http_int.h"
#include "stream/stream_parse.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ================= small helpers ================= */

static void sh__offset_header(struct http_req *req, int64_t off)
{
    char o[STREAM_OFFSET_LEN + 1];
    stream_offset_format(off, o);
    http_res_header(req, "Stream-Next-Offset", o);
}

/* The cursor for a live response: the current interval, but always ahead of the client's. */
void sh__cursor(const char *client, char out[32])
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

/* The stream's shard is not served here (any more, or yet): the client retries at once, a reader
 * from its offset, and finds the node that serves it (doc/SHARDING-PLAN.md §2.1). */
static void sh__moved(struct http_req *req, const char *why)
{
    http_res_header(req, "Retry-After", "0");
    http_res_error(req, ERR_SHARD_MOVED, "%s", why);
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
    case STREAM_MOVED: sh__moved(req, r->message); return;
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
    sh__sse_leave(r);
    if (r->remote)
        r->sh->fork_remote.cancel(r->sh->fork_remote.arg, r->remote);
    if (r->has_timer) {
        uv_timer_stop(&r->timer);
        uv_close((uv_handle_t *)&r->timer, sh__free_cb);
    } else {
        free(r);
    }
}

struct sh_req *sh__state(struct stream_http *sh, struct http_req *req, enum sh_mode mode)
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

void sh__timer(struct sh_req *r, uv_timer_cb cb, uint64_t first, uint64_t repeat)
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

static void sh__create(struct stream_http *sh, struct sh_req *r, const char *path, size_t plen,
                       const struct stream_create_args *a);

/* The source's owner answered a remote fork's ref (NULL: could not be reached). */
static void sh__fork_answered(void *arg, const struct stream_fork_answer *answer)
{
    struct sh_req *r = arg;
    struct streams *ss = r->sh->ss;
    const char *from = r->create->fork_from;
    r->remote = NULL;
    if (answer == NULL && streams_shard_held(ss, streams_shard_of(ss, from, strlen(from)))) {
        /* the source's shard was taken here meanwhile: looked up here, as any local fork's */
        return sh__create(r->sh, r, r->path, r->plen, r->create);
    }
    if (answer == NULL) {
        http_res_header(r->req, "Retry-After", "1");
        return http_res_error(r->req, ERR_OWNER_UNAVAILABLE,
                              "the node that holds the fork source's shard could not be reached");
    }
    r->create->fork_ref = answer;
    sh__create(r->sh, r, r->path, r->plen, r->create);
}

/* A fork whose source's shard another node holds, while this node holds the fork's: its ref is
 * asked there first, with the fork's id reserved now (the ref names it before the fork's row
 * exists; a create that then fails leaves a ref that owner's sweep removes). 1 when asked (the
 * request waits for the answer) or answered; 0: an ordinary create. */
static int sh__fork_remote(struct stream_http *sh, struct sh_req *r, const char *path, size_t plen,
                           const struct stream_create_args *a)
{
    struct streams *ss = sh->ss;
    if (sh->fork_remote.ask == NULL || !streams_shard_held(ss, streams_shard_of(ss, path, plen)) ||
        streams_shard_held(ss, streams_shard_of(ss, a->fork_from, strlen(a->fork_from))))
        return 0;
    /* a path that exists (an idempotent re-create, or a conflict): only the source's identity is
     * asked, no ref (it would name an id never inserted, left for the owner's sweep) */
    enum stream_lookup how;
    int64_t id = 0;
    int rc =
        streams_lookup(ss, path, plen, &how) || how == STREAM_SOFT_DELETED ? 0 : streams_reserve_id(ss, &id);
    if (rc != 0) {
        http_res_error(r->req, errcode_for_store(rc), "no stream id could be reserved (%s)", strerror(-rc));
        return 1;
    }
    r->create = http_req_alloc(r->req, sizeof *r->create);
    *r->create = *a;
    r->create->id = id;
    r->path = path;
    r->plen = plen;
    struct stream_fork_ask ask = {.fork = id,
                                  .content_type = a->content_type,
                                  .has_offset = a->has_fork_offset,
                                  .offset = a->fork_offset,
                                  .sub = a->fork_sub};
    r->remote = sh->fork_remote.ask(sh->fork_remote.arg, a->fork_from, &ask, sh__fork_answered, r);
    return 1;
}

void stream_http_set_fork_remote(struct stream_http *sh, const struct stream_http_fork_remote *fr)
{
    sh->fork_remote = *fr;
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
    if (a.fork_from && sh__fork_remote(sh, r, path, plen, &a))
        return;
    sh__create(sh, r, path, plen, &a);
}

/* Creates the stream (a fork: its source here, or a->fork_ref its owner's answer). */
static void sh__create(struct stream_http *sh, struct sh_req *r, const char *path, size_t plen,
                       const struct stream_create_args *a)
{
    struct http_req *req = r->req;
    stream_create(sh->ss, path, plen, a, &r->op);
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

static void sh__absent(struct http_req *req, enum stream_lookup how, const char *path, size_t plen);

/* Answers a catch-up read with what it read (of the stream as it was when the read started). */
static void sh__answer_read(struct http_req *req, struct stream_read_done *d, const char *cursor_in, int live)
{
    if (d->rc != 0) {
        if (d->rc == -EINVAL)
            return http_res_error(req, ERR_BAD_REQUEST,
                                  "the offset falls inside a message of this JSON stream");
        if (d->rc == -ESHUTDOWN) { /* the node stopped while the database held the read */
            http_res_header(req, "Retry-After", "1");
            return http_res_error(req, ERR_SHUTTING_DOWN,
                                  "the server is stopping; retry from the same offset");
        }
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
    /* A read makes progress while its rows are there: none short of the tail it started with means
     * the stream was deleted (or expired) while the read waited for a reader. An empty 200 at the
     * same offset would be cached as "public" and read again in a loop: answer what the next
     * request would get, 404 or 410 (no-store), as the long-poll of a deleted stream does. */
    if (d->rc == 0 && d->next == d->from && d->from < d->tail) {
        size_t plen, prefix = strlen(STREAM_HTTP_PREFIX);
        const char *path = http_req_path(r->req, &plen);
        enum stream_lookup how;
        streams_lookup(r->sh->ss, path + prefix, plen - prefix, &how);
        if (!streams_shard_loaded(r->sh->ss, streams_shard_of(r->sh->ss, path + prefix, plen - prefix)))
            return sh__moved(r->req,
                             "the stream's shard moved while it was read; read again from the offset");
        if (how != STREAM_FOUND)
            return sh__absent(r->req, how, path + prefix, plen - prefix);
        return http_res_error(r->req, ERR_NOT_FOUND, "the stream was deleted"); /* and created anew */
    }
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
    /* The read may answer at once (SQLite, the tail cache), and the send may free r: r->rd only
     * when the read is still in flight, as in sh__sse_fill. */
    struct stream_read *rd = stream_read_start(sh->ss, st, from, sh->cfg.read_chunk, sh__read_done, r);
    if (rd)
        r->rd = rd;
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
    if (ev == STREAM_EV_MOVED) { /* not deleted: served elsewhere now, the same offset goes on there */
        sh__lp_finish(r);
        return sh__moved(r->req, "the stream's shard moved; retry from the same offset");
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

/* A GET of st, or of a follower's view (then never live: the owner serves those; view: what its
 * snapshot read from the offset sh__read_from found, which is g.from). */
static void sh__get(struct stream_http *sh, struct http_req *req, struct stream *st,
                    struct stream_read_done *view)
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
        return sh__answer_read(req, view, NULL, 0);
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
    if (!streams_shard_loaded(sh->ss, streams_shard_of(sh->ss, path, plen)))
        return sh__moved(req, "this node does not serve the stream's shard now");
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

struct stream_http *stream_http_reader_new(const struct stream_http_config *cfg, uv_loop_t *loop,
                                           struct store *store)
{
    struct stream_http *sh = xcalloc(1, sizeof *sh);
    sh->cfg = *cfg;
    sh->loop = loop;
    sh->ss = streams_reader_new(loop, store);
    sh->reader = 1;
    return sh;
}

int stream_http_reading(const struct stream_http *sh) { return sh && streams_syncing(sh->ss); }

void stream_http_reads_cancel(struct stream_http *sh) { streams_reads_cancel(sh->ss); }

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

/* A follower's read, from the completion of its snapshot (on the loop): the answer the owner would
 * make, or the request to the owner. */
static void sh__view_done(struct stream_view_done *d, void *arg)
{
    struct sh_req *r = arg;
    struct http_req *req = r->req;
    r->rd = NULL;
    if (d->rc == -ESHUTDOWN) { /* the node stops: nowhere to send it */
        http_res_header(req, "Retry-After", "1");
        return http_res_error(req, ERR_SHUTTING_DOWN, "the server is stopping; retry");
    }
    if (d->rc != 0 || (d->how == STREAM_FOUND && stream_view_expires(d->view))) {
        /* This node cannot read the database (perhaps the owner can), or the stream's last access
         * is the owner's. The forward path owns the request from here (it may hold it). */
        void (*forward)(struct http_req *, void *) = r->forward;
        void *forward_arg = r->forward_arg;
        http_req_set_data(req, NULL, NULL);
        free(r);
        return forward(req, forward_arg);
    }
    size_t plen, prefix = strlen(STREAM_HTTP_PREFIX);
    const char *path = http_req_path(req, &plen) + prefix;
    if (d->how != STREAM_FOUND)
        sh__absent(req, d->how, path, plen - prefix);
    else if (http_req_method(req) == HTTP_GET)
        sh__get(r->sh, req, stream_view_stream(d->view), &d->read);
    else
        sh__head(req, stream_view_stream(d->view));
}

int stream_http_read_local(struct stream_http *sh, struct http_req *req,
                           void (*forward)(struct http_req *req, void *arg), void *forward_arg)
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
    struct sh_req *r = sh__state(sh, req, SH_VIEW);
    r->forward = forward;
    r->forward_arg = forward_arg;
    r->rd = stream_view_start(sh->ss, path, plen, sh__read_from(req), sh->cfg.read_chunk, sh__view_done, r);
    return 0;
}

void stream_http_free(struct stream_http *sh)
{
    if (sh == NULL)
        return;
    sh__sse_free(sh);
    if (sh->reader)
        streams_reader_free(sh->ss);
    free(sh);
}
