/*
 * session_run — a session's agent runs: input modes, the run state machine, the execution
 * environment and the agent adapter wired together, and what each run writes durably.
 *
 * Per run: user input goes to the inbox stream; the run's record (State Protocol) to the state
 * stream, on every change; its events to the transcript: run_start, the agent's events as the
 * adapter maps them (every one keeping the agent's line under `native`), run_completed. At most one
 * run is active; `queue` waits behind it, `interrupt` cancels it first, `reject` refuses.
 *
 * Ownership: a struct session_run belongs to its session from creation until its completion has
 * been recorded (then freed). The running program (struct exec_proc) belongs to exec/ and is gone
 * after its exit callback; parsers belong to the run. The exec environment starts with the first
 * run and closes when the session is deleted or the server stops.
 */
#include "agent/agent.h"
#include "exec/exec.h"
#include "session/session_int.h"
#include "stream/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUN_CANCEL_GRACE_MS 1000
#define RUN_FILE_RATE_MS    500 /* at most one `file` event per half second */
#define RUN_ID_BYTES        8

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
    struct exec_proc *proc;
    struct agent_parser *out, *err;
    json_t *result; /* the agent's result event, when it wrote one */
    int cancel_requested;
    const char *fail_code; /* set when agentd itself ends the run (its events cannot be stored) */
    char *fail_message;
    struct session_run *next;
};

/* ================= durable records ================= */

static void run__path(const struct session *se, const char *kind, char out[128])
{
    snprintf(out, 128, "sessions/%s/%s", se->id, kind);
}

/* A run's record (v, taken) in the state stream. */
static void run__write(struct session *se, const char *run, const char *operation, json_t *v)
{
    char path[128];
    run__path(se, "state", path);
    session__write(se->registry, se, SESSION_W_RUN, run, path,
                   json_pack("{s:s, s:s, s:o, s:{s:s}}", "type", "run", "key", run, "value", v, "headers",
                             "operation", operation));
}

/* The state stream's active query: which run is running, since when. */
static void run__write_active(struct session *se)
{
    char path[128];
    run__path(se, "state", path);
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

/* A transcript event of this run; ev is taken. */
static void run__event(struct session_run *r, json_t *ev)
{
    json_object_set_new(ev, "run", json_string(r->id));
    session__event(r->se, ev);
}

/* ================= running ================= */

static void run__start_next(struct session *se);
static void run__spawn(struct session_run *r);

static void run__free(struct session_run *r)
{
    agent_parser_free(r->out);
    agent_parser_free(r->err);
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
    struct session_wait *wait = session__wait_begin(se->registry, 0);
    int64_t now = clock_wall_ms();
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
                                message ? message : code, "retryable", !strcmp(code, "server_restart")));
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
    run__event(r, done);
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

static void run__on_event(void *arg, json_t *ev)
{
    struct session_run *r = arg;
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type && !strcmp(type, "result")) {
        /* ends the run: recorded as run_completed when the process exits */
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

static void run__on_stdout(void *arg, struct exec_proc *p, const char *data, size_t len)
{
    struct session_run *r = arg;
    agent_parser_feed(r->out, data, len);
}

static void run__on_stderr(void *arg, struct exec_proc *p, const char *line, size_t len, int eol)
{
    struct session_run *r = arg;
    agent_parser_feed(r->err, line, len);
    if (eol)
        agent_parser_feed(r->err, "\n", 1);
}

static void run__on_exit(void *arg, struct exec_proc *p, const struct exec_exit *ex)
{
    struct session_run *r = arg;
    agent_parser_finish(r->out);
    agent_parser_finish(r->err);
    r->proc = NULL;
    int is_error = r->result && json_is_true(json_object_get(r->result, "is_error"));
    if (r->fail_code)
        run__complete(r, "error", r->fail_code, r->fail_message, ex->signal ? 128 + ex->signal : ex->status);
    else if (r->cancel_requested)
        run__complete(r, "cancelled", "cancelled", "the run was cancelled", ex->status);
    else if (ex->signal)
        run__complete(r, "error", "agent_crashed", "the agent was killed by a signal", 128 + ex->signal);
    else if (ex->status != 0)
        run__complete(r, "error", "agent_error", "the agent exited with a failure status", ex->status);
    else
        run__complete(r, is_error ? "error" : "success", is_error ? "agent_error" : NULL,
                      is_error ? "the agent reported an error" : NULL, 0);
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
    if (se->active && se->active->state == RUN_RUNNING && se->active->proc == NULL) {
        if (ev->status == EXEC_STATUS_READY)
            run__spawn(se->active);
        else if (ev->status == EXEC_STATUS_ERROR)
            run__complete(se->active, "error", "spawn_failed",
                          ev->message ? ev->message : "the execution environment could not start", INT64_MIN);
    }
}

/* Writes a file the adapter needs (0600, parents created). */
static int run__write_file(const struct agent_file *f)
{
    char *dir = xstrdup(f->path);
    for (char *p = dir + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            free(dir);
            return -errno;
        }
        *p = '/';
    }
    free(dir);
    int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t len = strlen(f->content);
    int rc = write(fd, f->content, len) == (ssize_t)len ? 0 : -EIO;
    close(fd);
    return rc;
}

