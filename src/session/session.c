/*
 * session — the registry of sessions: the session object (its public view and its durable record),
 * creation, deletion, share links, children, and removing what agentd made for a session. See
 * session.h for the other files of the module.
 *
 * Ownership: the registry owns every registered struct session (struct sessions.by_id); a session
 * being created or forked belongs to its maker until session__register (session__alloc /
 * session__drop). A session owns its runtimes and its execution environment, both closed
 * asynchronously: a deleted session is freed when the last of them has closed (se->closing), and
 * only then are its directories removed. The registry itself is freed when its last reference goes
 * (sessions, writes in flight, forks, the write timer: s->live).
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
                            se->deleted                  ? "deleted"
                            : se->active || se->settling ? "running"
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
    session__agent_view(se, pub);
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
    if (se->caps)
        json_object_set_new(rec, "agent_caps", json_integer(se->caps));
    return rec;
}

json_t *session__record_msg(const struct session *se, const char *operation)
{
    return json_pack("{s:s, s:s, s:o, s:{s:s}}", "type", "session", "key", se->id, "value",
                     session__record(se), "headers", "operation", operation);
}

json_t *session__public_msg(const struct session *se, const char *operation)
{
    return json_pack("{s:s, s:s, s:o, s:{s:s}}", "type", "session", "key", se->id, "value",
                     session__public(se), "headers", "operation", operation);
}

/* Records a change durably (internal record, in the registry of the session's shard: one shard, one
 * fence, one transaction with its streams) and publicly (the `sessions` feed, State Protocol,
 * through the shard's relay). */
void session__publish(struct sessions *s, struct session *se, const char *operation)
{
    char reg[64];
    session__registry_path(s, se->shard, reg);
    session__relay_after(s, se, se->shard, reg, session__record_msg(se, operation),
                         session__public_msg(se, operation));
}

struct session *session__from_record(json_t *rec)
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
    se->caps = (unsigned)json_integer_value(json_object_get(rec, "agent_caps"));
    return se;
}

/* ================= removing what agentd made for a session ================= */

/* A thread pool worker finishes by touching the loop, so the loop (serve's, on its stack) must
 * still be there: serve drains until sessions_working says nothing is queued. */
void session__work(struct sessions *s, uv_work_t *w, uv_work_cb work, uv_after_work_cb done)
{
    s->works++;
    uv_queue_work(s->loop, w, work, done); /* fails only for a NULL work */
}

void session__work_done(struct sessions *s) { s->works--; }

int sessions_working(const struct sessions *s) { return s != NULL && s->works > 0; }

