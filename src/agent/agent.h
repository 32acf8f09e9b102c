/*
 * agent — runner adapters: how agentd starts an agent CLI for one run and how it reads what the
 * agent prints. Five adapters share one interface: `claude-code` (claude -p, stream-json),
 * `codex` (codex exec --json), `opencode` (opencode run --format json), `jsonl` (agentd's own
 * line protocol, doc/AGENT-PROTOCOL.md) and `demo` (that protocol spoken by `agentd demo-agent`).
 * This module is pure: it builds argv, environment, files and stdin bytes for src/exec to spawn,
 * and turns stdout bytes into events for src/session to append. It starts no process and keeps no
 * global state; it touches files in one place only, agent_fork_fixup, which edits a fork's copy of
 * an agent's own session files (a blocking call for the thread pool).
 *
 * Events are jansson objects (the session appends them to the transcript as such), each with a
 * "type" from the transcript vocabulary and, always, "native": the agent's line as parsed JSON,
 * or as a string when it was not JSON. Shapes (fields beyond these may appear):
 *
 *   message    {"role":"assistant"|"user", "content":[{"type":"text","text"} | {"type":"thinking",
 *               "text"} | ...], "id"?}
 *   delta      {"kind":"text"|"thinking"|"tool_input", "text", "index"?}
 *   pre_tool   {"id", "name", "input"}
 *   post_tool  {"id", "name"?, "output" (text), "is_error"}
 *   log        {"level":"debug"|"info"|"warn"|"error", "text", "native_session"?}
 *   error      {"code", "message", "retryable"}
 *   result     {"is_error", "text", "usage"?, "cost_usd"?, "duration_ms"?, "num_turns"?}
 *
 * `result` is not a transcript event: it ends the run, and the session writes it as run_completed.
 * The log event that reports the agent's native session id carries it as "native_session".
 *
 * Invariants:
 *   - every complete stdout line produces at least one event; a line that is not JSON or not
 *     understood becomes a `log` at level warn, so nothing an agent prints is lost or fatal;
 *   - chunk boundaries do not matter: any split of the same bytes yields the same events;
 *   - a line longer than the parser's limit yields one `error` (code agent_output_too_long,
 *     native: its first bytes as a string) and is skipped up to the next newline;
 *   - at most one `result` per parser (later ones become log events at level warn).
 */
#ifndef AGENTD_AGENT_H
#define AGENTD_AGENT_H

#include <jansson.h>
#include <stddef.h>

#include "core/core.h"

/* The MCP server name agentd's runtime tool is registered under; Claude sees the tool as
 * mcp__rt__runtime, Codex as rt/runtime, OpenCode as rt_runtime. */
#define AGENT_MCP_SERVER      "rt"
#define AGENT_MCP_TOOL_CLAUDE "mcp__" AGENT_MCP_SERVER "__runtime"
/* Default bound on one stdout line. */
#define AGENT_MAX_LINE        ((size_t)8 << 20)
/* Bytes of an oversized line kept in its error event's native string. */
#define AGENT_TOO_LONG_KEEP   1024

struct agent_adapter;
struct agent_parser;

/* The adapter named name ("claude-code", "codex", "opencode", "jsonl", "demo"), or NULL. Adapters
 * are static and never freed. */
const struct agent_adapter *agent_adapter_find(const char *name);
const char *agent_adapter_name(const struct agent_adapter *a);
/* 1 when the agent is agentd itself (`demo`: the built-in demo agent, src/demo): the caller passes
 * agentd's own executable as opts->program. */
int agent_adapter_runs_self(const struct agent_adapter *a);
/* The i-th adapter, for lists of agents; NULL past the last. */
const struct agent_adapter *agent_adapter_at(size_t i);
/* One line saying what the agent is. */
const char *agent_adapter_description(const struct agent_adapter *a);
/* The binary run when the session names none ("claude"), or NULL: the session must give a command
 * (jsonl), or agentd runs itself (demo). */
const char *agent_adapter_program(const struct agent_adapter *a);

/* ---- command construction ------------------------------------------------------------------ */

/*
 * agentd's runtime tool as an MCP server, in whichever transport the session chose: url (the
 * streamable HTTP endpoint /v1/sessions/<id>/mcp) or command (argv of the stdio bridge,
 * e.g. agentd mcp --session ID --server URL, NULL-terminated). Exactly one is set.
 */
struct agent_mcp {
    const char *url;
    const char *const *command;
};

