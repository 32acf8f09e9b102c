/*
 * session_shard — sessions by shard (doc/SHARDING-PLAN.md §3): which shard a session is in, where a
 * new one goes, each shard's registry (loaded and unloaded whole), and the relay of each shard's
 * public records to the `sessions` feed.
 *
 * A session's id decides its shard: its streams are sessions/<id>/..., whose shard is the hash of
 * <id> (store_shard_of), and its records go to its shard's registry, __agentd/sessions/<k>
 * (store_shard_of maps that path to shard k), so that they commit under the same fence as its
 * streams. With one shard (every store but a test's `--shards N`) the registry stays
 * __agentd/sessions, as it always was: a single machine needs no migration.
 *
 * Upgrading to several shards: a database written with one shard has every session in
 * __agentd/sessions. A shard's load reads it too, takes the records of its own shard's sessions
 * first and its own registry's after them (so its own registry wins), and copies each session that
 * has no record in its own registry yet into it. From then on the old registry is never written
 * again and the per-shard ones say everything of the sessions they hold; when one process has loaded
 * every shard (serve's start), it deletes the old registry in the same batch as those copies (they
 * commit together or not at all: a failed batch leaves it for the next start).
 *
 * The feed: a shard's owner appends its sessions' public records to `sessions` as the idempotent
 * producer shard-<k> with the shard's epoch (the lease's, given by the caller; 1 on SQLite, and
 * never lower than the epoch the feed already has for that producer), seq continuing the feed's
 * state for it (0 in a new epoch). A deposed owner's late append carries a lower epoch and is refused
 * by the stream ("a newer producer epoch exists"). In one process the feed is local, so the relay is
 * an append in the same batch as the registry's record; several holders come later (the append then
 * goes to shard 0's owner). GET /v1/sessions answers from the registry's map, which in one process
 * holds every shard's sessions (the directory of §3 is the same map).
 */
#include "session/session_int.h"
#include "stream/stream.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int session__shard_of(const struct sessions *s, const char *id)
{
    char path[128];
    int n = snprintf(path, sizeof path, "sessions/%s/", id);
    return s->nshards <= 1 ? 0 : streams_shard_of(s->ss, path, (size_t)n);
}

void session__registry_path(const struct sessions *s, int k, char out[64])
{
    if (s->nshards <= 1)
        snprintf(out, 64, "%s", SESSION_REGISTRY_STREAM);
    else
        snprintf(out, 64, "%s/%d", SESSION_REGISTRY_STREAM, k);
}

int session__place(const struct sessions *s)
{
    int best = -1;
    for (int k = 0; k < s->nshards; k++)
        if (s->shards[k].loaded && streams_shard_held(s->ss, k) &&
            (best < 0 || s->shards[k].count < s->shards[best].count))
            best = k;
    return best;
}

void session__new_id(struct sessions *s, char out[SESSION_ID_LEN + 1], int k)
{
    do
        session__random_id(out, SESSION_ID_LEN + 1, "");
    while (session__shard_of(s, out) != k);
}

/* A record on its way to a feed another node holds. Owns its body; holds a registry reference. */
struct session__relayed {
    struct sessions *s;
    int k;
    char *body;
    struct session_wait *wait; /* the request's, which waits for the acknowledgement; NULL: none */
    int ready;                 /* its registry record is stored (or it has none): it may go */
    int rc;                    /* that record's failure: not sent, the wait fails with it */
    struct session__relayed *next;
};

static void session__relay_next(struct sessions *s, int k);

/* The feed's holder answered (or gave up): the seq moves on only when the record is stored, so the
 * next one never leaves a gap (the stream refuses a gap). */
static void session__relay_done(void *arg, int rc)
{
    struct session__relayed *r = arg;
    struct sessions *s = r->s;
    if (!s->freeing) {
        struct session__shard *sh = &s->shards[r->k];
        sh->relay_head = r->next;
        if (sh->relay_head == NULL)
            sh->relay_tail = NULL;
        sh->relay_busy = 0;
        if (rc == 0)
            sh->relay_seq++;
        else
            log_error("session: the relay of shard %d to the sessions feed failed: %s", r->k, strerror(-rc));
        session__relay_next(s, r->k);
    }
    session__wait_settle(r->wait, rc);
    free(r->body);
    free(r);
    session__registry_unref(s);
}

