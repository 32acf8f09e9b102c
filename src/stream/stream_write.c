/*
 * stream_write — the protocol's write rules: create (with forks), append (Stream-Seq, idempotent
 * producers, closure) and delete. Each checks the request against the stream's pending state (what
 * the open batch will make true, so several writes in one loop turn sequence correctly), writes into
 * the open batch and queues its op, which completes once the batch is durable (stream.c). See
 * stream.h.
 */
#include "stream/stream.h"
#include "stream/jsonmode.h"
#include "stream/stream_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct stream__msgs {
    struct buf out;
    size_t limit; /* stop collecting after this many messages (sub-offsets) */
    size_t n;
};

static void stream__collect_msg(const char *p, size_t n, void *arg)
{
    struct stream__msgs *m = arg;
    if (m->n < m->limit) {
        buf_append(&m->out, p, n);
        buf_append(&m->out, ",", 1);
    }
    m->n++;
}

/* Validates a JSON-mode body and turns it into stored form ("m1,m2,"). */
static const char *stream__json_body(const void *body, size_t len, int allow_empty, struct buf *out)
{
    struct stream__msgs m = {.limit = SIZE_MAX};
    size_t count;
    const char *why = jsonmode_split(body, len, 1, stream__collect_msg, &m, &count);
    if (why == NULL && count == 0 && !allow_empty)
        why = "an empty JSON array appends nothing";
    if (why)
        buf_free(&m.out);
    else
        *out = m.out;
    return why;
}

/* Materializes the first `sub` messages (JSON) or bytes after `off` of src into out, reading the
 * source a chunk at a time: memory holds the prefix and one chunk, not the rest of the source. */
static const char *stream__sub_prefix(struct streams *ss, struct stream *src, int64_t off, int64_t sub,
                                      struct buf *out)
{
    const size_t chunk = 1 << 20;
    int64_t got = 0;
    const char *why = NULL;
    while (why == NULL && got < sub && off < stream_tail(src)) {
        struct buf raw = {0};
        int64_t next;
        if (stream_read(ss, src, off, chunk, &raw, &next) < 0 || next <= off) {
            why = "cannot read the fork source";
        } else if (stream_is_json(src)) {
            /* a read ends where an append ends, so each chunk holds whole messages */
            stream_json_wrap(&raw);
            struct stream__msgs m = {.out = *out, .limit = (size_t)(sub - got)};
            size_t count;
            if (jsonmode_split(raw.p, raw.len, 1, stream__collect_msg, &m, &count) != NULL)
                why = "the fork source holds invalid JSON";
            *out = m.out;
            got += (int64_t)count < sub - got ? (int64_t)count : sub - got;
        } else {
            size_t take = (int64_t)raw.len < sub - got ? raw.len : (size_t)(sub - got);
            buf_append(out, raw.p, take);
            got += (int64_t)take;
        }
        buf_free(&raw);
        off = next;
    }
    if (why == NULL && got == 0)
        why = "the fork source has no data after the fork offset";
    else if (why == NULL && got < sub)
        why = "Stream-Fork-Sub-Offset is past the end of the source";
    return why;
}

static enum stream_status stream__fail(struct stream_op *op, enum stream_status s, const char *msg)
{
    op->result.status = s;
    op->result.message = msg;
    return s;
}

/* What the source's owner checks of a fork (doc/SHARDING-PLAN.md §2.3): the source exists and is
 * not deleted, the fork keeps its content type (ct: the one asked for, or NULL), and the fork point
 * (the source's durable tail unless given) is within it and on a message boundary. *fork_off: the
 * fork point. STREAM_OK, or the refusal with *why. */
