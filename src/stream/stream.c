/*
 * stream — the registry of durable streams: lookups, reads, subscribers, the commit pipeline and
 * loading. The write rules (create, append, delete) are stream_write.c. See stream.h.
 *
 * Ownership: the registry owns every struct stream (live, soft-deleted, or detached but still read
 * by forks), the batch's op list (borrowed ops owned by callers), and the graveyard of streams
 * deleted in the open batch, freed after it commits. A fork holds a plain pointer to its source;
 * the source cannot be freed while its refcount counts the fork (its refs: stream_fork.c).
 */
#include "stream/stream.h"
#include "stream/jsonmode.h"
#include "stream/stream_int.h"
#include "core/map.h"
#include "store/store.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STREAM_SWEEP_MS      2000
/* While the store's database cannot be reached, the reload is tried this often. */
#define STREAM_RETRY_MS      250
/* How often a running availability probe is looked at (streams__on_retry). */
#define STREAM_PROBE_POLL_MS 20

static void streams__reload(struct streams *ss);
static void streams__on_retry(uv_timer_t *t);

/*
 * A committed batch waiting for its fsync. What the commit made true for each touched stream is
 * captured here, so that batches committed while this one syncs cannot make readers see more than
 * is durable. Groups complete in commit order.
 */
struct stream__mark {
    struct stream *st;
    int64_t tail;
    int closed, gone, created;
};

struct stream__group {
    struct stream__group *next;
    uint64_t seq;
    struct stream_op *ops;
    struct stream__mark *marks;
    size_t nmarks;
    struct stream *grave; /* deleted streams, freed once this group is done */
    int rc;               /* its outcome, when it fails (streams__fail_all) */
};

/* ================= offsets and small helpers ================= */

void stream_offset_format(int64_t off, char out[STREAM_OFFSET_LEN + 1])
{
    snprintf(out, STREAM_OFFSET_LEN + 1, "%016d_%016" PRId64, 0, off);
}

int stream_offset_parse(const char *s, int64_t *off)
{
    const char *us = strchr(s, '_');
    if (us == NULL || us == s || us - s > 16 || strlen(us + 1) == 0 || strlen(us + 1) > 16)
        return -EINVAL;
    int64_t hi = 0, lo = 0;
    for (const char *p = s; p < us; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        hi = hi * 10 + (*p - '0');
    }
    for (const char *p = us + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        lo = lo * 10 + (*p - '0');
    }
    /* We only mint offsets with a zero first part; anything else lies beyond every tail. */
    *off = hi ? INT64_MAX : lo;
    return 0;
}

