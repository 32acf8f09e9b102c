/*
 * serve_handoff — the voluntary hand-off under --shard-policy balance (doc/SHARDING-PLAN.md §5): a
 * node that holds more than its share, ceil(shards / live nodes) as the store's heartbeat computes
 * it, for longer than the store's live window and two leases (serve__handoff_tick says why) gives
 * up one idle shard per lease, which the nodes below their share then take (the take policy).
 *
 * Ownership: serve.c owns the struct serve_handoff and the bitmaps and pointers it borrows (they
 * outlive it). The steps, for shard k (never 0; never one whose sessions are not idle):
 *   1. k leaves `loaded` and enters `draining`: the router holds its new requests (serve_hold)
 *      and serve.c's lease handler does not load it again while it is still held here;
 *   2. streams_shard_hold(k, 0) and streams_flush, until !streams_shard_busy;
 *   3. streams_drop_shard, sessions_unload_shard, store_shard_release;
 *   4. once the store no longer shows k held here, k leaves `draining` and the held requests are
 *      tried again (serve_hold_retry_shards): they go to the new holder once one appears.
 * A drain that does not end within a lease, or whose sessions became busy, is undone (k is served
 * here again).
 */
#ifndef AGENTD_SERVE_HANDOFF_H
#define AGENTD_SERVE_HANDOFF_H

#include <stdint.h>
#include <uv.h>

#include "core/core.h"

struct store;
struct streams;
struct sessions;
struct serve_hold;
struct serve_handoff;

struct serve_handoff_config {
    struct store *store;
    struct streams **streams;   /* serve.c's, NULL until the first shard is taken */
    struct sessions **sessions; /* likewise */
    struct serve_hold **hold;
    uint64_t *loaded;   /* serve.c's loaded bitmap (the router serves only these here) */
    uint64_t *draining; /* serve.c's: shards being given up (not loaded again meanwhile) */
    int nshards;
    int64_t lease_ms;
};

int serve_handoff_new(struct serve_handoff **out, uv_loop_t *loop,
                      const struct serve_handoff_config *cfg) CORE_UNUSED_RESULT;
/* Stops the checks (a drain in progress stays as it is: the process is stopping). */
void serve_handoff_stop(struct serve_handoff *h);
/* Stops and frees h once its timers have closed (the loop must turn). NULL: nothing. */
void serve_handoff_free(struct serve_handoff *h);
/* How many shards this node gave up since it started (a log line and tests' figures). */
int serve_handoff_count(const struct serve_handoff *h);

#endif
