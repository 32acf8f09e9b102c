/* env — an execution environment's life-cycle: options, status, cgroups, closing.
 *
 * Starting checks the workspace, creates the cgroup directories (one per controller, under
 * agentd's own cgroup so the environment stays inside whatever limits agentd itself has), and,
 * with bubblewrap, spawns /bin/true in the sandbox once: bwrap fails for reasons only running it
 * reveals (no user namespaces, a missing mount point), and that must surface as the
 * environment's `error`, not as the agent's spawn failure. Without a sandbox, `ready` is
 * reported from a zero timer so that no callback runs inside exec_env_start's caller twice.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/exec_int.h"

static const char *const cg_controller[EXEC__CG_N] = {"pids", "memory"};

const char *exec_status_name(enum exec_status status)
{
    switch (status) {
    case EXEC_STATUS_INACTIVE: return "inactive";
    case EXEC_STATUS_STARTING: return "starting";
    case EXEC_STATUS_READY: return "ready";
    case EXEC_STATUS_ERROR: return "error";
    case EXEC_STATUS_TERMINATED: return "terminated";
    }
    return "unknown";
}

/* ---- events ------------------------------------------------------------------------------ */

static void env_emit(struct exec_env *env, const struct exec_event *ev)
{
    if (env->on_event != NULL)
        env->on_event(env->arg, env, ev);
}

/* Ends every exec_env_wait with `status`; each wait is off the list before its callback runs. */
static void env_wake(struct exec_env *env, enum exec_status status)
{
    struct exec_env_wait *w;

    while ((w = env->waits) != NULL) {
        env->waits = w->next;
        w->next = NULL;
        w->cb(w->arg, env, status);
    }
}

static void env_set_status(struct exec_env *env, enum exec_status status, const char *message)
{
    struct exec_event ev = {.type = EXEC_EVENT_STATUS, .status = status, .message = message};

    env->status = status;
    if (status == EXEC_STATUS_READY || status == EXEC_STATUS_ERROR)
        ev.elapsed_us = clock_mono_us() - env->start_us;
    if (status == EXEC_STATUS_ERROR && env->error == NULL)
        env->error = xstrdup(message != NULL ? message : "the environment could not start");
    log_debug("exec %s: %s%s%s", env->name, exec_status_name(status), message ? ": " : "",
              message ? message : "");
    env_emit(env, &ev);
    if (status == EXEC_STATUS_READY || status == EXEC_STATUS_ERROR)
        env_wake(env, status);
}

void exec_env_wait(struct exec_env *env, struct exec_env_wait *w, exec_wait_cb cb, void *arg)
{
    assert(env->status == EXEC_STATUS_INACTIVE || env->status == EXEC_STATUS_STARTING);
    assert(!env->closing);
    w->cb = cb;
    w->arg = arg;
    w->next = env->waits;
    env->waits = w;
}

void exec_env_wait_cancel(struct exec_env *env, struct exec_env_wait *w)
{
    for (struct exec_env_wait **pp = &env->waits; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            w->next = NULL;
            return;
        }
    }
}

void exec__log(struct exec_env *env, const char *level, const char *fmt, ...)
{
    struct exec_event ev = {.type = EXEC_EVENT_LOG, .status = env->status, .level = level};
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ev.message = msg;
    log_at(strcmp(level, "error") == 0  ? LOG_ERROR
           : strcmp(level, "warn") == 0 ? LOG_WARN
                                        : LOG_INFO,
           "exec %s: %s", env->name, msg);
    env_emit(env, &ev);
}

/* ---- cgroups ----------------------------------------------------------------------------- */

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;
    int err;

    if (fd < 0)
        return -errno;
    n = write(fd, text, strlen(text));
    err = n < 0 ? -errno : 0;
    close(fd);
    return err;
}

/* Whether `controller` is one of the comma-separated names in `list`. */
static int in_list(const char *list, size_t len, const char *controller)
{
    size_t clen = strlen(controller);
    const char *p = list, *end = list + len;

    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);
        if (n == clen && memcmp(p, controller, n) == 0)
            return 1;
        p += n + 1;
    }
    return 0;
}

