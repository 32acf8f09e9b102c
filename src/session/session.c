/*
 * session — the registry of sessions and their runtimes. See session.h.
 *
 * Ownership: the registry owns every struct session; a session owns its runtimes (closed
 * asynchronously: the session is freed when the last runtime_close callback has run) and its
 * runtime calls in flight (struct session_rt_call, freed when the runtime answers; a cancelled call
 * only loses its callback). Durable writes are fire-and-forget appends to JSON streams: they commit
 * with the loop turn's batch like every other append.
 */
#include "session/session.h"
#include "core/errcode.h"
#include "core/map.h"
#include "agent/agent.h"
#include "runtime/runtime.h"
#include "exec/exec.h"
#include "session/session_int.h"
#include "stream/stream.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SESSION_EVENT_EXCERPT 1024 /* bytes of output kept in a transcript event */

/* ================= the session object ================= */

/* The public view: what GET answers and the `sessions` feed carries (no environment values). */
json_t *session__public(const struct session *se)
{
    json_t *env_keys = json_array();
    const char *k;
    json_t *v;
    json_object_foreach (se->env, k, v)
        json_array_append_new(env_keys, json_string(k));
    char t[128], st[128], in[128];
    snprintf(t, sizeof t, "/v1/stream/sessions/%s/transcript", se->id);
    snprintf(st, sizeof st, "/v1/stream/sessions/%s/state", se->id);
    snprintf(in, sizeof in, "/v1/stream/sessions/%s/inbox", se->id);
    json_t *rts = json_object();
    for (int i = 0; i < SESSION_NLANG; i++) {
        if (se->rt[i] == NULL)
            continue;
        json_object_set_new(
            rts, runtime_lang_name((enum runtime_lang)i),
            json_pack("{s:s, s:i, s:I}", "status", runtime_status_name(runtime_status(se->rt[i])), "pid",
                      runtime_pgid(se->rt[i]), "calls", (json_int_t)runtime_history_count(se->rt[i])));
    }
    json_t *pub = json_pack("{s:s, s:s, s:s, s:O, s:o, s:I, s:s, s:{s:s, s:s, s:s}, s:o}", "id", se->id,
                            "agent", se->agent, "workspace", se->workspace, "tags", se->tags, "env_keys",
                            env_keys, "created_at", (json_int_t)se->created_ms, "status",
                            se->deleted  ? "deleted"
                            : se->active ? "running"
                                         : "idle",
                            "streams", "transcript", t, "state", st, "inbox", in, "runtimes", rts);
    json_object_set_new(pub, "native_session",
                        se->native_session ? json_string(se->native_session) : json_null());
    json_object_set_new(pub, "parent", se->parent ? json_string(se->parent) : json_null());
    json_object_set_new(pub, "active_run",
                        se->active ? json_string(session__active_run_id(se)) : json_null());
    json_t *opts = session__opts_json(&se->opts, 1);
    if (json_object_size(opts))
        json_object_set(pub, "agent_options", opts);
    json_decref(opts);
    session__activity(se, pub);
    return pub;
}

/* The durable record (internal stream): everything needed to rebuild the session after a restart. */
static json_t *session__record(const struct session *se)
{
    json_t *rec =
        json_pack("{s:s, s:s, s:s, s:O, s:O, s:I, s:b, s:O}", "id", se->id, "agent", se->agent, "workspace",
                  se->workspace, "tags", se->tags, "env", se->env, "created_at", (json_int_t)se->created_ms,
                  "owns_workspace", se->owns_workspace, "shares", se->shares);
    json_object_set_new(rec, "agent_opts", session__opts_json(&se->opts, 0));
    if (se->native_session)
        json_object_set_new(rec, "native_session", json_string(se->native_session));
    if (se->fork_pending)
        json_object_set_new(rec, "fork_pending", json_true());
    if (se->parent)
        json_object_set_new(rec, "parent", json_string(se->parent));
    return rec;
}

