/*
 * mcp.c — the JSON-RPC 2.0 side of the MCP server: parsing, validation, dispatch, batches and
 * asynchronous tool calls. See mcp.h.
 *
 * Ownership: an exchange owns one slot per message of its input. A slot owns its reply (NULL
 * while its tool call runs, or forever when the message is a notification) and, while the call
 * runs, references to the request id and to the arguments object that the backend's request
 * strings point into. The exchange lives while `pending` is nonzero: one count per running tool
 * call, plus one held by mcp_handle itself, so that a backend answering synchronously cannot
 * finish (and free) the exchange under mcp_handle's feet.
 */
#include "mcp/mcp.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/mcp_int.h"

struct mcp {
    struct mcp_backend backend;
};

struct mcp__slot {
    struct mcp_exchange *ex;
    json_t *reply;
    json_t *id;
    json_t *args;
    void *handle; /* the backend's, while running */
    enum session_rt_action action;
    int running;
    int invalid; /* the message was not a JSON-RPC message (reply is -32600) */
};

struct mcp_exchange {
    struct mcp *m;
    char *session_id;
    mcp_reply_cb cb;
    void *arg;
    struct mcp__slot *slots;
    size_t n;
    size_t pending;
    int batch;
    int rejected;
    int initialized;
};

/* Newest first: an unknown client revision is answered with the first. */
static const char *const mcp__versions[] = {"2025-06-18", "2025-03-26", "2024-11-05"};

static const char mcp__instructions[] =
    "agentd keeps persistent bash, python and node processes for this session. Use the runtime tool "
    "instead of one-off shells when state should carry over: variables, functions, imports and the "
    "working directory persist between calls.";

struct mcp *mcp_new(const struct mcp_backend *backend)
{
    struct mcp *m = xcalloc(1, sizeof *m);
    m->backend = *backend;
    return m;
}

void mcp_free(struct mcp *m) { free(m); }

int mcp_protocol_supported(const char *version)
{
    for (size_t i = 0; version != NULL && i < CORE_ARRAY_LEN(mcp__versions); i++)
        if (!strcmp(version, mcp__versions[i]))
            return 1;
    return 0;
}

/* ---- reply objects ------------------------------------------------------------------------ */

/* {"jsonrpc":"2.0","id":id,"result":result}; steals result, borrows id. */
static json_t *mcp__result(json_t *id, json_t *result)
{
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result);
}

/* {"jsonrpc":"2.0","id":id|null,"error":{"code","message"}}; borrows id (NULL: null). */
static json_t *mcp__error(json_t *id, int code, const char *fmt, ...) CORE_PRINTF(3, 4);
static json_t *mcp__error(json_t *id, int code, const char *fmt, ...)
{
    struct buf msg = {0};
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    json_t *err = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                            "error", "code", code, "message", msg.p ? msg.p : "");
    buf_free(&msg);
    return err;
}

/* ---- methods -------------------------------------------------------------------------------- */

static json_t *mcp__initialize(struct mcp_exchange *ex, json_t *params)
{
    const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
    const char *version = mcp_protocol_supported(asked) ? asked : mcp__versions[0];
    ex->initialized = 1;
    return json_pack("{s:s, s:{s:{}}, s:{s:s, s:s}, s:s}", "protocolVersion", version, "capabilities",
                     "tools", "serverInfo", "name", MCP_SERVER_NAME, "version", MCP_SERVER_VERSION,
                     "instructions", mcp__instructions);
}

static void mcp__unref(struct mcp_exchange *ex);

/* The backend's answer to a tool call (session_rt_cb). */
static void mcp__tool_done(void *arg, const struct session_rt_answer *a)
{
    struct mcp__slot *slot = arg;
    slot->running = 0;
    slot->handle = NULL;
    slot->reply = mcp__result(slot->id, mcp__tool_result(slot->action, a->rc != 0, a->json));
    json_decref(slot->args);
    slot->args = NULL;
    mcp__unref(slot->ex);
}

