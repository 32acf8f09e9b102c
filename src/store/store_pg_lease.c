/*
 * store_pg_lease — which node may write to which shard of the database: one lease row per shard in
 * agentd_shards (shard, node, epoch, expires_at; doc/SHARDING-PLAN.md §1). For now the rows are
 * taken all or nothing (increment 1 of the plan): a node takes every row in one statement when each
 * is free, expired or its own, so one node writes at a time, as with schema 4's single lease. A node
 * takes them at start (waiting out another node's; its own, after a restart, at once), renews them
 * all in one statement from a heartbeat thread on a connection of its own every quarter of the
 * lease, and gives them up on a clean stop so that a standby takes over at once. Every batch's
 * transaction runs agentd_fence_shards(node, shards, epochs) first (store_pg.c), which takes the
 * rows of the shards it writes to FOR SHARE: a node whose shards were taken over cannot store a
 * single row in them afterwards, however long it was paused. After an outage of the heartbeat's
 * connection (PostgreSQL restarted: every lease looks expired) a node renews its own rows and takes
 * nobody's for one lease (pg__hb_connect), so that the nodes coming back do not fence one another.
 * agentd_nodes lists every node that uses the database (GET /v1/nodes): the heartbeat refreshes
 * its row with the node's load, and about once a second reads every node's row in the same
 * statement into the snapshot GET /v1/nodes answers from (no query on the loop); a clean stop
 * marks the row stopped.
 */
#include "store/store_pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How often a follower looks at the lease (ms, at most: a quarter of the lease if shorter). */
#define PG_WATCH_MS       100
/* A node's row is refreshed at least every max(PG_SEEN_MS, a quarter of the lease): the owner with
 * each renewal (every quarter of the lease), a follower and a standby about once a second whatever
 * the lease. Not heard of for PG_SEEN_MISSED of those, it is listed unreachable: one late beat on a
 * loaded machine (or a few hundred ms between two nodes' wall clocks) does not make it blink. */
#define PG_SEEN_MS        1000
#define PG_SEEN_MISSED    3
/* A stop waits this long (ms) for the heartbeat's beat in progress (pg__heartbeat_stop). */
#define PG_HB_STOP_MS     1000
/* Nodes not heard of for a week are no longer listed, and their rows are deleted when a node
 * starts: long enough that a node down over a long weekend is still shown (stopped, unreachable)
 * when someone looks, short enough that the names of nodes replaced or renamed (a name defaults to
 * host and data dir) do not pile up in the list for ever. */
#define PG_NODE_FORGET_MS ((int64_t)7 * 24 * 3600 * 1000)

/* The heartbeat's statement that says a node is alive (pg__node_seen); $1-$7 as there. */
#define PG_NODE_UPSERT                                                                               \
    "INSERT INTO agentd_nodes(node, url, started_ms, seen_ms, token_hash, agents, runtimes, shards)" \
    " VALUES($1, $2, $3, $3, $4, $5, $6, $7::int) ON CONFLICT (node) DO UPDATE SET"                  \
    " seen_ms = excluded.seen_ms, agents = excluded.agents, runtimes = excluded.runtimes,"           \
    " shards = excluded.shards"

static PGresult *pg__params(PGconn *c, const char *sql, int n, const char *const *v)
{
    return PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
}

/* How many shards this node holds and has not lost. Under mu. */
int pg__held(const struct store_pg *s)
{
    int n = 0;
    for (int k = 0; k < s->nshards; k++)
        n += s->shard[k].epoch != 0 && !s->shard[k].fenced;
    return n;
}

int pg__holds(const struct store_pg *s) { return pg__held(s) > 0; }

/* now, the load store_pg_set_load last handed over, and the shards held, as text parameters. */
static void pg__node_load(struct store_pg *s, char now[24], char agents[24], char runtimes[24],
                          char shards[24])
{
    pthread_mutex_lock(&s->mu);
    snprintf(agents, 24, "%" PRId64, s->agents);
    snprintf(runtimes, 24, "%" PRId64, s->runtimes);
    snprintf(shards, 24, "%d", pg__held(s));
    pthread_mutex_unlock(&s->mu);
    snprintf(now, 24, "%" PRId64, clock_wall_ms());
}

/* Every node is taken to run with this node's --lease-ms (PG_SEEN_MS). seen_ms_ago: at the read. */
static enum store_node_state pg__node_state(struct store_pg *s, const struct store_node *o, int stopped)
{
    int64_t beat = s->lease_ms / 4 > PG_SEEN_MS ? s->lease_ms / 4 : PG_SEEN_MS;
    if (o->self)
        return STORE_NODE_LIVE; /* answering */
    if (stopped)
        return STORE_NODE_STOPPED;
    return o->seen_ms_ago > PG_SEEN_MISSED * beat ? STORE_NODE_UNREACHABLE : STORE_NODE_LIVE;
}

