/*
 * mcp_tool.c — the `runtime` tool: its description and input schema (what the model reads to
 * decide how to call it), argument checking, and turning a runtime answer into a CallToolResult
 * whose text a model can read at a glance: the output first, then stderr and how the call ended
 * only when there is something to say.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/mcp_int.h"

#define MCP_TOOL_TIMEOUT_MAX_MS (24ull * 3600 * 1000)

static const char mcp__tool_text[] =
    "Run code in persistent bash/python/node runtimes that belong to this agentd session: variables, "
    "functions, imports and cwd persist between calls (`export X=1` or `cd dir` in one call holds in the "
    "next; `import pandas` happens once), like a terminal or notebook that stays open. "
    "Actions: exec runs `code` in `lang` (default bash) and returns stdout, stderr and the exit status; "
    "eval is exec with python as the default lang; state lists what the runtime holds (variables, "
    "functions, imported modules, cwd); reset restarts the runtime with a clean state; history lists "
    "the last calls (`limit`, default 100). Each language is a separate process, and one call runs at a "
    "time per language. A call is interrupted after `timeout_ms` (default 30000): the state is kept "
    "unless the code ignores the interrupt.";

static const char mcp__session_text[] =
    "Child sessions of this agent session. spawn starts a new session with the same agent and settings, "
    "sends it `text` as its first message, and returns its id; when one of its runs ends, you are told in "
    "a new message with its result. children lists the sessions spawned so far and their status.";

static json_t *mcp__session_tool_describe(void)
{
    return json_pack("{s:s, s:s, s:s, s:{s:s, s:{s:{s:s, s:[ss], s:s}, s:{s:s, s:s}}, s:[s]}}", "name",
                     MCP_SESSION_TOOL_NAME, "title", "Child sessions", "description", mcp__session_text,
                     "inputSchema", "type", "object", "properties", "action", "type", "string", "enum",
                     "spawn", "children", "description", "spawn: start a child session; children: list them",
                     "text", "type", "string", "description", "spawn: the child's first message (its task)",
                     "required", "action");
}

static json_t *mcp__tool_describe(void);

json_t *mcp__tools_describe(void)
{
    return json_pack("[o, o]", mcp__tool_describe(), mcp__session_tool_describe());
}

static json_t *mcp__tool_describe(void)
{
    return json_pack(
        "{s:s, s:s, s:s, s:{s:s, s:{s:{s:s, s:[sssss], s:s}, s:{s:s, s:s}, s:{s:s, s:[sss], s:s}, s:{s:s, "
        "s:i, s:s},"
        " s:{s:s, s:i, s:s}}, s:[s]}}",
        "name", MCP_TOOL_NAME, "title", "Persistent bash/python/node runtime", "description", mcp__tool_text,
        "inputSchema", "type", "object", "properties", "action", "type", "string", "enum", "exec", "eval",
        "state", "reset", "history", "description",
        "exec: run code; eval: run code, python by default; state: show variables, functions, imports, cwd; "
        "reset: fresh process; history: recent calls",
        "code", "type", "string", "description", "the code to run (exec, eval)", "lang", "type", "string",
        "enum", "bash", "python", "node", "description", "which runtime (default bash; python for eval)",
        "timeout_ms", "type", "integer", "minimum", 1, "description",
        "interrupt the call after this many milliseconds (default 30000)", "limit", "type", "integer",
        "minimum", 1, "description", "history: how many recent calls (default 100)", "required", "action");
}

/* ---- arguments ---------------------------------------------------------------------------- */

static const struct {
    const char *name;
    enum session_rt_action action;
} mcp__actions[] = {
    {"exec", SESSION_RT_EXEC},   {"eval", SESSION_RT_EVAL},       {"state", SESSION_RT_STATE},
    {"reset", SESSION_RT_RESET}, {"history", SESSION_RT_HISTORY},
};

/* A positive integer argument, or 0 when absent; -1 when present and not a positive integer. */
static long long mcp__positive(json_t *args, const char *name, long long max)
{
    json_t *v = json_object_get(args, name);
    if (v == NULL || json_is_null(v))
        return 0;
    /* Some clients send whole numbers as reals (5000.0); accept those. */
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : -1;
    if (d < 1 || d > (double)max || d != (double)(long long)d)
        return -1;
    return (long long)d;
}

