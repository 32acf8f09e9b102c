/*
 * subs — the subscription engine: registry, persistence through the state stream, links, acks,
 * wakes, leases and webhook deliveries (a subscription's configuration is subs_config.c's). See
 * subs.h for the invariants and subs_int.h for ownership.
 *
 * State records (JSON messages of SUBS_STATE_STREAM, applied in order on replay; each mutation
 * below both applies and, unless replaying, records itself):
 *   {"t":"sub","id","created_at","config":{...}}   a subscription was created
 *   {"t":"del","id"}                                 ... deleted
 *   {"t":"link","id","path","kind","acked"}          a stream was linked (kind explicit|glob)
 *   {"t":"unlink","id","path"}                       its explicit link was removed
 *   {"t":"ack","id","path","acked"}                  its acked offset moved
 *   {"t":"wake","id","gen","wake_id","holder","lease_until","snapshot":{path:tail}}
 *                                                    the wake state after any change
 */
#include "subs/subs_int.h"
#include "curlx/curlx_http.h"
#include "subs/subs_match.h"
#include "subs/subs_sign.h"
#include "stream/stream.h"
#include "stream/stream_parse.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ================= small helpers ================= */

static json_t *subs__offset_json(int64_t off)
{
    char o[STREAM_OFFSET_LEN + 1];
    if (off < 0)
        return json_string("-1");
    stream_offset_format(off, o);
    return json_string(o);
}

/* The durable tail of a relative stream path; 0 when the stream does not exist. A stream another
 * node holds is not in the registry: its tail is the last one relayed (subs_observe_remote). */
static int64_t subs__tail(struct subs *s, const char *path)
{
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, path, strlen(path), &how);
    if (st && how == STREAM_FOUND)
        return stream_tail(st);
    int64_t *remote = st ? NULL : map_get(&s->remote, path, strlen(path));
    return remote ? *remote : 0;
}

static void subs__log(struct subs *s, json_t *rec)
{
    if (s->replaying)
        json_decref(rec);
    else
        json_array_append_new(s->log, rec);
}

static char *subs__pct_encode(const char *in)
{
    struct buf b = {0};
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-_.~", *p))
            buf_append(&b, p, 1);
        else
            buf_printf(&b, "%%%02X", *p);
    }
    buf_reserve(&b, 1);
    return b.p;
}

char *subs__action_url(struct subs *s, const char *id, const char *action)
{
    char *enc = subs__pct_encode(id);
    char *url = xasprintf("%s%ssubscriptions/%s/%s", s->base_url, SUBS_HTTP_PREFIX, enc, action);
    free(enc);
    return url;
}

char *subs__jwks_url(struct subs *s) { return xasprintf("%s%sjwks.json", s->base_url, SUBS_HTTP_PREFIX); }

