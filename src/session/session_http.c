/*
 * session_http — the /v1/sessions REST resource and the runtime routes under it (README.md has the
 * API). It parses requests, calls the domain (session.c and its siblings), and turns their outcomes
 * into responses: 0 or a negative errno mapped by session__errcode onto core/errcode.h's table, which
 * gives the status. Nothing here decides what a session does.
 *
 * Requests that wait (for a change's records to be stored, a runtime call, a fork's copy) keep a
 * struct session__pending. The request's dispose callback detaches it, so a late answer to a
 * departed client goes nowhere; while records are still pending it stays until they are stored,
 * because undoing a change that could not be stored must happen whether or not anyone listens.
 */
#include "agent/agent.h"
#include "http/http.h"
#include "runtime/runtime.h"
#include "session/session.h"
#include "session/session_int.h"
#include "stream/stream.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <strings.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SESSIONS_PREFIX       "/v1/sessions"
#define SESSIONS_LIST_DEFAULT 100
#define SESSIONS_LIST_MAX     1000

/* What a change leaves in memory when its records could not be stored (see session__committed). */
enum session__undo {
    SESSION_UNDO_NONE,
    SESSION_UNDO_DISCARD, /* a new session (create, child, fork) goes again */
    SESSION_UNDO_SHARE,   /* a new share token is withdrawn */
    SESSION_UNDO_DELETE,  /* a deletion is called off (on success it completes) */
    SESSION_UNDO_PERM,    /* a permission answer: told to the agent once stored, else pending again */
};

struct session__pending {
    struct sessions *s;
    struct http_req *req;         /* NULL once the client left */
    struct session_rt_call *call; /* runtime call in flight */
    struct session_wait *wait;    /* the writes the answer waits for: pd outlives the request until then */
    json_t *answer;               /* what to send once they have committed */
    int status;
    enum session__undo undo;
    char id[SESSION_ID_LEN + 1];       /* the session the change is about */
    char token[SESSION_TOKEN_LEN + 1]; /* a share token, or a permission request's id */
    struct session_fork *fork;         /* fork in progress; it completes (or is undone) without the request */
};

static void session__pending_dispose(void *p)
{
    struct session__pending *pd = p;
    pd->req = NULL;
    session_rt_cancel(pd->call);
    pd->call = NULL;
    session__fork_cancel(pd->fork);
    pd->fork = NULL;
    if (pd->wait == NULL) {
        json_decref(pd->answer);
        free(pd);
    }
    /* else: session__committed frees it (and still undoes or completes the change) */
}

static struct session__pending *session__pending_new(struct sessions *s, struct http_req *req)
{
    struct session__pending *pd = xcalloc(1, sizeof *pd);
    pd->s = s;
    pd->req = req;
    http_req_set_data(req, pd, session__pending_dispose);
    return pd;
}

/* A change was not stored (rc, -errno): 507 when the disk is full, 503 when the database cannot be
 * reached, else 500. */
static void session__respond_rc(struct http_req *req, int rc, const char *what)
{
    if (session_storage_full(rc))
        http_res_error(req, ERR_STORAGE_FULL, "%s: no space left (%s)", what, strerror(-rc));
    else
        http_res_error(req, errcode_for_store(rc), "%s (%s)", what, strerror(-rc));
}

static json_t *session__body(struct http_req *req, const char **why)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    if (len == 0)
        return json_object();
    json_error_t e;
    json_t *j = json_loadb(body, len, 0, &e);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        *why = "the body must be a JSON object";
        return NULL;
    }
    return j;
}

/* ================= create ================= */

/* The writes of a change have committed, or not: complete or undo the change, then answer. */
static void session__committed(void *arg, int rc)
{
    struct session__pending *pd = arg;
    struct sessions *s = pd->s;
    pd->wait = NULL;
    struct session *se = pd->id[0] ? map_get(&s->by_id, pd->id, strlen(pd->id)) : NULL;
    if (se) {
        switch (pd->undo) {
        case SESSION_UNDO_NONE: break;
        case SESSION_UNDO_DISCARD:
            if (rc != 0)
                session__discard(se);
            break;
        case SESSION_UNDO_SHARE:
            if (rc != 0)
                session__share_remove(se, pd->token);
            break;
        case SESSION_UNDO_DELETE: session__delete_finish(se, rc); break;
        case SESSION_UNDO_PERM: session__perm_answered(se, pd->token, rc); break;
        }
    }
    if (pd->req) {
        if (rc != 0)
            session__respond_rc(pd->req, rc, "the change was not stored");
        else
            http_res_json(pd->req, pd->status, json_incref(pd->answer));
        return; /* dispose frees pd */
    }
    json_decref(pd->answer);
    free(pd);
}