/* Records a change durably (internal record) and publicly (the `sessions` feed, State Protocol). */
void session__publish(struct sessions *s, struct session *se, const char *operation)
{
    json_t *rec = json_pack("{s:s, s:s, s:o, s:{s:s}}", "type", "session", "key", se->id, "value",
                            session__record(se), "headers", "operation", operation);
    session__write(s, se, SESSION_W_RECORD, NULL, SESSION_REGISTRY_STREAM, rec);
    json_t *pub = json_pack("{s:s, s:s, s:o, s:{s:s}}", "type", "session", "key", se->id, "value",
                            session__public(se), "headers", "operation", operation);
    session__write(s, se, SESSION_W_RECORD, NULL, SESSION_FEED_STREAM, pub);
}

static struct session *session__from_record(json_t *rec)
{
    const char *id = json_string_value(json_object_get(rec, "id"));
    const char *agent = json_string_value(json_object_get(rec, "agent"));
    const char *ws = json_string_value(json_object_get(rec, "workspace"));
    if (id == NULL || agent == NULL || ws == NULL || strlen(id) >= sizeof((struct session *)0)->id)
        return NULL;
    struct session *se = xcalloc(1, sizeof *se);
    snprintf(se->id, sizeof se->id, "%s", id);
    se->agent = xstrdup(agent);
    se->workspace = xstrdup(ws);
    se->tags = json_incref(json_is_array(json_object_get(rec, "tags")) ? json_object_get(rec, "tags") : NULL);
    if (se->tags == NULL)
        se->tags = json_array();
    se->env = json_is_object(json_object_get(rec, "env")) ? json_incref(json_object_get(rec, "env"))
                                                          : json_object();
    se->created_ms = json_integer_value(json_object_get(rec, "created_at"));
    se->owns_workspace = json_is_true(json_object_get(rec, "owns_workspace"));
    se->shares = json_is_array(json_object_get(rec, "shares")) ? json_incref(json_object_get(rec, "shares"))
                                                               : json_array();
    se->adapter = strcmp(agent, "none") ? agent_adapter_find(agent) : NULL;
    session__opts_from_json(&se->opts, json_object_get(rec, "agent_opts"), se->adapter);
    const char *native = json_string_value(json_object_get(rec, "native_session"));
    se->native_session = native ? xstrdup(native) : NULL;
    se->fork_pending = json_is_true(json_object_get(rec, "fork_pending"));
    const char *parent = json_string_value(json_object_get(rec, "parent"));
    se->parent = parent ? xstrdup(parent) : NULL;
    return se;
}

/* ================= removing what agentd made for a session ================= */

struct session__purge {
    uv_work_t work;
    char *paths[2]; /* NULL entries are skipped */
};

static void session__purge_work(uv_work_t *w)
{
    struct session__purge *p = w->data;
    for (size_t i = 0; i < CORE_ARRAY_LEN(p->paths); i++) {
        int rc = p->paths[i] ? exec_tree_remove(p->paths[i]) : 0;
        if (rc != 0)
            log_warn("session: %s could not be removed entirely: %s", p->paths[i], strerror(-rc));
    }
}

static void session__purge_done(uv_work_t *w, int status)
{
    struct session__purge *p = w->data;
    for (size_t i = 0; i < CORE_ARRAY_LEN(p->paths); i++)
        free(p->paths[i]);
    free(p);
}

/* DATA/<kind>/<id>: where agentd puts a session's workspace or its agent's home. */
static char *session__own_dir(const struct sessions *s, const char *kind, const char *id)
{
    return xasprintf("%s/%s/%s", s->data_dir, kind, id);
}

/* Removes, in the thread pool, the directories agentd made for session `id`: its agent home, and
 * its workspace when agentd created it (workspace: its path, or NULL for one the client named). A
 * path is removed only where agentd puts such directories, whatever a record says. */
