/*
 * Unit tests for src/store/store_shard.c: the shard of a path is part of the stored data (every
 * row's shard column) and of every node's routing, so its values are pinned here. The expected
 * numbers are FNV-1a 64 mod N computed outside agentd (a few lines of Python).
 */
#include <string.h>

#include "store/store.h"
#include "tap.h"

static int shard(const char *path, int n) { return store_shard_of(path, strlen(path), n); }

static void test_pinned(void)
{
    is_int(shard("a", 64), 12, "FNV-1a of \"a\" mod 64 is 12");
    is_int(shard("orders/1", 64), 24, "orders/1 → 24");
    is_int(shard("x/y/z", 64), 42, "a nested path hashes whole: x/y/z → 42");
    is_int(shard("a", 7), 5, "the count is a parameter: \"a\" mod 7 is 5");
    is_int(shard("orders/1", 1), 0, "one shard (SQLite): always 0");
    is_int(shard("orders/1", 0), 0, "no shard count: 0, never a division by zero");
}

static void test_sessions(void)
{
    is_int(shard("sessions/abc123/events", 64), 37, "a session's stream hashes by its id");
    is_int(shard("sessions/abc123/state", 64), shard("sessions/abc123/inbox", 64),
           "a session's streams share one shard");
    is_int(shard("sessions/abc123", 64), 37, "sessions/<id> alone: the id's shard");
    is_int(shard("sessions", 64), 0, "the public session feed is a control path: shard 0");
    is_int(shard("sessionsx/abc123", 64), 9, "a look-alike prefix hashes whole: sessionsx/abc123 → 9");
}

static void test_control(void)
{
    is_int(shard("__ds/state/subscriptions", 64), 0, "subscriptions' state: shard 0");
    is_int(shard("__agentd/anything", 64), 0, "other __agentd/ paths: shard 0");
    is_int(shard("__agentd/sessions/17", 64), 17, "the registry of shard 17 lives in shard 17");
    is_int(shard("__agentd/sessions/64", 64), 0, "a registry number past the count: shard 0");
    is_int(shard("__agentd/sessions/1x", 64), 0, "a registry suffix that is not a number: shard 0");
    is_int(shard("__agentd/sessions/", 64), 0, "an empty registry suffix: shard 0");
    is_int(shard("__agentd/sessions", 64), 0, "the single registry of one shard: shard 0");
}

static void test_spread(void)
{
    int count[64] = {0};
    char path[32];
    for (int i = 0; i < 6400; i++) {
        int n = snprintf(path, sizeof path, "stream-%d", i);
        count[store_shard_of(path, (size_t)n, 64)]++;
    }
    int lo = 6400, hi = 0;
    for (int k = 0; k < 64; k++) {
        lo = count[k] < lo ? count[k] : lo;
        hi = count[k] > hi ? count[k] : hi;
    }
    ok(lo >= 60 && hi <= 140, "6,400 paths spread over 64 shards: fewest %d, most %d (expect ~100)", lo, hi);
}

int main(void)
{
    test_pinned();
    test_sessions();
    test_control();
    test_spread();
    return done_testing();
}
