/*
 * agent_claude.c — the claude-code adapter: `claude -p --input-format stream-json --output-format
 * stream-json --verbose`, one long-lived process per session: each message is a `user` line on its
 * stdin (never an argument, which a variadic option could swallow), and the process answers it with
 * a turn that ends in a `result` line, then waits for the next one.
 *
 * The control protocol (what the Agent SDK speaks; shared/reference/agent-streams/
 * claude-control-*.log), as verified with Claude Code 2.1.197 against the fake model:
 * - approvals: with --permission-prompt-tool stdio the CLI sends control_request can_use_tool and
 *   waits for a control_response {behavior: allow, updatedInput} or {behavior: deny, message}; the
 *   message comes back to the model as the tool's (error) result. Read-only calls (`echo`, Read in
 *   the workspace) are not asked about unless an `ask` permission rule names the tool, so agentd
 *   passes one for each tool that acts (--settings).
 * - steer: a user line written while a turn runs reaches the model in that turn's next request (a
 *   system message "The user sent a new message while you were working: ..."), not as a new turn.
 * - interrupt: control_request interrupt ends the turn within ~20-200 ms (the running tool's child
 *   is killed) with a result of subtype error_during_execution; the process takes the next message.
 *
 * stdin lines are built here; nothing else writes to the process.
 * stream-json lines (AGENT-CLIS.md, captures in shared/reference/agent-streams/claude-*.jsonl):
 * system/init names the session; each assistant line holds one content block of a message (text,
 * thinking or tool_use); user lines return tool_result blocks; stream_event lines (with
 * --include-partial-messages) carry the Anthropic SSE events; result ends the run.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_int.h"

/* ================= command ================= */

