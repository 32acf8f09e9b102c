/*
 * session_fork — forking a session (POST /v1/sessions/<id>/fork {"at", "tags"}): a new session
 * that continues the parent's conversation from a transcript offset, on its own from then on.
 *
 * The child's transcript and inbox are Durable Streams forks of the parent's (the transcript at the
 * offset, the inbox at its tail), so no history is copied. Its state stream is its own, holding the
 * runs the parent had started before the offset, as far as they got (session__fork_runs): the
 * parent's state stream goes on past the offset, with runs the child never had. Its workspace is a copy of the
 * parent's and its agent home a copy of the parent's (the agent's own session files, so that its
 * first run forks the agent's conversation), made in the thread pool (exec_tree_copy) because they
 * can be large; the agent's adapter then adjusts the home's copy for the new workspace
 * (agent_fork_fixup). The child is registered once the copies are done, and the caller hears of it
 * once its records have committed; if they cannot be stored it is discarded again.
 *
 * Ownership: a struct session_fork lives from session__fork_start until its callback has run (or,
 * cancelled, until the fork is over without one). The child session belongs to the fork until it
 * is registered, then to the registry; a fork whose copy failed drops it and removes its copies.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "session/session_int.h"
#include "stream/stream.h"

struct session_fork {
    uv_work_t work;
    struct sessions *s;
    struct session *child;       /* not registered until the copy succeeded */
    char id[SESSION_ID_LEN + 1]; /* the child's (it may be gone by the time its records commit) */
    char *from_ws;
    char *from_home;
    char parent[SESSION_ID_LEN + 1];
    int64_t at;
    json_t *runs; /* the parent's run records when the fork began */
    int rc;       /* of the copy */
    session_fork_cb cb;
    void *arg;
    int cancelled;
    int shard; /* the parent's, and the child's */
};

/* In the thread pool: the workspace, then the agent's home if the parent has one, copied. */
static void session__fork_copy(uv_work_t *w)
{
    struct session_fork *f = w->data;
    struct session *child = f->child;
    f->rc = exec_tree_copy(f->from_ws, child->workspace);
    if (f->rc != 0 || access(f->from_home, F_OK) != 0)
        return;
    if (mkdir(child->home, 0700) != 0 && errno != EEXIST) {
        f->rc = -errno;
        return;
    }
    if ((f->rc = exec_tree_copy(f->from_home, child->home)) != 0 || child->adapter == NULL)
        return;
    struct agent_fork af = {.home = child->home, .from_workspace = f->from_ws, .workspace = child->workspace};
    if (agent_fork_fixup(child->adapter, &af) != 0)
        log_warn("session %s: the fork's copy of the agent's files could not be adjusted entirely",
                 child->id);
}

static void session__fork_free(struct session_fork *f)
{
    struct sessions *s = f->s;
    free(f->from_ws);
    free(f->from_home);
    json_decref(f->runs);
    s->shards[f->shard].forks--;
    free(f);
    session__registry_unref(s);
}

/* The child's records committed, or not. */
static void session__fork_stored(void *arg, int rc)
{
    struct session_fork *f = arg;
    struct session *child = map_get(&f->s->by_id, f->id, SESSION_ID_LEN);
    if (rc != 0 && child)
        session__discard(child);
    if (!f->cancelled)
        f->cb(f->arg, rc, NULL, rc == 0 ? child : NULL);
    session__fork_free(f);
}

/* Registers the copied child and writes its streams, its first event and its record. */
static void session__fork_register(struct session_fork *f)
{
    struct sessions *s = f->s;
    struct session *se = f->child;
    session__register(s, se);
    struct session_wait *wait = session__wait_begin(s, 0);
    for (size_t i = 0; i < SESSION_STREAM_KINDS; i++) {
        const char *kind = session__stream_kinds[i];
        char from[128], to[128];
        session__stream_path(f->parent, kind, from);
        session__stream_path(se->id, kind, to);
        enum stream_lookup how;
        struct stream *src = streams_lookup(s->ss, from, strlen(from), &how);
        if (src == NULL || !strcmp(kind, "state")) {
            session__ensure_stream(s, se, to);
            continue;
        }
        int64_t tail = stream_tail(src); /* the inbox forks at its tail, the transcript at the offset */
        int64_t at = !strcmp(kind, "transcript") && f->at >= 0 && f->at <= tail ? f->at : tail;
        session__fork_stream(s, se, from, to, at);
    }
    session__fork_runs(se, f->runs, f->at);
    char at_text[STREAM_OFFSET_LEN + 1];
    stream_offset_format(f->at, at_text);
    session__event(se, json_pack("{s:s, s:s, s:s, s:s}", "type", "session", "action", "forked", "from",
                                 f->parent, "at", at_text));
    session__publish(s, se, "insert");
    session__wait_end(wait, session__fork_stored, f);
}

