/*
 * store_pg — the store on PostgreSQL: connections, the schema, batches and their commits (this
 * file), loading and reads (store_pg_read.c). See store_pg.h for who uses which connection.
 *
 * The schema (version PG_SCHEMA in agentd_meta; one transaction creates or migrates it, under an
 * advisory lock so that two agentd starting at once do not both create it):
 *   agentd_streams(id, path, ..., the columns of struct store_meta)   one row per stream
 *   agentd_records(stream, off, data) PRIMARY KEY (stream, off)        one row per append
 *   agentd_producers(stream, pid, epoch, seq)                          idempotent producer states
 *   agentd_stream_ids, a sequence handing out blocks of PG_ID_BLOCK stream ids (ids are never reused)
 *   (version 2) agentd_lease(node, epoch, expires_at), one row: the node that may write, and
 *   agentd_nodes(node, url, started_ms, seen_ms): every node that uses the database
 *   (store_pg_lease.c); agentd_fence(node, epoch), which every batch's transaction runs first.
 *   (version 3) agentd_nodes.token_hash: what each node's --token is (store_pg_config.token_hash),
 *   so that nodes with different tokens do not serve together (NULL: a node of an older agentd).
 *   (version 4) agentd_nodes.agents, runtimes: each node's load, written by its heartbeat, and
 *   stopped_ms: when it stopped cleanly (NULL while it runs), for GET /v1/nodes on any node (NULL
 *   load: a node of an older agentd, which never writes them).
 *   (version 5, doc/SHARDING-PLAN.md §1) agentd_shards(shard, node, epoch, expires_at): one lease per
 *   shard (agentd_meta('shards') of them), which replaces agentd_lease (kept, unused, until schema
 *   6); agentd_streams.shard (store_shard_of its path); agentd_fork_refs(src, fork), one row per
 *   fork reading through its source; agentd_nodes.shards, how many the node holds;
 *   agentd_fence_shards(node, shards, epochs), which every batch's transaction runs first; and
 *   agentd_fence, which now always fails: an older agentd still running is fenced at its next batch.
 * Unlike the SQLite layout there is no shared log: PostgreSQL's own WAL already makes a commit cost
 * about the same however many streams it touches, and deletes run inside the batch's transaction.
 */
#include "store/store_pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_SCHEMA   5
#define PG_ID_BLOCK 1024
/* Statements sent between two pipeline syncs: bounds what libpq buffers and what the server's answers
 * to one pipelined stretch can pile up to. */
#define PG_CHUNK    256
/* Room for agentd_fence_shards' DETAIL: every shard's number, comma separated. */
#define PG_DETAIL   (STORE_SHARDS * 4 + 1)

