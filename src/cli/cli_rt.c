/*
 * cli_rt.c — `agentd rt exec|state|reset|interrupt|history`: a session's persistent runtimes
 * (bash, python, node) through /v1/sessions/<id>/runtimes/<lang>/<action> (src/session/session.h).
 *
 * `exec` behaves like running the code locally: the code's stdout and stderr are written, byte for
 * byte, to this process's stdout and stderr, and the exit status is the code's (124 when the call
 * timed out, as timeout(1) does). The statuses of enum cli_exit (1-5) are also what the code itself
 * may return, so a script that must tell them apart uses --json, whose "status" is the code's.
 *
 * The exec answer is read with a lenient scanner rather than jansson: the server puts output bytes
 * into JSON strings as they are, and output need not be valid UTF-8 (jansson would reject the
 * whole answer).
 */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_http.h"
#include "cli/cli_json.h"
#include "core/core.h"

#define CLI_RT_TIMEOUT_MS     60000L /* state, reset, interrupt, history */
#define CLI_RT_EXEC_MARGIN_MS 30000L /* added to an exec's own --timeout */
#define CLI_RT_EXIT_TIMED_OUT 124
#define CLI_RT_CODE_COLUMN    60 /* history: characters of code shown */

/* ---- Reading the exec answer ------------------------------------------------------------- */