/* {"mcpServers":{"rt":{...}}} for --mcp-config; free it. */
static char *mcp_config(const struct agent_mcp *mcp)
{
    json_t *server;
    if (mcp->url) {
        server = json_pack("{s:s, s:s}", "type", "http", "url", mcp->url);
    } else {
        json_t *args = json_array();
        for (size_t i = 1; mcp->command[i]; i++)
            json_array_append_new(args, json_string(mcp->command[i]));
        server = json_pack("{s:s, s:s, s:o}", "type", "stdio", "command", mcp->command[0], "args", args);
    }
    json_t *root = json_pack("{s:{s:o}}", "mcpServers", AGENT_MCP_SERVER, server);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

/* One user message as a stream-json line: the first, each next one, and steering text alike. */
static char *claude_user_line(const char *text)
{
    return agent__line(json_pack("{s:s, s:s, s:n, s:{s:s, s:[{s:s, s:s}]}}", "type", "user", "session_id", "",
                                 "parent_tool_use_id", "message", "role", "user", "content", "type", "text",
                                 "text", text));
}

/* --settings making every tool that reads or acts ask (can_use_tool) rather than run because the CLI
 * deems it harmless; free it. agentd's own runtime tool is allowed by name: agentd applies the
 * session's policy to it where it runs (the MCP endpoint). */
static char *claude_ask_settings(void)
{
    static const char *const tools[] = {"Bash", "Read", "Edit",     "Write",     "MultiEdit", "NotebookEdit",
                                        "Glob", "Grep", "WebFetch", "WebSearch", "Task"};
    json_t *ask = json_array();
    for (size_t i = 0; i < CORE_ARRAY_LEN(tools); i++)
        json_array_append_new(ask, json_string(tools[i]));
    json_t *j = json_pack("{s:{s:o}}", "permissions", "ask", ask);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static int claude_command(const struct agent_run_opts *o, struct agent_cmd *cmd)
{
    if (o->mcp && o->home == NULL)
        return -EINVAL;
    agent__arg(cmd, o->program ? o->program : "claude");
    agent__args(cmd, (const char *const[]){"-p", "--input-format", "stream-json", "--output-format",
                                           "stream-json", "--verbose", NULL});
    if (o->partial)
        agent__arg(cmd, "--include-partial-messages");
    if (o->model)
        agent__args(cmd, (const char *const[]){"--model", o->model, NULL});
    if (o->native_session) {
        agent__args(cmd, (const char *const[]){"--resume", o->native_session, NULL});
        if (o->fork)
            agent__arg(cmd, "--fork-session");
    }
    if (o->approvals) {
        char *settings = claude_ask_settings();
        agent__args(cmd,
                    (const char *const[]){"--permission-prompt-tool", "stdio", "--settings", settings, NULL});
        free(settings);
    } else if (o->bypass_permissions) {
        agent__arg(cmd, "--dangerously-skip-permissions");
        agent__env(cmd, "IS_SANDBOX", "1"); /* or the CLI refuses the flag as root */
    }
    if (o->mcp) {
        agent__file(cmd, o->home, "agentd-mcp.json", mcp_config(o->mcp));
        agent__args(cmd, (const char *const[]){"--mcp-config", cmd->files[cmd->nfiles - 1].path,
                                               "--strict-mcp-config",
                                               /* with '=': the option is variadic and would
                                                * take the next argument too */
                                               "--allowedTools=" AGENT_MCP_TOOL_CLAUDE, NULL});
    }
    agent__args(cmd, o->extra_args);
    char *line = claude_user_line(o->prompt);
    agent__stdin(cmd, line, strlen(line));
    cmd->stdin_keep_open = 1; /* for the next messages and control lines; EOF ends the process */

    if (o->home)
        agent__env(cmd, "HOME", o->home); /* sessions live in $HOME/.claude/projects: resume needs it */
    if (o->base_url)
        agent__env(cmd, "ANTHROPIC_BASE_URL", o->base_url);
    if (o->api_key)
        agent__env(cmd, "ANTHROPIC_API_KEY", o->api_key);
    agent__env(cmd, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    agent__env(cmd, "DISABLE_TELEMETRY", "1");
    agent__env(cmd, "DISABLE_ERROR_REPORTING", "1");
    agent__env(cmd, "DISABLE_AUTOUPDATER", "1");
    return 0;
}

/* ================= stream-json ================= */

/* Copies parent_tool_use_id (set inside a subagent's turn) onto an event. */
static json_t *with_parent(json_t *ev, json_t *line)
{
    const char *parent = agent__str(line, "parent_tool_use_id");
    if (parent)
        json_object_set_new(ev, "parent_tool_id", json_string(parent));
    return ev;
}

static void on_system(struct agent_parser *p, json_t *line)
{
    const char *sub = agent__str(line, "subtype");
    sub = sub ? sub : "";
    if (strcmp(sub, "init") == 0 && agent__str(line, "session_id")) {
        agent__session(p, agent__str(line, "session_id"), "claude-code");
    } else if (strcmp(sub, "api_retry") == 0) {
        agent__log(p, "warn", "model API error %lld (%s), retry %lld of %lld in %.0f ms",
                   json_integer_value(json_object_get(line, "error_status")),
                   agent__str(line, "error") ? agent__str(line, "error") : "?",
                   json_integer_value(json_object_get(line, "attempt")),
                   json_integer_value(json_object_get(line, "max_retries")),
                   json_number_value(json_object_get(line, "retry_delay_ms")));
    } else if (strcmp(sub, "status") == 0 || strncmp(sub, "hook_", 5) == 0) {
        const char *status = agent__str(line, "status");
        agent__log(p, "debug", "claude-code %s%s%s", sub, status ? ": " : "", status ? status : "");
    } else {
        agent__log(p, "info", "claude-code system/%s", sub);
    }
}

static void on_assistant(struct agent_parser *p, json_t *line)
{
    json_t *msg = json_object_get(line, "message");
    json_t *content = json_object_get(msg, "content");
    json_t *blocks = json_array(), *tools = json_array();
    size_t i;
    json_t *b;
    json_array_foreach (content, i, b) {
        const char *type = agent__str(b, "type");
        if (type && strcmp(type, "tool_use") == 0)
            json_array_append(tools, b);
        else if (type && strcmp(type, "thinking") == 0)
            json_array_append_new(
                blocks, json_pack("{s:s, s:s?}", "type", "thinking", "text", agent__str(b, "thinking")));
        else
            json_array_append(blocks, b);
    }
    if (json_array_size(blocks) > 0) {
        json_t *ev = json_pack("{s:s, s:O}", "role", "assistant", "content", blocks);
        if (agent__str(msg, "id"))
            json_object_set_new(ev, "id", json_string(agent__str(msg, "id")));
        agent__emit(p, "message", with_parent(ev, line));
    }
    json_array_foreach (tools, i, b) {
        const char *id = agent__str(b, "id"), *name = agent__str(b, "name");
        if (id && name) /* post_tool names the tool too */
            json_object_set_new(agent__state_obj(p, "tools"), id, json_string(name));
        json_t *input = json_object_get(b, "input");
        agent__emit(p, "pre_tool",
                    with_parent(json_pack("{s:s?, s:s?, s:O}", "id", id, "name", name, "input",
                                          input ? input : json_null()),
                                line));
    }
    json_decref(blocks);
    json_decref(tools);
}

static void on_user(struct agent_parser *p, json_t *line)
{
    json_t *content = json_object_get(json_object_get(line, "message"), "content");
    if (json_is_string(content)) {
        agent__emit(p, "message",
                    with_parent(json_pack("{s:s, s:[{s:s, s:O}]}", "role", "user", "content", "type", "text",
                                          "text", content),
                                line));
        return;
    }
    json_t *blocks = json_array();
    size_t i;
    json_t *b;
    json_array_foreach (content, i, b) {
        const char *type = agent__str(b, "type");
        if (type == NULL || strcmp(type, "tool_result") != 0) {
            json_array_append(blocks, b);
            continue;
        }
        const char *id = agent__str(b, "tool_use_id");
        const char *name = id ? agent__str(json_object_get(agent__state(p), "tools"), id) : NULL;
        char *text = agent__content_text(json_object_get(b, "content"));
        agent__emit(p, "post_tool",
                    with_parent(json_pack("{s:s?, s:s?, s:s, s:b}", "id", id, "name", name, "output", text,
                                          "is_error", json_is_true(json_object_get(b, "is_error"))),
                                line));
        free(text);
    }
    if (json_array_size(blocks) > 0)
        agent__emit(p, "message",
                    with_parent(json_pack("{s:s, s:O}", "role", "user", "content", blocks), line));
    json_decref(blocks);
}

static void on_result(struct agent_parser *p, json_t *line)
{
    const char *sid = agent__str(line, "session_id");
    if (sid && agent_parser_native_session(p) == NULL)
        agent__session(p, sid, "claude-code");
    int is_error = json_is_true(json_object_get(line, "is_error"));
    const char *text = agent__str(line, "result");
    const char *subtype = agent__str(line, "subtype");
    if (is_error) {
        json_int_t status = json_integer_value(json_object_get(line, "api_error_status"));
        agent__error(p, "agent_error",
                     text      ? text
                     : subtype ? subtype
                               : "the agent reported an error",
                     status >= 500 || status == 429);
    }
    json_t *ev = json_pack("{s:b, s:s}", "is_error", is_error, "text", text ? text : "");
    json_t *v;
    if ((v = json_object_get(line, "usage")))
        json_object_set(ev, "usage", v);
    if ((v = json_object_get(line, "total_cost_usd")) && json_is_number(v))
        json_object_set(ev, "cost_usd", v);
    if ((v = json_object_get(line, "duration_ms")) && json_is_number(v))
        json_object_set(ev, "duration_ms", v);
    if ((v = json_object_get(line, "num_turns")) && json_is_integer(v))
        json_object_set(ev, "num_turns", v);
    if (subtype)
        json_object_set_new(ev, "subtype", json_string(subtype));
    agent__result(p, ev);
}

static void on_stream_event(struct agent_parser *p, json_t *line)
{
    json_t *event = json_object_get(line, "event");
    const char *type = agent__str(event, "type");
    json_t *delta = json_object_get(event, "delta");
    const char *dtype = agent__str(delta, "type");
    static const char *const kinds[][3] = {{"text_delta", "text", "text"},
                                           {"thinking_delta", "thinking", "thinking"},
                                           {"input_json_delta", "tool_input", "partial_json"}};
    if (type && strcmp(type, "content_block_delta") == 0 && dtype) {
        for (size_t i = 0; i < CORE_ARRAY_LEN(kinds); i++) {
            if (strcmp(dtype, kinds[i][0]) != 0 || agent__str(delta, kinds[i][2]) == NULL)
                continue;
            json_t *ev = json_pack("{s:s, s:s, s:O?}", "kind", kinds[i][1], "text",
                                   agent__str(delta, kinds[i][2]), "index", json_object_get(event, "index"));
            agent__emit(p, "delta", with_parent(ev, line));
            return;
        }
    }
    agent__log(p, "debug", "claude-code stream %s", type ? type : "?");
}

/* control_request from the CLI: can_use_tool becomes a permission_request; anything else (hook
 * callbacks, SDK MCP messages: agentd registers neither) is refused at once, so the CLI never waits
 * for an answer that will not come. */
static void on_control_request(struct agent_parser *p, json_t *line)
{
    json_t *req = json_object_get(line, "request");
    const char *id = agent__str(line, "request_id"), *sub = agent__str(req, "subtype");
    if (id && sub && strcmp(sub, "can_use_tool") == 0 && agent__str(req, "tool_name")) {
        json_t *input = json_object_get(req, "input");
        json_t *ev = json_pack("{s:s, s:s, s:o}", "native_request", id, "tool", agent__str(req, "tool_name"),
                               "input", json_is_object(input) ? json_incref(input) : json_object());
        json_t *sugg = json_object_get(req, "permission_suggestions");
        if (json_is_array(sugg))
            json_object_set(ev, "suggestions", sugg);
        if (agent__str(req, "tool_use_id"))
            json_object_set_new(ev, "tool_use_id", json_string(agent__str(req, "tool_use_id")));
        agent__emit(p, "permission_request", ev);
        return;
    }
    agent__log(p, "warn", "claude-code asked agentd for %s, which it does not handle: refused",
               sub ? sub : "(no subtype)");
    if (id) {
        char *out = agent__line(json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "control_response", "response",
                                          "subtype", "error", "request_id", id, "error",
                                          "not supported by this host (agentd)"));
        (void)agent__write(p, out, strlen(out));
        free(out);
    }
}

static void claude_line(struct agent_parser *p, json_t *line)
{
    static const struct {
        const char *type;
        void (*fn)(struct agent_parser *, json_t *);
    } handlers[] = {
        {"system", on_system}, {"assistant", on_assistant},       {"user", on_user},
        {"result", on_result}, {"stream_event", on_stream_event}, {"control_request", on_control_request}};
    const char *type = agent__str(line, "type");
    for (size_t i = 0; type && i < CORE_ARRAY_LEN(handlers); i++)
        if (strcmp(type, handlers[i].type) == 0) {
            handlers[i].fn(p, line);
            return;
        }
    if (type && (strcmp(type, "control_response") == 0 || strcmp(type, "control_cancel_request") == 0 ||
                 strcmp(type, "keep_alive") == 0))
        agent__log(p, "debug", "claude-code %s", type);
}

/* Claude Code files a conversation under $HOME/.claude/projects/<its cwd, each character that is
 * not a letter or digit made '-'>: a fork's copy must sit under the fork's workspace to resume. */
static void claude_project_key(const char *path, char *out, size_t cap)
{
    size_t i = 0;
    for (; path[i] && i + 1 < cap; i++)
        out[i] = isalnum((unsigned char)path[i]) ? path[i] : '-';
    out[i] = '\0';
}

static int claude_fork_fixup(const struct agent_fork *f)
{
    char from_key[PATH_MAX], to_key[PATH_MAX];
    claude_project_key(f->from_workspace, from_key, sizeof from_key);
    claude_project_key(f->workspace, to_key, sizeof to_key);
    char *a = xasprintf("%s/.claude/projects/%s", f->home, from_key);
    char *b = xasprintf("%s/.claude/projects/%s", f->home, to_key);
    int rc = rename(a, b) == 0 || errno == ENOENT ? 0 : -errno;
    free(a);
    free(b);
    return rc;
}

/* ================= control lines ================= */

static char *claude_turn_line(struct agent_parser *p, const struct agent_run_opts *o)
{
    (void)p;
    return claude_user_line(o->prompt);
}

static char *claude_steer_line(struct agent_parser *p, const char *run_id, const char *text)
{
    (void)p;
    (void)run_id;
    return claude_user_line(text);
}

static char *claude_interrupt_line(struct agent_parser *p, const char *run_id)
{
    (void)run_id;
    json_t *st = agent__state(p);
    json_int_t n = json_integer_value(json_object_get(st, "interrupts")) + 1;
    json_object_set_new(st, "interrupts", json_integer(n));
    char id[64];
    snprintf(id, sizeof id, "agentd-interrupt-%lld", (long long)n);
    return agent__line(json_pack("{s:s, s:s, s:{s:s}}", "type", "control_request", "request_id", id,
                                 "request", "subtype", "interrupt"));
}

static char *claude_decision_line(struct agent_parser *p, const char *native, const struct agent_decision *d)
{
    (void)p;
    json_t *answer;
    if (d->allow) {
        const json_t *input = d->updated_input ? d->updated_input : d->input;
        answer = json_pack("{s:s, s:o}", "behavior", "allow", "updatedInput",
                           input ? json_incref((json_t *)input) : json_object());
    } else {
        answer = json_pack("{s:s, s:s}", "behavior", "deny", "message", d->message ? d->message : "denied");
    }
    return agent__line(json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "control_response", "response",
                                 "subtype", "success", "request_id", native, "response", answer));
}

const struct agent_adapter agent__claude = {
    .name = "claude-code",
    .program = "claude",
    .description = "Claude Code (the claude CLI, stream-json)",
    .command = claude_command,
    .line = claude_line,
    .fork_fixup = claude_fork_fixup,
    .caps = AGENT_CAP_APPROVALS | AGENT_CAP_STEER | AGENT_CAP_INTERRUPT | AGENT_CAP_WARM,
    .approvals_per_proc = 1,
    .turn_line = claude_turn_line,
    .steer_line = claude_steer_line,
    .interrupt_line = claude_interrupt_line,
    .decision_line = claude_decision_line,
};
