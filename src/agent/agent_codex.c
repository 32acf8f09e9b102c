/*
 * agent_codex.c — the codex adapter: `codex app-server`, Codex's JSON-RPC interface on stdio, one
 * long-lived process per session (warm): agentd initializes it, starts, resumes or forks a thread
 * (the native session), and sends each message as turn/start; turn/completed ends the run. The
 * model provider and agentd's MCP server go in $CODEX_HOME/config.toml, which the caller writes from
 * cmd->files.
 *
 * Verified with Codex 0.169.0 against tests/agents/fake_openai_responses.mjs, offline: approvals
 * (approvalPolicy "untrusted" per turn: item/commandExecution/requestApproval, answered accept or
 * decline; a decline reaches the model as the tool's failure "rejected by user"), turn/steer (the
 * text joins the running turn's next request as a user message), turn/interrupt (the turn ends
 * "interrupted" within ~40 ms; the command it ran is NOT stopped: Codex leaves it running, and the
 * next turn's prompt says so), thread/resume in a new process, thread/fork. A denial's message is
 * not passed on (the protocol has none). Requests agentd does not handle (user input, MCP
 * elicitation) are refused at once with a JSON-RPC error.
 *
 * The parser keeps the protocol's state (agent__state): the thread id, the turn that runs, the
 * next request id, a message waiting for its thread, the turn's text and token usage.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_int.h"

/* ================= command ================= */

/* Appends s as a TOML basic string, quotes included. */
static void toml_string(struct buf *b, const char *s)
{
    buf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            buf_printf(b, "\\u%04x", c);
        else
            buf_append(b, s, 1);
    }
    buf_puts(b, "\"");
}

/* config.toml for this run, or NULL when there is nothing to configure; free it. */
static char *codex_config(const struct agent_run_opts *o)
{
    if (o->base_url == NULL && o->mcp == NULL)
        return NULL;
    struct buf b = {0};
    buf_puts(&b, "# Written by agentd for this session; rewritten before every run.\n");
    if (o->base_url) {
        char *v1 = agent__base_v1(o->base_url);
        buf_puts(&b,
                 "model_provider = \"agentd\"\n\n[model_providers.agentd]\nname = \"agentd\"\nbase_url = ");
        toml_string(&b, v1);
        buf_puts(&b, "\nwire_api = \"responses\"\n"); /* codex rejects "chat" */
        if (o->api_key)
            buf_puts(&b, "env_key = \"AGENTD_MODEL_API_KEY\"\n");
        free(v1);
    }
    if (o->mcp) {
        buf_puts(&b, "\n[mcp_servers." AGENT_MCP_SERVER "]\n");
        if (o->mcp->url) {
            buf_puts(&b, "url = ");
            toml_string(&b, o->mcp->url);
        } else {
            buf_puts(&b, "command = ");
            toml_string(&b, o->mcp->command[0]);
            buf_puts(&b, "\nargs = [");
            for (size_t i = 1; o->mcp->command[i]; i++) {
                buf_puts(&b, i > 1 ? ", " : "");
                toml_string(&b, o->mcp->command[i]);
            }
            buf_puts(&b, "]");
        }
        buf_puts(&b, "\n");
    }
    return b.p;
}

/* The id of agentd's next JSON-RPC request to the process (ids 1 and 2 are the handshake's). */
static json_int_t codex_next_id(struct agent_parser *p)
{
    json_t *st = agent__state(p);
    json_int_t id = json_integer_value(json_object_get(st, "next_id"));
    if (id < 10)
        id = 10;
    json_object_set_new(st, "next_id", json_integer(id + 1));
    return id;
}