/* Answers `answer` (taken) with `status` once the writes collected by w have committed (after the
 * fsync, under --durability fsync); if they fail, `undo` for session `id` (token: the share
 * token), and the client gets 507 or 500. */
static void session__reply_after(struct session__pending *pd, struct session_wait *w, int status,
                                 json_t *answer, enum session__undo undo, const char *id, const char *token)
{
    pd->status = status;
    pd->answer = answer;
    pd->undo = undo;
    if (id)
        snprintf(pd->id, sizeof pd->id, "%s", id);
    if (token)
        snprintf(pd->token, sizeof pd->token, "%s", token);
    pd->wait = w;
    session__wait_end(w, session__committed, pd);
}

/* The domain made a change (rc 0: answered with answer, taken, once the writes w collected have
 * committed) or refused it (rc < 0, why: the error now, w closed and answer dropped). */
static void session__changed(struct sessions *s, struct http_req *req, struct session_wait *w, int rc,
                             const char *why, int status, json_t *answer, enum session__undo undo,
                             const char *id, const char *token)
{
    if (rc != 0) {
        json_decref(answer);
        session__wait_end(w, NULL, NULL);
        return http_res_error(req, session__errcode(rc, ERR_INTERNAL), "%s", why);
    }
    session__reply_after(session__pending_new(s, req), w, status, answer, undo, id, token);
}

/* POST /v1/sessions, or with parent POST /v1/sessions/<parent>/children: a child, whose answer
 * also names the run its first message started. */
static void session__http_create(struct sessions *s, struct session *parent, struct http_req *req)
{
    const char *why = NULL;
    json_t *b = session__body(req, &why);
    if (b == NULL)
        return http_res_error(req, ERR_BAD_REQUEST, "%s", why);
    struct session *se = NULL;
    struct session_wait *w = session__wait_begin(s, 0);
    int rc = parent ? session__spawn_child(s, parent, b, &se, &why) : session__create(s, b, NULL, &se, &why);
    json_decref(b);
    if (rc != 0) {
        session__wait_end(w, NULL, NULL);
        return http_res_error(req, session__errcode(rc, ERR_WORKSPACE_FAILED), "%s", why);
    }
    json_t *answer = session__public(se);
    size_t nruns = json_array_size(se->runs);
    if (parent && nruns)
        json_object_set(answer, "run", json_object_get(json_array_get(se->runs, nruns - 1), "id"));
    session__reply_after(session__pending_new(s, req), w, 201, answer, SESSION_UNDO_DISCARD, se->id, NULL);
}

/* ================= fork ================= */

/* The fork ended (session_fork.c): answer with the child, or why not. */
static void session__forked(void *arg, int rc, const char *why, struct session *child)
{
    struct session__pending *pd = arg;
    pd->fork = NULL;
    if (rc == 0)
        http_res_json(pd->req, 201, session__public(child));
    else if (why)
        http_res_error(pd->req, ERR_WORKSPACE_FAILED, "%s: %s", why, strerror(-rc));
    else
        session__respond_rc(pd->req, rc, "the fork was not stored");
}

static void session__fork(struct sessions *s, struct session *parent, struct http_req *req)
{
    const char *why = NULL;
    json_t *b = session__body(req, &why);
    if (b == NULL)
        return http_res_error(req, ERR_BAD_REQUEST, "%s", why);
    json_t *at = json_object_get(b, "at");
    if (at && !json_is_null(at) && !json_is_string(at)) {
        json_decref(b);
        return http_res_error(req, ERR_BAD_REQUEST, "at must be an offset of the parent's transcript");
    }
    struct session__pending *pd = session__pending_new(s, req);
    int rc = session__fork_start(parent, json_string_value(at), json_object_get(b, "tags"), session__forked,
                                 pd, &pd->fork, &why);
    json_decref(b);
    if (rc != 0)
        http_res_error(req, session__errcode(rc, ERR_WORKSPACE_FAILED), "%s", why);
}

