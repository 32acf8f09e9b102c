/*
 * agent_opencode.c — the opencode adapter: `opencode serve`, OpenCode's HTTP server, one per session
 * on 127.0.0.1 (a port it picks; its stdout says which), kept warm between messages like Claude
 * Code and Codex. agentd subscribes to its event stream (GET /event, Server-Sent Events), makes or
 * forks its session (POST /session, POST /session/ID/fork; a known one is simply used again, also by
 * a new process: OpenCode keeps sessions in its database under the session's home), and sends each
 * message as POST /session/ID/prompt_async; the session going idle (session.status idle) ends the
 * run. The provider, agentd's MCP server and the permission setting travel in
 * OPENCODE_CONFIG_CONTENT; the server takes only agentd (OPENCODE_SERVER_USERNAME/PASSWORD).
 *
 * Verified with OpenCode 1.18.33 against tests/agents/fake_chat_completions.mjs, offline:
 * approvals ("permission": {"*": "ask"} makes every tool call a permission.asked event, answered
 * with POST /permission/ID/reply {"reply": "once"|"reject", "message"?}; a rejection's message
 * reaches the model as the tool's error), steering (a prompt_async while the session is busy joins
 * the running loop: the model's next request in the turn carries it), interrupt (POST
 * /session/ID/abort: the tool's process is killed, session.error MessageAbortedError, idle; the
 * conversation stays), and a session resumed by a new process. Questions to the user (its
 * `question` tool) and plan-mode switches are denied in the session's own permission rules, as
 * `opencode run` does: nobody is there to answer them.
 *
 * The parser keeps the protocol's state (agent__state): the server's URL, the session, whether the
 * event stream is up, the message that waits for both, whether a turn runs, the role of each
 * message, the tool calls started, the step's text and the turn's token totals.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent_int.h"

#define OPENCODE_LISTENING "opencode server listening on "

/* ================= command ================= */

/* OPENCODE_CONFIG_CONTENT; free it. Every tool call asks agentd when approvals are on (agentd's
 * policy decides, its rules included), none does otherwise; agentd's own MCP tool is not asked
 * about twice (agentd's MCP endpoint applies the policy itself). */
static char *opencode_config(const struct agent_run_opts *o)
{
    json_t *cfg = json_object();
    if (o->base_url) {
        char *v1 = agent__base_v1(o->base_url);
        json_t *options = json_pack("{s:s}", "baseURL", v1);
        if (o->api_key)
            json_object_set_new(options, "apiKey", json_string(o->api_key));
        json_object_set_new(cfg, "model", json_sprintf("agentd/%s", o->model));
        json_object_set_new(cfg, "provider",
                            json_pack("{s:{s:s, s:o, s:{s:{s:b}}}}", "agentd", "npm",
                                      "@ai-sdk/openai-compatible", "options", options, "models", o->model,
                                      "tool_call", 1));
        free(v1);
    } else if (o->model) {
        json_object_set_new(cfg, "model", json_string(o->model));
    }
    if (o->mcp) {
        json_t *server;
        if (o->mcp->url) {
            server = json_pack("{s:s, s:s}", "type", "remote", "url", o->mcp->url);
        } else {
            json_t *argv = json_array();
            for (size_t i = 0; o->mcp->command[i]; i++)
                json_array_append_new(argv, json_string(o->mcp->command[i]));
            server = json_pack("{s:s, s:o}", "type", "local", "command", argv);
        }
        json_object_set_new(cfg, "mcp", json_pack("{s:o}", AGENT_MCP_SERVER, server));
    }
    json_object_set_new(
        cfg, "permission",
        json_pack("{s:s, s:s}", "*", o->approvals ? "ask" : "allow", AGENT_MCP_SERVER "_*", "allow"));
    char *s = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    return s;
}

