/* store — the interface of store.h, handed to the backend the store was opened with: SQLite
 * (store_sqlite.c) or PostgreSQL (store_pg.c). Each backend owns its object; this one only says
 * which it is. */
#include "store/store_pg.h"
#include "store/store_sqlite.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct store {
    struct store_sqlite *sq; /* exactly one of the two */
    struct store_pg *pg;
    uint64_t reads;           /* store_read and store_read_back calls (the loop's: not locked) */
    int64_t agents, runtimes; /* SQLite: store_set_load's (the loop's, as store_nodes) */
    int test_slots;           /* SQLite: store_test_read_slots's */
};

void store_meta_clear(struct store_meta *m)
{
    free(m->path);
    free(m->content_type);
    free(m->expires_at);
    free(m->last_seq);
    free(m->closer_pid);
    memset(m, 0, sizeof *m);
}

static char *store__dup(const char *s) { return s ? xstrdup(s) : NULL; }

void store_meta_copy(struct store_meta *dst, const struct store_meta *src)
{
    *dst = *src;
    dst->path = store__dup(src->path);
    dst->content_type = store__dup(src->content_type);
    dst->expires_at = store__dup(src->expires_at);
    dst->last_seq = store__dup(src->last_seq);
    dst->closer_pid = store__dup(src->closer_pid);
}

int store_open(struct store **out, const char *dir, enum store_durability durability, char *err,
               size_t errlen)
{
    struct store_sqlite *sq;
    int rc = store_sqlite_open(&sq, dir, durability, err, errlen);
    *out = NULL;
    if (rc != 0)
        return rc;
    *out = xcalloc(1, sizeof **out);
    (*out)->sq = sq;
    return 0;
}

int store_open_pg(struct store **out, const struct store_pg_config *cfg, char *err, size_t errlen)
{
    struct store_pg *pg;
    int rc = store_pg_open(&pg, cfg, err, errlen);
    *out = NULL;
    if (rc != 0)
        return rc;
    *out = xcalloc(1, sizeof **out);
    (*out)->pg = pg;
    return 0;
}

void store_free(struct store *s)
{
    if (s == NULL)
        return;
    if (s->pg)
        store_pg_free(s->pg);
    else
        store_sqlite_free(s->sq);
    free(s);
}

struct store_sqlite *store__sqlite(struct store *s) { return s->sq; }
struct store_pg *store__pg(struct store *s) { return s->pg; }

const char *store_backend(const struct store *s) { return s->pg ? "postgres" : "sqlite"; }
int store_commit_persists(const struct store *s) { return s->pg == NULL; }
int store_available(struct store *s) { return s->pg ? store_pg_available(s->pg) : 0; }
void store_offline(struct store *s)
{
    if (s->pg)
        store_pg_offline(s->pg);
}

struct store_probe *store_probe_start(struct store *s) { return s->pg ? store_pg_probe_start(s->pg) : NULL; }

int store_probe_done(struct store_probe *p, int *rc)
{
    *rc = 0;
    return p ? store_pg_probe_done(p, rc) : 1;
}

void store_probe_free(struct store_probe *p) { store_pg_probe_free(p); }

void store_lease(struct store *s, struct store_lease *out)
{
    if (s->pg) {
        store_pg_lease(s->pg, out);
        return;
    }
    *out = (struct store_lease){.self = 1, .live = 1, .epoch = 1, .left_ms = INT64_MAX, .owner = "local"};
}

int store_shards(struct store *s, struct store_lease *out, int max)
{
    if (s->pg)
        return store_pg_shards(s->pg, out, max);
    if (max > 0)
        store_lease(s, &out[0]);
    return 1;
}

void store_shard_want(struct store *s, int k)
{
    if (s->pg)
        store_pg_shard_want(s->pg, k);
}

void store_shard_release(struct store *s, int k)
{
    if (s->pg)
        store_pg_shard_release(s->pg, k);
}

int store_shard_share(struct store *s) { return s->pg ? store_pg_shard_share(s->pg) : 0; }

int store_nodes(struct store *s, struct store_node *out, size_t max)
{
    if (s->pg)
        return store_pg_nodes(s->pg, out, max);
    if (max > 0)
        *out = (struct store_node){.node = "local",
                                   .owner = 1,
                                   .self = 1,
                                   .epoch = 1,
                                   .agents = s->agents,
                                   .runtimes = s->runtimes,
                                   .shards = 1};
    return 1;
}

void store_set_load(struct store *s, int64_t agents, int64_t runtimes)
{
    if (s->pg)
        store_pg_set_load(s->pg, agents, runtimes);
    s->agents = agents;
    s->runtimes = runtimes;
}

int store_load(struct store *s, const uint64_t *shards, store_meta_cb on_stream,
               store_producer_cb on_producer, void *arg)
{
    return s->pg ? store_pg_load(s->pg, shards, on_stream, on_producer, arg)
                 : store_sqlite_load(s->sq, on_stream, on_producer, arg);
}

int store_load_pooled(struct store *s, const uint64_t *shards, store_meta_cb on_stream,
                      store_producer_cb on_producer, void *arg)
{
    return s->pg ? store_pg_load_pooled(s->pg, shards, on_stream, on_producer, arg) : -ENOTSUP;
}

