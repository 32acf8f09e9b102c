/*
 * exec/child — vfork and exec one program that must not outlive agentd: the child half of every
 * spawn in exec/ (and so of every program agentd starts; other modules go through exec_spawn).
 *
 * Between vfork and exec the child, in this order: resets every signal disposition to the
 * default (handlers and ignores of agentd must not leak into the program), becomes the leader of
 * a new session and process group (pid == pgid == sid), arms PR_SET_PDEATHSIG = SIGKILL (and
 * exits if agentd is already gone), places the requested descriptors, joins cgroups by writing
 * its pid into the given cgroup.procs descriptors, applies rlimits, closes every other
 * descriptor, changes directory, unblocks signals and execs. The child uses async-signal-safe
 * calls only. A failure after the descriptors are placed is reported on the child's fd 2 as
 * "agentd: exec: <step> <path>: errno N" and exit status 127.
 */
#ifndef AGENTD_EXEC_CHILD_H
#define AGENTD_EXEC_CHILD_H

#include <sys/resource.h>
#include <sys/types.h>

#include "core/core.h"

#define EXEC_CHILD_MAP_MAX    8
#define EXEC_CHILD_RLIMIT_MAX 8
#define EXEC_CHILD_JOIN_MAX   4

/* One descriptor to place: our `parent` descriptor becomes `child` in the program. */
struct exec_child_fd {
    int child;
    int parent;
};

struct exec_child_rlimit {
    int resource;
    struct rlimit value;
};

/* Everything the child needs, prepared by the parent before vfork (the child allocates nothing).
 * Borrowed by exec_child_spawn for the duration of the call. */
struct exec_child {
    const char *path; /* absolute or relative to cwd: no PATH search here */
    char *const *argv;
    char *const *envp;
    const char *cwd; /* NULL: stay in agentd's directory */
    struct exec_child_fd map[EXEC_CHILD_MAP_MAX];
    int nmap;
    int join[EXEC_CHILD_JOIN_MAX]; /* open cgroup.procs descriptors to write our pid into */
    int njoin;
    struct exec_child_rlimit rlimit[EXEC_CHILD_RLIMIT_MAX];
    int nrlimit;
    int pdeathsig; /* SIGKILL when agentd's forking thread dies */
};

/* Starts the program (vfork: the calling thread waits until the child has exec'd or failed);
 * *pid is the child (and its group and session id). Every signal is blocked in the parent across
 * vfork. 0 or a negative errno from vfork; exec failures show as the child's exit status 127. */
int exec_child_spawn(const struct exec_child *spec, pid_t *pid) CORE_UNUSED_RESULT;

/* Tests only: nonzero makes the child close descriptors one by one up to RLIMIT_NOFILE, as it
 * does on kernels without close_range(2) (before 5.9). */
extern int exec_child_no_close_range;

/* pidfd_open(2): a descriptor that turns readable when `pid` exits. Descriptor or negative errno. */
int exec_child_pidfd(pid_t pid);

#endif
