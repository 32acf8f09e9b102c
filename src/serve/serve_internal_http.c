/* serve_internal_http — fork refs and wake events between nodes (see serve_internal_http.h).
 *
 * Ownership: a struct serve_internal owns its libcurl engine, its retry timer and every call it
 * sends (struct si__call, on its list until answered, given up or cancelled). A route's request
 * waiting for its ref or append to be durable owns a struct si__serve, freed at the request's
 * dispose. */
#include "serve/serve_internal_http.h"
#include "core/core.h"
#include "curlx/curlx_http.h"
#include "http/http.h"
#include "serve/serve_http.h"
#include "store/store.h"
#include "stream/stream.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SI_TICK_MS        50
#define SI_BACKOFF_MIN_MS 100
#define SI_BACKOFF_MAX_MS 800
#define SI_UNREF_GIVE_UP  60000 /* then the owner's sweep removes the ref */

struct si__call {
    struct si__call *next, **pprev;
    struct serve_internal *si;
    int ref;    /* 1: stream-ref (done waits for it), 0: stream-unref or stream-append */
    int append; /* 1: stream-append (src: the stream's path, text: the record) */
    int shard;
    char *src;            /* a ref's source path, an append's stream */
    char *text;           /* an append's record */
    int64_t src_id, fork; /* an unref's */
    char *body;
    struct curlx_http_req *inflight;
    uint64_t due_us, deadline_us;
    int64_t backoff_ms;
    void (*done)(void *arg, const struct stream_fork_answer *answer);
    void *done_arg;
};

struct serve_internal {
    uv_loop_t *loop;
    struct serve_forward *f;
    struct streams *const *streams;
    char *headers; /* Authorization and Agentd-Forwarded-By, one a line */
    struct curlx_http *http;
    struct si__call *calls;
    uv_timer_t timer;
};

/* ================= the source's owner: the routes ================= */

struct si__serve {
    struct http_req *req;
    struct streams *ss;
    struct stream_op op;
    struct stream_fork_answer answer;
};

static void si__not_owner(struct http_req *req, int shard)
{
    http_res_header(req, "Retry-After", "1");
    http_res_headerf(req, "Agentd-Not-Owner", "%d", shard);
    http_res_error(req, ERR_OWNER_UNAVAILABLE, "this node does not hold the fork source's shard (%d)", shard);
}

static json_t *si__meta_json(const struct store_meta *m)
{
    return json_pack("{s:I, s:i, s:s*, s:s, s:I, s:I, s:I, s:s*, s:b, s:I, s:I, s:I, s:I}", "id",
                     (json_int_t)m->id, "shard", m->shard, "path", m->path, "content_type",
                     m->content_type ? m->content_type : "application/octet-stream", "created_ms",
                     (json_int_t)m->created_ms, "ttl_s", (json_int_t)m->ttl_s, "expires_at_ms",
                     (json_int_t)m->expires_at_ms, "expires_at", m->expires_at, "closed", m->closed, "tail",
                     (json_int_t)m->tail, "fork_src", (json_int_t)m->fork_src, "fork_off",
                     (json_int_t)m->fork_off, "fork_sub", (json_int_t)m->fork_sub);
}

