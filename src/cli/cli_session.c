/*
 * cli_session.c — `agentd session new|ls|show|rm`: create, list, describe and delete sessions on a
 * running server through the REST API at /v1/sessions (see src/session/session.h).
 *
 * Output contract: `new` prints the new session's id on the first stdout line (scripts do
 * `S=$(agentd session new --agent none | head -1)`), then its workspace; `ls` a table, `show` one
 * "key: value" line per field; `rm` nothing. With --json, stdout is the server's JSON object (for
 * `ls`, one session object per line).
 *
 * This file also holds what every noun with subcommands shares (cli_noun_main, cli_args_each,
 * cli_json_print; declared in cli.h), since `agentd rt` uses them too.
 */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_http.h"
#include "core/core.h"

#define CLI_SESSION_TIMEOUT_MS 60000L
#define CLI_SESSION_PREFIX "/v1/sessions"

/* ---- Shared by the nouns: dispatch ------------------------------------------------------- */

static int cli__opt_takes_value(const struct cli_opt *table, const char *word)
{
    const char *name = word + 2;
    for (int i = 0; table[i].name != NULL; i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].metavar != NULL;
    return 0;
}

int cli_args_each(const struct cli_opt *table, int argc, char **argv, const char *name,
                  cli_value_cb cb, void *arg)
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
    fprintf(out, "Usage: agentd %s COMMAND ARGS [--server URL] [--token TOKEN] [--json]\n\n%s\n",
            noun->name, noun->intro);
    for (size_t i = 0; i < noun->ncommands; i++) {
        char left[48];
        snprintf(left, sizeof(left), "%s %s", noun->commands[i].name, noun->commands[i].synopsis);
        fprintf(out, "  %-24s %s\n", left, noun->commands[i].summary);
    }
    fprintf(out, "\nRun `agentd %s COMMAND --help` for a command's options.\n%s", noun->name,
            noun->footer);
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
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
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
            fprintf(stderr, "agentd %s: unknown command '%s' (see agentd %s --help)\n", noun->name,
                    argv[at], noun->name);
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
        fprintf(stdout, "Usage: agentd %s %s %s [OPTIONS]\n%s\n\nOptions:\n", noun->name,
                command->name, command->synopsis, command->summary);
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

static int cli__json_is_scalar(const json_t *v)
{
    return !json_is_object(v) && !json_is_array(v);
}

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
    json_object_foreach((json_t *)object, key, v) {
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
        json_array_foreach(v, i, item) all_scalars = all_scalars && cli__json_is_scalar(item);
        if (!all_scalars) {
            char *text = json_dumps(v, JSON_COMPACT);
            fprintf(out, " %s\n", text != NULL ? text : "?");
            free(text);
            return;
        }
        json_array_foreach(v, i, item) {
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

/* ---- new --------------------------------------------------------------------------------- */

static const struct cli_opt cli_session__new_opts[] = {
    {"agent", "NAME", "the agent to run (none: a runtime-only session)"},
    {"workspace", "DIR", "an existing directory to work in (default: a new one on the server)"},
    {"env", "K=V", "environment variable for the session's processes (repeatable; K alone: "
                   "this shell's value)"},
    {"tag", "TAG", "label the session (repeatable)"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

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

static int cli_session__new(struct cli_client *client, const struct cli_args *args)
{
    const char *agent = cli_args_get(args, "agent");
    const char *workspace = cli_args_get(args, "workspace");
    struct cli_http_response resp = {0};
    json_t *body = json_object(), *env = json_object(), *tags = json_array(), *session = NULL;
    char *text = NULL;
    int status = CLI_EXIT_USAGE;

    if (agent == NULL || agent[0] == '\0') {
        fprintf(stderr, "agentd session new: --agent is required (none: a runtime-only session)\n");
        goto fail;
    }
    if (cli_args_each(cli_session__new_opts, client->nwords, client->words, "env",
                      cli_session__add_env, env) != 0)
        goto fail;
    cli_args_each(cli_session__new_opts, client->nwords, client->words, "tag", cli_session__add_tag,
                  tags);
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
    text = json_dumps(body, JSON_COMPACT);

    struct cli_http_request req = {
        .method = "POST",
        .path = CLI_SESSION_PREFIX,
        .headers = (const char *const[]){"Content-Type: application/json", NULL},
        .body = text,
        .body_len = strlen(text),
        .timeout_ms = CLI_SESSION_TIMEOUT_MS,
    };
    int rc = cli_http_request(client->http, &req, &resp);
    status = cli_http_report(client->http, "session new", rc, &resp);
    if (status != CLI_EXIT_OK)
        goto fail;
    session = json_loadb(resp.body.p, resp.body.len, 0, NULL);
    const char *id = json_string_value(json_object_get(session, "id"));
    if (id == NULL) {
        fprintf(stderr, "agentd: session new: the answer carries no id\n");
        status = CLI_EXIT_HTTP;
        goto fail;
    }
    if (client->json) {
        fwrite(resp.body.p, 1, resp.body.len, stdout);
        fputc('\n', stdout);
    } else {
        const char *where = json_string_value(json_object_get(session, "workspace"));
        printf("%s\n", id);
        if (where != NULL)
            printf("workspace: %s\n", where);
    }
fail:
    cli_http_response_reset(&resp);
    json_decref(session);
    json_decref(body);
    json_decref(env);
    json_decref(tags);
    free(text);
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
    json_array_foreach(tags, i, tag) printf("%s%s", i > 0 ? "," : "", json_string_value(tag));
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
    struct cli_http_request req = {
        .method = "GET", .path = url.p, .timeout_ms = CLI_SESSION_TIMEOUT_MS};
    int rc = cli_http_request(client->http, &req, &resp);
    int status = cli_http_report(client->http, "session ls", rc, &resp);
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
    json_array_foreach(sessions, i, session) {
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
    buf_puts(&url, CLI_SESSION_PREFIX "/");
    cli_http_path_escape(&url, id);
    struct cli_http_request req = {
        .method = method, .path = url.p, .timeout_ms = CLI_SESSION_TIMEOUT_MS};
    int rc = cli_http_request(client->http, &req, resp);
    buf_free(&url);
    return cli_http_report(client->http, what, rc, resp);
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

/* ---- Dispatch ---------------------------------------------------------------------------- */

static const struct cli_command cli_session__commands[] = {
    {"new", "--agent NAME", 0, 0, cli_session__new_opts, cli_session__new,
     "create a session; prints its id on the first line"},
    {"ls", "", 0, 0, cli_session__ls_opts, cli_session__ls, "list sessions"},
    {"show", "ID", 1, 1, cli_session__plain_opts, cli_session__show, "describe a session"},
    {"rm", "ID", 1, 1, cli_session__plain_opts, cli_session__rm,
     "delete a session (its runtimes stop)"},
};

static const struct cli_noun cli_session__noun = {
    .name = "session",
    .commands = cli_session__commands,
    .ncommands = CORE_ARRAY_LEN(cli_session__commands),
    .intro = "Commands (a session is a workspace, an environment, its runtimes and its streams):",
    .footer = "\nWith --json, stdout has the server's JSON: one object per line.\n"
              "\nServer: --server, else $AGENTD_URL, else " CLI_DEFAULT_SERVER
              ". Token: --token, else $AGENTD_TOKEN.\n"
              "\nExit status: 0 ok, 1 usage, 2 unreachable, 3 not found, 4 conflict, 5 other HTTP "
              "error.\n",
};

int cli_session_main(int argc, char **argv)
{
    return cli_noun_main(&cli_session__noun, argc, argv);
}