static int opencode_command(const struct agent_run_opts *o, struct agent_cmd *cmd)
{
    if ((o->base_url && o->model == NULL) || o->secret == NULL)
        return -EINVAL; /* a provider of our own needs the model's name; the server a password */
    agent__arg(cmd, o->program ? o->program : "opencode");
    agent__args(cmd, (const char *const[]){"serve", "--hostname", "127.0.0.1", "--port", "0", NULL});
    agent__args(cmd, o->extra_args);
    cmd->turn_by_send = 1; /* once the server listens and its events are subscribed */

    if (o->home) {
        static const char *const xdg[][2] = {{"XDG_CONFIG_HOME", ".config"},
                                             {"XDG_DATA_HOME", ".local/share"},
                                             {"XDG_CACHE_HOME", ".cache"},
                                             {"XDG_STATE_HOME", ".local/state"}};
        agent__env(cmd, "HOME", o->home);
        for (size_t i = 0; i < CORE_ARRAY_LEN(xdg); i++) {
            char *dir = xasprintf("%s/%s", o->home, xdg[i][1]);
            agent__env(cmd, xdg[i][0], dir);
            free(dir);
        }
    }
    agent__env(cmd, "OPENCODE_DISABLE_MODELS_FETCH", "1");
    agent__env(cmd, "OPENCODE_DISABLE_AUTOUPDATE", "1");
    agent__env(cmd, "OPENCODE_SERVER_USERNAME", AGENT_HTTP_USER);
    agent__env(cmd, "OPENCODE_SERVER_PASSWORD", o->secret);
    char *config = opencode_config(o);
    agent__env(cmd, "OPENCODE_CONFIG_CONTENT", config);
    free(config);
    return 0;
}

/* ================= requests ================= */

/* A request line for the writer (agent.h, "agents over HTTP"); takes body (may be NULL). */
static char *opencode_request(struct agent_parser *p, const char *tag, const char *path, json_t *body)
{
    const char *url = agent__str(agent__state(p), "url");
    json_t *req = json_pack("{s:s, s:s, s:o}", "tag", tag, "method", body ? "POST" : "GET", "url",
                            json_sprintf("%s%s", url ? url : "", path));
    if (body)
        json_object_set_new(req, "body", body);
    return agent__line(req);
}

static void opencode_send(struct agent_parser *p, char *line)
{
    (void)agent__write(p, line, strlen(line));
    free(line);
}

static json_t *opencode_text_parts(const char *text)
{
    return json_pack("{s:[{s:s, s:s}]}", "parts", "type", "text", "text", text);
}

/* The message that waited for the session and the event stream, if both are there now. */
static void opencode_flush(struct agent_parser *p)
{
    json_t *st = agent__state(p);
    const char *sid = agent__str(st, "session");
    json_t *pending = json_object_get(st, "pending");
    if (sid == NULL || !json_is_true(json_object_get(st, "connected")) || pending == NULL)
        return;
    char *path = xasprintf("/session/%s/prompt_async", sid);
    char *line = opencode_request(p, "prompt", path, json_incref(pending));
    json_object_del(st, "pending");
    free(path);
    opencode_send(p, line);
}

/* The run cannot go on: an error, and the turn's result. */
static void opencode_fail(struct agent_parser *p, const char *why)
{
    json_t *st = agent__state(p);
    agent__error(p, "agent_error", why, 0);
    if (json_is_true(json_object_get(st, "busy"))) {
        json_object_set_new(st, "busy", json_false());
        json_object_del(st, "pending");
        agent__result(p, json_pack("{s:b, s:s}", "is_error", 1, "text", why));
    }
}

/* The request for the event stream (it must be up before a message goes, or its events are lost). */
static char *opencode_subscribe(struct agent_parser *p)
{
    json_t *st = agent__state(p);
    json_object_set_new(st, "subscribing", json_true());
    json_t *req = json_pack("{s:s, s:s, s:o, s:b}", "tag", "events", "method", "GET", "url",
                            json_sprintf("%s/event", agent__str(st, "url")), "stream", 1);
    return agent__line(req);
}

/* ================= talking to it ================= */

