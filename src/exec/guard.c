/* guard — the one process that makes sure nothing exec/ started outlives agentd.
 *
 * Every program is the leader of its own process group and dies with agentd
 * (PR_SET_PDEATHSIG), but what it started — a background job, a daemon that setsid()ed — would
 * outlive a kill -9 of agentd. The guard kills those: one helper process per agentd process,
 * started with the first spawn, holding one end of a SOCK_SEQPACKET socket pair whose other end
 * only agentd holds. agentd sends one datagram per change: "+<pgid> <cgroup dir>" once a program
 * started, "-<pgid>" before its leader is reaped (until then the zombie leader pins the group id,
 * so the guard never names a reused one). When the socket reaches end of file — agentd exited or
 * died — the guard SIGKILLs every group still listed and every process of their cgroups, then
 * exits. The socket keeps order, so a "-" sent before agentd died is read before the end of file.
 *
 * The guard is agentd's own executable run again (/proc/self/exe, any binary linking exec/: agentd,
 * the tests, the benches) with AGENTD_EXEC_GUARD=1 and the socket as stdin; the constructor below
 * turns that process into the guard before main runs. It used to be one `/bin/sh` per program,
 * forked and exec'd with every spawn: about a quarter of the CPU a runtime's cold start took here.
 *
 * The guard is not agentd's child (an intermediate fork starts it), so agentd has no child that
 * outlives its programs. agentd keeps what it told the guard (the registry). A send waits up to
 * GUARD_SEND_TIMEOUT_MS for room, so a guard that is only slow is not replaced. If the guard is
 * gone or stuck (a send fails), it is SIGKILLed through its pidfd, and a new one is started and
 * told everything again, many entries to a datagram; if that fails too, the new one is SIGKILLed
 * and the next change starts another. A forked copy of agentd starts its own guard, so its
 * programs die with it, not with its parent. Callable from any thread (one mutex).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/child.h"
#include "exec/exec_int.h"

#define GUARD_ENV             "AGENTD_EXEC_GUARD"
#define GUARD_MSG_MAX         (PATH_MAX + 32)
/* How long a send waits for the guard to make room before the guard counts as stuck. */
#define GUARD_SEND_TIMEOUT_MS 1000

struct guard_entry {
    pid_t pgid;
    char *cg_dir; /* owned; NULL without a cgroup */
};

/* ---- the guard process ------------------------------------------------------------------- */

/* One entry: "+<pgid>[ <cgroup dir>]" or "-<pgid>". A pgid that is not a whole number above 1 is
 * refused (-EINVAL): kill(-1) would reach every process of the uid, kill(-0) the guard's own group
 * before it got to the rest, and a negative one a single unrelated pid. agentd sends none of
 * these (its pgids are vfork'd leaders); the guard checks anyway, being what runs kill(). */
int exec__guard_parse(const char *entry, char *op, pid_t *pgid, const char **cg_dir)
{
    char *end;
    long v;

    if (entry[0] != '+' && entry[0] != '-')
        return -EINVAL;
    errno = 0;
    v = strtol(entry + 1, &end, 10);
    if (errno != 0 || !isdigit((unsigned char)entry[1]) || v <= 1 || v > INT_MAX ||
        (*end != '\0' && (*end != ' ' || entry[0] != '+')))
        return -EINVAL;
    *op = entry[0];
    *pgid = (pid_t)v;
    *cg_dir = *end == ' ' && end[1] != '\0' ? end + 1 : NULL;
    return 0;
}