/* Takes the rows of pg__node_seen's read (node, url, seen_ms, agents, runtimes, stopped, shards) as the
 * nodes snapshot (store_pg_nodes), judged at `wall` (this node's clock when it sent the read). */
static void pg__nodes_keep(struct store_pg *s, PGresult *r, int64_t wall)
{
    int n = PQntuples(r);
    struct store_node *nodes = xcalloc(n > 0 ? (size_t)n : 1, sizeof *nodes);
    for (int i = 0; i < n; i++) {
        struct store_node *o = &nodes[i];
        snprintf(o->node, sizeof o->node, "%s", PQgetvalue(r, i, 0));
        snprintf(o->url, sizeof o->url, "%s", PQgetvalue(r, i, 1));
        o->self = strcmp(o->node, s->node) == 0;
        o->seen_ms_ago = wall - strtoll(PQgetvalue(r, i, 2), NULL, 10);
        o->agents = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        o->runtimes = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        o->state = pg__node_state(s, o, strcmp(PQgetvalue(r, i, 5), "t") == 0);
        o->shards = atoi(PQgetvalue(r, i, 6));
    }
    pthread_mutex_lock(&s->mu);
    struct store_node *old = s->nodes;
    s->nodes = nodes;
    s->nodes_n = n;
    s->nodes_us = clock_mono_us();
    pthread_mutex_unlock(&s->mu);
    free(old);
}

/* Says the node is alive (agentd_nodes.seen_ms) and what its load is, for GET /v1/nodes: the
 * same statement, no round trip of its own. It writes the row back if another node's start deleted
 * it (pg__node_register: this node's wall clock is a week behind that node's, or its heartbeat could
 * not reach the database for a week); else the node would stay unlisted until it restarts, and,
 * once it holds the lease, followers would find no --node-url or token hash to forward with. With
 * `read`, the same statement also reads every node's row listed (not forgotten, or holding the
 * lease) into the nodes snapshot: this node's own as the upsert left it, the others' as they were. */
void pg__node_seen(struct store_pg *s, PGconn *c, int read)
{
    char now[24], agents[24], runtimes[24], shards[24], since[24];
    pg__node_load(s, now, agents, runtimes, shards);
    int64_t wall = strtoll(now, NULL, 10);
    snprintf(since, sizeof since, "%" PRId64, wall - PG_NODE_FORGET_MS);
    const char *v[] = {s->node, s->node_url, now, s->token_hash, agents, runtimes, shards, since};
    if (!read) {
        PQclear(pg__params(c, PG_NODE_UPSERT, 7, v));
        return;
    }
    /* Each node's shards are counted from agentd_shards (a row names its holder until another node
     * takes it, expired or not, as the owner of schema 4's lease was named), not from its own
     * agentd_nodes.shards, which a node that died or was paused no longer corrects. */
    PGresult *r = pg__params(
        c,
        "WITH u AS (" PG_NODE_UPSERT " RETURNING node, url, seen_ms, agents, runtimes, stopped_ms)"
        " SELECT node, coalesce(url, ''), seen_ms, coalesce(agents, -1), coalesce(runtimes, -1),"
        " stopped_ms IS NOT NULL, (SELECT count(*) FROM agentd_shards h WHERE h.node = u.node) FROM u UNION "
        "ALL"
        " SELECT n.node, coalesce(n.url, ''), n.seen_ms, coalesce(n.agents, -1), coalesce(n.runtimes, -1),"
        " n.stopped_ms IS NOT NULL, (SELECT count(*) FROM agentd_shards h WHERE h.node = n.node)"
        " FROM agentd_nodes n WHERE n.node <> $1"
        " AND (n.seen_ms >= $8::bigint OR n.node IN (SELECT node FROM agentd_shards)) ORDER BY 1",
        8, v);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        pg__nodes_keep(s, r, wall);
        s->hb.read_us = clock_mono_us();
    }
    PQclear(r);
}

/* Registers the node (again after a restart: no longer stopped) and forgets the nodes not heard of
 * for PG_NODE_FORGET_MS, by this node's wall clock. Never a shard's holder, whatever its row
 * says (its clock may be a week behind): followers forward with its row's --node-url and token hash.
 * A live node deleted by such a clock writes its row back at its next beat (pg__node_seen). */