static enum stream_status stream__fork_check(struct streams *ss, struct stream *from, enum stream_lookup how,
                                             const char *ct, int has_off, int64_t off, int64_t *fork_off,
                                             const char **why)
{
    *why = NULL;
    if (how == STREAM_MISSING)
        return *why = "the fork source does not exist", STREAM_NOT_FOUND;
    if (how == STREAM_SOFT_DELETED)
        return *why = "the fork source was deleted", STREAM_CONFLICT;
    if (ct && !stream__media_eq(ct, from->m.content_type))
        return *why = "a fork keeps its source's content type", STREAM_CONFLICT;
    *fork_off = has_off ? off : from->durable_tail;
    if (*fork_off > from->durable_tail)
        return *why = "Stream-Fork-Offset is beyond the source's tail", STREAM_BAD_REQUEST;
    if (!stream_offset_is_boundary(ss, from, *fork_off))
        return *why = "Stream-Fork-Offset falls inside a message of the JSON source stream",
               STREAM_BAD_REQUEST;
    return STREAM_OK;
}

/* A fork's source: looked up and checked here, or, from another owner, its answer (a->fork_ref;
 * its chain becomes stubs here, read through as a loaded source would be). Sets want->fork_off,
 * *src and *row (the source's). STREAM_OK, or the refusal with op's result set. */
static enum stream_status stream__create_source(struct streams *ss, const struct stream_create_args *a,
                                                struct store_meta *want, struct stream **src,
                                                const struct store_meta **row, struct stream_op *op)
{
    const struct stream_fork_answer *r = a->fork_ref;
    if (r && (r->status != STREAM_OK || r->n == 0))
        return stream__fail(op, r->status != STREAM_OK ? r->status : STREAM_BAD_REQUEST,
                            r->message ? r->message : "the fork source's owner gave no source");
    if (r && a->content_type && !stream__media_eq(a->content_type, r->chain[0].content_type))
        return stream__fail(op, STREAM_CONFLICT, "a fork keeps its source's content type");
    if (r) {
        want->id = a->id;
        want->fork_off = r->fork_off;
        *src = stream__stub_chain(ss, r->chain, r->n);
        *row = &r->chain[0];
        return STREAM_OK;
    }
    /* a source of a shard not held here is its owner's to check and count: serve/ is to ask it
     * (streams_fork_ref's -EREMOTE; increment 4) */
    if (!streams_shard_held(ss, streams_shard_of(ss, a->fork_from, strlen(a->fork_from))))
        return stream__fail(op, STREAM_MOVED, "the fork source's shard is not served by this node");
    enum stream_lookup how;
    enum stream_status status;
    const char *why;
    struct stream *from = streams_lookup(ss, a->fork_from, strlen(a->fork_from), &how);
    if ((status = stream__fork_check(ss, from, how, a->content_type, a->has_fork_offset, a->fork_offset,
                                     &want->fork_off, &why)) != STREAM_OK)
        return stream__fail(op, status, why);
    *src = from;
    *row = &from->m;
    return STREAM_OK;
}

/* The configuration a create asks for, resolved against its fork source: content type (a fork keeps
 * its source's), TTL or expiry (a fork inherits its source's unless it names its own) and the fork
 * point. Fills want (its strings owned: store_meta_clear) and *src. Returns STREAM_OK, or the
 * refusal with op's result set. */
static enum stream_status stream__create_config(struct streams *ss, const struct stream_create_args *a,
                                                struct store_meta *want, struct stream **src,
                                                struct stream_op *op)
{
    const char *ct = a->content_type, *expires_at = a->expires_at;
    want->ttl_s = a->ttl_s;
    want->expires_at_ms = a->expires_at_ms;
    want->closed = a->closed;
    *src = NULL;
    if (a->fork_from) {
        const struct store_meta *from;
        enum stream_status status = stream__create_source(ss, a, want, src, &from, op);
        if (status != STREAM_OK)
            return status;
        ct = from->content_type;
        want->fork_src = from->id;
        want->fork_sub = a->fork_sub;
        if (a->ttl_s < 0 && a->expires_at_ms < 0) {
            want->ttl_s = from->ttl_s;
            want->expires_at_ms = from->expires_at_ms;
            expires_at = from->expires_at;
        }
    }
    want->content_type = xstrdup(ct ? ct : "application/octet-stream");
    want->expires_at = expires_at ? xstrdup(expires_at) : NULL;
    return STREAM_OK;
}