static void session__fork_copied(uv_work_t *w, int status)
{
    struct session_fork *f = w->data;
    session__work_done(f->s);
    int rc = f->rc ? f->rc : status ? -EIO : 0;
    if (rc == 0 && f->s->freeing)
        rc = -ECANCELED; /* the server is stopping */
    if (rc == 0)
        return session__fork_register(f);
    log_warn("session %s: the fork's copy failed: %s", f->child->id, strerror(-rc));
    session__purge_dirs(f->s, f->child->id, f->child->workspace);
    session__drop(f->child);
    if (!f->cancelled)
        f->cb(f->arg, rc, "cannot copy the workspace", NULL);
    session__fork_free(f);
}

/* The parent's idle agent has exited (it was told to go by the fork): the copy starts now. */
static void session__fork_go(void *arg)
{
    struct session_fork *f = arg;
    session__work(f->s, &f->work, session__fork_copy, session__fork_copied);
}

/* The child as the parent's copy: same agent, settings, environment and native session (its first
 * run forks it), its own id, workspace and home. */
static struct session *session__fork_child(struct sessions *s, const struct session *parent, json_t *tags)
{
    struct session *se = session__alloc(s, parent->agent, parent->shard);
    session__opts_copy(&se->opts, &parent->opts, se->adapter);
    se->native_session = parent->native_session ? xstrdup(parent->native_session) : NULL;
    se->fork_pending = se->native_session != NULL;
    se->tags = json_incref(tags ? tags : parent->tags);
    se->env = json_deep_copy(parent->env);
    se->owns_workspace = 1;
    se->workspace = xasprintf("%s/workspaces/%s", s->data_dir, se->id);
    se->home = xasprintf("%s/homes/%s", s->data_dir, se->id);
    return se;
}

int session__fork_start(struct session *parent, const char *at, json_t *tags, session_fork_cb cb, void *arg,
                        struct session_fork **out, const char **why)
{
    struct sessions *s = parent->registry;
    if (tags && !json_is_null(tags) && !session__strings(tags)) {
        *why = "tags must be an array of strings";
        return -EINVAL;
    }
    if (json_is_null(tags))
        tags = NULL;
    char path[128];
    session__stream_path(parent->id, "transcript", path);
    enum stream_lookup how;
    struct stream *tr = streams_lookup(s->ss, path, strlen(path), &how);
    int64_t off = tr ? stream_tail(tr) : 0;
    if (at && (stream_offset_parse(at, &off) != 0 || (tr && !stream_offset_is_boundary(s->ss, tr, off)))) {
        *why = "at must be an offset of the parent's transcript: an event's, or its tail";
        return -EINVAL;
    }
    /* The parent's warm agent goes (now when idle, else at the end of its run); an idle one is gone
     * before the copy starts (session__fork_go), so the copy is of files no process writes, and
     * each side resumes its own conversation from there. */
    session__agent_retire(parent, "forked");
    struct session *se = session__fork_child(s, parent, tags);
    char *dir = xasprintf("%s/workspaces", s->data_dir);
    int rc = (mkdir(dir, 0700) != 0 && errno != EEXIST) || mkdir(se->workspace, 0700) != 0 ? -errno : 0;
    free(dir);
    if (rc != 0) {
        session__drop(se);
        *why = "cannot create the workspace";
        return rc;
    }
    struct session_fork *f = xcalloc(1, sizeof *f);
    f->s = s;
    s->live++; /* released by session__fork_free: the registry outlives the fork */
    f->shard = parent->shard;
    s->shards[f->shard].forks++; /* the shard is not idle until the fork is over */
    f->child = se;
    memcpy(f->id, se->id, sizeof f->id);
    f->from_ws = xstrdup(parent->workspace);
    f->from_home = xstrdup(parent->home);
    memcpy(f->parent, parent->id, sizeof f->parent);
    f->at = off;
    f->runs = json_deep_copy(parent->runs);
    f->cb = cb;
    f->arg = arg;
    f->work.data = f;
    if (session__agent_when_gone(parent, session__fork_go, f)) { /* the idle agent first */
        *out = f;
        return 0;
    }
    session__work(s, &f->work, session__fork_copy, session__fork_copied);
    *out = f;
    return 0;
}

void session__fork_cancel(struct session_fork *f)
{
    if (f)
        f->cancelled = 1;
}
