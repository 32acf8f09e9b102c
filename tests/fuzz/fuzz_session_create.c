/*
 * libFuzzer target for the body of POST /v1/sessions (a session's create body, from any client).
 * What is callable without a server is the session module's agent configuration check,
 * session__agent_config (session_int.h: sandbox, limits, the agent's program, model settings,
 * command and MCP switch); the first half of the validation (agent name, workspace, env, tags) is
 * static in session_http.c and runs only inside a request, so it is reached through the integration
 * tests instead. Input: the body, parsed by jansson as the server does. Checks, beyond memory
 * safety: an accepted configuration holds only what the check promises (a known adapter for an
 * agent other than none, a non-empty command of strings, a sandbox of none or bwrap, integer limits).
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
    struct session *se = calloc(1, sizeof *se);
    const char *why = session__agent_config(se, body);
    if (why == NULL) {
        const char *agent = json_string_value(json_object_get(body, "agent"));
        assert(json_is_object(se->agent_opts));
        if (agent && strcmp(agent, "none") != 0)
            assert(se->adapter != NULL && se->adapter == agent_adapter_find(agent));
        json_t *cmd = json_object_get(se->agent_opts, "command"), *v;
        size_t i;
        if (cmd) {
            assert(json_is_array(cmd) && json_array_size(cmd) > 0);
            json_array_foreach (cmd, i, v)
                assert(json_is_string(v));
        }
        const char *sandbox = json_string_value(json_object_get(se->agent_opts, "sandbox"));
        assert(sandbox == NULL || !strcmp(sandbox, "none") || !strcmp(sandbox, "bwrap"));
        const char *key;
        json_object_foreach (json_object_get(se->agent_opts, "limits"), key, v)
            assert(json_is_integer(v) && json_integer_value(v) >= 0);
    }
    json_decref(se->agent_opts);
    free(se);
    json_decref(body);
    return 0;
}