/* ================= share links ================= */

/*
 * A share token gives read-only access to one session: GET/HEAD of its streams
 * (/v1/stream/sessions/<id>/...) and of /v1/sessions/<id>, as `Authorization: Bearer <token>` or
 * `?share=<token>` (what a browser's EventSource can send). Tokens are kept with the session's
 * record and revoked by DELETE. They matter when the server has a token; without one everything
 * on loopback is open anyway.
 */
static void session__share(struct sessions *s, struct session *se, struct http_req *req, const char *token)
{
    enum http_method m = http_req_method(req);
    if (token == NULL && m == HTTP_GET)
        return http_res_json(req, 200, json_pack("{s:O}", "shares", se->shares));
    if (token == NULL && m == HTTP_POST) {
        char tok[SESSION_TOKEN_LEN + 1];
        struct session_wait *w = session__wait_begin(s, 0);
        session__share_add(se, tok);
        json_t *answer = json_pack("{s:s, s:s, s:{s:s, s:s}}", "token", tok, "session", se->id, "urls",
                                   "session", "", "transcript", "");
        char *u1 = xasprintf("/v1/sessions/%s?share=%s", se->id, tok);
        char *u2 = xasprintf("/v1/stream/sessions/%s/transcript?offset=-1&live=sse&share=%s", se->id, tok);
        json_object_set_new(json_object_get(answer, "urls"), "session", json_string(u1));
        json_object_set_new(json_object_get(answer, "urls"), "transcript", json_string(u2));
        free(u1);
        free(u2);
        return session__reply_after(session__pending_new(s, req), w, 201, answer, SESSION_UNDO_SHARE, se->id,
                                    tok);
    }
    if (token && m == HTTP_DELETE) {
        /* The token stops working at once; if its revocation cannot be stored, the client hears so
         * and the token stays revoked in memory while a repair stores it (session_write.c). */
        struct session_wait *w = session__wait_begin(s, 0);
        int rc = session__share_revoke(se, token);
        if (rc != 0) {
            session__wait_end(w, NULL, NULL);
            return http_res_error(req, ERR_NOT_FOUND, "no such share token");
        }
        http_server_revoke(s->http, token); /* every read made with it ends now */
        return session__reply_after(session__pending_new(s, req), w, 204, json_object(), SESSION_UNDO_NONE,
                                    NULL, NULL);
    }
    http_res_error(req, ERR_METHOD_NOT_ALLOWED,
                   "POST creates a share link, GET lists them, DELETE .../share/<token> revokes one");
}

/* The id of the session a path belongs to, for share tokens: /v1/sessions/<id>, /v1/sessions/<id>/ws
 * or /v1/stream/sessions/<id>/<stream>. Copies it into id; 0 when the path is neither. */
static int session__path_session(const char *path, size_t plen, char id[SESSION_ID_LEN + 1])
{
    static const char *const prefixes[] = {SESSIONS_PREFIX "/", "/v1/stream/sessions/"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(prefixes); i++) {
        size_t l = strlen(prefixes[i]);
        if (plen <= l || memcmp(path, prefixes[i], l) != 0)
            continue;
        const char *p = path + l, *end = path + plen;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        size_t n = slash ? (size_t)(slash - p) : (size_t)(end - p);
        /* readable with a share token: /v1/sessions/<id>, its WebSocket view, its history pages,
         * its runs and children, and its streams */
        static const char *const subs[] = {"/ws", "/events", "/runs", "/children"};
        int sub = 0;
        for (size_t k = 0; i == 0 && slash && k < CORE_ARRAY_LEN(subs); k++)
            sub |= (size_t)(end - slash) == strlen(subs[k]) && !memcmp(slash, subs[k], strlen(subs[k]));
        if (n != SESSION_ID_LEN || (i == 0 && slash && !sub) || (i == 1 && !slash))
            return 0;
        memcpy(id, p, n);
        id[n] = '\0';
        return 1;
    }
    return 0;
}

