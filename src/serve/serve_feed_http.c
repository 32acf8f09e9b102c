/*
 * serve_feed_http.c — see serve_feed_http.h. One curlx_http engine for the relay's appends; a
 * retry waits on the append's own timer.
 */
#include "serve/serve_feed_http.h"
#include "core/list.h"
#include "curlx/curlx_http.h"

#include <jansson.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVE_FEED_RETRY_MS 250

struct serve_feed__append;

struct serve_feed {
    uv_loop_t *loop;
    struct curlx_http *curl;
    char *base;                         /* this node's own URL */
    char *url;                          /* <base>/v1/stream/sessions */
    char *auth;                         /* "Authorization: Bearer <token>\n", or "" */
    struct serve_feed__append *appends; /* in flight */
};

struct serve_feed__append {
    struct serve_feed *f;
    LIST_LINK(serve_feed__append) link;
    struct curlx_http_req *req; /* the try in flight, NULL while waiting for the next */
    char *body, *headers;
    size_t len;
    uint64_t deadline_ms;
    uv_timer_t retry;
    sessions_feed_done done;
    /* A read of a shard's ids (serve_feed_ids) instead of an append: body is then its URL. */
    sessions_feed_ids_done ids_done;
    void *arg;
};

int serve_feed_new(struct serve_feed **out, uv_loop_t *loop, const char *base_url, const char *token)
{
    struct serve_feed *f = xcalloc(1, sizeof *f);
    f->loop = loop;
    int rc = curlx_http_new(&f->curl, loop);
    if (rc != 0) {
        free(f);
        return rc;
    }
    size_t n = strlen(base_url) + 32;
    f->url = xmalloc(n);
    snprintf(f->url, n, "%s/v1/stream/sessions", base_url);
    f->base = xstrdup(base_url);
    if (token && *token) {
        n = strlen(token) + 32;
        f->auth = xmalloc(n);
        snprintf(f->auth, n, "Authorization: Bearer %s\n", token);
    } else {
        f->auth = xstrdup("");
    }
    *out = f;
    return 0;
}

static void serve_feed__closed(uv_handle_t *h)
{
    struct serve_feed__append *a = h->data;
    free(a->body);
    free(a->headers);
    free(a);
}

/* Ends a: its callback once (a read's with the ids of its answer, NULL when rc != 0), then its
 * memory once its timer has closed. */
static void serve_feed__end(struct serve_feed__append *a, int rc, const struct curlx_http_answer *ans)
{
    list_remove(a, link);
    if (a->ids_done) {
        json_t *j = rc == 0 ? json_loadb(ans->body ? ans->body : "", ans->len, 0, NULL) : NULL;
        json_t *ids = json_object_get(j, "ids");
        a->ids_done(a->arg, json_is_array(ids) ? ids : NULL);
        json_decref(j);
    } else {
        a->done(a->arg, rc);
    }
    uv_close((uv_handle_t *)&a->retry, serve_feed__closed);
}

static void serve_feed__try(struct serve_feed__append *a);

static void serve_feed__retry(uv_timer_t *t) { serve_feed__try(t->data); }

static void serve_feed__answered(void *arg, const struct curlx_http_answer *ans)
{
    struct serve_feed__append *a = arg;
    a->req = NULL;
    if (ans->ok)
        return serve_feed__end(a, 0, ans);
    /* No answer, or the router found no live holder of the feed (a failover): again, a while */
    if ((ans->status == 0 || ans->status == 503) && uv_now(a->f->loop) < a->deadline_ms) {
        uv_timer_start(&a->retry, serve_feed__retry, SERVE_FEED_RETRY_MS, 0);
        return;
    }
    log_error("serve: the sessions feed refused %s (%ld%s%s): %.200s",
              a->ids_done ? "a read of a shard's ids" : "a relayed record", ans->status,
              ans->error ? ", " : "", ans->error ? ans->error : "", ans->body ? ans->body : "");
    serve_feed__end(a, ans->status == 0 || ans->status == 503 ? -ETIMEDOUT : -EPROTO, ans);
}

static void serve_feed__try(struct serve_feed__append *a)
{
    struct curlx_http_opts o = {.method = a->ids_done ? "GET" : "POST",
                                .url = a->ids_done ? a->body : a->f->url,
                                .body = a->ids_done ? NULL : a->body,
                                .body_len = a->ids_done ? 0 : a->len,
                                .timeout_ms = 10000,
                                .header = a->headers,
                                .on_done = serve_feed__answered,
                                .arg = a};
    a->req = curlx_http_request(a->f->curl, &o);
}

/* a (its request and callback set) goes: tried now, and again until SERVE_FEED_TRY_MS from now. */
static void serve_feed__start(struct serve_feed__append *a, void *arg)
{
    a->arg = arg;
    a->deadline_ms = uv_now(a->f->loop) + SERVE_FEED_TRY_MS;
    uv_timer_init(a->f->loop, &a->retry);
    a->retry.data = a;
    list_insert(&a->f->appends, a, link);
    serve_feed__try(a);
}

void serve_feed_append(void *ctx, const char *producer, int64_t epoch, int64_t seq, const char *body,
                       size_t len, sessions_feed_done done, void *arg)
{
    struct serve_feed *f = ctx;
    struct serve_feed__append *a = xcalloc(1, sizeof *a);
    a->f = f;
    a->body = xmalloc(len + 1);
    memcpy(a->body, body, len);
    a->body[len] = '\0';
    a->len = len;
    size_t n = strlen(f->auth) + strlen(producer) + 128;
    a->headers = xmalloc(n);
    snprintf(a->headers, n, "%sProducer-Id: %s\nProducer-Epoch: %" PRId64 "\nProducer-Seq: %" PRId64, f->auth,
             producer, epoch, seq);
    a->done = done;
    serve_feed__start(a, arg);
}

void serve_feed_ids(void *ctx, int shard, sessions_feed_ids_done done, void *arg)
{
    struct serve_feed *f = ctx;
    struct serve_feed__append *a = xcalloc(1, sizeof *a);
    a->f = f;
    a->body = xasprintf("%s/v1/sessions?shard=%d", f->base, shard);
    a->headers = xstrdup(f->auth);
    size_t n = strlen(a->headers);
    if (n && a->headers[n - 1] == '\n') /* one header: no separator after it */
        a->headers[n - 1] = '\0';
    a->ids_done = done;
    serve_feed__start(a, arg);
}

void serve_feed_free(struct serve_feed *f)
{
    if (f == NULL)
        return;
    while (f->appends) {
        struct serve_feed__append *a = f->appends;
        if (a->req)
            curlx_http_cancel(a->req);
        serve_feed__end(a, -ECANCELED, NULL);
    }
    curlx_http_free(f->curl);
    free(f->base);
    free(f->url);
    free(f->auth);
    free(f);
}
