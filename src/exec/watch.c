/* watch — workspace file changes through inotify, coalesced per path and rate limited.
 *
 * inotify is not recursive: every directory gets its own watch, added at start and whenever a
 * directory appears (created or moved in). Entries of a directory that appears are reported as
 * created, because they may have been made before its watch existed. .git and node_modules are
 * never watched: they change often and in bulk, and nobody reads a transcript for them.
 *
 * Changes wait in a pending list (first-change order, indexed by path) until the batch timer
 * fires, rate_ms after the first change of the batch; so batches are at least rate_ms apart, unless
 * the owner flushes (exec_watch_flush: a run that ends reports its changes before its end).
 *
 * All watchers of a loop share one inotify instance (struct watch_inotify): a server with a few
 * hundred sessions must not use up the user's instances (128 by default, for every process of
 * the user together) — with one instance each, the 129th session and every other program of the
 * user lost their file events.
 *
 * Known limit: a directory moved within the workspace keeps its subdirectories' old paths until
 * they are deleted (inotify reports a move per directory, not per descendant).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "core/map.h"
#include "exec/exec_int.h"

#define WATCH_MASK                                                                                   \
    (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR | \
     IN_DONT_FOLLOW | IN_EXCL_UNLINK)
#define WATCH_DROPPED (-1) /* a pending change that cancelled out (created, then deleted) */

struct pending {
    char *path; /* owned, relative to the workspace */
    int kind;   /* enum exec_file_kind, or WATCH_DROPPED */
};

/* One inotify instance per loop, shared by every watcher on it: instances are a scarce per-user
 * resource (fs.inotify.max_user_instances, 128 by default, shared by every process of the
 * user), watches much less so. Watch descriptors are the instance's, so it keeps the table that
 * routes each one to its watcher and directory. */
struct watch_inotify {
    struct watch_inotify *next; /* in `instances` */
    uv_loop_t *loop;
    int fd; /* owned */
    uv_poll_t poll;
    int users;          /* watchers using it; closed when the last one stops */
    struct watch_slot { /* indexed by watch descriptor */
        struct exec__watch *w;
        char *rel; /* owned: the directory, relative to w's workspace */
    } * slots;
    size_t nslots;
};

/* The instances of every loop. exec runs on one thread (see exec.h), so a plain list does. */
static struct watch_inotify *instances;

struct exec__watch {
    struct exec_env *env;
    struct watch_inotify *in; /* shared, one reference */
    uv_timer_t timer;         /* the batch timer */
    int closing;
    uint64_t rate_ms;
    exec_watch_cb cb;
    void *arg;
    struct pending *pend; /* the batch being collected */
    size_t npend, cap;
    struct map index; /* path → pending slot + 1 (as a pointer-sized integer) */
};

const char *exec_file_kind_name(enum exec_file_kind kind)
{
    switch (kind) {
    case EXEC_FILE_CREATED: return "created";
    case EXEC_FILE_MODIFIED: return "modified";
    case EXEC_FILE_DELETED: return "deleted";
    case EXEC_FILE_OVERFLOW: return "overflow";
    }
    return "unknown";
}

static int skipped_name(const char *name)
{
    return strcmp(name, ".git") == 0 || strcmp(name, "node_modules") == 0;
}

/* ---- batching ---------------------------------------------------------------------------- */

static void on_batch_timer(uv_timer_t *t)
{
    struct exec__watch *w = t->data;
    struct exec_file_change *out = xcalloc(w->npend > 0 ? w->npend : 1, sizeof *out);
    size_t n = 0;

    for (size_t i = 0; i < w->npend; i++)
        if (w->pend[i].kind != WATCH_DROPPED)
            out[n++] = (struct exec_file_change){w->pend[i].path, (enum exec_file_kind)w->pend[i].kind};
    if (n > 0)
        w->cb(w->arg, w->env, out, n);
    free(out);
    for (size_t i = 0; i < w->npend; i++)
        free(w->pend[i].path);
    w->npend = 0;
    map_clear(&w->index);
}

/* Merges one change into the batch: what the path's state is at the end of the batch relative
 * to its start is what matters. */
