/*
 * session_agent — the process that runs a session's agent, which may outlive a run.
 *
 * An agent that can be warm (AGENT_CAP_WARM: Claude Code, Codex, OpenCode, jsonl programs that
 * announce it) is one long-lived process per session: each run is a turn, its message written to the
 * process's stdin (or, for an agent over HTTP, sent to the server it is: OpenCode's `opencode
 * serve`, through curlx_http on the loop), and it ends at the turn's `result`; the process then
 * waits for the next message. It stops after the server's --agent-idle milliseconds without one,
 * when a fork or a changed permission policy wants it gone (at the end of its run if it has one),
 * and with the session or the server (the environment's close kills it). A session created with
 * "warm": false stops it after each run, so every message starts a fresh process. Other agents
 * (jsonl programs of protocol 1) start a process per run, which ends with it. Whatever stops a
 * process, the next message starts another one, which resumes the agent's native session.
 *
 * While a run is served, its process can be steered (more input into the running turn),
 * interrupted (the turn ends, the process stays) or killed (cancel), as far as the agent can
 * (session__agent_caps); its permission requests go to session_perm.c, whose answers come back
 * here and go to the process's stdin.
 *
 * Every process goes through exec/ (exec_spawn in the session's environment): its own process
 * group, PR_SET_PDEATHSIG and the guard, a verified kill. A warm process is one more such process,
 * so kill -9 of agentd leaves none behind either.
 *
 * Ownership: a struct session_agent belongs to its session (se->agent_proc) from its spawn until its
 * process has exited; it is freed when its timer has closed, and holds the session (se->closing)
 * until then, so that a deleted session's memory outlives its last process.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "core/list.h"
#include "curlx/curlx_http.h"
#include "exec/exec.h"
#include "session/session_int.h"

#define AGENT_KILL_GRACE_MS   1000  /* from a kill (cancel, stop) to its SIGKILL */
#define AGENT_CANCEL_TERM_MS  200   /* a cancel's SIGTERM when the agent was sent a cancel line */
#define AGENT_STOP_GRACE_MS   2000  /* a warm process told to stop (stdin closed) before it is killed */
#define AGENT_HTTP_TIMEOUT_MS 60000 /* one request to an agent over HTTP (its event stream: none) */

struct session_agent;

/* A request to an agent over HTTP: whose, and its tag (agent.h), until its answer. */
struct agent__http_call {
    struct session_agent *a;
    char tag[32];
    LIST_LINK(agent__http_call) link; /* a->calls */
};

struct session_agent {
    struct session *se;
    struct exec_proc *proc; /* NULL once it exited */
    struct agent_parser *out, *err;
    struct session_run *run; /* the run it serves; NULL while idle */
    pid_t pid;
    int approvals;          /* started asking agentd before using tools */
    int stopping;           /* told to stop: stdin closed, or killed */
    const char *retire;     /* stop when its run ends, and why; NULL: keep it */
    const char *stopped_by; /* why it was told to stop, for its status event */
    int said_started;       /* its `started` status event is written (warm processes only) */
    int checked;            /* agent__check_approvals ran (on its first event on stdout) */
    struct agent__waiter {  /* who waits for the process to be gone (session__agent_when_gone) */
        void (*cb)(void *arg);
        void *arg;
        struct agent__waiter *next;
    } * waiters;
    uv_timer_t timer; /* the idle timeout, then a stop's grace period */
    /* An agent over HTTP (agent_adapter_over_http): its requests in flight, the password only
     * agentd knows ("agentd:<hex>" for basic authentication), the event stream's partial lines and
     * the data of the event being read. */
    struct curlx_http *http;
    char userpwd[80];
    struct buf sse, sse_data;
    struct agent__http_call *calls; /* the requests in flight, each with its tag */
};

/* ================= life and death ================= */

/* A `status` event of scope agent: started, stopped. */
static void agent__status(struct session_agent *a, const char *status, json_t *extra)
{
    json_t *ev = json_pack("{s:s, s:s, s:s, s:i}", "type", "status", "scope", "agent", "status", status,
                           "pid", (int)a->pid);
    if (extra) {
        json_object_update(ev, extra);
        json_decref(extra);
    }
    session__event(a->se, ev);
}

