/* subs_match — glob patterns and the SSRF guard. See subs_match.h. */
#include "subs/subs_match.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "curlx/curlx.h"

/* ================= glob ================= */

/* One segment: a pointer into the string and its length (never contains '/'). */
struct seg {
    const char *p;
    size_t n;
};

/* Advances *s past slashes and returns the next segment; n == 0 at the end. */
static struct seg subs__next_seg(const char **s)
{
    while (**s == '/')
        (*s)++;
    struct seg g = {*s, 0};
    while ((*s)[g.n] && (*s)[g.n] != '/')
        g.n++;
    *s += g.n;
    return g;
}

static int subs__seg_is(struct seg g, const char *lit)
{
    return g.n == strlen(lit) && memcmp(g.p, lit, g.n) == 0;
}

/* A literal pattern segment against a path segment; "%2A" (any case) in the pattern means '*'. */
static int subs__seg_equal(struct seg pat, struct seg path)
{
    size_t i = 0, j = 0;
    while (i < pat.n && j < path.n) {
        if (pat.n - i >= 3 && pat.p[i] == '%' && pat.p[i + 1] == '2' &&
            (pat.p[i + 2] == 'A' || pat.p[i + 2] == 'a')) {
            if (path.p[j] != '*')
                return 0;
            i += 3, j++;
            continue;
        }
        if (pat.p[i++] != path.p[j++])
            return 0;
    }
    return i == pat.n && j == path.n;
}

/* Backtracks only at `**`, which tries every split of the remaining path. Depth is bounded by
 * the number of `**` segments in the pattern. */
static int subs__glob(const char *pat, const char *path)
{
    for (;;) {
        const char *pat_next = pat, *path_next = path;
        struct seg p = subs__next_seg(&pat_next);
        if (p.n == 0) {
            struct seg rest = subs__next_seg(&path_next);
            return rest.n == 0;
        }
        if (subs__seg_is(p, "**")) {
            const char *at = path;
            for (;;) {
                if (subs__glob(pat_next, at))
                    return 1;
                struct seg skip = subs__next_seg(&at);
                if (skip.n == 0)
                    return 0;
            }
        }
        struct seg s = subs__next_seg(&path_next);
        if (s.n == 0)
            return 0;
        if (!subs__seg_is(p, "*") && !subs__seg_equal(p, s))
            return 0;
        pat = pat_next;
        path = path_next;
    }
}

int subs_glob_match(const char *pattern, const char *path) { return subs__glob(pattern, path); }

char *subs_path_trim(char *s)
{
    size_t lead = strspn(s, "/"), n = strlen(s + lead);
    memmove(s, s + lead, n + 1);
    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
    return s;
}

/* ================= addresses ================= */

static int subs__v4_public(uint32_t a)
{
    uint8_t b0 = a >> 24, b1 = (a >> 16) & 0xff;
    if (b0 == 0 || b0 == 10 || b0 == 127 || b0 >= 224) /* this-net, private, loopback, multicast+ */
        return 0;
    if ((b0 == 172 && (b1 & 0xf0) == 16) || (b0 == 192 && b1 == 168)) /* private */
        return 0;
    if ((b0 == 169 && b1 == 254) || (b0 == 100 && (b1 & 0xc0) == 64)) /* link-local, CGNAT */
        return 0;
    if (b0 == 192 && b1 == 0 && ((a >> 8) & 0xff) == 0) /* IETF protocol assignments */
        return 0;
    return 1;
}

static int subs__v6_public(const struct in6_addr *a)
{
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
        uint32_t v4 = ((uint32_t)a->s6_addr[12] << 24) | ((uint32_t)a->s6_addr[13] << 16) |
                      ((uint32_t)a->s6_addr[14] << 8) | a->s6_addr[15];
        return subs__v4_public(v4);
    }
    if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_LINKLOCAL(a) ||
        IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a))
        return 0;
    if ((a->s6_addr[0] & 0xfe) == 0xfc) /* unique local fc00::/7 */
        return 0;
    return 1;
}

int subs_addr_allowed(const struct sockaddr *sa, int loopback_only)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return loopback_only ? (a >> 24) == 127 : subs__v4_public(a);
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (loopback_only)
            return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        return subs__v6_public(a);
    }
    return 0;
}

/* ================= URLs ================= */

/* Classifies a host as written in the URL: 1 loopback (dev), 0 public or a name, -1 private IP. */
static int subs__host_class(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char inner[64];
    size_t n = strlen(host);
    if (!strcasecmp(host, "localhost"))
        return 1;
    if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof inner) {
        memcpy(inner, host + 1, n - 2);
        inner[n - 2] = '\0';
        host = inner;
    }
    if (inet_pton(AF_INET, host, &a4) == 1) {
        uint32_t a = ntohl(a4.s_addr);
        return (a >> 24) == 127 ? 1 : subs__v4_public(a) ? 0 : -1;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ? 1 : subs__v6_public(&a6) ? 0 : -1;
    return 0;
}

const char *subs_url_check(const char *url, int *loopback_only)
{
    const char *why = NULL;
    char *scheme = NULL, *host = NULL, *user = NULL;
    *loopback_only = 0;
    /* The check parses with libcurl's own URL parser, so it judges the host libcurl will dial. */
    if (curlx_load() != 0) {
        log_error("subs: cannot check webhook URLs: %s (%s)", CURLX_MISSING_HINT, curlx_load_error());
        return "webhook delivery is unavailable: the server lacks libcurl";
    }
    CURLU *u = curlx_url();
    if (u == NULL)
        return "webhook.url could not be parsed";
    if (curlx_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curlx_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curlx_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        why = "webhook.url must be an absolute http(s) URL";
        goto out;
    }
    if (curlx_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        why = "webhook.url must not carry credentials";
        goto out;
    }
    int cls = subs__host_class(host);
    if (!strcasecmp(scheme, "http")) {
        if (cls == 1)
            *loopback_only = 1;
        else
            why = "http webhook URLs are only allowed for localhost, 127.0.0.0/8 or [::1]";
    } else if (!strcasecmp(scheme, "https")) {
        if (cls == 1)
            why = "loopback webhook URLs must use http (development only)";
        else if (cls == -1)
            why = "webhook.url must not target private or link-local hosts";
    } else {
        why = "webhook.url must use https";
    }
out:
    curlx_free(scheme);
    curlx_free(host);
    curlx_free(user);
    curlx_url_cleanup(u);
    return why;
}
