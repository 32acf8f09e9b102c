/* history — a bounded ring of the last calls a runtime ran, for `runtime history`.
 *
 * Records copy what they need (code is cut to RUNTIME__HISTORY_CODE_MAX bytes) so a result can
 * be forgotten as soon as its callback returns. The oldest record is overwritten when full.
 */
#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/runtime_int.h"

void runtime__history_init(struct runtime__history *h, size_t max)
{
    assert(max > 0);
    h->ring = xcalloc(max, sizeof *h->ring);
    h->max = max;
    h->head = 0;
    h->count = 0;
}

void runtime__history_add(struct runtime__history *h, const struct runtime_result *res)
{
    struct runtime__record *r = &h->ring[h->head];

    assert(h->head < h->max && h->count <= h->max);
    free(r->code);
    memset(r, 0, sizeof *r);
    r->seq = res->seq;
    r->code_len = res->code_len;
    r->code_kept = res->code_len < RUNTIME__HISTORY_CODE_MAX ? res->code_len : RUNTIME__HISTORY_CODE_MAX;
    /* Do not cut a UTF-8 sequence in half: back up over continuation bytes. */
    if (r->code_kept < r->code_len) {
        size_t k = r->code_kept;
        while (k > 0 && r->code_kept - k < 3 && ((unsigned char)res->code[k] & 0xC0) == 0x80)
            k--;
        r->code_kept = k;
    }
    r->code = xcalloc(1, r->code_kept + 1);
    memcpy(r->code, res->code, r->code_kept);
    r->status = res->status;
    r->outcome = res->outcome;
    r->timed_out = res->timed_out;
    r->truncated = res->truncated;
    r->started_at_ms = res->started_at_ms;
    r->queued_us = res->queued_us;
    r->duration_us = res->duration_us;
    r->out_bytes = res->out_total;
    r->err_bytes = res->err_total;
    h->head = (h->head + 1) % h->max;
    if (h->count < h->max)
        h->count++;
}

char *runtime__history_json(const struct runtime__history *h, size_t limit)
{
    json_t *arr = json_array();
    size_t n = h->count;
    char *text;

    if (limit != 0 && limit < n)
        n = limit;
    for (size_t i = 0; i < n; i++) {
        /* Oldest first among the last n. */
        size_t idx = (h->head + h->max - n + i) % h->max;
        const struct runtime__record *r = &h->ring[idx];
        json_t *o = json_object();

        json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
        /* JSON strings must be UTF-8; code that is not is shown as a placeholder. */
        json_t *code = json_stringn(r->code, r->code_kept);
        if (code == NULL)
            code = json_string("<not UTF-8>");
        json_object_set_new(o, "code", code);
        json_object_set_new(o, "code_len", json_integer((json_int_t)r->code_len));
        json_object_set_new(o, "status", json_integer(r->status));
        json_object_set_new(o, "outcome", json_string(runtime_outcome_name(r->outcome)));
        json_object_set_new(o, "timed_out", json_boolean(r->timed_out));
        json_object_set_new(o, "started_at_ms", json_integer((json_int_t)r->started_at_ms));
        json_object_set_new(o, "queued_us", json_integer((json_int_t)r->queued_us));
        json_object_set_new(o, "duration_us", json_integer((json_int_t)r->duration_us));
        json_object_set_new(o, "out_bytes", json_integer((json_int_t)r->out_bytes));
        json_object_set_new(o, "err_bytes", json_integer((json_int_t)r->err_bytes));
        json_object_set_new(o, "truncated", json_boolean(r->truncated));
        json_array_append_new(arr, o);
    }
    text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (text == NULL) {
        log_error("runtime: out of memory for the history");
        abort();
    }
    return text;
}

void runtime__history_free(struct runtime__history *h)
{
    for (size_t i = 0; i < h->max; i++)
        free(h->ring[i].code);
    free(h->ring);
    h->ring = NULL;
    h->count = h->max = h->head = 0;
}
