/*
 * subs_sign — the server's webhook identity: one Ed25519 key pair, generated with libsodium at
 * first start and kept in the data directory (mode 0600, written to a temporary file, fsynced and
 * renamed, so a crash never leaves half a key). From it come the JWKS document receivers verify
 * with, the Webhook-Signature header, and the HMAC key of callback tokens.
 *
 * Signature header: `t=<unix seconds>,kid=<kid>,ed25519=<base64url(sig)>`, where sig signs the
 * bytes "<t>.<body>". The kid is "ds_" + base64url(SHA-256 of the key's RFC 7638 JWK thumbprint
 * input), so it changes exactly when the key does.
 *
 * Callback tokens are `base64url(payload).base64url(HMAC-SHA256(payload))` binding a subscription
 * id, a wake generation and an expiry. They are verified by recomputation, so they outlive the
 * wake they were minted for: a stale token is recognised (and fenced), never merely unknown.
 */
#ifndef AGENTD_SUBS_SIGN_H
#define AGENTD_SUBS_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define SUBS_SIGN_KEY_FILE "webhook-signing.key"
#define SUBS_TOKEN_TTL_S   3600

struct subs_keys;

/* Loads DIR/webhook-signing.key, creating it when absent. A key file of the wrong size is an error
 * (rotating silently would break every receiver). Returns 0 or -errno with a message in err. */
int subs_keys_load(struct subs_keys **out, const char *dir, char *err, size_t errlen) CORE_UNUSED_RESULT;
/* Builds keys from a 32-byte seed (tests). Free with subs_keys_free. */
struct subs_keys *subs_keys_from_seed(const unsigned char seed[32]);
/* NULL is a no-op; the secret is wiped. */
void subs_keys_free(struct subs_keys *k);

/* "ds_…", borrowed from k. */
const char *subs_keys_kid(const struct subs_keys *k);
/* Appends {"keys":[{kty,crv,x,kid,use,alg}]} to out. */
void subs_keys_jwks(const struct subs_keys *k, struct buf *out);
/* Appends the Webhook-Signature value for body signed at unix_s to out. */
void subs_sign_header(const struct subs_keys *k, int64_t unix_s, const void *body, size_t len,
                      struct buf *out);
/* Verifies a Webhook-Signature value against body with k's public key (tests and tools): 0 or -EINVAL. */
int subs_sign_verify(const struct subs_keys *k, const char *header, const void *body,
                     size_t len) CORE_UNUSED_RESULT;

/* Appends a callback token for (sub_id, generation) valid SUBS_TOKEN_TTL_S from now_s. */
void subs_token_mint(const struct subs_keys *k, const char *sub_id, int64_t generation, int64_t now_s,
                     struct buf *out);
/* Verifies a token for sub_id at now_s. Returns 0 with *generation set, -EACCES when forged,
 * malformed or for another subscription, or -ETIMEDOUT when expired. */
int subs_token_verify(const struct subs_keys *k, const char *token, size_t len, const char *sub_id,
                      int64_t now_s, int64_t *generation) CORE_UNUSED_RESULT;

#endif
