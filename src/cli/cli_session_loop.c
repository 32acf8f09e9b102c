/*
 * cli_session_loop.c — `agentd session permissions|approve|deny`: what a person in the loop answers
 * when a session's agent asks before using a tool (README, "A person in the loop"). The requests
 * are GET /v1/sessions/<id>/permissions; an answer is POST .../permissions/<request>.
 *
 * Output: `permissions` one line per request waiting, "REQUEST  TOOL  INPUT" (the input cut to one
 * line), or with --json each request as the server gave it, one per line; `approve` and `deny`
 * "REQUEST: allow|deny" (and the rule `--remember` added), or with --json the server's answer.
 * Without REQUEST, `approve` and `deny` answer the only request waiting, and refuse (exit 4, the
 * waiting ones listed on stderr) when there are none or several.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli_json.h"
#include "cli/cli_render.h"
#include "cli/cli_session.h"

#define CLI_LOOP_INPUT_MAX 120 /* bytes of a request's input shown in `permissions` */

const struct cli_opt cli_session__answer_opts[] = {
    {"message", "TEXT", "why: the agent sees it (with deny, as the tool's result)"},
    {"remember", NULL, "approve: allow this call (the same command) for the rest of the session"},
    {"input", "JSON", "approve: run the tool with this input (a JSON object) instead"},
    CLI_COMMON_OPTS,
    {NULL, NULL, NULL},
};

/* The requests waiting in session id (new reference, NULL on failure: reported). */
static json_t *cli_loop__waiting(struct cli_client *client, const char *id, const char *what, int *status)
{
    struct cli_http_response resp = {0};
    struct buf url = {0};
    cli_session__url(&url, id, "/permissions");
    *status = cli_session__call(client->http, "GET", url.p, NULL, what, &resp);
    json_t *doc = *status == CLI_EXIT_OK ? json_loadb(resp.body.p, resp.body.len, 0, NULL) : NULL;
    json_t *list = json_incref(json_object_get(doc, "permissions"));
    if (*status == CLI_EXIT_OK && !json_is_array(list)) {
        fprintf(stderr, "agentd: %s: the answer lists no permissions\n", what);
        *status = CLI_EXIT_HTTP;
    }
    json_decref(doc);
    cli_http_response_reset(&resp);
    buf_free(&url);
    return *status == CLI_EXIT_OK ? list : (json_decref(list), NULL);
}

/* "REQUEST  TOOL  INPUT" for one request. */
static void cli_loop__put_request(FILE *out, const json_t *req)
{
    char *input = json_dumps(json_object_get(req, "input"), JSON_COMPACT | JSON_ENCODE_ANY);
    fprintf(out, "%s  %s  ", cli_json_str(req, "request", "?"), cli_json_str(req, "tool", "?"));
    cli_render_first_line(out, input ? input : "{}", input ? strlen(input) : 2, CLI_LOOP_INPUT_MAX);
    fputc('\n', out);
    free(input);
}

int cli_session__permissions(struct cli_client *client, const struct cli_args *args)
{
    int status;
    json_t *list = cli_loop__waiting(client, args->positional[0], "session permissions", &status);
    cli_json_print_each(stdout, list, client->json, cli_loop__put_request);
    json_decref(list);
    return status;
}

/* The request to answer: REQUEST, or the only one waiting (copied into out). */
static int cli_loop__pick(struct cli_client *client, const struct cli_args *args, const char *what,
                          struct buf *out)
{
    if (args->npositional > 1) {
        buf_puts(out, args->positional[1]);
        return CLI_EXIT_OK;
    }
    int status;
    json_t *list = cli_loop__waiting(client, args->positional[0], what, &status);
    if (list != NULL && json_array_size(list) == 1) {
        buf_puts(out, cli_json_str(json_array_get(list, 0), "request", ""));
    } else if (list != NULL) {
        fprintf(stderr, "agentd: %s: %zu requests are waiting; name one:\n", what, json_array_size(list));
        size_t i;
        json_t *req;
        json_array_foreach (list, i, req)
            cli_loop__put_request(stderr, req);
        status = CLI_EXIT_CONFLICT;
    }
    json_decref(list);
    return status;
}

/* POST .../permissions/<request> with the decision and the options. */
static int cli_loop__answer(struct cli_client *client, const struct cli_args *args, const char *decision,
                            const char *what)
{
    const char *message = cli_args_get(args, "message"), *input = cli_args_get(args, "input");
    int remember = cli_args_get(args, "remember") != NULL, allow = !strcmp(decision, "allow");
    json_t *body = json_pack("{s:s}", "decision", decision), *answer = NULL;
    json_t *updated = input ? json_loads(input, 0, NULL) : NULL;
    struct cli_http_response resp = {0};
    struct buf request = {0}, url = {0};
    int status = CLI_EXIT_USAGE;
    if ((input && !json_is_object(updated)) || (!allow && (remember || input))) {
        fprintf(stderr, "agentd: %s: %s\n", what,
                allow ? "--input must be a JSON object" : "--remember and --input go with approve");
        goto fail;
    }
    if (message)
        json_object_set_new(body, "message", json_string(message));
    if (updated)
        json_object_set(body, "updated_input", updated);
    if (remember)
        json_object_set_new(body, "remember", json_string("session"));
    if ((status = cli_loop__pick(client, args, what, &request)) != CLI_EXIT_OK)
        goto fail;
    cli_session__url(&url, args->positional[0], "/permissions/");
    cli_http_path_escape(&url, request.p);
    if ((status = cli_session__call(client->http, "POST", url.p, body, what, &resp)) != CLI_EXIT_OK)
        goto fail;
    if (client->json) {
        cli_session__put_answer(&resp);
    } else {
        answer = json_loadb(resp.body.p, resp.body.len, 0, NULL);
        const char *rule = json_string_value(json_object_get(answer, "rule"));
        printf("%s: %s%s%s\n", request.p, cli_json_str(answer, "decision", decision), rule ? ", rule " : "",
               rule ? rule : "");
    }
fail:
    json_decref(answer);
    json_decref(updated);
    json_decref(body);
    cli_http_response_reset(&resp);
    buf_free(&request);
    buf_free(&url);
    return status;
}

int cli_session__approve(struct cli_client *client, const struct cli_args *args)
{
    return cli_loop__answer(client, args, "allow", "session approve");
}

int cli_session__deny(struct cli_client *client, const struct cli_args *args)
{
    return cli_loop__answer(client, args, "deny", "session deny");
}
