/*
 * session_write — every durable write of the session module, who waits for it, and what a failed
 * one does.
 *
 * session/ writes JSON records into streams: each session's transcript, state and inbox, the public
 * `sessions` feed and the internal registry __agentd/sessions. Each write is a stream op in the
 * loop turn's batch: it commits with that turn's group commit and fails with it (stream.c: a failed
 * commit or fsync fails every op in flight, and a failed write poisons its whole batch).
 *
 * Two rules keep a client from being told "ok" about something that is not stored:
 *
 * 1. An answer waits for the writes it implies. A request handler (or a runtime call's completion)
 *    opens a wait (session__wait_begin); every write made until session__wait_end joins it, and its
 *    callback runs once all of them have committed, or with the first failure. A wait opened with
 *    at_commit (runtime calls) completes at the COMMIT: its records survive a kill -9 of agentd. The
 *    others complete after the fsync as well (under --durability fsync they survive a machine crash).
 *
 * 2. Nobody waits for what agents and runtimes write on their own (an agent's events, a runtime's
 *    status changes). When any write of a session fails, the session is *degraded*: its losses are
 *    counted (struct session_loss), its active run is ended with the error code storage_full (or
 *    storage_error), no queued run starts, and runtime calls first wait for a repair. A repair
 *    rewrites what memory still holds (the session's record, its run records, its streams) and
 *    appends an `error` event, code events_lost, saying how many events were lost, between which
 *    times, and after which transcript offset. It runs as soon as a write of the session succeeds
 *    again, when a runtime call needs it, and on a backoff timer (0.25 s doubling to 16 s) while the
 *    disk stays full. Losses are known in memory only: a restart before the repair forgets them (the
 *    runs they cut short are then closed as server_restart, like any run a restart interrupts).
 *
 * Failure callbacks run from a zero timer (s->tick), never from inside the stream layer's failure
 * handling, which reloads its registry after telling the ops: a write made there would go with it.
 *
 * Ownership: a struct session__write is malloc'd per write and freed by its op's callback; it keeps
 * the session's id, never a pointer (the session may be freed first), and holds a reference on the
 * registry (s->live) so that writes completing during shutdown find it. A struct session_wait
 * lives until its callback has run (or, cancelled, until its last write completed).
 */
#include "session/session_int.h"
#include "stream/stream.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_REPAIR_FIRST_MS 250
#define SESSION_REPAIR_MAX_MS   16000

struct session_wait {
    struct sessions *s;
    struct session_wait *outer; /* the wait open before this one: waits nest, and the outer one
                                   counts this one as a write of its own until it completes */
    session_wait_cb cb;
    void *arg;
    int pending; /* writes in flight, +1 until session__wait_end */
    int rc;      /* the first failure, 0 while none */
    int at_commit;
    int repair; /* a repair's writes: their loss is the repair's, not a new one */
    int cancelled;
    struct session_wait *next_failed; /* on s->failed_waits, answered by the tick */
};

struct session__write {
    struct stream_op op;
    struct sessions *s;
    struct session_wait *wait; /* NULL: nobody waits */
    enum session_write_kind kind;
    int repair;
    int64_t tail_before;              /* a transcript event: the transcript's durable tail when written */
    char session[SESSION_ID_LEN + 1]; /* "" for writes that are no session's */
    char run[SESSION_RUN_ID_LEN + 1]; /* a run record's run, "" for other records */
    session_wait_cb then;             /* session__write_then's, told the outcome; NULL: none */
    void *then_arg;
};

static void session__tick_arm(struct sessions *s, uint64_t ms);
static void session__lost(struct sessions *s, const struct session__write *w, int rc);

/* ================= outcomes ================= */

