/*
 * dsbench — load generator for Durable Streams servers (make bench).
 *
 * Drives one or two servers that speak the Durable Streams HTTP protocol (agentd and the Node
 * reference server) with the same client and prints one table comparing them:
 *
 *   (a) sequential 100-byte append latency, one writer;
 *   (b) appends/s with 32 concurrent writers to one stream, to 32 streams, and to 1000 streams (each
 *       writer moving on to another stream after each append);
 *   (c) append -> SSE delivery latency with 100 and with 1000 subscribers;
 *   (d) append -> long-poll wake latency;
 *   (e) peak RSS (VmHWM) of each server process, read at the end of the run.
 *
 * Beside each (b) row it reports where the CPU went in the measured window (CPU-seconds per 1,000
 * appends of the server's processes, of the database's with --db-pid, of this client, and of the rest
 * of the machine; and how many of the machine's cores were busy), so that a rate held down by saturated
 * cores can be told apart from one that is limited elsewhere (fsync, locks, round trips).
 * The client is a single epoll loop over raw HTTP/1.1 keep-alive sockets: every connection carries at
 * most one request at a time, so a request always fits in the socket's send buffer and is written with
 * one write(). Each 100-byte payload carries its sequence number and the time taken just before its POST
 * was written, so a subscriber that receives it knows its delivery latency without any lookup; sender
 * and receivers share this process's clock, and receipt is the kernel's receive timestamp.
 *
 * --agentd may name several URLs of one service (the nodes of a cluster), comma separated: the first
 * takes the setup requests and the paced writer of (c) and (d), the writers of (a) and (b) are spread
 * over all of them in turn, and the SSE and long-poll readers over all but the first. So
 * `--agentd OWNER,FOLLOWER --phases c` measures delivery to readers on a follower. With several URLs,
 * (b) also reports the share of appends a node forwarded (its answer's Agentd-Node names another node
 * than the URL asked) and the latency of forwarded appends beside those answered where they were sent.
 *
 * Phases are bounded in time (--seconds each, plus a short warm-up and drain), so a slow server gives
 * fewer samples rather than a longer run. Each server is measured in a child process: a setup failure
 * (connection refused, a PUT that fails) ends that child with a message and empties only that server's
 * column; errors during a phase are counted and reported under the table.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD_SIZE     100
#define CONN_BUF_SIZE    16384 /* one response header block must fit */
#define SSE_LINE_MAX     256   /* only a payload's first bytes are needed; longer lines keep a prefix */
#define OFFSET_MAX       128
#define SSE_BATCH        100 /* subscribers connected per batch, under every listen backlog */
#define ERRORS_SHOWN     5   /* per server */
#define URLS_MAX         8   /* nodes of one service behind --agentd */
/*
 * Time bounds, so a server that falls behind (the reference needs about a second per append with 1000
 * subscribers) costs a few seconds, not minutes. A live phase measures at least LIVE_MIN_APPENDS appends
 * if it can within LIVE_EXTRA_MS more, then waits at most DRAIN_MS for deliveries.
 */
#define LIVE_MIN_APPENDS 3
#define LIVE_EXTRA_MS    4000
#define DRAIN_MS         3000
#define SETUP_MS         30000 /* for a PUT, or for all subscribers of a phase to be registered */