static char *opencode_turn_line(struct agent_parser *p, const struct agent_run_opts *o)
{
    json_t *st = agent__state(p);
    json_object_set_new(st, "busy", json_true());
    json_object_set_new(st, "saw_busy", json_false());
    json_object_set_new(st, "pending", opencode_text_parts(o->prompt));
    if (agent__str(st, "session") == NULL && o->native_session && !json_object_get(st, "resume")) {
        json_object_set_new(st, "resume", json_string(o->native_session)); /* made or forked later */
        if (o->fork)
            json_object_set_new(st, "fork", json_true());
    }
    if (agent__str(st, "url") && !json_is_true(json_object_get(st, "connected")) &&
        !json_is_true(json_object_get(st, "subscribing")))
        return opencode_subscribe(p); /* its stream broke: once more, then the message */
    if (agent__str(st, "session") == NULL || !json_is_true(json_object_get(st, "connected")))
        return xstrdup(""); /* sent once the server is up: opencode_connected */
    json_t *pending = json_incref(json_object_get(st, "pending"));
    json_object_del(st, "pending");
    char *path = xasprintf("/session/%s/prompt_async", agent__str(st, "session"));
    char *line = opencode_request(p, "prompt", path, pending);
    free(path);
    return line;
}

/* The session, its id, and whether a turn runs: the three things steer and interrupt need. */
static const char *opencode_busy_session(struct agent_parser *p)
{
    json_t *st = agent__state(p);
    return json_is_true(json_object_get(st, "busy")) ? agent__str(st, "session") : NULL;
}

static char *opencode_steer_line(struct agent_parser *p, const char *run_id, const char *text)
{
    const char *sid = opencode_busy_session(p);
    if (sid == NULL)
        return NULL;
    char *path = xasprintf("/session/%s/prompt_async", sid);
    char *line = opencode_request(p, "steer", path, opencode_text_parts(text));
    free(path);
    return line;
}

static char *opencode_interrupt_line(struct agent_parser *p, const char *run_id)
{
    const char *sid = opencode_busy_session(p);
    if (sid == NULL)
        return NULL;
    char *path = xasprintf("/session/%s/abort", sid);
    char *line = opencode_request(p, "abort", path, json_object());
    free(path);
    json_object_set_new(agent__state(p), "interrupted", json_true());
    return line;
}

/* OpenCode takes no changed input: updated_input is not passed on. */
static char *opencode_decision_line(struct agent_parser *p, const char *native,
                                    const struct agent_decision *d)
{
    json_t *body = json_pack("{s:s}", "reply", d->allow ? "once" : "reject");
    if (!d->allow && d->message)
        json_object_set_new(body, "message", json_string(d->message));
    char *path = xasprintf("/permission/%s/reply", native);
    char *line = opencode_request(p, "reply", path, body);
    free(path);
    return line;
}

/* ================= what it says ================= */

/* stdout: the line that says where the server listens; then the event stream is subscribed. */
static void opencode_text_line(struct agent_parser *p, const char *s, size_t n)
{
    size_t k = strlen(OPENCODE_LISTENING);
    if (n <= k || strncmp(s, OPENCODE_LISTENING, k) != 0)
        return;
    json_t *st = agent__state(p);
    json_object_set_new(st, "url", json_stringn(s + k, n - k));
    agent__log(p, "info", "opencode serve listens on %s", agent__str(st, "url"));
    opencode_send(p, opencode_subscribe(p));
}

/* The event stream is up: the session is made (or forked, or taken as it is), then the message. */
static void opencode_connected(struct agent_parser *p)
{
    json_t *st = agent__state(p);
    json_object_set_new(st, "connected", json_true());
    json_object_del(st, "subscribing");
    agent__log(p, "debug", "opencode event stream connected");
    if (agent__str(st, "session"))
        return opencode_flush(p);
    const char *resume = agent__str(st, "resume");
    if (resume && !json_is_true(json_object_get(st, "fork"))) {
        json_object_set_new(st, "session", json_string(resume));
        agent__session(p, resume, "opencode");
        return opencode_flush(p);
    }
    char *line;
    if (resume) {
        char *path = xasprintf("/session/%s/fork", resume);
        line = opencode_request(p, "session", path, json_object());
        free(path);
    } else {
        json_t *rules = json_array();
        static const char *const denied[] = {"question", "plan_enter", "plan_exit"};
        for (size_t i = 0; i < CORE_ARRAY_LEN(denied); i++)
            json_array_append_new(rules, json_pack("{s:s, s:s, s:s}", "permission", denied[i], "action",
                                                   "deny", "pattern", "*"));
        line = opencode_request(p, "session", "/session", json_pack("{s:o}", "permission", rules));
    }
    opencode_send(p, line);
}

