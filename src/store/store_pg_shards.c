/*
 * store_pg_shards — what the PostgreSQL store knows of shards besides their leases
 * (store_pg_lease.c): filling the shard column when schema 5 is migrated to, and the map from a
 * stream id to its shard that tells a batch which shards to fence (doc/SHARDING-PLAN.md §1).
 */
#include "store/store_pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows of agentd_streams read and updated per statement by the migration. */
#define PG_MIGRATE_CHUNK 1000

/* Sets the shard of the rows in r (id, path) with one UPDATE, from store_shard_of. */
static int pg__migrate_chunk(PGconn *c, PGresult *r, char *err, size_t errlen)
{
    size_t cap = (size_t)PQntuples(r) * 22 + 3;
    char *ids = xmalloc(cap), *shards = xmalloc(cap);
    size_t ni = 0, ns = 0;
    ids[ni++] = '{', shards[ns++] = '{';
    for (int i = 0; i < PQntuples(r); i++) {
        const char *path = PQgetvalue(r, i, 1);
        int k = store_shard_of(path, strlen(path), STORE_SHARDS);
        ni += (size_t)snprintf(ids + ni, cap - ni, "%s%s", i ? "," : "", PQgetvalue(r, i, 0));
        ns += (size_t)snprintf(shards + ns, cap - ns, "%s%d", i ? "," : "", k);
    }
    snprintf(ids + ni, cap - ni, "}");
    snprintf(shards + ns, cap - ns, "}");
    const char *v[] = {ids, shards};
    PGresult *u = PQexecParams(c,
                               "UPDATE agentd_streams s SET shard = u.k FROM unnest($1::bigint[], $2::int[])"
                               " AS u(id, k) WHERE s.id = u.id",
                               2, NULL, v, NULL, NULL, 0);
    int rc = PQresultStatus(u) == PGRES_COMMAND_OK ? 0 : pg__errno(c, u);
    if (rc != 0)
        snprintf(err, errlen, "cannot set the streams' shards: %s", PQerrorMessage(c));
    PQclear(u);
    free(ids);
    free(shards);
    return rc;
}

/* A row with a path takes the shard of its path, in chunks. A detached row (no path: kept for its
 * forks) takes its first fork's, a chain of detached rows one level per statement; one with no
 * fork left (none should be) goes to shard 0. */
int pg__migrate_shards(PGconn *c, char *err, size_t errlen)
{
    char last[24] = "0", limit[24];
    snprintf(limit, sizeof limit, "%d", PG_MIGRATE_CHUNK);
    int rc = 0, n;
    do {
        const char *v[] = {last, limit};
        PGresult *r =
            PQexecParams(c,
                         "SELECT id, path FROM agentd_streams WHERE id > $1::bigint AND path IS NOT NULL"
                         " ORDER BY id LIMIT $2::int",
                         2, NULL, v, NULL, NULL, 0);
        if ((rc = pg__rows(c, r)) != 0) {
            snprintf(err, errlen, "cannot read the streams: %s", PQerrorMessage(c));
            return rc;
        }
        n = PQntuples(r);
        if (n > 0) {
            snprintf(last, sizeof last, "%s", PQgetvalue(r, n - 1, 0));
            rc = pg__migrate_chunk(c, r, err, errlen);
        }
        PQclear(r);
    } while (rc == 0 && n == PG_MIGRATE_CHUNK);
    for (int changed = 1; rc == 0 && changed;) {
        /* Through agentd_fork_refs (filled from fork_src by the migration's SQL, before this), whose
         * key is (src, fork): fork_src has no index, and a subquery on it per detached row scanned the
         * table once per row (24,000 rows with 2,000 detached: 18 s, all nodes stopped). */
        PGresult *r =
            PQexec(c, "UPDATE agentd_streams s SET shard = x.k FROM (SELECT DISTINCT ON (r.src)"
                      " r.src, f.shard AS k FROM agentd_fork_refs r JOIN agentd_streams f ON f.id = r.fork"
                      " WHERE f.shard IS NOT NULL ORDER BY r.src, r.fork) x"
                      " WHERE s.id = x.src AND s.shard IS NULL");
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg__errno(c, r);
        changed = rc == 0 && strcmp(PQcmdTuples(r), "0") != 0;
        if (rc != 0)
            snprintf(err, errlen, "cannot set the detached streams' shards: %s", PQerrorMessage(c));
        PQclear(r);
    }
    return rc ? rc : pg__exec(c, "UPDATE agentd_streams SET shard = 0 WHERE shard IS NULL", err, errlen);
}

/* ---- stream id → shard ---- */

static size_t pg__ids_slot(const struct pg__shardmap *m, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (m->cap - 1);
}

static size_t pg__ids_find(const struct pg__shardmap *m, int64_t id)
{
    if (m->cap == 0)
        return SIZE_MAX;
    for (size_t i = pg__ids_slot(m, id), n = 0; n < m->cap; i = (i + 1) & (m->cap - 1), n++) {
        if (m->id[i] == id)
            return i;
        if (m->id[i] == 0)
            break;
    }
    return SIZE_MAX;
}

/* Rebuilt with room for four times the live ids (deleted slots dropped), at least 1,024 slots. */
static void pg__ids_grow(struct pg__shardmap *m)
{
    struct pg__shardmap old = *m;
    size_t cap = 1024;
    while (cap < (old.live + 1) * 4)
        cap *= 2;
    *m = (struct pg__shardmap){.cap = cap};
    m->id = xcalloc(cap, sizeof *m->id);
    m->shard = xcalloc(cap, sizeof *m->shard);
    for (size_t i = 0; i < old.cap; i++)
        if (old.id[i] > 0)
            pg__ids_put(m, old.id[i], old.shard[i]);
    free(old.id);
    free(old.shard);
}

void pg__ids_put(struct pg__shardmap *m, int64_t id, int shard)
{
    size_t i = pg__ids_find(m, id);
    if (i != SIZE_MAX) {
        m->shard[i] = (signed char)shard;
        return;
    }
    if ((m->used + 1) * 4 > m->cap * 3)
        pg__ids_grow(m);
    for (i = pg__ids_slot(m, id); m->id[i] != 0;)
        i = (i + 1) & (m->cap - 1);
    m->id[i] = id;
    m->shard[i] = (signed char)shard;
    m->used++, m->live++;
}

int pg__ids_get(const struct pg__shardmap *m, int64_t id)
{
    size_t i = pg__ids_find(m, id);
    return i == SIZE_MAX ? -1 : m->shard[i];
}

void pg__ids_del(struct pg__shardmap *m, int64_t id)
{
    size_t i = pg__ids_find(m, id);
    if (i != SIZE_MAX)
        m->id[i] = -1, m->live--;
}

void pg__ids_clear(struct pg__shardmap *m)
{
    free(m->id);
    free(m->shard);
    memset(m, 0, sizeof *m);
}

int pg__shards_parse(const char *detail, uint64_t *out)
{
    int n = 0;
    memset(out, 0, STORE_SHARD_WORDS * sizeof *out);
    for (const char *p = detail ? detail : ""; *p;) {
        char *end;
        long k = strtol(p, &end, 10);
        if (end == p)
            break;
        if (k >= 0 && k < STORE_SHARDS)
            out[k / 64] |= 1ull << (k % 64), n++;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}
