/*
 * test_agent — the runner adapters (src/agent): the real captures in
 * ../shared/reference/agent-streams (or $AGENTD_REFERENCE_DIR) through each parser with random
 * chunk boundaries, garbage and oversized lines, the jsonl protocol, stderr levels, the commands
 * for first run, resume and fork of every adapter, and talking back to a running agent: the Claude
 * Code control protocol (its real can_use_tool, interrupt and host-MCP captures) and protocol 2 of
 * the jsonl programs (capabilities, permission requests, steer, interrupt, the next message).
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/agent.h"
#include "agent/agent_int.h"
#include "core/core.h"
#include "tap.h"

/* ---- collecting events ------------------------------------------------------------------- */

struct events {
    json_t *all; /* array of every event delivered */
};

static void collect(void *arg, json_t *ev)
{
    struct events *e = arg;
    json_array_append_new(e->all, ev);
}

/* The types of the events, space-separated, leaving out logs when skip_logs. */
static char *types(json_t *all, int skip_logs)
{
    struct buf b = {0};
    size_t i;
    json_t *ev;
    json_array_foreach (all, i, ev) {
        const char *t = json_string_value(json_object_get(ev, "type"));
        if (skip_logs && strcmp(t, "log") == 0)
            continue;
        buf_printf(&b, "%s%s", b.len ? " " : "", t);
    }
    return b.p ? b.p : xstrdup("");
}

/* The first event of type type (after skipping n of them), or NULL. */
static json_t *nth(json_t *all, const char *type, int n)
{
    size_t i;
    json_t *ev;
    json_array_foreach (all, i, ev) {
        if (strcmp(json_string_value(json_object_get(ev, "type")), type) == 0 && n-- == 0)
            return ev;
    }
    return NULL;
}

static const char *str_at(json_t *ev, const char *key) { return json_string_value(json_object_get(ev, key)); }

/* Feeds data through a new parser in random chunks (seed 0: all at once, 1: a byte at a time). */
static json_t *parse(const struct agent_adapter *a, const char *data, size_t len, unsigned seed,
                     size_t max_line, char **session, int *has_result)
{
    struct events e = {json_array()};
    struct agent_parser *p = agent_parser_new(a, max_line, collect, &e);
    srand(seed);
    for (size_t off = 0; off < len;) {
        size_t n = seed == 0 ? len : seed == 1 ? 1 : 1 + (size_t)rand() % 97;
        if (n > len - off)
            n = len - off;
        agent_parser_feed(p, data + off, n);
        off += n;
    }
    agent_parser_finish(p);
    if (session)
        *session = agent_parser_native_session(p) ? xstrdup(agent_parser_native_session(p)) : NULL;
    if (has_result)
        *has_result = agent_parser_has_result(p);
    agent_parser_free(p);
    return e.all;
}

/* ---- the real captures ------------------------------------------------------------------- */

static char *reference_dir(void)
{
    const char *env = getenv("AGENTD_REFERENCE_DIR");
    char *dir = xstrdup(env && *env ? env : "../shared/reference/agent-streams");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(dir);
        return NULL;
    }
    return dir;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    return b.p ? b.p : xstrdup("");
}

struct capture {
    const char *file, *adapter;
    const char *want;    /* event types without logs */
    const char *session; /* native session id */
    int is_error;        /* of the result */
};

static const struct capture captures[] = {
    {"claude-basic-tool.jsonl", "claude-code", "message pre_tool post_tool message result",
     "a1d3c9bf-e1a7-4748-945b-4e7fd0cc8c5e", 0},
    {"claude-resume.jsonl", "claude-code", "message result", "a1d3c9bf-e1a7-4748-945b-4e7fd0cc8c5e", 0},
    {"claude-fork.jsonl", "claude-code", "message result", "0c70f1bf-5c0c-4572-8814-9a5951bb6a86", 0},
    {"claude-partial-messages.jsonl", "claude-code",
     "delta delta message delta delta pre_tool post_tool delta delta message result",
     "039c6dbb-7a16-475d-8a97-b8e75e469d02", 0},
    {"claude-api-error-500.jsonl", "claude-code", "message error result",
     "8121addc-b56c-48a3-b799-f721af595a77", 1},
    {"claude-mcp-stdio.jsonl", "claude-code", "message pre_tool post_tool message result",
     "e277c780-4592-4aaf-9e82-19b4503299ef", 0},
};

/* Captured here (tests/unit/agent_samples/, relative to the repo root) with the argv the adapters
 * build and the prompt on stdin, against the fakes in tests/agents: a prompt that starts with a
 * dash and holds quotes reaches the model as sent ("DONE {{prompt}}"). */
static const struct capture own_samples[] = {
    {"claude-stdin-prompt.jsonl", "claude-code", "message pre_tool post_tool message result",
     "18954b44-58fd-471f-87dc-5978a3fb1ea2", 0},
};

/* Every event has a native that is the line's object (or string), and nothing is unexplained. */
static int all_native(json_t *all)
{
    size_t i;
    json_t *ev;
    json_array_foreach (all, i, ev) {
        json_t *n = json_object_get(ev, "native");
        if (!json_is_object(n) && !json_is_string(n))
            return 0;
    }
    return 1;
}

static void test_capture(const char *dir, const struct capture *c)
{
    char *path = xasprintf("%s/%s", dir, c->file);
    size_t len;
    char *data = slurp(path, &len);
    if (!ok(data != NULL, "%s: readable", c->file)) {
        free(path);
        return;
    }
    const struct agent_adapter *a = agent_adapter_find(c->adapter);
    char *session = NULL;
    int has_result = 0;
    json_t *whole = parse(a, data, len, 0, 0, &session, &has_result);
    char *t = types(whole, 1);
    is_str(t, c->want, "%s: event sequence", c->file);
    is_str(session, c->session, "%s: native session id", c->file);
    ok(has_result, "%s: result seen", c->file);
    ok(all_native(whole), "%s: every event carries native", c->file);
    json_t *result = nth(whole, "result", 0);
    is_int(json_is_true(json_object_get(result, "is_error")), c->is_error, "%s: result is_error", c->file);
    ok(json_is_object(json_object_get(result, "usage")), "%s: result has usage", c->file);

    /* Lines that are not events still become (log) events: at least one per line. */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += data[i] == '\n';
    ok(json_array_size(whole) >= lines, "%s: %zu events for %zu lines", c->file, json_array_size(whole),
       lines);
    size_t i;
    json_t *ev;
    int warned = 0;
    json_array_foreach (whole, i, ev) {
        if (strcmp(str_at(ev, "type"), "log") == 0 && strcmp(str_at(ev, "level"), "warn") == 0 &&
            strstr(str_at(ev, "text"), "not understood"))
            warned++;
    }
    is_int(warned, 0, "%s: every line understood", c->file);

    /* Chunking does not matter. */
    char *want = json_dumps(whole, JSON_COMPACT);
    int same = 1;
    for (unsigned seed = 1; seed < 12; seed++) {
        json_t *chunked = parse(a, data, len, seed, 0, NULL, NULL);
        char *got = json_dumps(chunked, JSON_COMPACT);
        same &= strcmp(got, want) == 0;
        free(got);
        json_decref(chunked);
    }
    ok(same, "%s: same events for 11 random chunkings", c->file);
    free(want);
    free(t);
    free(session);
    json_decref(whole);
    free(data);
    free(path);
}

/* The events of one capture, fed in chunks chosen by seed. */
static json_t *parse_file(const char *dir, const char *file, const char *adapter, unsigned seed)
{
    size_t len = 0;
    char *path = xasprintf("%s/%s", dir, file);
    char *data = slurp(path, &len);
    json_t *all = parse(agent_adapter_find(adapter), data ? data : "", len, seed, 0, NULL, NULL);
    free(data);
    free(path);
    return all;
}

