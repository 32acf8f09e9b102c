/*
 * session_run — a session's agent runs: input modes, the run state machine, the execution
 * environment, and what each run writes durably. The process that serves a run is
 * session_agent.c's (it may outlive the run: a warm agent).
 *
 * Per run: user input goes to the inbox stream; the run's record (State Protocol) to the state
 * stream, on every change; its events to the transcript: run_start, the agent's events as the
 * adapter maps them (every one keeping the agent's line under `native`), run_completed. At most one
 * run is active; `queue` waits behind it, `interrupt` stops it first (the agent's own interrupt
 * where it has one, else a cancel), `reject` refuses, and `steer` puts the text into the running
 * turn where the agent takes it (else it queues, and a warn `log` says so). A run ends success,
 * error, cancelled (killed) or interrupted (its turn stopped, the agent's process and conversation
 * kept). Queued inputs can be listed and withdrawn before they start.
 *
 * Ownership: a struct session_run belongs to its session from creation until its completion has
 * been recorded (then freed). The exec environment starts with the first run and closes when the
 * session is deleted or the server stops.
 */
#include "agent/agent.h"
#include "exec/exec.h"
#include "session/session_int.h"
#include "stream/stream.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RUN_CANCEL_GRACE_MS 1000
#define RUN_FILE_RATE_MS    500 /* at most one `file` event per half second */

enum run_state {
    RUN_QUEUED,
    RUN_RUNNING,
    RUN_DONE
};

struct session_run {
    char id[SESSION_RUN_ID_LEN + 1];
    struct session *se;
    char *text;
    char mode[16];
    enum run_state state;
    int64_t created_ms, started_ms;
    int64_t start_offset, end_offset; /* where its run_start and run_completed start, or -1 */
    json_t *result;                   /* the agent's result event, when it wrote one */
    int cancel_requested;
    int interrupt_requested; /* the agent was asked to end the turn (soft: its process stays) */
    const char *fail_code;   /* set when agentd itself ends the run (its events cannot be stored) */
    char *fail_message;
    struct session_run *next;
};

/* ================= durable records ================= */

/* A run's record (v, taken) in the state stream. */
static void run__write(struct session *se, const char *run, const char *operation, json_t *v)
{
    char path[128];
    session__stream_path(se->id, "state", path);
    session__write(se->registry, se, SESSION_W_RUN, run, path,
                   json_pack("{s:s, s:s, s:o, s:{s:s}}", "type", "run", "key", run, "value", v, "headers",
                             "operation", operation));
}

/* The state stream's active query: which run is running, since when. */
static void run__write_active(struct session *se)
{
    char path[128];
    session__stream_path(se->id, "state", path);
    session__write(se->registry, se, SESSION_W_RUN, NULL, path,
                   json_pack("{s:s, s:s, s:o, s:{s:s}}", "type", "active_query", "key", "current", "value",
                             se->active ? json_pack("{s:s, s:I}", "run", se->active->id, "started_at",
                                                    (json_int_t)se->active->started_ms)
                                        : json_null(),
                             "headers", "operation", "update"));
}

/* The run's record in the state stream (and in se->runs for GET .../runs). extra is taken. */
static void run__record(struct session_run *r, const char *operation, const char *status, json_t *extra)
{
    struct session *se = r->se;
    se->last_activity_ms = clock_wall_ms();
    json_t *v = json_pack("{s:s, s:s, s:s, s:I, s:s}", "id", r->id, "status", status, "mode", r->mode,
                          "created_at", (json_int_t)r->created_ms, "input", r->text);
    if (r->started_ms)
        json_object_set_new(v, "started_at", json_integer(r->started_ms));
    /* Where the run is in the transcript: a fork knows from these which runs it keeps. */
    static const char *const offset_names[] = {"start_offset", "end_offset"};
    const int64_t offsets[] = {r->start_offset, r->end_offset};
    for (size_t k = 0; k < CORE_ARRAY_LEN(offsets); k++) {
        char o[STREAM_OFFSET_LEN + 1];
        stream_offset_format(offsets[k], o);
        if (offsets[k] >= 0)
            json_object_set_new(v, offset_names[k], json_string(o));
    }
    if (extra) {
        json_object_update(v, extra);
        json_decref(extra);
    }
    size_t i;
    json_t *old;
    int found = 0;
    json_array_foreach (se->runs, i, old) {
        if (!strcmp(json_string_value(json_object_get(old, "id")), r->id)) {
            json_array_set(se->runs, i, v);
            found = 1;
            break;
        }
    }
    if (!found)
        json_array_append(se->runs, v);
    run__write(se, r->id, operation, v);
    /* activeQuery: which run is running since when, apart from the environment's health */
    if (!strcmp(status, "running") || !strcmp(operation, "update"))
        run__write_active(se);
}