/* migration[v] brings the schema from version v to v + 1; version 0 is an empty database. */
static const char *const pg__migration[PG_SCHEMA] = {
    "CREATE TABLE agentd_meta(k text PRIMARY KEY, v text NOT NULL);"
    "INSERT INTO agentd_meta VALUES('schema_version', '0');"
    "CREATE SEQUENCE agentd_stream_ids INCREMENT BY 1024;" /* PG_ID_BLOCK */
    "CREATE TABLE agentd_streams(id bigint PRIMARY KEY, path text, content_type text NOT NULL,"
    " created_ms bigint NOT NULL, ttl_s bigint NOT NULL, expires_at_ms bigint NOT NULL,"
    " expires_at text, closed int NOT NULL, tail bigint NOT NULL, fork_src bigint NOT NULL,"
    " fork_off bigint NOT NULL, fork_sub bigint NOT NULL, refcount bigint NOT NULL,"
    " deleted int NOT NULL, last_seq text, closer_pid text, closer_epoch bigint NOT NULL,"
    " closer_seq bigint NOT NULL);"
    "CREATE UNIQUE INDEX agentd_streams_path ON agentd_streams(path) WHERE path IS NOT NULL;"
    "CREATE TABLE agentd_records(stream bigint NOT NULL, off bigint NOT NULL, data bytea NOT NULL,"
    " PRIMARY KEY(stream, off));"
    "CREATE TABLE agentd_producers(stream bigint NOT NULL, pid text NOT NULL, epoch bigint NOT NULL,"
    " seq bigint NOT NULL, PRIMARY KEY(stream, pid));",
    /* The lease row starts expired: the first node takes it at once. The fence takes the row FOR
     * SHARE, so a takeover (an UPDATE of the row, only once the lease has expired) waits for every
     * write transaction that passed the fence to end: once it has committed, no write of the old
     * epoch can. The fence does not look at the expiry: a node whose lease ran out while nobody
     * took it over (PostgreSQL was down longer than the lease) may go on writing. */
    "CREATE TABLE agentd_lease(id int PRIMARY KEY CHECK (id = 1), node text NOT NULL,"
    " epoch bigint NOT NULL, expires_at timestamptz NOT NULL);"
    "INSERT INTO agentd_lease VALUES(1, '', 0, '-infinity');"
    "CREATE TABLE agentd_nodes(node text PRIMARY KEY, url text, started_ms bigint NOT NULL,"
    " seen_ms bigint NOT NULL);"
    "CREATE FUNCTION agentd_fence(n text, e bigint) RETURNS void LANGUAGE plpgsql AS $$ BEGIN"
    " PERFORM 1 FROM agentd_lease WHERE id = 1 AND node = n AND epoch = e FOR SHARE;"
    " IF NOT FOUND THEN RAISE EXCEPTION 'agentd node % does not hold the lease (epoch %)', n, e"
    " USING ERRCODE = '" PG_FENCED_STATE "'; END IF; END $$;",
    "ALTER TABLE agentd_nodes ADD COLUMN token_hash text;",
    "ALTER TABLE agentd_nodes ADD COLUMN agents bigint, ADD COLUMN runtimes bigint,"
    " ADD COLUMN stopped_ms bigint;",
    /* The holder of the lease keeps every shard (at a higher epoch than it fenced with: an agentd
     * of schema 4 still running is fenced either way). The shard column is filled by C
     * (pg__migrate_shards, the hash is C's), then made NOT NULL (pg__migration_after). The fences
     * take the rows FOR SHARE in shard order and a renewal takes them FOR UPDATE in shard order, so
     * the two cannot deadlock; as agentd_fence did, a fence does not look at the expiry. */
    "CREATE TABLE agentd_shards(shard int PRIMARY KEY, node text NOT NULL, epoch bigint NOT NULL,"
    " expires_at timestamptz NOT NULL);"
    "INSERT INTO agentd_shards SELECT g, l.node, l.epoch + 1, l.expires_at"
    " FROM generate_series(0, " PG__STR(
        STORE_SHARDS) " - 1) g, agentd_lease l WHERE l.id = 1;"
                      "INSERT INTO agentd_meta VALUES('shards', '" PG__STR(
                          STORE_SHARDS) "');"
                                        "ALTER TABLE agentd_streams ADD COLUMN shard int;"
                                        "CREATE TABLE agentd_fork_refs(src bigint NOT NULL, fork bigint NOT "
                                        "NULL, PRIMARY KEY(src, fork));"
                                        "INSERT INTO agentd_fork_refs SELECT fork_src, id FROM "
                                        "agentd_streams WHERE fork_src <> 0;"
                                        "ALTER TABLE agentd_nodes ADD COLUMN shards int NOT NULL DEFAULT 0;"
                                        "CREATE OR REPLACE FUNCTION agentd_fence(n text, e bigint) RETURNS "
                                        "void LANGUAGE plpgsql AS $$ BEGIN"
                                        " RAISE EXCEPTION 'agentd node % runs an agentd older than this "
                                        "database''s schema: stop it, start a"
                                        " newer one', n USING ERRCODE = '" PG_FENCED_STATE "'; END $$;"
                                        "CREATE FUNCTION agentd_fence_shards(n text, s int[], e bigint[]) "
                                        "RETURNS void LANGUAGE plpgsql AS $$"
                                        " DECLARE lost int[]; BEGIN"
                                        " PERFORM 1 FROM agentd_shards WHERE shard = ANY(s) ORDER BY shard "
                                        "FOR SHARE;"
                                        " SELECT array_agg(u.k ORDER BY u.k) INTO lost FROM unnest(s, e) AS "
                                        "u(k, ep)"
                                        " WHERE NOT EXISTS (SELECT 1 FROM agentd_shards h WHERE h.shard = "
                                        "u.k AND h.node = n AND h.epoch = u.ep);"
                                        " IF lost IS NOT NULL THEN RAISE EXCEPTION 'agentd node % does not "
                                        "hold shards %', n, lost"
                                        " USING ERRCODE = '" PG_FENCED_STATE
                                        "', DETAIL = array_to_string(lost, ','); END IF; END $$;",
};