/* The bearer token of a request, or its ?share= (what a browser's EventSource can send); NULL when
 * it has neither. Allocated in the request. */
static char *session__request_token(struct http_req *req)
{
    size_t hlen;
    char *token = NULL;
    const char *h = http_req_header(req, "authorization", &hlen);
    if (h && hlen > 7 && strncasecmp(h, "Bearer ", 7) == 0) {
        token = http_req_alloc(req, hlen - 6);
        memcpy(token, h + 7, hlen - 7);
        token[hlen - 7] = '\0';
    } else {
        http_req_query_param(req, "share", &token);
    }
    return token;
}

/* An agent's own token (?agent_token=, see session_agent.c) opens its session's MCP endpoint, any
 * method, and nothing else. */
static int session__authorize_agent(struct sessions *s, struct http_req *req, const char *path, size_t plen)
{
    static const char prefix[] = SESSIONS_PREFIX "/", suffix[] = "/mcp";
    size_t lp = sizeof prefix - 1, ls = sizeof suffix - 1;
    char id[SESSION_ID_LEN + 1], *token = NULL;
    if (plen != lp + SESSION_ID_LEN + ls || memcmp(path, prefix, lp) || memcmp(path + plen - ls, suffix, ls))
        return 0;
    memcpy(id, path + lp, SESSION_ID_LEN);
    id[SESSION_ID_LEN] = '\0';
    struct session *se = map_get(&s->by_id, id, SESSION_ID_LEN);
    if (se == NULL || se->deleted || se->agent_token[0] == '\0' ||
        !http_req_query_param(req, "agent_token", &token) || token == NULL)
        return 0;
    size_t n = strlen(se->agent_token);
    if (strlen(token) != n || sodium_memcmp(se->agent_token, token, n) != 0)
        return 0;
    http_req_set_credential(req, se->agent_token); /* cut when the session goes */
    return 1;
}

/* A request that carries one of its session's share tokens but wants to change something: a
 * read-only link is refused as such (403), not as if it were no credential at all. */
static int session__share_write(struct sessions *s, struct http_req *req, const char *path, size_t plen)
{
    static const char prefix[] = SESSIONS_PREFIX "/";
    size_t lp = sizeof prefix - 1;
    if (plen < lp + SESSION_ID_LEN || memcmp(path, prefix, lp) ||
        (plen > lp + SESSION_ID_LEN && path[lp + SESSION_ID_LEN] != '/'))
        return 0;
    struct session *se = map_get(&s->by_id, path + lp, SESSION_ID_LEN);
    const char *token = se && !se->deleted ? session__request_token(req) : NULL;
    size_t i;
    json_t *sh;
    json_array_foreach (token ? se->shares : NULL, i, sh) {
        const char *t = json_string_value(json_object_get(sh, "token"));
        if (t && strlen(t) == strlen(token) && sodium_memcmp(t, token, strlen(t)) == 0) {
            http_res_error(req, ERR_FORBIDDEN, "a share link is read-only: this needs the server's token");
            return 1;
        }
    }
    return 0;
}

static int session__authorize(void *arg, struct http_req *req)
{
    struct sessions *s = arg;
    enum http_method m = http_req_method(req);
    size_t plen;
    const char *path = http_req_path(req, &plen);
    if (session__authorize_agent(s, req, path, plen))
        return 1;
    if (m != HTTP_GET && m != HTTP_HEAD)
        return session__share_write(s, req, path, plen) ? -1 : 0;
    char id[SESSION_ID_LEN + 1];
    if (!session__path_session(path, plen, id))
        return 0;
    struct session *se = map_get(&s->by_id, id, strlen(id));
    if (se == NULL || se->deleted)
        return 0;
    char *token = session__request_token(req);
    if (token == NULL)
        return 0;
    size_t i;
    json_t *sh;
    json_array_foreach (se->shares, i, sh) {
        const char *t = json_string_value(json_object_get(sh, "token"));
        if (t && strlen(t) == strlen(token) && sodium_memcmp(t, token, strlen(t)) == 0) {
            http_req_set_credential(req, t); /* cut when the token is revoked */
            return 1;
        }
    }
    return 0;
}

/* ================= messages ================= */

