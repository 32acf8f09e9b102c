/*
 * Unit tests for src/curlx: libcurl is not mapped until curlx_load, every function is resolved once
 * it is, loading twice is harmless, and a library that is not libcurl (a libcurl.so.4 without the
 * URL API) is refused as a whole: every curlx_ pointer stays NULL and the reason names the missing
 * function. That last case runs in a re-executed copy of this test whose LD_LIBRARY_PATH puts a
 * stand-in libcurl.so.4 (a copy of libz) first.
 *
 * curlx_http against agentd's own HTTP server on the same loop: an answer comes back whole, and the
 * options of a remote request (the webhooks') hold: the extra header and User-Agent are sent, the
 * caller's address check runs before the connection and can refuse it, and an answer over
 * max_answer fails the request.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "curlx/curlx.h"
#include "curlx/curlx_http.h"
#include "http/http.h"
#include "tap.h"

/* Is a file whose name contains `name` mapped into this process? */
static int mapped(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        found |= strstr(line, name) != NULL;
    if (f)
        fclose(f);
    return found;
}

/* The path of the first mapped file whose name contains `name`, into out; 0 when none. */
static int mapped_path(const char *name, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    while (!found && f && fgets(line, sizeof line, f)) {
        char *slash = strchr(line, '/');
        if (slash && strstr(slash, name)) {
            slash[strcspn(slash, "\n")] = '\0';
            snprintf(out, len, "%s", slash);
            found = 1;
        }
    }
    if (f)
        fclose(f);
    return found;
}

/* In the re-executed copy: the stand-in library must be refused. Exit status: a bit per failure. */
static int stand_in_child(void)
{
    int bad = 0;
    if (curlx_load() != -ENOENT)
        bad |= 1;
    if (strstr(curlx_load_error(), "curl_global_init") == NULL)
        bad |= 2;
    if (curlx_global_init != NULL || curlx_url != NULL || curlx_easy_perform != NULL)
        bad |= 4;
    if (curlx_load() != -ENOENT) /* a failed load is tried again, and fails again */
        bad |= 8;
    return bad;
}

static void test_stand_in(const char *self)
{
    char libz[PATH_MAX], dir[] = "/tmp/test_curlx.XXXXXX", lib[PATH_MAX + 32];
    if (!ok(mapped_path("libz.so", libz, sizeof libz) && mkdtemp(dir) != NULL,
            "a shared library to stand in for libcurl (libz, which the test links)"))
        return;
    snprintf(lib, sizeof lib, "%s/libcurl.so.4", dir);
    char *cmd = xasprintf("cp '%s' '%s'", libz, lib);
    int copied = system(cmd) == 0;
    free(cmd);
    fflush(stdout);
    pid_t pid = copied ? fork() : -1;
    if (pid == 0) {
        setenv("LD_LIBRARY_PATH", dir, 1);
        setenv("TEST_CURLX_STAND_IN", "1", 1);
        execl(self, self, (char *)NULL);
        _exit(100);
    }
    int status = -1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    ok(code == 0,
       "a libcurl.so.4 without libcurl's functions is refused as a whole: -ENOENT, the reason "
       "names the missing function, every pointer stays NULL, a retry fails again (status %d)",
       code);
    unlink(lib);
    rmdir(dir);
}

/* ================= curlx_http ================= */

/* Answers with the request's Webhook-Signature and User-Agent, "sig|agent". */
static void echo_headers(struct http_req *req, void *arg)
{
    size_t sl = 0, ul = 0;
    const char *sig = http_req_header(req, "webhook-signature", &sl);
    const char *agent = http_req_header(req, "user-agent", &ul);
    struct buf b = {0};
    buf_printf(&b, "%.*s|%.*s", (int)sl, sig ? sig : "", (int)ul, agent ? agent : "");
    http_res_send(req, 200, b.p, b.len);
    buf_free(&b);
}

struct outcome {
    int done, dialled, allow;
    long status;
    char body[256];
    int has_error;
};

static void on_done(void *arg, const struct curlx_http_answer *a)
{
    struct outcome *o = arg;
    o->done = 1;
    o->status = a->status;
    o->has_error = a->error != NULL;
    snprintf(o->body, sizeof o->body, "%s", a->body ? a->body : "");
}

static int allow_addr(void *arg, const struct sockaddr *addr)
{
    struct outcome *o = arg;
    o->dialled++;
    return addr->sa_family == AF_INET && o->allow;
}

static void request(uv_loop_t *loop, struct curlx_http *h, struct curlx_http_opts o, struct outcome *out)
{
    o.on_done = on_done;
    o.arg = out;
    curlx_http_request(h, &o);
    for (int i = 0; i < 10000 && !out->done; i++)
        uv_run(loop, UV_RUN_ONCE);
}

