/*
 * The body of the agent stdout fuzz targets (fuzz_agent_<name>.c), one per adapter: each defines
 * FUZZ_AGENT, the adapter's name, and includes this file. Input: the bytes an agent prints, fed to
 * the adapter's public parser (agent_parser_*) whole, then again cut into pieces whose sizes come
 * from the input itself. Checks, beyond memory safety, agent.h's invariants: every event has a
 * string "type" and a "native"; at most one `result`; and chunk boundaries do not matter (both
 * feeds give the same events, byte for byte). The whole feed talks back too, as a session would:
 * each permission_request is answered (allow, then deny) with its native_request, and a turn,
 * steering and an interrupt are sent, through a writer that keeps what it is given; each call
 * returns 0, -ENOTSUP or -EPIPE, whatever the agent printed before.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "core/core.h"

struct fuzz_agent_events {
    struct buf text; /* each event as compact JSON, one per line */
    int results;
    json_t *asks;     /* native_request of every permission_request */
    struct buf wrote; /* what the parser wrote for the agent's stdin */
};

static void fuzz_agent_write(void *arg, const char *data, size_t len)
{
    buf_append(&((struct fuzz_agent_events *)arg)->wrote, data, len);
}

static void fuzz_agent_on_event(void *arg, json_t *ev)
{
    struct fuzz_agent_events *e = arg;
    const char *type = json_string_value(json_object_get(ev, "type"));
    assert(type != NULL);
    assert(json_object_get(ev, "native") != NULL);
    e->results += strcmp(type, "result") == 0;
    if (strcmp(type, "permission_request") == 0) {
        assert(json_is_string(json_object_get(ev, "native_request")));
        if (e->asks == NULL)
            e->asks = json_array();
        json_array_append(e->asks, json_object_get(ev, "native_request"));
    }
    char *s = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert(s != NULL);
    buf_puts(&e->text, s);
    buf_puts(&e->text, "\n");
    free(s);
    json_decref(ev);
}

/* Parses data with a parser bounded to 4 KiB lines (so oversized lines are reached), in pieces of
 * the sizes step gives (0: whole). */
static void fuzz_agent_parse(const struct agent_adapter *a, const uint8_t *data, size_t size, size_t step,
                             struct fuzz_agent_events *out)
{
    struct agent_parser *p = agent_parser_new(a, 4096, fuzz_agent_on_event, out);
    if (step == 0)
        agent_parser_set_writer(p, fuzz_agent_write, out);
    size_t off = 0;
    while (off < size) {
        size_t n = step ? 1 + (data[off] % step) : size - off;
        if (n > size - off)
            n = size - off;
        agent_parser_feed(p, (const char *)data + off, n);
        off += n;
    }
    agent_parser_finish(p);
    assert(out->results <= 1 && (out->results == 1) == (agent_parser_has_result(p) != 0));
    size_t i;
    json_t *id;
    json_t *input = json_object();
    json_array_foreach (out->asks, i, id) {
        struct agent_decision d = {.allow = (int)(i % 2 == 0), .message = "no", .input = input};
        int rc = agent_send_decision(p, json_string_value(id), &d);
        assert(rc == 0 || rc == -ENOTSUP || rc == -EPIPE);
    }
    json_decref(input);
    if (step == 0) {
        struct agent_run_opts o = {.prompt = "next", .run_id = "R2"};
        int rc = agent_send_turn(p, &o);
        assert(rc == 0 || rc == -ENOTSUP);
        rc = agent_send_steer(p, "R2", "more");
        assert(rc == 0 || rc == -ENOTSUP);
        rc = agent_send_interrupt(p, "R2");
        assert(rc == 0 || rc == -ENOTSUP);
    }
    json_decref(out->asks);
    out->asks = NULL;
    agent_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct agent_adapter *a = agent_adapter_find(FUZZ_AGENT);
    assert(a != NULL);
    struct fuzz_agent_events whole = {0}, pieces = {0};
    fuzz_agent_parse(a, data, size, 0, &whole);
    fuzz_agent_parse(a, data, size, size ? 1 + data[0] % 61 : 1, &pieces);
    assert(whole.text.len == pieces.text.len &&
           (whole.text.len == 0 || !memcmp(whole.text.p, pieces.text.p, whole.text.len)));
    buf_free(&whole.text);
    buf_free(&pieces.text);
    buf_free(&whole.wrote);
    buf_free(&pieces.wrote);
    return 0;
}
