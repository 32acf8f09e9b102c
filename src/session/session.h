/*
 * session — agent sessions: the registry, each session's streams, workspace, execution environment,
 * runtimes and agent runs, served as /v1/sessions.
 *
 * A session is a set of JSON streams (sessions/<id>/transcript, state, inbox) plus a workspace
 * directory, an environment and optionally an agent (claude-code, codex, opencode, jsonl, demo; or
 * "none" for runtimes only). The registry is durable as the internal stream __agentd/sessions,
 * replayed at start, and public as the `sessions` State Protocol feed
 * ({"type":"session","key":id,"value":{...},"headers":{"operation":"insert|update|delete"}}).
 * README.md documents the HTTP API (create, list, get, delete, messages, runs, cancel, fork, share,
 * children, history pages, the WebSocket view, runtimes, MCP).
 *
 * What is in this header: the registry's life (sessions_new, sessions_routes, sessions_free) and
 * session_rt_start, the one entry for runtime calls, shared by the HTTP API and the MCP tool.
 * Everything else is internal (session_int.h), one file per concern:
 *   session.c            the registry: the session object, its record, creation, deletion, share
 *                        links, children, removal of what agentd made for it
 *   session_opts.c       what a session runs with (agent settings, sandbox, limits), typed
 *   session_run.c        runs: input modes, the run state machine
 *   session_agent.c      the agent's process, which may serve many runs (warm), steered,
 *                        interrupted, answered
 *   session_perm.c       the permission policy, the requests waiting for a person, their answers
 *   session_rt.c         runtimes and session_rt_start
 *   session_fork.c       forks: streams forked, workspace and agent home copied in the thread pool
 *   session_write.c      every durable write, the waits that hold answers until their records are
 *                        stored, and what a failed write does to a session
 *   session_ws.c         the transcript over a WebSocket
 *   session_http.c       /v1/sessions: parses requests, calls the above, maps their errors (0 or
 *                        -errno) onto the error table (core/errcode.h); the only place that knows
 *                        HTTP, with session_events_http.c (history pages) and session_agents_http.c
 *                        (GET /v1/agents)
 */
#ifndef AGENTD_SESSION_H
#define AGENTD_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"
#include "core/errcode.h"

struct streams;
struct http_server;
struct sessions;
struct json_t;

/* The relay's append to the `sessions` feed held by another node: the public record body as producer
 * `producer` (epoch, seq). done(arg, rc) runs once, later, on the loop: 0 when the feed's holder
 * stored it (or already had it), else -errno. */
typedef void (*sessions_feed_done)(void *arg, int rc);
typedef void (*sessions_feed_append)(void *ctx, const char *producer, int64_t epoch, int64_t seq,
                                     const char *body, size_t len, sessions_feed_done done, void *arg);
/* The ids of shard `shard`'s sessions that the feed another node holds lists (GET /v1/sessions
 * ?shard=k on its holder): done(arg, ids) once, later, on the loop, with a JSON array of strings
 * (borrowed for the call), or NULL when it could not be asked. */
typedef void (*sessions_feed_ids_done)(void *arg, struct json_t *ids);
typedef void (*sessions_feed_ids)(void *ctx, int shard, sessions_feed_ids_done done, void *arg);

struct sessions_config {
    const char *data_dir; /* new workspaces go to DATA/workspaces/<id> */
    const char *base_url; /* how agents reach this server (for agentd's MCP tool); NULL: not offered */
    int agent_auth;       /* the server wants a token: each session's agents get their own, good
                               for its MCP endpoint only, in the URL they are given */
    uint64_t runtime_idle_ms;
    size_t runtime_output_limit;
    int64_t runtime_spin_us; /* see runtime_options.spin_us; negative: never */
    const char *self_exe;    /* agentd's own executable (copied): the `demo` agent runs it as
                              * `agentd demo-agent`; NULL: demo sessions cannot run */
    uint64_t agent_idle_ms;  /* a warm agent's process stops after this long without a message */
    int node_lost;           /* the registry was another node's (it lost the write lease to this one):
                                runs it shows running end node_lost, not server_restart */
    int64_t feed_epoch;      /* the shards' epoch for their relay to the `sessions` feed (the lease's;
                                0: 1, as on SQLite) */
    /* Several nodes (--shard-policy balance). defer_load: sessions_new loads no shard, the caller loads
     * each with its own lease (sessions_load_shard). directory: GET /v1/sessions answers from the
     * `sessions` feed (every node's sessions) on the feed's holder. feed_append: the relay's append
     * when another node holds the feed (serve's, over HTTP); NULL: the feed is always local.
     * feed_ids: what that feed lists of a shard, for the repair at each load (session_shard.c). */
    int defer_load;
    int directory;
    sessions_feed_append feed_append;
    sessions_feed_ids feed_ids;
    void *feed_ctx;
};

/* Several nodes (defer_load): the loads of ss read the single registry of before the per-shard ones
 * (shard 0's) when this node does not hold shard 0, so that sessions_load_shard copies its sessions
 * of shard k and knows when there is none (streams_load_side). Call before ss's first load. */
void sessions_load_side(struct streams *ss);
int sessions_new(struct sessions **out, uv_loop_t *loop, struct streams *ss,
                 const struct sessions_config *cfg, char *err, size_t errlen) CORE_UNUSED_RESULT;
/* Registers the /v1/sessions routes (REST and runtimes). */
void sessions_routes(struct sessions *s, struct http_server *srv);
/* Requests to /v1/sessions/<id>/mcp go to this handler (the MCP module registers itself here, so that
 * session/ does not depend on mcp/). session_id is borrowed for the call. Without a handler, such
 * requests are refused as not found. */