/* ---------------------------------------------------------------------------------------------- */
/* Utilities                                                                                      */
/* ---------------------------------------------------------------------------------------------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dsbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        die("out of memory");
    return p;
}

/* Returns p with room for at least n + 1 elements of size bytes, doubling *cap when full. */
static void *grow(void *p, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return p;
    *cap = *cap ? *cap * 2 : 64;
    p = realloc(p, *cap * size);
    if (p == NULL)
        die("out of memory");
    return p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define MS(x) ((uint64_t)(x)*1000000u)

/*
 * Latencies run between two CLOCK_REALTIME stamps: taken just before a request is written, and the
 * kernel's receive timestamp of the bytes that complete it (SO_TIMESTAMPNS), so time this client spends
 * on other sockets before reading one is not charged to the server. now_ns() only schedules.
 */
static uint64_t stamp_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A growing array of latencies in nanoseconds. */
struct samples {
    uint64_t *v;
    size_t n, cap;
};

static void samples_add(struct samples *s, uint64_t ns)
{
    s->v = grow(s->v, s->n, &s->cap, sizeof(*s->v));
    s->v[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile in milliseconds; NAN when there are no samples. Sorts s in place. */
static double samples_pct_ms(struct samples *s, double q)
{
    if (s->n == 0)
        return NAN;
    qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
    size_t rank = (size_t)ceil(q * (double)s->n);
    return (double)s->v[rank ? rank - 1 : 0] / 1e6;
}

static void samples_clear(struct samples *s)
{
    free(s->v);
    *s = (struct samples){0};
}

/*
 * The payload: "seq=<10 digits> ts=<20 digits> " padded with dots to PAYLOAD_SIZE bytes.
 * ts is the CLOCK_MONOTONIC time in ns taken just before the POST carrying it was written.
 */
static void payload_format(char *out, uint32_t seq, uint64_t ts)
{
    int n = snprintf(out, PAYLOAD_SIZE + 1, "seq=%010" PRIu32 " ts=%020" PRIu64 " ", seq, ts);
    memset(out + n, '.', PAYLOAD_SIZE - (size_t)n);
}

/* Returns the send time stamped in a payload prefix, or 0 when the bytes are not one of ours. */
static uint64_t payload_stamp(const char *p, size_t n, uint32_t *seq)
{
    if (n < 38 || memcmp(p, "seq=", 4) != 0 || memcmp(p + 14, " ts=", 4) != 0)
        return 0;
    *seq = (uint32_t)strtoul(p + 4, NULL, 10);
    return strtoull(p + 18, NULL, 10);
}

/* Decodes standard base64, skipping anything outside the alphabet; returns the decoded length. */
static size_t base64_decode(const char *in, size_t n, char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t len = 0;
    for (size_t i = 0; i < n && len < cap; i++) {
        int c = (unsigned char)in[i], v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+')
            v = 62;
        else if (c == '/')
            v = 63;
        else
            continue;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (char)((acc >> bits) & 0xff);
        }
    }
    return len;
}

/* ---------------------------------------------------------------------------------------------- */
/* Connections and the HTTP/1.1 response parser                                                   */
/* ---------------------------------------------------------------------------------------------- */

enum role {
    ROLE_CTL,    /* one-shot setup requests (PUT) */
    ROLE_WRITER, /* POSTs appends */
    ROLE_SSE,    /* one live=sse response that never ends */
    ROLE_POLL,   /* live=long-poll requests, reissued after each response */
};

enum resp_state {
    RESP_HEAD,
    RESP_BODY, /* Content-Length body; left = bytes to go */
    RESP_CHUNK_SIZE,
    RESP_CHUNK_DATA, /* left = bytes to go in this chunk */
    RESP_CHUNK_CRLF,
    RESP_TRAILER,
    RESP_UNTIL_CLOSE, /* neither length nor chunked: the body ends with the connection */
};

struct bench;

struct conn {
    struct bench *bench; /* borrowed; outlives every connection */
    int fd;
    enum role role;
    bool dead;       /* closed after an error or EOF; freed with the phase */
    bool busy;       /* a request is in flight */
    int node;        /* index of the URL it is connected to */
    bool forwarded;  /* the last response's Agentd-Node named another node than that URL */
    int stream;      /* index into bench->paths; writers step by bench->stride after each append */
    uint64_t t_sent; /* stamp_ns() just before the request was written */
    uint64_t t_recv; /* kernel receive stamp of the last bytes read */

    /* Response being parsed. */
    enum resp_state state;
    int status;
    uint64_t left;
    bool base64;
    char next_offset[OFFSET_MAX];

    /* SSE: the current line and event. */
    char line[SSE_LINE_MAX];
    size_t n_line;
    bool event_is_data;
    char data[SSE_LINE_MAX];
    size_t n_data;
    bool ready; /* saw its first control event: registered at the tail */

    /* Long-poll: the offset to ask for next and a record split across reads. */
    char offset[OFFSET_MAX];
    char record[PAYLOAD_SIZE];
    size_t n_record;

    size_t n_in;
    char in[CONN_BUF_SIZE];
};

enum phase {
    PHASE_SETUP,
    PHASE_SEQ,  /* writers send back to back; latencies measured at the writer */
    PHASE_LIVE, /* one paced writer; latencies measured at SSE or long-poll receivers */
};

struct bench {
    const char *name;
    struct sockaddr_in addr[URLS_MAX]; /* the service's nodes; see the top comment for who uses which */
    char url[URLS_MAX][96];            /* the same as http://IP:PORT, as a node names itself */
    int n_addr;
    unsigned next_writer, next_reader;
    char host[96]; /* Host header: the first node's */
    int ep;
    uint64_t run_id;

    struct conn **conns; /* every connection of the current phase; owned */
    size_t n_conns, cap_conns;
    char (*paths)[160]; /* stream paths of the current phase */
    int n_paths;
    int stride; /* a writer's next stream is stream + stride (mod n_paths); 0: always the same */

    enum phase phase;
    bool measuring; /* past the warm-up: count and sample */
    bool stopping;  /* no new requests */
    uint32_t seq;   /* next payload sequence number */
    uint32_t first_measured_seq;
    uint64_t n_appends;   /* acknowledged while measuring */
    uint64_t n_delivered; /* payloads received by SSE or long-poll clients while measuring */
    uint64_t n_errors;
    struct samples lat;
    struct samples lat_by[2]; /* (a), (b): of appends answered by the node asked [0], forwarded [1] */
    uint64_t n_forwarded;     /* measured appends that were forwarded */
};

/* Errors are counted; only the first few are described, so a failing server does not flood the log. */
static void bench_complain(struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bench_complain(struct bench *b, const char *fmt, ...)
{
    b->n_errors++;
    if (b->n_errors > ERRORS_SHOWN)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dsbench: %s: ", b->name);
    vfprintf(stderr, fmt, ap);
    fputs(b->n_errors == ERRORS_SHOWN ? " (further errors are only counted)\n" : "\n", stderr);
    va_end(ap);
}

static void bench_fail(struct bench *b, struct conn *c, const char *why)
{
    if (!b->stopping || c->role == ROLE_CTL)
        bench_complain(b, "%s connection: %s",
                       c->role == ROLE_SSE    ? "sse"
                       : c->role == ROLE_POLL ? "long-poll"
                                              : "writer",
                       why);
    c->dead = true;
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
    }
}

/* Opens a connection that the bench owns until bench_close_all(). Dies if the server is unreachable. */
static struct conn *conn_new(struct bench *b, enum role role)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    c->bench = b;
    c->role = role;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (raise ulimit -n)", strerror(errno));
    if (role == ROLE_WRITER && b->phase != PHASE_LIVE)
        c->node = (int)(b->next_writer++ % (unsigned)b->n_addr);
    else if ((role == ROLE_SSE || role == ROLE_POLL) && b->n_addr > 1)
        c->node = 1 + (int)(b->next_reader++ % (unsigned)(b->n_addr - 1));
    const struct sockaddr_in *to = &b->addr[c->node];
    /* A blocking connect is fine on loopback; SSE_BATCH keeps the listen backlog from overflowing. */
    if (connect(c->fd, (const struct sockaddr *)to, sizeof(*to)) < 0)
        die("%s: connect %s: %s", b->name, b->host, strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(b->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    b->conns = grow(b->conns, b->n_conns, &b->cap_conns, sizeof(*b->conns));
    b->conns[b->n_conns++] = c;
    return c;
}

static void bench_close_all(struct bench *b)
{
    for (size_t i = 0; i < b->n_conns; i++) {
        if (b->conns[i]->fd >= 0)
            close(b->conns[i]->fd);
        free(b->conns[i]);
    }
    b->n_conns = 0;
}

/* Writes one whole request; a connection never has more than one in flight, so it cannot block. */
static void conn_send(struct conn *c, const char *method, const char *target, const char *content_type,
                      const char *body, size_t n_body)
{
    char req[1024];
    int n = snprintf(req, sizeof(req) - PAYLOAD_SIZE,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%sContent-Length: %zu\r\n\r\n", method, target,
                     c->bench->host, content_type ? "Content-Type: " : "", content_type ? content_type : "",
                     content_type ? "\r\n" : "", n_body);
    if (n < 0 || (size_t)n + n_body > sizeof(req))
        die("request too long: %s", target);
    memcpy(req + n, body, n_body);
    c->t_sent = stamp_ns();
    c->busy = true;
    ssize_t w = write(c->fd, req, (size_t)n + n_body);
    if (w != (ssize_t)((size_t)n + n_body))
        bench_fail(c->bench, c, w < 0 ? strerror(errno) : "short write");
}

/* Posts the next sequenced payload to the connection's stream (its next one, when writers move). */
static void writer_send(struct conn *c)
{
    struct bench *b = c->bench;
    if (b->stride && c->role == ROLE_WRITER && b->phase == PHASE_SEQ)
        c->stream = (c->stream + b->stride) % b->n_paths;
    char payload[PAYLOAD_SIZE + 1];
    uint32_t seq = b->seq++;
    if (b->measuring && b->first_measured_seq == UINT32_MAX)
        b->first_measured_seq = seq;
    payload_format(payload, seq, stamp_ns());
    conn_send(c, "POST", b->paths[c->stream], "application/octet-stream", payload, PAYLOAD_SIZE);
}

static void poll_send(struct conn *c)
{
    char target[400];
    snprintf(target, sizeof(target), "%s?offset=%s&live=long-poll", c->bench->paths[c->stream], c->offset);
    conn_send(c, "GET", target, NULL, NULL, 0);
}

/* A payload arrived at an SSE or long-poll client: sample its latency if it was sent while measuring. */
static void bench_delivered(struct conn *c, const char *p, size_t n)
{
    struct bench *b = c->bench;
    uint32_t seq;
    uint64_t ts = payload_stamp(p, n, &seq);
    if (ts == 0) {
        bench_complain(b, "received %zu bytes that are not a payload of this bench", n);
        return;
    }
    if (b->first_measured_seq == UINT32_MAX || seq < b->first_measured_seq)
        return;
    b->n_delivered++;
    samples_add(&b->lat, c->t_recv > ts ? c->t_recv - ts : 0);
}

/* One SSE line without its terminator. Events end at an empty line (text/event-stream framing). */
static void sse_line(struct conn *c, const char *line, size_t n)
{
    if (n == 0) {
        if (c->event_is_data) {
            if (c->base64) {
                char raw[SSE_LINE_MAX];
                size_t n_raw = base64_decode(c->data, c->n_data, raw, sizeof(raw));
                bench_delivered(c, raw, n_raw);
            } else {
                bench_delivered(c, c->data, c->n_data);
            }
        } else {
            c->ready = true; /* a control event: the subscriber is registered */
        }
        c->event_is_data = false;
        c->n_data = 0;
        return;
    }
    if (n >= 6 && memcmp(line, "event:", 6) == 0) {
        const char *v = line + 6;
        size_t nv = n - 6;
        if (nv > 0 && *v == ' ')
            v++, nv--;
        c->event_is_data = nv == 4 && memcmp(v, "data", 4) == 0;
    } else if (n >= 5 && memcmp(line, "data:", 5) == 0) {
        const char *v = line + 5;
        size_t nv = n - 5;
        if (nv > 0 && *v == ' ')
            v++, nv--;
        size_t room = sizeof(c->data) - c->n_data;
        if (nv > room)
            nv = room;
        memcpy(c->data + c->n_data, v, nv);
        c->n_data += nv;
    }
}

static void sse_body(struct conn *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            size_t len = c->n_line;
            if (len > 0 && c->line[len - 1] == '\r')
                len--;
            sse_line(c, c->line, len);
            c->n_line = 0;
        } else if (c->n_line < sizeof(c->line)) {
            c->line[c->n_line++] = p[i];
        }
    }
}

/* Long-poll bodies are concatenated fixed-size payloads, possibly split across reads. */
static void poll_body(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        size_t take = PAYLOAD_SIZE - c->n_record;
        if (take > n)
            take = n;
        memcpy(c->record + c->n_record, p, take);
        c->n_record += take;
        p += take;
        n -= take;
        if (c->n_record == PAYLOAD_SIZE) {
            bench_delivered(c, c->record, PAYLOAD_SIZE);
            c->n_record = 0;
        }
    }
}

