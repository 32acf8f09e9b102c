/*
 * subs_http — the subscription resource under SUBS_HTTP_PREFIX:
 *   jwks.json                                GET   the webhook signing keys
 *   subscriptions/:id                        PUT   create (201) or re-confirm (200); GET; DELETE
 *   subscriptions/:id/streams                POST  add explicit streams
 *   subscriptions/:id/streams/:path          DELETE remove an explicit stream
 *   subscriptions/:id/callback               POST  webhook consumer: acks, done
 *   subscriptions/:id/claim|ack|release      POST  pull-wake workers
 *
 * Every answer that follows a state change is sent only after the state records committed: the
 * handler queues them with subs__flush and answers from the commit callback. Ownership: a struct
 * subs_reply lives from the handler until the request's dispose callback, or until its commit
 * callback if the client left first (the records still commit, and a failure still reloads).
 */
#include "http/http.h"
#include "stream/stream.h"
#include "stream/stream_parse.h"
#include "subs/subs_int.h"
#include "subs/subs_match.h"
#include "subs/subs_sign.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SUBS_ID_MAX 256

/* Engine outcomes as codes of the error table (core/errcode.h), which gives each its status. */
static const enum errcode subs__errors[] = {
    [SUBS_E_INVALID] = ERR_SUBS_INVALID_REQUEST,
    [SUBS_E_URL] = ERR_SUBS_WEBHOOK_URL_REJECTED,
    [SUBS_E_NOT_FOUND] = ERR_SUBS_NOT_FOUND,
    [SUBS_E_EXISTS] = ERR_SUBS_ALREADY_EXISTS,
    [SUBS_E_TOKEN_INVALID] = ERR_SUBS_TOKEN_INVALID,
    [SUBS_E_TOKEN_EXPIRED] = ERR_SUBS_TOKEN_EXPIRED,
    [SUBS_E_FENCED] = ERR_SUBS_FENCED,
    [SUBS_E_CLAIMED] = ERR_SUBS_ALREADY_CLAIMED,
    [SUBS_E_NO_WORK] = ERR_SUBS_NO_PENDING_WORK,
    [SUBS_E_OFFSET] = ERR_SUBS_INVALID_OFFSET,
    [SUBS_E_STORE] = ERR_STORAGE_ERROR,
};

struct subs_reply {
    struct stream_op op; /* first: the commit callback gets it back */
    struct subs *s;
    struct http_req *req;
    int status;
    char *body; /* JSON text, owned; NULL for an empty answer */
    int committed;
};

/* ================= answering ================= */

static void subs__send(struct http_req *req, int status, const char *body)
{
    if (body)
        return http_res_json_text(req, status, body, strlen(body));
    http_res_header(req, "Cache-Control", "no-store");
    http_res_send(req, status, NULL, 0);
}

static void subs__reply_free(struct subs_reply *r)
{
    free(r->body);
    free(r);
}

/* The client left. Before the commit, the op stays queued (its outcome still matters: a failed
 * write makes the service reload) and frees r when it runs. */
static void subs__reply_dispose(void *data)
{
    struct subs_reply *r = data;
    r->req = NULL;
    if (r->committed)
        subs__reply_free(r);
}

static void subs__reply_committed(struct stream_op *op)
{
    struct subs_reply *r = op->arg;
    struct http_req *req = r->req;
    r->committed = 1;
    int e = -op->result.store_errno;
    if (op->result.status == STREAM_STORE_ERROR)
        subs__reload(r->s); /* what this write changed in memory is not stored: drop it */
    if (req == NULL)
        return subs__reply_free(r);
    if (op->result.status == STREAM_STORE_ERROR) {
        return http_res_error(req, errcode_for_store(-e), "the subscription state could not be made durable");
    }
    /* Nothing of r is touched after this: sending may dispose it. */
    subs__send(req, r->status, r->body);
}

/* Answers status with body (taken; NULL for none) once the queued state records committed. */
static void subs__answer(struct subs *s, struct http_req *req, int status, json_t *body)
{
    struct subs_reply *r = xcalloc(1, sizeof *r);
    r->s = s;
    r->req = req;
    r->status = status;
    r->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    r->op.cb = subs__reply_committed;
    r->op.arg = r;
    int rc = subs__flush(s, &r->op);
    if (rc == 1) {
        http_req_set_data(req, r, subs__reply_dispose);
        return;
    }
    if (rc < 0)
        http_res_error(req, ERR_STORAGE_ERROR, "the subscription state could not be recorded");
    else
        subs__send(req, r->status, r->body);
    free(r->body);
    free(r);
}

