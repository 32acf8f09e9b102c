/*
 * serve_handoff — see serve_handoff.h. All on the loop: the state is a shard being drained or
 * released (at most one at a time), checked by a short poll timer; the share is checked once a
 * lease by a second timer.
 */
#include "serve/serve_handoff.h"
#include "core/core.h"
#include "serve/serve_hold_http.h"
#include "session/session.h"
#include "store/store.h"
#include "stream/stream.h"
#include <stdlib.h>

#define SERVE_HANDOFF_POLL_MS 5 /* the drain's and the release's checks */

enum serve__handoff_state {
    HANDOFF_IDLE,
    HANDOFF_DRAIN,
    HANDOFF_RELEASED
};

struct serve_handoff {
    struct serve_handoff_config cfg;
    uv_timer_t tick; /* once a lease: the share */
    uv_timer_t poll; /* while a shard is drained or released */
    int closing;
    enum serve__handoff_state state;
    int shard;
    int over;       /* consecutive ticks that found more shards held than the share */
    uint64_t t0_us; /* when the shard's drain began */
    uint64_t deadline_us;
    int given;
};

static void serve__handoff_bit(uint64_t *set, int k, int on)
{
    if (on)
        set[k / 64] |= 1ull << (k % 64);
    else
        set[k / 64] &= ~(1ull << (k % 64));
}

static int serve__handoff_loaded(const struct serve_handoff *h)
{
    int n = 0;
    for (int k = 0; k < h->cfg.nshards; k++)
        n += store_shard_in(h->cfg.loaded, k);
    return n;
}

static int serve__handoff_idle(const struct serve_handoff *h, int k)
{
    return *h->cfg.sessions == NULL || sessions_shard_idle(*h->cfg.sessions, k);
}

/* The shard to give up: the highest loaded one but 0 whose sessions are idle, one with nothing in
 * flight first. -1: none. */
static int serve__handoff_pick(const struct serve_handoff *h)
{
    int busy = -1;
    for (int k = h->cfg.nshards - 1; k > 0; k--) {
        if (!store_shard_in(h->cfg.loaded, k) || !serve__handoff_idle(h, k))
            continue;
        if (!streams_shard_busy(*h->cfg.streams, k))
            return k;
        if (busy < 0)
            busy = k;
    }
    return busy;
}

static void serve__handoff_retry(struct serve_handoff *h, int k)
{
    uint64_t one[SERVE_SHARD_WORDS] = {0};
    serve__handoff_bit(one, k, 1);
    serve_hold_retry_shards(*h->cfg.hold, one);
}

/* The drain did not end (or a session of k became busy): k is served here again. */
static void serve__handoff_undo(struct serve_handoff *h, const char *why)
{
    int k = h->shard;
    log_warn("serve: hand-off of shard %d undone: %s", k, why);
    streams_shard_hold(*h->cfg.streams, k, 1);
    serve__handoff_bit(h->cfg.loaded, k, 1);
    serve__handoff_bit(h->cfg.draining, k, 0);
    h->state = HANDOFF_IDLE;
    uv_timer_stop(&h->poll);
    serve__handoff_retry(h, k);
}

static int serve__handoff_held(const struct serve_handoff *h, int k)
{
    struct store_lease *v = xcalloc((size_t)h->cfg.nshards, sizeof *v);
    (void)store_shards(h->cfg.store, v, h->cfg.nshards);
    int self = v[k].self;
    free(v);
    return self;
}

