/*
 * curlx_http.c — libcurl's multi interface driven by a libuv loop (socket and timer callbacks). See
 * curlx_http.h.
 *
 * Ownership: the struct curlx_http owns the multi handle, its timers and one struct http__sock per
 * socket curl watches (on h->socks; freed in the poll handle's close callback, since uv_close is
 * asynchronous);
 * each request owns its easy handle, header list, copies of its strings and the body collected so
 * far. A request without an easy handle could not start (libcurl missing): the timer ends it on the
 * next loop turn, so no callback ever runs inside curlx_http_request. libcurl refuses new transfers
 * from inside its own callbacks (CURLM_RECURSIVE_API_CALL), where an answer often starts the next
 * request: one made while curl runs waits, added, for the kick timer (0 ms).
 */
#include "curlx/curlx_http.h"
#include "core/list.h"
#include "curlx/curlx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct curlx_http {
    uv_loop_t *loop;
    CURLM *multi; /* NULL until the first request that could load libcurl */
    uv_timer_t timer;
    uv_timer_t kick;             /* adds the requests made while curl ran */
    int in_curl;                 /* inside curlx_multi_socket_action */
    int closing;                 /* handles left to close before h is freed */
    struct curlx_http_req *reqs; /* in flight */
    struct http__sock *socks;    /* watched */
};

struct http__sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct curlx_http *h;
    LIST_LINK(http__sock) link; /* h->socks */
};

struct curlx_http_req {
    struct curlx_http *h;
    CURL *easy;
    struct curl_slist *headers;
    char *url, *method, *body, *userpwd, *header, *user_agent;
    struct buf got; /* the body, unless streamed */
    struct curlx_http_opts o;
    char error[CURL_ERROR_SIZE];
    int added;                      /* its easy handle is in the multi handle */
    LIST_LINK(curlx_http_req) link; /* h->reqs */
};

void curlx_http_cancel(struct curlx_http_req *r)
{
    if (r == NULL)
        return;
    list_remove(r, link);
    if (r->easy) {
        if (r->added)
            curlx_multi_remove_handle(r->h->multi, r->easy);
        curlx_easy_cleanup(r->easy);
    }
    if (r->headers)
        curlx_slist_free_all(r->headers);
    free(r->url);
    free(r->method);
    free(r->body);
    free(r->userpwd);
    free(r->header);
    free(r->user_agent);
    buf_free(&r->got);
    free(r);
}

static void http__finish(struct curlx_http_req *r, CURLcode rc)
{
    struct curlx_http_answer a = {.error = NULL};
    if (r->easy && rc == CURLE_OK)
        curlx_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &a.status);
    else
        a.error = r->easy == NULL ? CURLX_MISSING_HINT : r->error[0] ? r->error : curlx_easy_strerror(rc);
    a.ok = a.status >= 200 && a.status < 300;
    buf_reserve(&r->got, 1);
    r->got.p[r->got.len] = '\0';
    a.body = r->got.p;
    a.len = r->got.len;
    list_remove(r, link); /* on_done may start and cancel others, not this one */
    r->o.on_done(r->o.arg, &a);
    curlx_http_cancel(r);
}

/* Ends finished transfers; a callback may start new ones (picked up by curl's own timer). */
static void http__check_done(struct curlx_http *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curlx_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct curlx_http_req *r;
        curlx_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        http__finish(r, msg->data.result);
    }
}

static void http__on_poll(uv_poll_t *p, int status, int events)
{
    struct http__sock *s = p->data;
    int flags = status < 0 ? CURL_CSELECT_ERR : 0, running;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    struct curlx_http *h = s->h;
    h->in_curl = 1;
    curlx_multi_socket_action(h->multi, s->fd, flags, &running);
    h->in_curl = 0;
    http__check_done(h);
}