static void conn_body(struct conn *c, const char *p, size_t n)
{
    if (c->role == ROLE_SSE && c->status == 200)
        sse_body(c, p, n);
    else if (c->role == ROLE_POLL && c->status == 200)
        poll_body(c, p, n);
}

/* A whole response has been read. */
static void conn_done(struct conn *c)
{
    struct bench *b = c->bench;
    c->busy = false;
    switch (c->role) {
    case ROLE_CTL: break;
    case ROLE_WRITER:
        if (c->status != 200 && c->status != 204)
            bench_complain(b, "append answered %d", c->status);
        else if (b->measuring && !b->stopping) {
            b->n_appends++;
            b->n_forwarded += c->forwarded;
            if (b->phase == PHASE_SEQ) {
                uint64_t ns = c->t_recv > c->t_sent ? c->t_recv - c->t_sent : 0;
                samples_add(&b->lat, ns);
                samples_add(&b->lat_by[c->forwarded], ns);
            }
        }
        if (b->phase == PHASE_SEQ && !b->stopping && !c->dead)
            writer_send(c);
        break;
    case ROLE_SSE: bench_fail(b, c, "SSE response ended"); break;
    case ROLE_POLL:
        if ((c->status != 200 && c->status != 204) || c->next_offset[0] == '\0') {
            char why[64];
            snprintf(why, sizeof(why), "long-poll answered %d without a next offset", c->status);
            bench_fail(b, c, why);
            break;
        }
        memcpy(c->offset, c->next_offset, sizeof(c->offset));
        c->n_record = 0;
        poll_send(c); /* also while draining: payloads sent before the stop are still owed */
        break;
    }
}

/* Parses the status line and the headers this client cares about; returns false on a malformed head. */
static bool conn_head(struct conn *c, char *head, size_t n)
{
    head[n] = '\0';
    if (sscanf(head, "HTTP/1.%*d %d", &c->status) != 1)
        return false;
    bool chunked = false;
    long long length = -1;
    c->base64 = false;
    c->forwarded = false;
    c->next_offset[0] = '\0';
    for (char *line = strstr(head, "\r\n"); line != NULL && line[2] != '\0'; line = strstr(line, "\r\n")) {
        line += 2;
        char *colon = strchr(line, ':'), *end = strstr(line, "\r\n");
        if (colon == NULL || end == NULL || colon > end)
            continue;
        size_t name_len = (size_t)(colon - line);
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t v_len = (size_t)(end - v);
#define IS(name) (name_len == sizeof(name) - 1 && strncasecmp(line, name, name_len) == 0)
        if (IS("content-length"))
            length = strtoll(v, NULL, 10);
        else if (IS("transfer-encoding"))
            chunked = v_len >= 7 && strncasecmp(v, "chunked", 7) == 0;
        else if (IS("agentd-node")) {
            const char *asked = c->bench->url[c->node];
            c->forwarded = v_len != strlen(asked) || strncmp(v, asked, v_len) != 0;
        } else if (IS("stream-sse-data-encoding"))
            c->base64 = v_len >= 6 && strncasecmp(v, "base64", 6) == 0;
        else if (IS("stream-next-offset") && v_len < sizeof(c->next_offset)) {
            memcpy(c->next_offset, v, v_len);
            c->next_offset[v_len] = '\0';
        }
#undef IS
    }
    if (c->status == 204 || c->status == 304 || c->status / 100 == 1) {
        c->state = RESP_HEAD;
        conn_done(c);
    } else if (chunked) {
        c->state = RESP_CHUNK_SIZE;
    } else if (length >= 0) {
        c->state = RESP_BODY;
        c->left = (uint64_t)length;
        if (length == 0) {
            c->state = RESP_HEAD;
            conn_done(c);
        }
    } else {
        c->state = RESP_UNTIL_CLOSE;
    }
    c->n_line = 0;
    c->n_data = 0;
    c->event_is_data = false;
    return true;
}

/*
 * Consumes as much of c->in as forms complete protocol elements; body bytes go to conn_body as they
 * arrive. Returns false when the response is malformed.
 */
static bool conn_parse(struct conn *c)
{
    size_t pos = 0;
    while (pos < c->n_in && !c->dead) {
        char *p = c->in + pos;
        size_t avail = c->n_in - pos;
        char *eol;
        switch (c->state) {
        case RESP_HEAD: {
            char *end = memmem(p, avail, "\r\n\r\n", 4);
            if (end == NULL) {
                if (avail >= sizeof(c->in) - 1)
                    return false;
                goto out;
            }
            size_t n = (size_t)(end - p) + 4;
            char saved = p[n - 1];
            if (!conn_head(c, p, n - 1)) /* terminates the head in place at its last '\n' */
                return false;
            p[n - 1] = saved;
            pos += n;
            break;
        }
        case RESP_BODY:
        case RESP_CHUNK_DATA: {
            size_t n = avail < c->left ? avail : (size_t)c->left;
            conn_body(c, p, n);
            pos += n;
            c->left -= n;
            if (c->left == 0) {
                if (c->state == RESP_CHUNK_DATA) {
                    c->state = RESP_CHUNK_CRLF;
                } else {
                    c->state = RESP_HEAD;
                    conn_done(c);
                }
            }
            break;
        }
        case RESP_CHUNK_SIZE:
            if ((eol = memmem(p, avail, "\r\n", 2)) == NULL)
                goto out;
            if (!isxdigit((unsigned char)*p))
                return false;
            c->left = strtoull(p, NULL, 16);
            pos += (size_t)(eol - p) + 2;
            c->state = c->left ? RESP_CHUNK_DATA : RESP_TRAILER;
            break;
        case RESP_CHUNK_CRLF:
            if (avail < 2)
                goto out;
            if (p[0] != '\r' || p[1] != '\n')
                return false;
            pos += 2;
            c->state = RESP_CHUNK_SIZE;
            break;
        case RESP_TRAILER:
            if ((eol = memmem(p, avail, "\r\n", 2)) == NULL)
                goto out;
            pos += (size_t)(eol - p) + 2;
            if (eol == p) {
                c->state = RESP_HEAD;
                conn_done(c);
            }
            break;
        case RESP_UNTIL_CLOSE:
            conn_body(c, p, avail);
            pos += avail;
            break;
        }
    }
out:
    memmove(c->in, c->in + pos, c->n_in - pos);
    c->n_in -= pos;
    return true;
}

