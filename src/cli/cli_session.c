/*
 * cli_session.c — `agentd session new|ls|show|send|tail|runs|cancel|fork|share|rm`: sessions on a
 * running server through the REST API at /v1/sessions (see src/session/session.h) and their
 * transcripts at /v1/stream/sessions/<id>/transcript.
 *
 * Output contract: `new` and `fork` print the new session's id alone on stdout (scripts do
 * `S=$(agentd session new --agent none)`), then its workspace on the terminal or, when stdout is not
 * one, on stderr (cli_detail_stream); `send` the run id, then with --wait the run's events until its
 * run_completed; `share` the token, then the URLs (likewise on the terminal or stderr); `ls` and
 * `runs` a table, `show` one "key: value" line per field; `cancel` the run id and its status; `rm`
 * and `share --revoke` nothing. `tail` renders the transcript readably (see cli_session__render)
 * and says on stderr where it stopped ("next-offset: O", for --from). With --json, stdout is the
 * server's JSON, one object per line: `ls` one session, `runs` one run record, `tail` one
 * transcript event per line.
 *
 * `send --wait` exit statuses, within enum cli_exit: 0 the run succeeded, 4 it was cancelled
 * (by `cancel`, or by another sender's interrupt), 5 it failed.
 *
 * This file also holds what every noun with subcommands shares (cli_noun_main, cli_args_each,
 * cli_json_print; declared in cli.h), since `agentd rt` and `agentd stream` use them too, and
 * cli_follow, the live SSE reader, written so that `agentd stream tail` can use it as well.
 */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli/cli_http.h"
#include "cli/cli_sse.h"
#include "core/core.h"

#define CLI_SESSION_TIMEOUT_MS 60000L
#define CLI_SESSION_PREFIX     "/v1/sessions"

/* ---- Shared by the nouns: dispatch ------------------------------------------------------- */

static int cli__opt_takes_value(const struct cli_opt *table, const char *word)
{
    const char *name = word + 2;
    for (int i = 0; table[i].name != NULL; i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].metavar != NULL;
    return 0;
}