static int pg__node_register(struct store_pg *s, PGconn *c, char *err, size_t errlen)
{
    char now[24], agents[24], runtimes[24], shards[24], before[24];
    pg__node_load(s, now, agents, runtimes, shards);
    snprintf(before, sizeof before, "%" PRId64, clock_wall_ms() - PG_NODE_FORGET_MS);
    const char *v[] = {s->node, s->node_url, now, s->token_hash, agents, runtimes};
    PGresult *r =
        pg__params(c,
                   "INSERT INTO agentd_nodes(node, url, started_ms, seen_ms, token_hash, agents, runtimes)"
                   " VALUES($1, $2, $3, $3, $4, $5, $6) ON CONFLICT (node) DO UPDATE SET url = excluded.url,"
                   " started_ms = excluded.started_ms, seen_ms = excluded.seen_ms,"
                   " token_hash = excluded.token_hash, agents = excluded.agents,"
                   " runtimes = excluded.runtimes, stopped_ms = NULL",
                   6, v);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg__errno(c, r);
    if (rc != 0)
        snprintf(err, errlen, "cannot register the node: %s", PQerrorMessage(c));
    PQclear(r);
    if (rc == 0) {
        const char *f[] = {s->node, before};
        PQclear(pg__params(c,
                           "DELETE FROM agentd_nodes WHERE node <> $1 AND seen_ms < $2::bigint"
                           " AND node NOT IN (SELECT node FROM agentd_shards)",
                           2, f));
    }
    return rc;
}

void store_pg_set_load(struct store_pg *s, int64_t agents, int64_t runtimes)
{
    pthread_mutex_lock(&s->mu);
    s->agents = agents;
    s->runtimes = runtimes;
    pthread_mutex_unlock(&s->mu);
}

/* Row k of agentd_shards as this node saw it (under mu): holder, its URL and token hash, epoch, and
 * when its lease ends (clock_mono_us). */
void pg__saw(struct store_pg *s, int k, const char *holder, const char *url, const char *token, int64_t epoch,
             uint64_t until_us)
{
    if (k < 0 || k >= s->nshards)
        return;
    struct pg__shard *h = &s->shard[k];
    snprintf(h->holder, sizeof h->holder, "%s", holder);
    snprintf(h->holder_url, sizeof h->holder_url, "%s", url);
    snprintf(h->holder_token, sizeof h->holder_token, "%s", token);
    h->holder_epoch = epoch;
    h->holder_until_us = until_us;
}

/* Reads who holds each shard into s->shard[] (holder, its URL and token hash, epoch, time left).
 * 0 or -errno. */
int pg__look(struct store_pg *s, PGconn *c)
{
    PGresult *r = PQexec(
        c, "SELECT l.shard, l.node, coalesce(n.url, ''), l.epoch, CASE WHEN isfinite(l.expires_at) THEN"
           " (extract(epoch from l.expires_at - clock_timestamp()) * 1000)::bigint ELSE -1 END,"
           " coalesce(n.token_hash, '')"
           " FROM agentd_shards l LEFT JOIN agentd_nodes n ON n.node = l.node ORDER BY l.shard");
    int rc = pg__rows(c, r);
    if (rc != 0)
        return rc;
    uint64_t now = clock_mono_us();
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t left_ms = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        pg__saw(s, atoi(PQgetvalue(r, i, 0)), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 5),
                strtoll(PQgetvalue(r, i, 3), NULL, 10), left_ms > 0 ? now + (uint64_t)left_ms * 1000 : now);
    }
    s->looked_us = now;
    pthread_mutex_unlock(&s->mu);
    PQclear(r);
    return 0;
}

/* Nodes that serve one database forward to one another, so they must take the same token: a
 * follower with a token forwarding to an owner without one would let anybody in. A node heard of
 * within two of this node's leases plus a second, and at least 3 s (every live node's row is
 * refreshed at least once a second), counts as live. Two nodes started at the same instant can both pass; a follower also
 * refuses to forward to a holder whose hash differs from its own (serve_forward_http). A row of an
 * older agentd (token_hash NULL) cannot be checked: said, not refused, so that nodes can be
 * upgraded one by one (a follower does not forward to such a holder either). */