static void session__post_message(struct sessions *s, struct session *se, struct http_req *req)
{
    const char *why = NULL;
    json_t *b = session__body(req, &why);
    if (b == NULL)
        return http_res_error(req, ERR_BAD_REQUEST, "%s", why);
    json_t *text = json_object_get(b, "text"), *mode = json_object_get(b, "mode");
    if (!json_is_string(text) || (mode && !json_is_null(mode) && !json_is_string(mode))) {
        json_decref(b);
        return http_res_error(req, ERR_BAD_REQUEST,
                              "text (a string) is required; mode is queue, interrupt, reject or steer");
    }
    json_t *answer = NULL;
    struct session_wait *w = session__wait_begin(s, 0);
    int rc = session__message(se, json_string_value(text), json_string_value(mode), &answer, &why);
    json_decref(b);
    if (rc == 0)
        json_object_set(answer, "run", json_object_get(answer, "id"));
    session__changed(s, req, w, rc, why, 202, answer, SESSION_UNDO_NONE, NULL, NULL);
}

/* POST .../runs/<run>/cancel and .../interrupt: what act does to the run. */
typedef int (*session__run_act)(struct session *se, const char *run, json_t **answer, const char **why);
static void session__run_action(struct sessions *s, struct session *se, struct http_req *req, const char *run,
                                session__run_act act)
{
    if (http_req_method(req) != HTTP_POST)
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "POST to cancel or interrupt a run");
    json_t *answer = NULL;
    const char *why = NULL;
    struct session_wait *w = session__wait_begin(s, 0);
    int rc = act(se, run, &answer, &why);
    session__changed(s, req, w, rc, why, 200, answer, SESSION_UNDO_NONE, NULL, NULL);
}

/* GET .../inbox: the queued inputs; DELETE .../inbox/<input>: withdraws one before it starts. */
static void session__inbox_route(struct sessions *s, struct session *se, struct http_req *req,
                                 const char *input)
{
    enum http_method m = http_req_method(req);
    if (input == NULL && (m == HTTP_GET || m == HTTP_HEAD))
        return http_res_json(req, 200, json_pack("{s:o}", "inputs", session__inbox(se)));
    if (input == NULL || m != HTTP_DELETE)
        return http_res_error(
            req, ERR_METHOD_NOT_ALLOWED,
            "GET .../inbox lists the queued inputs, DELETE .../inbox/<input> withdraws one");
    json_t *answer = NULL;
    const char *why = NULL;
    struct session_wait *w = session__wait_begin(s, 0);
    int rc = session__withdraw(se, input, &answer, &why);
    session__changed(s, req, w, rc, why, 200, answer, SESSION_UNDO_NONE, NULL, NULL);
}

/* ================= permissions ================= */

/* GET .../permissions: the requests waiting and the policy; POST .../permissions/<request>: an
 * answer, which reaches the agent once its records have committed (a wait at commit: the decision
 * survives kill -9 before any tool acts on it). */
static void session__permissions(struct sessions *s, struct session *se, struct http_req *req, const char *id)
{
    enum http_method m = http_req_method(req);
    if (id == NULL && (m == HTTP_GET || m == HTTP_HEAD))
        return http_res_json(
            req, 200,
            json_pack("{s:o, s:o}", "permissions", session__perms_list(se), "policy", session__policy(se)));
    if (id == NULL || m != HTTP_POST)
        return http_res_error(
            req, ERR_METHOD_NOT_ALLOWED,
            "GET .../permissions lists the requests, POST .../permissions/<request> answers one");
    const char *why = NULL;
    json_t *b = session__body(req, &why), *answer = NULL;
    if (b == NULL)
        return http_res_error(req, ERR_BAD_REQUEST, "%s", why);
    struct session_wait *w = session__wait_begin(s, 1);
    int rc = session__perm_answer(se, id, b, &answer, &why);
    json_decref(b);
    session__changed(s, req, w, rc, why, 200, answer, SESSION_UNDO_PERM, se->id, id);
}

/* PATCH /v1/sessions/<id>: what may change after creation (permissions, warm). */
static void session__patch_route(struct sessions *s, struct session *se, struct http_req *req)
{
    const char *why = NULL;
    json_t *b = session__body(req, &why);
    if (b == NULL)
        return http_res_error(req, ERR_BAD_REQUEST, "%s", why);
    struct session_wait *w = session__wait_begin(s, 0);
    int rc = session__patch(se, b, &why);
    json_decref(b);
    session__changed(s, req, w, rc, why, 200, rc == 0 ? session__public(se) : NULL, SESSION_UNDO_NONE, NULL,
                     NULL);
}

