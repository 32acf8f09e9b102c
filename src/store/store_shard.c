/*
 * store_shard — which shard a stream path belongs to (doc/SHARDING-PLAN.md §0, decision 1).
 *
 * Pure and the same on every node, so any node can route a request without a lookup and two
 * creates of one path always reach one owner. The key of a path:
 *   - sessions/<id>/...         → <id>: a session's transcript, state and inbox share one shard
 *                                 (one fence, one transaction);
 *   - __agentd/sessions/<k>     → shard k: the per-shard session registry;
 *   - sessions, __agentd/..., __ds/...  → shard 0: the control paths (the public session feed,
 *                                 subscriptions) live with the global singletons;
 *   - anything else             → the whole path.
 * The hash is FNV-1a 64 of the key, mod the number of shards. It is part of the stored data (each
 * row's shard column is filled from it), so it must never change: the unit test pins its values.
 */
#include <string.h>

#include "store/store.h"

static uint64_t store__fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int store__has_prefix(const char *p, size_t n, const char *pre)
{
    size_t k = strlen(pre);
    return n >= k && memcmp(p, pre, k) == 0;
}

/* Shard k of "__agentd/sessions/<k>" when <k> is a plain decimal below nshards, else -1. */
static int store__registry_shard(const char *p, size_t n, int nshards)
{
    static const char pre[] = "__agentd/sessions/";
    if (!store__has_prefix(p, n, pre) || n == sizeof pre - 1 || n - (sizeof pre - 1) > 6)
        return -1;
    int k = 0;
    for (size_t i = sizeof pre - 1; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        k = k * 10 + (p[i] - '0');
    }
    return k < nshards ? k : -1;
}

int store_shard_of(const char *path, size_t len, int nshards)
{
    if (nshards <= 1)
        return 0;
    int k = store__registry_shard(path, len, nshards);
    if (k >= 0)
        return k;
    if (store__has_prefix(path, len, "__agentd/") || store__has_prefix(path, len, "__ds/"))
        return 0;
    const char *key = path;
    size_t klen = len;
    if (store__has_prefix(path, len, "sessions/")) {
        key = path + strlen("sessions/");
        const char *slash = memchr(key, '/', len - strlen("sessions/"));
        klen = slash ? (size_t)(slash - key) : len - strlen("sessions/");
    } else if (len == strlen("sessions") && memcmp(path, "sessions", len) == 0) {
        return 0;
    }
    return (int)(store__fnv1a(key, klen) % (uint64_t)nshards);
}