static void subs__now_iso(char out[32])
{
    int64_t ms = clock_wall_ms();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

/* ================= subscriptions ================= */

static void subs__link_free(const char *key, void *value, void *arg)
{
    struct subs_link *l = value;
    free(l->path);
    free(l);
}

void subs__sub_free(struct subs_sub *sub)
{
    if (sub == NULL)
        return;
    curlx_http_cancel(sub->inflight);
    map_each(&sub->links, subs__link_free, NULL);
    map_clear(&sub->links);
    for (size_t i = 0; i < sub->nstreams; i++)
        free(sub->streams[i]);
    free(sub->streams);
    free(sub->id);
    free(sub->pattern);
    free(sub->webhook_url);
    free(sub->wake_stream);
    free(sub->description);
    free(sub->created_at);
    subs_wake_clear(&sub->wake);
    free(sub);
}

struct subs_sub *subs__find(struct subs *s, const char *id) { return map_get(&s->by_id, id, strlen(id)); }

/* ================= links and the wake record ================= */

static struct subs_link *subs__get_link(struct subs_sub *sub, const char *path)
{
    return map_get(&sub->links, path, strlen(path));
}

/* Links path with kind (1 explicit, 0 glob); a new link starts acked at `acked`. */
static struct subs_link *subs__link(struct subs_sub *sub, const char *path, int explicit_kind, int64_t acked)
{
    struct subs_link *l = subs__get_link(sub, path);
    if (l && (explicit_kind ? l->explicit_link : l->glob_link))
        return l;
    if (l == NULL) {
        l = xcalloc(1, sizeof *l);
        l->path = xstrdup(path);
        l->acked = acked;
        l->snapshot = -1;
        map_put(&sub->links, path, strlen(path), l);
        if (sub->last)
            sub->last->next = l;
        else
            sub->first = l;
        sub->last = l;
    }
    if (explicit_kind)
        l->explicit_link = 1;
    else
        l->glob_link = 1;
    subs__log(sub->svc, json_pack("{s:s,s:s,s:s,s:s,s:I}", "t", "link", "id", sub->id, "path", path, "kind",
                                  explicit_kind ? "explicit" : "glob", "acked", (json_int_t)l->acked));
    return l;
}

void subs__link_explicit(struct subs_sub *sub, const char *path)
{
    subs__link(sub, path, 1, subs__tail(sub->svc, path));
}

void subs__unlink_explicit(struct subs_sub *sub, const char *path)
{
    struct subs_link *l = subs__get_link(sub, path);
    if (l == NULL || !l->explicit_link)
        return;
    l->explicit_link = 0;
    subs__log(sub->svc, json_pack("{s:s,s:s,s:s}", "t", "unlink", "id", sub->id, "path", path));
    if (l->glob_link)
        return;
    map_del(&sub->links, path, strlen(path));
    struct subs_link **pp = &sub->first, *prev = NULL;
    while (*pp != l)
        prev = *pp, pp = &(*pp)->next;
    *pp = l->next;
    if (sub->last == l)
        sub->last = prev;
    subs__link_free(NULL, l, NULL);
}

static void subs__set_acked(struct subs_sub *sub, struct subs_link *l, int64_t acked)
{
    if (acked <= l->acked)
        return;
    l->acked = acked;
    subs__log(sub->svc, json_pack("{s:s,s:s,s:s,s:I}", "t", "ack", "id", sub->id, "path", l->path, "acked",
                                  (json_int_t)acked));
}

static void subs__log_wake(struct subs_sub *sub)
{
    if (sub->svc->replaying)
        return;
    json_t *snap = json_object();
    for (struct subs_link *l = sub->first; l; l = l->next)
        if (l->snapshot >= 0)
            json_object_set_new(snap, l->path, json_integer(l->snapshot));
    const struct subs_wake *w = &sub->wake;
    subs__log(sub->svc, json_pack("{s:s,s:s,s:I,s:o,s:o,s:I,s:o}", "t", "wake", "id", sub->id, "gen",
                                  (json_int_t)w->generation, "wake_id",
                                  subs_wake_open_p(w) ? json_string(w->wake_id) : json_null(), "holder",
                                  w->holder ? json_string(w->holder) : json_null(), "lease_until",
                                  (json_int_t)w->lease_until_ms, "snapshot", snap));
}

/* ================= wakes ================= */

static int subs__has_pending(struct subs_sub *sub)
{
    for (struct subs_link *l = sub->first; l; l = l->next)
        if (subs__tail(sub->svc, l->path) > l->acked)
            return 1;
    return 0;
}

json_t *subs__stream_infos(struct subs_sub *sub, int with_tails)
{
    json_t *a = json_array();
    for (struct subs_link *l = sub->first; l; l = l->next) {
        json_t *o =
            json_pack("{s:s,s:s,s:o}", "path", l->path, "link_type", l->explicit_link ? "explicit" : "glob",
                      "acked_offset", subs__offset_json(l->acked));
        if (with_tails) {
            int64_t tail = subs__tail(sub->svc, l->path);
            json_object_set_new(o, "tail_offset", subs__offset_json(tail));
            json_object_set_new(o, "has_pending", json_boolean(tail > l->acked));
        }
        json_array_append_new(a, o);
    }
    return a;
}

static void subs__pump(struct subs_sub *sub);

static void subs__op_free(struct stream_op *op) { free(op); }

/* Appends the wake event a pull-wake worker pool watches for. Fire and forget: the event is a
 * hint (claim is what hands out work), so a failed append only delays the pool until its next
 * wake. A wake stream in another node's shard gets the same bytes through that node
 * (cfg.wake_remote); there, as here, the append is in no batch with the wake's state record. */
static void subs__wake_event(struct subs_sub *sub, const char *triggered_by)
{
    struct subs *s = sub->svc;
    size_t wlen = strlen(sub->wake_stream);
    json_t *ev =
        json_pack("{s:s,s:s,s:s,s:I,s:I}", "type", "wake", "subscription_id", sub->id, "stream", triggered_by,
                  "generation", (json_int_t)sub->wake.generation, "ts", (json_int_t)clock_wall_ms());
    char *body = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (s->wake_remote && !streams_shard_held(s->ss, streams_shard_of(s->ss, sub->wake_stream, wlen))) {
        s->wake_remote(s->wake_remote_arg, sub->wake_stream, body);
        free(body);
        return;
    }
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, sub->wake_stream, wlen, &how);
    if (st == NULL || how != STREAM_FOUND || stream_closed(st)) {
        log_warn("subs: %s: wake stream %s does not exist or is closed", sub->id, sub->wake_stream);
        free(body);
        return;
    }
    struct stream_op *op = xcalloc(1, sizeof *op);
    op->cb = subs__op_free;
    struct stream_append_args a = {
        .content_type = stream_content_type(st), .body = body, .body_len = strlen(body)};
    stream_append(s->ss, st, &a, op);
    if (!op->queued) {
        log_warn("subs: %s: cannot append to wake stream %s: %s", sub->id, sub->wake_stream,
                 op->result.message ? op->result.message : "refused");
        free(op);
    }
    free(body);
}

