/*
 * agent.c — the adapter registry, the command builder shared by the adapters, and the parser core:
 * splitting stdout into lines whatever the chunking, bounding their length, parsing them, and
 * making sure every line ends up in at least one event that carries it as "native".
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/agent_int.h"

/* ================= registry ================= */

static const struct agent_adapter *const adapters[] = {&agent__claude, &agent__codex, &agent__opencode,
                                                       &agent__jsonl, &agent__demo};

const struct agent_adapter *agent_adapter_find(const char *name)
{
    for (size_t i = 0; name && i < CORE_ARRAY_LEN(adapters); i++)
        if (strcmp(adapters[i]->name, name) == 0)
            return adapters[i];
    return NULL;
}

const char *agent_adapter_name(const struct agent_adapter *a) { return a->name; }

int agent_adapter_runs_self(const struct agent_adapter *a) { return a->runs_self; }

const struct agent_adapter *agent_adapter_at(size_t i)
{
    return i < CORE_ARRAY_LEN(adapters) ? adapters[i] : NULL;
}

const char *agent_adapter_description(const struct agent_adapter *a) { return a->description; }

const char *agent_adapter_program(const struct agent_adapter *a) { return a->program; }

unsigned agent_adapter_caps(const struct agent_adapter *a) { return a->caps; }

int agent_adapter_announces_caps(const struct agent_adapter *a) { return a->announces_caps; }

int agent_adapter_approvals_per_process(const struct agent_adapter *a) { return a->approvals_per_proc; }

int agent_adapter_over_http(const struct agent_adapter *a) { return a->over_http; }

const char *agent_cap_name(size_t i)
{
    static const char *const names[AGENT_CAP_COUNT] = {"approvals", "steer", "interrupt", "warm"};
    return i < AGENT_CAP_COUNT ? names[i] : NULL;
}

int agent_fork_fixup(const struct agent_adapter *a, const struct agent_fork *f)
{
    return a->fork_fixup ? a->fork_fixup(f) : 0;
}

/* ================= commands ================= */

/* Appends s to a NULL-terminated vector of owned strings. */
static void vec_push(char ***vec, char *s)
{
    size_t n = 0;
    while (*vec && (*vec)[n])
        n++;
    *vec = xrealloc(*vec, (n + 2) * sizeof **vec);
    (*vec)[n] = s;
    (*vec)[n + 1] = NULL;
}

static void vec_free(char **vec)
{
    for (size_t i = 0; vec && vec[i]; i++)
        free(vec[i]);
    free(vec);
}

void agent__arg(struct agent_cmd *cmd, const char *s) { vec_push(&cmd->argv, xstrdup(s)); }

void agent__args(struct agent_cmd *cmd, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++)
        agent__arg(cmd, list[i]);
}

void agent__env(struct agent_cmd *cmd, const char *name, const char *value)
{
    vec_push(&cmd->env, xasprintf("%s=%s", name, value));
}

void agent__file(struct agent_cmd *cmd, const char *dir, const char *name, char *content)
{
    cmd->files = xrealloc(cmd->files, (cmd->nfiles + 1) * sizeof *cmd->files);
    cmd->files[cmd->nfiles].path = xasprintf("%s/%s", dir, name);
    cmd->files[cmd->nfiles].content = content;
    cmd->nfiles++;
}

void agent__stdin(struct agent_cmd *cmd, char *data, size_t len)
{
    free(cmd->stdin_data);
    cmd->stdin_data = data;
    cmd->stdin_len = len;
}

char *agent__base_v1(const char *base_url)
{
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    if (n >= 3 && memcmp(base_url + n - 3, "/v1", 3) == 0)
        return xstrndup(base_url, n);
    return xasprintf("%.*s/v1", (int)n, base_url);
}

int agent_command(const struct agent_adapter *a, const struct agent_run_opts *opts, struct agent_cmd *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    if (opts->prompt == NULL || (opts->fork && opts->native_session == NULL))
        return -EINVAL;
    if (opts->mcp &&
        (opts->mcp->url == NULL) == (opts->mcp->command == NULL || opts->mcp->command[0] == NULL))
        return -EINVAL;
    int rc = a->command(opts, cmd);
    if (rc < 0)
        agent_cmd_free(cmd);
    return rc;
}