int streams_fork_ref(struct streams *ss, const char *path, size_t len, const struct stream_fork_ask *ask,
                     struct stream_fork_answer *out)
{
    memset(out, 0, sizeof *out);
    if (!streams_shard_held(ss, streams_shard_of(ss, path, len)))
        return -EREMOTE;
    enum stream_lookup how;
    struct stream *from = streams_lookup(ss, path, len, &how);
    out->status = stream__fork_check(ss, from, how, ask->content_type, ask->has_offset, ask->offset,
                                     &out->fork_off, &out->message);
    if (out->status == STREAM_OK && ask->sub > 0 &&
        (out->message = stream__sub_prefix(ss, from, out->fork_off, ask->sub, &out->prefix)) != NULL)
        out->status = STREAM_BAD_REQUEST;
    if (out->status != STREAM_OK)
        return 0;
    /* the source's identity, as a fork's owner reads through it: its row (tail: what is durable),
     * then each of its own sources' */
    for (struct stream *p = from; p; p = p->src) {
        out->chain = xrealloc(out->chain, (out->n + 1) * sizeof *out->chain);
        store_meta_copy(&out->chain[out->n], &p->m);
        out->chain[out->n++].tail = p->durable_tail;
    }
    if (ask->fork) {
        int rc = stream__ref_add(ss, from, ask->fork);
        streams__arm(ss);
        if (rc != 0) {
            out->status = STREAM_STORE_ERROR;
            out->message = "the store could not write the fork reference";
        } else if (ask->op) { /* answered once the ref is durable (a ref counted already: too) */
            memset(&ask->op->result, 0, sizeof ask->op->result);
            ask->op->result.status = STREAM_OK;
            ask->op->shard = from->shard;
            streams__queue(ss, ask->op);
        }
    }
    return 0;
}

void stream_fork_answer_clear(struct stream_fork_answer *a)
{
    for (size_t i = 0; i < a->n; i++)
        store_meta_clear(&a->chain[i]);
    free(a->chain);
    buf_free(&a->prefix);
    memset(a, 0, sizeof *a);
}

/* A create of a stream that exists: idempotent when the configuration is the same (answered with
 * the stream's state once the batch is durable), a conflict otherwise. */
static enum stream_status stream__create_existing(struct streams *ss, struct stream *old,
                                                  const struct store_meta *want, int fork,
                                                  struct stream_op *op)
{
    const struct store_meta *m = &old->m;
    if (!stream__media_eq(m->content_type, want->content_type) || m->ttl_s != want->ttl_s ||
        m->expires_at_ms != want->expires_at_ms || m->closed != want->closed ||
        m->fork_src != want->fork_src ||
        (fork && (m->fork_off != want->fork_off || m->fork_sub != want->fork_sub)))
        return stream__fail(op, STREAM_CONFLICT,
                            "a stream with a different configuration exists at this path");
    stream_touch(old);
    op->result.status = STREAM_OK;
    op->result.next_offset = m->tail;
    op->result.closed = m->closed;
    streams__queue(ss, op);
    return STREAM_OK;
}

/* A new stream's first bytes, in stored form: a fork's materialized sub-offset prefix (first) and
 * the request's body. NULL, or why they are refused. */
static const char *stream__create_data(struct streams *ss, struct stream *src, const struct store_meta *want,
                                       const struct stream_create_args *a, struct buf *first,
                                       struct buf *body)
{
    const char *why = NULL;
    if (src && a->fork_sub > 0 && a->fork_ref) /* materialized by the source's owner */
        buf_append(first, a->fork_ref->prefix.p, a->fork_ref->prefix.len);
    else if (src && a->fork_sub > 0)
        why = stream__sub_prefix(ss, src, want->fork_off, a->fork_sub, first);
    if (why == NULL && a->body_len) {
        if (stream__ct_is_json(want->content_type))
            why = stream__json_body(a->body, a->body_len, 1, body);
        else
            buf_append(body, a->body, a->body_len);
    }
    return why;
}

