/*
 * session_int.h — what session.c and session_http.c share. Not for other modules.
 */
#ifndef AGENTD_SESSION_INT_H
#define AGENTD_SESSION_INT_H

#include <jansson.h>

#include "core/map.h"
#include "session/session.h"

#define SESSION_ID_LEN          24
#define SESSION_NLANG           3
/* Durable records with everything needed after a restart (environment values included); under
 * __agentd/, which the HTTP stream resource does not serve. */
#define SESSION_REGISTRY_STREAM "__agentd/sessions"
/* The public State Protocol feed of the session list. */
#define SESSION_FEED_STREAM     "sessions"

struct runtime;
struct exec_env;
struct agent_adapter;
struct session_run;

struct session {
    char id[SESSION_ID_LEN + 1];
    char *agent;
    char *workspace;
    json_t *tags;         /* array of strings */
    json_t *env;          /* object of strings, as the client declared it */
    json_t *shares;       /* array of {"token","created_at"}: read-only access to this session's streams */
    char agent_token[65]; /* "" until its first agent run; good for /v1/sessions/<id>/mcp only; in
                             memory only (runs do not outlive the server) */
    char **envp;          /* the runtimes' environment, "K=V", NULL-terminated */
    int64_t created_ms;
    int owns_workspace; /* created by agentd under DATA/workspaces */
    int deleted;
    int closing; /* runtime closes in flight (+1 while closing) */
    struct runtime *rt[SESSION_NLANG];
    struct sessions *registry;

    /* ---- agent runs (session_run.c) ---- */
    const struct agent_adapter *adapter; /* NULL for agent "none" */
    json_t *agent_opts;    /* {"command","program","base_url","api_key","model","mcp","sandbox"} */
    char *native_session;  /* the agent's own session id, for resume */
    char *home;            /* DATA/homes/<id>: the agent's HOME, kept across runs */
    struct exec_env *xenv; /* execution environment, started with the first run */
    int env_closing;
    struct session_run *active;
    struct session_run *queue, **queue_tail;
    json_t *runs;     /* run records (State Protocol values), oldest first */
    int fork_pending; /* a forked session's first run forks the agent's native session */
    char *parent;     /* the session that spawned this one, or NULL */
};

struct sessions {
    uv_loop_t *loop;
    struct streams *ss;
    struct sessions_config cfg;
    char *data_dir;
    struct map by_id;
    sessions_mcp_cb mcp_cb;
    void *mcp_arg;
    size_t live;    /* sessions not yet freed (deleted ones wait for their runtimes to close) */
    char *base_url; /* how agents reach this server (MCP), e.g. http://127.0.0.1:4437 */
    char *self_exe; /* agentd's executable, for the demo agent; NULL when unknown */
    int freeing;    /* sessions_free ran: the last session__free frees the registry */
};

void session__ensure_stream(struct sessions *s, const char *path);
void session__delete_stream(struct sessions *s, const char *path);
/* Creates `to` as a Durable Streams fork of `from` at offset `at` (nothing is copied). */
void session__fork_stream(struct sessions *s, const char *from, const char *to, int64_t at);
void session__append(struct sessions *s, const char *path, json_t *msg); /* takes msg */
void session__event(struct session *se, json_t *ev);                     /* takes ev */
json_t *session__public(const struct session *se);
json_t *session__text(const char *p, size_t len);
void session__publish(struct sessions *s, struct session *se, const char *operation);
void session__register(struct sessions *s, struct session *se);
void session__close_runtimes(struct session *se);
void session__new_id(char out[SESSION_ID_LEN + 1]);

/* session_ws.c: GET /v1/sessions/<id>/ws[?offset=O] upgraded to a WebSocket that sends the
 * session's transcript events, from the offset, live. */
void session__ws(struct sessions *s, struct session *se, struct http_req *req);

/* session_run.c */
/* Validates and stores the agent part of a create request; NULL or a reason. */
const char *session__agent_config(struct session *se, json_t *body);
/* Validates a create body's "limits" into se->agent_opts; NULL or why not. */
const char *session__limits_config(struct session *se, json_t *limits);
struct exec_limits;
/* The session's limits as exec's (zero when none); returns whether it has any. */
int session__limits(const struct session *se, struct exec_limits *l);
/* Whether the session runs in bubblewrap ("sandbox": "bwrap"): its agent and its runtimes alike. */
int session__sandboxed(const struct session *se);
/* The session's execution environment, created and started on first need (its first run, or a
 * runtime of a session with cgroup limits); NULL when it cannot be created. */
struct exec_env *session__env(struct session *se);
/* Queues user input; answers with the run's record, or an HTTP status and reason. */
int session__message(struct session *se, const char *text, const char *mode, json_t **answer,
                     const char **why);
int session__cancel_run(struct session *se, const char *run, json_t **answer, const char **why);
/* After a restart: closes runs that were queued or running as failed (server_restart). */
void session__recover_runs(struct session *se);
/* Stops the active run and the environment (session deleted or server stopping). */
void session__stop_runs(struct session *se);
void session__runs_free(struct session *se);
const char *session__active_run_id(const struct session *se);
/* A run of child `se` ended: the parent's transcript and inbox get a `child` event, and a parent with
 * an agent is woken with a run. Called in the same loop turn as the child's run_completed, so both
 * commit together. */
void session__child_completed(struct session *se, const char *run, const char *status, json_t *result);
/* Creates a child of parent from a create body (agent settings, env, tags; `text` starts it), records
 * the spawn in the parent's transcript. NULL with an HTTP status and reason on failure. */
struct session *session__spawn_child_of(struct sessions *s, struct session *parent, json_t *body, int *status,
                                        const char **why);
/* {"children":[public views of the sessions spawned by se]} */
json_t *session__children(struct sessions *s, struct session *se);
/* The environment finished closing (session.c: may free a deleted session). */
void session__env_released(struct session *se);

#endif