int cli_args_each(const struct cli_opt *table, int argc, char **argv, const char *name, cli_value_cb cb,
                  void *arg)
{
    size_t name_len = strlen(name);
    for (int i = 0; i < argc; i++) {
        const char *word = argv[i];
        if (strcmp(word, "--") == 0)
            return 0;
        if (word[0] != '-' || word[1] != '-')
            continue;
        const char *value = NULL;
        if (strncmp(word + 2, name, name_len) == 0 && word[2 + name_len] == '=')
            value = word + 3 + name_len;
        else if (strcmp(word + 2, name) == 0 && i + 1 < argc)
            value = argv[++i];
        else if (strchr(word, '=') == NULL && cli__opt_takes_value(table, word))
            i++; /* another option's value, which may look like --name */
        if (value != NULL) {
            int rc = cb(arg, value);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static void cli__noun_usage(const struct cli_noun *noun, FILE *out)
{
    fprintf(out, "Usage: agentd %s COMMAND ARGS [--server URL] [--token TOKEN] [--json]\n\n%s\n", noun->name,
            noun->intro);
    for (size_t i = 0; i < noun->ncommands; i++) {
        char left[48];
        snprintf(left, sizeof(left), "%s %s", noun->commands[i].name, noun->commands[i].synopsis);
        fprintf(out, "  %-24s %s\n", left, noun->commands[i].summary);
    }
    fprintf(out, "\nRun `agentd %s COMMAND --help` for a command's options.\n%s", noun->name, noun->footer);
}

/* Does word name an option that takes a value in any of the noun's commands? Used to find the
 * command word when options come first. */
static int cli__noun_option_takes_value(const struct cli_noun *noun, const char *word)
{
    if (word[1] != '-' || strchr(word, '=') != NULL)
        return 0;
    for (size_t i = 0; i < noun->ncommands; i++)
        if (cli__opt_takes_value(noun->commands[i].opts, word))
            return 1;
    return 0;
}

int cli_noun_main(const struct cli_noun *noun, int argc, char **argv)
{
    if (argc < 2) {
        cli__noun_usage(noun, stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cli__noun_usage(noun, stdout);
        return CLI_EXIT_OK;
    }
    int at = 1;
    while (at < argc && argv[at][0] == '-' && argv[at][1] != '\0') {
        if (cli__noun_option_takes_value(noun, argv[at]))
            at++;
        at++;
    }
    const struct cli_command *command = NULL;
    for (size_t i = 0; at < argc && i < noun->ncommands; i++)
        if (strcmp(argv[at], noun->commands[i].name) == 0)
            command = &noun->commands[i];
    if (command == NULL) {
        if (at < argc)
            fprintf(stderr, "agentd %s: unknown command '%s' (see agentd %s --help)\n", noun->name, argv[at],
                    noun->name);
        else
            cli__noun_usage(noun, stderr);
        return CLI_EXIT_USAGE;
    }

    /* The words around the command, in order, are its arguments (they point into argv). */
    char **words = xcalloc((size_t)argc, sizeof(*words));
    int nwords = 0, status = CLI_EXIT_USAGE;
    for (int i = 1; i < argc; i++)
        if (i != at)
            words[nwords++] = argv[i];
    struct cli_args args;
    const char *reason = cli_args_parse(command->opts, nwords, words, &args);
    if (reason != NULL) {
        fprintf(stderr, "agentd %s %s: %s (see --help)\n", noun->name, command->name, reason);
        goto fail;
    }
    if (cli_args_get(&args, "help") != NULL) {
        fprintf(stdout, "Usage: agentd %s %s %s [OPTIONS]\n%s\n\nOptions:\n", noun->name, command->name,
                command->synopsis, command->summary);
        cli_args_usage(command->opts, stdout);
        status = CLI_EXIT_OK;
        goto fail;
    }
    if (args.npositional < command->min_args || args.npositional > command->max_args) {
        fprintf(stderr, "agentd %s %s: expected %s (see --help)\n", noun->name, command->name,
                command->synopsis[0] != '\0' ? command->synopsis : "no arguments");
        goto fail;
    }
    struct cli_client client = {
        .http = cli_http_new(cli_args_server(&args), cli_args_token(&args)),
        .json = cli_args_get(&args, "json") != NULL,
        .nwords = nwords,
        .words = words,
    };
    status = command->run(&client, &args);
    cli_http_free(client.http);
fail:
    free(words);
    return status;
}

/* ---- Shared by the nouns: readable JSON -------------------------------------------------- */

static int cli__json_is_scalar(const json_t *v) { return !json_is_object(v) && !json_is_array(v); }

/* A scalar as text: strings bare, everything else as JSON. */
static void cli__json_scalar(FILE *out, const json_t *v)
{
    if (json_is_string(v)) {
        fwrite(json_string_value(v), 1, json_string_length(v), out);
        return;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    fputs(text != NULL ? text : "?", out);
    free(text);
}

/* {"type":...,"repr":...} is how runtimes describe a value; it reads best on one line. */
static int cli__json_is_typed_value(const json_t *v)
{
    return json_is_object(v) && json_object_size(v) == 2 && json_object_get(v, "type") != NULL &&
           json_object_get(v, "repr") != NULL;
}

static void cli__json_print_value(FILE *out, const json_t *v, int indent);

static void cli__json_print_object(FILE *out, const json_t *object, int indent)
{
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)object, key, v) {
        fprintf(out, "%*s%s:", indent, "", key);
        cli__json_print_value(out, v, indent);
    }
}

/* Prints what follows "key:" — on the same line for scalars, below it (indented) otherwise. */
static void cli__json_print_value(FILE *out, const json_t *v, int indent)
{
    if (cli__json_is_typed_value(v)) {
        fputc(' ', out);
        cli__json_scalar(out, json_object_get(v, "type"));
        fputs("  ", out);
        cli__json_scalar(out, json_object_get(v, "repr"));
        fputc('\n', out);
    } else if (json_is_object(v)) {
        fputs(json_object_size(v) == 0 ? " {}\n" : "\n", out);
        cli__json_print_object(out, v, indent + 2);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        int all_scalars = 1;
        json_array_foreach (v, i, item)
            all_scalars = all_scalars && cli__json_is_scalar(item);
        if (!all_scalars) {
            char *text = json_dumps(v, JSON_COMPACT);
            fprintf(out, " %s\n", text != NULL ? text : "?");
            free(text);
            return;
        }
        json_array_foreach (v, i, item) {
            fputs(i == 0 ? " " : ", ", out);
            cli__json_scalar(out, item);
        }
        fputc('\n', out);
    } else {
        fputc(' ', out);
        cli__json_scalar(out, v);
        fputc('\n', out);
    }
}

int cli_json_print(FILE *out, const char *text, size_t len)
{
    if (len == 0)
        return -EINVAL;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return -EINVAL;
    }
    cli__json_print_object(out, root, 0);
    json_decref(root);
    return 0;
}

/* ---- Shared by the nouns: following a stream live ---------------------------------------- */

#define CLI_FOLLOW_IDLE_S         120L  /* silence after which a live read reconnects */
#define CLI_FOLLOW_BACKOFF_MAX_MS 5000L /* longest pause between reconnects */

/* One cli_follow, across reconnects. */
struct cli__follow {
    const struct cli_follow_cb *cb;
    struct cli_sse *sse;
    char **offset; /* the caller's: the last confirmed offset */
    /* Per connection: */
    int checked;  /* the response headers were looked at */
    int binary;   /* data events are base64 (Stream-SSE-Data-Encoding: base64) */
    int controls; /* control events received */
    /* Outcomes that end the transfer: */
    int stopped;         /* a callback asked to stop, or the stream is closed */
    const char *failure; /* why the response cannot be followed, or NULL */
    /* Data events waiting for the control event that confirms their offset. */
    struct buf *pending;
    size_t npending, pending_cap;
};

static void cli__follow_drop_pending(struct cli__follow *follow)
{
    for (size_t i = 0; i < follow->npending; i++)
        buf_free(&follow->pending[i]);
    follow->npending = 0;
}

static int cli__follow_data(struct cli__follow *follow, const struct cli_sse_event *event)
{
    if (follow->npending == follow->pending_cap) {
        follow->pending_cap = follow->pending_cap ? follow->pending_cap * 2 : 8;
        follow->pending = xrealloc(follow->pending, follow->pending_cap * sizeof(*follow->pending));
    }
    struct buf *data = &follow->pending[follow->npending++];
    memset(data, 0, sizeof(*data));
    if (!follow->binary) {
        buf_append(data, event->data, event->data_len);
        return 0;
    }
    /* Base64 may be split over several data: lines, which the parser joined with '\n'. */
    size_t decoded_len = 0;
    buf_reserve(data, event->data_len);
    if (sodium_base642bin((unsigned char *)data->p, event->data_len, event->data, event->data_len, "\r\n",
                          &decoded_len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
        follow->failure = "a data event is not valid base64";
        return 1;
    }
    data->len = decoded_len;
    return 0;
}

static int cli__follow_control(struct cli__follow *follow, const struct cli_sse_event *event)
{
    json_t *control = json_loadb(event->data, event->data_len, 0, NULL);
    if (!json_is_object(control)) {
        json_decref(control);
        follow->failure = "a control event is not a JSON object";
        return 1;
    }
    const char *next = json_string_value(json_object_get(control, "streamNextOffset"));
    if (next != NULL && strcmp(next, *follow->offset) != 0) {
        free(*follow->offset);
        *follow->offset = xstrdup(next);
    }
    int closed = json_is_true(json_object_get(control, "streamClosed"));
    int up_to_date = closed || json_is_true(json_object_get(control, "upToDate"));
    json_decref(control);
    follow->controls++;

    const struct cli_follow_cb *cb = follow->cb;
    int stop = 0;
    for (size_t i = 0; i < follow->npending && !stop; i++)
        stop = cb->on_data(cb->arg, follow->pending[i].p, follow->pending[i].len, *follow->offset);
    cli__follow_drop_pending(follow);
    if (!stop && cb->on_control != NULL)
        stop = cb->on_control(cb->arg, *follow->offset, up_to_date, closed);
    follow->stopped = stop || closed;
    return follow->stopped;
}

static int cli__follow_event(void *arg, const struct cli_sse_event *event)
{
    struct cli__follow *follow = arg;
    if (strcmp(event->type, "data") == 0)
        return cli__follow_data(follow, event);
    if (strcmp(event->type, "control") == 0)
        return cli__follow_control(follow, event);
    return 0; /* event types we do not know are skipped, for forward compatibility */
}

static int cli__follow_body(void *arg, const struct cli_http_response *resp, const char *p, size_t n)
{
    struct cli__follow *follow = arg;
    if (!follow->checked) {
        const char *type = cli_http_header(resp, "Content-Type");
        const char *encoding = cli_http_header(resp, "Stream-SSE-Data-Encoding");
        size_t type_len = type != NULL ? strcspn(type, "; \t") : 0;
        follow->checked = 1;
        follow->binary = encoding != NULL && strcasecmp(encoding, "base64") == 0;
        if (type_len != strlen("text/event-stream") ||
            strncasecmp(type, "text/event-stream", type_len) != 0) {
            follow->failure = "the server did not answer with an event stream";
            return 1;
        }
    }
    int rc = cli_sse_feed(follow->sse, p, n);
    if (rc < 0)
        follow->failure = "an event is too large";
    return rc;
}

static void cli__sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int cli_follow(struct cli_http *http, const char *what, const char *url_path, char **offset,
               const struct cli_follow_cb *cb)
{
    struct cli__follow follow = {.cb = cb, .offset = offset};
    struct cli_http_response resp = {0};
    struct buf url = {0};
    long backoff_ms = 0;
    int status = CLI_EXIT_OK, connected = 0, reported_outage = 0;

    follow.sse = cli_sse_new(cli__follow_event, &follow);
    for (;;) {
        cli_sse_reset(follow.sse);
        cli__follow_drop_pending(&follow);
        follow.checked = follow.binary = follow.controls = 0;
        buf_reset(&url);
        buf_puts(&url, url_path);
        buf_puts(&url, "?offset=");
        cli_http_path_escape(&url, *offset);
        buf_puts(&url, "&live=sse");
        struct cli_http_request req = {
            .method = "GET",
            .path = url.p,
            .headers = (const char *const[]){"Accept: text/event-stream", NULL},
            .on_body = cli__follow_body,
            .arg = &follow,
            .idle_timeout_s = CLI_FOLLOW_IDLE_S,
        };
        int rc = cli_http_request(http, &req, &resp);

        if (follow.stopped)
            break;
        if (follow.failure != NULL) {
            fprintf(stderr, "agentd: %s: %s\n", what, follow.failure);
            status = CLI_EXIT_HTTP;
            break;
        }
        if (rc == 0 && (resp.status < 200 || resp.status >= 300)) {
            status = cli_http_report(http, what, rc, &resp);
            if (status == CLI_EXIT_OK) /* a 3xx we did not follow */
                status = CLI_EXIT_HTTP;
            break;
        }
        if (rc < 0 && !connected && !follow.checked) {
            status = cli_http_report(http, what, rc, &resp);
            break;
        }
        connected = connected || follow.checked;
        if (rc < 0 && !reported_outage) {
            fprintf(stderr, "agentd: %s: %s; reconnecting from offset %s\n", what, cli_http_error(http),
                    *offset);
            reported_outage = 1;
        } else if (rc == 0) {
            reported_outage = 0;
        }
        /* The server ends live responses now and then (and may restart): resume from the last
         * confirmed offset, at once if this connection was useful, else with a growing pause. */
        if (follow.controls > 0)
            backoff_ms = 0;
        else
            backoff_ms = backoff_ms == 0 ? 250 : backoff_ms * 2;
        if (backoff_ms > CLI_FOLLOW_BACKOFF_MAX_MS)
            backoff_ms = CLI_FOLLOW_BACKOFF_MAX_MS;
        if (backoff_ms > 0)
            cli__sleep_ms(backoff_ms);
    }
    cli__follow_drop_pending(&follow);
    free(follow.pending);
    cli_sse_free(follow.sse);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* ---- Requests --------------------------------------------------------------------------- */

/* "/v1/sessions/<id>" (id escaped) and then rest (a literal path tail such as "/runs", or "")
 * into url. */
static void cli_session__url(struct buf *url, const char *id, const char *rest)
{
    buf_puts(url, CLI_SESSION_PREFIX "/");
    cli_http_path_escape(url, id);
    buf_puts(url, rest);
}

/* method on path, with body (a JSON value sent compact, or NULL for none), into resp. Reports a
 * failure on stderr as "agentd: <what>: ..." and returns the exit status. */
static int cli_session__call(struct cli_http *http, const char *method, const char *path, const json_t *body,
                             const char *what, struct cli_http_response *resp)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    struct cli_http_request req = {
        .method = method,
        .path = path,
        .headers = text != NULL ? (const char *const[]){"Content-Type: application/json", NULL} : NULL,
        .body = text,
        .body_len = text != NULL ? strlen(text) : 0,
        .timeout_ms = CLI_SESSION_TIMEOUT_MS,
    };
    int rc = cli_http_request(http, &req, resp);
    free(text);
    return cli_http_report(http, what, rc, resp);
}

/* The server's JSON answer as one stdout line (--json output). */
static void cli_session__put_answer(const struct cli_http_response *resp)
{
    fwrite(resp->body.p, 1, resp->body.len, stdout);
    fputc('\n', stdout);
}

/* ---- new --------------------------------------------------------------------------------- */

static const struct cli_opt cli_session__new_opts[] = {
    {"agent", "NAME",
     "the agent to run: demo (built in, no API key), claude-code, codex, opencode, jsonl, or none (a "
     "runtime-only session)"},
    {"workspace", "DIR", "an existing directory to work in (default: a new one on the server)"},
    {"env", "K=V",
     "environment variable for the session's processes (repeatable; K alone: "
     "this shell's value)"},
    {"tag", "TAG", "label the session (repeatable)"},
    {"program", "PATH", "the agent's binary (claude-code, codex, opencode; default: found on PATH)"},
    {"command", "ARG", "jsonl agents: the program, then each argument (repeatable, in order)"},
    {"base-url", "URL", "the model API's server root the agent talks to"},
    {"api-key", "KEY", "the model API key (default $AGENTD_MODEL_API_KEY)"},
    {"model", "NAME", "the model name, as the agent expects it"},
    {"sandbox", "MODE", "none (default) or bwrap"},
    {"no-mcp", NULL, "do not give the agent agentd's runtime and session tools"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

static int cli_session__add_arg(void *arg, const char *value)
{
    json_array_append_new(arg, json_string(value));
    return 0;
}

static int cli_session__add_env(void *arg, const char *spec)
{
    json_t *env = arg;
    const char *eq = strchr(spec, '=');
    char *name = eq != NULL ? xstrndup(spec, (size_t)(eq - spec)) : xstrdup(spec);
    const char *value = eq != NULL ? eq + 1 : getenv(name);
    int rc = 0;
    if (name[0] == '\0') {
        fprintf(stderr, "agentd session new: --env %s: empty variable name\n", spec);
        rc = -EINVAL;
    } else if (value == NULL) {
        fprintf(stderr, "agentd session new: --env %s: not set here (use %s=VALUE)\n", spec, name);
        rc = -EINVAL;
    } else {
        json_object_set_new(env, name, json_string(value));
    }
    free(name);
    return rc;
}

static int cli_session__add_tag(void *arg, const char *tag)
{
    json_array_append_new(arg, json_string(tag));
    return 0;
}

/* Prints a session the server just created (new, fork): its id alone on stdout, then its workspace
 * (cli_detail_stream); with --json the answer as is. Returns the exit status. */
static int cli_session__print_created(struct cli_client *client, const char *what,
                                      const struct cli_http_response *resp)
{
    json_t *session = json_loadb(resp->body.p, resp->body.len, 0, NULL);
    const char *id = json_string_value(json_object_get(session, "id"));
    int status = CLI_EXIT_OK;
    if (id == NULL) {
        fprintf(stderr, "agentd: %s: the answer carries no id\n", what);
        status = CLI_EXIT_HTTP;
    } else if (client->json) {
        cli_session__put_answer(resp);
    } else {
        const char *where = json_string_value(json_object_get(session, "workspace"));
        printf("%s\n", id);
        fflush(stdout);
        if (where != NULL)
            fprintf(cli_detail_stream(), "workspace: %s\n", where);
    }
    json_decref(session);
    return status;
}

static int cli_session__new(struct cli_client *client, const struct cli_args *args)
{
    const char *agent = cli_args_get(args, "agent");
    const char *workspace = cli_args_get(args, "workspace");
    struct cli_http_response resp = {0};
    json_t *body = json_object(), *env = json_object(), *tags = json_array();
    int status = CLI_EXIT_USAGE;

    if (agent == NULL || agent[0] == '\0') {
        fprintf(stderr, "agentd session new: --agent is required (none: a runtime-only session)\n");
        goto fail;
    }
    if (cli_args_each(cli_session__new_opts, client->nwords, client->words, "env", cli_session__add_env,
                      env) != 0)
        goto fail;
    cli_args_each(cli_session__new_opts, client->nwords, client->words, "tag", cli_session__add_tag, tags);
    json_object_set_new(body, "agent", json_string(agent));
    if (workspace != NULL) {
        /* The server resolves the path, so a relative one would mean its cwd, not ours. */
        char *absolute = realpath(workspace, NULL);
        json_object_set_new(body, "workspace", json_string(absolute != NULL ? absolute : workspace));
        free(absolute);
    }
    if (json_object_size(env) > 0)
        json_object_set(body, "env", env);
    if (json_array_size(tags) > 0)
        json_object_set(body, "tags", tags);
    /* Agent settings, passed through as the server names them. */
    static const struct {
        const char *opt, *field;
    } settings[] = {{"program", "program"},
                    {"base-url", "base_url"},
                    {"api-key", "api_key"},
                    {"model", "model"},
                    {"sandbox", "sandbox"}};
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        const char *v = cli_args_get(args, settings[i].opt);
        if (v == NULL && !strcmp(settings[i].opt, "api-key"))
            v = getenv("AGENTD_MODEL_API_KEY");
        if (v != NULL)
            json_object_set_new(body, settings[i].field, json_string(v));
    }
    if (cli_args_get(args, "no-mcp") != NULL)
        json_object_set_new(body, "mcp", json_false());
    json_t *command = json_array();
    cli_args_each(cli_session__new_opts, client->nwords, client->words, "command", cli_session__add_arg,
                  command);
    if (json_array_size(command) > 0)
        json_object_set(body, "command", command);
    json_decref(command);
    status = cli_session__call(client->http, "POST", CLI_SESSION_PREFIX, body, "session new", &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    status = cli_session__print_created(client, "session new", &resp);
fail:
    cli_http_response_reset(&resp);
    json_decref(body);
    json_decref(env);
    json_decref(tags);
    return status;
}

/* ---- ls ---------------------------------------------------------------------------------- */

static const struct cli_opt cli_session__ls_opts[] = {
    {"tag", "TAG", "only sessions with this tag"},
    {"limit", "N", "at most N sessions"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* created_at as local "YYYY-MM-DD HH:MM:SS"; the server may send Unix ms or a string. */
static void cli_session__format_time(const json_t *v, char *out, size_t size)
{
    if (json_is_string(v)) {
        snprintf(out, size, "%s", json_string_value(v));
        return;
    }
    if (!json_is_number(v)) {
        snprintf(out, size, "-");
        return;
    }
    time_t seconds = (time_t)(json_number_value(v) / 1000.0);
    struct tm tm;
    if (localtime_r(&seconds, &tm) == NULL || strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(out, size, "-");
}

static void cli_session__print_row(const json_t *session)
{
    const json_t *tags = json_object_get(session, "tags");
    const char *id = json_string_value(json_object_get(session, "id"));
    const char *agent = json_string_value(json_object_get(session, "agent"));
    const char *state = json_string_value(json_object_get(session, "status"));
    char created[64];
    cli_session__format_time(json_object_get(session, "created_at"), created, sizeof(created));
    printf("%-24s %-8s %-10s %-19s ", id != NULL ? id : "?", agent != NULL ? agent : "-",
           state != NULL ? state : "-", created);
    size_t i;
    json_t *tag;
    json_array_foreach (tags, i, tag)
        printf("%s%s", i > 0 ? "," : "", json_string_value(tag));
    if (json_array_size(tags) == 0)
        fputs("-", stdout);
    putchar('\n');
}

static int cli_session__ls(struct cli_client *client, const struct cli_args *args)
{
    const char *tag = cli_args_get(args, "tag");
    const char *limit = cli_args_get(args, "limit");
    struct cli_http_response resp = {0};
    struct buf url = {0};
    json_t *root = NULL;

    buf_puts(&url, CLI_SESSION_PREFIX);
    if (tag != NULL) {
        buf_puts(&url, "?tag=");
        cli_http_path_escape(&url, tag);
    }
    if (limit != NULL) {
        buf_puts(&url, tag != NULL ? "&limit=" : "?limit=");
        cli_http_path_escape(&url, limit);
    }
    int status = cli_session__call(client->http, "GET", url.p, NULL, "session ls", &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    root = json_loadb(resp.body.p, resp.body.len, 0, NULL);
    json_t *sessions = json_object_get(root, "sessions");
    if (!json_is_array(sessions)) {
        fprintf(stderr, "agentd: session ls: the answer is not {\"sessions\":[...]}\n");
        status = CLI_EXIT_HTTP;
        goto fail;
    }
    size_t i;
    json_t *session;
    if (!client->json)
        printf("%-24s %-8s %-10s %-19s %s\n", "ID", "AGENT", "STATUS", "CREATED", "TAGS");
    json_array_foreach (sessions, i, session) {
        if (client->json) {
            char *line = json_dumps(session, JSON_COMPACT);
            printf("%s\n", line);
            free(line);
        } else {
            cli_session__print_row(session);
        }
    }
fail:
    json_decref(root);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* ---- show / rm --------------------------------------------------------------------------- */

static const struct cli_opt cli_session__plain_opts[] = {
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* method on /v1/sessions/<id> into resp; reports failures and returns the exit status. */
static int cli_session__request(struct cli_client *client, const char *method, const char *id,
                                const char *what, struct cli_http_response *resp)
{
    struct buf url = {0};
    cli_session__url(&url, id, "");
    int status = cli_session__call(client->http, method, url.p, NULL, what, resp);
    buf_free(&url);
    return status;
}

static int cli_session__show(struct cli_client *client, const struct cli_args *args)
{
    struct cli_http_response resp = {0};
    int status = cli_session__request(client, "GET", args->positional[0], "session show", &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    if (client->json || cli_json_print(stdout, resp.body.p, resp.body.len) != 0) {
        if (resp.body.len > 0)
            fwrite(resp.body.p, 1, resp.body.len, stdout);
        fputc('\n', stdout);
    }
fail:
    cli_http_response_reset(&resp);
    return status;
}

static int cli_session__rm(struct cli_client *client, const struct cli_args *args)
{
    struct cli_http_response resp = {0};
    int status = cli_session__request(client, "DELETE", args->positional[0], "session rm", &resp);
    if (status == CLI_EXIT_OK && client->json) {
        struct buf line = {0};
        buf_puts(&line, "{\"id\":");
        buf_json_string(&line, args->positional[0], strlen(args->positional[0]));
        buf_puts(&line, ",\"deleted\":true}\n");
        fwrite(line.p, 1, line.len, stdout);
        buf_free(&line);
    }
    cli_http_response_reset(&resp);
    return status;
}

/* ---- Reading run records ------------------------------------------------------------------ */

/* GET /v1/sessions/<id>/runs on http: *runs becomes the "runs" array (free with json_decref).
 * Returns the exit status, the failure reported as "agentd: <what>: ...". */
static int cli_session__get_runs(struct cli_http *http, const char *id, const char *what, json_t **runs)
{
    struct cli_http_response resp = {0};
    struct buf url = {0};
    json_t *root = NULL;
    *runs = NULL;
    cli_session__url(&url, id, "/runs");
    int status = cli_session__call(http, "GET", url.p, NULL, what, &resp);
    if (status == CLI_EXIT_OK) {
        root = json_loadb(resp.body.p, resp.body.len, 0, NULL);
        *runs = json_incref(json_object_get(root, "runs"));
        if (!json_is_array(*runs)) {
            fprintf(stderr, "agentd: %s: the answer is not {\"runs\":[...]}\n", what);
            json_decref(*runs);
            *runs = NULL;
            status = CLI_EXIT_HTTP;
        }
    }
    json_decref(root);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* A run that has not ended yet: queued or running (cancelling runs still say running). */
static int cli_session__run_is_open(const json_t *run)
{
    const char *status = json_string_value(json_object_get(run, "status"));
    return status == NULL || strcmp(status, "queued") == 0 || strcmp(status, "running") == 0;
}

/* ---- Rendering transcript events ---------------------------------------------------------- */

#define CLI_SESSION_TOOL_LINES 8   /* lines of a tool's output shown */
#define CLI_SESSION_LINE_MAX   200 /* bytes shown of one line of tool input or output */
#define CLI_SESSION_INPUT_MAX  60  /* bytes shown of a run's input in `runs` */

/* What rendering remembers from one event to the next. */
struct cli_session__render {
    struct buf delta; /* text streamed by delta events since the last message, already printed */
};

/* Writes p[0..n), at most max bytes of it (0: no limit) cut on a UTF-8 character boundary, with
 * "..." when cut. */
static void cli_session__put_cut(FILE *out, const char *p, size_t n, size_t max)
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

/* The first line of p[0..n), cut to max bytes, with "..." when anything was left out. */
static void cli_session__put_first_line(FILE *out, const char *p, size_t n, size_t max)
{
    const char *newline = n > 0 ? memchr(p, '\n', n) : NULL;
    size_t len = newline != NULL ? (size_t)(newline - p) : n;
    cli_session__put_cut(out, p, len, max);
    if (newline != NULL && (max == 0 || len <= max))
        fputs("...", out);
}

/* Writes p[0..n) line by line, each after prefix and cut to line_max bytes (0: whole); at most
 * max_lines lines (0: all), then how many were left out. Trailing line ends are dropped. */
static void cli_session__put_lines(FILE *out, const char *prefix, const char *p, size_t n, size_t max_lines,
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
            cli_session__put_cut(out, line, (size_t)(stop - line), line_max);
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
static void cli_session__value_text(const json_t *v, struct buf *out)
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
static void cli_session__message_text(const json_t *ev, struct buf *out)
{
    const json_t *content = json_object_get(ev, "content");
    if (!json_is_array(content)) {
        cli_session__value_text(json_is_string(content) ? content : json_object_get(ev, "text"), out);
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
static void cli_session__put_call(FILE *out, const char *name, const json_t *input)
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
    cli_session__value_text(shown, &text);
    fprintf(out, "$ %s(", name != NULL ? name : "?");
    cli_session__put_first_line(out, text.p, text.len, CLI_SESSION_LINE_MAX);
    fputs(")\n", out);
    buf_free(&text);
}

/* Output of a tool or runtime call, trimmed; errors marked with "!". */
static void cli_session__put_output(FILE *out, const json_t *output, int is_error)
{
    struct buf text = {0};
    cli_session__value_text(output, &text);
    if (text.len == 0)
        fputs(is_error ? "  ! (failed, no output)\n" : "  (no output)\n", out);
    else
        cli_session__put_lines(out, is_error ? "  ! " : "  ", text.p, text.len, CLI_SESSION_TOOL_LINES,
                               CLI_SESSION_LINE_MAX);
    buf_free(&text);
}

static const char *cli_session__str(const json_t *ev, const char *key, const char *otherwise)
{
    const char *value = json_string_value(json_object_get(ev, key));
    return value != NULL ? value : otherwise;
}

static void cli_session__render_run_start(struct cli_session__render *r, const json_t *ev)
{
    (void)r;
    const char *input = cli_session__str(ev, "input", "");
    cli_session__put_lines(stdout, "> ", input, strlen(input), 0, 0);
}

static void cli_session__render_delta(struct cli_session__render *r, const json_t *ev)
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
static void cli_session__render_message(struct cli_session__render *r, const json_t *ev)
{
    struct buf text = {0};
    cli_session__message_text(ev, &text);
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
        cli_session__put_lines(stdout, is_user ? "> " : "", p, n, 0, 0);
    }
    buf_free(&text);
}

static void cli_session__render_pre_tool(struct cli_session__render *r, const json_t *ev)
{
    (void)r;
    cli_session__put_call(stdout, cli_session__str(ev, "name", "tool"), json_object_get(ev, "input"));
}

static void cli_session__render_post_tool(struct cli_session__render *r, const json_t *ev)
{
    (void)r;
    cli_session__put_output(stdout, json_object_get(ev, "output"),
                            json_is_true(json_object_get(ev, "is_error")));
}

static void cli_session__render_log(struct cli_session__render *r, const json_t *ev)
{
    (void)r;
    const char *text = cli_session__str(ev, "text", "");
    printf("[%s] ", cli_session__str(ev, "level", "info"));
    cli_session__put_lines(stdout, "", text, strlen(text), 0, 0);
}

static void cli_session__render_error(struct cli_session__render *r, const json_t *ev)
{
    (void)r;
    printf("[error] %s (%s)\n", cli_session__str(ev, "message", "?"), cli_session__str(ev, "code", "error"));
}

static void cli_session__render_status(struct cli_session__render *r, const json_t *ev)
{
    (void)r;
    const char *lang = json_string_value(json_object_get(ev, "lang"));
    printf("-- %s%s%s: %s\n", cli_session__str(ev, "scope", "status"), lang != NULL ? " " : "",
           lang != NULL ? lang : "", cli_session__str(ev, "status", "?"));
}

/* A runtime call (`agentd rt exec`, the MCP tool): its code as a call, then its output. */
static void cli_session__render_runtime(struct cli_session__render *r, const json_t *ev)
{
    (void)r;
    const json_t *out = json_object_get(ev, "stdout"), *err = json_object_get(ev, "stderr");
    const char *outcome = cli_session__str(ev, "outcome", "ok");
    cli_session__put_call(stdout, cli_session__str(ev, "lang", "runtime"), json_object_get(ev, "code"));
    if (json_string_length(out) > 0 || json_string_length(err) == 0)
        cli_session__put_output(stdout, out, 0);
    if (json_string_length(err) > 0)
        cli_session__put_output(stdout, err, 1);
    if (strcmp(outcome, "ok") != 0)
        printf("  ! %s\n", outcome);
}

static void cli_session__render_run_completed(struct cli_session__render *r, const json_t *ev)
{
    (void)r;
    const char *code = json_string_value(json_object_get(ev, "code"));
    printf("-- run completed: %s%s%s%s\n", cli_session__str(ev, "status", "?"), code != NULL ? " (" : "",
           code != NULL ? code : "", code != NULL ? ")" : "");
}

static void cli_session__render_session(struct cli_session__render *r, const json_t *ev)
{
    (void)r;
    const char *from = json_string_value(json_object_get(ev, "from"));
    printf("-- session %s%s%s\n", cli_session__str(ev, "action", "?"), from != NULL ? " from " : "",
           from != NULL ? from : "");
}

static const struct {
    const char *type;
    void (*render)(struct cli_session__render *r, const json_t *ev);
} cli_session__renderers[] = {
    {"run_start", cli_session__render_run_start}, {"message", cli_session__render_message},
    {"delta", cli_session__render_delta},         {"pre_tool", cli_session__render_pre_tool},
    {"post_tool", cli_session__render_post_tool}, {"log", cli_session__render_log},
    {"error", cli_session__render_error},         {"status", cli_session__render_status},
    {"runtime", cli_session__render_runtime},     {"run_completed", cli_session__render_run_completed},
    {"session", cli_session__render_session},
};

/* Prints one transcript event readably on stdout; event types it does not know print nothing. */
static void cli_session__render(struct cli_session__render *r, const json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type == NULL)
        return;
    if (r->delta.len > 0 && strcmp(type, "delta") != 0 && strcmp(type, "message") != 0) {
        fputc('\n', stdout); /* the streamed text ended without its message */
        buf_reset(&r->delta);
    }
    for (size_t i = 0; i < CORE_ARRAY_LEN(cli_session__renderers); i++)
        if (strcmp(type, cli_session__renderers[i].type) == 0)
            cli_session__renderers[i].render(r, ev);
}

/* Ends a line that deltas left open, before the command ends. */
static void cli_session__render_end(struct cli_session__render *r)
{
    if (r->delta.len > 0)
        fputc('\n', stdout);
    buf_free(&r->delta);
}

/* ---- Following a transcript: tail, send --wait -------------------------------------------- */

/* One read of a session's transcript. */
struct cli_session__tail {
    struct cli_client *client;
    const char *what;
    const char *id;      /* the session */
    const char *run;     /* send --wait: only this run's events are printed; its end stops the read */
    char run_status[16]; /* the status in run's run_completed, once seen */
    struct cli_session__render render;
    json_t *done; /* run ids known to be over: their run_completed was read, or they were over
                      * when the tail began (object of run id -> true) */
    /* --until-idle: */
    int until_idle;
    int check;             /* look at the run records at the next up-to-date control event */
    struct cli_http *side; /* for GET .../runs while the live read is in progress */
    int status;            /* the exit status when a callback stopped the read on a failure */
};

static int cli_session__tail_event(void *arg, const char *p, size_t n)
{
    struct cli_session__tail *tail = arg;
    json_t *ev = json_loadb(p, n, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *run = json_string_value(json_object_get(ev, "run"));
    int stop = 0;
    if (tail->run != NULL && (run == NULL || strcmp(run, tail->run) != 0))
        goto out;
    if (tail->client->json) {
        fwrite(p, 1, n, stdout);
        fputc('\n', stdout);
    } else if (ev != NULL) {
        cli_session__render(&tail->render, ev);
    }
    if (type != NULL && run != NULL && strcmp(type, "run_completed") == 0) {
        json_object_set_new(tail->done, run, json_true());
        tail->check = 1;
        if (tail->run != NULL) {
            snprintf(tail->run_status, sizeof(tail->run_status), "%s", cli_session__str(ev, "status", "?"));
            stop = 1;
        }
    }
out:
    json_decref(ev);
    return stop;
}

static int cli_session__tail_data(void *arg, const char *p, size_t n, const char *offset)
{
    struct cli_session__tail *tail = arg;
    (void)offset;
    int rc = cli_json_array_each(p, n, cli_session__tail_event, tail);
    fflush(stdout);
    if (rc < 0) {
        fprintf(stderr, "agentd: %s: the transcript is not a JSON stream\n", tail->what);
        tail->status = CLI_EXIT_HTTP;
        return 1;
    }
    return rc;
}

/*
 * --until-idle: at the tail of the transcript, asks for the run records. The session is idle when
 * none is queued or running and the run_completed of every run is printed (the server shows a run
 * over before its run_completed is committed and readable). A run that is not over makes the next
 * check wait for a run_completed; one whose run_completed is on its way, for the next control.
 */
static int cli_session__tail_control(void *arg, const char *offset, int up_to_date, int closed)
{
    struct cli_session__tail *tail = arg;
    (void)offset;
    if (closed || !tail->until_idle || !up_to_date || !tail->check)
        return 0;
    json_t *runs;
    tail->status = cli_session__get_runs(tail->side, tail->id, tail->what, &runs);
    if (tail->status != CLI_EXIT_OK)
        return 1;
    int open = 0, unseen = 0;
    size_t i;
    json_t *run;
    json_array_foreach (runs, i, run) {
        const char *id = json_string_value(json_object_get(run, "id"));
        if (cli_session__run_is_open(run))
            open = 1;
        else if (id != NULL && json_object_get(tail->done, id) == NULL)
            unseen = 1;
    }
    json_decref(runs);
    tail->check = !open;
    return !open && !unseen;
}

/* The transcript's URL path, for cli_follow and HEAD. */
static void cli_session__transcript_url(struct buf *url, const char *id)
{
    buf_puts(url, "/v1/stream/sessions/");
    cli_http_path_escape(url, id);
    buf_puts(url, "/transcript");
}

/* Reads the transcript from *offset (replaced by the last confirmed one) as tail says. Returns
 * the exit status. */
static int cli_session__tail_follow(struct cli_session__tail *tail, char **offset)
{
    struct buf url = {0};
    cli_session__transcript_url(&url, tail->id);
    const struct cli_follow_cb cb = {
        .on_data = cli_session__tail_data,
        .on_control = cli_session__tail_control,
        .arg = tail,
    };
    tail->status = CLI_EXIT_OK;
    int status = cli_follow(tail->client->http, tail->what, url.p, offset, &cb);
    cli_session__render_end(&tail->render);
    fflush(stdout);
    buf_free(&url);
    return status != CLI_EXIT_OK ? status : tail->status;
}

/* ---- send --------------------------------------------------------------------------------- */

static const struct cli_opt cli_session__send_opts[] = {
    {"mode", "MODE", "when a run is active: queue (default), interrupt it, or reject (exit 4)"},
    {"wait", NULL, "print the run's events until it ends; exit 0 only if it succeeded"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* The exit status for a run that ended with status (send --wait). */
static int cli_session__run_exit(const char *status)
{
    if (strcmp(status, "success") == 0)
        return CLI_EXIT_OK;
    if (strcmp(status, "cancelled") == 0)
        return CLI_EXIT_CONFLICT;
    return CLI_EXIT_HTTP;
}

static int cli_session__send(struct cli_client *client, const struct cli_args *args)
{
    const char *id = args->positional[0];
    const char *mode = cli_args_get(args, "mode");
    int wait = cli_args_get(args, "wait") != NULL;
    struct cli_http_response resp = {0};
    struct buf url = {0};
    json_t *body = json_pack("{s:s}", "text", args->positional[1]), *answer = NULL;
    char *offset = NULL;
    int status;

    if (wait) {
        /* Where the transcript ends now: the run's events all come after it. */
        cli_session__transcript_url(&url, id);
        status = cli_session__call(client->http, "HEAD", url.p, NULL, "session send", &resp);
        const char *next = cli_http_header(&resp, "Stream-Next-Offset");
        if (status == CLI_EXIT_OK && next == NULL) {
            fprintf(stderr, "agentd: session send: the transcript has no Stream-Next-Offset\n");
            status = CLI_EXIT_HTTP;
        }
        if (status != CLI_EXIT_OK)
            goto fail;
        offset = xstrdup(next);
        buf_reset(&url);
    }
    if (mode != NULL)
        json_object_set_new(body, "mode", json_string(mode));
    cli_session__url(&url, id, "/messages");
    status = cli_session__call(client->http, "POST", url.p, body, "session send", &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    answer = json_loadb(resp.body.p, resp.body.len, 0, NULL);
    const char *run = json_string_value(json_object_get(answer, "id"));
    if (run == NULL)
        run = json_string_value(json_object_get(answer, "run"));
    if (run == NULL) {
        fprintf(stderr, "agentd: session send: the answer names no run\n");
        status = CLI_EXIT_HTTP;
        goto fail;
    }
    if (client->json)
        cli_session__put_answer(&resp);
    else
        printf("%s\n", run);
    fflush(stdout);
    if (!wait)
        goto fail;

    struct cli_session__tail tail = {
        .client = client, .what = "session send", .id = id, .run = run, .done = json_object()};
    status = cli_session__tail_follow(&tail, &offset);
    json_decref(tail.done);
    if (status != CLI_EXIT_OK)
        goto fail;
    if (tail.run_status[0] == '\0') {
        fprintf(stderr, "agentd: session send: the transcript ended before run %s did\n", run);
        status = CLI_EXIT_HTTP;
        goto fail;
    }
    status = cli_session__run_exit(tail.run_status);
    if (status != CLI_EXIT_OK)
        fprintf(stderr, "agentd: session send: run %s ended %s\n", run, tail.run_status);
fail:
    json_decref(answer);
    json_decref(body);
    cli_http_response_reset(&resp);
    buf_free(&url);
    free(offset);
    return status;
}

/* ---- tail --------------------------------------------------------------------------------- */

static const struct cli_opt cli_session__tail_opts[] = {
    {"from", "OFFSET",
     "start at this transcript offset (default -1, the beginning; now: only "
     "new events)"},
    {"until-idle", NULL, "exit once no run is queued or running and all of it was printed"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

static int cli_session__tail(struct cli_client *client, const struct cli_args *args)
{
    const char *from = cli_args_get(args, "from");
    struct cli_session__tail tail = {
        .client = client,
        .what = "session tail",
        .id = args->positional[0],
        .done = json_object(),
        .until_idle = cli_args_get(args, "until-idle") != NULL,
        .check = 1,
    };
    char *offset = xstrdup(from != NULL ? from : "-1");
    int status = CLI_EXIT_OK;

    if (tail.until_idle) {
        /* Runs over by now are not waited for: their run_completed may lie before --from. */
        json_t *runs;
        tail.side = cli_http_new(cli_args_server(args), cli_args_token(args));
        status = cli_session__get_runs(tail.side, tail.id, tail.what, &runs);
        if (status != CLI_EXIT_OK)
            goto fail;
        size_t i;
        json_t *run;
        json_array_foreach (runs, i, run) {
            const char *id = json_string_value(json_object_get(run, "id"));
            if (id != NULL && !cli_session__run_is_open(run))
                json_object_set_new(tail.done, id, json_true());
        }
        json_decref(runs);
    }
    status = cli_session__tail_follow(&tail, &offset);
    if (status == CLI_EXIT_OK)
        fprintf(stderr, "next-offset: %s\n", offset);
fail:
    cli_http_free(tail.side);
    json_decref(tail.done);
    free(offset);
    return status;
}

/* ---- runs --------------------------------------------------------------------------------- */

static void cli_session__print_run(const json_t *run)
{
    const json_t *started = json_object_get(run, "started_at");
    const json_t *ended = json_object_get(run, "ended_at");
    const char *input = cli_session__str(run, "input", "");
    char created[64], took[32] = "-";
    cli_session__format_time(json_object_get(run, "created_at"), created, sizeof(created));
    if (json_is_number(started) && json_is_number(ended))
        snprintf(took, sizeof(took), "%.1fs",
                 (json_number_value(ended) - json_number_value(started)) / 1000.0);
    printf("%-20s %-9s %-9s %-19s %8s %-14s ", cli_session__str(run, "id", "?"),
           cli_session__str(run, "status", "-"), cli_session__str(run, "mode", "-"), created, took,
           cli_session__str(run, "code", "-"));
    cli_session__put_first_line(stdout, input, strlen(input), CLI_SESSION_INPUT_MAX);
    putchar('\n');
}

static int cli_session__runs(struct cli_client *client, const struct cli_args *args)
{
    json_t *runs;
    int status = cli_session__get_runs(client->http, args->positional[0], "session runs", &runs);
    if (status != CLI_EXIT_OK)
        return status;
    if (!client->json)
        printf("%-20s %-9s %-9s %-19s %8s %-14s %s\n", "ID", "STATUS", "MODE", "CREATED", "TOOK", "CODE",
               "INPUT");
    size_t i;
    json_t *run;
    json_array_foreach (runs, i, run) {
        if (client->json) {
            char *line = json_dumps(run, JSON_COMPACT);
            printf("%s\n", line);
            free(line);
        } else {
            cli_session__print_run(run);
        }
    }
    json_decref(runs);
    return CLI_EXIT_OK;
}

/* ---- cancel ------------------------------------------------------------------------------- */

static int cli_session__cancel(struct cli_client *client, const struct cli_args *args)
{
    const char *id = args->positional[0];
    struct cli_http_response resp = {0};
    struct buf url = {0};
    json_t *session = NULL, *answer = NULL;
    const char *run = args->npositional > 1 ? args->positional[1] : NULL;
    int status = CLI_EXIT_OK;

    if (run == NULL) {
        status = cli_session__request(client, "GET", id, "session cancel", &resp);
        if (status != CLI_EXIT_OK)
            goto fail;
        session = json_loadb(resp.body.p, resp.body.len, 0, NULL);
        run = json_string_value(json_object_get(session, "active_run"));
        if (run == NULL) {
            fprintf(stderr, "agentd: session cancel: %s has no active run\n", id);
            status = CLI_EXIT_CONFLICT;
            goto fail;
        }
    }
    cli_session__url(&url, id, "/runs/");
    cli_http_path_escape(&url, run);
    buf_puts(&url, "/cancel");
    status = cli_session__call(client->http, "POST", url.p, NULL, "session cancel", &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    if (client->json) {
        cli_session__put_answer(&resp);
    } else {
        answer = json_loadb(resp.body.p, resp.body.len, 0, NULL);
        printf("%s\nstatus: %s\n", run, cli_session__str(answer, "status", "?"));
    }
fail:
    json_decref(answer);
    json_decref(session);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* ---- fork --------------------------------------------------------------------------------- */

static const struct cli_opt cli_session__fork_opts[] = {
    {"at", "OFFSET", "fork the transcript at this offset (default: its end)"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

static int cli_session__fork(struct cli_client *client, const struct cli_args *args)
{
    const char *at = cli_args_get(args, "at");
    struct cli_http_response resp = {0};
    struct buf url = {0};
    json_t *body = json_object();
    if (at != NULL)
        json_object_set_new(body, "at", json_string(at));
    cli_session__url(&url, args->positional[0], "/fork");
    int status = cli_session__call(client->http, "POST", url.p, body, "session fork", &resp);
    if (status == CLI_EXIT_OK)
        status = cli_session__print_created(client, "session fork", &resp);
    json_decref(body);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* ---- share -------------------------------------------------------------------------------- */

static const struct cli_opt cli_session__share_opts[] = {
    {"revoke", "TOKEN", "revoke this share token instead of making one"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* Prints a new share link: the token, then each URL made absolute. */
static void cli_session__print_share(struct cli_client *client, const json_t *answer)
{
    const char *key;
    json_t *v;
    printf("%s\n", cli_session__str(answer, "token", "?"));
    fflush(stdout);
    json_object_foreach (json_object_get(answer, "urls"), key, v) {
        const char *where = json_string_value(v);
        if (where != NULL)
            fprintf(cli_detail_stream(), "%s: %s%s\n", key,
                    where[0] == '/' ? cli_http_server(client->http) : "", where);
    }
}

static int cli_session__share(struct cli_client *client, const struct cli_args *args)
{
    const char *token = cli_args_get(args, "revoke");
    struct cli_http_response resp = {0};
    struct buf url = {0};
    json_t *answer = NULL;
    int status;

    cli_session__url(&url, args->positional[0], "/share");
    if (token != NULL) {
        buf_puts(&url, "/");
        cli_http_path_escape(&url, token);
        status = cli_session__call(client->http, "DELETE", url.p, NULL, "session share", &resp);
        if (status == CLI_EXIT_OK && client->json) {
            struct buf line = {0};
            buf_puts(&line, "{\"token\":");
            buf_json_string(&line, token, strlen(token));
            buf_puts(&line, ",\"revoked\":true}\n");
            fwrite(line.p, 1, line.len, stdout);
            buf_free(&line);
        }
        goto fail;
    }
    status = cli_session__call(client->http, "POST", url.p, NULL, "session share", &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    answer = json_loadb(resp.body.p, resp.body.len, 0, NULL);
    if (json_string_value(json_object_get(answer, "token")) == NULL) {
        fprintf(stderr, "agentd: session share: the answer carries no token\n");
        status = CLI_EXIT_HTTP;
    } else if (client->json) {
        cli_session__put_answer(&resp);
    } else {
        cli_session__print_share(client, answer);
    }
fail:
    json_decref(answer);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* ---- Dispatch ---------------------------------------------------------------------------- */

static const struct cli_command cli_session__commands[] = {
    {"new", "--agent NAME", 0, 0, cli_session__new_opts, cli_session__new, "create a session; prints its id"},
    {"ls", "", 0, 0, cli_session__ls_opts, cli_session__ls, "list sessions"},
    {"show", "ID", 1, 1, cli_session__plain_opts, cli_session__show, "describe a session"},
    {"send", "ID TEXT", 2, 2, cli_session__send_opts, cli_session__send,
     "send a message to the agent; prints the run id on the first line"},
    {"tail", "ID", 1, 1, cli_session__tail_opts, cli_session__tail,
     "print the transcript and follow it live"},
    {"runs", "ID", 1, 1, cli_session__plain_opts, cli_session__runs, "list a session's runs"},
    {"cancel", "ID [RUN]", 1, 2, cli_session__plain_opts, cli_session__cancel,
     "cancel a run (default: the active one)"},
    {"fork", "ID", 1, 1, cli_session__fork_opts, cli_session__fork, "copy a session; prints the new id"},
    {"share", "ID", 1, 1, cli_session__share_opts, cli_session__share,
     "make a read-only share link (prints its token, then URLs)"},
    {"rm", "ID", 1, 1, cli_session__plain_opts, cli_session__rm, "delete a session (its runtimes stop)"},
};

static const struct cli_noun cli_session__noun = {
    .name = "session",
    .commands = cli_session__commands,
    .ncommands = CORE_ARRAY_LEN(cli_session__commands),
    .intro = "Commands (a session is a workspace, an environment, its runtimes and its streams):",
    .footer = "\nWith --json, stdout has the server's JSON: one object per line (tail: one transcript\n"
              "event per line; send --wait: the answer, then the run's events).\n"
              "tail renders events readably: \"> input\" for a run's start, the agent's text,\n"
              "\"$ tool(input)\" and its output (trimmed), \"[level] text\" for logs and errors,\n"
              "\"-- run completed: status\". When tail ends, stderr has \"next-offset: OFFSET\" for --from.\n"
              "\nServer: --server, else $AGENTD_URL, else " CLI_DEFAULT_SERVER
              ". Token: --token, else $AGENTD_TOKEN.\n"
              "\nExit status: 0 ok, 1 usage, 2 unreachable, 3 not found, 4 conflict (send --mode reject\n"
              "while a run is active; cancel without an active run), 5 other HTTP error.\n"
              "send --wait: 0 when the run succeeded, 4 when it was cancelled, 5 when it failed.\n",
};

int cli_session_main(int argc, char **argv) { return cli_noun_main(&cli_session__noun, argc, argv); }