static void session__relay_next(struct sessions *s, int k)
{
    struct session__shard *sh = &s->shards[k];
    struct session__relayed *r = sh->relay_head;
    if (sh->relay_busy || r == NULL || !r->ready)
        return;
    sh->relay_busy = 1;
    if (r->rc != 0) /* its record is not stored: the feed must not list what is not */
        return session__relay_done(r, r->rc);
    char producer[32];
    snprintf(producer, sizeof producer, "shard-%d", k);
    s->cfg.feed_append(s->cfg.feed_ctx, producer, sh->epoch, sh->relay_seq, r->body, strlen(r->body),
                       session__relay_done, r);
}

static int session__feed_remote(struct sessions *s)
{
    return s->ss != NULL && s->cfg.feed_append != NULL && !streams_shard_held(s->ss, 0);
}

/* Another node holds the feed: an HTTP append, in order per shard, sent once ready; the open wait
 * (a create's answer) waits for its acknowledgement too, so once answered the feed lists it. */
static struct session__relayed *session__relay_queue(struct sessions *s, int k, json_t *msg, int ready)
{
    struct session__relayed *r = xcalloc(1, sizeof *r);
    r->s = s;
    r->k = k;
    r->body = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(msg);
    if (r->body == NULL) {
        free(r);
        return NULL;
    }
    r->ready = ready;
    r->wait = session__wait_join(s);
    s->live++; /* released by session__relay_done */
    struct session__shard *sh = &s->shards[k];
    if (sh->relay_tail)
        sh->relay_tail->next = r;
    else
        sh->relay_head = r;
    sh->relay_tail = r;
    session__relay_next(s, k);
    return r;
}

void session__relay(struct sessions *s, struct session *se, int k, json_t *msg)
{
    char producer[32];
    snprintf(producer, sizeof producer, "shard-%d", k);
    if (session__feed_remote(s))
        (void)session__relay_queue(s, k, msg, 1);
    else
        session__write_as(s, se, SESSION_W_RECORD, SESSION_FEED_STREAM, msg, producer, s->shards[k].epoch);
}

static void session__relay_ready(void *arg, int rc)
{
    struct session__relayed *r = arg;
    r->ready = 1;
    r->rc = rc;
    if (!r->s->freeing)
        session__relay_next(r->s, r->k);
}

void session__relay_after(struct sessions *s, struct session *se, int k, const char *reg, json_t *record,
                          json_t *msg)
{
    struct session__relayed *r = session__feed_remote(s) ? session__relay_queue(s, k, msg, 0) : NULL;
    if (r)
        session__write_then(s, se, SESSION_W_RECORD, reg, record, session__relay_ready, r);
    else if (session__feed_remote(s)) /* not queued (no memory): the record alone */
        session__write(s, se, SESSION_W_RECORD, NULL, reg, record);
    else { /* the feed is here: both in the same batch, as in one process */
        session__write(s, se, SESSION_W_RECORD, NULL, reg, record);
        session__relay(s, se, k, msg);
    }
}

/* The relay's epoch for shard k: the caller's (0: 1), raised to what the feed holds for its producer
 * (a restart on SQLite keeps epoch 1 and continues the seq). */
static int64_t session__feed_epoch(struct sessions *s, int k, int64_t epoch)
{
    enum stream_lookup how;
    struct stream *feed = streams_lookup(s->ss, SESSION_FEED_STREAM, strlen(SESSION_FEED_STREAM), &how);
    char producer[32];
    snprintf(producer, sizeof producer, "shard-%d", k);
    int64_t had, seq;
    if (epoch < 1)
        epoch = 1;
    if (feed && stream_producer(feed, producer, &had, &seq) == 0 && had > epoch)
        epoch = had;
    return epoch;
}

/* Applies registry messages to the map: those of shard k only (the old registry, own NULL), or all
 * of them (shard k's own registry), noting in own which ids it has records of. */