static void http__on_timer(uv_timer_t *t)
{
    struct curlx_http *h = t->data;
    for (struct curlx_http_req *r = h->reqs, *next; r; r = next) {
        next = r->link.next;
        if (r->easy == NULL) { /* could not start: ends now, outside curlx_http_request */
            http__finish(r, CURLE_FAILED_INIT);
            next = h->reqs; /* the callback may have changed the list */
        }
    }
    int running;
    if (h->multi) {
        h->in_curl = 1;
        curlx_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        h->in_curl = 0;
        http__check_done(h);
    }
}

static void http__sock_closed(uv_handle_t *p) { free(p->data); }

/* CURLMOPT_SOCKETFUNCTION: curl says which sockets to watch for what. */
static int http__on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct curlx_http *h = userp;
    struct http__sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            list_remove(s, link);
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, http__sock_closed);
            curlx_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof *s);
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        list_insert(&h->socks, s, link);
        curlx_multi_assign(h->multi, fd, s);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, events, http__on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION. Never drives curl from here (that would recurse): the timer does. */
static int http__on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
    struct curlx_http *h = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, http__on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t http__on_body(char *p, size_t size, size_t n, void *userp)
{
    struct curlx_http_req *r = userp;
    size_t len = size * n;
    if (r->o.max_answer && r->got.len + len > r->o.max_answer)
        return 0; /* aborts the transfer: more than the caller has any use for */
    if (r->o.on_data)
        r->o.on_data(r->o.arg, p, len);
    else
        buf_append(&r->got, p, len);
    return len;
}

/* CURLOPT_OPENSOCKETFUNCTION: the caller's check on the address actually dialled (after DNS, so a
 * name cannot smuggle a refused address past a check of the URL), and close-on-exec sockets, since
 * agentd spawns children. */
static curl_socket_t http__open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct curlx_http_req *r = userp;
    if (purpose != CURLSOCKTYPE_IPCXN || (r->o.allow_addr && !r->o.allow_addr(r->o.arg, &addr->addr)))
        return CURL_SOCKET_BAD;
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

/* Adds a request's transfer to the multi handle. */
static void http__add(struct curlx_http_req *r)
{
    if (curlx_multi_add_handle(r->h->multi, r->easy) != CURLM_OK) {
        log_error("curlx: cannot start an HTTP request");
        abort();
    }
    r->added = 1;
}

static void http__on_kick(uv_timer_t *t)
{
    struct curlx_http *h = t->data;
    for (struct curlx_http_req *r = h->reqs; r; r = r->link.next)
        if (r->easy && !r->added)
            http__add(r);
}

int curlx_http_new(struct curlx_http **out, uv_loop_t *loop)
{
    struct curlx_http *h = xcalloc(1, sizeof *h);
    h->loop = loop;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_timer_init(loop, &h->kick);
    h->kick.data = h;
    *out = h;
    return 0;
}

/* libcurl is loaded and started with the first request. 0, or -ENOENT without libcurl. */
static int http__multi_start(struct curlx_http *h)
{
    if (h->multi)
        return 0;
    if (curlx_load() != 0) {
        log_error("curlx: cannot make HTTP requests: %s (%s)", CURLX_MISSING_HINT, curlx_load_error());
        return -ENOENT;
    }
    if (curlx_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (h->multi = curlx_multi_init()) == NULL) {
        log_error("curlx: libcurl failed to initialise");
        abort();
    }
    curlx_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http__on_socket);
    curlx_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curlx_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http__on_timeout);
    curlx_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return 0;
}

static void http__closed(uv_handle_t *t)
{
    struct curlx_http *h = t->data;
    if (--h->closing == 0)
        free(h);
}