/* Where the agent reaches agentd's runtime tool (free it), or NULL when it is not offered. */
static char *run__mcp_url(struct session *se)
{
    struct sessions *s = se->registry;
    if (se->opts.mcp <= 0 || s->base_url == NULL)
        return NULL;
    if (!s->cfg.agent_auth)
        return xasprintf("%s/v1/sessions/%s/mcp", s->base_url, se->id);
    /* A server with a token: the agent gets one of its own, scoped to this session's MCP endpoint
     * (session__authorize), in the URL, which every agent CLI passes on as is. */
    if (se->agent_token[0] == '\0') {
        unsigned char raw[32];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(se->agent_token, sizeof se->agent_token, raw, sizeof raw);
    }
    return xasprintf("%s/v1/sessions/%s/mcp?agent_token=%s", s->base_url, se->id, se->agent_token);
}

static void run__spawn(struct session_run *r)
{
    struct session *se = r->se;
    struct sessions *s = se->registry;
    const struct session_opts *o = &se->opts;
    char *mcp_url = run__mcp_url(se);
    struct agent_mcp mcp = {.url = mcp_url};
    struct agent_run_opts ro = {
        .prompt = r->text,
        .session_id = se->id,
        .run_id = r->id,
        .workspace = se->workspace,
        .home = se->home,
        .program = agent_adapter_runs_self(se->adapter) ? s->self_exe
                   : o->command                         ? o->command[0]
                                                        : o->program,
        .model = o->model,
        .base_url = o->base_url,
        .api_key = o->api_key,
        .native_session = se->native_session,
        .fork = se->fork_pending,
        .bypass_permissions = 1,
        .mcp = mcp.url ? &mcp : NULL,
        .extra_args = o->command && o->command[1] ? (const char *const *)o->command + 1 : NULL,
    };
    struct agent_cmd cmd;
    int rc = agent_command(se->adapter, &ro, &cmd);
    free(mcp_url);
    if (rc != 0)
        return run__complete(r, "error", "spawn_failed", "the agent's command could not be built", INT64_MIN);
    for (size_t i = 0; rc == 0 && i < cmd.nfiles; i++)
        rc = run__write_file(&cmd.files[i]);
    r->out = agent_parser_new(se->adapter, 0, run__on_event, r);
    r->err = agent_parser_new(NULL, 0, run__on_event, r);
    char why[1024] = "";
    struct exec_spawn_opts so = {
        .on_stdout = run__on_stdout,
        .on_stderr = run__on_stderr,
        .on_exit = run__on_exit,
        .arg = r,
        .env_extra = cmd.env,
        .why = why,
        .why_cap = sizeof why,
    };
    if (rc == 0)
        rc = exec_spawn(se->xenv, cmd.argv, &so, &r->proc);
    if (rc == 0 && cmd.stdin_len)
        rc = exec_proc_write(r->proc, cmd.stdin_data, cmd.stdin_len);
    if (rc == 0 && !cmd.stdin_keep_open)
        exec_proc_close_stdin(r->proc);
    char *program = xstrdup(cmd.argv && cmd.argv[0] ? cmd.argv[0] : "?");
    agent_cmd_free(&cmd);
    if (rc != 0 && r->proc == NULL) {
        char *msg = xasprintf("cannot start %s: %s", program, why[0] ? why : strerror(-rc));
        run__complete(r, "error", rc == -ENOENT || rc == -EACCES ? "agent_not_found" : "spawn_failed", msg,
                      INT64_MIN);
        free(msg);
    } else {
        se->fork_pending = 0;
    }
    free(program);
}

