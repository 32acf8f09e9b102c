/*
 * agent_jsonl.c — the jsonl adapter: agentd's own line protocol, so that any program can be an
 * agent. doc/AGENT-PROTOCOL.md is its specification; this file implements exactly that.
 *
 * agentd writes one "user" line on stdin and keeps stdin open for control lines ("cancel"; with
 * protocol 2, "steer", "interrupt", "permission_response" and, to a warm program, the next "user"
 * line); the program writes vocabulary events on stdout, "session" to name its native session,
 * "capabilities" to say what of protocol 2 it does, "permission_request" to ask before a tool, and
 * "result" to end the run (or the turn). Lines are checked and normalised (shorthands expanded,
 * defaults filled); a line that breaks the protocol becomes a warn log that says why, with the line
 * as native.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_int.h"

/* ================= command ================= */

#define JSONL_PROTOCOL 2 /* doc/AGENT-PROTOCOL.md's version */

/* The "user" line of a run: the first stdin line, and each next message of a warm program. */
static char *jsonl_user_line(const struct agent_run_opts *o)
{
    json_t *user =
        json_pack("{s:s, s:i, s:s, s:s?, s:s?, s:s?, s:b, s:s?, s:b}", "type", "user", "protocol",
                  JSONL_PROTOCOL, "text", o->prompt, "session", o->session_id, "run", o->run_id, "resume",
                  o->native_session, "fork", o->fork, "workspace", o->workspace, "approvals", o->approvals);
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
    return agent__line(user);
}

static int jsonl_command(const struct agent_run_opts *o, struct agent_cmd *cmd)
{
    if (o->program == NULL)
        return -EINVAL; /* there is no default jsonl agent */
    agent__arg(cmd, o->program);
    agent__args(cmd, o->extra_args);
    char *line = jsonl_user_line(o);
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
    return agent__line(json_pack("{s:s, s:s?}", "type", "cancel", "run", run_id));
}

/* ================= protocol 2: control lines ================= */

static char *jsonl_turn_line(struct agent_parser *p, const struct agent_run_opts *o)
{
    (void)p;
    return jsonl_user_line(o);
}

static char *jsonl_steer_line(struct agent_parser *p, const char *run_id, const char *text)
{
    (void)p;
    return agent__line(json_pack("{s:s, s:s?, s:s}", "type", "steer", "run", run_id, "text", text));
}

static char *jsonl_interrupt_line(struct agent_parser *p, const char *run_id)
{
    (void)p;
    return agent__line(json_pack("{s:s, s:s?}", "type", "interrupt", "run", run_id));
}

static char *jsonl_decision_line(struct agent_parser *p, const char *native, const struct agent_decision *d)
{
    (void)p;
    json_t *j = json_pack("{s:s, s:s, s:s}", "type", "permission_response", "request", native, "decision",
                          d->allow ? "allow" : "deny");
    if (d->message)
        json_object_set_new(j, "message", json_string(d->message));
    if (d->updated_input)
        json_object_set(j, "updated_input", (json_t *)d->updated_input);
    return agent__line(j);
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

/* `capabilities`: which of protocol 2's abilities the program has; each a boolean. */
static void jsonl_capabilities(struct agent_parser *p, json_t *line)
{
    unsigned caps = 0;
    struct buf names = {0};
    for (size_t i = 0; agent_cap_name(i); i++) {
        if (!json_is_true(json_object_get(line, agent_cap_name(i))))
            continue;
        caps |= 1u << i;
        buf_printf(&names, "%s%s", names.len ? ", " : "", agent_cap_name(i));
    }
    agent__set_caps(p, caps);
    agent__log(p, "debug", "jsonl: the program can do: %s",
               names.len ? names.p : "nothing beyond protocol 1");
    buf_free(&names);
}

/* `permission_request` {request, tool, input?}: the program waits for agentd's answer. */
static void jsonl_permission(struct agent_parser *p, json_t *line)
{
    const char *id = agent__str(line, "request"), *tool = agent__str(line, "tool");
    json_t *input = json_object_get(line, "input");
    if (id == NULL || *id == '\0' || tool == NULL ||
        (input && !json_is_null(input) && !json_is_object(input))) {
        agent__log(p, "warn", "jsonl: malformed permission_request line (request and tool are required)");
        return;
    }
    agent__emit(p, "permission_request",
                json_pack("{s:s, s:s, s:o}", "native_request", id, "tool", tool, "input",
                          json_is_object(input) ? json_incref(input) : json_object()));
}

static void jsonl_line(struct agent_parser *p, json_t *line)
{
    const char *type = agent__str(line, "type");
    if (type == NULL)
        return;
    if (strcmp(type, "capabilities") == 0)
        return jsonl_capabilities(p, line);
    if (strcmp(type, "permission_request") == 0)
        return jsonl_permission(p, line);
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

/* What every adapter speaking the jsonl protocol has: its parser, its control lines, and the
 * capabilities a program may announce. */
#define JSONL_PROTOCOL_ADAPTER                                                            \
    .line = jsonl_line, .cancel_line = jsonl_cancel_line,                                 \
    .caps = AGENT_CAP_APPROVALS | AGENT_CAP_STEER | AGENT_CAP_INTERRUPT | AGENT_CAP_WARM, \
    .announces_caps = 1, .turn_line = jsonl_turn_line, .steer_line = jsonl_steer_line,    \
    .interrupt_line = jsonl_interrupt_line, .decision_line = jsonl_decision_line

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
    JSONL_PROTOCOL_ADAPTER,
};

const struct agent_adapter agent__jsonl = {
    .name = "jsonl",
    .program = NULL,
    .description = "any program speaking agentd's jsonl protocol (doc/AGENT-PROTOCOL.md)",
    .command = jsonl_command,
    JSONL_PROTOCOL_ADAPTER,
};
