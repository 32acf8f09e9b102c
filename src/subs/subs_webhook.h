/*
 * subs_webhook — non-blocking HTTP POSTs for webhook wakes: libcurl's multi interface driven by
 * libuv poll and timer handles on the server's one loop, so a slow or dead receiver never blocks
 * anything. One call per attempt; retry policy belongs to the caller (subs.c).
 *
 * Every connection passes the connect-time SSRF check (subs_addr_allowed) on the address actually
 * dialled; redirects are not followed; response bodies are capped; each attempt has a deadline.
 */
#ifndef AGENTD_SUBS_WEBHOOK_H
#define AGENTD_SUBS_WEBHOOK_H

#include <stddef.h>
#include <uv.h>

#include "core/core.h"

#define SUBS_WEBHOOK_TIMEOUT_MS   10000
#define SUBS_WEBHOOK_MAX_RESPONSE 65536

struct subs_webhook;
struct subs_delivery;

/* The outcome of one attempt: status 0 when no HTTP response arrived (connect, TLS, timeout, or a
 * refused address). body is borrowed for the call and NUL-terminated. The delivery is freed after
 * the callback returns. */
typedef void (*subs_delivery_cb)(void *arg, int status, const char *body, size_t len);

int subs_webhook_new(struct subs_webhook **out, uv_loop_t *loop) CORE_UNUSED_RESULT;
/* Cancels every delivery (their callbacks never run) and frees once the handles closed. NULL ok. */
void subs_webhook_free(struct subs_webhook *wh);

/*
 * POSTs body (copied) as application/json with a Webhook-Signature header (copied) to url.
 * loopback_only comes from subs_url_check. Returns a handle valid until cb runs or the delivery is
 * cancelled.
 */
struct subs_delivery *subs_webhook_post(struct subs_webhook *wh, const char *url, int loopback_only,
                                        const char *signature, const void *body, size_t len,
                                        subs_delivery_cb cb, void *arg);
/* Abandons a delivery: cb never runs. */
void subs_webhook_cancel(struct subs_delivery *d);

#endif