static void conn_readable(struct conn *c)
{
    struct iovec iov = {.iov_base = c->in + c->n_in, .iov_len = sizeof(c->in) - 1 - c->n_in};
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf)};
    ssize_t n = recvmsg(c->fd, &msg, 0);
    c->t_recv = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); n > 0 && cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            c->t_recv = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        }
    }
    if (c->t_recv == 0)
        c->t_recv = stamp_ns();
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        if (n == 0 && c->state == RESP_UNTIL_CLOSE) {
            c->state = RESP_HEAD;
            conn_done(c);
        }
        if (!c->dead)
            bench_fail(c->bench, c, n == 0 ? "closed by the server" : strerror(errno));
        return;
    }
    c->n_in += (size_t)n;
    if (!conn_parse(c))
        bench_fail(c->bench, c, "malformed HTTP response");
}

/* ---------------------------------------------------------------------------------------------- */
/* The loop                                                                                       */
/* ---------------------------------------------------------------------------------------------- */

/* Pacing for PHASE_LIVE: one append every period_ns, or at its acknowledgement if that is later. */
struct pace {
    struct conn *writer;
    uint64_t period_ns, next_due;
};

typedef bool bench_done_cb(struct bench *b, void *arg);

/* Runs the loop until deadline, or until done(b, arg) holds. pace may be NULL. */
static void bench_run(struct bench *b, uint64_t deadline, struct pace *pace, bench_done_cb *done, void *arg)
{
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (t >= deadline || (done != NULL && done(b, arg)))
            return;
        if (pace != NULL && !b->stopping && !pace->writer->busy && !pace->writer->dead &&
            t >= pace->next_due) {
            writer_send(pace->writer);
            pace->next_due = t + pace->period_ns;
        }
        uint64_t wake = deadline;
        if (pace != NULL && !b->stopping && pace->next_due < wake)
            wake = pace->next_due;
        int timeout_ms = wake > t ? (int)((wake - t + 999999) / 1000000) : 0;
        if (timeout_ms > 100)
            timeout_ms = 100;
        int n = epoll_wait(b->ep, evs, 256, timeout_ms);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c->dead)
                conn_readable(c);
        }
    }
}

static bool ctl_done(struct bench *b, void *arg)
{
    const struct conn *c = arg;
    return !c->busy || c->dead;
}

/* Creates the phase's streams (octet-stream) with PUT; each path's tail offset goes to offsets[i]. */
static void bench_create_streams(struct bench *b, const char *phase, size_t n, char (*offsets)[OFFSET_MAX])
{
    free(b->paths);
    b->paths = xcalloc(n, sizeof(*b->paths));
    b->n_paths = (int)n;
    b->stride = 0;
    b->phase = PHASE_SETUP;
    struct conn *c = conn_new(b, ROLE_CTL);
    for (size_t i = 0; i < n; i++) {
        snprintf(b->paths[i], sizeof(b->paths[i]), "/v1/stream/dsbench-%" PRIx64 "/%s/%zu", b->run_id, phase,
                 i);
        uint64_t t0 = now_ns();
        conn_send(c, "PUT", b->paths[i], "application/octet-stream", "", 0);
        /* Generous: a server may still be working off the previous phase's backlog. */
        bench_run(b, t0 + MS(SETUP_MS), NULL, ctl_done, c);
        if (now_ns() - t0 > MS(1000))
            fprintf(stderr, "dsbench: %s: PUT took %.1f s (busy with the previous phase)\n", b->name,
                    (double)(now_ns() - t0) / 1e9);
        if (c->dead || c->busy || (c->status != 201 && c->status != 200))
            die("%s: PUT %s answered %d", b->name, b->paths[i], c->busy ? 0 : c->status);
        if (offsets != NULL)
            memcpy(offsets[i], c->next_offset, OFFSET_MAX);
    }
    bench_close_all(b);
}

static void bench_phase_begin(struct bench *b, enum phase phase)
{
    b->phase = phase;
    b->measuring = false;
    b->stopping = false;
    b->seq = 0;
    b->first_measured_seq = UINT32_MAX;
    b->n_appends = 0;
    b->n_delivered = 0;
    b->n_forwarded = 0;
    samples_clear(&b->lat);
    samples_clear(&b->lat_by[0]);
    samples_clear(&b->lat_by[1]);
}

static bool writers_idle(struct bench *b, void *arg)
{
    for (size_t i = 0; i < b->n_conns; i++)
        if (b->conns[i]->busy && !b->conns[i]->dead)
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------------------- */
/* CPU accounting, from /proc                                                                     */
/* ---------------------------------------------------------------------------------------------- */

/* The processes whose CPU time a server's (b) rows report. */
struct watch {
    pid_t server[URLS_MAX]; /* the server's processes (a cluster's nodes), summed */
    int n_server;
    pid_t db; /* the database's postmaster (its backends are its children), or 0 */
};

/* CPU time in clock ticks: of each watched group, of this process, and of the whole machine. */
struct cpu_sample {
    uint64_t server, db, self;
    uint64_t busy, total; /* /proc/stat: all CPUs' busy ticks (steal counts as busy) and all ticks */
    uint64_t kernel; /* interrupts and softirqs (loopback TCP runs there), kernel threads (the journal) */
};

struct proc_row {
    int pid, ppid;
    uint64_t ticks; /* utime + stime + cutime + cstime */
    bool in;
};

static int cmp_proc(const void *a, const void *b)
{
    const struct proc_row *x = a, *y = b;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Every process's parent and ticks, sorted by pid; returns how many (rows are owned by *rows). */
static size_t cpu__procs(struct proc_row **rows, size_t *cap)
{
    size_t n = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue; /* gone since readdir */
        ssize_t len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        /* The name in parentheses may hold spaces: the fields after it start after the last ')'. */
        char *p = strrchr(buf, ')');
        unsigned long long ut, st;
        long long cut, cst;
        int ppid;
        if (p == NULL || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
                                &ppid, &ut, &st, &cut, &cst) != 5)
            continue;
        *rows = grow(*rows, n, cap, sizeof(**rows));
        (*rows)[n++] =
            (struct proc_row){atoi(e->d_name), ppid, ut + st + (uint64_t)cut + (uint64_t)cst, false};
    }
    closedir(d);
    qsort(*rows, n, sizeof(**rows), cmp_proc);
    return n;
}

/*
 * Ticks of the processes roots[] and all their descendants. A child that exited and was waited for is
 * in its parent's cutime/cstime, so PostgreSQL backends that come and go during a window still count,
 * each exactly once.
 */