/* The committer's statements, prepared on its connection (again after each reconnect). */
enum pg__stmt {
    PG_ST_INSERT,
    PG_ST_UPDATE,
    PG_ST_DELETE,
    PG_ST_RECORD,
    PG_ST_PRODUCER,
    PG_ST_FENCE,
    PG_ST_REF,
    PG_ST_UNREF,
    PG_ST__COUNT
};
static const char *const pg__sql[PG_ST__COUNT] = {
    [PG_ST_FENCE] = "SELECT agentd_fence_shards($1, $2::int[], $3::bigint[])",
    [PG_ST_INSERT] =
        "INSERT INTO agentd_streams(path, content_type, created_ms, ttl_s, expires_at_ms, expires_at,"
        " closed, tail, fork_src, fork_off, fork_sub, refcount, deleted, last_seq, closer_pid,"
        " closer_epoch, closer_seq, id, shard)"
        " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)",
    [PG_ST_UPDATE] =
        "UPDATE agentd_streams SET path=$1, content_type=$2, created_ms=$3, ttl_s=$4,"
        " expires_at_ms=$5, expires_at=$6, closed=$7, tail=$8, fork_src=$9, fork_off=$10,"
        " fork_sub=$11, refcount=$12, deleted=$13, last_seq=$14, closer_pid=$15, closer_epoch=$16,"
        " closer_seq=$17 WHERE id=$18",
    /* A fork's reference to its source (agentd_fork_refs) is written by the source's owner
     * (store_fork_ref, doc/SHARDING-PLAN.md §2.3), before the fork's row; a deleted row takes its
     * own references as a fork with it (the source's owner's unref, or its sweep, then finds none). */
    [PG_ST_DELETE] = "WITH r AS (DELETE FROM agentd_records WHERE stream=$1),"
                     " p AS (DELETE FROM agentd_producers WHERE stream=$1),"
                     " f AS (DELETE FROM agentd_fork_refs WHERE fork=$1)"
                     " DELETE FROM agentd_streams WHERE id=$1",
    [PG_ST_RECORD] = "INSERT INTO agentd_records(stream, off, data) VALUES($1,$2,$3)",
    [PG_ST_PRODUCER] = "INSERT INTO agentd_producers(stream, pid, epoch, seq) VALUES($1,$2,$3,$4)"
                       " ON CONFLICT (stream, pid) DO UPDATE SET epoch=excluded.epoch, seq=excluded.seq",
    /* refs are a set: a ref or an unref sent again changes nothing */
    [PG_ST_REF] = "INSERT INTO agentd_fork_refs(src, fork) VALUES($1,$2) ON CONFLICT DO NOTHING",
    [PG_ST_UNREF] = "DELETE FROM agentd_fork_refs WHERE src=$1 AND fork=$2",
};
static const char *const pg__stmt_name[PG_ST__COUNT] = {"ins",  "upd",   "del", "rec",
                                                        "prod", "fence", "ref", "unref"};

int pg__rows(PGconn *c, PGresult *r)
{
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        return 0;
    int rc = pg__errno(c, r);
    PQclear(r);
    return rc;
}

int pg__errno(PGconn *c, const PGresult *r)
{
    if (c == NULL || PQstatus(c) == CONNECTION_BAD)
        return -ENOTCONN;
    /* A FATAL error ends the session (the server is shutting down, the backend was terminated):
     * libpq may not have marked the connection bad yet. */
    const char *severity = r ? PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;
    if (severity && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
        return -ENOTCONN;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state == NULL)
        return -EIO;
    if (strcmp(state, "23505") == 0) /* unique_violation */
        return -EEXIST;
    if (strcmp(state, PG_FENCED_STATE) == 0)
        return -EPERM;
    if (strcmp(state, "53100") == 0) /* disk_full */
        return -ENOSPC;
    if (strcmp(state, "25006") == 0) /* read_only_sql_transaction (a standby) */
        return -EROFS;
    /* connection exceptions, and the server shutting down or not accepting connections yet */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)
        return -ENOTCONN;
    return -EIO;
}

/*
 * The connection string comes last, so that what the user wrote in it wins over these defaults.
 * A database host that dies or is cut off without closing its connections would otherwise hold a
 * query (on the loop, a read) for as long as TCP retransmits, many minutes: unanswered bytes end
 * the connection after 5 s (tcp_user_timeout), and keepalives find a dead peer of an idle one.
 */
PGconn *pg__connect(const char *conninfo, char *err, size_t errlen)
{
    static const char *const keys[] = {"connect_timeout",  "application_name", "tcp_user_timeout",
                                       "keepalives",       "keepalives_idle",  "keepalives_interval",
                                       "keepalives_count", "dbname",           NULL};
    const char *vals[] = {"5", "agentd", "5000", "1", "5", "2", "2", conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c != NULL && PQstatus(c) == CONNECTION_OK)
        return c;
    snprintf(err, errlen, "cannot connect to PostgreSQL: %s", c ? PQerrorMessage(c) : "out of memory");
    size_t n = strlen(err);
    while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = 0;
    PQfinish(c);
    return NULL;
}

/* Runs SQL without parameters; 0 or -errno with PostgreSQL's message in err. */
int pg__exec(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : pg__errno(c, r);
    if (rc != 0 && err)
        snprintf(err, errlen, "%s", PQerrorMessage(c));
    PQclear(r);
    return rc;
}

/* The schema to migrate to: PG_SCHEMA, or less for a test that makes an older database with this
 * binary (AGENTD_TEST_PG_SCHEMA; the store then refuses to open, having migrated that far). */
static int pg__schema_target(void)
{
    const char *t = getenv("AGENTD_TEST_PG_SCHEMA");
    int v = t ? atoi(t) : PG_SCHEMA;
    return v >= 1 && v < PG_SCHEMA ? v : PG_SCHEMA;
}