void session__purge_dirs(struct sessions *s, const char *id, const char *workspace)
{
    if (s->freeing) /* stopping: what is left goes at the next start (session__sweep) */
        return;
    struct session__purge *p = xcalloc(1, sizeof *p);
    p->paths[0] = session__own_dir(s, "homes", id);
    if (workspace) {
        char *mine = session__own_dir(s, "workspaces", id);
        if (!strcmp(mine, workspace))
            p->paths[1] = mine;
        else
            free(mine);
    }
    p->work.data = p;
    if (uv_queue_work(s->loop, &p->work, session__purge_work, session__purge_done) != 0)
        session__purge_done(&p->work, 0);
}

struct session__in_use {
    const char *path;
    int found;
};

static void session__check_workspace(const char *key, void *value, void *arg)
{
    struct session__in_use *u = arg;
    u->found |= !strcmp(((struct session *)value)->workspace, u->path);
}

static int session__workspace_in_use(struct sessions *s, const char *path)
{
    struct session__in_use u = {path, 0};
    map_each(&s->by_id, session__check_workspace, &u);
    return u.found;
}

/* Directories of sessions that are no more (deleted while agentd stopped, or never stored): the
 * ids under DATA/workspaces and DATA/homes that no session has. */
static void session__sweep(struct sessions *s)
{
    static const char *const kinds[] = {"workspaces", "homes"};
    for (size_t k = 0; k < CORE_ARRAY_LEN(kinds); k++) {
        char *dir = xasprintf("%s/%s", s->data_dir, kinds[k]);
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
            size_t n = strlen(e->d_name);
            if (n != SESSION_ID_LEN || strspn(e->d_name, "0123456789abcdef") != n ||
                map_get(&s->by_id, e->d_name, n) != NULL)
                continue;
            log_info("session: removing the %s of %s, which no session has", kinds[k], e->d_name);
            char *ws = session__own_dir(s, "workspaces", e->d_name);
            if (k == 0 && !session__workspace_in_use(s, ws)) /* not some session's named workspace */
                session__purge_dirs(s, e->d_name, ws);
            else if (k == 1)
                session__purge_dirs(s, e->d_name, NULL);
            free(ws);
        }
        if (d)
            closedir(d);
        free(dir);
    }
}

enum errcode session__errcode(int rc, enum errcode otherwise)
{
    switch (rc) {
    case -EINVAL: return ERR_BAD_REQUEST;
    case -ENOENT: return ERR_NOT_FOUND;
    case -EBUSY: return ERR_CONFLICT;
    case -ENOSPC:
    case -EFBIG:
    case -EDQUOT: return ERR_STORAGE_FULL;
    default: return otherwise;
    }
}

int session__strings(const json_t *j)
{
    size_t i;
    json_t *v;
    if (!json_is_array(j))
        return 0;
    json_array_foreach (j, i, v)
        if (!json_is_string(v))
            return 0;
    return 1;
}

struct session *session__alloc(struct sessions *s, const char *agent)
{
    struct session *se = xcalloc(1, sizeof *se);
    session__new_id(se->id);
    se->agent = xstrdup(agent);
    se->adapter = strcmp(agent, "none") ? agent_adapter_find(agent) : NULL;
    se->opts.mcp = -1;
    se->created_ms = clock_wall_ms();
    (void)s;
    return se;
}

void session__drop(struct session *se)
{
    assert(se->registry == NULL && se->rt[0] == NULL && se->xenv == NULL);
    free(se->agent);
    free(se->workspace);
    json_decref(se->tags);
    json_decref(se->env);
    json_decref(se->shares);
    free(se->parent);
    session__runs_free(se);
    for (char **p = se->envp; p && *p; p++)
        free(*p);
    free(se->envp);
    json_decref(se->lost.runs);
    free(se);
}

