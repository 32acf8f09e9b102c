/*
 * libFuzzer target for the client's reading of `live=sse` responses: the SSE parser (src/cli/cli_sse.c)
 * and the follower's handling of its events (cli_follow.h: data held until a control event confirms
 * its offset, base64 data, control JSON). Input: one flags byte (bit 0: base64 data events; the rest
 * sets piece sizes), then the response body. Checks, beyond memory safety: chunk boundaries do not
 * matter (the body fed whole and in pieces delivers the same content, offsets and controls), and
 * content is only ever delivered with an offset a control event named.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_follow.h"
#include "core/core.h"

struct fuzz_sse_log {
    struct buf text; /* "D<len>:<offset>\n<bytes>" and "C<offset> <up_to_date> <closed>\n" records */
};

static int fuzz_sse_data(void *arg, const char *p, size_t n, const char *offset)
{
    struct fuzz_sse_log *log = arg;
    buf_printf(&log->text, "D%zu:%s\n", n, offset);
    buf_append(&log->text, p, n);
    return 0;
}

static int fuzz_sse_control(void *arg, const char *offset, int up_to_date, int closed)
{
    struct fuzz_sse_log *log = arg;
    buf_printf(&log->text, "C%s %d %d\n", offset, up_to_date, closed);
    return 0;
}

/* Reads body with a fresh reader in pieces of the sizes step gives (0: whole); returns what it
 * delivered and how it ended. */
static void fuzz_sse_read(const uint8_t *body, size_t size, int binary, size_t step, struct fuzz_sse_log *log)
{
    char *offset = xstrdup("-1");
    const struct cli_follow_cb cb = {.on_data = fuzz_sse_data, .on_control = fuzz_sse_control, .arg = log};
    struct cli_follow_reader *r = cli_follow_reader_new(&cb, &offset);
    cli_follow_reader_start(r, binary);
    size_t off = 0;
    int stop = 0;
    while (off < size && !stop) {
        size_t n = step ? 1 + (body[off] % step) : size - off;
        if (n > size - off)
            n = size - off;
        stop = cli_follow_reader_feed(r, (const char *)body + off, n);
        off += n;
    }
    const char *failure = cli_follow_reader_failure(r);
    buf_printf(&log->text, "end %d %s %s\n", cli_follow_reader_stopped(r), failure ? failure : "-", offset);
    cli_follow_reader_free(r);
    free(offset);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int binary = data[0] & 1;
    size_t step = 1 + (data[0] >> 1);
    struct fuzz_sse_log whole = {0}, pieces = {0};
    fuzz_sse_read(data + 1, size - 1, binary, 0, &whole);
    fuzz_sse_read(data + 1, size - 1, binary, step, &pieces);
    assert(whole.text.len == pieces.text.len && !memcmp(whole.text.p, pieces.text.p, whole.text.len));
    buf_free(&whole.text);
    buf_free(&pieces.text);
    return 0;
}
