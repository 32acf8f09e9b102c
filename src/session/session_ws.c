/*
 * session_ws — the WebSocket view of a session's transcript: GET /v1/sessions/<id>/ws?offset=O,
 * for clients built on sockets rather than SSE.
 *
 * O is -1 (the start, the default), an offset taken from an earlier frame, or `now`. The server
 * sends text frames only, one per stored chunk of the transcript (sessions/<id>/transcript):
 *
 *     {"offset":"<offset after the chunk>","events":[{...},{...}]}
 *
 * `events` holds whole records in order (a chunk is at most SESSION_WS_CHUNK bytes, or one record
 * when a record is larger), and `offset` is exactly where the next chunk starts. Resuming is
 * therefore exact: reconnecting with the last `offset` received delivers every later event once,
 * in order. A client that starts at the tail (`now`, or a resume with nothing new) first gets one
 * frame with no events, so that it learns the current offset.
 *
 * Memory per client is one chunk: the next chunk is read only when the previous frame has been
 * written to the socket (the http module's on_drain); on PostgreSQL it is read off the loop
 * (stream_read_start) and sent from the read's completion; a client that stops reading is dropped by
 * the http module after its I/O timeout. Pings go out every SESSION_WS_PING_MS. Closes: 1000 with
 * reason "session deleted" when the session is deleted, 1000 "transcript closed" if the stream is
 * closed, 1001 when the server stops, 1011 when the transcript cannot be read (reconnect from the
 * last offset). The close for a deletion follows the transcript's last event,
 * {"type":"session","action":"deleted"}. Messages from the client are ignored (pings are answered).
 *
 * Ownership: a struct session_ws is malloc'd per connection, subscribed to the transcript while
 * the connection is open, and freed by the WebSocket's on_close (which cancels a read in flight). It keeps the session's id, never a
 * pointer to the session, which may be freed first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "session/session_int.h"
#include "stream/stream.h"

#define SESSION_WS_CHUNK   (256 * 1024)
#define SESSION_WS_PING_MS 15000

struct session_ws {
    struct sessions *s;
    struct http_ws *ws;
    struct stream_sub sub;
    int64_t offset;         /* where the next frame starts */
    int greeted;            /* a frame has been sent */
    int sent_deleted;       /* the session's "deleted" event has been sent */
    int reading;            /* a chunk is being read: the pump waits for it */
    struct stream_read *rd; /* that read, when it runs off the loop */
    char id[SESSION_ID_LEN + 1];
};

static void session__ws_close(struct session_ws *w, unsigned code, const char *reason)
{
    stream_unsubscribe(&w->sub);
    http_ws_close(w->ws, code, reason);
}

/* Does this JSON array of events hold the session's own {"type":"session","action":"deleted"}? */
static int session__ws_has_deleted(const struct buf *events)
{
    json_t *arr = json_loadb(events->p, events->len, 0, NULL), *ev;
    size_t i;
    int found = 0;
    json_array_foreach (arr, i, ev) {
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *action = json_string_value(json_object_get(ev, "action"));
        found |= type && action && !strcmp(type, "session") && !strcmp(action, "deleted");
    }
    json_decref(arr);
    return found;
}

/* One frame for the chunk read into out. */
static void session__ws_frame(struct session_ws *w, struct stream_read_done *d, struct buf *out)
{
    char o[STREAM_OFFSET_LEN + 1];
    stream_json_wrap(&d->data);
    /* Only once the session is gone is its last event looked for (see session__ws_pump). */
    if (!w->sent_deleted && !sessions_exists(w->s, w->id))
        w->sent_deleted = session__ws_has_deleted(&d->data);
    stream_offset_format(d->next, o);
    buf_printf(out, "{\"offset\":\"%s\",\"events\":", o);
    buf_append(out, d->data.p, d->data.len);
    buf_puts(out, "}");
}

/* Sends a frame that takes the client to next; 0, or -1 when the connection is ending. */
static int session__ws_send(struct session_ws *w, struct buf *frame, int64_t next)
{
    int rc = http_ws_send_text(w->ws, frame->p, frame->len);
    buf_free(frame);
    if (rc != 0) { /* the connection is ending; on_close follows */
        stream_unsubscribe(&w->sub);
        return -1;
    }
    w->offset = next;
    w->greeted = 1;
    return 0; /* the next chunk waits for on_drain */
}

/* A chunk was read (on the loop, or off it and now back): its frame goes out. */
static void session__ws_read_done(struct stream_read_done *d, void *arg)
{
    struct session_ws *w = arg;
    struct buf frame = {0};
    int rc = d->rc == 0 && d->next <= w->offset ? -EIO : d->rc; /* no progress would never end */
    w->reading = 0;
    w->rd = NULL;
    if (rc != 0) {
        log_error("session %s: cannot read the transcript at %lld for a WebSocket: %s", w->id,
                  (long long)w->offset, strerror(-rc));
        session__ws_close(w, 1011, "the transcript cannot be read; reconnect from the last offset");
        return;
    }
    session__ws_frame(w, d, &frame);
    session__ws_send(w, &frame, d->next);
}