static void test_capture_details(const char *dir)
{
    json_t *all = parse_file(dir, "claude-basic-tool.jsonl", "claude-code", 5);
    json_t *pre = nth(all, "pre_tool", 0), *post = nth(all, "post_tool", 0), *res = nth(all, "result", 0);
    is_str(str_at(pre, "name"), "Bash", "claude: pre_tool names Bash");
    is_str(str_at(json_object_get(pre, "input"), "command"), "echo hi", "claude: pre_tool input");
    is_str(str_at(pre, "id"), "toolu_fakeb8nesga8juq", "claude: pre_tool id");
    is_str(str_at(post, "id"), "toolu_fakeb8nesga8juq", "claude: post_tool id");
    is_str(str_at(post, "name"), "Bash", "claude: post_tool names the tool");
    is_str(str_at(post, "output"), "hi", "claude: post_tool output");
    ok(json_is_false(json_object_get(post, "is_error")), "claude: post_tool is_error false");
    is_str(str_at(res, "text"), "DONE. tool said: hi", "claude: result text");
    ok(json_real_value(json_object_get(res, "cost_usd")) == 0.002, "claude: cost_usd");
    is_int(json_integer_value(json_object_get(res, "duration_ms")), 282, "claude: duration_ms");
    is_int(json_integer_value(json_object_get(json_object_get(res, "usage"), "output_tokens")), 40,
           "claude: usage");
    is_str(str_at(json_object_get(pre, "native"), "type"), "assistant", "claude: native is the parsed line");
    json_t *msg = nth(all, "message", 0);
    is_str(str_at(msg, "role"), "assistant", "claude: message role");
    is_str(str_at(json_array_get(json_object_get(msg, "content"), 0), "text"), "I will call Bash.",
           "claude: message text block");
    json_t *init = nth(all, "log", 0);
    is_str(str_at(init, "native_session"), "a1d3c9bf-e1a7-4748-945b-4e7fd0cc8c5e",
           "claude: init log names the session");
    json_decref(all);

    all = parse_file(dir, "claude-api-error-500.jsonl", "claude-code", 7);
    json_t *err = nth(all, "error", 0);
    is_str(str_at(err, "code"), "agent_error", "claude 500: error code");
    ok(json_is_true(json_object_get(err, "retryable")), "claude 500: retryable");
    json_t *retry = nth(all, "log", 1);
    is_str(str_at(retry, "level"), "warn", "claude 500: api_retry is a warn log");
    json_decref(all);

    all = parse_file(dir, "claude-partial-messages.jsonl", "claude-code", 3);
    json_t *d0 = nth(all, "delta", 0), *d2 = nth(all, "delta", 2);
    is_str(str_at(d0, "kind"), "text", "claude partial: text delta");
    is_str(str_at(d0, "text"), "I will ca", "claude partial: delta text");
    is_str(str_at(d2, "kind"), "tool_input", "claude partial: tool input delta");
    json_decref(all);
}

/* ---- garbage, oversized lines, stderr ---------------------------------------------------- */

static void test_garbage(void)
{
    static const char garbage[] = "not json at all\n"
                                  "{\"type\":\"weird\"}\n"
                                  "[1,2,3]\n"
                                  "\xff\xfe bad \xc3 utf8\n"
                                  "\n   \r\n"
                                  "{\"truncated\": \n"
                                  "{\"type\":\"result\",\"result\":\"x\",\"is_error\":false}\r\n"
                                  "{\"type\":\"result\",\"result\":\"again\"}\n"
                                  "tail without newline";
    json_t *all = parse(agent_adapter_find("claude-code"), garbage, sizeof garbage - 1, 2, 0, NULL, NULL);
    char *t = types(all, 0);
    is_str(t, "log log log log log result log log", "garbage: logs, one result, a second result ignored");
    json_t *l0 = nth(all, "log", 0), *l1 = nth(all, "log", 1), *l3 = nth(all, "log", 3);
    is_str(str_at(l0, "level"), "warn", "garbage: not JSON is a warn log");
    is_str(str_at(l0, "native"), "not json at all", "garbage: native keeps the raw line");
    ok(json_is_object(json_object_get(l1, "native")), "garbage: unknown event keeps its object");
    ok(strstr(str_at(l3, "native"), "bad") != NULL, "garbage: invalid UTF-8 kept, replaced");
    is_str(str_at(nth(all, "log", 6), "native"), "tail without newline",
           "garbage: finish parses the last line");
    free(t);
    json_decref(all);

    /* The same bytes to every adapter: nothing crashes, every line is an event. */
    const char *names[] = {"claude-code", "codex", "opencode", "jsonl"};
    for (size_t i = 0; i < 4; i++) {
        json_t *e = parse(agent_adapter_find(names[i]), garbage, sizeof garbage - 1, 1, 0, NULL, NULL);
        ok(json_array_size(e) >= 8 && all_native(e), "garbage through %s: %zu events", names[i],
           json_array_size(e));
        json_decref(e);
    }
}

static void test_too_long(void)
{
    struct buf in = {0};
    buf_puts(&in, "{\"type\":\"session\",\"id\":\"s1\"}\n{\"type\":\"log\",\"text\":\"");
    for (int i = 0; i < 300; i++)
        buf_puts(&in, "x");
    buf_puts(&in, "\"}\n{\"type\":\"delta\",\"text\":\"after\"}\n");
    for (unsigned seed = 0; seed < 4; seed++) {
        char *session = NULL;
        json_t *all = parse(agent_adapter_find("jsonl"), in.p, in.len, seed, 128, &session, NULL);
        char *t = types(all, 0);
        is_str(t, "log error delta", "too long (seed %u): error, then resync", seed);
        json_t *err = nth(all, "error", 0);
        is_str(str_at(err, "code"), "agent_output_too_long", "too long: code");
        ok(json_is_string(json_object_get(err, "native")) &&
               strncmp(str_at(err, "native"), "{\"type\":\"log\"", 13) == 0,
           "too long: native holds the line's head");
        is_str(str_at(nth(all, "delta", 0), "text"), "after", "too long: the next line is parsed");
        is_str(session, "s1", "too long: session kept");
        free(session);
        free(t);
        json_decref(all);
    }
    /* A line of exactly the limit passes. */
    json_t *all = parse(agent_adapter_find("jsonl"), in.p, in.len, 0, 0, NULL, NULL);
    char *t = types(all, 0);
    is_str(t, "log log delta", "the same line within the default limit is parsed");
    free(t);
    json_decref(all);
    /* An oversized line cut by EOF. */
    all = parse(agent_adapter_find("jsonl"), in.p + 29, 200, 1, 128, NULL, NULL);
    t = types(all, 0);
    is_str(t, "error", "too long and unterminated: one error");
    free(t);
    json_decref(all);
    buf_free(&in);
}

static void test_stderr(void)
{
    static const char err[] = "warning: low disk\nERROR: boom\n[debug] detail\nplain text\nerrors are fine\n";
    json_t *all = parse(NULL, err, sizeof err - 1, 1, 0, NULL, NULL);
    is_str(str_at(json_array_get(all, 0), "level"), "warn", "stderr: warning");
    is_str(str_at(json_array_get(all, 1), "level"), "error", "stderr: ERROR");
    is_str(str_at(json_array_get(all, 2), "level"), "debug", "stderr: [debug]");
    is_str(str_at(json_array_get(all, 3), "level"), "info", "stderr: plain");
    is_str(str_at(json_array_get(all, 4), "level"), "info", "stderr: a word that starts with error");
    is_str(str_at(json_array_get(all, 1), "text"), "ERROR: boom", "stderr: text is the line");
    json_decref(all);
    static const char json_on_stderr[] = "{\"type\":\"result\"}\n";
    all = parse(NULL, json_on_stderr, sizeof json_on_stderr - 1, 0, 0, NULL, NULL);
    is_str(str_at(json_array_get(all, 0), "type"), "log", "stderr: JSON is not interpreted");
    json_decref(all);
}

/* ---- the jsonl protocol ------------------------------------------------------------------ */