/* A stream op's outcome as 0 or a negative errno (-ENOSPC, -EFBIG, -EDQUOT: the disk is full). */
static int session__op_rc(const struct stream_result *r)
{
    switch (r->status) {
    case STREAM_OK:
    case STREAM_CREATED:
    case STREAM_DUPLICATE: return 0;
    case STREAM_STORE_ERROR: return r->store_errno < 0 ? r->store_errno : -EIO;
    case STREAM_CLOSED: return -EPIPE;
    case STREAM_GONE:
    case STREAM_NOT_FOUND: return -ENOENT;
    case STREAM_BAD_REQUEST: return -EINVAL;
    default: return -EIO;
    }
}

int session_storage_full(int rc) { return rc == -ENOSPC || rc == -EFBIG || rc == -EDQUOT; }

/* ================= waits ================= */

struct session_wait *session__wait_begin(struct sessions *s, int at_commit)
{
    struct session_wait *w = xcalloc(1, sizeof *w);
    w->s = s;
    w->at_commit = at_commit;
    w->pending = 1;
    w->outer = s->collect;
    w->repair = w->outer && w->outer->repair;
    if (w->outer)
        w->outer->pending++; /* writes made inside join this wait only: the outer one waits for it */
    s->collect = w;
    return w;
}

static void session__wait_step(struct session_wait *w, int rc, int from_commit);

static void session__wait_fire(struct session_wait *w)
{
    struct session_wait *outer = w->outer;
    int rc = w->rc;
    if (!w->cancelled && w->cb)
        w->cb(w->arg, rc);
    free(w);
    if (outer) /* a failure is answered from the tick, as from inside the stream layer */
        session__wait_step(outer, rc, 1);
}

/* One of w's writes completed (or session__wait_end ran). from_commit: inside the stream layer's
 * completion, where a failure must not be answered at once (see the top of this file). */
static void session__wait_step(struct session_wait *w, int rc, int from_commit)
{
    if (rc != 0 && w->rc == 0)
        w->rc = rc;
    assert(w->pending > 0);
    if (--w->pending > 0)
        return;
    struct sessions *s = w->s;
    if (w->rc != 0 && from_commit && !s->freeing) {
        w->next_failed = s->failed_waits;
        s->failed_waits = w;
        session__tick_arm(s, 0);
        return;
    }
    session__wait_fire(w);
}

void session__wait_end(struct session_wait *w, session_wait_cb cb, void *arg)
{
    struct sessions *s = w->s;
    assert(s->collect == w);
    s->collect = w->outer;
    w->cb = cb;
    w->arg = arg;
    session__wait_step(w, 0, 0);
}

struct session_wait *session__wait_join(struct sessions *s)
{
    if (s->collect)
        s->collect->pending++;
    return s->collect;
}

void session__wait_settle(struct session_wait *w, int rc)
{
    if (w)
        session__wait_step(w, rc, 1);
}

void session__wait_cancel(struct session_wait *w)
{
    if (w)
        w->cancelled = 1;
}

/* ================= writes ================= */

static void session__write_done(struct stream_op *op)
{
    struct session__write *w = op->arg;
    struct sessions *s = w->s;
    int rc = session__op_rc(&op->result);
    if (rc != 0) {
        log_error("session%s%s: a durable write failed: %s", w->session[0] ? " " : "", w->session,
                  strerror(-rc));
        session__lost(s, w, rc);
    } else if (w->session[0] && !s->freeing) {
        /* The disk takes writes again: a degraded session repairs now rather than at its backoff. */
        struct session *se = map_get(&s->by_id, w->session, strlen(w->session));
        if (se && session__degraded(se) && !se->repair) {
            se->lost.due_ms = 0;
            session__tick_arm(s, 0);
        }
    }
    if (w->then)
        w->then(w->then_arg, rc);
    if (w->wait)
        session__wait_step(w->wait, rc, 1);
    free(w);
    session__registry_unref(s);
}

/* Queues one op for se (NULL: no session's) through start, which calls a stream_* mutation and
 * returns its status. Joins the open wait, if any. */