static void session__apply(struct sessions *s, int k, json_t *msgs, json_t *own)
{
    size_t i;
    json_t *m;
    json_array_foreach (msgs, i, m) {
        const char *op = json_string_value(json_object_get(json_object_get(m, "headers"), "operation"));
        const char *key = json_string_value(json_object_get(m, "key"));
        if (op == NULL || key == NULL || strlen(key) > SESSION_ID_LEN || session__shard_of(s, key) != k)
            continue;
        if (own)
            json_object_set_new(own, key, json_true());
        struct session *old = map_del(&s->by_id, key, strlen(key));
        if (old)
            session__free(old);
        if (strcmp(op, "delete") != 0) {
            struct session *se = session__from_record(json_object_get(m, "value"));
            if (se)
                session__register(s, se);
        }
    }
}

struct session__of_shard {
    int k;
    size_t n;
    struct session **v; /* the sessions of shard k (map order) */
};

static void session__collect(const char *key, void *value, void *arg)
{
    struct session__of_shard *l = arg;
    struct session *se = value;
    if (se->shard == l->k) {
        l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
        l->v[l->n++] = se;
    }
}

/* The sessions of shard k, to act on outside map_each (free l->v). */
static struct session__of_shard session__sessions_of(struct sessions *s, int k)
{
    struct session__of_shard l = {k, 0, NULL};
    map_each(&s->by_id, session__collect, &l);
    return l;
}

/* ---- the feed's repair at each load (several nodes) ----
 * A record reaches a feed another node holds after its registry record committed (the relay): a
 * node that dies in between leaves the feed a record behind (a session created and not listed, one
 * deleted and listed still). The next load of the shard, by whichever node, compares what the feed
 * lists of the shard with the registry just read, and relays what is missing: an insert for a
 * session the feed does not list, a delete for an id it lists that the registry has not (only when
 * the registry was read whole: a read that failed part-way misses live sessions); on an
 * adoption (node_lost) an update of every other session too, as before (their runs ended node_lost).
 * Only sessions of the load are compared (ids: those loaded): one created since relays its own
 * insert. A repair whose answer comes after the shard was unloaded or loaded again is dropped. */
struct session__repair {
    struct sessions *s;
    int k;
    unsigned gen; /* the shard's load it repairs */
    int node_lost;
    int whole;   /* the registry was read whole: an id it has not is deleted */
    json_t *ids; /* the ids loaded */
};

static json_t *session__tombstone(const char *id)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "type", "session", "key", id, "value", "id", id,
                     "status", "deleted", "headers", "operation", "delete");
}

/* listed: the feed's ids of shard k as an object's keys (NULL: unknown, the feed not read). */
static void session__repair_apply(struct sessions *s, int k, json_t *ids, json_t *listed, int node_lost,
                                  int whole, const char *how)
{
    size_t i, inserts = 0, deletes = 0;
    json_t *v;
    json_array_foreach (ids, i, v) {
        const char *id = json_string_value(v);
        struct session *se = map_get(&s->by_id, id, strlen(id));
        if (se == NULL || se->deleted || se->shard != k)
            continue;
        if (listed && json_object_get(listed, id) == NULL)
            session__relay(s, se, k, session__public_msg(se, "insert")), inserts++;
        else if (node_lost)
            session__relay(s, se, k, session__public_msg(se, "update"));
    }
    const char *id;
    json_object_foreach (listed, id, v) /* a read that ended part-way knows not every session */
        if (whole && session__shard_of(s, id) == k && map_get(&s->by_id, id, strlen(id)) == NULL)
            session__relay(s, NULL, k, session__tombstone(id)), deletes++;
    if (inserts || deletes)
        log_info("session: the sessions feed (%s) was behind shard %d's registry: %zu inserted, %zu deleted",
                 how, k, inserts, deletes);
}

