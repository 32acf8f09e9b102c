/*
 * session_rt — a session's runtimes (one persistent interpreter per language, started lazily in
 * the session's execution environment) and the one entry for calls on them, session_rt_start,
 * shared by the HTTP API (session_http.c) and the MCP tool (src/mcp). Every call that changes
 * something is recorded as a transcript event, and answered once that event has committed
 * (session_write.c: a wait at commit, which survives kill -9; see doc/ARCHITECTURE.md for why not
 * the fsync). Answers carry 0 or a negative errno with an error code (core/errcode.h), never an
 * HTTP status: the HTTP file makes the status of the code.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "core/errcode.h"
#include "runtime/runtime.h"
#include "session/session_int.h"

#define SESSION_EVENT_EXCERPT 1024 /* bytes of output kept in a transcript event */

/* ================= runtimes ================= */

/* The first KiB of some output, for transcript events (a cut character becomes U+FFFD). */
static json_t *session__excerpt(const char *p, size_t len)
{
    return agent_json_text(p, len < SESSION_EVENT_EXCERPT ? len : SESSION_EVENT_EXCERPT);
}

static void session__on_runtime_event(struct runtime *rt, const struct runtime_event *ev, void *arg)
{
    struct session *se = arg;
    const char *lang = runtime_lang_name(runtime_lang(rt));
    if (ev->kind == RUNTIME_EVENT_STATUS) {
        session__event(se, json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "type", "status", "scope", "runtime",
                                     "lang", lang, "status", runtime_status_name(ev->status), "reason",
                                     ev->reason ? ev->reason : "", "pid", ev->pid));
        return;
    }
    /* RUNTIME_EVENT_EXEC: session__exec_done records the call, so its answer can wait for it. */
}

/* The runtime for lang, created on first use in the session's workspace and environment. */
static int session__runtime(struct sessions *s, struct session *se, enum runtime_lang lang,
                            struct runtime **out)
{
    if (se->rt[lang]) {
        *out = se->rt[lang];
        return 0;
    }
    /* Runtimes run in the session's execution environment, as its agent does (session_run.c):
     * its workspace, variables, limits, cgroups and sandbox. */
    struct exec_env *env = session__env(se);
    if (env == NULL)
        return -EAGAIN;
    struct runtime_options o = {
        .lang = lang,
        .env = env,
        .idle_timeout_ms = s->cfg.runtime_idle_ms,
        .output_limit = s->cfg.runtime_output_limit,
        .spin_us = s->cfg.runtime_spin_us,
        .event_cb = session__on_runtime_event,
        .event_arg = se,
    };
    int rc = runtime_new(s->loop, &o, &se->rt[lang]);
    *out = se->rt[lang];
    return rc;
}

/* ================= runtime calls ================= */

/*
 * A call lives from session_rt_start until its answer: through a repair it may wait for (a
 * degraded session stores its losses before running code it could not record), the runtime's work,
 * and the commit of the transcript event that records it. `se` is valid throughout: a session is
 * freed only after its runtimes closed, and a repair that outlives it answers -ENOENT without it.
 */
struct session_rt_call {
    struct sessions *s;
    struct session *se;
    session_rt_cb cb;
    void *arg;
    int cancelled;
    int starting; /* inside session_rt_start: finishing marks `done` instead of freeing */
    int done;
    struct session_rt_request req;
    char *code;       /* req.code, copied when the call has to wait for a repair */
    int rc;           /* the answer, sent once its event has committed: 0 or -errno, */
    enum errcode err; /* with its code when rc != 0 */
    json_t *answer;
    struct session_perm *perm; /* the permission request it waits for, or NULL */
};