static struct session__write *session__write_new(struct sessions *s, struct session *se,
                                                 enum session_write_kind kind, const char *run)
{
    struct session__write *w = xcalloc(1, sizeof *w);
    w->s = s;
    w->kind = kind;
    w->tail_before = -1;
    w->op.cb = session__write_done;
    w->op.arg = w;
    if (se)
        memcpy(w->session, se->id, sizeof w->session);
    if (run)
        snprintf(w->run, sizeof w->run, "%s", run);
    if (s->collect) {
        w->wait = s->collect;
        w->op.at_commit = w->wait->at_commit;
        w->repair = w->wait->repair;
    }
    return w;
}

/* After the stream call: queued, the op's callback follows; refused, the refusal is a failure. */
static void session__write_queued(struct session__write *w, const char *what)
{
    struct sessions *s = w->s;
    if (w->op.queued) {
        s->live++; /* released by session__write_done */
        if (w->wait)
            w->wait->pending++;
        return;
    }
    int rc = session__op_rc(&w->op.result);
    if (w->then)
        w->then(w->then_arg, rc);
    if (rc == 0) { /* nothing to do (e.g. deleting what is gone) */
        free(w);
        return;
    }
    log_error("session%s%s: %s refused: %s", w->session[0] ? " " : "", w->session, what,
              w->op.result.message ? w->op.result.message : strerror(-rc));
    session__lost(s, w, rc);
    if (w->wait && w->wait->rc == 0)
        w->wait->rc = rc;
    free(w);
}

const char *const session__stream_kinds[SESSION_STREAM_KINDS] = {"transcript", "state", "inbox"};

void session__stream_path(const char *id, const char *kind, char out[128])
{
    snprintf(out, 128, "sessions/%s/%s", id, kind);
}

void session__ensure_streams(struct sessions *s, struct session *se)
{
    for (size_t i = 0; i < SESSION_STREAM_KINDS; i++) {
        char path[128];
        session__stream_path(se->id, session__stream_kinds[i], path);
        session__ensure_stream(s, se, path);
    }
}

void session__ensure_stream(struct sessions *s, struct session *se, const char *path)
{
    enum stream_lookup how;
    if (s->ss == NULL || streams_lookup(s->ss, path, strlen(path), &how) != NULL ||
        how == STREAM_SOFT_DELETED)
        return;
    struct session__write *w = session__write_new(s, se, SESSION_W_STREAM, NULL);
    struct stream_create_args a = {.content_type = "application/json", .ttl_s = -1, .expires_at_ms = -1};
    stream_create(s->ss, path, strlen(path), &a, &w->op);
    session__write_queued(w, "creating a stream");
}

static int64_t session__append(struct sessions *s, struct session *se, enum session_write_kind kind,
                               const char *run, const char *path, json_t *msg, const char *producer,
                               int64_t epoch, session_wait_cb then, void *arg);

int64_t session__write(struct sessions *s, struct session *se, enum session_write_kind kind, const char *run,
                       const char *path, json_t *msg)
{
    return session__append(s, se, kind, run, path, msg, NULL, 0, NULL, NULL);
}

int64_t session__write_then(struct sessions *s, struct session *se, enum session_write_kind kind,
                            const char *path, json_t *msg, session_wait_cb then, void *arg)
{
    return session__append(s, se, kind, NULL, path, msg, NULL, 0, then, arg);
}

int64_t session__write_as(struct sessions *s, struct session *se, enum session_write_kind kind,
                          const char *path, json_t *msg, const char *producer, int64_t epoch)
{
    return session__append(s, se, kind, NULL, path, msg, producer, epoch, NULL, NULL);
}

