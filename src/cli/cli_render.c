/*
 * cli_render.c — transcript events as a person reads them (`agentd session tail`, `send --wait`):
 * messages as text, streamed deltas without repeats, tool calls and runtime calls with trimmed
 * output, permission requests and their answers, steering and interrupts, logs, errors and run
 * boundaries. Declared in cli_render.h.
 */
#include "cli/cli_render.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli_json.h"

#define CLI_RENDER_TOOL_LINES 8   /* lines of a tool's output shown */
#define CLI_RENDER_LINE_MAX   200 /* bytes shown of one line of tool input or output */

/* Writes p[0..n), at most max bytes of it (0: no limit) cut on a UTF-8 character boundary, with
 * "..." when cut. */
static void cli_render__put_cut(FILE *out, const char *p, size_t n, size_t max)
{
    if (max == 0 || n <= max) {
        fwrite(p, 1, n, out);
        return;
    }
    while (max > 0 && ((unsigned char)p[max] & 0xC0) == 0x80)
        max--;
    fwrite(p, 1, max, out);
    fputs("...", out);
}

void cli_render_first_line(FILE *out, const char *p, size_t n, size_t max)
{
    const char *newline = n > 0 ? memchr(p, '\n', n) : NULL;
    size_t len = newline != NULL ? (size_t)(newline - p) : n;
    cli_render__put_cut(out, p, len, max);
    if (newline != NULL && (max == 0 || len <= max))
        fputs("...", out);
}

/* Writes p[0..n) line by line, each after prefix and cut to line_max bytes (0: whole); at most
 * max_lines lines (0: all), then how many were left out. Trailing line ends are dropped. */
static void cli_render__put_lines(FILE *out, const char *prefix, const char *p, size_t n, size_t max_lines,
                                  size_t line_max)
{
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    const char *end = p + n;
    size_t total = 0;
    for (const char *line = p;;) {
        const char *newline = line < end ? memchr(line, '\n', (size_t)(end - line)) : NULL;
        const char *stop = newline != NULL ? newline : end;
        if (max_lines == 0 || total < max_lines) {
            fputs(prefix, out);
            cli_render__put_cut(out, line, (size_t)(stop - line), line_max);
            fputc('\n', out);
        }
        total++;
        if (newline == NULL)
            break;
        line = newline + 1;
    }
    if (max_lines > 0 && total > max_lines)
        fprintf(out, "%s... (%zu more lines)\n", prefix, total - max_lines);
}

/* A value as text: a string as it is, anything else as compact JSON; nothing for NULL. */
static void cli_render__value_text(const json_t *v, struct buf *out)
{
    if (json_is_string(v)) {
        buf_append(out, json_string_value(v), json_string_length(v));
    } else if (v != NULL) {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text != NULL)
            buf_puts(out, text);
        free(text);
    }
}

/* A message's text: its content blocks of type text, one after the other; or content or text
 * given as a plain string. */
static void cli_render__message_text(const json_t *ev, struct buf *out)
{
    const json_t *content = json_object_get(ev, "content");
    if (!json_is_array(content)) {
        cli_render__value_text(json_is_string(content) ? content : json_object_get(ev, "text"), out);
        return;
    }
    size_t i;
    const json_t *block;
    json_array_foreach (content, i, block) {
        const char *type = json_string_value(json_object_get(block, "type"));
        const json_t *text = json_object_get(block, "text");
        if (!json_is_string(text) || (type != NULL && strcmp(type, "text") != 0))
            continue;
        if (out->len > 0)
            buf_puts(out, "\n");
        buf_append(out, json_string_value(text), json_string_length(text));
    }
}

/* "$ name(input)" on one line: an input of one string member shows as that string, any other as
 * compact JSON. */
static void cli_render__put_call(FILE *out, const char *name, const json_t *input)
{
    const json_t *shown = input;
    if (json_is_object(input) && json_object_size(input) == 1) {
        const char *key;
        json_t *v;
        json_object_foreach ((json_t *)input, key, v) {
            if (json_is_string(v))
                shown = v;
        }
    }
    struct buf text = {0};
    cli_render__value_text(shown, &text);
    fprintf(out, "$ %s(", name != NULL ? name : "?");
    cli_render_first_line(out, text.p, text.len, CLI_RENDER_LINE_MAX);
    fputs(")\n", out);
    buf_free(&text);
}

