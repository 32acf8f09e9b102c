/*
 * test_mcp — the MCP protocol core (src/mcp/mcp.c, mcp_tool.c) against a fake tool backend:
 * initialize negotiation, tools/list, error codes, notifications, batches, tool results and
 * asynchronous completion and cancellation.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/mcp.h"
#include "tap.h"

/* ---- the fake backend ----------------------------------------------------------------------- */

struct fake_call {
    session_rt_cb done;
    void *done_arg;
    int live;
};

struct fake {
    int sync;   /* answer inside start */
    int status; /* what a sync answer carries */
    const char *answer;
    int starts, cancels;
    struct session_rt_request last; /* strings copied into the buffers below */
    char session[64], lang[16];
    char code[256];
    size_t code_len;
    struct fake_call calls[8];
};

/* The backend's answer: status 200 is a success, any other a failure carrying json's error. */
static void fake_answer(session_rt_cb done, void *done_arg, int status, const char *json)
{
    struct session_rt_answer a = {.rc = status == 200 ? 0 : -EIO, .err = ERR_NOT_FOUND, .json = json};
    done(done_arg, &a);
}

static void *fake_start(void *arg, const char *session_id, const struct session_rt_request *req,
                        session_rt_cb done, void *done_arg)
{
    struct fake *f = arg;
    f->last = *req;
    snprintf(f->session, sizeof f->session, "%s", session_id);
    snprintf(f->lang, sizeof f->lang, "%s", req->lang ? req->lang : "");
    f->last.lang = req->lang ? f->lang : NULL;
    f->code_len = req->code_len < sizeof f->code ? req->code_len : sizeof f->code;
    if (req->code)
        memcpy(f->code, req->code, f->code_len);
    struct fake_call *c = &f->calls[f->starts++];
    if (f->sync) {
        fake_answer(done, done_arg, f->status, f->answer);
        return NULL;
    }
    c->done = done;
    c->done_arg = done_arg;
    c->live = 1;
    return c;
}

static void fake_cancel(void *arg, void *handle)
{
    struct fake *f = arg;
    struct fake_call *c = handle;
    c->live = 0;
    f->cancels++;
}

static void fake_finish(struct fake_call *c, int status, const char *json)
{
    c->live = 0;
    fake_answer(c->done, c->done_arg, status, json);
}

/* ---- reply capture -------------------------------------------------------------------------- */

struct got {
    int calls;
    int rejected, initialized;
    json_t *reply; /* NULL when nothing was answered */
};

static void on_reply(void *arg, const struct mcp_reply *r)
{
    struct got *g = arg;
    g->calls++;
    g->rejected = r->rejected;
    g->initialized = r->initialized;
    json_decref(g->reply);
    g->reply = r->json ? json_loadb(r->json, r->len, 0, NULL) : NULL;
    if (r->json && (strlen(r->json) != r->len || g->reply == NULL))
        ok(0, "reply is one valid JSON text: %s", r->json);
}

/* Runs a synchronous exchange and returns the reply (owned by g, replaced by the next one). */
static json_t *roundtrip(struct mcp *m, struct got *g, const char *body)
{
    json_decref(g->reply);
    memset(g, 0, sizeof *g);
    struct mcp_exchange *ex = mcp_handle(m, "s1", body, strlen(body), on_reply, g);
    if (!ok(ex == NULL && g->calls == 1, "answered at once: %s", body))
        mcp_exchange_cancel(ex);
    return g->reply;
}

static int error_code(json_t *reply)
{
    return (int)json_integer_value(json_object_get(json_object_get(reply, "error"), "code"));
}

static const char *text_of(json_t *reply)
{
    json_t *content = json_object_get(json_object_get(reply, "result"), "content");
    return json_string_value(json_object_get(json_array_get(content, 0), "text"));
}

