/*
 * agent_jsonl.c — the jsonl adapter: agentd's own line protocol, so that any program can be an
 * agent. doc/AGENT-PROTOCOL.md is its specification; this file implements exactly that.
 *
 * agentd writes one "user" line on stdin and keeps stdin open for control lines ("cancel"); the
 * program writes vocabulary events on stdout, "session" to name its native session and "result"
 * to end the run. Lines are checked and normalised (shorthands expanded, defaults filled); a line
 * that breaks the protocol becomes a warn log that says why, with the line as native.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_int.h"

/* ================= command ================= */

static int jsonl_command(const struct agent_run_opts *o, struct agent_cmd *cmd)
{
    if (o->program == NULL)
        return -EINVAL; /* there is no default jsonl agent */
    agent__arg(cmd, o->program);
    agent__args(cmd, o->extra_args);

    json_t *user = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:b, s:s?}", "type", "user", "text", o->prompt,
                             "session", o->session_id, "run", o->run_id, "resume", o->native_session, "fork",
                             o->fork, "workspace", o->workspace);
    if (o->mcp) {
        json_t *mcp = json_object();
        if (o->mcp->url) {
            json_object_set_new(mcp, "url", json_string(o->mcp->url));
        } else {
            json_t *argv = json_array();
            for (size_t i = 0; o->mcp->command[i]; i++)
                json_array_append_new(argv, json_string(o->mcp->command[i]));
            json_object_set_new(mcp, "command", argv);
        }
        json_object_set_new(user, "mcp", mcp);
    }
    char *s = json_dumps(user, JSON_COMPACT);
    json_decref(user);
    char *line = xasprintf("%s\n", s);
    free(s);
    agent__stdin(cmd, line, strlen(line));
    cmd->stdin_keep_open = 1;

    static const struct {
        const char *name;
        size_t offset;
    } vars[] = {{"HOME", offsetof(struct agent_run_opts, home)},
                {"AGENTD_SESSION_ID", offsetof(struct agent_run_opts, session_id)},
                {"AGENTD_RUN_ID", offsetof(struct agent_run_opts, run_id)},
                {"AGENTD_MODEL", offsetof(struct agent_run_opts, model)},
                {"AGENTD_MODEL_BASE_URL", offsetof(struct agent_run_opts, base_url)},
                {"AGENTD_MODEL_API_KEY", offsetof(struct agent_run_opts, api_key)}};
    for (size_t i = 0; i < CORE_ARRAY_LEN(vars); i++) {
        const char *v = *(const char *const *)((const char *)o + vars[i].offset);
        if (v)
            agent__env(cmd, vars[i].name, v);
    }
    if (o->mcp && o->mcp->url)
        agent__env(cmd, "AGENTD_MCP_URL", o->mcp->url);
    return 0;
}

static char *jsonl_cancel_line(const char *run_id)
{
    json_t *j = json_pack("{s:s, s:s?}", "type", "cancel", "run", run_id);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char *line = xasprintf("%s\n", s);
    free(s);
    return line;
}

/* ================= stdout ================= */

/* The line's fields without type and native (the core sets those). */
static json_t *fields(json_t *line)
{
    json_t *ev = json_copy(line);
    json_object_del(ev, "type");
    json_object_del(ev, "native");
    return ev;
}

/* Fills key with def when it is absent; fails (returns 0) when present with another JSON type. */
static int want(json_t *ev, const char *key, json_type type, json_t *def)
{
    json_t *v = json_object_get(ev, key);
    if (v == NULL || json_is_null(v)) {
        if (def)
            json_object_set_new(ev, key, def);
        return def != NULL;
    }
    json_decref(def);
    return json_typeof(v) == type || (type == JSON_TRUE && json_is_boolean(v));
}

static int check_message(json_t *ev)
{
    if (!want(ev, "role", JSON_STRING, json_string("assistant")))
        return 0;
    const char *role = agent__str(ev, "role");
    if (strcmp(role, "assistant") != 0 && strcmp(role, "user") != 0)
        return 0;
    json_t *content = json_object_get(ev, "content");
    const char *text = agent__str(ev, "text");
    if (content == NULL && text) { /* shorthand {"type":"message","text":...} */
        json_object_set_new(ev, "content", json_pack("[{s:s, s:s}]", "type", "text", "text", text));
        json_object_del(ev, "text");
    } else if (json_is_string(content)) {
        json_object_set_new(ev, "content", json_pack("[{s:s, s:O}]", "type", "text", "text", content));
    } else if (!json_is_array(content)) {
        return 0;
    }
    return 1;
}