void agent_cmd_free(struct agent_cmd *cmd)
{
    if (cmd == NULL)
        return;
    vec_free(cmd->argv);
    vec_free(cmd->env);
    for (size_t i = 0; i < cmd->nfiles; i++) {
        free(cmd->files[i].path);
        free(cmd->files[i].content);
    }
    free(cmd->files);
    free(cmd->stdin_data);
    memset(cmd, 0, sizeof *cmd);
}

char *agent_cancel_line(const struct agent_adapter *a, const char *run_id)
{
    return a->cancel_line ? a->cancel_line(run_id) : NULL;
}

/* ================= the parser ================= */

struct agent_parser {
    const struct agent_adapter *adapter; /* NULL: stderr */
    size_t max_line;
    agent_event_cb cb;
    void *arg;
    struct buf line;  /* the incomplete line so far */
    int skipping;     /* inside an oversized line: drop bytes up to the next newline */
    json_t *native;   /* the current line while it is mapped (borrowed by emits) */
    unsigned emitted; /* events delivered for the current line */
    int has_result;
    char *native_session;
    json_t *state;
    unsigned caps;         /* what this process can do (agent_parser_caps) */
    agent_write_cb writer; /* the agent's stdin, or NULL */
    void *writer_arg;
};

struct agent_parser *agent_parser_new(const struct agent_adapter *a, size_t max_line, agent_event_cb cb,
                                      void *arg)
{
    struct agent_parser *p = xcalloc(1, sizeof *p);
    p->adapter = a;
    p->max_line = max_line ? max_line : AGENT_MAX_LINE;
    p->cb = cb;
    p->arg = arg;
    p->state = json_object();
    p->caps = a && !a->announces_caps ? a->caps : 0;
    return p;
}

void agent_parser_free(struct agent_parser *p)
{
    if (p == NULL)
        return;
    buf_free(&p->line);
    free(p->native_session);
    json_decref(p->state);
    free(p);
}

const char *agent_parser_native_session(const struct agent_parser *p) { return p->native_session; }

int agent_parser_has_result(const struct agent_parser *p) { return p->has_result; }

json_t *agent__state(struct agent_parser *p) { return p->state; }

/* ================= talking to a running agent ================= */

void agent_parser_set_writer(struct agent_parser *p, agent_write_cb cb, void *arg)
{
    p->writer = cb;
    p->writer_arg = arg;
}

unsigned agent_parser_caps(const struct agent_parser *p) { return p->caps; }

void agent__set_caps(struct agent_parser *p, unsigned caps) { p->caps = caps & p->adapter->caps; }

int agent__write(struct agent_parser *p, const char *data, size_t len)
{
    if (p->writer == NULL)
        return -EPIPE;
    p->writer(p->writer_arg, data, len);
    return 0;
}

char *agent__line(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char *line = xasprintf("%s\n", s ? s : "{}");
    free(s);
    return line;
}

/* Writes line (taken) when the process has cap and the adapter made one. */
static int agent__send(struct agent_parser *p, unsigned cap, char *line)
{
    int rc = line == NULL || !(p->caps & cap) ? -ENOTSUP : agent__write(p, line, strlen(line));
    free(line);
    return rc;
}

int agent_send_turn(struct agent_parser *p, const struct agent_run_opts *opts)
{
    if (opts->prompt == NULL || p->adapter->turn_line == NULL)
        return -ENOTSUP;
    int rc = agent__send(p, AGENT_CAP_WARM, p->adapter->turn_line(p, opts));
    if (rc == 0)
        p->has_result = 0;
    return rc;
}

int agent_send_steer(struct agent_parser *p, const char *run_id, const char *text)
{
    return agent__send(p, AGENT_CAP_STEER,
                       p->adapter->steer_line ? p->adapter->steer_line(p, run_id, text) : NULL);
}

