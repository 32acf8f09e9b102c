/*
 * subs_lease — the wake/lease/fencing state machine of one subscription, as pure functions over a
 * small struct (no clock reads, no I/O: callers pass the time), so every transition is unit-tested.
 *
 * A wake is one unit of work handed to a consumer. Opening a wake increments the generation and
 * gives it a fresh wake id; the generation never goes back, so a consumer acting on an older wake
 * is recognised and fenced. A pull-wake worker claims the open wake and holds a lease for the
 * subscription's TTL; every accepted ack extends it; done, release or expiry closes the wake
 * (the generation stays, so the closed wake's tokens are fenced, not merely unknown).
 *
 * Invariants: holder != NULL implies a wake is open; lease_until_ms == 0 means no lease runs.
 */
#ifndef AGENTD_SUBS_LEASE_H
#define AGENTD_SUBS_LEASE_H

#include <stdint.h>

#include "core/core.h"

#define SUBS_WAKE_ID_LEN 26 /* "w_" and 24 hex digits */

struct subs_wake {
    int64_t generation;
    char wake_id[SUBS_WAKE_ID_LEN + 1]; /* "" while no wake is open */
    char *holder;                       /* the claiming worker (owned, free with subs_wake_clear), or NULL */
    int64_t lease_until_ms;             /* wall-clock deadline of the lease, 0 when none */
};

enum subs_fence {
    SUBS_FENCE_OK = 0,
    SUBS_FENCE_STALE, /* the token or request names another generation or wake: 409 FENCED */
};

/* Is a wake open? */
int subs_wake_open_p(const struct subs_wake *w);
/* Opens a new wake with the given id (SUBS_WAKE_ID_LEN chars): generation+1, no holder, no lease. */
void subs_wake_open(struct subs_wake *w, const char *wake_id);
/* Closes the open wake: no id, no holder, no lease. The generation is kept. */
void subs_wake_close(struct subs_wake *w);
/* Starts or extends the lease to now + ttl. */
void subs_wake_extend(struct subs_wake *w, int64_t now_ms, int64_t ttl_ms);
/* Has a running lease passed its deadline? */
int subs_wake_expired(const struct subs_wake *w, int64_t now_ms);
/* Gives the open wake to worker (copied) with a lease. Returns 0, -EBUSY when another worker
 * holds it, or -ENOENT when no wake is open. */
int subs_wake_claim(struct subs_wake *w, const char *worker, int64_t now_ms,
                    int64_t ttl_ms) CORE_UNUSED_RESULT;
/* Fencing: the token's generation and the request's generation and wake id must all name the
 * open wake. req_wake_id may be NULL (never matches). */
enum subs_fence subs_wake_check(const struct subs_wake *w, int64_t token_gen, int64_t req_gen,
                                const char *req_wake_id);
/* Frees the holder string. */
void subs_wake_clear(struct subs_wake *w);

#endif
