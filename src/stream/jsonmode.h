/*
 * jsonmode — validation and splitting of JSON-mode bodies (untrusted input).
 *
 * A JSON-mode append must be one valid JSON text (RFC 8259). A top-level array is flattened one
 * level: each element becomes a message. Messages are kept byte for byte as the client sent them
 * (whitespace trimmed), so no number or string is ever re-encoded. Nesting depth is bounded.
 *
 * Owns nothing and keeps no state: the caller owns the body, and the callback gets spans into it.
 * Used by stream/ for appends and creates, and fuzzed by tests/fuzz/fuzz_jsonmode.c.
 */
#ifndef AGENTD_JSONMODE_H
#define AGENTD_JSONMODE_H

#include <stddef.h>

#define JSONMODE_MAX_DEPTH 512

/* Called once per message with a span into the input. */
typedef void (*jsonmode_msg_cb)(const char *p, size_t n, void *arg);

/*
 * Validates body[0..n) and reports its messages: the elements of a top-level array (flatten=1), or
 * the whole value. Returns NULL on success or a static reason on invalid input. *count receives the
 * number of messages (0 for an empty top-level array).
 */
const char *jsonmode_split(const char *body, size_t n, int flatten, jsonmode_msg_cb cb, void *arg,
                           size_t *count);

/*
 * Splits the stored form of JSON-mode messages, "m1,m2," (each message as validated by
 * jsonmode_split, followed by a comma), calling cb with each message's span (without its comma).
 * It trusts its input to be that form: it only tracks strings and nesting to find the commas that
 * end messages, and never reads outside p[0..n). Bytes after the last comma are not a message.
 * Returns the number of messages.
 */
size_t jsonmode_stored_split(const char *p, size_t n, jsonmode_msg_cb cb, void *arg);

#endif
