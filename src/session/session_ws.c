/*
 * session_ws — the WebSocket view of a session's transcript (GET /v1/sessions/<id>/ws), for clients
 * built on sockets. Placeholder until the WebSocket transport lands: answers 501 with a JSON error
 * so the route is stable.
 */
#include "http/http.h"
#include "session/session_int.h"

void session__ws(struct sessions *s, struct session *se, struct http_req *req)
{
    (void)s;
    (void)se;
    http_res_error(req, 501, "not_implemented", "the WebSocket transport is not available yet; read the transcript "
                                                "stream with SSE or long-poll");
}
