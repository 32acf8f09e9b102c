/*
 * jsonmode — validation and splitting of JSON-mode bodies (untrusted input).
 *
 * A JSON-mode append must be one valid JSON text (RFC 8259). A top-level array is flattened one
 * level: each element becomes a message. Messages are kept byte for byte as the client sent them
 * (whitespace trimmed), so no number or string is ever re-encoded. Nesting depth is bounded.
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

#endif