/* Media types compare without parameters, case-insensitively. */
int stream__media_eq(const char *a, const char *b)
{
    size_t la = strcspn(a, ";"), lb = strcspn(b, ";");
    while (la && (a[la - 1] == ' ' || a[la - 1] == '\t'))
        la--;
    while (lb && (b[lb - 1] == ' ' || b[lb - 1] == '\t'))
        lb--;
    while (*a == ' ' && la)
        a++, la--;
    while (*b == ' ' && lb)
        b++, lb--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

int stream__ct_is_json(const char *ct) { return stream__media_eq(ct, "application/json"); }

static void stream__id_key(int64_t id, char key[24]) { snprintf(key, 24, "%" PRId64, id); }

/* ================= accessors ================= */

const char *stream_content_type(const struct stream *st) { return st->m.content_type; }
int stream_is_json(const struct stream *st) { return stream__ct_is_json(st->m.content_type); }
int64_t stream_tail(const struct stream *st) { return st->durable_tail; }
int stream_closed(const struct stream *st) { return st->durable_closed; }
int64_t stream_ttl(const struct stream *st) { return st->m.ttl_s; }
const char *stream_expires_at(const struct stream *st) { return st->m.expires_at; }

void stream_identity(const struct stream *st, int64_t *id, int64_t *created_ms)
{
    *id = st->m.id;
    *created_ms = st->m.created_ms;
}

int stream_producer(const struct stream *st, const char *id, int64_t *epoch, int64_t *seq)
{
    const struct stream__producer *p = map_get(&st->producers, id, strlen(id));
    if (p == NULL)
        return -ENOENT;
    *epoch = p->epoch;
    *seq = p->seq;
    return 0;
}

void stream_touch(struct stream *st) { st->last_access_ms = clock_wall_ms(); }

void streams_set_observer(struct streams *ss, streams_observer_cb cb, void *arg)
{
    ss->observer = cb;
    ss->observer_arg = arg;
}

size_t streams_subscriber_count(const struct streams *ss) { return ss->nsubs; }

int streams_reads_running(const struct streams *ss) { return ss->reads_running; }

int streams_syncing(const struct streams *ss)
{
    return ss->syncing || ss->reads_running || ss->reads_waiting;
}

/* ================= batch bookkeeping ================= */

static void streams__on_idle(uv_idle_t *h)
{
    /* nothing: being active keeps the poll phase from blocking until the check commits */
}

void streams__arm(struct streams *ss)
{
    if (!uv_is_active((uv_handle_t *)&ss->idle))
        uv_idle_start(&ss->idle, streams__on_idle);
}

void streams__mark(struct streams *ss, struct stream *st)
{
    if (!st->dirty) {
        st->dirty = 1;
        st->dirty_next = ss->dirty;
        ss->dirty = st;
    }
    streams__arm(ss);
}

void streams__queue(struct streams *ss, struct stream_op *op)
{
    op->next = NULL;
    op->queued = 1;
    *ss->ops_tail = op;
    ss->ops_tail = &op->next;
    streams__arm(ss);
}

/* Unlinks op from a list of ops; 1 when it was there. */
static int streams__unlink_op(struct stream_op **head, struct stream_op ***tail, struct stream_op *op)
{
    for (struct stream_op **pp = head; *pp; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            if (tail && *tail == &op->next)
                *tail = pp;
            return 1;
        }
    }
    return 0;
}

void stream_op_cancel(struct streams *ss, struct stream_op *op)
{
    if (!op->queued)
        return;
    /* In the open batch, or in a committed group waiting for its fsync (the owner may leave then
     * too: its callback must not run on freed memory). */
    if (!streams__unlink_op(&ss->ops, &ss->ops_tail, op))
        for (struct stream__group *g = ss->groups; g; g = g->next)
            if (streams__unlink_op(&g->ops, NULL, op))
                break;
    op->queued = 0;
}

static int streams__ops_of(const struct stream_op *op, int k)
{
    for (; op; op = op->next)
        if (op->shard == k)
            return 1;
    return 0;
}

static int streams__streams_of(const struct stream *st, int k, int grave)
{
    for (; st; st = grave ? st->grave_next : st->dirty_next)
        if ((int)st->shard == k)
            return 1;
    return 0;
}

int streams_shard_busy(const struct streams *ss, int k)
{
    if (streams__ops_of(ss->ops, k) || streams__streams_of(ss->dirty, k, 0) ||
        streams__streams_of(ss->graveyard, k, 1))
        return 1;
    for (const struct stream__group *g = ss->groups; g; g = g->next) {
        if (streams__ops_of(g->ops, k) || streams__streams_of(g->grave, k, 1))
            return 1;
        for (size_t i = 0; i < g->nmarks; i++)
            if ((int)g->marks[i].st->shard == k)
                return 1;
    }
    return 0;
}

/* ================= subscribers ================= */

void stream_subscribe(struct stream *st, struct stream_sub *sub)
{
    struct stream_sub *head = &st->subs;
    sub->stream = st;
    sub->next = head;
    sub->prev = head->prev;
    head->prev->next = sub;
    head->prev = sub;
    /* the registry count is kept through the head's arg slot, set at stream creation */
    (*(size_t *)head->arg)++;
}

void stream_unsubscribe(struct stream_sub *sub)
{
    if (sub->stream == NULL)
        return;
    (*(size_t *)sub->stream->subs.arg)--;
    sub->prev->next = sub->next;
    sub->next->prev = sub->prev;
    sub->next = sub->prev = NULL;
    sub->stream = NULL;
}