/* Writes a validated new stream into the open batch (its row, its first records, its source's
 * ref) and registers it. Nothing of its own is visible before the commit. */
static enum stream_status stream__create_write(struct streams *ss, struct store_meta *want,
                                               struct stream *src, const struct buf *first,
                                               const struct buf *body, struct stream_op *op)
{
    want->created_ms = clock_wall_ms();
    want->tail = want->fork_off + (int64_t)first->len + (int64_t)body->len;
    int rc = store_stream_insert(ss->store, want);
    if (rc == 0 && first->len)
        rc = store_record_append(ss->store, want->id, want->fork_off, first->p, first->len);
    if (rc == 0 && body->len)
        rc = store_record_append(ss->store, want->id, want->fork_off + (int64_t)first->len, body->p,
                                 body->len);
    /* the source's owner's ref: a local call when src is held here (a stub's owner wrote it) */
    if (rc == 0 && src && !src->foreign)
        rc = stream__ref_add(ss, src, want->id);
    streams__arm(ss);
    if (rc != 0) {
        /* The batch is poisoned and will roll back and reload; report the failure now. */
        op->result.store_errno = rc;
        return stream__fail(op, STREAM_STORE_ERROR, "the store could not write the stream");
    }
    struct stream *st = stream__new(ss, want);
    stream__cache_append(ss, st, want->fork_off, first->p, first->len);
    stream__cache_append(ss, st, want->fork_off + (int64_t)first->len, body->p, body->len);
    st->src = src;
    st->durable_tail = want->fork_off;
    st->durable_closed = 0;
    st->created = 1;
    streams__mark(ss, st);
    op->result.status = STREAM_CREATED;
    op->result.next_offset = want->tail;
    op->result.closed = want->closed;
    streams__queue(ss, op);
    return STREAM_CREATED;
}

/* While the store's database cannot be reached, nothing is written (the registry holds what was
 * durable before it went, and is reloaded once it is back). Nor is anything written to a shard not
 * held here: refused before it joins the batch, it cannot fail the other shards' writes in it. */
static int stream__unavailable(struct streams *ss, int shard, struct stream_op *op)
{
    op->shard = shard;
    if (!streams_shard_held(ss, shard)) {
        stream__fail(op, STREAM_MOVED, "this node does not serve the stream's shard now");
        return 1;
    }
    if (!ss->unavailable)
        return 0;
    stream__fail(op, STREAM_STORE_ERROR,
                 ss->unavailable == -EPERM ? "another node holds the store's write lease"
                                           : "the store's database cannot be reached");
    op->result.store_errno = ss->unavailable;
    return 1;
}

enum stream_status stream_create(struct streams *ss, const char *path, size_t plen,
                                 const struct stream_create_args *a, struct stream_op *op)
{
    assert(!op->queued); /* an op may be in one batch at a time */
    memset(&op->result, 0, sizeof op->result);
    if (stream__unavailable(ss, plen ? streams_shard_of(ss, path, plen) : 0, op))
        return op->result.status;
    struct store_meta want = {0};
    struct stream *src, *old;
    struct buf first = {0}, body = {0};
    enum stream_lookup how;
    enum stream_status status;
    const char *why;

    if (plen == 0)
        return stream__fail(op, STREAM_BAD_REQUEST, "empty stream path");
    if ((status = stream__create_config(ss, a, &want, &src, op)) != STREAM_OK)
        goto fail;
    old = streams_lookup(ss, path, plen, &how);
    if (how == STREAM_SOFT_DELETED) {
        status =
            stream__fail(op, STREAM_CONFLICT, "a deleted stream at this path is still read by its forks");
        goto fail;
    }
    if (old) {
        status = stream__create_existing(ss, old, &want, src != NULL, op);
        goto fail;
    }
    if (a->fork_ref && a->id == 0) { /* the source's owner wrote no ref for it */
        status = stream__fail(op, STREAM_MOVED, "the fork's path was deleted meanwhile; retry");
        goto fail;
    }
    /* A new stream: everything is validated before anything is written. */
    if ((why = stream__create_data(ss, src, &want, a, &first, &body)) != NULL) {
        status = stream__fail(op, STREAM_BAD_REQUEST, why);
        goto fail;
    }
    want.path = xstrndup(path, plen);
    status = stream__create_write(ss, &want, src, &first, &body, op);
fail:
    store_meta_clear(&want);
    buf_free(&first);
    buf_free(&body);
    return status;
}

