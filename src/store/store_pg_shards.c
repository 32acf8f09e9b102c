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

/* A row whose shard is not known (its stream was not in the shard map: no path is known to leave
 * one out) is fenced with every shard this node has an epoch of, not every shard: the stream layer
 * writes only to shards it holds, so its shard is among them, and a node holding only its share
 * (--shard-policy balance) would otherwise fail the fence, and exit 75, for a shard it never had. */
void pg__fence_of(struct store_pg *s, const struct pg__row *rows, struct pg__fence *f)
{
    uint64_t touched[STORE_SHARD_WORDS] = {0};
    int64_t unknown = 0; /* the stream of a row without a shard */
    for (const struct pg__row *r = rows; r; r = r->next) {
        if (r->shard < 0 || r->shard >= s->nshards)
            unknown = r->kind == PG_INSERT || r->kind == PG_UPDATE ? r->m.id : r->stream;
        else
            touched[r->shard / 64] |= 1ull << (r->shard % 64);
    }
    int held = 0;
    for (int k = 0; unknown && k < s->nshards; k++)
        held += s->shard[k].epoch != 0;
    for (int k = 0; unknown && k < s->nshards; k++) /* none held: every shard, and the fence fails */
        if (s->shard[k].epoch != 0 || held == 0)
            touched[k / 64] |= 1ull << (k % 64);
    if (unknown)
        log_warn("store: stream %" PRId64
                 " has no shard known here: its batch is fenced with every shard held",
                 unknown);
    size_t ns = 0, ne = 0;
    f->shards[ns++] = '{', f->epochs[ne++] = '{';
    for (int k = 0; k < s->nshards; k++) {
        if (!store_shard_in(touched, k))
            continue;
        const char *sep = ns > 1 ? "," : "";
        ns += (size_t)snprintf(f->shards + ns, sizeof f->shards - ns, "%s%d", sep, k);
        ne += (size_t)snprintf(f->epochs + ne, sizeof f->epochs - ne, "%s%" PRId64, sep, s->shard[k].epoch);
    }
    snprintf(f->shards + ns, sizeof f->shards - ns, "}");
    snprintf(f->epochs + ne, sizeof f->epochs - ne, "}");
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

/* ---- the balance policy (SHARDING-PLAN §1) ---- */

/* A hash of what routing reads of every shard's view (holder, epoch, whether it is live and held
 * here): the beat tells the node (on_lease) only when it changed. Under mu. */
static uint64_t pg__views_sig(const struct store_pg *s, uint64_t now)
{
    uint64_t h = 1469598103934665603ull;
    for (int k = 0; k < s->nshards; k++) {
        const struct pg__shard *x = &s->shard[k];
        uint64_t v[] = {(uint64_t)x->holder_epoch, x->holder_until_us > now, x->epoch != 0 && !x->fenced};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            h = (h ^ v[i]) * 1099511628211ull;
        for (const char *p = x->holder; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    return h;
}

/* How many nodes share the shards: this node, and those not stopped that either hold a live row
 * (heard of within two leases and a second, the window pg__token_check uses) or hold no row at all
 * and were heard of within STORE_LIVE_ROWLESS_MS (a newcomer says it is alive every quarter lease,
 * pg__balance). Not those whose rows all expired (killed or paused: a live node renews). A node
 * killed after its rows were all taken counted as live, as a newcomer, for two leases and a second
 * more: the share dropped meanwhile with nobody to take the rest (a node restarted after two kills
 * took 32 of 64, the rest a second later), and the hand-off had to wait that out. At least 1. */
static int pg__live_nodes(struct store_pg *s, PGconn *c)
{
    char since[24], rowless[24];
    int64_t wall = clock_wall_ms();
    snprintf(since, sizeof since, "%" PRId64, wall - (2 * s->lease_ms + 1000));
    snprintf(rowless, sizeof rowless, "%" PRId64, wall - STORE_LIVE_ROWLESS_MS(s->lease_ms));
    const char *v[] = {s->node, since, rowless};
    PGresult *r =
        PQexecParams(c,
                     "SELECT count(*) FROM agentd_nodes n WHERE n.node = $1 OR (n.stopped_ms IS NULL"
                     " AND ((n.seen_ms >= $2::bigint AND EXISTS (SELECT 1 FROM agentd_shards h WHERE"
                     " h.node = n.node AND h.expires_at > clock_timestamp())) OR (n.seen_ms >= $3::bigint"
                     " AND NOT EXISTS (SELECT 1 FROM agentd_shards h WHERE h.node = n.node))))",
                     3, NULL, v, NULL, NULL, 0);
    int ok = pg__rows(c, r) == 0; /* which cleared r when the query failed */
    int n = ok ? atoi(PQgetvalue(r, 0, 0)) : 1;
    if (ok)
        PQclear(r);
    return n > 0 ? n : 1;
}

/* Takes shard k if its row is free (expired, never held, or this node's own from before a restart),
 * in a transaction of its own: a takeover never holds two rows, so it cannot deadlock with a fence
 * or a renewal. 1 taken, 0 not, -errno. */
static int pg__shard_try(struct store_pg *s, PGconn *c, int k)
{
    char sk[16], ms[24];
    snprintf(sk, sizeof sk, "%d", k);
    snprintf(ms, sizeof ms, "%" PRId64, s->lease_ms);
    const char *v[] = {s->node, sk, ms};
    PGresult *r =
        PQexecParams(c,
                     "WITH o AS (SELECT shard, node FROM agentd_shards WHERE shard = $2::int FOR UPDATE)"
                     " UPDATE agentd_shards l SET node = $1, epoch = l.epoch + 1,"
                     " expires_at = clock_timestamp() + ($3 || ' milliseconds')::interval FROM o"
                     " WHERE l.shard = o.shard AND (o.node = $1 OR o.node = ''"
                     " OR l.expires_at <= clock_timestamp()) RETURNING l.epoch, o.node",
                     3, NULL, v, NULL, NULL, 0);
    int rc = pg__rows(c, r);
    if (rc != 0)
        return rc;
    rc = PQntuples(r) == 1;
    if (rc) {
        int64_t epoch = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        pthread_mutex_lock(&s->mu);
        struct pg__shard *h = &s->shard[k];
        h->epoch = epoch;
        h->fenced = 0;
        snprintf(h->previous, sizeof h->previous, "%s", PQgetvalue(r, 0, 1));
        pg__saw(s, k, s->node, s->node_url ? s->node_url : "", s->token_hash, epoch,
                clock_mono_us() + (uint64_t)s->lease_ms * 1000);
        pthread_mutex_unlock(&s->mu);
        if (*h->previous && strcmp(h->previous, s->node) != 0)
            log_info("store: node %s took shard %d (epoch %" PRId64 ") from %s", s->node, k, epoch,
                     h->previous);
    }
    PQclear(r);
    return rc;
}

/* Gives up the shards store_shard_release asked for: no longer held here, and their rows expired
 * (for this node's epoch only) so that another node takes them at its next beat. The view says so
 * at once: nobody holds the shard (the row this node read last, naming it the live holder, would
 * otherwise stand until the next read, and the router would forward the shard's requests to this
 * node's own URL). A want of it here (the router wants a shard nobody holds) does not take it
 * back: wants are taken only within the share, which this node is over. */
static void pg__release_asked(struct store_pg *s, PGconn *c)
{
    for (int k = 0; k < s->nshards && k < STORE_SHARDS; k++) {
        pthread_mutex_lock(&s->mu);
        int64_t epoch = store_shard_in(s->release, k) ? s->shard[k].epoch : 0;
        s->release[k / 64] &= ~(1ull << (k % 64));
        if (epoch != 0 && !s->shard[k].fenced) {
            s->shard[k].epoch = 0;
            s->shard[k].holder_until_us = clock_mono_us(); /* expired, as the row is about to be */
        }
        pthread_mutex_unlock(&s->mu);
        if (epoch == 0)
            continue;
        char sk[16], se[24];
        snprintf(sk, sizeof sk, "%d", k);
        snprintf(se, sizeof se, "%" PRId64, epoch);
        const char *v[] = {s->node, sk, se};
        PQclear(PQexecParams(c,
                             "UPDATE agentd_shards SET expires_at = '-infinity' WHERE node = $1 AND"
                             " shard = $2::int AND epoch = $3::bigint",
                             3, NULL, v, NULL, NULL, 0));
        log_info("store: node %s gave shard %d up (epoch %" PRId64 ")", s->node, k, epoch);
    }
}

/* Which shards to try this beat, wanted ones first, then the lowest free ones: at most `room`,
 * into try[]; how many. Under mu. */
static int pg__take_order(struct store_pg *s, uint64_t now, int room, int *try)
{
    int n = 0;
    for (int pass = 0; pass < 2 && n < room; pass++)
        for (int k = 0; k < s->nshards && n < room; k++) {
            const struct pg__shard *h = &s->shard[k];
            int wanted = store_shard_in(s->want, k);
            if ((pass == 0) != wanted || (h->epoch != 0 && !h->fenced))
                continue;
            if (h->holder[0] != '\0' && h->holder_until_us > now && strcmp(h->holder, s->node) != 0) {
                s->want[k / 64] &= ~(1ull << (k % 64)); /* a live holder has it: the router forwards */
                continue;
            }
            try[n++] = k;
        }
    return n;
}

void pg__balance(struct store_pg *s)
{
    struct pg__heartbeat *hb = &s->hb;
    if (pg__hb_connect(s) != 0)
        return;
    uint64_t now = clock_mono_us(), renew_us = (uint64_t)(s->lease_ms / 4 > 50 ? s->lease_ms / 4 : 50) * 1000;
    pthread_mutex_lock(&s->mu);
    uint64_t sig = pg__views_sig(s, now); /* before the release: a shard given up is a change */
    pthread_mutex_unlock(&s->mu);
    pg__release_asked(s, hb->conn);
    pthread_mutex_lock(&s->mu);
    int held = pg__held(s), fenced = 0;
    for (int k = 0; k < s->nshards; k++)
        fenced |= s->shard[k].fenced;
    pthread_mutex_unlock(&s->mu);
    if (fenced) { /* the node exits (decision 3): it only says it is alive */
        pg__node_seen(s, hb->conn, now - hb->read_us >= 1000000);
        return;
    }
    /* A node that holds nothing says it is alive as often as a holder renews (at most a second
     * apart): it counts in the others' share only while heard of within STORE_LIVE_ROWLESS_MS. */
    if (held > 0 && now - hb->renew_us >= renew_us)
        pg__renew(s);
    else if (held == 0 && now - hb->seen_us >= (renew_us < 1000000 ? renew_us : 1000000))
        hb->seen_us = now, pg__node_seen(s, hb->conn, pg__nodes_read_due(s));
    if (pg__look(s, hb->conn) != 0) {
        pthread_mutex_lock(&s->mu);
        s->share = 0; /* no hand-off while the database is away */
        pthread_mutex_unlock(&s->mu);
        return;
    }
    now = clock_mono_us();
    if (now < hb->grace_us) { /* the grace after an outage: the holders renew first */
        pthread_mutex_lock(&s->mu);
        s->share = 0;
        pthread_mutex_unlock(&s->mu);
    } else {
        int live = pg__live_nodes(s, hb->conn), target = (s->nshards + live - 1) / live;
        int try[STORE_SHARDS], n;
        pthread_mutex_lock(&s->mu);
        s->share = target;
        held = pg__held(s);
        /* Every free row the share allows, in this beat: a lone node just started holds all 64 at
         * once, not 4 per beat over 1.6 s while its requests for the rest wait and then get 503.
         * Each take is its own conditional one-row transaction, so two nodes never both win a row;
         * the target, not a per-beat cap, keeps the split fair. */
        int room = target - held;
        n = room > 0 ? pg__take_order(s, now, room, try) : 0;
        pthread_mutex_unlock(&s->mu);
        char list[STORE_SHARDS * 4 + 1] = "";
        size_t len = 0;
        int rc = 0;
        for (int i = 0; i < n && (rc = pg__shard_try(s, hb->conn, try[i])) >= 0; i++) {
            if (rc == 1)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", len ? "," : "", try[i]);
            pthread_mutex_lock(&s->mu);
            s->want[try[i] / 64] &= ~(1ull << (try[i] % 64));
            held = pg__held(s);
            pthread_mutex_unlock(&s->mu);
        }
        if (len)
            log_info("store: node %s took shards %s: it holds %d, its share %d (%d live nodes)", s->node,
                     list, held, target, live);
    }
    pthread_mutex_lock(&s->mu);
    int changed = pg__views_sig(s, clock_mono_us()) != sig;
    pthread_mutex_unlock(&s->mu);
    if (changed)
        pg__lease_notify(s);
}

/* Sets the shard's bit (under mu) and wakes the heartbeat: its beat does what was asked. */
static void pg__ask(struct store_pg *s, uint64_t *set, int k)
{
    if (k < 0 || k >= s->nshards)
        return;
    pthread_mutex_lock(&s->mu);
    set[k / 64] |= 1ull << (k % 64);
    pthread_mutex_unlock(&s->mu);
    if (!s->hb.started)
        return;
    pthread_mutex_lock(&s->hb.mu);
    pthread_cond_signal(&s->hb.cv);
    pthread_mutex_unlock(&s->hb.mu);
}

void store_pg_shard_want(struct store_pg *s, int k)
{
    if (s->balance)
        pg__ask(s, s->want, k);
}

void store_pg_shard_release(struct store_pg *s, int k) { pg__ask(s, s->release, k); }

int store_pg_shard_share(struct store_pg *s)
{
    pthread_mutex_lock(&s->mu);
    int share = s->balance ? s->share : 0;
    pthread_mutex_unlock(&s->mu);
    return share;
}