int pg__token_check(struct store_pg *s, PGconn *c, char *err, size_t errlen)
{
    char since[24];
    int64_t window = 2 * s->lease_ms + 1000;
    snprintf(since, sizeof since, "%" PRId64, clock_wall_ms() - (window > 3000 ? window : 3000));
    const char *v[] = {s->node, since, s->token_hash};
    PGresult *r = pg__params(c,
                             "SELECT node, token_hash IS NULL, token_hash = 'none' FROM agentd_nodes"
                             " WHERE node <> $1 AND seen_ms >= $2::bigint AND token_hash IS DISTINCT FROM $3"
                             " ORDER BY node",
                             3, v);
    int rc = pg__rows(c, r);
    if (rc != 0) {
        snprintf(err, errlen, "cannot read the other nodes' tokens: %s", PQerrorMessage(c));
        return rc;
    }
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        const char *other = PQgetvalue(r, i, 0);
        if (strcmp(PQgetvalue(r, i, 1), "t") == 0) {
            log_warn(
                "store: node %s runs an older agentd that does not say which --token it has: other nodes "
                "forward to it only once it is upgraded",
                other);
            continue;
        }
        int other_none = strcmp(PQgetvalue(r, i, 2), "t") == 0, none = strcmp(s->token_hash, "none") == 0;
        snprintf(err, errlen,
                 "node %s serves this database %s: every node on one database needs the same --token (they "
                 "forward requests to one another); not starting",
                 other,
                 other_none ? "without --token, and this node has one"
                 : none     ? "with --token, and this node has none"
                            : "with another --token than this node's");
        rc = -EACCES;
    }
    PQclear(r);
    return rc;
}

/* Could this node take every shard, as pg__look last saw them (each expired, never held, or its
 * own)? pg__lease_try asks before it locks every row: a follower looking ten times a second (a
 * standby five) must not hold up the holder's fences while the holder's leases are live. */
static int pg__takeable(struct store_pg *s)
{
    uint64_t now = clock_mono_us();
    int yes = 1;
    pthread_mutex_lock(&s->mu);
    for (int k = 0; k < s->nshards && yes; k++)
        yes = s->shard[k].holder_until_us <= now || strcmp(s->shard[k].holder, s->node) == 0;
    pthread_mutex_unlock(&s->mu);
    return yes;
}

/* One attempt, all or nothing: every shard is taken in one statement when each is free, expired or
 * this node's already, else none. The rows are read first without a lock (the view store_pg_lease
 * gives is read again), and only when they all look free is the take tried, which locks them in
 * shard order (as the fences and the renewals do): a node taking them at the same time waits, then
 * finds them taken. 1: taken (s->shard[k].epoch the new epochs, .previous who held each before);
 * 0: another node holds a live lease; -errno. */
static int pg__lease_try(struct store_pg *s, PGconn *c)
{
    int rc = pg__look(s, c);
    if (rc != 0 || !pg__takeable(s))
        return rc;
    char ms[24];
    snprintf(ms, sizeof ms, "%" PRId64, s->lease_ms);
    const char *v[] = {s->node, ms};
    /* o is the rows as they were before this UPDATE: who held each before (node_lost). */
    PGresult *r =
        pg__params(c,
                   "WITH o AS (SELECT shard, node, expires_at FROM agentd_shards ORDER BY shard FOR UPDATE)"
                   " UPDATE agentd_shards l SET node = $1, epoch = l.epoch + 1,"
                   " expires_at = clock_timestamp() + ($2 || ' milliseconds')::interval"
                   " FROM o WHERE l.shard = o.shard AND NOT EXISTS (SELECT 1 FROM o x WHERE"
                   " x.node <> $1 AND x.expires_at > clock_timestamp()) RETURNING l.shard, l.epoch, o.node",
                   2, v);
    rc = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) > 0 : pg__errno(c, r);
    if (rc == 1) {
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < PQntuples(r); i++) {
            int k = atoi(PQgetvalue(r, i, 0));
            if (k < 0 || k >= s->nshards)
                continue;
            s->shard[k].epoch = strtoll(PQgetvalue(r, i, 1), NULL, 10);
            s->shard[k].fenced = 0;
            snprintf(s->shard[k].previous, sizeof s->shard[k].previous, "%s", PQgetvalue(r, i, 2));
        }
        pthread_mutex_unlock(&s->mu);
    }
    PQclear(r);
    return rc == 1 ? pg__look(s, c) ?: 1 : rc;
}