/* An error body {"error":{"code","message",...extra}}; extra (taken) may add fields. */
static void subs__fail(struct subs *s, struct http_req *req, enum subs_err e, const char *message,
                       json_t *extra)
{
    assert(e != SUBS_OK && e < CORE_ARRAY_LEN(subs__errors));
    enum errcode code = subs__errors[e];
    json_t *err = json_pack("{s:s,s:s}", "code", errcode_name(code), "message", message ? message : "");
    if (extra)
        json_object_update(err, extra);
    json_decref(extra);
    subs__answer(s, req, errcode_status(code), json_pack("{s:o}", "error", err));
}

/* ================= request parsing ================= */

/* Percent-decodes p[0..n) into a new string, or NULL when malformed or holding a NUL or control
 * character. Free with free(). */
static char *subs__decode(const char *p, size_t n)
{
    char *out = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%') {
            int h = i + 2 < n ? hex_digit(p[i + 1]) : -1, l = i + 2 < n ? hex_digit(p[i + 2]) : -1;
            if (h < 0 || l < 0) {
                free(out);
                return NULL;
            }
            c = h * 16 + l;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            free(out);
            return NULL;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

/* The request body as JSON (an empty body is {}), or NULL when it is not JSON. */
static json_t *subs__body(struct http_req *req)
{
    size_t len;
    const char *p = http_req_body(req, &len);
    if (len == 0)
        return json_object();
    return json_loadb(p, len, JSON_REJECT_DUPLICATES, NULL);
}

static const char *subs__bearer(struct http_req *req, size_t *len)
{
    size_t n;
    const char *v = http_req_header(req, "authorization", &n);
    if (v == NULL || n <= 7 || strncmp(v, "Bearer ", 7) != 0)
        return NULL;
    *len = n - 7;
    return v + 7;
}

/* A stream path from a request, trimmed of slashes; NULL when not a valid stream path. */
static char *subs__stream_arg(const char *p)
{
    char *path = subs_path_trim(xstrdup(p));
    if (*path == '\0' || stream_parse_path(path, strlen(path)) != NULL) {
        free(path);
        return NULL;
    }
    return path;
}

/* ================= resources ================= */

static void subs__jwks(struct subs *s, struct http_req *req)
{
    struct buf b = {0};
    if (http_req_method(req) != HTTP_GET && http_req_method(req) != HTTP_HEAD)
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "jwks.json is read-only");
    subs_keys_jwks(s->keys, &b);
    http_res_header(req, "Content-Type", "application/jwk-set+json");
    http_res_header(req, "Cache-Control", "public, max-age=300");
    http_res_send(req, 200, b.p, b.len);
    buf_free(&b);
}

static void subs__put(struct subs *s, struct http_req *req, const char *id, json_t *body)
{
    struct subs_sub *fresh, *existing = subs__find(s, id);
    const char *why = subs__parse_config(body, id, &fresh);
    if (why)
        return subs__fail(s, req, SUBS_E_INVALID, why, NULL);
    if (existing) {
        int same = strcmp(existing->hash, fresh->hash) == 0;
        subs__sub_free(fresh);
        if (!same)
            return subs__fail(s, req, SUBS_E_EXISTS,
                              "subscription already exists with a different configuration", NULL);
        return subs__answer(s, req, 200, subs__describe(existing));
    }
    int loopback_only;
    if (fresh->webhook_url && (why = subs_url_check(fresh->webhook_url, &loopback_only)) != NULL) {
        subs__sub_free(fresh);
        return subs__fail(s, req, SUBS_E_URL, why, NULL);
    }
    subs__create(s, fresh);
    subs__answer(s, req, 201, subs__describe(fresh));
}

static void subs__add_streams(struct subs *s, struct http_req *req, struct subs_sub *sub, json_t *body)
{
    json_t *streams = json_object_get(body, "streams"), *v;
    size_t i;
    if (!json_is_array(streams) || json_array_size(streams) == 0)
        return subs__fail(s, req, SUBS_E_INVALID, "streams must be a non-empty array of stream paths", NULL);
    json_array_foreach (streams, i, v) {
        char *p = json_is_string(v) ? subs__stream_arg(json_string_value(v)) : NULL;
        if (p == NULL)
            return subs__fail(s, req, SUBS_E_INVALID, "streams must be a non-empty array of stream paths",
                              NULL);
        free(p);
    }
    json_array_foreach (streams, i, v) {
        char *p = subs__stream_arg(json_string_value(v));
        subs__link_explicit(sub, p);
        free(p);
    }
    subs__answer(s, req, 204, NULL);
}