static void agent__closed(uv_handle_t *h)
{
    struct session_agent *a = h->data;
    struct session *se = a->se;
    agent_parser_free(a->out);
    agent_parser_free(a->err);
    buf_free(&a->sse);
    buf_free(&a->sse_data);
    free(a);
    session__env_released(se); /* the hold on a deleted session's memory */
}

static void agent__on_exit(void *arg, struct exec_proc *p, const struct exec_exit *ex)
{
    struct session_agent *a = arg;
    struct session *se = a->se;
    curlx_http_free(a->http); /* its requests end unanswered: the process is gone */
    a->http = NULL;
    while (a->calls) {
        struct agent__http_call *c = a->calls;
        list_remove(c, link);
        free(c);
    }
    agent_parser_finish(a->out);
    agent_parser_finish(a->err);
    a->proc = NULL;
    if (se->agent_proc == a)
        se->agent_proc = NULL;
    json_t *how = json_pack("{s:s}", "reason",
                            a->stopped_by ? a->stopped_by
                            : ex->signal  ? "killed"
                                          : "exited");
    json_object_set_new(how, "exit_status", json_integer(ex->signal ? 128 + ex->signal : ex->status));
    if (a->run) {
        struct session_run *r = a->run;
        a->run = NULL;
        session__run_ended(r, ex);
    }
    if (agent_parser_caps(a->out) & AGENT_CAP_WARM)
        agent__status(a, "stopped", how);
    else
        json_decref(how);
    while (a->waiters) {
        struct agent__waiter *w = a->waiters;
        a->waiters = w->next;
        w->cb(w->arg);
        free(w);
    }
    uv_close((uv_handle_t *)&a->timer, agent__closed);
    session__agent_kick(se); /* a run may have waited for this process to go */
}

static void agent__stop_timer(uv_timer_t *t)
{
    struct session_agent *a = t->data;
    if (a->proc)
        exec_proc_kill(a->proc, AGENT_KILL_GRACE_MS, NULL, NULL);
}

/* Tells an idle process to stop: stdin closed (the agent ends by itself), killed after a grace
 * period if it does not. */
static void agent__stop(struct session_agent *a, const char *why)
{
    if (a->stopping || a->proc == NULL)
        return;
    a->stopping = 1;
    a->stopped_by = why;
    if (a->http) /* a server does not read its stdin: it is told by a signal */
        return exec_proc_kill(a->proc, AGENT_KILL_GRACE_MS, NULL, NULL);
    exec_proc_close_stdin(a->proc);
    uv_timer_start(&a->timer, agent__stop_timer, AGENT_STOP_GRACE_MS, 0);
}

static void agent__idle_timer(uv_timer_t *t) { agent__stop(t->data, "idle"); }

/* The process's run ended and it is still there: it waits for the next message, or goes. */
static void agent__idle(struct session_agent *a)
{
    struct session *se = a->se;
    if (a->retire)
        return agent__stop(a, a->retire);
    if (se->opts.warm == 0 || !(agent_parser_caps(a->out) & AGENT_CAP_WARM))
        return agent__stop(a, "run ended");
    uv_timer_start(&a->timer, agent__idle_timer, se->registry->cfg.agent_idle_ms, 0);
}

/* ================= what the process says ================= */

static void agent__write_stdin(void *arg, const char *data, size_t len)
{
    struct session_agent *a = arg;
    if (a->proc && !a->stopping)
        (void)!exec_proc_write(a->proc, data, len);
}

/* ---- an agent over HTTP (agent.h): its requests, its answers, its event stream ---- */

/* Server-Sent Events: "data:" lines gather into an event, which a blank line ends. */
static void agent__http_data(void *arg, const char *data, size_t len)
{
    struct session_agent *a = ((struct agent__http_call *)arg)->a;
    if (a->sse.len + len > AGENT_MAX_LINE || a->sse_data.len > AGENT_MAX_LINE) {
        buf_reset(&a->sse); /* an event too big to be one: dropped, up to the next line's start */
        buf_reset(&a->sse_data);
        return;
    }
    buf_append(&a->sse, data, len);
    size_t used = 0;
    for (char *nl; (nl = memchr(a->sse.p + used, '\n', a->sse.len - used)) != NULL;
         used = nl - a->sse.p + 1) {
        const char *line = a->sse.p + used;
        size_t n = nl - line;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n == 0 && a->sse_data.len) {
            agent_parser_http_event(a->out, a->sse_data.p, a->sse_data.len);
            buf_reset(&a->sse_data);
        } else if (n >= 5 && !memcmp(line, "data:", 5)) {
            size_t skip = n > 5 && line[5] == ' ' ? 6 : 5;
            if (a->sse_data.len)
                buf_append(&a->sse_data, "\n", 1);
            buf_append(&a->sse_data, line + skip, n - skip);
        } /* event:, id:, retry: and comments carry nothing agentd uses */
    }
    memmove(a->sse.p, a->sse.p + used, a->sse.len - used);
    a->sse.len -= used;
}