static const char *mcp__session_tool_parse(json_t *args, struct session_rt_request *req)
{
    const char *action = json_string_value(json_object_get(args, "action"));
    json_t *text = json_object_get(args, "text");
    if (action && !strcmp(action, "children")) {
        req->action = SESSION_RT_CHILDREN;
        return NULL;
    }
    if (action == NULL || strcmp(action, "spawn"))
        return "action is required: spawn or children";
    if (!json_is_string(text) || json_string_length(text) == 0)
        return "text is required for spawn: the child's first message";
    req->action = SESSION_RT_SPAWN;
    req->code = json_string_value(text);
    req->code_len = json_string_length(text);
    return NULL;
}

const char *mcp__tool_parse(const char *name, json_t *args, struct session_rt_request *req, int *known)
{
    memset(req, 0, sizeof *req);
    *known = 1;
    if (!strcmp(name, MCP_SESSION_TOOL_NAME))
        return mcp__session_tool_parse(args, req);
    if (strcmp(name, MCP_TOOL_NAME)) {
        *known = 0;
        return NULL;
    }
    const char *action = json_string_value(json_object_get(args, "action"));
    if (action == NULL)
        return "action is required: one of exec, eval, state, reset, history";
    size_t i;
    for (i = 0; i < CORE_ARRAY_LEN(mcp__actions); i++)
        if (!strcmp(action, mcp__actions[i].name))
            break;
    if (i == CORE_ARRAY_LEN(mcp__actions))
        return "unknown action: use one of exec, eval, state, reset, history";
    req->action = mcp__actions[i].action;

    json_t *lang = json_object_get(args, "lang");
    if (lang != NULL && !json_is_null(lang)) {
        const char *l = json_string_value(lang);
        if (l == NULL || (strcmp(l, "bash") && strcmp(l, "python") && strcmp(l, "node")))
            return "lang must be bash, python or node";
        req->lang = l;
    }
    json_t *code = json_object_get(args, "code");
    if (code != NULL && !json_is_null(code) && !json_is_string(code))
        return "code must be a string";
    if (req->action == SESSION_RT_EXEC || req->action == SESSION_RT_EVAL) {
        if (!json_is_string(code))
            return "code is required for exec and eval: the source to run";
        req->code = json_string_value(code);
        req->code_len = json_string_length(code);
    }
    long long timeout = mcp__positive(args, "timeout_ms", (long long)MCP_TOOL_TIMEOUT_MAX_MS);
    if (timeout < 0)
        return "timeout_ms must be a positive integer (milliseconds, at most one day)";
    req->timeout_ms = (uint64_t)timeout;
    long long limit = mcp__positive(args, "limit", 1000000);
    if (limit < 0)
        return "limit must be a positive integer";
    req->limit = (size_t)limit;
    return NULL;
}

/* ---- results ------------------------------------------------------------------------------ */

/* {"content":[{"type":"text","text":...}],"isError":...}, plus structuredContent when given
 * (stolen). */
static json_t *mcp__tool_content(const char *text, size_t len, int is_error, json_t *structured)
{
    json_t *res = json_pack("{s:[{s:s, s:s%}], s:b}", "content", "type", "text", "text", text, len, "isError",
                            is_error);
    if (structured != NULL)
        json_object_set_new(res, "structuredContent", structured);
    return res;
}

json_t *mcp__tool_error(const char *text) { return mcp__tool_content(text, strlen(text), 1, NULL); }

/* Appends a string member of obj, separated from what came before by a line break. */
static void mcp__append_stream(struct buf *text, const char *label, json_t *value)
{
    size_t n = json_string_length(value);
    if (!json_is_string(value) || n == 0)
        return;
    if (text->len > 0 && text->p[text->len - 1] != '\n')
        buf_puts(text, "\n");
    if (label != NULL)
        buf_puts(text, label);
    buf_append(text, json_string_value(value), n);
}