/* Brings the schema from version v to v + 1, in the caller's transaction: migration[v], and what
 * only C can do (schema 5: each row's shard, from store_shard_of). */
static int pg__migrate(PGconn *c, int v, char *err, size_t errlen)
{
    int rc = pg__exec(c, pg__migration[v], err, errlen);
    if (rc == 0 && v == 4 && (rc = pg__migrate_shards(c, err, errlen)) == 0)
        rc = pg__exec(c,
                      "ALTER TABLE agentd_streams ALTER COLUMN shard SET NOT NULL;"
                      "CREATE INDEX agentd_streams_shard ON agentd_streams(shard);",
                      err, errlen);
    return rc;
}

/* How many shards the database has (agentd_meta, since schema 5). */
static int pg__nshards(struct store_pg *s, PGconn *c, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, "SELECT v FROM agentd_meta WHERE k = 'shards'");
    int rc = pg__rows(c, r);
    if (rc != 0) {
        snprintf(err, errlen, "cannot read the number of shards: %s", PQerrorMessage(c));
        return rc;
    }
    s->nshards = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    if (s->nshards >= 1 && s->nshards <= STORE_SHARDS)
        return 0;
    snprintf(err, errlen, "the database has %d shards; this agentd knows 1 to %d", s->nshards, STORE_SHARDS);
    return -EPROTO;
}

/* Creates the schema in an empty database, refuses one written by a newer agentd. */
static int pg__schema(PGconn *c, char *err, size_t errlen)
{
    char msg[512];
    *err = 0;
    int rc = pg__exec(c, "BEGIN; SELECT pg_advisory_xact_lock(" PG_LOCK_SCHEMA ")", msg, sizeof msg);
    if (rc != 0) {
        snprintf(err, errlen, "cannot lock the schema: %s", msg);
        return rc;
    }
    PGresult *r = PQexec(c, "SELECT v FROM agentd_meta WHERE k = 'schema_version'");
    int version = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        version = atoi(PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_FATAL_ERROR ||
             strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE) ?: "", "42P01") != 0) /* undefined_table */
        version = -1;
    PQclear(r);
    if (version < 0) {
        snprintf(err, errlen, "cannot read agentd's schema version: %s", PQerrorMessage(c));
        rc = -EIO;
    } else if (version > PG_SCHEMA) {
        snprintf(err, errlen,
                 "the database has agentd schema %d, written by a newer agentd (this one knows %d)", version,
                 PG_SCHEMA);
        rc = -EPROTO;
    } else if (version == 0) { /* the failed SELECT ended the transaction */
        rc =
            pg__exec(c, "ROLLBACK; BEGIN; SELECT pg_advisory_xact_lock(" PG_LOCK_SCHEMA ")", msg, sizeof msg);
        /* Between the two locks another node starting at the same time may have created the tables:
         * read the version again, without failing the transaction when there is none. */
        r = rc == 0 ? PQexec(c, "SELECT to_regclass('agentd_meta') IS NOT NULL") : NULL;
        int made = r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        r = made ? PQexec(c, "SELECT v FROM agentd_meta WHERE k = 'schema_version'") : NULL;
        if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            version = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    int target = pg__schema_target();
    for (int v = version; rc == 0 && v < target; v++)
        rc = pg__migrate(c, v, msg, sizeof msg);
    char set[96];
    snprintf(set, sizeof set, "UPDATE agentd_meta SET v = '%d' WHERE k = 'schema_version'", target);
    if (rc == 0 && version < target)
        rc = pg__exec(c, set, msg, sizeof msg);
    if (rc == 0)
        rc = pg__exec(c, "COMMIT", msg, sizeof msg);
    if (rc != 0 && !*err)
        snprintf(err, errlen, "cannot create or migrate agentd's tables: %s", msg);
    if (rc != 0)
        (void)pg__exec(c, "ROLLBACK", NULL, 0);
    else if (version < target)
        log_info("store: %s agentd's tables in PostgreSQL (schema %d)", version ? "migrated" : "created",
                 target);
    if (rc == 0 && target < PG_SCHEMA) {
        snprintf(err, errlen, "stopped at schema %d, as AGENTD_TEST_PG_SCHEMA says (tests only)", target);
        rc = -ECANCELED;
    }
    return rc;
}

