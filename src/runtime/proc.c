/* proc — starting, watching, stopping and reaping one runtime interpreter.
 *
 * Each interpreter is forked straight from agentd through exec/child (no libuv uv_spawn: it
 * cannot set PR_SET_PDEATHSIG) as the leader of a new session, so its pid is its process group id and
 * signals reach everything it started. A second child, the guard, is `/bin/sh` blocked reading a
 * pipe whose only write end agentd holds: when agentd dies, or when we close that end, the
 * guard SIGKILLs the interpreter's group, so grandchildren cannot outlive agentd either. The
 * guard lives in a session of its own so terminal signals aimed at agentd do not kill it early.
 *
 * Exits are observed with pidfds polled by the loop, and reaped with waitpid on that exact pid,
 * so this code never reaps (or is confused by) children that other modules own.
 *
 * A proc is "done" once leader and guard are reaped and stdout/stderr reached end of file (or
 * did not within a short drain period because something escaped the group kept them open).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec/child.h"
#include "exec/exec.h"
#include "runtime/internal.h"

#define PROC_DRAIN_MS 200 /* after the group is dead, wait this long for pipe EOF at most */
/*
 * The interpreter and its guard are started by exec/child (fork, new session and group,
 * PR_SET_PDEATHSIG, descriptor placement, exec), the one spawning path of agentd. The interpreter
 * also takes the session's per-process limits and joins its cgroups before exec, so nothing it
 * starts escapes them (cfg NULL: the guard, which has neither). A cgroup that cannot be opened
 * fails the start rather than running the interpreter unlimited.
 */
static int spawn(const struct runtime__proc_config *cfg, const char *path, char *const *argv,
                 char *const *envp, const char *cwd, const struct exec_child_fd *map, int nmap, pid_t *out)
{
    struct exec_child spec = {.path = path, .argv = argv, .envp = envp, .cwd = cwd, .pdeathsig = cfg != NULL};
    int rc = 0;

    for (int i = 0; i < nmap && i < EXEC_CHILD_MAP_MAX; i++)
        spec.map[spec.nmap++] = map[i];
    if (cfg && cfg->limits)
        exec_limits_rlimits(cfg->limits, &spec);
    for (char *const *c = cfg ? cfg->cgroups : NULL; c && *c && spec.njoin < EXEC_CHILD_JOIN_MAX; c++) {
        char file[PATH_MAX];
        snprintf(file, sizeof file, "%s/cgroup.procs", *c);
        if ((spec.join[spec.njoin] = open(file, O_WRONLY | O_CLOEXEC)) < 0) {
            rc = -errno;
            break;
        }
        spec.njoin++;
    }
    if (rc == 0)
        rc = exec_child_spawn(&spec, out);
    for (int i = 0; i < spec.njoin; i++)
        close(spec.join[i]);
    return rc;
}

/* ---- watching --------------------------------------------------------------------------- */