static void session__free(struct session *se)
{
    struct sessions *s = se->registry;
    if (se->purge) /* its processes are gone: the runtimes and environment closed */
        session__purge_dirs(s, se->id, se->owns_workspace ? se->workspace : NULL);
    se->registry = NULL;
    session__drop(se);
    session__registry_unref(s);
}

void session__registry_unref(struct sessions *s)
{
    if (--s->live == 0 && s->freeing) {
        free(s->data_dir);
        free(s->base_url);
        free(s->self_exe);
        free(s);
    }
}

/* ================= runtimes ================= */

static void session__runtime_closed(void *arg)
{
    struct session *se = arg;
    if (--se->closing == 0 && se->deleted)
        session__free(se);
}

void session__env_released(struct session *se) { session__runtime_closed(se); }

/* Closes every runtime of se; frees se afterwards when it is deleted. */
void session__close_runtimes(struct session *se)
{
    se->closing++; /* held until the loop below is done, so a synchronous close cannot free se */
    session__stop_runs(se);
    for (int i = 0; i < SESSION_NLANG; i++) {
        if (se->rt[i]) {
            struct runtime *rt = se->rt[i];
            se->rt[i] = NULL;
            se->closing++;
            runtime_close(rt, session__runtime_closed, se);
        }
    }
    session__runtime_closed(se);
}

/* Output as JSON text: jansson needs valid UTF-8; bytes that are not become U+FFFD. */
json_t *session__text(const char *p, size_t len)
{
    json_t *j = json_stringn(p, len);
    if (j)
        return j;
    struct buf b = {0};
    buf_append_utf8(&b, p, len);
    j = json_stringn(b.p ? b.p : "", b.len);
    buf_free(&b);
    return j;
}