void stream__notify(struct stream *st, enum stream_event ev)
{
    struct stream_sub *head = &st->subs;
    /* Move the ring aside first so subscribers added by callbacks are not called for this event. */
    struct stream_sub pending = {.prev = &pending, .next = &pending};
    if (head->next == head)
        return;
    pending.next = head->next;
    pending.prev = head->prev;
    head->next->prev = &pending;
    head->prev->next = &pending;
    head->next = head->prev = head;
    while (pending.next != &pending) {
        struct stream_sub *sub = pending.next;
        /* back onto the real ring, then call (the callback may unsubscribe it) */
        pending.next = sub->next;
        sub->next->prev = &pending;
        sub->next = head;
        sub->prev = head->prev;
        head->prev->next = sub;
        head->prev = sub;
        sub->cb(sub, ev);
    }
}

/* ================= stream objects ================= */

struct stream *stream__alloc(struct streams *ss, const struct store_meta *m)
{
    struct stream *st = xcalloc(1, sizeof *st);
    store_meta_copy(&st->m, m);
    st->durable_tail = m->tail;
    st->durable_closed = m->closed != 0;
    st->last_access_ms = clock_wall_ms();
    st->subs.next = st->subs.prev = &st->subs;
    st->subs.arg = &ss->nsubs;
    return st;
}

void stream__list(struct streams *ss, struct stream *st)
{
    char key[24];
    stream__id_key(st->m.id, key);
    map_put(&ss->by_id, key, strlen(key), st);
    /* soft-deleted ones too: they hold their path until their forks are gone */
    if (st->m.path && !st->foreign)
        map_put(&ss->by_path, st->m.path, strlen(st->m.path), st);
}

struct stream *stream__new(struct streams *ss, const struct store_meta *m)
{
    struct stream *st = stream__alloc(ss, m);
    if (st->m.path)
        st->shard = (unsigned)streams_shard_of(ss, st->m.path, strlen(st->m.path));
    stream__list(ss, st);
    return st;
}

struct stream *stream__by_id(struct streams *ss, int64_t id)
{
    char key[24];
    stream__id_key(id, key);
    return map_get(&ss->by_id, key, strlen(key));
}

static void stream__free_producer(const char *key, void *value, void *arg) { free(value); }

void stream__free_producers(struct stream *st)
{
    map_each(&st->producers, stream__free_producer, NULL);
    map_clear(&st->producers);
}

void stream__free(struct stream *st)
{
    if (st == NULL)
        return;
    stream__notify(st, STREAM_EV_GONE);
    while (st->subs.next != &st->subs)
        stream_unsubscribe(st->subs.next);
    stream__free_producers(st);
    stream__cache_free(st);
    store_meta_clear(&st->m);
    free(st);
}

static int stream__expired(const struct stream *st, int64_t now)
{
    if (st->m.expires_at_ms >= 0 && now >= st->m.expires_at_ms)
        return 1;
    return st->m.ttl_s >= 0 && now - st->last_access_ms >= st->m.ttl_s * 1000;
}

/* Removes st for good (in the open batch), then its source if that was only kept for forks. */
static void stream__destroy(struct streams *ss, struct stream *st)
{
    int64_t id = st->m.id, src = st->m.fork_src;
    char key[24];
    stream__id_key(id, key);
    map_del(&ss->by_id, key, strlen(key));
    if (st->m.path && map_get(&ss->by_path, st->m.path, strlen(st->m.path)) == st)
        map_del(&ss->by_path, st->m.path, strlen(st->m.path));
    (void)store_stream_delete(ss->store, id);
    st->gone = 1;
    st->grave_next = ss->graveyard;
    ss->graveyard = st;
    streams__arm(ss);
    /* The fork's ref goes, in the same batch when its source is held here (which reclaims a deleted
     * source left without refs, up the chain). A source of another owner (-EREMOTE) keeps it until
     * that owner's sweep finds this row gone (stream_fork.c); serve/ sends it the unref after the
     * commit (streams__publish, unref_remote). */
    if (src && streams_fork_unref(ss, src, id) == -EREMOTE && st->src) {
        st->unref_remote = 1;
        st->src_shard = (unsigned)st->src->m.shard;
    }
}

/* Deletes st: softly while forks still read through it (it stays, marked deleted, and with
 * `detach` it also leaves its path so the path can be re-created), for good otherwise. */