/* Sends the next chunk if the previous frame has left, or closes when the stream did. */
static void session__ws_pump(struct session_ws *w)
{
    struct stream *st = w->sub.stream;
    if (st == NULL || w->reading || http_ws_queued(w->ws) > 0)
        return;
    int64_t tail = stream_tail(st);
    if (w->offset < tail) {
        w->reading = 1; /* its completion may run before stream_read_start returns */
        struct stream_read *rd =
            stream_read_start(w->s->ss, st, w->offset, SESSION_WS_CHUNK, session__ws_read_done, w);
        if (rd)
            w->rd = rd;
        return;
    }
    if (!w->greeted) { /* at the tail on arrival: tell the client where that is */
        char o[STREAM_OFFSET_LEN + 1];
        struct buf frame = {0};
        stream_offset_format(w->offset, o);
        buf_printf(&frame, "{\"offset\":\"%s\",\"events\":[]}", o);
        session__ws_send(w, &frame, w->offset);
        return;
    }
    /* At the tail. A deleted session's transcript (kept unless deleted with it) ends with its
     * "deleted" event and is closed in the same commit: close once that event has been sent, so a
     * client sees why. */
    if (w->sent_deleted || (stream_closed(st) && !sessions_exists(w->s, w->id)))
        session__ws_close(w, 1000, "session deleted");
    else if (stream_closed(st))
        session__ws_close(w, 1000, "transcript closed");
}

static void session__ws_event(struct stream_sub *sub, enum stream_event ev)
{
    struct session_ws *w = sub->arg;
    switch (ev) {
    case STREAM_EV_DATA:
    case STREAM_EV_CLOSED: session__ws_pump(w); return;
    case STREAM_EV_SHUTDOWN: session__ws_close(w, 1001, "server shutting down"); return;
    case STREAM_EV_MOVED: /* the session's shard is served by another node now: reconnect there */
        session__ws_close(w, 1012, "the session moved to another node; reconnect from the last offset");
        return;
    case STREAM_EV_GONE:
        /* Deleted with its session, or the registry was reloaded after a failed commit (the
         * session is still there): then the client reconnects from its last offset. */
        if (!sessions_exists(w->s, w->id))
            session__ws_close(w, 1000, "session deleted");
        else
            session__ws_close(w, 1011, "the transcript was reloaded; reconnect from the last offset");
        return;
    }
}

static void session__ws_drain(struct http_ws *ws, void *arg) { session__ws_pump(arg); }

static void session__ws_closed(struct http_ws *ws, void *arg)
{
    struct session_ws *w = arg;
    log_debug("session %s: WebSocket reader left at %lld", w->id, (long long)w->offset);
    stream_unsubscribe(&w->sub);
    stream_read_cancel(w->rd);
    free(w);
}

void session__ws(struct sessions *s, struct session *se, struct http_req *req)
{
    const char *why = http_ws_handshake_error(req);
    if (why != NULL) {
        http_res_header(req, "Sec-WebSocket-Version", "13");
        return http_res_error(req, ERR_WEBSOCKET_REQUIRED, "%s", why);
    }
    char *offset = NULL;
    if (http_req_query_param(req, "offset", &offset) > 1)
        return http_res_error(req, ERR_BAD_REQUEST, "offset may be given only once");
    int64_t from = 0;
    int now = offset && !strcmp(offset, "now");
    if (offset && !now && strcmp(offset, "-1") != 0 && stream_offset_parse(offset, &from) != 0)
        return http_res_error(req, ERR_BAD_REQUEST,
                              "offset must be -1, now, or an offset from an earlier frame");
    char path[128];
    session__stream_path(se->id, "transcript", path);
    enum stream_lookup how;
    struct stream *st = streams_lookup(s->ss, path, strlen(path), &how);
    if (st == NULL)
        return http_res_error(req, ERR_NOT_FOUND, "this session has no transcript");
    int64_t tail = stream_tail(st);
    if (now || from > tail)
        from = tail; /* an offset beyond the tail reads as the tail, as in the stream protocol */

    struct session_ws *w = xcalloc(1, sizeof *w);
    w->s = s;
    w->offset = from;
    memcpy(w->id, se->id, sizeof w->id);
    const struct http_ws_handlers handlers = {
        .on_drain = session__ws_drain,
        .on_close = session__ws_closed,
        .ping_ms = SESSION_WS_PING_MS,
    };
    w->ws = http_ws_upgrade(req, &handlers, w);
    if (w->ws == NULL) { /* shutting down; answered */
        free(w);
        return;
    }
    log_debug("session %s: WebSocket reader from %lld", w->id, (long long)from);
    w->sub.cb = session__ws_event;
    w->sub.arg = w;
    stream_touch(st);
    stream_subscribe(st, &w->sub);
    session__ws_pump(w);
}
