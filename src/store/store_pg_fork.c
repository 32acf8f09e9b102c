/*
 * store_pg_fork — agentd_fork_refs read back (store.h, "Fork references"): the refs of the sources
 * of some shards, at a load, and those of them whose fork row is gone, for the sweep of the
 * sources' owner (on a reader: store_pg_refs_pooled, as a load off the loop reads the refs). The batch rows (ref, unref) are store_pg.c's.
 */
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* shards as a PostgreSQL int[] literal */
static void pg__shard_set(const uint64_t *shards, char set[STORE_SHARDS * 4 + 3])
{
    size_t n = 0;
    set[n++] = '{';
    for (int k = 0; k < STORE_SHARDS; k++)
        if (store_shard_in(shards, k))
            n += (size_t)snprintf(set + n, STORE_SHARDS * 4 + 3 - n, "%s%d", n > 1 ? "," : "", k);
    snprintf(set + n, STORE_SHARDS * 4 + 3 - n, "}");
}

static const char pg__refs_sql[] = "SELECT r.src, r.fork FROM agentd_fork_refs r JOIN agentd_streams s"
                                   " ON s.id = r.src WHERE s.shard = ANY($1::int[])";
static const char pg__leaked_sql[] = "SELECT r.src, r.fork FROM agentd_fork_refs r JOIN agentd_streams s"
                                     " ON s.id = r.src WHERE s.shard = ANY($1::int[]) AND NOT EXISTS"
                                     " (SELECT 1 FROM agentd_streams f WHERE f.id = r.fork)";

static void pg__refs_report(const PGresult *r, store_ref_cb cb, void *arg)
{
    for (int i = 0; i < PQntuples(r); i++)
        cb(pg__int(r, i, 0), pg__int(r, i, 1), arg);
}

int store_pg_load_refs(struct store_pg *s, const uint64_t *shards, int leaked, store_ref_cb cb, void *arg)
{
    char set[STORE_SHARDS * 4 + 3];
    pg__shard_set(shards, set);
    const char *v = set;
    PGresult *r = pg__query(s, leaked ? pg__leaked_sql : pg__refs_sql, 1, &v, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : pg__errno(s->conn, r);
    if (rc == 0)
        pg__refs_report(r, cb, arg);
    PQclear(r);
    return rc;
}

/* On a reader, never the loop's connection: leaked, an anti-join over every ref of the shards
 * (170 ms with 100,000 refs in 200,000 streams); else a load of taken shards off the loop. */
int store_pg_refs_pooled(struct store_pg *s, const uint64_t *shards, int leaked, store_ref_cb cb, void *arg)
{
    char set[STORE_SHARDS * 4 + 3];
    pg__shard_set(shards, set);
    const char *v = set;
    PGresult *r = NULL;
    int rc = pg__pooled_query(s, leaked ? pg__leaked_sql : pg__refs_sql, 1, &v, &r);
    if (rc == 0)
        pg__refs_report(r, cb, arg);
    PQclear(r);
    return rc;
}