/*
 * What a list of sessions shows beside busy/idle (the feed and GET /v1/sessions): the environment's
 * health, the last run's outcome, the runs waiting, totals over completed runs (from their records:
 * usage and cost as run_completed gave them) and the time of the last activity.
 */
void session__activity(const struct session *se, json_t *pub)
{
    json_int_t in = 0, out = 0, done = 0, queued = 0, last = se->created_ms;
    double cost = 0;
    size_t i;
    json_t *v;
    json_array_foreach (se->runs, i, v) {
        json_t *usage = json_object_get(v, "usage");
        static const char *const times[] = {"created_at", "started_at", "ended_at"};
        for (size_t k = 0; k < CORE_ARRAY_LEN(times); k++)
            if (json_integer_value(json_object_get(v, times[k])) > last)
                last = json_integer_value(json_object_get(v, times[k]));
        queued += !strcmp(json_string_value(json_object_get(v, "status")), "queued");
        if (json_object_get(v, "ended_at") == NULL)
            continue;
        done++;
        in +=
            (json_int_t)json_number_value(json_object_get(usage, "input_tokens")); /* agents may send 12.0 */
        out += (json_int_t)json_number_value(json_object_get(usage, "output_tokens"));
        cost += json_number_value(json_object_get(v, "cost_usd"));
    }
    json_t *lr = json_array_get(se->runs, json_array_size(se->runs) - 1), *last_run = json_null();
    if (lr) {
        last_run =
            json_pack("{s:O, s:O}", "id", json_object_get(lr, "id"), "status", json_object_get(lr, "status"));
        static const char *const copy[] = {"code", "ended_at"};
        for (size_t k = 0; k < CORE_ARRAY_LEN(copy); k++)
            if (json_object_get(lr, copy[k]))
                json_object_set(last_run, copy[k], json_object_get(lr, copy[k]));
    }
    json_object_set_new(pub, "env_status",
                        json_string(se->xenv ? exec_status_name(exec_env_status(se->xenv)) : "inactive"));
    json_object_set_new(pub, "last_run", last_run);
    json_object_set_new(pub, "last_activity",
                        json_integer(se->last_activity_ms > last ? se->last_activity_ms : last));
    json_object_set_new(pub, "queued", json_integer(queued));
    json_object_set_new(pub, "totals",
                        json_pack("{s:I, s:I, s:I, s:f}", "runs", done, "input_tokens", in, "output_tokens",
                                  out, "cost_usd", cost));
}

void session__rewrite_run(struct session *se, const char *run)
{
    size_t i;
    json_t *v;
    json_array_foreach (se->runs, i, v)
        if (run && !strcmp(json_string_value(json_object_get(v, "id")), run))
            run__write(se, run, "update", json_incref(v));
    run__write_active(se);
}

/* A record's start_offset or end_offset as an offset; -1 when it has none. */
static int64_t run__offset(json_t *v, const char *key)
{
    const char *text = json_string_value(json_object_get(v, key));
    int64_t off;
    return text && stream_offset_parse(text, &off) == 0 ? off : -1;
}

/* A transcript event of this run; ev is taken. Returns its offset, or -1. */
static int64_t run__event(struct session_run *r, json_t *ev)
{
    json_object_set_new(ev, "run", json_string(r->id));
    return session__event(r->se, ev);
}

/* ================= running ================= */

static void run__start_next(struct session *se);

static void run__free(struct session_run *r)
{
    json_decref(r->result);
    free(r->text);
    free(r->fail_message);
    free(r);
}

