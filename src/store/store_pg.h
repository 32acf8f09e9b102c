/*
 * store_pg — the PostgreSQL backend of store.h (libpq). Not for other modules: store.c hands each
 * call of store.h to the store_pg_* function of the same name; see store.h for what each does.
 *
 * Connections: the loop's (loading, reads not pooled, stream id reservations, taking the lease),
 * up to PG_READERS readers' (store_pg_read_pooled: catch-up reads from libuv's thread pool, and a
 * follower's read snapshots, store_pg_snapshot_open), the
 * committer's (store_pg_sync, in libuv's thread pool; a mutex keeps it to one caller at a time)
 * and the heartbeat thread's (renewing the lease; store_pg_lease.c). Writes never touch a connection on the loop: a
 * batch is a list of rows in memory, store_pg_commit seals it, and store_pg_sync sends every sealed
 * batch as one transaction.
 */
#ifndef AGENTD_STORE_PG_H
#define AGENTD_STORE_PG_H

#include "store/store.h"

struct store_pg;

/* Connections of the readers' pool (store_read_slots): two, so that a read waiting on a slow
 * database leaves libuv's thread pool (4 threads) room for the committer's sync and for sessions. */
#define PG_READERS 2

int store_pg_open(struct store_pg **out, const struct store_pg_config *cfg, char *err,
                  size_t errlen) CORE_UNUSED_RESULT;
void store_pg_lease(struct store_pg *s, struct store_lease *out);
int store_pg_shards(struct store_pg *s, struct store_lease *out, int max);
void store_pg_shard_want(struct store_pg *s, int k);
void store_pg_shard_release(struct store_pg *s, int k);
int store_pg_shard_share(struct store_pg *s);
int store_pg_nodes(struct store_pg *s, struct store_node *out, size_t max);
void store_pg_set_load(struct store_pg *s, int64_t agents, int64_t runtimes);
void store_pg_free(struct store_pg *s);
int store_pg_available(struct store_pg *s);
void store_pg_offline(struct store_pg *s);
struct store_probe *store_pg_probe_start(struct store_pg *s);
int store_pg_probe_done(struct store_probe *p, int *rc);
void store_pg_probe_free(struct store_probe *p);
int store_pg_load(struct store_pg *s, const uint64_t *shards, store_meta_cb on_stream,
                  store_producer_cb on_producer, void *arg);
int store_pg_stream_insert(struct store_pg *s, struct store_meta *m);
int store_pg_stream_id_reserve(struct store_pg *s, int64_t *id);
int store_pg_stream_update(struct store_pg *s, const struct store_meta *m);
int store_pg_stream_delete(struct store_pg *s, int64_t id);
/* The store's PostgreSQL backend, NULL for SQLite (store.c). */
struct store_pg *store__pg(struct store *s);
/* store_pg_fork.c and the batch rows of store_fork_ref (ref 1) and store_fork_unref (ref 0) */
int store_pg_fork_ref(struct store_pg *s, int64_t src, int64_t fork, int ref);
int store_pg_load_ids(struct store_pg *s, const int64_t *ids, size_t n, store_meta_cb on_stream, void *arg);
int store_pg_load_refs(struct store_pg *s, const uint64_t *shards, int leaked, store_ref_cb cb, void *arg);
int store_pg_refs_pooled(struct store_pg *s, const uint64_t *shards, int leaked, store_ref_cb cb, void *arg);
int store_pg_load_pooled(struct store_pg *s, const uint64_t *shards, store_meta_cb on_stream,
                         store_producer_cb on_producer, void *arg);
int store_pg_load_ids_pooled(struct store_pg *s, const int64_t *ids, size_t n, store_meta_cb on_stream,
                             void *arg);
void store_pg_loaded(struct store_pg *s, const struct store_meta *m);
int store_pg_record_append(struct store_pg *s, int64_t stream, int64_t off, const void *data, size_t len);
int store_pg_producer_put(struct store_pg *s, int64_t stream, const char *pid, int64_t epoch, int64_t seq);
/* marked: only the batches sealed before the last store_pg_sync_begin (all of them without one). */
int store_pg_sync(struct store_pg *s, int marked);
void store_pg_sync_begin(struct store_pg *s);
int store_pg_batch_open(const struct store_pg *s);
void store_pg_rollback(struct store_pg *s);
int store_pg_commit(struct store_pg *s);
int store_pg_read(struct store_pg *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                  store_record_cb cb, void *arg);
/* From the loop, at a stop: cancels the queries the readers run (PQcancel: the server ends them)
 * and fails every one they would start after. Again when a cancel may have come before its query. */
void store_pg_reads_cancel(struct store_pg *s);
int store_pg_read_pooled(struct store_pg *s, int64_t stream, int64_t from, int64_t to, size_t max_bytes,
                         store_record_cb cb, void *arg);
int store_pg_tails_pooled(struct store_pg *s, const char *prefix, store_tail_cb cb, void *arg);
int store_pg_read_back_pooled(struct store_pg *s, int64_t stream, int64_t before, store_record_back_cb cb,
                              void *arg);
int store_pg_read_back(struct store_pg *s, int64_t stream, int64_t before, store_record_back_cb cb,
                       void *arg);
struct store_snapshot;
int store_pg_snapshot_open(struct store_pg *s, const char *path, int64_t from, struct store_meta *out,
                           struct store_snapshot **snap);
int store_pg_snapshot_get(struct store_snapshot *sn, int64_t id, struct store_meta *out);
int store_pg_snapshot_read(struct store_snapshot *sn, int64_t stream, int64_t from, int64_t to,
                           size_t max_bytes, store_record_cb cb, void *arg);
void store_pg_snapshot_close(struct store_snapshot *sn);
void store_pg_stats(struct store_pg *s, struct store_stats *out);
const char *store_pg_errmsg(struct store_pg *s);

#endif
