/*
 * libFuzzer target for what subscription clients send (src/subs): the callback token of an
 * Authorization header, a Webhook-Signature header, and a subscription's JSON body with its
 * webhook URL. Input: token, signature header and body, separated by the first two newlines.
 * Checks, beyond memory safety: a token verifies only for the subscription it was minted for and
 * not once a byte of it changes, a fuzzed token is refused (or accepted) with one of the documented
 * results; a header signed for a body verifies against that body; an accepted body gives a
 * subscription whose fields keep the validator's promises (a pattern or streams, every stream a
 * valid path, the lease in bounds, a URL for webhooks, a wake stream for pull-wake).
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "stream/stream_parse.h"
#include "subs/subs_int.h"
#include "subs/subs_match.h"
#include "subs/subs_sign.h"

#define NOW_S 1900000000LL

static void fuzz_subs_token(const struct subs_keys *k, const char *tok, size_t len)
{
    int64_t gen = -1;
    int rc = subs_token_verify(k, tok, len, "sub-1", NOW_S, &gen);
    assert(rc == 0 || rc == -EACCES || rc == -ETIMEDOUT);
    assert(rc != 0 || gen >= 0);

    /* A token minted here, for a generation the input picks. */
    int64_t want = (int64_t)(len * 7919 % 1000003);
    struct buf t = {0};
    subs_token_mint(k, "sub-1", want, NOW_S, &t);
    assert(subs_token_verify(k, t.p, t.len, "sub-1", NOW_S + 1, &gen) == 0 && gen == want);
    assert(subs_token_verify(k, t.p, t.len, "sub-2", NOW_S + 1, &gen) == -EACCES);
    assert(subs_token_verify(k, t.p, t.len, "sub-1", NOW_S + SUBS_TOKEN_TTL_S + 1, &gen) == -ETIMEDOUT);
    if (len > 0 && t.len > 4) {
        size_t at = 1 + (size_t)(unsigned char)tok[0] % (t.len - 3); /* not the last character of a part */
        if (t.p[at] != '.' && t.p[at + 1] != '.') {
            t.p[at] = t.p[at] == 'A' ? 'B' : 'A';
            assert(subs_token_verify(k, t.p, t.len, "sub-1", NOW_S + 1, &gen) != 0);
        }
    }
    buf_free(&t);
}

static void fuzz_subs_signature(const struct subs_keys *k, const char *header, const char *body, size_t len)
{
    int rc = subs_sign_verify(k, header, body, len);
    assert(rc == 0 || rc == -EINVAL);
    struct buf h = {0};
    subs_sign_header(k, NOW_S, body, len, &h);
    assert(subs_sign_verify(k, h.p, body, len) == 0);
    buf_free(&h);
}

static void fuzz_subs_config(const char *body, size_t len)
{
    json_t *cfg = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    struct subs_sub *sub = NULL;
    const char *why = subs__parse_config(cfg, "sub-1", &sub);
    assert((why == NULL) == (sub != NULL));
    if (sub) {
        assert(sub->pattern || sub->nstreams > 0);
        for (size_t i = 0; i < sub->nstreams; i++)
            assert(stream_parse_path(sub->streams[i], strlen(sub->streams[i])) == NULL);
        assert(sub->lease_ttl_ms >= SUBS_LEASE_MIN_MS && sub->lease_ttl_ms <= SUBS_LEASE_MAX_MS);
        assert(sub->type != SUBS_WEBHOOK || sub->webhook_url != NULL);
        assert(sub->type != SUBS_PULL_WAKE || sub->wake_stream != NULL);
        if (sub->webhook_url) {
            int loopback_only = 0;
            (void)subs_url_check(sub->webhook_url, &loopback_only);
        }
        subs__sub_free(sub);
    }
    json_decref(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct subs_keys *keys;
    if (keys == NULL) {
        static const unsigned char seed[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        keys = subs_keys_from_seed(seed);
    }
    const char *in = (const char *)data, *end = in + size;
    const char *nl1 = memchr(in, '\n', size);
    const char *hdr = nl1 ? nl1 + 1 : end;
    const char *nl2 = memchr(hdr, '\n', (size_t)(end - hdr));
    const char *body = nl2 ? nl2 + 1 : end;

    fuzz_subs_token(keys, in, (size_t)((nl1 ? nl1 : end) - in));
    char *header = xstrndup(hdr, (size_t)((nl2 ? nl2 : end) - hdr));
    fuzz_subs_signature(keys, header, body, (size_t)(end - body));
    free(header);
    fuzz_subs_config(body, (size_t)(end - body));
    return 0;
}