/* The first KiB of some output, for transcript events (a cut character becomes U+FFFD). */
static json_t *session__excerpt(const char *p, size_t len)
{
    return session__text(p, len < SESSION_EVENT_EXCERPT ? len : SESSION_EVENT_EXCERPT);
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
    char *code; /* req.code, copied when the call has to wait for a repair */
    int status; /* the answer, sent once its event has committed */
    json_t *answer;
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

/* Answers (body taken) unless cancelled, and frees the call (or lets session_rt_start do it). */
static void session__rt_finish(struct session_rt_call *c, int status, json_t *body)
{
    if (!c->cancelled) {
        char *text = json_dumps(body, JSON_COMPACT);
        c->cb(c->arg, status, text ? text : "{}");
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

static void session__rt_fail(struct session_rt_call *c, enum errcode code, const char *msg)
{
    session__rt_finish(c, errcode_status(code),
                       json_pack("{s:{s:s, s:s}}", "error", "code", errcode_name(code), "message", msg));
}

/* A write the answer implied failed (rc): the error `why`, added to what the call produced if it ran. */
static json_t *session__storage_error(json_t *body, int rc, const char *why, int *status)
{
    enum errcode code = session_storage_full(rc) ? ERR_STORAGE_FULL : ERR_STORAGE_ERROR;
    *status = errcode_status(code);
    char *msg = xasprintf("%s: %s", why, strerror(-rc));
    json_t *err = json_pack("{s:s, s:s}", "code", errcode_name(code), "message", msg);
    free(msg);
    if (body == NULL)
        body = json_object();
    json_object_set_new(body, "error", err);
    return body;
}

/* The transcript event of the call committed (or not): now the answer may go. */
static void session__rt_recorded(void *arg, int rc)
{
    struct session_rt_call *c = arg;
    json_t *body = c->answer;
    int status = c->status;
    c->answer = NULL;
    if (rc != 0)
        body = session__storage_error(body, rc, "the call ran, but its transcript record was not stored",
                                      &status);
    session__rt_finish(c, status, body);
}

/* Writes the call's transcript event (taken) and answers once it has committed. */
static void session__rt_record(struct session_rt_call *c, json_t *ev, int status, json_t *answer)
{
    c->status = status;
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
    json_t *body = json_pack("{s:o, s:o, s:i, s:I, s:b, s:s, s:b, s:I, s:I, s:I}", "stdout",
                             session__text(r->out, r->out_len), "stderr", session__text(r->err, r->err_len),
                             "status", r->status, "duration_us", (json_int_t)r->duration_us, "truncated",
                             r->truncated, "outcome", runtime_outcome_name(r->outcome), "timed_out",
                             r->timed_out, "stdout_bytes", (json_int_t)r->out_total, "stderr_bytes",
                             (json_int_t)r->err_total, "seq", (json_int_t)r->seq);
    session__bytes_b64(body, "stdout_base64", r->out, r->out_len);
    session__bytes_b64(body, "stderr_base64", r->err, r->err_len);
    if (r->outcome == RUNTIME_FAILED)
        json_object_set_new(body, "error",
                            json_pack("{s:s, s:s}", "code", errcode_name(ERR_RUNTIME_FAILED), "message",
                                      strerror(r->error < 0 ? -r->error : EIO)));
    session__rt_record(c, ev, r->outcome == RUNTIME_FAILED ? errcode_status(ERR_RUNTIME_FAILED) : 200, body);
}

static void session__state_done(struct runtime *rt, int rc, const char *json, void *arg)
{
    struct session_rt_call *c = arg;
    json_t *body = rc == 0 ? json_loads(json, 0, NULL) : NULL;
    if (body == NULL)
        return session__rt_fail(c, ERR_RUNTIME_FAILED, strerror(rc ? -rc : EIO));
    session__rt_finish(c, 200, body);
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
        int status;
        json_t *body = session__storage_error(NULL, rc, "the child session could not be stored", &status);
        return session__rt_finish(c, status, body);
    }
    json_t *answer = c->answer;
    c->answer = NULL;
    if (child)
        json_object_set_new(answer, "session", session__public(child));
    session__rt_finish(c, 200, answer);
}

static void session__rt_spawn(struct session_rt_call *c)
{
    struct session *se = c->se;
    json_t *body = session__opts_json(&se->opts, 0);
    json_object_set_new(body, "agent", json_string(se->agent));
    json_object_set_new(body, "tags", json_pack("[s]", "child"));
    if (c->req.code)
        json_object_set_new(body, "text", json_stringn(c->req.code, c->req.code_len));
    int status = 201;
    const char *why = NULL;
    struct session_wait *w = session__wait_begin(c->s, 0);
    struct session *child = session__spawn_child_of(c->s, se, body, &status, &why);
    json_decref(body);
    if (child)
        c->answer = json_pack("{s:s}", "child", child->id);
    session__wait_end(w, child ? session__rt_spawned : NULL, c);
    if (child == NULL)
        session__rt_fail(c, status == 500 ? ERR_WORKSPACE_FAILED : ERR_BAD_REQUEST, why);
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
        return session__rt_finish(c, 200,
                                  req->action == SESSION_RT_HISTORY ? json_pack("{s:[]}", "calls")
                                                                    : json_pack("{s:b}", "ok", 1));
    }
    struct runtime *rt;
    int rc = session__runtime(c->s, se, lang, &rt);
    if (rc != 0)
        return session__rt_fail(c, ERR_RUNTIME_FAILED, strerror(-rc));
    switch (req->action) {
    case SESSION_RT_HISTORY: {
        char *h = runtime_history_json(rt, req->limit ? req->limit : RUNTIME_DEFAULT_HISTORY);
        json_t *calls = json_loads(h, 0, NULL);
        free(h);
        return session__rt_finish(c, 200, json_pack("{s:o}", "calls", calls ? calls : json_array()));
    }
    case SESSION_RT_RESET:
    case SESSION_RT_INTERRUPT: {
        int reset = req->action == SESSION_RT_RESET;
        rc = reset ? runtime_reset(rt) : runtime_interrupt(rt);
        json_t *ev = json_pack("{s:s, s:s, s:s, s:i}", "type", "runtime", "action",
                               reset ? "reset" : "interrupt", "lang", runtime_lang_name(lang), "rc", rc);
        return session__rt_record(c, ev, 200, json_pack("{s:b, s:b}", "ok", 1, "was_running", rc == 0));
    }
    case SESSION_RT_STATE: rc = runtime_state(rt, session__state_done, c); break;
    default:
        rc = runtime_exec(rt, req->code ? req->code : "", req->code_len, req->timeout_ms, session__exec_done,
                          c);
        break;
    }
    if (rc != 0)
        session__rt_fail(c, ERR_RUNTIME_FAILED, strerror(-rc));
}

static void session__rt_repaired(void *arg, int rc)
{
    struct session_rt_call *c = arg;
    if (rc == -ENOENT)
        return session__rt_fail(c, ERR_NOT_FOUND, "no such session");
    if (rc != 0) {
        int status;
        json_t *body = session__storage_error(
            NULL, rc,
            "the call did not run: the session's earlier events are not stored yet and still cannot be",
            &status);
        return session__rt_finish(c, status, body);
    }
    session__rt_run(c);
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
        session__rt_fail(c, ERR_NOT_FOUND, "no such session");
    } else if (req->action == SESSION_RT_CHILDREN) {
        session__rt_finish(c, 200, session__children(s, se));
    } else if (req->lang && req->action != SESSION_RT_SPAWN && runtime_lang_parse(req->lang, &lang) != 0) {
        session__rt_fail(c, ERR_BAD_REQUEST, "lang must be bash, python or node");
    } else if (req->action == SESSION_RT_HISTORY || req->action == SESSION_RT_STATE) {
        session__rt_run(c); /* they write nothing */
    } else {
        int rc = session__after_repair(se, session__rt_repaired, c);
        if (rc == 1 && req->code) { /* the caller's buffer is borrowed for this call only */
            c->code = xmalloc(req->code_len + 1);
            memcpy(c->code, req->code, req->code_len);
            c->code[req->code_len] = '\0';
            c->req.code = c->code;
        }
        if (rc < 0)
            session__rt_repaired(c, rc);
        else if (rc == 0)
            session__rt_run(c);
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
    if (call)
        call->cancelled = 1;
}

/* ================= registry ================= */

static char **session__envp(json_t *env, const char *workspace)
{
    /* The runtime sees only what the session declares, over a minimal base (issue 3's execution
     * environment will own this). */
    json_t *all = json_pack("{s:s, s:s, s:s, s:s}", "PATH", "/usr/local/bin:/usr/bin:/bin", "HOME", workspace,
                            "LANG", "C.UTF-8", "TERM", "dumb");
    json_object_update(all, env);
    size_t n = json_object_size(all), i = 0;
    char **envp = xcalloc(n + 1, sizeof *envp);
    const char *k;
    json_t *v;
    json_object_foreach (all, k, v)
        envp[i++] = xasprintf("%s=%s", k, json_string_value(v) ? json_string_value(v) : "");
    json_decref(all);
    return envp;
}

void session__register(struct sessions *s, struct session *se)
{
    if (se->shares == NULL)
        se->shares = json_array();
    se->registry = s;
    s->live++;
    if (se->runs == NULL)
        se->runs = json_array();
    se->queue_tail = &se->queue;
    if (se->home == NULL) /* created with the first run */
        se->home = xasprintf("%s/homes/%s", s->data_dir, se->id);
    se->envp = session__envp(se->env, se->workspace);
    map_put(&s->by_id, se->id, strlen(se->id), se);
}

static void session__recover_one(const char *key, void *value, void *arg)
{
    struct session *se = value;
    if (se->adapter)
        session__recover_runs(se);
}

static void session__replay(struct sessions *s)
{
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, SESSION_REGISTRY_STREAM, strlen(SESSION_REGISTRY_STREAM), &how);
    if (st == NULL)
        return;
    struct buf b = {0};
    int64_t off = 0, next;
    while (off < stream_tail(st)) {
        if (stream_read(s->ss, st, off, 1 << 20, &b, &next) != 0 || next <= off)
            break;
        off = next;
    }
    stream_json_wrap(&b);
    json_t *msgs = json_loadb(b.p, b.len, 0, NULL);
    buf_free(&b);
    size_t i;
    json_t *m;
    json_array_foreach (msgs, i, m) {
        const char *op = json_string_value(json_object_get(json_object_get(m, "headers"), "operation"));
        const char *key = json_string_value(json_object_get(m, "key"));
        if (op == NULL || key == NULL)
            continue;
        struct session *old = map_del(&s->by_id, key, strlen(key));
        if (old)
            session__free(old);
        if (strcmp(op, "delete") != 0) {
            struct session *se = session__from_record(json_object_get(m, "value"));
            if (se)
                session__register(s, se);
        }
    }
    json_decref(msgs);
    map_each(&s->by_id, session__recover_one, NULL);
    log_info("session: %zu sessions restored", s->by_id.count);
}