static uint64_t cpu__tree(struct proc_row *rows, size_t n, const pid_t *roots, int n_roots)
{
    for (size_t i = 0; i < n; i++) {
        rows[i].in = false;
        for (int r = 0; r < n_roots; r++)
            rows[i].in |= roots[r] > 0 && rows[i].pid == roots[r];
    }
    for (bool more = true; more;) { /* one pass per generation */
        more = false;
        for (size_t i = 0; i < n; i++) {
            struct proc_row key = {.pid = rows[i].ppid}, *parent;
            if (rows[i].in || (parent = bsearch(&key, rows, n, sizeof(*rows), cmp_proc)) == NULL ||
                !parent->in)
                continue;
            rows[i].in = more = true;
        }
    }
    uint64_t ticks = 0;
    for (size_t i = 0; i < n; i++)
        ticks += rows[i].in ? rows[i].ticks : 0;
    return ticks;
}

static void cpu_sample(const struct watch *w, struct cpu_sample *s)
{
    static struct proc_row *rows;
    static size_t cap;
    size_t n = cpu__procs(&rows, &cap);
    pid_t self = getpid();
    s->server = cpu__tree(rows, n, w->server, w->n_server);
    s->db = cpu__tree(rows, n, &w->db, 1);
    s->self = cpu__tree(rows, n, &self, 1);
    pid_t kthreadd = 2; /* the parent of every kernel thread */
    s->kernel = cpu__tree(rows, n, &kthreadd, 1);
    s->busy = s->total = 0;
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0}; /* user nice system idle iowait irq softirq steal */
    if (f != NULL && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                            &v[4], &v[5], &v[6], &v[7]) == 8) {
        s->busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        s->total = s->busy + v[3] + v[4];
        s->kernel += v[5] + v[6];
    }
    if (f != NULL)
        fclose(f);
}

/* ---------------------------------------------------------------------------------------------- */
/* Phases                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

/* The outcome of one SSE or long-poll phase. */
struct live {
    double p50, p99;
    double lost;    /* fraction of measured payloads not delivered by the end of the drain */
    double appends; /* measured appends, so a slow server's few samples are visible */
};

/* Where the CPU went during one (b) window, and which appends were forwarded. NAN: not measured. */
struct tput_detail {
    double streams;
    double server, db, self, kernel, others; /* CPU-seconds per 1,000 appends; others: other processes */
    double busy;                             /* of the machine's cores, the busy ones on average */
    double forwarded;                        /* the share of appends forwarded by the node asked */
    double local_p50, local_p99, fwd_p50, fwd_p99;
};

struct results {
    bool ran;
    double seq_p50, seq_p99;
    double tput_1, tput_32, tput_many;
    double many_vs_one;           /* tput_many / tput_1: what spreading appends over many streams costs */
    struct tput_detail detail[3]; /* of tput_1, tput_32, tput_many */
    int n_urls;
    struct live sse100, sse1000, lp;
    double rss_mb;
    uint64_t errors;
};

struct config {
    double seconds;     /* measured time of each phase */
    double warmup;      /* unmeasured time before it */
    int writers;        /* (b) */
    int streams;        /* (b), the many-streams row */
    int subscribers[2]; /* (c) */
    int pollers;        /* (d) */
    double period_ms;   /* pacing of (c) and (d) */
    const char *phases; /* which of a, b, c, d to run (profiling one phase); default all */
};

/* CPU-seconds per 1,000 appends from a difference in ticks. */
static double per_k(uint64_t t0, uint64_t t1, double appends)
{
    return appends > 0 ? (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK) * 1000.0 / appends : NAN;
}

static void detail_fill(struct tput_detail *d, struct bench *b, const struct watch *w,
                        const struct cpu_sample *c0, const struct cpu_sample *c1)
{
    double n = (double)b->n_appends;
    d->server = w->n_server > 0 ? per_k(c0->server, c1->server, n) : NAN;
    d->db = w->db > 0 ? per_k(c0->db, c1->db, n) : NAN;
    d->self = per_k(c0->self, c1->self, n);
    d->kernel = per_k(c0->kernel, c1->kernel, n);
    d->others = per_k(c0->busy, c1->busy, n) - d->kernel - d->self - (isnan(d->server) ? 0 : d->server) -
                (isnan(d->db) ? 0 : d->db);
    d->busy = c1->total > c0->total ? (double)(c1->busy - c0->busy) / (double)(c1->total - c0->total) *
                                          (double)sysconf(_SC_NPROCESSORS_ONLN)
                                    : NAN;
    d->forwarded = n > 0 ? (double)b->n_forwarded / n : NAN;
    d->local_p50 = samples_pct_ms(&b->lat_by[0], 0.50);
    d->local_p99 = samples_pct_ms(&b->lat_by[0], 0.99);
    d->fwd_p50 = samples_pct_ms(&b->lat_by[1], 0.50);
    d->fwd_p99 = samples_pct_ms(&b->lat_by[1], 0.99);
}

/*
 * (a) and (b): n_writers connections append back to back, writer i to stream i % n_streams. Returns
 * appends/s over the measured window; latencies stay in b->lat. With detail, also where the CPU went
 * (the processes in w) and which appends were forwarded.
 */
static double phase_append(struct bench *b, const struct config *cfg, const char *name, int n_writers,
                           int n_streams, const struct watch *w, struct tput_detail *detail)
{
    bench_create_streams(b, name, (size_t)n_streams, NULL);
    bench_phase_begin(b, PHASE_SEQ);
    /* With more streams than writers, each writer moves on by n_writers streams after each append,
     * so every stream is written and no two writers share one at a time. */
    b->stride = n_streams > n_writers ? n_writers : 0;
    for (int i = 0; i < n_writers; i++) {
        struct conn *c = conn_new(b, ROLE_WRITER);
        c->stream = (i % n_streams) - b->stride; /* writer_send steps it first */
        if (c->stream < 0)
            c->stream += n_streams;
        writer_send(c);
    }
    bench_run(b, now_ns() + (uint64_t)(cfg->warmup * 1e9), NULL, NULL, NULL);
    struct cpu_sample c0, c1;
    cpu_sample(w, &c0);
    b->measuring = true;
    uint64_t t0 = now_ns();
    bench_run(b, t0 + (uint64_t)(cfg->seconds * 1e9), NULL, NULL, NULL);
    double elapsed = (double)(now_ns() - t0) / 1e9;
    cpu_sample(w, &c1);
    if (detail != NULL) {
        detail_fill(detail, b, w, &c0, &c1);
        detail->streams = n_streams;
    }
    b->stopping = true;
    bench_run(b, now_ns() + MS(DRAIN_MS), NULL, writers_idle, NULL);
    bench_close_all(b);
    return (double)b->n_appends / elapsed;
}

struct live_wait {
    size_t want; /* payloads that must arrive */
    size_t ready_from, ready_to;
};

static bool subscribers_ready(struct bench *b, void *arg)
{
    struct live_wait *w = arg;
    for (size_t i = w->ready_from; i < w->ready_to; i++)
        if (!b->conns[i]->ready && !b->conns[i]->dead)
            return false;
    return true;
}

static bool enough_appends(struct bench *b, void *arg) { return b->n_appends >= LIVE_MIN_APPENDS; }

static bool all_delivered(struct bench *b, void *arg)
{
    return b->n_delivered >= ((struct live_wait *)arg)->want;
}

/*
 * (c) and (d): n_clients receivers (SSE or long-poll) wait at the tail of one stream while one writer
 * appends every period. The fraction of measured payloads that never arrived goes to *lost.
 */
