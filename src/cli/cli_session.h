/*
 * cli_session.h — what the files of `agentd session` share: cli_session.c (the noun, its requests
 * and most commands) and cli_session_loop.c (what a person in the loop answers). Not for other
 * nouns.
 */
#ifndef AGENTD_CLI_SESSION_H
#define AGENTD_CLI_SESSION_H

#include <jansson.h>

#include "cli/cli.h"
#include "cli/cli_http.h"
#include "core/core.h"

/* "/v1/sessions/<id>" (id escaped) and then rest (a literal path tail such as "/runs", or "")
 * into url. */
void cli_session__url(struct buf *url, const char *id, const char *rest);
/* method on path, with body (a JSON value sent compact, or NULL for none), into resp. Reports a
 * failure on stderr as "agentd: <what>: ..." and returns the exit status. */
int cli_session__call(struct cli_http *http, const char *method, const char *path, const json_t *body,
                      const char *what, struct cli_http_response *resp);
/* method on /v1/sessions/<id> into resp; reports failures and returns the exit status. */
int cli_session__request(struct cli_client *client, const char *method, const char *id, const char *what,
                         struct cli_http_response *resp);
/* The server's JSON answer as one stdout line (--json output). */
void cli_session__put_answer(const struct cli_http_response *resp);
/* The options of commands that take nothing but the common ones. */
extern const struct cli_opt cli_session__plain_opts[];

/* ---- cli_session_loop.c: permission requests ---- */
extern const struct cli_opt cli_session__answer_opts[];
/* `permissions ID`: the requests waiting, one line each (--json: one request per line). */
int cli_session__permissions(struct cli_client *client, const struct cli_args *args);
/* `approve|deny ID [REQUEST]`: answers a request (the only one waiting when REQUEST is omitted);
 * prints the request id and the decision. */
int cli_session__approve(struct cli_client *client, const struct cli_args *args);
int cli_session__deny(struct cli_client *client, const struct cli_args *args);

#endif
