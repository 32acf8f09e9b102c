/*
 * httpbench — round trip of agentd's runtimes over HTTP: POST /v1/sessions/<id>/runtimes/<lang>/exec
 * on one kept-alive connection, against a running `agentd serve` (bench/runtime/run.sh starts a
 * fresh one). The same commands as rtbench, so run.sh can set the two rows side by side.
 *
 * Prints the lines run.sh tabulates: "<system> <lang> <command> <p50_us> <p99_us> <n>".
 * Usage: httpbench URL [calls=2000] [system=agentd-http]. URL is http://HOST:PORT (IPv4, as
 * `agentd serve` prints it); system names the row (run.sh tells server configurations apart).
 *
 * The client is a blocking socket with TCP_NODELAY and a minimal HTTP/1.1 reader (Content-Length
 * bodies only), so the figure is the server's cost plus loopback, not a client library's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTPBENCH_BUF (1 << 16)

/* One connection and the bytes read past the last response. */
struct conn {
    int fd;
    char host[64];
    char in[HTTPBENCH_BUF + 1]; /* NUL-terminated, so headers can be searched as text */
    size_t in_len;
};

static void die(const char *what)
{
    fprintf(stderr, "httpbench: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void conn_open(struct conn *c, const char *url)
{
    unsigned port;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int one = 1;

    if (sscanf(url, "http://%63[^:]:%u", c->host, &port) != 2)
        die("URL must be http://IPV4:PORT");
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1)
        die("URL must name an IPv4 address");
    if ((c->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 || connect(c->fd, (void *)&sa, sizeof sa) != 0)
        die("connect");
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->in_len = 0;
    c->in[0] = '\0';
}

/* Sends one request and reads its response; the body (NUL-terminated) goes to body, at most
 * size - 1 bytes. Returns the HTTP status. */
static int conn_request(struct conn *c, const char *method, const char *path, const char *json, char *body,
                        size_t size)
{
    char req[4096];
    size_t len = strlen(json);
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, c->host, len, json);
    if (n < 0 || (size_t)n >= sizeof req)
        die("request too long");
    for (ssize_t sent = 0, w; sent < n; sent += w)
        if ((w = write(c->fd, req + sent, (size_t)(n - sent))) <= 0)
            die("write");

    char *end;
    while ((end = memmem(c->in, c->in_len, "\r\n\r\n", 4)) == NULL) {
        ssize_t r = read(c->fd, c->in + c->in_len, HTTPBENCH_BUF - c->in_len);
        if (r <= 0)
            die("read (headers)");
        c->in_len += (size_t)r;
        c->in[c->in_len] = '\0';
    }
    size_t head = (size_t)(end - c->in) + 4;
    int status = atoi(c->in + 9);
    size_t content_length = 0;
    int found = 0;
    for (char *line = strstr(c->in, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "content-length:", 15) == 0) {
            content_length = strtoul(line + 15, NULL, 10);
            found = 1;
        }
    }
    if (status == 204 || status == 304)
        found = 1, content_length = 0;
    if (!found || head + content_length > HTTPBENCH_BUF)
        die("response without Content-Length, or too large");
    while (c->in_len < head + content_length) {
        ssize_t r = read(c->fd, c->in + c->in_len, HTTPBENCH_BUF - c->in_len);
        if (r <= 0)
            die("read (body)");
        c->in_len += (size_t)r;
    }
    size_t copy = content_length < size - 1 ? content_length : size - 1;
    memcpy(body, c->in + head, copy);
    body[copy] = '\0';
    memmove(c->in, c->in + head + content_length, c->in_len - head - content_length);
    c->in_len -= head + content_length;
    c->in[c->in_len] = '\0';
    return status;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static const char *system_name = "agentd-http";

static void report(const char *lang, const char *what, uint64_t *ns, size_t n)
{
    char name[64];
    qsort(ns, n, sizeof *ns, cmp_u64);
    snprintf(name, sizeof name, "%s", what);
    for (char *p = name; *p; p++)
        if (*p == ' ')
            *p = '_';
    size_t p99 = (n * 99) / 100 < n ? (n * 99) / 100 : n - 1;
    printf("%s %s %s %.1f %.1f %zu\n", system_name, lang, name, (double)ns[n / 2] / 1e3,
           (double)ns[p99] / 1e3, n);
    fflush(stdout);
}

/* Runs code in the session's lang runtime; dies unless it answers 200. The answer goes to out. */
static void exec_code(struct conn *c, const char *path, const char *code, char *out, size_t size)
{
    char json[256];
    snprintf(json, sizeof json, "{\"code\":\"%s\"}", code); /* the commands need no escaping */
    int status = conn_request(c, "POST", path, json, out, size);
    if (status != 200 || strstr(out, "\"outcome\":\"ok\"") == NULL) {
        fprintf(stderr, "httpbench: %s: HTTP %d %s\n", code, status, out);
        exit(1);
    }
}

static void round_trips(struct conn *c, const char *session, const char *lang, const char *init,
                        const char *a, const char *b, size_t n)
{
    char path[256], out[HTTPBENCH_BUF];
    uint64_t *ta = calloc(n, sizeof *ta), *tb = calloc(n, sizeof *tb);

    snprintf(path, sizeof path, "/v1/sessions/%s/runtimes/%s/exec", session, lang);
    exec_code(c, path, init, out, sizeof out);
    for (size_t i = 0; i < n / 10; i++) /* warm up */
        exec_code(c, path, a, out, sizeof out);
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        exec_code(c, path, a, out, sizeof out);
        uint64_t t1 = now_ns();
        exec_code(c, path, b, out, sizeof out);
        tb[i] = now_ns() - t1;
        ta[i] = t1 - t0;
    }
    const char *value = strstr(out, "\"stdout\":\"");
    if (value == NULL || atol(value + 10) <= (long)n) {
        fprintf(stderr, "httpbench: state was not kept (%s)\n", out);
        exit(1);
    }
    report(lang, a, ta, n);
    report(lang, b, tb, n);
    free(ta);
    free(tb);
}

int main(int argc, char **argv)
{
    struct conn c;
    char out[HTTPBENCH_BUF], id[128], path[256];
    size_t calls = argc > 2 ? (size_t)atol(argv[2]) : 2000;

    if (argc < 2 || calls == 0) {
        fprintf(stderr, "usage: httpbench URL [calls] [system]\n");
        return 1;
    }
    if (argc > 3)
        system_name = argv[3];
    conn_open(&c, argv[1]);
    int status = conn_request(&c, "POST", "/v1/sessions", "{\"agent\":\"none\"}", out, sizeof out);
    const char *p = strstr(out, "\"id\":\"");
    if (status != 201 || p == NULL || sscanf(p + 6, "%127[^\"]", id) != 1) {
        fprintf(stderr, "httpbench: session create: HTTP %d %s\n", status, out);
        return 1;
    }
    round_trips(&c, id, "bash", "x=0", "x=$((x+1))", "echo $x", calls);
    round_trips(&c, id, "python", "x = 0", "x = x + 1", "print(x)", calls);
    snprintf(path, sizeof path, "/v1/sessions/%s", id);
    conn_request(&c, "DELETE", path, "", out, sizeof out);
    close(c.fd);
    return 0;
}
