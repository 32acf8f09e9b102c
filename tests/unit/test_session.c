/*
 * test_session — the parts of src/session that need no loop: the typed session options (parsing a
 * create body, the record's JSON both ways, the redacted public view), the permission policy (its
 * normal form, PATCH merges, and how rules decide a call) and the one mapping of the domain's errors
 * onto the error table.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "session/session_int.h"
#include "tap.h"

static json_t *body_of(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    if (j == NULL)
        abort();
    return j;
}

/* Parses text for agent; returns the record form (new reference) or NULL, with why. */
static json_t *parsed(const char *agent, const char *text, const char **why)
{
    struct session_opts o = {.mcp = -1};
    json_t *b = body_of(text);
    int rc = session__opts_parse(&o, b, agent ? agent_adapter_find(agent) : NULL, why);
    json_decref(b);
    if (rc != 0) {
        ok(o.program == NULL && o.command == NULL && o.sandbox == NULL,
           "a refused body leaves nothing behind");
        return NULL;
    }
    json_t *j = session__opts_json(&o, 0);
    session__opts_free(&o);
    return j;
}

static void is_json(json_t *got, const char *want, const char *name)
{
    json_t *w = body_of(want);
    char *g = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *ws = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
    is_str(g, ws, "%s", name);
    free(g);
    free(ws);
    json_decref(w);
}

static void test_parse(void)
{
    const char *why = NULL;
    json_t *j = parsed(NULL, "{\"agent\":\"none\"}", &why);
    is_json(j, "{}", "agent none, nothing given: an empty record");
    json_decref(j);

    j = parsed(NULL, "{\"sandbox\":\"bwrap\",\"limits\":{\"memory_bytes\":1048576,\"open_files\":64}}", &why);
    is_json(j, "{\"sandbox\":\"bwrap\",\"limits\":{\"memory_bytes\":1048576,\"open_files\":64}}",
            "sandbox and limits apply to runtime-only sessions too");
    json_decref(j);

    j = parsed("claude-code",
               "{\"program\":\"/bin/claude\",\"model\":\"m\",\"api_key\":\"sk\",\"base_url\":\"http://x\","
               "\"mcp\":false}",
               &why);
    is_json(j,
            "{\"program\":\"/bin/claude\",\"model\":\"m\",\"api_key\":\"sk\",\"base_url\":\"http://"
            "x\",\"mcp\":false}",
            "an agent's settings, mcp turned off");
    json_decref(j);

    j = parsed("jsonl", "{\"command\":[\"python3\",\"agent.py\",\"--x\"]}", &why);
    is_json(j, "{\"mcp\":true,\"command\":[\"python3\",\"agent.py\",\"--x\"]}",
            "jsonl with a command; mcp by default");
    json_decref(j);

    static const struct {
        const char *agent, *body, *why;
    } bad[] = {
        {NULL, "{\"sandbox\":\"docker\"}", "sandbox must be none or bwrap"},
        {NULL, "{\"limits\":[1]}", "limits must be an object"},
        {NULL, "{\"limits\":{\"disk\":1}}", "limits: unknown key"},
        {NULL, "{\"limits\":{\"processes\":0}}", "limits: every value is a positive integer"},
        {"codex", "{\"model\":7}", "program, base_url, api_key and model must be strings"},
        {"jsonl", "{}", "a jsonl agent needs command"},
        {"jsonl", "{\"command\":[]}", "command must be a non-empty array of strings"},
        {"jsonl", "{\"command\":[\"a\",1]}", "command must be a non-empty array of strings"},
    };
    for (size_t i = 0; i < CORE_ARRAY_LEN(bad); i++) {
        why = NULL;
        j = parsed(bad[i].agent, bad[i].body, &why);
        ok(j == NULL && why && strncmp(why, bad[i].why, strlen(bad[i].why)) == 0, "refused: %s (%s)",
           bad[i].body, why ? why : "accepted");
        json_decref(j);
    }
}