/* ================= list, get, delete ================= */

struct session__list {
    json_t *arr;
    const char *tag;
    int64_t before;
};

/* Does a public record pass the list's filters? */
static int session__listed(const struct session__list *l, json_t *pub)
{
    if (strcmp(json_string_value(json_object_get(pub, "status")) ?: "", "deleted") == 0 ||
        (l->before && json_integer_value(json_object_get(pub, "created_at")) >= l->before))
        return 0;
    if (l->tag == NULL)
        return 1;
    size_t i;
    json_t *t;
    json_array_foreach (json_object_get(pub, "tags"), i, t)
        if (json_is_string(t) && !strcmp(json_string_value(t), l->tag))
            return 1;
    return 0;
}

static void session__collect(const char *key, void *value, void *arg)
{
    struct session__list *l = arg;
    json_t *pub = session__public(value);
    if (session__listed(l, pub))
        json_array_append(l->arr, pub);
    json_decref(pub);
}

static int session__newest_first(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "created_at"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "created_at"));
    return x < y ? 1 : x > y ? -1 : 0;
}

/* GET /v1/sessions?shard=k: the ids of shard k's sessions this node lists (on the feed's holder: the
 * feed's, every node's; elsewhere its own), for the feed's repair by the shard's next holder
 * (session_shard.c). Deleted ones are not listed. */
static void session__list_shard(struct sessions *s, struct http_req *req, const char *shard_s)
{
    char *end;
    long k = strtol(shard_s, &end, 10);
    if (*shard_s == '\0' || *end != '\0' || k < 0 || k >= s->nshards)
        return http_res_error(req, ERR_BAD_REQUEST, "shard must be 0..%d", s->nshards - 1);
    int feed = s->cfg.directory && s->ss && streams_shard_held(s->ss, 0);
    json_t *all = feed ? session__directory(s) : json_object(), *ids = json_array(), *v;
    if (!feed) {
        struct session__list l = {.arr = json_array()};
        map_each(&s->by_id, session__collect, &l);
        size_t i;
        json_array_foreach (l.arr, i, v)
            json_object_set(all, json_string_value(json_object_get(v, "id")) ?: "", v);
        json_decref(l.arr);
    }
    const char *key;
    json_object_foreach (all, key, v)
        if (*key && session__shard_of(s, key) == (int)k)
            json_array_append_new(ids, json_string(key));
    json_decref(all);
    http_res_json(req, 200, json_pack("{s:o}", "ids", ids));
}

static void session__list(struct sessions *s, struct http_req *req)
{
    char *shard_s = NULL;
    if (http_req_query_param(req, "shard", &shard_s) > 0)
        return session__list_shard(s, req, shard_s);
    char *tag = NULL, *limit_s = NULL, *before_s = NULL;
    http_req_query_param(req, "tag", &tag);
    http_req_query_param(req, "limit", &limit_s);
    http_req_query_param(req, "before", &before_s);
    long limit = limit_s ? strtol(limit_s, NULL, 10) : SESSIONS_LIST_DEFAULT;
    if (limit <= 0 || limit > SESSIONS_LIST_MAX)
        return http_res_error(req, ERR_BAD_REQUEST, "limit must be 1..%d", SESSIONS_LIST_MAX);
    struct session__list l = {
        .arr = json_array(), .tag = tag, .before = before_s ? strtoll(before_s, NULL, 10) : 0};
    if (s->cfg.directory && s->ss && streams_shard_held(s->ss, 0)) { /* every node's, from the feed */
        json_t *dir = session__directory(s), *pub;
        const char *key;
        json_object_foreach (dir, key, pub)
            if (session__listed(&l, pub))
                json_array_append(l.arr, pub);
        json_decref(dir);
    } else {
        map_each(&s->by_id, session__collect, &l);
    }
    size_t n = json_array_size(l.arr);
    json_t **items = xcalloc(n ? n : 1, sizeof *items);
    for (size_t i = 0; i < n; i++)
        items[i] = json_array_get(l.arr, i);
    qsort(items, n, sizeof *items, session__newest_first);
    json_t *page = json_array();
    for (size_t i = 0; i < n && i < (size_t)limit; i++)
        json_array_append(page, items[i]);
    json_t *body = json_pack("{s:o}", "sessions", page);
    if (n > (size_t)limit)
        json_object_set(body, "next_before", json_object_get(items[limit - 1], "created_at"));
    free(items);
    json_decref(l.arr);
    http_res_json(req, 200, body);
}

