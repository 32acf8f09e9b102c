/*
 * stream_parse — validators for the untrusted strings of stream requests: stream paths, RFC 3339
 * timestamps, and the protocol's integer headers. Pure functions that own nothing (fuzzed by
 * tests/fuzz/fuzz_request.c); used by stream_http.c and subs/. Inputs are (pointer, length) and
 * need no NUL; an output is written only on success, so on -EINVAL the caller's variable keeps
 * what it held. Reasons returned are static strings.
 */
#ifndef AGENTD_STREAM_PARSE_H
#define AGENTD_STREAM_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_PARSE_MAX_SAFE_INT 9007199254740991LL /* 2^53-1, the largest integer JSON clients keep exact */

/* ^(0|[1-9][0-9]*)$ and at most max. Returns 0 or -EINVAL. */
int stream_parse_uint(const char *s, size_t n, int64_t max, int64_t *out);
/* Decimal digits (leading zeros allowed), at most 2^53-1. Returns 0 or -EINVAL. */
int stream_parse_safe_int(const char *s, size_t n, int64_t *out);
/* RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm)) to epoch milliseconds. 0 or -EINVAL. */
int stream_parse_rfc3339(const char *s, size_t n, int64_t *ms);
/* NULL when p[0..n) is an acceptable stream path, else the reason: no empty, "." or ".." segments
 * (also percent-encoded), no control characters or backslashes, at most 1024 bytes. */
const char *stream_parse_path(const char *p, size_t n);

#endif