static void test_record(void)
{
    /* A record as agentd wrote it before the struct existed reads back the same. */
    const char *rec =
        "{\"sandbox\":\"none\",\"limits\":{\"cpu_seconds\":5},\"program\":\"codex\",\"api_key\":\"k\","
        "\"mcp\":true}";
    struct session_opts o = {.mcp = -1}, copy = {.mcp = -1};
    json_t *in = body_of(rec);
    session__opts_from_json(&o, in, agent_adapter_find("codex"));
    json_t *out = session__opts_json(&o, 0);
    is_json(out, rec, "a record reads back as written");
    json_decref(out);
    out = session__opts_json(&o, 1);
    is_str(json_string_value(json_object_get(out, "api_key")), "***", "the public view hides the API key");
    json_decref(out);
    session__opts_copy(&copy, &o, agent_adapter_find("codex"));
    out = session__opts_json(&copy, 0);
    is_json(out, rec, "a copy (a fork's) is the same");
    json_decref(out);
    struct session se = {.opts = o};
    struct exec_limits l;
    ok(session__limits(&se, &l) && l.cpu_seconds == 5 && l.cg_memory_bytes == 0, "limits as exec's");
    ok(!session__sandboxed(&se), "sandbox none is not bwrap");
    session__opts_free(&o);
    session__opts_free(&copy);
    json_decref(in);

    /* Agent none: agent settings in a record are not read (and mcp stays unset). */
    in = body_of("{\"program\":\"x\",\"mcp\":true}");
    session__opts_from_json(&o, in, NULL);
    out = session__opts_json(&o, 0);
    is_json(out, "{}", "agent none reads no agent settings");
    json_decref(out);
    json_decref(in);
    session__opts_free(&o);
}

static void test_errcode(void)
{
    is_int(session__errcode(-EINVAL, ERR_INTERNAL), ERR_BAD_REQUEST, "-EINVAL: bad_request");
    is_int(session__errcode(-ENOENT, ERR_INTERNAL), ERR_NOT_FOUND, "-ENOENT: not_found");
    is_int(session__errcode(-EBUSY, ERR_INTERNAL), ERR_CONFLICT, "-EBUSY: conflict");
    is_int(session__errcode(-ENOSPC, ERR_INTERNAL), ERR_STORAGE_FULL, "-ENOSPC: storage_full");
    is_int(session__errcode(-EFBIG, ERR_INTERNAL), ERR_STORAGE_FULL, "-EFBIG: storage_full");
    is_int(session__errcode(-EALREADY, ERR_INTERNAL), ERR_CONFLICT, "-EALREADY (answered already): conflict");
    is_int(session__errcode(-ENOTSUP, ERR_INTERNAL), ERR_UNSUPPORTED_BY_AGENT,
           "-ENOTSUP: unsupported_by_agent");
    is_int(session__errcode(-EACCES, ERR_INTERNAL), ERR_PERMISSION_DENIED, "-EACCES: permission_denied");
    is_int(session__errcode(-EIO, ERR_WORKSPACE_FAILED), ERR_WORKSPACE_FAILED,
           "anything else: the operation's own");
    ok(session_storage_full(-EDQUOT) && !session_storage_full(-EIO),
       "a quota is a full disk, an I/O error is not");
}

/* What policy (its JSON text) says to tool with input (JSON text): "allow", "deny" or "ask", and
 * the rule that decided after a colon. */
static void is_verdict(const char *policy, const char *tool, const char *input, const char *want)
{
    json_t *pj = body_of(policy), *in = body_of(input), *p = NULL;
    const char *why = NULL, *rule = NULL;
    char got[256] = "(refused)";
    if (session__policy_parse(pj, NULL, &p, &why) == 0) {
        int v = session__policy_decide(p, tool, in, &rule);
        snprintf(got, sizeof got, "%s%s%s",
                 v == 1   ? "allow"
                 : v == 0 ? "deny"
                          : "ask",
                 rule ? ":" : "", rule ? rule : "");
    }
    is_str(got, want, "policy %s: %s %s", policy, tool, input);
    json_decref(p);
    json_decref(pj);
    json_decref(in);
}

