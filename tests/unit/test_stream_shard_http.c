/*
 * Unit tests of what HTTP clients see when a stream's shard is dropped (doc/SHARDING-PLAN.md §4): a
 * real server on port 0 with the stream resource (stream_http.c) on a registry of 4 shards (SQLite),
 * driven by client threads with raw HTTP/1.1. A long-poll waiting on a stream of the shard dropped
 * is answered 503 shard_moved with Retry-After: 0 (not 404: the stream was not deleted), an SSE
 * response ends (the client resumes from its offset), and every request for the shard is answered
 * 503 shard_moved until it is loaded again; other shards answer as before.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "http/http.h"
#include "rawhttp.h"
#include "store/store.h"
#include "stream/stream.h"
#include "stream/stream_http.h"
#include "tap.h"

#define NSHARDS 4

static uv_loop_t loop;
static struct store *store;
static struct streams *ss;
static struct http_server *srv;
static struct stream_http *sh;
static uv_timer_t tick;
static uv_async_t client_done;
static int port, k;
static char pa[32], pb[32];
/* 0: waiting for the two live readers; 1: dropped; 2: the client asks for a reload; 3: reloaded */
static atomic_int phase;

static void done_cb(struct stream_op *op) {}

static void create(const char *path, const char *body)
{
    struct stream_create_args a = {.content_type = "text/plain",
                                   .ttl_s = -1,
                                   .expires_at_ms = -1,
                                   .body = body,
                                   .body_len = strlen(body)};
    struct stream_op op = {.cb = done_cb};
    if (stream_create(ss, path, strlen(path), &a, &op) != STREAM_CREATED)
        printf("# could not create %s\n", path);
    streams_flush(ss);
}

/* The loop's side: drops A's shard once both live readers wait on it, loads it when asked. */
static void on_tick(uv_timer_t *t)
{
    if (atomic_load(&phase) == 0 && streams_subscriber_count(ss) == 2) {
        ok(!streams_shard_busy(ss, k), "nothing of A's shard is in flight");
        streams_drop_shard(ss, k);
        atomic_store(&phase, 1);
    } else if (atomic_load(&phase) == 2) {
        uint64_t bits[STORE_SHARD_WORDS] = {0};
        bits[k / 64] |= 1ull << (k % 64);
        is_int(streams_load_shards(ss, bits), 0, "A's shard loads again");
        atomic_store(&phase, 3);
    }
}

/* ---- the client side (threads, blocking sockets) ---- */