int sessions_exists(struct sessions *s, const char *session_id)
{
    struct session *se = map_get(&s->by_id, session_id, strlen(session_id));
    return se && !se->deleted;
}

void sessions_set_mcp(struct sessions *s, sessions_mcp_cb cb, void *arg)
{
    s->mcp_cb = cb;
    s->mcp_arg = arg;
}

int sessions_new(struct sessions **out, uv_loop_t *loop, struct streams *ss,
                 const struct sessions_config *cfg, char *err, size_t errlen)
{
    struct sessions *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->ss = ss;
    s->cfg = *cfg;
    char real[PATH_MAX];
    if (realpath(cfg->data_dir, real) == NULL) {
        snprintf(err, errlen, "cannot resolve the data dir %s: %s", cfg->data_dir, strerror(errno));
        free(s);
        return -errno;
    }
    s->data_dir = xstrdup(real);
    s->cfg.data_dir = s->data_dir;
    s->base_url = cfg->base_url ? xstrdup(cfg->base_url) : NULL;
    s->self_exe = cfg->self_exe ? xstrdup(cfg->self_exe) : NULL;
    s->cfg.self_exe = s->self_exe;
    session__writes_init(s);
    session__replay(s);
    session__sweep(s);
    session__ensure_stream(s, NULL, SESSION_FEED_STREAM);
    *out = s;
    return 0;
}