/* callback, ack and release share their body: {wake_id, generation, acks:[{stream,offset}], done}. */
static void subs__settle_req(struct subs *s, struct http_req *req, struct subs_sub *sub, json_t *body,
                             int release)
{
    size_t toklen, i;
    const char *token = subs__bearer(req, &toklen);
    if (token == NULL)
        return subs__fail(s, req, SUBS_E_TOKEN_INVALID, "missing or malformed Authorization header", NULL);
    json_t *acks = json_object_get(body, "acks"), *a;
    if (acks && !json_is_array(acks))
        return subs__fail(s, req, SUBS_E_INVALID, "acks must be an array", NULL);
    struct subs_ack *list = xcalloc(json_array_size(acks) + 1, sizeof *list);
    char **paths = xcalloc(json_array_size(acks) + 1, sizeof *paths);
    json_array_foreach (acks, i, a) {
        const char *p =
            json_string_value(json_object_get(a, "stream")) ?: json_string_value(json_object_get(a, "path"));
        paths[i] = p ? subs_path_trim(xstrdup(p)) : NULL;
        list[i].stream = paths[i];
        list[i].offset = json_string_value(json_object_get(a, "offset"));
    }
    int next_wake = 0;
    const char *why = NULL;
    enum subs_err e =
        subs__settle(sub, token, toklen, json_object_get(body, "generation"),
                     json_string_value(json_object_get(body, "wake_id")), list, json_array_size(acks),
                     json_is_true(json_object_get(body, "done")), release, &next_wake, &why);
    for (i = 0; i < json_array_size(acks); i++)
        free(paths[i]);
    free(paths);
    free(list);
    if (e != SUBS_OK)
        return subs__fail(s, req, e, why, NULL);
    if (release)
        return subs__answer(s, req, 204, NULL);
    subs__answer(s, req, 200, json_pack("{s:b,s:b}", "ok", 1, "next_wake", next_wake));
}

static void subs__claim_req(struct subs *s, struct http_req *req, struct subs_sub *sub, json_t *body)
{
    const char *worker = json_string_value(json_object_get(body, "worker"));
    const char *why = NULL;
    char *token = NULL;
    if (worker == NULL || *worker == '\0')
        return subs__fail(s, req, SUBS_E_INVALID, "worker must be a non-empty string", NULL);
    enum subs_err e = subs__claim(sub, worker, &token, &why);
    if (e == SUBS_E_CLAIMED)
        return subs__fail(s, req, e, why,
                          json_pack("{s:s,s:I}", "current_holder", sub->wake.holder ? sub->wake.holder : "",
                                    "generation", (json_int_t)sub->wake.generation));
    if (e != SUBS_OK)
        return subs__fail(s, req, e, why, NULL);
    json_t *out = json_pack("{s:s,s:I,s:s,s:o,s:I}", "wake_id", sub->wake.wake_id, "generation",
                            (json_int_t)sub->wake.generation, "token", token, "streams",
                            subs__stream_infos(sub, 1), "lease_ttl_ms", (json_int_t)sub->lease_ttl_ms);
    free(token);
    subs__answer(s, req, 200, out);
}

