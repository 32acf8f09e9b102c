/*
 * ui_http — the dashboard's route: `/` and every path no other route claims (see ui_http.c for the
 * headers each response carries). Paths under /v1 are never the dashboard's: an unknown one gets
 * 401 (without the server token) or 404, each a JSON error, as if no dashboard were there.
 */
#ifndef AGENTD_UI_HTTP_H
#define AGENTD_UI_HTTP_H

struct ui;
struct http_server;

/* Serves ui (borrowed; must outlive the server's requests) at `/`. Register it once; without it
 * (`--no-ui`) the server answers 404 to every path outside the API. */
void ui_routes(struct ui *ui, struct http_server *srv);

#endif