int pg__lease_take(struct store_pg *s, PGconn *c, int wait, char *err, size_t errlen)
{
    /* At start (wait) the node says it is there, also while it waits as a standby. */
    int rc = wait ? pg__node_register(s, c, err, errlen) : 0;
    if (s->balance) /* the heartbeat takes shards one by one (pg__balance) */
        return rc ? rc : -EPERM;
    for (int waited = 0; rc == 0;) {
        if ((rc = pg__lease_try(s, c)) == 1) {
            struct store_lease l;
            store_pg_lease(s, &l);
            log_info("store: node %s holds the write lease: all %d shards (shard 0's epoch %" PRId64 ")",
                     s->node, s->nshards, l.epoch);
            return 0;
        }
        if (rc < 0) {
            snprintf(err, errlen, "cannot take the write lease: %s", PQerrorMessage(c));
            return rc;
        }
        if (!wait || s->follow)
            return -EPERM;
        struct store_lease l;
        store_pg_lease(s, &l);
        if (!waited++)
            log_warn("store: node %s holds the write lease; node %s waits for it to expire (in %" PRId64
                     " ms)",
                     l.owner, s->node, l.left_ms);
        else if (waited % 5 == 0) /* about once a second: a standby is alive too */
            pg__node_seen(s, c, 0);
        int64_t left = l.left_ms;
        usleep((useconds_t)(left > 200 ? 200 : left < 20 ? 20 : left) * 1000);
    }
    return rc;
}

/* Shard k's view (under mu), judged at now. */
static void pg__view(const struct store_pg *s, int k, uint64_t now, struct store_lease *out)
{
    const struct pg__shard *h = &s->shard[k];
    memset(out, 0, sizeof *out);
    out->self = h->epoch != 0 && !h->fenced;
    out->live = h->holder[0] != '\0' && h->holder_until_us > now;
    out->epoch = h->holder_epoch;
    out->left_ms = ((int64_t)h->holder_until_us - (int64_t)now) / 1000;
    out->looked_ms_ago = s->looked_us ? (int64_t)(now - s->looked_us) / 1000 : INT64_MAX;
    snprintf(out->owner, sizeof out->owner, "%s", h->holder);
    snprintf(out->owner_url, sizeof out->owner_url, "%s", h->holder_url);
    snprintf(out->previous, sizeof out->previous, "%s", h->previous);
    snprintf(out->owner_token, sizeof out->owner_token, "%s", h->holder_token);
}

/* Shard 0's: its holder holds them all (all or nothing), so it says who may write, as schema 4's
 * single lease did. */
void store_pg_lease(struct store_pg *s, struct store_lease *out)
{
    uint64_t now = clock_mono_us();
    pthread_mutex_lock(&s->mu);
    pg__view(s, 0, now, out);
    pthread_mutex_unlock(&s->mu);
}

int store_pg_shards(struct store_pg *s, struct store_lease *out, int max)
{
    uint64_t now = clock_mono_us();
    pthread_mutex_lock(&s->mu);
    for (int k = 0; k < s->nshards && k < max; k++)
        pg__view(s, k, now, &out[k]);
    pthread_mutex_unlock(&s->mu);
    return s->nshards;
}

/* Tells the node (on_lease) that the lease changed, unless the store is being freed: a heartbeat
 * left running by pg__lease_release (the node's on_lease argument may be gone then) stays quiet. */
void pg__lease_notify(struct store_pg *s)
{
    struct pg__heartbeat *hb = &s->hb;
    if (!s->on_lease)
        return;
    if (!hb->started) {
        s->on_lease(s->lease_arg);
        return;
    }
    pthread_mutex_lock(&hb->mu);
    if (!hb->stop)
        s->on_lease(s->lease_arg);
    pthread_mutex_unlock(&hb->mu);
}

/* Another node took shards over (a batch failed the fence, or a renewal found rows taken): every
 * shard held is marked lost, not only those (all or nothing: serve exits on losing shard 0's, and a
 * node left with part of the shards would fail every batch touching the others); on_lease tells the
 * node once, from this thread (serve stops its sessions' processes then). */
void pg__fenced(struct store_pg *s, const uint64_t *lost)
{
    char list[STORE_SHARDS * 4 + 1] = "";
    size_t n = 0;
    pthread_mutex_lock(&s->mu);
    int was = 0;
    for (int k = 0; k < s->nshards; k++) {
        struct pg__shard *h = &s->shard[k];
        if (h->epoch == 0)
            continue;
        was |= h->fenced;
        if (lost && store_shard_in(lost, k) && n < sizeof list)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%d", n ? "," : "", k);
        h->fenced = 1;
    }
    if (!was)
        log_warn("store: node %s lost the write lease (shards %s, shard 0's epoch %" PRId64
                 "): writes are refused until it can take them back",
                 s->node, lost ? list : "all", s->shard[0].epoch);
    pthread_mutex_unlock(&s->mu);
    if (!was)
        pg__lease_notify(s);
}

