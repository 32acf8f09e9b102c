/* serve_hold_http — a follower's requests that wait out a failover (see serve_hold_http.h). */
#include "serve/serve_hold_http.h"
#include "core/core.h"
#include "core/list.h"
#include "http/http.h"
#include "serve/serve_http.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

/* How often a held request's holder is looked at again while the lease has not changed:
 * SERVE_HOLD_TICK_MS after the first is held, then twice as long after each look, up to
 * SERVE_HOLD_TICK_MAX_MS. A look is one probe (a plain TCP connect) to the holder's address, not a
 * try of each held request: every pass through h2o's proxy copies the request's line and headers
 * into its memory until it ends, so 400 GETs of 60 KB headers, each tried at every tick of a 10 s
 * lease, took a follower from 9 MB to 674 MB (and 4,000 held took a whole core at a steady 100 ms).
 * A refused probe (a killed owner whose lease lives on) changes nothing; a probe that connects, or
 * a lease change (serve_hold_retry), sends every held request on once. No request waits past its
 * deadline for a tick (serve__hold_arm). */
#define SERVE_HOLD_TICK_MS     100
#define SERVE_HOLD_TICK_MAX_MS 800

/* One held request, in its own memory (http_req_alloc): its per-request data from its first hold
 * on, so that a request held again keeps its first deadline. */
struct serve__held {
    LIST_LINK(serve__held) link; /* h->held while it waits */
    struct serve_hold *h;
    struct http_req *req;
    uint64_t until_us; /* clock_mono_us past which it is answered instead */
    size_t bytes;      /* its body's length */
    int waiting;       /* on h->held (counted in n and bytes), not on a run's batch */
};

struct serve_hold {
    uv_timer_t timer;
    struct http_probe *probe; /* the look at the holder's address under way, or NULL */
    uint64_t probe_due;       /* uv_now of the backoff tick after probe's start: cancelled from then */
    struct serve_forward *f;
    struct serve__held *held;
    size_t n;         /* on held */
    size_t bytes;     /* of the bodies of those on held */
    size_t max_bytes; /* at most (serve_hold_new) */
    uint64_t max_ms;
    uint64_t tick_ms;     /* the wait before the next try (SERVE_HOLD_TICK_MS doubling) */
    uint64_t last_run_us; /* clock_mono_us of the last try (0: none yet) */
    int running;          /* serve__hold_run is trying them: it arms the timer when done */
    int local;            /* this node serves locally now: held requests go to its own routes */
    int stopping;         /* serve_hold_stop ran */
};

static void serve__held_unlink(struct serve__held *e)
{
    list_remove(e, link);
    if (e->waiting) {
        e->h->n--;
        e->h->bytes -= e->bytes;
    }
    e->waiting = 0;
}

/* The client went away (or the request ended some other way): it waits no more. */
static void serve__held_dispose(void *data) { serve__held_unlink(data); }

/* A held request whose client went away is not sent on: it would change what the client, which
 * saw no answer, is about to retry (an append twice). The answer closes the connection. */
static void serve__held_gone(struct serve__held *e)
{
    http_req_set_data(e->req, NULL, NULL);
    http_res_header(e->req, "Retry-After", "1");
    http_res_error(e->req, ERR_OWNER_UNAVAILABLE, "the client went away while the request waited");
}

/* The next look at the holder (serve__hold_tick). */
static void serve__hold_tick(uv_timer_t *t);

/* The next tick: after h->tick_ms, or sooner when a held request's deadline comes first (it is
 * answered then: serve__hold_expire). */
static void serve__hold_arm(struct serve_hold *h)
{
    if (h->n == 0) {
        uv_timer_stop(&h->timer);
        return;
    }
    uint64_t now = clock_mono_us(), next_ms = h->tick_ms;
    for (struct serve__held *e = h->held; e != NULL; e = e->link.next) {
        uint64_t ms = e->until_us > now ? (e->until_us - now + 999) / 1000 : 0;
        if (ms < next_ms)
            next_ms = ms;
    }
    uv_timer_start(&h->timer, serve__hold_tick, next_ms, 0);
}

/* Sends the held requests that match (all, or only those whose time is up) on, each through
 * serve_forward_http as on arrival (it holds one again if there is still nobody to forward to and
 * its time is not up, else it is answered), or to this node's routes once it serves locally. A
 * request held again meanwhile waits for the next tick. */
static void serve__hold_run(struct serve_hold *h, int expired_only)
{
    struct serve__held *batch = NULL;
    uint64_t now = clock_mono_us();
    h->running = 1;
    h->last_run_us = now;
    for (struct serve__held *e = h->held, *next; e != NULL; e = next) {
        next = e->link.next;
        if (expired_only && now < e->until_us)
            continue;
        serve__held_unlink(e);
        list_insert(&batch, e, link);
    }
    while (batch != NULL) {
        struct serve__held *e = batch;
        list_remove(e, link);
        if (http_req_client_gone(e->req))
            serve__held_gone(e);
        else if (h->local)
            http_req_redispatch(e->req); /* clears its data: e is left to the request's memory */
        else
            serve_forward_http(e->req, h->f);
    }
    h->running = 0;
    serve__hold_arm(h);
}

/* The probe of serve__hold_tick: connected (the holder is back, or another node listens at its
 * address): every held request goes once; refused: they wait on, untouched. */
static void serve__hold_probed(void *arg, int status)
{
    struct serve_hold *h = arg;
    h->probe = NULL;
    if (status == 0)
        serve__hold_run(h, 0);
}