/* Opens a new wake over everything pending now. */
static void subs__open_wake(struct subs_sub *sub, const char *triggered_by)
{
    char id[SUBS_WAKE_ID_LEN + 1];
    unsigned char rnd[12];
    randombytes_buf(rnd, sizeof rnd);
    id[0] = 'w', id[1] = '_';
    sodium_bin2hex(id + 2, sizeof id - 2, rnd, sizeof rnd);
    subs_wake_open(&sub->wake, id);
    for (struct subs_link *l = sub->first; l; l = l->next)
        l->snapshot = subs__tail(sub->svc, l->path);
    if (sub->type == SUBS_WEBHOOK)
        subs_wake_extend(&sub->wake, clock_wall_ms(), sub->lease_ttl_ms);
    subs__log_wake(sub);
    if (sub->type == SUBS_WEBHOOK)
        subs__pump(sub);
    else
        subs__wake_event(sub, triggered_by);
}

static void subs__close_wake(struct subs_sub *sub)
{
    subs_wake_close(&sub->wake);
    for (struct subs_link *l = sub->first; l; l = l->next)
        l->snapshot = -1;
    subs__log_wake(sub);
}

static const char *subs__first_pending(struct subs_sub *sub)
{
    for (struct subs_link *l = sub->first; l; l = l->next)
        if (subs__tail(sub->svc, l->path) > l->acked)
            return l->path;
    return "";
}

/* After a wake closed: opens the next one when work is pending. Returns whether it did. */
static int subs__next_wake(struct subs_sub *sub)
{
    if (!subs__has_pending(sub))
        return 0;
    subs__open_wake(sub, subs__first_pending(sub));
    return 1;
}

static void subs__maybe_wake(struct subs_sub *sub, const char *triggered_by)
{
    if (subs_wake_open_p(&sub->wake) || !subs__has_pending(sub))
        return;
    subs__open_wake(sub, triggered_by);
}

/* ================= webhook delivery ================= */

/* The outcome of one attempt: status 0 when no HTTP answer arrived (connect, TLS, timeout, a
 * refused address, an answer over SUBS_WEBHOOK_MAX_RESPONSE). */
static void subs__delivered(void *arg, const struct curlx_http_answer *a)
{
    struct subs_sub *sub = arg;
    struct subs *s = sub->svc;
    int64_t gen = sub->inflight_gen;
    int status = (int)a->status;
    const char *body = a->body;
    size_t len = a->len;
    sub->inflight = NULL;
    if (a->error)
        log_info("subs: %s: webhook POST failed: %s", sub->id, a->error);
    if (status >= 200 && status < 300) {
        sub->failures = 0;
        sub->retry_at_ms = 0;
        sub->delivered_gen = gen;
        json_t *reply = json_loadb(body, len, 0, NULL);
        int done = json_is_true(json_object_get(reply, "done"));
        json_decref(reply);
        if (subs_wake_open_p(&sub->wake) && sub->wake.generation == gen) {
            if (done) {
                /* A synchronous "done" acknowledges exactly what the wake announced. */
                for (struct subs_link *l = sub->first; l; l = l->next)
                    if (l->snapshot >= 0)
                        subs__set_acked(sub, l, l->snapshot);
                subs__close_wake(sub);
                subs__next_wake(sub);
            } else {
                /* The receiver has it: its lease runs from now. */
                subs_wake_extend(&sub->wake, clock_wall_ms(), sub->lease_ttl_ms);
                subs__log_wake(sub);
            }
        }
    } else {
        sub->failures++;
        int shift = sub->failures - 1 < 16 ? sub->failures - 1 : 16;
        int64_t base = (int64_t)SUBS_RETRY_FIRST_MS << shift;
        if (base > SUBS_RETRY_MAX_MS)
            base = SUBS_RETRY_MAX_MS;
        int64_t jitter = (int64_t)randombytes_uniform((uint32_t)(base * 2 / 5 + 1)) - base / 5;
        sub->retry_at_ms = clock_wall_ms() + base + jitter;
        log_info("subs: %s: webhook answered %d, attempt %d, retrying in %" PRId64 " ms", sub->id, status,
                 sub->failures, base + jitter);
    }
    subs__pump(sub);
    (void)subs__flush(s, NULL);
    subs__arm(s);
}