/* The committer's connection: its statements prepared, its durability set. */
static int pg__writer_setup(struct store_pg *s, PGconn *c, char *err, size_t errlen)
{
    if (s->durability == STORE_OS && pg__exec(c, "SET synchronous_commit = off", err, errlen) != 0)
        return -EIO;
    /* A node paused inside a batch's transaction (between two pipelined stretches) holds the lease
     * row FOR SHARE: PostgreSQL ends that session once the lease is over, so a standby can take over. */
    char sql[96];
    snprintf(sql, sizeof sql, "SET idle_in_transaction_session_timeout = %lld", (long long)s->lease_ms);
    if (pg__exec(c, sql, err, errlen) != 0)
        return -EIO;
    for (int i = 0; i < PG_ST__COUNT; i++) {
        PGresult *r = PQprepare(c, pg__stmt_name[i], pg__sql[i], 0, NULL);
        int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg__errno(c, r);
        if (rc != 0)
            snprintf(err, errlen, "cannot prepare a statement: %s", PQerrorMessage(c));
        PQclear(r);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* (Re)connects the committer. Its thread only. */
static int pg__writer_connect(struct store_pg *s)
{
    char err[512];
    PQfinish(s->wconn);
    s->wconn = pg__connect(s->conninfo, err, sizeof err);
    if (s->wconn == NULL || pg__writer_setup(s, s->wconn, err, sizeof err) != 0) {
        if (!s->writer_lost) /* said once per outage, not at every try */
            log_warn("store: %s", err);
        s->writer_lost = 1;
        PQfinish(s->wconn);
        s->wconn = NULL;
        return -ENOTCONN;
    }
    s->writer_lost = 0;
    return 0;
}

int store_pg_open(struct store_pg **out, const struct store_pg_config *cfg, char *err, size_t errlen)
{
    struct store_pg *s = xcalloc(1, sizeof *s);
    const char *conninfo = cfg->conninfo;
    int rc = -ENOTCONN;
    s->conninfo = xstrdup(conninfo);
    s->node = xstrdup(cfg->node);
    s->node_url = cfg->node_url ? xstrdup(cfg->node_url) : NULL;
    s->token_hash = xstrdup(cfg->token_hash ? cfg->token_hash : "none");
    s->lease_ms = cfg->lease_ms;
    s->durability = cfg->durability;
    s->follow = cfg->follow;
    s->balance = cfg->balance;
    s->on_lease = cfg->on_lease;
    s->lease_arg = cfg->lease_arg;
    s->open_tail = &s->open;
    s->sealed_tail = &s->sealed;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->sync_mu, NULL);
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    if ((s->conn = pg__connect(conninfo, err, errlen)) == NULL)
        goto fail;
    if ((rc = pg__schema(s->conn, err, errlen)) != 0 || (rc = pg__nshards(s, s->conn, err, errlen)) != 0 ||
        (rc = pg__token_check(s, s->conn, err, errlen)) != 0 ||
        ((rc = pg__lease_take(s, s->conn, 1, err, errlen)) != 0 && !(rc == -EPERM && s->follow)))
        goto fail;
    if (rc == -EPERM && s->balance) {
        log_info("store: node %s takes its share of the %d shards (--shard-policy balance)", s->node,
                 s->nshards);
    } else if (rc == -EPERM) { /* a follower: the heartbeat watches the leases (store_pg_lease) */
        struct store_lease l;
        store_pg_lease(s, &l);
        log_info("store: node %s holds the write lease (epoch %" PRId64 ", %" PRId64 " ms left); node %s "
                 "follows it",
                 l.owner, l.epoch, l.left_ms, s->node);
    }
    if ((s->wconn = pg__connect(conninfo, err, errlen)) == NULL) {
        rc = -ENOTCONN;
        goto fail;
    }
    if ((rc = pg__writer_setup(s, s->wconn, err, errlen)) != 0)
        goto fail;
    pg__node_seen(s, s->conn, 1); /* GET /v1/nodes answers from the first second on */
    pg__heartbeat_start(s);
    *out = s;
    return 0;

fail:
    store_pg_free(s);
    *out = NULL;
    return rc;
}

static void pg__rows_free(struct pg__row *r)
{
    while (r) {
        struct pg__row *next = r->next;
        store_meta_clear(&r->m);
        free(r->pid);
        free(r);
        r = next;
    }
}

/* A store whose heartbeat pg__lease_release left running: still referenced (it is not leaked). */
static struct store_pg *pg__abandoned;

void store_pg_free(struct store_pg *s)
{
    if (s == NULL)
        return;
    if ((s->open || s->sealed) && (store_pg_commit(s) != 0 || store_pg_sync(s, 0) != 0))
        log_error("store: the final commit to PostgreSQL failed");
    pg__rows_free(s->open);
    pg__rows_free(s->sealed);
    pg__lease_release(s);
    PQfinish(s->conn);
    PQfinish(s->wconn);
    pg__ids_clear(&s->ids);
    for (int i = 0; i < PG_READERS; i++) { /* none is checked out: the caller waited for its reads */
        PQfreeCancel(s->readers[i].cancel);
        PQfinish(s->readers[i].conn);
    }
    if (s->hb.abandoned) { /* the heartbeat still reads s: left to it (the process is exiting) */
        pg__abandoned = s;
        return;
    }
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->sync_mu);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_cv);
    free(s->conninfo);
    free(s->node);
    free(s->node_url);
    free(s->token_hash);
    free(s->nodes);
    free(s);
}