/* One JSON-RPC request line (params taken). */
static char *codex_request(json_int_t id, const char *method, json_t *params)
{
    return agent__line(
        json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id", id, "method", method, "params", params));
}

/* The thread request: thread/start, thread/resume or thread/fork, with the sandbox left to agentd's
 * environment and the permission mode of the first message. */
static char *codex_thread_request(const struct agent_run_opts *o)
{
    json_t *params = json_pack("{s:s, s:s}", "approvalPolicy", o->approvals ? "untrusted" : "never",
                               "sandbox", "danger-full-access");
    if (o->workspace)
        json_object_set_new(params, "cwd", json_string(o->workspace));
    if (o->model)
        json_object_set_new(params, "model", json_string(o->model));
    if (o->native_session)
        json_object_set_new(params, "threadId", json_string(o->native_session));
    const char *method = !o->native_session ? "thread/start" : o->fork ? "thread/fork" : "thread/resume";
    return codex_request(2, method, params);
}

static int codex_command(const struct agent_run_opts *o, struct agent_cmd *cmd)
{
    char *config = codex_config(o);
    if (config && o->home == NULL) {
        free(config);
        return -EINVAL;
    }
    agent__arg(cmd, o->program ? o->program : "codex");
    agent__arg(cmd, "app-server");
    agent__args(cmd, o->extra_args);
    /* The handshake and the thread; the message follows through agent_send_turn, once the thread
     * has an id (turn_by_send). Lines are read in order, so none waits for an answer. */
    struct buf in = {0};
    char *init = codex_request(1, "initialize",
                               json_pack("{s:{s:s, s:s}}", "clientInfo", "name", "agentd", "version", "1"));
    char *thread = codex_thread_request(o);
    buf_printf(&in, "%s{\"jsonrpc\":\"2.0\",\"method\":\"initialized\"}\n%s", init, thread);
    free(init);
    free(thread);
    agent__stdin(cmd, in.p, in.len);
    cmd->stdin_keep_open = 1;
    cmd->turn_by_send = 1;

    if (o->home) {
        char *codex_home = xasprintf("%s/.codex", o->home);
        agent__env(cmd, "HOME", o->home);
        agent__env(cmd, "CODEX_HOME", codex_home); /* threads live there: resume needs it */
        if (config)
            agent__file(cmd, codex_home, "config.toml", config);
        free(codex_home);
    }
    if (o->api_key)
        agent__env(cmd, "AGENTD_MODEL_API_KEY", o->api_key);
    return 0;
}

/* ================= control lines ================= */

static char *codex_turn_line(struct agent_parser *p, const struct agent_run_opts *o)
{
    json_t *st = agent__state(p);
    json_t *params = json_pack("{s:[{s:s, s:s}], s:s}", "input", "type", "text", "text", o->prompt,
                               "approvalPolicy", o->approvals ? "untrusted" : "never");
    const char *thread = agent__str(st, "thread");
    if (thread == NULL) { /* the thread is still being made: sent when it answers */
        json_object_set_new(st, "pending_turn", params);
        return xstrdup("");
    }
    json_object_set_new(params, "threadId", json_string(thread));
    return codex_request(codex_next_id(p), "turn/start", params);
}

static char *codex_steer_line(struct agent_parser *p, const char *run_id, const char *text)
{
    json_t *st = agent__state(p);
    const char *thread = agent__str(st, "thread"), *turn = agent__str(st, "turn");
    if (thread == NULL || turn == NULL)
        return NULL; /* no turn runs: nothing to steer */
    return codex_request(codex_next_id(p), "turn/steer",
                         json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "threadId", thread, "expectedTurnId", turn,
                                   "input", "type", "text", "text", text));
}

static char *codex_interrupt_line(struct agent_parser *p, const char *run_id)
{
    json_t *st = agent__state(p);
    const char *thread = agent__str(st, "thread"), *turn = agent__str(st, "turn");
    if (thread == NULL || turn == NULL)
        return NULL;
    return codex_request(codex_next_id(p), "turn/interrupt",
                         json_pack("{s:s, s:s}", "threadId", thread, "turnId", turn));
}

static char *codex_decision_line(struct agent_parser *p, const char *native, const struct agent_decision *d)
{
    (void)p;
    json_t *id = json_loads(native, JSON_DECODE_ANY, NULL); /* the server's request id, as it sent it */
    if (id == NULL)
        return NULL;
    return agent__line(json_pack("{s:s, s:o, s:{s:s}}", "jsonrpc", "2.0", "id", id, "result", "decision",
                                 d->allow ? "accept" : "decline"));
}

