/*
 * stream_view — a follower's read-only view of one stream, read from the store's database per
 * request (see stream.h), in libuv's thread pool (stream_view_start, stream_read.c) or by whoever
 * calls stream_view_open. No registry, no cache: each view is a few rows read in one snapshot on
 * one of the store's reader connections, owned by the view and freed with it. Its streams are built like the registry's (struct stream,
 * stream_int.h) but registered nowhere, so stream.c's reads and metadata calls work on them.
 */
#include "stream/stream_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Fork chains deeper than this are refused (-ELOOP): a row naming itself as a source must not
 * spin the loop. The owner's registry has no bound; agentd's own forks go a few levels deep. */
#define STREAM_VIEW_DEPTH 64

struct stream_view {
    struct store *store;
    struct stream *st;           /* the stream; its src chain is the view's too */
    struct store_snapshot *snap; /* until stream__view_end */
};

static struct stream *stream_view__stream(const struct store_meta *m)
{
    struct stream *st = xcalloc(1, sizeof *st);
    st->m = *m; /* takes the strings */
    st->durable_tail = m->tail;
    st->durable_closed = m->closed != 0;
    st->subs.next = st->subs.prev = &st->subs;
    return st;
}

/* Reads the rows of st's fork sources, linking each as the one before's src. */
static int stream_view__sources(struct stream_view *v)
{
    struct stream *st = v->st;
    for (int depth = 0; st->m.fork_src != 0; depth++) {
        struct store_meta m;
        if (depth == STREAM_VIEW_DEPTH)
            return -ELOOP;
        int rc = store_snapshot_get(v->snap, st->m.fork_src, &m);
        if (rc <= 0)
            return rc < 0 ? rc : -EIO; /* a fork's source lives while it counts the fork */
        st->src = stream_view__stream(&m);
        st = st->src;
    }
    return 0;
}

int stream_view_open(struct stream_view **out, struct store *store, const char *path, size_t plen,
                     int64_t from, enum stream_lookup *how)
{
    struct stream_view *v = xcalloc(1, sizeof *v);
    char *p = xmalloc(plen + 1);
    struct store_meta m;
    memcpy(p, path, plen);
    p[plen] = '\0';
    v->store = store;
    *out = NULL;
    *how = STREAM_MISSING;
    int rc = store_snapshot_open(store, p, from, &m, &v->snap);
    if (rc < 0)
        goto fail;
    if (rc == 0) { /* missing: nothing to keep */
        free(p);
        stream_view_close(v);
        return 0;
    }
    v->st = stream_view__stream(&m);
    if ((rc = stream_view__sources(v)) != 0)
        goto fail;
    free(p);
    *how = v->st->m.deleted ? STREAM_SOFT_DELETED : STREAM_FOUND;
    *out = v;
    return 0;
fail:
    free(p);
    stream_view_close(v);
    return rc;
}

struct stream *stream_view_stream(struct stream_view *v) { return v->st; }

int stream_view_expires(const struct stream_view *v)
{
    return v->st->m.ttl_s >= 0 || v->st->m.expires_at_ms >= 0;
}

int stream_view_read(struct stream_view *v, int64_t from, size_t max_bytes, struct buf *out, int64_t *next)
{
    return stream__read_range(v->store, v->snap, v->st, from, v->st->durable_tail, max_bytes ? max_bytes : 1,
                              out, next);
}

void stream__view_end(struct stream_view *v)
{
    store_snapshot_close(v->snap);
    v->snap = NULL;
}

void stream_view_close(struct stream_view *v)
{
    if (v == NULL)
        return;
    for (struct stream *st = v->st, *src; st; st = src) {
        src = st->src;
        store_meta_clear(&st->m);
        free(st);
    }
    stream__view_end(v);
    free(v);
}