/*
 * Checks an append against st's pending state, in the protocol's order: deletion, body and
 * Content-Type, producer fencing, closure (with the closing append's retry), the stream's media
 * type, the body itself (JSON is validated and put in stored form into stored), the producer's
 * sequence, Stream-Seq. Returns 1 when the append is to be written (*p: its producer's state, NULL
 * when new), else 0 with *status: a refusal, or an answer that needs no write (a duplicate; closing
 * a closed stream), whose op is queued.
 */
static int stream__append_check(struct streams *ss, struct stream *st, const struct stream_append_args *a,
                                struct stream_op *op, struct stream__producer **p, struct buf *stored,
                                enum stream_status *status)
{
    struct stream_result *r = &op->result;
    const char *why;
    *p = NULL;
    r->next_offset = st->m.tail;
    r->closed = st->m.closed;
    if (st->m.deleted)
        return *status = stream__fail(op, STREAM_GONE, "the stream was deleted"), 0;
    if (a->body_len == 0 && !a->close)
        return *status =
                   stream__fail(op, STREAM_BAD_REQUEST, "an append needs a body (or Stream-Closed: true)"),
               0;
    if (a->body_len && a->content_type == NULL)
        return *status = stream__fail(op, STREAM_BAD_REQUEST, "an append with a body needs a Content-Type"),
               0;
    if (a->producer_id) {
        *p = map_get(&st->producers, a->producer_id, strlen(a->producer_id));
        r->has_producer = 1;
        if (*p && a->producer_epoch < (*p)->epoch) {
            r->producer_epoch = (*p)->epoch;
            return *status = stream__fail(op, STREAM_FENCED, "a newer producer epoch exists"), 0;
        }
    }
    if (st->m.closed) {
        if (a->producer_id && st->m.closer_pid && strcmp(a->producer_id, st->m.closer_pid) == 0 &&
            a->producer_epoch == st->m.closer_epoch && a->producer_seq == st->m.closer_seq) {
            r->status = *status = STREAM_DUPLICATE;
            r->producer_epoch = st->m.closer_epoch;
            r->producer_seq = st->m.closer_seq;
            streams__queue(ss, op);
            return 0;
        }
        if (a->close && a->body_len == 0 && a->producer_id == NULL) {
            r->status = *status = STREAM_OK;
            streams__queue(ss, op);
            return 0;
        }
        return *status = stream__fail(op, STREAM_CLOSED, "the stream is closed"), 0;
    }
    if (a->body_len && !stream__media_eq(a->content_type, st->m.content_type))
        return *status = stream__fail(op, STREAM_CONFLICT, "Content-Type does not match the stream's"), 0;
    if (a->body_len && stream_is_json(st)) {
        if ((why = stream__json_body(a->body, a->body_len, 0, stored)) != NULL)
            return *status = stream__fail(op, STREAM_BAD_REQUEST, why), 0;
    } else if (a->body_len) {
        buf_append(stored, a->body, a->body_len);
    }
    if (a->producer_id && *p == NULL && a->producer_seq != 0) {
        r->expected_seq = 0;
        r->received_seq = a->producer_seq;
        return *status = stream__fail(op, STREAM_SEQ_GAP, "a new producer starts at Producer-Seq 0"), 0;
    }
    if (a->producer_id && *p && a->producer_epoch > (*p)->epoch && a->producer_seq != 0)
        return *status =
                   stream__fail(op, STREAM_BAD_REQUEST, "a new producer epoch starts at Producer-Seq 0"),
               0;
    if (a->producer_id && *p && a->producer_epoch == (*p)->epoch && a->producer_seq <= (*p)->seq) {
        r->status = *status = STREAM_DUPLICATE;
        r->producer_epoch = (*p)->epoch;
        r->producer_seq = (*p)->seq;
        streams__queue(ss, op);
        return 0;
    }
    if (a->producer_id && *p && a->producer_epoch == (*p)->epoch && a->producer_seq != (*p)->seq + 1) {
        r->expected_seq = (*p)->seq + 1;
        r->received_seq = a->producer_seq;
        return *status = stream__fail(op, STREAM_SEQ_GAP, "Producer-Seq skipped ahead"), 0;
    }
    if (a->seq && st->m.last_seq && strcmp(a->seq, st->m.last_seq) <= 0)
        return *status = stream__fail(op, STREAM_CONFLICT, "Stream-Seq must increase"), 0;
    return 1;
}

