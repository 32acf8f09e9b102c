/* proc — one running program of an environment (started by spawn.c): feeding its stdin, reading
 * its output, signalling it, noticing its end and freeing it.
 *
 * Order at the end, chosen so that the process group id can never name someone else's group
 * while we or the guard signal it: the leader's pidfd turns readable (it is a zombie, still
 * pinning the group id) → we SIGKILL the group and its cgroup → the guard forgets the group →
 * only then is the leader reaped. Exits are watched with pidfds and reaped with waitpid on exact
 * pids, so children of other modules are never touched.
 *
 * Starting is spawn.c (with lookup.c and child.c); killing is kill.c.
 */
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/exec_int.h"

#define PROC_DRAIN_MS 200 /* after the leader died, wait this long for end of file on its pipes */

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

    if (p->done || !p->exited || exec__kill_busy(p))
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
     * left of this program's group. The guard forgets the group before the id is released. The
     * zombie is reaped at once (a readable pidfd means it has exited). */
    uv_poll_stop(h);
    kill(-p->pid, SIGKILL);
    if (exec__proc_cgroup(p) != NULL)
        (void)exec__cgroup_signal(exec__proc_cgroup(p), SIGKILL);
    exec__guard_forget(p->pid);
    if (waitpid(p->pid, &p->wstatus, 0) == p->pid)
        p->exited = 1;
    uv_timer_start(&p->drain_timer, on_drain_timeout, PROC_DRAIN_MS, 0);
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
    uv_close((uv_handle_t *)&p->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&p->kill_timer, on_handle_closed);
}

/* ---- watching starts ------------------------------------------------------------------------ */

static void must(int rc, const char *what)
{
    /* libuv fails these only on invalid arguments. */
    if (rc != 0) {
        log_error("exec: %s: %s", what, uv_strerror(rc));
        abort();
    }
}

void exec__proc_watch(struct exec_proc *p, int in_fd, int out_fd, int err_fd)
{
    uv_loop_t *loop = p->env->loop;

    assert(p->pidfd >= 0 && (in_fd >= 0) == p->has_in);
    if (p->has_in)
        must(uv_pipe_init(loop, &p->in, 0), "uv_pipe_init");
    must(uv_pipe_init(loop, &p->out, 0), "uv_pipe_init");
    must(uv_pipe_init(loop, &p->err, 0), "uv_pipe_init");
    must(uv_poll_init(loop, &p->pid_poll, p->pidfd), "uv_poll_init");
    must(uv_timer_init(loop, &p->drain_timer), "uv_timer_init");
    must(uv_timer_init(loop, &p->kill_timer), "uv_timer_init");
    p->open_handles = p->has_in ? 6 : 5;
    p->in.data = p->out.data = p->err.data = p->pid_poll.data = p;
    p->drain_timer.data = p->kill_timer.data = p;
    if (p->has_in) {
        must(uv_pipe_open(&p->in, in_fd), "uv_pipe_open");
        p->in_open = 1;
    }
    must(uv_pipe_open(&p->out, out_fd), "uv_pipe_open");
    must(uv_pipe_open(&p->err, err_fd), "uv_pipe_open");
    must(uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read), "uv_read_start");
    must(uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read), "uv_read_start");
    must(uv_poll_start(&p->pid_poll, UV_READABLE, on_leader_dead), "uv_poll_start");
}
