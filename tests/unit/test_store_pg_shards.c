/*
 * Unit tests for src/store/store_pg_shards.c without a database: the stream id → shard map that
 * decides which shards a batch is fenced with (a wrong or lost entry fences the wrong rows), and the
 * parse of agentd_fence_shards' DETAIL, which names the shards lost.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_pg_int.h"
#include "tap.h"

static void test_map(void)
{
    struct pg__shardmap m = {0};
    is_int(pg__ids_get(&m, 7), -1, "an empty map knows no id");
    pg__ids_del(&m, 7); /* nothing to delete: no harm */
    int bad = 0;
    for (int64_t id = 1; id <= 100000; id++)
        pg__ids_put(&m, id * 1024, (int)(id % 64));
    for (int64_t id = 1; id <= 100000; id++)
        bad += pg__ids_get(&m, id * 1024) != (int)(id % 64);
    is_int(bad, 0, "100,000 ids (one per block of 1,024, as ids are handed out) read back their shards");
    is_int(pg__ids_get(&m, 1023), -1, "an id never put is not known");
    for (int64_t id = 1; id <= 100000; id += 2)
        pg__ids_del(&m, id * 1024);
    bad = 0;
    for (int64_t id = 1; id <= 100000; id++)
        bad += pg__ids_get(&m, id * 1024) != (id % 2 ? -1 : (int)(id % 64));
    is_int(bad, 0, "half deleted: those are unknown, the others still known");
    size_t cap = m.cap;
    for (int round = 0; round < 20; round++) { /* churn: puts and deletes of new ids */
        for (int64_t id = 1; id <= 50000; id++)
            pg__ids_put(&m, (round + 200) * 1000000LL + id, 5);
        for (int64_t id = 1; id <= 50000; id++)
            pg__ids_del(&m, (round + 200) * 1000000LL + id);
    }
    ok(m.cap <= cap * 2,
       "deleted slots are dropped when the map grows: it does not grow with churn (%zu -> %zu)", cap, m.cap);
    is_int(pg__ids_get(&m, 2 * 1024), 2, "after the churn an old id is still known");
    pg__ids_put(&m, 2 * 1024, 9);
    is_int(pg__ids_get(&m, 2 * 1024), 9, "putting a known id again replaces its shard");
    pg__ids_clear(&m);
    is_int(pg__ids_get(&m, 2 * 1024), -1, "a cleared map knows nothing");
}

static void test_parse(void)
{
    uint64_t lost[STORE_SHARD_WORDS];
    is_int(pg__shards_parse("3,17,63", lost), 3, "three shards named");
    ok(store_shard_in(lost, 3) && store_shard_in(lost, 17) && store_shard_in(lost, 63) &&
           !store_shard_in(lost, 4),
       "exactly those are in the set");
    is_int(pg__shards_parse("", lost), 0, "none named (the caller then takes every shard held as lost)");
    is_int(pg__shards_parse(NULL, lost), 0, "no DETAIL at all: none");
    is_int(pg__shards_parse("5,64,-1,x", lost), 1,
           "numbers out of range are left out, and the parse stops at junk");
    ok(store_shard_in(lost, 5) && !store_shard_in(lost, 0), "only 5 is in the set");
}

/* A batch's fence under --shard-policy balance, where this node holds only its share: a row whose
 * stream the map does not know is fenced with the shards held, not with all 64 (a certain failure
 * there, and the node's exit 75). */
static void test_fence(void)
{
    struct store_pg *s = calloc(1, sizeof *s);
    s->nshards = 64;
    s->shard[3].epoch = 7;
    s->shard[9].epoch = 8;
    struct pg__row known = {.kind = PG_RECORD, .shard = 3, .stream = 11};
    struct pg__fence f;
    pg__fence_of(s, &known, &f);
    is_str(f.shards, "{3}", "a row's own shard");
    is_str(f.epochs, "{7}", "with this node's epoch of it");
    struct pg__row lost = {.kind = PG_RECORD, .shard = -1, .stream = 12};
    known.next = &lost;
    pg__fence_of(s, &known, &f);
    is_str(f.shards, "{3,9}", "a row of no known shard: every shard held here, not all 64");
    is_str(f.epochs, "{7,8}", "each with its epoch");
    struct pg__row other = {.kind = PG_REF, .shard = 20, .stream = 13};
    lost.next = &other;
    pg__fence_of(s, &known, &f);
    is_str(f.shards, "{3,9,20}", "a row of a shard not held is still fenced with it");
    is_str(f.epochs, "{7,8,0}", "(epoch 0: the fence fails)");
    s->shard[3].epoch = s->shard[9].epoch = 0;
    pg__fence_of(s, &lost, &f);
    ok(strncmp(f.shards, "{0,1,2,", 7) == 0 && strstr(f.shards, ",63}") != NULL,
       "none held: every shard (the fence fails, as before)");
    free(s);
}

int main(void)
{
    test_map();
    test_parse();
    test_fence();
    return done_testing();
}
