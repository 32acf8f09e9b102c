/* kill — stopping a program and everything it started, and proving it.
 *
 * A process group is not a container: Claude Code's tool children survive its SIGTERM inside the
 * group, and anything may setsid() out of it. So a kill works on a set of processes found by
 * scanning /proc, not on the group alone. The set starts with the leader and grows with every
 * scan by:
 *   - members of the leader's process group or session (only while the leader is unreaped, so
 *     the ids cannot have been reused),
 *   - members of the proc's own cgroup (which nothing can leave), and
 *   - any process whose parent is in the set (children that setsid()ed away while their parent
 *     lived; an orphan whose parent died before the kill is only found through the cgroup).
 * Processes are remembered by pid and start time, so a reused pid is never signalled.
 *
 * Steps: SIGTERM (and SIGCONT, so stopped ones can act on it) to the group and the set, at once or
 * (exec_proc_kill_after) after a delay during which scans only grow the set; every KILL_POLL_MS a
 * new scan, signalling newcomers; after the grace period SIGKILL to all; done
 * when a scan finds nothing alive (zombies count as dead), or KILL_GIVE_UP_MS after the SIGKILL
 * with the survivors counted in the report. A grace period of 0 skips SIGTERM (a runtime that
 * must stop now: a timeout, a reset).
 */
#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/exec_int.h"

#define KILL_POLL_MS        20
#define KILL_FIRST_CHECK_MS 2 /* after a SIGKILL at once: the processes are gone within ~1 ms */
#define KILL_GIVE_UP_MS     2000

struct tracked {
    pid_t pid;
    unsigned long long start; /* start time in clock ticks since boot (/proc/<pid>/stat) */
};

struct exec__kill {
    exec_kill_cb cb;
    void *arg;
    uint64_t term_ms, grace_ms, start_us; /* SIGTERM and SIGKILL, in ms after start_us */
    struct tracked *set;
    size_t n, cap;
    int termed, escalated, finished;
    size_t left;
};

/* What one line of /proc/<pid>/stat says about a process. */
struct pstat {
    pid_t pid, ppid, pgrp, sid;
    char state;
    unsigned long long start;
};

static int read_stat(pid_t pid, struct pstat *st)
{
    char path[64], buf[1024], *p;
    int fd;
    ssize_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -EIO;
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields resume after the last ')'. */
    if ((p = strrchr(buf, ')')) == NULL)
        return -EIO;
    st->pid = pid;
    if (sscanf(p + 1, " %c %d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
               &st->state, &st->ppid, &st->pgrp, &st->sid, &st->start) != 5)
        return -EIO;
    return 0;
}

static int alive(const struct pstat *st) { return st->state != 'Z' && st->state != 'X'; }

/* Reads the pids listed in a cgroup.procs file; returns how many (at most cap). */
static size_t cgroup_pids(const char *dir, pid_t *out, size_t cap)
{
    char path[PATH_MAX + 16];
    FILE *f;
    size_t n = 0;
    int pid;

    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    if ((f = fopen(path, "re")) == NULL)
        return 0;
    while (n < cap && fscanf(f, "%d", &pid) == 1)
        out[n++] = pid;
    fclose(f);
    return n;
}

size_t exec__cgroup_signal(const char *dir, int sig)
{
    pid_t pids[1024];
    size_t n = cgroup_pids(dir, pids, sizeof pids / sizeof pids[0]);

    for (size_t i = 0; i < n; i++)
        kill(pids[i], sig);
    return n;
}

const char *exec__proc_cgroup(const struct exec_proc *p)
{
    return p->cg_dir[EXEC__CG_PIDS] != NULL ? p->cg_dir[EXEC__CG_PIDS] : p->cg_dir[EXEC__CG_MEMORY];
}

static int tracked_has(const struct exec__kill *k, pid_t pid, unsigned long long start)
{
    for (size_t i = 0; i < k->n; i++)
        if (k->set[i].pid == pid && k->set[i].start == start)
            return 1;
    return 0;
}

static void tracked_add(struct exec__kill *k, pid_t pid, unsigned long long start)
{
    if (k->n == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 16;
        k->set = xrealloc(k->set, k->cap * sizeof *k->set);
    }
    k->set[k->n++] = (struct tracked){pid, start};
}

size_t exec__session_signal_except(pid_t sid, pid_t except, int sig)
{
    struct dirent *de;
    struct pstat st;
    size_t n = 0;
    DIR *d = opendir("/proc");

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid <= 0 || pid == except || read_stat(pid, &st) != 0 || st.sid != sid || !alive(&st))
            continue;
        n += kill(pid, sig) == 0;
    }
    closedir(d);
    return n;
}

