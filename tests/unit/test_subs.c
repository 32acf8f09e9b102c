/*
 * Unit tests for the subscription module's pure parts: glob matching and the SSRF rules
 * (subs_match), the signing key, Webhook-Signature format and callback tokens (subs_sign), and the
 * wake/lease/fencing state machine (subs_lease). TAP output for prove.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <regex.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "subs/subs_lease.h"
#include "subs/subs_match.h"
#include "subs/subs_sign.h"
#include "tap.h"

/* ---- glob ------------------------------------------------------------------------------------ */

static void test_glob(void)
{
    static const struct {
        const char *pattern, *path;
        int match;
    } cases[] = {
        {"events/*", "events/a", 1},   {"events/*", "events/a/b", 0}, {"events/*", "events", 0},
        {"events/*", "other/a", 0},    {"events/**", "events", 1},    {"events/**", "events/a/b/c", 1},
        {"**", "anything/at/all", 1},  {"**/logs", "a/b/logs", 1},    {"**/logs", "logs", 1},
        {"**/logs", "a/logs/x", 0},    {"a/**/z", "a/z", 1},          {"a/**/z", "a/b/c/z", 1},
        {"a/**/z", "a/b/c/y", 0},      {"a/*/c", "a/b/c", 1},         {"a/*/c", "a//c", 0},
        {"/events/*/", "events/x", 1}, {"events/a", "events/a", 1},   {"events/a", "events/ab", 0},
        {"lit/%2A", "lit/*", 1},       {"lit/%2a", "lit/x", 0},       {"**/**/x", "x", 1},
    };
    for (size_t i = 0; i < CORE_ARRAY_LEN(cases); i++)
        ok(subs_glob_match(cases[i].pattern, cases[i].path) == cases[i].match, "glob %s %s %s",
           cases[i].pattern, cases[i].match ? "matches" : "does not match", cases[i].path);

    char p[] = "//a/b//";
    ok(strcmp(subs_path_trim(p), "a/b") == 0, "path_trim strips leading and trailing slashes");
}

/* ---- SSRF ------------------------------------------------------------------------------------ */

static void test_urls(void)
{
    static const struct {
        const char *url;
        int accepted, loopback_only;
    } cases[] = {
        {"https://hooks.example.com/x", 1, 0},
        {"https://8.8.8.8/x", 1, 0},
        {"http://127.0.0.1:8080/webhook", 1, 1},
        {"http://127.9.9.9/webhook", 1, 1},
        {"http://localhost:3000/", 1, 1},
        {"http://[::1]:3000/", 1, 1},
        {"http://10.0.0.1/hook", 0, 0},
        {"http://example.com/hook", 0, 0},
        {"https://10.1.2.3/hook", 0, 0},
        {"https://172.16.0.1/hook", 0, 0},
        {"https://192.168.1.1/hook", 0, 0},
        {"https://169.254.169.254/latest", 0, 0},
        {"https://100.64.0.1/", 0, 0},
        {"https://[fd00::1]/", 0, 0},
        {"https://[fe80::1]/", 0, 0},
        {"https://[::ffff:10.0.0.1]/", 0, 0},
        {"https://localhost/", 0, 0},
        {"https://127.0.0.1/", 0, 0},
        {"ftp://example.com/", 0, 0},
        {"file:///etc/passwd", 0, 0},
        {"not a url", 0, 0},
        {"https://user:pw@example.com/", 0, 0},
    };
    for (size_t i = 0; i < CORE_ARRAY_LEN(cases); i++) {
        int lo = -1;
        const char *why = subs_url_check(cases[i].url, &lo);
        ok((why == NULL) == cases[i].accepted && (!cases[i].accepted || lo == cases[i].loopback_only),
           "url %s is %s%s", cases[i].url, cases[i].accepted ? "accepted" : "rejected",
           cases[i].loopback_only ? " (loopback only)" : "");
    }

    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "93.184.216.34", &a4.sin_addr);
    ok(subs_addr_allowed((struct sockaddr *)&a4, 0) && !subs_addr_allowed((struct sockaddr *)&a4, 1),
       "a public IPv4 peer is allowed for https, not for a loopback-only dev URL");
    inet_pton(AF_INET, "127.0.0.1", &a4.sin_addr);
    ok(!subs_addr_allowed((struct sockaddr *)&a4, 0) && subs_addr_allowed((struct sockaddr *)&a4, 1),
       "a loopback peer is allowed only for dev URLs (a public name resolving to 127.0.0.1 is refused)");
    inet_pton(AF_INET, "10.2.3.4", &a4.sin_addr);
    ok(!subs_addr_allowed((struct sockaddr *)&a4, 0) && !subs_addr_allowed((struct sockaddr *)&a4, 1),
       "a private peer is never allowed");
    inet_pton(AF_INET6, "::1", &a6.sin6_addr);
    ok(subs_addr_allowed((struct sockaddr *)&a6, 1) && !subs_addr_allowed((struct sockaddr *)&a6, 0),
       "::1 is loopback");
    inet_pton(AF_INET6, "::ffff:192.168.0.1", &a6.sin6_addr);
    ok(!subs_addr_allowed((struct sockaddr *)&a6, 0), "v4-mapped private addresses are refused");
    inet_pton(AF_INET6, "2606:4700::1111", &a6.sin6_addr);
    ok(subs_addr_allowed((struct sockaddr *)&a6, 0), "a global IPv6 peer is allowed");
}