static const char *cli_rt__skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* Past the JSON string starting at p (which is '"'), or NULL when it does not end. */
static const char *cli_rt__skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Past the JSON value at p, or NULL. Nested values are only balanced, not validated. */
static const char *cli_rt__skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return cli_rt__skip_string(p, end);
    if (*p != '{' && *p != '[') {
        while (p < end && !strchr(",}] \t\r\n", *p))
            p++;
        return p;
    }
    int depth = 0;
    while (p < end) {
        if (*p == '"') {
            if ((p = cli_rt__skip_string(p, end)) == NULL)
                return NULL;
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}

/* The raw text of member key of the top-level object in text[0..len), or -ENOENT / -EINVAL. */
static int cli_rt__field(const char *text, size_t len, const char *key, const char **value, size_t *value_len)
{
    const char *p = text, *end = text + len;
    size_t key_len = strlen(key);
    p = cli_rt__skip_space(p, end);
    if (p == end || *p != '{')
        return -EINVAL;
    p++;
    for (;;) {
        p = cli_rt__skip_space(p, end);
        if (p < end && *p == '}')
            return -ENOENT;
        if (p == end || *p != '"')
            return -EINVAL;
        const char *name = p + 1, *after = cli_rt__skip_string(p, end);
        if (after == NULL)
            return -EINVAL;
        int match = (size_t)(after - 1 - name) == key_len && memcmp(name, key, key_len) == 0;
        p = cli_rt__skip_space(after, end);
        if (p == end || *p != ':')
            return -EINVAL;
        p = cli_rt__skip_space(p + 1, end);
        const char *stop = cli_rt__skip_value(p, end);
        if (stop == NULL)
            return -EINVAL;
        if (match) {
            *value = p;
            *value_len = (size_t)(stop - p);
            return 0;
        }
        p = cli_rt__skip_space(stop, end);
        if (p < end && *p == ',')
            p++;
    }
}

/* The four hex digits at p (which has at least four bytes) as a number. */
static int cli_rt__hex4(const char *p, unsigned *out)
{
    char digits[5] = {p[0], p[1], p[2], p[3], '\0'};
    if (strspn(digits, "0123456789abcdefABCDEF") != 4)
        return -EINVAL;
    *out = (unsigned)strtoul(digits, NULL, 16);
    return 0;
}

static void cli_rt__put_utf8(struct buf *out, unsigned cp)
{
    char bytes[4];
    size_t n;
    if (cp < 0x80) {
        bytes[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        bytes[0] = (char)(0xC0 | (cp >> 6));
        bytes[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        bytes[0] = (char)(0xE0 | (cp >> 12));
        bytes[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        bytes[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        bytes[0] = (char)(0xF0 | (cp >> 18));
        bytes[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        bytes[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        bytes[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_append(out, bytes, n);
}

/* Decodes the JSON string literal p[0..len) (quotes included) into out; raw bytes pass as they
 * are. Returns 0 or -EINVAL. */
static int cli_rt__unescape(const char *p, size_t len, struct buf *out)
{
    if (len < 2 || p[0] != '"' || p[len - 1] != '"')
        return -EINVAL;
    const char *end = p + len - 1;
    for (p++; p < end; p++) {
        const char *run = p;
        while (p < end && *p != '\\')
            p++;
        buf_append(out, run, (size_t)(p - run));
        if (p == end)
            break;
        if (++p == end)
            return -EINVAL;
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *known = strchr(from, *p);
        if (known != NULL && *p != '\0') {
            buf_append(out, &to[known - from], 1);
            continue;
        }
        unsigned cp, low;
        if (*p != 'u' || end - p < 5 || cli_rt__hex4(p + 1, &cp) != 0)
            return -EINVAL;
        p += 4;
        /* A surrogate pair is one code point; a lone surrogate is kept as its own 3 bytes. */
        if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 7 && p[1] == '\\' && p[2] == 'u' &&
            cli_rt__hex4(p + 3, &low) == 0 && low >= 0xDC00 && low < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            p += 6;
        }
        cli_rt__put_utf8(out, cp);
    }
    return 0;
}

/* Replaces out with the bytes of the base64 JSON string literal p[0..len) (quotes included). */
static int cli_rt__base64(const char *p, size_t len, struct buf *out)
{
    size_t n;
    if (len < 2 || p[0] != '"' || p[len - 1] != '"')
        return -EINVAL;
    buf_reset(out);
    buf_reserve(out, len);
    if (sodium_base642bin((unsigned char *)out->p, len, p + 1, len - 2, NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return -EINVAL;
    out->len = n;
    return 0;
}

/* What `exec` needs from the answer. */
struct cli_rt__result {
    struct buf out, err;
    long status;
    int timed_out;
    char outcome[24];
};

static int cli_rt__result_parse(const char *text, size_t len, struct cli_rt__result *r)
{
    const char *v;
    size_t n;
    if (cli_rt__field(text, len, "stdout", &v, &n) != 0 || cli_rt__unescape(v, n, &r->out) != 0)
        return -EINVAL;
    if (cli_rt__field(text, len, "stderr", &v, &n) != 0 || cli_rt__unescape(v, n, &r->err) != 0)
        return -EINVAL;
    /* Output that is not UTF-8 also comes as base64: print those exact bytes. */
    if (cli_rt__field(text, len, "stdout_base64", &v, &n) == 0 && cli_rt__base64(v, n, &r->out) != 0)
        return -EINVAL;
    if (cli_rt__field(text, len, "stderr_base64", &v, &n) == 0 && cli_rt__base64(v, n, &r->err) != 0)
        return -EINVAL;
    if (cli_rt__field(text, len, "status", &v, &n) != 0)
        return -EINVAL;
    char *stop;
    r->status = strtol(v, &stop, 10);
    if (stop != v + n)
        return -EINVAL;
    r->timed_out = cli_rt__field(text, len, "timed_out", &v, &n) == 0 && n == 4 && memcmp(v, "true", 4) == 0;
    snprintf(r->outcome, sizeof(r->outcome), "ok");
    if (cli_rt__field(text, len, "outcome", &v, &n) == 0 && n >= 2 && n < sizeof(r->outcome))
        snprintf(r->outcome, sizeof(r->outcome), "%.*s", (int)(n - 2), v + 1);
    return 0;
}

/* ---- Shared by the commands -------------------------------------------------------------- */

/* Options every rt command accepts (before CLI_COMMON_OPTS): which session's runtime. */
#define CLI_RT_OPTS                                             \
    {"session", "ID", "the session (default $AGENTD_SESSION)"}, \
    {                                                           \
        "lang", "LANG", "bash (default), python or node"        \
    }

static const struct cli_opt cli_rt__exec_opts[] = {
    CLI_RT_OPTS,
    {"timeout", "MS", "interrupt the code after MS milliseconds (default: the server's, 30 s)"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

static const struct cli_opt cli_rt__plain_opts[] = {
    CLI_RT_OPTS,
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

static const struct cli_opt cli_rt__history_opts[] = {
    CLI_RT_OPTS,
    {"limit", "N", "the last N calls (default 100)"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

static const char *cli_rt__lang(const struct cli_args *args)
{
    const char *lang = cli_args_get(args, "lang");
    return lang != NULL && lang[0] != '\0' ? lang : "bash";
}

/* "/v1/sessions/<id>/runtimes/<lang>/<action>" into url, or CLI_EXIT_USAGE without a session. */
static int cli_rt__url(const struct cli_args *args, const char *action, struct buf *url)
{
    const char *session = cli_args_get(args, "session");
    if (session == NULL || session[0] == '\0')
        session = getenv("AGENTD_SESSION");
    if (session == NULL || session[0] == '\0') {
        fprintf(stderr,
                "agentd rt %s: no session: pass --session ID or set AGENTD_SESSION "
                "(create one with `agentd session new --agent none`)\n",
                action);
        return CLI_EXIT_USAGE;
    }
    buf_puts(url, "/v1/sessions/");
    cli_http_path_escape(url, session);
    buf_puts(url, "/runtimes/");
    cli_http_path_escape(url, cli_rt__lang(args));
    buf_printf(url, "/%s", action);
    return CLI_EXIT_OK;
}

/* One request to a runtime action; the answer is left in resp. Reports failures. */
static int cli_rt__call(struct cli_client *client, const struct cli_args *args, const char *method,
                        const char *action, const struct buf *body, long timeout_ms,
                        struct cli_http_response *resp)
{
    struct buf url = {0};
    char what[32];
    int status = cli_rt__url(args, action, &url);
    if (status != CLI_EXIT_OK)
        goto fail;
    const char *limit = args->table == cli_rt__history_opts ? cli_args_get(args, "limit") : NULL;
    if (limit != NULL) {
        buf_puts(&url, "?limit=");
        cli_http_path_escape(&url, limit);
    }
    struct cli_http_request req = {
        .method = method,
        .path = url.p,
        .headers = (const char *const[]){"Content-Type: application/json", NULL},
        .body = body != NULL ? body->p : NULL,
        .body_len = body != NULL ? body->len : 0,
        .timeout_ms = timeout_ms,
    };
    int rc = cli_http_request(client->http, &req, resp);
    snprintf(what, sizeof(what), "rt %s", action);
    status = cli_http_report(client->http, what, rc, resp);
fail:
    buf_free(&url);
    return status;
}

static void cli_rt__print_body(const struct cli_http_response *resp)
{
    if (resp->body.len > 0)
        fwrite(resp->body.p, 1, resp->body.len, stdout);
    if (resp->body.len == 0 || resp->body.p[resp->body.len - 1] != '\n')
        fputc('\n', stdout);
}

/* ---- exec -------------------------------------------------------------------------------- */

/* The code: the CODE words joined by spaces (as ssh does), or stdin when CODE is "-" or absent. */
static int cli_rt__code(const struct cli_args *args, struct buf *code)
{
    const char *given = args->npositional > 0 ? args->positional[0] : "-";
    if (args->npositional > 1 || strcmp(given, "-") != 0) {
        for (int i = 0; i < args->npositional; i++) {
            if (i > 0)
                buf_puts(code, " ");
            buf_puts(code, args->positional[i]);
        }
        return 0;
    }
    char chunk[65536];
    ssize_t n;
    while ((n = read(STDIN_FILENO, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "agentd rt exec: cannot read stdin: %s\n", strerror(errno));
            return -EIO;
        }
        buf_append(code, chunk, (size_t)n);
    }
    return 0;
}

/* The exit status for a finished call: the code's own, 124 for a timeout. Outcomes that lost the
 * runtime's state or never ran the code are said on stderr, since the caller's next call will
 * behave differently. */
static int cli_rt__exit_status(const struct cli_rt__result *r, const char *lang)
{
    if (r->timed_out)
        return CLI_RT_EXIT_TIMED_OUT;
    if (strcmp(r->outcome, "killed") == 0 || strcmp(r->outcome, "exited") == 0)
        fprintf(stderr, "agentd: rt exec: the %s runtime %s; its state is lost\n", lang, r->outcome);
    else if (strcmp(r->outcome, "cancelled") == 0 || strcmp(r->outcome, "failed") == 0)
        fprintf(stderr, "agentd: rt exec: the call %s\n",
                r->outcome[0] == 'c' ? "was cancelled (the runtime was reset)"
                                     : "failed: the runtime could not start");
    if (r->status >= 0 && r->status <= 255)
        return (int)r->status;
    return CLI_EXIT_HTTP;
}

static int cli_rt__exec(struct cli_client *client, const struct cli_args *args)
{
    const char *timeout = cli_args_get(args, "timeout");
    struct cli_http_response resp = {0};
    struct cli_rt__result result = {0};
    struct buf code = {0}, body = {0};
    long timeout_ms = 0;
    int status = CLI_EXIT_USAGE;

    if (timeout != NULL) {
        char *stop;
        timeout_ms = strtol(timeout, &stop, 10);
        if (*stop != '\0' || stop == timeout || timeout_ms <= 0) {
            fprintf(stderr, "agentd rt exec: --timeout wants a positive number of milliseconds\n");
            goto fail;
        }
    }
    if (cli_rt__code(args, &code) != 0)
        goto fail;
    buf_puts(&body, "{\"code\":");
    buf_json_string(&body, code.p != NULL ? code.p : "", code.len);
    if (timeout_ms > 0)
        buf_printf(&body, ",\"timeout_ms\":%ld", timeout_ms);
    buf_puts(&body, "}");

    /* Without --timeout the server's own default bounds the call, so the request needs none. */
    status = cli_rt__call(client, args, "POST", "exec", &body,
                          timeout_ms > 0 ? timeout_ms + CLI_RT_EXEC_MARGIN_MS : 0, &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    if (cli_rt__result_parse(resp.body.p, resp.body.len, &result) != 0) {
        fprintf(stderr, "agentd: rt exec: the answer is not an exec result\n");
        status = CLI_EXIT_HTTP;
        goto fail;
    }
    if (client->json) {
        cli_rt__print_body(&resp);
    } else {
        if (result.out.len > 0) /* an empty buf has no bytes at all (p is NULL) */
            fwrite(result.out.p, 1, result.out.len, stdout);
        fflush(stdout);
        if (result.err.len > 0)
            fwrite(result.err.p, 1, result.err.len, stderr);
    }
    status = cli_rt__exit_status(&result, cli_rt__lang(args));
fail:
    cli_http_response_reset(&resp);
    buf_free(&result.out);
    buf_free(&result.err);
    buf_free(&code);
    buf_free(&body);
    return status;
}

/* ---- state / reset / interrupt / history ------------------------------------------------- */

static int cli_rt__state(struct cli_client *client, const struct cli_args *args)
{
    struct cli_http_response resp = {0};
    int status = cli_rt__call(client, args, "POST", "state", NULL, CLI_RT_TIMEOUT_MS, &resp);
    if (status == CLI_EXIT_OK && (client->json || cli_json_print(stdout, resp.body.p, resp.body.len) != 0))
        cli_rt__print_body(&resp);
    cli_http_response_reset(&resp);
    return status;
}

static int cli_rt__control(struct cli_client *client, const struct cli_args *args, const char *action,
                           const char *done)
{
    struct cli_http_response resp = {0};
    int status = cli_rt__call(client, args, "POST", action, NULL, CLI_RT_TIMEOUT_MS, &resp);
    if (status == CLI_EXIT_OK) {
        if (client->json)
            cli_rt__print_body(&resp);
        else
            printf("%s runtime %s\n", cli_rt__lang(args), done);
    }
    cli_http_response_reset(&resp);
    return status;
}

static int cli_rt__reset(struct cli_client *client, const struct cli_args *args)
{
    return cli_rt__control(client, args, "reset", "reset: the next call starts a fresh process");
}

static int cli_rt__interrupt(struct cli_client *client, const struct cli_args *args)
{
    return cli_rt__control(client, args, "interrupt", "interrupted: its state is kept");
}

static long cli_rt__integer(const json_t *object, const char *key)
{
    return (long)json_number_value(json_object_get(object, key));
}

/* One history row: the code shown on one line, cut to the column. */
static void cli_rt__print_call(const json_t *call)
{
    const char *code = json_string_value(json_object_get(call, "code"));
    const char *outcome = json_string_value(json_object_get(call, "outcome"));
    char shown[CLI_RT_CODE_COLUMN + 4];
    size_t n = 0;
    for (const char *p = code != NULL ? code : ""; *p != '\0' && n < CLI_RT_CODE_COLUMN; p++)
        shown[n++] = (*p == '\n' || *p == '\t' || *p == '\r') ? ' ' : *p;
    if (code != NULL && strlen(code) > n) {
        memcpy(shown + n, "...", 3);
        n += 3;
    }
    shown[n] = '\0';
    printf("%5ld  %-11s %6ld %10.1f %9ld %9ld  %s\n", cli_rt__integer(call, "seq"),
           outcome != NULL ? outcome : "?", cli_rt__integer(call, "status"),
           (double)cli_rt__integer(call, "duration_us") / 1000.0, cli_rt__integer(call, "out_bytes"),
           cli_rt__integer(call, "err_bytes"), shown);
}

static int cli_rt__history(struct cli_client *client, const struct cli_args *args)
{
    struct cli_http_response resp = {0};
    json_t *root = NULL;
    int status = cli_rt__call(client, args, "GET", "history", NULL, CLI_RT_TIMEOUT_MS, &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    root = json_loadb(resp.body.p, resp.body.len, JSON_ALLOW_NUL, NULL);
    json_t *calls = json_object_get(root, "calls");
    if (client->json || !json_is_array(calls)) {
        cli_rt__print_body(&resp);
        goto fail;
    }
    printf("%5s  %-11s %6s %10s %9s %9s  %s\n", "SEQ", "OUTCOME", "STATUS", "MS", "STDOUT", "STDERR", "CODE");
    size_t i;
    json_t *call;
    json_array_foreach (calls, i, call)
        cli_rt__print_call(call);
fail:
    json_decref(root);
    cli_http_response_reset(&resp);
    return status;
}

/* ---- Dispatch ---------------------------------------------------------------------------- */

static const struct cli_command cli_rt__commands[] = {
    {"exec", "[CODE...|-]", 0, CLI_ARGS_MAX_POSITIONAL, cli_rt__exec_opts, cli_rt__exec,
     "run CODE (stdin when - or absent); its output and exit status become ours"},
    {"state", "", 0, 0, cli_rt__plain_opts, cli_rt__state,
     "show the runtime's cwd, variables, functions, modules"},
    {"reset", "", 0, 0, cli_rt__plain_opts, cli_rt__reset,
     "stop the runtime; the next call starts a fresh one"},
    {"interrupt", "", 0, 0, cli_rt__plain_opts, cli_rt__interrupt, "interrupt the running call (state kept)"},
    {"history", "", 0, 0, cli_rt__history_opts, cli_rt__history,
     "list the last calls: outcome, status, duration, output sizes, code"},
};

static const struct cli_noun cli_rt__noun = {
    .name = "rt",
    .commands = cli_rt__commands,
    .ncommands = CORE_ARRAY_LEN(cli_rt__commands),
    .intro = "Commands (a session's persistent runtimes: state survives between calls):",
    .footer = "Session: --session, else $AGENTD_SESSION.\n"
              "\nexec writes the code's stdout and stderr as they are and exits with the code's\n"
              "status (124 when it timed out); with --json it prints the server's answer instead.\n"
              "\nExit status otherwise: 0 ok, 1 usage, 2 unreachable, 3 not found (session), 4 "
              "conflict,\n5 other HTTP error (unknown language, for one).\n",
};

int cli_rt_main(int argc, char **argv) { return cli_noun_main(&cli_rt__noun, argc, argv); }
