/*
 * mcp — the Model Context Protocol server core: JSON-RPC 2.0 messages in, JSON-RPC replies out,
 * with one tool, `runtime`, that gives an agent agentd's persistent bash / python / node runtimes.
 * No transport lives here: mcp_http.c serves it as streamable HTTP inside the server, and
 * mcp_stdio.c bridges stdio clients to that endpoint. The tool's work is done by a backend given
 * to mcp_new (in the server, session_rt_start; in tests, a fake), so the protocol is testable alone.
 *
 * What it speaks (revisions 2025-06-18, 2025-03-26 and 2024-11-05):
 *   - initialize answers the client's protocolVersion when it is one of those, else the newest;
 *     capabilities {"tools":{}}; serverInfo {"name":"agentd","version":MCP_SERVER_VERSION};
 *   - ping, tools/list, tools/call; every notification (notifications/initialized, .../cancelled,
 *     anything else) and every response a client sends is accepted and never answered;
 *   - a batch (JSON array, 2025-03-26) is answered by an array of the replies to its requests,
 *     in the order they were sent, or by nothing when it held no request.
 *
 * Protocol errors versus tool errors, as the MCP specification separates them: a JSON-RPC error
 * means the message itself was wrong (-32700 unparsable, -32600 not a request, -32601 unknown
 * method, -32602 unknown tool or params that are not an object). Everything about the *call* —
 * an unknown action, missing code, a failing command, a timeout, a session deleted meanwhile —
 * is a normal result with isError true and a text the model can read and act on.
 *
 * Invariants:
 *   - the server holds no per-client state: every message is answered from itself alone, so any
 *     transport (and any number of clients) can share one struct mcp;
 *   - one mcp_handle call produces exactly one reply callback, unless mcp_exchange_cancel comes
 *     first; tool calls of one batch run concurrently and the reply waits for all of them;
 *   - not thread-safe: use it on the loop that runs the backend.
 */
#ifndef AGENTD_MCP_H
#define AGENTD_MCP_H

#include <stddef.h>

#include "session/session.h"

#define MCP_SERVER_NAME     "agentd"
#define MCP_SERVER_VERSION  "0.1.0"
/* The revision answered to clients that ask for one we do not know. */
#define MCP_PROTOCOL_LATEST "2025-06-18"

/* JSON-RPC 2.0 error codes. */
#define MCP_PARSE_ERROR      (-32700)
#define MCP_INVALID_REQUEST  (-32600)
#define MCP_METHOD_NOT_FOUND (-32601)
#define MCP_INVALID_PARAMS   (-32602)
#define MCP_INTERNAL_ERROR   (-32603)

/*
 * The tool backend: how a runtime call is carried out. The contract is session_rt_start's and
 * session_rt_cancel's (session/session.h): start may call done before it returns; otherwise the
 * handle it returns stays valid until done runs or cancel is called, and after cancel done never
 * runs. start returning NULL means done has already run.
 */
struct mcp_backend {
    void *(*start)(void *arg, const char *session_id, const struct session_rt_request *req,
                   session_rt_cb done, void *done_arg);
    void (*cancel)(void *arg, void *handle);
    void *arg;
};

/* The outcome of one mcp_handle, borrowed for the reply callback. */
struct mcp_reply {
    /* The JSON text to send back (a reply object, or an array for a batch), NUL-terminated; NULL
     * when the input held only notifications and responses, which are never answered. */
    const char *json;
    size_t len;
    /* The input was not a JSON-RPC message at all (unparsable, not an object, an empty batch, an
     * object with neither method nor result): json is the error reply; HTTP answers 400. */
    int rejected;
    /* An initialize request was answered successfully (HTTP then issues an Mcp-Session-Id). */
    int initialized;
};

typedef void (*mcp_reply_cb)(void *arg, const struct mcp_reply *reply);

struct mcp;
struct mcp_exchange;

/* A server whose tool calls go to backend (copied). Free with mcp_free. */
struct mcp *mcp_new(const struct mcp_backend *backend);
/* Frees the server. Every exchange must have ended (replied or cancelled) before. NULL is a no-op. */
void mcp_free(struct mcp *m);

/*
 * Handles one message or batch, body[0..len) (borrowed for the call), addressed to session_id
 * (copied; passed to the backend). cb runs exactly once with the reply — possibly before this
 * returns, in which case this returns NULL. Otherwise the returned exchange is valid until cb runs
 * or mcp_exchange_cancel is called.
 */
struct mcp_exchange *mcp_handle(struct mcp *m, const char *session_id, const char *body, size_t len,
                                mcp_reply_cb cb, void *arg);
/* The requester went away: cancels the exchange's pending tool calls (the runtime still finishes
 * them) and frees it; cb will not run. */
void mcp_exchange_cancel(struct mcp_exchange *ex);

/* 1 when version is a protocol revision this server speaks. */
int mcp_protocol_supported(const char *version);

#endif
