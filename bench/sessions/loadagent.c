/*
 * loadagent — a busy coding agent speaking the jsonl agent protocol (doc/AGENT-PROTOCOL.md), for
 * benchmarks and load tests: it streams token deltas at a set rate, calls tools now and then (with
 * output), repeats each stretch of deltas as a whole message, and ends with a result carrying usage.
 *
 *   loadagent [--rate N] [--seconds S] [--deltas N] [--tool-every N] [--tool-output BYTES]
 *             [--message-every N] [--burst N]
 *
 * The user's text can override any option with words like `rate=20 seconds=5` (other words are
 * ignored), so one session's agent can be driven differently per message. Defaults: 50 deltas a
 * second for 10 seconds (--deltas, when given, ends the run after that many instead), a tool call
 * every 100 deltas with 2,048 bytes of output, a message every 50 deltas, deltas one at a time
 * (--burst N writes N at each wake-up, N / rate seconds apart, as tokens come off a network
 * stream: the same rate for a tenth of the wake-ups, which is most of what a thousand agents cost).
 *
 * Every delta carries "n" (1, 2, ... within the run) and "t0": "N@NS", its number again and the
 * CLOCK_REALTIME time in nanoseconds taken just before the line was written, so a reader of the
 * transcript can tell from that one field that none was lost and how long each took to reach it. Each event is one write(2), as an agent that
 * flushes every token does. A cancel line on stdin, or stdin closing, ends the run at once with an
 * error result.
 *
 * Small on purpose: no allocation after start, static buffers, libc only (it links nothing of
 * agentd's), so a thousand of them fit in memory (~100-200 KiB resident each).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_IN  (64 << 10) /* the first stdin line (longer user texts are cut) */
#define TOOL_MAX_OUT (48 << 10)

struct opts {
    double rate;        /* deltas a second */
    double seconds;     /* how long the run streams, when deltas is 0 */
    long deltas;        /* how many deltas, 0: as many as fit in `seconds` */
    long tool_every;    /* a tool call after every this many deltas, 0: none */
    long tool_output;   /* bytes of each tool's output */
    long message_every; /* a whole message after every this many deltas, 0: none */
    long burst;         /* deltas written together at each wake-up (each its own write) */
};

static char in[LINE_MAX_IN];
static size_t n_in;
static char out[TOOL_MAX_OUT + 1024];

static const char *const words[] = {
    "the",    "function", "returns", "a",    "value", "when", "called",  "with",   "an",       "empty",
    "buffer", "so",       "I",       "will", "check", "its",  "callers", "before", "changing", "it",
};
#define NWORDS (sizeof words / sizeof words[0])

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Writes a whole line; a closed stdout (agentd gone) ends the program. */
static void emit(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(1);
        p += w;
        n -= (size_t)w;
    }
}

static void emitf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emitf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, sizeof out, fmt, ap);
    va_end(ap);
    if (n > 0)
        emit(out, (size_t)n < sizeof out ? (size_t)n : sizeof out - 1);
}

/* Reads stdin until a whole line is in `in` (NUL-terminated at the newline). 0 on EOF first. */
static int read_line(void)
{
    for (;;) {
        char *nl = memchr(in, '\n', n_in);
        if (nl) {
            *nl = '\0';
            return 1;
        }
        if (n_in == sizeof in - 1) { /* too long: keep the start */
            in[n_in] = '\0';
            return 1;
        }
        ssize_t r = read(0, in + n_in, sizeof in - 1 - n_in);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        n_in += (size_t)r;
    }
}

/* Applies `key=value` words found in the user's text (the JSON "text" field, taken as it is). */
static void apply_words(struct opts *o, const char *line)
{
    const char *t = strstr(line, "\"text\":\"");
    if (t == NULL)
        return;
    t += 8;
    static const struct {
        const char *key;
        int is_double;
        size_t off;
    } keys[] = {
        {"rate=", 1, offsetof(struct opts, rate)},
        {"seconds=", 1, offsetof(struct opts, seconds)},
        {"deltas=", 0, offsetof(struct opts, deltas)},
        {"tools=", 0, offsetof(struct opts, tool_every)},
        {"tool_output=", 0, offsetof(struct opts, tool_output)},
        {"messages=", 0, offsetof(struct opts, message_every)},
        {"burst=", 0, offsetof(struct opts, burst)},
    };
    for (const char *p = t; *p && *p != '"'; p++) {
        if (p != t && p[-1] != ' ')
            continue;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            size_t kl = strlen(keys[i].key);
            if (strncmp(p, keys[i].key, kl) != 0)
                continue;
            if (keys[i].is_double)
                *(double *)((char *)o + keys[i].off) = strtod(p + kl, NULL);
            else
                *(long *)((char *)o + keys[i].off) = strtol(p + kl, NULL, 10);
        }
    }
}

/* Waits until the monotonic time `due`, watching stdin: returns 0 when a cancel line came or stdin
 * closed (the run must end), 1 when the time came. */