struct run__settle {
    struct sessions *s;
    char session[SESSION_ID_LEN + 1];
};

/* A run's end is durable (or failed to be: the session is degraded and says so itself): the
 * session may read as idle now, and the feed says so, in a batch after the run's end. */
static void run__settled(void *arg, int rc)
{
    struct run__settle *st = arg;
    struct sessions *s = st->s;
    struct session *se = s->freeing ? NULL : map_get(&s->by_id, st->session, strlen(st->session));
    free(st);
    if (se == NULL)
        return;
    se->settling--;
    if (se->settling == 0 && se->active == NULL && !se->deleted)
        session__publish(s, se, "update"); /* the feed shows it idle again */
}

/*
 * Records how the run ended, frees it, and starts the next queued one. Until its run_completed and
 * its record are durable the session reads as running (se->settling): a client that sees it idle
 * and reads the transcript at once finds the run's end.
 */
static void run__complete(struct session_run *r, const char *status, const char *code, const char *message,
                          json_int_t exit_status)
{
    struct session *se = r->se;
    /* What the run changed in the workspace is its news, before its end (the watcher batches
     * changes for half a second; the run may end within that). */
    if (se->active == r && se->xenv)
        exec_watch_flush(se->xenv);
    struct session_wait *wait = session__wait_begin(se->registry, 0);
    int64_t now = clock_wall_ms();
    /* What the run's agent still waited for ends with it, before its run_completed. */
    session__perms_expire(se, r->id, "the run ended before an answer");
    json_t *done = json_pack("{s:s, s:s, s:I}", "type", "run_completed", "status", status, "duration_ms",
                             (json_int_t)(now - (r->started_ms ? r->started_ms : now)));
    json_t *res = r->result;
    json_object_set_new(done, "result",
                        json_string(res ? json_string_value(json_object_get(res, "text"))
                                              ? json_string_value(json_object_get(res, "text"))
                                              : ""
                                        : ""));
    static const char *const copied[] = {"usage", "cost_usd", "num_turns"};
    for (size_t i = 0; res && i < CORE_ARRAY_LEN(copied); i++)
        if (json_object_get(res, copied[i]))
            json_object_set(done, copied[i], json_object_get(res, copied[i]));
    if (code) {
        json_object_set_new(done, "code", json_string(code));
        run__event(r, json_pack("{s:s, s:s, s:s, s:b}", "type", "error", "code", code, "message",
                                message ? message : code, "retryable",
                                !strcmp(code, "server_restart") || !strcmp(code, "node_lost")));
    }
    if (exit_status != INT64_MIN)
        json_object_set_new(done, "exit_status", json_integer(exit_status));
    /* The record keeps what run_completed says about cost, so totals need no transcript read. */
    json_t *summary =
        json_pack("{s:I, s:O, s:O}", "ended_at", (json_int_t)now, "result", json_object_get(done, "result"),
                  "duration_ms", json_object_get(done, "duration_ms"));
    for (size_t i = 0; i < CORE_ARRAY_LEN(copied); i++)
        if (json_object_get(done, copied[i]))
            json_object_set(summary, copied[i], json_object_get(done, copied[i]));
    if (se->parent) /* told in this same loop turn: the child's completion and the parent's news commit together */
        session__child_completed(se, r->id, status, json_object_get(done, "result"));
    if (code)
        json_object_set_new(summary, "code", json_string(code));
    r->end_offset = run__event(r, done);
    if (se->active == r)
        se->active = NULL;
    r->state = RUN_DONE;
    run__record(r, "update", status, summary);
    struct run__settle *st = xmalloc(sizeof *st);
    st->s = se->registry;
    memcpy(st->session, se->id, sizeof st->session);
    se->settling++;
    session__wait_end(wait, run__settled, st);
    run__free(r);
    run__start_next(se);
}

/* ================= the agent's side (session_agent.c) ================= */

const char *session__run_id(const struct session_run *r) { return r->id; }

const char *session__run_text(const struct session_run *r) { return r->text; }

