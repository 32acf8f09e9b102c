/*
 * libFuzzer target for the body of POST /v1/sessions (a session's create body, from any client).
 * What the session module validates without a server is the agent configuration,
 * session__opts_parse (session_int.h: sandbox, limits, the agent's program and model settings,
 * command, the MCP switch), for the adapter the body names; the agent name, workspace, env and tags
 * are checked inside session__create, which needs a registry and a store, and are reached through
 * the integration tests instead. Input: the body, parsed by jansson as the server does. Checks,
 * beyond memory safety: an accepted configuration holds only what the check promises (a sandbox of
 * none or bwrap, a non-empty command), and it survives the session record's round trip (written as
 * JSON, read back, written again: the same JSON).
 */
#include <assert.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "session/session_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        return 0;
    }
    const char *agent = json_string_value(json_object_get(body, "agent"));
    const struct agent_adapter *adapter = agent ? agent_adapter_find(agent) : NULL;
    struct session_opts o = {0}, again = {0};
    const char *why = NULL;
    if (session__opts_parse(&o, body, adapter, &why) == 0) {
        assert(why == NULL);
        assert(o.sandbox == NULL || !strcmp(o.sandbox, "none") || !strcmp(o.sandbox, "bwrap"));
        assert(o.command == NULL || o.command[0] != NULL);
        json_t *stored = session__opts_json(&o, 0);
        session__opts_from_json(&again, stored, adapter);
        json_t *reread = session__opts_json(&again, 0);
        assert(json_equal(stored, reread));
        json_decref(stored);
        json_decref(reread);
    } else {
        assert(why != NULL);
    }
    session__opts_free(&o);
    session__opts_free(&again);
    json_decref(body);
    return 0;
}
