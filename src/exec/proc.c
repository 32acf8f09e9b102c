/* proc — starting one program of an environment, feeding its stdin, reading its output, and
 * noticing its end.
 *
 * The program is forked straight from agentd (uv_spawn cannot set PR_SET_PDEATHSIG, rlimits or a
 * cgroup between fork and exec) and becomes the leader of a new session, so its pid is its
 * process group id. A guard, `/bin/sh` blocked reading a pipe whose only write end agentd holds,
 * SIGKILLs that group and the proc's cgroup when the pipe closes: when agentd dies, or when we
 * close it after the leader exited. The guard is in a session of its own and in no cgroup of the
 * environment, so neither a terminal signal nor the environment's own kill takes it down early.
 *
 * Order at the end, chosen so that the process group id can never name someone else's group
 * while we signal it: the leader's pidfd turns readable (it is a zombie, still pinning the group
 * id) → we SIGKILL the group and let the guard go → the guard exits → only then is the leader
 * reaped. Exits are watched with pidfds and reaped with waitpid on exact pids, so children of
 * other modules are never touched.
 *
 * The fork-and-exec half (signals, session, death signal, descriptors, cgroups, rlimits) is
 * child.c; finding the program is lookup.c. Every program agentd starts comes through here: the
 * agents of session runs and the interpreters of runtimes (which add descriptors of their own
 * and take stderr as raw bytes).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/child.h"
#include "exec/exec_int.h"

#define PROC_DRAIN_MS 200 /* after the leader died, wait this long for end of file on its pipes */

_Static_assert(3 + EXEC_SPAWN_FDS_MAX <= EXEC_CHILD_MAP_MAX,
               "stdin, stdout, stderr and the extra descriptors");
#define PROC_GUARD_SCRIPT \
    "read x; kill -KILL \"$1\" 2>/dev/null; [ -z \"$2\" ] || kill -KILL $(cat \"$2\") 2>/dev/null; exit 0"

/* ---- the parent's preparations ------------------------------------------------------------- */

char **exec__bwrap_argv(const char *bwrap, const char *workspace, int share_net, const char *program,
                        char *const *argv)
{
    const char *head[] = {bwrap,
                          "--die-with-parent",
                          "--unshare-pid",
                          "--unshare-ipc",
                          "--ro-bind",
                          "/",
                          "/",
                          "--dev",
                          "/dev",
                          "--proc",
                          "/proc",
                          "--tmpfs",
                          "/tmp",
                          "--bind",
                          workspace,
                          workspace,
                          "--chdir",
                          workspace};
    size_t nhead = sizeof head / sizeof head[0], nargs = 0, i = 0;
    char **out;

    while (argv[nargs] != NULL)
        nargs++;
    out = xcalloc(nhead + nargs + 4, sizeof *out);
    for (size_t k = 0; k < nhead; k++)
        out[i++] = (char *)head[k];
    if (!share_net)
        out[i++] = "--unshare-net";
    out[i++] = "--";
    out[i++] = (char *)program;
    for (size_t k = 1; k < nargs; k++)
        out[i++] = argv[k];
    out[i] = NULL;
    return out;
}

void exec__limits_rlimits(const struct exec_limits *l, struct exec_child *c)
{
    const struct {
        int resource;
        uint64_t value;
    } want[] = {
        {RLIMIT_AS, l->as_bytes},       {RLIMIT_NPROC, l->nproc},   {RLIMIT_CPU, l->cpu_seconds},
        {RLIMIT_FSIZE, l->fsize_bytes}, {RLIMIT_NOFILE, l->nofile},
    };

    c->nrlimit = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct rlimit cur, v;
        if (want[i].value == 0 || getrlimit(want[i].resource, &cur) < 0)
            continue;
        v.rlim_cur = v.rlim_max = (rlim_t)want[i].value;
        /* CPU: SIGXCPU at the limit, a last SIGKILL one second later if it is caught. */
        if (want[i].resource == RLIMIT_CPU)
            v.rlim_max = v.rlim_cur + 1;
        if (cur.rlim_max != RLIM_INFINITY && v.rlim_max > cur.rlim_max)
            v.rlim_max = cur.rlim_max;
        if (v.rlim_cur > v.rlim_max)
            v.rlim_cur = v.rlim_max;
        c->rlimit[c->nrlimit].resource = want[i].resource;
        c->rlimit[c->nrlimit].value = v;
        c->nrlimit++;
    }
}