/* The end of one of agentd's requests. */
static void opencode_answer(struct agent_parser *p, json_t *a)
{
    const char *tag = agent__str(a, "tag"), *err = agent__str(a, "error");
    json_t *body = json_object_get(a, "body");
    if (tag == NULL) /* not agentd's (its stdout may print anything) */
        return agent__log(p, "warn", "opencode: an answer to no request of agentd's");
    int ok = json_is_true(json_object_get(a, "ok"));
    const char *why = err                                                   ? err
                      : agent__str(body, "message")                         ? agent__str(body, "message")
                      : json_string_value(body) && *json_string_value(body) ? json_string_value(body)
                                                                            : "refused";
    if (!strcmp(tag, "session") && ok && agent__str(body, "id")) {
        json_object_set_new(agent__state(p), "session", json_string(agent__str(body, "id")));
        agent__session(p, agent__str(body, "id"), "opencode");
        return opencode_flush(p);
    }
    if (!strcmp(tag, "events")) { /* a stream ends only when the server goes (or broke it) */
        char *m = xasprintf("the OpenCode server's event stream ended: %s", ok ? "closed" : why);
        json_object_set_new(agent__state(p), "connected", json_false());
        json_object_del(agent__state(p), "subscribing"); /* the next message subscribes again */
        opencode_fail(p, m);
        free(m);
    } else if (!ok && (!strcmp(tag, "session") || !strcmp(tag, "prompt"))) {
        char *m = xasprintf("OpenCode refused the %s: %s", tag[0] == 's' ? "session" : "message", why);
        opencode_fail(p, m);
        free(m);
    } else if (!ok) {
        agent__log(p, "warn", "OpenCode refused a %s request: %s", tag, why);
    } else {
        agent__log(p, "debug", "opencode answered the %s request", tag);
    }
}

/* Adds the number at key of from (if any) to the running total at key of to. */
static void add_number(json_t *to, const char *key, const json_t *from)
{
    json_t *v = json_object_get(from, key);
    if (!json_is_number(v))
        return;
    json_object_set_new(to, key,
                        json_real(json_number_value(json_object_get(to, key)) + json_number_value(v)));
}

static void on_step_finish(struct agent_parser *p, json_t *part)
{
    json_t *totals = agent__state_obj(p, "totals");
    json_t *tokens = json_object_get(part, "tokens");
    add_number(totals, "input", tokens);
    add_number(totals, "output", tokens);
    add_number(totals, "reasoning", tokens);
    add_number(totals, "read", json_object_get(tokens, "cache"));
    add_number(totals, "write", json_object_get(tokens, "cache"));
    add_number(totals, "cost", part);
    agent__log(p, "debug", "opencode step finished: %s",
               agent__str(part, "reason") ? agent__str(part, "reason") : "?");
}

/* The tool calls a turn leaves running (an abort: OpenCode reports the killed call after the idle)
 * end with it, as errors, so each pre_tool of the run has its post_tool; their later updates are
 * dropped (on_tool). Their ids are kept through the next turn, during which a late update may come
 * (after the next message went), and replaced at its end by its own: a call whose update never
 * comes (OpenCode restarted, the part dropped) is not kept for the parser's life. */
static void opencode_end_tools(struct agent_parser *p, int interrupted)
{
    json_t *started = agent__state_obj(p, "tools"), *ended = json_object(), *name;
    const char *id;
    json_object_foreach (started, id, name) {
        agent__emit(p, "post_tool",
                    json_pack("{s:s, s:s, s:s, s:b}", "id", id, "name", json_string_value(name), "output",
                              interrupted ? "interrupted" : "the turn ended", "is_error", 1));
        json_object_set_new(ended, id, json_true());
    }
    json_object_clear(started);
    json_object_set_new(agent__state(p), "ended_tools", ended);
}

