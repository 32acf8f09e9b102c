/*
 * session_opts — what a session runs with: its agent's settings, its sandbox and its limits, as
 * one typed struct (struct session_opts) parsed once from the create body, kept in the session's
 * record as JSON ("agent_opts") and shown, with the API key hidden, as "agent_options".
 *
 * The JSON form has only the keys the client gave, in this order: sandbox, limits (memory_bytes,
 * processes, cpu_seconds, file_size_bytes, open_files), program, base_url, api_key, model, mcp,
 * warm, permissions (in session_perm.c's normal form), command; mcp is there for sessions with an
 * agent only. Records written before this struct existed
 * read the same.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "session/session_int.h"

/* "limits" of a session, and how each maps onto exec's: cgroup limits for the whole session (agent,
 * runtimes and everything they start), rlimits for each of its processes. */
static const struct {
    const char *name;
    size_t off;
} session__limit_names[] = {
    {"memory_bytes", offsetof(struct exec_limits, cg_memory_bytes)},
    {"processes", offsetof(struct exec_limits, cg_pids)},
    {"cpu_seconds", offsetof(struct exec_limits, cpu_seconds)},
    {"file_size_bytes", offsetof(struct exec_limits, fsize_bytes)},
    {"open_files", offsetof(struct exec_limits, nofile)},
};

static uint64_t *session__limit(struct exec_limits *l, size_t i)
{
    return (uint64_t *)((char *)l + session__limit_names[i].off);
}

/* The agent's string settings, by name and place. */
static char **session__opt_string(struct session_opts *o, size_t i)
{
    char **fields[] = {&o->program, &o->base_url, &o->api_key, &o->model};
    return fields[i];
}
static const char *const session__string_names[] = {"program", "base_url", "api_key", "model"};

void session__opts_free(struct session_opts *o)
{
    free(o->sandbox);
    for (size_t i = 0; i < CORE_ARRAY_LEN(session__string_names); i++)
        free(*session__opt_string(o, i));
    for (char **p = o->command; p && *p; p++)
        free(*p);
    free(o->command);
    json_decref(o->permissions);
    memset(o, 0, sizeof *o);
    o->mcp = -1;
    o->warm = -1;
}

/* Reads "limits" (an object of positive integers with known names); NULL or why not. */
static const char *session__limits_parse(struct exec_limits *l, json_t *lim, int strict)
{
    const char *k;
    json_t *v;
    if (lim == NULL || json_is_null(lim))
        return NULL;
    if (!json_is_object(lim))
        return "limits must be an object: memory_bytes, processes, cpu_seconds, file_size_bytes, open_files";
    json_object_foreach (lim, k, v) {
        size_t i = 0;
        while (i < CORE_ARRAY_LEN(session__limit_names) && strcmp(k, session__limit_names[i].name))
            i++;
        if (i == CORE_ARRAY_LEN(session__limit_names) || !json_is_integer(v) || json_integer_value(v) < 1) {
            if (!strict)
                continue;
            return i == CORE_ARRAY_LEN(session__limit_names)
                       ? "limits: unknown key (memory_bytes, processes, cpu_seconds, file_size_bytes, "
                         "open_files)"
                       : "limits: every value is a positive integer";
        }
        *session__limit(l, i) = (uint64_t)json_integer_value(v);
    }
    return NULL;
}

/* A non-empty array of strings as a NULL-terminated argv, or NULL when j is not one. */
static char **session__argv(json_t *j)
{
    size_t i, n = json_array_size(j);
    json_t *a;
    if (!json_is_array(j) || n == 0)
        return NULL;
    json_array_foreach (j, i, a)
        if (!json_is_string(a))
            return NULL;
    char **argv = xcalloc(n + 1, sizeof *argv);
    json_array_foreach (j, i, a)
        argv[i] = xstrdup(json_string_value(a));
    return argv;
}

/* Fills o from j: a create body (strict: the first invalid field is refused) or a record. */
static const char *session__opts_read(struct session_opts *o, json_t *j, const struct agent_adapter *adapter,
                                      int strict)
{
    session__opts_free(o);
    /* The sandbox holds the agent and the session's runtimes alike, so it applies to runtime-only
     * sessions too. */
    json_t *sb = json_object_get(j, "sandbox");
    if (json_is_string(sb) &&
        (!strcmp(json_string_value(sb), "none") || !strcmp(json_string_value(sb), "bwrap")))
        o->sandbox = xstrdup(json_string_value(sb));
    else if (strict && sb && !json_is_null(sb))
        return "sandbox must be none or bwrap";
    const char *why = session__limits_parse(&o->limits, json_object_get(j, "limits"), strict);
    if (why != NULL || adapter == NULL)
        return why;
    for (size_t i = 0; i < CORE_ARRAY_LEN(session__string_names); i++) {
        json_t *v = json_object_get(j, session__string_names[i]);
        if (json_is_string(v))
            *session__opt_string(o, i) = xstrdup(json_string_value(v));
        else if (strict && v && !json_is_null(v))
            return "program, base_url, api_key and model must be strings";
    }
    json_t *mcp = json_object_get(j, "mcp");
    o->mcp = mcp == NULL || json_is_true(mcp);
    json_t *warm = json_object_get(j, "warm");
    if (json_is_boolean(warm))
        o->warm = json_is_true(warm);
    else if (strict && warm && !json_is_null(warm))
        return "warm must be true or false";
    json_t *perm = json_object_get(j, "permissions");
    const char *bad = NULL;
    if (perm && !json_is_null(perm) && session__policy_parse(perm, NULL, &o->permissions, &bad) != 0 &&
        strict)
        return bad;
    json_t *cmd = json_object_get(j, "command");
    o->command = session__argv(cmd);
    if (strict && cmd && o->command == NULL)
        return "command must be a non-empty array of strings";
    if (strict && o->command == NULL && agent_adapter_program(adapter) == NULL &&
        !agent_adapter_runs_self(adapter))
        return "a jsonl agent needs command: [program, args...]";
    return NULL;
}

