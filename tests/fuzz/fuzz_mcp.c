/*
 * libFuzzer target for the MCP server core (src/mcp): a JSON-RPC body as a client POSTs it to
 * /v1/sessions/<id>/mcp. Each input goes through two servers: one whose runtime backend answers at
 * once (a tool result, or an error body, chosen by the request), and one whose backend keeps every
 * call pending, after which the exchange is cancelled as when a client leaves. Checks, beyond memory
 * safety, mcp.h's contract: exactly one reply per mcp_handle (none after a cancel); a reply is JSON
 * (an object, or an array for a batch); a rejected input's reply is one JSON-RPC error object.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "mcp/mcp.h"

static int fuzz_mcp_pending;

/* A backend that answers at once: output for exec and eval, an error body for anything else. */
static void *fuzz_mcp_now(void *arg, const char *session_id, const struct session_rt_request *req,
                          session_rt_cb done, void *done_arg)
{
    static const struct session_rt_answer ran = {
        .json = "{\"stdout\":\"ok\\n\",\"stderr\":\"\",\"status\":0,\"timed_out\":false}"};
    static const struct session_rt_answer missing = {
        .rc = -ENOENT,
        .err = ERR_NOT_FOUND,
        .json = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such session\"}}"};
    done(done_arg, req->action == SESSION_RT_EXEC || req->action == SESSION_RT_EVAL ? &ran : &missing);
    return NULL;
}

/* A backend that never answers by itself: the exchange is cancelled. */
static void *fuzz_mcp_later(void *arg, const char *session_id, const struct session_rt_request *req,
                            session_rt_cb done, void *done_arg)
{
    fuzz_mcp_pending++;
    return &fuzz_mcp_pending;
}

static void fuzz_mcp_cancel(void *arg, void *handle) { fuzz_mcp_pending--; }

struct fuzz_mcp_seen {
    int replies;
};

static void fuzz_mcp_reply(void *arg, const struct mcp_reply *reply)
{
    struct fuzz_mcp_seen *seen = arg;
    seen->replies++;
    if (reply->json == NULL) {
        assert(!reply->rejected);
        return;
    }
    assert(strlen(reply->json) == reply->len);
    json_t *doc = json_loadb(reply->json, reply->len, 0, NULL);
    assert(json_is_object(doc) || json_is_array(doc));
    if (reply->rejected)
        assert(json_is_object(doc) && json_is_object(json_object_get(doc, "error")));
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mcp *now, *later;
    if (now == NULL) {
        const struct mcp_backend b1 = {.start = fuzz_mcp_now, .cancel = fuzz_mcp_cancel};
        const struct mcp_backend b2 = {.start = fuzz_mcp_later, .cancel = fuzz_mcp_cancel};
        now = mcp_new(&b1);
        later = mcp_new(&b2);
    }
    struct fuzz_mcp_seen seen = {0};
    struct mcp_exchange *ex = mcp_handle(now, "s1", (const char *)data, size, fuzz_mcp_reply, &seen);
    assert(ex == NULL && seen.replies == 1); /* an answering backend leaves nothing pending */

    struct fuzz_mcp_seen late = {0};
    ex = mcp_handle(later, "s1", (const char *)data, size, fuzz_mcp_reply, &late);
    if (ex != NULL) {
        assert(late.replies == 0 && fuzz_mcp_pending > 0);
        mcp_exchange_cancel(ex);
    } else {
        assert(late.replies == 1);
    }
    assert(fuzz_mcp_pending == 0 && late.replies <= 1);
    return 0;
}
