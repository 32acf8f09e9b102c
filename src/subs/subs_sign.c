/* subs_sign — webhook signing key, JWKS, signatures and callback tokens. See subs_sign.h. */
#include "subs/subs_sign.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct subs_keys {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    unsigned char token_key[crypto_auth_hmacsha256_KEYBYTES]; /* derived from the seed */
    char x[64];                                               /* base64url public key */
    char kid[64];                                             /* "ds_" + base64url thumbprint */
};

static void subs__b64url(struct buf *out, const unsigned char *p, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    buf_reserve(out, cap);
    sodium_bin2base64(out->p + out->len, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out->len += strlen(out->p + out->len);
}

struct subs_keys *subs_keys_from_seed(const unsigned char seed[32])
{
    static const char context[] = "agentd subscription callback tokens v1";
    struct subs_keys *k = xcalloc(1, sizeof *k);
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
    /* Tokens get their own key so an HMAC never uses signing material directly. */
    crypto_generichash(k->token_key, sizeof k->token_key, (const unsigned char *)context, sizeof context - 1,
                       seed, 32);
    sodium_bin2base64(k->x, sizeof k->x, k->pk, sizeof k->pk, sodium_base64_VARIANT_URLSAFE_NO_PADDING);

    /* RFC 7638 thumbprint input: the required members in lexicographic order, no whitespace. */
    struct buf t = {0}, kid = {0};
    unsigned char digest[crypto_hash_sha256_BYTES];
    buf_printf(&t, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", k->x);
    crypto_hash_sha256(digest, (const unsigned char *)t.p, t.len);
    buf_puts(&kid, "ds_");
    subs__b64url(&kid, digest, sizeof digest);
    snprintf(k->kid, sizeof k->kid, "%s", kid.p);
    buf_free(&t);
    buf_free(&kid);
    return k;
}

void subs_keys_free(struct subs_keys *k)
{
    if (k == NULL)
        return;
    sodium_memzero(k, sizeof *k);
    free(k);
}

static int subs__read_seed(const char *path, unsigned char seed[32], char *err, size_t errlen)
{
    unsigned char extra;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, seed, 32);
    ssize_t more = n == 32 ? read(fd, &extra, 1) : 0;
    close(fd);
    if (n != 32 || more != 0) {
        snprintf(err, errlen,
                 "%s is not a 32-byte Ed25519 seed; refusing to replace it (receivers trust its key)", path);
        return -EINVAL;
    }
    return 0;
}

static int subs__write_seed(const char *dir, const char *path, const unsigned char seed[32], char *err,
                            size_t errlen)
{
    char *tmp = xasprintf("%s.tmp", path);
    int rc = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    if (write(fd, seed, 32) != 32 || fsync(fd) != 0) {
        rc = errno ? -errno : -EIO;
        close(fd);
        unlink(tmp);
        goto fail;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        rc = -errno;
        unlink(tmp);
        goto fail;
    }
    /* The rename itself must survive a crash, or a restart would mint a second key. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(tmp);
    return 0;
fail:
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(-rc));
    free(tmp);
    return rc;
}

int subs_keys_load(struct subs_keys **out, const char *dir, char *err, size_t errlen)
{
    unsigned char seed[32];
    char *path = xasprintf("%s/%s", dir, SUBS_SIGN_KEY_FILE);
    int rc = subs__read_seed(path, seed, err, errlen);
    if (rc == -ENOENT) {
        randombytes_buf(seed, sizeof seed);
        rc = subs__write_seed(dir, path, seed, err, errlen);
        if (rc == 0)
            log_info("subs: generated the webhook signing key %s", path);
    } else if (rc != 0 && rc != -EINVAL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
    }
    free(path);
    if (rc != 0)
        return rc;
    *out = subs_keys_from_seed(seed);
    sodium_memzero(seed, sizeof seed);
    return 0;
}

const char *subs_keys_kid(const struct subs_keys *k) { return k->kid; }

void subs_keys_jwks(const struct subs_keys *k, struct buf *out)
{
    buf_printf(out,
               "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"%s\",\"use\":\"sig\","
               "\"alg\":\"EdDSA\"}]}",
               k->x, k->kid);
}

/* The signed bytes: "<t>.<body>". */
static void subs__signed_input(struct buf *m, int64_t unix_s, const void *body, size_t len)
{
    buf_printf(m, "%" PRId64 ".", unix_s);
    buf_append(m, body, len);
}

void subs_sign_header(const struct subs_keys *k, int64_t unix_s, const void *body, size_t len,
                      struct buf *out)
{
    struct buf m = {0};
    unsigned char sig[crypto_sign_BYTES];
    subs__signed_input(&m, unix_s, body, len);
    crypto_sign_detached(sig, NULL, (const unsigned char *)m.p, m.len, k->sk);
    buf_printf(out, "t=%" PRId64 ",kid=%s,ed25519=", unix_s, k->kid);
    subs__b64url(out, sig, sizeof sig);
    buf_free(&m);
}

int subs_sign_verify(const struct subs_keys *k, const char *header, const void *body, size_t len)
{
    unsigned char sig[crypto_sign_BYTES];
    size_t siglen;
    long long t;
    int used = 0;
    if (sscanf(header, "t=%lld,kid=%n", &t, &used) != 1 || used == 0)
        return -EINVAL;
    const char *kid = header + used, *comma = strchr(kid, ',');
    if (comma == NULL || (size_t)(comma - kid) != strlen(k->kid) ||
        memcmp(kid, k->kid, strlen(k->kid)) != 0 || strncmp(comma, ",ed25519=", 9) != 0)
        return -EINVAL;
    const char *b64 = comma + 9;
    if (sodium_base642bin(sig, sizeof sig, b64, strlen(b64), NULL, &siglen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        siglen != sizeof sig)
        return -EINVAL;
    struct buf m = {0};
    subs__signed_input(&m, t, body, len);
    int rc = crypto_sign_verify_detached(sig, (const unsigned char *)m.p, m.len, k->pk) == 0 ? 0 : -EINVAL;
    buf_free(&m);
    return rc;
}

/* ================= callback tokens ================= */

/* Payload text: "v1 <generation> <expiry> <nonce> <subscription id>"; the id goes last because it
 * may contain spaces. */
void subs_token_mint(const struct subs_keys *k, const char *sub_id, int64_t generation, int64_t now_s,
                     struct buf *out)
{
    unsigned char nonce[8], mac[crypto_auth_hmacsha256_BYTES];
    char hex[17];
    struct buf payload = {0};
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2hex(hex, sizeof hex, nonce, sizeof nonce);
    buf_printf(&payload, "v1 %" PRId64 " %" PRId64 " %s %s", generation, now_s + SUBS_TOKEN_TTL_S, hex,
               sub_id);
    size_t start = out->len;
    subs__b64url(out, (const unsigned char *)payload.p, payload.len);
    crypto_auth_hmacsha256(mac, (const unsigned char *)out->p + start, out->len - start, k->token_key);
    buf_puts(out, ".");
    subs__b64url(out, mac, sizeof mac);
    buf_free(&payload);
}

int subs_token_verify(const struct subs_keys *k, const char *token, size_t len, const char *sub_id,
                      int64_t now_s, int64_t *generation)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    size_t maclen, plen;
    const char *dot = memchr(token, '.', len);
    if (dot == NULL || len > 4096)
        return -EACCES;
    size_t head = (size_t)(dot - token);
    if (sodium_base642bin(mac, sizeof mac, dot + 1, len - head - 1, NULL, &maclen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        maclen != sizeof mac)
        return -EACCES;
    if (crypto_auth_hmacsha256_verify(mac, (const unsigned char *)token, head, k->token_key) != 0)
        return -EACCES;
    /* Authentic from here on: the payload is our own text. */
    char *payload = xmalloc(head + 1);
    long long gen, exp;
    int used = 0, rc = -EACCES;
    if (sodium_base642bin((unsigned char *)payload, head, token, head, NULL, &plen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        goto out;
    payload[plen] = '\0';
    if (sscanf(payload, "v1 %lld %lld %*16[0-9a-f] %n", &gen, &exp, &used) != 2 || used == 0 ||
        strcmp(payload + used, sub_id) != 0)
        goto out;
    rc = now_s > exp ? -ETIMEDOUT : 0;
    *generation = gen;
out:
    free(payload);
    return rc;
}