void session__run_event(struct session_run *r, json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type && !strcmp(type, "result")) {
        /* ends the run: recorded as run_completed when the turn ends (or the process exits) */
        json_decref(r->result);
        r->result = ev;
        return;
    }
    const char *native = json_string_value(json_object_get(ev, "native_session"));
    struct session *se = r->se;
    if (native && (se->native_session == NULL || strcmp(native, se->native_session))) {
        free(se->native_session);
        se->native_session = xstrdup(native);
        session__publish(se->registry, se, "update");
    }
    run__event(r, ev);
}

void session__run_ended(struct session_run *r, const struct exec_exit *ex)
{
    int is_error = r->result && json_is_true(json_object_get(r->result, "is_error"));
    json_int_t st = ex == NULL ? INT64_MIN : ex->signal ? 128 + ex->signal : ex->status;
    if (r->fail_code)
        run__complete(r, "error", r->fail_code, r->fail_message, st);
    else if (r->cancel_requested)
        run__complete(r, "cancelled", "cancelled", "the run was cancelled", st);
    else if (r->interrupt_requested)
        run__complete(r, "interrupted", "interrupted",
                      "the run was interrupted; the agent keeps its conversation", st);
    else if (ex && ex->signal)
        run__complete(r, "error", "agent_crashed", "the agent was killed by a signal", st);
    else if (ex && ex->status != 0)
        run__complete(r, "error", "agent_error", "the agent exited with a failure status", st);
    else
        run__complete(r, is_error ? "error" : "success", is_error ? "agent_error" : NULL,
                      is_error ? "the agent reported an error" : NULL, ex ? 0 : INT64_MIN);
}

void session__run_failed(struct session_run *r, const char *code, const char *message)
{
    run__complete(r, "error", code, message, INT64_MIN);
}

/* Workspace changes, already coalesced and rate-limited by exec/: one `file` event per batch. */
static void run__on_files(void *arg, struct exec_env *env, const struct exec_file_change *changes, size_t n)
{
    struct session *se = arg;
    json_t *files = json_array();
    for (size_t i = 0; i < n && i < 200; i++)
        json_array_append_new(files, json_pack("{s:s, s:s}", "path", changes[i].path ? changes[i].path : "",
                                               "change", exec_file_kind_name(changes[i].kind)));
    json_t *ev = json_pack("{s:s, s:o, s:I}", "type", "file", "changes", files, "count", (json_int_t)n);
    if (se->active)
        json_object_set_new(ev, "run", json_string(se->active->id));
    session__event(se, ev);
}

static void run__env_event(void *arg, struct exec_env *env, const struct exec_event *ev)
{
    struct session *se = arg;
    if (ev->type == EXEC_EVENT_LOG) {
        session__event(se, json_pack("{s:s, s:s, s:s, s:s}", "type", "log", "scope", "environment", "level",
                                     ev->level ? ev->level : "info", "text", ev->message ? ev->message : ""));
        return;
    }
    json_t *st = json_pack("{s:s, s:s, s:s}", "type", "status", "scope", "environment", "status",
                           exec_status_name(ev->status));
    if (ev->status == EXEC_STATUS_READY && exec_watch_start(env, RUN_FILE_RATE_MS, run__on_files, se) != 0)
        log_warn("session %s: workspace changes will not be reported", se->id);
    if (ev->message)
        json_object_set_new(st, "reason", json_string(ev->message));
    if (ev->status == EXEC_STATUS_READY || ev->status == EXEC_STATUS_ERROR)
        json_object_set_new(st, "elapsed_us", json_integer((json_int_t)ev->elapsed_us));
    session__event(se, st);
    se->last_activity_ms = clock_wall_ms();
    if (!se->deleted)
        session__publish(se->registry, se, "update"); /* the feed shows the environment's health */
    if (ev->status == EXEC_STATUS_READY)
        session__agent_kick(se);
    else if (ev->status == EXEC_STATUS_ERROR && se->active && se->active->state == RUN_RUNNING &&
             !session__agent_serving(se))
        run__complete(se->active, "error", "spawn_failed",
                      ev->message ? ev->message : "the execution environment could not start", INT64_MIN);
}