static void phase_live(struct bench *b, const struct config *cfg, enum role role, int n_clients,
                       struct live *out)
{
    char offset[1][OFFSET_MAX];
    char name[32];
    snprintf(name, sizeof(name), "%s%d", role == ROLE_SSE ? "sse" : "poll", n_clients);
    bench_create_streams(b, name, 1, offset);
    bench_phase_begin(b, PHASE_LIVE);

    struct live_wait w = {0};
    uint64_t setup_deadline = now_ns() + MS(SETUP_MS);
    for (int i = 0; i < n_clients; i++) {
        struct conn *c = conn_new(b, role);
        memcpy(c->offset, offset[0], OFFSET_MAX);
        if (role == ROLE_POLL) {
            poll_send(c);
            continue;
        }
        char target[400];
        snprintf(target, sizeof(target), "%s?offset=%s&live=sse", b->paths[0], c->offset);
        conn_send(c, "GET", target, NULL, NULL, 0);
        if ((i + 1) % SSE_BATCH == 0 || i + 1 == n_clients) {
            w.ready_to = b->n_conns;
            bench_run(b, setup_deadline, NULL, subscribers_ready, &w);
            w.ready_from = w.ready_to;
        }
    }
    size_t not_ready = 0;
    for (size_t i = 0; i < b->n_conns; i++)
        not_ready += role == ROLE_SSE && !b->conns[i]->ready;
    if (not_ready)
        fprintf(stderr, "dsbench: %s: %zu of %d SSE subscribers sent no control event in %d s\n", b->name,
                not_ready, n_clients, SETUP_MS / 1000);
    /* Long-polls give no sign that they wait; let the server take them in before the first append. */
    bench_run(b, now_ns() + MS(200), NULL, NULL, NULL);

    struct pace pace = {.writer = conn_new(b, ROLE_WRITER), .period_ns = (uint64_t)(cfg->period_ms * 1e6)};
    pace.next_due = now_ns();
    bench_run(b, now_ns() + (uint64_t)(cfg->warmup * 1e9), &pace, NULL, NULL);
    b->measuring = true;
    bench_run(b, now_ns() + (uint64_t)(cfg->seconds * 1e9), &pace, NULL, NULL);
    bench_run(b, now_ns() + MS(LIVE_EXTRA_MS), &pace, enough_appends, NULL);
    b->stopping = true;
    bench_run(b, now_ns() + MS(DRAIN_MS), NULL, ctl_done, pace.writer);

    uint32_t measured = b->first_measured_seq == UINT32_MAX ? 0 : b->seq - b->first_measured_seq;
    w.want = (size_t)measured * (size_t)n_clients;
    bench_run(b, now_ns() + MS(DRAIN_MS), NULL, all_delivered, &w);
    out->p50 = samples_pct_ms(&b->lat, 0.50);
    out->p99 = samples_pct_ms(&b->lat, 0.99);
    out->lost = w.want ? 1.0 - (double)b->n_delivered / (double)w.want : NAN;
    out->appends = measured;
    bench_close_all(b);
}

static double rss_mb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NAN;
    double mb = NAN;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            mb = strtod(line + 6, NULL) / 1024.0;
    fclose(f);
    return mb;
}

static void bench_target(struct results *r, const char *name, const char *url, const struct config *cfg,
                         const struct watch *w)
{
    struct bench b = {.name = name, .ep = epoll_create1(EPOLL_CLOEXEC), .run_id = now_ns()};
    if (b.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    for (const char *u = url; u != NULL; u = strchr(u, ','), u = u ? u + 1 : NULL) {
        int port;
        char ip[64];
        if (b.n_addr == URLS_MAX || sscanf(u, "http://%63[0-9.]:%d", ip, &port) != 2)
            die("%s: URLs must look like http://127.0.0.1:PORT (at most %d, comma separated), got %s", name,
                URLS_MAX, url);
        if (b.n_addr == 0)
            snprintf(b.host, sizeof(b.host), "%s:%d", ip, port);
        snprintf(b.url[b.n_addr], sizeof(b.url[b.n_addr]), "http://%s:%d", ip, port);
        struct sockaddr_in *a = &b.addr[b.n_addr++];
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, ip, &a->sin_addr) != 1)
            die("%s: bad address %s", name, ip);
    }

    /* Figures of phases left out stay NAN, which the table prints as "-". */
    const struct live none = {NAN, NAN, NAN, NAN};
    r->seq_p50 = r->seq_p99 = r->tput_1 = r->tput_32 = r->tput_many = r->many_vs_one = NAN;
    r->sse100 = r->sse1000 = r->lp = none;
    r->n_urls = b.n_addr;
    for (int i = 0; i < 3; i++)
        r->detail[i] = (struct tput_detail){NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    if (strchr(cfg->phases, 'a')) {
        fprintf(stderr, "dsbench: %s: (a) sequential appends\n", name);
        phase_append(&b, cfg, "seq", 1, 1, w, NULL);
        r->seq_p50 = samples_pct_ms(&b.lat, 0.50);
        r->seq_p99 = samples_pct_ms(&b.lat, 0.99);
    }
    if (strchr(cfg->phases, 'b')) {
        fprintf(stderr, "dsbench: %s: (b) %d writers on 1, %d and %d streams\n", name, cfg->writers,
                cfg->writers, cfg->streams);
        r->tput_1 = phase_append(&b, cfg, "w1", cfg->writers, 1, w, &r->detail[0]);
        r->tput_32 = phase_append(&b, cfg, "wn", cfg->writers, cfg->writers, w, &r->detail[1]);
        r->tput_many = phase_append(&b, cfg, "wm", cfg->writers, cfg->streams, w, &r->detail[2]);
        r->many_vs_one = r->tput_many / r->tput_1;
    }
    if (strchr(cfg->phases, 'c')) {
        fprintf(stderr, "dsbench: %s: (c) SSE, %d then %d subscribers\n", name, cfg->subscribers[0],
                cfg->subscribers[1]);
        phase_live(&b, cfg, ROLE_SSE, cfg->subscribers[0], &r->sse100);
        phase_live(&b, cfg, ROLE_SSE, cfg->subscribers[1], &r->sse1000);
    }
    if (strchr(cfg->phases, 'd')) {
        fprintf(stderr, "dsbench: %s: (d) long-poll, %d pollers\n", name, cfg->pollers);
        phase_live(&b, cfg, ROLE_POLL, cfg->pollers, &r->lp);
    }

    r->ran = true;
    r->errors = b.n_errors;
    samples_clear(&b.lat);
    samples_clear(&b.lat_by[0]);
    samples_clear(&b.lat_by[1]);
    free(b.conns);
    free(b.paths);
    close(b.ep);
}

/*
 * Benchmarks one server in a child process, so a server that falls over (and the die() it causes)
 * costs only its own column. Returns 0, or -1 when the child did not deliver results.
 */