/* The session reads as gone at once; it is removed (its runtimes and runs stopped, its workspace
 * removed when agentd made it) once the deletion's records have committed, and stays if they
 * cannot be stored. */
static void session__delete(struct sessions *s, struct session *se, struct http_req *req)
{
    char *streams = NULL;
    http_req_query_param(req, "streams", &streams);
    /* Its share tokens and its agents' token die with it: every request made with them ends now.
     * Readers with the server's token see its streams end (closed, or deleted) once it commits. */
    size_t i;
    json_t *sh;
    json_array_foreach (se->shares, i, sh)
        http_server_revoke(s->http, json_string_value(json_object_get(sh, "token")) ?: "");
    if (se->agent_token[0])
        http_server_revoke(s->http, se->agent_token);
    struct session_wait *w = session__wait_begin(s, 0);
    session__delete_begin(se, streams && !strcmp(streams, "delete"));
    session__reply_after(session__pending_new(s, req), w, 204, json_object(), SESSION_UNDO_DELETE, se->id,
                         NULL);
}

/* ================= runtimes ================= */

/* A runtime call's answer: its body as is, with the status of its error code when it failed. */
static void session__rt_answer(void *arg, const struct session_rt_answer *a)
{
    struct session__pending *pd = arg;
    pd->call = NULL;
    if (pd->req == NULL)
        return;
    http_res_json_text(pd->req, a->rc ? errcode_status(a->err) : 200, a->json, strlen(a->json));
}

static void session__runtime_route(struct sessions *s, struct http_req *req, const char *id, const char *lang,
                                   const char *action)
{
    struct session_rt_request r = {.lang = lang};
    if (session_rt_action_parse(action, &r.action) != 0)
        return http_res_error(req, ERR_NOT_FOUND,
                              "runtime actions: exec, eval, state, reset, history, interrupt");
    enum http_method m = http_req_method(req);
    if (m != HTTP_POST &&
        !(m == HTTP_GET && (r.action == SESSION_RT_HISTORY || r.action == SESSION_RT_STATE)))
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "use POST");
    const char *why = NULL;
    json_t *b = m == HTTP_POST ? session__body(req, &why) : json_object();
    if (b == NULL)
        return http_res_error(req, ERR_BAD_REQUEST, "%s", why);
    json_t *code = json_object_get(b, "code"), *timeout = json_object_get(b, "timeout_ms");
    if (r.action == SESSION_RT_EXEC || r.action == SESSION_RT_EVAL) {
        if (!json_is_string(code)) {
            json_decref(b);
            return http_res_error(req, ERR_BAD_REQUEST, "code (a string) is required");
        }
        r.code = json_string_value(code);
        r.code_len = json_string_length(code);
    }
    if (timeout && (!json_is_integer(timeout) || json_integer_value(timeout) < 0)) {
        json_decref(b);
        return http_res_error(req, ERR_BAD_REQUEST, "timeout_ms must be a non-negative integer");
    }
    r.timeout_ms = (uint64_t)json_integer_value(timeout);
    char *limit = NULL;
    http_req_query_param(req, "limit", &limit);
    json_t *jl = json_object_get(b, "limit");
    r.limit = limit ? strtoul(limit, NULL, 10) : json_is_integer(jl) ? (size_t)json_integer_value(jl) : 0;
    struct session__pending *pd = session__pending_new(s, req);
    struct session_rt_call *call = session_rt_start(s, id, &r, session__rt_answer, pd);
    if (call) /* NULL: already answered, and pd may be gone */
        pd->call = call;
    json_decref(b); /* the runtime copied the code */
}

/* ================= dispatch ================= */