static void agent__http_done(void *arg, const struct curlx_http_answer *ans)
{
    struct agent__http_call *c = arg;
    list_remove(c, link);
    agent_parser_http_answer(c->a->out, c->tag, ans->ok, ans->status, ans->body, ans->len, ans->error);
    free(c);
}

/* The writer of an agent over HTTP: each write is a request line (agent.h). */
static void agent__write_http(void *arg, const char *data, size_t len)
{
    struct session_agent *a = arg;
    json_t *req = len && a->proc && !a->stopping ? json_loadb(data, len, 0, NULL) : NULL;
    const char *url = json_string_value(json_object_get(req, "url"));
    if (url == NULL) {
        json_decref(req);
        return;
    }
    if (a->http == NULL && curlx_http_new(&a->http, a->se->registry->loop) != 0) {
        json_decref(req);
        return;
    }
    struct agent__http_call *c = xcalloc(1, sizeof *c);
    c->a = a;
    list_insert(&a->calls, c, link);
    const char *tag = json_string_value(json_object_get(req, "tag"));
    snprintf(c->tag, sizeof c->tag, "%s", tag ? tag : "");
    json_t *body = json_object_get(req, "body");
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    int stream = json_is_true(json_object_get(req, "stream"));
    struct curlx_http_opts o = {.method = json_string_value(json_object_get(req, "method")),
                                .url = url,
                                .body = text,
                                .body_len = text ? strlen(text) : 0,
                                .userpwd = a->userpwd,
                                .timeout_ms = stream ? 0 : AGENT_HTTP_TIMEOUT_MS,
                                .on_data = stream ? agent__http_data : NULL,
                                .on_done = agent__http_done,
                                .arg = c};
    (void)curlx_http_request(a->http, &o);
    free(text);
    json_decref(req);
}

/* A permission request was decided: the answer goes to the process (if it still listens). */
static void agent__decided(void *arg, const struct session_decision *d)
{
    struct session_agent *a = arg;
    const char *native = json_string_value(json_object_get(d->request, "native_request"));
    struct agent_decision ad = {.allow = d->allow,
                                .message = d->message,
                                .input = json_object_get(d->request, "input"),
                                .updated_input = d->updated_input};
    if (native && a->proc)
        (void)!agent_send_decision(a->out, native, &ad);
}

static void agent__permission(struct session_agent *a, json_t *ev)
{
    json_t *req = json_object();
    static const char *const keys[] = {"tool", "input", "suggestions", "tool_use_id", "native_request"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(keys); i++)
        if (json_object_get(ev, keys[i]))
            json_object_set(req, keys[i], json_object_get(ev, keys[i]));
    if (a->run == NULL) { /* nothing runs that a person could be asked about: refused at once */
        struct session_decision d = {.allow = 0, .message = "no run is active", .request = req};
        agent__decided(a, &d);
        json_decref(req);
        return;
    }
    (void)session__perm_ask(a->se, session__run_id(a->run), req, json_object_get(ev, "native"),
                            agent__decided, a);
}

/* The turn is over and the process stays: the run ends now. */
static void agent__turn_done(struct session_agent *a)
{
    struct session_run *r = a->run;
    a->run = NULL;
    session__run_ended(r, NULL); /* may hand this process the next run at once */
    if (a->run == NULL && a->proc)
        agent__idle(a);
}

/* A program that announces what it can do said so (or said more): the session remembers it, and a
 * warm one says it started. */