int session_rt_action_parse(const char *name, enum session_rt_action *out)
{
    static const char *const names[] = {"exec",    "eval",      "state", "reset",
                                        "history", "interrupt", "spawn", "children"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(names); i++) {
        if (!strcmp(name, names[i])) {
            *out = (enum session_rt_action)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* Answers (body taken; rc 0, or -errno with the code err) unless cancelled, and frees the call (or
 * lets session_rt_start do it). */
static void session__rt_finish(struct session_rt_call *c, int rc, enum errcode err, json_t *body)
{
    assert(!c->done); /* answered exactly once */
    if (!c->cancelled) {
        char *text = json_dumps(body, JSON_COMPACT);
        struct session_rt_answer a = {.rc = rc, .err = err, .json = text ? text : "{}"};
        c->cb(c->arg, &a);
        free(text);
    }
    json_decref(body);
    json_decref(c->answer);
    c->answer = NULL;
    if (c->starting) {
        c->done = 1;
        return;
    }
    free(c->code);
    free(c);
}

static void session__rt_ok(struct session_rt_call *c, json_t *body) { session__rt_finish(c, 0, 0, body); }

/* Fails the call with rc and its code; msg is the error's sentence. */
static void session__rt_fail(struct session_rt_call *c, int rc, enum errcode code, const char *msg)
{
    session__rt_finish(c, rc, code,
                       json_pack("{s:{s:s, s:s}}", "error", "code", errcode_name(code), "message", msg));
}

/* A write the call implied failed (rc): fails it with `why`, added to what it produced (body, taken;
 * NULL when it did not run). */
static void session__rt_unstored(struct session_rt_call *c, int rc, const char *why, json_t *body)
{
    enum errcode code = session__errcode(rc, ERR_STORAGE_ERROR);
    char *msg = xasprintf("%s: %s", why, strerror(-rc));
    json_t *err = json_pack("{s:s, s:s}", "code", errcode_name(code), "message", msg);
    free(msg);
    if (body == NULL)
        body = json_object();
    json_object_set_new(body, "error", err);
    session__rt_finish(c, rc, code, body);
}

/* The transcript event of the call committed (or not): now the answer may go. */
static void session__rt_recorded(void *arg, int rc)
{
    struct session_rt_call *c = arg;
    json_t *body = c->answer;
    c->answer = NULL;
    if (rc != 0)
        return session__rt_unstored(c, rc, "the call ran, but its transcript record was not stored", body);
    session__rt_finish(c, c->rc, c->err, body);
}

/* Writes the call's transcript event (taken) and answers (rc, err, answer taken) once it has
 * committed. */
static void session__rt_record(struct session_rt_call *c, json_t *ev, int rc, enum errcode err,
                               json_t *answer)
{
    c->rc = rc;
    c->err = err;
    c->answer = answer;
    struct session_wait *w = session__wait_begin(c->s, 1);
    session__event(c->se, ev);
    session__wait_end(w, session__rt_recorded, c);
}

/* JSON strings hold text: output that is not UTF-8 comes out with U+FFFD in "stdout"/"stderr", so
 * its exact bytes are added as base64 under `key` (nothing is added for text). */
static void session__bytes_b64(json_t *body, const char *key, const char *p, size_t len)
{
    size_t i = 0, n;
    while (i < len && (n = utf8_seq_len(p + i, len - i)) != 0)
        i += n;
    if (i == len)
        return;
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = xmalloc(cap);
    sodium_bin2base64(b64, cap, (const unsigned char *)p, len, sodium_base64_VARIANT_ORIGINAL);
    json_object_set_new(body, key, json_string(b64));
    free(b64);
}

/* The runtime answered an exec: its `runtime` event goes to the transcript (here rather than from
 * the runtime's RUNTIME_EVENT_EXEC, so that the answer can wait for that very write). */
static void session__exec_done(struct runtime *rt, const struct runtime_result *r, void *arg)
{
    struct session_rt_call *c = arg;
    json_t *ev = json_pack(
        "{s:s, s:s, s:s, s:o, s:i, s:s, s:b, s:I, s:o, s:I, s:o, s:I, s:b}", "type", "runtime", "action",
        "exec", "lang", runtime_lang_name(runtime_lang(rt)), "code", session__excerpt(r->code, r->code_len),
        "status", r->status, "outcome", runtime_outcome_name(r->outcome), "timed_out", r->timed_out,
        "duration_us", (json_int_t)r->duration_us, "stdout", session__excerpt(r->out, r->out_len),
        "stdout_bytes", (json_int_t)r->out_total, "stderr", session__excerpt(r->err, r->err_len),
        "stderr_bytes", (json_int_t)r->err_total, "truncated", r->truncated);
    json_t *body = json_pack(
        "{s:o, s:o, s:i, s:I, s:b, s:s, s:b, s:I, s:I, s:I}", "stdout", agent_json_text(r->out, r->out_len),
        "stderr", agent_json_text(r->err, r->err_len), "status", r->status, "duration_us",
        (json_int_t)r->duration_us, "truncated", r->truncated, "outcome", runtime_outcome_name(r->outcome),
        "timed_out", r->timed_out, "stdout_bytes", (json_int_t)r->out_total, "stderr_bytes",
        (json_int_t)r->err_total, "seq", (json_int_t)r->seq);
    session__bytes_b64(body, "stdout_base64", r->out, r->out_len);
    session__bytes_b64(body, "stderr_base64", r->err, r->err_len);
    if (r->outcome == RUNTIME_FAILED)
        json_object_set_new(body, "error",
                            json_pack("{s:s, s:s}", "code", errcode_name(ERR_RUNTIME_FAILED), "message",
                                      strerror(r->error < 0 ? -r->error : EIO)));
    int failed = r->outcome == RUNTIME_FAILED;
    session__rt_record(c, ev, failed ? (r->error < 0 ? r->error : -EIO) : 0, ERR_RUNTIME_FAILED, body);
}

static void session__state_done(struct runtime *rt, int rc, const char *json, void *arg)
{
    struct session_rt_call *c = arg;
    json_t *body = rc == 0 ? json_loads(json, 0, NULL) : NULL;
    if (body == NULL)
        return session__rt_fail(c, rc ? rc : -EIO, ERR_RUNTIME_FAILED, strerror(rc ? -rc : EIO));
    session__rt_ok(c, body);
}

/* A child with the same agent configuration as its parent, started with the given text; answered
 * once its records are stored (on failure the child is discarded). */
static void session__rt_spawned(void *arg, int rc)
{
    struct session_rt_call *c = arg;
    struct session *child =
        map_get(&c->s->by_id, json_string_value(json_object_get(c->answer, "child")), SESSION_ID_LEN);
    if (rc != 0) {
        if (child)
            session__discard(child);
        return session__rt_unstored(c, rc, "the child session could not be stored", NULL);
    }
    json_t *answer = c->answer;
    c->answer = NULL;
    if (child)
        json_object_set_new(answer, "session", session__public(child));
    session__rt_ok(c, answer);
}

static void session__rt_spawn(struct session_rt_call *c)
{
    struct session *se = c->se;
    json_t *body = session__opts_json(&se->opts, 0);
    json_object_set_new(body, "agent", json_string(se->agent));
    json_object_set_new(body, "tags", json_pack("[s]", "child"));
    if (c->req.code)
        json_object_set_new(body, "text", json_stringn(c->req.code, c->req.code_len));
    const char *why = NULL;
    struct session *child = NULL;
    struct session_wait *w = session__wait_begin(c->s, 0);
    int rc = session__spawn_child(c->s, se, body, &child, &why);
    json_decref(body);
    if (rc == 0)
        c->answer = json_pack("{s:s}", "child", child->id);
    session__wait_end(w, rc == 0 ? session__rt_spawned : NULL, c);
    if (rc != 0)
        session__rt_fail(c, rc, session__errcode(rc, ERR_WORKSPACE_FAILED), why);
}

/* The call proper, once the session has nothing left to repair. */
static void session__rt_run(struct session_rt_call *c)
{
    struct session *se = c->se;
    const struct session_rt_request *req = &c->req;
    if (req->action == SESSION_RT_SPAWN)
        return session__rt_spawn(c);
    enum runtime_lang lang = req->action == SESSION_RT_EVAL ? RUNTIME_PYTHON : RUNTIME_BASH;
    if (req->lang)
        (void)!runtime_lang_parse(req->lang, &lang); /* checked by session_rt_start */
    if ((req->action == SESSION_RT_HISTORY || req->action == SESSION_RT_RESET ||
         req->action == SESSION_RT_INTERRUPT) &&
        se->rt[lang] == NULL) {
        /* Nothing ran yet: no need to start an interpreter to say so. */
        return session__rt_ok(c, req->action == SESSION_RT_HISTORY ? json_pack("{s:[]}", "calls")
                                                                   : json_pack("{s:b}", "ok", 1));
    }
    struct runtime *rt;
    int rc = session__runtime(c->s, se, lang, &rt);
    if (rc != 0)
        return session__rt_fail(c, rc, ERR_RUNTIME_FAILED, strerror(-rc));
    switch (req->action) {
    case SESSION_RT_HISTORY: {
        char *h = runtime_history_json(rt, req->limit ? req->limit : RUNTIME_DEFAULT_HISTORY);
        json_t *calls = json_loads(h, 0, NULL);
        free(h);
        return session__rt_ok(c, json_pack("{s:o}", "calls", calls ? calls : json_array()));
    }
    case SESSION_RT_RESET:
    case SESSION_RT_INTERRUPT: {
        int reset = req->action == SESSION_RT_RESET;
        rc = reset ? runtime_reset(rt) : runtime_interrupt(rt);
        json_t *ev = json_pack("{s:s, s:s, s:s, s:i}", "type", "runtime", "action",
                               reset ? "reset" : "interrupt", "lang", runtime_lang_name(lang), "rc", rc);
        return session__rt_record(c, ev, 0, 0, json_pack("{s:b, s:b}", "ok", 1, "was_running", rc == 0));
    }
    case SESSION_RT_STATE: rc = runtime_state(rt, session__state_done, c); break;
    default:
        rc = runtime_exec(rt, req->code ? req->code : "", req->code_len, req->timeout_ms, session__exec_done,
                          c);
        break;
    }
    if (rc != 0)
        session__rt_fail(c, rc, ERR_RUNTIME_FAILED, strerror(-rc));
}

static void session__rt_repaired(void *arg, int rc)
{
    struct session_rt_call *c = arg;
    if (rc == -ENOENT)
        return session__rt_fail(c, rc, ERR_NOT_FOUND, "no such session");
    if (rc != 0)
        return session__rt_unstored(
            c, rc,
            "the call did not run: the session's earlier events are not stored yet and still cannot be",
            NULL);
    session__rt_run(c);
}

/* Copies the caller's code, which is borrowed for session_rt_start only, when the call waits. */
static void session__rt_keep_code(struct session_rt_call *c)
{
    if (c->req.code == NULL || c->code)
        return;
    c->code = xmalloc(c->req.code_len + 1);
    memcpy(c->code, c->req.code, c->req.code_len);
    c->code[c->req.code_len] = '\0';
    c->req.code = c->code;
}

/* The call as it goes: repaired first if the session is degraded, then run. */
static void session__rt_go(struct session_rt_call *c)
{
    int rc = session__after_repair(c->se, session__rt_repaired, c);
    if (rc == 1)
        session__rt_keep_code(c);
    if (rc < 0)
        session__rt_repaired(c, rc);
    else if (rc == 0)
        session__rt_run(c);
}

/* The session's policy decided the agent's call. */
static void session__rt_permitted(void *arg, const struct session_decision *d)
{
    struct session_rt_call *c = arg;
    c->perm = NULL;
    if (!d->allow) {
        char *msg = xasprintf("%s (%s)", d->message ? d->message : "denied", d->by);
        session__rt_fail(c, -EACCES, ERR_PERMISSION_DENIED, msg);
        free(msg);
        return;
    }
    session__rt_go(c);
}

/* An agent's call that runs or changes something asks the session's policy first, as the agent's
 * own tools do: the request and its answer are in the transcript like theirs. */
static void session__rt_ask(struct session_rt_call *c)
{
    static const char *const names[] = {"exec",    "eval",      "state", "reset",
                                        "history", "interrupt", "spawn", "children"};
    const struct session_rt_request *r = &c->req;
    json_t *input = json_pack("{s:s}", "action", names[r->action]);
    if (r->lang)
        json_object_set_new(input, "lang", json_string(r->lang));
    if (r->code)
        json_object_set_new(input, r->action == SESSION_RT_SPAWN ? "text" : "code",
                            agent_json_text(r->code, r->code_len));
    const char *tool = r->action == SESSION_RT_SPAWN ? "mcp__rt__session" : "mcp__rt__runtime";
    session__rt_keep_code(c);
    c->perm = session__perm_ask(c->se, session__active_run_id(c->se),
                                json_pack("{s:s, s:o}", "tool", tool, "input", input), NULL,
                                session__rt_permitted, c);
}

struct session_rt_call *session_rt_start(struct sessions *s, const char *session_id,
                                         const struct session_rt_request *req, session_rt_cb cb, void *arg)
{
    struct session *se = map_get(&s->by_id, session_id, strlen(session_id));
    enum runtime_lang lang;
    struct session_rt_call *c = xcalloc(1, sizeof *c);
    c->s = s;
    c->se = se;
    c->cb = cb;
    c->arg = arg;
    c->req = *req;
    c->starting = 1;
    if (se == NULL || se->deleted) {
        session__rt_fail(c, -ENOENT, ERR_NOT_FOUND, "no such session");
    } else if (req->action == SESSION_RT_CHILDREN) {
        session__rt_ok(c, session__children(s, se));
    } else if (req->lang && req->action != SESSION_RT_SPAWN && runtime_lang_parse(req->lang, &lang) != 0) {
        session__rt_fail(c, -EINVAL, ERR_BAD_REQUEST, "lang must be bash, python or node");
    } else if (req->action == SESSION_RT_HISTORY || req->action == SESSION_RT_STATE) {
        session__rt_run(c); /* they write nothing */
    } else if (req->from_agent && req->action != SESSION_RT_INTERRUPT && session__policy_asks(se)) {
        session__rt_ask(c);
    } else {
        session__rt_go(c);
    }
    c->starting = 0;
    if (c->done) {
        free(c->code);
        free(c);
        return NULL;
    }
    return c;
}

void session_rt_cancel(struct session_rt_call *call)
{
    if (call == NULL)
        return;
    call->cancelled = 1;
    if (call->perm) { /* nothing ran: the request expires, and the call is over */
        struct session_perm *p = call->perm;
        call->perm = NULL;
        session__perm_cancel(p);
        free(call->code);
        free(call);
    }
}