/* Finds agentd's own cgroup directory for a v1 controller: the mount point of the hierarchy
 * (from /proc/self/mountinfo) joined with our path in it (from /proc/self/cgroup), minus the
 * mount's root when only a subtree is mounted (containers). 0 or -ENOENT. */
static int cg_own_dir(const char *controller, char *out, size_t cap)
{
    char line[4096], mnt_root[PATH_MAX] = "", mnt_point[PATH_MAX] = "", own[PATH_MAX] = "";
    FILE *f;

    if ((f = fopen("/proc/self/mountinfo", "re")) == NULL)
        return -ENOENT;
    while (fgets(line, sizeof line, f) != NULL) {
        char root[PATH_MAX], point[PATH_MAX];
        const char *dash = strstr(line, " - cgroup ");
        const char *super;

        if (dash == NULL || sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2)
            continue;
        super = strrchr(dash, ' ');
        if (super != NULL && in_list(super + 1, strcspn(super + 1, "\n"), controller)) {
            snprintf(mnt_root, sizeof mnt_root, "%s", root);
            snprintf(mnt_point, sizeof mnt_point, "%s", point);
            break;
        }
    }
    fclose(f);
    if (mnt_point[0] == '\0' || (f = fopen("/proc/self/cgroup", "re")) == NULL)
        return -ENOENT;
    while (fgets(line, sizeof line, f) != NULL) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 != NULL && in_list(c1 + 1, (size_t)(c2 - c1 - 1), controller)) {
            snprintf(own, sizeof own, "%.*s", (int)strcspn(c2 + 1, "\n"), c2 + 1);
            break;
        }
    }
    fclose(f);
    if (own[0] == '\0')
        return -ENOENT;
    size_t rlen = strlen(mnt_root);
    const char *rel = own;
    if (strcmp(mnt_root, "/") != 0 && strncmp(own, mnt_root, rlen) == 0)
        rel = own + rlen;
    if ((size_t)snprintf(out, cap, "%s%s", mnt_point, strcmp(rel, "/") == 0 ? "" : rel) >= cap)
        return -ENAMETOOLONG;
    return 0;
}

/* Removes the empty cgroups that an agentd killed with -9 left in base (named agentd-<pid>-...,
 * <pid> no longer alive; the guard killed their processes). A busy or foreign one stays. */
static void cg_sweep_stale(const char *base)
{
    DIR *d = opendir(base);
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        int pid = 0;
        char path[PATH_MAX];
        if (sscanf(de->d_name, "agentd-%d-", &pid) != 1 || pid <= 0 || pid == (int)getpid() ||
            kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", base, de->d_name) < sizeof path)
            (void)rmdir(path);
    }
    closedir(d);
}

/* Creates the environment's directory in one controller and writes its limit. On failure the
 * controller is skipped with a log event: limits are best effort where the host allows them. */
static void cg_setup_one(struct exec_env *env, int c, uint64_t limit, const char *limit_file)
{
    static unsigned seq;
    char base[PATH_MAX], dir[PATH_MAX], file[PATH_MAX + 32], value[32];
    int rc;

    if ((rc = cg_own_dir(cg_controller[c], base, sizeof base)) < 0)
        goto fail;
    cg_sweep_stale(base);
    rc = snprintf(dir, sizeof dir, "%s/agentd-%d-%u-%.64s", base, (int)getpid(), ++seq, env->name);
    if (rc < 0 || (size_t)rc >= sizeof dir) {
        rc = -ENAMETOOLONG;
        goto fail;
    }
    if (mkdir(dir, 0755) < 0) {
        rc = -errno;
        goto fail;
    }
    if (limit > 0) {
        snprintf(file, sizeof file, "%s/%s", dir, limit_file);
        snprintf(value, sizeof value, "%llu", (unsigned long long)limit);
        if ((rc = write_file(file, value)) < 0) {
            (void)rmdir(dir);
            goto fail;
        }
    }
    env->cg_dir[c] = xstrdup(dir);
    return;

fail:
    exec__log(env, "warn", "cgroup %s not available (%s): %s skipped", cg_controller[c], strerror(-rc),
              limit > 0 ? "limit" : "tracking");
}

