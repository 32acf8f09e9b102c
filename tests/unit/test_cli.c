/*
 * Unit tests for the client's pure parts: the SSE parser (cli_sse), the option parser and JSON array
 * splitter (cli), and cli_http's helpers that need no network. TAP output for prove.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_http.h"
#include "cli/cli_json.h"
#include "cli/cli_sse.h"
#include "core/core.h"
#include "tap.h"

/* ---- SSE ---------------------------------------------------------------------------------- */

/* Events are recorded as "type|data|id" lines. */
struct recorder {
    struct buf log;
    int events;
    int stop_after; /* return 7 from the callback at this event (0: never) */
};

static int record(void *arg, const struct cli_sse_event *event)
{
    struct recorder *r = arg;
    buf_printf(&r->log, "%s|", event->type);
    buf_append(&r->log, event->data, event->data_len);
    buf_printf(&r->log, "|%s\n", event->last_id);
    r->events++;
    return r->events == r->stop_after ? 7 : 0;
}

/* Feeds input in pieces of `step` bytes (0: all at once) and returns the recorded log. */
static char *sse_run(const char *input, size_t len, size_t step, int *rc_out)
{
    struct recorder r = {0};
    struct cli_sse *sse = cli_sse_new(record, &r);
    int rc = 0;
    if (step == 0)
        step = len;
    for (size_t at = 0; at < len && rc == 0; at += step)
        rc = cli_sse_feed(sse, input + at, at + step <= len ? step : len - at);
    if (rc_out != NULL)
        *rc_out = rc;
    cli_sse_free(sse);
    char *log = xstrdup(r.log.p != NULL ? r.log.p : "");
    buf_free(&r.log);
    return log;
}

/* Checks that every way of splitting input into equal pieces gives the expected log. */
static void sse_case(const char *name, const char *input, const char *want)
{
    size_t len = strlen(input);
    int all_ok = 1;
    for (size_t step = 0; step <= len; step++) {
        char *got = sse_run(input, len, step, NULL);
        if (strcmp(got, want) != 0) {
            if (all_ok)
                printf("# %s, pieces of %zu bytes:\n# got  %s# want %s", name, step, got, want);
            all_ok = 0;
        }
        free(got);
    }
    ok(all_ok, "sse: %s (every split)", name);
}

