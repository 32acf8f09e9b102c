/*
 * store_pg_lease — which node may write to the database: one lease row in agentd_lease (node,
 * epoch, expires_at). A node takes it at start (waiting out another node's; its own, after a
 * restart, at once), renews it from a heartbeat thread on a connection of its own every quarter
 * of the lease, and gives it up on a clean stop so that a standby takes over at once. Every batch's
 * transaction runs agentd_fence(node, epoch) first (store_pg.c), which takes the row FOR SHARE: a
 * node whose lease was taken over cannot store a single row afterwards, however long it was paused.
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

/* The heartbeat's statement that says a node is alive (pg__node_seen); $1-$6 as there. */
#define PG_NODE_UPSERT                                                                       \
    "INSERT INTO agentd_nodes(node, url, started_ms, seen_ms, token_hash, agents, runtimes)" \
    " VALUES($1, $2, $3, $3, $4, $5, $6) ON CONFLICT (node) DO UPDATE SET"                   \
    " seen_ms = excluded.seen_ms, agents = excluded.agents, runtimes = excluded.runtimes"

static PGresult *pg__params(PGconn *c, const char *sql, int n, const char *const *v)
{
    return PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
}

/* now, and the load store_pg_set_load last handed over, as text parameters. */
static void pg__node_load(struct store_pg *s, char now[24], char agents[24], char runtimes[24])
{
    pthread_mutex_lock(&s->mu);
    snprintf(agents, 24, "%" PRId64, s->agents);
    snprintf(runtimes, 24, "%" PRId64, s->runtimes);
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

/* Takes the rows of pg__node_seen's read (node, url, seen_ms, agents, runtimes, stopped) as the
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
    char now[24], agents[24], runtimes[24], since[24];
    pg__node_load(s, now, agents, runtimes);
    int64_t wall = strtoll(now, NULL, 10);
    snprintf(since, sizeof since, "%" PRId64, wall - PG_NODE_FORGET_MS);
    const char *v[] = {s->node, s->node_url, now, s->token_hash, agents, runtimes, since};
    if (!read) {
        PQclear(pg__params(c, PG_NODE_UPSERT, 6, v));
        return;
    }
    PGresult *r = pg__params(
        c,
        "WITH u AS (" PG_NODE_UPSERT " RETURNING node, url, seen_ms, agents, runtimes, stopped_ms)"
        " SELECT node, coalesce(url, ''), seen_ms, coalesce(agents, -1), coalesce(runtimes, -1),"
        " stopped_ms IS NOT NULL FROM u UNION ALL"
        " SELECT n.node, coalesce(n.url, ''), n.seen_ms, coalesce(n.agents, -1), coalesce(n.runtimes, -1),"
        " n.stopped_ms IS NOT NULL FROM agentd_nodes n WHERE n.node <> $1"
        " AND (n.seen_ms >= $7::bigint OR n.node = (SELECT node FROM agentd_lease WHERE id = 1)) ORDER BY 1",
        7, v);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        pg__nodes_keep(s, r, wall);
        s->hb.read_us = clock_mono_us();
    }
    PQclear(r);
}

/* Registers the node (again after a restart: no longer stopped) and forgets the nodes not heard of
 * for PG_NODE_FORGET_MS, by this node's wall clock. Never the lease's holder, whatever its row
 * says (its clock may be a week behind): followers forward with its row's --node-url and token hash.
 * A live node deleted by such a clock writes its row back at its next beat (pg__node_seen). */
static int pg__node_register(struct store_pg *s, PGconn *c, char *err, size_t errlen)
{
    char now[24], agents[24], runtimes[24], before[24];
    pg__node_load(s, now, agents, runtimes);
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
                           " AND node NOT IN (SELECT node FROM agentd_lease)",
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

/* Records what the heartbeat (or the start) saw of the lease: holder, its URL and token hash,
 * epoch, time left. */
static void pg__saw(struct store_pg *s, const char *holder, const char *url, const char *token, int64_t epoch,
                    int64_t left_ms)
{
    uint64_t now = clock_mono_us();
    pthread_mutex_lock(&s->mu);
    snprintf(s->holder, sizeof s->holder, "%s", holder);
    snprintf(s->holder_url, sizeof s->holder_url, "%s", url);
    snprintf(s->holder_token, sizeof s->holder_token, "%s", token);
    s->holder_epoch = epoch;
    s->holder_until_us = left_ms > 0 ? now + (uint64_t)left_ms * 1000 : now;
    s->looked_us = now;
    pthread_mutex_unlock(&s->mu);
}

/* Reads who holds the lease (pg__saw). 0 or -errno. */
static int pg__look(struct store_pg *s, PGconn *c)
{
    int rc = 0;
    PGresult *r =
        PQexec(c, "SELECT l.node, coalesce(n.url, ''), l.epoch, CASE WHEN isfinite(l.expires_at) THEN"
                  " (extract(epoch from l.expires_at - clock_timestamp()) * 1000)::bigint ELSE -1 END,"
                  " coalesce(n.token_hash, '')"
                  " FROM agentd_lease l LEFT JOIN agentd_nodes n ON n.node = l.node WHERE l.id = 1");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        pg__saw(s, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 4),
                strtoll(PQgetvalue(r, 0, 2), NULL, 10), strtoll(PQgetvalue(r, 0, 3), NULL, 10));
    else
        rc = pg__errno(c, r);
    PQclear(r);
    return rc;
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

/* One attempt. 1: taken (s->epoch is the new epoch, s->previous who held it before); 0: another
 * node's lease is live (what store_pg_lease says is updated); -errno. */
static int pg__lease_try(struct store_pg *s, PGconn *c)
{
    char ms[24];
    snprintf(ms, sizeof ms, "%" PRId64, s->lease_ms);
    const char *v[] = {s->node, ms};
    /* o is the row as it was before this UPDATE: who held the lease before (node_lost). */
    PGresult *r =
        pg__params(c,
                   "UPDATE agentd_lease l SET node = $1, epoch = l.epoch + 1,"
                   " expires_at = clock_timestamp() + ($2 || ' milliseconds')::interval"
                   " FROM agentd_lease o WHERE l.id = 1 AND o.id = 1"
                   " AND (l.node = $1 OR l.expires_at <= clock_timestamp()) RETURNING l.epoch, o.node",
                   2, v);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : pg__errno(c, r);
    if (rc == 1) {
        int64_t epoch = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        pthread_mutex_lock(&s->mu);
        s->epoch = epoch;
        s->fenced = 0;
        snprintf(s->previous, sizeof s->previous, "%s", PQgetvalue(r, 0, 1));
        pthread_mutex_unlock(&s->mu);
        pg__saw(s, s->node, s->node_url ? s->node_url : "", s->token_hash, epoch, s->lease_ms);
    }
    PQclear(r);
    return rc != 0 ? rc : pg__look(s, c);
}

int pg__lease_take(struct store_pg *s, PGconn *c, int wait, char *err, size_t errlen)
{
    /* At start (wait) the node says it is there, also while it waits as a standby. */
    int rc = wait ? pg__node_register(s, c, err, errlen) : 0;
    for (int waited = 0; rc == 0;) {
        if ((rc = pg__lease_try(s, c)) == 1) {
            log_info("store: node %s holds the write lease (epoch %" PRId64 ")", s->node, s->epoch);
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

void store_pg_lease(struct store_pg *s, struct store_lease *out)
{
    memset(out, 0, sizeof *out);
    uint64_t now = clock_mono_us();
    pthread_mutex_lock(&s->mu);
    out->self = s->epoch != 0 && !s->fenced;
    out->live = s->holder[0] != '\0' && s->holder_until_us > now;
    out->epoch = s->holder_epoch;
    out->left_ms = ((int64_t)s->holder_until_us - (int64_t)now) / 1000;
    out->looked_ms_ago = s->looked_us ? (int64_t)(now - s->looked_us) / 1000 : INT64_MAX;
    snprintf(out->owner, sizeof out->owner, "%s", s->holder);
    snprintf(out->owner_url, sizeof out->owner_url, "%s", s->holder_url);
    snprintf(out->previous, sizeof out->previous, "%s", s->previous);
    snprintf(out->owner_token, sizeof out->owner_token, "%s", s->holder_token);
    pthread_mutex_unlock(&s->mu);
}

/* Tells the node (on_lease) that the lease changed, unless the store is being freed: a heartbeat
 * left running by pg__lease_release (the node's on_lease argument may be gone then) stays quiet. */
static void pg__lease_notify(struct store_pg *s)
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

/* Another node took the lease over (a batch failed the fence, or a renewal found the row taken):
 * on_lease tells the node once, from this thread (serve stops its sessions' processes then). */
void pg__fenced(struct store_pg *s)
{
    pthread_mutex_lock(&s->mu);
    int was = s->fenced;
    if (!was)
        log_warn("store: node %s lost the write lease (epoch %" PRId64 "): writes are refused until it can "
                 "take it back",
                 s->node, s->epoch);
    s->fenced = 1;
    pthread_mutex_unlock(&s->mu);
    if (!was)
        pg__lease_notify(s);
}

/* The heartbeat's connection, (re)made when it was lost. 0, or -ENOTCONN (the next beat tries again). */
static int pg__hb_connect(struct store_pg *s)
{
    char err[256];
    struct pg__heartbeat *hb = &s->hb;
    if (hb->conn != NULL && PQstatus(hb->conn) == CONNECTION_OK)
        return 0;
    PQfinish(hb->conn);
    hb->conn = pg__connect(s->conninfo, err, sizeof err);
    return hb->conn ? 0 : -ENOTCONN;
}

/* One heartbeat: renews this node's lease (unless another node took it meanwhile, which fences
 * this one) and says the node is alive. Failures wait for the next beat: the lease then expires
 * on its own, and the fence refuses what this node writes after that. */
static void pg__renew(struct store_pg *s)
{
    struct pg__heartbeat *hb = &s->hb;
    if (pg__hb_connect(s) != 0)
        return;
    pthread_mutex_lock(&s->mu);
    int64_t epoch = s->epoch;
    int fenced = s->fenced;
    pthread_mutex_unlock(&s->mu);
    char e[24], ms[24];
    snprintf(e, sizeof e, "%" PRId64, epoch);
    snprintf(ms, sizeof ms, "%" PRId64, s->lease_ms);
    if (!fenced) {
        const char *v[] = {s->node, e, ms};
        PGresult *r =
            pg__params(hb->conn,
                       "UPDATE agentd_lease SET expires_at = clock_timestamp() + ($3 || ' milliseconds')"
                       "::interval WHERE id = 1 AND node = $1 AND epoch = $2",
                       3, v);
        /* Taken over: who holds it now is read first, so that on_lease can name the new holder. */
        if (PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "0") == 0) {
            (void)pg__look(s, hb->conn);
            pg__fenced(s);
        } else if (PQresultStatus(r) == PGRES_COMMAND_OK)
            pg__saw(s, s->node, s->node_url ? s->node_url : "", s->token_hash, epoch, s->lease_ms);
        PQclear(r);
    }
    /* The nodes are read about once a second (at each renewal when it renews less often), with the
     * row's upsert: no round trip of their own. */
    pg__node_seen(s, hb->conn, clock_mono_us() - hb->read_us >= (PG_SEEN_MS - PG_WATCH_MS) * 1000);
}

/* One look of a follower: takes the lease if it expired, else notes who holds it. on_lease runs
 * when that changed. The node's row is refreshed about once a second. */
static void pg__watch(struct store_pg *s)
{
    struct pg__heartbeat *hb = &s->hb;
    if (pg__hb_connect(s) != 0)
        return;
    struct store_lease a, b;
    store_pg_lease(s, &a);
    int rc = pg__lease_try(s, hb->conn);
    store_pg_lease(s, &b);
    if (rc == 1)
        log_info("store: node %s took over the write lease (epoch %" PRId64 ") from %s", s->node, b.epoch,
                 *b.previous ? b.previous : "nobody");
    if ((rc == 1 || strcmp(a.owner, b.owner) != 0 || strcmp(a.owner_url, b.owner_url) != 0 ||
         a.epoch != b.epoch || a.live != b.live))
        pg__lease_notify(s);
    uint64_t now = clock_mono_us();
    if (now - hb->seen_us >= 1000000) {
        hb->seen_us = now;
        pg__node_seen(s, hb->conn, 1);
    }
}

/* ms from now, for pthread_cond_timedwait (CLOCK_REALTIME). */
static struct timespec pg__in_ms(int64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
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
        int holder = s->epoch != 0;
        pthread_mutex_unlock(&s->mu);
        int64_t every_ms = holder ? renew_ms : watch_ms;
        struct timespec until = pg__in_ms(every_ms);
        pthread_cond_timedwait(&hb->cv, &hb->mu, &until);
        if (hb->stop)
            break;
        pthread_mutex_unlock(&hb->mu);
        if (holder)
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
    pthread_mutex_init(&hb->mu, NULL);
    pthread_cond_init(&hb->cv, NULL);
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

/* Gives the lease up and lists the node as stopped, unless the database is known unreachable (the
 * loop's connection is lost, or the heartbeat hung): those queries would wait for it too, and
 * the lease expires on its own. */
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
    if (s->epoch != 0 && !s->fenced) {
        char e[24];
        snprintf(e, sizeof e, "%" PRId64, s->epoch);
        const char *v[] = {s->node, e};
        PQclear(pg__params(
            s->conn,
            "UPDATE agentd_lease SET expires_at = '-infinity' WHERE id = 1 AND node = $1 AND epoch = $2", 2,
            v));
    }
    /* Listed as stopped, not unreachable, until it starts again (pg__node_register). After the
     * lease is given up: a standby takes over one round trip sooner. */
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, clock_wall_ms());
    const char *n[] = {s->node, now};
    PQclear(pg__params(s->conn,
                       "UPDATE agentd_nodes SET stopped_ms = $2, seen_ms = $2, agents = 0, runtimes = 0"
                       " WHERE node = $1",
                       2, n));
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
