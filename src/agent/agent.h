/*
 * agent — runner adapters: how agentd starts an agent CLI for one run and how it reads what the
 * agent prints. Five adapters share one interface: `claude-code` (claude -p, stream-json),
 * `codex` (codex app-server, JSON-RPC), `opencode` (opencode serve, over HTTP), `jsonl` (agentd's own
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
 * `result` is not a transcript event: it ends the run (for an agent that stays warm, the turn), and
 * the session writes it as run_completed. The log event that reports the agent's native session id
 * carries it as "native_session". `permission_request` {"native_request", "tool", "input",
 * "suggestions"?, "tool_use_id"?} is not one either: the agent asks before using a tool, and the
 * session answers through agent_send_decision with native_request (the agent's own id for it).
 *
 * Talking back: an agent that stays up between messages (warm), takes input mid-turn (steer), stops
 * a turn without exiting (interrupt) or asks before using tools (approvals) is driven through its
 * parser, which knows the process's protocol state (request ids, the turn): agent_send_* build the
 * agent's stdin bytes and hand them to the writer the caller installed (agent_parser_set_writer).
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

/* What an agent can do beyond running one message to its end, one bit each (GET /v1/agents lists
 * them by name). */
enum agent_cap {
    AGENT_CAP_APPROVALS = 1u << 0, /* asks before using a tool; agentd answers allow or deny */
    AGENT_CAP_STEER = 1u << 1,     /* takes more user input into the turn it is running */
    AGENT_CAP_INTERRUPT = 1u << 2, /* stops the running turn and keeps its process and conversation */
    AGENT_CAP_WARM = 1u << 3,      /* one process answers message after message (a turn each) */
};
#define AGENT_CAP_COUNT 4
/* "approvals", "steer", "interrupt", "warm": the name of bit i (1u << i); NULL past the last. */
const char *agent_cap_name(size_t i);

/* A JSON string (a new reference) of bytes a program printed: jansson takes only UTF-8, and an agent
 * or a runtime may print anything, so each byte that does not start a valid sequence becomes U+FFFD.
 * The session's runtime events use it too: agent/ is the lowest module with jansson below both. */
json_t *agent_json_text(const char *s, size_t n);

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
/* What the agent can do (enum agent_cap bits), as far as agentd knows before it runs. */
unsigned agent_adapter_caps(const struct agent_adapter *a);
/* 1 when the program itself announces what it can do when it starts (jsonl, demo: a `capabilities`
 * line): agent_adapter_caps is then what the protocol allows, agent_parser_caps what it said. */
int agent_adapter_announces_caps(const struct agent_adapter *a);
/* 1 when the agent takes its permission mode once, when its process starts (Claude Code's flags): a
 * warm process started with another mode must be replaced. Else the mode goes with each message. */
int agent_adapter_approvals_per_process(const struct agent_adapter *a);
/* 1 when the agent is a local HTTP server rather than a program that reads its stdin (OpenCode:
 * `opencode serve`); see "agents over HTTP" below. */
int agent_adapter_over_http(const struct agent_adapter *a);

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
    const char *secret;         /* an agent over HTTP: the password only agentd knows (see below) */
    const char *native_session; /* the agent's own session id to resume; NULL for a first run */
    int fork;                   /* with native_session: continue a copy, leave the original */
    int bypass_permissions;     /* let the agent run every tool without asking (the environment is
                                 * the sandbox): Claude --dangerously-skip-permissions + IS_SANDBOX,
                                 * Codex --dangerously-bypass-approvals-and-sandbox */
    int approvals;              /* ask agentd before using tools (AGENT_CAP_APPROVALS): Claude
                                 * --permission-prompt-tool stdio (instead of bypass), jsonl
                                 * "approvals": true in the user line */
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
    int turn_by_send;    /* the message is not in stdin_data: send it with agent_send_turn once the
                            process runs (Codex: its thread must exist first) */
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

/* A parser for one agent process's stdout (one run's, or a warm agent's across its turns). a == NULL parses stderr instead: every line becomes a `log`
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
/* Whether a `result` event was delivered (in this turn: agent_send_turn starts the next one). */
int agent_parser_has_result(const struct agent_parser *p);
void agent_parser_free(struct agent_parser *p);

/* ---- talking to a running agent --------------------------------------------------------------- */

/* Where the agent_send_* functions (and the parser itself, for requests it must refuse) put bytes for
 * the agent's stdin; data is borrowed for the call. */
typedef void (*agent_write_cb)(void *arg, const char *data, size_t len);
void agent_parser_set_writer(struct agent_parser *p, agent_write_cb cb, void *arg);
/* What this process can do: the adapter's capabilities, or, for a program that announces its own,
 * what it announced so far (0 until its `capabilities` line). */
unsigned agent_parser_caps(const struct agent_parser *p);

/* Every agent_send_* returns 0 once the bytes went to the writer, -ENOTSUP when this agent (or
 * program) cannot do it, -EPIPE without a writer. */

/* The next message of a warm agent (opts as for agent_command: prompt, run_id, ... are the new
 * run's); the turn's result is expected anew. */
int agent_send_turn(struct agent_parser *p, const struct agent_run_opts *opts) CORE_UNUSED_RESULT;
/* More user input for the turn that runs now. */
int agent_send_steer(struct agent_parser *p, const char *run_id, const char *text) CORE_UNUSED_RESULT;
/* Stop the turn that runs now; the agent ends it with a result and stays. */
int agent_send_interrupt(struct agent_parser *p, const char *run_id) CORE_UNUSED_RESULT;

/* The answer to a permission_request. input is the request's input (borrowed), which some agents
 * want back on allow; updated_input (borrowed, NULL: none) replaces it. message says why (deny). */
struct agent_decision {
    int allow;
    const char *message;
    const json_t *input;
    const json_t *updated_input;
};
int agent_send_decision(struct agent_parser *p, const char *native_request,
                        const struct agent_decision *d) CORE_UNUSED_RESULT;

/* ---- agents over HTTP ------------------------------------------------------------------------ */

/*
 * An agent over HTTP (agent_adapter_over_http) is a server on 127.0.0.1 whose stdout says where it
 * listens (fed to the parser like any stdout); its stdin is not used. What the parser and the
 * agent_send_* functions hand the writer is then a request, one JSON object per call (a line):
 *
 *   {"tag", "method", "url", "body"?: JSON value, "stream"?: true}
 *
 * which the caller makes, with HTTP basic authentication as AGENT_HTTP_USER and the password it gave
 * the command as agent_run_opts.secret (the server refuses anyone else). A zero-length write is no
 * request: the adapter has nothing to send yet. The request's end goes back to the parser through
 * agent_parser_http_answer; a stream's Server-Sent Events, each event's data, through
 * agent_parser_http_event as they arrive. Events that carry nothing for the transcript (heartbeats,
 * other sessions' news) may produce no event at all, unlike stdout lines.
 */
#define AGENT_HTTP_USER "agentd"
void agent_parser_http_answer(struct agent_parser *p, const char *tag, int ok, long status, const char *body,
                              size_t len, const char *error);
void agent_parser_http_event(struct agent_parser *p, const char *data, size_t len);

#endif
