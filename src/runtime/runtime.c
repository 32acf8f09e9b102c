/* runtime — the public API: options, the call queue, timeouts, interrupts, idle culling, close.
 *
 * At most one call is "current" (handed to a process); the rest wait in a FIFO. A call ends in
 * exactly one of two ways: its completion marker arrives (runtime__on_data), or the process it
 * was handed to is done (runtime__on_proc_done) — exited, killed, reset or closed. Completions
 * that would otherwise happen inside a public call (a failed spawn, state of a stopped runtime)
 * are deferred to a zero-delay timer, so callbacks never run before runtime_exec returns.
 *
 * The struct is freed only from the last timer close callback, never synchronously, so every
 * callback may call any runtime_* function, runtime_close included.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/exec.h"
#include "runtime/runtime_int.h"

#define RUNTIME_INTERRUPT_MIN_NS (5 * 1000 * 1000) /* see runtime__request_interrupt */
#define RUNTIME_INIT_CAPTURE     4096
#define RUNTIME_STATE_CAPTURE    (16u * 1024u * 1024u)

/* How far the interruption of the current call has gone (runtime__request_interrupt). */
enum runtime__phase {
    RUNTIME__PHASE_RUNNING,  /* not interrupted */
    RUNTIME__PHASE_DEFERRED, /* asked within RUNTIME_INTERRUPT_MIN_NS of hand-over: SIGINT held back */
    RUNTIME__PHASE_SIGINT,   /* SIGINT sent; SIGKILL follows after the grace period */
};

struct runtime__call {
    struct runtime__call *next;
    enum runtime__kind kind;
    uint64_t seq;
    char *code; /* owned copy */
    size_t code_len;
    uint64_t timeout_ms;
    runtime_done_cb done;
    runtime_state_cb state_cb;
    void *arg;
    struct runtime__proc *proc; /* borrowed: the process it was handed to */
    char nonce[RUNTIME__NONCE_LEN + 1];
    struct runtime__scan scan_out;
    struct runtime__capture out, err;
    int out_marker, out_done;
    int closed_out, closed_err; /* the marker's flags: the code closed its stdout / stderr */
    int status;
    enum runtime__phase phase;
    int timed_out, killed, cancelled;
    int failed; /* negative errno: could not start */
    uint64_t queued_ns, sent_ns, started_at_ms;
};

struct runtime {
    uv_loop_t *loop;
    enum runtime_lang lang_id;
    const struct runtime__lang *lang;
    char *program;                 /* owned: the name exec_spawn looks up */
    char *cwd;                     /* owned: the environment's workspace, for state answers */
    struct exec_env *env;          /* borrowed; NULL once it closed under us */
    struct exec_env_wait env_wait; /* while `waiting`: for the environment to be ready */
    int waiting;
    size_t output_limit;
    uint64_t idle_ms, timeout_ms, grace_ms;
    runtime_event_cb event_cb;
    void *event_arg;
    struct runtime__proc *proc;  /* the process new calls go to; NULL when none */
    struct runtime__proc *procs; /* every process not yet freed, proc included */
    struct runtime__call *cur;
    struct runtime__call *head, *tail;
    uv_timer_t call_timer, idle_timer, kick_timer;
    uv_idle_t spin;      /* active: the loop polls instead of sleeping (see runtime__send_call) */
    uint64_t spin_ns;    /* 0: never spin */
    uint64_t spin_until; /* uv_hrtime() at which the current spin ends */
    int last_quick;      /* the previous call answered within 4 x spin_ns */
    int open_handles;
    uint64_t next_seq;
    struct runtime__history history;
    int closing, finishing;
    runtime_close_cb close_cb;
    void *close_arg;
};

static void runtime__dispatch(struct runtime *rt);

/* ---- small helpers ----------------------------------------------------------------------- */

static void runtime__emit_status(struct runtime *rt, enum runtime_status st, const char *reason, int pid)
{
    struct runtime_event ev = {.kind = RUNTIME_EVENT_STATUS, .status = st, .reason = reason, .pid = pid};
    if (rt->event_cb)
        rt->event_cb(rt, &ev, rt->event_arg);
}

static void runtime__kick(struct runtime *rt);

/* ---- names ------------------------------------------------------------------------------ */

const char *runtime_lang_name(enum runtime_lang lang)
{
    switch (lang) {
    case RUNTIME_BASH: return "bash";
    case RUNTIME_PYTHON: return "python";
    case RUNTIME_NODE: return "node";
    }
    return "?";
}