void stream__retire(struct streams *ss, struct stream *st, int detach)
{
    if (st->m.refcount <= 0) {
        stream__destroy(ss, st);
        return;
    }
    if (detach && st->m.path) {
        map_del(&ss->by_path, st->m.path, strlen(st->m.path));
        free(st->m.path);
        st->m.path = NULL;
    }
    st->m.deleted = 1;
    st->gone = 1;
    (void)store_stream_update(ss->store, &st->m);
    streams__mark(ss, st);
}

/* An expired stream leaves its path; if forks still read through it, it stays, detached. */
static void stream__expire(struct streams *ss, struct stream *st) { stream__retire(ss, st, 1); }

struct stream *streams_lookup(struct streams *ss, const char *path, size_t len, enum stream_lookup *how)
{
    struct stream *st = map_get(&ss->by_path, path, len);
    if (st && !st->m.deleted && stream__expired(st, clock_wall_ms())) {
        /* Gone for readers either way; only a shard held here writes the expiry (in one let go of,
         * the write would join the batch that its next holder's fence fails: its holder expires it). */
        if (stream__writable(ss, st))
            stream__expire(ss, st);
        st = NULL;
    }
    *how = st == NULL ? STREAM_MISSING : st->m.deleted ? STREAM_SOFT_DELETED : STREAM_FOUND;
    return st;
}

/* ================= reads (forward reads: stream_read.c) ================= */

struct stream__msg_at {
    const char *base;
    size_t want;
    int found;
};

static void stream__msg_at_cb(const char *p, size_t n, void *arg)
{
    struct stream__msg_at *m = arg;
    m->found |= (size_t)(p - m->base) == m->want;
}

int stream__msg_starts_at(const void *data, size_t len, size_t at)
{
    struct stream__msg_at m = {.base = data, .want = at, .found = at == 0 || at == len};
    if (!m.found)
        jsonmode_stored_split(data, len, stream__msg_at_cb, &m);
    return m.found;
}

/* ---- offsets of messages, and reading backwards (history pages): stream_read.c ---- */

void stream_json_wrap(struct buf *b)
{
    if (b->len == 0) {
        buf_puts(b, "[]");
        return;
    }
    if (b->p[b->len - 1] == ',')
        b->len--;
    buf_append(b, "]", 1);
    buf_reserve(b, 1);
    memmove(b->p + 1, b->p, b->len + 1);
    b->p[0] = '[';
    b->len++;
}

/* ================= commit and sync ================= */

/* Makes a group visible when it succeeded (rc 0): moves durable tails, wakes subscribers. Either
 * way, frees the streams it deleted (they left the registry's maps when they were deleted). */
static void streams__publish(struct streams *ss, struct stream__group *g, int rc)
{
    for (size_t i = 0; rc == 0 && i < g->nmarks; i++) {
        struct stream__mark *mk = &g->marks[i];
        struct stream *st = mk->st;
        if (mk->gone) {
            stream__notify(st, STREAM_EV_GONE);
            continue;
        }
        int grew = mk->tail > st->durable_tail, closed = mk->closed && !st->durable_closed;
        st->durable_tail = mk->tail;
        st->durable_closed = mk->closed != 0;
        if (grew)
            stream__notify(st, STREAM_EV_DATA);
        if ((grew || mk->created) && ss->observer && st->m.path)
            ss->observer(ss->observer_arg, st->m.path, st->durable_tail);
        if (closed)
            stream__notify(st, STREAM_EV_CLOSED);
    }
    for (struct stream *st = g->grave, *next; st; st = next) {
        next = st->grave_next;
        if (rc == 0 && st->unref_remote && ss->unref_remote)
            ss->unref_remote(ss->unref_arg, st->m.fork_src, st->src_shard, st->m.id);
        stream__free(st);
    }
    g->grave = NULL;
    g->nmarks = 0; /* the marks name streams a reload may free */
}

/* Answers a published group's ops with its outcome (rc, or the error one of its writes met), then
 * frees the group. */
