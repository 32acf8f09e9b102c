/*
 * libFuzzer target for the request path: the strings a client controls in a stream request before
 * anything is stored. The input is split on the first two newlines into a path, a query string and
 * a header value; each goes through the validators the handlers use (path check, query decoding,
 * offset, RFC 3339, integer headers). Checks memory safety and a few invariants (an accepted path
 * has no dot segment; a parsed offset prints back to a value that parses to itself).
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "http/http.h"
#include "stream/stream.h"
#include "stream/stream_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl1 = memchr(in, '\n', size);
    size_t plen = nl1 ? (size_t)(nl1 - in) : size;
    const char *q = nl1 ? nl1 + 1 : in + size;
    size_t rest = size - (size_t)(q - in);
    const char *nl2 = memchr(q, '\n', rest);
    size_t qlen = nl2 ? (size_t)(nl2 - q) : rest;
    const char *h = nl2 ? nl2 + 1 : q + qlen;
    size_t hlen = size - (size_t)(h - in);

    if (stream_parse_path(in, plen) == NULL) {
        assert(plen > 0 && memmem(in, plen, "//", 2) == NULL);
        assert(!(plen == 2 && memcmp(in, "..", 2) == 0));
    }

    static const char *names[] = {"offset", "live", "cursor"};
    for (size_t i = 0; i < CORE_ARRAY_LEN(names); i++) {
        struct buf v = {0};
        int n = http_query_param(q, qlen, names[i], &v);
        assert(n >= 0 && (n > 0 || (v.len == 0 && v.p == NULL)));
        /* The decoder's contract: a found value is a C string of its length (no NUL inside). */
        assert(n == 0 || (v.p != NULL && strlen(v.p) == v.len));
        if (n && i == 0) {
            int64_t off;
            if (stream_offset_parse(v.p, &off) == 0 && off != INT64_MAX) {
                char o[STREAM_OFFSET_LEN + 1];
                int64_t again;
                stream_offset_format(off, o);
                assert(stream_offset_parse(o, &again) == 0 && again == off);
            }
        }
        buf_free(&v);
    }

    int64_t v;
    (void)stream_parse_rfc3339(h, hlen, &v);
    if (stream_parse_uint(h, hlen, INT64_MAX, &v) == 0)
        assert(v >= 0);
    if (stream_parse_safe_int(h, hlen, &v) == 0)
        assert(v >= 0 && v <= STREAM_PARSE_MAX_SAFE_INT);
    return 0;
}