static int is_error(json_t *reply)
{
    return json_is_true(json_object_get(json_object_get(reply, "result"), "isError"));
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_initialize(struct mcp *m)
{
    struct got g = {0};
    static const char *const versions[] = {"2025-06-18", "2025-03-26", "2024-11-05"};
    for (size_t i = 0; i < 3; i++) {
        char body[256];
        snprintf(
            body, sizeof body,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"%s\","
            "\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}",
            versions[i]);
        json_t *r = roundtrip(m, &g, body);
        is_str(json_string_value(json_object_get(json_object_get(r, "result"), "protocolVersion")),
               versions[i], "initialize answers the client's %s", versions[i]);
    }
    ok(g.initialized && !g.rejected, "initialize is flagged for the transport");
    json_t *r = roundtrip(m, &g,
                          "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"initialize\",\"params\":"
                          "{\"protocolVersion\":\"2099-01-01\"}}");
    json_t *res = json_object_get(r, "result");
    is_str(json_string_value(json_object_get(res, "protocolVersion")), MCP_PROTOCOL_LATEST,
           "an unknown revision gets the newest");
    is_str(json_string_value(json_object_get(r, "id")), "a", "string id echoed");
    ok(json_is_object(json_object_get(json_object_get(res, "capabilities"), "tools")),
       "capabilities.tools is {}");
    is_str(json_string_value(json_object_get(json_object_get(res, "serverInfo"), "name")), "agentd",
           "serverInfo.name");
    ok(json_is_string(json_object_get(json_object_get(res, "serverInfo"), "version")), "serverInfo.version");
    r = roundtrip(m, &g, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\"}");
    is_str(json_string_value(json_object_get(json_object_get(r, "result"), "protocolVersion")),
           MCP_PROTOCOL_LATEST, "initialize without params gets the newest");
    ok(mcp_protocol_supported("2025-03-26") && !mcp_protocol_supported("2025-03-27") &&
           !mcp_protocol_supported(NULL),
       "mcp_protocol_supported");
    json_decref(g.reply);
}

static void test_notifications_and_ping(struct mcp *m)
{
    struct got g = {0};
    ok(roundtrip(m, &g, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}") == NULL &&
           !g.rejected,
       "notifications/initialized gets no reply");
    ok(roundtrip(m, &g, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/whatever\",\"params\":{}}") == NULL,
       "unknown notifications get no reply");
    ok(roundtrip(m, &g, "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}") == NULL && !g.rejected,
       "a client's response gets no reply");
    json_t *r = roundtrip(m, &g, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}");
    ok(json_is_object(json_object_get(r, "result")) && json_object_size(json_object_get(r, "result")) == 0,
       "ping answers {}");
    is_int(json_integer_value(json_object_get(r, "id")), 7, "ping id echoed");
    is_str(json_string_value(json_object_get(r, "jsonrpc")), "2.0", "jsonrpc 2.0");
    json_decref(g.reply);
}

static void test_tools_list(struct mcp *m)
{
    struct got g = {0};
    json_t *r = roundtrip(m, &g, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\",\"params\":{}}");
    json_t *tools = json_object_get(json_object_get(r, "result"), "tools");
    is_int(json_array_size(tools), 2, "two tools");
    is_str(json_string_value(json_object_get(json_array_get(tools, 1), "name")), "session",
           "the second is session (child sessions)");
    json_t *tool = json_array_get(tools, 0);
    is_str(json_string_value(json_object_get(tool, "name")), "runtime", "the first is runtime");
    const char *desc = json_string_value(json_object_get(tool, "description"));
    ok(desc && strstr(desc, "persist between calls") && strstr(desc, "bash/python/node"),
       "description says what persists");
    json_t *schema = json_object_get(tool, "inputSchema");
    is_str(json_string_value(json_object_get(schema, "type")), "object", "inputSchema is an object schema");
    json_t *props = json_object_get(schema, "properties");
    json_t *actions = json_object_get(json_object_get(props, "action"), "enum");
    char *dump = json_dumps(actions, JSON_COMPACT);
    is_str(dump, "[\"exec\",\"eval\",\"state\",\"reset\",\"history\"]", "action enum");
    free(dump);
    dump = json_dumps(json_object_get(json_object_get(props, "lang"), "enum"), JSON_COMPACT);
    is_str(dump, "[\"bash\",\"python\",\"node\"]", "lang enum");
    free(dump);
    is_str(json_string_value(json_object_get(json_object_get(props, "code"), "type")), "string",
           "code: string");
    is_str(json_string_value(json_object_get(json_object_get(props, "timeout_ms"), "type")), "integer",
           "timeout_ms: integer");
    is_str(json_string_value(json_object_get(json_object_get(props, "limit"), "type")), "integer",
           "limit: integer");
    is_str(json_string_value(json_array_get(json_object_get(schema, "required"), 0)), "action",
           "action required");
    json_decref(g.reply);
}

static void test_errors(struct mcp *m)
{
    struct got g = {0};
    json_t *r = roundtrip(m, &g, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"resources/list\"}");
    is_int(error_code(r), MCP_METHOD_NOT_FOUND, "unknown method: -32601");
    is_int(json_integer_value(json_object_get(r, "id")), 4, "with its id");
    ok(!g.rejected, "a well-formed request with an unknown method is not rejected");

    r = roundtrip(m, &g, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":");
    is_int(error_code(r), MCP_PARSE_ERROR, "malformed JSON: -32700");
    ok(json_is_null(json_object_get(r, "id")) && g.rejected, "id null, rejected");
    r = roundtrip(m, &g, "");
    is_int(error_code(r), MCP_PARSE_ERROR, "empty body: -32700");

    static const char *const invalid[] = {
        "1",
        "\"ping\"",
        "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
        "{\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}",
        "[]",
    };
    for (size_t i = 0; i < CORE_ARRAY_LEN(invalid); i++) {
        r = roundtrip(m, &g, invalid[i]);
        ok(error_code(r) == MCP_INVALID_REQUEST && g.rejected, "invalid request -32600, rejected: %s",
           invalid[i]);
    }
    r = roundtrip(m, &g, "{\"jsonrpc\":\"1.0\",\"id\":\"x\",\"method\":\"ping\"}");
    is_str(json_string_value(json_object_get(r, "id")), "x", "an invalid request keeps a usable id");

    r = roundtrip(m, &g,
                  "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"}}");
    is_int(error_code(r), MCP_INVALID_PARAMS, "unknown tool: -32602");
    r = roundtrip(m, &g, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":[1]}");
    is_int(error_code(r), MCP_INVALID_PARAMS, "tools/call params not an object: -32602");
    r = roundtrip(m, &g,
                  "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"runtime\","
                  "\"arguments\":\"exec\"}}");
    is_int(error_code(r), MCP_INVALID_PARAMS, "arguments not an object: -32602");
    json_decref(g.reply);
}