static void streams__answer(struct stream__group *g, int rc)
{
    for (struct stream_op *op = g->ops, *next; op; op = next) {
        next = op->next;
        op->queued = 0;
        if (rc != 0 || op->result.store_errno) {
            op->result.status = STREAM_STORE_ERROR;
            op->result.store_errno = rc ? rc : op->result.store_errno;
            op->result.message = "the write could not be made durable";
        }
        op->cb(op);
    }
    free(g->marks);
    free(g);
}

/* Completes the waiting groups up to seq (all of them with UINT64_MAX), oldest first. */
static void streams__complete_upto(struct streams *ss, uint64_t seq, int rc)
{
    while (ss->groups && ss->groups->seq <= seq) {
        struct stream__group *g = ss->groups;
        ss->groups = g->next;
        if (ss->groups == NULL)
            ss->groups_tail = &ss->groups;
        streams__publish(ss, g, rc);
        streams__answer(g, rc);
    }
}

/* Takes the open batch's ops, touched streams (as marks: what the batch makes true of each) and
 * deleted streams into a new group, leaving the batch empty. */
static struct stream__group *streams__take_batch(struct streams *ss)
{
    struct stream__group *g = xcalloc(1, sizeof *g);
    g->ops = ss->ops;
    g->grave = ss->graveyard;
    for (struct stream *st = ss->dirty; st; st = st->dirty_next)
        g->nmarks++;
    g->marks = xcalloc(g->nmarks ? g->nmarks : 1, sizeof *g->marks);
    size_t n = 0;
    for (struct stream *st = ss->dirty; st; st = st->dirty_next) {
        g->marks[n++] = (struct stream__mark){st, st->m.tail, st->m.closed, st->gone, st->created};
        st->dirty = st->gone = st->created = 0;
    }
    ss->ops = NULL;
    ss->ops_tail = &ss->ops;
    ss->dirty = NULL;
    ss->graveyard = NULL;
    return g;
}

/*
 * After a failed commit or fsync nothing in memory can be trusted, and everything in flight fails:
 * the groups waiting for an fsync (with rc), `failed` (the batch whose commit failed, with its own
 * g->rc; may be NULL), and the open batch (with rc), which is rolled back: its writes were made
 * after the failure began, and nothing of it is stored. The registry is then reloaded from the
 * database, and only then do the ops' callbacks run, oldest first: what they write joins a fresh
 * batch on the reloaded registry, never one that names streams the reload freed.
 */
static void streams__fail_all(struct streams *ss, int rc, struct stream__group *failed)
{
    log_error("stream: %s; failing the requests in flight and reloading from the database", strerror(-rc));
    struct stream__group *list = ss->groups, **tail = list ? ss->groups_tail : &list;
    ss->groups = NULL;
    ss->groups_tail = &ss->groups;
    for (struct stream__group *g = list; g; g = g->next)
        g->rc = rc;
    if (failed) {
        *tail = failed;
        tail = &failed->next;
    }
    struct stream__group *open = streams__take_batch(ss);
    store_rollback(ss->store);
    open->rc = rc;
    *tail = open;
    for (struct stream__group *g = list; g; g = g->next)
        streams__publish(ss, g, g->rc);
    stream__cache_rollback(ss); /* for the registry kept while the store is unavailable */
    if (rc == -ENOTCONN)        /* asking again on the loop could hold it for the connect timeout */
        streams__unavailable(ss, rc);
    else
        streams__reload(ss);
    for (struct stream__group *g = list, *next; g; g = next) {
        next = g->next;
        streams__answer(g, g->rc);
    }
}

static void streams__sync_work(uv_work_t *w)
{
    struct streams *ss = w->data;
    ss->sync_rc = store_sync_marked(ss->store);
}

static void streams__start_sync(struct streams *ss);

static void streams__sync_done(uv_work_t *w, int status)
{
    struct streams *ss = w->data;
    ss->syncing = 0;
    if (ss->freeing) { /* the last of the thread pool's work frees the registry */
        if (ss->reads_running == 0) {
            streams__reads_leave(ss);
            free(ss);
        }
        return;
    }
    if (ss->sync_rc == 0)
        streams__complete_upto(ss, ss->sync_upto, 0);
    else
        streams__fail_all(ss, ss->sync_rc, NULL);
    streams__start_sync(ss);
}