int agent_send_interrupt(struct agent_parser *p, const char *run_id)
{
    return agent__send(p, AGENT_CAP_INTERRUPT,
                       p->adapter->interrupt_line ? p->adapter->interrupt_line(p, run_id) : NULL);
}

int agent_send_decision(struct agent_parser *p, const char *native_request, const struct agent_decision *d)
{
    return agent__send(p, AGENT_CAP_APPROVALS,
                       p->adapter->decision_line ? p->adapter->decision_line(p, native_request, d) : NULL);
}

json_t *agent__state_obj(struct agent_parser *p, const char *key)
{
    json_t *o = json_object_get(p->state, key);
    if (o == NULL) {
        o = json_object();
        json_object_set_new(p->state, key, o);
    }
    return o;
}

json_t *agent_json_text(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    struct buf b = {0};
    buf_append_utf8(&b, s, n);
    j = json_stringn(b.p ? b.p : "", b.len);
    buf_free(&b);
    return j;
}

void agent__emit(struct agent_parser *p, const char *type, json_t *ev)
{
    json_object_set_new(ev, "type", json_string(type));
    json_object_set(ev, "native", p->native);
    p->emitted++;
    p->cb(p->arg, ev);
}

void agent__log(struct agent_parser *p, const char *level, const char *fmt, ...)
{
    va_list ap;
    struct buf b = {0};
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    json_t *ev = json_object();
    json_object_set_new(ev, "level", json_string(level));
    json_object_set_new(ev, "text", agent_json_text(b.p ? b.p : "", b.len));
    buf_free(&b);
    agent__emit(p, "log", ev);
}

void agent__error(struct agent_parser *p, const char *code, const char *message, int retryable)
{
    agent__emit(p, "error",
                json_pack("{s:s, s:o, s:b}", "code", code, "message",
                          agent_json_text(message, strlen(message)), "retryable", retryable));
}

void agent__session(struct agent_parser *p, const char *id, const char *agent)
{
    free(p->native_session);
    p->native_session = xstrdup(id);
    json_t *ev = json_pack("{s:s, s:o, s:s}", "level", "info", "text",
                           json_sprintf("%s session %s", agent, id), "native_session", id);
    agent__emit(p, "log", ev);
}

void agent__result(struct agent_parser *p, json_t *ev)
{
    if (p->has_result) {
        json_decref(ev);
        agent__log(p, "warn", "a second result in one run, ignored");
        return;
    }
    p->has_result = 1;
    agent__emit(p, "result", ev);
}

const char *agent__str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

char *agent__content_text(const json_t *content)
{
    if (json_is_string(content))
        return xstrdup(json_string_value(content));
    struct buf b = {0};
    size_t i;
    json_t *block;
    json_array_foreach (content, i, block) {
        const char *t = agent__str(block, "text");
        if (t == NULL)
            continue;
        if (b.len)
            buf_puts(&b, "\n");
        buf_puts(&b, t);
    }
    char *s = b.p ? b.p : xstrdup("");
    return s;
}

