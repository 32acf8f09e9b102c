/* frame — completion markers and bounded output capture for runtime calls.
 *
 * A call ends when "\x1e<nonce>:<status><flags>\n" has been seen on stdout (stderr, written before
 * it, is then drained without waiting; the flags are RUNTIME__FLAG_*). The nonce is 128 fresh
 * random bits per call, so no output can end a call by accident, and the scanner below works
 * byte-exactly across read boundaries, so missing newlines, binary output and arbitrarily large
 * output are all just bytes.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/core.h"
#include "runtime/runtime_int.h"

void runtime__nonce(char hex[RUNTIME__NONCE_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char raw[RUNTIME__NONCE_LEN / 2];
    size_t got = 0;

    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            /* getrandom only fails before the pool is seeded or on a broken kernel; a
             * predictable nonce would make the framing spoofable, so refuse to go on. */
            log_error("runtime: getrandom: %s", strerror(errno));
            abort();
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 15];
    }
    hex[RUNTIME__NONCE_LEN] = '\0';
}

void runtime__scan_init(struct runtime__scan *s, const char *needle, size_t len)
{
    assert(len > 0 && len <= sizeof s->needle);
    /* The restart-at-current-byte rule in runtime__scan_feed needs this. */
    for (size_t i = 1; i < len; i++)
        assert(needle[i] != needle[0]);
    memcpy(s->needle, needle, len);
    s->len = len;
    s->matched = 0;
    s->found = 0;
}

size_t runtime__scan_feed(struct runtime__scan *s, const char *p, size_t n, runtime__emit_cb emit, void *arg)
{
    size_t i = 0, run = 0; /* p[run, i) is plain output not yet emitted */

    while (i < n) {
        if (s->matched == 0) {
            const char *q = memchr(p + i, s->needle[0], n - i);
            if (q == NULL) {
                i = n;
                break;
            }
            i = (size_t)(q - p);
            if (i > run)
                emit(arg, p + run, i - run);
            s->matched = 1;
            run = ++i;
        } else if (p[i] == s->needle[s->matched]) {
            run = ++i;
            if (++s->matched == s->len) {
                s->matched = 0;
                s->found = 1;
                return i;
            }
        } else {
            /* The held bytes were output after all; p[i] is looked at again. */
            emit(arg, s->needle, s->matched);
            s->matched = 0;
            run = i;
        }
    }
    if (n > run)
        emit(arg, p + run, n - run);
    return n;
}

void runtime__scan_flush(struct runtime__scan *s, runtime__emit_cb emit, void *arg)
{
    if (s->matched > 0)
        emit(arg, s->needle, s->matched);
    s->matched = 0;
}

void runtime__capture_init(struct runtime__capture *c, size_t limit)
{
    memset(c, 0, sizeof *c);
    c->limit = limit;
}

void runtime__capture_add(void *capture, const char *p, size_t n)
{
    struct runtime__capture *c = capture;
    size_t keep = n;

    c->total += n;
    if (c->len + keep > c->limit) {
        keep = c->limit - c->len;
        c->truncated = 1;
    }
    if (keep == 0)
        return;
    if (c->len + keep > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + keep)
            cap *= 2;
        if (cap > c->limit)
            cap = c->limit;
        c->buf = xrealloc(c->buf, cap);
        c->cap = cap;
    }
    memcpy(c->buf + c->len, p, keep);
    c->len += keep;
    assert(c->len <= c->limit && c->len <= c->cap);
}

void runtime__capture_finish(struct runtime__capture *c, const char *note)
{
    char tail[512];
    size_t n = 0;

    if (c->truncated)
        n = (size_t)snprintf(tail, sizeof tail, "\n[agentd: output truncated: %zu of %zu bytes shown]\n",
                             c->len, c->total);
    if (note != NULL)
        n += (size_t)snprintf(tail + n, sizeof tail - n, "%s%s\n",
                              n == 0 && c->len > 0 && c->buf[c->len - 1] != '\n' ? "\n" : "", note);
    if (n == 0)
        return;
    if (n >= sizeof tail)
        n = sizeof tail - 1;
    c->buf = xrealloc(c->buf, c->len + n);
    memcpy(c->buf + c->len, tail, n);
    c->len += n;
}

void runtime__capture_free(struct runtime__capture *c)
{
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}