static void proc_check_done(struct runtime__proc *p)
{
    if (p->done || !p->exited || !p->guard_exited)
        return;
    if (!(p->out_eof && p->err_eof) && !p->drained)
        return;
    p->done = true;
    uv_timer_stop(&p->timer);
    runtime__on_proc_done(p);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct runtime__proc *p = t->data;

    p->drained = true;
    proc_check_done(p);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct runtime__proc *p = h->data;

    /* One buffer serves both pipes: each read is consumed before the next alloc. */
    buf->base = p->rbuf;
    buf->len = sizeof p->rbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct runtime__proc *p = s->data;
    int stream = s == (uv_stream_t *)&p->out ? 1 : 2;

    if (nread > 0) {
        runtime__on_data(p, stream, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0) /* EAGAIN */
        return;
    uv_read_stop(s);
    if (stream == 1)
        p->out_eof = true;
    else
        p->err_eof = true;
    runtime__on_data(p, stream, NULL, 0);
    proc_check_done(p);
}

static void on_leader_exit(uv_poll_t *h, int status, int events)
{
    struct runtime__proc *p = h->data;
    int ws = 0;

    /* The leader is a zombie now and still pins its process group id, so killing the group
     * here cannot hit an unrelated group: leftovers (background jobs) die with it. */
    kill(-p->pid, SIGKILL);
    if (waitpid(p->pid, &ws, WNOHANG) != p->pid)
        return;
    uv_poll_stop(h);
    p->exited = true;
    p->wstatus = ws;
    if (p->reason == NULL)
        p->reason = "exited";
    close_fd(&p->life_fd); /* lets the guard go */
    close_fd(&p->ctl_fd);
    uv_timer_stop(&p->timer);
    uv_timer_start(&p->timer, on_drain_timeout, PROC_DRAIN_MS, 0);
    proc_check_done(p);
}

static void on_guard_exit(uv_poll_t *h, int status, int events)
{
    struct runtime__proc *p = h->data;
    int ws;

    if (waitpid(p->guard_pid, &ws, WNOHANG) != p->guard_pid)
        return;
    uv_poll_stop(h);
    p->guard_exited = true;
    proc_check_done(p);
}

/* ---- starting -------------------------------------------------------------------------- */

static void must(int rc, const char *what)
{
    /* libuv only fails these on invalid arguments or exhausted memory. */
    if (rc != 0) {
        fprintf(stderr, "runtime: %s: %s\n", what, uv_strerror(rc));
        abort();
    }
}

int runtime__proc_spawn(uv_loop_t *loop, struct runtime *rt, const struct runtime__proc_config *cfg,
                        struct runtime__proc **out)
{
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, ctl[2] = {-1, -1}, life[2] = {-1, -1};
    int devnull = -1, code = -1, pidfd = -1, guard_pidfd = -1;
    pid_t pid = 0, guard = 0;
    const char *argv[8];
    char pgid_arg[24];
    char *guard_argv[] = {
        "/bin/sh", "-c", "read x; kill -KILL \"$1\" 2>/dev/null; exit 0", "agentd-runtime-guard",
        pgid_arg,  NULL};
    char *guard_env[] = {"PATH=/usr/bin:/bin", NULL};
    struct exec_child_fd map[EXEC_CHILD_MAP_MAX];
    int nmap = 0, rc;
    struct runtime__proc *p;

    if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(life, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0) {
        rc = -errno;
        goto fail;
    }
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    code = memfd_create("agentd-runtime-code", MFD_CLOEXEC);
    if (devnull < 0 || code < 0) {
        rc = -errno;
        goto fail;
    }

    if (cfg->lang->ctl_fd == 0) {
        map[nmap++] = (struct exec_child_fd){0, ctl[1]};
    } else {
        map[nmap++] = (struct exec_child_fd){0, devnull};
        map[nmap++] = (struct exec_child_fd){cfg->lang->ctl_fd, ctl[1]};
    }
    map[nmap++] = (struct exec_child_fd){1, outp[1]};
    map[nmap++] = (struct exec_child_fd){2, errp[1]};
    map[nmap++] = (struct exec_child_fd){RUNTIME__CODE_FD, code};
    map[nmap++] = (struct exec_child_fd){RUNTIME__MARK_FD, outp[1]};
    cfg->lang->argv(cfg->program, argv);
    if (cfg->bwrap != NULL) {
        /* The interpreter in the session's sandbox; the memfd and control socket pass through. */
        char **bw =
            exec_bwrap_argv(cfg->bwrap, cfg->cwd, cfg->bwrap_share_net, cfg->program, (char *const *)argv);
        rc = spawn(cfg, cfg->bwrap, bw, cfg->envp, cfg->cwd, map, nmap, &pid);
        free(bw);
    } else {
        rc = spawn(cfg, cfg->program, (char *const *)argv, cfg->envp, cfg->cwd, map, nmap, &pid);
    }
    if (rc < 0)
        goto fail;

    snprintf(pgid_arg, sizeof pgid_arg, "-%d", (int)pid);
    struct exec_child_fd guard_map[] = {{0, life[0]}, {1, devnull}, {2, devnull}};
    rc = spawn(NULL, "/bin/sh", guard_argv, guard_env, "/", guard_map, 3, &guard);
    if (rc < 0)
        goto fail;

    pidfd = exec_child_pidfd(pid);
    guard_pidfd = exec_child_pidfd(guard);
    if (pidfd < 0 || guard_pidfd < 0) {
        rc = pidfd < 0 ? pidfd : guard_pidfd;
        goto fail;
    }
    if (fcntl(ctl[0], F_SETFL, O_NONBLOCK) < 0) {
        rc = -errno;
        goto fail;
    }
    close(outp[1]);
    close(errp[1]);
    close(ctl[1]);
    close(life[0]);
    close(devnull);

    p = calloc(1, sizeof *p);
    if (p == NULL)
        abort();
    p->rt = rt;
    p->loop = loop;
    p->sandboxed = cfg->bwrap != NULL;
    p->pid = pid;
    p->guard_pid = guard;
    p->pidfd = pidfd;
    p->guard_pidfd = guard_pidfd;
    p->ctl_fd = ctl[0];
    p->code_fd = code;
    p->life_fd = life[1];
    p->grace_ms = cfg->grace_ms;
    must(uv_pipe_init(loop, &p->out, 0), "uv_pipe_init");
    must(uv_pipe_init(loop, &p->err, 0), "uv_pipe_init");
    must(uv_poll_init(loop, &p->pid_poll, pidfd), "uv_poll_init");
    must(uv_poll_init(loop, &p->guard_poll, guard_pidfd), "uv_poll_init");
    must(uv_timer_init(loop, &p->timer), "uv_timer_init");
    p->open_handles = 5;
    p->out.data = p->err.data = p->pid_poll.data = p->guard_poll.data = p->timer.data = p;
    must(uv_pipe_open(&p->out, outp[0]), "uv_pipe_open");
    must(uv_pipe_open(&p->err, errp[0]), "uv_pipe_open");
    must(uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read), "uv_read_start");
    must(uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read), "uv_read_start");
    must(uv_poll_start(&p->pid_poll, UV_READABLE, on_leader_exit), "uv_poll_start");
    must(uv_poll_start(&p->guard_poll, UV_READABLE, on_guard_exit), "uv_poll_start");
    *out = p;
    return 0;

