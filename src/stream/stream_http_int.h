/*
 * stream_http_int — what stream_http.c (the resource, catch-up and long-poll reads) and
 * stream_http_sse.c (SSE readers) share. Not for other modules.
 */
#ifndef AGENTD_STREAM_HTTP_INT_H
#define AGENTD_STREAM_HTTP_INT_H

#include "stream/stream.h"
#include "stream/stream_http.h"

struct http_req;

/* 2024-10-09T00:00:00Z: the protocol's cursor epoch; cursors count 20-second intervals from it. */
#define SH_CURSOR_EPOCH_MS    1728432000000LL
#define SH_CURSOR_INTERVAL_MS 20000LL

/*
 * The last SSE data event built, shared by every reader at the same offset: with many readers at
 * the tail, one append is read from the store and encoded once, not once per reader.
 */
struct sh_frame {
    int64_t id, created; /* which stream incarnation */
    int64_t from, to;
    struct buf event; /* "event: data\n" + data lines + blank line */
};

/*
 * The last control event built for readers without a cursor of their own: the same for every such
 * reader at the same offset within one cursor interval, so a fan-out formats it once.
 */
struct sh_ctl {
    int64_t id, created, offset, interval;
    int flags;
    struct buf text;
};

/*
 * An SSE data frame being read (stream_read_start) and the readers waiting for it: readers at the
 * same offset of the same stream wait for one read, as they share its frame once it is read. The
 * fill is stream_http's, not a reader's: a reader that leaves only leaves its waiters list.
 */
struct sh_fill {
    struct sh_fill *next; /* stream_http.fills */
    struct stream_http *sh;
    int64_t id, created, from;
    struct stream_read *rd; /* in flight */
    struct sh_req *waiters; /* linked by sh_req.fill_next */
};

struct stream_http {
    struct streams *ss;
    uv_loop_t *loop;
    struct stream_http_config cfg;
    struct sh_frame frame;
    struct sh_fill *fills;
    struct sh_ctl ctl;
    struct buf scratch; /* a control event for one reader, copied out at once */
    int reader;         /* stream_http_reader_new's: ss is its own (streams_reader_new) */
    struct stream_http_fork_remote fork_remote; /* ask NULL: none */
};

enum sh_mode {
    SH_READ, /* a catch-up read waiting for its bytes (stream_read_start) */
    SH_VIEW, /* a follower's read waiting for its snapshot (stream_view_start) */
    SH_WRITE,
    SH_LONG_POLL,
    SH_SSE
};

struct sh_req {
    struct stream_http *sh;
    struct http_req *req; /* NULL once the request ended */
    enum sh_mode mode;
    struct stream_op op;
    struct stream_sub sub;
    uv_timer_t timer;
    int has_timer;
    int64_t offset;           /* next offset to deliver (live readers) */
    char *client_cursor;      /* borrowed from the request's memory */
    const char *content_type; /* PUT: the stream's content type to echo (request memory) */
    int control_due;          /* SSE: an up-to-date control event is owed */
    int live;                 /* SH_READ: answers a long-poll (cursor, no ETag) */
    struct stream_read *rd;   /* SH_READ, SH_LONG_POLL, SH_VIEW: the read in flight, cancelled at dispose */
    void (*forward)(struct http_req *req, void *arg); /* SH_VIEW: where the owner must answer */
    void *forward_arg;
    struct sh_fill *fill; /* SSE: the frame read this reader waits for */
    struct sh_req *fill_next;
    int pumping;      /* SSE: inside sh__sse_pump (a fill that completes at once does not re-enter) */
    int frame_failed; /* SSE: the frame read it waited for failed */
    uint64_t started_us;
    /* PUT of a fork whose source is another node's: the ask in flight (fork_remote's handle), and
     * the create to make from its answer (request memory) */
    void *remote;
    struct stream_create_args *create;
    const char *path;
    size_t plen;
};

/* The cursor for a live response: the current interval, but always ahead of the client's. */
void sh__cursor(const char *client, char out[32]);
/* The state of a request that outlives its handler, freed at its dispose. */
struct sh_req *sh__state(struct stream_http *sh, struct http_req *req, enum sh_mode mode);
/* (Re)starts r's timer. */
void sh__timer(struct sh_req *r, uv_timer_cb cb, uint64_t first, uint64_t repeat);

/* stream_http_sse.c */
/* Answers a GET with live=sse of st from `from` (cursor: the client's, request memory). */
void sh__sse(struct stream_http *sh, struct http_req *req, struct stream *st, int64_t from, char *cursor);
/* A reader that leaves: out of the frame read it waits for. */
void sh__sse_leave(struct sh_req *r);
/* What stream_http_free frees of the SSE side: frames, control events, fills still in flight. */
void sh__sse_free(struct stream_http *sh);

#endif
