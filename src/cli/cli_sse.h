/*
 * cli_sse — an incremental parser for text/event-stream bodies (the WHATWG "server-sent events"
 * format), used by the client to follow `live=sse` reads.
 *
 * Bytes are fed in whatever pieces the network delivers; each complete event is handed to a callback.
 * The parser does no I/O and keeps no global state, so it is tested on hand-made byte strings.
 *
 * Rules followed (WHATWG HTML §9.2.6): lines end with CRLF, LF or CR (a CRLF split across two feeds is
 * one line end); a leading UTF-8 BOM is skipped; lines starting with ':' are comments; "field:value"
 * drops one space after the colon; several `data` lines are joined with '\n'; a blank line dispatches
 * the event, unless no `data` line was seen, in which case the event is discarded. The event type
 * defaults to "message". `id` and `retry` are remembered across events.
 */
#ifndef AGENTD_CLI_SSE_H
#define AGENTD_CLI_SSE_H

#include <stddef.h>

#define CLI_SSE_MAX_EVENT (256u << 20) /* a larger event is a protocol error, not a memory hog */

/* One dispatched event. All pointers are borrowed until the callback returns; type and data are
 * NUL-terminated (data may also contain NULs, hence data_len). */
struct cli_sse_event {
    const char *type;
    const char *data;
    size_t data_len;
    const char *last_id; /* the last `id` seen, "" if none */
};

/* Called once per event. Return 0 to keep parsing; any other value stops cli_sse_feed, which
 * returns it. */
typedef int (*cli_sse_event_cb)(void *arg, const struct cli_sse_event *event);

struct cli_sse;

/* A parser that calls cb(arg, ...) for each event. Free with cli_sse_free. */
struct cli_sse *cli_sse_new(cli_sse_event_cb cb, void *arg);
void cli_sse_free(struct cli_sse *sse);
/* Forgets any partial line or event (call before parsing a new response); keeps the callback. */
void cli_sse_reset(struct cli_sse *sse);
/* Parses n bytes. Returns 0, the callback's nonzero value, or -EMSGSIZE when an event exceeds
 * CLI_SSE_MAX_EVENT. After a nonzero return the parser must be reset before reuse. */
int cli_sse_feed(struct cli_sse *sse, const char *p, size_t n);
/* The reconnection delay the server asked for with `retry:`, in milliseconds, or -1. */
long cli_sse_retry_ms(const struct cli_sse *sse);

#endif