/*
 * One fsync in flight at a time, in libuv's thread pool, covering every group committed before it
 * started. Meanwhile the loop goes on serving (reads, and the next batches, which commit without
 * waiting and are covered by the next fsync).
 */
static void streams__start_sync(struct streams *ss)
{
    if (ss->syncing || ss->groups == NULL)
        return;
    if (!store_needs_sync(ss->store)) {
        streams__complete_upto(ss, UINT64_MAX, 0);
        return;
    }
    ss->syncing = 1;
    ss->sync_upto = ss->next_seq - 1;
    store_sync_begin(ss->store); /* the sync covers exactly the groups up to sync_upto */
    ss->sync_work.data = ss;
    uv_queue_work(ss->loop, &ss->sync_work, streams__sync_work, streams__sync_done);
}

/* Answers the group's at_commit ops now that it has committed; the others wait for its fsync. A
 * write that failed poisoned the batch, so every op of a committed group succeeded. */
static void streams__complete_committed(struct stream__group *g)
{
    struct stream_op *done = NULL, **tail = &done;
    for (struct stream_op **pp = &g->ops; *pp;) {
        struct stream_op *op = *pp;
        if (!op->at_commit) {
            pp = &op->next;
            continue;
        }
        *pp = op->next;
        op->next = NULL;
        *tail = op;
        tail = &op->next;
    }
    for (struct stream_op *op = done, *next; op; op = next) { /* callbacks may queue new ops */
        next = op->next;
        op->queued = 0;
        assert(op->result.store_errno == 0);
        op->cb(op);
    }
}

/* Commits the open batch (no fsync) and queues it as a group. Returns 0, or the commit's error after
 * failing everything in flight and reloading the registry. */
static int streams__commit(struct streams *ss)
{
    if (ss->ops == NULL && ss->dirty == NULL && ss->graveyard == NULL && !store_batch_open(ss->store))
        return 0;
    struct stream__group *g = streams__take_batch(ss);
    uint64_t t0 = clock_mono_us();
    int rc = store_commit(ss->store);
    log_debug("stream: commit of %zu streams took %llu us", g->nmarks,
              (unsigned long long)(clock_mono_us() - t0));
    if (rc != 0) {
        /* Groups committed earlier are intact: make them durable and answer them first, then fail
         * this one (rolled back by the store) and what their callbacks wrote meanwhile. */
        int src = store_sync(ss->store);
        if (src == 0)
            streams__complete_upto(ss, UINT64_MAX, 0);
        g->rc = rc;
        streams__fail_all(ss, src ? src : rc, g);
        return rc;
    }
    g->seq = ss->next_seq++;
    *ss->groups_tail = g;
    ss->groups_tail = &g->next;
    /* A committed batch survives kill -9 only if the commit reached the database (SQLite); with
     * PostgreSQL it does once its sync has sent it, and its at_commit ops wait for that. */
    if (store_commit_persists(ss->store))
        streams__complete_committed(g);
    return 0;
}

void streams_flush(struct streams *ss)
{
    if (streams__commit(ss) != 0 || ss->groups == NULL)
        return;
    int rc = store_sync(ss->store);
    if (rc == 0)
        streams__complete_upto(ss, UINT64_MAX, 0);
    else
        streams__fail_all(ss, rc, NULL);
}

static void streams__on_check(uv_check_t *h)
{
    struct streams *ss = h->data;
    int quiet = ss->ops == NULL && ss->dirty == NULL && ss->graveyard == NULL;
    if (streams__commit(ss) == 0)
        streams__start_sync(ss);
    /* A turn without requests lets the store catch up on its upkeep (moving records out of its
     * log, reclaiming deleted streams' space) in a batch of its own, committed next turn; the loop
     * keeps polling in between, so requests are served between two bounded steps. */
    if (quiet && store_upkeep(ss->store)) {
        streams__arm(ss);
        return;
    }
    if (ss->ops == NULL && ss->dirty == NULL && ss->graveyard == NULL && !store_batch_open(ss->store))
        uv_idle_stop(&ss->idle);
}

struct streams__sweep_ctx {
    struct streams *ss;
    struct stream **expired;
    size_t n, cap;
    int64_t now;
};