/* The SSRF check on each address a delivery is about to dial (subs_url_check vetted the URL). */
static int subs__addr_ok(void *arg, const struct sockaddr *addr)
{
    struct subs_sub *sub = arg;
    if (subs_addr_allowed(addr, sub->loopback_only))
        return 1;
    log_warn("subs: %s: webhook connection refused by the address policy", sub->id);
    return 0;
}

/* Starts delivering the open wake unless it was delivered, is in flight, or waits for a retry. */
static void subs__pump(struct subs_sub *sub)
{
    struct subs *s = sub->svc;
    if (s->replaying || sub->type != SUBS_WEBHOOK || !subs_wake_open_p(&sub->wake) || sub->inflight ||
        sub->delivered_gen == sub->wake.generation ||
        (sub->retry_at_ms && clock_wall_ms() < sub->retry_at_ms))
        return;
    struct buf token = {0}, sig = {0};
    subs_token_mint(s->keys, sub->id, sub->wake.generation, clock_wall_ms() / 1000, &token);
    char *callback = subs__action_url(s, sub->id, "callback");
    json_t *msg = json_pack("{s:s,s:s,s:I,s:o,s:s,s:s}", "subscription_id", sub->id, "wake_id",
                            sub->wake.wake_id, "generation", (json_int_t)sub->wake.generation, "streams",
                            subs__stream_infos(sub, 1), "callback_url", callback, "callback_token", token.p);
    char *body = json_dumps(msg, JSON_COMPACT);
    subs_sign_header(s->keys, clock_wall_ms() / 1000, body, strlen(body), &sig);
    char *header = xasprintf("Webhook-Signature: %s", sig.p);
    sub->inflight_gen = sub->wake.generation;
    /* No redirects (curlx never follows them); the connect timeout is curlx's, half the whole. */
    sub->inflight = curlx_http_request(s->http, &(struct curlx_http_opts){
                                                    .method = "POST",
                                                    .url = sub->webhook_url,
                                                    .body = body,
                                                    .body_len = strlen(body),
                                                    .timeout_ms = SUBS_WEBHOOK_TIMEOUT_MS,
                                                    .on_done = subs__delivered,
                                                    .arg = sub,
                                                    .remote = 1,
                                                    .header = header,
                                                    .user_agent = "agentd-webhook/1",
                                                    .max_answer = SUBS_WEBHOOK_MAX_RESPONSE,
                                                    .allow_addr = subs__addr_ok,
                                                });
    free(header);
    free(body);
    free(callback);
    json_decref(msg);
    buf_free(&token);
    buf_free(&sig);
}

/* ================= timer: lease expiry and retries ================= */

/* A webhook lease only runs once the receiver has the wake; until then retries own the clock. */
static int subs__lease_runs(const struct subs_sub *sub)
{
    return subs_wake_open_p(&sub->wake) && sub->wake.lease_until_ms &&
           (sub->type == SUBS_PULL_WAKE || sub->delivered_gen == sub->wake.generation);
}

static void subs__expire(struct subs_sub *sub, int64_t now)
{
    if (subs__lease_runs(sub) && subs_wake_expired(&sub->wake, now)) {
        log_info("subs: %s: lease of wake %s (generation %" PRId64 ") expired", sub->id, sub->wake.wake_id,
                 sub->wake.generation);
        subs__close_wake(sub);
        subs__next_wake(sub);
    }
}

static void subs__on_timer(uv_timer_t *h)
{
    struct subs *s = h->data;
    int64_t now = clock_wall_ms();
    for (struct subs_sub *sub = s->first; sub; sub = sub->next) {
        subs__expire(sub, now);
        subs__pump(sub);
    }
    (void)subs__flush(s, NULL);
    subs__arm(s);
}

void subs__arm(struct subs *s)
{
    int64_t due = INT64_MAX;
    for (struct subs_sub *sub = s->first; sub; sub = sub->next) {
        if (subs__lease_runs(sub) && sub->wake.lease_until_ms < due)
            due = sub->wake.lease_until_ms;
        if (sub->retry_at_ms && !sub->inflight && subs_wake_open_p(&sub->wake) && sub->retry_at_ms < due)
            due = sub->retry_at_ms;
    }
    if (due == INT64_MAX) {
        uv_timer_stop(&s->timer);
        return;
    }
    int64_t wait = due - clock_wall_ms();
    uv_timer_start(&s->timer, subs__on_timer, wait > 0 ? (uint64_t)wait : 0, 0);
}

/* ================= requests from subs_http ================= */

/* map_each callback over the known paths: links those the new subscription's pattern matches, at
 * their current tails (history before the subscription is not its work). */
static void subs__link_known(const char *path, void *value, void *arg)
{
    struct subs_sub *sub = arg;
    if (subs_glob_match(sub->pattern, path))
        subs__link(sub, path, 0, subs__tail(sub->svc, path));
}