/* What one run asks of the agent. Every string is borrowed for the call only; NULL means unset. */
struct agent_run_opts {
    const char *prompt;     /* the user's text; required */
    const char *session_id; /* agentd's session and run ids (the jsonl adapter passes them on) */
    const char *run_id;
    const char *workspace; /* the agent's working directory (exec makes it the cwd) */
    /*
     * A directory private to this session that persists across its runs: the agent's HOME (and
     * CODEX_HOME, XDG dirs) so its own session files survive for resume; the adapters' config
     * files go under it. Required by claude-code and codex when mcp is set, by codex when
     * base_url is set.
     */
    const char *home;
    const char *program; /* the agent binary; NULL: the adapter's default, found on PATH */
    const char *model;   /* the model name as the agent expects it */
    /* The model API's server root, without /v1 (http://127.0.0.1:8080): Claude gets it as
     * ANTHROPIC_BASE_URL; Codex and OpenCode get <base_url>/v1. */
    const char *base_url;
    const char *api_key;
    const char *native_session; /* the agent's own session id to resume; NULL for a first run */
    int fork;                   /* with native_session: continue a copy, leave the original */
    int bypass_permissions;     /* let the agent run every tool without asking (the environment is
                                 * the sandbox): Claude --dangerously-skip-permissions + IS_SANDBOX,
                                 * Codex --dangerously-bypass-approvals-and-sandbox */
    int partial;                /* ask for token deltas where the agent can stream them (Claude) */
    const struct agent_mcp *mcp;
    const char *const *extra_args; /* NULL-terminated, appended before any positional argument */
};

/* A file the caller writes (mode 0600, parent directories created) before spawning. */
struct agent_file {
    char *path; /* absolute */
    char *content;
};

/*
 * Everything exec needs to start one run. Owned by the struct; free with agent_cmd_free.
 * env holds "NAME=value" additions that the adapter needs; the caller lays them over its base
 * environment and lays the session's declared env over them (the user's settings win).
 */
struct agent_cmd {
    char **argv; /* NULL-terminated; argv[0] is the program (a bare name: PATH) */
    char **env;  /* NULL-terminated */
    struct agent_file *files;
    size_t nfiles;
    char *stdin_data; /* written to the agent's stdin first */
    size_t stdin_len;
    int stdin_keep_open; /* 0: close stdin after stdin_data; 1: keep it for control lines */
};

/* Fills cmd (zeroed first) for one run. Returns 0, or -EINVAL when opts lack what the adapter
 * needs (no prompt, no program for jsonl, mcp or base_url without home where required, fork
 * without native_session). cmd is left empty on error. */
int agent_command(const struct agent_adapter *a, const struct agent_run_opts *opts,
                  struct agent_cmd *cmd) CORE_UNUSED_RESULT;
void agent_cmd_free(struct agent_cmd *cmd);

/* The line to write on the agent's stdin to cancel run_id, newline included (free it), or NULL
 * when the adapter has no such control and the caller must signal the process group instead. */
char *agent_cancel_line(const struct agent_adapter *a, const char *run_id);

/* ---- forks ----------------------------------------------------------------------------------- */

/* A session was forked: its agent home (the directory given as agent_run_opts.home) was copied to
 * `home`, and the fork runs in `workspace` where the parent ran in `from_workspace`. */
struct agent_fork {
    const char *home;
    const char *from_workspace;
    const char *workspace;
};
/* Adjusts the copy so that the agent, resumed in the fork's workspace, finds its conversation there
 * and nothing that still points at the parent's: Claude Code files conversations by working
 * directory, OpenCode records each session's directory in its database, Codex indexes its threads
 * by the parent's absolute paths. Blocking (it edits files): call it from the thread pool. 0, or a
 * negative errno when something could not be adjusted (the fork then resumes less well, if at all). */
int agent_fork_fixup(const struct agent_adapter *a, const struct agent_fork *f) CORE_UNUSED_RESULT;

/* ---- stdout parsing ------------------------------------------------------------------------ */

/* Receives each event; takes ownership of it (json_decref when done). */
typedef void (*agent_event_cb)(void *arg, json_t *event);

/* A parser for one run's stdout. a == NULL parses stderr instead: every line becomes a `log`
 * whose level is read from a leading "debug", "info", "warn[ing]" or "error" word (else info).
 * max_line 0 means AGENT_MAX_LINE. Free with agent_parser_free. */
struct agent_parser *agent_parser_new(const struct agent_adapter *a, size_t max_line, agent_event_cb cb,
                                      void *arg);
/* Feeds len bytes; events for every line they complete are delivered before it returns. */
void agent_parser_feed(struct agent_parser *p, const char *data, size_t len);
/* End of output: a final line without a newline is parsed as a line. */
void agent_parser_finish(struct agent_parser *p);
/* The agent's native session id as last reported, or NULL; borrowed until the parser is freed. */
const char *agent_parser_native_session(const struct agent_parser *p);
/* Whether a `result` event was delivered. */
int agent_parser_has_result(const struct agent_parser *p);
void agent_parser_free(struct agent_parser *p);

#endif