/* Removes the environment's cgroups. Programs that joined them without being the env's procs
 * (a session's runtimes) may still be inside when the env closes: the env's processes all end
 * with it, so they are SIGKILLed and the rmdir retried while they leave (within ~200 ms). */
static void cg_remove(struct exec_env *env)
{
    for (int c = 0; c < EXEC__CG_N; c++) {
        if (env->cg_dir[c] == NULL)
            continue;
        int rc = rmdir(env->cg_dir[c]);
        for (int tries = 0; rc < 0 && errno == EBUSY && tries < 200; tries++) {
            exec__cgroup_signal(env->cg_dir[c], SIGKILL);
            usleep(1000);
            rc = rmdir(env->cg_dir[c]);
        }
        if (rc < 0)
            exec__log(env, "warn", "cgroup %s: rmdir: %s", env->cg_dir[c], strerror(errno));
        free(env->cg_dir[c]);
        env->cg_dir[c] = NULL;
    }
}

/* ---- creating and starting --------------------------------------------------------------- */

/* Cgroup directory names carry the env's name: keep it to characters safe in a path. */
static char *sanitized_name(const char *name)
{
    char *s = xstrdup(name != NULL && name[0] != '\0' ? name : "env");

    for (char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            *p = '_';
    return s;
}

int exec_env_new(uv_loop_t *loop, const struct exec_env_opts *opts, struct exec_env **out)
{
    struct exec_env *env;
    char abs[PATH_MAX];
    size_t n = 0;

    assert(loop != NULL && opts != NULL);
    if (opts->workspace == NULL || opts->workspace[0] == '\0')
        return -EINVAL;
    env = xcalloc(1, sizeof *env);
    env->loop = loop;
    /* A missing workspace is reported by exec_env_start as the environment's error. */
    env->workspace = xstrdup(realpath(opts->workspace, abs) != NULL ? abs : opts->workspace);
    while (opts->env != NULL && opts->env[n] != NULL)
        n++;
    env->envp = xcalloc(n + 1, sizeof *env->envp);
    for (size_t i = 0; i < n; i++) {
        env->envp[i] = xstrdup(opts->env[i]);
        if (strncmp(env->envp[i], "PATH=", 5) == 0)
            env->path_var = env->envp[i] + 5;
    }
    env->limits = opts->limits;
    env->want_cgroup = opts->cgroup || opts->limits.cg_memory_bytes > 0 || opts->limits.cg_pids > 0;
    env->sandbox = opts->sandbox;
    env->share_net = opts->bwrap_share_net;
    env->bwrap = xstrdup(opts->bwrap_path != NULL ? opts->bwrap_path : EXEC_BWRAP_PATH);
    env->name = sanitized_name(opts->name);
    env->on_event = opts->on_event;
    env->arg = opts->arg;
    env->status = EXEC_STATUS_INACTIVE;
    if (uv_timer_init(loop, &env->timer) != 0)
        abort(); /* only fails on invalid arguments */
    env->timer.data = env;
    *out = env;
    return 0;
}

/* Reports the outcome of a start that needs no probe; from the loop, never inside
 * exec_env_start's caller. */
static void on_start_timer(uv_timer_t *t)
{
    struct exec_env *env = t->data;

    if (env->status != EXEC_STATUS_STARTING)
        return;
    if (env->start_error != NULL)
        env_set_status(env, EXEC_STATUS_ERROR, env->start_error);
    else
        env_set_status(env, EXEC_STATUS_READY, NULL);
}

int exec_env_start(struct exec_env *env)
{
    struct stat st;
    int rc;

    if (env->status != EXEC_STATUS_INACTIVE || env->closing)
        return -EALREADY;
    env->start_us = clock_mono_us();
    env_set_status(env, EXEC_STATUS_STARTING, NULL);
    if (stat(env->workspace, &st) < 0 || !S_ISDIR(st.st_mode)) {
        env->start_error = "workspace is not a directory";
        uv_timer_start(&env->timer, on_start_timer, 0, 0);
        return 0;
    }
    if (env->want_cgroup) {
        cg_setup_one(env, EXEC__CG_PIDS, env->limits.cg_pids, "pids.max");
        cg_setup_one(env, EXEC__CG_MEMORY, env->limits.cg_memory_bytes, "memory.limit_in_bytes");
    }
    if (env->sandbox == EXEC_SANDBOX_BWRAP) {
        char *argv[] = {"/bin/true", NULL};
        rc = exec__spawn(env, argv, &(struct exec_spawn_opts){0}, 1, &env->probe);
        if (rc == 0)
            return 0;
        env->start_error = "cannot run bwrap";
    }
    uv_timer_start(&env->timer, on_start_timer, 0, 0);
    return 0;
}

void exec__env_probe_done(struct exec_env *env, const struct exec_exit *ex, const char *last_err)
{
    char msg[320];

    env->probe = NULL;
    if (env->status != EXEC_STATUS_STARTING || env->closing) /* killed by exec_env_close */
        return;
    if (ex->status == 0) {
        env_set_status(env, EXEC_STATUS_READY, NULL);
        return;
    }
    snprintf(msg, sizeof msg, "sandbox does not start: %s",
             last_err[0]  ? last_err
             : ex->signal ? "killed by a signal"
                          : "bwrap failed");
    env_set_status(env, EXEC_STATUS_ERROR, msg);
}

enum exec_status exec_env_status(const struct exec_env *env) { return env->status; }

const char *exec_env_error(const struct exec_env *env) { return env->error; }

const char *exec_env_workspace(const struct exec_env *env) { return env->workspace; }

size_t exec_env_cgroup_dirs(const struct exec_env *env, const char **dirs, size_t cap)
{
    size_t n = 0;

    for (int c = 0; c < EXEC__CG_N; c++)
        if (env->cg_dir[c] != NULL && n < cap)
            dirs[n++] = env->cg_dir[c];
    return n;
}

int exec_env_has_cgroup(const struct exec_env *env)
{
    return env->cg_dir[EXEC__CG_PIDS] != NULL || env->cg_dir[EXEC__CG_MEMORY] != NULL;
}

/* ---- closing ----------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    struct exec_env *env = h->data;

    env->timer_closed = 1;
    exec__env_maybe_free(env);
}

void exec__env_maybe_free(struct exec_env *env)
{
    if (!env->closing || !env->timer_closed || env->procs != NULL || env->watch != NULL)
        return;
    cg_remove(env);
    env_set_status(env, EXEC_STATUS_TERMINATED, NULL);
    if (env->close_cb != NULL)
        env->close_cb(env->close_arg);
    for (size_t i = 0; env->envp[i] != NULL; i++)
        free(env->envp[i]);
    free(env->envp);
    free(env->workspace);
    free(env->bwrap);
    free(env->name);
    free(env->error);
    free(env);
}

void exec_env_close(struct exec_env *env, uint64_t grace_ms, exec_close_cb cb, void *arg)
{
    if (env == NULL || env->closing)
        return;
    env->closing = 1;
    env->close_grace_ms = grace_ms;
    env->close_cb = cb;
    env->close_arg = arg;
    env_wake(env, EXEC_STATUS_TERMINATED);
    exec_watch_stop(env);
    /* Each kill ends in the proc's exit callback, which may not touch the env any more. */
    for (struct exec_proc *p = env->procs; p != NULL; p = p->next)
        if (!p->done)
            exec_proc_kill(p, grace_ms, NULL, NULL);
    uv_close((uv_handle_t *)&env->timer, on_timer_closed);
}