/* ================= app-server lines ================= */

/* The command a commandExecution runs, as the model wrote it: its one parsed action's command when
 * there is one (Codex wraps it as /bin/bash -lc '...'), else the whole line. */
static json_t *codex_command_of(json_t *item_or_params)
{
    json_t *actions = json_object_get(item_or_params, "commandActions");
    const char *one =
        json_array_size(actions) == 1 ? agent__str(json_array_get(actions, 0), "command") : NULL;
    const char *whole = agent__str(item_or_params, "command");
    return json_pack("{s:s}", "command", one ? one : whole ? whole : "");
}

/* Tool-like items: their pre_tool name and input (NULL: not a tool). */
static json_t *codex_tool(json_t *item, const char *type, char **name)
{
    if (strcmp(type, "commandExecution") == 0) {
        *name = xstrdup("command_execution");
        return codex_command_of(item);
    }
    if (strcmp(type, "mcpToolCall") == 0) {
        const char *server = agent__str(item, "server"), *tool = agent__str(item, "tool");
        *name = xasprintf("mcp__%s__%s", server ? server : "?", tool ? tool : "?");
        json_t *args = json_object_get(item, "arguments");
        return json_is_object(args) ? json_incref(args) : json_object();
    }
    if (strcmp(type, "fileChange") == 0) {
        *name = xstrdup("file_change");
        return json_pack("{s:O?}", "changes", json_object_get(item, "changes"));
    }
    if (strcmp(type, "webSearch") == 0) {
        *name = xstrdup("web_search");
        return json_pack("{s:O?}", "query", json_object_get(item, "query"));
    }
    return NULL;
}

static char *codex_tool_output(json_t *item, const char *type, int *is_error)
{
    const char *status = agent__str(item, "status");
    *is_error = status && (strcmp(status, "failed") == 0 || strcmp(status, "declined") == 0);
    if (strcmp(type, "commandExecution") == 0) {
        json_t *code = json_object_get(item, "exitCode");
        *is_error |= json_is_integer(code) && json_integer_value(code) != 0;
        const char *out = agent__str(item, "aggregatedOutput");
        return xstrdup(out ? out : *is_error && status ? status : "");
    }
    if (strcmp(type, "mcpToolCall") == 0) {
        json_t *err = json_object_get(item, "error");
        if (err && !json_is_null(err)) {
            *is_error = 1;
            return xstrdup(agent__str(err, "message") ? agent__str(err, "message") : "error");
        }
        return agent__content_text(json_object_get(json_object_get(item, "result"), "content"));
    }
    return xstrdup(status ? status : "");
}

static void codex_item(struct agent_parser *p, json_t *params, int completed)
{
    json_t *item = json_object_get(params, "item");
    const char *type = agent__str(item, "type"), *id = agent__str(item, "id");
    char *name = NULL;
    json_t *input = type ? codex_tool(item, type, &name) : NULL;
    if (input) {
        json_t *started = agent__state_obj(p, "started");
        if (!(id && json_object_get(started, id))) { /* an item may complete without a started line */
            agent__emit(p, "pre_tool", json_pack("{s:s?, s:s, s:O}", "id", id, "name", name, "input", input));
            if (id)
                json_object_set_new(started, id, json_true());
        } else if (!completed) {
            agent__log(p, "debug", "codex item/started %s again", type);
        }
        if (completed) {
            int is_error;
            char *out = codex_tool_output(item, type, &is_error);
            agent__emit(p, "post_tool",
                        json_pack("{s:s?, s:s, s:s, s:b}", "id", id, "name", name, "output", out, "is_error",
                                  is_error));
            free(out);
            if (id)
                json_object_del(started, id);
        }
        json_decref(input);
        free(name);
        return;
    }
    if (completed && type && strcmp(type, "agentMessage") == 0) {
        const char *text = agent__str(item, "text");
        agent__emit(p, "message",
                    json_pack("{s:s, s:s?, s:[{s:s, s:s}]}", "role", "assistant", "id", id, "content", "type",
                              "text", "text", text ? text : ""));
        json_object_set_new(agent__state(p), "last_text", json_string(text ? text : ""));
    } else if (completed && type && strcmp(type, "reasoning") == 0) {
        char *text = agent__content_text(json_object_get(item, "summary"));
        agent__emit(p, "message",
                    json_pack("{s:s, s:s?, s:[{s:s, s:s}]}", "role", "assistant", "id", id, "content", "type",
                              "thinking", "text", text));
        free(text);
    } else {
        agent__log(p, "debug", "codex item/%s %s", completed ? "completed" : "started", type ? type : "?");
    }
}

