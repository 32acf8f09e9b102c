/*
 * mcp_int — what the protocol core (mcp.c) and the runtime tool (mcp_tool.c) share inside the
 * module. jansson types stay inside src/mcp.
 */
#ifndef AGENTD_MCP_INT_H
#define AGENTD_MCP_INT_H

#include <jansson.h>

#include "core/core.h"
#include "session/session.h"

#define MCP_TOOL_NAME         "runtime"
#define MCP_SESSION_TOOL_NAME "session"

/* The tools/list entries: the runtime tool and the session tool (child sessions). New reference:
 * an array. */
json_t *mcp__tools_describe(void);

/* Reads tools/call arguments of tool `name` (an object, borrowed) into req; strings in req point
 * into args and live as long as it does. Returns NULL, or a reason meant for the model ("code is
 * required for exec"). *known is 0 when no tool has that name. */
const char *mcp__tool_parse(const char *name, json_t *args, struct session_rt_request *req, int *known);

/* The CallToolResult for a backend answer: failed when the call failed (session_rt_answer.rc), json
 * the answer (borrowed). Text
 * for the model in content, the answer itself as structuredContent, isError when the code failed
 * or the call could not run. New reference. */
json_t *mcp__tool_result(enum session_rt_action action, int failed, const char *json);

/* A CallToolResult with isError and text (borrowed). New reference. */
json_t *mcp__tool_error(const char *text);

#endif