static void session__repair_done(void *arg, json_t *answer)
{
    struct session__repair *r = arg;
    struct sessions *s = r->s;
    if (!s->freeing && s->shards[r->k].loaded && s->shards[r->k].gen == r->gen) {
        json_t *listed = answer ? json_object() : NULL;
        size_t i;
        json_t *v;
        json_array_foreach (answer, i, v)
            if (json_is_string(v))
                json_object_set_new(listed, json_string_value(v), json_true());
        if (answer == NULL)
            log_warn("session: the sessions feed's ids of shard %d could not be read: not repaired", r->k);
        session__repair_apply(s, r->k, r->ids, listed, r->node_lost, r->whole, "through its holder");
        json_decref(listed);
    }
    json_decref(r->ids);
    free(r);
    session__registry_unref(s);
}

static void session__repair_start(struct sessions *s, int k, json_t *ids, int node_lost, int whole)
{
    if (!session__feed_remote(s)) { /* the feed is here: its directory */
        json_t *dir = session__directory(s);
        session__repair_apply(s, k, ids, dir, node_lost, whole, "here");
        json_decref(dir);
    } else if (s->cfg.feed_ids == NULL) {
        session__repair_apply(s, k, ids, NULL, node_lost, whole, "not read");
    } else {
        struct session__repair *r = xcalloc(1, sizeof *r);
        *r = (struct session__repair){s, k, s->shards[k].gen, node_lost, whole, json_incref(ids)};
        s->live++; /* released by session__repair_done */
        s->cfg.feed_ids(s->cfg.feed_ctx, k, session__repair_done, r);
    }
}

void sessions_load_side(struct streams *ss) { streams_load_side(ss, SESSION_REGISTRY_STREAM); }

int sessions_load_shard(struct sessions *s, int k, int64_t epoch, int node_lost)
{
    if (k < 0 || k >= s->nshards || s->ss == NULL)
        return -EINVAL;
    struct session__shard *sh = &s->shards[k];
    if (sh->loaded)
        return -EALREADY;
    sh->loaded = 1;
    sh->node_lost = node_lost;
    sh->epoch = session__feed_epoch(s, k, epoch);
    sh->relay_seq = 0; /* a remote feed's: each take of a shard is a new epoch */
    char reg[64];
    session__registry_path(s, k, reg);
    int whole = 1, legacy_whole = 1;
    json_t *legacy = s->nshards > 1 ? session__read_json(s, SESSION_REGISTRY_STREAM, &legacy_whole) : NULL;
    json_t *msgs = session__read_json(s, reg, &whole); /* NULL (none yet): no sessions */
    json_t *own = json_object();
    session__apply(s, k, legacy, NULL);
    session__apply(s, k, msgs, own);
    json_decref(legacy);
    json_decref(msgs);
    sh->gen++;
    int repair = s->cfg.defer_load; /* several nodes: the feed may be behind the registry */
    struct session__of_shard l = session__sessions_of(s, k);
    json_t *ids = json_array();
    for (size_t i = 0; i < l.n; i++) {
        struct session *se = l.v[i];
        session__recover(s, se);
        if (json_object_get(own, se->id) == NULL) /* known from the old registry only: copied */
            session__write(s, se, SESSION_W_RECORD, NULL, reg, session__record_msg(se, "update"));
        if (node_lost && !repair) /* adopted: the feed hears of it again from its new owner */
            session__relay(s, se, k, session__public_msg(se, "update"));
        json_array_append_new(ids, json_string(se->id));
    }
    free(l.v);
    json_decref(own);
    if (repair)
        session__repair_start(s, k, ids, node_lost, whole && legacy_whole);
    json_decref(ids);
    /* Several nodes: this node knows every session of shard k now (one owner per shard), so the
     * directories here of k's ids that none has are orphans; those of other shards' ids may be
     * sessions another node owns (a hand-off moved them), and stay. One process (not defer_load)
     * sweeps once every shard is loaded (session__load_all). */
    if (s->cfg.defer_load && whole && legacy_whole)
        session__sweep(s, k);
    return 0;
}

static int session__busy(const struct session *se)
{
    for (int i = 0; i < SESSION_NLANG; i++)
        if (se->rt[i])
            return 1;
    return se->agent_proc || se->active || se->settling || se->queue || se->perms || se->closing ||
           se->env_closing || se->repair;
}

