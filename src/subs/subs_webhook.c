/*
 * subs_webhook — curl multi on libuv. See subs_webhook.h.
 *
 * Ownership: the struct subs_webhook owns the multi handle, its timer and one struct subs__sock per
 * socket curl watches (freed in the poll handle's close callback, since uv_close is asynchronous).
 * Each struct subs_delivery owns its easy handle, header list and buffers; it is freed when its
 * transfer completes or is cancelled. A delivery without an easy handle is one that could not start
 * because libcurl is missing: the timer fails it on the next loop turn, so the caller's callback
 * (and with it the retry schedule) never runs inside subs_webhook_post.
 */
#include "subs/subs_webhook.h"
#include "subs/subs_match.h"
#include "core/list.h"
#include "curlx/curlx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct subs_webhook {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct subs_delivery *deliveries; /* in flight, so free can cancel them */
};

struct subs__sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct subs_webhook *wh;
};

struct subs_delivery {
    struct subs_webhook *wh;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    struct buf response;
    int loopback_only;
    subs_delivery_cb cb;
    void *arg;
    LIST_LINK(subs_delivery) link; /* wh->deliveries */
};

static void subs__delivery_free(struct subs_delivery *d)
{
    list_remove(d, link);
    if (d->easy) {
        curlx_multi_remove_handle(d->wh->multi, d->easy);
        curlx_easy_cleanup(d->easy);
        curlx_slist_free_all(d->headers);
    }
    free(d->body);
    buf_free(&d->response);
    free(d);
}

/* Reports finished transfers. A callback may start new deliveries; they are picked up next turn. */
static void subs__check_done(struct subs_webhook *wh)
{
    CURLMsg *msg;
    int left;
    while ((msg = curlx_multi_info_read(wh->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct subs_delivery *d;
        long status = 0;
        curlx_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&d);
        if (msg->data.result == CURLE_OK)
            curlx_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status);
        else
            log_info("subs: webhook POST failed: %s", curlx_easy_strerror(msg->data.result));
        buf_reserve(&d->response, 1);
        d->cb(d->arg, (int)status, d->response.p ? d->response.p : "", d->response.len);
        subs__delivery_free(d);
    }
}

static void subs__on_poll(uv_poll_t *h, int status, int events)
{
    struct subs__sock *s = h->data;
    int flags = status < 0 ? CURL_CSELECT_ERR : 0, running;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    struct subs_webhook *wh = s->wh;
    curlx_multi_socket_action(wh->multi, s->fd, flags, &running);
    subs__check_done(wh);
}

/* Reports the deliveries that never started (no libcurl) as attempts without an HTTP answer. The
 * scan restarts after each callback, which may have cancelled or started other deliveries. */
static void subs__fail_unstarted(struct subs_webhook *wh)
{
    struct subs_delivery *d = wh->deliveries;
    while (d) {
        if (d->easy) {
            d = d->link.next;
            continue;
        }
        d->cb(d->arg, 0, "", 0);
        subs__delivery_free(d);
        d = wh->deliveries;
    }
}