/* tools/call: a malformed call is a protocol error; anything about the call's arguments or
 * outcome is a tool result the model can read. */
static void mcp__tools_call(struct mcp_exchange *ex, struct mcp__slot *slot, json_t *id, json_t *params)
{
    if (!json_is_object(params)) {
        slot->reply = mcp__error(id, MCP_INVALID_PARAMS, "Invalid params: tools/call takes an object");
        return;
    }
    const char *name = json_string_value(json_object_get(params, "name"));
    if (name == NULL) {
        slot->reply = mcp__error(id, MCP_INVALID_PARAMS, "Invalid params: name is required");
        return;
    }
    json_t *args = json_object_get(params, "arguments");
    if (args != NULL && !json_is_object(args) && !json_is_null(args)) {
        slot->reply = mcp__error(id, MCP_INVALID_PARAMS, "Invalid params: arguments must be an object");
        return;
    }
    args = json_is_object(args) ? json_incref(args) : json_object();

    struct session_rt_request req;
    int known = 1;
    const char *why = mcp__tool_parse(name, args, &req, &known);
    if (!known) {
        slot->reply = mcp__error(id, MCP_INVALID_PARAMS, "Unknown tool: %s", name);
        json_decref(args);
        return;
    }
    if (why != NULL) {
        slot->reply = mcp__result(id, mcp__tool_error(why));
        json_decref(args);
        return;
    }
    slot->id = json_incref(id);
    slot->args = args;
    slot->action = req.action;
    slot->running = 1;
    ex->pending++;
    void *handle = ex->m->backend.start(ex->m->backend.arg, ex->session_id, &req, mcp__tool_done, slot);
    if (slot->running)
        slot->handle = handle;
}

/* One message of the input: fills slot->reply (or starts a call that will), or leaves it NULL for
 * notifications and client responses. */
static void mcp__message(struct mcp_exchange *ex, struct mcp__slot *slot, json_t *msg)
{
    if (!json_is_object(msg)) {
        slot->invalid = 1;
        slot->reply = mcp__error(NULL, MCP_INVALID_REQUEST, "Invalid Request: a message is a JSON object");
        return;
    }
    json_t *id = json_object_get(msg, "id");
    json_t *method = json_object_get(msg, "method");
    /* MCP ids are strings or integers, never null. */
    int id_ok = json_is_string(id) || json_is_integer(id);
    const char *version = json_string_value(json_object_get(msg, "jsonrpc"));
    const char *why = NULL;
    if (version == NULL || strcmp(version, "2.0") != 0)
        why = "jsonrpc must be \"2.0\"";
    else if (id != NULL && !id_ok)
        why = "id must be a string or an integer";
    else if (method == NULL && id_ok && (json_object_get(msg, "result") || json_object_get(msg, "error")))
        return; /* a response to a request of ours; we send none, so there is nothing to match */
    else if (!json_is_string(method))
        why = "method must be a string";
    if (why != NULL) {
        slot->invalid = 1;
        slot->reply = mcp__error(id_ok ? id : NULL, MCP_INVALID_REQUEST, "Invalid Request: %s", why);
        return;
    }
    if (id == NULL)
        return; /* notifications are never answered, known or not */

    const char *name = json_string_value(method);
    json_t *params = json_object_get(msg, "params");
    if (!strcmp(name, "initialize"))
        slot->reply = mcp__result(id, mcp__initialize(ex, params));
    else if (!strcmp(name, "ping"))
        slot->reply = mcp__result(id, json_object());
    else if (!strcmp(name, "tools/list"))
        slot->reply = mcp__result(id, json_pack("{s:o}", "tools", mcp__tools_describe()));
    else if (!strcmp(name, "tools/call"))
        mcp__tools_call(ex, slot, id, params);
    else
        slot->reply = mcp__error(id, MCP_METHOD_NOT_FOUND, "Method not found: %s", name);
}