/* The session went idle while a turn ran: the run's result, with the turn's totals. */
static void opencode_turn_done(struct agent_parser *p)
{
    json_t *st = agent__state(p), *totals = agent__state_obj(p, "totals");
    json_t *usage = json_object();
    static const char *const names[][2] = {{"input", "input_tokens"},
                                           {"output", "output_tokens"},
                                           {"reasoning", "reasoning_tokens"},
                                           {"read", "cache_read_input_tokens"},
                                           {"write", "cache_creation_input_tokens"}};
    for (size_t i = 0; i < CORE_ARRAY_LEN(names); i++) {
        json_t *v = json_object_get(totals, names[i][0]);
        if (v)
            json_object_set_new(usage, names[i][1], json_integer((json_int_t)json_number_value(v)));
    }
    int interrupted = json_is_true(json_object_get(st, "interrupted"));
    const char *err = agent__str(st, "error"), *text = agent__str(st, "step_text");
    json_t *ev = json_pack("{s:b, s:s, s:o}", "is_error", err != NULL && !interrupted, "text",
                           err && !interrupted ? err
                           : text              ? text
                                               : "",
                           "usage", usage);
    if (json_object_get(totals, "cost"))
        json_object_set(ev, "cost_usd", json_object_get(totals, "cost"));
    if (interrupted)
        json_object_set_new(ev, "interrupted", json_true());
    opencode_end_tools(p, interrupted);
    static const char *const turn_keys[] = {"busy",      "saw_busy", "interrupted", "error",
                                            "step_text", "totals",   "open",        "done_parts"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(turn_keys); i++)
        json_object_del(st, turn_keys[i]);
    agent__result(p, ev);
}

/* A finished text (or thinking) part: the assistant's message. */
static void emit_text(struct agent_parser *p, const char *msg_id, const char *text, int thinking)
{
    agent__emit(p, "message",
                json_pack("{s:s, s:s?, s:[{s:s, s:s}]}", "role", "assistant", "id", msg_id, "content", "type",
                          thinking ? "thinking" : "text", "text", text));
    if (thinking)
        return;
    const char *so_far = agent__str(agent__state(p), "step_text");
    json_object_set_new(agent__state(p), "step_text", json_sprintf("%s%s", so_far ? so_far : "", text));
}

/* A text part ends after the tool calls the model wrote after it (OpenCode closes it with its step):
 * a text still open when a tool starts is complete already, and goes first, as the model wrote it. */
static void flush_texts(struct agent_parser *p)
{
    json_t *open = agent__state_obj(p, "open"), *done = agent__state_obj(p, "done_parts"), *t;
    const char *id;
    void *tmp;
    json_object_foreach_safe (open, tmp, id, t) {
        emit_text(p, agent__str(t, "messageID"), agent__str(t, "text"),
                  json_is_true(json_object_get(t, "thinking")));
        json_object_set_new(done, id, json_true());
        json_object_del(open, id);
    }
}

static void on_text(struct agent_parser *p, json_t *part, int thinking)
{
    const char *id = agent__str(part, "id"), *text = agent__str(part, "text");
    json_t *open = agent__state_obj(p, "open");
    if (id && json_object_get(agent__state_obj(p, "done_parts"), id))
        return; /* flushed before a tool already */
    if (json_object_get(json_object_get(part, "time"), "end") == NULL) {
        if (id) /* being written: its deltas follow, then the finished part */
            json_object_set_new(open, id,
                                json_pack("{s:s, s:s?, s:b}", "text", text ? text : "", "messageID",
                                          agent__str(part, "messageID"), "thinking", thinking));
        return;
    }
    if (id)
        json_object_del(open, id);
    emit_text(p, agent__str(part, "messageID"), text ? text : "", thinking);
}

/* message.part.delta: more of an open text. */
static void on_delta(struct agent_parser *p, json_t *props)
{
    const char *id = agent__str(props, "partID"), *delta = agent__str(props, "delta");
    json_t *t = id ? json_object_get(agent__state_obj(p, "open"), id) : NULL;
    const char *field = agent__str(props, "field");
    if (t == NULL || delta == NULL || field == NULL || strcmp(field, "text") != 0)
        return;
    json_object_set_new(t, "text", json_sprintf("%s%s", agent__str(t, "text"), delta));
}