static int bench_isolated(struct results *r, const char *name, const char *url, const struct config *cfg,
                          const struct watch *w)
{
    int fds[2];
    if (pipe(fds) < 0)
        die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        bench_target(r, name, url, cfg, w);
        ssize_t n = write(fds[1], r, sizeof(*r));
        _exit(n == (ssize_t)sizeof(*r) ? 0 : 1);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], r, sizeof(*r)); /* plain doubles and counters: no pointers cross */
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (n != (ssize_t)sizeof(*r)) {
        fprintf(stderr, "dsbench: %s: the benchmark of this server did not finish; its column is empty\n",
                name);
        *r = (struct results){0};
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Report                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

enum better {
    HIGHER,
    LOWER
};

struct row {
    const char *label;
    size_t field; /* offsetof(struct results, ...); 0 for a heading */
    enum better better;
    int decimals;
    enum {
        PLAIN,
        PERCENT,
        COUNT
    } kind; /* PERCENT and COUNT rows get no advantage column */
};

static double field(const struct results *r, size_t off)
{
    return r->ran ? *(const double *)((const char *)r + off) : NAN;
}

#define F(x) offsetof(struct results, x)

/* ratio > 1 always means agentd is better: agentd/ref for throughput, ref/agentd for latency and memory. */
static double advantage(const struct results *a, const struct results *ref, size_t off, enum better better)
{
    double x = field(a, off), y = field(ref, off);
    return better == HIGHER ? x / y : y / x;
}

static void print_value(double v, int decimals, const char *suffix)
{
    if (isnan(v))
        printf(" %12s", "-");
    else
        printf(" %*.*f%s", 12 - (int)strlen(suffix), decimals, v, suffix);
}

static void report(const struct results *a, const struct results *ref, const struct config *cfg)
{
    char sse0[64], sse1[64], lp[64], w1[64], wn[64], wm[64], ratio[64];
    snprintf(w1, sizeof(w1), "(b) appends/s, %d writers, 1 stream", cfg->writers);
    snprintf(wn, sizeof(wn), "(b) appends/s, %d writers, %d streams", cfg->writers, cfg->writers);
    snprintf(wm, sizeof(wm), "(b) appends/s, %d writers, %d streams", cfg->writers, cfg->streams);
    snprintf(ratio, sizeof(ratio), "    %d streams / 1 stream", cfg->streams);
    snprintf(sse0, sizeof(sse0), "(c) SSE, %d subscribers", cfg->subscribers[0]);
    snprintf(sse1, sizeof(sse1), "(c) SSE, %d subscribers", cfg->subscribers[1]);
    snprintf(lp, sizeof(lp), "(d) long-poll wake, %d pollers", cfg->pollers);
    const struct row rows[] = {
        {"(a) sequential append p50 ms", F(seq_p50), LOWER, 3, PLAIN},
        {"(a) sequential append p99 ms", F(seq_p99), LOWER, 3, PLAIN},
        {w1, F(tput_1), HIGHER, 0, PLAIN},
        {wn, F(tput_32), HIGHER, 0, PLAIN},
        {wm, F(tput_many), HIGHER, 0, PLAIN},
        {ratio, F(many_vs_one), HIGHER, 2, COUNT},
        {sse0, 0, LOWER, 0, PLAIN},
        {"      p50 ms", F(sse100.p50), LOWER, 3, PLAIN},
        {"      p99 ms", F(sse100.p99), LOWER, 3, PLAIN},
        {"      undelivered", F(sse100.lost), LOWER, 1, PERCENT},
        {"      measured appends", F(sse100.appends), HIGHER, 0, COUNT},
        {sse1, 0, LOWER, 0, PLAIN},
        {"      p50 ms", F(sse1000.p50), LOWER, 3, PLAIN},
        {"      p99 ms", F(sse1000.p99), LOWER, 3, PLAIN},
        {"      undelivered", F(sse1000.lost), LOWER, 1, PERCENT},
        {"      measured appends", F(sse1000.appends), HIGHER, 0, COUNT},
        {lp, 0, LOWER, 0, PLAIN},
        {"      p50 ms", F(lp.p50), LOWER, 3, PLAIN},
        {"      p99 ms", F(lp.p99), LOWER, 3, PLAIN},
        {"      undelivered", F(lp.lost), LOWER, 1, PERCENT},
        {"      measured appends", F(lp.appends), HIGHER, 0, COUNT},
        {"(e) peak RSS MiB (VmHWM)", F(rss_mb), LOWER, 1, PLAIN},
    };
    printf("\n%-42s %12s %12s %12s\n", "figure", "agentd", "reference", "advantage");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *row = &rows[i];
        printf("%-42s", row->label);
        if (row->field != 0) {
            double scale = row->kind == PERCENT ? 100 : 1;
            const char *suffix = row->kind == PERCENT ? "%" : "";
            print_value(field(a, row->field) * scale, row->decimals, suffix);
            print_value(field(ref, row->field) * scale, row->decimals, suffix);
            if (row->kind == PLAIN)
                print_value(advantage(a, ref, row->field, row->better), 1, "x");
        }
        putchar('\n');
    }
    printf("advantage > 1 means agentd is better: agentd/reference for appends/s, reference/agentd for\n"
           "latency and memory. Each phase measures %.1f s after a %.1f s warm-up; SSE and long-poll\n"
           "phases append one 100-byte payload every %.0f ms.\n",
           cfg->seconds, cfg->warmup, cfg->period_ms);
    if (a->errors || ref->errors)
        printf("request errors: agentd %" PRIu64 ", reference %" PRIu64 " (see stderr)\n", a->errors,
               ref->errors);
}

static void print_cell(double v, int width, int decimals)
{
    if (isnan(v))
        printf(" %*s", width, "-");
    else
        printf(" %*.*f", width, decimals, v);
}

/*
 * (b)'s CPU figures, one line per server and row: bench/cluster reads these lines (a server's name, then
 * the stream count). A window is CPU-bound when at least 90 % of the machine's cores were busy; the cores
 * other processes took say how much of that was load this run did not make (on a shared machine).
 */
static void report_cpu(const struct results *res, const char *const *names)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (!res[0].ran && !res[1].ran)
        return;
    if (isnan(res[0].tput_1) && isnan(res[1].tput_1))
        return;
    printf(
        "\n(b) where the CPU went in each measured window, CPU-seconds per 1,000 appends: server = the\n"
        "    --agentd-pid/--ref-pid processes (summed), postgres = --db-pid's, dsbench = these writers,\n"
        "    kernel = interrupts, softirqs (loopback TCP) and kernel threads (the journal), others = other\n"
        "    processes (load this run did not make); cpu max/s = the appends/s all cores would carry at the\n"
        "    CPU cost of server, postgres, dsbench and kernel if nothing else ran (a CPU-bound rate near it\n"
        "    cannot grow on this machine); then the machine's cores busy\n");
    printf("%-10s %7s %10s %8s %8s %8s %8s %8s %10s  %s\n", "server", "streams", "appends/s", "server",
           "postgres", "dsbench", "kernel", "others", "cpu max/s", "cores busy");
    for (int i = 0; i < 2; i++) {
        const double rates[3] = {res[i].tput_1, res[i].tput_32, res[i].tput_many};
        for (int k = 0; k < 3 && res[i].ran; k++) {
            const struct tput_detail *d = &res[i].detail[k];
            if (isnan(rates[k]))
                continue;
            printf("%-10s %7.0f %10.0f", names[i], d->streams, rates[k]);
            print_cell(d->server, 8, 3);
            print_cell(d->db, 8, 3);
            print_cell(d->self, 8, 3);
            print_cell(d->kernel, 8, 3);
            print_cell(d->others, 8, 3);
            double own =
                d->self + d->kernel + (isnan(d->server) ? 0 : d->server) + (isnan(d->db) ? 0 : d->db);
            print_cell(own > 0 ? (double)ncpu * 1000 / own : NAN, 10, 0);
            if (isnan(d->busy))
                printf("  -\n");
            else
                printf("  %s: %.2f of %ld cores busy, %.2f by other processes\n",
                       d->busy >= 0.9 * (double)ncpu ? "CPU-bound" : "not CPU-bound", d->busy, ncpu,
                       d->others * rates[k] / 1000);
        }
    }
    /* Forwarding is agentd's (a node answers for another); only a service with several URLs has it. */
    const struct results *a = &res[0];
    if (!a->ran || a->n_urls < 2 || isnan(a->tput_1))
        return;
    printf(
        "\n(b) %s over %d URLs: appends forwarded by the node asked (the answer's Agentd-Node names another\n"
        "    node) vs answered there; latency from writing the request to reading the answer, ms\n",
        names[0], a->n_urls);
    printf("%-10s %7s %10s %10s %8s %14s %8s\n", "server", "streams", "forwarded", "local p50", "p99",
           "forwarded p50", "p99");
    for (int k = 0; k < 3; k++) {
        const struct tput_detail *d = &a->detail[k];
        printf("%-10s %7.0f %9.0f%%", names[0], d->streams, d->forwarded * 100);
        print_cell(d->local_p50, 10, 3);
        print_cell(d->local_p99, 8, 3);
        print_cell(d->fwd_p50, 14, 3);
        print_cell(d->fwd_p99, 8, 3);
        putchar('\n');
    }
}