/* The heartbeat's connection, (re)made when it was lost. A connection made again after one was lost
 * (or after a failed try) starts the grace: for one lease the node takes no shard (pg__watch), and
 * so, after PostgreSQL restarted, where every lease looks expired, the holders (renewing every
 * quarter of the lease) have theirs back before anybody may take them, and nobody exits 75. It
 * costs a takeover after an outage one lease more, when the holder died meanwhile. 0, or -ENOTCONN
 * (the next beat tries again). */
int pg__hb_connect(struct store_pg *s)
{
    char err[256];
    struct pg__heartbeat *hb = &s->hb;
    if (hb->conn != NULL && PQstatus(hb->conn) == CONNECTION_OK)
        return 0;
    PQfinish(hb->conn);
    hb->conn = pg__connect(s->conninfo, err, sizeof err);
    if (hb->conn == NULL) {
        hb->connected = 1; /* the one after is a reconnect, even when none came before */
        return -ENOTCONN;
    }
    if (hb->connected) {
        hb->grace_us = clock_mono_us() + (uint64_t)s->lease_ms * 1000;
        log_info("store: node %s is back on PostgreSQL: it takes no shard for one lease (%" PRId64 " ms)",
                 s->node, s->lease_ms);
    }
    hb->connected = 1;
    return 0;
}

/* The rows of agentd_shards that node $1 holds among shards $2 at epochs $3 (as pg__held_arrays has
 * them), locked in shard order, as h(shard): what a renewal and a release update. */
#define PG_HELD_ROWS                                                                       \
    "(SELECT x.shard FROM agentd_shards x JOIN unnest($2::int[], $3::bigint[]) AS u(k, e)" \
    " ON x.shard = u.k AND x.epoch = u.e WHERE x.node = $1 ORDER BY x.shard FOR UPDATE OF x) h"

/* The shards this node holds (not lost), with its epoch of each, as PostgreSQL arrays; how many. */
static int pg__held_arrays(struct store_pg *s, char *shards, size_t slen, char *epochs, size_t elen)
{
    size_t ns = 0, ne = 0;
    int n = 0;
    shards[ns++] = '{', epochs[ne++] = '{';
    pthread_mutex_lock(&s->mu);
    for (int k = 0; k < s->nshards; k++) {
        const struct pg__shard *h = &s->shard[k];
        if (h->epoch == 0 || h->fenced)
            continue;
        ns += (size_t)snprintf(shards + ns, slen - ns, "%s%d", n ? "," : "", k);
        ne += (size_t)snprintf(epochs + ne, elen - ne, "%s%" PRId64, n ? "," : "", h->epoch);
        n++;
    }
    pthread_mutex_unlock(&s->mu);
    snprintf(shards + ns, slen - ns, "}");
    snprintf(epochs + ne, elen - ne, "}");
    return n;
}

/* The shards a renewal returned are this node's until a lease from now: the view says so without
 * reading the rows again. */
static void pg__renewed(struct store_pg *s, PGresult *r)
{
    uint64_t now = clock_mono_us();
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < PQntuples(r); i++) {
        int k = atoi(PQgetvalue(r, i, 0));
        pg__saw(s, k, s->node, s->node_url ? s->node_url : "", s->token_hash,
                k >= 0 && k < s->nshards ? s->shard[k].epoch : 0, now + (uint64_t)s->lease_ms * 1000);
    }
    s->looked_us = now;
    pthread_mutex_unlock(&s->mu);
}

/* One heartbeat: renews every shard this node holds in one statement, locking the rows in shard
 * order (as the fences do: no deadlock), and says the node is alive. A shard held that the
 * statement does not return was taken over: this node is fenced (all of its shards). Failures wait
 * for the next beat: the leases then expire on their own, and the fence refuses what this node
 * writes after another node took them. */