static _Noreturn void guard_main(int fd)
{
    struct guard_entry *set = NULL;
    size_t n = 0, cap = 0;
    char msg[GUARD_MSG_MAX + 1], op;
    const char *cg_dir;
    pid_t pgid;

    (void)prctl(PR_SET_NAME, "agentd-guard");
    for (;;) {
        ssize_t r = recv(fd, msg, sizeof msg - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* end of file: agentd is gone */
        msg[r] = '\0';
        /* One datagram holds one entry or more, each ended by a NUL (the last by the datagram). */
        for (char *e = msg; e < msg + r; e += strlen(e) + 1) {
            if (exec__guard_parse(e, &op, &pgid, &cg_dir) < 0)
                continue;
            if (op == '+') {
                if (n == cap) {
                    cap = cap ? 2 * cap : 64;
                    set = xrealloc(set, cap * sizeof *set);
                }
                set[n].pgid = pgid;
                set[n++].cg_dir = cg_dir != NULL ? xstrdup(cg_dir) : NULL;
                continue;
            }
            for (size_t i = 0; i < n; i++) {
                if (set[i].pgid == pgid) {
                    free(set[i].cg_dir);
                    set[i] = set[--n];
                    break;
                }
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        kill(-set[i].pgid, SIGKILL);
        if (set[i].cg_dir != NULL)
            (void)exec__cgroup_signal(set[i].cg_dir, SIGKILL);
    }
    _exit(0);
}

/* Runs before main in every binary that links exec/: only the guard's exec has GUARD_ENV, and
 * its stdin must be a SOCK_SEQPACKET socket, so an operator's stray variable changes nothing. */
__attribute__((constructor)) static void guard_maybe_run(void)
{
    const char *v = getenv(GUARD_ENV);
    int type = 0;
    socklen_t len = sizeof type;

    if (v == NULL || strcmp(v, "1") != 0 || getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        type != SOCK_SEQPACKET)
        return;
    guard_main(0);
}

/* ---- agentd's side ------------------------------------------------------------------------ */

static pthread_mutex_t guard_mu = PTHREAD_MUTEX_INITIALIZER;
static int guard_fd = -1;     /* agentd's end of the socket */
static int guard_pidfd = -1;  /* the guard, for a SIGKILL that cannot reach a reused pid */
static pid_t guard_owner = 0; /* the process that started it (a fork of agentd starts its own) */
static pid_t guard_pid = 0;
static struct guard_entry *reg;
static size_t nreg, capreg;

/* Sends one datagram, waiting for room up to GUARD_SEND_TIMEOUT_MS (SO_SNDTIMEO): a guard that
 * is only slow (a loaded machine, a new one still starting) is waited for, not replaced. */
static int guard_send(int fd, const char *msg, size_t len)
{
    ssize_t r;

    do
        r = send(fd, msg, len, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r == (ssize_t)len ? 0 : r < 0 ? -errno : -EIO;
}

static size_t guard_add_msg(char *buf, size_t cap, const struct guard_entry *e)
{
    int n = snprintf(buf, cap, "+%d%s%s", (int)e->pgid, e->cg_dir != NULL ? " " : "",
                     e->cg_dir != NULL ? e->cg_dir : "");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Starts the guard process on socket end `end`, not as agentd's child (a child that outlives
 * every program would be one more for agentd and its tests to account for): an intermediate fork
 * starts it, sends its pid through `end` and exits, so the guard is reparented. A pidfd of the
 * guard, or -errno. */
static int guard_spawn(int end, int mine)
{
    char *argv[] = {"agentd-exec-guard", NULL}, *envp[] = {GUARD_ENV "=1", NULL};
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC), st = 0, fd;
    struct exec_child c = {.path = "/proc/self/exe",
                           .argv = argv,
                           .envp = envp,
                           .cwd = "/",
                           .map = {{0, end}, {1, devnull}, {2, devnull}},
                           .nmap = 3};
    pid_t mid, pid = -1;

    if (devnull < 0)
        return -errno;
    if ((mid = fork()) == 0) {
        /* A fork of a threaded process: async-signal-safe calls only. */
        if (exec_child_spawn(&c, &pid) < 0 || send(end, &pid, sizeof pid, MSG_NOSIGNAL) != sizeof pid)
            _exit(127);
        _exit(0);
    }
    fd = mid < 0 ? -errno : 0;
    close(devnull);
    if (fd < 0)
        return fd;
    while (waitpid(mid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || recv(mine, &pid, sizeof pid, MSG_DONTWAIT) != sizeof pid)
        return -ECHILD;
    guard_pid = pid;
    return exec_child_pidfd(pid); /* -ESRCH if it died at once: the exec failed */
}

/* SIGKILLs the guard (if any) and forgets it: ending its socket instead would make it kill what
 * it lists. */
static void guard_kill_locked(void)
{
    if (guard_pidfd >= 0) {
        (void)syscall(SYS_pidfd_send_signal, guard_pidfd, SIGKILL, NULL, 0);
        close(guard_pidfd);
    }
    if (guard_fd >= 0)
        close(guard_fd);
    guard_fd = guard_pidfd = -1;
}

/* Tells a new guard the whole registry, as many entries to a datagram as fit (NUL-separated): one
 * datagram each, a few hundred would fill the socket before the new guard reads. */
static int guard_resend_locked(void)
{
    char msg[GUARD_MSG_MAX], one[GUARD_MSG_MAX];
    size_t len = 0;
    int rc;

    for (size_t i = 0; i < nreg; i++) {
        size_t n = guard_add_msg(one, sizeof one, &reg[i]);
        if (n == 0)
            continue;
        if (len > 0 && len + 1 + n > sizeof msg) {
            if ((rc = guard_send(guard_fd, msg, len)) < 0)
                return rc;
            len = 0;
        }
        if (len > 0)
            msg[len++] = '\0';
        memcpy(msg + len, one, n);
        len += n;
    }
    return len > 0 ? guard_send(guard_fd, msg, len) : 0;
}

/* Replaces the guard: the old one (if any) is SIGKILLed and a new one is started and told the
 * whole registry. If it cannot be told everything, it is SIGKILLed too, so the next change starts
 * another rather than keep one that would let some programs outlive agentd. 0 or -errno. */
static int guard_restart_locked(void)
{
    struct timeval tv = {.tv_sec = GUARD_SEND_TIMEOUT_MS / 1000,
                         .tv_usec = GUARD_SEND_TIMEOUT_MS % 1000 * 1000};
    int sv[2], rc;

    guard_kill_locked();
    guard_owner = getpid();
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    rc = setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ? -errno : guard_spawn(sv[1], sv[0]);
    close(sv[1]);
    if (rc < 0) {
        close(sv[0]);
        return rc;
    }
    guard_pidfd = rc;
    guard_fd = sv[0];
    if ((rc = guard_resend_locked()) < 0) {
        log_error("exec: a new guard could not be told the %zu programs running (%s): it is replaced "
                  "with the next program started or ended",
                  nreg, strerror(-rc));
        guard_kill_locked();
    }
    return rc;
}

/* A fork of agentd finds its parent's socket and registry: they are not its own. */
static void guard_adopt_locked(void)
{
    if (guard_owner == getpid())
        return;
    if (guard_fd >= 0)
        close(guard_fd);
    if (guard_pidfd >= 0)
        close(guard_pidfd);
    for (size_t i = 0; i < nreg; i++)
        free(reg[i].cg_dir);
    nreg = 0;
    guard_fd = guard_pidfd = -1;
    guard_owner = getpid();
}

/* Tells the guard about one change the registry already reflects. Without a guard, or when the
 * send fails (the guard died, or read nothing for GUARD_SEND_TIMEOUT_MS), a new guard is told the
 * whole registry instead: sending msg again would list an added group twice. */
static int guard_tell_locked(const char *msg, size_t len)
{
    int rc;

    if (guard_fd >= 0) {
        if ((rc = guard_send(guard_fd, msg, len)) == 0)
            return 0;
        log_warn("exec: the guard is gone or stuck (%s): starting a new one", strerror(-rc));
    }
    return guard_restart_locked();
}

static void guard_drop_locked(pid_t pgid)
{
    for (size_t i = 0; i < nreg; i++) {
        if (reg[i].pgid == pgid) {
            free(reg[i].cg_dir);
            reg[i] = reg[--nreg];
            return;
        }
    }
}

int exec__guard_add(pid_t pgid, const char *cg_dir)
{
    char msg[GUARD_MSG_MAX];
    size_t len;
    int rc;

    pthread_mutex_lock(&guard_mu);
    guard_adopt_locked();
    if (nreg == capreg) {
        capreg = capreg ? 2 * capreg : 64;
        reg = xrealloc(reg, capreg * sizeof *reg);
    }
    reg[nreg] = (struct guard_entry){pgid, cg_dir != NULL ? xstrdup(cg_dir) : NULL};
    len = guard_add_msg(msg, sizeof msg, &reg[nreg]);
    nreg++;
    if ((rc = len > 0 ? guard_tell_locked(msg, len) : -ENAMETOOLONG) < 0)
        guard_drop_locked(pgid); /* the caller kills and reaps the program */
    pthread_mutex_unlock(&guard_mu);
    return rc;
}

void exec__guard_forget(pid_t pgid)
{
    char msg[32];
    int len = snprintf(msg, sizeof msg, "-%d", (int)pgid);

    pthread_mutex_lock(&guard_mu);
    guard_adopt_locked();
    guard_drop_locked(pgid);
    /* Without a guard (a restart failed), the programs still running need a new one now. */
    if (guard_fd >= 0 || nreg > 0)
        (void)guard_tell_locked(msg, (size_t)len);
    pthread_mutex_unlock(&guard_mu);
}

size_t exec_kill_all(void)
{
    size_t n = 0;
    pid_t *groups;

    pthread_mutex_lock(&guard_mu);
    guard_adopt_locked();
    /* The registry lists exactly the groups whose leaders are unreaped (exec__guard_forget goes
     * first), so their ids are not reused: the tree first (parent links vanish as processes die),
     * then each group and cgroup, for what forked meanwhile. */
    groups = xcalloc(nreg > 0 ? nreg : 1, sizeof *groups);
    for (size_t i = 0; i < nreg; i++)
        groups[i] = reg[i].pgid;
    (void)exec__kill_tree(groups, nreg);
    for (size_t i = 0; i < nreg; i++) {
        n += kill(-reg[i].pgid, SIGKILL) == 0;
        if (reg[i].cg_dir != NULL)
            (void)exec__cgroup_signal(reg[i].cg_dir, SIGKILL);
    }
    pthread_mutex_unlock(&guard_mu);
    free(groups);
    return n;
}

pid_t exec__guard_pid(void)
{
    pid_t pid;

    pthread_mutex_lock(&guard_mu);
    pid = guard_pid;
    pthread_mutex_unlock(&guard_mu);
    return pid;
}
