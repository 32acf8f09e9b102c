/*
 * cli_session.c — `agentd session new|ls|show|send|tail|runs|cancel|interrupt|fork|share|rm`:
 * sessions on a running server through the REST API at /v1/sessions (see src/session/session.h) and
 * their transcripts at /v1/stream/sessions/<id>/transcript. What a person in the loop answers
 * (`permissions`, `approve`, `deny`) is in cli_session_loop.c.
 *
 * Output contract: `new` and `fork` print the new session's id alone on stdout (scripts do
 * `S=$(agentd session new --agent none)`), then its workspace on the terminal or, when stdout is not
 * one, on stderr (cli_detail_stream); `send` the run id, then with --wait the run's events until its
 * run_completed; `share` the token, then the URLs (likewise on the terminal or stderr); `ls` and
 * `runs` a table, `show` one "key: value" line per field; `cancel` and `interrupt` the run id and
 * its status; `rm`
 * and `share --revoke` nothing. `tail` renders the transcript readably (see cli_session__render)
 * (cli_render.c) and says on stderr where it stopped ("next-offset: O", for --from). With --json, stdout is the
 * server's JSON, one object per line: `ls` one session, `runs` one run record, `tail` one
 * transcript event per line.
 *
 * `send --wait` exit statuses, within enum cli_exit: 0 the run succeeded, 4 it was cancelled
 * (by `cancel`, or by another sender's interrupt), 5 it failed.
 *
 * What the nouns share lives in its own files: dispatch and options (cli_noun.c), JSON helpers
 * (cli_json.c), the live follower (cli_follow.c) and the transcript renderer (cli_render.c).
 */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_http.h"
#include "cli/cli_json.h"
#include "cli/cli_render.h"
#include "cli/cli_session.h"
#include "core/core.h"

#define CLI_SESSION_TIMEOUT_MS 60000L
#define CLI_SESSION_PREFIX     "/v1/sessions"
#define CLI_SESSION_INPUT_MAX  60 /* bytes shown of a run's input in `runs` */

/* ---- Requests --------------------------------------------------------------------------- */

void cli_session__url(struct buf *url, const char *id, const char *rest)
{
    buf_puts(url, CLI_SESSION_PREFIX "/");
    cli_http_path_escape(url, id);
    buf_puts(url, rest);
}

