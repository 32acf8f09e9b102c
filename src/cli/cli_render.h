/*
 * cli_render — renders a session's transcript events readably on stdout, one event at a time, for
 * `agentd session tail` and `send --wait` (their --json output is the events as they are). Owns
 * nothing but the text of deltas streamed since the last message, which a struct cli_render keeps
 * so that the message that completes them is not printed twice.
 */
#ifndef AGENTD_CLI_RENDER_H
#define AGENTD_CLI_RENDER_H

#include <jansson.h>
#include <stdio.h>

#include "core/core.h"

/* What rendering remembers from one event to the next. Zero-initialised is ready; end with
 * cli_render_end. */
struct cli_render {
    struct buf delta; /* text streamed by delta events since the last message, already printed */
};

/* Prints one transcript event (borrowed) readably on stdout; types it does not know print nothing. */
void cli_render_event(struct cli_render *r, const json_t *ev);
/* Ends a line that deltas left open and frees what r holds. */
void cli_render_end(struct cli_render *r);
/* The first line of p[0..n), cut to max bytes (0: no limit) on a UTF-8 boundary, with "..." when
 * anything was left out. */
void cli_render_first_line(FILE *out, const char *p, size_t n, size_t max);

#endif