/* subscriptions/:id[/action[/rest]] */
static void subs__subscription(struct subs *s, struct http_req *req, const char *rest, size_t n)
{
    enum http_method m = http_req_method(req);
    const char *slash = memchr(rest, '/', n);
    size_t idlen = slash ? (size_t)(slash - rest) : n;
    char *id = subs__decode(rest, idlen), *action = NULL;
    json_t *body = NULL;
    if (id == NULL || *id == '\0' || strlen(id) > SUBS_ID_MAX) {
        subs__fail(s, req, SUBS_E_NOT_FOUND, "subscription ids are 1 to 256 printable characters", NULL);
        goto out;
    }
    const char *tail = slash ? slash + 1 : NULL;
    size_t taillen = slash ? n - idlen - 1 : 0;
    const char *sep = tail ? memchr(tail, '/', taillen) : NULL;
    action = tail ? xstrndup(tail, sep ? (size_t)(sep - tail) : taillen) : xstrdup("");
    /* callback, ack and release carry the wake's own bearer token (checked below); everything
     * else is an operator's request and needs the server token when one is set. */
    if (strcmp(action, "callback") && strcmp(action, "ack") && strcmp(action, "release") &&
        !http_req_authorized(req)) {
        http_res_unauthorized(req);
        goto out;
    }
    int writes = m == HTTP_PUT || m == HTTP_POST;
    if (writes && (body = subs__body(req)) == NULL) {
        subs__fail(s, req, SUBS_E_INVALID, "the body is not valid JSON", NULL);
        goto out;
    }
    struct subs_sub *sub = subs__find(s, id);

    if (*action == '\0' && m == HTTP_PUT) {
        subs__put(s, req, id, body);
    } else if (*action == '\0' && (m == HTTP_GET || m == HTTP_HEAD)) {
        if (sub == NULL)
            subs__fail(s, req, SUBS_E_NOT_FOUND, "subscription not found", NULL);
        else
            subs__answer(s, req, 200, subs__describe(sub));
    } else if (*action == '\0' && m == HTTP_DELETE) {
        if (sub)
            subs__delete(s, sub);
        subs__answer(s, req, 204, NULL);
    } else if (*action == '\0') {
        http_res_error(req, ERR_METHOD_NOT_ALLOWED, "use PUT, GET or DELETE on a subscription");
    } else if (!strcmp(action, "streams") && (sep ? m == HTTP_DELETE : m == HTTP_POST)) {
        char *raw = sep ? subs__decode(sep + 1, taillen - (size_t)(sep + 1 - tail)) : NULL;
        char *path = raw ? subs__stream_arg(raw) : NULL;
        if (sub == NULL)
            subs__fail(s, req, SUBS_E_NOT_FOUND, "subscription not found", NULL);
        else if (!sep)
            subs__add_streams(s, req, sub, body);
        else if (path == NULL)
            subs__fail(s, req, SUBS_E_INVALID, "not a valid stream path", NULL);
        else {
            subs__unlink_explicit(sub, path);
            subs__answer(s, req, 204, NULL);
        }
        free(raw);
        free(path);
    } else if (sep == NULL && m == HTTP_POST &&
               (!strcmp(action, "callback") || !strcmp(action, "claim") || !strcmp(action, "ack") ||
                !strcmp(action, "release"))) {
        if (sub == NULL)
            subs__fail(s, req, SUBS_E_NOT_FOUND, "subscription not found", NULL);
        else if (!strcmp(action, "callback"))
            subs__settle_req(s, req, sub, body, 0);
        else if (sub->type != SUBS_PULL_WAKE)
            subs__fail(s, req, SUBS_E_INVALID, "the subscription is not pull-wake", NULL);
        else if (!strcmp(action, "claim"))
            subs__claim_req(s, req, sub, body);
        else
            subs__settle_req(s, req, sub, body, !strcmp(action, "release"));
    } else if (!strcmp(action, "streams") || !strcmp(action, "callback") || !strcmp(action, "claim") ||
               !strcmp(action, "ack") || !strcmp(action, "release")) {
        http_res_error(req, ERR_METHOD_NOT_ALLOWED, "method not allowed on %s", action);
    } else {
        subs__fail(s, req, SUBS_E_NOT_FOUND, "no such subscription resource", NULL);
    }
out:
    json_decref(body);
    free(action);
    free(id);
}

void subs_http_handle(struct http_req *req, void *arg)
{
    struct subs *s = arg;
    size_t n, prefix = strlen(SUBS_HTTP_PREFIX);
    const char *path = http_req_path(req, &n);
    const char *rest = path + prefix;
    size_t restlen = n - prefix;
    static const char subs_dir[] = "subscriptions/";
    /* The JWKS is public: receivers fetch it to verify signatures. */
    if (restlen == strlen("jwks.json") && !memcmp(rest, "jwks.json", restlen))
        return subs__jwks(s, req);
    if (restlen > sizeof subs_dir - 1 && !memcmp(rest, subs_dir, sizeof subs_dir - 1))
        return subs__subscription(s, req, rest + sizeof subs_dir - 1, restlen - (sizeof subs_dir - 1));
    subs__fail(s, req, SUBS_E_NOT_FOUND, "no Durable Streams control route here", NULL);
}