/* ---- signing --------------------------------------------------------------------------------- */

static int matches(const char *re, const char *s)
{
    regex_t r;
    if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB) != 0)
        return 0;
    int m = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return m;
}

static void test_signing(void)
{
    unsigned char seed[32];
    memset(seed, 7, sizeof seed);
    struct subs_keys *k = subs_keys_from_seed(seed), *k2 = subs_keys_from_seed(seed);
    const char body[] = "{\"subscription_id\":\"s\",\"generation\":1}";
    struct buf h = {0}, jwks = {0};

    ok(matches("^ds_[A-Za-z0-9_-]{43}$", subs_keys_kid(k)), "kid is ds_ + base64url SHA-256 (%s)",
       subs_keys_kid(k));
    ok(strcmp(subs_keys_kid(k), subs_keys_kid(k2)) == 0, "the kid is a function of the key");
    subs_keys_jwks(k, &jwks);
    ok(strstr(jwks.p, "\"kty\":\"OKP\"") && strstr(jwks.p, "\"crv\":\"Ed25519\"") &&
           strstr(jwks.p, "\"alg\":\"EdDSA\"") && strstr(jwks.p, subs_keys_kid(k)),
       "JWKS holds an OKP Ed25519 EdDSA key with the kid");

    subs_sign_header(k, 1700000000, body, strlen(body), &h);
    ok(matches("^t=1700000000,kid=ds_[^,]+,ed25519=[A-Za-z0-9_-]+$", h.p), "Webhook-Signature format: %s",
       h.p);
    ok(subs_sign_verify(k, h.p, body, strlen(body)) == 0, "the signature verifies over \"<t>.<body>\"");
    ok(subs_sign_verify(k, h.p, body, strlen(body) - 1) != 0, "a changed body fails verification");
    h.p[2] = '8'; /* t=1700... -> t=8700...: the timestamp is signed too */
    ok(subs_sign_verify(k, h.p, body, strlen(body)) != 0, "a changed timestamp fails verification");

    /* The signed bytes are exactly "<t>.<body>": check with libsodium directly. */
    unsigned char pk[32], sk[64], sig[64];
    size_t siglen;
    buf_reset(&h);
    subs_sign_header(k, 42, body, strlen(body), &h);
    crypto_sign_seed_keypair(pk, sk, seed);
    const char *b64 = strstr(h.p, "ed25519=") + 8;
    struct buf m = {0};
    buf_printf(&m, "42.%s", body);
    ok(sodium_base642bin(sig, sizeof sig, b64, strlen(b64), NULL, &siglen, NULL,
                         sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
           siglen == 64 && crypto_sign_verify_detached(sig, (unsigned char *)m.p, m.len, pk) == 0,
       "the signature is Ed25519 over \"42.\" + body, base64url without padding");

    /* tokens */
    struct buf t = {0};
    int64_t gen = -1;
    subs_token_mint(k, "sub 1", 7, 1000, &t);
    ok(subs_token_verify(k, t.p, t.len, "sub 1", 1000, &gen) == 0 && gen == 7,
       "a token carries its generation");
    ok(subs_token_verify(k2, t.p, t.len, "sub 1", 1000, &gen) == 0,
       "tokens verify after a restart (same key file)");
    ok(subs_token_verify(k, t.p, t.len, "sub 2", 1000, &gen) == -EACCES,
       "a token is bound to its subscription");
    ok(subs_token_verify(k, t.p, t.len, "sub 1", 1000 + SUBS_TOKEN_TTL_S + 1, &gen) == -ETIMEDOUT,
       "tokens expire");
    t.p[3] ^= 1;
    ok(subs_token_verify(k, t.p, t.len, "sub 1", 1000, &gen) == -EACCES, "a forged token is refused");
    ok(subs_token_verify(k, "nodot", 5, "sub 1", 1000, &gen) == -EACCES, "a malformed token is refused");
    unsigned char other[32] = {1};
    struct subs_keys *k3 = subs_keys_from_seed(other);
    buf_reset(&t);
    subs_token_mint(k, "s", 1, 1000, &t);
    ok(subs_token_verify(k3, t.p, t.len, "s", 1000, &gen) == -EACCES, "another key's token is refused");

    buf_free(&t);
    buf_free(&m);
    buf_free(&h);
    buf_free(&jwks);
    subs_keys_free(k);
    subs_keys_free(k2);
    subs_keys_free(k3);
}

static void test_key_file(void)
{
    char dir[] = "/tmp/test_subs.XXXXXX", err[256] = "";
    struct subs_keys *a = NULL, *b = NULL;
    struct stat st;
    ok(mkdtemp(dir) != NULL, "temporary data dir");
    ok(subs_keys_load(&a, dir, err, sizeof err) == 0, "first start generates a key");
    char *path = xasprintf("%s/%s", dir, SUBS_SIGN_KEY_FILE);
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32,
       "the key file is 32 bytes, mode 0600");
    ok(subs_keys_load(&b, dir, err, sizeof err) == 0 && strcmp(subs_keys_kid(a), subs_keys_kid(b)) == 0,
       "a restart loads the same key");
    subs_keys_free(b);
    b = NULL;
    FILE *f = fopen(path, "w");
    fputs("short", f);
    fclose(f);
    ok(subs_keys_load(&b, dir, err, sizeof err) == -EINVAL && b == NULL,
       "a damaged key file is an error, not a rotation");
    unlink(path);
    rmdir(dir);
    free(path);
    subs_keys_free(a);
}