/* ---- the open batch: rows in memory ---- */

/* Joins r to the open batch, with its stream's shard (for the fence). A row with its meta whose id
 * the map lost says its shard itself (store_meta.shard, the row's). */
static int pg__add(struct store_pg *s, struct pg__row *r)
{
    int meta = r->kind == PG_INSERT || r->kind == PG_UPDATE;
    r->shard = pg__ids_get(&s->ids, meta ? r->m.id : r->stream);
    if (r->shard < 0 && meta && r->m.shard >= 0 && r->m.shard < s->nshards)
        pg__ids_put(&s->ids, r->m.id, r->shard = r->m.shard);
    if (s->poisoned) {
        pg__rows_free(r);
        return s->poisoned;
    }
    *s->open_tail = r;
    s->open_tail = &r->next;
    return 0;
}

static struct pg__row *pg__row_new(enum pg__kind kind, size_t len)
{
    struct pg__row *r = xcalloc(1, sizeof *r + len);
    r->kind = kind;
    r->len = len;
    return r;
}

/* A new stream's id, from the block reserved last (reserving the next one takes a round trip on
 * the loop, once per PG_ID_BLOCK streams). */
static int pg__next_id(struct store_pg *s, int64_t *id)
{
    if (s->next_id == s->id_end) {
        PGresult *r = pg__query(s, "SELECT nextval('agentd_stream_ids')", 0, NULL, 0);
        int rc = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? 0 : pg__errno(s->conn, r);
        if (rc == 0) {
            s->next_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            s->id_end = s->next_id + PG_ID_BLOCK;
        }
        PQclear(r);
        if (rc != 0)
            return rc;
    }
    *id = s->next_id++;
    return 0;
}

int store_pg_stream_id_reserve(struct store_pg *s, int64_t *id) { return pg__next_id(s, id); }

int store_pg_stream_insert(struct store_pg *s, struct store_meta *m)
{
    int rc = s->poisoned ? s->poisoned : m->id > 0 ? 0 : pg__next_id(s, &m->id);
    if (rc != 0) {
        s->poisoned = s->poisoned ? s->poisoned : rc;
        return rc;
    }
    m->shard = store_shard_of(m->path, strlen(m->path), s->nshards);
    pg__ids_put(&s->ids, m->id, m->shard);
    struct pg__row *r = pg__row_new(PG_INSERT, 0);
    store_meta_copy(&r->m, m);
    return pg__add(s, r);
}

int store_pg_stream_update(struct store_pg *s, const struct store_meta *m)
{
    struct pg__row *r = pg__row_new(PG_UPDATE, 0);
    store_meta_copy(&r->m, m);
    return pg__add(s, r);
}

/* A fork reference is a row of its source's shard: r->stream is the source, r->off the fork. */
int store_pg_fork_ref(struct store_pg *s, int64_t src, int64_t fork, int ref)
{
    struct pg__row *r = pg__row_new(ref ? PG_REF : PG_UNREF, 0);
    r->stream = src;
    r->off = fork;
    return pg__add(s, r);
}

int store_pg_stream_delete(struct store_pg *s, int64_t id)
{
    struct pg__row *r = pg__row_new(PG_DELETE, 0);
    r->stream = id;
    int rc = pg__add(s, r);
    pg__ids_del(&s->ids, id);
    return rc;
}

int store_pg_record_append(struct store_pg *s, int64_t stream, int64_t off, const void *data, size_t len)
{
    struct pg__row *r = pg__row_new(PG_RECORD, len);
    r->stream = stream;
    r->off = off;
    memcpy(r->data, data, len);
    return pg__add(s, r);
}

int store_pg_producer_put(struct store_pg *s, int64_t stream, const char *pid, int64_t epoch, int64_t seq)
{
    struct pg__row *r = pg__row_new(PG_PRODUCER, 0);
    r->stream = stream;
    r->pid = xstrdup(pid);
    r->epoch = epoch;
    r->seq = seq;
    return pg__add(s, r);
}

int store_pg_batch_open(const struct store_pg *s) { return s->open != NULL || s->poisoned != 0; }

static void pg__drop_open(struct store_pg *s)
{
    pg__rows_free(s->open);
    s->open = NULL;
    s->open_tail = &s->open;
    s->poisoned = 0;
}