static void test_jsonl(void)
{
    static const char out[] =
        "{\"type\":\"session\",\"id\":\"native-7\"}\n"
        "{\"type\":\"delta\",\"text\":\"he\"}\n"
        "{\"type\":\"message\",\"text\":\"hello\"}\n"
        "{\"type\":\"message\",\"role\":\"user\",\"content\":\"a string\"}\n"
        "{\"type\":\"pre_tool\",\"id\":\"t1\",\"name\":\"sh\",\"input\":{\"cmd\":\"ls\"}}\n"
        "{\"type\":\"post_tool\",\"id\":\"t1\",\"output\":{\"files\":[\"a\"]}}\n"
        "{\"type\":\"log\",\"level\":\"debug\",\"text\":\"d\"}\n"
        "{\"type\":\"error\",\"message\":\"quota\",\"retryable\":true}\n"
        "{\"type\":\"message\",\"role\":\"robot\",\"text\":\"x\"}\n"
        "{\"type\":\"pre_tool\"}\n"
        "{\"type\":\"log\",\"level\":\"loud\",\"text\":\"x\"}\n"
        "{\"type\":\"session\"}\n"
        "{\"type\":\"result\",\"text\":\"done\",\"usage\":{\"input_tokens\":3}}\n";
    char *session = NULL;
    int has_result = 0;
    json_t *all = parse(agent_adapter_find("jsonl"), out, sizeof out - 1, 6, 0, &session, &has_result);
    char *t = types(all, 0);
    is_str(t, "log delta message message pre_tool post_tool log error log log log log result",
           "jsonl: event sequence (malformed lines become logs)");
    is_str(session, "native-7", "jsonl: session line names the native session");
    ok(has_result, "jsonl: result");
    json_t *m0 = nth(all, "message", 0), *m1 = nth(all, "message", 1);
    is_str(str_at(m0, "role"), "assistant", "jsonl: role defaults to assistant");
    is_str(str_at(json_array_get(json_object_get(m0, "content"), 0), "text"), "hello",
           "jsonl: text shorthand");
    is_str(str_at(json_array_get(json_object_get(m1, "content"), 0), "text"), "a string",
           "jsonl: string content");
    is_str(str_at(nth(all, "post_tool", 0), "output"), "{\"files\":[\"a\"]}",
           "jsonl: structured output as text");
    ok(json_is_false(json_object_get(nth(all, "post_tool", 0), "is_error")),
       "jsonl: is_error defaults to false");
    is_str(str_at(nth(all, "error", 0), "code"), "agent_error", "jsonl: error code defaults");
    is_str(str_at(nth(all, "delta", 0), "kind"), "text", "jsonl: delta kind defaults");
    is_str(str_at(json_object_get(nth(all, "delta", 0), "native"), "type"), "delta", "jsonl: native kept");
    ok(json_object_get(nth(all, "result", 0), "usage") != NULL, "jsonl: result usage passed on");
    ok(json_is_false(json_object_get(nth(all, "result", 0), "is_error")), "jsonl: result is_error default");
    is_str(str_at(nth(all, "log", 2), "level"), "warn", "jsonl: malformed message is a warn log");
    free(t);
    free(session);
    json_decref(all);
}

/* ---- commands ---------------------------------------------------------------------------- */

static char *joined(char **v)
{
    struct buf b = {0};
    for (size_t i = 0; v && v[i]; i++)
        buf_printf(&b, "%s%s", i ? " " : "", v[i]);
    return b.p ? b.p : xstrdup("");
}

static const char *env_get(char **env, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
            return env[i] + n + 1;
    return NULL;
}

/* argv of adapter name for opts, joined by spaces; fails the test on an error. */
static char *argv_of(const char *name, const struct agent_run_opts *o, struct agent_cmd *cmd)
{
    int rc = agent_command(agent_adapter_find(name), o, cmd);
    ok(rc == 0, "%s: command built", name);
    return joined(cmd->argv);
}