/* thread/tokenUsage/updated: each model request's usage adds to the turn's. */
static void codex_usage(struct agent_parser *p, json_t *params)
{
    json_t *last = json_object_get(json_object_get(params, "tokenUsage"), "last");
    json_t *u = agent__state_obj(p, "usage");
    static const char *const keys[][2] = {{"inputTokens", "input_tokens"},
                                          {"outputTokens", "output_tokens"},
                                          {"cachedInputTokens", "cache_read_input_tokens"}};
    for (size_t i = 0; i < CORE_ARRAY_LEN(keys); i++)
        json_object_set_new(u, keys[i][1],
                            json_integer(json_integer_value(json_object_get(u, keys[i][1])) +
                                         json_integer_value(json_object_get(last, keys[i][0]))));
    agent__log(p, "debug", "codex token usage updated");
}

/* turn/completed: the run's result (interrupted and failed turns are errors), and the turn's state
 * starts afresh. */
static void codex_turn_completed(struct agent_parser *p, json_t *params)
{
    json_t *st = agent__state(p), *turn = json_object_get(params, "turn");
    const char *status = agent__str(turn, "status"), *text = agent__str(st, "last_text");
    int ok = status == NULL || strcmp(status, "completed") == 0;
    const char *why = agent__str(json_object_get(turn, "error"), "message");
    if (!ok && status && strcmp(status, "interrupted") != 0)
        agent__error(p, "agent_error", why ? why : "the turn failed", 0);
    json_t *ev = json_pack("{s:b, s:s, s:O}", "is_error", !ok, "text",
                           ok    ? (text ? text : "")
                           : why ? why
                                 : status,
                           "usage", agent__state_obj(p, "usage"));
    if (status && strcmp(status, "interrupted") == 0)
        json_object_set_new(ev, "interrupted", json_true());
    json_object_del(st, "usage");
    json_object_del(st, "last_text");
    json_object_del(st, "turn");
    agent__result(p, ev);
}

/* A request from the server: approvals become permission_request; anything else is refused. */
static void codex_server_request(struct agent_parser *p, json_t *line, const char *method)
{
    json_t *params = json_object_get(line, "params"), *id = json_object_get(line, "id");
    char *native = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
    if (strcmp(method, "item/commandExecution/requestApproval") == 0 ||
        strcmp(method, "item/fileChange/requestApproval") == 0) {
        int command = method[5] == 'c';
        json_t *input = command ? codex_command_of(params)
                                : json_pack("{s:O?}", "reason", json_object_get(params, "reason"));
        agent__emit(p, "permission_request",
                    json_pack("{s:s, s:s, s:o, s:O?}", "native_request", native, "tool",
                              command ? "command_execution" : "file_change", "input", input, "tool_use_id",
                              json_object_get(params, "itemId")));
    } else {
        agent__log(p, "warn", "codex asked agentd for %s, which it does not handle: refused", method);
        char *out =
            agent__line(json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code",
                                  -32601, "message", "not supported by this client (agentd)"));
        (void)agent__write(p, out, strlen(out));
        free(out);
    }
    free(native);
}

/* An answer to one of agentd's requests: the thread's id (then the message waiting for it), the
 * turn's id, or a failure. */