static void session__route(struct http_req *req, void *arg)
{
    struct sessions *s = arg;
    size_t plen;
    const char *path = http_req_path(req, &plen);
    size_t pre = strlen(SESSIONS_PREFIX);
    enum http_method m = http_req_method(req);
    if (plen == pre || (plen == pre + 1 && path[pre] == '/')) {
        if (m == HTTP_POST)
            return session__http_create(s, NULL, req);
        if (m == HTTP_GET || m == HTTP_HEAD)
            return session__list(s, req);
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "use GET or POST on /v1/sessions");
    }
    if (path[pre] != '/' || plen > pre + 256)
        return http_res_error(req, ERR_NOT_FOUND, "no such resource");
    /* /v1/sessions/<id>[/rest] */
    char rest[300];
    snprintf(rest, sizeof rest, "%.*s", (int)(plen - pre - 1), path + pre + 1);
    char *parts[5] = {0};
    int n = 0;
    for (char *p = rest, *tok; n < 5 && (tok = strsep(&p, "/")) != NULL;)
        parts[n++] = tok;
    struct session *se = map_get(&s->by_id, parts[0], strlen(parts[0]));
    if (se == NULL || se->deleted)
        return http_res_error(req, ERR_NOT_FOUND, "no such session");
    if (n == 1) {
        if (m == HTTP_GET || m == HTTP_HEAD)
            return http_res_json(req, 200, session__public(se));
        if (m == HTTP_DELETE)
            return session__delete(s, se, req);
        if (m == HTTP_PATCH)
            return session__patch_route(s, se, req);
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "use GET, PATCH or DELETE on a session");
    }
    if (n == 2 && !strcmp(parts[1], "children")) {
        if (m == HTTP_POST)
            return session__http_create(s, se, req);
        return http_res_json(req, 200, session__children(s, se));
    }
    if (n == 2 && !strcmp(parts[1], "ws"))
        return session__ws(s, se, req);
    if (n == 2 && !strcmp(parts[1], "events"))
        return session__events(s, se, req);
    if (n == 2 && !strcmp(parts[1], "messages")) {
        if (m != HTTP_POST)
            return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "POST a message");
        return session__post_message(s, se, req);
    }
    if (n == 2 && !strcmp(parts[1], "runs") && (m == HTTP_GET || m == HTTP_HEAD))
        return http_res_json(req, 200, json_pack("{s:O}", "runs", se->runs));
    if (n == 4 && !strcmp(parts[1], "runs") && !strcmp(parts[3], "cancel"))
        return session__run_action(s, se, req, parts[2], session__cancel_run);
    if (n == 4 && !strcmp(parts[1], "runs") && !strcmp(parts[3], "interrupt"))
        return session__run_action(s, se, req, parts[2], session__interrupt_run);
    if ((n == 2 || n == 3) && !strcmp(parts[1], "permissions"))
        return session__permissions(s, se, req, n == 3 ? parts[2] : NULL);
    if ((n == 2 || n == 3) && !strcmp(parts[1], "inbox"))
        return session__inbox_route(s, se, req, n == 3 ? parts[2] : NULL);
    if ((n == 2 || n == 3) && !strcmp(parts[1], "share"))
        return session__share(s, se, req, n == 3 ? parts[2] : NULL);
    if (n == 2 && !strcmp(parts[1], "fork")) {
        if (m != HTTP_POST)
            return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "use POST to fork a session");
        return session__fork(s, se, req);
    }
    if (n == 2 && !strcmp(parts[1], "mcp")) {
        if (s->mcp_cb == NULL)
            return http_res_error(req, ERR_NOT_FOUND, "MCP is not enabled on this server");
        return s->mcp_cb(s->mcp_arg, req, se->id);
    }
    if (n == 4 && !strcmp(parts[1], "runtimes"))
        return session__runtime_route(s, req, se->id, parts[2], parts[3]);
    http_res_error(req, ERR_NOT_FOUND, "no such resource under this session");
}

void sessions_routes(struct sessions *s, struct http_server *srv)
{
    s->http = srv;
    http_route(srv, SESSIONS_PREFIX, session__route, s);
    http_route(srv, SESSION_AGENTS_PATH, session__agents_route, s);
    http_set_authorizer(srv, session__authorize, s);
}