void subs__create(struct subs *s, struct subs_sub *sub)
{
    char now[32];
    sub->svc = s;
    if (sub->created_at == NULL) {
        subs__now_iso(now);
        sub->created_at = xstrdup(now);
    }
    if (sub->webhook_url)
        (void)subs_url_check(sub->webhook_url, &sub->loopback_only);
    map_put(&s->by_id, sub->id, strlen(sub->id), sub);
    sub->prev = s->last;
    if (s->last)
        s->last->next = sub;
    else
        s->first = sub;
    s->last = sub;
    subs__log(s, json_pack("{s:s,s:s,s:s,s:o}", "t", "sub", "id", sub->id, "created_at", sub->created_at,
                           "config", subs__config_json(sub)));
    if (s->replaying)
        return; /* links come from their own records */
    for (size_t i = 0; i < sub->nstreams; i++)
        subs__link_explicit(sub, sub->streams[i]);
    if (sub->pattern)
        map_each(&s->known, subs__link_known, sub);
}

void subs__delete(struct subs *s, struct subs_sub *sub)
{
    map_del(&s->by_id, sub->id, strlen(sub->id));
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        s->first = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    else
        s->last = sub->prev;
    subs__log(s, json_pack("{s:s,s:s}", "t", "del", "id", sub->id));
    subs__sub_free(sub);
}

static enum subs_err subs__check_token(struct subs_sub *sub, const char *token, size_t len,
                                       json_t *generation, const char *wake_id, const char **why)
{
    int64_t token_gen;
    int rc = subs_token_verify(sub->svc->keys, token, len, sub->id, clock_wall_ms() / 1000, &token_gen);
    if (rc == -ETIMEDOUT)
        return *why = "token expired", SUBS_E_TOKEN_EXPIRED;
    if (rc != 0)
        return *why = "token invalid", SUBS_E_TOKEN_INVALID;
    int64_t req_gen = json_is_integer(generation) ? json_integer_value(generation) : -1;
    if (subs_wake_check(&sub->wake, token_gen, req_gen, wake_id) != SUBS_FENCE_OK)
        return *why = "wake generation is stale", SUBS_E_FENCED;
    return SUBS_OK;
}

enum subs_err subs__settle(struct subs_sub *sub, const char *token, size_t token_len, json_t *generation,
                           const char *wake_id, const struct subs_ack *acks, size_t nacks, int done,
                           int release, int *next_wake, const char **why)
{
    int64_t now = clock_wall_ms();
    *next_wake = 0;
    subs__expire(sub, now);
    enum subs_err e = subs__check_token(sub, token, token_len, generation, wake_id, why);
    if (e != SUBS_OK)
        return e;
    /* Validate every ack before applying any, so a request is applied whole or not at all. */
    int64_t *offsets = xcalloc(nacks + 1, sizeof *offsets);
    for (size_t i = 0; i < nacks && e == SUBS_OK; i++) {
        struct subs_link *l = acks[i].stream ? subs__get_link(sub, acks[i].stream) : NULL;
        if (l == NULL)
            *why = "ack references an unknown subscription stream", e = SUBS_E_OFFSET;
        else if (acks[i].offset == NULL || stream_offset_parse(acks[i].offset, &offsets[i]) != 0)
            *why = "ack offset must be a stream offset (not -1)", e = SUBS_E_OFFSET;
        else if (offsets[i] < l->acked)
            *why = "ack offset regresses the committed cursor", e = SUBS_E_OFFSET;
        else if (offsets[i] > subs__tail(sub->svc, l->path))
            *why = "ack offset is beyond the stream tail", e = SUBS_E_OFFSET;
    }
    for (size_t i = 0; i < nacks && e == SUBS_OK; i++)
        subs__set_acked(sub, subs__get_link(sub, acks[i].stream), offsets[i]);
    free(offsets);
    if (e != SUBS_OK)
        return e;
    if (done || release) {
        subs__close_wake(sub);
        *next_wake = subs__next_wake(sub);
    } else {
        subs_wake_extend(&sub->wake, now, sub->lease_ttl_ms);
        subs__log_wake(sub);
    }
    subs__arm(sub->svc);
    return SUBS_OK;
}

enum subs_err subs__claim(struct subs_sub *sub, const char *worker, char **token, const char **why)
{
    int64_t now = clock_wall_ms();
    subs__expire(sub, now);
    if (sub->wake.holder)
        return *why = "the subscription's wake is claimed", SUBS_E_CLAIMED;
    if (!subs__has_pending(sub))
        return *why = "the subscription has no pending work", SUBS_E_NO_WORK;
    if (!subs_wake_open_p(&sub->wake))
        subs__open_wake(sub, subs__first_pending(sub));
    if (subs_wake_claim(&sub->wake, worker, now, sub->lease_ttl_ms) != 0)
        return *why = "the subscription's wake is claimed", SUBS_E_CLAIMED;
    subs__log_wake(sub);
    subs__arm(sub->svc);
    struct buf t = {0};
    subs_token_mint(sub->svc->keys, sub->id, sub->wake.generation, now / 1000, &t);
    *token = t.p;
    return SUBS_OK;
}