/* ---- watching -------------------------------------------------------------------------- */

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void proc_release(struct exec_proc *p);

static void stderr_flush(struct exec_proc *p, int eol)
{
    size_t n = p->line_len < sizeof p->last_err - 1 ? p->line_len : sizeof p->last_err - 1;

    if (n > 0) {
        memcpy(p->last_err, p->line, n);
        p->last_err[n] = '\0';
    }
    if (p->on_stderr != NULL)
        p->on_stderr(p->arg, p, p->line, p->line_len, eol);
    p->line_len = 0;
}

static void stderr_feed(struct exec_proc *p, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        size_t room = p->line_max - p->line_len;

        assert(p->line_len <= p->line_max);
        if (take > room) {
            /* Too long: deliver what fits as a cut line; the rest continues as the next one. */
            memcpy(p->line + p->line_len, data, room);
            p->line_len += room;
            stderr_flush(p, 0);
            data += room;
            len -= room;
            continue;
        }
        memcpy(p->line + p->line_len, data, take);
        p->line_len += take;
        if (nl == NULL)
            return;
        stderr_flush(p, 1);
        data += take + 1;
        len -= take + 1;
    }
}

void exec__proc_check_done(struct exec_proc *p)
{
    struct exec_exit ex = {0};
    int ws = p->wstatus;

    if (p->done || !p->exited || !p->guard_exited || exec__kill_busy(p))
        return;
    if (!(p->out_eof && p->err_eof) && !p->drained)
        return;
    p->done = 1;
    uv_timer_stop(&p->drain_timer);
    if (p->line_len > 0)
        stderr_flush(p, 0);
    if (WIFEXITED(ws)) {
        ex.status = WEXITSTATUS(ws);
    } else {
        ex.status = -1;
        ex.signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
        ex.core_dumped = WIFSIGNALED(ws) && WCOREDUMP(ws);
    }
    ex.duration_us = clock_mono_us() - p->start_us;
    exec__kill_finish(p);
    if (p->probe)
        exec__env_probe_done(p->env, &ex, p->last_err);
    else if (p->on_exit != NULL)
        p->on_exit(p->arg, p, &ex);
    proc_release(p);
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct exec_proc *p = t->data;

    p->drained = 1;
    exec__proc_check_done(p);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct exec_proc *p = h->data;

    /* One buffer serves both pipes: each read is delivered before the next alloc. */
    buf->base = p->rbuf;
    buf->len = sizeof p->rbuf;
}