/* Seals the batch: it goes to PostgreSQL with the next store_pg_sync. */
int store_pg_commit(struct store_pg *s)
{
    int rc = s->poisoned;
    if (rc != 0 || s->open == NULL) {
        pg__drop_open(s);
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    *s->sealed_tail = s->open;
    s->sealed_tail = s->open_tail;
    s->sealed_batches++;
    pthread_mutex_unlock(&s->mu);
    s->open = NULL;
    s->open_tail = &s->open;
    return 0;
}

/* Drops the open batch and every sealed one not yet sent: after a failed sync the caller fails
 * them all. */
void store_pg_rollback(struct store_pg *s)
{
    pg__drop_open(s);
    pthread_mutex_lock(&s->mu);
    struct pg__row *sealed = s->sealed;
    s->sealed = NULL;
    s->sealed_tail = &s->sealed;
    s->sealed_batches = 0;
    s->mark_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    pg__rows_free(sealed);
}

void store_pg_sync_begin(struct store_pg *s)
{
    pthread_mutex_lock(&s->mu);
    s->mark_tail = s->sealed_tail;
    s->mark_batches = s->sealed_batches;
    pthread_mutex_unlock(&s->mu);
}

/* Takes the sealed batches to send (under s->mu): up to the mark when marked and there is one, else
 * all of them; the mark is used up either way. */
static struct pg__row *pg__take_sealed(struct store_pg *s, int marked, uint64_t *batches)
{
    struct pg__row *rows = s->sealed;
    if (marked && s->mark_tail != NULL) {
        if (s->mark_tail == &s->sealed) { /* nothing was sealed at the mark */
            s->mark_tail = NULL;
            *batches = 0;
            return NULL;
        }
        s->sealed = *s->mark_tail; /* sealed after the mark: the next sync's */
        *s->mark_tail = NULL;
        if (s->sealed == NULL)
            s->sealed_tail = &s->sealed;
        *batches = s->mark_batches;
        s->sealed_batches -= s->mark_batches;
        s->mark_tail = NULL;
        return rows;
    }
    s->sealed = NULL;
    s->sealed_tail = &s->sealed;
    *batches = s->sealed_batches;
    s->sealed_batches = 0;
    s->mark_tail = NULL;
    return rows;
}

/* ---- sending sealed batches ---- */

/* Queues one row's statement in the pipeline. Integers go as text, record bytes as binary. */
static int pg__send_row(PGconn *c, const struct pg__row *r)
{
    char num[19][24];
    const char *v[19];
    int lens[19] = {0}, fmts[19] = {0}, n = 0;
    enum pg__stmt st;
#define PG_NUM(x) (snprintf(num[n], sizeof num[n], "%lld", (long long)(x)), v[n] = num[n], n++)
    switch (r->kind) {
    case PG_INSERT:
    case PG_UPDATE: {
        const struct store_meta *m = &r->m;
        st = r->kind == PG_INSERT ? PG_ST_INSERT : PG_ST_UPDATE;
        v[n++] = m->path;
        v[n++] = m->content_type;
        PG_NUM(m->created_ms), PG_NUM(m->ttl_s), PG_NUM(m->expires_at_ms);
        v[n++] = m->expires_at;
        PG_NUM(m->closed), PG_NUM(m->tail), PG_NUM(m->fork_src), PG_NUM(m->fork_off), PG_NUM(m->fork_sub);
        PG_NUM(m->refcount), PG_NUM(m->deleted);
        v[n++] = m->last_seq;
        v[n++] = m->closer_pid;
        PG_NUM(m->closer_epoch), PG_NUM(m->closer_seq), PG_NUM(m->id);
        if (r->kind == PG_INSERT)
            PG_NUM(m->shard);
        break;
    }
    case PG_DELETE:
        st = PG_ST_DELETE;
        PG_NUM(r->stream);
        break;
    case PG_RECORD:
        st = PG_ST_RECORD;
        PG_NUM(r->stream), PG_NUM(r->off);
        v[n] = (const char *)r->data;
        lens[n] = (int)r->len;
        fmts[n++] = 1;
        break;
    case PG_REF:
    case PG_UNREF:
        st = r->kind == PG_REF ? PG_ST_REF : PG_ST_UNREF;
        PG_NUM(r->stream), PG_NUM(r->off);
        break;
    default:
        st = PG_ST_PRODUCER;
        PG_NUM(r->stream);
        v[n++] = r->pid;
        PG_NUM(r->epoch), PG_NUM(r->seq);
    }
#undef PG_NUM
    return PQsendQueryPrepared(c, pg__stmt_name[st], n, v, lens, fmts, 0) == 1 ? 0 : -ENOTCONN;
}

/* Keeps the first error, except that a lost connection wins: the batch's outcome is then unknown to
 * PostgreSQL's answers, and the caller must know the database went away. */
static int pg__worse(int rc, int other) { return rc == 0 || other == -ENOTCONN ? other : rc; }

/* Reads the results of n pipelined statements and of the sync after them. 0, or the first error.
 * *begun is set once the transaction's BEGIN is known to have run; a fence's failure leaves its
 * DETAIL (the shards lost) in detail. */
static int pg__drain(PGconn *c, int n, int *begun, char detail[PG_DETAIL])
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        PGresult *r;
        while ((r = PQgetResult(c)) != NULL) {
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
                *begun = 1;
            else
                rc = pg__worse(rc, pg__errno(c, st == PGRES_PIPELINE_ABORTED ? NULL : r));
            if (st == PGRES_FATAL_ERROR && rc == -EPERM)
                snprintf(detail, PG_DETAIL, "%s", PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) ?: "");
            if (st == PGRES_FATAL_ERROR)
                log_error("store: PostgreSQL: %s", PQresultErrorMessage(r));
            PQclear(r);
        }
        if (PQstatus(c) == CONNECTION_BAD)
            return -ENOTCONN;
    }
    /* No sync result: the connection broke (libpq may not say so yet). */
    PGresult *r = PQgetResult(c);
    ExecStatusType st = PQresultStatus(r);
    rc = pg__worse(rc, r == NULL ? -ENOTCONN : st == PGRES_PIPELINE_SYNC ? 0 : pg__errno(c, r));
    PQclear(r);
    return rc;
}