/* Starts r now: record, run_start, and the environment if it is not up yet. */
static void run__start(struct session_run *r)
{
    struct session *se = r->se;
    struct sessions *s = se->registry;
    se->active = r;
    r->state = RUN_RUNNING;
    r->started_ms = clock_wall_ms();
    r->start_offset =
        run__event(r, json_pack("{s:s, s:s, s:s}", "type", "run_start", "input", r->text, "mode", r->mode));
    run__record(r, "update", "running", NULL);
    session__publish(s, se, "update"); /* the feed shows it running */
    char *homes = xasprintf("%s/homes", s->data_dir);
    (void)!mkdir(homes, 0700);
    (void)!mkdir(se->home, 0700);
    free(homes);
    if (se->xenv == NULL) {
        if (session__env(se) == NULL)
            return run__complete(r, "error", "spawn_failed", "the execution environment could not be created",
                                 INT64_MIN);
        return; /* run__env_event spawns on ready */
    }
    session__agent_kick(se); /* now, or when the environment is ready */
}

struct exec_env *session__env(struct session *se)
{
    if (se->xenv != NULL)
        return se->xenv;
    struct exec_env_opts eo = {
        .workspace = se->workspace,
        .env = se->envp,
        .sandbox = session__sandboxed(se) ? EXEC_SANDBOX_BWRAP : EXEC_SANDBOX_NONE,
        .bwrap_share_net = 1, /* agents talk to their model API and to agentd */
        .name = se->id,
        .on_event = run__env_event,
        .arg = se,
    };
    session__limits(se, &eo.limits);
    int rc = exec_env_new(se->registry->loop, &eo, &se->xenv);
    if (rc == 0 && (rc = exec_env_start(se->xenv)) != 0) {
        exec_env_close(se->xenv, 0, NULL, NULL);
        se->xenv = NULL;
    }
    return rc == 0 ? se->xenv : NULL;
}

static void run__start_next(struct session *se)
{
    /* A degraded session starts nothing it could not record: its queue waits for the repair. */
    if (se->active || se->queue == NULL || se->deleted || session__degraded(se))
        return;
    struct session_run *r = se->queue;
    se->queue = r->next;
    if (se->queue == NULL)
        se->queue_tail = &se->queue;
    r->next = NULL;
    run__start(r);
}

/* Asks the running program to stop: the adapter's cancel line when it has one, SIGTERM to its
 * process tree (found before the line went; a moment later with a line), SIGKILL after a grace
 * period (exec verifies nothing of it is left). */
static void run__cancel_running(struct session_run *r)
{
    if (r->cancel_requested)
        return;
    r->cancel_requested = 1;
    if (!session__agent_serving(r->se)) /* no process yet (environment starting, last one exiting) */
        return run__complete(r, "cancelled", "cancelled", "the run was cancelled", INT64_MIN);
    session__agent_kill(r->se);
}

/* Ends the active run's turn and keeps the agent (its own interrupt), recorded as an `interrupt`
 * event; 0, or -ENOTSUP when the agent has no such thing. A run not yet in an agent's hands just
 * ends (nothing of it ran). */
static int run__interrupt_running(struct session_run *r, const char *by)
{
    if (r->interrupt_requested || r->cancel_requested)
        return 0;
    struct session *se = r->se;
    if (!session__agent_serving(se)) {
        r->interrupt_requested = 1;
        run__event(r, json_pack("{s:s, s:s}", "type", "interrupt", "by", by));
        run__complete(r, "interrupted", "interrupted", "the run was interrupted before its agent started",
                      INT64_MIN);
        return 0;
    }
    int rc = session__agent_interrupt(se);
    if (rc != 0)
        return rc;
    r->interrupt_requested = 1;
    run__event(r, json_pack("{s:s, s:s}", "type", "interrupt", "by", by));
    return 0;
}

void session__runs_resume(struct session *se) { run__start_next(se); }

void session__fail_run(struct session *se, const char *code, const char *message)
{
    struct session_run *r = se->active;
    if (r == NULL || r->fail_code || r->state != RUN_RUNNING)
        return;
    log_warn("session %s: ending run %s: %s", se->id, r->id, message);
    r->fail_code = code;
    r->fail_message = xstrdup(message);
    if (!session__agent_serving(se)) /* no process yet */
        return run__complete(r, "error", code, message, INT64_MIN);
    session__agent_kill(se);
}