static void subs__on_timer(uv_timer_t *h)
{
    struct subs_webhook *wh = h->data;
    int running;
    subs__fail_unstarted(wh);
    if (wh->multi == NULL)
        return;
    curlx_multi_socket_action(wh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    subs__check_done(wh);
}

static void subs__sock_closed(uv_handle_t *h) { free(h->data); }

/* CURLMOPT_SOCKETFUNCTION: curl says which sockets to watch for what. */
static int subs__on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct subs_webhook *wh = userp;
    struct subs__sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, subs__sock_closed);
            curlx_multi_assign(wh->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof *s);
        s->fd = fd;
        s->wh = wh;
        if (uv_poll_init_socket(wh->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        curlx_multi_assign(wh->multi, fd, s);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, events, subs__on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION. Never drives curl from here (that would recurse): a 0 ms timer does. */
static int subs__on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
    struct subs_webhook *wh = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&wh->timer);
    else
        uv_timer_start(&wh->timer, subs__on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t subs__on_body(char *p, size_t size, size_t n, void *userp)
{
    struct subs_delivery *d = userp;
    size_t len = size * n;
    if (d->response.len + len > SUBS_WEBHOOK_MAX_RESPONSE)
        return 0; /* aborts the transfer: a receiver has no reason to answer this much */
    buf_append(&d->response, p, len);
    return len;
}

/* CURLOPT_OPENSOCKETFUNCTION: the SSRF check on the resolved address, right before connect. */
static curl_socket_t subs__open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct subs_delivery *d = userp;
    if (purpose != CURLSOCKTYPE_IPCXN || !subs_addr_allowed(&addr->addr, d->loopback_only)) {
        log_warn("subs: webhook connection refused by the address policy");
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

int subs_webhook_new(struct subs_webhook **out, uv_loop_t *loop)
{
    struct subs_webhook *wh = xcalloc(1, sizeof *wh);
    wh->loop = loop;
    uv_timer_init(loop, &wh->timer);
    wh->timer.data = wh;
    *out = wh;
    return 0;
}

/* libcurl (and with it OpenSSL, several MiB of touched pages) is loaded and started with the first
 * delivery, so a server that never sends a webhook never pays for it. Returns 0, or -ENOENT when
 * libcurl is not installed (tried again on the next delivery). */
static int subs__multi_start(struct subs_webhook *wh)
{
    if (wh->multi)
        return 0;
    if (curlx_load() != 0) {
        log_error("subs: cannot send webhooks: %s (%s)", CURLX_MISSING_HINT, curlx_load_error());
        return -ENOENT;
    }
    if (curlx_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (wh->multi = curlx_multi_init()) == NULL) {
        log_error("subs: libcurl failed to initialise");
        abort();
    }
    curlx_multi_setopt(wh->multi, CURLMOPT_SOCKETFUNCTION, subs__on_socket);
    curlx_multi_setopt(wh->multi, CURLMOPT_SOCKETDATA, wh);
    curlx_multi_setopt(wh->multi, CURLMOPT_TIMERFUNCTION, subs__on_timeout);
    curlx_multi_setopt(wh->multi, CURLMOPT_TIMERDATA, wh);
    return 0;
}

static void subs__webhook_closed(uv_handle_t *h) { free(h->data); }

void subs_webhook_free(struct subs_webhook *wh)
{
    if (wh == NULL)
        return;
    while (wh->deliveries)
        subs__delivery_free(wh->deliveries);
    if (wh->multi) {
        curlx_multi_cleanup(wh->multi);
        curlx_global_cleanup();
    }
    uv_close((uv_handle_t *)&wh->timer, subs__webhook_closed);
}

struct subs_delivery *subs_webhook_post(struct subs_webhook *wh, const char *url, int loopback_only,
                                        const char *signature, const void *body, size_t len,
                                        subs_delivery_cb cb, void *arg)
{
    struct subs_delivery *d = xcalloc(1, sizeof *d);
    d->wh = wh;
    d->cb = cb;
    d->arg = arg;
    d->loopback_only = loopback_only;
    list_insert(&wh->deliveries, d, link); /* in flight until subs__delivery_free */
    if (subs__multi_start(wh) != 0) {
        uv_timer_start(&wh->timer, subs__on_timer, 0, 0); /* fails d next turn */
        return d;
    }
    char *sig = xasprintf("Webhook-Signature: %s", signature);
    d->body = xmalloc(len + 1);
    memcpy(d->body, body, len);
    d->body[len] = '\0';
    d->headers = curlx_slist_append(d->headers, "Content-Type: application/json");
    d->headers = curlx_slist_append(d->headers, sig);
    d->headers = curlx_slist_append(d->headers, "Expect:");
    free(sig);
    if ((d->easy = curlx_easy_init()) == NULL || d->headers == NULL) {
        log_error("subs: out of memory starting a webhook transfer");
        abort();
    }
    CURL *e = d->easy;
    curlx_easy_setopt(e, CURLOPT_URL, url);
    curlx_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curlx_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curlx_easy_setopt(e, CURLOPT_POST, 1L);
    curlx_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
    curlx_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curlx_easy_setopt(e, CURLOPT_HTTPHEADER, d->headers);
    curlx_easy_setopt(e, CURLOPT_USERAGENT, "agentd-webhook/1");
    curlx_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)SUBS_WEBHOOK_TIMEOUT_MS);
    curlx_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)SUBS_WEBHOOK_TIMEOUT_MS / 2);
    curlx_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curlx_easy_setopt(e, CURLOPT_WRITEFUNCTION, subs__on_body);
    curlx_easy_setopt(e, CURLOPT_WRITEDATA, d);
    curlx_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, subs__open_socket);
    curlx_easy_setopt(e, CURLOPT_OPENSOCKETDATA, d);
    curlx_easy_setopt(e, CURLOPT_PRIVATE, d);
    if (curlx_multi_add_handle(wh->multi, e) != CURLM_OK) {
        log_error("subs: cannot start a webhook transfer");
        abort();
    }
    return d;
}

void subs_webhook_cancel(struct subs_delivery *d)
{
    if (d)
        subs__delivery_free(d);
}