static void on_tool(struct agent_parser *p, json_t *part)
{
    json_t *state = json_object_get(part, "state"), *started = agent__state_obj(p, "tools");
    const char *id = agent__str(part, "callID"), *name = agent__str(part, "tool");
    const char *status = agent__str(state, "status");
    int done = status && (!strcmp(status, "completed") || !strcmp(status, "error"));
    if (status == NULL || !strcmp(status, "pending"))
        return; /* its input is not known yet */
    json_t *ended = agent__state_obj(p, "ended_tools");
    if (id && json_object_get(ended, id)) {
        /* A call of a turn that ended already (an abort's tool turns to error after the idle):
         * its run is over and the next run's transcript is not its place. */
        if (done)
            json_object_del(ended, id);
        return;
    }
    if (id && !json_object_get(started, id)) {
        flush_texts(p);
        agent__emit(p, "pre_tool",
                    json_pack("{s:s?, s:s?, s:O?}", "id", id, "name", name, "input",
                              json_object_get(state, "input")));
        json_object_set_new(started, id, json_string(name ? name : ""));
    }
    if (!done)
        return;
    int is_error = !strcmp(status, "error");
    const char *out = is_error ? agent__str(state, "error") : agent__str(state, "output");
    json_t *exit_code = json_object_get(json_object_get(state, "metadata"), "exit");
    is_error |= json_is_integer(exit_code) && json_integer_value(exit_code) != 0;
    agent__emit(p, "post_tool",
                json_pack("{s:s?, s:s?, s:s, s:b}", "id", id, "name", name, "output",
                          out        ? out
                          : is_error ? "error"
                                     : "",
                          "is_error", is_error));
    if (id)
        json_object_del(started, id);
}

/* message.part.updated of this session: the assistant's text, thinking, tools and steps; the user's
 * own parts (the message, steering) are already in the transcript. */
static void opencode_part(struct agent_parser *p, json_t *part)
{
    const char *type = agent__str(part, "type"), *msg = agent__str(part, "messageID");
    const char *role = msg ? agent__str(agent__state_obj(p, "roles"), msg) : NULL;
    if (type == NULL || (role && !strcmp(role, "user")))
        return;
    if (!strcmp(type, "step-start"))
        json_object_del(agent__state(p), "step_text");
    else if (!strcmp(type, "text"))
        on_text(p, part, 0);
    else if (!strcmp(type, "reasoning"))
        on_text(p, part, 1);
    else if (!strcmp(type, "tool"))
        on_tool(p, part);
    else if (!strcmp(type, "step-finish"))
        on_step_finish(p, part);
}

/* permission.asked: a permission_request; its input is the call's metadata (a shell command's
 * "command", which agentd's rules match) and the patterns OpenCode matches. */
static void opencode_asked(struct agent_parser *p, json_t *props)
{
    const char *id = agent__str(props, "id");
    if (id == NULL)
        return agent__log(p, "warn", "opencode asked for a permission without an id");
    json_t *meta = json_object_get(props, "metadata");
    json_t *input = json_is_object(meta) ? json_deep_copy(meta) : json_object();
    if (json_object_get(props, "patterns"))
        json_object_set(input, "patterns", json_object_get(props, "patterns"));
    agent__emit(p, "permission_request",
                json_pack("{s:s, s:s, s:o, s:O?}", "native_request", id, "tool",
                          agent__str(props, "permission") ? agent__str(props, "permission") : "?", "input",
                          input, "tool_use_id", json_object_get(json_object_get(props, "tool"), "callID")));
}

static void opencode_status(struct agent_parser *p, json_t *props)
{
    json_t *st = agent__state(p);
    const char *status = agent__str(json_object_get(props, "status"), "type");
    if (status && !strcmp(status, "busy") && json_is_true(json_object_get(st, "busy")))
        json_object_set_new(st, "saw_busy", json_true());
    /* An idle that comes before this turn's busy is the last turn's (an abort says it twice). */
    if (status && !strcmp(status, "idle") && json_is_true(json_object_get(st, "saw_busy")))
        opencode_turn_done(p);
}

