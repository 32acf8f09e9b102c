/*
 * store_fork — fork references and stubs by id (store.h, "Fork references"): the interface, and
 * SQLite's side of it, where refs are the fork rows themselves. PostgreSQL's is store_pg_fork.c.
 */
#include "store/store_pg.h"
#include "store/store_sqlite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int store__is_pg(struct store *s) { return strcmp(store_backend(s), "postgres") == 0; }

int store_fork_ref(struct store *s, int64_t src, int64_t fork)
{
    return store__is_pg(s) ? store_pg_fork_ref(store__pg(s), src, fork, 1) : 0;
}

int store_fork_unref(struct store *s, int64_t src, int64_t fork)
{
    return store__is_pg(s) ? store_pg_fork_ref(store__pg(s), src, fork, 0) : 0;
}

static int store__sqlite_refs(struct store_sqlite *s, store_ref_cb cb, void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT fork_src, id FROM streams WHERE fork_src <> 0", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return store__errno(rc);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), arg);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : store__errno(rc);
}

int store_load_refs(struct store *s, const uint64_t *shards, store_ref_cb cb, void *arg)
{
    if (store__is_pg(s))
        return store_pg_load_refs(store__pg(s), shards, 0, cb, arg);
    return store__sqlite_refs(store__sqlite(s), cb, arg);
}

int store_fork_refs_leaked(struct store *s, const uint64_t *shards, store_ref_cb cb, void *arg)
{
    return store__is_pg(s) ? store_pg_load_refs(store__pg(s), shards, 1, cb, arg) : 0;
}

int store_fork_refs_leaked_pooled(struct store *s, const uint64_t *shards, store_ref_cb cb, void *arg)
{
    return store__is_pg(s) ? store_pg_refs_pooled(store__pg(s), shards, 1, cb, arg) : 0;
}

int store_load_refs_pooled(struct store *s, const uint64_t *shards, store_ref_cb cb, void *arg)
{
    return store__is_pg(s) ? store_pg_refs_pooled(store__pg(s), shards, 0, cb, arg) : -ENOTSUP;
}

int store_load_ids_pooled(struct store *s, const int64_t *ids, size_t n, store_meta_cb on_stream, void *arg)
{
    if (n == 0)
        return 0;
    return store__is_pg(s) ? store_pg_load_ids_pooled(store__pg(s), ids, n, on_stream, arg) : -ENOTSUP;
}

/* SQLite: the full load, of which the ids asked for. It never runs in practice: SQLite has one
 * shard, so a registry's load of it loads every row and no source is left to load by id. */
struct store__ids {
    const int64_t *ids;
    size_t n;
    store_meta_cb on_stream;
    void *arg;
};

static void store__ids_stream(const struct store_meta *m, void *arg)
{
    struct store__ids *c = arg;
    for (size_t i = 0; i < c->n; i++)
        if (c->ids[i] == m->id) {
            c->on_stream(m, c->arg);
            return;
        }
}

static void store__ids_producer(int64_t stream, const char *pid, int64_t epoch, int64_t seq, void *arg) {}

int store_load_ids(struct store *s, const int64_t *ids, size_t n, store_meta_cb on_stream, void *arg)
{
    if (n == 0)
        return 0;
    if (store__is_pg(s))
        return store_pg_load_ids(store__pg(s), ids, n, on_stream, arg);
    struct store__ids c = {.ids = ids, .n = n, .on_stream = on_stream, .arg = arg};
    return store_sqlite_load(store__sqlite(s), store__ids_stream, store__ids_producer, &c);
}