/* Output of a tool or runtime call, trimmed; errors marked with "!". */
static void cli_render__put_output(FILE *out, const json_t *output, int is_error)
{
    struct buf text = {0};
    cli_render__value_text(output, &text);
    if (text.len == 0)
        fputs(is_error ? "  ! (failed, no output)\n" : "  (no output)\n", out);
    else
        cli_render__put_lines(out, is_error ? "  ! " : "  ", text.p, text.len, CLI_RENDER_TOOL_LINES,
                              CLI_RENDER_LINE_MAX);
    buf_free(&text);
}

static void cli_render__run_start(struct cli_render *r, const json_t *ev)
{
    (void)r;
    const char *input = cli_json_str(ev, "input", "");
    cli_render__put_lines(stdout, "> ", input, strlen(input), 0, 0);
}

static void cli_render__delta(struct cli_render *r, const json_t *ev)
{
    const char *kind = json_string_value(json_object_get(ev, "kind"));
    const json_t *text = json_object_get(ev, "text");
    if ((kind != NULL && strcmp(kind, "text") != 0) || !json_is_string(text))
        return; /* thinking and tool input are not shown */
    fwrite(json_string_value(text), 1, json_string_length(text), stdout);
    buf_append(&r->delta, json_string_value(text), json_string_length(text));
}

/* Assistant text as it is, user text after "> ". Deltas printed before are not repeated: the
 * message that follows them holds the whole text. */
static void cli_render__message(struct cli_render *r, const json_t *ev)
{
    struct buf text = {0};
    cli_render__message_text(ev, &text);
    const char *p = text.p;
    size_t n = text.len;
    if (r->delta.len > 0) {
        if (n >= r->delta.len && memcmp(p, r->delta.p, r->delta.len) == 0) {
            fwrite(p + r->delta.len, 1, n - r->delta.len, stdout);
            n = 0;
        }
        fputc('\n', stdout);
        buf_reset(&r->delta);
    }
    if (n > 0) {
        const char *role = json_string_value(json_object_get(ev, "role"));
        int is_user = role != NULL && strcmp(role, "user") == 0;
        cli_render__put_lines(stdout, is_user ? "> " : "", p, n, 0, 0);
    }
    buf_free(&text);
}

static void cli_render__pre_tool(struct cli_render *r, const json_t *ev)
{
    (void)r;
    cli_render__put_call(stdout, cli_json_str(ev, "name", "tool"), json_object_get(ev, "input"));
}

static void cli_render__post_tool(struct cli_render *r, const json_t *ev)
{
    (void)r;
    cli_render__put_output(stdout, json_object_get(ev, "output"),
                           json_is_true(json_object_get(ev, "is_error")));
}

static void cli_render__log(struct cli_render *r, const json_t *ev)
{
    (void)r;
    const char *text = cli_json_str(ev, "text", "");
    printf("[%s] ", cli_json_str(ev, "level", "info"));
    cli_render__put_lines(stdout, "", text, strlen(text), 0, 0);
}

static void cli_render__error(struct cli_render *r, const json_t *ev)
{
    (void)r;
    printf("[error] %s (%s)\n", cli_json_str(ev, "message", "?"), cli_json_str(ev, "code", "error"));
}

static void cli_render__status(struct cli_render *r, const json_t *ev)
{
    (void)r;
    const char *lang = json_string_value(json_object_get(ev, "lang"));
    const char *reason = json_string_value(json_object_get(ev, "reason"));
    printf("-- %s%s%s: %s%s%s%s\n", cli_json_str(ev, "scope", "status"), lang != NULL ? " " : "",
           lang != NULL ? lang : "", cli_json_str(ev, "status", "?"), reason && *reason ? " (" : "",
           reason && *reason ? reason : "", reason && *reason ? ")" : "");
}