void store_loaded(struct store *s, const struct store_meta *m)
{
    if (s->pg)
        store_pg_loaded(s->pg, m);
}

int store_stream_id_reserve(struct store *s, int64_t *id)
{
    return s->pg ? store_pg_stream_id_reserve(s->pg, id) : -ENOTSUP;
}

int store_stream_insert(struct store *s, struct store_meta *m)
{
    if (s->pg)
        return store_pg_stream_insert(s->pg, m);
    m->shard = 0;
    return store_sqlite_stream_insert(s->sq, m);
}

int store_stream_update(struct store *s, const struct store_meta *m)
{
    return s->pg ? store_pg_stream_update(s->pg, m) : store_sqlite_stream_update(s->sq, m);
}

int store_stream_delete(struct store *s, int64_t id)
{
    return s->pg ? store_pg_stream_delete(s->pg, id) : store_sqlite_stream_delete(s->sq, id);
}

int store_record_append(struct store *s, int64_t stream, int64_t off, const void *data, size_t len)
{
    return s->pg ? store_pg_record_append(s->pg, stream, off, data, len)
                 : store_sqlite_record_append(s->sq, stream, off, data, len);
}

int store_producer_put(struct store *s, int64_t stream, const char *pid, int64_t epoch, int64_t seq)
{
    return s->pg ? store_pg_producer_put(s->pg, stream, pid, epoch, seq)
                 : store_sqlite_producer_put(s->sq, stream, pid, epoch, seq);
}

int store_upkeep(struct store *s) { return s->pg ? 0 : store_sqlite_upkeep(s->sq); }
int store_needs_sync(const struct store *s) { return s->pg ? 1 : store_sqlite_needs_sync(s->sq); }
int store_sync(struct store *s) { return s->pg ? store_pg_sync(s->pg, 0) : store_sqlite_sync(s->sq); }
void store_sync_begin(struct store *s)
{
    if (s->pg)
        store_pg_sync_begin(s->pg);
}
int store_sync_marked(struct store *s) { return s->pg ? store_pg_sync(s->pg, 1) : store_sqlite_sync(s->sq); }
int store_batch_open(const struct store *s)
{
    return s->pg ? store_pg_batch_open(s->pg) : store_sqlite_batch_open(s->sq);
}

void store_rollback(struct store *s)
{
    if (s->pg)
        store_pg_rollback(s->pg);
    else
        store_sqlite_rollback(s->sq);
}

int store_commit(struct store *s) { return s->pg ? store_pg_commit(s->pg) : store_sqlite_commit(s->sq); }

int store_read(struct store *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
               store_record_cb cb, void *arg)
{
    s->reads++;
    return s->pg ? store_pg_read(s->pg, stream, from, to, max_bytes, cb, arg)
                 : store_sqlite_read(s->sq, stream, from, to, max_bytes, cb, arg);
}

int store_read_pooled(struct store *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                      store_record_cb cb, void *arg)
{
    return s->pg ? store_pg_read_pooled(s->pg, stream, from, to, max_bytes, cb, arg) : -ENOTSUP;
}

int store_tails_pooled(struct store *s, const char *prefix, store_tail_cb cb, void *arg)
{
    return s->pg ? store_pg_tails_pooled(s->pg, prefix, cb, arg) : -ENOTSUP;
}

int store_read_back_pooled(struct store *s, int64_t stream, int64_t before, store_record_back_cb cb,
                           void *arg)
{
    return s->pg ? store_pg_read_back_pooled(s->pg, stream, before, cb, arg) : -ENOTSUP;
}

int store_read_slots(const struct store *s) { return s->pg ? PG_READERS : s->test_slots; }

void store_test_read_slots(struct store *s, int n)
{
    if (s->pg == NULL)
        s->test_slots = n;
}

void store_reads_cancel(struct store *s)
{
    if (s->pg)
        store_pg_reads_cancel(s->pg);
}

int store_read_back(struct store *s, int64_t stream, int64_t before, store_record_back_cb cb, void *arg)
{
    s->reads++;
    return s->pg ? store_pg_read_back(s->pg, stream, before, cb, arg)
                 : store_sqlite_read_back(s->sq, stream, before, cb, arg);
}

int store_snapshot_open(struct store *s, const char *path, int64_t from, struct store_meta *out,
                        struct store_snapshot **snap)
{
    *snap = NULL;
    return s->pg ? store_pg_snapshot_open(s->pg, path, from, out, snap) : -ENOTSUP;
}

/* Only PostgreSQL opens snapshots: sn is store_pg's. */
int store_snapshot_get(struct store_snapshot *sn, int64_t id, struct store_meta *out)
{
    return store_pg_snapshot_get(sn, id, out);
}

int store_snapshot_read(struct store_snapshot *sn, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                        store_record_cb cb, void *arg)
{
    return store_pg_snapshot_read(sn, stream, from, to, max_bytes, cb, arg);
}

void store_snapshot_close(struct store_snapshot *sn) { store_pg_snapshot_close(sn); }

void store_stats(struct store *s, struct store_stats *out)
{
    if (s->pg)
        store_pg_stats(s->pg, out);
    else
        store_sqlite_stats(s->sq, out);
    out->reads = s->reads;
}

const char *store_errmsg(struct store *s)
{
    return s->pg ? store_pg_errmsg(s->pg) : store_sqlite_errmsg(s->sq);
}
