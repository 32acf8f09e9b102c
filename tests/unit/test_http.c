/*
 * Unit tests for src/http: the query-string decoder behind http_req_query_param.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "http/http.h"
#include "tap.h"

/* Decodes `name` from q into a fresh buffer and returns it as a heap string ("(none)" when the
 * parameter is absent); the decoder's output must be a C string without the caller's help. */
static char *param(const char *q, const char *name, int *count)
{
    struct buf v = {0};
    *count = http_query_param(q, q ? strlen(q) : 0, name, &v);
    char *s = *count ? xstrdup(v.p ? v.p : "(null)") : xstrdup("(none)");
    if (*count && v.p && strlen(v.p) != v.len)
        s[0] = '!'; /* a NUL inside the value would cut it short */
    buf_free(&v);
    return s;
}

static void check(const char *q, const char *name, int want_count, const char *want, const char *what)
{
    int n;
    char *got = param(q, name, &n);
    is_int(n, want_count, "%s: count", what);
    is_str(got, want, "%s: value", what);
    free(got);
}

static void test_query_param(void)
{
    check("offset=", "offset", 1, "", "an empty value is an empty C string");
    check("a=1&offset=", "offset", 1, "", "an empty value at the end");
    check("offset=&a=1", "offset", 1, "", "an empty value before another parameter");
    check("offset", "offset", 1, "", "a bare name has the empty value");
    check("offset=12_34", "offset", 1, "12_34", "a plain value");
    check("offset=1&offset=2", "offset", 2, "1", "a repeated name counts each, keeps the first");
    check("live=long-poll", "offset", 0, "(none)", "an absent name");
    check(NULL, "offset", 0, "(none)", "no query at all");
    check("", "offset", 0, "(none)", "an empty query");
    check("cursor=a%20b%2Fc", "cursor", 1, "a b/c", "percent-escapes are decoded");
    check("cursor=%41%4", "cursor", 1, "A%4", "a cut-short escape stays as it is");
    check("cursor=%zz", "cursor", 1, "%zz", "a malformed escape stays as it is");
    check("cursor=a%00b", "cursor", 1, "a%00b", "%00 stays encoded, so the value is never cut short");
    check("offsetx=1&offset=2", "offset", 1, "2", "names match whole");
    check("x=offset=1", "offset", 0, "(none)", "a name inside a value is not a name");

    struct buf raw = {0};
    int nraw = http_query_param("cursor=a\0b", 10, "cursor", &raw);
    ok(nraw == 1 && raw.len == 5 && strcmp(raw.p, "a%00b") == 0,
       "a raw NUL byte comes out as %%00, like an encoded one");
    buf_free(&raw);

    /* The decoder appends: what the buffer held stays, and the result is still terminated. */
    struct buf v = {0};
    buf_puts(&v, "pre:");
    int n = http_query_param("offset=", 7, "offset", &v);
    ok(n == 1 && v.len == 4 && strcmp(v.p, "pre:") == 0,
       "appending an empty value keeps the buffer a C string");
    buf_free(&v);
}

int main(void)
{
    test_query_param();
    return done_testing();
}