/* ================= the API ================= */

/* User input in the inbox (of run, in mode). */
static void run__inbox(struct session *se, const char *run, const char *text, const char *mode, int64_t ts)
{
    char path[128];
    session__stream_path(se->id, "inbox", path);
    session__write(se->registry, se, SESSION_W_INBOX, run, path,
                   json_pack("{s:s, s:s, s:s, s:s, s:I}", "type", "user", "text", text, "run", run, "mode",
                             mode, "ts", (json_int_t)ts));
}

/* Puts text into the active run's turn: 0 with *answer, or -ENOTSUP with why (the agent cannot take
 * it now: the caller queues it instead). */
static int run__steer(struct session *se, const char *text, json_t **answer, const char **why)
{
    struct session_run *r = se->active;
    int rc = session__agent_steer(se, text);
    if (rc != 0) {
        *why = rc == -ESRCH ? "the run's agent has not started yet" : "this agent cannot take input mid-turn";
        return -ENOTSUP;
    }
    run__inbox(se, r->id, text, "steer", clock_wall_ms());
    run__event(r, json_pack("{s:s, s:s}", "type", "steer", "text", text));
    *answer = json_pack("{s:s, s:s, s:s, s:s, s:b}", "id", r->id, "run", r->id, "status", "running", "mode",
                        "steer", "steered", 1);
    return 0;
}

/* A new run of text in mode, in the inbox and recorded as queued; the caller places it. */
static struct session_run *run__new(struct session *se, const char *text, const char *mode)
{
    struct session_run *r = xcalloc(1, sizeof *r);
    session__random_id(r->id, sizeof r->id, "run_");
    r->se = se;
    r->start_offset = r->end_offset = -1;
    r->text = xstrdup(text);
    snprintf(r->mode, sizeof r->mode, "%s", mode);
    r->created_ms = clock_wall_ms();
    run__inbox(se, r->id, text, mode, r->created_ms);
    run__record(r, "insert", "queued", NULL);
    return r;
}

int session__message(struct session *se, const char *text, const char *mode, json_t **answer,
                     const char **why)
{
    static const char *const modes[] = {"queue", "interrupt", "reject", "steer"};
    size_t m = 0;
    while (mode && m < CORE_ARRAY_LEN(modes) && strcmp(mode, modes[m]))
        m++;
    if (m == CORE_ARRAY_LEN(modes)) {
        *why = "mode must be queue, interrupt, reject or steer";
        return -EINVAL;
    }
    mode = modes[m];
    if (se->adapter == NULL) {
        *why = "this session has no agent (agent none): use its runtimes";
        return -EBUSY;
    }
    if (se->active && !strcmp(mode, "reject")) {
        *why = "a run is active and mode is reject";
        return -EBUSY;
    }
    const char *unsteered = NULL;
    if (se->active && !strcmp(mode, "steer") && run__steer(se, text, answer, &unsteered) == 0)
        return 0;
    struct session_run *r = run__new(se, text, mode);
    char id[sizeof r->id];
    memcpy(id, r->id, sizeof id);
    if (unsteered) /* steering was asked for and cannot be: the text waits its turn, and says so */
        run__event(r, json_pack("{s:s, s:s, s:o}", "type", "log", "level", "warn", "text",
                                json_sprintf("steer: %s (%s); queued as run %s instead", unsteered, se->agent,
                                             r->id)));
    if (se->active == NULL && !session__degraded(se)) {
        run__start(r);
    } else if (se->active && !strcmp(mode, "interrupt")) {
        r->next = se->queue; /* first in line, then stop the active run: its turn, else its process */
        se->queue = r;
        if (se->queue_tail == &se->queue)
            se->queue_tail = &r->next;
        if (run__interrupt_running(se->active, "message") != 0)
            run__cancel_running(se->active);
    } else {
        *se->queue_tail = r;
        se->queue_tail = &r->next;
    }
    if (se->active != r && r->state != RUN_DONE)
        session__publish(se->registry, se, "update"); /* the feed counts the queue */
    /* r may have completed already (a spawn failure): answer with its latest record */
    size_t i;
    json_t *v;
    *answer = NULL;
    json_array_foreach (se->runs, i, v)
        if (!strcmp(json_string_value(json_object_get(v, "id")), id))
            *answer = json_deep_copy(v);
    if (unsteered && *answer)
        json_object_set_new(*answer, "steered", json_false());
    return 0;
}