/* Bytes from stderr: to the raw callback, or split into lines. */
static void stderr_deliver(struct exec_proc *p, const char *data, size_t len)
{
    if (p->on_stderr_data != NULL)
        p->on_stderr_data(p->arg, p, data, len);
    else
        stderr_feed(p, data, len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct exec_proc *p = s->data;
    int is_out = s == (uv_stream_t *)&p->out;

    if (nread > 0) {
        if (!is_out)
            stderr_deliver(p, buf->base, (size_t)nread);
        else if (p->on_stdout != NULL)
            p->on_stdout(p->arg, p, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0) /* EAGAIN */
        return;
    uv_read_stop(s);
    if (is_out)
        p->out_eof = 1;
    else
        p->err_eof = 1;
    exec__proc_check_done(p);
}

static void on_leader_dead(uv_poll_t *h, int status, int events)
{
    struct exec_proc *p = h->data;

    /* A zombie now, not reaped: it still pins the group id, so this kill reaches only what is
     * left of this program's group. The guard then kills it again plus the cgroup's members,
     * and the leader is reaped when the guard is done. */
    uv_poll_stop(h);
    kill(-p->pid, SIGKILL);
    if (exec__proc_cgroup(p) != NULL)
        (void)exec__cgroup_signal(exec__proc_cgroup(p), SIGKILL);
    close_fd(&p->life_fd);
    uv_timer_start(&p->drain_timer, on_drain_timeout, PROC_DRAIN_MS, 0);
}

static void on_guard_exit(uv_poll_t *h, int status, int events)
{
    struct exec_proc *p = h->data;
    int ws;

    if (waitpid(p->guard_pid, &ws, WNOHANG) != p->guard_pid)
        return;
    uv_poll_stop(h);
    p->guard_exited = 1;
    /* The guard only ends once life_fd is closed, which happens when the leader died (or while
     * failing to start), so this does not block. */
    if (!p->exited) {
        kill(-p->pid, SIGKILL);
        if (waitpid(p->pid, &p->wstatus, 0) == p->pid)
            p->exited = 1;
        uv_poll_stop(&p->pid_poll);
    }
    exec__proc_check_done(p);
}

/* ---- stdin -------------------------------------------------------------------------------- */

struct write_req {
    uv_write_t req;
    struct exec_proc *proc;
    char data[];
};

static void on_in_closed(uv_handle_t *h);

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct exec_proc *p = w->proc;

    free(w);
    p->writes_pending--;
    /* EPIPE and ECANCELED are normal when the program stops reading or ends. */
    if (p->in_closing && p->writes_pending == 0 && p->in_open) {
        p->in_open = 0;
        uv_close((uv_handle_t *)&p->in, on_in_closed);
    }
}

int exec_proc_write(struct exec_proc *p, const void *data, size_t len)
{
    struct write_req *w;
    uv_buf_t b;
    int rc;

    if (!p->in_open || p->in_closing || p->done)
        return -EPIPE;
    if (len == 0)
        return 0;
    w = xmalloc(sizeof *w + len);
    w->proc = p;
    memcpy(w->data, data, len);
    b = uv_buf_init(w->data, (unsigned)len);
    rc = uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, on_written);
    if (rc < 0) {
        free(w);
        return rc;
    }
    p->writes_pending++;
    return 0;
}

void exec_proc_close_stdin(struct exec_proc *p)
{
    if (!p->in_open || p->in_closing)
        return;
    p->in_closing = 1;
    if (p->writes_pending == 0) {
        p->in_open = 0;
        uv_close((uv_handle_t *)&p->in, on_in_closed);
    }
}

pid_t exec_proc_pid(const struct exec_proc *p) { return p->pid; }

int exec_proc_signal(struct exec_proc *p, int sig)
{
    if (p->exited)
        return -ESRCH;
    if (p->env->sandbox == EXEC_SANDBOX_BWRAP)
        (void)exec__session_signal_except(p->pid, p->pid, sig);
    else
        kill(-p->pid, sig);
    return 0;
}

void exec_proc_read_stderr(struct exec_proc *p)
{
    char buf[16 * 1024]; /* not rbuf: this runs inside a read callback that may still use it */
    uv_os_fd_t fd;
    ssize_t n;

    if (p->err_eof || p->done || uv_fileno((uv_handle_t *)&p->err, &fd) != 0)
        return;
    for (;;) {
        n = read(fd, buf, sizeof buf);
        if (n > 0)
            stderr_deliver(p, buf, (size_t)n);
        else if (!(n < 0 && errno == EINTR))
            break; /* EAGAIN: empty; 0: end of file, which the loop reports */
    }
}

/* ---- freeing ------------------------------------------------------------------------------- */