static int wait_until(uint64_t due)
{
    for (;;) {
        uint64_t now = mono_ns();
        if (now >= due)
            return 1;
        struct timespec ts = {.tv_sec = (time_t)((due - now) / 1000000000u),
                              .tv_nsec = (long)((due - now) % 1000000000u)};
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int r = ppoll(&p, 1, &ts, NULL);
        if (r < 0 && errno != EINTR)
            return 0;
        if (r > 0) {
            /* any control line (only cancel is defined), or EOF, ends the run */
            char buf[4096];
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0 || memmem(buf, (size_t)n, "cancel", 6))
                return 0;
        }
    }
}

static void tool_call(long k, long bytes)
{
    emitf(
        "{\"type\":\"pre_tool\",\"name\":\"bash\",\"id\":\"call_%ld\",\"input\":{\"command\":\"grep -rn TODO "
        "src/ | head -n %ld\"}}\n",
        k, bytes / 40 + 1);
    int n = snprintf(out, sizeof out, "{\"type\":\"post_tool\",\"id\":\"call_%ld\",\"output\":\"", k);
    if (bytes > TOOL_MAX_OUT)
        bytes = TOOL_MAX_OUT;
    for (long i = 0; i < bytes; i++) /* lines of a grep's output, newlines escaped */
        out[n++] = i % 40 == 39 ? '|' : (char)('a' + (i * 7 + k) % 26);
    n += snprintf(out + n, sizeof out - (size_t)n, "\"}\n");
    emit(out, (size_t)n);
}

int main(int argc, char **argv)
{
    struct opts o = {
        .rate = 50, .seconds = 10, .tool_every = 100, .tool_output = 2048, .message_every = 50, .burst = 1};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--rate") == 0)
            o.rate = strtod(v, NULL);
        else if (strcmp(a, "--seconds") == 0)
            o.seconds = strtod(v, NULL);
        else if (strcmp(a, "--deltas") == 0)
            o.deltas = strtol(v, NULL, 10);
        else if (strcmp(a, "--tool-every") == 0)
            o.tool_every = strtol(v, NULL, 10);
        else if (strcmp(a, "--tool-output") == 0)
            o.tool_output = strtol(v, NULL, 10);
        else if (strcmp(a, "--message-every") == 0)
            o.message_every = strtol(v, NULL, 10);
        else if (strcmp(a, "--burst") == 0)
            o.burst = strtol(v, NULL, 10);
        else {
            fprintf(stderr, "loadagent: unknown option %s\n", a);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (!read_line())
        return 0;
    apply_words(&o, in);
    if (o.rate <= 0)
        o.rate = 1;
    if (o.burst < 1)
        o.burst = 1;
    long total = o.deltas > 0 ? o.deltas : (long)(o.seconds * o.rate);
    uint64_t start = mono_ns(), period = (uint64_t)(1e9 / o.rate);

    emitf("{\"type\":\"session\",\"id\":\"load-%d\"}\n", (int)getpid());
    emitf("{\"type\":\"log\",\"level\":\"debug\",\"text\":\"streaming %ld deltas at %.1f/s\"}\n", total,
          o.rate);
    long n = 0, tools = 0;
    size_t msg_len = 0;
    static char msg[64 << 10];
    int cancelled = 0;
    for (n = 1; n <= total; n++) {
        /* deltas come in bursts of o.burst, as tokens do off a network stream: one wake-up each */
        if ((n - 1) % o.burst == 0 && !wait_until(start + (uint64_t)(n - 1) * period)) {
            cancelled = 1;
            n--;
            break;
        }
        const char *w = words[(size_t)n % NWORDS];
        emitf("{\"type\":\"delta\",\"text\":\"%s \",\"n\":%ld,\"t0\":\"%ld@%" PRIu64 "\"}\n", w, n, n,
              realtime_ns());
        if (msg_len + strlen(w) + 2 < sizeof msg)
            msg_len += (size_t)snprintf(msg + msg_len, sizeof msg - msg_len, "%s ", w);
        if (o.message_every > 0 && n % o.message_every == 0) {
            emitf("{\"type\":\"message\",\"text\":\"%s\"}\n", msg);
            msg_len = 0;
        }
        if (o.tool_every > 0 && n % o.tool_every == 0)
            tool_call(++tools, o.tool_output);
    }
    if (n > total)
        n = total;
    uint64_t took_ms = (mono_ns() - start) / 1000000u;
    emitf("{\"type\":\"result\",\"is_error\":%s,\"text\":\"%s after %ld deltas, %ld tool calls\","
          "\"usage\":{\"input_tokens\":%ld,\"output_tokens\":%ld},\"num_turns\":%ld,\"duration_ms\":%" PRIu64
          "}\n",
          cancelled ? "true" : "false", cancelled ? "cancelled" : "done", n, tools, 100 + 30 * tools, n,
          1 + tools, took_ms);
    return 0;
}