int session__interrupt_run(struct session *se, const char *run, json_t **answer, const char **why)
{
    struct session_run *r = se->active;
    if (r == NULL || strcmp(r->id, run)) {
        *why = "no running run with that id (a queued one can be withdrawn or cancelled)";
        return -EBUSY;
    }
    int rc = run__interrupt_running(r, "user");
    if (rc != 0) {
        *why = "this agent cannot stop a turn and keep going: cancel the run instead";
        return rc;
    }
    *answer =
        json_pack("{s:s, s:s}", "run", run, "status", r->state == RUN_DONE ? "interrupted" : "interrupting");
    return 0;
}

json_t *session__inbox(const struct session *se)
{
    json_t *list = json_array();
    for (const struct session_run *r = se->queue; r; r = r->next)
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:I}", "input", r->id, "text", r->text, "mode",
                                              r->mode, "created_at", (json_int_t)r->created_ms));
    return list;
}

int session__withdraw(struct session *se, const char *input, json_t **answer, const char **why)
{
    for (const struct session_run *r = se->queue; r; r = r->next) {
        if (strcmp(r->id, input))
            continue;
        int rc = session__cancel_run(se, input, answer, why);
        if (rc == 0)
            json_object_set_new(*answer, "status", json_string("withdrawn"));
        return rc;
    }
    size_t i;
    json_t *v;
    json_array_foreach (se->runs, i, v)
        if (!strcmp(json_string_value(json_object_get(v, "id")), input)) {
            *why = "that input has started already (or ended): interrupt or cancel its run instead";
            return -EBUSY;
        }
    *why = "no such input";
    return -ENOENT;
}

int session__cancel_run(struct session *se, const char *run, json_t **answer, const char **why)
{
    if (se->active && !strcmp(se->active->id, run)) {
        run__cancel_running(se->active);
        *answer = json_pack("{s:s, s:s}", "run", run, "status", "cancelling");
        return 0;
    }
    for (struct session_run **pp = &se->queue; *pp; pp = &(*pp)->next) {
        struct session_run *r = *pp;
        if (strcmp(r->id, run))
            continue;
        *pp = r->next;
        if (se->queue_tail == &r->next)
            se->queue_tail = pp;
        r->cancel_requested = 1;
        *answer = json_pack("{s:s, s:s}", "run", run, "status", "cancelled");
        run__complete(r, "cancelled", "cancelled", "the run was cancelled before it started", INT64_MIN);
        return 0;
    }
    *why = "no queued or running run with that id";
    return -EBUSY;
}

void session__recover_runs(struct session *se)
{
    /* Rebuild the run list from the state stream; runs it shows queued or running were cut short
     * by a crash or a stop: close them as failed, and the session stays resumable. */
    char path[128];
    session__stream_path(se->id, "state", path);
    json_t *msgs = session__read_json(se->registry, path, NULL);
    if (msgs == NULL)
        return;
    session__perms_recover(se, msgs); /* what waited for an answer expired with the last process */
    json_t *latest = json_object();
    size_t i;
    json_t *m;
    json_array_foreach (msgs, i, m) {
        const char *key = json_string_value(json_object_get(m, "key"));
        if (key && !strcmp(json_string_value(json_object_get(m, "type")) ?: "", "run"))
            json_object_set(latest, key, json_object_get(m, "value"));
    }
    json_decref(msgs);
    const char *key;
    json_t *v;
    json_object_foreach (latest, key, v) {
        const char *status = json_string_value(json_object_get(v, "status"));
        json_array_append(se->runs, v);
        if (status && (!strcmp(status, "queued") || !strcmp(status, "running"))) {
            struct session_run *r = xcalloc(1, sizeof *r);
            snprintf(r->id, sizeof r->id, "%s", key);
            r->se = se;
            r->text = xstrdup(json_string_value(json_object_get(v, "input")) ?: "");
            snprintf(r->mode, sizeof r->mode, "%s", json_string_value(json_object_get(v, "mode")) ?: "queue");
            r->created_ms = json_integer_value(json_object_get(v, "created_at"));
            r->started_ms = json_integer_value(json_object_get(v, "started_at"));
            r->start_offset = run__offset(v, "start_offset");
            r->end_offset = -1;
            if (se->registry->shards[se->shard].node_lost)
                run__complete(r, "error", "node_lost",
                              "the node that ran it stopped; another node took over its sessions", INT64_MIN);
            else
                run__complete(r, "error", "server_restart", "agentd restarted while the run was in progress",
                              INT64_MIN);
        }
    }
    json_decref(latest);
}

