/*
 * store_pg_fork — agentd_fork_refs read back (store.h, "Fork references"): the refs of the sources
 * of some shards, at a load, and those of them whose fork row is gone, for the sweep of the
 * sources' owner. Both on the loop's connection. The batch rows (ref, unref) are store_pg.c's.
 */
#include "store/store_pg_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int store_pg_load_refs(struct store_pg *s, const uint64_t *shards, int leaked, store_ref_cb cb, void *arg)
{
    char set[STORE_SHARDS * 4 + 3];
    size_t n = 0;
    set[n++] = '{';
    for (int k = 0; k < STORE_SHARDS; k++)
        if (store_shard_in(shards, k))
            n += (size_t)snprintf(set + n, sizeof set - n, "%s%d", n > 1 ? "," : "", k);
    snprintf(set + n, sizeof set - n, "}");
    const char *v = set;
    PGresult *r = pg__query(s,
                            leaked ? "SELECT r.src, r.fork FROM agentd_fork_refs r JOIN agentd_streams s"
                                     " ON s.id = r.src WHERE s.shard = ANY($1::int[]) AND NOT EXISTS"
                                     " (SELECT 1 FROM agentd_streams f WHERE f.id = r.fork)"
                                   : "SELECT r.src, r.fork FROM agentd_fork_refs r JOIN agentd_streams s"
                                     " ON s.id = r.src WHERE s.shard = ANY($1::int[])",
                            1, &v, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : pg__errno(s->conn, r);
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        cb(strtoll(PQgetvalue(r, i, 0), NULL, 10), strtoll(PQgetvalue(r, i, 1), NULL, 10), arg);
    PQclear(r);
    return rc;
}
