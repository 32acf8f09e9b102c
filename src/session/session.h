/*
 * session — agent sessions: the registry, each session's streams and workspace, and its persistent
 * runtimes. This first cut serves runtime-only sessions (agent "none"); runs and agent runners come
 * with the sessions issue and extend this module.
 *
 * A session is a set of streams (sessions/<id>/transcript|state|inbox) plus a workspace directory
 * and an environment. The registry itself is durable as the `sessions` stream, a State Protocol feed
 * ({"type":"session","key":id,"value":{...},"headers":{"operation":"insert|update|delete"}}) that
 * dashboards follow live and that agentd replays at start.
 *
 * Runtimes: one per language per session, started lazily in the session's workspace with the
 * session's environment, closed when the session is deleted or the server stops. Every runtime call
 * is recorded as a `runtime` event in the session's transcript.
 *
 * The REST API (JSON in and out):
 * - POST /v1/sessions body {"agent":"none", "workspace"?: "/existing/dir", "env"?: {"K":"V"}, "tags"?: ["t"]}
 *   → 201 {"id","agent","workspace","tags","created_at","status","streams":{"transcript":"/v1/stream/sessions/<id>/transcript","state":...,"inbox":...}}.
 *   agent "none" = runtime-only session. Unknown agent or missing workspace → 400 JSON error.
 * - GET /v1/sessions[?tag=T&limit=N] → {"sessions":[...]}; GET /v1/sessions/<id> → the session object; DELETE /v1/sessions/<id> → 204.
 * - POST /v1/sessions/<id>/runtimes/<lang>/exec body {"code":"...","timeout_ms":N} → 200
 *   {"stdout","stderr","status","duration_us","truncated","outcome","timed_out","stdout_bytes","stderr_bytes"}
 *   (lang = bash|python|node). POST .../state → the runtime's state object; POST .../reset and .../interrupt → {"ok":true};
 *   GET or POST .../history[?limit=N] → {"calls":[...]}. Errors: JSON {"error":{"code","message"}} with 400/404/500.
 * - Every runtime call appends a {"type":"runtime",...} event to the JSON stream sessions/<id>/transcript.
 * - The C-level entry point shared by HTTP and MCP is in src/session/session.h: session_rt_start(sessions, id, &req, cb, arg)
 *   (read that header; it's the contract).
 */
#ifndef AGENTD_SESSION_H
#define AGENTD_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"

struct streams;
struct http_server;
struct sessions;

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
};

int sessions_new(struct sessions **out, uv_loop_t *loop, struct streams *ss,
                 const struct sessions_config *cfg, char *err, size_t errlen) CORE_UNUSED_RESULT;
/* Registers the /v1/sessions routes (REST and runtimes). */
void sessions_routes(struct sessions *s, struct http_server *srv);
/* Requests to /v1/sessions/<id>/mcp go to this handler (the MCP module registers itself here, so that
 * session/ does not depend on mcp/). session_id is borrowed for the call. Without a handler: 404. */
struct http_req;
typedef void (*sessions_mcp_cb)(void *arg, struct http_req *req, const char *session_id);
void sessions_set_mcp(struct sessions *s, sessions_mcp_cb cb, void *arg);
/* Does a session with this id exist (and is it not deleted)? */
int sessions_exists(struct sessions *s, const char *session_id);
/* Starts closing every runtime (their processes end); the registry stays usable. */
void sessions_close_runtimes(struct sessions *s);
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
};

/*
 * The answer: an HTTP-like status (200, 400 bad request, 404 no such session, 409, 500) and a JSON
 * object: for exec/eval {"stdout","stderr","status","duration_us","truncated","outcome",...}; for
 * state the runtime's state object; for history {"calls":[...]}; for reset/interrupt {"ok":true};
 * errors {"error":{"code","message"}}. Both borrowed for the callback.
 */
typedef void (*session_rt_cb)(void *arg, int status, const char *json);
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