static void test_http(void)
{
    uv_loop_t loop;
    struct http_server *srv;
    struct curlx_http *h;
    char err[256] = "", url[64];
    struct http_config cfg = {
        .host = "127.0.0.1", .port = 0, .max_body = 1024, .io_timeout_ms = 5000, .max_queued = 1 << 20};
    uv_loop_init(&loop);
    if (!ok(http_server_new(&srv, &loop, &cfg, err, sizeof err) == 0, "a server to ask (%s)", err))
        return;
    http_route(srv, "/echo", echo_headers, NULL);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", http_server_port(srv));
    ok(curlx_http_new(&h, &loop) == 0, "curlx_http_new");

    struct outcome plain = {0};
    request(&loop, h, (struct curlx_http_opts){.url = url, .timeout_ms = 5000}, &plain);
    ok(plain.done && plain.status == 200 && !plain.has_error, "a GET is answered (%ld)", plain.status);
    is_str(plain.body, "|agentd/1", "no extra header; the default User-Agent");

    /* Connections are kept for reuse within one struct curlx_http, and the address check runs on
     * each new one: the remote requests get one of their own, the refused one first. */
    struct curlx_http *hr;
    ok(curlx_http_new(&hr, &loop) == 0, "a second curlx_http, for the remote requests");
    struct outcome refused = {.allow = 0};
    request(&loop, hr,
            (struct curlx_http_opts){.url = url, .timeout_ms = 5000, .remote = 1, .allow_addr = allow_addr},
            &refused);
    ok(refused.done && refused.status == 0 && refused.has_error, "a refused address fails the request");
    ok(refused.dialled >= 1, "the check saw the address");

    struct outcome remote = {.allow = 1};
    request(&loop, hr,
            (struct curlx_http_opts){.method = "POST",
                                     .url = url,
                                     .body = "{}",
                                     .body_len = 2,
                                     .timeout_ms = 5000,
                                     .remote = 1,
                                     .header = "Webhook-Signature: t=1,v1=x",
                                     .user_agent = "agentd-webhook/1",
                                     .allow_addr = allow_addr},
            &remote);
    ok(remote.done && remote.status == 200, "a remote POST is answered (%ld)", remote.status);
    is_str(remote.body, "t=1,v1=x|agentd-webhook/1", "its header and User-Agent were sent");
    ok(remote.dialled >= 1, "the address check ran before connecting");

    struct outcome big = {.allow = 1};
    request(&loop, h, (struct curlx_http_opts){.url = url, .timeout_ms = 5000, .max_answer = 4}, &big);
    ok(big.done && big.status == 0 && big.has_error, "an answer over max_answer fails the request");

    curlx_http_free(h);
    curlx_http_free(hr);
    http_server_shutdown(srv);
    for (int i = 0; i < 100 && http_server_drain(srv) > 0; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    http_server_free(srv);
    for (int i = 0; i < 10; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    is_int(uv_loop_close(&loop), 0, "the loop closes: no handle leaked");
}

int main(void)
{
    if (getenv("TEST_CURLX_STAND_IN"))
        return stand_in_child();

    ok(!mapped("libcurl"), "libcurl is not mapped before curlx_load");
    ok(curlx_global_init == NULL && curlx_easy_init == NULL && curlx_url_set == NULL,
       "the curlx_ pointers are NULL before curlx_load");
    is_str(curlx_load_error(), "", "no load error before any load");
    if (!ok(curlx_load() == 0, "curlx_load loads libcurl.so.4 (%s)", curlx_load_error()))
        return done_testing();
    ok(mapped("libcurl"), "libcurl is mapped after it");
    ok(curlx_global_init && curlx_global_cleanup && curlx_free && curlx_easy_init && curlx_easy_cleanup &&
           curlx_easy_reset && curlx_easy_perform && curlx_easy_strerror && curlx_easy_setopt &&
           curlx_easy_getinfo && curlx_multi_init && curlx_multi_cleanup && curlx_multi_setopt &&
           curlx_multi_add_handle && curlx_multi_remove_handle && curlx_multi_assign &&
           curlx_multi_socket_action && curlx_multi_info_read && curlx_slist_append && curlx_slist_free_all &&
           curlx_url && curlx_url_cleanup && curlx_url_get && curlx_url_set,
       "every function is resolved");
    ok(curlx_load() == 0, "a second curlx_load is a no-op that succeeds");

    /* The functions are libcurl's own: the URL API parses as documented. */
    CURLU *u = curlx_url();
    char *host = NULL;
    ok(u && curlx_url_set(u, CURLUPART_URL, "http://example.test:8080/p?q", 0) == CURLUE_OK &&
           curlx_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host &&
           strcmp(host, "example.test") == 0,
       "curlx_url_set/get parse a URL");
    curlx_free(host);
    curlx_url_cleanup(u);
    ok(curlx_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK, "curlx_global_init");
    struct curl_slist *list = curlx_slist_append(NULL, "A: 1");
    ok(list && strcmp(list->data, "A: 1") == 0, "curlx_slist_append");
    curlx_slist_free_all(list);
    curlx_global_cleanup();

    test_http();
    test_stand_in("/proc/self/exe");
    return done_testing();
}