static void test_sse(void)
{
    const char *agentd_like =
        "event: data\ndata:hello\n\n"
        "event: control\n"
        "data:{\"streamNextOffset\":\"0_5\",\"streamCursor\":\"1\",\"upToDate\":true}\n\n";
    sse_case("data then control", agentd_like,
             "data|hello|\n"
             "control|{\"streamNextOffset\":\"0_5\",\"streamCursor\":\"1\",\"upToDate\":true}|\n");
    sse_case("CRLF line ends", "event: data\r\ndata:a\r\n\r\nevent: control\r\ndata:{}\r\n\r\n",
             "data|a|\ncontrol|{}|\n");
    sse_case("bare CR line ends", "event: data\rdata:a\r\rdata:b\r\r", "data|a|\nmessage|b|\n");
    sse_case("mixed line ends", "data:1\r\n\ndata:2\n\r\ndata:3\r\r\n",
             "message|1|\nmessage|2|\nmessage|3|\n");
    sse_case("multi-line data", "event: data\ndata:line1\ndata:line2\ndata:\n\n", "data|line1\nline2\n|\n");
    sse_case("one space after colon dropped, no more", "data:  two\ndata: one\n\n", "message| two\none|\n");
    sse_case("empty payload is dispatched", "event: data\ndata:\n\n", "data||\n");
    sse_case("no data line: not dispatched", "event: control\n\nevent: data\nid: 9\n\n", "");
    sse_case("comments and unknown fields ignored", ": keep-alive\nfoo: bar\ndata\n\n", "message||\n");
    sse_case("id is remembered", "id: 42\ndata:x\n\ndata:y\n\n", "message|x|42\nmessage|y|42\n");
    sse_case("event type resets after dispatch", "event: control\ndata:{}\n\ndata:z\n\n",
             "control|{}|\nmessage|z|\n");
    sse_case("leading BOM skipped",
             "\xEF\xBB\xBF"
             "data:b\n\n",
             "message|b|\n");
    sse_case("no colon: whole line is the field", "data\ndata\n\n", "message|\n|\n");
    sse_case("unterminated event not dispatched", "data:partial\n", "");
    sse_case("closing control",
             "event: control\ndata:{\"streamNextOffset\":\"0_9\",\"streamClosed\":true}\n\n",
             "control|{\"streamNextOffset\":\"0_9\",\"streamClosed\":true}|\n");

    /* A CRLF split across feeds is one line end, not a line end and then a blank line. */
    {
        struct recorder r = {0};
        struct cli_sse *sse = cli_sse_new(record, &r);
        int rc = cli_sse_feed(sse, "data:a\r", 7);
        rc |= cli_sse_feed(sse, "\ndata:b\r", 8);
        rc |= cli_sse_feed(sse, "\n\r", 2);
        rc |= cli_sse_feed(sse, "\n", 1);
        ok(rc == 0 && r.events == 1 && strcmp(r.log.p, "message|a\nb|\n") == 0,
           "sse: CRLF split across feeds is one line end");
        buf_free(&r.log);
        cli_sse_free(sse);
    }
    /* Payload bytes are passed through, NULs included. */
    {
        struct recorder r = {0};
        struct cli_sse *sse = cli_sse_new(record, &r);
        int rc = cli_sse_feed(sse, "data:a\0b\n\n", 10);
        ok(rc == 0 && r.events == 1 && r.log.len == strlen("message|") + 3 + strlen("|\n"),
           "sse: NUL bytes in data are kept");
        buf_free(&r.log);
        cli_sse_free(sse);
    }
    /* The callback's nonzero value stops parsing and is returned. */
    {
        struct recorder r = {.stop_after = 1};
        struct cli_sse *sse = cli_sse_new(record, &r);
        const char *two = "data:1\n\ndata:2\n\n";
        int rc = cli_sse_feed(sse, two, strlen(two));
        ok(rc == 7 && r.events == 1, "sse: callback can stop the parser");
        cli_sse_reset(sse);
        r.stop_after = 0;
        rc = cli_sse_feed(sse, "data:3\n\n", 8);
        ok(rc == 0 && r.events == 2, "sse: parser usable again after reset");
        buf_free(&r.log);
        cli_sse_free(sse);
    }
    /* reset drops a partial event. */
    {
        struct recorder r = {0};
        struct cli_sse *sse = cli_sse_new(record, &r);
        int rc = cli_sse_feed(sse, "event: data\ndata:half", 21);
        cli_sse_reset(sse);
        rc |= cli_sse_feed(sse, "data:whole\n\n", 12);
        ok(rc == 0 && strcmp(r.log.p, "message|whole|\n") == 0, "sse: reset forgets a partial event");
        buf_free(&r.log);
        cli_sse_free(sse);
    }
    {
        struct recorder r = {0};
        struct cli_sse *sse = cli_sse_new(record, &r);
        int rc = cli_sse_feed(sse, "retry: 1500\nretry: x\n\n", 22);
        ok(rc == 0 && cli_sse_retry_ms(sse) == 1500, "sse: retry field parsed, invalid one ignored");
        cli_sse_free(sse);
    }
}

/* ---- Option parsing ----------------------------------------------------------------------- */