static int check_post_tool(json_t *ev)
{
    json_t *out = json_object_get(ev, "output");
    if (out && !json_is_string(out)) { /* structured output: keep it, as text */
        char *s = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
        json_object_set_new(ev, "output", json_string(s ? s : ""));
        free(s);
    }
    return want(ev, "output", JSON_STRING, json_string("")) &&
           want(ev, "is_error", JSON_TRUE, json_false()) &&
           (json_is_string(json_object_get(ev, "id")) || json_is_string(json_object_get(ev, "name")));
}

static int check_log(json_t *ev)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    if (!want(ev, "level", JSON_STRING, json_string("info")) || !want(ev, "text", JSON_STRING, NULL))
        return 0;
    for (size_t i = 0; i < CORE_ARRAY_LEN(levels); i++)
        if (strcmp(agent__str(ev, "level"), levels[i]) == 0)
            return 1;
    return 0;
}

static int check(const char *type, json_t *ev)
{
    if (strcmp(type, "message") == 0)
        return check_message(ev);
    if (strcmp(type, "delta") == 0)
        return want(ev, "text", JSON_STRING, NULL) && want(ev, "kind", JSON_STRING, json_string("text"));
    if (strcmp(type, "pre_tool") == 0)
        return want(ev, "name", JSON_STRING, NULL) && want(ev, "input", JSON_OBJECT, json_object());
    if (strcmp(type, "post_tool") == 0)
        return check_post_tool(ev);
    if (strcmp(type, "log") == 0)
        return check_log(ev);
    if (strcmp(type, "error") == 0)
        return want(ev, "message", JSON_STRING, NULL) &&
               want(ev, "code", JSON_STRING, json_string("agent_error")) &&
               want(ev, "retryable", JSON_TRUE, json_false());
    if (strcmp(type, "result") == 0)
        return want(ev, "is_error", JSON_TRUE, json_false()) &&
               want(ev, "text", JSON_STRING, json_string(""));
    return -1;
}

static void jsonl_line(struct agent_parser *p, json_t *line)
{
    const char *type = agent__str(line, "type");
    if (type == NULL)
        return;
    if (strcmp(type, "session") == 0) {
        const char *id = agent__str(line, "id");
        if (id && *id)
            agent__session(p, id, "jsonl");
        else
            agent__log(p, "warn", "jsonl: session line without an id");
        return;
    }
    json_t *ev = fields(line);
    int rc = check(type, ev);
    if (rc == 1 && strcmp(type, "result") == 0) {
        agent__result(p, ev);
        return;
    }
    if (rc == 1) {
        agent__emit(p, type, ev);
        return;
    }
    json_decref(ev);
    if (rc == 0)
        agent__log(p, "warn", "jsonl: malformed %s line (see doc/AGENT-PROTOCOL.md)", type);
}

/* The demo agent is the jsonl protocol spoken by agentd itself: program is agentd's own executable
 * (the session passes it, see agent_adapter_runs_self), started as `agentd demo-agent`. */
static int demo_command(const struct agent_run_opts *o, struct agent_cmd *cmd)
{
    static const char *const args[] = {"demo-agent", NULL};
    struct agent_run_opts own = *o;
    own.extra_args = args;
    return jsonl_command(&own, cmd);
}

const struct agent_adapter agent__demo = {
    .name = "demo",
    .program = NULL,
    .description = "built in: no API key, a reply made on the spot, tools that really run in the workspace",
    .runs_self = 1,
    .command = demo_command,
    .line = jsonl_line,
    .cancel_line = jsonl_cancel_line,
};

const struct agent_adapter agent__jsonl = {
    .name = "jsonl",
    .program = NULL,
    .description = "any program speaking agentd's jsonl protocol (doc/AGENT-PROTOCOL.md)",
    .command = jsonl_command,
    .line = jsonl_line,
    .cancel_line = jsonl_cancel_line,
};
