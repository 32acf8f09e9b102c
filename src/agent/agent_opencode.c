/*
 * agent_opencode.c — the opencode adapter: `opencode run --format json` with the prompt on stdin
 * (as an argument it mangles quotes), `--session ID` to continue, `--session ID --fork` to branch.
 * The provider and agentd's MCP server travel in OPENCODE_CONFIG_CONTENT, so no file is written;
 * HOME and the XDG directories point into the session's home, where OpenCode keeps its sessions.
 *
 * run --format json lines (captures opencode-*.jsonl) all carry sessionID: step_start, text and
 * reasoning parts, tool_use (one line per finished call, input and output together), step_finish
 * {reason, tokens, cost} — the run ends with the first step that did not stop for tool calls —
 * and error.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_int.h"

/* ================= command ================= */

/* OPENCODE_CONFIG_CONTENT, or NULL when there is nothing to configure; free it. */
static char *opencode_config(const struct agent_run_opts *o)
{
    if (o->base_url == NULL && o->mcp == NULL)
        return NULL;
    json_t *cfg = json_object();
    if (o->base_url) {
        char *v1 = agent__base_v1(o->base_url);
        json_t *options = json_pack("{s:s}", "baseURL", v1);
        if (o->api_key)
            json_object_set_new(options, "apiKey", json_string(o->api_key));
        json_object_set_new(cfg, "model", json_sprintf("agentd/%s", o->model));
        json_object_set_new(cfg, "provider",
                            json_pack("{s:{s:s, s:o, s:{s:{s:b}}}}", "agentd", "npm",
                                      "@ai-sdk/openai-compatible", "options", options, "models", o->model,
                                      "tool_call", 1));
        free(v1);
    }
    if (o->mcp) {
        json_t *server;
        if (o->mcp->url) {
            server = json_pack("{s:s, s:s}", "type", "remote", "url", o->mcp->url);
        } else {
            json_t *argv = json_array();
            for (size_t i = 0; o->mcp->command[i]; i++)
                json_array_append_new(argv, json_string(o->mcp->command[i]));
            server = json_pack("{s:s, s:o}", "type", "local", "command", argv);
        }
        json_object_set_new(cfg, "mcp", json_pack("{s:o}", AGENT_MCP_SERVER, server));
    }
    char *s = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    return s;
}

static int opencode_command(const struct agent_run_opts *o, struct agent_cmd *cmd)
{
    if (o->base_url && o->model == NULL)
        return -EINVAL; /* a provider of our own needs the model's name */
    agent__arg(cmd, o->program ? o->program : "opencode");
    agent__args(cmd, (const char *const[]){"run", "--format", "json", NULL});
    if (o->model && o->base_url == NULL)
        agent__args(cmd, (const char *const[]){"--model", o->model, NULL});
    if (o->native_session) {
        agent__args(cmd, (const char *const[]){"--session", o->native_session, NULL});
        if (o->fork)
            agent__arg(cmd, "--fork");
    }
    agent__args(cmd, o->extra_args);
    agent__stdin(cmd, xstrdup(o->prompt), strlen(o->prompt));

    if (o->home) {
        static const char *const xdg[][2] = {{"XDG_CONFIG_HOME", ".config"},
                                             {"XDG_DATA_HOME", ".local/share"},
                                             {"XDG_CACHE_HOME", ".cache"},
                                             {"XDG_STATE_HOME", ".local/state"}};
        agent__env(cmd, "HOME", o->home);
        for (size_t i = 0; i < CORE_ARRAY_LEN(xdg); i++) {
            char *dir = xasprintf("%s/%s", o->home, xdg[i][1]);
            agent__env(cmd, xdg[i][0], dir);
            free(dir);
        }
    }
    agent__env(cmd, "OPENCODE_DISABLE_MODELS_FETCH", "1");
    agent__env(cmd, "OPENCODE_DISABLE_AUTOUPDATE", "1");
    char *config = opencode_config(o);
    if (config)
        agent__env(cmd, "OPENCODE_CONFIG_CONTENT", config);
    free(config);
    return 0;
}

/* ================= run --format json ================= */

/* Adds the number at key of from (if any) to the running total at key of to. */
static void add_number(json_t *to, const char *key, const json_t *from)
{
    json_t *v = json_object_get(from, key);
    if (!json_is_number(v))
        return;
    json_object_set_new(to, key,
                        json_real(json_number_value(json_object_get(to, key)) + json_number_value(v)));
}

static void on_step_finish(struct agent_parser *p, json_t *part)
{
    json_t *st = agent__state(p);
    json_t *totals = agent__state_obj(p, "totals");
    json_t *tokens = json_object_get(part, "tokens");
    add_number(totals, "input", tokens);
    add_number(totals, "output", tokens);
    add_number(totals, "reasoning", tokens);
    add_number(totals, "read", json_object_get(tokens, "cache"));
    add_number(totals, "write", json_object_get(tokens, "cache"));
    add_number(totals, "cost", part);
    const char *reason = agent__str(part, "reason");
    if (reason && strcmp(reason, "tool-calls") == 0) {
        agent__log(p, "debug", "opencode step finished: tool-calls");
        return;
    }
    json_t *usage = json_object();
    static const char *const names[][2] = {{"input", "input_tokens"},
                                           {"output", "output_tokens"},
                                           {"reasoning", "reasoning_tokens"},
                                           {"read", "cache_read_input_tokens"},
                                           {"write", "cache_creation_input_tokens"}};
    for (size_t i = 0; i < CORE_ARRAY_LEN(names); i++) {
        json_t *v = json_object_get(totals, names[i][0]);
        if (v)
            json_object_set_new(usage, names[i][1], json_integer((json_int_t)json_number_value(v)));
    }
    const char *text = agent__str(st, "step_text");
    json_t *ev = json_pack("{s:b, s:s, s:o}", "is_error", 0, "text", text ? text : "", "usage", usage);
    if (json_object_get(totals, "cost"))
        json_object_set(ev, "cost_usd", json_object_get(totals, "cost"));
    if (reason)
        json_object_set_new(ev, "subtype", json_string(reason));
    agent__result(p, ev);
}