/* A runtime call (`agentd rt exec`, the MCP tool): its code as a call, then its output. */
static void cli_render__runtime(struct cli_render *r, const json_t *ev)
{
    (void)r;
    const json_t *out = json_object_get(ev, "stdout"), *err = json_object_get(ev, "stderr");
    const char *outcome = cli_json_str(ev, "outcome", "ok");
    cli_render__put_call(stdout, cli_json_str(ev, "lang", "runtime"), json_object_get(ev, "code"));
    if (json_string_length(out) > 0 || json_string_length(err) == 0)
        cli_render__put_output(stdout, out, 0);
    if (json_string_length(err) > 0)
        cli_render__put_output(stdout, err, 1);
    if (strcmp(outcome, "ok") != 0)
        printf("  ! %s\n", outcome);
}

static void cli_render__run_completed(struct cli_render *r, const json_t *ev)
{
    (void)r;
    const char *code = json_string_value(json_object_get(ev, "code"));
    printf("-- run completed: %s%s%s%s\n", cli_json_str(ev, "status", "?"), code != NULL ? " (" : "",
           code != NULL ? code : "", code != NULL ? ")" : "");
}

/* "? asks: $ tool(input)  [perm_...]": what a person may answer with `agentd session approve|deny`. */
static void cli_render__permission_request(struct cli_render *r, const json_t *ev)
{
    (void)r;
    fputs("? permission ", stdout);
    cli_render__put_call(stdout, cli_json_str(ev, "tool", "tool"), json_object_get(ev, "input"));
    printf("  request %s\n", cli_json_str(ev, "request", "?"));
}

/* "? allow (by user)" / "? deny (by policy: rule): message". */
static void cli_render__permission_response(struct cli_render *r, const json_t *ev)
{
    (void)r;
    const char *rule = json_string_value(json_object_get(ev, "rule"));
    const char *msg = json_string_value(json_object_get(ev, "message"));
    printf("? %s (by %s%s%s)%s%s\n", cli_json_str(ev, "decision", "?"), cli_json_str(ev, "by", "?"),
           rule != NULL ? ": " : "", rule != NULL ? rule : "", msg != NULL ? ": " : "",
           msg != NULL ? msg : "");
}

static void cli_render__steer(struct cli_render *r, const json_t *ev)
{
    (void)r;
    const char *text = cli_json_str(ev, "text", "");
    cli_render__put_lines(stdout, ">> ", text, strlen(text), 0, 0);
}

static void cli_render__interrupt(struct cli_render *r, const json_t *ev)
{
    (void)r;
    printf("-- interrupt (by %s)\n", cli_json_str(ev, "by", "user"));
}

static void cli_render__session(struct cli_render *r, const json_t *ev)
{
    (void)r;
    const char *from = json_string_value(json_object_get(ev, "from"));
    printf("-- session %s%s%s\n", cli_json_str(ev, "action", "?"), from != NULL ? " from " : "",
           from != NULL ? from : "");
}

static const struct {
    const char *type;
    void (*render)(struct cli_render *r, const json_t *ev);
} cli_render__types[] = {
    {"run_start", cli_render__run_start},
    {"message", cli_render__message},
    {"delta", cli_render__delta},
    {"pre_tool", cli_render__pre_tool},
    {"post_tool", cli_render__post_tool},
    {"log", cli_render__log},
    {"error", cli_render__error},
    {"status", cli_render__status},
    {"runtime", cli_render__runtime},
    {"run_completed", cli_render__run_completed},
    {"session", cli_render__session},
    {"permission_request", cli_render__permission_request},
    {"permission_response", cli_render__permission_response},
    {"steer", cli_render__steer},
    {"interrupt", cli_render__interrupt},
};

void cli_render_event(struct cli_render *r, const json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type == NULL)
        return;
    if (r->delta.len > 0 && strcmp(type, "delta") != 0 && strcmp(type, "message") != 0) {
        fputc('\n', stdout); /* the streamed text ended without its message */
        buf_reset(&r->delta);
    }
    for (size_t i = 0; i < CORE_ARRAY_LEN(cli_render__types); i++)
        if (strcmp(type, cli_render__types[i].type) == 0)
            cli_render__types[i].render(r, ev);
}

void cli_render_end(struct cli_render *r)
{
    if (r->delta.len > 0)
        fputc('\n', stdout);
    buf_free(&r->delta);
}