static void agent__caps_changed(struct session_agent *a)
{
    struct session *se = a->se;
    unsigned caps = agent_parser_caps(a->out);
    if ((caps & AGENT_CAP_WARM) && !a->said_started) {
        a->said_started = 1;
        agent__status(a, "started", json_pack("{s:b}", "approvals", a->approvals));
    }
    if (!agent_adapter_announces_caps(se->adapter) || caps == se->caps)
        return;
    se->caps = caps;
    if (!se->deleted)
        session__publish(se->registry, se, "update");
}

/* A program that announces its capabilities and was asked to ask before its tools, but will not:
 * the session says so once, on the program's first event on stdout. Not sooner: the protocol has
 * the program write its `capabilities` line first, so only then is it known; a program whose first
 * event comes without one is a protocol 1 program, which never asks. Its stderr decides nothing. */
static void agent__check_approvals(struct session_agent *a)
{
    struct session *se = a->se;
    if (a->checked || !agent_adapter_announces_caps(se->adapter))
        return;
    a->checked = 1;
    if (a->approvals && !(agent_parser_caps(a->out) & AGENT_CAP_APPROVALS))
        session__event(se, json_pack("{s:s, s:s, s:s}", "type", "log", "level", "warn", "text",
                                     "this program does not ask before using its tools (no approvals in "
                                     "its capabilities): the session's permission policy reaches only "
                                     "agentd's runtime tool"));
}

/* An event of the process, from its stdout or its stderr: to the run it serves, or the session. */
static void agent__route(struct session_agent *a, json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type && !strcmp(type, "permission_request")) {
        agent__permission(a, ev);
        json_decref(ev);
        return;
    }
    if (a->run == NULL) { /* between runs: what it says belongs to no run; a stray result to none */
        if (type && strcmp(type, "result"))
            session__event(a->se, ev);
        else
            json_decref(ev);
        return;
    }
    int result = type && !strcmp(type, "result");
    session__run_event(a->run, ev);
    if (result && (agent_parser_caps(a->out) & AGENT_CAP_WARM))
        agent__turn_done(a);
}

static void agent__on_event(void *arg, json_t *ev)
{
    struct session_agent *a = arg;
    agent__caps_changed(a);
    agent__route(a, ev);
    agent__check_approvals(a); /* after the event, which the transcript shows first */
}

static void agent__on_stderr_event(void *arg, json_t *ev) { agent__route(arg, ev); }

static void agent__on_stdout(void *arg, struct exec_proc *p, const char *data, size_t len)
{
    struct session_agent *a = arg;
    agent_parser_feed(a->out, data, len);
}

static void agent__on_stderr(void *arg, struct exec_proc *p, const char *line, size_t len, int eol)
{
    struct session_agent *a = arg;
    agent_parser_feed(a->err, line, len);
    if (eol)
        agent_parser_feed(a->err, "\n", 1);
}

/* ================= starting ================= */

/* Writes a file the adapter needs (0600, parents created). */
static int agent__write_file(const struct agent_file *f)
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
static char *agent__mcp_url(struct session *se)
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

/* Whether the agent should ask before using tools: the policy may refuse, and it can ask. */
static int agent__wants_approvals(const struct session *se)
{
    return session__policy_asks(se) && (agent_adapter_caps(se->adapter) & AGENT_CAP_APPROVALS);
}

/* What run r asks of the agent (strings borrowed from se and r; mcp_url from the caller). */
static struct agent_run_opts agent__opts(struct session *se, struct session_run *r,
                                         const struct agent_mcp *mcp)
{
    const struct session_opts *o = &se->opts;
    return (struct agent_run_opts){
        .prompt = session__run_text(r),
        .session_id = se->id,
        .run_id = session__run_id(r),
        .workspace = se->workspace,
        .home = se->home,
        .program = agent_adapter_runs_self(se->adapter) ? se->registry->self_exe
                   : o->command                         ? o->command[0]
                                                        : o->program,
        .model = o->model,
        .base_url = o->base_url,
        .api_key = o->api_key,
        .native_session = se->native_session,
        .fork = se->fork_pending,
        .bypass_permissions = 1,
        .approvals = agent__wants_approvals(se),
        .mcp = mcp,
        .extra_args = o->command && o->command[1] ? (const char *const *)o->command + 1 : NULL,
    };
}