static void streams__sweep_one(const char *key, void *value, void *arg)
{
    struct streams__sweep_ctx *c = arg;
    struct stream *st = value;
    if (!st->m.deleted && stream__writable(c->ss, st) &&
        stream__expired(st, c->now)) { /* as streams_lookup */
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 16;
            c->expired = xrealloc(c->expired, c->cap * sizeof *c->expired);
        }
        c->expired[c->n++] = st;
    }
}

static void streams__on_sweep(uv_timer_t *t)
{
    struct streams *ss = t->data;
    struct streams__sweep_ctx c = {.ss = ss, .now = clock_wall_ms()};
    map_each(&ss->by_path, streams__sweep_one, &c);
    for (size_t i = 0; i < c.n; i++)
        stream__expire(ss, c.expired[i]);
    free(c.expired);
    stream__cache_sweep(ss, uv_now(ss->loop));
    streams__fork_sweep(ss, c.now);
}

/* ================= loading ================= */

static int streams__load(struct streams *ss) { return streams__load_bits(ss, ss->loaded, 0); }

static void streams__free_one(const char *key, void *value, void *arg) { stream__free(value); }

static void streams__clear(struct streams *ss)
{
    map_each(&ss->by_id, streams__free_one, NULL);
    map_clear(&ss->by_id);
    map_clear(&ss->by_path);
    map_clear(&ss->refs);
    map_clear(&ss->suspects);
}

void streams__unavailable(struct streams *ss, int rc)
{
    if (!ss->unavailable)
        log_warn("stream: the store cannot take writes (%s); writes are refused until it can",
                 rc == -EPERM ? "another node holds its lease" : "its database cannot be reached");
    ss->unavailable = rc;
    if (rc == -ENOTCONN)
        store_offline(ss->store);
    uv_timer_start(&ss->retry, streams__on_retry, STREAM_RETRY_MS, 0);
}

/*
 * While the store cannot take writes (PostgreSQL down, or another node holding its write lease)
 * the registry stays as it was:
 * readers see its durable state, writes are refused (stream_write.c), and the reload is tried
 * again every STREAM_RETRY_MS until the database is back.
 */
static void streams__reload(struct streams *ss)
{
    int rc = store_available(ss->store);
    if (rc != 0)
        return streams__unavailable(ss, rc);
    streams__clear(ss);
    rc = streams__load(ss);
    if (rc == -ENOTCONN)
        return streams__unavailable(ss, rc); /* lost again while loading: what loaded is read-only */
    if (rc != 0)
        log_error("stream: reloading the registry failed: %s", strerror(-rc));
    if (ss->unavailable)
        log_info("stream: the store's database is back; the registry is reloaded");
    ss->unavailable = 0;
}

/*
 * While the database cannot be reached, whether it is back is asked off the loop (store_probe: a
 * host that drops packets holds a connect for its timeout), one probe at a time, looked at every
 * STREAM_PROBE_POLL_MS; once one answers, the reload reconnects the loop's own connection. Another
 * node holding the lease is asked on the loop: its database answers.
 */
static void streams__on_retry(uv_timer_t *t)
{
    struct streams *ss = t->data;
    /* Whatever is still in flight fails first (and reloads). */
    if (ss->syncing || ss->groups)
        return (void)uv_timer_start(&ss->retry, streams__on_retry, STREAM_RETRY_MS, 0);
    if (ss->unavailable != -ENOTCONN)
        return streams__reload(ss);
    if (ss->probe == NULL)
        ss->probe = store_probe_start(ss->store);
    int rc;
    if (!store_probe_done(ss->probe, &rc))
        return (void)uv_timer_start(&ss->retry, streams__on_retry, STREAM_PROBE_POLL_MS, 0);
    store_probe_free(ss->probe);
    ss->probe = NULL;
    if (rc != 0)
        return streams__unavailable(ss, rc);
    streams__reload(ss);
}