static void codex_response(struct agent_parser *p, json_t *line)
{
    json_t *st = agent__state(p), *result = json_object_get(line, "result");
    json_int_t id = json_integer_value(json_object_get(line, "id"));
    json_t *err = json_object_get(line, "error");
    if (err) {
        const char *m = agent__str(err, "message");
        agent__error(p, "agent_error", m ? m : "codex refused a request", 0);
        if (id <= 2 || json_object_get(st, "pending_turn")) /* no thread: the run cannot go on */
            agent__result(p,
                          json_pack("{s:b, s:s}", "is_error", 1, "text", m ? m : "codex refused a request"));
        return;
    }
    const char *thread = agent__str(json_object_get(result, "thread"), "id");
    const char *turn = agent__str(json_object_get(result, "turn"), "id");
    if (thread && id == 2) {
        json_object_set_new(st, "thread", json_string(thread));
        agent__session(p, thread, "codex");
        json_t *pending = json_incref(json_object_get(st, "pending_turn"));
        json_object_del(st, "pending_turn");
        if (pending) {
            json_object_set_new(pending, "threadId", json_string(thread));
            char *req = codex_request(codex_next_id(p), "turn/start", pending);
            (void)agent__write(p, req, strlen(req));
            free(req);
        }
        return;
    }
    if (turn)
        json_object_set_new(st, "turn", json_string(turn));
    agent__log(p, "debug", "codex answered request %lld", (long long)id);
}

static void codex_line(struct agent_parser *p, json_t *line)
{
    const char *method = agent__str(line, "method");
    json_t *params = json_object_get(line, "params");
    if (method == NULL) {
        if (json_object_get(line, "id"))
            codex_response(p, line);
        return;
    }
    if (json_object_get(line, "id")) /* the server asks something of agentd */
        return codex_server_request(p, line, method);
    if (strcmp(method, "item/started") == 0 || strcmp(method, "item/completed") == 0) {
        codex_item(p, params, method[5] == 'c');
    } else if (strcmp(method, "item/agentMessage/delta") == 0 && agent__str(params, "delta")) {
        agent__emit(p, "delta", json_pack("{s:s, s:s}", "kind", "text", "text", agent__str(params, "delta")));
    } else if (strcmp(method, "turn/started") == 0) {
        const char *turn = agent__str(json_object_get(params, "turn"), "id");
        if (turn)
            json_object_set_new(agent__state(p), "turn", json_string(turn));
        agent__log(p, "debug", "codex turn started");
    } else if (strcmp(method, "turn/completed") == 0) {
        codex_turn_completed(p, params);
    } else if (strcmp(method, "thread/tokenUsage/updated") == 0) {
        codex_usage(p, params);
    } else if (strcmp(method, "error") == 0 || strcmp(method, "warning") == 0) {
        const char *m = agent__str(params, "message");
        if (m == NULL)
            m = agent__str(json_object_get(params, "error"), "message");
        agent__log(p, method[0] == 'e' ? "error" : "warn", "codex: %s", m ? m : method);
    } else {
        agent__log(p, "debug", "codex %s", method);
    }
}

/* Codex indexes its threads in $CODEX_HOME/state_*.sqlite by absolute rollout path (the parent's
 * home); without the index it finds the copied rollouts under the fork's own home. */
static int codex_fork_fixup(const struct agent_fork *f)
{
    char *dir = xasprintf("%s/.codex", f->home);
    DIR *d = opendir(dir);
    int rc = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "state_", 6) != 0 || strstr(e->d_name, ".sqlite") == NULL)
            continue;
        char *victim = xasprintf("%s/%s", dir, e->d_name);
        if (unlink(victim) != 0 && errno != ENOENT)
            rc = -errno;
        free(victim);
    }
    if (d)
        closedir(d);
    free(dir);
    return rc;
}

const struct agent_adapter agent__codex = {
    .name = "codex",
    .program = "codex",
    .description = "Codex (codex app-server: JSON-RPC on stdio)",
    .command = codex_command,
    .line = codex_line,
    .fork_fixup = codex_fork_fixup,
    .caps = AGENT_CAP_APPROVALS | AGENT_CAP_STEER | AGENT_CAP_INTERRUPT | AGENT_CAP_WARM,
    .turn_line = codex_turn_line,
    .steer_line = codex_steer_line,
    .interrupt_line = codex_interrupt_line,
    .decision_line = codex_decision_line,
};
