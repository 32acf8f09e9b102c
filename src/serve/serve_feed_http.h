/*
 * serve_feed_http — the sessions' relay to a `sessions` feed another node holds (--shard-policy
 * balance; doc/SHARDING-PLAN.md §3): a plain stream append, with the producer headers, sent to this
 * node's own URL, whose router forwards it to shard 0's holder (and holds it through a failover).
 *
 * Ownership: serve.c owns the struct serve_feed; each append in flight is its own, and ends through
 * its done callback exactly once (with -ECANCELED from serve_feed_free).
 */
#ifndef AGENTD_SERVE_FEED_HTTP_H
#define AGENTD_SERVE_FEED_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/core.h"
#include "session/session.h"

struct serve_feed;

/* base_url: this node's own (http://ADDRESS:PORT); token: the server's, or NULL. */
int serve_feed_new(struct serve_feed **out, uv_loop_t *loop, const char *base_url,
                   const char *token) CORE_UNUSED_RESULT;
/* Ends the appends in flight (done with -ECANCELED) and frees f once its handles have closed. */
void serve_feed_free(struct serve_feed *f);
/* A sessions_feed_append (ctx: the struct serve_feed). An unreachable feed (no answer, 503) is tried
 * again every 250 ms for up to SERVE_FEED_TRY_MS; the same seq again is harmless (a duplicate). */
void serve_feed_append(void *ctx, const char *producer, int64_t epoch, int64_t seq, const char *body,
                       size_t len, sessions_feed_done done, void *arg);

/* A sessions_feed_ids (ctx: the struct serve_feed): GET /v1/sessions?shard=k to this node's own URL
 * (the router sends it to shard 0's holder), tried again as an append is. */
void serve_feed_ids(void *ctx, int shard, sessions_feed_ids_done done, void *arg);

#define SERVE_FEED_TRY_MS 30000

#endif