fail:
    /* Nothing handed out yet: kill and reap what was started (both die at once). */
    if (pid > 0) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (guard > 0) {
        kill(guard, SIGKILL);
        waitpid(guard, NULL, 0);
    }
    close_fd(&pidfd);
    close_fd(&guard_pidfd);
    for (int i = 0; i < 2; i++) {
        close_fd(&outp[i]);
        close_fd(&errp[i]);
        close_fd(&ctl[i]);
        close_fd(&life[i]);
    }
    close_fd(&devnull);
    close_fd(&code);
    return rc;
}

/* ---- driving --------------------------------------------------------------------------- */

int runtime__proc_send(struct runtime__proc *p, const char *code, size_t len, const char *line,
                       size_t line_len)
{
    size_t off = 0;
    ssize_t n;

    if (p->ctl_fd < 0 || p->exited)
        return -EPIPE;
    while (off < len) {
        n = pwrite(p->code_fd, code + off, len - off, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        off += (size_t)n;
    }
    if (ftruncate(p->code_fd, (off_t)len) < 0)
        goto fail;
    /* The child shares this descriptor's offset; bash reads with `read -u`, from offset 0. */
    if (lseek(p->code_fd, 0, SEEK_SET) < 0)
        goto fail;
    /* One short line on an otherwise empty socket: it is written whole or not at all. */
    do
        n = send(p->ctl_fd, line, line_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)line_len)
        goto fail;
    return 0;

fail:
    n = errno ? -errno : -EIO;
    runtime__proc_kill(p, "exited");
    return (int)n;
}

void runtime__proc_drain_err(struct runtime__proc *p)
{
    uv_os_fd_t fd;
    ssize_t n;

    if (p->err_eof || uv_fileno((uv_handle_t *)&p->err, &fd) != 0)
        return;
    for (;;) {
        n = read(fd, p->dbuf, sizeof p->dbuf);
        if (n > 0)
            runtime__on_data(p, 2, p->dbuf, (size_t)n);
        else if (!(n < 0 && errno == EINTR))
            break; /* EAGAIN: empty; 0: EOF, which the loop will report */
    }
}

void runtime__proc_interrupt(struct runtime__proc *p)
{
    if (p->exited)
        return;
    if (p->sandboxed)
        exec_session_signal_except(p->pid, p->pid, SIGINT); /* not bwrap itself: it would die of it */
    else
        kill(-p->pid, SIGINT);
}

static void on_stop_step(uv_timer_t *t)
{
    struct runtime__proc *p = t->data;

    if (p->exited)
        return;
    if (p->stop_step == 1) {
        p->stop_step = 2;
        kill(-p->pid, SIGTERM);
        uv_timer_start(&p->timer, on_stop_step, p->grace_ms, 0);
        return;
    }
    runtime__proc_kill(p, NULL);
}

void runtime__proc_stop(struct runtime__proc *p, const char *reason)
{
    if (p->reason == NULL)
        p->reason = reason;
    if (p->stopping || p->killed || p->exited)
        return;
    p->stopping = true;
    p->stop_step = 1;
    close_fd(&p->ctl_fd); /* end of file on the request channel: the driver exits */
    uv_timer_start(&p->timer, on_stop_step, p->grace_ms, 0);
}

void runtime__proc_kill(struct runtime__proc *p, const char *reason)
{
    if (p->reason == NULL)
        p->reason = reason;
    if (p->killed || p->exited)
        return;
    p->killed = true;
    uv_timer_stop(&p->timer);
    kill(-p->pid, SIGKILL);
    close_fd(&p->life_fd);
    close_fd(&p->ctl_fd);
}

/* ---- freeing --------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    struct runtime__proc *p = h->data;

    if (--p->open_handles > 0)
        return;
    close_fd(&p->pidfd);
    close_fd(&p->guard_pidfd);
    close_fd(&p->code_fd);
    close_fd(&p->ctl_fd);
    close_fd(&p->life_fd);
    runtime__on_proc_freed(p->rt, p);
    free(p);
}

void runtime__proc_release(struct runtime__proc *p)
{
    uv_close((uv_handle_t *)&p->out, on_handle_closed);
    uv_close((uv_handle_t *)&p->err, on_handle_closed);
    uv_close((uv_handle_t *)&p->pid_poll, on_handle_closed);
    uv_close((uv_handle_t *)&p->guard_poll, on_handle_closed);
    uv_close((uv_handle_t *)&p->timer, on_handle_closed);
}