struct http_req;
typedef void (*sessions_mcp_cb)(void *arg, struct http_req *req, const char *session_id);
void sessions_set_mcp(struct sessions *s, sessions_mcp_cb cb, void *arg);
/* ---- shards (doc/SHARDING-PLAN.md §3; session_shard.c) ----
 * A session is in the shard of its streams (sessions/<id>/...), chosen when it is created: the
 * emptiest shard loaded here, or its parent's for a child or a fork. sessions_new loads every shard
 * the streams have loaded. These are for a hand-off between nodes (one process holds every shard
 * for now). */
/* Replays shard k's registry: its sessions are served here. epoch: the shard's lease epoch, for its
 * relay to the feed (0: 1); node_lost: the shard's previous holder was another node (its runs end
 * node_lost, and the feed is told of every session again). 0, -EALREADY, or -EINVAL. */
int sessions_load_shard(struct sessions *s, int k, int64_t epoch, int node_lost);
/* Does no session of shard k have a live agent, a runtime, a run (active, queued or settling), a
 * permission request, a repair, a fork in flight, or something closing? Its streams' writes in
 * flight are the stream layer's to tell (streams_shard_busy). */
int sessions_shard_idle(struct sessions *s, int k);
/* Forgets shard k's sessions without writing anything (their idle environments close): 0, -EBUSY
 * when the shard is not idle (nothing is done), -ENOENT when it is not loaded. Their WebSockets
 * close (1012) when the caller then drops the streams' shard (streams_drop_shard). */
int sessions_unload_shard(struct sessions *s, int k);
/* How many sessions shard k has here. */
size_t sessions_shard_count(const struct sessions *s, int k);
/* Can a new session be created here: is a shard held here and its sessions loaded (the shard a new
 * session's id is drawn in)? 0 on a node that holds none yet (placement waits for one). */
int sessions_placeable(const struct sessions *s);

/* Does a session with this id exist (and is it not deleted)? */
int sessions_exists(struct sessions *s, const char *session_id);
/* Starts closing every runtime (their processes end); the registry stays usable. */
void sessions_close_runtimes(struct sessions *s);
/* A node's load, in one walk: live agents (sessions whose agent has a process: running a turn, or
 * warm) and open runtimes. */
void sessions_load(struct sessions *s, size_t *agents, size_t *runtimes);
/* Is work of the sessions' still in the thread pool (a deleted session's directories being removed,
 * a fork's copy), or an environment still closing (its processes being killed, their last output
 * drained: bounded by exec's kill grace and drain period)? The loop must run until it is not: a
 * worker touches the loop when it finishes, and an environment's processes are loop handles. */
int sessions_working(const struct sessions *s);
/* Frees the registry once every runtime has closed. Call before streams_free: from here on, events
 * of runtimes still closing are not recorded. NULL is a no-op. */
void sessions_free(struct sessions *s);

/* ---- runtime calls, shared by the HTTP API and the MCP tool ---- */

/* What an agent can ask of its session: runtime calls, and (SPAWN, CHILDREN) child sessions. */
enum session_rt_action {
    SESSION_RT_EXEC,
    SESSION_RT_EVAL,
    SESSION_RT_STATE,
    SESSION_RT_RESET,
    SESSION_RT_HISTORY,
    SESSION_RT_INTERRUPT,
    SESSION_RT_SPAWN,
    SESSION_RT_CHILDREN
};

struct session_rt_request {
    enum session_rt_action action;
    const char *lang; /* "bash" | "python" | "node"; NULL: bash (python for eval) */
    const char *code; /* exec/eval: the code; spawn: the child's first message */
    size_t code_len;
    uint64_t timeout_ms; /* 0: the runtime's default */
    size_t limit;        /* history: how many (0: default 100) */
    int from_agent;      /* made by the session's agent (MCP): its permission policy applies to the
                            calls that run or change something (exec, eval, reset, spawn), which
                            may wait for a person's answer or fail with permission_denied */
};

/*
 * The answer. json is an object: for exec/eval {"stdout","stderr","status","duration_us",
 * "truncated","outcome",...}; for state the runtime's state object; for history {"calls":[...]};
 * for reset/interrupt {"ok":true}; for spawn {"child","session"}, for children {"children":[...]}.
 * When the call failed, rc is a negative errno and err its code (core/errcode.h: not_found,
 * bad_request, runtime_failed, storage_full, ...), and json holds {"error":{"code","message"}} —
 * beside the call's output when the call ran (a runtime that failed, or an exec whose transcript
 * record could not be stored). Everything is borrowed for the callback.
 */
struct session_rt_answer {
    int rc;
    enum errcode err;
    const char *json;
};
typedef void (*session_rt_cb)(void *arg, const struct session_rt_answer *answer);
struct session_rt_call;
/* Starts a call; cb runs exactly once (possibly before this returns) unless cancelled first. The
 * returned handle is valid until cb runs or session_rt_cancel is called. */
struct session_rt_call *session_rt_start(struct sessions *s, const char *session_id,
                                         const struct session_rt_request *req, session_rt_cb cb, void *arg);
/* The caller is going away: cb will not run (the operation itself still completes). */
void session_rt_cancel(struct session_rt_call *call);
/* Parses "exec", "eval", "state", "reset", "history", "interrupt", "spawn", "children". 0 or -EINVAL. */
int session_rt_action_parse(const char *name, enum session_rt_action *out) CORE_UNUSED_RESULT;

#endif