static void test_batches(struct mcp *m)
{
    struct got g = {0};
    json_t *r = roundtrip(m, &g,
                          "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
                          "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},"
                          "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"},"
                          "7,"
                          "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}]");
    ok(json_is_array(r) && json_array_size(r) == 4 && !g.rejected, "a batch gets an array, one per request");
    is_int(json_integer_value(json_object_get(json_array_get(r, 0), "id")), 1, "in order: ping");
    is_int(error_code(json_array_get(r, 1)), MCP_METHOD_NOT_FOUND, "in order: unknown method");
    is_int(error_code(json_array_get(r, 2)), MCP_INVALID_REQUEST, "in order: invalid element");
    is_int(json_integer_value(json_object_get(json_array_get(r, 3), "id")), 3, "in order: tools/list");
    ok(roundtrip(m, &g,
                 "[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},"
                 "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}]") == NULL &&
           !g.rejected,
       "a batch of notifications and responses gets no reply");
    json_decref(g.reply);
}

#define CALL(args)                                       \
    "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/" \
    "call\",\"params\":{\"name\":\"runtime\",\"arguments\":" args "}}"

static void test_tool_calls_sync(struct mcp *m, struct fake *f)
{
    struct got g = {0};
    f->sync = 1;
    f->status = 200;
    f->answer = "{\"stdout\":\"42\\n\",\"stderr\":\"\",\"status\":0,\"duration_us\":5,\"truncated\":false,"
                "\"outcome\":\"ok\",\"timed_out\":false}";
    json_t *r =
        roundtrip(m, &g, CALL("{\"action\":\"exec\",\"code\":\"echo $((X+1))\",\"timeout_ms\":5000}"));
    is_str(text_of(r), "42\n", "exec: the text is stdout");
    ok(!is_error(r), "exec: isError false");
    is_str(json_string_value(
               json_object_get(json_object_get(json_object_get(r, "result"), "structuredContent"), "stdout")),
           "42\n", "structuredContent is the runtime's answer");
    is_str(json_string_value(json_object_get(
               json_array_get(json_object_get(json_object_get(r, "result"), "content"), 0), "type")),
           "text", "content type text");
    is_int(f->last.action, SESSION_RT_EXEC, "backend got exec");
    ok(f->last.lang == NULL, "no lang: the backend's default");
    is_int(f->last.timeout_ms, 5000, "timeout_ms passed");
    is_str(f->session, "s1", "session id passed");
    ok(f->code_len == strlen("echo $((X+1))") && !memcmp(f->code, "echo $((X+1))", f->code_len),
       "code passed");

    f->answer =
        "{\"stdout\":\"partial\",\"stderr\":\"boom\\n\",\"status\":1,\"outcome\":\"ok\",\"timed_out\":false}";
    r = roundtrip(m, &g, CALL("{\"action\":\"exec\",\"code\":\"false\",\"lang\":\"python\"}"));
    is_str(text_of(r), "partial\n[stderr]\nboom\n[exit status 1]", "failure: stdout, stderr and status");
    ok(is_error(r), "non-zero status: isError");
    is_str(f->last.lang, "python", "lang passed");

    f->answer =
        "{\"stdout\":\"\",\"stderr\":\"\",\"status\":130,\"outcome\":\"interrupted\",\"timed_out\":true}";
    r = roundtrip(m, &g, CALL("{\"action\":\"eval\",\"code\":\"import time; time.sleep(100)\"}"));
    ok(text_of(r) && strstr(text_of(r), "timed out") && strstr(text_of(r), "kept"),
       "timeout: says so, state kept");
    ok(is_error(r), "timeout: isError");
    is_int(f->last.action, SESSION_RT_EVAL, "eval passed as eval");

    f->answer = "{\"stdout\":\"\",\"stderr\":\"\",\"status\":0,\"outcome\":\"ok\"}";
    r = roundtrip(m, &g, CALL("{\"action\":\"exec\",\"code\":\"true\"}"));
    is_str(text_of(r), "(no output)", "no output is said so");

    f->answer = "{\"lang\":\"bash\",\"running\":true,\"cwd\":\"/tmp\",\"exported\":{\"X\":\"41\"}}";
    r = roundtrip(m, &g, CALL("{\"action\":\"state\",\"lang\":\"bash\"}"));
    ok(text_of(r) && strstr(text_of(r), "\"X\":\"41\"") && !is_error(r), "state: the JSON as text");
    is_int(f->last.action, SESSION_RT_STATE, "state passed");

    f->answer = "{\"calls\":[]}";
    r = roundtrip(m, &g, CALL("{\"action\":\"history\",\"limit\":3}"));
    is_int(f->last.limit, 3, "history limit passed");
    ok(json_is_array(
           json_object_get(json_object_get(json_object_get(r, "result"), "structuredContent"), "calls")),
       "history structured");

    f->answer = "{\"ok\":true}";
    r = roundtrip(m, &g, CALL("{\"action\":\"reset\"}"));
    ok(text_of(r) && strstr(text_of(r), "fresh") && !is_error(r), "reset text");

    f->status = 404;
    f->answer = "{\"error\":{\"code\":\"not_found\",\"message\":\"no session s1\"}}";
    r = roundtrip(m, &g, CALL("{\"action\":\"exec\",\"code\":\"true\"}"));
    ok(is_error(r) && strstr(text_of(r), "no session s1") && json_object_get(r, "error") == NULL,
       "a backend error is a tool error with its message");

    f->status = 200;
    f->answer = "{\"stdout\":\"\",\"stderr\":\"\",\"status\":0,\"outcome\":\"ok\"}";
    r = roundtrip(m, &g, CALL("{\"action\":\"exec\",\"code\":\"a\\u0000b\"}"));
    ok(f->code_len == 3 && f->code[1] == '\0', "code with NUL keeps its length");

    int starts = f->starts;
    static const char *const bad[] = {
        CALL("{}"),
        CALL("{\"action\":\"fly\"}"),
        CALL("{\"action\":\"exec\"}"),
        CALL("{\"action\":\"exec\",\"code\":1}"),
        CALL("{\"action\":\"exec\",\"code\":\"x\",\"lang\":\"ruby\"}"),
        CALL("{\"action\":\"exec\",\"code\":\"x\",\"timeout_ms\":-5}"),
        CALL("{\"action\":\"exec\",\"code\":\"x\",\"timeout_ms\":\"5\"}"),
        CALL("{\"action\":\"history\",\"limit\":0}"),
    };
    for (size_t i = 0; i < CORE_ARRAY_LEN(bad); i++) {
        r = roundtrip(m, &g, bad[i]);
        ok(is_error(r) && text_of(r) && json_object_get(r, "error") == NULL,
           "bad arguments are a tool error the model reads: %s", text_of(r) ? text_of(r) : bad[i]);
    }
    is_int(f->starts, starts, "bad arguments never reach the backend");
    r = roundtrip(
        m, &g, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"runtime\"}}");
    ok(is_error(r), "no arguments: a tool error (action is required)");
    json_decref(g.reply);
    f->sync = 0;
}