static void test_claude_command(void)
{
    static const char *const extra[] = {"--max-turns", "5", NULL};
    struct agent_run_opts o = {.prompt = "-p looks like a flag",
                               .home = "/data/h",
                               .base_url = "http://127.0.0.1:9",
                               .api_key = "sk-x",
                               .extra_args = extra};
    struct agent_cmd cmd;
    char *a = argv_of("claude-code", &o, &cmd);
    is_str(a, "claude -p --input-format stream-json --output-format stream-json --verbose --max-turns 5",
           "claude: first run");
    is_str(
        cmd.stdin_data,
        "{\"type\":\"user\",\"session_id\":\"\",\"parent_tool_use_id\":null,\"message\":{\"role\":\"user\","
        "\"content\":[{\"type\":\"text\",\"text\":\"-p looks like a flag\"}]}}\n",
        "claude: the prompt is a stream-json user line on stdin, never an argument");
    ok(cmd.stdin_keep_open, "claude: stdin stays open for the next messages and control lines");
    is_str(env_get(cmd.env, "ANTHROPIC_BASE_URL"), "http://127.0.0.1:9", "claude: base url");
    is_str(env_get(cmd.env, "ANTHROPIC_API_KEY"), "sk-x", "claude: key");
    is_str(env_get(cmd.env, "HOME"), "/data/h", "claude: HOME");
    is_str(env_get(cmd.env, "DISABLE_AUTOUPDATER"), "1", "claude: DISABLE_* set");
    is_str(env_get(cmd.env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"), "1",
           "claude: no nonessential traffic");
    free(a);
    agent_cmd_free(&cmd);

    static const char *const bridge[] = {"/usr/bin/agentd", "mcp", "--session", "S1", NULL};
    struct agent_mcp mcp = {.command = bridge};
    o = (struct agent_run_opts){.prompt = "p",
                                .home = "/data/h",
                                .native_session = "abc",
                                .mcp = &mcp,
                                .bypass_permissions = 1,
                                .model = "opus",
                                .partial = 1};
    a = argv_of("claude-code", &o, &cmd);
    is_str(a,
           "claude -p --input-format stream-json --output-format stream-json --verbose "
           "--include-partial-messages "
           "--model opus --resume abc --dangerously-skip-permissions --mcp-config /data/h/agentd-mcp.json "
           "--strict-mcp-config --allowedTools=mcp__rt__runtime",
           "claude: resume with MCP");
    is_str(env_get(cmd.env, "IS_SANDBOX"), "1", "claude: bypass sets IS_SANDBOX");
    is_int(cmd.nfiles, 1, "claude: one file");
    is_str(cmd.files[0].content,
           "{\"mcpServers\":{\"rt\":{\"type\":\"stdio\",\"command\":\"/usr/bin/agentd\",\"args\":[\"mcp\","
           "\"--session\",\"S1\"]}}}",
           "claude: stdio MCP config");
    free(a);
    agent_cmd_free(&cmd);

    struct agent_mcp http = {.url = "http://127.0.0.1:4437/v1/sessions/S1/mcp"};
    o = (struct agent_run_opts){
        .prompt = "p", .home = "/h", .native_session = "abc", .fork = 1, .mcp = &http};
    a = argv_of("claude-code", &o, &cmd);
    ok(strstr(a, "--resume abc --fork-session --mcp-config /h/agentd-mcp.json") != NULL, "claude: fork");
    is_str(
        cmd.files[0].content,
        "{\"mcpServers\":{\"rt\":{\"type\":\"http\",\"url\":\"http://127.0.0.1:4437/v1/sessions/S1/mcp\"}}}",
        "claude: http MCP config");
    free(a);
    agent_cmd_free(&cmd);

    o = (struct agent_run_opts){.prompt = "p", .mcp = &http};
    is_int(agent_command(agent_adapter_find("claude-code"), &o, &cmd), -EINVAL, "claude: MCP needs a home");
    ok(cmd.argv == NULL, "claude: nothing left on error");
    o = (struct agent_run_opts){.prompt = "p", .fork = 1};
    is_int(agent_command(agent_adapter_find("claude-code"), &o, &cmd), -EINVAL,
           "fork needs a native session");
    o = (struct agent_run_opts){.prompt = NULL};
    is_int(agent_command(agent_adapter_find("claude-code"), &o, &cmd), -EINVAL, "a prompt is required");
    struct agent_mcp both = {.url = "u", .command = bridge};
    o = (struct agent_run_opts){.prompt = "p", .home = "/h", .mcp = &both};
    is_int(agent_command(agent_adapter_find("claude-code"), &o, &cmd), -EINVAL,
           "mcp: url or command, not both");
    o = (struct agent_run_opts){.prompt = "p", .program = "/opt/claude"};
    a = argv_of("claude-code", &o, &cmd);
    ok(strncmp(a, "/opt/claude -p", 14) == 0, "claude: configured program");
    free(a);
    agent_cmd_free(&cmd);
    ok(agent_cancel_line(agent_adapter_find("claude-code"), "r1") == NULL, "claude: cancel by signal");
}

/* The i-th line (from 0) of cmd's stdin, parsed (new reference). */
static json_t *stdin_line(const struct agent_cmd *cmd, int i)
{
    const char *p = cmd->stdin_data;
    while (p && i-- > 0 && (p = strchr(p, '\n')) != NULL)
        p++;
    const char *nl = p ? strchr(p, '\n') : NULL;
    return p && nl ? json_loadb(p, (size_t)(nl - p), 0, NULL) : NULL;
}

static void test_codex_command(void)
{
    struct agent_run_opts o = {.prompt = "hi",
                               .home = "/h",
                               .workspace = "/w",
                               .base_url = "http://127.0.0.1:9/",
                               .api_key = "k",
                               .model = "fake-model",
                               .bypass_permissions = 1};
    struct agent_cmd cmd;
    char *a = argv_of("codex", &o, &cmd);
    is_str(a, "codex app-server", "codex: the app-server, JSON-RPC on stdio");
    ok(cmd.stdin_keep_open && cmd.turn_by_send,
       "codex: stdin stays open; the message follows once the thread is made");
    json_t *init = stdin_line(&cmd, 0), *inited = stdin_line(&cmd, 1), *thread = stdin_line(&cmd, 2);
    ok(!strcmp(str_at(init, "method"), "initialize") && !strcmp(str_at(inited, "method"), "initialized"),
       "codex: initialize, then initialized");
    json_t *params = json_object_get(thread, "params");
    ok(!strcmp(str_at(thread, "method"), "thread/start") &&
           json_integer_value(json_object_get(thread, "id")) == 2 && !strcmp(str_at(params, "cwd"), "/w") &&
           !strcmp(str_at(params, "model"), "fake-model") &&
           !strcmp(str_at(params, "sandbox"), "danger-full-access") &&
           !strcmp(str_at(params, "approvalPolicy"), "never"),
       "codex: thread/start in the workspace, the sandbox left to agentd's environment, no approvals asked");
    ok(stdin_line(&cmd, 3) == NULL, "codex: nothing more (no message before the thread exists)");
    json_decref(init);
    json_decref(inited);
    json_decref(thread);
    is_str(env_get(cmd.env, "CODEX_HOME"), "/h/.codex", "codex: CODEX_HOME");
    is_str(env_get(cmd.env, "AGENTD_MODEL_API_KEY"), "k", "codex: key in env, named by the config");
    is_int(cmd.nfiles, 1, "codex: config.toml");
    is_str(cmd.files[0].path, "/h/.codex/config.toml", "codex: config path");
    ok(strstr(cmd.files[0].content, "base_url = \"http://127.0.0.1:9/v1\"") != NULL,
       "codex: base_url gets /v1");
    ok(strstr(cmd.files[0].content, "wire_api = \"responses\"") != NULL, "codex: responses wire API");
    ok(strstr(cmd.files[0].content, "env_key = \"AGENTD_MODEL_API_KEY\"") != NULL, "codex: env_key");
    free(a);
    agent_cmd_free(&cmd);

    static const char *const bridge[] = {"/bin/agentd", "mcp", "--session", "a\"b", NULL};
    struct agent_mcp mcp = {.command = bridge};
    o = (struct agent_run_opts){
        .prompt = "hi", .home = "/h", .native_session = "T1", .mcp = &mcp, .approvals = 1};
    a = argv_of("codex", &o, &cmd);
    thread = stdin_line(&cmd, 2);
    ok(!strcmp(str_at(thread, "method"), "thread/resume") &&
           !strcmp(str_at(json_object_get(thread, "params"), "threadId"), "T1") &&
           !strcmp(str_at(json_object_get(thread, "params"), "approvalPolicy"), "untrusted"),
       "codex: resume is thread/resume; approvals make it ask (untrusted)");
    json_decref(thread);
    ok(strstr(cmd.files[0].content,
              "[mcp_servers.rt]\ncommand = \"/bin/agentd\"\nargs = [\"mcp\", \"--session\", \"a\\\"b\"]") !=
           NULL,
       "codex: MCP server in config.toml, TOML-escaped");
    free(a);
    agent_cmd_free(&cmd);

    o = (struct agent_run_opts){.prompt = "hi", .native_session = "T1", .fork = 1};
    a = argv_of("codex", &o, &cmd);
    thread = stdin_line(&cmd, 2);
    is_str(str_at(thread, "method"), "thread/fork", "codex: fork is thread/fork");
    json_decref(thread);
    is_int(cmd.nfiles, 0, "codex: nothing to configure, no file");
    free(a);
    agent_cmd_free(&cmd);
    o = (struct agent_run_opts){.prompt = "hi", .base_url = "http://x"};
    is_int(agent_command(agent_adapter_find("codex"), &o, &cmd), -EINVAL, "codex: a provider needs a home");
}

static void test_opencode_command(void)
{
    struct agent_mcp mcp = {.url = "http://127.0.0.1:1/v1/sessions/S/mcp"};
    struct agent_run_opts o = {.prompt = "say \"hi\"",
                               .home = "/h",
                               .base_url = "http://127.0.0.1:9/v1",
                               .api_key = "k",
                               .model = "fake-model",
                               .secret = "s3",
                               .approvals = 1,
                               .mcp = &mcp};
    struct agent_cmd cmd;
    char *a = argv_of("opencode", &o, &cmd);
    is_str(a, "opencode serve --hostname 127.0.0.1 --port 0", "opencode: a server on loopback, its own port");
    ok(cmd.stdin_len == 0 && cmd.turn_by_send, "opencode: the message goes over HTTP once it listens");
    is_str(env_get(cmd.env, "XDG_DATA_HOME"), "/h/.local/share", "opencode: XDG dirs under home");
    is_str(env_get(cmd.env, "OPENCODE_DISABLE_AUTOUPDATE"), "1", "opencode: no autoupdate");
    ok(!strcmp(env_get(cmd.env, "OPENCODE_SERVER_USERNAME"), AGENT_HTTP_USER) &&
           !strcmp(env_get(cmd.env, "OPENCODE_SERVER_PASSWORD"), "s3"),
       "opencode: the server takes only agentd");
    json_t *cfg = json_loads(env_get(cmd.env, "OPENCODE_CONFIG_CONTENT"), 0, NULL);
    ok(cfg != NULL, "opencode: config is JSON");
    is_str(str_at(cfg, "model"), "agentd/fake-model", "opencode: model through our provider");
    json_t *prov = json_object_get(json_object_get(cfg, "provider"), "agentd");
    is_str(str_at(json_object_get(prov, "options"), "baseURL"), "http://127.0.0.1:9/v1", "opencode: baseURL");
    ok(json_is_true(
           json_object_get(json_object_get(json_object_get(prov, "models"), "fake-model"), "tool_call")),
       "opencode: tool_call");
    json_t *rt = json_object_get(json_object_get(cfg, "mcp"), "rt");
    is_str(str_at(rt, "type"), "remote", "opencode: remote MCP");
    json_t *perm = json_object_get(cfg, "permission");
    ok(!strcmp(str_at(perm, "*"), "ask") && !strcmp(str_at(perm, "rt_*"), "allow"),
       "opencode: approvals: every tool asks, but agentd's own (its MCP endpoint applies the policy)");
    json_decref(cfg);
    free(a);
    agent_cmd_free(&cmd);

    o = (struct agent_run_opts){
        .prompt = "p", .native_session = "ses_1", .model = "anthropic/x", .secret = "s"};
    a = argv_of("opencode", &o, &cmd);
    is_str(a, "opencode serve --hostname 127.0.0.1 --port 0", "opencode: resume is the same server");
    cfg = json_loads(env_get(cmd.env, "OPENCODE_CONFIG_CONTENT"), 0, NULL);
    ok(!strcmp(str_at(cfg, "model"), "anthropic/x") &&
           !strcmp(str_at(json_object_get(cfg, "permission"), "*"), "allow"),
       "opencode: its own provider's model; no approvals: nothing asks");
    json_decref(cfg);
    free(a);
    agent_cmd_free(&cmd);
    o = (struct agent_run_opts){.prompt = "p", .base_url = "http://x", .secret = "s"};
    is_int(agent_command(agent_adapter_find("opencode"), &o, &cmd), -EINVAL,
           "opencode: our provider needs a model");
    o = (struct agent_run_opts){.prompt = "p"};
    is_int(agent_command(agent_adapter_find("opencode"), &o, &cmd), -EINVAL,
           "opencode: the server needs a password");
}

static void test_jsonl_command(void)
{
    static const char *const extra[] = {"--fast", NULL};
    struct agent_mcp mcp = {.url = "http://127.0.0.1:1/mcp"};
    struct agent_run_opts o = {.prompt = "hello\nworld",
                               .program = "/bin/myagent",
                               .extra_args = extra,
                               .session_id = "S1",
                               .run_id = "R1",
                               .native_session = "n1",
                               .fork = 1,
                               .mcp = &mcp,
                               .workspace = "/w"};
    struct agent_cmd cmd;
    char *a = argv_of("jsonl", &o, &cmd);
    is_str(a, "/bin/myagent --fast", "jsonl: program and args");
    ok(cmd.stdin_keep_open, "jsonl: stdin stays open for control lines");
    ok(cmd.stdin_len > 0 && cmd.stdin_data[cmd.stdin_len - 1] == '\n' &&
           memchr(cmd.stdin_data, '\n', cmd.stdin_len) == cmd.stdin_data + cmd.stdin_len - 1,
       "jsonl: one line on stdin");
    json_t *user = json_loads(cmd.stdin_data, 0, NULL);
    is_str(str_at(user, "type"), "user", "jsonl: user line");
    is_str(str_at(user, "text"), "hello\nworld", "jsonl: text");
    is_str(str_at(user, "run"), "R1", "jsonl: run");
    is_str(str_at(user, "session"), "S1", "jsonl: session");
    is_str(str_at(user, "resume"), "n1", "jsonl: resume");
    ok(json_is_true(json_object_get(user, "fork")), "jsonl: fork");
    is_str(str_at(json_object_get(user, "mcp"), "url"), "http://127.0.0.1:1/mcp", "jsonl: mcp");
    is_str(env_get(cmd.env, "AGENTD_RUN_ID"), "R1", "jsonl: AGENTD_RUN_ID");
    is_str(env_get(cmd.env, "AGENTD_MCP_URL"), "http://127.0.0.1:1/mcp", "jsonl: AGENTD_MCP_URL");
    json_decref(user);
    free(a);
    agent_cmd_free(&cmd);
    char *cancel = agent_cancel_line(agent_adapter_find("jsonl"), "R1");
    is_str(cancel, "{\"type\":\"cancel\",\"run\":\"R1\"}\n", "jsonl: cancel line");
    free(cancel);
    o = (struct agent_run_opts){.prompt = "p"};
    is_int(agent_command(agent_adapter_find("jsonl"), &o, &cmd), -EINVAL, "jsonl: a program is required");
    ok(agent_adapter_find("nope") == NULL && agent_adapter_find(NULL) == NULL, "unknown adapters are NULL");
    is_str(agent_adapter_name(agent_adapter_find("codex")), "codex", "adapter names");
    agent_cmd_free(NULL);
    agent_parser_free(NULL);
}

/* The demo agent is the jsonl protocol spoken by `agentd demo-agent`, agentd's own executable. */
static void test_demo_command(void)
{
    static const char *const extra[] = {"--ignored", NULL};
    const struct agent_adapter *demo = agent_adapter_find("demo");
    ok(demo && agent_adapter_runs_self(demo) && !agent_adapter_runs_self(agent_adapter_find("jsonl")),
       "demo: an adapter that runs agentd itself");
    struct agent_run_opts o = {.prompt = "hi", .program = "/opt/agentd", .extra_args = extra, .run_id = "R2"};
    struct agent_cmd cmd;
    char *a = argv_of("demo", &o, &cmd);
    is_str(a, "/opt/agentd demo-agent", "demo: agentd demo-agent, whatever extra args were given");
    json_t *user = json_loads(cmd.stdin_data, 0, NULL);
    ok(cmd.stdin_keep_open && !strcmp(str_at(user, "text"), "hi"),
       "demo: the jsonl user line, stdin kept open");
    json_decref(user);
    free(a);
    agent_cmd_free(&cmd);
    char *cancel = agent_cancel_line(demo, "R2");
    is_str(cancel, "{\"type\":\"cancel\",\"run\":\"R2\"}\n", "demo: the jsonl cancel line");
    free(cancel);
    static const char out[] =
        "{\"type\":\"session\",\"id\":\"demo-1\"}\n{\"type\":\"delta\",\"text\":\"a\"}\n";
    char *session = NULL;
    json_t *all = parse(demo, out, sizeof out - 1, 2, 0, &session, NULL);
    char *t = types(all, 0);
    is_str(t, "log delta", "demo: its output is parsed as jsonl");
    is_str(session, "demo-1", "demo: its conversation id is the native session");
    free(t);
    free(session);
    json_decref(all);
    o = (struct agent_run_opts){.prompt = "p"};
    is_int(agent_command(demo, &o, &cmd), -EINVAL, "demo: without agentd's executable there is no command");
}

/* ---- talking back ------------------------------------------------------------------------- */

struct written {
    struct buf b; /* every byte the parser wrote for the agent's stdin */
};

static void record_write(void *arg, const char *data, size_t len)
{
    buf_append(&((struct written *)arg)->b, data, len);
}

/* The last line written, parsed (new reference), and the written bytes emptied. */
static json_t *last_written(struct written *w)
{
    json_t *j = NULL;
    if (w->b.len && w->b.p[w->b.len - 1] == '\n') {
        w->b.p[w->b.len - 1] = '\0';
        char *nl = strrchr(w->b.p, '\n');
        j = json_loads(nl ? nl + 1 : w->b.p, 0, NULL);
    }
    buf_reset(&w->b);
    return j;
}

/* Feeds the lines of a control-protocol capture the CLI wrote ("<< " lines) to p. */
static void feed_capture(struct agent_parser *p, const char *dir, const char *file)
{
    size_t len = 0;
    char *path = xasprintf("%s/%s", dir, file);
    char *data = slurp(path, &len);
    for (char *line = data, *nl; line && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl == NULL)
            nl = line + strlen(line);
        if (strncmp(line, "<< ", 3) == 0) {
            agent_parser_feed(p, line + 3, (size_t)(nl - line - 3));
            agent_parser_feed(p, "\n", 1);
        }
        if (*nl == '\0')
            break;
    }
    free(data);
    free(path);
}

