/*
 * errcode — the table behind errcode.h: code, HTTP status and meaning of every error agentd sends.
 * README.md shows the same rows in the same order (tests/unit/test_core.c compares them).
 */
#include "core/errcode.h"
#include "core/core.h"

#include <assert.h>
#include <errno.h>

static const struct {
    const char *code;
    int status;
    const char *meaning;
} errcode__table[] = {
    [ERR_BAD_REQUEST] = {"bad_request", 400,
                         "The request is malformed: a header, query parameter or body field is missing or "
                         "invalid; the message says which."},
    [ERR_INVALID_PATH] = {"invalid_path", 400,
                          "The stream path is not one agentd accepts (empty, too long, forbidden characters, "
                          "empty, `.` or `..` segments)."},
    [ERR_WEBSOCKET_REQUIRED] = {"websocket_required", 400,
                                "A WebSocket endpoint got a request that is not a WebSocket handshake "
                                "(HTTP/1.1 GET with `Upgrade: websocket`)."},
    [ERR_UNAUTHORIZED] =
        {"unauthorized", 401,
         "The request lacks the server's bearer token, or a share or agent token valid for this path."},
    [ERR_FORBIDDEN] = {"forbidden", 403,
                       "The request is refused whatever its credentials (a cross-origin MCP request, a write "
                       "made with a read-only share token)."},
    [ERR_STALE_EPOCH] = {"stale_epoch", 403,
                         "An idempotent producer's epoch is older than the stream's; `Producer-Epoch` holds "
                         "the current one."},
    [ERR_PERMISSION_DENIED] = {"permission_denied", 403,
                               "The session's permission policy, or the person who answered its request, "
                               "refused this tool call."},
    [ERR_NOT_FOUND] = {"not_found", 404, "No such resource: stream, session, run, share token or route."},
    [ERR_METHOD_NOT_ALLOWED] =
        {"method_not_allowed", 405,
         "The resource exists but does not take this method; the message says which it takes."},
    [ERR_CONFLICT] = {"conflict", 409,
                      "The request contradicts the resource's state: a stream re-created with other "
                      "settings, a run that is not active, a message refused while a run is, a "
                      "permission request already answered."},
    [ERR_UNSUPPORTED_BY_AGENT] = {"unsupported_by_agent", 409,
                                  "The session's agent cannot do this (approvals, steer, interrupt: see "
                                  "`GET /v1/agents`)."},
    [ERR_STREAM_CLOSED] = {"stream_closed", 409,
                           "The stream is closed and takes no more appends (`Stream-Closed: true`)."},
    [ERR_SEQUENCE_GAP] = {"sequence_gap", 409,
                          "A producer's sequence number skipped ahead; `Producer-Expected-Seq` and "
                          "`Producer-Received-Seq` say where."},
    [ERR_GONE] = {"gone", 410,
                  "The stream was deleted; forks may still read its history, but it takes nothing more."},
    [ERR_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413,
                               "The body is larger than the server accepts (`--max-body`)."},
    [ERR_EXPECTATION_FAILED] = {"expectation_failed", 417,
                                "The request's `Expect` header is not `100-continue`."},
    [ERR_HEADERS_TOO_LARGE] = {"headers_too_large", 431,
                               "The request's headers are larger than the server accepts."},
    [ERR_INTERNAL] =
        {"internal", 500,
         "Something unexpected went wrong inside agentd; the message and the server's log say what."},
    [ERR_STORAGE_ERROR] = {"storage_error", 500,
                           "The data dir could not be written or read (I/O error, read-only); nothing of the "
                           "request was acknowledged."},
    [ERR_WORKSPACE_FAILED] = {"workspace_failed", 500,
                              "A session's workspace could not be created or copied."},
    [ERR_RUNTIME_FAILED] = {"runtime_failed", 500,
                            "A runtime could not be started or lost its process; the call did not complete."},
    [ERR_SHUTTING_DOWN] = {"shutting_down", 503,
                           "The server is stopping; retry once it is back (readers from the same offset)."},
    [ERR_STORE_UNAVAILABLE] = {"store_unavailable", 503,
                               "The database (PostgreSQL) cannot be reached; nothing of the request was "
                               "acknowledged. Retry: the server recovers once it is back."},
    [ERR_NODE_FENCED] = {"node_fenced", 503,
                         "Another node holds the write lease of the request's shard on the database "
                         "(PostgreSQL); nothing of the request was acknowledged. `GET /v1/nodes` lists the "
                         "nodes and the shards each holds."},
    [ERR_OWNER_UNAVAILABLE] =
        {"owner_unavailable", 503,
         "This node forwards to the node that holds the write lease of the request's shard, and no node "
         "held a live one (its holder stopped; another node takes over once it expires) or the owner "
         "refused connections, for as long as the lease had left plus a second (the request waited that "
         "long on this node), or the owner died while the request was on its way (a write may have "
         "been stored: idempotent producers make the retry exact). Retry after Retry-After."},
    [ERR_NODE_TOKEN_MISMATCH] =
        {"node_token_mismatch", 503,
         "This node forwards to the node that holds the write lease of the request's "
         "shard, and that node was started with another `--token` (or without one): "
         "nothing was forwarded. Every node on one database needs the same `--token`."},
    [ERR_SHARD_MOVED] = {"shard_moved", 503,
                         "The stream's shard is not served by this node any more (it was handed to another "
                         "node) or not yet; nothing of the request was done. Retry at once (`Retry-After: "
                         "0`): readers from the same offset."},
    [ERR_STORAGE_FULL] =
        {"storage_full", 507,
         "The data dir's filesystem is full (or a file size limit was reached); the write was not stored."},
    [ERR_SUBS_INVALID_REQUEST] = {"INVALID_REQUEST", 400,
                                  "Subscriptions: the body or a field of it is invalid."},
    [ERR_SUBS_WEBHOOK_URL_REJECTED] = {"WEBHOOK_URL_REJECTED", 400,
                                       "Subscriptions: the webhook URL is not one agentd will call."},
    [ERR_SUBS_TOKEN_INVALID] = {"TOKEN_INVALID", 401,
                                "Subscriptions: the callback token is not valid for this subscription."},
    [ERR_SUBS_TOKEN_EXPIRED] = {"TOKEN_EXPIRED", 401, "Subscriptions: the callback token has expired."},
    [ERR_SUBS_NOT_FOUND] = {"SUBSCRIPTION_NOT_FOUND", 404, "Subscriptions: no such subscription."},
    [ERR_SUBS_ALREADY_EXISTS] =
        {"SUBSCRIPTION_ALREADY_EXISTS", 409,
         "Subscriptions: a subscription with this id exists with another configuration."},
    [ERR_SUBS_FENCED] = {"FENCED", 409,
                         "Subscriptions: the request's generation or lease is older than the current one."},
    [ERR_SUBS_ALREADY_CLAIMED] = {"ALREADY_CLAIMED", 409, "Subscriptions: another worker holds the lease."},
    [ERR_SUBS_NO_PENDING_WORK] = {"NO_PENDING_WORK", 409, "Subscriptions: there is nothing to claim."},
    [ERR_SUBS_INVALID_OFFSET] =
        {"INVALID_OFFSET", 409,
         "Subscriptions: an acknowledged offset is not one the subscription delivered."},
};

_Static_assert(CORE_ARRAY_LEN(errcode__table) == ERRCODE_COUNT, "one row per enum errcode");

const char *errcode_name(enum errcode e)
{
    assert((unsigned)e < ERRCODE_COUNT && errcode__table[e].code != NULL);
    return errcode__table[e].code;
}

int errcode_status(enum errcode e)
{
    assert((unsigned)e < ERRCODE_COUNT);
    return errcode__table[e].status;
}

const char *errcode_meaning(enum errcode e)
{
    assert((unsigned)e < ERRCODE_COUNT);
    return errcode__table[e].meaning;
}

enum errcode errcode_for_store(int rc)
{
    switch (rc) {
    case -ENOSPC:
    case -EFBIG:
    case -EDQUOT: return ERR_STORAGE_FULL;
    case -ENOTCONN: return ERR_STORE_UNAVAILABLE;
    case -EPERM: return ERR_NODE_FENCED;
    default: return ERR_STORAGE_ERROR;
    }
}