static void test_tool_calls_async(struct mcp *m, struct fake *f)
{
    struct got g = {0};
    f->starts = 0;
    const char *body = "[" CALL(
        "{\"action\":\"exec\",\"code\":\"sleep 1\"}") ","
                                                      "{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"ping\"},"
                                                      "{\"jsonrpc\":\"2.0\",\"id\":13,\"method\":\"tools/"
                                                      "call\",\"params\":{\"name\":\"runtime\","
                                                      "\"arguments\":{\"action\":\"state\"}}}]";
    struct mcp_exchange *ex = mcp_handle(m, "s2", body, strlen(body), on_reply, &g);
    ok(ex != NULL && g.calls == 0 && f->starts == 2, "two calls run, the reply waits");
    fake_finish(&f->calls[1], 200, "{\"lang\":\"bash\",\"running\":false}");
    is_int(g.calls, 0, "still waiting for the first call");
    fake_finish(&f->calls[0], 200, "{\"stdout\":\"done\",\"stderr\":\"\",\"status\":0,\"outcome\":\"ok\"}");
    is_int(g.calls, 1, "replied once every call finished");
    ok(json_array_size(g.reply) == 3, "three replies");
    is_str(text_of(json_array_get(g.reply, 0)), "done", "in request order: exec first");
    is_int(json_integer_value(json_object_get(json_array_get(g.reply, 1), "id")), 12, "then ping");
    is_int(json_integer_value(json_object_get(json_array_get(g.reply, 2), "id")), 13, "then state");

    json_decref(g.reply);
    memset(&g, 0, sizeof g);
    f->starts = f->cancels = 0;
    body = CALL("{\"action\":\"exec\",\"code\":\"sleep 100\"}");
    ex = mcp_handle(m, "s2", body, strlen(body), on_reply, &g);
    ok(ex != NULL && f->calls[0].live, "call pending");
    mcp_exchange_cancel(ex);
    ok(f->cancels == 1 && !f->calls[0].live && g.calls == 0, "cancel reaches the backend; no reply");
    json_decref(g.reply);
}

int main(void)
{
    struct fake f = {0};
    struct mcp_backend backend = {.start = fake_start, .cancel = fake_cancel, .arg = &f};
    struct mcp *m = mcp_new(&backend);
    test_initialize(m);
    test_notifications_and_ping(m);
    test_tools_list(m);
    test_errors(m);
    test_batches(m);
    test_tool_calls_sync(m, &f);
    test_tool_calls_async(m, &f);
    mcp_free(m);
    mcp_free(NULL);
    return done_testing();
}