static void test_claude_control(const char *dir)
{
    const struct agent_adapter *a = agent_adapter_find("claude-code");
    is_int(agent_adapter_caps(a),
           AGENT_CAP_APPROVALS | AGENT_CAP_STEER | AGENT_CAP_INTERRUPT | AGENT_CAP_WARM,
           "claude: can be asked, steered, interrupted, kept warm");
    ok(agent_adapter_approvals_per_process(a) && !agent_adapter_announces_caps(a),
       "claude: its permission mode is fixed per process");
    struct agent_run_opts o = {.prompt = "p", .approvals = 1, .bypass_permissions = 1};
    struct agent_cmd cmd;
    char *argv = argv_of("claude-code", &o, &cmd);
    ok(strstr(argv,
              "--permission-prompt-tool stdio --settings {\"permissions\":{\"ask\":[\"Bash\",\"Read\"") &&
           !strstr(argv, "--dangerously-skip-permissions") && env_get(cmd.env, "IS_SANDBOX") == NULL,
       "claude: approvals ask agentd (stdio) for every tool, instead of bypassing");
    free(argv);
    agent_cmd_free(&cmd);

    struct events e = {json_array()};
    struct written w = {{0}};
    struct agent_parser *p = agent_parser_new(a, 0, collect, &e);
    struct agent_run_opts turn = {.prompt = "steer me"};
    is_int(agent_send_turn(p, &turn), -EPIPE, "without a writer nothing can be sent");
    agent_parser_set_writer(p, record_write, &w);
    if (dir) {
        feed_capture(p, dir, "claude-control-protocol-can_use_tool.log");
        json_t *req = nth(e.all, "permission_request", 0);
        is_str(str_at(req, "tool"), "Bash", "can_use_tool capture: a permission_request for Bash");
        is_str(str_at(json_object_get(req, "input"), "command"), "touch perm-test.txt && echo created",
               "can_use_tool capture: its input");
        is_str(str_at(req, "native_request"), "63caf7ca-2881-491f-8b95-5f63cd430870",
               "can_use_tool capture: the CLI's request id, to answer with");
        ok(json_array_size(json_object_get(req, "suggestions")) == 3 && str_at(req, "tool_use_id"),
           "can_use_tool capture: suggestions and tool_use_id kept");
        ok(agent_parser_has_result(p), "can_use_tool capture: its turn ends with a result");
        buf_reset(&w.b);
    }
    json_t *input = json_pack("{s:s}", "command", "ls");
    struct agent_decision allow = {.allow = 1, .input = input};
    is_int(agent_send_decision(p, "req-1", &allow), 0, "claude: an allow is sent");
    json_t *j = last_written(&w);
    char *got = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    is_str(got,
           "{\"response\":{\"request_id\":\"req-1\",\"response\":{\"behavior\":\"allow\",\"updatedInput\":"
           "{\"command\":\"ls\"}},\"subtype\":\"success\"},\"type\":\"control_response\"}",
           "claude: allow is a control_response with the input back as updatedInput");
    free(got);
    json_decref(j);
    struct agent_decision deny = {.allow = 0, .message = "not now", .input = input};
    (void)!agent_send_decision(p, "req-2", &deny);
    j = last_written(&w);
    json_t *resp = json_object_get(json_object_get(j, "response"), "response");
    ok(!strcmp(str_at(resp, "behavior"), "deny") && !strcmp(str_at(resp, "message"), "not now"),
       "claude: deny carries its message (the model reads it as the tool's result)");
    json_decref(j);
    json_decref(input);
    is_int(agent_send_interrupt(p, "R"), 0, "claude: interrupt is sent");
    j = last_written(&w);
    ok(!strcmp(str_at(j, "type"), "control_request") &&
           !strcmp(str_at(json_object_get(j, "request"), "subtype"), "interrupt") &&
           !strcmp(str_at(j, "request_id"), "agentd-interrupt-1"),
       "claude: interrupt is a control_request with a request id of agentd's");
    json_decref(j);
    is_int(agent_send_steer(p, "R", "also this"), 0, "claude: steering is sent");
    j = last_written(&w);
    is_str(str_at(json_array_get(json_object_get(json_object_get(j, "message"), "content"), 0), "text"),
           "also this", "claude: steering is a user line written mid-turn");
    json_decref(j);
    is_int(agent_send_turn(p, &turn), 0, "claude: the next message is sent");
    ok(!agent_parser_has_result(p), "claude: a new turn expects its own result");
    buf_reset(&w.b);
    static const char other[] = "{\"type\":\"control_request\",\"request_id\":\"x9\",\"request\":"
                                "{\"subtype\":\"hook_callback\"}}\n";
    agent_parser_feed(p, other, sizeof other - 1);
    j = last_written(&w);
    ok(!strcmp(str_at(json_object_get(j, "response"), "subtype"), "error") &&
           !strcmp(str_at(json_object_get(j, "response"), "request_id"), "x9"),
       "claude: a control_request agentd does not handle is refused at once, never left waiting");
    json_decref(j);
    agent_parser_free(p);
    json_decref(e.all);
    buf_free(&w.b);

    if (dir) { /* the interrupt capture: the turn ends with an error result, the process stays */
        struct events ei = {json_array()};
        p = agent_parser_new(a, 0, collect, &ei);
        feed_capture(p, dir, "claude-control-interrupt.log");
        json_t *r0 = nth(ei.all, "result", 0);
        ok(json_is_true(json_object_get(r0, "is_error")) &&
               !strcmp(str_at(r0, "subtype"), "error_during_execution"),
           "interrupt capture: the interrupted turn's result");
        agent_parser_free(p);
        json_decref(ei.all);
    }
}

