/*
 * errcode — the one table of the error codes agentd answers with. Every error response is an HTTP
 * status with the body {"error":{"code":"<code>","message":"<sentence>"}}; the table in errcode.c
 * is the only place a code is spelled and the only place its status is chosen. Domain modules may
 * name an `enum errcode` when they refuse something; http/ (http_res_error) turns it into the
 * status and the body. README.md lists the same table ("Serving"), and tests/unit/test_core.c
 * fails when the two differ, so edit both together.
 *
 * Codes are lower_snake_case, except the subscription codes (ERR_SUBS_*), which keep the spelling
 * of the Durable Streams subscription protocol (its clients match them exactly). Within one status
 * the general code comes first: http/ picks the first code of a status for errors libh2o raises.
 */
#ifndef AGENTD_ERRCODE_H
#define AGENTD_ERRCODE_H

enum errcode {
    ERR_BAD_REQUEST,
    ERR_INVALID_PATH,
    ERR_WEBSOCKET_REQUIRED,
    ERR_UNAUTHORIZED,
    ERR_FORBIDDEN,
    ERR_STALE_EPOCH,
    ERR_PERMISSION_DENIED,
    ERR_NOT_FOUND,
    ERR_METHOD_NOT_ALLOWED,
    ERR_CONFLICT,
    ERR_UNSUPPORTED_BY_AGENT,
    ERR_STREAM_CLOSED,
    ERR_SEQUENCE_GAP,
    ERR_GONE,
    ERR_PAYLOAD_TOO_LARGE,
    ERR_EXPECTATION_FAILED,
    ERR_HEADERS_TOO_LARGE,
    ERR_INTERNAL,
    ERR_STORAGE_ERROR,
    ERR_WORKSPACE_FAILED,
    ERR_RUNTIME_FAILED,
    ERR_SHUTTING_DOWN,
    ERR_STORE_UNAVAILABLE,
    ERR_NODE_FENCED,
    ERR_OWNER_UNAVAILABLE,
    ERR_NODE_TOKEN_MISMATCH,
    ERR_SHARD_MOVED,
    ERR_STORAGE_FULL,
    ERR_SUBS_INVALID_REQUEST,
    ERR_SUBS_WEBHOOK_URL_REJECTED,
    ERR_SUBS_TOKEN_INVALID,
    ERR_SUBS_TOKEN_EXPIRED,
    ERR_SUBS_NOT_FOUND,
    ERR_SUBS_ALREADY_EXISTS,
    ERR_SUBS_FENCED,
    ERR_SUBS_ALREADY_CLAIMED,
    ERR_SUBS_NO_PENDING_WORK,
    ERR_SUBS_INVALID_OFFSET,
    ERRCODE_COUNT
};

/* The code as sent in the body ("not_found"). */
const char *errcode_name(enum errcode e);
/* The HTTP status the code is answered with. */
int errcode_status(enum errcode e);
/* The meaning, one sentence, as README.md lists it. */
const char *errcode_meaning(enum errcode e);
/* The code for a write or read the store refused with rc (-errno): storage_full (no space, a file
 * size limit, a quota), store_unavailable (-ENOTCONN: the database cannot be reached), node_fenced
 * (-EPERM: another node holds the database's write lease), else storage_error. */
enum errcode errcode_for_store(int rc);

#endif
