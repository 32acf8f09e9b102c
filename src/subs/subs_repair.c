/*
 * subs_repair — what the relay of other nodes' commits lost (doc/SHARDING-PLAN.md §2.4). With several
 * nodes on one database the service hears of a commit made on another node only through that
 * node's relay (serve_observe_http.c), which is fire and forget: a request that fails, a node that
 * stops between its commit and its relay, or a service that starts after the commit leave it
 * unheard. So the service reads the path and tail of the streams from the database itself
 * (subs_config.scan, off the loop):
 *   - at start (the baseline): every stream's tail is known, and known streams are what a new
 *     subscription's glob links at their tails; subscriptions with work pending are woken. Nothing
 *     is linked anew: a stream the service never heard of is history, as on one node.
 *   - every SUBS_REPAIR_MS while a glob subscription exists: a stream new or grown since the
 *     service last heard of it is observed as a relay would have had it (subs_observe_remote),
 *     limited to the paths the globs can match (their common literal prefix).
 * Streams in the registry here are left alone: the streams observer hears of their commits.
 */
#include "subs/subs_int.h"
#include "stream/stream.h"

#include <stdlib.h>
#include <string.h>

/* The literal start of a glob: its segments before the first one with a wildcard (or an escape). */
static size_t subs__literal_len(const char *pattern)
{
    size_t n = 0;
    for (const char *p = pattern; *p; p++) {
        if (*p == '*' || *p == '%')
            return n;
        if (*p == '/')
            n = (size_t)(p - pattern) + 1;
    }
    return strlen(pattern); /* no wildcard: the whole path */
}

/* The longest prefix every glob subscription's paths start with; NULL when there is none. */
static char *subs__scan_prefix(struct subs *s)
{
    char *prefix = NULL;
    for (struct subs_sub *sub = s->first; sub; sub = sub->next) {
        if (!sub->pattern)
            continue;
        const char *p = sub->pattern + strspn(sub->pattern, "/");
        size_t n = subs__literal_len(p);
        if (prefix == NULL) {
            prefix = xstrndup(p, n);
            continue;
        }
        size_t i = 0;
        while (i < n && prefix[i] && prefix[i] == p[i])
            i++;
        prefix[i] = '\0';
    }
    return prefix;
}

/* On the worker: one row. */
static void subs__found(const char *path, int64_t tail, void *arg)
{
    struct subs *s = arg;
    if (s->nfound == s->found_cap) {
        s->found_cap = s->found_cap ? s->found_cap * 2 : 64;
        s->found = xrealloc(s->found, s->found_cap * sizeof *s->found);
    }
    s->found[s->nfound++] = (struct subs_found){.path = xstrdup(path), .tail = tail};
}

static void subs__scan_work(uv_work_t *w)
{
    struct subs *s = w->data;
    s->found_rc = s->scan(s->scan_arg, s->repair_prefix ? s->repair_prefix : "", subs__found, s);
}

/* One row, on the loop: a stream another node holds, new or grown since last heard of. */
static void subs__repair_one(struct subs *s, const char *path, int64_t tail, int baseline)
{
    size_t n = strlen(path);
    if ((n >= 4 && !memcmp(path, "__ds", 4) && (n == 4 || path[4] == '/')))
        return;
    enum stream_lookup how;
    if (streams_lookup(s->ss, path, n, &how))
        return; /* held here: the observer hears of it */
    const int64_t *was = map_get(&s->remote, path, n);
    if (baseline)
        subs__remote_tail(s, path, tail);
    else if (was == NULL || tail > *was)
        subs_observe_remote(s, path, tail);
}

static void subs__scan_done(uv_work_t *w, int status)
{
    struct subs *s = w->data;
    s->repair_busy = 0;
    int baseline = !s->repaired;
    for (size_t i = 0; i < s->nfound; i++) {
        if (!s->closing && status == 0 && s->found_rc == 0)
            subs__repair_one(s, s->found[i].path, s->found[i].tail, baseline);
        free(s->found[i].path);
    }
    s->nfound = 0;
    if (s->closing) {
        subs__release(s);
        return;
    }
    if (status == 0 && s->found_rc == 0) {
        s->repaired = 1;
        if (baseline)
            subs__wake_all(s);
    } else {
        log_warn("subs: reading the streams' tails from the database failed (%s); trying again in %d ms",
                 strerror(-(s->found_rc ? s->found_rc : status)), SUBS_REPAIR_MS);
    }
}

static void subs__scan_start(struct subs *s)
{
    free(s->repair_prefix);
    s->repair_prefix = NULL;
    if (s->repaired) {
        /* a later scan: only while a glob can link something, only what it can match */
        s->repair_prefix = subs__scan_prefix(s);
        if (s->repair_prefix == NULL)
            return;
    }
    s->repair_busy = 1;
    s->repair_work.data = s;
    if (uv_queue_work(s->loop, &s->repair_work, subs__scan_work, subs__scan_done) != 0)
        s->repair_busy = 0;
}

static void subs__repair_tick(uv_timer_t *t)
{
    struct subs *s = t->data;
    if (!s->repair_busy)
        subs__scan_start(s);
}

void subs__repair_start(struct subs *s)
{
    if (s->scan == NULL)
        return;
    uv_timer_init(s->loop, &s->repair);
    s->repair.data = s;
    s->handles++;
    uv_timer_start(&s->repair, subs__repair_tick, SUBS_REPAIR_MS, SUBS_REPAIR_MS);
    subs__scan_start(s);
}

void subs__repair_stop(struct subs *s)
{
    if (s->scan == NULL || s->repair.data == NULL)
        return;
    uv_close((uv_handle_t *)&s->repair, subs__handle_closed);
}