void pg__renew(struct store_pg *s)
{
    struct pg__heartbeat *hb = &s->hb;
    if (pg__hb_connect(s) != 0)
        return;
    char shards[STORE_SHARDS * 4 + 3], epochs[STORE_SHARDS * 21 + 3], ms[24];
    int n = pg__held_arrays(s, shards, sizeof shards, epochs, sizeof epochs);
    snprintf(ms, sizeof ms, "%" PRId64, s->lease_ms);
    if (n > 0) {
        const char *v[] = {s->node, shards, epochs, ms};
        PGresult *r =
            pg__params(hb->conn,
                       "UPDATE agentd_shards l SET expires_at = clock_timestamp() + ($4 || ' milliseconds')"
                       "::interval FROM " PG_HELD_ROWS " WHERE l.shard = h.shard RETURNING l.shard",
                       4, v);
        /* Taken over: who holds them now is read first, so that on_lease can name the new holder. */
        hb->renew_us = clock_mono_us();
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) < n) {
            uint64_t lost[STORE_SHARD_WORDS];
            pg__shards_parse(shards + 1, lost);
            for (int i = 0; i < PQntuples(r); i++) {
                int k = atoi(PQgetvalue(r, i, 0));
                lost[k / 64] &= ~(1ull << (k % 64));
            }
            (void)pg__look(s, hb->conn);
            pg__fenced(s, lost);
        } else if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            pg__renewed(s, r);
        }
        PQclear(r);
    }
    pg__node_seen(s, hb->conn, pg__nodes_read_due(s));
}

/* The nodes are read about once a second (at each renewal when it renews less often), with the
 * row's upsert: no round trip of their own. */
int pg__nodes_read_due(const struct store_pg *s)
{
    return clock_mono_us() - s->hb.read_us >= (PG_SEEN_MS - PG_WATCH_MS) * 1000;
}

/* One look of a node that holds no shard: takes them if they all expired (not in the grace after
 * an outage, pg__hb_connect), else notes who holds them. on_lease runs when shard 0's view changed.
 * The node's row is refreshed about once a second. */
static void pg__watch(struct store_pg *s)
{
    struct pg__heartbeat *hb = &s->hb;
    if (pg__hb_connect(s) != 0)
        return;
    struct store_lease a, b;
    store_pg_lease(s, &a);
    int rc = clock_mono_us() < hb->grace_us ? pg__look(s, hb->conn) : pg__lease_try(s, hb->conn);
    store_pg_lease(s, &b);
    if (rc == 1)
        log_info("store: node %s took over the write lease, all %d shards (shard 0's epoch %" PRId64
                 ") from %s",
                 s->node, s->nshards, b.epoch, *b.previous ? b.previous : "nobody");
    if ((rc == 1 || strcmp(a.owner, b.owner) != 0 || strcmp(a.owner_url, b.owner_url) != 0 ||
         a.epoch != b.epoch || a.live != b.live))
        pg__lease_notify(s);
    uint64_t now = clock_mono_us();
    if (now - hb->seen_us >= 1000000) {
        hb->seen_us = now;
        pg__node_seen(s, hb->conn, 1);
    }
}

/* ms from now, for pthread_cond_timedwait on hb->cv, whose clock is CLOCK_MONOTONIC
 * (pg__heartbeat_start): a deadline on the wall clock, stepped back while the heartbeat waits,
 * would hold the beat for as long as the step, and the node lose its lease. */
