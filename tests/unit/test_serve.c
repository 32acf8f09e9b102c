/*
 * Unit tests for src/serve: `agentd serve`'s options as an operator gives them. serve_main runs in
 * a forked child (it owns the process: signals, stdout's first line), the parent reads what it
 * prints and talks to it over HTTP. Checked: --help lists every option and the environment and
 * config-file forms; bad --listen, an unknown option, a bad enum and a non-loopback address without
 * a token are refused before anything starts; a config file's values take effect (the data dir,
 * the long-poll timeout), AGENTD_<NAME> overrides the file and a flag overrides both; every answer
 * carries Agentd-Node (--node-url) and GET /v1/nodes names the node's role; SIGTERM ends the server
 * with status 0. The router's table (serve_route_path): each request's shard is the one its streams
 * are written in, so the node that holds it is the node that serves it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "rawhttp.h"
#include "serve/serve.h"
#include "serve/serve_http.h"
#include "store/store.h"
#include "tap.h"

static char dir[64];

/* A running (or finished) serve_main in a child: its pid and the read ends of stdout and stderr. */
struct child {
    pid_t pid;
    int out, err;
};

/* Starts serve_main(argv) in a child with env[] (NAME=VALUE, NULL-terminated) added. */
static struct child start(char **argv, char **env)
{
    int o[2], e[2];
    struct child c = {0};
    if (pipe(o) != 0 || pipe(e) != 0)
        abort();
    fflush(stdout);
    c.pid = fork();
    if (c.pid == 0) {
        dup2(o[1], STDOUT_FILENO);
        dup2(e[1], STDERR_FILENO);
        close(o[0]);
        close(e[0]);
        unsetenv("AGENTD_DATA");
        unsetenv("AGENTD_LONG_POLL_TIMEOUT");
        for (char **p = env; p && *p; p++)
            putenv(*p);
        int argc = 0;
        while (argv[argc])
            argc++;
        int status = serve_main(argc, argv);
        fflush(stdout);
        _exit(status);
    }
    close(o[1]);
    close(e[1]);
    c.out = o[0];
    c.err = e[0];
    return c;
}

/* Everything fd gives until EOF, as a heap string. */
static char *slurp(int fd)
{
    struct buf b = {0};
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        buf_append(&b, chunk, (size_t)n);
    return b.p ? b.p : xstrdup("");
}

/* The first line of fd (the URL serve prints), waiting for it; "" when the child exits first. */
static char *first_line(int fd)
{
    struct buf b = {0};
    char c;
    while (read(fd, &c, 1) == 1 && c != '\n')
        buf_append(&b, &c, 1);
    return b.p ? b.p : xstrdup("");
}