static void serve__handoff_poll(uv_timer_t *t)
{
    struct serve_handoff *h = t->data;
    int k = h->shard;
    if (h->state == HANDOFF_DRAIN) {
        struct streams *ss = *h->cfg.streams;
        if (!serve__handoff_idle(h, k))
            return serve__handoff_undo(h, "a session of the shard became busy");
        if (streams_shard_busy(ss, k)) {
            if (clock_mono_us() > h->deadline_us)
                return serve__handoff_undo(h, "its writes did not commit within a lease");
            streams_flush(ss);
            return;
        }
        streams_drop_shard(ss, k);
        if (*h->cfg.sessions != NULL)
            (void)sessions_unload_shard(*h->cfg.sessions, k); /* idle: checked above, same turn */
        store_shard_release(h->cfg.store, k);
        h->state = HANDOFF_RELEASED;
        return;
    }
    if (h->state == HANDOFF_RELEASED && !serve__handoff_held(h, k)) {
        serve__handoff_bit(h->cfg.draining, k, 0);
        h->state = HANDOFF_IDLE;
        h->given++;
        uv_timer_stop(&h->poll);
        log_info("serve: gave shard %d up in %.1f ms (%d given up)", k,
                 (double)(clock_mono_us() - h->t0_us) / 1000.0, h->given);
        serve__handoff_retry(h, k); /* to the new holder once one appears */
    }
}

static void serve__handoff_start(struct serve_handoff *h, int k)
{
    h->shard = k;
    h->state = HANDOFF_DRAIN;
    h->t0_us = clock_mono_us();
    h->deadline_us = h->t0_us + (uint64_t)h->cfg.lease_ms * 1000;
    serve__handoff_bit(h->cfg.loaded, k, 0); /* the router holds its requests from now on */
    serve__handoff_bit(h->cfg.draining, k, 1);
    streams_shard_hold(*h->cfg.streams, k, 0);
    streams_flush(*h->cfg.streams);
    uv_timer_start(&h->poll, serve__handoff_poll, 0, SERVE_HANDOFF_POLL_MS);
}

static void serve__handoff_tick(uv_timer_t *t)
{
    struct serve_handoff *h = t->data;
    if (h->state != HANDOFF_IDLE || *h->cfg.streams == NULL)
        return;
    int target = store_shard_share(h->cfg.store), held = serve__handoff_loaded(h);
    h->over = target > 0 && held > target ? h->over + 1 : 0; /* the store's target (0: unknown) */
    /* Over the share for two leases (doc/SHARDING-PLAN.md §5), and for what the store's live
     * window for a node with no rows (STORE_LIVE_ROWLESS_MS, pg__live_nodes) passes a lease by: a
     * node killed or exited 75 is heard of last as its rows' leases begin, so once they expired and
     * were taken it no longer counts, except for that rest (a second's window at a 500 ms lease),
     * when the share drops with nobody to take. Before, that window was 2 x lease + 1 s, and the
     * wait 6 leases at 500 ms. */
    int64_t lease = h->cfg.lease_ms > 0 ? h->cfg.lease_ms : 1000;
    if (h->over < 2 + (STORE_LIVE_ROWLESS_MS(lease) - lease + lease - 1) / lease)
        return;
    int k = serve__handoff_pick(h);
    if (k > 0)
        serve__handoff_start(h, k);
}

int serve_handoff_new(struct serve_handoff **out, uv_loop_t *loop, const struct serve_handoff_config *cfg)
{
    struct serve_handoff *h = xcalloc(1, sizeof *h);
    h->cfg = *cfg;
    uv_timer_init(loop, &h->tick);
    uv_timer_init(loop, &h->poll);
    h->tick.data = h->poll.data = h;
    uint64_t every = cfg->lease_ms > 0 ? (uint64_t)cfg->lease_ms : 1000;
    uv_timer_start(&h->tick, serve__handoff_tick, every, every);
    *out = h;
    return 0;
}

void serve_handoff_stop(struct serve_handoff *h)
{
    if (h == NULL)
        return;
    uv_timer_stop(&h->tick);
    uv_timer_stop(&h->poll);
}

static void serve__handoff_closed(uv_handle_t *t)
{
    struct serve_handoff *h = t->data;
    if (++h->closing == 2)
        free(h);
}

void serve_handoff_free(struct serve_handoff *h)
{
    if (h == NULL)
        return;
    serve_handoff_stop(h);
    uv_close((uv_handle_t *)&h->tick, serve__handoff_closed);
    uv_close((uv_handle_t *)&h->poll, serve__handoff_closed);
}

int serve_handoff_count(const struct serve_handoff *h) { return h ? h->given : 0; }