struct session__purge {
    uv_work_t work;
    struct sessions *s;
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
    session__work_done(p->s);
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
    p->s = s;
    session__work(s, &p->work, session__purge_work, session__purge_done);
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
 * ids under DATA/workspaces and DATA/homes that no session has; with k >= 0 only the ids of shard
 * k (the only ones whose sessions this node knows all of: the shard's registry, just loaded). */
void session__sweep(struct sessions *s, int k)
{
    static const char *const kinds[] = {"workspaces", "homes"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(kinds); i++) {
        char *dir = xasprintf("%s/%s", s->data_dir, kinds[i]);
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
            size_t n = strlen(e->d_name);
            if (n != SESSION_ID_LEN || strspn(e->d_name, "0123456789abcdef") != n ||
                (k >= 0 && session__shard_of(s, e->d_name) != k) || map_get(&s->by_id, e->d_name, n) != NULL)
                continue;
            log_info("session: removing the %s of %s, which no session has", kinds[i], e->d_name);
            char *ws = session__own_dir(s, "workspaces", e->d_name);
            if (i == 0 && !session__workspace_in_use(s, ws)) /* not some session's named workspace */
                session__purge_dirs(s, e->d_name, ws);
            else if (i == 1)
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
    case -EBUSY:
    case -EALREADY: return ERR_CONFLICT;
    case -ENOTSUP: return ERR_UNSUPPORTED_BY_AGENT;
    case -EACCES: return ERR_PERMISSION_DENIED;
    case -ENOSPC:
    case -EFBIG:
    case -EDQUOT: return ERR_STORAGE_FULL;
    case -ENOTCONN: return ERR_STORE_UNAVAILABLE;
    case -EXDEV: return ERR_SHARD_MOVED;
    case -EPERM: return ERR_NODE_FENCED;
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

struct session *session__alloc(struct sessions *s, const char *agent, int shard)
{
    if (shard < 0 && (shard = session__place(s)) < 0)
        return NULL;
    struct session *se = xcalloc(1, sizeof *se);
    session__new_id(s, se->id, shard);
    se->agent = xstrdup(agent);
    se->adapter = strcmp(agent, "none") ? agent_adapter_find(agent) : NULL;
    se->opts.mcp = -1;
    se->opts.warm = -1;
    se->created_ms = clock_wall_ms();
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
    session__perms_free(se);
    for (char **p = se->envp; p && *p; p++)
        free(*p);
    free(se->envp);
    json_decref(se->lost.runs);
    free(se);
}

void session__free(struct session *se)
{
    struct sessions *s = se->registry;
    s->shards[se->shard].count--;
    if (se->purge) /* its processes are gone: the runtimes and environment closed */
        session__purge_dirs(s, se->id, se->owns_workspace ? se->workspace : NULL);
    se->registry = NULL;
    session__drop(se);
    session__registry_unref(s);
}

void session__registry_unref(struct sessions *s)
{
    if (--s->live == 0 && s->freeing) {
        json_decref(s->dir);
        free(s->shards);
        free(s->data_dir);
        free(s->base_url);
        free(s->self_exe);
        free(s);
    }
}

/* ================= runtimes ================= */

/* A deleted session is freed by its last close, but only once its deletion has closed it: between
 * session__delete_begin and the deletion's commit it is still in the registry, with its environment
 * open, and an agent process that ends then (a "warm": false one stopping after its run) must not
 * free it. */
static void session__runtime_closed(void *arg)
{
    struct session *se = arg;
    if (--se->closing == 0 && se->deleted && se->closed)
        session__free(se);
}

void session__env_released(struct session *se) { session__runtime_closed(se); }

/* Closes every runtime of se; frees se afterwards when it is deleted. */
void session__close_runtimes(struct session *se)
{
    se->closing++; /* held until the loop below is done, so a synchronous close cannot free se */
    se->closed = 1;
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
    se->shard = session__shard_of(s, se->id);
    s->shards[se->shard].count++;
    s->live++;
    if (se->runs == NULL)
        se->runs = json_array();
    se->queue_tail = &se->queue;
    if (se->home == NULL) /* created with the first run */
        se->home = xasprintf("%s/homes/%s", s->data_dir, se->id);
    se->envp = session__envp(se->env, se->workspace);
    map_put(&s->by_id, se->id, strlen(se->id), se);
}

static int session__make_workspace(struct sessions *s, struct session *se);

/* A session whose workspace is gone (a node that took over the sessions of another, workspaces not
 * shared between them; or the directory removed by hand) gets a fresh one, and its transcript says
 * so: what the agent had made there is lost, its conversation is not. */
static void session__recover_workspace(struct sessions *s, struct session *se)
{
    struct stat st;
    if (se->deleted || stat(se->workspace, &st) == 0 || errno != ENOENT)
        return;
    char *old = se->workspace;
    int rc = session__make_workspace(s, se);
    if (rc != 0 && rc != -EEXIST) {
        log_warn("session %s: its workspace %s is gone and a new one cannot be made (%s)", se->id, old,
                 strerror(-rc));
        free(se->workspace);
        se->workspace = old;
        return;
    }
    se->owns_workspace = 1;
    for (char **p = se->envp; p && *p; p++)
        free(*p);
    free(se->envp);
    se->envp = session__envp(se->env, se->workspace);
    log_warn("session %s: its workspace %s is missing on this node; made a fresh one at %s", se->id, old,
             se->workspace);
    char *text = xasprintf("the workspace %s is missing on this node (workspaces are not shared between "
                           "nodes, or it was removed): a fresh, empty one was made at %s",
                           old, se->workspace);
    session__event(se, json_pack("{s:s, s:s, s:s}", "type", "log", "level", "warn", "text", text));
    free(text);
    free(old);
    session__publish(s, se, "update");
}

void session__recover(struct sessions *s, struct session *se)
{
    session__recover_workspace(s, se);
    if (se->adapter)
        session__recover_runs(se);
}

json_t *session__read_json(struct sessions *s, const char *path, int *whole)
{
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, path, strlen(path), &how);
    struct buf b = {0};
    if (st == NULL) {
        /* Not here: none, or in a shard another node holds (the single registry of before the
         * per-shard ones, on a node without shard 0), whose content only a load's side read knows
         * (streams_load_side). Unknown is not none: whole 0, so nothing is swept nor deleted. */
        int rc = streams_load_side_read(s->ss, path, &b);
        json_t *msgs = NULL;
        if (rc == 1) {
            stream_json_wrap(&b);
            msgs = json_loadb(b.p, b.len, 0, NULL);
        }
        if (whole)
            *whole = rc == 0 || msgs != NULL;
        buf_free(&b);
        return msgs;
    }
    int64_t off = 0, next;
    while (off < stream_tail(st)) {
        if (stream_read(s->ss, st, off, 1 << 20, &b, &next) != 0 || next <= off)
            break;
        off = next;
    }
    stream_json_wrap(&b);
    json_t *msgs = json_loadb(b.p, b.len, 0, NULL);
    if (whole)
        *whole = off >= stream_tail(st) && msgs != NULL;
    buf_free(&b);
    return msgs;
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
    s->nshards = streams_shards(ss);
    s->shards = xcalloc((size_t)s->nshards, sizeof *s->shards);
    session__writes_init(s);
    if (streams_shard_held(ss, 0)) /* else another node's (the relay appends there) */
        session__ensure_stream(s, NULL, SESSION_FEED_STREAM);
    session__load_all(s); /* replays the registries, then sweeps */
    *out = s;
    return 0;
}

static void session__close_one(const char *key, void *value, void *arg) { session__close_runtimes(value); }

static void session__count_load(const char *key, void *value, void *arg)
{
    const struct session *se = value;
    size_t *n = arg;
    n[0] += se->agent_proc != NULL;
    for (int i = 0; i < SESSION_NLANG; i++)
        n[1] += se->rt[i] != NULL;
}

void sessions_load(struct sessions *s, size_t *agents, size_t *runtimes)
{
    size_t n[2] = {0, 0};
    map_each(&s->by_id, session__count_load, n);
    *agents = n[0];
    *runtimes = n[1];
}

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

/* ================= creation ================= */

/* "unknown agent (none, claude-code, ...)": the names from agent/'s list, which is the only one. */
static const char *session__unknown_agent(void)
{
    static char why[256];
    if (why[0] == '\0') {
        struct buf b = {0};
        buf_puts(&b, "unknown agent (none");
        const struct agent_adapter *a;
        for (size_t i = 0; (a = agent_adapter_at(i)) != NULL; i++)
            buf_printf(&b, "%s%s", agent_adapter_at(i + 1) ? ", " : " or ", agent_adapter_name(a));
        buf_puts(&b, ")");
        snprintf(why, sizeof why, "%s", b.p);
        buf_free(&b);
    }
    return why;
}

const char *session__check_create(json_t *b, char ws[PATH_MAX])
{
    const char *agent = json_string_value(json_object_get(b, "agent"));
    if (agent == NULL || (strcmp(agent, "none") != 0 && agent_adapter_find(agent) == NULL))
        return session__unknown_agent();
    json_t *w = json_object_get(b, "workspace");
    ws[0] = '\0';
    if (w && !json_is_null(w)) {
        struct stat st;
        if (!json_is_string(w) || realpath(json_string_value(w), ws) == NULL || stat(ws, &st) != 0 ||
            !S_ISDIR(st.st_mode))
            return "workspace must be an existing directory";
    }
    json_t *env = json_object_get(b, "env");
    if (env && !json_is_null(env)) {
        if (!json_is_object(env))
            return "env must be an object of strings";
        const char *k;
        json_t *v;
        json_object_foreach (env, k, v)
            if (!json_is_string(v) || *k == '\0' || strchr(k, '='))
                return "env must be an object of strings with names without '='";
    }
    json_t *tags = json_object_get(b, "tags");
    if (tags && !json_is_null(tags) && !session__strings(tags))
        return "tags must be an array of strings";
    return NULL;
}

/* DATA/workspaces/<id>, made for se: 0 or a negative errno. */
static int session__make_workspace(struct sessions *s, struct session *se)
{
    char *dir = xasprintf("%s/workspaces", s->data_dir);
    se->workspace = xasprintf("%s/%s", dir, se->id);
    int rc = (mkdir(dir, 0700) != 0 && errno != EEXIST) || mkdir(se->workspace, 0700) != 0 ? -errno : 0;
    free(dir);
    se->owns_workspace = rc == 0;
    return rc;
}

int session__create(struct sessions *s, json_t *b, struct session *parent, struct session **out,
                    const char **why)
{
    char ws[PATH_MAX];
    if ((*why = session__check_create(b, ws)) != NULL)
        return -EINVAL;
    /* A child takes an id in its parent's shard: its streams, registry and fence are the parent's. */
    struct session *se =
        session__alloc(s, json_string_value(json_object_get(b, "agent")), parent ? parent->shard : -1);
    if (se == NULL) {
        *why = "no shard of sessions is served here";
        return -EXDEV;
    }
    int rc = session__opts_parse(&se->opts, b, se->adapter, why);
    if (rc == 0 && ws[0])
        se->workspace = xstrdup(ws);
    else if (rc == 0 && (rc = session__make_workspace(s, se)) != 0)
        *why = "cannot create the workspace";
    if (rc != 0) {
        session__drop(se);
        return rc;
    }
    json_t *tags = json_object_get(b, "tags"), *env = json_object_get(b, "env");
    se->tags = json_is_array(tags) ? json_incref(tags) : json_array();
    se->env = json_is_object(env) ? json_incref(env) : json_object();
    se->parent = parent ? xstrdup(parent->id) : NULL;
    session__register(s, se);
    session__ensure_streams(s, se);
    json_t *ev = json_pack("{s:s, s:s}", "type", "session", "action", "created");
    if (parent)
        json_object_set_new(ev, "parent", json_string(parent->id));
    session__event(se, ev);
    session__publish(s, se, "insert");
    *out = se;
    return 0;
}

int session__spawn_child(struct sessions *s, struct session *parent, json_t *b, struct session **out,
                         const char **why)
{
    json_t *text = json_object_get(b, "text");
    if (text && !json_is_string(text)) {
        *why = "text must be a string";
        return -EINVAL;
    }
    int rc = session__create(s, b, parent, out, why);
    if (rc != 0)
        return rc;
    session__event(parent,
                   json_pack("{s:s, s:s, s:s}", "type", "child", "action", "spawned", "child", (*out)->id));
    if (json_is_string(text) && (*out)->adapter) {
        json_t *run = NULL;
        const char *ignored = NULL;
        (void)session__message(*out, json_string_value(text), "queue", &run, &ignored);
        json_decref(run);
    }
    return 0;
}

/* ================= deletion and share links ================= */

void session__delete_begin(struct session *se, int delete_streams)
{
    struct sessions *s = se->registry;
    session__event(se, json_pack("{s:s, s:s}", "type", "session", "action", "deleted"));
    session__publish(s, se, "delete");
    /* Its streams end with it: closed, so that every reader sees the end, or deleted. */
    for (size_t i = 0; i < SESSION_STREAM_KINDS; i++) {
        char path[128];
        session__stream_path(se->id, session__stream_kinds[i], path);
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
    session__random_id(tok, SESSION_TOKEN_LEN + 1, "");
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

void session__random_id(char *out, size_t cap, const char *prefix)
{
    size_t n = strlen(prefix);
    unsigned char raw[32];
    size_t bytes = (cap - 1 - n) / 2;
    assert(cap > n + 2 && bytes <= sizeof raw && n + 2 * bytes + 1 == cap);
    randombytes_buf(raw, bytes);
    memcpy(out, prefix, n);
    sodium_bin2hex(out + n, cap - n, raw, bytes);
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
    session__stream_path(parent->id, "inbox", inbox);
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