static void session__close_one(const char *key, void *value, void *arg) { session__close_runtimes(value); }

void sessions_close_runtimes(struct sessions *s) { map_each(&s->by_id, session__close_one, NULL); }

static void session__release(const char *key, void *value, void *arg)
{
    struct session *se = value;
    se->deleted = 1; /* freed by its last runtime close, or now when it has none open */
    session__close_runtimes(se);
}

void sessions_free(struct sessions *s)
{
    if (s == NULL)
        return;
    s->ss = NULL;
    s->freeing = 1;
    s->live++; /* hold the registry while releasing: a session freed here must not free it */
    map_each(&s->by_id, session__release, NULL);
    map_clear(&s->by_id);
    session__writes_close(s);
    session__registry_unref(s);
}

/* ================= deletion and share links ================= */

void session__delete_begin(struct session *se, int delete_streams)
{
    struct sessions *s = se->registry;
    session__event(se, json_pack("{s:s, s:s}", "type", "session", "action", "deleted"));
    session__publish(s, se, "delete");
    /* Its streams end with it: closed, so that every reader sees the end, or deleted. */
    static const char *const kinds[] = {"transcript", "state", "inbox"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(kinds); i++) {
        char path[128];
        snprintf(path, sizeof path, "sessions/%s/%s", se->id, kinds[i]);
        session__end_stream(s, se, path, delete_streams);
    }
    se->deleted = 1;
}

