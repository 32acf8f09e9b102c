/*
 * cli_follow — the reading half of cli_follow (cli.h), without HTTP: the bytes of `live=sse`
 * responses in, confirmed content out, with cli_follow's exact-once rule (a data event is held until
 * the control event after it confirms its offset; a response that ends in between drops it, and the
 * next response, read from the last confirmed offset, delivers it again). cli_follow drives it over
 * HTTP; the fuzz target drives it with raw bytes.
 *
 * Owns its SSE parser and the held data events; *offset (the caller's malloc'd string) is replaced
 * by each control event's streamNextOffset.
 */
#ifndef AGENTD_CLI_FOLLOW_H
#define AGENTD_CLI_FOLLOW_H

#include <stddef.h>

#include "cli/cli.h"

struct cli_follow_reader;

/* A reader delivering to cb (borrowed, as is offset, for the reader's life). Free with
 * cli_follow_reader_free. */
struct cli_follow_reader *cli_follow_reader_new(const struct cli_follow_cb *cb, char **offset);
void cli_follow_reader_free(struct cli_follow_reader *r);
/* A new response begins: held data and any partial event are dropped. binary: data events are
 * base64 (Stream-SSE-Data-Encoding: base64). */
void cli_follow_reader_start(struct cli_follow_reader *r, int binary);
/* Reads n bytes of the response body. Returns 0 to go on, 1 when reading must stop: a callback
 * stopped it or the stream is closed (cli_follow_reader_stopped), or the body cannot be followed
 * (cli_follow_reader_failure). */
int cli_follow_reader_feed(struct cli_follow_reader *r, const char *p, size_t n);
int cli_follow_reader_stopped(const struct cli_follow_reader *r);
/* Why the response cannot be followed (a static sentence), or NULL. */
const char *cli_follow_reader_failure(const struct cli_follow_reader *r);

#endif