static const struct cli_opt opts[] = {
    {"offset", "OFFSET", "where"},
    {"close", NULL, "flag"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

static void test_args(void)
{
    struct cli_args args;
    char *argv1[] = {"path/x", "--offset", "0_1", "-", "--close", "--json", "--server=http://h:1"};
    const char *reason = cli_args_parse(opts, 7, argv1, &args);
    ok(reason == NULL, "args: mixed options and positionals parse");
    ok(args.npositional == 2 && strcmp(args.positional[0], "path/x") == 0 &&
           strcmp(args.positional[1], "-") == 0,
       "args: positionals in order, '-' is positional");
    is_str(cli_args_get(&args, "offset"), "0_1", "args: --name value");
    is_str(cli_args_get(&args, "server"), "http://h:1", "args: --name=value");
    is_str(cli_args_get(&args, "close"), "", "args: flag given is \"\"");
    ok(cli_args_get(&args, "token") == NULL, "args: absent option is NULL");
    is_str(cli_args_server(&args), "http://h:1", "args: --server wins");

    char *argv2[] = {"--", "--close"};
    reason = cli_args_parse(opts, 2, argv2, &args);
    ok(reason == NULL && args.npositional == 1 && cli_args_get(&args, "close") == NULL,
       "args: -- ends options");

    char *argv3[] = {"--nope"};
    reason = cli_args_parse(opts, 1, argv3, &args);
    is_str(reason, "unknown option --nope", "args: unknown option reported");

    char *argv4[] = {"--offset"};
    reason = cli_args_parse(opts, 1, argv4, &args);
    ok(reason != NULL && strstr(reason, "needs a value") != NULL, "args: missing value reported");

    char *argv5[] = {"--close=yes"};
    reason = cli_args_parse(opts, 1, argv5, &args);
    ok(reason != NULL && strstr(reason, "takes no value") != NULL, "args: flag with value rejected");

    char *argv6[] = {"-h"};
    reason = cli_args_parse(opts, 1, argv6, &args);
    ok(reason == NULL && cli_args_get(&args, "help") != NULL, "args: -h means --help");

    char *argv7[] = {"-x"};
    reason = cli_args_parse(opts, 1, argv7, &args);
    ok(reason != NULL, "args: unknown short option rejected");

    char *argv8[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    reason = cli_args_parse(opts, 9, argv8, &args);
    ok(reason != NULL, "args: too many positionals rejected");

    char *argv9[] = {"--offset", "1", "--offset", "2"};
    reason = cli_args_parse(opts, 4, argv9, &args);
    is_str(cli_args_get(&args, "offset"), "2", "args: last repeated value wins");

    setenv("AGENTD_URL", "http://env:2", 1);
    setenv("AGENTD_TOKEN", "tok", 1);
    reason = cli_args_parse(opts, 0, NULL, &args);
    is_str(cli_args_server(&args), "http://env:2", "args: $AGENTD_URL is the default server");
    is_str(cli_args_token(&args), "tok", "args: $AGENTD_TOKEN is the default token");
    unsetenv("AGENTD_URL");
    unsetenv("AGENTD_TOKEN");
    is_str(cli_args_server(&args), CLI_DEFAULT_SERVER, "args: built-in default server");
    ok(cli_args_token(&args) == NULL, "args: no token by default");
}

/* ---- JSON arrays -------------------------------------------------------------------------- */

static int collect(void *arg, const char *p, size_t n)
{
    struct buf *out = arg;
    buf_append(out, p, n);
    buf_puts(out, "\n");
    return 0;
}

static void json_case(const char *input, int want_rc, const char *want)
{
    struct buf out = {0};
    int rc = cli_json_array_each(input, strlen(input), collect, &out);
    struct buf name = {0}; /* the input on one line, so the TAP line stays one line */
    for (const char *p = input; *p != '\0'; p++)
        buf_puts(&name, *p == '\n' ? "\\n" : (char[2]){*p, '\0'});
    ok(rc == want_rc && strcmp(out.p != NULL ? out.p : "", want) == 0, "json array: '%s'",
       name.p != NULL ? name.p : "");
    buf_free(&name);
    buf_free(&out);
}

static void test_json_array(void)
{
    json_case("[]", 0, "");
    json_case(" [ ] ", 0, "");
    json_case("[1,2]", 0, "1\n2\n");
    json_case("[1.10, -0e5 ,\"a\"]", 0, "1.10\n-0e5\n\"a\"\n");
    json_case("[{\"a\":[1,2]},[3,{\"b\":4}]]", 0, "{\"a\":[1,2]}\n[3,{\"b\":4}]\n");
    json_case("[\"x,y]\",\"q\\\"]\"]", 0, "\"x,y]\"\n\"q\\\"]\"\n");
    json_case("[\"\\\\\",1]", 0, "\"\\\\\"\n1\n");
    json_case("\n[\n{\"a\":\"}\"}\n]\n", 0, "{\"a\":\"}\"}\n");
    json_case("{\"a\":1}", -EINVAL, "");
    json_case("[1,]", -EINVAL, "1\n");
    json_case("[,1]", -EINVAL, "");
    json_case("[\"open]", -EINVAL, "");
    json_case("[[1]", -EINVAL, "");
    json_case("", -EINVAL, "");
}

/* ---- HTTP helpers ------------------------------------------------------------------------- */

static void test_http_helpers(void)
{
    struct buf out = {0};
    cli_http_path_escape(&out, "sessions/a b/é?x#y%");
    is_str(out.p, "sessions/a%20b/%C3%A9%3Fx%23y%25", "http: path escaping keeps / and unreserved");
    buf_free(&out);

    ok(cli_http_exit_for_status(200) == CLI_EXIT_OK && cli_http_exit_for_status(204) == CLI_EXIT_OK,
       "exit: 2xx is ok");
    ok(cli_http_exit_for_status(404) == CLI_EXIT_NOT_FOUND, "exit: 404 is 3");
    ok(cli_http_exit_for_status(409) == CLI_EXIT_CONFLICT &&
           cli_http_exit_for_status(410) == CLI_EXIT_CONFLICT,
       "exit: 409 and 410 are 4");
    ok(cli_http_exit_for_status(400) == CLI_EXIT_HTTP && cli_http_exit_for_status(503) == CLI_EXIT_HTTP,
       "exit: other statuses are 5");
    ok(cli_http_exit_for_error(-ECONNREFUSED) == CLI_EXIT_UNREACHABLE &&
           cli_http_exit_for_error(-ETIMEDOUT) == CLI_EXIT_UNREACHABLE,
       "exit: transport failures are 2");

    const char *body = "{\"error\":{\"code\":\"STREAM_CLOSED\",\"message\":\"stream is closed\"}}";
    int rc = cli_http_error_message(body, strlen(body), &out);
    ok(rc == 0 && strcmp(out.p, "stream is closed (STREAM_CLOSED)") == 0, "http: JSON error message");
    buf_reset(&out);
    rc = cli_http_error_message("Stream not found", 16, &out);
    ok(rc == -EINVAL && out.len == 0, "http: plain-text body is not a JSON error");
    buf_free(&out);

    struct cli_http_response resp = {0};
    resp.headers[0].name = xstrdup("stream-next-offset");
    resp.headers[0].value = xstrdup("0_1");
    resp.nheaders = 1;
    is_str(cli_http_header(&resp, "Stream-Next-Offset"), "0_1", "http: header lookup ignores case");
    ok(cli_http_header(&resp, "Stream-Closed") == NULL, "http: absent header is NULL");
    cli_http_response_reset(&resp);
    ok(resp.nheaders == 0, "http: response reset");
}

/* Joins argv[1..argc) with spaces, for comparing reorderings. */
static const char *joined(int argc, char **argv)
{
    static char out[256];
    out[0] = '\0';
    for (int i = 1; i < argc; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i > 1 ? " " : "", argv[i]);
    return out;
}

static void test_global_opts_first(void)
{
    char err[160];
    char *a[] = {"agentd", "--server", "http://h:1", "--json", "session", "ls", "--tag", "x"};
    ok(cli_global_opts_first(8, a, err, sizeof err) == 0, "global options before the command are accepted");
    is_str(joined(8, a), "session --server http://h:1 --json ls --tag x",
           "they move after the command, in order");

    char *b[] = {"agentd", "--token=t", "rt", "exec", "echo"};
    ok(cli_global_opts_first(5, b, err, sizeof err) == 0, "--name=value form");
    is_str(joined(5, b), "rt --token=t exec echo", "--token=t moves after rt");

    char *c[] = {"agentd", "stream", "--server", "u", "read", "x"};
    ok(cli_global_opts_first(6, c, err, sizeof err) == 0, "no option first: nothing to do");
    is_str(joined(6, c), "stream --server u read x", "argv unchanged");

    char *d[] = {"agentd", "--session", "S", "rt", "exec"};
    ok(cli_global_opts_first(5, d, err, sizeof err) == -EINVAL && strstr(err, "--session") != NULL,
       "a command's own option before the command is refused, naming it");
    char *e[] = {"agentd", "--server"};
    ok(cli_global_opts_first(2, e, err, sizeof err) == -EINVAL && strstr(err, "needs a value") != NULL,
       "a global option without its value");
    char *f[] = {"agentd", "--json"};
    ok(cli_global_opts_first(2, f, err, sizeof err) == -EINVAL && strstr(err, "no command") != NULL,
       "options and no command");
    char *g[] = {"agentd", "-x", "session"};
    ok(cli_global_opts_first(3, g, err, sizeof err) == -EINVAL, "a short option other than the command");
}

int main(void)
{
    test_sse();
    test_args();
    test_json_array();
    test_http_helpers();
    test_global_opts_first();
    return done_testing();
}
