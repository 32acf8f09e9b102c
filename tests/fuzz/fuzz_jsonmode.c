/*
 * libFuzzer target for the JSON-mode parser (src/stream/jsonmode.c), which sees every append body of
 * a JSON stream. Checks, beyond memory safety: each reported message is a span inside the input,
 * messages are themselves valid JSON, and an accepted body re-split in stored form ("m1,m2,"
 * wrapped in brackets, as reads do) yields the same count.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "stream/jsonmode.h"

struct ctx {
    const char *base;
    size_t len;
    struct buf stored;
};

static void on_msg(const char *p, size_t n, void *arg)
{
    struct ctx *c = arg;
    assert(p >= c->base && p + n <= c->base + c->len && n > 0);
    size_t count;
    assert(jsonmode_split(p, n, 0, NULL, NULL, &count) == NULL && count == 1);
    buf_append(&c->stored, p, n);
    buf_append(&c->stored, ",", 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctx c = {.base = (const char *)data, .len = size};
    size_t count;
    if (jsonmode_split((const char *)data, size, 1, on_msg, &c, &count) == NULL && count > 0) {
        struct buf wrapped = {0};
        buf_puts(&wrapped, "[");
        buf_append(&wrapped, c.stored.p, c.stored.len - 1);
        buf_puts(&wrapped, "]");
        size_t again;
        assert(jsonmode_split(wrapped.p, wrapped.len, 1, NULL, NULL, &again) == NULL && again == count);
        buf_free(&wrapped);
    }
    buf_free(&c.stored);
    return 0;
}