static int64_t session__append(struct sessions *s, struct session *se, enum session_write_kind kind,
                               const char *run, const char *path, json_t *msg, const char *producer,
                               int64_t epoch, session_wait_cb then, void *arg)
{
    char *text = s->ss ? json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(msg);
    if (text == NULL) { /* shutting down (the streams are gone), or no memory */
        if (then)
            then(arg, -EIO);
        return -1;
    }
    session__ensure_stream(s, se, path);
    struct session__write *w = session__write_new(s, se, kind, run);
    w->then = then;
    w->then_arg = arg;
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, path, strlen(path), &how);
    if (st == NULL) {
        w->op.result.status = how == STREAM_SOFT_DELETED ? STREAM_GONE : STREAM_NOT_FOUND;
        w->op.result.message = "the stream is missing";
    } else {
        w->tail_before = stream_tail(st);
        struct stream_append_args a = {
            .content_type = "application/json", .body = text, .body_len = strlen(text)};
        int64_t had_epoch, seq;
        if (producer) { /* the seq after the stream's (pending) state: no gap after a failed batch */
            a.producer_id = producer;
            a.producer_epoch = epoch;
            a.producer_seq =
                stream_producer(st, producer, &had_epoch, &seq) == 0 && had_epoch == epoch ? seq + 1 : 0;
        }
        stream_append(s->ss, st, &a, &w->op);
    }
    free(text);
    int64_t at = w->op.queued ? w->op.result.offset : -1;
    session__write_queued(w, "an append"); /* may free w */
    return at;
}

void session__fork_stream(struct sessions *s, struct session *se, const char *from, const char *to,
                          int64_t at)
{
    struct session__write *w = session__write_new(s, se, SESSION_W_STREAM, NULL);
    struct stream_create_args a = {
        .ttl_s = -1, .expires_at_ms = -1, .fork_from = from, .has_fork_offset = 1, .fork_offset = at};
    stream_create(s->ss, to, strlen(to), &a, &w->op);
    session__write_queued(w, "a fork");
}

void session__end_stream(struct sessions *s, struct session *se, const char *path, int delete)
{
    enum stream_lookup how;
    struct stream *st = s->ss ? streams_lookup(s->ss, path, strlen(path), &how) : NULL;
    if (st == NULL)
        return;
    struct session__write *w = session__write_new(s, se, SESSION_W_STREAM, NULL);
    if (delete) {
        stream_delete(s->ss, st, &w->op);
    } else {
        struct stream_append_args a = {.close = 1};
        stream_append(s->ss, st, &a, &w->op);
    }
    session__write_queued(w, delete ? "deleting a stream" : "closing a stream");
}

int64_t session__event(struct session *se, json_t *ev)
{
    if (se->deleted) { /* its transcript has ended */
        json_decref(ev);
        return -1;
    }
    json_object_set_new(ev, "ts", json_integer(clock_wall_ms()));
    json_object_set_new(ev, "session", json_string(se->id));
    char path[128];
    session__stream_path(se->id, "transcript", path);
    return session__write(se->registry, se, SESSION_W_EVENT, NULL, path, ev);
}

/* ================= losses and repairs ================= */

int session__degraded(const struct session *se)
{
    const struct session_loss *l = &se->lost;
    return l->events || l->inbox || l->record || l->streams || l->state || json_array_size(l->runs) ||
           se->repair != NULL;
}

/* A write of se failed (rc): remember what it was, end the active run (from the tick). */
static void session__lost(struct sessions *s, const struct session__write *w, int rc)
{
    struct session *se =
        w->session[0] && !s->freeing ? map_get(&s->by_id, w->session, strlen(w->session)) : NULL;
    if (se == NULL || se->deleted || w->repair)
        return; /* no session's, gone, or a repair's (which keeps its own account) */
    struct session_loss *l = &se->lost;
    int64_t now = clock_wall_ms();
    if (!session__degraded(se)) {
        l->first_ms = now;
        l->after = -1;
        l->backoff_ms = SESSION_REPAIR_FIRST_MS;
        l->due_ms = now + l->backoff_ms;
        log_warn("session %s: its writes fail (%s); it is degraded until they can be repaired", se->id,
                 strerror(-rc));
    }
    l->last_ms = now;
    l->rc = rc;
    l->stop_run = 1;
    switch (w->kind) {
    case SESSION_W_EVENT:
        l->events++;
        if (w->tail_before >= 0 && (l->after < 0 || w->tail_before < l->after))
            l->after = w->tail_before;
        break;
    case SESSION_W_INBOX: l->inbox++; break;
    case SESSION_W_RUN:
        if (w->run[0] == '\0') {
            l->state = 1;
            break;
        }
        if (l->runs == NULL)
            l->runs = json_array();
        size_t i;
        json_t *id;
        json_array_foreach (l->runs, i, id)
            if (!strcmp(json_string_value(id), w->run))
                return;
        json_array_append_new(l->runs, json_string(w->run));
        break;
    case SESSION_W_RECORD: l->record = 1; break;
    case SESSION_W_STREAM: l->streams = 1; break;
    }
    session__tick_arm(s, 0);
}