/* Every process in /proc, as /proc/<pid>/stat says (*n of them; NULL and 0 without /proc). */
static struct pstat *scan_proc(size_t *n)
{
    struct pstat *all = NULL;
    size_t cap = 0;
    struct dirent *de;
    DIR *d = opendir("/proc");

    *n = 0;
    if (d == NULL)
        return NULL;
    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            all = xrealloc(all, cap * sizeof *all);
        }
        if (read_stat((pid_t)atoi(de->d_name), &all[*n]) == 0)
            (*n)++;
    }
    closedir(d);
    return all;
}

/* Children of members are members (children that setsid()ed away while their parent lived):
 * marks them in `in`, until no process joins. `self` never joins. */
static void grow_children(const struct pstat *all, size_t nall, int *in, pid_t self)
{
    int grew;

    do {
        grew = 0;
        for (size_t i = 0; i < nall; i++)
            for (size_t j = 0; j < nall && !in[i] && all[i].pid != self; j++)
                if (in[j] && all[j].pid == all[i].ppid)
                    in[i] = grew = 1;
    } while (grew);
}

size_t exec__kill_tree(const pid_t *groups, size_t ngroups)
{
    size_t nall, n = 0;
    struct pstat *all = scan_proc(&nall);
    int *in = xcalloc(nall > 0 ? nall : 1, sizeof *in);
    pid_t self = getpid();

    for (size_t i = 0; i < nall; i++)
        for (size_t j = 0; j < ngroups && !in[i] && all[i].pid != self; j++)
            in[i] = all[i].pgrp == groups[j] || all[i].sid == groups[j];
    grow_children(all, nall, in, self);
    for (size_t i = 0; i < nall; i++)
        if (in[i] && alive(&all[i]))
            n += kill(all[i].pid, SIGKILL) == 0;
    free(in);
    free(all);
    return n;
}

/* One scan of /proc: grows the set (see the file comment), sends `sig` to the members that are
 * alive (all of them, or only those found by this scan when `only_new`), and returns how many
 * members are alive. */
static size_t sweep(struct exec_proc *p, int sig, int only_new)
{
    struct exec__kill *k = p->kill;
    struct pstat *all = NULL;
    int *in = NULL;
    size_t nall = 0, nalive = 0, ncg = 0;
    pid_t cg[1024], self = getpid();
    const char *cgdir = exec__proc_cgroup(p);

    if (cgdir != NULL)
        ncg = cgroup_pids(cgdir, cg, sizeof cg / sizeof cg[0]);
    if ((all = scan_proc(&nall)) == NULL)
        return 0;
    in = xcalloc(nall > 0 ? nall : 1, sizeof *in);
    for (size_t i = 0; i < nall; i++) {
        const struct pstat *st = &all[i];
        if (st->pid == self)
            continue;
        in[i] =
            tracked_has(k, st->pid, st->start) || (!p->exited && (st->pgrp == p->pid || st->sid == p->pid));
        for (size_t j = 0; j < ncg && !in[i]; j++)
            in[i] = cg[j] == st->pid;
    }
    grow_children(all, nall, in, self);
    for (size_t i = 0; i < nall; i++) {
        int fresh;
        if (!in[i])
            continue;
        fresh = !tracked_has(k, all[i].pid, all[i].start);
        if (fresh)
            tracked_add(k, all[i].pid, all[i].start);
        if (!alive(&all[i]))
            continue;
        nalive++;
        if (sig != 0 && (fresh || !only_new)) {
            kill(all[i].pid, sig);
            if (sig == SIGTERM)
                kill(all[i].pid, SIGCONT);
        }
    }
    free(in);
    free(all);
    return nalive;
}

static void kill_done(struct exec_proc *p, size_t left)
{
    p->kill->finished = 1;
    p->kill->left = left;
    uv_timer_stop(&p->kill_timer);
    if (left > 0)
        exec__log(p->env, "error", "kill of process group %d: %zu processes survived SIGKILL", (int)p->pid,
                  left);
    exec__proc_check_done(p);
}

/* SIGKILL to the group (while its leader pins the id) and to every member found so far. */
static void kill_now(struct exec_proc *p)
{
    struct exec__kill *k = p->kill;

    k->escalated = 1;
    if (!p->exited)
        kill(-p->pid, SIGKILL);
    for (size_t i = 0; i < k->n; i++)
        kill(k->set[i].pid, SIGKILL);
}