static struct session_agent *agent__new(struct session *se)
{
    struct session_agent *a = xcalloc(1, sizeof *a);
    a->se = se;
    a->out = agent_parser_new(se->adapter, 0, agent__on_event, a);
    a->err = agent_parser_new(NULL, 0, agent__on_stderr_event, a);
    int http = agent_adapter_over_http(se->adapter);
    agent_parser_set_writer(a->out, http ? agent__write_http : agent__write_stdin, a);
    if (http) {
        unsigned char raw[24];
        char hex[2 * sizeof raw + 1];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
        snprintf(a->userpwd, sizeof a->userpwd, "%s:%s", AGENT_HTTP_USER, hex);
    }
    uv_timer_init(se->registry->loop, &a->timer);
    a->timer.data = a;
    se->closing++; /* released by agent__closed */
    return a;
}

/* Starts a process for run r; on failure the run ends with why. */
static void agent__spawn(struct session *se, struct session_run *r)
{
    char *mcp_url = agent__mcp_url(se);
    struct agent_mcp mcp = {.url = mcp_url};
    struct agent_run_opts ro = agent__opts(se, r, mcp_url ? &mcp : NULL);
    struct session_agent *a = agent__new(se);
    ro.secret = a->userpwd[0] ? strchr(a->userpwd, ':') + 1 : NULL;
    struct agent_cmd cmd;
    int rc = agent_command(se->adapter, &ro, &cmd);
    free(mcp_url);
    if (rc != 0) {
        uv_close((uv_handle_t *)&a->timer, agent__closed);
        return session__run_failed(r, "spawn_failed", "the agent's command could not be built");
    }
    for (size_t i = 0; rc == 0 && i < cmd.nfiles; i++)
        rc = agent__write_file(&cmd.files[i]);
    a->approvals = ro.approvals;
    char why[1024] = "";
    struct exec_spawn_opts so = {.on_stdout = agent__on_stdout,
                                 .on_stderr = agent__on_stderr,
                                 .on_exit = agent__on_exit,
                                 .arg = a,
                                 .env_extra = cmd.env,
                                 .why = why,
                                 .why_cap = sizeof why};
    if (rc == 0)
        rc = exec_spawn(se->xenv, cmd.argv, &so, &a->proc);
    if (rc == 0 && cmd.stdin_len)
        rc = exec_proc_write(a->proc, cmd.stdin_data, cmd.stdin_len);
    if (rc == 0 && !cmd.stdin_keep_open)
        exec_proc_close_stdin(a->proc);
    if (rc == 0 && cmd.turn_by_send && agent_send_turn(a->out, &ro) != 0) /* once the process runs */
        exec_proc_kill(a->proc, 0, NULL, NULL); /* it cannot take its message: the run ends with it */
    char *msg = rc != 0 && a->proc == NULL
                    ? xasprintf("cannot start %s: %s", cmd.argv && cmd.argv[0] ? cmd.argv[0] : "?",
                                why[0] ? why : strerror(-rc))
                    : NULL;
    agent_cmd_free(&cmd);
    if (msg) { /* nothing started: the run ends, the agent goes */
        uv_close((uv_handle_t *)&a->timer, agent__closed);
        session__run_failed(r, rc == -ENOENT || rc == -EACCES ? "agent_not_found" : "spawn_failed", msg);
        free(msg);
        return;
    }
    a->pid = exec_proc_pid(a->proc);
    a->run = r;
    se->agent_proc = a;
    se->fork_pending = 0;
    agent__caps_changed(a); /* a warm agent says it started (a program that announces it: later) */
}

/* A warm process takes run r as its next message; 0, or a negative errno (it cannot). */
static int agent__take(struct session_agent *a, struct session_run *r)
{
    struct session *se = a->se;
    char *mcp_url = agent__mcp_url(se);
    struct agent_mcp mcp = {.url = mcp_url};
    struct agent_run_opts ro = agent__opts(se, r, mcp_url ? &mcp : NULL);
    int rc = agent_send_turn(a->out, &ro);
    free(mcp_url);
    if (rc != 0)
        return rc;
    uv_timer_stop(&a->timer);
    a->run = r;
    return 0;
}

/* ================= the session's side ================= */