struct target {
    const char *label;
    size_t field;
    bool relative; /* compare advantage() against limit, else agentd's own figure */
    enum better better;
    double limit;
    const char *unit; /* of agentd's own figure: "ms", or "" for a ratio */
};

/* The figures agentd must reach; prints PASS/FAIL lines and returns how many failed. */
static int report_targets(const struct results *a, const struct results *ref)
{
    const struct target targets[] = {
        {"appends/s with 32 writers, 1 stream >= 20x reference", F(tput_1), true, HIGHER, 20, ""},
        {"appends/s with 32 writers, 32 streams >= 20x reference", F(tput_32), true, HIGHER, 20, ""},
        {"appends/s with 32 writers, many streams >= 20x reference", F(tput_many), true, HIGHER, 20, ""},
        {"appends/s, many streams >= 0.9 x agentd's own 1 stream", F(many_vs_one), false, HIGHER, 0.9, ""},
        {"sequential fsynced append p50 <= 0.25 ms", F(seq_p50), false, LOWER, 0.25, "ms"},
        {"SSE p50 <= 1 ms with 100 subscribers", F(sse100.p50), false, LOWER, 1, "ms"},
        {"SSE p99 <= 5 ms with 100 subscribers", F(sse100.p99), false, LOWER, 5, "ms"},
        {"SSE p99 <= 15 ms with 1000 subscribers", F(sse1000.p99), false, LOWER, 15, "ms"},
        {"peak RSS <= 1/5 of reference", F(rss_mb), true, LOWER, 5, ""},
    };
    int failed = 0;
    printf("\ntargets for agentd:\n");
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        const struct target *t = &targets[i];
        double v = t->relative ? advantage(a, ref, t->field, t->better) : field(a, t->field);
        bool at_least = t->relative || t->better == HIGHER; /* advantage() already points upwards */
        bool ok = !isnan(v) && (at_least ? v >= t->limit : v <= t->limit);
        failed += !ok;
        printf("%s  %-56s ", ok ? "PASS" : "FAIL", t->label);
        if (isnan(v))
            printf("(not measured)\n");
        else if (t->relative)
            printf("(%.1fx)\n", v);
        else if (*t->unit)
            printf("(%.3f %s)\n", v, t->unit);
        else
            printf("(%.2f)\n", v);
    }
    return failed;
}

/* ---------------------------------------------------------------------------------------------- */
/* main                                                                                           */
/* ---------------------------------------------------------------------------------------------- */

static void usage(void)
{
    fputs("usage: dsbench [--agentd URL[,URL...] [--agentd-pid PID[,PID...]] [--db-pid PID]]\n"
          "               [--ref URL [--ref-pid PID]] [--seconds S] [--warmup S] [--subscribers N,M] "
          "[--writers N] [--streams N]\n"
          "               [--pollers N] [--phases abcd] [--strict]\n"
          "Benchmarks Durable Streams servers at URL (http://127.0.0.1:PORT) and prints a comparison.\n"
          "The PIDs (the nodes of --agentd, the database's postmaster) are whose CPU time (b) reports.\n"
          "--strict exits 3 when a target fails.\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    struct config cfg = {.seconds = 3,
                         .warmup = 0.5,
                         .writers = 32,
                         .streams = 1000,
                         .subscribers = {100, 1000},
                         .pollers = 100,
                         .period_ms = 10,
                         .phases = "abcd"};
    const char *url[2] = {NULL, NULL};
    struct watch watch[2] = {0};
    bool strict = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--strict") == 0) {
            strict = true;
            continue;
        }
        if (val == NULL)
            usage();
        i++;
        if (strcmp(arg, "--agentd") == 0)
            url[0] = val;
        else if (strcmp(arg, "--ref") == 0)
            url[1] = val;
        else if (strcmp(arg, "--agentd-pid") == 0 || strcmp(arg, "--ref-pid") == 0) {
            struct watch *w = &watch[strcmp(arg, "--ref-pid") == 0];
            w->n_server = 0;
            for (const char *p = val; p != NULL && w->n_server < URLS_MAX;
                 p = strchr(p, ','), p = p ? p + 1 : NULL)
                w->server[w->n_server++] = atoi(p);
        } else if (strcmp(arg, "--db-pid") == 0)
            watch[0].db = atoi(val);
        else if (strcmp(arg, "--seconds") == 0)
            cfg.seconds = atof(val);
        else if (strcmp(arg, "--warmup") == 0)
            cfg.warmup = atof(val);
        else if (strcmp(arg, "--writers") == 0)
            cfg.writers = atoi(val);
        else if (strcmp(arg, "--streams") == 0)
            cfg.streams = atoi(val);
        else if (strcmp(arg, "--phases") == 0)
            cfg.phases = val;
        else if (strcmp(arg, "--pollers") == 0)
            cfg.pollers = atoi(val);
        else if (strcmp(arg, "--subscribers") == 0) {
            if (sscanf(val, "%d,%d", &cfg.subscribers[0], &cfg.subscribers[1]) != 2)
                usage();
        } else
            usage();
    }
    if ((url[0] == NULL && url[1] == NULL) || cfg.seconds <= 0 || cfg.writers < 1 || cfg.streams < 1 ||
        cfg.pollers < 1 || cfg.subscribers[0] < 1 || cfg.subscribers[1] < 1)
        usage();

    /* 1000 subscribers plus writers need more descriptors than the usual soft limit of 1024. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct results res[2] = {0};
    const char *names[2] = {"agentd", "reference"};
    int broken = 0;
    for (int i = 0; i < 2; i++) {
        if (url[i] == NULL)
            continue;
        if (bench_isolated(&res[i], names[i], url[i], &cfg, &watch[i]) < 0)
            broken++;
    }
    /* Peak RSS is read last, after every phase has loaded both servers. */
    for (int i = 0; i < 2; i++)
        res[i].rss_mb = res[i].ran && watch[i].server[0] > 0 ? rss_mb(watch[i].server[0]) : NAN;

    report(&res[0], &res[1], &cfg);
    report_cpu(res, names);
    int failed = report_targets(&res[0], &res[1]);
    if (broken)
        return 1;
    return strict && failed ? 3 : 0;
}