/*
 * A fork's runs (se: the new child, before its first run). The child's transcript is its parent's
 * up to `at`, so its runs are those the parent had started before `at`, and only as far as they got:
 * a run that ended before `at` is kept as it ended; one the fork cut (started before `at`, not ended
 * before it) cannot go on in the child, and ends there cancelled, with code forked, in its record
 * and its transcript alike. Runs queued or started at `at` or later are not the child's. Records
 * written before runs carried their offsets are kept when they ended (nothing says where).
 */
void session__fork_runs(struct session *se, json_t *parent_runs, int64_t at)
{
    size_t i;
    json_t *v;
    json_array_foreach (parent_runs, i, v) {
        int64_t start = run__offset(v, "start_offset"), end = run__offset(v, "end_offset");
        const char *id = json_string_value(json_object_get(v, "id"));
        if (id == NULL || strlen(id) > SESSION_RUN_ID_LEN)
            continue;
        int legacy = json_object_get(v, "start_offset") == NULL && json_object_get(v, "ended_at") != NULL;
        if (!legacy && (start < 0 || start >= at))
            continue;
        if (legacy || (end >= 0 && end < at)) {
            json_array_append(se->runs, v);
            run__write(se, id, "insert", json_incref(v));
            continue;
        }
        struct session_run r = {.se = se, .start_offset = start, .end_offset = -1, .state = RUN_DONE};
        snprintf(r.id, sizeof r.id, "%s", id);
        snprintf(r.mode, sizeof r.mode, "%s", json_string_value(json_object_get(v, "mode")) ?: "queue");
        r.text = (char *)(json_string_value(json_object_get(v, "input")) ?: "");
        r.created_ms = json_integer_value(json_object_get(v, "created_at"));
        r.started_ms = json_integer_value(json_object_get(v, "started_at"));
        r.end_offset =
            run__event(&r, json_pack("{s:s, s:s, s:s, s:i, s:s}", "type", "run_completed", "status",
                                     "cancelled", "code", "forked", "duration_ms", 0, "result", ""));
        run__record(&r, "insert", "cancelled",
                    json_pack("{s:I, s:s, s:s}", "ended_at", (json_int_t)clock_wall_ms(), "code", "forked",
                              "result", ""));
    }
    run__write_active(se);
}

static void run__env_closed(void *arg)
{
    struct session *se = arg;
    se->env_closing = 0;
    session__work_done(se->registry);
    session__env_released(se);
}

void session__stop_runs(struct session *se)
{
    session__perms_expire(se, NULL, "the session is going away");
    while (se->queue) {
        struct session_run *r = se->queue;
        se->queue = r->next;
        run__free(r);
    }
    se->queue_tail = &se->queue;
    if (se->active) {
        /* The environment's close kills the program; its exit callback then frees the run. */
        se->active->cancel_requested = 1;
    }
    if (se->xenv && !se->env_closing) {
        struct exec_env *env = se->xenv;
        se->env_closing = 1;
        se->closing++;
        se->registry->works++; /* the server's stop waits for its processes' ends (sessions_working) */
        se->xenv = NULL;
        exec_env_close(env, RUN_CANCEL_GRACE_MS, run__env_closed, se);
    }
}

void session__runs_free(struct session *se)
{
    session__opts_free(&se->opts);
    json_decref(se->runs);
    free(se->native_session);
    free(se->home);
}

const char *session__active_run_id(const struct session *se) { return se->active ? se->active->id : NULL; }