static void test_jsonl_control(void)
{
    const struct agent_adapter *a = agent_adapter_find("jsonl");
    ok(agent_adapter_announces_caps(a) && !agent_adapter_approvals_per_process(a),
       "jsonl: a program announces what it can do; the permission mode goes with each message");
    struct events e = {json_array()};
    struct written w = {{0}};
    struct agent_parser *p = agent_parser_new(a, 0, collect, &e);
    agent_parser_set_writer(p, record_write, &w);
    is_int(agent_parser_caps(p), 0, "jsonl: nothing until the program says so");
    is_int(agent_send_steer(p, "R1", "x"), -ENOTSUP, "jsonl: a protocol 1 program cannot be steered");
    is_int(agent_send_interrupt(p, "R1"), -ENOTSUP, "jsonl: nor interrupted");
    static const char out[] = "{\"type\":\"capabilities\",\"protocol\":2,\"steer\":true,\"interrupt\":true,"
                              "\"approvals\":true,\"warm\":false,\"teleport\":true}\n"
                              "{\"type\":\"permission_request\",\"request\":\"q1\",\"tool\":\"Bash\","
                              "\"input\":{\"command\":\"ls\"}}\n"
                              "{\"type\":\"permission_request\",\"tool\":\"Bash\"}\n";
    agent_parser_feed(p, out, sizeof out - 1);
    is_int(agent_parser_caps(p), AGENT_CAP_APPROVALS | AGENT_CAP_STEER | AGENT_CAP_INTERRUPT,
           "jsonl: capabilities as announced (unknown ones ignored)");
    json_t *req = nth(e.all, "permission_request", 0);
    ok(req && !strcmp(str_at(req, "native_request"), "q1") && !strcmp(str_at(req, "tool"), "Bash"),
       "jsonl: a permission_request");
    ok(nth(e.all, "permission_request", 1) == NULL && !strcmp(str_at(nth(e.all, "log", 1), "level"), "warn"),
       "jsonl: one without a request id is a warn log");
    struct agent_decision d = {.allow = 0, .message = "no"};
    (void)!agent_send_decision(p, "q1", &d);
    json_t *j = last_written(&w);
    char *got = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    is_str(got,
           "{\"decision\":\"deny\",\"message\":\"no\",\"request\":\"q1\",\"type\":\"permission_response\"}",
           "jsonl: the permission_response line");
    free(got);
    json_decref(j);
    (void)!agent_send_steer(p, "R1", "more");
    j = last_written(&w);
    ok(!strcmp(str_at(j, "type"), "steer") && !strcmp(str_at(j, "text"), "more") &&
           !strcmp(str_at(j, "run"), "R1"),
       "jsonl: the steer line");
    json_decref(j);
    (void)!agent_send_interrupt(p, "R1");
    j = last_written(&w);
    ok(!strcmp(str_at(j, "type"), "interrupt") && !strcmp(str_at(j, "run"), "R1"),
       "jsonl: the interrupt line");
    json_decref(j);
    struct agent_run_opts o = {.prompt = "next", .run_id = "R2", .approvals = 1};
    is_int(agent_send_turn(p, &o), -ENOTSUP, "jsonl: a program that is not warm takes no next message");
    static const char warm[] = "{\"type\":\"capabilities\",\"protocol\":2,\"warm\":true}\n";
    agent_parser_feed(p, warm, sizeof warm - 1);
    is_int(agent_send_turn(p, &o), 0, "jsonl: a warm one does");
    j = last_written(&w);
    ok(!strcmp(str_at(j, "type"), "user") && json_integer_value(json_object_get(j, "protocol")) == 2 &&
           json_is_true(json_object_get(j, "approvals")) && !strcmp(str_at(j, "run"), "R2"),
       "jsonl: the next message is a user line of protocol 2, with its run and whether to ask");
    json_decref(j);
    agent_parser_free(p);
    json_decref(e.all);
    buf_free(&w.b);

    p = agent_parser_new(agent_adapter_find("opencode"), 0, collect, &e);
    agent_parser_set_writer(p, record_write, &w);
    is_int(agent_send_interrupt(p, "R") | agent_send_steer(p, "R", "x"), -ENOTSUP,
           "opencode: no turn runs: neither interrupt nor steer");
    agent_parser_free(p);
}

/* A real `codex app-server` stream (tests/unit/agent_samples/codex-app-server.jsonl, Codex 0.169.0
 * against the fake Responses API): two turns, a tool call in the first, a declined one in the
 * second. Fed a line at a time as a session would, sending the next message after each result. */