void session__agent_kick(struct session *se)
{
    struct session_run *r = se->active;
    if (r == NULL || se->deleted || session__agent_serving(se) || se->xenv == NULL ||
        exec_env_status(se->xenv) != EXEC_STATUS_READY)
        return; /* nothing waits, or the environment's ready event kicks again */
    struct session_agent *a = se->agent_proc;
    if (a == NULL)
        return agent__spawn(se, r);
    if (a->stopping || a->run)
        return; /* its exit kicks again */
    int stale = a->retire || (agent_adapter_approvals_per_process(se->adapter) &&
                              a->approvals != agent__wants_approvals(se));
    if (stale || agent__take(a, r) != 0)
        agent__stop(a,
                    stale ? (a->retire ? a->retire : "permission policy changed") : "cannot take a message");
}

int session__agent_serving(const struct session *se)
{
    return se->active && se->agent_proc && se->agent_proc->run == se->active;
}

void session__agent_kill(struct session *se)
{
    struct session_agent *a = se->agent_proc;
    if (a == NULL || a->proc == NULL)
        return;
    /* The kill first, the cancel line second: the kill's first scan finds the agent's descendants
     * by their parent links, which are gone once the agent exits. Written first, the line could end
     * the agent before that scan and leave a tool child that setsid()ed an orphan that nothing
     * kills (only a cgroup would still hold it). With a line, the SIGTERM waits
     * AGENT_CANCEL_TERM_MS: an agent without a SIGTERM handler (most) reads the line and ends the
     * run itself, rather than die of the signal first; what it started is tracked meanwhile. */
    char *line = a->run ? agent_cancel_line(se->adapter, session__run_id(a->run)) : NULL;
    exec_proc_kill_after(a->proc, line ? AGENT_CANCEL_TERM_MS : 0, AGENT_KILL_GRACE_MS, NULL, NULL);
    if (line)
        agent__write_stdin(a, line, strlen(line));
    free(line);
    a->stopping = 1;
    if (a->stopped_by == NULL)
        a->stopped_by = "cancelled";
}

int session__agent_interrupt(struct session *se)
{
    if (!session__agent_serving(se))
        return -ESRCH;
    return agent_send_interrupt(se->agent_proc->out, session__run_id(se->agent_proc->run));
}

int session__agent_steer(struct session *se, const char *text)
{
    if (!session__agent_serving(se))
        return -ESRCH;
    return agent_send_steer(se->agent_proc->out, session__run_id(se->agent_proc->run), text);
}

void session__agent_retire(struct session *se, const char *reason)
{
    struct session_agent *a = se->agent_proc;
    if (a == NULL)
        return;
    if (a->run)
        a->retire = reason;
    else
        agent__stop(a, reason);
}

int session__agent_when_gone(struct session *se, void (*cb)(void *arg), void *arg)
{
    struct session_agent *a = se->agent_proc;
    if (a == NULL || a->proc == NULL || a->run != NULL)
        return 0;
    struct agent__waiter *w = xcalloc(1, sizeof *w);
    w->cb = cb;
    w->arg = arg;
    w->next = a->waiters;
    a->waiters = w;
    return 1;
}

unsigned session__agent_caps(const struct session *se)
{
    if (se->adapter == NULL)
        return 0;
    if (se->agent_proc)
        return agent_parser_caps(se->agent_proc->out);
    return agent_adapter_announces_caps(se->adapter) ? se->caps : agent_adapter_caps(se->adapter);
}

void session__agent_view(const struct session *se, json_t *pub)
{
    const struct session_agent *a = se->agent_proc;
    json_t *caps = json_object();
    unsigned have = session__agent_caps(se);
    for (size_t i = 0; agent_cap_name(i); i++)
        json_object_set_new(caps, agent_cap_name(i), json_boolean(have & (1u << i)));
    if (se->opts.warm == 0)
        json_object_set_new(caps, "warm", json_false());
    json_object_set_new(pub, "capabilities", caps);
    json_object_set_new(pub, "agent_process",
                        a == NULL || a->proc == NULL ? json_null()
                                                     : json_pack("{s:i, s:s}", "pid", (int)a->pid, "state",
                                                                 a->stopping ? "stopping"
                                                                 : a->run    ? "busy"
                                                                             : "idle"));
    json_object_set_new(pub, "permissions", session__policy(se));
    json_object_set_new(pub, "pending_permissions", json_integer((json_int_t)session__perms_pending(se)));
}