int streams_new(struct streams **out, uv_loop_t *loop, struct store *store, const struct streams_config *cfg,
                char *err, size_t errlen)
{
    struct streams *ss = xcalloc(1, sizeof *ss);
    ss->loop = loop;
    ss->store = store;
    ss->cfg = *cfg;
    ss->cfg.first = NULL;
    ss->nshards = cfg->shards > 1 ? cfg->shards : 1;
    if (ss->nshards > STORE_SHARDS) {
        snprintf(err, errlen, "at most %d shards", STORE_SHARDS);
        free(ss);
        return -EINVAL;
    }
    for (int k = 0; k < ss->nshards; k++) /* every shard, as one node on one store, unless told */
        if (cfg->first == NULL || store_shard_in(cfg->first, k))
            ss->loaded[k / 64] |= 1ull << (k % 64);
    memcpy(ss->held, ss->loaded, sizeof ss->held);
    if (ss->nshards > 1 && cfg->first == NULL)
        log_info("stream: the registry keeps its streams in %d shards, all held (a test setting)",
                 ss->nshards);
    ss->caches.budget = cfg->cache_bytes;
    ss->caches.loop = loop;
    ss->ops_tail = &ss->ops;
    ss->groups_tail = &ss->groups;
    ss->reads_tail = &ss->reads_waiting;
    ss->next_seq = 1;
    ss->fork_sweep_ms = streams__fork_sweep_ms();
    ss->fork_swept_ms = clock_wall_ms();
    int any = 0;
    for (int w = 0; w < STORE_SHARD_WORDS; w++)
        any |= ss->loaded[w] != 0;
    int rc = any ? streams__load(ss) : 0; /* none: no query (a node that loads each shard it takes) */
    if (rc != 0) {
        snprintf(err, errlen, "cannot load streams: %s", strerror(-rc));
        streams__clear(ss);
        free(ss);
        return rc;
    }
    uv_check_init(loop, &ss->check);
    ss->check.data = ss;
    uv_check_start(&ss->check, streams__on_check);
    uv_unref((uv_handle_t *)&ss->check);
    uv_idle_init(loop, &ss->idle);
    ss->idle.data = ss;
    uv_timer_init(loop, &ss->retry);
    ss->retry.data = ss;
    uv_timer_init(loop, &ss->sweep);
    ss->sweep.data = ss;
    uv_timer_start(&ss->sweep, streams__on_sweep, STREAM_SWEEP_MS, STREAM_SWEEP_MS);
    uv_unref((uv_handle_t *)&ss->sweep);
    *out = ss;
    return 0;
}

static void streams__shutdown_one(const char *key, void *value, void *arg)
{
    stream__notify(value, STREAM_EV_SHUTDOWN);
}

void streams_shutdown(struct streams *ss) { map_each(&ss->by_id, streams__shutdown_one, NULL); }

static void streams__free_handle(uv_handle_t *h)
{
    struct streams *ss = h->data;
    /* The last handle closed; an fsync or a read still in the thread pool frees the registry when
     * it returns. */
    if (ss->syncing || ss->reads_running) {
        ss->freeing = 1;
    } else {
        streams__reads_leave(ss);
        free(ss);
    }
}

struct streams *streams_reader_new(uv_loop_t *loop, struct store *store)
{
    struct streams *ss = xcalloc(1, sizeof *ss);
    ss->loop = loop;
    ss->store = store;
    ss->nshards = 1; /* loads none: no shard is loaded or held */
    ss->reads_tail = &ss->reads_waiting;
    return ss;
}

void streams_reader_free(struct streams *ss)
{
    if (ss == NULL)
        return;
    streams__reads_stop(ss);
    if (ss->reads_running) { /* the last read's completion frees it */
        ss->freeing = 1;
    } else {
        streams__reads_leave(ss);
        free(ss);
    }
}

void streams_free(struct streams *ss)
{
    if (ss == NULL)
        return;
    streams_flush(ss);
    ss->stopped = 1; /* before the stop of reads: a load waiting ends without its callback */
    streams__reads_stop(ss);
    streams__clear(ss);
    uv_close((uv_handle_t *)&ss->check, NULL);
    uv_close((uv_handle_t *)&ss->idle, NULL);
    uv_close((uv_handle_t *)&ss->retry, NULL);
    store_probe_free(ss->probe);
    ss->probe = NULL;
    uv_close((uv_handle_t *)&ss->sweep, streams__free_handle);
}
