/* subs_lease — wake, lease and fencing transitions. See subs_lease.h. */
#include "subs/subs_lease.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int subs_wake_open_p(const struct subs_wake *w) { return w->wake_id[0] != '\0'; }

void subs_wake_open(struct subs_wake *w, const char *wake_id)
{
    assert(strlen(wake_id) == SUBS_WAKE_ID_LEN);
    subs_wake_close(w);
    w->generation++;
    memcpy(w->wake_id, wake_id, SUBS_WAKE_ID_LEN + 1);
}

void subs_wake_close(struct subs_wake *w)
{
    w->wake_id[0] = '\0';
    free(w->holder);
    w->holder = NULL;
    w->lease_until_ms = 0;
}

void subs_wake_extend(struct subs_wake *w, int64_t now_ms, int64_t ttl_ms)
{
    w->lease_until_ms = now_ms + ttl_ms;
}

int subs_wake_expired(const struct subs_wake *w, int64_t now_ms)
{
    return w->lease_until_ms != 0 && now_ms >= w->lease_until_ms;
}

int subs_wake_claim(struct subs_wake *w, const char *worker, int64_t now_ms, int64_t ttl_ms)
{
    if (w->holder != NULL)
        return -EBUSY;
    if (!subs_wake_open_p(w))
        return -ENOENT;
    w->holder = xstrdup(worker);
    subs_wake_extend(w, now_ms, ttl_ms);
    return 0;
}

enum subs_fence subs_wake_check(const struct subs_wake *w, int64_t token_gen, int64_t req_gen,
                                const char *req_wake_id)
{
    if (!subs_wake_open_p(w) || token_gen != w->generation || req_gen != w->generation ||
        req_wake_id == NULL || strcmp(req_wake_id, w->wake_id) != 0)
        return SUBS_FENCE_STALE;
    return SUBS_FENCE_OK;
}

void subs_wake_clear(struct subs_wake *w)
{
    free(w->holder);
    w->holder = NULL;
}