/* ---- exchanges -------------------------------------------------------------------------------- */

static void mcp__exchange_free(struct mcp_exchange *ex)
{
    for (size_t i = 0; i < ex->n; i++) {
        json_decref(ex->slots[i].reply);
        json_decref(ex->slots[i].id);
        json_decref(ex->slots[i].args);
    }
    free(ex->slots);
    free(ex->session_id);
    free(ex);
}

/* Every slot is settled: send the reply and free the exchange. */
static void mcp__finish(struct mcp_exchange *ex)
{
    json_t *out = NULL;
    if (ex->batch) {
        out = json_array();
        for (size_t i = 0; i < ex->n; i++)
            if (ex->slots[i].reply)
                json_array_append(out, ex->slots[i].reply);
        if (json_array_size(out) == 0) {
            json_decref(out);
            out = NULL;
        }
    } else if (ex->slots[0].reply) {
        out = json_incref(ex->slots[0].reply);
    }
    struct mcp_reply reply = {.rejected = ex->rejected, .initialized = ex->initialized};
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    if (out != NULL && text == NULL) {
        fprintf(stderr, "mcp: out of memory encoding a reply\n");
        abort();
    }
    reply.json = text;
    reply.len = text ? strlen(text) : 0;
    ex->cb(ex->arg, &reply);
    free(text);
    json_decref(out);
    mcp__exchange_free(ex);
}

static void mcp__unref(struct mcp_exchange *ex)
{
    if (--ex->pending == 0)
        mcp__finish(ex);
}

struct mcp_exchange *mcp_handle(struct mcp *m, const char *session_id, const char *body, size_t len,
                                mcp_reply_cb cb, void *arg)
{
    struct mcp_exchange *ex = xcalloc(1, sizeof *ex);
    ex->m = m;
    ex->session_id = xstrdup(session_id);
    ex->cb = cb;
    ex->arg = arg;
    ex->pending = 1;

    json_error_t jerr;
    /* DECODE_ANY so that a scalar is an invalid request (-32600), not a parse error; ALLOW_NUL so
     * that code may contain \u0000 (it is passed on with its length). */
    json_t *doc = json_loadb(body ? body : "", len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (doc == NULL || (json_is_array(doc) && json_array_size(doc) == 0)) {
        ex->n = 1;
        ex->slots = xcalloc(1, sizeof *ex->slots);
        ex->slots[0].ex = ex;
        ex->slots[0].reply = doc ? mcp__error(NULL, MCP_INVALID_REQUEST, "Invalid Request: empty batch")
                                 : mcp__error(NULL, MCP_PARSE_ERROR, "Parse error: %s", jerr.text);
        ex->rejected = 1;
    } else if (json_is_array(doc)) {
        ex->batch = 1;
        ex->n = json_array_size(doc);
        ex->slots = xcalloc(ex->n, sizeof *ex->slots);
        for (size_t i = 0; i < ex->n; i++) {
            ex->slots[i].ex = ex;
            mcp__message(ex, &ex->slots[i], json_array_get(doc, i));
        }
    } else {
        ex->n = 1;
        ex->slots = xcalloc(1, sizeof *ex->slots);
        ex->slots[0].ex = ex;
        mcp__message(ex, &ex->slots[0], doc);
        ex->rejected = ex->slots[0].invalid;
    }
    json_decref(doc);
    if (--ex->pending == 0) {
        mcp__finish(ex);
        return NULL;
    }
    return ex;
}

void mcp_exchange_cancel(struct mcp_exchange *ex)
{
    if (ex == NULL)
        return;
    for (size_t i = 0; i < ex->n; i++)
        if (ex->slots[i].running)
            ex->m->backend.cancel(ex->m->backend.arg, ex->slots[i].handle);
    mcp__exchange_free(ex);
}