static struct rawhttp_response request(const char *method, const char *path, const char *query,
                                       const char *body)
{
    char *raw = xasprintf("%s /v1/stream/%s%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                          method, path, query, body ? strlen(body) : 0, body ? body : "");
    struct rawhttp_response r = rawhttp_exchange(port, raw, strlen(raw));
    free(raw);
    return r;
}

static const char *error_code(const struct rawhttp_response *r)
{
    static char code[64];
    const char *p = strstr(r->body, "{\"error\":{\"code\":\"");
    code[0] = '\0';
    if (p) {
        p += strlen("{\"error\":{\"code\":\"");
        snprintf(code, sizeof code, "%.*s", (int)strcspn(p, "\""), p);
    }
    return code;
}

struct live {
    const char *query;
    struct rawhttp_response r;
    uint64_t ms;
};

static void *live_main(void *arg)
{
    struct live *l = arg;
    uint64_t t0 = clock_mono_us();
    l->r = request("GET", pa, l->query, NULL);
    l->ms = (clock_mono_us() - t0) / 1000;
    return NULL;
}

static void is_moved(struct rawhttp_response r, const char *what)
{
    is_int(r.status, 503, "%s: 503", what);
    if (strncmp(what, "a HEAD", 6) != 0) /* a HEAD's answer has no body */
        is_str(error_code(&r), "shard_moved", "%s: shard_moved", what);
    const char *ra = rawhttp_header(&r, "Retry-After");
    is_str(ra, "0", "%s: Retry-After: 0", what);
    rawhttp_free(&r);
}

static void client_checks(void)
{
    char q[128], off[STREAM_OFFSET_LEN + 1];
    stream_offset_format(3, off);
    struct live lp = {.query = q}, sse = {.query = NULL};
    char qs[128];
    snprintf(q, sizeof q, "?offset=%s&live=long-poll", off);
    snprintf(qs, sizeof qs, "?offset=%s&live=sse", off);
    sse.query = qs;
    pthread_t t1, t2;
    pthread_create(&t1, NULL, live_main, &lp);
    pthread_create(&t2, NULL, live_main, &sse);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    is_int(atomic_load(&phase), 1, "the live readers were answered after the drop");
    is_moved(lp.r, "a long-poll on A when its shard is dropped");
    ok(lp.ms < 5000, "... at once, not at its 20 s timeout (%llu ms)", (unsigned long long)lp.ms);
    is_int(sse.r.status, 200, "an SSE reader of A had its 200");
    ok(sse.ms < 5000, "... and its response ends with the drop (%llu ms), so it resumes from its offset",
       (unsigned long long)sse.ms);
    ok(!strstr(sse.r.body, "event: data"), "... having sent no data (none was appended)");
    rawhttp_free(&sse.r);

    is_moved(request("GET", pa, "?offset=-1", NULL), "a catch-up read of A");
    is_moved(request("HEAD", pa, "", NULL), "a HEAD of A");
    is_moved(request("POST", pa, "", "a1."), "an append to A");
    is_moved(request("PUT", pa, "", NULL), "a create at A's path");
    is_moved(request("DELETE", pa, "", NULL), "a delete of A");
    struct rawhttp_response r = request("GET", pb, "?offset=-1", NULL);
    is_int(r.status, 200, "B, in another shard, reads");
    is_str(r.body, "b0.", "... its bytes");
    rawhttp_free(&r);
    r = request("POST", pb, "", "b1.");
    ok(r.status == 200 || r.status == 204, "... and takes an append (%d)", r.status);
    rawhttp_free(&r);

    atomic_store(&phase, 2);
    while (atomic_load(&phase) != 3)
        usleep(1000);
    r = request("GET", pa, "?offset=-1", NULL);
    is_int(r.status, 200, "once the shard is loaded again, A reads");
    is_str(r.body, "a0.", "... the same bytes");
    rawhttp_free(&r);
    r = request("POST", pa, "", "a1.");
    ok(r.status == 200 || r.status == 204, "... and takes an append (%d)", r.status);
    rawhttp_free(&r);
}

static void *client_main(void *arg)
{
    client_checks();
    uv_async_send(&client_done);
    return NULL;
}

static void on_client_done(uv_async_t *a) { uv_stop(&loop); }

int main(void)
{
    char dir[64], err[256];
    snprintf(dir, sizeof dir, "/tmp/agentd-shard-http-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    uv_loop_init(&loop);
    struct streams_config cfg = {
        .max_append = 1 << 20, .read_chunk = 1 << 20, .cache_bytes = 1 << 20, .shards = NSHARDS};
    struct http_config hcfg = {
        .host = "127.0.0.1", .port = 0, .max_body = 1 << 20, .io_timeout_ms = 30000, .max_queued = 1 << 20};
    if (store_open(&store, dir, STORE_OS, err, sizeof err) != 0 ||
        streams_new(&ss, &loop, store, &cfg, err, sizeof err) != 0 ||
        http_server_new(&srv, &loop, &hcfg, err, sizeof err) != 0) {
        printf("Bail out! %s\n", err);
        return 1;
    }
    port = http_server_port(srv);
    struct stream_http_config shcfg = {
        .long_poll_timeout_ms = 20000, .sse_max_ms = 20000, .max_append = 1 << 20, .read_chunk = 1 << 20};
    sh = stream_http_new(srv, &loop, ss, &shcfg);
    k = store_shard_of("t/a", 3, NSHARDS);
    snprintf(pa, sizeof pa, "t/a");
    for (int n = 0; store_shard_of(pb, strlen(pb), NSHARDS) == k || n == 0; n++)
        snprintf(pb, sizeof pb, "t/b%d", n);
    create(pa, "a0.");
    create(pb, "b0.");
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    uv_async_init(&loop, &client_done, on_client_done);

    pthread_t client;
    pthread_create(&client, NULL, client_main, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(client, NULL);

    uv_close((uv_handle_t *)&tick, NULL);
    uv_close((uv_handle_t *)&client_done, NULL);
    http_server_shutdown(srv);
    for (int i = 0; i < 200 && http_server_drain(srv) > 0; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    stream_http_free(sh);
    http_server_free(srv);
    streams_free(ss);
    for (int i = 0; i < 10; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    store_free(store);
    is_int(uv_loop_close(&loop), 0, "the loop closes cleanly (no leaked handles)");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