void session__delete_finish(struct session *se, int rc)
{
    if (rc != 0) { /* nothing of the deletion is stored: the session goes on */
        se->deleted = 0;
        return;
    }
    se->purge = 1;
    map_del(&se->registry->by_id, se->id, strlen(se->id));
    session__close_runtimes(se); /* frees se once its runtimes are gone */
}

void session__discard(struct session *se)
{
    log_warn("session %s: its creation could not be stored; discarded", se->id);
    se->deleted = 1;
    se->purge = 1;
    map_del(&se->registry->by_id, se->id, strlen(se->id));
    session__close_runtimes(se);
}

void session__share_add(struct session *se, char tok[SESSION_TOKEN_LEN + 1])
{
    session__new_id(tok);
    session__new_id(tok + SESSION_ID_LEN);
    json_array_append_new(se->shares,
                          json_pack("{s:s, s:I}", "token", tok, "created_at", (json_int_t)clock_wall_ms()));
    session__publish(se->registry, se, "update");
}

/* The index of token in se->shares, or -1. */
static ssize_t session__share_find(const struct session *se, const char *token)
{
    size_t i;
    json_t *sh;
    json_array_foreach (se->shares, i, sh)
        if (!strcmp(json_string_value(json_object_get(sh, "token")) ?: "", token))
            return (ssize_t)i;
    return -1;
}

int session__share_revoke(struct session *se, const char *token)
{
    ssize_t i = session__share_find(se, token);
    if (i < 0)
        return -ENOENT;
    json_array_remove(se->shares, (size_t)i);
    session__publish(se->registry, se, "update");
    return 0;
}

void session__share_remove(struct session *se, const char *token)
{
    ssize_t i = session__share_find(se, token);
    if (i >= 0)
        json_array_remove(se->shares, (size_t)i);
}

void session__new_id(char out[SESSION_ID_LEN + 1])
{
    unsigned char raw[SESSION_ID_LEN / 2];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, SESSION_ID_LEN + 1, raw, sizeof raw);
}

struct session__child_list {
    const char *parent;
    json_t *arr;
};

static void session__collect_child(const char *key, void *value, void *arg)
{
    struct session__child_list *l = arg;
    struct session *se = value;
    if (!se->deleted && se->parent && !strcmp(se->parent, l->parent))
        json_array_append_new(l->arr, session__public(se));
}

json_t *session__children(struct sessions *s, struct session *se)
{
    struct session__child_list l = {se->id, json_array()};
    map_each(&s->by_id, session__collect_child, &l);
    return json_pack("{s:o}", "children", l.arr);
}

void session__child_completed(struct session *se, const char *run, const char *status, json_t *result)
{
    struct sessions *s = se->registry;
    struct session *parent = se->parent ? map_get(&s->by_id, se->parent, strlen(se->parent)) : NULL;
    if (parent == NULL || parent->deleted || s->ss == NULL)
        return;
    const char *text = json_string_value(result) ? json_string_value(result) : "";
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "child", "action", "completed", "child",
                           se->id, "child_run", run, "status", status, "result", text);
    char inbox[128];
    snprintf(inbox, sizeof inbox, "sessions/%s/inbox", parent->id);
    session__write(s, parent, SESSION_W_INBOX, NULL, inbox, json_deep_copy(ev));
    session__event(parent, ev);
    if (parent->adapter) {
        /* Wake the parent: its agent gets the child's outcome as its next input. */
        char *msg = xasprintf("[child session %s finished run %s: %s]\n%s", se->id, run, status, text);
        json_t *answer = NULL;
        const char *why = NULL;
        (void)session__message(parent, msg, "queue", &answer, &why);
        json_decref(answer);
        free(msg);
    }
}