static void on_tool(struct agent_parser *p, json_t *part)
{
    json_t *state = json_object_get(part, "state");
    const char *id = agent__str(part, "callID"), *name = agent__str(part, "tool");
    const char *status = agent__str(state, "status");
    json_t *input = json_object_get(state, "input");
    agent__emit(p, "pre_tool", json_pack("{s:s?, s:s?, s:O?}", "id", id, "name", name, "input", input));
    if (status && strcmp(status, "error") == 0) {
        const char *err = agent__str(state, "error");
        agent__emit(p, "post_tool",
                    json_pack("{s:s?, s:s?, s:s, s:b}", "id", id, "name", name, "output", err ? err : "error",
                              "is_error", 1));
    } else if (status && strcmp(status, "completed") == 0) {
        const char *out = agent__str(state, "output");
        json_t *exit_code = json_object_get(json_object_get(state, "metadata"), "exit");
        int is_error = json_is_integer(exit_code) && json_integer_value(exit_code) != 0;
        agent__emit(p, "post_tool",
                    json_pack("{s:s?, s:s?, s:s, s:b}", "id", id, "name", name, "output", out ? out : "",
                              "is_error", is_error));
    }
}

static void on_text(struct agent_parser *p, json_t *part, int thinking)
{
    const char *text = agent__str(part, "text");
    text = text ? text : "";
    agent__emit(p, "message",
                json_pack("{s:s, s:s?, s:[{s:s, s:s}]}", "role", "assistant", "id",
                          agent__str(part, "messageID"), "content", "type", thinking ? "thinking" : "text",
                          "text", text));
    if (thinking)
        return;
    const char *so_far = agent__str(agent__state(p), "step_text");
    json_object_set_new(agent__state(p), "step_text", json_sprintf("%s%s", so_far ? so_far : "", text));
}

static void opencode_line(struct agent_parser *p, json_t *line)
{
    const char *type = agent__str(line, "type"), *sid = agent__str(line, "sessionID");
    const char *known = agent_parser_native_session(p);
    if (sid && (known == NULL || strcmp(known, sid) != 0))
        agent__session(p, sid, "opencode");
    if (type == NULL)
        return;
    json_t *part = json_object_get(line, "part");
    if (strcmp(type, "step_start") == 0) {
        json_object_del(agent__state(p), "step_text");
        agent__log(p, "debug", "opencode step started");
    } else if (strcmp(type, "text") == 0) {
        on_text(p, part, 0);
    } else if (strcmp(type, "reasoning") == 0) {
        on_text(p, part, 1);
    } else if (strcmp(type, "tool_use") == 0) {
        on_tool(p, part);
    } else if (strcmp(type, "step_finish") == 0) {
        on_step_finish(p, part);
    } else if (strcmp(type, "error") == 0) {
        json_t *err = json_object_get(line, "error");
        json_t *data = json_object_get(err, "data");
        const char *m = agent__str(data, "message");
        const char *name = agent__str(err, "name");
        agent__error(p, "agent_error",
                     m      ? m
                     : name ? name
                            : "error",
                     json_is_true(json_object_get(data, "isRetryable")));
    }
}

/* OpenCode records each session's directory in its database: point the copies at the fork's
 * workspace, or the forked session would run (and hang) in the parent's. */
static int opencode_fork_fixup(const struct agent_fork *f)
{
    char *db_path = xasprintf("%s/.local/share/opencode/opencode.db", f->home);
    sqlite3 *db = NULL;
    sqlite3_stmt *up = NULL;
    int rc = 0;
    if (access(db_path, F_OK) != 0)
        goto out; /* no sessions yet */
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE session SET directory = ?1, path = ?2 WHERE directory = ?3", -1, &up,
                           NULL) != SQLITE_OK) {
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_text(up, 1, f->workspace, -1, SQLITE_STATIC);
    sqlite3_bind_text(up, 2, f->workspace + 1, -1, SQLITE_STATIC);
    sqlite3_bind_text(up, 3, f->from_workspace, -1, SQLITE_STATIC);
    if (sqlite3_step(up) != SQLITE_DONE)
        rc = -EIO;
out:
    if (rc != 0)
        log_warn("agent: the fork's OpenCode sessions still name the parent's workspace: %s",
                 db ? sqlite3_errmsg(db) : "cannot open its database");
    sqlite3_finalize(up);
    sqlite3_close(db);
    free(db_path);
    return rc;
}

const struct agent_adapter agent__opencode = {
    .name = "opencode",
    .program = "opencode",
    .description = "OpenCode (the opencode CLI, run --format json)",
    .command = opencode_command,
    .line = opencode_line,
    .fork_fixup = opencode_fork_fixup,
};