int session__opts_parse(struct session_opts *o, json_t *body, const struct agent_adapter *adapter,
                        const char **why)
{
    *why = session__opts_read(o, body, adapter, 1);
    if (*why == NULL && o->permissions && !session__policy_possible(adapter, o->permissions, why)) {
        session__opts_free(o);
        return -ENOTSUP;
    }
    if (*why == NULL)
        return 0;
    session__opts_free(o);
    return -EINVAL;
}

void session__opts_from_json(struct session_opts *o, json_t *j, const struct agent_adapter *adapter)
{
    (void)session__opts_read(o, j, adapter, 0);
}

json_t *session__opts_json(const struct session_opts *o, int redact)
{
    json_t *j = json_object();
    if (o->sandbox)
        json_object_set_new(j, "sandbox", json_string(o->sandbox));
    json_t *lim = json_object();
    for (size_t i = 0; i < CORE_ARRAY_LEN(session__limit_names); i++) {
        uint64_t v = *session__limit((struct exec_limits *)&o->limits, i);
        if (v)
            json_object_set_new(lim, session__limit_names[i].name, json_integer((json_int_t)v));
    }
    if (json_object_size(lim))
        json_object_set(j, "limits", lim);
    json_decref(lim);
    for (size_t i = 0; i < CORE_ARRAY_LEN(session__string_names); i++) {
        const char *v = *session__opt_string((struct session_opts *)o, i);
        if (v)
            json_object_set_new(j, session__string_names[i], json_string(redact && i == 2 ? "***" : v));
    }
    if (o->mcp >= 0)
        json_object_set_new(j, "mcp", json_boolean(o->mcp));
    if (o->warm >= 0)
        json_object_set_new(j, "warm", json_boolean(o->warm));
    if (o->permissions)
        json_object_set(j, "permissions", o->permissions);
    if (o->command) {
        json_t *argv = json_array();
        for (char **p = o->command; *p; p++)
            json_array_append_new(argv, json_string(*p));
        json_object_set_new(j, "command", argv);
    }
    return j;
}

void session__opts_copy(struct session_opts *to, const struct session_opts *from,
                        const struct agent_adapter *adapter)
{
    json_t *j = session__opts_json(from, 0);
    session__opts_from_json(to, j, adapter);
    json_decref(j);
}

int session__limits(const struct session *se, struct exec_limits *l)
{
    *l = se->opts.limits;
    for (size_t i = 0; i < CORE_ARRAY_LEN(session__limit_names); i++)
        if (*session__limit(l, i))
            return 1;
    return 0;
}

int session__sandboxed(const struct session *se)
{
    return se->opts.sandbox && !strcmp(se->opts.sandbox, "bwrap");
}

int session__patch(struct session *se, json_t *body, const char **why)
{
    json_t *perm = json_object_get(body, "permissions"), *warm = json_object_get(body, "warm"),
           *policy = NULL;
    const char *k;
    json_t *v;
    json_object_foreach (body, k, v)
        if (strcmp(k, "permissions") && strcmp(k, "warm")) {
            *why = "a session's permissions and warm can change; nothing else";
            return -EINVAL;
        }
    if (warm && !json_is_boolean(warm)) {
        *why = "warm must be true or false";
        return -EINVAL;
    }
    if (perm && session__policy_parse(perm, se->opts.permissions, &policy, why) != 0)
        return -EINVAL;
    if (policy && !session__policy_possible(se->adapter, policy, why)) {
        json_decref(policy);
        return -ENOTSUP;
    }
    if (policy) {
        json_decref(se->opts.permissions);
        se->opts.permissions = policy;
    }
    if (warm) {
        se->opts.warm = json_is_true(warm);
        if (!se->opts.warm)
            session__agent_retire(se, "warm turned off");
    }
    /* A warm process started with another permission mode is replaced when it next takes a message. */
    session__publish(se->registry, se, "update");
    return 0;
}