/* The lease has not changed since the last tick. Requests whose time is up are answered (one last
 * pass through serve_forward_http); the others wait for a probe of the holder's address to connect.
 * With no live holder to probe (the lease expired, or this node is taking it), only a lease change
 * moves them (serve_hold_retry). A probe still under way at the backoff tick after its start (an
 * address that drops connects: a dead host, a partition) is cancelled and a new one starts: left
 * alone, its connect waits for the kernel's SYN retries (20 s to 2 minutes, the later ones 4 to 32 s
 * apart), so once the address answered again the held requests waited for its next retry instead
 * of the next tick. A tick brought forward by a held request's deadline leaves a probe younger than
 * that alone (a slow network's connect gets a whole tick). Then the next tick comes later. */
static void serve__hold_tick(uv_timer_t *t)
{
    struct serve_hold *h = t->data;
    h->tick_ms = h->tick_ms * 2 < SERVE_HOLD_TICK_MAX_MS ? h->tick_ms * 2 : SERVE_HOLD_TICK_MAX_MS;
    serve__hold_run(h, 1);
    struct store_lease l;
    store_lease(h->f->store, &l);
    if (h->n == 0 || h->local || !l.live || l.self || !l.owner_url[0])
        return;
    if (h->probe != NULL) {
        if (uv_now(t->loop) < h->probe_due)
            return;
        http_probe_cancel(h->probe);
        h->probe = NULL;
    }
    struct http_upstream *up = http_upstream_get(h->f->http, l.owner_url, h->f->upstream_timeout_ms);
    /* the timer was armed (serve__hold_run) from this loop time, at most h->tick_ms ahead */
    h->probe_due = uv_now(t->loop) + h->tick_ms;
    if (up != NULL)
        h->probe = http_upstream_probe(h->f->http, up, serve__hold_probed, h);
    if (h->probe == NULL) /* no address to probe: serve_forward_http answers them */
        serve__hold_run(h, 0);
}

struct serve_hold *serve_hold_new(uv_loop_t *loop, struct serve_forward *f, uint64_t max_ms, size_t max_bytes)
{
    struct serve_hold *h = xcalloc(1, sizeof *h);
    h->f = f;
    h->max_ms = max_ms;
    h->max_bytes = max_bytes;
    h->tick_ms = SERVE_HOLD_TICK_MS;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    return h;
}

int serve_hold(struct serve_hold *h, struct http_req *req, const struct store_lease *l)
{
    size_t bytes;
    (void)http_req_body(req, &bytes);
    /* Each held request keeps its whole body (h2o reads it before the handler runs): without a
     * bound in bytes, SERVE_HOLD_MAX requests of --max-body each would pin gigabytes. */
    if (h == NULL || h->stopping || h->n >= SERVE_HOLD_MAX || bytes > h->max_bytes - h->bytes)
        return 0;
    uint64_t now = clock_mono_us();
    struct serve__held *e = http_req_data(req);
    if (e == NULL) {
        uint64_t wait_ms = (uint64_t)(l->left_ms > 0 ? l->left_ms : 0) + SERVE_HOLD_EXTRA_MS;
        e = http_req_alloc(req, sizeof *e);
        memset(e, 0, sizeof *e);
        e->h = h;
        e->req = req;
        e->until_us = now + (wait_ms < h->max_ms ? wait_ms : h->max_ms) * 1000;
        e->bytes = bytes;
        http_req_set_data(req, e, serve__held_dispose);
    } else if (now >= e->until_us) {
        return 0;
    }
    /* This node serves locally already: what comes here now (a follower's read forwarded from its
     * completion after the takeover, a connect to the old holder that failed since) goes to its own
     * routes at the next tick, which comes at once, not at the deadline. */
    if (h->local)
        e->until_us = now;
    list_insert(&h->held, e, link);
    e->waiting = 1;
    h->n++;
    h->bytes += e->bytes;
    /* The timer is also idle while a try's requests are on their way (a try takes every held request
     * off the list; a refused one comes back here): only a hold after a quiet spell (a new failover)
     * starts again at the shortest wait. */
    if (!h->running && (h->local || !uv_is_active((uv_handle_t *)&h->timer))) {
        if (now - h->last_run_us > 2000 * (uint64_t)SERVE_HOLD_TICK_MAX_MS)
            h->tick_ms = SERVE_HOLD_TICK_MS;
        serve__hold_arm(h);
    }
    return 1;
}

int serve_hold_unreached(void *arg, struct http_req *req)
{
    struct serve_hold *h = arg;
    struct store_lease l;
    store_lease(h->f->store, &l);
    return serve_hold(h, req, &l);
}

void serve_hold_retry(struct serve_hold *h, int local)
{
    if (h == NULL)
        return;
    h->local |= local;
    h->tick_ms = SERVE_HOLD_TICK_MS; /* a new holder may refuse at first, while it starts */
    if (h->probe != NULL) {          /* of the old holder's address */
        http_probe_cancel(h->probe);
        h->probe = NULL;
    }
    serve__hold_run(h, 0);
}

void serve_hold_stop(struct serve_hold *h)
{
    if (h == NULL)
        return;
    h->stopping = 1;
    uv_timer_stop(&h->timer);
    if (h->probe != NULL) {
        http_probe_cancel(h->probe);
        h->probe = NULL;
    }
    while (h->held != NULL) {
        struct serve__held *e = h->held;
        serve__held_unlink(e);
        http_req_set_data(e->req, NULL, NULL);
        http_res_header(e->req, "Retry-After", "1");
        http_res_error(e->req, ERR_SHUTTING_DOWN, "the server is stopping; retry once it is back");
    }
}

static void serve__hold_closed(uv_handle_t *t) { free(t->data); }

void serve_hold_free(struct serve_hold *h)
{
    if (h != NULL)
        uv_close((uv_handle_t *)&h->timer, serve__hold_closed);
}