/* ---- lease and fencing ----------------------------------------------------------------------- */

static void test_lease(void)
{
    struct subs_wake w = {0};
    const char *id1 = "w_000000000000000000000001", *id2 = "w_000000000000000000000002";

    ok(!subs_wake_open_p(&w) && subs_wake_check(&w, 0, 0, "") == SUBS_FENCE_STALE,
       "no wake: everything is fenced");
    ok(subs_wake_claim(&w, "w1", 0, 1000) == -ENOENT, "nothing to claim without a wake");
    subs_wake_open(&w, id1);
    ok(subs_wake_open_p(&w) && w.generation == 1 && w.holder == NULL && w.lease_until_ms == 0,
       "opening a wake: generation 1, unclaimed, no lease");
    ok(subs_wake_claim(&w, "w1", 5000, 1000) == 0 && !strcmp(w.holder, "w1") && w.lease_until_ms == 6000,
       "a claim takes the lease for the TTL");
    ok(subs_wake_claim(&w, "w2", 5001, 1000) == -EBUSY, "a second worker gets ALREADY_CLAIMED");
    ok(subs_wake_check(&w, 1, 1, id1) == SUBS_FENCE_OK, "the holder's token, generation and wake id pass");
    ok(subs_wake_check(&w, 0, 1, id1) == SUBS_FENCE_STALE, "an older token is fenced");
    ok(subs_wake_check(&w, 1, 2, id1) == SUBS_FENCE_STALE, "a wrong request generation is fenced");
    ok(subs_wake_check(&w, 1, 1, id2) == SUBS_FENCE_STALE, "a wrong wake id is fenced");
    ok(subs_wake_check(&w, 1, 1, NULL) == SUBS_FENCE_STALE, "a missing wake id is fenced");
    ok(!subs_wake_expired(&w, 5999) && subs_wake_expired(&w, 6000), "the lease expires at its deadline");
    subs_wake_extend(&w, 5900, 1000);
    ok(!subs_wake_expired(&w, 6000) && subs_wake_expired(&w, 6900), "an ack extends the lease");

    subs_wake_close(&w);
    ok(!subs_wake_open_p(&w) && w.holder == NULL && w.lease_until_ms == 0 && w.generation == 1,
       "done/release/expiry closes the wake and keeps the generation");
    ok(subs_wake_check(&w, 1, 1, id1) == SUBS_FENCE_STALE, "a settled wake's token is fenced (409, not 401)");
    subs_wake_open(&w, id2);
    ok(w.generation == 2 && subs_wake_claim(&w, "w2", 7000, 1000) == 0,
       "the next wake has a higher generation");
    ok(subs_wake_check(&w, 1, 1, id1) == SUBS_FENCE_STALE && subs_wake_check(&w, 2, 2, id2) == SUBS_FENCE_OK,
       "only the newest generation passes");
    subs_wake_open(&w, id1);
    ok(w.holder == NULL && w.generation == 3, "reopening drops the holder");
    subs_wake_clear(&w);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    test_glob();
    test_urls();
    test_signing();
    test_key_file();
    test_lease();
    return done_testing();
}