json_t *subs__describe(struct subs_sub *sub)
{
    struct subs *s = sub->svc;
    json_t *o = json_pack("{s:s,s:s,s:s}", "id", sub->id, "subscription_id", sub->id, "type",
                          sub->type == SUBS_WEBHOOK ? "webhook" : "pull-wake");
    if (sub->pattern)
        json_object_set_new(o, "pattern", json_string(sub->pattern));
    json_object_set_new(o, "streams", subs__stream_infos(sub, 0));
    if (sub->webhook_url) {
        char *jwks = subs__jwks_url(s);
        json_object_set_new(o, "webhook",
                            json_pack("{s:s,s:{s:s,s:s,s:s}}", "url", sub->webhook_url, "signing", "alg",
                                      "ed25519", "kid", subs_keys_kid(s->keys), "jwks_url", jwks));
        free(jwks);
    }
    if (sub->wake_stream)
        json_object_set_new(o, "wake_stream", json_string(sub->wake_stream));
    json_object_set_new(o, "lease_ttl_ms", json_integer(sub->lease_ttl_ms));
    json_object_set_new(o, "created_at", json_string(sub->created_at));
    json_object_set_new(o, "status", json_string(sub->failures ? "failed" : "active"));
    if (sub->description)
        json_object_set_new(o, "description", json_string(sub->description));
    return o;
}

/* ================= the streams observer ================= */

void subs_observe(void *arg, const char *path, int64_t tail)
{
    struct subs *s = arg;
    size_t n = strlen(path);
    if ((n >= 4 && !memcmp(path, "__ds", 4) && (n == 4 || path[4] == '/')))
        return; /* the reserved namespace, our own state included */
    if (!map_get(&s->known, path, n))
        map_put(&s->known, path, n, (void *)1);
    for (struct subs_sub *sub = s->first; sub; sub = sub->next) {
        if (sub->pattern && subs_glob_match(sub->pattern, path))
            subs__link(sub, path, 0, -1); /* a stream new to the pattern is pending from its start */
        if (subs__get_link(sub, path))
            subs__maybe_wake(sub, path);
    }
    (void)subs__flush(s, NULL);
    subs__arm(s);
}

void subs__remote_tail(struct subs *s, const char *path, int64_t tail)
{
    size_t n = strlen(path);
    int64_t *t = map_get(&s->remote, path, n);
    if (t == NULL) {
        t = xcalloc(1, sizeof *t);
        map_put(&s->remote, path, n, t);
        if (!map_get(&s->known, path, n))
            map_put(&s->known, path, n, (void *)1);
    }
    if (tail > *t)
        *t = tail;
}

void subs_observe_remote(struct subs *s, const char *path, int64_t tail)
{
    subs__remote_tail(s, path, tail);
    subs_observe(s, path, subs__tail(s, path));
}

void subs__wake_all(struct subs *s)
{
    for (struct subs_sub *sub = s->first; sub; sub = sub->next)
        subs__maybe_wake(sub, subs__first_pending(sub));
    (void)subs__flush(s, NULL);
    subs__arm(s);
}

/* ================= persistence ================= */

static void subs__flushed(struct stream_op *op)
{
    struct subs *s = op->arg;
    int failed = op->result.status == STREAM_STORE_ERROR;
    free(op);
    if (failed)
        subs__reload(s);
}

int subs__flush(struct subs *s, struct stream_op *op)
{
    if (json_array_size(s->log) == 0)
        return 0;
    char *body = json_dumps(s->log, JSON_COMPACT);
    json_array_clear(s->log);
    int own = op == NULL, rc = 1;
    if (own) {
        op = xcalloc(1, sizeof *op);
        op->cb = subs__flushed;
        op->arg = s;
    }
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, SUBS_STATE_STREAM, strlen(SUBS_STATE_STREAM), &how);
    struct stream_append_args a = {
        .content_type = "application/json", .body = body, .body_len = strlen(body)};
    if (st == NULL || how != STREAM_FOUND)
        op->result.message = "the state stream is missing";
    else
        stream_append(s->ss, st, &a, op);
    if (!op->queued) {
        log_error("subs: cannot record subscription state: %s",
                  op->result.message ? op->result.message : "refused");
        if (own)
            free(op);
        rc = -EIO;
    }
    free(body);
    if (rc < 0)
        subs__reload(s);
    return rc;
}