static void test_codex_app_server(void)
{
    size_t len = 0;
    char *data = slurp("tests/unit/agent_samples/codex-app-server.jsonl", &len);
    if (!ok(data != NULL, "codex app-server sample: readable"))
        return;
    struct events e = {json_array()};
    struct written w = {{0}};
    struct agent_parser *p = agent_parser_new(agent_adapter_find("codex"), 0, collect, &e);
    agent_parser_set_writer(p, record_write, &w);
    struct agent_run_opts first = {.prompt = "-dash prompt \"quoted\""};
    is_int(agent_send_turn(p, &first), 0, "codex: the first message waits for the thread");
    is_int((int)w.b.len, 0, "codex: nothing is written before the thread exists");
    int turns = 0;
    for (char *line = data, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        size_t before = json_array_size(e.all);
        agent_parser_feed(p, line, (size_t)(nl - line) + 1);
        if (turns == 0 && w.b.len && strstr(w.b.p, "\"turn/start\"")) {
            json_t *t = last_written(&w);
            ok(!strcmp(str_at(json_object_get(t, "params"), "threadId"), agent_parser_native_session(p)) &&
                   !strcmp(str_at(json_array_get(json_object_get(json_object_get(t, "params"), "input"), 0),
                                  "text"),
                           "-dash prompt \"quoted\""),
               "codex: once the thread answers, the message goes as turn/start for it, prompt whole");
            json_decref(t);
        }
        for (size_t i = before; i < json_array_size(e.all); i++)
            if (!strcmp(str_at(json_array_get(e.all, i), "type"), "result") && ++turns == 1) {
                struct agent_run_opts next = {.prompt = "second", .approvals = 1};
                (void)!agent_send_turn(p, &next);
                buf_reset(&w.b);
            }
    }
    is_str(agent_parser_native_session(p), "01a23d82-4144-7590-a2d3-98d55eb9b9bc",
           "codex: the thread is the native session");
    is_int(turns, 2, "codex: each turn/completed is a result");
    json_t *pre = nth(e.all, "pre_tool", 0), *post = nth(e.all, "post_tool", 0),
           *res = nth(e.all, "result", 0);
    is_str(str_at(json_object_get(pre, "input"), "command"), "echo hi from codex",
           "codex: the command as the model wrote it (not bash -lc's wrapping)");
    is_str(str_at(post, "output"), "hi from codex\n", "codex: post_tool output");
    ok(!strncmp(str_at(res, "text"), "DONE -dash prompt \"quoted\": ", 28) &&
           strstr(str_at(res, "text"), "hi from codex"),
       "codex: result text, the last message (the model echoed the tool's output)");
    ok(json_integer_value(json_object_get(json_object_get(res, "usage"), "input_tokens")) > 0,
       "codex: turn usage");
    json_t *req = nth(e.all, "permission_request", 0);
    ok(req && !strcmp(str_at(req, "tool"), "command_execution") &&
           !strcmp(str_at(json_object_get(req, "input"), "command"), "touch nope.txt"),
       "codex: requestApproval is a permission_request");
    struct agent_decision no = {.allow = 0};
    (void)!agent_send_decision(p, str_at(req, "native_request"), &no);
    json_t *d = last_written(&w);
    char *got = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    is_str(got, "{\"id\":0,\"jsonrpc\":\"2.0\",\"result\":{\"decision\":\"decline\"}}",
           "codex: the answer is the JSON-RPC response to the server's request id");
    free(got);
    json_decref(d);
    json_t *declined = nth(e.all, "post_tool", 1);
    ok(json_is_true(json_object_get(declined, "is_error")), "codex: a declined command is a failed tool");
    ok(agent_send_interrupt(p, "R") == -ENOTSUP && agent_send_steer(p, "R", "x") == -ENOTSUP,
       "codex: between turns nothing can be interrupted or steered");
    agent_parser_free(p);
    json_decref(e.all);
    buf_free(&w.b);
    free(data);
}

/* The request line written last (see last_written), checked for its tag, method and URL. */
static json_t *request_is(struct written *w, const char *tag, const char *method, const char *url,
                          const char *what)
{
    json_t *r = last_written(w);
    ok(r && !strcmp(str_at(r, "tag"), tag) && !strcmp(str_at(r, "method"), method) &&
           !strcmp(str_at(r, "url"), url),
       "opencode: %s (%s %s)", what, method, url);
    return r;
}

/* A real `opencode serve` event stream (tests/unit/agent_samples/opencode-serve-events.jsonl, the
 * data of each Server-Sent Event of GET /event, OpenCode 1.18.33 against the fake Chat Completions
 * API with "permission": {"bash": "ask"}): two turns, the second with a bash call that asked first,
 * answered "always", and a message sent while it ran (steering). Fed as a session would: stdout's
 * line, the requests' answers, the events, the next message after each result. */
static void test_opencode_serve(void)
{
    size_t len = 0;
    char *data = slurp("tests/unit/agent_samples/opencode-serve-events.jsonl", &len);
    if (!ok(data != NULL, "opencode serve sample: readable"))
        return;
    static const char sid[] = "ses_dc2171f92ffeJPbeyEbUk04P4m";
    struct events e = {json_array()};
    struct written w = {{0}};
    struct agent_parser *p = agent_parser_new(agent_adapter_find("opencode"), 0, collect, &e);
    agent_parser_set_writer(p, record_write, &w);
    struct agent_run_opts first = {.prompt = "after abort say"};
    is_int(agent_send_turn(p, &first), 0, "opencode: the first message waits for the server");
    is_int((int)w.b.len, 0, "opencode: nothing is requested before it listens");
    static const char listening[] = "opencode server listening on http://127.0.0.1:4096\n";
    agent_parser_feed(p, listening, sizeof listening - 1);
    json_t *r = request_is(&w, "events", "GET", "http://127.0.0.1:4096/event", "its events are subscribed");
    ok(json_is_true(json_object_get(r, "stream")), "opencode: as a stream");
    json_decref(r);
    static const char connected[] = "{\"id\":\"evt_1\",\"type\":\"server.connected\",\"properties\":{}}";
    agent_parser_http_event(p, connected, sizeof connected - 1);
    r = request_is(&w, "session", "POST", "http://127.0.0.1:4096/session", "then its session is made");
    json_t *rule = json_array_get(json_object_get(json_object_get(r, "body"), "permission"), 0);
    ok(!strcmp(str_at(rule, "permission"), "question") && !strcmp(str_at(rule, "action"), "deny"),
       "opencode: nobody answers its questions: denied");
    json_decref(r);
    char *made = xasprintf("{\"id\":\"%s\"}", sid);
    agent_parser_http_answer(p, "session", 1, 200, made, strlen(made), NULL);
    free(made);
    is_str(agent_parser_native_session(p), sid, "opencode: its session is the native session");
    r = request_is(&w, "prompt", "POST",
                   "http://127.0.0.1:4096/session/ses_dc2171f92ffeJPbeyEbUk04P4m/prompt_async",
                   "then the message");
    is_str(str_at(json_array_get(json_object_get(json_object_get(r, "body"), "parts"), 0), "text"),
           "after abort say", "opencode: the message's text");
    json_decref(r);

    int turns = 0;
    for (char *line = data, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        size_t before = json_array_size(e.all);
        agent_parser_http_event(p, line, (size_t)(nl - line));
        for (size_t i = before; i < json_array_size(e.all); i++) {
            const char *type = str_at(json_array_get(e.all, i), "type");
            if (!strcmp(type, "result") && ++turns == 1) {
                struct agent_run_opts next = {.prompt = "steer me now"};
                is_int(agent_send_turn(p, &next), 0, "opencode: the next message goes at once");
                json_decref(last_written(&w));
            } else if (!strcmp(type, "pre_tool")) {
                is_int(agent_send_steer(p, "R", "STEERED text"), 0,
                       "opencode: a running turn takes steering");
                r = request_is(&w, "steer", "POST",
                               "http://127.0.0.1:4096/session/ses_dc2171f92ffeJPbeyEbUk04P4m/prompt_async",
                               "steering is one more message into the busy session");
                json_decref(r);
            }
        }
    }
    is_int(turns, 2, "opencode: each time the session goes idle after being busy, a result");
    json_t *res = nth(e.all, "result", 0), *res2 = nth(e.all, "result", 1);
    is_str(str_at(res, "text"), "history ok", "opencode: first result text");
    is_str(str_at(res2, "text"), "next in turn: STEERED text / slept\n",
           "opencode: second result, the last step's text (the model read the steering)");
    ok(json_integer_value(json_object_get(json_object_get(res2, "usage"), "input_tokens")) == 200,
       "opencode: usage summed over the turn's steps");
    json_t *req = nth(e.all, "permission_request", 0);
    ok(req && !strcmp(str_at(req, "tool"), "bash") &&
           !strcmp(str_at(json_object_get(req, "input"), "command"), "sleep 3; echo slept") &&
           !strcmp(str_at(req, "native_request"), "per_23de9e2f9001II05NKivqlnpxa"),
       "opencode: permission.asked is a permission_request, the command in its input");
    json_t *pre = nth(e.all, "pre_tool", 0), *post = nth(e.all, "post_tool", 0);
    ok(pre && post && !strcmp(str_at(pre, "name"), "bash") && !strcmp(str_at(post, "output"), "slept\n") &&
           !json_is_true(json_object_get(post, "is_error")),
       "opencode: the tool's call and output");
    size_t i;
    json_t *ev;
    int user_texts = 0;
    json_array_foreach (e.all, i, ev) {
        const char *t = str_at(json_array_get(json_object_get(ev, "content"), 0), "text");
        user_texts += !strcmp(str_at(ev, "type"), "message") && t &&
                      (!strcmp(t, "steer me now") || !strcmp(t, "STEERED text"));
    }
    is_int(user_texts, 0, "opencode: the user's own parts are not the assistant's messages");
    ok(all_native(e.all), "opencode: every event carries native");
    struct agent_decision no = {.allow = 0, .message = "not now"};
    is_int(agent_send_decision(p, "per_23de9e2f9001II05NKivqlnpxa", &no), 0, "opencode: a decision is sent");
    r = request_is(&w, "reply", "POST",
                   "http://127.0.0.1:4096/permission/per_23de9e2f9001II05NKivqlnpxa/reply",
                   "a decision is the permission's reply");
    json_t *body = json_object_get(r, "body");
    ok(!strcmp(str_at(body, "reply"), "reject") && !strcmp(str_at(body, "message"), "not now"),
       "opencode: deny is reject, with the message the model reads");
    json_decref(r);
    ok(agent_send_interrupt(p, "R") == -ENOTSUP && agent_send_steer(p, "R", "x") == -ENOTSUP,
       "opencode: between turns nothing can be interrupted or steered");
    struct agent_run_opts third = {.prompt = "third"};
    (void)!agent_send_turn(p, &third);
    json_decref(last_written(&w));
    is_int(agent_send_interrupt(p, "R"), 0, "opencode: a running turn can be interrupted");
    json_decref(request_is(&w, "abort", "POST",
                           "http://127.0.0.1:4096/session/ses_dc2171f92ffeJPbeyEbUk04P4m/abort",
                           "an interrupt is the session's abort"));
    agent_parser_http_answer(p, "events", 0, 0, "", 0, "Connection reset by peer");
    res = nth(e.all, "result", 2);
    ok(res && json_is_true(json_object_get(res, "is_error")) &&
           strstr(str_at(res, "text"), "event stream ended"),
       "opencode: the event stream ending mid-turn ends the run with an error");
    agent_parser_free(p);
    json_decref(e.all);
    buf_free(&w.b);
    free(data);
}

