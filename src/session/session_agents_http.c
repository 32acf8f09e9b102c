/*
 * session_agents_http — GET /v1/agents: the agents a session can be created with, for forms and
 * scripts. One entry per adapter (src/agent), plus "none" (runtimes only):
 *
 *     {"agents":[{"name":"demo","description":"...","available":true,"needs":[],
 *                 "options":[]}, {"name":"claude-code",...,"program":"claude",
 *                 "options":["program","model","base_url","api_key"]}, ...]}
 *
 * `needs` lists the create fields the agent cannot do without (jsonl: command), `options` the
 * agent-specific ones it takes; every agent also takes workspace, env, tags, sandbox, limits,
 * permissions and warm. `capabilities` says what a person in the loop can do with it: approvals
 * (it asks before using a tool), steer (input into a running turn), interrupt (a turn stopped, the
 * agent kept), warm (one process for many messages); `capabilities_announced` is true for programs
 * that announce their own (jsonl, demo: the values are then what the protocol allows, and each
 * session shows what its program said). Where a capability is false, the API answers 409
 * unsupported_by_agent (steering queues instead, and says so).
 * `program` is the binary run when the session names none. `available` is false only when this
 * server cannot run the agent at all (the demo agent without agentd's own executable); whether a
 * CLI is installed shows when its first run starts (agent_not_found).
 */
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "http/http.h"
#include "session/session_int.h"

static json_t *session__agent_entry(struct sessions *s, const struct agent_adapter *a)
{
    const char *program = agent_adapter_program(a);
    int self = agent_adapter_runs_self(a);
    json_t *e = json_pack("{s:s, s:s, s:b}", "name", agent_adapter_name(a), "description",
                          agent_adapter_description(a), "available", !self || s->self_exe != NULL);
    if (program)
        json_object_set_new(e, "program", json_string(program));
    json_object_set_new(e, "needs", program || self ? json_array() : json_pack("[s]", "command"));
    json_object_set_new(e, "options",
                        program ? json_pack("[s, s, s, s]", "program", "model", "base_url", "api_key")
                        : self  ? json_array()
                                : json_pack("[s]", "command"));
    json_t *caps = json_object();
    for (size_t i = 0; agent_cap_name(i); i++)
        json_object_set_new(caps, agent_cap_name(i), json_boolean(agent_adapter_caps(a) & (1u << i)));
    json_object_set_new(e, "capabilities", caps);
    json_object_set_new(e, "capabilities_announced", json_boolean(agent_adapter_announces_caps(a)));
    return e;
}

void session__agents_route(struct http_req *req, void *arg)
{
    struct sessions *s = arg;
    size_t plen;
    const char *path = http_req_path(req, &plen);
    size_t want = sizeof SESSION_AGENTS_PATH - 1;
    if (plen != want && !(plen == want + 1 && path[want] == '/'))
        return http_res_error(req, ERR_NOT_FOUND, "no such resource: %.*s", (int)(plen > 200 ? 200 : plen),
                              path);
    enum http_method m = http_req_method(req);
    if (m != HTTP_GET && m != HTTP_HEAD)
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "use GET to list the agents");
    json_t *list = json_array();
    const struct agent_adapter *a;
    for (size_t i = 0; (a = agent_adapter_at(i)) != NULL; i++)
        json_array_append_new(list, session__agent_entry(s, a));
    json_array_append_new(
        list, json_pack("{s:s, s:s, s:b, s:[], s:[], s:{s:b, s:b, s:b, s:b}, s:b}", "name", "none",
                        "description", "no agent: a session for its runtimes (bash, python, node) only",
                        "available", 1, "needs", "options", "capabilities", "approvals", 0, "steer", 0,
                        "interrupt", 0, "warm", 0, "capabilities_announced", 0));
    http_res_json(req, 200, json_pack("{s:o}", "agents", list));
}