/* The text of an exec/eval answer; returns whether the call failed. */
static int mcp__exec_text(json_t *ans, struct buf *text)
{
    json_int_t status = json_integer_value(json_object_get(ans, "status"));
    const char *outcome = json_string_value(json_object_get(ans, "outcome"));
    int timed_out = json_is_true(json_object_get(ans, "timed_out"));
    const char *error = json_string_value(json_object_get(ans, "error"));
    if (outcome == NULL)
        outcome = "ok";

    mcp__append_stream(text, NULL, json_object_get(ans, "stdout"));
    mcp__append_stream(text, "[stderr]\n", json_object_get(ans, "stderr"));
    json_t *value = json_object_get(ans, "value");
    if (json_is_string(value)) {
        mcp__append_stream(text, "[value] ", value);
    } else if (value != NULL && !json_is_null(value)) {
        char *v = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (v != NULL) {
            json_t *s = json_string(v);
            mcp__append_stream(text, "[value] ", s);
            json_decref(s);
            free(v);
        }
    }

    const char *note = NULL, *tail = "";
    char status_note[80];
    if (timed_out && !strcmp(outcome, "killed"))
        note = "[timed out; the code ignored the interrupt, so the runtime was killed: its state is lost and "
               "the "
               "next call starts a fresh process]";
    else if (timed_out)
        note = "[timed out: interrupted; variables and other state are kept]";
    else if (!strcmp(outcome, "interrupted"))
        note = "[interrupted; variables and other state are kept]";
    else if (!strcmp(outcome, "killed"))
        note = "[killed: the runtime's state is lost; the next call starts a fresh process]";
    else if (!strcmp(outcome, "exited")) {
        snprintf(status_note, sizeof status_note,
                 "[the code ended the runtime process (exit status %lld): ", (long long)status);
        note = status_note;
        tail = "its state is lost; the next call starts a fresh process]";
    } else if (!strcmp(outcome, "cancelled"))
        note = "[cancelled: the runtime was reset or closed before the code finished]";
    else if (!strcmp(outcome, "failed"))
        note = "[the runtime could not be started]";
    else if (status != 0) {
        snprintf(status_note, sizeof status_note, "[exit status %lld]", (long long)status);
        note = status_note;
    }
    int failed = note != NULL;
    if (note != NULL) {
        if (text->len > 0 && text->p[text->len - 1] != '\n')
            buf_puts(text, "\n");
        buf_puts(text, note);
        buf_puts(text, tail);
        if (error != NULL && !strcmp(outcome, "failed"))
            buf_printf(text, " %s", error);
    }
    if (text->len == 0)
        buf_puts(text, "(no output)");
    return failed;
}

json_t *mcp__tool_result(enum session_rt_action action, int call_failed, const char *json)
{
    json_t *ans = json ? json_loads(json, JSON_ALLOW_NUL, NULL) : NULL;
    if (call_failed) {
        json_t *err = json_object_get(ans, "error");
        const char *msg = json_string_value(json_object_get(err, "message"));
        const char *code = json_string_value(json_object_get(err, "code"));
        char *text =
            xasprintf("runtime call failed (%s): %s", code ? code : "error", msg ? msg : "no details");
        json_t *res = mcp__tool_error(text);
        free(text);
        json_decref(ans);
        return res;
    }
    if (!json_is_object(ans)) {
        json_decref(ans);
        return mcp__tool_error("runtime call failed: the runtime's answer could not be read");
    }

    struct buf text = {0};
    int failed = 0;
    if (action == SESSION_RT_EXEC || action == SESSION_RT_EVAL) {
        failed = mcp__exec_text(ans, &text);
    } else if (action == SESSION_RT_RESET) {
        buf_puts(&text, "reset: the next call starts a fresh process with a clean state");
    } else {
        /* state and history are structured already; compact JSON is what a model reads best. */
        char *dump = json_dumps(ans, JSON_COMPACT);
        buf_puts(&text, dump ? dump : "{}");
        free(dump);
    }
    json_t *res = mcp__tool_content(text.p, text.len, failed, ans);
    buf_free(&text);
    return res;
}
