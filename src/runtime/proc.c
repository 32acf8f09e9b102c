/* proc — one runtime interpreter, started, watched and killed through exec/.
 *
 * exec_spawn runs the interpreter in the session's execution environment (workspace, declared
 * variables, limits, cgroups, sandbox), as the leader of its own session and process group, with
 * a guard that kills the group when agentd dies. What is a runtime's own is the protocol's
 * plumbing: a control socket for request lines (the driver's stdin for bash, fd 61 with stdin
 * /dev/null for python and node), a memfd holding the code (fd 62), and a second descriptor on
 * the stdout pipe for completion markers (fd 63). stderr arrives as raw bytes, because a call's
 * stderr is exact bytes, not lines.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/exec.h"
#include "runtime/runtime_int.h"

static void runtime__close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- exec's callbacks ------------------------------------------------------------------ */

static void runtime__proc_on_stdout(void *arg, struct exec_proc *xp, const char *data, size_t len)
{
    runtime__on_data(arg, 1, data, len);
}

static void runtime__proc_on_stderr(void *arg, struct exec_proc *xp, const char *data, size_t len)
{
    runtime__on_data(arg, 2, data, len);
}

static void runtime__proc_on_stop_closed(uv_handle_t *h)
{
    struct runtime__proc *p = h->data;

    runtime__close_fd(&p->code_fd);
    runtime__close_fd(&p->ctl_fd);
    runtime__on_proc_freed(p->rt, p);
    free(p);
}

static void runtime__proc_on_exit(void *arg, struct exec_proc *xp, const struct exec_exit *ex)
{
    struct runtime__proc *p = arg;

    p->xp = NULL; /* exec frees it when this returns */
    p->exited = 1;
    p->status = ex->signal != 0 ? 128 + ex->signal : ex->status;
    if (p->reason == NULL)
        p->reason = "exited";
    runtime__close_fd(&p->ctl_fd);
    uv_timer_stop(&p->stop_timer);
    runtime__on_proc_done(p);
    uv_close((uv_handle_t *)&p->stop_timer, runtime__proc_on_stop_closed);
}

/* ---- starting -------------------------------------------------------------------------- */

int runtime__proc_spawn(struct runtime *rt, const struct runtime__proc_config *cfg,
                        struct runtime__proc **out)
{
    int ctl[2] = {-1, -1}, devnull = -1, code = -1, rc;
    const char *argv[RUNTIME__ARGS_MAX + 2] = {cfg->program};
    struct exec_fd fds[EXEC_SPAWN_FDS_MAX];
    size_t nfds = 0;
    struct runtime__proc *p = NULL;
    struct exec_spawn_opts so = {.on_stdout = runtime__proc_on_stdout,
                                 .on_stderr_data = runtime__proc_on_stderr,
                                 .on_exit = runtime__proc_on_exit};

    if (exec_env_status(cfg->env) != EXEC_STATUS_READY)
        return -EAGAIN;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0 ||
        (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0 ||
        (code = memfd_create("agentd-runtime-code", MFD_CLOEXEC)) < 0 ||
        fcntl(ctl[0], F_SETFL, O_NONBLOCK) < 0) {
        rc = -errno;
        goto fail;
    }
    if (cfg->lang->ctl_fd == 0) {
        fds[nfds++] = (struct exec_fd){0, ctl[1]};
    } else {
        fds[nfds++] = (struct exec_fd){0, devnull};
        fds[nfds++] = (struct exec_fd){cfg->lang->ctl_fd, ctl[1]};
    }
    fds[nfds++] = (struct exec_fd){RUNTIME__CODE_FD, code};
    fds[nfds++] = (struct exec_fd){RUNTIME__MARK_FD, EXEC_FD_STDOUT};
    so.fds = fds;
    so.nfds = nfds;
    for (size_t i = 0; cfg->lang->args[i] != NULL; i++) {
        assert(i < RUNTIME__ARGS_MAX);
        argv[i + 1] = cfg->lang->args[i];
    }

    p = xcalloc(1, sizeof *p);
    so.arg = p;
    if ((rc = exec_spawn(cfg->env, (char *const *)argv, &so, &p->xp)) < 0)
        goto fail;
    close(ctl[1]);
    close(devnull);
    p->rt = rt;
    p->pid = exec_proc_pid(p->xp);
    p->ctl_fd = ctl[0];
    p->code_fd = code;
    p->grace_ms = cfg->grace_ms;
    if (uv_timer_init(cfg->loop, &p->stop_timer) != 0)
        abort(); /* only fails on invalid arguments */
    p->stop_timer.data = p;
    *out = p;
    return 0;

fail:
    free(p);
    runtime__close_fd(&ctl[0]);
    runtime__close_fd(&ctl[1]);
    runtime__close_fd(&devnull);
    runtime__close_fd(&code);
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
    if (p->xp != NULL)
        exec_proc_read_stderr(p->xp);
}

void runtime__proc_interrupt(struct runtime__proc *p)
{
    if (p->xp != NULL)
        (void)exec_proc_signal(p->xp, SIGINT);
}

static void runtime__proc_on_stop_timer(uv_timer_t *t)
{
    struct runtime__proc *p = t->data;

    if (p->xp != NULL)
        exec_proc_kill(p->xp, p->grace_ms, NULL, NULL);
}

void runtime__proc_stop(struct runtime__proc *p, const char *reason)
{
    if (p->reason == NULL)
        p->reason = reason;
    if (p->stopping || p->killed || p->exited)
        return;
    p->stopping = 1;
    runtime__close_fd(&p->ctl_fd); /* end of file on the request channel: the driver exits */
    uv_timer_start(&p->stop_timer, runtime__proc_on_stop_timer, p->grace_ms, 0);
}

void runtime__proc_kill(struct runtime__proc *p, const char *reason)
{
    if (p->reason == NULL)
        p->reason = reason;
    if (p->killed || p->exited)
        return;
    p->killed = 1;
    assert(p->xp != NULL); /* exec's proc lives until its exit callback, which sets exited */
    uv_timer_stop(&p->stop_timer);
    runtime__close_fd(&p->ctl_fd);
    exec_proc_kill(p->xp, 0, NULL, NULL);
}