static struct timespec pg__in_ms(int64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static void *pg__heartbeat_main(void *arg)
{
    struct store_pg *s = arg;
    struct pg__heartbeat *hb = &s->hb;
    int64_t renew_ms = s->lease_ms / 4 > 50 ? s->lease_ms / 4 : 50;
    /* A follower looks more often: the sooner it sees the lease expire, the shorter a failover. */
    int64_t watch_ms = renew_ms < PG_WATCH_MS ? renew_ms : PG_WATCH_MS;
    pthread_mutex_lock(&hb->mu);
    while (!hb->stop) {
        pthread_mutex_lock(&s->mu);
        int holder = 0; /* took shards (lost or not: a fenced node only says it is alive) */
        for (int k = 0; k < s->nshards; k++)
            holder |= s->shard[k].epoch != 0;
        pthread_mutex_unlock(&s->mu);
        int64_t every_ms = holder && !s->balance ? renew_ms : watch_ms;
        struct timespec until = pg__in_ms(every_ms);
        pthread_cond_timedwait(&hb->cv, &hb->mu, &until);
        if (hb->stop)
            break;
        pthread_mutex_unlock(&hb->mu);
        if (s->balance)
            pg__balance(s);
        else if (holder)
            pg__renew(s);
        else
            pg__watch(s);
        pthread_mutex_lock(&hb->mu);
    }
    hb->done = 1;
    pthread_cond_broadcast(&hb->cv);
    pthread_mutex_unlock(&hb->mu);
    return NULL;
}

void pg__heartbeat_start(struct store_pg *s)
{
    struct pg__heartbeat *hb = &s->hb;
    pthread_condattr_t ca;
    pthread_mutex_init(&hb->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&hb->cv, &ca);
    pthread_condattr_destroy(&ca);
    hb->started = pthread_create(&hb->thread, NULL, pg__heartbeat_main, s) == 0;
    if (!hb->started)
        log_error("store: cannot start the lease's heartbeat thread: the lease will expire");
}

/* Stops the heartbeat, waiting up to PG_HB_STOP_MS for it: in an outage it may be inside a connect
 * (up to its connect timeout) or a query the database never answers, and a stop must not wait for
 * that. One still running then is detached (hb->abandoned): the store stays its own
 * (store_pg_free frees none of what it reads), and it tells the node nothing more. */
static void pg__heartbeat_stop(struct store_pg *s)
{
    struct pg__heartbeat *hb = &s->hb;
    struct timespec until = pg__in_ms(PG_HB_STOP_MS);
    pthread_mutex_lock(&hb->mu);
    hb->stop = 1;
    pthread_cond_broadcast(&hb->cv);
    while (!hb->done && pthread_cond_timedwait(&hb->cv, &hb->mu, &until) != ETIMEDOUT)
        ;
    int done = hb->done;
    pthread_mutex_unlock(&hb->mu);
    if (!done) {
        log_warn("store: the lease's heartbeat is still waiting for PostgreSQL: not waited for (the lease "
                 "expires on its own)");
        pthread_detach(hb->thread);
        hb->abandoned = 1;
        return;
    }
    pthread_join(hb->thread, NULL);
    pthread_mutex_destroy(&hb->mu);
    pthread_cond_destroy(&hb->cv);
    hb->started = 0;
    PQfinish(hb->conn);
    hb->conn = NULL;
}

/* Gives its shards up and lists the node as stopped, unless the database is known unreachable (the
 * loop's connection is lost, or the heartbeat hung): those queries would wait for it too, and
 * the lease expires on its own. On the loop's connection, reconnected once if it died unseen
 * (PostgreSQL restarted since its last query): else the shards were not given up. */
void pg__lease_release(struct store_pg *s)
{
    if (s->hb.started) {
        pg__heartbeat_stop(s);
    } else {
        PQfinish(s->hb.conn);
        s->hb.conn = NULL;
    }
    if (s->conn == NULL || s->hb.abandoned || s->reader_lost || s->offline)
        return;
    char shards[STORE_SHARDS * 4 + 3], epochs[STORE_SHARDS * 21 + 3];
    if (pg__held_arrays(s, shards, sizeof shards, epochs, sizeof epochs) > 0) {
        const char *v[] = {s->node, shards, epochs};
        PQclear(pg__query(s,
                          "UPDATE agentd_shards l SET expires_at = '-infinity' FROM " PG_HELD_ROWS
                          " WHERE l.shard = h.shard",
                          3, v, 0));
    }
    /* Listed as stopped, not unreachable, until it starts again (pg__node_register). After the
     * lease is given up: a standby takes over one round trip sooner. */
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, clock_wall_ms());
    const char *n[] = {s->node, now};
    PQclear(pg__query(
        s,
        "UPDATE agentd_nodes SET stopped_ms = $2, seen_ms = $2, agents = 0, runtimes = 0, shards = 0"
        " WHERE node = $1",
        2, n, 0));
}

/* From the heartbeat's snapshot (pg__node_seen), with the lease as the heartbeat last saw it (a
 * follower looks every PG_WATCH_MS, the owner renews every quarter of the lease). Each node's state
 * is as judged at the read, so a node's change shows up to one read (about a second) later than a
 * query would show it; a snapshot older than a node may go unheard of (the heartbeat cannot reach
 * the database) judges nothing any more: -ENOTCONN, as a query would have failed. */
int store_pg_nodes(struct store_pg *s, struct store_node *out, size_t max)
{
    struct store_lease l;
    store_pg_lease(s, &l);
    int64_t beat = s->lease_ms / 4 > PG_SEEN_MS ? s->lease_ms / 4 : PG_SEEN_MS;
    uint64_t now = clock_mono_us();
    pthread_mutex_lock(&s->mu);
    int64_t age_ms = s->nodes_us ? (int64_t)(now - s->nodes_us) / 1000 : INT64_MAX;
    int n = age_ms > PG_SEEN_MISSED * beat ? -ENOTCONN : s->nodes_n;
    for (int i = 0; i < n && (size_t)i < max; i++) {
        struct store_node *o = &out[i];
        *o = s->nodes[i];
        o->seen_ms_ago += age_ms;
        o->owner = *l.owner && strcmp(o->node, l.owner) == 0;
        o->epoch = o->owner ? l.epoch : 0;
        o->lease_ms_left = o->owner ? l.left_ms : 0;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}