static void opencode_error(struct agent_parser *p, json_t *props)
{
    json_t *err = json_object_get(props, "error");
    const char *name = agent__str(err, "name"), *m = agent__str(json_object_get(err, "data"), "message");
    if (name && !strcmp(name, "MessageAbortedError"))
        return agent__log(p, "info", "opencode: the turn was aborted");
    m = m ? m : name ? name : "error";
    json_object_set_new(agent__state(p), "error", json_string(m));
    agent__error(p, "agent_error", m,
                 json_is_true(json_object_get(json_object_get(err, "data"), "isRetryable")));
}

/* One event of the stream, or the answer to a request. Events of other sessions of the server (a
 * subagent's) count only when they ask for a permission; bookkeeping events map to nothing. */
static void opencode_line(struct agent_parser *p, json_t *line)
{
    json_t *answer = json_object_get(line, "http_answer");
    if (answer)
        return opencode_answer(p, answer);
    const char *type = agent__str(line, "type");
    json_t *props = json_object_get(line, "properties");
    if (type == NULL)
        return;
    if (!strcmp(type, "server.connected"))
        return opencode_connected(p);
    if (!strcmp(type, "permission.asked"))
        return opencode_asked(p, props);
    const char *sid = agent__str(props, "sessionID"), *mine = agent__str(agent__state(p), "session");
    if (sid == NULL || mine == NULL || strcmp(sid, mine) != 0)
        return;
    if (!strcmp(type, "message.updated")) {
        json_t *info = json_object_get(props, "info");
        if (agent__str(info, "id") && agent__str(info, "role"))
            json_object_set_new(agent__state_obj(p, "roles"), agent__str(info, "id"),
                                json_string(agent__str(info, "role")));
    } else if (!strcmp(type, "message.part.updated")) {
        opencode_part(p, json_object_get(props, "part"));
    } else if (!strcmp(type, "message.part.delta")) {
        on_delta(p, props);
    } else if (!strcmp(type, "session.status")) {
        opencode_status(p, props);
    } else if (!strcmp(type, "session.error")) {
        opencode_error(p, props);
    } else if (!strcmp(type, "permission.replied")) {
        const char *reply = agent__str(props, "reply");
        agent__log(p, "debug", "opencode: permission answered %s", reply ? reply : "?");
    }
}

/* OpenCode records each session's directory in its database: point the copies at the fork's
 * workspace, or the forked session would run (and hang) in the parent's. */
static int opencode_fork_fixup(const struct agent_fork *f)
{
    char *db_path = xasprintf("%s/.local/share/opencode/opencode.db", f->home);
    sqlite3 *db = NULL;
    sqlite3_stmt *up = NULL;
    int rc = 0;
    if (access(db_path, F_OK) != 0)
        goto out; /* no sessions yet */
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE session SET directory = ?1, path = ?2 WHERE directory = ?3", -1, &up,
                           NULL) != SQLITE_OK) {
        rc = -EIO;
        goto out;
    }
    sqlite3_bind_text(up, 1, f->workspace, -1, SQLITE_STATIC);
    sqlite3_bind_text(up, 2, f->workspace + 1, -1, SQLITE_STATIC);
    sqlite3_bind_text(up, 3, f->from_workspace, -1, SQLITE_STATIC);
    if (sqlite3_step(up) != SQLITE_DONE)
        rc = -EIO;
out:
    if (rc != 0)
        log_warn("agent: the fork's OpenCode sessions still name the parent's workspace: %s",
                 db ? sqlite3_errmsg(db) : "cannot open its database");
    sqlite3_finalize(up);
    sqlite3_close(db);
    free(db_path);
    return rc;
}

const struct agent_adapter agent__opencode = {
    .name = "opencode",
    .program = "opencode",
    .description = "OpenCode (opencode serve: HTTP and an event stream)",
    .command = opencode_command,
    .line = opencode_line,
    .text_line = opencode_text_line,
    .fork_fixup = opencode_fork_fixup,
    .caps = AGENT_CAP_APPROVALS | AGENT_CAP_STEER | AGENT_CAP_INTERRUPT | AGENT_CAP_WARM,
    .approvals_per_proc = 1, /* the permission setting is in the server's configuration */
    .over_http = 1,
    .turn_line = opencode_turn_line,
    .steer_line = opencode_steer_line,
    .interrupt_line = opencode_interrupt_line,
    .decision_line = opencode_decision_line,
};