void curlx_http_free(struct curlx_http *h)
{
    if (h == NULL)
        return;
    while (h->reqs)
        curlx_http_cancel(h->reqs);
    /* The connections curl keeps for reuse close in its cleanup without a word to the socket
     * callback: their watchers are closed here (first, while their sockets are still open), or
     * the loop would never be free of them. */
    while (h->socks) {
        struct http__sock *s = h->socks;
        list_remove(s, link);
        curlx_multi_assign(h->multi, s->fd, NULL);
        uv_poll_stop(&s->poll);
        uv_close((uv_handle_t *)&s->poll, http__sock_closed);
    }
    if (h->multi) {
        curlx_multi_cleanup(h->multi);
        curlx_global_cleanup();
    }
    h->closing = 2;
    uv_close((uv_handle_t *)&h->timer, http__closed);
    uv_close((uv_handle_t *)&h->kick, http__closed);
}

/* Sets the easy handle's options from r (its strings are r's own copies). */
static void http__setup(struct curlx_http_req *r)
{
    CURL *e = r->easy;
    curlx_easy_setopt(e, CURLOPT_URL, r->url);
    curlx_easy_setopt(e, CURLOPT_PROTOCOLS_STR, r->o.remote ? "http,https" : "http");
    curlx_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curlx_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (!r->o.remote)
        curlx_easy_setopt(e, CURLOPT_NOPROXY, "*"); /* local servers: never through a proxy */
    curlx_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->body) {
        curlx_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curlx_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->o.body_len);
    }
    r->headers = curlx_slist_append(r->headers, "Content-Type: application/json");
    for (char *h = r->header, *nl; h && *h; h = nl ? nl + 1 : NULL) { /* several: one a line */
        if ((nl = strchr(h, '\n')) != NULL)
            *nl = '\0'; /* the copy's, read by libcurl's own copy below only */
        r->headers = curlx_slist_append(r->headers, h);
    }
    r->headers = curlx_slist_append(r->headers, "Expect:");
    if (r->headers == NULL) {
        log_error("curlx: out of memory starting an HTTP request");
        abort();
    }
    curlx_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    if (r->userpwd) {
        curlx_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curlx_easy_setopt(e, CURLOPT_USERPWD, r->userpwd);
    }
    curlx_easy_setopt(e, CURLOPT_USERAGENT, r->user_agent ? r->user_agent : "agentd/1");
    if (r->o.timeout_ms > 0)
        curlx_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->o.timeout_ms);
    curlx_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curlx_easy_setopt(e, CURLOPT_WRITEFUNCTION, http__on_body);
    curlx_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curlx_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, http__open_socket);
    curlx_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
    curlx_easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
    curlx_easy_setopt(e, CURLOPT_PRIVATE, r);
}

struct curlx_http_req *curlx_http_request(struct curlx_http *h, const struct curlx_http_opts *o)
{
    struct curlx_http_req *r = xcalloc(1, sizeof *r);
    r->h = h;
    r->o = *o;
    r->url = xstrdup(o->url);
    r->method = xstrdup(o->method ? o->method : o->body ? "POST" : "GET");
    if (o->body) {
        r->body = xmalloc(o->body_len + 1);
        memcpy(r->body, o->body, o->body_len);
        r->body[o->body_len] = '\0';
    }
    r->userpwd = o->userpwd ? xstrdup(o->userpwd) : NULL;
    r->header = o->header ? xstrdup(o->header) : NULL;
    r->user_agent = o->user_agent ? xstrdup(o->user_agent) : NULL;
    /* only the copies are used */
    r->o.url = r->o.method = r->o.body = r->o.userpwd = r->o.header = r->o.user_agent = NULL;
    list_insert(&h->reqs, r, link);
    if (http__multi_start(h) != 0) {
        uv_timer_start(&h->timer, http__on_timer, 0, 0); /* ends r on the next turn */
        return r;
    }
    if ((r->easy = curlx_easy_init()) == NULL) {
        log_error("curlx: out of memory starting an HTTP request");
        abort();
    }
    http__setup(r);
    if (h->in_curl)
        uv_timer_start(&h->kick, http__on_kick, 0, 0);
    else
        http__add(r);
    return r;
}
