/* serve_hold_http — a follower's requests that wait out a failover (see serve_hold_http.h). */
#include "serve/serve_hold_http.h"
#include "core/core.h"
#include "core/list.h"
#include "http/http.h"
#include "serve/serve_http.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

/* How many holders' addresses are probed at once (the held requests' shards' distinct holders: one
 * while a node holds every shard). */
#define SERVE_HOLD_PROBES 4

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
    uint64_t first_us;  /* clock_mono_us of its first hold */
    uint64_t until_us;  /* clock_mono_us past which it is answered instead (serve__held_until) */
    int64_t seen_epoch; /* the live holder's epoch its deadline was last set from (0: none yet) */
    size_t bytes;       /* its body's length */
    int shard;          /* the shard it goes to (serve_route) */
    int waiting;        /* on h->held (counted in n and bytes), not on a run's batch */
};

/* One look at a holder's address under way. */
struct serve__probe {
    struct serve_hold *h;
    struct http_probe *probe; /* NULL: the slot is free */
    uint64_t due;             /* uv_now of the backoff tick after its start: cancelled from then */
    char url[256];            /* the holder's --node-url probed */
};

struct serve_hold {
    uv_timer_t timer;
    struct serve__probe probes[SERVE_HOLD_PROBES];
    struct serve_forward *f;
    struct serve__held *held;
    size_t n;         /* on held */
    size_t bytes;     /* of the bodies of those on held */
    size_t max_bytes; /* at most (serve_hold_new) */
    uint64_t max_ms;
    uint64_t tick_ms;     /* the wait before the next try (SERVE_HOLD_TICK_MS doubling) */
    uint64_t last_run_us; /* clock_mono_us of the last try (0: none yet) */
    int running;          /* serve__hold_run is trying them: it arms the timer when done */
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

/* Which held requests a run sends on: those whose time is up, those of some shards (a bitmap of
 * SERVE_SHARD_WORDS words), those whose shard's holder is at url; NULL or 0: any. */
struct serve__pick {
    int expired_only;
    const uint64_t *shards;
    const char *url;
};

static int serve__picked(struct serve_hold *h, const struct serve__held *e, const struct serve__pick *pick,
                         uint64_t now)
{
    if (pick->expired_only && now < e->until_us)
        return 0;
    if (pick->shards && !(pick->shards[e->shard / 64] & (1ull << (e->shard % 64))))
        return 0;
    if (pick->url) {
        struct store_lease l;
        serve_shard_view(h->f, e->shard, &l);
        return strcmp(l.owner_url, pick->url) == 0;
    }
    return 1;
}

/* Sends the held requests that match on, each through serve_forward_http as on arrival (it serves
 * one here once this node holds its shard, holds one again if there is still nobody to forward to
 * and its time is not up, else answers it). A request held again meanwhile waits for the next tick. */
static void serve__hold_run(struct serve_hold *h, const struct serve__pick *pick)
{
    struct serve__held *batch = NULL;
    uint64_t now = clock_mono_us();
    h->running = 1;
    h->last_run_us = now;
    for (struct serve__held *e = h->held, *next; e != NULL; e = next) {
        next = e->link.next;
        if (!serve__picked(h, e, pick, now))
            continue;
        serve__held_unlink(e);
        list_insert(&batch, e, link);
    }
    while (batch != NULL) {
        struct serve__held *e = batch;
        list_remove(e, link);
        if (http_req_client_gone(e->req))
            serve__held_gone(e);
        else
            serve_forward_http(e->req, h->f);
    }
    h->running = 0;
    serve__hold_arm(h);
}

static void serve__probe_stop(struct serve__probe *p)
{
    if (p->probe != NULL)
        http_probe_cancel(p->probe);
    p->probe = NULL;
}

/* A probe of serve__hold_tick: connected (the holder is back, or another node listens at its
 * address): every request held for a shard whose holder is at that address goes once; refused:
 * they wait on, untouched. */
static void serve__hold_probed(void *arg, int status)
{
    struct serve__probe *p = arg;
    char url[sizeof p->url];
    p->probe = NULL;
    snprintf(url, sizeof url, "%s", p->url);
    if (status == 0)
        serve__hold_run(p->h, &(struct serve__pick){.url = url});
}

/* Starts a probe of url in a free slot, unless one of url is under way. 0: started or under way;
 * -1: url cannot be probed (no such address: serve_forward_http answers its requests). */
static int serve__hold_probe(struct serve_hold *h, const char *url, uint64_t now)
{
    struct serve__probe *free_slot = NULL;
    for (int i = 0; i < SERVE_HOLD_PROBES; i++) {
        struct serve__probe *p = &h->probes[i];
        if (p->probe != NULL && strcmp(p->url, url) == 0)
            return 0;
        if (p->probe == NULL && free_slot == NULL)
            free_slot = p;
    }
    if (free_slot == NULL) /* more holders than slots: the others are looked at next tick */
        return 0;
    struct http_upstream *up = http_upstream_get(h->f->http, url, h->f->upstream_timeout_ms);
    /* the timer was armed (serve__hold_run) from this loop time, at most h->tick_ms ahead */
    free_slot->h = h;
    free_slot->due = now + h->tick_ms;
    snprintf(free_slot->url, sizeof free_slot->url, "%s", url);
    free_slot->probe = up ? http_upstream_probe(h->f->http, up, serve__hold_probed, free_slot) : NULL;
    return free_slot->probe ? 0 : -1;
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
    serve__hold_run(h, &(struct serve__pick){.expired_only = 1});
    uint64_t now = uv_now(t->loop);
    for (int i = 0; i < SERVE_HOLD_PROBES; i++)
        if (h->probes[i].probe != NULL && now >= h->probes[i].due)
            serve__probe_stop(&h->probes[i]);
    /* Each held request's holder, probed once (with one holder for every shard: one probe). */
    for (struct serve__held *e = h->held; e != NULL; e = e->link.next) {
        struct store_lease l;
        serve_shard_view(h->f, e->shard, &l);
        if (!l.live || l.self || !l.owner_url[0])
            continue;
        if (serve__hold_probe(h, l.owner_url, now) != 0) {
            /* no address to probe: serve_forward_http answers them */
            serve__hold_run(h, &(struct serve__pick){.url = l.owner_url});
            return;
        }
    }
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

/* A held request's deadline, pushed back (never forward) by each hold: the lease's time left as
 * this view says, plus SERVE_HOLD_EXTRA_MS, at most max_ms after its first hold. Not fixed at the
 * first hold: a request that comes before the node has read the shard rows at all (a node just
 * started) or while nobody holds the shard sees no holder, so its first deadline is only
 * SERVE_HOLD_EXTRA_MS away; a later view (the dead holder's lease, still live, or the expiry that
 * this node takes the shard at) tells how long the wait really is. A live holder it has waited
 * on already does not move it again: one that keeps renewing the same lease (one that answers
 * Agentd-Not-Owner, or whose --node-url leads elsewhere) would otherwise push it back at every hold
 * again, up to max_ms (pg_not_owner.t: B's request is answered after the lease's time left + 1 s). */
static void serve__held_until(struct serve_hold *h, struct serve__held *e, uint64_t now,
                              const struct store_lease *l)
{
    if (e->until_us != 0 && !l->self && l->live && l->epoch == e->seen_epoch)
        return;
    e->seen_epoch = l->live ? l->epoch : 0;
    /* Held here (self): this node took the shard and its load runs (or is tried again); the load's
     * end serves it, and a give-back or a loss changes the view. Its own lease's time left says
     * nothing of how long a load takes (a big registry, a locked table): up to max_ms. */
    uint64_t wait_ms =
        l->self ? h->max_ms : (uint64_t)(l->left_ms > 0 && l->live ? l->left_ms : 0) + SERVE_HOLD_EXTRA_MS;
    uint64_t until = now + wait_ms * 1000, last = e->first_us + h->max_ms * 1000;
    if (until > last)
        until = last;
    if (until > e->until_us)
        e->until_us = until;
}

int serve_hold(struct serve_hold *h, struct http_req *req, int shard, const struct store_lease *l)
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
        e = http_req_alloc(req, sizeof *e);
        memset(e, 0, sizeof *e);
        e->h = h;
        e->req = req;
        e->first_us = now;
        e->bytes = bytes;
        e->shard = shard;
        http_req_set_data(req, e, serve__held_dispose);
    } else if (now >= e->until_us) {
        return 0;
    }
    serve__held_until(h, e, now, l);
    /* This node serves the shard already: what comes here now (a connect to the old holder that
     * failed since) goes to its own routes at the next tick, which comes at once, not at the
     * deadline. */
    int local = serve_shard_here(h->f, shard, l);
    if (local)
        e->until_us = now;
    list_insert(&h->held, e, link);
    e->waiting = 1;
    h->n++;
    h->bytes += e->bytes;
    /* The timer is also idle while a try's requests are on their way (a try takes every held request
     * off the list; a refused one comes back here): only a hold after a quiet spell (a new failover)
     * starts again at the shortest wait. */
    if (!h->running && (local || !uv_is_active((uv_handle_t *)&h->timer))) {
        if (now - h->last_run_us > 2000 * (uint64_t)SERVE_HOLD_TICK_MAX_MS)
            h->tick_ms = SERVE_HOLD_TICK_MS;
        serve__hold_arm(h);
    }
    return 1;
}

int serve_hold_unreached(void *arg, struct http_req *req)
{
    struct serve_hold *h = arg;
    const struct serve__held *e = http_req_data(req);
    int shard;
    if (e != NULL)
        shard = e->shard;
    else
        (void)serve_route(req, h->f->nshards, &shard);
    struct store_lease l;
    serve_shard_view(h->f, shard, &l);
    return serve_hold(h, req, shard, &l);
}

void serve_hold_retry_shards(struct serve_hold *h, const uint64_t *changed)
{
    if (h == NULL)
        return;
    h->tick_ms = SERVE_HOLD_TICK_MS; /* a new holder may refuse at first, while it starts */
    for (int i = 0; i < SERVE_HOLD_PROBES; i++)
        serve__probe_stop(&h->probes[i]); /* of an old holder's address, maybe */
    serve__hold_run(h, &(struct serve__pick){.shards = changed});
}

void serve_hold_stop(struct serve_hold *h)
{
    if (h == NULL)
        return;
    h->stopping = 1;
    uv_timer_stop(&h->timer);
    for (int i = 0; i < SERVE_HOLD_PROBES; i++)
        serve__probe_stop(&h->probes[i]);
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
