/*
 * mcp_http.c — streamable HTTP for the MCP core. See mcp_http.h.
 *
 * Ownership: each POST waiting for tool calls has a struct mcp_http__req allocated in the
 * request's arena (it dies with the request) and linked into the transport's list, so that
 * mcp_http_free can cancel what is still running. The exchange is cancelled from the request's
 * dispose callback when the client leaves first; when the reply comes first, the exchange pointer
 * is cleared before the response is sent, because sending may end the request (and run dispose)
 * at once.
 */
#include "mcp/mcp_http.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "core/list.h"
#include "http/http.h"
#include "mcp/mcp.h"
#include "session/session.h"

struct mcp_http__req;

struct mcp_http {
    struct sessions *sessions;
    struct mcp *mcp;
    struct mcp_http__req *live; /* requests whose exchange is pending */
};

struct mcp_http__req {
    struct mcp_http *mh; /* NULL once detached by mcp_http_free */
    struct http_req *req;
    struct mcp_exchange *ex;       /* NULL when none is pending */
    LIST_LINK(mcp_http__req) link; /* mh->live, while an exchange is pending */
};

/* ---- the tool backend: the session's runtimes ------------------------------------------------ */

static void *mcp_http__start(void *arg, const char *session_id, const struct session_rt_request *req,
                             session_rt_cb done, void *done_arg)
{
    struct session_rt_request r = *req;
    r.from_agent = 1; /* the MCP endpoint is the agent's: the session's permission policy applies */
    return session_rt_start(arg, session_id, &r, done, done_arg);
}

static void mcp_http__cancel(void *arg, void *handle)
{
    (void)arg;
    session_rt_cancel(handle);
}

struct mcp_http *mcp_http_new(struct sessions *sessions, struct http_server *srv)
{
    /* Streamable HTTP's session header, both ways, and the protocol version clients send. */
    http_cors_headers(srv, "Mcp-Session-Id, MCP-Protocol-Version", "Mcp-Session-Id");
    struct mcp_http *mh = xcalloc(1, sizeof *mh);
    mh->sessions = sessions;
    struct mcp_backend backend = {.start = mcp_http__start, .cancel = mcp_http__cancel, .arg = sessions};
    mh->mcp = mcp_new(&backend);
    return mh;
}

static void mcp_http__unlink(struct mcp_http__req *r)
{
    list_remove(r, link);
    r->mh = NULL;
}

void mcp_http_free(struct mcp_http *mh)
{
    if (mh == NULL)
        return;
    while (mh->live != NULL) {
        struct mcp_http__req *r = mh->live;
        struct mcp_exchange *ex = r->ex;
        r->ex = NULL;
        mcp_http__unlink(r);
        mcp_exchange_cancel(ex);
    }
    mcp_free(mh->mcp);
    free(mh);
}

/* ---- requests ------------------------------------------------------------------------------- */

/* The client went away, or the response is done. */
static void mcp_http__dispose(void *data)
{
    struct mcp_http__req *r = data;
    struct mcp_exchange *ex = r->ex;
    r->ex = NULL;
    mcp_http__unlink(r);
    mcp_exchange_cancel(ex);
}

static void mcp_http__reply(void *arg, const struct mcp_reply *reply)
{
    struct mcp_http__req *r = arg;
    struct http_req *req = r->req;
    /* Sending may end the request and run dispose, which must not cancel this exchange. */
    r->ex = NULL;
    mcp_http__unlink(r);
    if (reply->initialized) {
        unsigned char raw[16];
        char hex[2 * sizeof raw + 1];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
        http_res_header(req, "Mcp-Session-Id", hex);
    }
    if (reply->json == NULL) {
        http_res_send(req, 202, NULL, 0);
        return;
    }
    http_res_json_text(req, reply->rejected ? 400 : 200, reply->json, reply->len);
}

/* Browsers send Origin; a page on another site must not drive a loopback server (DNS rebinding).
 * Accepted: no Origin (not a browser), a loopback host, or the host the request addressed. */
static int mcp_http__origin_ok(const struct http_req *req)
{
    size_t olen, alen;
    const char *origin = http_req_header(req, "Origin", &olen);
    if (origin == NULL)
        return 1;
    const char *sep = memmem(origin, olen, "://", 3);
    if (sep == NULL)
        return 0;
    const char *host = sep + 3;
    size_t hlen = olen - (size_t)(host - origin);
    const char *authority = http_req_authority(req, &alen);
    if (authority != NULL && alen == hlen && strncasecmp(host, authority, hlen) == 0)
        return 1;
    /* The host without its port ("[::1]:8080" keeps its brackets). */
    size_t name_len = hlen;
    const char *close = host[0] == '[' ? memchr(host, ']', hlen) : NULL;
    if (close != NULL)
        name_len = (size_t)(close - host) + 1;
    else if (memchr(host, ':', hlen) != NULL)
        name_len = (size_t)((const char *)memchr(host, ':', hlen) - host);
    static const char *const loopback[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(loopback); i++)
        if (name_len == strlen(loopback[i]) && strncasecmp(host, loopback[i], name_len) == 0)
            return 1;
    return 0;
}

static void mcp_http__post(struct mcp_http *mh, struct http_req *req, const char *session_id)
{
    size_t vlen;
    const char *version = http_req_header(req, "MCP-Protocol-Version", &vlen);
    if (version != NULL) {
        char v[32];
        snprintf(v, sizeof v, "%.*s", (int)(vlen < sizeof v ? vlen : sizeof v - 1), version);
        if (vlen >= sizeof v || !mcp_protocol_supported(v)) {
            http_res_error(req, ERR_BAD_REQUEST, "unsupported MCP-Protocol-Version: %.*s", (int)vlen,
                           version);
            return;
        }
    }
    size_t len;
    const char *body = http_req_body(req, &len);
    struct mcp_http__req *r = http_req_alloc(req, sizeof *r);
    memset(r, 0, sizeof *r);
    r->req = req;
    http_req_set_data(req, r, mcp_http__dispose);
    struct mcp_exchange *ex = mcp_handle(mh->mcp, session_id, body, len, mcp_http__reply, r);
    if (ex == NULL)
        return; /* answered already; r may be gone with the request */
    r->ex = ex;
    r->mh = mh;
    list_insert(&mh->live, r, link);
}

void mcp_http_handle(void *arg, struct http_req *req, const char *session_id)
{
    struct mcp_http *mh = arg;
    if (!sessions_exists(mh->sessions, session_id)) {
        http_res_error(req, ERR_NOT_FOUND, "no session %s", session_id);
        return;
    }
    if (!mcp_http__origin_ok(req)) {
        http_res_error(req, ERR_FORBIDDEN, "cross-origin MCP requests are refused");
        return;
    }
    switch (http_req_method(req)) {
    case HTTP_POST: mcp_http__post(mh, req, session_id); return;
    case HTTP_DELETE: http_res_send(req, 204, NULL, 0); return;
    default:
        /* GET would open a server-to-client stream; this server never sends requests of its own. */
        http_res_header(req, "Allow", "POST, DELETE");
        http_res_error(req, ERR_METHOD_NOT_ALLOWED,
                       "MCP here is POST (and DELETE); no server-initiated streams");
        return;
    }
}