static void proc_free(struct exec_proc *p)
{
    struct exec_env *env = p->env;

    assert(p->done); /* freed right after its one exit callback */
    close_fd(&p->pidfd);
    close_fd(&p->guard_pidfd);
    close_fd(&p->life_fd);
    for (int c = 0; c < EXEC__CG_N; c++) {
        /* Empty by now unless something survived every kill; then the env is told. */
        if (p->cg_dir[c] != NULL && rmdir(p->cg_dir[c]) < 0)
            exec__log(env, "warn", "cgroup %s: rmdir: %s", p->cg_dir[c], strerror(errno));
        free(p->cg_dir[c]);
    }
    for (struct exec_proc **pp = &env->procs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    free(p->line);
    free(p);
    exec__env_maybe_free(env);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct exec_proc *p = h->data;

    assert(p->open_handles > 0);
    if (--p->open_handles == 0)
        proc_free(p);
}

static void on_in_closed(uv_handle_t *h) { on_handle_closed(h); }

static void proc_release(struct exec_proc *p)
{
    if (p->in_open) {
        p->in_open = 0;
        uv_close((uv_handle_t *)&p->in, on_in_closed);
    }
    uv_close((uv_handle_t *)&p->out, on_handle_closed);
    uv_close((uv_handle_t *)&p->err, on_handle_closed);
    uv_close((uv_handle_t *)&p->pid_poll, on_handle_closed);
    uv_close((uv_handle_t *)&p->guard_poll, on_handle_closed);
    uv_close((uv_handle_t *)&p->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->kill_timer, on_handle_closed);
}

/* ---- starting ------------------------------------------------------------------------------ */

static void must(int rc, const char *what)
{
    /* libuv fails these only on invalid arguments. */
    if (rc != 0) {
        fprintf(stderr, "exec: %s: %s\n", what, uv_strerror(rc));
        abort();
    }
}

/* Creates the proc's own cgroup inside each of the env's, so a kill can list exactly this
 * program's processes; the env's directory holds the limits for all of them. */
static void cg_proc_dirs(struct exec_env *env, struct exec_proc *p, int cg_fd[EXEC__CG_N])
{
    unsigned seq = ++env->proc_seq;

    for (int c = 0; c < EXEC__CG_N; c++) {
        char file[PATH_MAX + 32];
        cg_fd[c] = -1;
        if (env->cg_dir[c] == NULL)
            continue;
        p->cg_dir[c] = xasprintf("%s/p%u", env->cg_dir[c], seq);
        if (mkdir(p->cg_dir[c], 0755) < 0) {
            /* Fall back to the env's directory: limits still apply, attribution is lost. */
            free(p->cg_dir[c]);
            p->cg_dir[c] = NULL;
            snprintf(file, sizeof file, "%s/cgroup.procs", env->cg_dir[c]);
        } else {
            snprintf(file, sizeof file, "%s/cgroup.procs", p->cg_dir[c]);
        }
        cg_fd[c] = open(file, O_WRONLY | O_CLOEXEC);
    }
}

int exec_spawn(struct exec_env *env, char *const *argv, const struct exec_spawn_opts *opts,
               struct exec_proc **out)
{
    assert(opts != NULL && out != NULL);
    if (env->status != EXEC_STATUS_READY || env->closing)
        return -EAGAIN;
    return exec__spawn(env, argv, opts, 0, out);
}

/* base with extra laid over it: an extra "K=V" replaces base's K. The array is allocated (free
 * it), its strings borrowed. */
static char **merge_env(char *const *base, char *const *extra)
{
    size_t nb = 0, ne = 0, n = 0;
    while (base && base[nb])
        nb++;
    while (extra[ne])
        ne++;
    char **out = xcalloc(nb + ne + 1, sizeof *out);
    for (size_t i = 0; i < nb; i++) {
        size_t klen = strcspn(base[i], "=");
        int replaced = 0;
        for (size_t j = 0; j < ne && !replaced; j++)
            replaced = strncmp(extra[j], base[i], klen) == 0 && extra[j][klen] == '=';
        if (!replaced)
            out[n++] = base[i];
    }
    for (size_t j = 0; j < ne; j++)
        out[n++] = extra[j];
    return out;
}

/* The PATH a program of env runs with before the lookup's additions: env_extra's, else the
 * environment's (NULL: none declared). */
static const char *session_path(const struct exec_env *env, const struct exec_spawn_opts *opts)
{
    for (char *const *e = opts->env_extra; e != NULL && *e != NULL; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            return *e + 5;
    return env->path_var;
}

/* The variables the program gets: the environment's, opts->env_extra laid over them, and PATH
 * extended by the directories the lookup added. NULL when that is just env->envp; else an
 * allocated array (free it) of borrowed strings, but for *path_entry (free it too). */
static char **spawn_envp(const struct exec_env *env, const struct exec_spawn_opts *opts,
                         const struct exec__program *prog, char **path_entry)
{
    const char *path = session_path(env, opts);
    char *const *extra = opts->env_extra;
    size_t ne = 0, n = 0;
    char **list, **out;

    *path_entry = NULL;
    if (prog->ndirs == 0)
        return extra != NULL ? merge_env(env->envp, extra) : NULL;
    *path_entry = xasprintf("PATH=%s:%s%s%s", path != NULL ? path : EXEC__DEFAULT_PATH, prog->dirs[0],
                            prog->ndirs > 1 ? ":" : "", prog->ndirs > 1 ? prog->dirs[1] : "");
    while (extra != NULL && extra[ne] != NULL)
        ne++;
    list = xcalloc(ne + 2, sizeof *list);
    for (size_t i = 0; i < ne; i++)
        if (strncmp(extra[i], "PATH=", 5) != 0)
            list[n++] = extra[i];
    list[n] = *path_entry;
    out = merge_env(env->envp, list);
    free(list);
    return out;
}

int exec__spawn(struct exec_env *env, char *const *argv, const struct exec_spawn_opts *opts, int probe,
                struct exec_proc **out)
{
    int inp[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1}, life[2] = {-1, -1};
    int devnull = -1, cg_fd[EXEC__CG_N] = {-1, -1}, rc;
    char pgid_arg[24];
    struct exec__program prog;
    char *path_entry = NULL;
    char **bw = NULL;
    char *guard_argv[] = {"/bin/sh", "-c", PROC_GUARD_SCRIPT, "agentd-exec-guard", pgid_arg, NULL, NULL};
    char *guard_env[] = {"PATH=/usr/bin:/bin", NULL};
    char *cg_procs = NULL;
    char **merged = NULL; /* the entries are borrowed from the two lists */
    int has_in = 1;
    struct exec_child sp = {0}, gsp = {0};
    struct exec_proc *p;

    if (opts->why != NULL && opts->why_cap > 0)
        opts->why[0] = '\0';
    if (argv == NULL || argv[0] == NULL || opts->nfds > EXEC_SPAWN_FDS_MAX ||
        (opts->on_stderr != NULL && opts->on_stderr_data != NULL))
        return -EINVAL;
    for (size_t i = 0; i < opts->nfds; i++) {
        if (opts->fds[i].child != 0 && opts->fds[i].child <= 2)
            return -EINVAL;
        has_in = has_in && opts->fds[i].child != 0;
    }
    if ((rc = exec__lookup(env, session_path(env, opts), argv[0], &prog, opts->why, opts->why_cap)) < 0)
        return rc;
    p = xcalloc(1, sizeof *p);
    p->env = env;
    p->pidfd = p->guard_pidfd = p->life_fd = -1;
    p->probe = probe;
    p->has_in = has_in;
    p->on_stdout = opts->on_stdout;
    p->on_stderr = opts->on_stderr;
    p->on_stderr_data = opts->on_stderr_data;
    p->on_exit = opts->on_exit;
    p->arg = opts->arg;
    p->line_max = opts->line_max > 0 ? opts->line_max : EXEC_DEFAULT_LINE_MAX;
    p->line = xmalloc(p->line_max);

    if ((has_in && pipe2(inp, O_CLOEXEC) < 0) || pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        pipe2(life, O_CLOEXEC) < 0 || (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        rc = -errno;
        goto fail;
    }
    cg_proc_dirs(env, p, cg_fd);

    merged = spawn_envp(env, opts, &prog, &path_entry);
    sp.envp = merged != NULL ? merged : env->envp;
    if (env->sandbox == EXEC_SANDBOX_BWRAP) {
        bw = exec__bwrap_argv(env->bwrap, env->workspace, env->share_net, prog.path, argv);
        sp.path = env->bwrap;
        sp.argv = bw;
    } else {
        sp.path = prog.path;
        sp.argv = argv;
        sp.cwd = env->workspace;
    }
    if (has_in)
        sp.map[sp.nmap++] = (struct exec_child_fd){0, inp[0]};
    sp.map[sp.nmap++] = (struct exec_child_fd){1, outp[1]};
    sp.map[sp.nmap++] = (struct exec_child_fd){2, errp[1]};
    for (size_t i = 0; i < opts->nfds; i++)
        sp.map[sp.nmap++] = (struct exec_child_fd){
            opts->fds[i].child, opts->fds[i].parent == EXEC_FD_STDOUT ? outp[1] : opts->fds[i].parent};
    for (int c = 0; c < EXEC__CG_N; c++)
        if (cg_fd[c] >= 0)
            sp.join[sp.njoin++] = cg_fd[c];
    exec__limits_rlimits(&env->limits, &sp);
    sp.pdeathsig = 1;
    p->start_us = clock_mono_us();
    rc = exec_child_spawn(&sp, &p->pid);
    free(bw);
    free(merged);
    free(path_entry);
    if (rc < 0)
        goto fail;

    snprintf(pgid_arg, sizeof pgid_arg, "-%d", (int)p->pid);
    if (exec__proc_cgroup(p) != NULL) {
        cg_procs = xasprintf("%s/cgroup.procs", exec__proc_cgroup(p));
        guard_argv[5] = cg_procs;
    }
    gsp = (struct exec_child){.path = "/bin/sh",
                              .argv = guard_argv,
                              .envp = guard_env,
                              .cwd = "/",
                              .map = {{0, life[0]}, {1, devnull}, {2, devnull}},
                              .nmap = 3};
    rc = exec_child_spawn(&gsp, &p->guard_pid);
    free(cg_procs);
    if (rc < 0)
        goto fail;
    if ((p->pidfd = exec_child_pidfd(p->pid)) < 0 || (p->guard_pidfd = exec_child_pidfd(p->guard_pid)) < 0) {
        rc = p->pidfd < 0 ? p->pidfd : p->guard_pidfd;
        goto fail;
    }
    close_fd(&inp[0]);
    close(outp[1]);
    close(errp[1]);
    close(life[0]);
    close(devnull);
    for (int c = 0; c < EXEC__CG_N; c++)
        close_fd(&cg_fd[c]);
    p->life_fd = life[1];

    if (has_in)
        must(uv_pipe_init(env->loop, &p->in, 0), "uv_pipe_init");
    must(uv_pipe_init(env->loop, &p->out, 0), "uv_pipe_init");
    must(uv_pipe_init(env->loop, &p->err, 0), "uv_pipe_init");
    must(uv_poll_init(env->loop, &p->pid_poll, p->pidfd), "uv_poll_init");
    must(uv_poll_init(env->loop, &p->guard_poll, p->guard_pidfd), "uv_poll_init");
    must(uv_timer_init(env->loop, &p->drain_timer), "uv_timer_init");
    must(uv_timer_init(env->loop, &p->kill_timer), "uv_timer_init");
    p->open_handles = has_in ? 7 : 6;
    p->in.data = p->out.data = p->err.data = p->pid_poll.data = p->guard_poll.data = p;
    p->drain_timer.data = p->kill_timer.data = p;
    if (has_in) {
        must(uv_pipe_open(&p->in, inp[1]), "uv_pipe_open");
        p->in_open = 1;
    }
    must(uv_pipe_open(&p->out, outp[0]), "uv_pipe_open");
    must(uv_pipe_open(&p->err, errp[0]), "uv_pipe_open");
    must(uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read), "uv_read_start");
    must(uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read), "uv_read_start");
    must(uv_poll_start(&p->pid_poll, UV_READABLE, on_leader_dead), "uv_poll_start");
    must(uv_poll_start(&p->guard_poll, UV_READABLE, on_guard_exit), "uv_poll_start");
    p->next = env->procs;
    env->procs = p;
    *out = p;
    return 0;

fail:
    /* Nothing handed out yet: kill and reap what was started. */
    if (p->pid > 0) {
        kill(-p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    if (p->guard_pid > 0) {
        kill(p->guard_pid, SIGKILL);
        waitpid(p->guard_pid, NULL, 0);
    }
    close_fd(&p->pidfd);
    close_fd(&p->guard_pidfd);
    for (int i = 0; i < 2; i++) {
        close_fd(&inp[i]);
        close_fd(&outp[i]);
        close_fd(&errp[i]);
        close_fd(&life[i]);
    }
    close_fd(&devnull);
    for (int c = 0; c < EXEC__CG_N; c++) {
        close_fd(&cg_fd[c]);
        if (p->cg_dir[c] != NULL)
            (void)rmdir(p->cg_dir[c]);
        free(p->cg_dir[c]);
    }
    free(p->line);
    free(p);
    return rc;
}
