/* child — the vfork-and-exec half of a spawn; see child.h for the steps and why they are ordered
 * so. Everything after vfork() runs in the child on agentd's memory: async-signal-safe calls
 * only, nothing allocated, nothing written but its own stack. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "exec/child.h"

/* Descriptors are lifted at or above this before being placed, so a source that is also a
 * target (say our 1 is to become the child's 2) is not overwritten by an earlier dup2. */
#define CHILD_LIFT_FD    100
/* The most descriptors the close loop without close_range visits (fs.nr_open's default). */
#define CHILD_FD_END_MAX (1 << 20)

static size_t put_num(char *p, long v)
{
    char tmp[24];
    size_t n = 0, len = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0)
        p[len++] = tmp[--n];
    return len;
}

static _Noreturn void fail(const char *step, const char *path, int err)
{
    char msg[600];
    size_t len = 0;
    const char *parts[] = {"agentd: exec: ", step, " ", path, ": errno "};

    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        for (const char *s = parts[i]; *s && len < 560; s++)
            msg[len++] = *s;
    len += put_num(msg + len, err);
    msg[len++] = '\n';
    (void)!write(2, msg, len);
    _exit(127);
}

static int is_target(const struct exec_child *c, int fd)
{
    for (int i = 0; i < c->nmap; i++)
        if (c->map[i].child == fd)
            return 1;
    return 0;
}

int exec_child_no_close_range;

/* One past the highest descriptor agentd can have open: its RLIMIT_NOFILE (getrlimit is a
 * system call, async-signal-safe), capped, as the soft limit may be unlimited. */
static int child_fd_end(void)
{
    struct rlimit nofile;

    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < (rlim_t)CHILD_FD_END_MAX)
        return (int)nofile.rlim_cur;
    return CHILD_FD_END_MAX;
}

static _Noreturn void child_main(const struct exec_child *c, pid_t parent)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    int lifted[EXEC_CHILD_MAP_MAX + EXEC_CHILD_JOIN_MAX];
    int top = 2, n = c->nmap + c->njoin;
    char num[24];
    size_t len;
    sigset_t none;

    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &dfl, NULL);
    if (setsid() < 0)
        _exit(127);
    if (c->pdeathsig) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) /* agentd died before the death signal was armed */
            _exit(127);
    }
    for (int i = 0; i < n; i++) {
        int fd = i < c->nmap ? c->map[i].parent : c->join[i - c->nmap];
        if ((lifted[i] = fcntl(fd, F_DUPFD_CLOEXEC, CHILD_LIFT_FD)) < 0)
            _exit(127);
    }
    for (int i = 0; i < c->nmap; i++) {
        if (dup2(lifted[i], c->map[i].child) < 0)
            _exit(127);
        if (c->map[i].child > top)
            top = c->map[i].child;
    }
    /* From here on, failures are reported on the program's own stderr. */
    len = put_num(num, (long)getpid());
    for (int i = c->nmap; i < n; i++)
        if (write(lifted[i], num, len) < 0)
            fail("join cgroup", c->path, errno);
    for (int i = 0; i < c->nrlimit; i++)
        if (setrlimit(c->rlimit[i].resource, &c->rlimit[i].value) < 0)
            fail("setrlimit", c->path, errno);
    for (int fd = 0; fd <= top; fd++)
        if (!is_target(c, fd))
            (void)close(fd);
    /* Kernels before 5.9 have no close_range: one by one, up to RLIMIT_NOFILE (not a fixed 1024:
     * agentd may have many more descriptors open, and not all of them close on exec). */
    if (exec_child_no_close_range || syscall(SYS_close_range, (unsigned)top + 1, ~0u, 0u) < 0)
        for (int fd = top + 1, end = child_fd_end(); fd < end; fd++)
            (void)close(fd);
    if (c->cwd != NULL && chdir(c->cwd) < 0)
        fail("chdir", c->cwd, errno);
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    execve(c->path, c->argv, c->envp);
    fail("exec", c->path, errno);
}

int exec_child_spawn(const struct exec_child *c, pid_t *out)
{
    sigset_t all, old;
    pid_t parent = getpid(), pid;
    int err;

    assert(c->nmap <= EXEC_CHILD_MAP_MAX && c->njoin <= EXEC_CHILD_JOIN_MAX &&
           c->nrlimit <= EXEC_CHILD_RLIMIT_MAX);
    /* vfork, not fork: the child borrows agentd's memory until it execs instead of copying its
     * page tables (and making agentd take a copy-on-write fault for every page it touches next),
     * which grew with agentd's size: the child half only writes its own stack and the shared
     * errno, and agentd's thread waits until the exec. Every signal is blocked across it, so no
     * agentd handler runs in the child (on agentd's memory) before it resets them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = vfork();
    if (pid == 0)
        child_main(c, parent);
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return -err;
    *out = pid;
    return 0;
}

int exec_child_pidfd(pid_t pid)
{
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}