static struct subs_sub *subs__record_sub(struct subs *s, json_t *rec)
{
    return subs__find(s, json_string_value(json_object_get(rec, "id")) ?: "");
}

/* Applies one state record (replaying is set, so nothing is recorded again). */
static void subs__apply(struct subs *s, json_t *rec)
{
    const char *t = json_string_value(json_object_get(rec, "t")) ?: "";
    const char *path = json_string_value(json_object_get(rec, "path"));
    struct subs_sub *sub = subs__record_sub(s, rec);
    if (!strcmp(t, "sub")) {
        struct subs_sub *fresh;
        const char *id = json_string_value(json_object_get(rec, "id"));
        const char *why = id ? subs__parse_config(json_object_get(rec, "config"), id, &fresh) : "no id";
        if (why) {
            log_error("subs: skipping an unreadable subscription record: %s", why);
            return;
        }
        if (sub)
            subs__delete(s, sub);
        fresh->created_at = xstrdup(json_string_value(json_object_get(rec, "created_at")) ?: "");
        subs__create(s, fresh);
    } else if (sub == NULL) {
        return; /* a record of a subscription deleted later in the stream */
    } else if (!strcmp(t, "del")) {
        subs__delete(s, sub);
    } else if (!strcmp(t, "link") && path) {
        const char *kind = json_string_value(json_object_get(rec, "kind")) ?: "";
        subs__link(sub, path, !strcmp(kind, "explicit"), json_integer_value(json_object_get(rec, "acked")));
    } else if (!strcmp(t, "unlink") && path) {
        subs__unlink_explicit(sub, path);
    } else if (!strcmp(t, "ack") && path) {
        struct subs_link *l = subs__get_link(sub, path);
        if (l)
            subs__set_acked(sub, l, json_integer_value(json_object_get(rec, "acked")));
    } else if (!strcmp(t, "wake")) {
        struct subs_wake *w = &sub->wake;
        const char *wake_id = json_string_value(json_object_get(rec, "wake_id"));
        const char *holder = json_string_value(json_object_get(rec, "holder"));
        subs_wake_close(w);
        w->generation = json_integer_value(json_object_get(rec, "gen"));
        if (wake_id && strlen(wake_id) == SUBS_WAKE_ID_LEN)
            memcpy(w->wake_id, wake_id, SUBS_WAKE_ID_LEN + 1);
        w->holder = holder ? xstrdup(holder) : NULL;
        w->lease_until_ms = json_integer_value(json_object_get(rec, "lease_until"));
        json_t *snap = json_object_get(rec, "snapshot");
        for (struct subs_link *l = sub->first; l; l = l->next) {
            json_t *v = json_object_get(snap, l->path);
            l->snapshot = json_is_integer(v) ? json_integer_value(v) : -1;
        }
    }
}

/* Reads the state stream from the start and applies every record. */
static int subs__replay(struct subs *s, struct stream *st, char *err, size_t errlen)
{
    int64_t at = 0, tail = stream_tail(st), next;
    size_t nrec = 0;
    s->replaying = 1;
    while (at < tail) {
        struct buf b = {0};
        int rc = stream_read(s->ss, st, at, 1 << 20, &b, &next);
        if (rc != 0 || next <= at) {
            buf_free(&b);
            s->replaying = 0;
            snprintf(err, errlen, "cannot read %s: %s", SUBS_STATE_STREAM,
                     rc ? strerror(-rc) : "no progress");
            return rc ? rc : -EIO;
        }
        stream_json_wrap(&b);
        json_error_t jerr;
        json_t *arr = json_loadb(b.p, b.len, 0, &jerr);
        buf_free(&b);
        if (!json_is_array(arr)) {
            json_decref(arr);
            s->replaying = 0;
            snprintf(err, errlen, "%s holds invalid JSON: %s", SUBS_STATE_STREAM, jerr.text);
            return -EINVAL;
        }
        size_t i;
        json_t *rec;
        json_array_foreach (arr, i, rec) {
            /* A record is a batch of mutations appended as one message. */
            size_t j;
            json_t *one;
            if (json_is_array(rec))
                json_array_foreach (rec, j, one)
                    subs__apply(s, one), nrec++;
            else
                subs__apply(s, rec), nrec++;
        }
        json_decref(arr);
        at = next;
    }
    s->replaying = 0;
    log_info("subs: replayed %zu state records, %zu subscriptions", nrec, (size_t)s->by_id.count);
    return 0;
}

/*
 * Memory follows what is stored. After a state write failed (refused, or its commit or fsync
 * failed: its client got a 5xx), the changes it held are in memory only, and a restart would not
 * know them: a subscription answered 507 would still be listed, a deletion answered 507 would
 * have happened. So the subscriptions are rebuilt from the state stream, as a restart rebuilds
 * them, and open webhook wakes are delivered again (in-flight deliveries belonged to the old
 * objects). Nothing is recorded here: a disk that stays full must not turn this into a loop.
 */