/* SIGTERM (and SIGCONT, so stopped ones can act on it) to the group while its leader pins the id;
 * the caller signals the members. */
static void kill_term_group(struct exec_proc *p)
{
    p->kill->termed = 1;
    if (!p->exited) {
        kill(-p->pid, SIGTERM);
        kill(-p->pid, SIGCONT);
    }
}

static void on_kill_tick(uv_timer_t *t)
{
    struct exec_proc *p = t->data;
    struct exec__kill *k = p->kill;
    uint64_t elapsed_ms = (clock_mono_us() - k->start_us) / 1000;
    size_t n;

    if (!k->escalated && elapsed_ms >= k->grace_ms) {
        kill_now(p);
        n = sweep(p, SIGKILL, 0);
    } else if (!k->termed && elapsed_ms >= k->term_ms) {
        kill_term_group(p);
        n = sweep(p, SIGTERM, 0); /* the members alive now: pids are checked with start times */
    } else {
        /* Newcomers get the signal of the current step (none before the SIGTERM); the rest already
         * had it. */
        n = sweep(p, k->escalated ? SIGKILL : k->termed ? SIGTERM : 0, !k->escalated);
    }
    if (n == 0)
        kill_done(p, 0);
    else if (k->escalated && elapsed_ms >= k->grace_ms + KILL_GIVE_UP_MS)
        kill_done(p, n);
}

void exec_proc_kill_after(struct exec_proc *p, uint64_t term_ms, uint64_t grace_ms, exec_kill_cb cb,
                          void *arg)
{
    struct exec__kill *k;
    struct pstat st;

    if (p->done)
        return;
    term_ms = term_ms < grace_ms ? term_ms : grace_ms;
    if ((k = p->kill) != NULL) {
        /* A kill in progress: a shorter delay brings its SIGTERM or SIGKILL forward. */
        if (!k->finished && !k->escalated &&
            (grace_ms < k->grace_ms || (!k->termed && term_ms < k->term_ms))) {
            k->grace_ms = grace_ms < k->grace_ms ? grace_ms : k->grace_ms;
            k->term_ms = term_ms < k->term_ms ? term_ms : k->term_ms;
            uv_timer_start(&p->kill_timer, on_kill_tick, 0, KILL_POLL_MS);
        }
        return;
    }
    k = xcalloc(1, sizeof *k);
    k->cb = cb;
    k->arg = arg;
    k->term_ms = term_ms;
    k->grace_ms = grace_ms;
    k->start_us = clock_mono_us();
    p->kill = k;
    /* The leader goes first in the report, even when it is already a zombie. */
    if (read_stat(p->pid, &st) == 0)
        tracked_add(k, p->pid, st.start);
    /* Find first, signal second: once the leader dies its children are reparented and the
     * parent links that lead to setsid()ed descendants are gone. Until the SIGTERM, every scan
     * only adds what appeared (the leader may end by itself: its processes are known already). */
    (void)sweep(p, 0, 0);
    if (grace_ms == 0) {
        kill_now(p);
        uv_timer_start(&p->kill_timer, on_kill_tick, KILL_FIRST_CHECK_MS, KILL_POLL_MS);
        return;
    }
    if (term_ms == 0) {
        kill_term_group(p);
        for (size_t i = 0; i < k->n; i++) {
            kill(k->set[i].pid, SIGTERM);
            kill(k->set[i].pid, SIGCONT);
        }
    }
    uv_timer_start(&p->kill_timer, on_kill_tick, KILL_POLL_MS, KILL_POLL_MS);
}

void exec_proc_kill(struct exec_proc *p, uint64_t grace_ms, exec_kill_cb cb, void *arg)
{
    exec_proc_kill_after(p, 0, grace_ms, cb, arg);
}

int exec__kill_busy(const struct exec_proc *p) { return p->kill != NULL && !p->kill->finished; }

void exec__kill_finish(struct exec_proc *p)
{
    struct exec__kill *k = p->kill;
    struct exec_kill_report r = {0};
    pid_t *pids;

    if (k == NULL)
        return;
    assert(k->finished); /* the report goes out once the kill is over */
    pids = xcalloc(k->n > 0 ? k->n : 1, sizeof *pids);
    for (size_t i = 0; i < k->n; i++)
        pids[i] = k->set[i].pid;
    r.pids = pids;
    r.npids = k->n;
    r.escalated = k->escalated;
    r.left = k->left;
    r.elapsed_us = clock_mono_us() - k->start_us;
    p->kill = NULL;
    if (k->cb != NULL)
        k->cb(k->arg, p, &r);
    free(pids);
    free(k->set);
    free(k);
}
