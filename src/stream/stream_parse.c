/* stream_parse — request string validators. See stream_parse.h. */
#include "stream/stream_parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int stream_parse__digits(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* ^(0|[1-9][0-9]*)$ within max; returns 0 or -EINVAL. */
int stream_parse_uint(const char *s, size_t n, int64_t max, int64_t *out)
{
    if (!stream_parse__digits(s, n) || (n > 1 && s[0] == '0') || n > 16)
        return -EINVAL;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Digits only (leading zeros allowed), at most 2^53-1. */
int stream_parse_safe_int(const char *s, size_t n, int64_t *out)
{
    if (!stream_parse__digits(s, n) || n > 20)
        return -EINVAL;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v * 10 + (s[i] - '0');
        if (v > STREAM_PARSE_MAX_SAFE_INT)
            return -EINVAL;
    }
    *out = v;
    return 0;
}

/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM). */
int stream_parse_rfc3339(const char *s, size_t n, int64_t *ms)
{
    char b[64];
    if (n < 20 || n >= sizeof b)
        return -EINVAL;
    memcpy(b, s, n);
    b[n] = '\0';
    struct tm tm = {0};
    int frac_ms = 0;
    const char *p = b;
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        char c = p[i];
        if (shape[i] == 'd' ? (c < '0' || c > '9') : shape[i] == 'T' ? (c != 'T' && c != 't') : c != shape[i])
            return -EINVAL;
    }
    tm.tm_year = atoi(p) - 1900;
    tm.tm_mon = atoi(p + 5) - 1;
    tm.tm_mday = atoi(p + 8);
    tm.tm_hour = atoi(p + 11);
    tm.tm_min = atoi(p + 14);
    tm.tm_sec = atoi(p + 17);
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return -EINVAL;
    p += 19;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        if (digits == 0)
            return -EINVAL;
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    int64_t offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
               p[3] == ':' && p[4] >= '0' && p[4] <= '9' && p[5] >= '0' && p[5] <= '9') {
        int h = (p[1] - '0') * 10 + (p[2] - '0'), m = (p[4] - '0') * 10 + (p[5] - '0');
        if (h > 23 || m > 59)
            return -EINVAL;
        offset_s = (h * 3600 + m * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    time_t t = timegm(&tm);
    *ms = ((int64_t)t - offset_s) * 1000 + frac_ms;
    return 0;
}

/* Rejects paths that could escape or alias: empty segments, "." and ".." (also percent-encoded),
 * control characters and backslashes. */
const char *stream_parse_path(const char *p, size_t n)
{
    if (n == 0)
        return "the stream path is empty";
    if (n > 1024)
        return "the stream path is too long";
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n) {
            unsigned char c = (unsigned char)p[i];
            if (c < 0x20 || c == 0x7f || c == '\\')
                return "the stream path has a forbidden character";
            if (c != '/')
                continue;
        }
        size_t len = i - start;
        const char *seg = p + start;
        if (len == 0)
            return "the stream path has an empty segment";
        /* decode just enough to recognise dots */
        char d[8];
        size_t k = 0;
        for (size_t j = 0; j < len && k < sizeof d; j++) {
            if (seg[j] == '%' && j + 2 < len && seg[j + 1] == '2' &&
                (seg[j + 2] == 'e' || seg[j + 2] == 'E')) {
                d[k++] = '.';
                j += 2;
            } else {
                d[k++] = seg[j];
            }
        }
        if ((k == 1 && d[0] == '.' && len <= 3) || (k == 2 && d[0] == '.' && d[1] == '.' && len <= 6))
            return "the stream path may not contain '.' or '..' segments";
        start = i + 1;
    }
    return NULL;
}