void subs__reload(struct subs *s)
{
    char err[256];
    if (s->closing)
        return; /* subs_free ran; only its timer's close callback is left */
    log_warn("subs: a state write failed; reloading the subscriptions from %s", SUBS_STATE_STREAM);
    json_array_clear(s->log);
    s->replaying = 1; /* deleting to rebuild, not a recorded deletion */
    while (s->first)
        subs__delete(s, s->first);
    s->replaying = 0;
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, SUBS_STATE_STREAM, strlen(SUBS_STATE_STREAM), &how);
    if (st && how == STREAM_FOUND && stream_is_json(st) && subs__replay(s, st, err, sizeof err) != 0)
        log_error("subs: %s", err);
    json_array_clear(s->log);
    for (struct subs_sub *sub = s->first; sub; sub = sub->next)
        subs__pump(sub);
    subs__arm(s);
}

/* ================= lifetime ================= */

static void subs__created(struct stream_op *op)
{
    if (op->result.status != STREAM_CREATED && op->result.status != STREAM_OK)
        log_error("subs: creating %s failed; subscriptions will not persist", SUBS_STATE_STREAM);
    free(op);
}

int subs_new(struct subs **out, uv_loop_t *loop, struct streams *ss, const struct subs_config *cfg, char *err,
             size_t errlen)
{
    int rc;
    struct subs *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->ss = ss;
    s->base_url = xstrdup(cfg->base_url);
    s->log = json_array();
    s->scan = cfg->scan;
    s->scan_arg = cfg->scan_arg;
    s->wake_remote = cfg->wake_remote;
    s->wake_remote_arg = cfg->wake_remote_arg;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->handles = 1;
    if ((rc = subs_keys_load(&s->keys, cfg->data_dir, err, errlen)) != 0)
        goto fail;
    if ((rc = curlx_http_new(&s->http, loop)) != 0) {
        snprintf(err, errlen, "cannot initialise libcurl for webhooks");
        goto fail;
    }

    enum stream_lookup how;
    struct stream *st = streams_lookup(ss, SUBS_STATE_STREAM, strlen(SUBS_STATE_STREAM), &how);
    if (st && how == STREAM_FOUND) {
        if (!stream_is_json(st)) {
            snprintf(err, errlen, "%s exists but is not a JSON stream", SUBS_STATE_STREAM);
            rc = -EINVAL;
            goto fail;
        }
        if ((rc = subs__replay(s, st, err, errlen)) != 0)
            goto fail;
    } else {
        struct stream_create_args a = {.content_type = "application/json", .ttl_s = -1, .expires_at_ms = -1};
        struct stream_op *op = xcalloc(1, sizeof *op);
        op->cb = subs__created;
        stream_create(ss, SUBS_STATE_STREAM, strlen(SUBS_STATE_STREAM), &a, op);
        if (!op->queued) {
            snprintf(err, errlen, "cannot create %s: %s", SUBS_STATE_STREAM,
                     op->result.message ? op->result.message : "refused");
            free(op);
            rc = -EIO;
            goto fail;
        }
    }

    /* Resume: expire leases that ran out while we were down, redeliver open webhook wakes, and
     * wake subscriptions whose streams grew after their last recorded state (a crash between a
     * commit and our record of it). */
    for (struct subs_sub *sub = s->first; sub; sub = sub->next) {
        subs__expire(sub, clock_wall_ms());
        subs__pump(sub);
    }
    subs__wake_all(s);
    subs__repair_start(s);
    *out = s;
    return 0;
fail:
    subs_free(s);
    return rc;
}

static void subs__free_value(const char *key, void *value, void *arg) { free(value); }

void subs__release(struct subs *s)
{
    if (s->handles > 0 || s->repair_busy)
        return;
    free(s->found); /* the rows were freed as they were read */
    free(s->repair_prefix);
    free(s->base_url);
    free(s);
}

void subs__handle_closed(uv_handle_t *h)
{
    struct subs *s = h->data;
    s->handles--;
    subs__release(s);
}

int subs_working(const struct subs *s) { return s && s->repair_busy; }

void subs_free(struct subs *s)
{
    if (s == NULL)
        return;
    s->closing = 1;
    while (s->first) {
        s->replaying = 1; /* deleting to free, not a recorded deletion */
        subs__delete(s, s->first);
    }
    map_clear(&s->by_id);
    map_clear(&s->known);
    map_each(&s->remote, subs__free_value, NULL);
    map_clear(&s->remote);
    json_decref(s->log);
    curlx_http_free(s->http);
    subs_keys_free(s->keys);
    subs__repair_stop(s);
    uv_close((uv_handle_t *)&s->timer, subs__handle_closed);
}