/* Sends rows as one transaction, fenced by the leases of their shards (agentd_fence_shards),
 * PG_CHUNK statements between pipeline syncs (an explicit transaction spans them). 0 once COMMIT has
 * returned; -EPERM when the node does not hold one of those shards (detail lists them); -EAGAIN when
 * the connection was found dead before BEGIN ran (nothing can have been stored: the caller may
 * reconnect and send again). */
static int pg__send(PGconn *c, const struct pg__row *rows, const char *node, const struct pg__fence *f,
                    char detail[PG_DETAIL])
{
    if (!PQenterPipelineMode(c))
        return pg__errno(c, NULL);
    int rc = 0, begun = 0, n = 2, done = 0;
    const char *fence[] = {node, f->shards, f->epochs};
    if (PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1 ||
        PQsendQueryPrepared(c, pg__stmt_name[PG_ST_FENCE], 3, fence, NULL, NULL, 0) != 1)
        rc = -ENOTCONN;
    for (const struct pg__row *r = rows; rc == 0 && !done;) {
        for (; rc == 0 && r && n < PG_CHUNK; r = r->next, n++)
            rc = pg__send_row(c, r);
        if (rc == 0 && r == NULL) {
            rc = PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) == 1 ? 0 : -ENOTCONN;
            n++;
            done = 1;
        }
        if (rc == 0 && PQpipelineSync(c) != 1)
            rc = -ENOTCONN;
        int drc = rc == 0 ? pg__drain(c, n, &begun, detail) : 0;
        rc = rc ? rc : drc;
        n = 0;
    }
    if (PQstatus(c) == CONNECTION_BAD)
        return begun ? -ENOTCONN : -EAGAIN;
    PQexitPipelineMode(c);
    if (rc != 0 && PQtransactionStatus(c) != PQTRANS_IDLE)
        (void)pg__exec(c, "ROLLBACK", NULL, 0);
    return rc;
}

/* A fenced batch: the shards agentd_fence_shards named as lost (all held when it named none). */
static void pg__send_fenced(struct store_pg *s, const char *detail)
{
    uint64_t lost[STORE_SHARD_WORDS];
    pg__fenced(s, pg__shards_parse(detail, lost) ? lost : NULL);
}

int store_pg_sync(struct store_pg *s, int marked)
{
    pthread_mutex_lock(&s->sync_mu);
    pthread_mutex_lock(&s->mu);
    uint64_t batches;
    struct pg__row *rows = pg__take_sealed(s, marked, &batches);
    struct pg__fence fence;
    if (rows)
        pg__fence_of(s, rows, &fence);
    pthread_mutex_unlock(&s->mu);
    int rc = 0;
    char detail[PG_DETAIL] = "";
    if (rows) {
        rc = s->wconn ? pg__send(s->wconn, rows, s->node, &fence, detail) : -EAGAIN;
        /* A connection that died while idle (PostgreSQL restarted meanwhile) is found by this batch:
         * nothing of it ran, so it goes again on a new connection. */
        if (rc == -EAGAIN && (rc = pg__writer_connect(s)) == 0)
            rc = pg__send(s->wconn, rows, s->node, &fence, detail);
        if (rc == -EAGAIN)
            rc = -ENOTCONN;
        if (rc == -EPERM)
            pg__send_fenced(s, detail);
    }
    pg__rows_free(rows);
    /* A send cut short may leave the connection mid-pipeline or mid-transaction: start afresh. */
    if (rc != 0 && s->wconn &&
        (PQpipelineStatus(s->wconn) != PQ_PIPELINE_OFF || PQtransactionStatus(s->wconn) != PQTRANS_IDLE)) {
        PQfinish(s->wconn);
        s->wconn = NULL;
    }
    pthread_mutex_lock(&s->mu);
    if (rc == 0)
        s->commits += batches;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->sync_mu);
    return rc;
}

void store_pg_stats(struct store_pg *s, struct store_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = (struct store_stats){.commits = s->commits};
    pthread_mutex_unlock(&s->mu);
}

const char *store_pg_errmsg(struct store_pg *s)
{
    return s->conn ? PQerrorMessage(s->conn) : "not connected";
}
