/*
 * libFuzzer target for the body of POST /v1/sessions (a session's create body, from any client).
 * Without a server, what is callable is the whole validation the session module runs before it
 * makes anything: session__check_create (agent name, workspace, env, tags) and session__opts_parse
 * (sandbox, limits, the agent's program, model settings, command and MCP switch). Input: the body,
 * parsed by jansson as the server does. Checks, beyond memory safety: an accepted body holds only
 * what the checks promise (a known adapter for an agent other than none, a non-empty command of
 * strings, a sandbox of none or bwrap, positive limits), its options survive the record's JSON
 * both ways, and a refused one leaves nothing allocated behind.
 */
#include <assert.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "session/session_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    char ws[PATH_MAX];
    if (!json_is_object(body) || session__check_create(body, ws) != NULL) {
        json_decref(body);
        return 0;
    }
    const char *agent = json_string_value(json_object_get(body, "agent"));
    const struct agent_adapter *adapter = strcmp(agent, "none") ? agent_adapter_find(agent) : NULL;
    assert(!strcmp(agent, "none") || adapter != NULL);
    struct session_opts o = {.mcp = -1}, back = {.mcp = -1};
    const char *why = NULL;
    if (session__opts_parse(&o, body, adapter, &why) == 0) {
        assert(o.command == NULL || o.command[0] != NULL);
        assert(o.sandbox == NULL || !strcmp(o.sandbox, "none") || !strcmp(o.sandbox, "bwrap"));
        assert(adapter != NULL || o.mcp == -1);
        json_t *rec = session__opts_json(&o, 0), *again;
        session__opts_from_json(&back, rec, adapter);
        again = session__opts_json(&back, 0);
        assert(json_equal(rec, again));
        json_decref(rec);
        json_decref(again);
    } else {
        assert(why != NULL && o.command == NULL && o.program == NULL && o.sandbox == NULL);
    }
    session__opts_free(&o);
    session__opts_free(&back);
    json_decref(body);
    return 0;
}