static void note(struct exec__watch *w, const char *path, enum exec_file_kind kind)
{
    size_t len = strlen(path);
    uintptr_t slot = (uintptr_t)map_get(&w->index, path, len);
    struct pending *pe;

    if (slot == 0) {
        if (w->npend == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 16;
            w->pend = xrealloc(w->pend, w->cap * sizeof *w->pend);
        }
        w->pend[w->npend] = (struct pending){xstrdup(path), (int)kind};
        map_put(&w->index, path, len, (void *)(uintptr_t)(++w->npend));
    } else {
        pe = &w->pend[slot - 1];
        if (pe->kind == EXEC_FILE_CREATED && kind == EXEC_FILE_DELETED) {
            pe->kind = WATCH_DROPPED; /* never existed as far as the batch is concerned */
            map_del(&w->index, path, len);
        } else if (pe->kind == EXEC_FILE_DELETED && kind != EXEC_FILE_DELETED) {
            pe->kind = EXEC_FILE_MODIFIED; /* replaced */
        } else if (pe->kind != EXEC_FILE_CREATED || kind == EXEC_FILE_DELETED) {
            pe->kind = kind == EXEC_FILE_CREATED ? EXEC_FILE_MODIFIED : (int)kind;
        }
    }
    if (!uv_is_active((uv_handle_t *)&w->timer))
        uv_timer_start(&w->timer, on_batch_timer, w->rate_ms, 0);
}

/* ---- watches ----------------------------------------------------------------------------- */

static void set_dir(struct exec__watch *w, int wd, const char *rel)
{
    struct watch_inotify *in = w->in;

    if ((size_t)wd >= in->nslots) {
        size_t n = (size_t)wd * 2 + 8;
        in->slots = xrealloc(in->slots, n * sizeof *in->slots);
        memset(in->slots + in->nslots, 0, (n - in->nslots) * sizeof *in->slots);
        in->nslots = n;
    }
    free(in->slots[wd].rel);
    in->slots[wd] = (struct watch_slot){w, xstrdup(rel)};
}

/* Watches the directory `rel` and, recursively, its subdirectories; with `report`, every entry
 * found is a created change. Returns the directory's watch descriptor or a negative errno. */
static int add_tree(struct exec__watch *w, const char *rel, int report)
{
    char abs[PATH_MAX];
    struct dirent *de;
    DIR *d;
    int wd;

    snprintf(abs, sizeof abs, "%s%s%s", w->env->workspace, rel[0] ? "/" : "", rel);
    if ((wd = inotify_add_watch(w->in->fd, abs, WATCH_MASK)) < 0) {
        int err = -errno;
        if (err == -ENOSPC)
            exec__log(w->env, "warn", "watch %s: inotify watch limit reached", abs);
        return err; /* ENOENT/ENOTDIR: gone already, its deletion will be reported */
    }
    set_dir(w, wd, rel);
    if ((d = opendir(abs)) == NULL)
        return wd;
    while ((de = readdir(d)) != NULL) {
        char child[PATH_MAX];
        int is_dir;
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 || skipped_name(de->d_name))
            continue;
        snprintf(child, sizeof child, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        is_dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            char path[PATH_MAX * 2];
            snprintf(path, sizeof path, "%s/%s", w->env->workspace, child);
            is_dir = lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
        }
        if (report)
            note(w, child, EXEC_FILE_CREATED);
        if (is_dir)
            (void)add_tree(w, child, report);
    }
    closedir(d);
    return wd;
}

/* One event of the shared instance, for the watcher that owns its descriptor. */
static void handle_event(struct watch_inotify *in, const struct inotify_event *ev)
{
    struct exec__watch *w;
    const char *dir;
    char path[PATH_MAX];

    if (ev->mask & IN_Q_OVERFLOW) { /* events were lost, any watcher's (note() merges repeats) */
        for (size_t i = 0; i < in->nslots; i++)
            if (in->slots[i].w != NULL)
                note(in->slots[i].w, "", EXEC_FILE_OVERFLOW);
        return;
    }
    if (ev->wd < 0 || (size_t)ev->wd >= in->nslots || (w = in->slots[ev->wd].w) == NULL)
        return; /* a watcher that stopped: its descriptors are being removed */
    dir = in->slots[ev->wd].rel;
    if (ev->mask & IN_IGNORED) { /* the directory is gone (or unwatched) */
        free(in->slots[ev->wd].rel);
        in->slots[ev->wd] = (struct watch_slot){NULL, NULL};
        return;
    }
    if (ev->len == 0 || skipped_name(ev->name))
        return;
    snprintf(path, sizeof path, "%s%s%s", dir, dir[0] ? "/" : "", ev->name);
    if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
        note(w, path, EXEC_FILE_CREATED);
        if (ev->mask & IN_ISDIR)
            (void)add_tree(w, path, 1);
    } else if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
        note(w, path, EXEC_FILE_DELETED);
    } else if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE)) {
        note(w, path, EXEC_FILE_MODIFIED);
    }
}