/* Starts r now: record, run_start, and the environment if it is not up yet. */
static void run__start(struct session_run *r)
{
    struct session *se = r->se;
    struct sessions *s = se->registry;
    se->active = r;
    r->state = RUN_RUNNING;
    r->started_ms = clock_wall_ms();
    run__record(r, "update", "running", NULL);
    run__event(r, json_pack("{s:s, s:s, s:s}", "type", "run_start", "input", r->text, "mode", r->mode));
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
    if (exec_env_status(se->xenv) == EXEC_STATUS_READY)
        run__spawn(r);
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

/* Asks the running program to stop: the adapter's cancel line when it has one, then SIGTERM to
 * its process group and SIGKILL after a grace period (exec verifies nothing of it is left). */
static void run__cancel_running(struct session_run *r)
{
    if (r->cancel_requested)
        return;
    r->cancel_requested = 1;
    if (r->proc == NULL) /* environment still starting */
        return run__complete(r, "cancelled", "cancelled", "the run was cancelled", INT64_MIN);
    char *line = agent_cancel_line(r->se->adapter, r->id);
    if (line) {
        (void)!exec_proc_write(r->proc, line, strlen(line));
        free(line);
    }
    exec_proc_kill(r->proc, RUN_CANCEL_GRACE_MS, NULL, NULL);
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
    if (r->proc == NULL) /* environment still starting */
        return run__complete(r, "error", code, message, INT64_MIN);
    exec_proc_kill(r->proc, RUN_CANCEL_GRACE_MS, NULL, NULL);
}

/* ================= the API ================= */

int session__message(struct session *se, const char *text, const char *mode, json_t **answer,
                     const char **why)
{
    if (mode == NULL)
        mode = "queue";
    if (strcmp(mode, "queue") && strcmp(mode, "interrupt") && strcmp(mode, "reject")) {
        *why = "mode must be queue, interrupt or reject";
        return -EINVAL;
    }
    if (se->adapter == NULL) {
        *why = "this session has no agent (agent none): use its runtimes";
        return -EBUSY;
    }
    if (se->active && !strcmp(mode, "reject")) {
        *why = "a run is active and mode is reject";
        return -EBUSY;
    }
    struct session_run *r = xcalloc(1, sizeof *r);
    unsigned char raw[RUN_ID_BYTES];
    randombytes_buf(raw, sizeof raw);
    memcpy(r->id, "run_", 4);
    sodium_bin2hex(r->id + 4, sizeof r->id - 4, raw, sizeof raw);
    r->se = se;
    r->text = xstrdup(text);
    snprintf(r->mode, sizeof r->mode, "%s", mode);
    r->created_ms = clock_wall_ms();
    char id[sizeof r->id];
    memcpy(id, r->id, sizeof id);
    char path[128];
    run__path(se, "inbox", path);
    session__write(se->registry, se, SESSION_W_INBOX, r->id, path,
                   json_pack("{s:s, s:s, s:s, s:s, s:I}", "type", "user", "text", text, "run", r->id, "mode",
                             mode, "ts", (json_int_t)r->created_ms));
    run__record(r, "insert", "queued", NULL);
    if (se->active == NULL && !session__degraded(se)) {
        run__start(r);
    } else if (se->active && !strcmp(mode, "interrupt")) {
        r->next = se->queue; /* first in line, then stop the active run */
        se->queue = r;
        if (se->queue_tail == &se->queue)
            se->queue_tail = &r->next;
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
    return 0;
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
    run__path(se, "state", path);
    enum stream_lookup how;
    struct stream *st = streams_lookup(se->registry->ss, path, strlen(path), &how);
    if (st == NULL)
        return;
    struct buf b = {0};
    int64_t off = 0, next;
    while (off < stream_tail(st)) {
        if (stream_read(se->registry->ss, st, off, 1 << 20, &b, &next) != 0 || next <= off)
            break;
        off = next;
    }
    stream_json_wrap(&b);
    json_t *msgs = json_loadb(b.p, b.len, 0, NULL);
    buf_free(&b);
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
            run__complete(r, "error", "server_restart", "agentd restarted while the run was in progress",
                          INT64_MIN);
        }
    }
    json_decref(latest);
}

static void run__env_closed(void *arg)
{
    struct session *se = arg;
    se->env_closing = 0;
    session__env_released(se);
}

void session__stop_runs(struct session *se)
{
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