static void si__answer(struct http_req *req, const struct stream_fork_answer *a)
{
    json_t *chain = json_array();
    for (size_t i = 0; i < a->n; i++)
        json_array_append_new(chain, si__meta_json(&a->chain[i]));
    size_t blen = sodium_base64_encoded_len(a->prefix.len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = xmalloc(blen);
    sodium_bin2base64(b64, blen, (const unsigned char *)(a->prefix.p ? a->prefix.p : ""), a->prefix.len,
                      sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_pack("{s:i, s:s*, s:I, s:o, s:s}", "status", (int)a->status, "message", a->message,
                          "fork_off", (json_int_t)a->fork_off, "chain", chain, "prefix", b64);
    free(b64);
    http_res_json(req, 200, j);
}

static void si__serve_dispose(void *p)
{
    struct si__serve *sv = p;
    stream_op_cancel(sv->ss, &sv->op);
    stream_fork_answer_clear(&sv->answer);
    free(sv);
}

/* The request's wait for its op (cb when the op ends), freed at the request's dispose. */
static struct si__serve *si__serve_new(struct http_req *req, struct streams *ss, stream_op_cb cb)
{
    struct si__serve *sv = xcalloc(1, sizeof *sv);
    sv->req = req;
    sv->ss = ss;
    sv->op.cb = cb;
    sv->op.arg = sv;
    http_req_set_data(req, sv, si__serve_dispose);
    return sv;
}

/* The ref is durable (or its batch failed): the fork's owner may create the fork now. */
static void si__ref_durable(struct stream_op *op)
{
    struct si__serve *sv = op->arg;
    if (op->result.status != STREAM_OK)
        return http_res_error(sv->req, errcode_for_store(op->result.store_errno),
                              "the fork reference was not stored");
    si__answer(sv->req, &sv->answer);
}

static void si__ref_serve(struct serve_internal *si, struct http_req *req, json_t *body)
{
    const char *src = NULL, *ct = NULL;
    json_int_t fork = 0, offset = 0, sub = 0;
    int has_offset = 0;
    if (json_unpack(body, "{s:s, s:I, s?s, s?b, s?I, s?I}", "src", &src, "fork", &fork, "content_type", &ct,
                    "has_offset", &has_offset, "offset", &offset, "sub", &sub) != 0 ||
        fork < 0)
        return http_res_error(req, ERR_BAD_REQUEST, "stream-ref takes {src, fork, ...}");
    int shard = store_shard_of(src, strlen(src), si->f->nshards);
    struct streams *ss = *si->streams;
    if (ss == NULL)
        return si__not_owner(req, shard);
    struct si__serve *sv = si__serve_new(req, ss, si__ref_durable);
    struct stream_fork_ask ask = {.fork = fork,
                                  .content_type = ct,
                                  .has_offset = has_offset,
                                  .offset = offset,
                                  .sub = sub,
                                  .op = &sv->op};
    if (streams_fork_ref(ss, src, strlen(src), &ask, &sv->answer) == -EREMOTE)
        return si__not_owner(req, shard);
    if (!sv->op.queued) /* a refusal, or a ref that could not be written: nothing to wait for */
        si__answer(req, &sv->answer);
}

static void si__unref_serve(struct serve_internal *si, struct http_req *req, json_t *body)
{
    json_int_t src = 0, fork = 0;
    int shard = 0;
    if (json_unpack(body, "{s:I, s:I, s?i}", "src", &src, "fork", &fork, "shard", &shard) != 0)
        return http_res_error(req, ERR_BAD_REQUEST, "stream-unref takes {src, fork}");
    struct streams *ss = *si->streams;
    if (ss == NULL || streams_fork_unref(ss, src, fork) == -EREMOTE)
        return si__not_owner(req, shard);
    http_res_send(req, 204, NULL, 0);
}

static void si__op_free(struct stream_op *op) { free(op); }

/* Appends text to the stream at path as subs__wake_event appends locally: the stream's own content
 * type, no producer (a wake event is a hint: the worker's claim hands out the work). op: the
 * caller's, or NULL for one freed when the append ends. -EREMOTE when the path's shard is not held
 * here, -ENOENT when the stream is missing or closed, -EINVAL when the append was refused (op not
 * queued; its result says why), else 0. */
static int si__append(struct streams *ss, const char *path, const char *text, struct stream_op *op)
{
    if (!streams_shard_held(ss, streams_shard_of(ss, path, strlen(path))))
        return -EREMOTE;
    enum stream_lookup how;
    struct stream *st = streams_lookup(ss, path, strlen(path), &how);
    if (st == NULL || how != STREAM_FOUND || stream_closed(st))
        return -ENOENT;
    struct stream_op *own = op ? op : xcalloc(1, sizeof *own);
    if (op == NULL)
        own->cb = si__op_free;
    struct stream_append_args a = {
        .content_type = stream_content_type(st), .body = text, .body_len = strlen(text)};
    stream_append(ss, st, &a, own);
    if (!own->queued) {
        log_warn("serve: cannot append to %s: %s", path,
                 own->result.message ? own->result.message : "refused");
        if (op == NULL)
            free(own);
        return -EINVAL;
    }
    return 0;
}

static void si__append_durable(struct stream_op *op)
{
    struct si__serve *sv = op->arg;
    if (op->result.status != STREAM_OK)
        return http_res_error(sv->req, errcode_for_store(op->result.store_errno),
                              "the append was not stored");
    http_res_send(sv->req, 204, NULL, 0);
}

static void si__append_serve(struct serve_internal *si, struct http_req *req, json_t *body)
{
    const char *path = NULL, *text = NULL;
    if (json_unpack(body, "{s:s, s:s}", "path", &path, "text", &text) != 0)
        return http_res_error(req, ERR_BAD_REQUEST, "stream-append takes {path, text}");
    int shard = store_shard_of(path, strlen(path), si->f->nshards);
    struct streams *ss = *si->streams;
    if (ss == NULL)
        return si__not_owner(req, shard);
    struct si__serve *sv = si__serve_new(req, ss, si__append_durable);
    int rc = si__append(ss, path, text, &sv->op);
    if (rc == -EREMOTE)
        si__not_owner(req, shard);
    else if (rc == -ENOENT)
        http_res_error(req, ERR_NOT_FOUND, "no open stream at %s", path);
    else if (rc != 0)
        http_res_error(req, ERR_CONFLICT, "%s", sv->op.result.message ? sv->op.result.message : "refused");
}

void serve_internal_http(struct http_req *req, void *arg)
{
    struct serve_internal *si = arg;
    size_t plen, blen;
    const char *path = http_req_path(req, &plen);
    if (!http_req_authorized(req)) /* the server's token only, whatever an authorizer would take */
        return http_res_unauthorized(req);
    if (http_req_method(req) != HTTP_POST) {
        http_res_header(req, "Allow", "POST");
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "internal routes take POST");
    }
    const char *b = http_req_body(req, &blen);
    json_t *body = json_loadb(b ? b : "", blen, 0, NULL);
    size_t n = strlen(SERVE_INTERNAL_PREFIX);
    const char *what = path + n;
    size_t wlen = plen - n;
    if (body == NULL)
        http_res_error(req, ERR_BAD_REQUEST, "the body is not JSON");
    else if (wlen == 10 && memcmp(what, "stream-ref", 10) == 0)
        si__ref_serve(si, req, body);
    else if (wlen == 12 && memcmp(what, "stream-unref", 12) == 0)
        si__unref_serve(si, req, body);
    else if (wlen == 13 && memcmp(what, "stream-append", 13) == 0)
        si__append_serve(si, req, body);
    else
        http_res_error(req, ERR_NOT_FOUND, "no such internal route");
    json_decref(body);
}

/* ================= the fork's owner: the calls ================= */

static void si__call_free(struct si__call *c)
{
    if (c->inflight)
        curlx_http_cancel(c->inflight);
    *c->pprev = c->next;
    if (c->next)
        c->next->pprev = c->pprev;
    free(c->body);
    free(c->src);
    free(c->text);
    free(c);
}

static void si__tick(uv_timer_t *t);
static void si__send(struct serve_internal *si, struct si__call *c, uint64_t now, int first);

/* kind: 1 a ref, 0 an unref, 2 an append (set before the first send, which names the route). */
static struct si__call *si__call_new(struct serve_internal *si, int kind, int shard, json_t *body,
                                     uint64_t give_up_ms,
                                     void (*done)(void *arg, const struct stream_fork_answer *answer),
                                     void *done_arg)
{
    struct si__call *c = xcalloc(1, sizeof *c);
    c->si = si;
    c->ref = kind == 1;
    c->append = kind == 2;
    c->shard = shard;
    c->done = done;
    c->done_arg = done_arg;
    c->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    uint64_t now = clock_mono_us();
    c->due_us = UINT64_MAX;
    c->deadline_us = now + give_up_ms * 1000;
    c->backoff_ms = SI_BACKOFF_MIN_MS;
    c->next = si->calls;
    c->pprev = &si->calls;
    if (si->calls)
        si->calls->pprev = &c->next;
    si->calls = c;
    if (!uv_is_active((uv_handle_t *)&si->timer))
        uv_timer_start(&si->timer, si__tick, SI_TICK_MS, SI_TICK_MS);
    /* at once (a tick's wait cost every remote fork 25 ms on average); the caller hears the
     * outcome later: curlx_http answers on the loop, and a call gives up only past its deadline */
    si__send(si, c, now, 1);
    return c;
}

/* The answer's JSON as a struct stream_fork_answer (message: j's, borrowed). 0 or -EINVAL. */
static int si__parse_answer(json_t *j, struct stream_fork_answer *a)
{
    json_t *chain = NULL;
    const char *prefix = "";
    int status = 0;
    json_int_t off = 0;
    memset(a, 0, sizeof *a);
    if (json_unpack(j, "{s:i, s?s, s?I, s?o, s?s}", "status", &status, "message", &a->message, "fork_off",
                    &off, "chain", &chain, "prefix", &prefix) != 0)
        return -EINVAL;
    a->status = (enum stream_status)status;
    a->fork_off = off;
    size_t n = json_is_array(chain) ? json_array_size(chain) : 0;
    a->chain = xcalloc(n ? n : 1, sizeof *a->chain);
    for (size_t i = 0; i < n; i++, a->n++) {
        struct store_meta *m = &a->chain[i];
        const char *path = NULL, *ct = NULL, *exp = NULL;
        json_int_t id, created, ttl, exp_ms, tail, fsrc, foff, fsub;
        if (json_unpack(json_array_get(chain, i),
                        "{s:I, s:i, s?s, s:s, s:I, s:I, s:I, s?s, s:b, s:I, s:I, s:I, s:I}", "id", &id,
                        "shard", &m->shard, "path", &path, "content_type", &ct, "created_ms", &created,
                        "ttl_s", &ttl, "expires_at_ms", &exp_ms, "expires_at", &exp, "closed", &m->closed,
                        "tail", &tail, "fork_src", &fsrc, "fork_off", &foff, "fork_sub", &fsub) != 0)
            return -EINVAL;
        m->id = id, m->created_ms = created, m->ttl_s = ttl, m->expires_at_ms = exp_ms, m->tail = tail;
        m->fork_src = fsrc, m->fork_off = foff, m->fork_sub = fsub;
        m->path = path ? xstrdup(path) : NULL;
        m->content_type = xstrdup(ct);
        m->expires_at = exp ? xstrdup(exp) : NULL;
    }
    size_t plen = strlen(prefix);
    buf_reserve(&a->prefix, plen + 1);
    size_t got = 0;
    if (sodium_base642bin((unsigned char *)a->prefix.p, plen + 1, prefix, plen, NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return -EINVAL;
    a->prefix.len = got;
    a->prefix.p[got] = '\0';
    return 0;
}

/* A ref answered 2xx: the fork's create goes on with it. */
static void si__ref_done(struct si__call *c, const struct curlx_http_answer *ans)
{
    json_t *j = json_loadb(ans->body ? ans->body : "", ans->len, 0, NULL);
    struct stream_fork_answer a;
    int rc = j ? si__parse_answer(j, &a) : -EINVAL;
    if (rc != 0)
        log_error("serve: a fork source's owner answered a stream-ref this node cannot read");
    c->done(c->done_arg, rc == 0 ? &a : NULL);
    if (j)
        stream_fork_answer_clear(&a);
    json_decref(j);
}

static void si__on_done(void *arg, const struct curlx_http_answer *ans)
{
    struct si__call *c = arg;
    c->inflight = NULL;
    uint64_t now = clock_mono_us();
    /* not reached, or not (any more) the source's owner, or waiting out a take-over: again later */
    int again = ans->status == 0 || ans->status == 503;
    if (ans->ok && c->ref)
        si__ref_done(c, ans);
    else if (again && now < c->deadline_us) {
        c->due_us = now + (uint64_t)c->backoff_ms * 1000;
        c->backoff_ms = c->backoff_ms * 2 > SI_BACKOFF_MAX_MS ? SI_BACKOFF_MAX_MS : c->backoff_ms * 2;
        return;
    } else if (!ans->ok) {
        log_warn("serve: %s to the owner of shard %d failed (%ld%s%s)%s",
                 c->ref      ? "a fork's ref"
                 : c->append ? "an append"
                             : "an unref",
                 c->shard, ans->status, ans->error ? ": " : "", ans->error ? ans->error : "",
                 c->ref || c->append ? "" : "; that owner's sweep removes the ref");
        if (c->ref)
            c->done(c->done_arg, NULL);
    }
    si__call_free(c);
}

/* Sends c to its shard's holder, or, with none live, asks the heartbeat to take the shard. */
/* The source's shard was taken here meanwhile (its holder stopped): a ref ends without an answer,
 * for stream_http to look the source up here (it checks that the shard is held here now), an unref
 * is made here. 1 when c is done (freed); 0 while the registry has not loaded the shard yet. */
static int si__here(struct serve_internal *si, struct si__call *c)
{
    struct streams *ss = *si->streams;
    if (ss == NULL)
        return 0;
    if (c->ref) {
        if (!streams_shard_held(ss, streams_shard_of(ss, c->src, strlen(c->src))))
            return 0;
        c->done(c->done_arg, NULL);
    } else if (c->append) {
        if (si__append(ss, c->src, c->text, NULL) == -EREMOTE)
            return 0;
    } else if (streams_fork_unref(ss, c->src_id, c->fork) != 0) {
        return 0;
    }
    si__call_free(c);
    return 1;
}

/* first: inside the caller (si__call_new), where nothing may end yet. */
static void si__send(struct serve_internal *si, struct si__call *c, uint64_t now, int first)
{
    struct store_lease l;
    serve_shard_view(si->f, c->shard, &l);
    if (l.self && !first && si__here(si, c))
        return;
    if (!l.live || l.self || !l.owner_url[0]) {
        if (!l.live)
            store_shard_want(si->f->store, c->shard);
        struct curlx_http_answer none = {.status = 0, .error = "no live holder"};
        c->inflight = NULL;
        if (now >= c->deadline_us)
            return si__on_done(c, &none);
        c->due_us = now + (uint64_t)c->backoff_ms * 1000;
        return;
    }
    char url[sizeof l.owner_url + 32];
    snprintf(url, sizeof url, "%s%s%s", l.owner_url, SERVE_INTERNAL_PREFIX,
             c->ref      ? "stream-ref"
             : c->append ? "stream-append"
                         : "stream-unref");
    c->inflight = curlx_http_request(si->http, &(struct curlx_http_opts){.method = "POST",
                                                                         .url = url,
                                                                         .body = c->body,
                                                                         .body_len = strlen(c->body),
                                                                         .timeout_ms = 10000,
                                                                         .header = si->headers,
                                                                         .on_done = si__on_done,
                                                                         .arg = c});
}

static void si__tick(uv_timer_t *t)
{
    struct serve_internal *si = t->data;
    uint64_t now = clock_mono_us();
    /* one in flight to a holder that since stopped (its lease expired: a paused node's connection
     * still accepts) or whose shard was taken here: sent again now, not after its timeout */
    for (struct si__call *c = si->calls; c; c = c->next) {
        struct store_lease l;
        serve_shard_view(si->f, c->shard, &l);
        if (c->inflight && (l.self || !l.live)) {
            curlx_http_cancel(c->inflight);
            c->inflight = NULL;
            c->due_us = now;
        }
    }
    /* from the head again after each send: one that ends runs a callback, which may cancel others */
    for (int sent = 1; sent;) {
        sent = 0;
        for (struct si__call *c = si->calls; c; c = c->next) {
            if (c->inflight == NULL && c->due_us <= now) {
                c->due_us = UINT64_MAX;
                si__send(si, c, now, 0);
                sent = 1;
                break;
            }
        }
    }
    if (si->calls == NULL)
        uv_timer_stop(t);
}

static void *si__ask(void *arg, const char *src, const struct stream_fork_ask *ask,
                     void (*done)(void *done_arg, const struct stream_fork_answer *answer), void *done_arg)
{
    struct serve_internal *si = arg;
    json_t *body = json_pack("{s:s, s:I, s:s*, s:b, s:I, s:I}", "src", src, "fork", (json_int_t)ask->fork,
                             "content_type", ask->content_type, "has_offset", ask->has_offset, "offset",
                             (json_int_t)ask->offset, "sub", (json_int_t)ask->sub);
    int64_t wait = si->f->lease_ms > 0 ? si->f->lease_ms + 1000 : 2000; /* as serve_hold waits */
    struct si__call *c = si__call_new(si, 1, store_shard_of(src, strlen(src), si->f->nshards), body,
                                      (uint64_t)wait, done, done_arg);
    c->src = xstrdup(src);
    return c;
}

static void si__cancel(void *arg, void *handle)
{
    (void)arg;
    si__call_free(handle);
}

struct stream_http_fork_remote serve_internal_fork_remote(struct serve_internal *si)
{
    return (struct stream_http_fork_remote){.ask = si__ask, .cancel = si__cancel, .arg = si};
}

void serve_internal_unref(void *arg, int64_t src, int src_shard, int64_t fork)
{
    struct serve_internal *si = arg;
    json_t *body =
        json_pack("{s:I, s:I, s:i}", "src", (json_int_t)src, "fork", (json_int_t)fork, "shard", src_shard);
    struct si__call *c = si__call_new(si, 0, src_shard, body, SI_UNREF_GIVE_UP, NULL, NULL);
    c->src_id = src;
    c->fork = fork;
}

void serve_internal_append(void *arg, const char *path, const char *text)
{
    struct serve_internal *si = arg;
    int shard = store_shard_of(path, strlen(path), si->f->nshards);
    json_t *body = json_pack("{s:s, s:s}", "path", path, "text", text);
    int64_t wait = si->f->lease_ms > 0 ? si->f->lease_ms + 1000 : 2000; /* as a ref waits */
    struct si__call *c = si__call_new(si, 2, shard, body, (uint64_t)wait, NULL, NULL);
    c->src = xstrdup(path);
    c->text = xstrdup(text);
}

/* ================= lifetime ================= */

struct serve_internal *serve_internal_new(uv_loop_t *loop, struct serve_forward *f,
                                          struct streams *const *streams, const char *token)
{
    struct serve_internal *si = xcalloc(1, sizeof *si);
    si->loop = loop;
    si->f = f;
    si->streams = streams;
    const char *node = http_server_node(f->http);
    size_t n = strlen(node) + (token ? strlen(token) : 0) + 64;
    si->headers = xmalloc(n);
    if (token && *token)
        snprintf(si->headers, n,
                 "Authorization: Bearer %s\n"
                 "Agentd-Forwarded-By: %s",
                 token, node);
    else
        snprintf(si->headers, n, "Agentd-Forwarded-By: %s", node);
    if (curlx_http_new(&si->http, loop) != 0)
        abort(); /* allocation only: libcurl itself is loaded with the first request */
    uv_timer_init(loop, &si->timer);
    si->timer.data = si;
    return si;
}

static void si__closed(uv_handle_t *h) { free(h->data); }

void serve_internal_free(struct serve_internal *si)
{
    if (si == NULL)
        return;
    while (si->calls)
        si__call_free(si->calls);
    curlx_http_free(si->http);
    free(si->headers);
    uv_timer_stop(&si->timer);
    uv_close((uv_handle_t *)&si->timer, si__closed);
}