static void on_inotify(uv_poll_t *h, int status, int events)
{
    struct watch_inotify *in = h->data;
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    for (;;) {
        n = read(in->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* EAGAIN: drained */
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            handle_event(in, ev);
            p += sizeof *ev + ev->len;
        }
    }
}

/* ---- the shared instance ------------------------------------------------------------------- */

/* The loop's instance, made on first use; one more user. NULL with *err when inotify refuses. */
static struct watch_inotify *inotify_ref(uv_loop_t *loop, int *err)
{
    struct watch_inotify *in;
    int fd;

    for (in = instances; in != NULL; in = in->next)
        if (in->loop == loop) {
            in->users++;
            return in;
        }
    if ((fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
        *err = -errno;
        return NULL;
    }
    in = xcalloc(1, sizeof *in);
    in->loop = loop;
    in->fd = fd;
    in->users = 1;
    if (uv_poll_init(loop, &in->poll, fd) != 0 || uv_poll_start(&in->poll, UV_READABLE, on_inotify) != 0)
        abort(); /* only on invalid arguments */
    in->poll.data = in;
    in->next = instances;
    instances = in;
    return in;
}

static void on_inotify_closed(uv_handle_t *h)
{
    struct watch_inotify *in = h->data;

    close(in->fd);
    for (size_t i = 0; i < in->nslots; i++)
        free(in->slots[i].rel);
    free(in->slots);
    free(in);
}

/* w stops using its instance: its watches are removed (their IN_IGNORED events find no owner;
 * the kernel hands out descriptors cyclically, so a new watch does not take over a removed one's
 * before that event is read), and the last user closes the instance. */
static void inotify_unref(struct exec__watch *w)
{
    struct watch_inotify *in = w->in;

    for (size_t i = 0; i < in->nslots; i++) {
        if (in->slots[i].w == w) {
            (void)inotify_rm_watch(in->fd, (int)i);
            free(in->slots[i].rel);
            in->slots[i] = (struct watch_slot){NULL, NULL};
        }
    }
    w->in = NULL;
    if (--in->users > 0)
        return;
    /* Not findable any more (a new watcher on this loop makes a new instance); freed once closed. */
    uv_close((uv_handle_t *)&in->poll, on_inotify_closed);
    for (struct watch_inotify **pp = &instances; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == in) {
            *pp = in->next;
            in->next = NULL;
            break;
        }
    }
}

/* ---- starting and stopping ---------------------------------------------------------------- */

int exec_watch_start(struct exec_env *env, uint64_t rate_ms, exec_watch_cb cb, void *arg)
{
    struct exec__watch *w;
    int rc = 0;

    if (env->watch != NULL || env->closing)
        return -EALREADY;
    w = xcalloc(1, sizeof *w);
    if ((w->in = inotify_ref(env->loop, &rc)) == NULL) {
        free(w);
        return rc;
    }
    w->env = env;
    w->rate_ms = rate_ms;
    w->cb = cb;
    w->arg = arg;
    if (uv_timer_init(env->loop, &w->timer) != 0)
        abort(); /* only on invalid arguments */
    w->timer.data = w;
    env->watch = w;
    if ((rc = add_tree(w, "", 0)) < 0) { /* the workspace itself cannot be watched */
        exec__watch_close(env);
        return rc;
    }
    return 0;
}

static void on_watch_closed(uv_handle_t *h)
{
    struct exec__watch *w = h->data;
    struct exec_env *env = w->env;

    for (size_t i = 0; i < w->npend; i++)
        free(w->pend[i].path);
    free(w->pend);
    map_clear(&w->index);
    free(w);
    env->watch = NULL;
    exec__env_maybe_free(env);
}

void exec__watch_close(struct exec_env *env)
{
    struct exec__watch *w = env->watch;

    if (w == NULL || w->closing)
        return;
    w->closing = 1;
    inotify_unref(w);
    uv_close((uv_handle_t *)&w->timer, on_watch_closed);
}

void exec_watch_flush(struct exec_env *env)
{
    struct exec__watch *w = env->watch;

    if (w == NULL || w->closing)
        return;
    /* inotify queues an event in the writer's system call: what was written before now is in the
     * instance's queue, maybe not read yet (the loop had other events first). Reading dispatches
     * every watcher's events, as the poll callback would. */
    on_inotify(&w->in->poll, 0, UV_READABLE);
    if (w->npend == 0)
        return;
    uv_timer_stop(&w->timer);
    on_batch_timer(&w->timer);
}

void exec_watch_stop(struct exec_env *env) { exec__watch_close(env); }