/* Writes an accepted append into the open batch: its record, Stream-Seq, the producer's state and
 * closure. A failed write poisons the batch, and the op then fails at commit. */
static void stream__append_write(struct streams *ss, struct stream *st, const struct stream_append_args *a,
                                 struct stream_op *op, struct stream__producer *p, const struct buf *stored)
{
    struct stream_result *r = &op->result;
    int rc = 0, meta_changed = 0;
    r->offset = st->m.tail;
    if (stored->len) {
        rc = store_record_append(ss->store, st->m.id, st->m.tail, stored->p, stored->len);
        if (rc == 0)
            stream__cache_append(ss, st, st->m.tail, stored->p, stored->len);
        st->m.tail += (int64_t)stored->len;
    }
    if (a->seq) {
        free(st->m.last_seq);
        st->m.last_seq = xstrdup(a->seq);
        meta_changed = 1;
    }
    if (a->producer_id) {
        if (p == NULL) {
            p = xmalloc(sizeof *p);
            map_put(&st->producers, a->producer_id, strlen(a->producer_id), p);
        }
        p->epoch = a->producer_epoch;
        p->seq = a->producer_seq;
        if (rc == 0)
            rc = store_producer_put(ss->store, st->m.id, a->producer_id, p->epoch, p->seq);
        r->producer_epoch = p->epoch;
        r->producer_seq = p->seq;
    }
    if (a->close) {
        st->m.closed = 1;
        if (a->producer_id) {
            free(st->m.closer_pid);
            st->m.closer_pid = xstrdup(a->producer_id);
            st->m.closer_epoch = a->producer_epoch;
            st->m.closer_seq = a->producer_seq;
        }
        meta_changed = 1;
    }
    if (rc == 0 && meta_changed)
        rc = store_stream_update(ss->store, &st->m);
    stream_touch(st);
    streams__mark(ss, st);
    r->status = STREAM_OK;
    r->next_offset = st->m.tail;
    r->closed = st->m.closed;
    r->stored = a->body_len > 0;
    r->store_errno = rc;
    streams__queue(ss, op);
}

enum stream_status stream_append(struct streams *ss, struct stream *st, const struct stream_append_args *a,
                                 struct stream_op *op)
{
    assert(!op->queued);
    memset(&op->result, 0, sizeof op->result);
    if (stream__unavailable(ss, st->foreign ? -1 : (int)st->shard, op))
        return op->result.status;
    struct stream__producer *p;
    struct buf stored = {0};
    enum stream_status status = STREAM_OK;
    if (stream__append_check(ss, st, a, op, &p, &stored, &status))
        stream__append_write(ss, st, a, op, p, &stored);
    buf_free(&stored);
    return status;
}

enum stream_status stream_delete(struct streams *ss, struct stream *st, struct stream_op *op)
{
    assert(!op->queued);
    memset(&op->result, 0, sizeof op->result);
    if (stream__unavailable(ss, st->foreign ? -1 : (int)st->shard, op))
        return op->result.status;
    if (st->m.deleted)
        return stream__fail(op, STREAM_GONE, "the stream was deleted");
    stream__retire(ss, st, 0);
    op->result.status = STREAM_OK;
    streams__queue(ss, op);
    return STREAM_OK;
}