/* The level a stderr line announces with its first word, else info. */
static const char *stderr_level(const char *s, size_t n)
{
    static const char *const levels[][2] = {{"debug", "debug"}, {"info", "info"},   {"warning", "warn"},
                                            {"warn", "warn"},   {"error", "error"}, {"fatal", "error"}};
    while (n > 0 && (*s == ' ' || *s == '\t' || *s == '[')) {
        s++;
        n--;
    }
    for (size_t i = 0; i < CORE_ARRAY_LEN(levels); i++) {
        size_t k = strlen(levels[i][0]);
        if (n >= k && strncasecmp(s, levels[i][0], k) == 0 &&
            (n == k || !((s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'z')))
            return levels[i][1];
    }
    return "info";
}

/* One complete line, without its newline. quiet: an event of an agent over HTTP, which may map to
 * no event at all. */
static void parse_line(struct agent_parser *p, const char *s, size_t n, int quiet)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    size_t lead = 0;
    while (lead < n && (s[lead] == ' ' || s[lead] == '\t'))
        lead++;
    if (lead == n)
        return; /* blank lines carry nothing */
    p->emitted = 0;
    json_t *obj = p->adapter ? json_loadb(s, n, JSON_ALLOW_NUL, NULL) : NULL;
    if (json_is_object(obj)) {
        p->native = obj;
        p->adapter->line(p, obj);
        if (p->emitted == 0 && !quiet) {
            const char *type = agent__str(obj, "type");
            agent__log(p, "warn", "%s: event not understood: %s", p->adapter->name,
                       type ? type : "(no type)");
        }
    } else {
        p->native = agent_json_text(s, n);
        if (p->adapter && p->adapter->text_line)
            p->adapter->text_line(p, s, n);
    }
    if (!json_is_object(obj) && p->emitted == 0) {
        json_t *ev = json_object();
        json_object_set_new(ev, "level", json_string(p->adapter ? "warn" : stderr_level(s, n)));
        json_object_set(ev, "text", p->native);
        agent__emit(p, "log", ev);
    }
    json_decref(obj);
    if (p->native != obj)
        json_decref(p->native);
    p->native = NULL;
}

/* Empties the line buffer, giving back the memory of an unusually long line. */
static void reset_line(struct agent_parser *p)
{
    if (p->line.cap > (1u << 20))
        buf_free(&p->line);
    buf_reset(&p->line);
}

static void too_long(struct agent_parser *p)
{
    size_t keep = p->line.len < AGENT_TOO_LONG_KEEP ? p->line.len : AGENT_TOO_LONG_KEEP;
    p->native = agent_json_text(p->line.p, keep);
    char msg[128];
    snprintf(msg, sizeof msg, "an output line longer than %zu bytes was skipped", p->max_line);
    agent__error(p, "agent_output_too_long", msg, 0);
    json_decref(p->native);
    p->native = NULL;
    reset_line(p);
    p->skipping = 1;
}

void agent_parser_feed(struct agent_parser *p, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        if (p->skipping) {
            if (nl)
                p->skipping = 0;
        } else if (p->line.len + n > p->max_line) {
            /* Keep the head for the error's native, then drop the rest of the line. */
            if (p->line.len < AGENT_TOO_LONG_KEEP)
                buf_append(&p->line, data, n < AGENT_TOO_LONG_KEEP ? n : AGENT_TOO_LONG_KEEP);
            too_long(p);
            if (nl)
                p->skipping = 0;
        } else if (nl && p->line.len == 0) {
            parse_line(p, data, n, 0); /* the whole line is in this chunk: no copy */
        } else {
            buf_append(&p->line, data, n);
            if (nl) {
                parse_line(p, p->line.p, p->line.len, 0);
                reset_line(p);
            }
        }
        if (nl == NULL)
            return;
        data += n + 1;
        len -= n + 1;
    }
}

void agent_parser_finish(struct agent_parser *p)
{
    if (!p->skipping && p->line.len > 0)
        parse_line(p, p->line.p, p->line.len, 0);
    reset_line(p);
    p->skipping = 0;
}

/* ================= agents over HTTP ================= */

void agent_parser_http_event(struct agent_parser *p, const char *data, size_t len)
{
    if (len <= p->max_line)
        parse_line(p, data, len, 1);
}

void agent_parser_http_answer(struct agent_parser *p, const char *tag, int ok, long status, const char *body,
                              size_t len, const char *error)
{
    json_t *parsed = len ? json_loadb(body, len, JSON_DECODE_ANY, NULL) : NULL;
    json_t *answer =
        json_pack("{s:s, s:b, s:I}", "tag", tag ? tag : "", "ok", ok, "status", (json_int_t)status);
    json_object_set_new(answer, "body", parsed ? parsed : agent_json_text(body ? body : "", len));
    if (error)
        json_object_set_new(answer, "error", agent_json_text(error, strlen(error)));
    json_t *line = json_pack("{s:o}", "http_answer", answer);
    p->emitted = 0;
    p->native = line;
    p->adapter->line(p, line);
    p->native = NULL;
    json_decref(line);
}