/* Adds what a failed repair meant to write back to se's current losses. */
static void session__loss_merge(struct session_loss *into, struct session_loss *from)
{
    into->events += from->events;
    into->inbox += from->inbox;
    into->record |= from->record;
    into->streams |= from->streams;
    into->state |= from->state;
    if (from->after >= 0 && (into->after < 0 || from->after < into->after))
        into->after = from->after;
    if (from->first_ms && (!into->first_ms || from->first_ms < into->first_ms))
        into->first_ms = from->first_ms;
    if (from->last_ms > into->last_ms)
        into->last_ms = from->last_ms;
    if (into->rc == 0)
        into->rc = from->rc;
    if (from->runs) {
        if (into->runs == NULL)
            into->runs = json_array();
        json_array_extend(into->runs, from->runs); /* a duplicate id is rewritten twice: harmless */
    }
}

struct session__repair {
    struct sessions *s;
    char id[SESSION_ID_LEN + 1];
    struct session_loss snap; /* what this repair writes back */
    struct session__repair_waiter {
        session_wait_cb cb;
        void *arg;
        struct session__repair_waiter *next;
    } * waiters;
};

static void session__repaired(void *arg, int rc)
{
    struct session__repair *r = arg;
    assert(r->s != NULL);
    struct sessions *s = r->s;
    struct session *se = s->freeing ? NULL : map_get(&s->by_id, r->id, strlen(r->id));
    if (se && se->repair == r) {
        se->repair = NULL;
        if (rc != 0) {
            struct session_loss *l = &se->lost;
            session__loss_merge(l, &r->snap);
            l->backoff_ms = r->snap.backoff_ms * 2 > SESSION_REPAIR_MAX_MS ? SESSION_REPAIR_MAX_MS
                                                                           : r->snap.backoff_ms * 2;
            l->due_ms = clock_wall_ms() + l->backoff_ms;
            session__tick_arm(s, l->backoff_ms);
        } else {
            log_info("session %s: repaired after losing %zu events, %zu inbox entries", se->id,
                     r->snap.events, r->snap.inbox);
            if (session__degraded(se)) /* lost more meanwhile: next attempt soon */
                session__tick_arm(s, 0);
            else
                session__runs_resume(se);
        }
    }
    while (r->waiters) {
        struct session__repair_waiter *wt = r->waiters;
        r->waiters = wt->next;
        wt->cb(wt->arg, se ? rc : -ENOENT);
        free(wt);
    }
    json_decref(r->snap.runs);
    free(r);
}

/* The `error` event that tells a transcript's readers what it is missing. */
static json_t *session__lost_event(const struct session_loss *l)
{
    char after[STREAM_OFFSET_LEN + 1] = "-1";
    if (l->after >= 0)
        stream_offset_format(l->after, after);
    json_t *ev =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:b}", "type", "error", "code", "events_lost",
                  "message", "", "lost", (json_int_t)l->events, "inbox_lost", (json_int_t)l->inbox, "from_ts",
                  (json_int_t)l->first_ms, "to_ts", (json_int_t)l->last_ms, "after", after, "retryable", 0);
    char *msg = xasprintf("%zu events of this session (and %zu inbox entries) could not be stored (%s) "
                          "between %lld and %lld ms since the epoch; they came after offset %s",
                          l->events, l->inbox, strerror(l->rc ? -l->rc : EIO), (long long)l->first_ms,
                          (long long)l->last_ms, after);
    json_object_set_new(ev, "message", json_string(msg));
    free(msg);
    return ev;
}