static void test_policy(void)
{
    json_t *p = NULL;
    const char *why = NULL;
    ok(session__policy_parse(NULL, NULL, &p, &why) == 0, "no policy is the default");
    is_json(p, "{\"mode\":\"allow\",\"allow\":[],\"deny\":[],\"timeout_ms\":null}", "the default: allow");
    json_t *patch = body_of("{\"mode\":\"ask\",\"timeout_ms\":500}"), *merged = NULL;
    ok(session__policy_parse(patch, p, &merged, &why) == 0, "a patch merges into a policy");
    is_json(merged, "{\"mode\":\"ask\",\"allow\":[],\"deny\":[],\"timeout_ms\":500}",
            "the merge keeps the rest");
    json_decref(patch);
    json_decref(merged);
    json_decref(p);
    static const char *const bad[] = {
        "{\"mode\":\"sometimes\"}", "{\"allow\":\"Read\"}", "{\"deny\":[1]}",   "{\"allow\":[\"(x)\"]}",
        "{\"allow\":[\"Bash(x\"]}", "{\"timeout_ms\":0}",   "{\"extra\":true}", "[]"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(bad); i++) {
        json_t *b = body_of(bad[i]);
        p = NULL;
        ok(session__policy_parse(b, NULL, &p, &why) == -EINVAL && p == NULL && why, "refused: %s (%s)",
           bad[i], why ? why : "");
        json_decref(b);
    }
    is_verdict("{}", "Bash", "{\"command\":\"rm -rf /\"}", "allow");
    is_verdict("{\"mode\":\"ask\"}", "Read", "{}", "ask");
    is_verdict("{\"mode\":\"deny\"}", "Read", "{}", "deny");
    const char *rules = "{\"mode\":\"ask\",\"allow\":[\"Read\",\"Bash(git status*)\",\"mcp__*\"],"
                        "\"deny\":[\"Bash(git push*)\",\"Bash(*sudo *)\"]}";
    is_verdict(rules, "Bash", "{\"command\":\"git status --short\"}", "allow:Bash(git status*)");
    is_verdict(rules, "Bash", "{\"command\":\"git push origin\"}", "deny:Bash(git push*)");
    is_verdict(rules, "Bash", "{\"command\":\"echo x && sudo rm\"}", "deny:Bash(*sudo *)");
    is_verdict(rules, "Bash", "{\"command\":\"git log\"}", "ask");
    is_verdict(rules, "Bash", "{}", "ask");
    is_verdict(rules, "Read", "{\"file_path\":\"/etc/passwd\"}", "allow:Read");
    is_verdict(rules, "ReadX", "{}", "ask");
    is_verdict(rules, "mcp__rt__runtime", "{\"action\":\"exec\",\"code\":\"ls\"}", "allow:mcp__*");
    /* Codex names its command cmd, agentd's runtime tool code: both are a shell rule's command. */
    is_verdict("{\"mode\":\"deny\",\"allow\":[\"exec_command(ls*)\"]}", "exec_command",
               "{\"cmd\":\"ls -la\"}", "allow:exec_command(ls*)");
    is_verdict("{\"deny\":[\"mcp__rt__runtime(*rm *)\"]}", "mcp__rt__runtime",
               "{\"code\":\"cd /; rm -rf x\"}", "deny:mcp__rt__runtime(*rm *)");
    /* A remembered command is taken literally: its glob characters are escaped in the rule. */
    is_verdict("{\"mode\":\"ask\",\"allow\":[\"Bash(ls \\\\*.c)\"]}", "Bash", "{\"command\":\"ls *.c\"}",
               "allow:Bash(ls \\*.c)");
    is_verdict("{\"mode\":\"ask\",\"allow\":[\"Bash(ls \\\\*.c)\"]}", "Bash", "{\"command\":\"ls a.c\"}",
               "ask");
}

int main(void)
{
    test_parse();
    test_record();
    test_policy();
    test_errcode();
    return done_testing();
}