int cli_session__call(struct cli_http *http, const char *method, const char *path, const json_t *body,
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

void cli_session__put_answer(const struct cli_http_response *resp)
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

static void cli_session__print_row(FILE *out, const json_t *session)
{
    const json_t *tags = json_object_get(session, "tags");
    const char *id = json_string_value(json_object_get(session, "id"));
    const char *agent = json_string_value(json_object_get(session, "agent"));
    const char *state = json_string_value(json_object_get(session, "status"));
    char created[64];
    cli_session__format_time(json_object_get(session, "created_at"), created, sizeof(created));
    fprintf(out, "%-24s %-8s %-10s %-19s ", id != NULL ? id : "?", agent != NULL ? agent : "-",
            state != NULL ? state : "-", created);
    size_t i;
    json_t *tag;
    json_array_foreach (tags, i, tag)
        fprintf(out, "%s%s", i > 0 ? "," : "", json_string_value(tag));
    if (json_array_size(tags) == 0)
        fputs("-", out);
    fputc('\n', out);
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
    if (!client->json)
        printf("%-24s %-8s %-10s %-19s %s\n", "ID", "AGENT", "STATUS", "CREATED", "TAGS");
    cli_json_print_each(stdout, sessions, client->json, cli_session__print_row);
fail:
    json_decref(root);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

/* ---- show / rm --------------------------------------------------------------------------- */

const struct cli_opt cli_session__plain_opts[] = {
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

int cli_session__request(struct cli_client *client, const char *method, const char *id, const char *what,
                         struct cli_http_response *resp)
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

/* ---- Following a transcript: tail, send --wait -------------------------------------------- */

/* One read of a session's transcript. */
struct cli_session__tail {
    struct cli_client *client;
    const char *what;
    const char *id;      /* the session */
    const char *run;     /* send --wait: only this run's events are printed; its end stops the read */
    char run_status[16]; /* the status in run's run_completed, once seen */
    struct cli_render render;
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
        cli_render_event(&tail->render, ev);
    }
    if (type != NULL && run != NULL && strcmp(type, "run_completed") == 0) {
        json_object_set_new(tail->done, run, json_true());
        tail->check = 1;
        if (tail->run != NULL) {
            snprintf(tail->run_status, sizeof(tail->run_status), "%s", cli_json_str(ev, "status", "?"));
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
    cli_render_end(&tail->render);
    fflush(stdout);
    buf_free(&url);
    return status != CLI_EXIT_OK ? status : tail->status;
}

/* ---- send --------------------------------------------------------------------------------- */

static const struct cli_opt cli_session__send_opts[] = {
    {"mode", "MODE",
     "when a run is active: queue (default), interrupt it, reject (exit 4), or steer (into its turn; "
     "queued where the agent cannot take it)"},
    {"wait", NULL, "print the run's events until it ends; exit 0 only if it succeeded"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* The exit status for a run that ended with status (send --wait). */
static int cli_session__run_exit(const char *status)
{
    if (strcmp(status, "success") == 0)
        return CLI_EXIT_OK;
    if (strcmp(status, "cancelled") == 0 || strcmp(status, "interrupted") == 0)
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

static void cli_session__print_run(FILE *out, const json_t *run)
{
    const json_t *started = json_object_get(run, "started_at");
    const json_t *ended = json_object_get(run, "ended_at");
    const char *input = cli_json_str(run, "input", "");
    char created[64], took[32] = "-";
    cli_session__format_time(json_object_get(run, "created_at"), created, sizeof(created));
    if (json_is_number(started) && json_is_number(ended))
        snprintf(took, sizeof(took), "%.1fs",
                 (json_number_value(ended) - json_number_value(started)) / 1000.0);
    fprintf(out, "%-20s %-9s %-9s %-19s %8s %-14s ", cli_json_str(run, "id", "?"),
            cli_json_str(run, "status", "-"), cli_json_str(run, "mode", "-"), created, took,
            cli_json_str(run, "code", "-"));
    cli_render_first_line(out, input, strlen(input), CLI_SESSION_INPUT_MAX);
    fputc('\n', out);
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
    cli_json_print_each(stdout, runs, client->json, cli_session__print_run);
    json_decref(runs);
    return CLI_EXIT_OK;
}

/* ---- cancel, interrupt ------------------------------------------------------------------- */

/* POST .../runs/<run>/<action> (cancel, interrupt) for RUN, or the active run. */
static int cli_session__run_action(struct cli_client *client, const struct cli_args *args, const char *action,
                                   const char *what)
{
    const char *id = args->positional[0];
    struct cli_http_response resp = {0};
    struct buf url = {0};
    json_t *session = NULL, *answer = NULL;
    const char *run = args->npositional > 1 ? args->positional[1] : NULL;
    int status = CLI_EXIT_OK;

    if (run == NULL) {
        status = cli_session__request(client, "GET", id, what, &resp);
        if (status != CLI_EXIT_OK)
            goto fail;
        session = json_loadb(resp.body.p, resp.body.len, 0, NULL);
        run = json_string_value(json_object_get(session, "active_run"));
        if (run == NULL) {
            fprintf(stderr, "agentd: %s: %s has no active run\n", what, id);
            status = CLI_EXIT_CONFLICT;
            goto fail;
        }
    }
    cli_session__url(&url, id, "/runs/");
    cli_http_path_escape(&url, run);
    buf_printf(&url, "/%s", action);
    status = cli_session__call(client->http, "POST", url.p, NULL, what, &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    if (client->json) {
        cli_session__put_answer(&resp);
    } else {
        answer = json_loadb(resp.body.p, resp.body.len, 0, NULL);
        printf("%s\nstatus: %s\n", run, cli_json_str(answer, "status", "?"));
    }
fail:
    json_decref(answer);
    json_decref(session);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return status;
}

static int cli_session__cancel(struct cli_client *client, const struct cli_args *args)
{
    return cli_session__run_action(client, args, "cancel", "session cancel");
}

static int cli_session__interrupt(struct cli_client *client, const struct cli_args *args)
{
    return cli_session__run_action(client, args, "interrupt", "session interrupt");
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
    printf("%s\n", cli_json_str(answer, "token", "?"));
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
     "cancel a run (default: the active one): its process group is killed"},
    {"interrupt", "ID [RUN]", 1, 2, cli_session__plain_opts, cli_session__interrupt,
     "stop a run's turn and keep the agent and its conversation (exit 4 where the agent cannot)"},
    {"permissions", "ID", 1, 1, cli_session__plain_opts, cli_session__permissions,
     "list the permission requests waiting for an answer"},
    {"approve", "ID [REQUEST]", 1, 2, cli_session__answer_opts, cli_session__approve,
     "allow a waiting tool call (default: the only one waiting)"},
    {"deny", "ID [REQUEST]", 1, 2, cli_session__answer_opts, cli_session__deny,
     "deny a waiting tool call (default: the only one waiting)"},
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
              "\"$ tool(input)\" and its output (trimmed), \"? permission $ tool(input)\" and its request\n"
              "id, \"? allow|deny (by who)\", \">> text\" steered into a turn, \"[level] text\" for logs\n"
              "and errors, \"-- run completed: status\". When tail ends, stderr has \"next-offset: OFFSET\"\n"
              "for --from.\n"
              "\nExit status: 0 ok, 1 usage, 2 unreachable, 3 not found, 4 conflict (send --mode reject\n"
              "while a run is active; cancel without an active run; a request answered already; an\n"
              "agent that cannot interrupt), 5 other HTTP error.\n"
              "send --wait: 0 when the run succeeded, 4 when it was cancelled or interrupted, 5 when it\n"
              "failed.\n",
};

int cli_session_main(int argc, char **argv) { return cli_noun_main(&cli_session__noun, argc, argv); }