/* Waits for the child and returns its exit status (-1 when it did not exit normally). */
static int finish(struct child *c, char **out, char **err)
{
    char *o = slurp(c->out), *e = slurp(c->err);
    int status;
    waitpid(c->pid, &status, 0);
    close(c->out);
    close(c->err);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs serve_main(argv) to its end; returns the exit status, stderr in *err. */
static int run(char **argv, char **out, char **err)
{
    struct child c = start(argv, NULL);
    return finish(&c, out, err);
}

static void test_refusals(void)
{
    char *out, *err;
    char *help[] = {"serve", "--help", NULL};
    int rc = run(help, &out, &err);
    ok(rc == 0 && strstr(out, "--long-poll-timeout") && strstr(out, "--runtime-spin") &&
           strstr(out, "AGENTD_") && strstr(out, "--config FILE"),
       "--help exits 0 and lists the options with their environment and config-file forms");
    free(out);
    free(err);

    char *listen[] = {"serve", "--listen", "nowhere", NULL};
    rc = run(listen, NULL, &err);
    ok(rc == 1 && strstr(err, "--listen must be ADDRESS:PORT"), "a bad --listen is refused, saying why");
    free(err);

    char *open_addr[] = {"serve", "--listen", "0.0.0.0:0", "--data", dir, NULL};
    rc = run(open_addr, NULL, &err);
    ok(rc == 1 && strstr(err, "without --token"), "off loopback without --token: refused before listening");
    free(err);

    char *bad_enum[] = {"serve", "--durability", "sometimes", NULL};
    rc = run(bad_enum, NULL, &err);
    ok(rc == 1 && strstr(err, "fsync|os"), "a value outside an option's choices is refused, listing them");
    free(err);

    char *unknown[] = {"serve", "--colour", "blue", NULL};
    rc = run(unknown, NULL, &err);
    ok(rc == 1 && strstr(err, "colour"), "an unknown option is refused, naming it");
    free(err);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts serve with a config file (and env, and extra flags), checks which data dir it used and
 * stops it with SIGTERM. Returns 1 when everything held. */
static int serve_with(const char *config, char **env, char **flags, const char *want_dir, const char *what)
{
    char *argv[16] = {"serve", "--config", (char *)config, "--no-ui"};
    int argc = 4;
    for (char **f = flags; f && *f; f++)
        argv[argc++] = *f;
    struct child c = start(argv, env);
    char *url = first_line(c.out);
    int port = strncmp(url, "http://127.0.0.1:", 17) == 0 ? atoi(url + 17) : 0;
    ok(port > 0, "%s: serve prints its URL first (%s)", what, url);

    char db[256];
    snprintf(db, sizeof db, "%s/agentd.db", want_dir);
    ok(exists(db), "%s: the store is in %s", what, want_dir);

    int good = port > 0 && exists(db);
    if (port > 0) {
        const char *put =
            "PUT /v1/stream/lp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\n"
            "Content-Length: 0\r\n\r\n";
        struct rawhttp_response r = rawhttp_exchange(port, put, strlen(put));
        rawhttp_free(&r);
        const char *poll =
            "GET /v1/stream/lp?offset=now&live=long-poll HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        double t0 = now_s();
        r = rawhttp_exchange(port, poll, strlen(poll));
        double took = now_s() - t0;
        ok(r.status == 204 && took < 2.0,
           "%s: the config file's long-poll-timeout (300 ms, not 20 s) applies: %.2f s", what, took);
        good = good && r.status == 204 && took < 2.0;
        rawhttp_free(&r);
    }
    kill(c.pid, SIGTERM);
    char *err;
    int rc = finish(&c, NULL, &err);
    ok(rc == 0, "%s: SIGTERM ends it with status 0", what);
    if (rc != 0)
        diag("%s", err);
    free(err);
    free(url);
    return good && rc == 0;
}

static void test_config_precedence(void)
{
    char config[128], d1[128], d2[128], d3[128];
    snprintf(config, sizeof config, "%s/agentd.conf", dir);
    snprintf(d1, sizeof d1, "%s/from-file", dir);
    snprintf(d2, sizeof d2, "%s/from-env", dir);
    snprintf(d3, sizeof d3, "%s/from-flag", dir);
    mkdir(d1, 0700);
    mkdir(d2, 0700);
    mkdir(d3, 0700);
    FILE *f = fopen(config, "w");
    fprintf(f, "# agentd serve's config file\nlisten 127.0.0.1:0\ndata = %s\nlong-poll-timeout 300\n", d1);
    fclose(f);

    serve_with(config, NULL, NULL, d1, "config file");
    char env_data[160];
    snprintf(env_data, sizeof env_data, "AGENTD_DATA=%s", d2);
    char *env[] = {env_data, NULL};
    serve_with(config, env, NULL, d2, "AGENTD_DATA over the file");
    char *flags[] = {"--data", d3, NULL};
    serve_with(config, env, flags, d3, "--data over AGENTD_DATA");

    f = fopen(config, "a");
    fprintf(f, "no-such-option 1\n");
    fclose(f);
    char *argv[] = {"serve", "--config", config, NULL};
    char *err;
    int rc = run(argv, NULL, &err);
    ok(rc == 1 && strstr(err, "no-such-option"), "an unknown name in the config file is refused, naming it");
    free(err);
}

/* Every answer names the node that made it (Agentd-Node: --node-url, else the URL serve printed),
 * and GET /v1/nodes gives its role; a single SQLite node owns its store. */
static void test_node_header(void)
{
    char d[160];
    snprintf(d, sizeof d, "%s/node", dir);
    mkdir(d, 0700);
    char *argv[] = {"serve",      "--listen",      "127.0.0.1:0",  "--data",          d,   "--no-ui",
                    "--node-url", "http://n.test", "--public-url", "http://lb.test/", NULL};
    struct child c = start(argv, NULL);
    char *url = first_line(c.out);
    int port = strncmp(url, "http://127.0.0.1:", 17) == 0 ? atoi(url + 17) : 0;
    if (ok(port > 0, "serve with --node-url and --public-url starts (%s)", url)) {
        const char *get = "GET /v1/nodes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        struct rawhttp_response r = rawhttp_exchange(port, get, strlen(get));
        is_str(rawhttp_header(&r, "Agentd-Node"), "http://n.test", "Agentd-Node is the --node-url");
        ok(r.status == 200 && r.body && strstr(r.body, "\"role\":\"owner\"") &&
               strstr(r.body, "\"self\":true"),
           "GET /v1/nodes: this node, the owner (%s)", r.body ? r.body : "");
        rawhttp_free(&r);
        const char *miss = "GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        r = rawhttp_exchange(port, miss, strlen(miss));
        ok(r.status == 404 && rawhttp_header(&r, "Agentd-Node") &&
               !strcmp(rawhttp_header(&r, "Agentd-Node"), "http://n.test"),
           "an error answer names the node too");
        rawhttp_free(&r);
    }
    kill(c.pid, SIGTERM);
    char *err;
    ok(finish(&c, NULL, &err) == 0, "SIGTERM ends it with status 0");
    free(err);
    free(url);
}

static enum serve_route route(enum http_method m, const char *path, int nshards, int *shard)
{
    *shard = -1;
    return serve_route_path(m, path, strlen(path), nshards, shard);
}

static int shard_of(const char *path) { return store_shard_of(path, strlen(path), STORE_SHARDS); }

/* doc/SHARDING-PLAN.md §2.1's table. A session's requests must land where its streams are written
 * (their shard's holder loads both), whatever the request: its page, its WebSocket, its MCP
 * endpoint, its events, or one of its streams read directly. */
static void test_route(void)
{
    int k, n = STORE_SHARDS;
    ok(route(HTTP_GET, "/v1/health", n, &k) == SERVE_ROUTE_NODE && k == 0, "/v1/health: this node");
    ok(route(HTTP_GET, "/v1/nodes", n, &k) == SERVE_ROUTE_NODE, "/v1/nodes: this node");
    ok(route(HTTP_GET, "/v1/agents", n, &k) == SERVE_ROUTE_LOCAL && k == 0,
       "GET /v1/agents: any serving node");
    ok(route(HTTP_GET, "/", n, &k) == SERVE_ROUTE_LOCAL &&
           route(HTTP_GET, "/assets/x.js", n, &k) == SERVE_ROUTE_LOCAL,
       "the dashboard's files: any serving node");

    enum serve_route r = route(HTTP_PUT, "/v1/stream/bench/s1", n, &k);
    ok(r == SERVE_ROUTE_SHARD && k == shard_of("bench/s1") && k != 0,
       "/v1/stream/<path>: the path's shard (%d)", k);
    int spread = 0;
    char p[160];
    for (int i = 0; i < 64; i++) {
        snprintf(p, sizeof p, "/v1/stream/bench/s%d", i);
        route(HTTP_POST, p, n, &k);
        spread |= k != 0;
    }
    ok(spread, "plain streams spread over the shards, not all in shard 0");
    ok(route(HTTP_GET, "/v1/stream/__ds/subscriptions/x", n, &k) == SERVE_ROUTE_SHARD && k == 0,
       "/v1/stream/__ds/...: shard 0 (subscriptions)");
    ok(route(HTTP_GET, "/v1/stream/sessions", n, &k) == SERVE_ROUTE_SHARD && k == 0,
       "/v1/stream/sessions (the public feed): shard 0");
    ok(route(HTTP_GET, "/v1/stream/__agentd/sessions/7", n, &k) == SERVE_ROUTE_SHARD && k == 7,
       "/v1/stream/__agentd/sessions/7: shard 7's registry");

    const char *id = "0123456789abcdef0123456789abcdef";
    char transcript[128];
    snprintf(transcript, sizeof transcript, "sessions/%s/transcript", id);
    int want = shard_of(transcript), all = 1;
    const char *const subs[] = {"", "/ws", "/mcp", "/events", "/runs", "/messages", "/children"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(subs) && want != 0; i++) {
        snprintf(p, sizeof p, "/v1/sessions/%s%s", id, subs[i]);
        all &= route(HTTP_POST, p, n, &k) == SERVE_ROUTE_SHARD && k == want;
    }
    ok(all && want != 0, "/v1/sessions/<id>[/ws|/mcp|/events|...]: the shard of the session's streams (%d)",
       want);
    snprintf(p, sizeof p, "/v1/stream/%s", transcript);
    ok(route(HTTP_GET, p, n, &k) == SERVE_ROUTE_SHARD && k == want, "... as is a read of its transcript");

    ok(route(HTTP_GET, "/v1/sessions", n, &k) == SERVE_ROUTE_SHARD && k == 0,
       "GET /v1/sessions: shard 0 (the directory)");
    ok(route(HTTP_POST, "/v1/sessions", n, &k) == SERVE_ROUTE_PLACE && k == 0 &&
           route(HTTP_POST, "/v1/sessions/", n, &k) == SERVE_ROUTE_PLACE,
       "POST /v1/sessions: placement (shard 0 for now)");
    ok(route(HTTP_POST, "/v1/internal/observe", n, &k) == SERVE_ROUTE_SHARD && k == 0,
       "POST /v1/internal/observe: shard 0 (the subscriptions' holder)");
    ok(route(HTTP_POST, "/v1/internal/stream-ref", n, &k) == SERVE_ROUTE_NODE &&
           route(HTTP_POST, "/v1/internal/stream-unref", n, &k) == SERVE_ROUTE_NODE,
       "POST /v1/internal/stream-ref and stream-unref: the node they were sent to");

    all = 1;
    const char *const any[] = {"/v1/stream/a/b", "/v1/sessions/x", "/v1/stream/__agentd/sessions/7"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(any); i++)
        all &= route(HTTP_GET, any[i], 1, &k) == SERVE_ROUTE_SHARD && k == 0;
    ok(all, "one shard (SQLite): everything in shard 0");
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_serve.XXXXXX");
    if (mkdtemp(dir) == NULL)
        bail_out("mkdtemp: %s", strerror(errno));
    test_refusals();
    test_config_precedence();
    test_node_header();
    test_route();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        diag("could not remove %s", dir);
    return done_testing();
}
