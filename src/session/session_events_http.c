/*
 * session_events_http — history pages of a session's transcript, newest first:
 *
 *     GET /v1/sessions/<id>/events?before=<offset>&limit=<N>
 *     {"events":[{...event, "offset":"<where it starts>"}, ...], "next_before":"<offset>"|null,
 *      "tail":"<offset>"}
 *
 * Every event carries its own offset: the byte position where it starts in the transcript's offset
 * space (see "Offsets of JSON messages" in stream.h). A Durable Streams read from that offset starts
 * with the event, and a fork at it ends just before it; the event's end is the offset of the next
 * newer event (for the newest of a page: `before`, or `tail`). A page holds the events that start
 * before `before` (the tail when absent), newest first and contiguous, at most `limit` (default
 * SESSION_EVENTS_DEFAULT, at most SESSION_EVENTS_MAX) and about SESSION_EVENTS_BYTES of events (at
 * least one). `next_before` is the oldest event's offset, the `before` of the next page, or null
 * when the page reaches the transcript's first event. `tail` is the transcript's durable tail when
 * the page was read: following the transcript live from it (SSE, long-poll, WebSocket) after
 * reading the first page gives every event exactly once.
 *
 * The read goes backwards through the store (stream_read_back_start: on PostgreSQL off the loop,
 * the page answered from its completion): a page costs its own records, not the transcript's
 * length, and reads through a fork's source below its fork offset. Events are
 * answered as stored, with "offset" spliced in as the object's last member (so it wins over any
 * "offset" of the event's own); a message that is not an object comes as {"value":...,"offset"}.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "session/session_int.h"
#include "stream/stream.h"

#define SESSION_EVENTS_DEFAULT 100
#define SESSION_EVENTS_MAX     1000
#define SESSION_EVENTS_BYTES   (4u << 20)

static const char session__bad_before[] =
    "before must be the offset of an event of this transcript, or its tail";

/* A page being read: the request's data, and the read's arg (its event callback may run in the
 * thread pool: it touches only out, limit, n and oldest). Freed by the request's dispose, or by
 * the read's completion when the request went first. */
struct session__page {
    struct buf out; /* the events array's members, comma-separated */
    long limit;
    long n;
    int64_t oldest;
    int64_t tail;
    struct http_req *req; /* NULL once the request ended */
    int reading;
};

static void session__page_free(struct session__page *pg)
{
    buf_free(&pg->out);
    free(pg);
}

static void session__page_dispose(void *p)
{
    struct session__page *pg = p;
    pg->req = NULL;
    if (!pg->reading)
        session__page_free(pg);
}

static int session__page_event(int64_t off, const char *p, size_t n, void *arg)
{
    struct session__page *pg = arg;
    char at[STREAM_OFFSET_LEN + 1];
    stream_offset_format(off, at);
    if (pg->n++)
        buf_append(&pg->out, ",", 1);
    size_t inner = 1;
    while (n >= 2 && inner < n - 1 && memchr(" \t\r\n", p[inner], 4))
        inner++;
    if (n >= 2 && p[0] == '{' && p[n - 1] == '}') {
        buf_append(&pg->out, p, n - 1);
        buf_printf(&pg->out, "%s\"offset\":\"%s\"}", inner < n - 1 ? "," : "", at);
    } else {
        buf_puts(&pg->out, "{\"value\":");
        buf_append(&pg->out, p, n);
        buf_printf(&pg->out, ",\"offset\":\"%s\"}", at);
    }
    pg->oldest = off;
    return pg->n >= pg->limit || pg->out.len >= SESSION_EVENTS_BYTES;
}

/* The page was read (or not): its answer. */
static void session__page_done(int rc, void *arg)
{
    struct session__page *pg = arg;
    struct http_req *req = pg->req;
    pg->reading = 0;
    if (req == NULL)
        return session__page_free(pg);
    if (rc == -EDOM)
        return http_res_error(req, ERR_BAD_REQUEST, "%s", session__bad_before);
    if (rc == -ESHUTDOWN) { /* the node stopped while the database held the read */
        http_res_header(req, "Retry-After", "1");
        return http_res_error(req, ERR_SHUTTING_DOWN, "the server is stopping; retry");
    }
    if (rc != 0)
        return http_res_error(req, errcode_for_store(rc), "the transcript could not be read");
    char off[STREAM_OFFSET_LEN + 1];
    stream_offset_format(pg->oldest, off);
    buf_printf(&pg->out, "],\"next_before\":%s%s%s", pg->oldest > 0 ? "\"" : "",
               pg->oldest > 0 ? off : "null", pg->oldest > 0 ? "\"" : "");
    stream_offset_format(pg->tail, off);
    buf_printf(&pg->out, ",\"tail\":\"%s\"}", off);
    http_res_json_text(req, 200, pg->out.p, pg->out.len);
}

void session__events(struct sessions *s, struct session *se, struct http_req *req)
{
    enum http_method m = http_req_method(req);
    if (m != HTTP_GET && m != HTTP_HEAD)
        return http_res_error(req, ERR_METHOD_NOT_ALLOWED, "use GET to read a session's events");
    char *before_s = NULL, *limit_s = NULL, *end = NULL, path[128];
    if (http_req_query_param(req, "before", &before_s) > 1 ||
        http_req_query_param(req, "limit", &limit_s) > 1)
        return http_res_error(req, ERR_BAD_REQUEST, "before and limit may be given once each");
    long limit = limit_s ? strtol(limit_s, &end, 10) : SESSION_EVENTS_DEFAULT;
    if ((limit_s && (*limit_s == '\0' || *end != '\0')) || limit < 1 || limit > SESSION_EVENTS_MAX)
        return http_res_error(req, ERR_BAD_REQUEST, "limit must be 1..%d", SESSION_EVENTS_MAX);
    session__stream_path(se->id, "transcript", path);
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, path, strlen(path), &how);
    if (how == STREAM_SOFT_DELETED)
        return http_res_error(req, ERR_GONE, "this session's transcript was deleted");
    if (st == NULL)
        return http_res_error(req, ERR_NOT_FOUND, "this session has no transcript");
    int64_t tail = stream_tail(st), before = tail;
    if (before_s && stream_offset_parse(before_s, &before) != 0)
        return http_res_error(req, ERR_BAD_REQUEST, "%s", session__bad_before);
    stream_touch(st);
    struct session__page *pg = xcalloc(1, sizeof *pg);
    *pg = (struct session__page){.limit = limit, .oldest = -1, .tail = tail, .req = req, .reading = 1};
    buf_puts(&pg->out, "{\"events\":[");
    http_req_set_data(req, pg, session__page_dispose);
    stream_read_back_start(s->ss, st, before, before_s != NULL, session__page_event, session__page_done, pg);
}