/* Writes back what se lost (its losses move into the repair; a failed repair gives them back). */
static void session__repair_start(struct session *se)
{
    struct sessions *s = se->registry;
    assert(se->repair == NULL && !se->deleted);
    struct session__repair *r = xcalloc(1, sizeof *r);
    r->s = s;
    memcpy(r->id, se->id, sizeof r->id);
    r->snap = se->lost;
    memset(&se->lost, 0, sizeof se->lost);
    se->lost.after = -1;
    se->repair = r;
    struct session_wait *w = session__wait_begin(s, 0);
    w->repair = 1;
    if (r->snap.streams)
        session__ensure_streams(s, se);
    size_t i;
    json_t *id;
    json_array_foreach (r->snap.runs, i, id)
        session__rewrite_run(se, json_string_value(id));
    if (r->snap.state && json_array_size(r->snap.runs) == 0)
        session__rewrite_run(se, NULL);
    if (r->snap.record)
        session__publish(s, se, "update");
    if (r->snap.events || r->snap.inbox)
        session__event(se, session__lost_event(&r->snap));
    session__wait_end(w, session__repaired, r);
}

int session__after_repair(struct session *se, session_wait_cb cb, void *arg)
{
    if (!session__degraded(se))
        return 0;
    if (se->repair == NULL)
        session__repair_start(se);
    if (se->repair == NULL) /* it completed at once (nothing was queued) */
        return session__degraded(se) ? -EIO : 0;
    struct session__repair_waiter *wt = xcalloc(1, sizeof *wt);
    wt->cb = cb;
    wt->arg = arg;
    wt->next = se->repair->waiters;
    se->repair->waiters = wt;
    return 1;
}

/* ================= the tick ================= */

static void session__tick_one(const char *key, void *value, void *arg)
{
    struct session *se = value;
    int64_t *next = arg, now = clock_wall_ms();
    struct session_loss *l = &se->lost;
    if (se->deleted)
        return;
    if (l->stop_run) {
        l->stop_run = 0;
        session__fail_run(se, session_storage_full(l->rc) ? "storage_full" : "storage_error",
                          "the session's events can no longer be stored");
    }
    if (!session__degraded(se) || se->repair)
        return;
    if (l->due_ms <= now)
        session__repair_start(se);
    else if (*next < 0 || l->due_ms - now < *next)
        *next = l->due_ms - now;
}

static void session__on_tick(uv_timer_t *t)
{
    struct sessions *s = t->data;
    while (s->failed_waits) {
        struct session_wait *w = s->failed_waits;
        s->failed_waits = w->next_failed;
        session__wait_fire(w);
    }
    int64_t next = -1;
    map_each(&s->by_id, session__tick_one, &next);
    if (next >= 0)
        session__tick_arm(s, (uint64_t)next);
}

static void session__tick_arm(struct sessions *s, uint64_t ms)
{
    if (s->freeing)
        return;
    if (uv_is_active((uv_handle_t *)&s->tick) && ms > 0 && uv_timer_get_due_in(&s->tick) <= ms)
        return;
    uv_timer_start(&s->tick, session__on_tick, ms, 0);
}

void session__writes_init(struct sessions *s)
{
    uv_timer_init(s->loop, &s->tick);
    s->tick.data = s;
    uv_unref((uv_handle_t *)&s->tick);
    s->live++; /* held by the timer until its close callback */
}

static void session__tick_closed(uv_handle_t *h) { session__registry_unref(h->data); }

void session__writes_close(struct sessions *s)
{
    while (s->failed_waits) {
        struct session_wait *w = s->failed_waits;
        s->failed_waits = w->next_failed;
        session__wait_fire(w);
    }
    uv_close((uv_handle_t *)&s->tick, session__tick_closed);
}