/* Events of OpenCode's stream for session "ses_1": its status, and call_1's state. */
static void oc_event(struct agent_parser *p, char *line)
{
    agent_parser_http_event(p, line, strlen(line));
    free(line);
}

static void oc_status(struct agent_parser *p, const char *status)
{
    oc_event(p, xasprintf("{\"type\":\"session.status\",\"properties\":{\"sessionID\":\"ses_1\","
                          "\"status\":{\"type\":\"%s\"}}}",
                          status));
}

static void oc_tool(struct agent_parser *p, const char *state)
{
    oc_event(p, xasprintf("{\"type\":\"message.part.updated\",\"properties\":{\"sessionID\":\"ses_1\","
                          "\"part\":{\"type\":\"tool\",\"tool\":\"bash\",\"callID\":\"call_1\","
                          "\"messageID\":\"msg_1\",\"state\":{\"status\":\"%s\",\"input\":{\"command\":"
                          "\"sleep 30\"},\"error\":\"Tool execution aborted\"}}}}",
                          state));
}

/* An OpenCode parser whose first turn (o) runs call_1. */
static struct agent_parser *oc_running_tool(struct events *e, struct written *w, struct agent_run_opts *o)
{
    struct agent_parser *p = agent_parser_new(agent_adapter_find("opencode"), 0, collect, e);
    static const char listening[] = "opencode server listening on http://127.0.0.1:4096\n";
    static const char connected[] = "{\"type\":\"server.connected\",\"properties\":{}}";
    agent_parser_set_writer(p, record_write, w);
    (void)!agent_send_turn(p, o);
    agent_parser_feed(p, listening, sizeof listening - 1);
    agent_parser_http_event(p, connected, sizeof connected - 1);
    oc_status(p, "busy");
    oc_tool(p, "running");
    return p;
}

/* An abort (OpenCode 1.18.33, as agents_hitl.t sees it): the first idle ends the turn while its tool
 * still runs; the tool's error and a second idle come later, possibly after the next message went.
 * The tool's post_tool belongs to the interrupted turn, none to the next one. */
static void test_opencode_abort(void)
{
    struct events e = {json_array()};
    struct written w = {{0}};
    struct agent_run_opts o = {.prompt = "sleep", .native_session = "ses_1"};
    struct agent_parser *p = oc_running_tool(&e, &w, &o);
    is_int(agent_send_interrupt(p, "R1"), 0, "opencode abort: the turn is interrupted");
    oc_status(p, "idle");
    json_t *post = nth(e.all, "post_tool", 0), *res = nth(e.all, "result", 0);
    ok(post && res && !strcmp(str_at(post, "id"), "call_1") && !strcmp(str_at(post, "name"), "bash") &&
           json_is_true(json_object_get(post, "is_error")) &&
           !strcmp(str_at(post, "output"), "interrupted") &&
           json_is_true(json_object_get(res, "interrupted")),
       "opencode abort: the running tool ends with the interrupted turn, before its result");
    char *before = types(e.all, 1);
    o.prompt = "next";
    is_int(agent_send_turn(p, &o), 0, "opencode abort: the next message goes at once");
    oc_tool(p, "error");
    oc_status(p, "idle");
    char *after = types(e.all, 1);
    is_str(after, before,
           "opencode abort: the aborted tool's late error and idle add nothing to the next turn");
    oc_status(p, "busy");
    oc_status(p, "idle");
    ok(nth(e.all, "result", 1) && !nth(e.all, "post_tool", 1) && !nth(e.all, "pre_tool", 1),
       "opencode abort: the next turn ends at its own idle");
    free(before);
    free(after);
    agent_parser_free(p);
    json_decref(e.all);
    buf_free(&w.b);
}

/* An aborted call whose update never comes (OpenCode restarted, the part dropped): its id is held
 * through the next turn, for a late update, and not after it. */
static void test_opencode_abort_no_update(void)
{
    struct events e = {json_array()};
    struct written w = {{0}};
    struct agent_run_opts o = {.prompt = "sleep", .native_session = "ses_1"};
    struct agent_parser *p = oc_running_tool(&e, &w, &o);
    (void)!agent_send_interrupt(p, "R1");
    oc_status(p, "idle");
    json_t *ended = json_object_get(agent__state(p), "ended_tools");
    ok(json_object_get(ended, "call_1") != NULL, "opencode abort: the aborted call's id is held");
    o.prompt = "next";
    (void)!agent_send_turn(p, &o);
    oc_status(p, "busy");
    ended = json_object_get(agent__state(p), "ended_tools");
    ok(json_object_get(ended, "call_1") != NULL, "opencode abort: and through the next turn");
    oc_status(p, "idle");
    ended = json_object_get(agent__state(p), "ended_tools");
    ok(nth(e.all, "result", 1) && json_object_size(ended) == 0,
       "opencode abort: not after the next turn ended (%zu held)", json_object_size(ended));
    agent_parser_free(p);
    json_decref(e.all);
    buf_free(&w.b);
}

int main(void)
{
    char *dir = reference_dir();
    if (dir == NULL) {
        ok(1, "# SKIP reference captures not found (../shared/reference/agent-streams; set "
              "AGENTD_REFERENCE_DIR)");
    } else {
        for (size_t i = 0; i < CORE_ARRAY_LEN(captures); i++)
            test_capture(dir, &captures[i]);
        test_capture_details(dir);
        free(dir);
    }
    for (size_t i = 0; i < CORE_ARRAY_LEN(own_samples); i++)
        test_capture("tests/unit/agent_samples", &own_samples[i]);
    test_garbage();
    test_too_long();
    test_stderr();
    test_jsonl();
    test_claude_command();
    test_codex_command();
    test_opencode_command();
    test_jsonl_command();
    test_demo_command();
    char *ref = reference_dir();
    test_claude_control(ref);
    free(ref);
    test_jsonl_control();
    test_codex_app_server();
    test_opencode_serve();
    test_opencode_abort();
    test_opencode_abort_no_update();
    return done_testing();
}