int sessions_shard_idle(struct sessions *s, int k)
{
    if (k < 0 || k >= s->nshards)
        return 1;
    struct session__of_shard l = session__sessions_of(s, k);
    int idle = s->shards[k].forks == 0;
    for (size_t i = 0; i < l.n && idle; i++)
        idle = !session__busy(l.v[i]);
    free(l.v);
    return idle;
}

int sessions_unload_shard(struct sessions *s, int k)
{
    if (k < 0 || k >= s->nshards || !s->shards[k].loaded)
        return -ENOENT;
    if (!sessions_shard_idle(s, k))
        return -EBUSY;
    struct session__of_shard l = session__sessions_of(s, k);
    for (size_t i = 0; i < l.n; i++) {
        struct session *se = l.v[i];
        map_del(&s->by_id, se->id, strlen(se->id));
        se->deleted = 1; /* nothing more is written for it; freed (not purged) once its environment
                            closed, at once when it has none */
        session__close_runtimes(se);
    }
    free(l.v);
    s->shards[k].loaded = 0;
    s->shards[k].gen++;
    return 0;
}

/* Applies feed messages to the directory. */
static void session__dir_apply(json_t *dir, json_t *msgs)
{
    size_t i;
    json_t *m;
    json_array_foreach (msgs, i, m) {
        const char *op = json_string_value(json_object_get(json_object_get(m, "headers"), "operation"));
        const char *key = json_string_value(json_object_get(m, "key"));
        json_t *value = json_object_get(m, "value");
        if (op == NULL || key == NULL)
            continue;
        if (strcmp(op, "delete") == 0 || !json_is_object(value))
            json_object_del(dir, key);
        else
            json_object_set(dir, key, value);
    }
}

json_t *session__directory(struct sessions *s)
{
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, SESSION_FEED_STREAM, strlen(SESSION_FEED_STREAM), &how);
    int64_t id = -1, created;
    if (st)
        stream_identity(st, &id, &created);
    if (s->dir == NULL || st == NULL || id != s->dir_stream || stream_tail(st) < s->dir_offset) {
        json_decref(s->dir); /* a feed made again (or none): read from its start */
        s->dir = json_object();
        s->dir_offset = 0;
        s->dir_stream = id;
    }
    /* Only what was appended since the last answer is read: a GET costs the sessions it lists, not
     * the feed's whole history. */
    struct buf b = {0};
    int64_t off = s->dir_offset, next;
    while (st && off < stream_tail(st)) {
        if (stream_read(s->ss, st, off, 1 << 20, &b, &next) != 0 || next <= off)
            break;
        off = next;
    }
    if (b.len) {
        stream_json_wrap(&b);
        json_t *msgs = json_loadb(b.p, b.len, 0, NULL);
        if (msgs) {
            session__dir_apply(s->dir, msgs);
            s->dir_offset = off;
        }
        json_decref(msgs);
    }
    buf_free(&b);
    return json_incref(s->dir);
}

int sessions_placeable(const struct sessions *s) { return s != NULL && session__place(s) >= 0; }

size_t sessions_shard_count(const struct sessions *s, int k)
{
    return k >= 0 && k < s->nshards ? s->shards[k].count : 0;
}

void session__load_all(struct sessions *s)
{
    if (s->cfg.defer_load)
        return;
    int all = 1;
    for (int k = 0; k < s->nshards; k++) {
        if (streams_shard_loaded(s->ss, k))
            (void)sessions_load_shard(s, k, s->cfg.feed_epoch, s->cfg.node_lost);
        else
            all = 0;
    }
    log_info("session: %zu sessions restored", s->by_id.count);
    if (!all) /* a directory of a session of a shard not loaded is not an orphan */
        return;
    session__sweep(s, -1);
    enum stream_lookup how;
    if (s->nshards > 1 &&
        streams_lookup(s->ss, SESSION_REGISTRY_STREAM, strlen(SESSION_REGISTRY_STREAM), &how) != NULL) {
        log_info("session: the single registry %s is copied into the shards' registries: deleted",
                 SESSION_REGISTRY_STREAM);
        session__end_stream(s, NULL, SESSION_REGISTRY_STREAM, 1); /* in the batch of the copies */
    }
}
