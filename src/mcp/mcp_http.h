/*
 * mcp_http — MCP's streamable HTTP transport at /v1/sessions/<id>/mcp, serving the protocol core
 * (mcp.h) with the session's runtimes as the tool backend (session_rt_start).
 *
 * The resource:
 *   - POST: one JSON-RPC message or a batch. Requests are answered 200 application/json (never
 *     SSE: each POST gets one JSON body once every tool call in it has finished); input holding
 *     only notifications and responses gets 202 with an empty body; input that is not JSON-RPC at
 *     all gets 400 with the JSON-RPC error. An answered initialize carries an `Mcp-Session-Id`
 *     header; later requests may send it back, and are not required to (every message is handled
 *     on its own). An unsupported `MCP-Protocol-Version` header gets 400.
 *   - GET: 405 (there are no server-initiated streams); DELETE: 204 (nothing to forget).
 *   - an unknown session gets 404 with the usual {"error":{"code","message"}} body; a browser
 *     Origin that is neither loopback nor the addressed host gets 403 (DNS rebinding guard, as the
 *     MCP specification requires).
 * A client that goes away before its tool calls finish cancels them (session_rt_cancel): the
 * runtime still completes the code, nobody waits for the answer.
 */
#ifndef AGENTD_MCP_HTTP_H
#define AGENTD_MCP_HTTP_H

struct sessions;
struct http_server;
struct http_req;
struct mcp_http;

/* The transport for sessions (borrowed; must outlive the returned object). Register it with
 * sessions_set_mcp(sessions, mcp_http_handle, object). srv (borrowed for the call) learns the MCP
 * headers browsers may send and read (CORS). Free with mcp_http_free. */
struct mcp_http *mcp_http_new(struct sessions *sessions, struct http_server *srv);
/* Frees the transport. Requests still waiting for tool calls are cancelled first (their clients
 * get no answer; the server is stopping). Call before sessions_free. NULL is a no-op. */
void mcp_http_free(struct mcp_http *mh);

/* A sessions_mcp_cb: handles one request to /v1/sessions/<session_id>/mcp. arg is the struct
 * mcp_http. */
void mcp_http_handle(void *arg, struct http_req *req, const char *session_id);

#endif