int runtime_lang_parse(const char *name, enum runtime_lang *out)
{
    static const enum runtime_lang all[] = {RUNTIME_BASH, RUNTIME_PYTHON, RUNTIME_NODE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, runtime_lang_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return -EINVAL;
}

const char *runtime_status_name(enum runtime_status status)
{
    switch (status) {
    case RUNTIME_STATUS_INACTIVE: return "inactive";
    case RUNTIME_STATUS_STARTING: return "starting";
    case RUNTIME_STATUS_READY: return "ready";
    case RUNTIME_STATUS_ERROR: return "error";
    case RUNTIME_STATUS_TERMINATED: return "terminated";
    }
    return "?";
}

const char *runtime_outcome_name(enum runtime_outcome outcome)
{
    switch (outcome) {
    case RUNTIME_OK: return "ok";
    case RUNTIME_INTERRUPTED: return "interrupted";
    case RUNTIME_KILLED: return "killed";
    case RUNTIME_EXITED: return "exited";
    case RUNTIME_CANCELLED: return "cancelled";
    case RUNTIME_FAILED: return "failed";
    case RUNTIME_OUTPUT_CLOSED: return "output_closed";
    }
    return "?";
}

/* ---- creation --------------------------------------------------------------------------- */

int runtime_new(struct uv_loop_s *loop, const struct runtime_options *opts, struct runtime **out)
{
    const struct runtime__lang *lang;
    struct runtime *rt;
    char *path;
    int rc;

    switch (opts->lang) {
    case RUNTIME_BASH: lang = &runtime__lang_bash; break;
    case RUNTIME_PYTHON: lang = &runtime__lang_python; break;
    case RUNTIME_NODE: lang = &runtime__lang_node; break;
    default: return -EINVAL;
    }
    if (opts->env == NULL)
        return -EINVAL;
    /* Looked up now so that a missing interpreter is an error here, not at the first call; the
     * spawn looks it up again (exec owns the lookup: the environment's PATH). */
    if ((rc = exec_env_find_program(opts->env, opts->program ? opts->program : lang->search_name, &path)) < 0)
        return rc == -EACCES ? rc : -ENOENT;
    free(path);
    rt = xcalloc(1, sizeof *rt);
    rt->loop = loop;
    rt->lang_id = opts->lang;
    rt->lang = lang;
    rt->env = opts->env;
    rt->program = xstrdup(opts->program ? opts->program : lang->search_name);
    rt->cwd = xstrdup(exec_env_workspace(opts->env));
    rt->output_limit = opts->output_limit ? opts->output_limit : RUNTIME_DEFAULT_OUTPUT_LIMIT;
    rt->idle_ms = opts->idle_timeout_ms ? opts->idle_timeout_ms : RUNTIME_DEFAULT_IDLE_MS;
    rt->timeout_ms = opts->timeout_ms ? opts->timeout_ms : RUNTIME_DEFAULT_TIMEOUT_MS;
    rt->grace_ms = opts->kill_grace_ms ? opts->kill_grace_ms : RUNTIME_DEFAULT_GRACE_MS;
    rt->event_cb = opts->event_cb;
    rt->event_arg = opts->event_arg;
    runtime__history_init(&rt->history, opts->history_max ? opts->history_max : RUNTIME_DEFAULT_HISTORY);
    rt->spin_ns =
        opts->spin_us < 0 ? 0 : 1000 * (uint64_t)(opts->spin_us ? opts->spin_us : RUNTIME_DEFAULT_SPIN_US);
    rt->last_quick = 1;
    uv_timer_init(loop, &rt->call_timer);
    uv_timer_init(loop, &rt->idle_timer);
    uv_timer_init(loop, &rt->kick_timer);
    uv_idle_init(loop, &rt->spin);
    rt->call_timer.data = rt->idle_timer.data = rt->kick_timer.data = rt->spin.data = rt;
    rt->open_handles = 4;
    *out = rt;
    return 0;
}

/* ---- completing calls ------------------------------------------------------------------- */

static void runtime__call_free(struct runtime__call *c)
{
    runtime__capture_free(&c->out);
    runtime__capture_free(&c->err);
    free(c->code);
    free(c);
}

static void runtime__state_answer(struct runtime *rt, struct runtime__call *c, json_t *obj, int rc)
{
    char *text = NULL;

    if (rc == 0) {
        json_object_set_new(obj, "lang", json_string(rt->lang->name));
        text = json_dumps(obj, JSON_COMPACT);
    }
    json_decref(obj);
    c->state_cb(rt, rc, text, c->arg);
    free(text);
}

static void runtime__state_not_running(struct runtime *rt, struct runtime__call *c)
{
    json_t *o = json_object();

    json_object_set_new(o, "running", json_false());
    json_object_set_new(o, "pid", json_integer(0));
    json_object_set_new(o, "cwd", json_string(rt->cwd));
    runtime__state_answer(rt, c, o, 0);
}

/* The line ending the stderr of a call that closed its output (RUNTIME_OUTPUT_CLOSED). */
static const char *runtime__closed_note(const struct runtime__call *c)
{
    if (c->closed_out && c->closed_err)
        return "[agentd: the code closed its stdout and stderr: the runtime restarts with a fresh process, "
               "its state is lost]";
    if (c->closed_out)
        return "[agentd: the code closed its stdout: the runtime restarts with a fresh process, its state is "
               "lost]";
    return "[agentd: the code closed its stderr: the runtime restarts with a fresh process, its state is "
           "lost]";
}

static void runtime__complete(struct runtime *rt, struct runtime__call *c, enum runtime_outcome outcome,
                              int status);

/* The init call ended: the process is ready, or it died while starting. */
static void runtime__complete_init(struct runtime *rt, struct runtime__call *c, enum runtime_outcome outcome,
                                   int status)
{
    struct runtime__call *h = rt->head;

    if (outcome == RUNTIME_OK && c->proc == rt->proc) {
        c->proc->ready = 1;
        runtime__emit_status(rt, RUNTIME_STATUS_READY, "ready", c->proc->pid);
        return;
    }
    if (outcome == RUNTIME_CANCELLED || h == NULL)
        return;
    /* The interpreter died while starting: fail the call that wanted it and pass on what it
     * said, instead of starting it again and again. */
    rt->head = h->next;
    if (rt->head == NULL)
        rt->tail = NULL;
    h->failed = -ECHILD;
    runtime__capture_init(&h->err, RUNTIME_INIT_CAPTURE);
    runtime__capture_add(&h->err, c->err.buf, c->err.len);
    runtime__complete(rt, h, RUNTIME_FAILED, status);
}

/* A state query ended: the driver's answer as JSON, or why there is none. */
static void runtime__complete_state(struct runtime *rt, struct runtime__call *c, enum runtime_outcome outcome)
{
    if (outcome != RUNTIME_OK) {
        c->state_cb(rt,
                    outcome == RUNTIME_CANCELLED       ? -ECANCELED
                    : outcome == RUNTIME_FAILED        ? c->failed
                    : outcome == RUNTIME_OUTPUT_CLOSED ? -EPIPE
                                                       : -EINTR,
                    NULL, c->arg);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "running", json_true());
    json_object_set_new(o, "pid", json_integer(c->proc ? c->proc->pid : 0));
    int rc = rt->lang->state_json(c->out.buf ? c->out.buf : "", c->out.len, o);
    runtime__state_answer(rt, c, o, rc);
}

/* An exec call ended: its result goes to the history, the event callback and the caller. */
static void runtime__complete_exec(struct runtime *rt, struct runtime__call *c, enum runtime_outcome outcome,
                                   int status, uint64_t now)
{
    struct runtime_result r = {
        .seq = c->seq,
        .code = c->code,
        .code_len = c->code_len,
        .out = c->out.buf ? c->out.buf : "",
        .out_len = c->out.len,
        .out_total = c->out.total,
        .err = c->err.buf ? c->err.buf : "",
        .err_len = c->err.len,
        .err_total = c->err.total,
        .status = status,
        .outcome = outcome,
        .truncated = c->out.truncated || c->err.truncated,
        .timed_out = c->timed_out,
        .error = outcome == RUNTIME_FAILED ? c->failed : 0,
        .started_at_ms = c->started_at_ms,
        .queued_us = ((c->sent_ns ? c->sent_ns : now) - c->queued_ns) / 1000u,
        .duration_us = c->sent_ns ? (now - c->sent_ns) / 1000u : 0,
    };
    struct runtime_event ev = {.kind = RUNTIME_EVENT_EXEC, .result = &r};

    runtime__history_add(&rt->history, &r);
    if (rt->event_cb)
        rt->event_cb(rt, &ev, rt->event_arg);
    c->done(rt, &r, c->arg);
}

/* Ends call `c` (no longer current or queued) and frees it. May run user callbacks. */
static void runtime__complete(struct runtime *rt, struct runtime__call *c, enum runtime_outcome outcome,
                              int status)
{
    uint64_t now = uv_hrtime();

    for (const struct runtime__call *q = rt->head; q != NULL; q = q->next)
        assert(q != c); /* callers take a queued call off the queue first */
    if (rt->cur == c) {
        rt->cur = NULL;
        uv_timer_stop(&rt->call_timer);
        uv_idle_stop(&rt->spin);
        rt->last_quick = now - c->sent_ns <= 4 * rt->spin_ns; /* one slow call in a quick run still spins */
    }
    runtime__capture_finish(&c->out, NULL);
    runtime__capture_finish(&c->err, outcome == RUNTIME_OUTPUT_CLOSED ? runtime__closed_note(c) : NULL);
    switch (c->kind) {
    case RUNTIME__INIT: runtime__complete_init(rt, c, outcome, status); break;
    case RUNTIME__STATE: runtime__complete_state(rt, c, outcome); break;
    case RUNTIME__EXEC: runtime__complete_exec(rt, c, outcome, status, now); break;
    }
    runtime__call_free(c);
}

static void runtime__on_kick(uv_timer_t *t)
{
    struct runtime *rt = t->data;
    struct runtime__call *c = rt->head;

    if (c == NULL || rt->cur != NULL || rt->closing)
        return;
    if (c->failed == 0 && !(c->kind == RUNTIME__STATE && rt->proc == NULL)) {
        runtime__dispatch(rt);
        return;
    }
    rt->head = c->next;
    if (rt->head == NULL)
        rt->tail = NULL;
    if (c->failed != 0) {
        runtime__complete(rt, c, RUNTIME_FAILED, -1);
    } else {
        runtime__state_not_running(rt, c);
        runtime__call_free(c);
    }
    runtime__dispatch(rt);
}

static void runtime__kick(struct runtime *rt) { uv_timer_start(&rt->kick_timer, runtime__on_kick, 0, 0); }

/* ---- timeouts and interrupts ------------------------------------------------------------ */

static void runtime__on_call_timer(uv_timer_t *t);

static void runtime__send_interrupt(struct runtime *rt, struct runtime__call *c)
{
    c->phase = RUNTIME__PHASE_SIGINT;
    runtime__proc_interrupt(c->proc);
    uv_timer_start(&rt->call_timer, runtime__on_call_timer, rt->grace_ms, 0);
}

/* bash reads its request line from a pipe; a SIGINT landing while the line is half read would
 * discard the rest of it. The line is read within microseconds of being sent, so holding a
 * SIGINT back until a few milliseconds after hand-over removes that window in practice (and if
 * it still happens, the call ends by SIGKILL after the grace period rather than hanging). */
static void runtime__request_interrupt(struct runtime *rt, struct runtime__call *c)
{
    uint64_t elapsed = uv_hrtime() - c->sent_ns;

    if (c->phase != RUNTIME__PHASE_RUNNING)
        return;
    if (elapsed < RUNTIME_INTERRUPT_MIN_NS) {
        c->phase = RUNTIME__PHASE_DEFERRED;
        uv_timer_start(&rt->call_timer, runtime__on_call_timer,
                       (RUNTIME_INTERRUPT_MIN_NS - elapsed) / 1000000u + 1, 0);
        return;
    }
    runtime__send_interrupt(rt, c);
}

static void runtime__on_call_timer(uv_timer_t *t)
{
    struct runtime *rt = t->data;
    struct runtime__call *c = rt->cur;

    if (c == NULL)
        return;
    if (c->kind == RUNTIME__INIT) { /* the interpreter never became ready */
        c->killed = 1;
        runtime__proc_kill(c->proc, "killed");
        return;
    }
    switch (c->phase) {
    case RUNTIME__PHASE_RUNNING: /* the call's timeout */
        c->timed_out = 1;
        runtime__request_interrupt(rt, c);
        break;
    case RUNTIME__PHASE_DEFERRED: runtime__send_interrupt(rt, c); break;
    case RUNTIME__PHASE_SIGINT: /* it ignored SIGINT for the grace period */
        c->killed = 1;
        runtime__proc_kill(c->proc, "killed");
        break;
    }
}

int runtime_interrupt(struct runtime *rt)
{
    if (rt->closing)
        return -ESHUTDOWN;
    if (rt->cur == NULL || rt->cur->kind == RUNTIME__INIT)
        return -ENOENT;
    runtime__request_interrupt(rt, rt->cur);
    return 0;
}

/* ---- dispatching ------------------------------------------------------------------------ */

static void runtime__on_spin(uv_idle_t *h)
{
    struct runtime *rt = h->data;

    if (uv_hrtime() >= rt->spin_until)
        uv_idle_stop(h);
}

/*
 * Most calls an agent makes (`cd`, `x=1`, `echo $x`) answer in tens of microseconds, less than it
 * takes to wake a sleeping loop thread on a virtual CPU, which this round trip would otherwise pay
 * on top of the interpreter's own wake-up. So for the first spin_ns after a call is sent, an active
 * idle handle keeps the loop polling with a zero timeout: it keeps serving everything else, and sees
 * the answer the moment it is written. A runtime whose last call took over 4 x spin_ns does not
 * spin, so a run of long commands costs no CPU. Measured here (bench/runtime): bash 95-130 -> 53-85 µs,
 * python ~90 -> 30-40 µs.
 */
static void runtime__start_spin(struct runtime *rt)
{
    if (rt->spin_ns == 0 || !rt->last_quick)
        return;
    rt->spin_until = uv_hrtime() + rt->spin_ns;
    uv_idle_start(&rt->spin, runtime__on_spin);
}

static void runtime__send_call(struct runtime *rt, struct runtime__call *c)
{
    char needle[RUNTIME__NEEDLE_MAX], line[256];
    const char *code = c->code;
    size_t code_len = c->code_len, line_len;
    size_t limit = c->kind == RUNTIME__INIT    ? RUNTIME_INIT_CAPTURE
                   : c->kind == RUNTIME__STATE ? RUNTIME_STATE_CAPTURE
                                               : rt->output_limit;

    c->proc = rt->proc;
    runtime__nonce(c->nonce);
    needle[0] = '\x1e';
    memcpy(needle + 1, c->nonce, RUNTIME__NONCE_LEN);
    needle[RUNTIME__NONCE_LEN + 1] = ':';
    runtime__scan_init(&c->scan_out, needle, RUNTIME__NONCE_LEN + 2);
    runtime__capture_init(&c->out, limit);
    runtime__capture_init(&c->err, limit);
    if (c->kind == RUNTIME__INIT) {
        code = rt->lang->init;
        code_len = strlen(code);
    } else if (c->kind == RUNTIME__STATE && rt->lang->state_code) {
        code = rt->lang->state_code;
        code_len = strlen(code);
    }
    char *framed = NULL;

    assert(rt->cur == c && c->proc != NULL); /* one call at a time, handed to a live process */
    assert(c->kind == RUNTIME__INIT || c->proc->ready);
    if (rt->lang->nonce_in_code && c->kind != RUNTIME__INIT) {
        framed = xmalloc(RUNTIME__NONCE_LEN + 1 + code_len);
        memcpy(framed, c->nonce, RUNTIME__NONCE_LEN);
        framed[RUNTIME__NONCE_LEN] = '\n';
        memcpy(framed + RUNTIME__NONCE_LEN + 1, code, code_len);
        code = framed;
        code_len += RUNTIME__NONCE_LEN + 1;
    }
    line_len = rt->lang->request(line, sizeof line, c->kind, c->nonce, code_len);
    c->sent_ns = uv_hrtime();
    c->started_at_ms = (uint64_t)clock_wall_ms();
    uv_timer_start(&rt->call_timer, runtime__on_call_timer, c->timeout_ms, 0);
    runtime__start_spin(rt);
    /* On failure the process is being killed; the call ends when it is reaped. */
    (void)!runtime__proc_send(c->proc, code, code_len, line, line_len);
    free(framed);
}

static void runtime__on_env_settled(void *arg, struct exec_env *env, enum exec_status status)
{
    struct runtime *rt = arg;

    rt->waiting = 0;
    if (status == EXEC_STATUS_TERMINATED)
        rt->env = NULL; /* closing: it may be freed before we run again */
    runtime__kick(rt);
}

/* Starts a process for the calls to come. -EINPROGRESS: the environment is still starting, and
 * runtime__dispatch runs again when it is ready (or failed). */
static int runtime__start_proc(struct runtime *rt)
{
    struct runtime__proc_config cfg = {rt->loop, rt->lang, rt->program, rt->env, rt->grace_ms};
    struct runtime__proc *p;
    int rc;

    if (rt->waiting)
        return -EINPROGRESS;
    if (rt->env == NULL)
        return -ESHUTDOWN;
    switch (exec_env_status(rt->env)) {
    case EXEC_STATUS_INACTIVE:
    case EXEC_STATUS_STARTING:
        rt->waiting = 1;
        exec_env_wait(rt->env, &rt->env_wait, runtime__on_env_settled, rt);
        return -EINPROGRESS;
    case EXEC_STATUS_READY: break;
    default:
        /* The environment failed (its own `error` status says why) or is closing. */
        runtime__emit_status(rt, RUNTIME_STATUS_ERROR,
                             exec_env_error(rt->env) ? exec_env_error(rt->env) : "closed", 0);
        return exec_env_error(rt->env) ? -ENXIO : -ESHUTDOWN;
    }
    if ((rc = runtime__proc_spawn(rt, &cfg, &p)) < 0) {
        runtime__emit_status(rt, RUNTIME_STATUS_ERROR, strerror(-rc), 0);
        return rc;
    }
    p->next = rt->procs;
    rt->procs = p;
    rt->proc = p;
    runtime__emit_status(rt, RUNTIME_STATUS_STARTING, "spawned", p->pid);
    if (rt->lang->init) {
        struct runtime__call *c = xcalloc(1, sizeof *c);
        c->kind = RUNTIME__INIT;
        c->timeout_ms = rt->timeout_ms;
        c->queued_ns = uv_hrtime();
        rt->cur = c;
        runtime__send_call(rt, c);
    } else {
        /* The driver reads its first request once it is up; no need to wait. */
        p->ready = 1;
        runtime__emit_status(rt, RUNTIME_STATUS_READY, "ready", p->pid);
    }
    return 0;
}

static void runtime__arm_idle(struct runtime *rt);

static void runtime__dispatch(struct runtime *rt)
{
    struct runtime__call *c = rt->head;
    int rc;

    if (rt->closing || rt->cur != NULL)
        return;
    if (c == NULL) {
        runtime__arm_idle(rt);
        return;
    }
    uv_timer_stop(&rt->idle_timer);
    if (c->failed != 0 || (rt->proc == NULL && c->kind == RUNTIME__STATE)) {
        runtime__kick(rt);
        return;
    }
    if (rt->proc == NULL) {
        rc = runtime__start_proc(rt);
        if (rc == -EINPROGRESS)
            return;
        if (rc < 0) {
            c->failed = rc;
            if (rc == -ENXIO) {
                char note[512];
                snprintf(note, sizeof note, "[agentd: the session's execution environment failed: %s]\n",
                         exec_env_error(rt->env));
                runtime__capture_init(&c->err, sizeof note);
                runtime__capture_add(&c->err, note, strlen(note));
            }
            runtime__kick(rt);
            return;
        }
    }
    if (!rt->proc->ready)
        return; /* the init call is current; its completion dispatches again */
    rt->head = c->next;
    if (rt->head == NULL)
        rt->tail = NULL;
    rt->cur = c;
    runtime__send_call(rt, c);
}

static void runtime__enqueue(struct runtime *rt, struct runtime__call *c)
{
    c->queued_ns = uv_hrtime();
    if (rt->tail)
        rt->tail->next = c;
    else
        rt->head = c;
    rt->tail = c;
    runtime__dispatch(rt);
}

int runtime_exec(struct runtime *rt, const char *code, size_t len, uint64_t timeout_ms, runtime_done_cb cb,
                 void *arg)
{
    struct runtime__call *c;

    assert(cb != NULL && (code != NULL || len == 0)); /* exactly one done callback per call */
    if (rt->closing)
        return -ESHUTDOWN;
    c = xcalloc(1, sizeof *c);
    c->kind = RUNTIME__EXEC;
    c->seq = ++rt->next_seq;
    c->code = xcalloc(1, len + 1);
    memcpy(c->code, code, len);
    c->code_len = len;
    c->timeout_ms = timeout_ms ? timeout_ms : rt->timeout_ms;
    c->done = cb;
    c->arg = arg;
    runtime__enqueue(rt, c);
    return 0;
}

int runtime_state(struct runtime *rt, runtime_state_cb cb, void *arg)
{
    struct runtime__call *c;

    assert(cb != NULL);
    if (rt->closing)
        return -ESHUTDOWN;
    c = xcalloc(1, sizeof *c);
    c->kind = RUNTIME__STATE;
    c->timeout_ms = rt->timeout_ms;
    c->state_cb = cb;
    c->arg = arg;
    runtime__enqueue(rt, c);
    return 0;
}

size_t runtime__request_socket(char *buf, size_t cap, enum runtime__kind kind, const char *nonce,
                               size_t code_len)
{
    int n = snprintf(buf, cap, "%c %s %zu\n", kind == RUNTIME__STATE ? 'S' : 'E', nonce, code_len);

    assert(n > 0 && (size_t)n < cap); /* the whole line, or the call would hang */
    return (size_t)n;
}

int runtime__state_passthrough(const char *out, size_t len, void *obj)
{
    json_t *parsed = json_loadb(out, len, 0, NULL);
    int rc = 0;

    if (!json_is_object(parsed))
        rc = -EPROTO;
    else
        json_object_update(obj, parsed);
    json_decref(parsed);
    return rc;
}

/* ---- process events --------------------------------------------------------------------- */

/*
 * The code closed the interpreter's stdout or stderr. The driver still answered (its markers go to
 * a descriptor of their own), but the code's later output would be lost or fail, and bash would
 * wait for a marker forever once fd 1 is gone: so the process is replaced at once, and the call's
 * answer and the process's `terminated` status (reason "output_closed") say so. The fresh process
 * starts now, not with the next call, so the runtime is ready again as it was before.
 */
static void runtime__restart_closed(struct runtime *rt, struct runtime__call *c, struct runtime__proc *proc)
{
    if (rt->proc == proc)
        rt->proc = NULL;
    runtime__proc_kill(proc, "output_closed");
    runtime__complete(rt, c, RUNTIME_OUTPUT_CLOSED, c->status);
    if (rt->proc == NULL && rt->cur == NULL && !rt->closing)
        (void)runtime__start_proc(rt);
    runtime__dispatch(rt);
}

void runtime__on_data(struct runtime__proc *proc, int stream, const char *p, size_t n)
{
    struct runtime *rt = proc->rt;
    struct runtime__call *c = rt->cur;

    /* Output between calls (a background job, say) belongs to no call and is dropped. */
    if (c == NULL || c->proc != proc)
        return;
    if (stream == 2) {
        runtime__capture_add(&c->err, p, n);
        return;
    }
    if (!c->out_marker) {
        size_t used = runtime__scan_feed(&c->scan_out, p, n, runtime__capture_add, &c->out);
        if (!c->scan_out.found)
            return;
        c->out_marker = 1;
        p += used;
        n -= used;
    }
    /* The status follows the marker as decimal digits, then the flags and a newline. */
    for (; n > 0 && !c->out_done; p++, n--) {
        if (*p == '\n')
            c->out_done = 1;
        else if (*p >= '0' && *p <= '9' && c->status < 100000)
            c->status = c->status * 10 + (*p - '0');
        else if (*p == RUNTIME__FLAG_STDOUT[0])
            c->closed_out = 1;
        else if (*p == RUNTIME__FLAG_STDERR[0])
            c->closed_err = 1;
    }
    if (c->out_done) {
        /* The driver wrote all of the call's stderr before the marker, so it is already in
         * the pipe: take it now rather than waiting for the loop to report it. */
        runtime__proc_drain_err(proc);
        if (c->closed_out || c->closed_err) {
            runtime__restart_closed(rt, c, proc);
            return;
        }
        enum runtime_outcome o =
            c->phase == RUNTIME__PHASE_SIGINT && c->status == 130 ? RUNTIME_INTERRUPTED : RUNTIME_OK;
        runtime__complete(rt, c, o, c->status);
        runtime__dispatch(rt);
    }
}

void runtime__on_proc_done(struct runtime__proc *proc)
{
    struct runtime *rt = proc->rt;
    struct runtime__call *c = rt->cur;

    if (rt->proc == proc)
        rt->proc = NULL;
    if (c != NULL && c->proc == proc) {
        enum runtime_outcome o = c->cancelled ? RUNTIME_CANCELLED
                                 : c->killed  ? RUNTIME_KILLED
                                              : RUNTIME_EXITED;
        /* stdout ended without a marker: what a partial match held back is output. */
        if (!c->out_marker)
            runtime__scan_flush(&c->scan_out, runtime__capture_add, &c->out);
        runtime__complete(rt, c, o, proc->status);
    }
    runtime__emit_status(rt, RUNTIME_STATUS_TERMINATED, proc->reason ? proc->reason : "exited", proc->pid);
    runtime__dispatch(rt);
}

static void runtime__maybe_finish_close(struct runtime *rt);

void runtime__on_proc_freed(struct runtime *rt, struct runtime__proc *proc)
{
    struct runtime__proc **pp = &rt->procs;

    assert(proc != rt->proc); /* runtime__on_proc_done let go of it */
    while (*pp != proc) {
        assert(*pp != NULL); /* every process is in the list until freed */
        pp = &(*pp)->next;
    }
    *pp = proc->next;
    runtime__maybe_finish_close(rt);
}

/* ---- idle culling, reset ---------------------------------------------------------------- */

static void runtime__on_idle(uv_timer_t *t)
{
    struct runtime *rt = t->data;
    struct runtime__proc *p = rt->proc;

    if (p == NULL || rt->cur != NULL || rt->head != NULL)
        return;
    rt->proc = NULL;
    runtime__proc_stop(p, "idle");
}

static void runtime__arm_idle(struct runtime *rt)
{
    if (rt->proc != NULL && rt->proc->ready && rt->idle_ms != UINT64_MAX)
        uv_timer_start(&rt->idle_timer, runtime__on_idle, rt->idle_ms, 0);
}

int runtime_reset(struct runtime *rt)
{
    struct runtime__proc *p = rt->proc;

    if (rt->closing)
        return -ESHUTDOWN;
    if (p == NULL)
        return 0;
    rt->proc = NULL;
    uv_timer_stop(&rt->idle_timer);
    if (rt->cur != NULL && rt->cur->proc == p)
        rt->cur->cancelled = 1;
    runtime__proc_kill(p, "reset");
    return 0;
}

/* ---- accessors -------------------------------------------------------------------------- */

char *runtime_history_json(const struct runtime *rt, size_t limit)
{
    return runtime__history_json(&rt->history, limit);
}

size_t runtime_history_count(const struct runtime *rt) { return rt->history.count; }

enum runtime_status runtime_status(const struct runtime *rt)
{
    if (rt->proc == NULL)
        return RUNTIME_STATUS_INACTIVE;
    return rt->proc->ready ? RUNTIME_STATUS_READY : RUNTIME_STATUS_STARTING;
}

enum runtime_lang runtime_lang(const struct runtime *rt) { return rt->lang_id; }

int runtime_pgid(const struct runtime *rt) { return rt->proc ? rt->proc->pid : 0; }

/* ---- closing ---------------------------------------------------------------------------- */

static void runtime__on_timer_closed(uv_handle_t *h)
{
    struct runtime *rt = h->data;

    if (--rt->open_handles > 0)
        return;
    if (rt->close_cb)
        rt->close_cb(rt->close_arg);
    runtime__history_free(&rt->history);
    free(rt->program);
    free(rt->cwd);
    free(rt);
}

static void runtime__maybe_finish_close(struct runtime *rt)
{
    if (!rt->closing || rt->finishing || rt->cur != NULL || rt->procs != NULL)
        return;
    rt->finishing = 1;
    uv_close((uv_handle_t *)&rt->call_timer, runtime__on_timer_closed);
    uv_close((uv_handle_t *)&rt->spin, runtime__on_timer_closed);
    uv_close((uv_handle_t *)&rt->idle_timer, runtime__on_timer_closed);
    uv_close((uv_handle_t *)&rt->kick_timer, runtime__on_timer_closed);
}

void runtime_close(struct runtime *rt, runtime_close_cb cb, void *arg)
{
    struct runtime__proc *p = rt->proc;

    if (rt->closing)
        return;
    rt->closing = 1;
    rt->close_cb = cb;
    rt->close_arg = arg;
    uv_timer_stop(&rt->idle_timer);
    uv_timer_stop(&rt->kick_timer);
    if (rt->waiting) {
        exec_env_wait_cancel(rt->env, &rt->env_wait);
        rt->waiting = 0;
    }
    while (rt->head != NULL) {
        struct runtime__call *c = rt->head;
        rt->head = c->next;
        runtime__complete(rt, c, RUNTIME_CANCELLED, -1);
    }
    rt->tail = NULL;
    if (p != NULL) {
        rt->proc = NULL;
        if (rt->cur != NULL && rt->cur->proc == p) {
            /* Busy: what it was doing is being thrown away, so do not wait for it. */
            rt->cur->cancelled = 1;
            runtime__proc_kill(p, "closed");
        } else {
            runtime__proc_stop(p, "closed");
        }
    }
    runtime__maybe_finish_close(rt);
}
