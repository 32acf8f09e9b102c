/*
 * exec internals shared by the files of src/exec/ — not for other modules.
 *
 * Objects and who owns them:
 *   struct exec_env    env.c    options (copied), status, the cgroup directories, the list of
 *                               live procs, the watcher. Freed by exec_env_close once every proc,
 *                               the watcher and its own timer are gone (exec__env_maybe_free).
 *   struct exec_proc   proc.c   one program (started by spawn.c): pipes, pidfd, stderr line
 *                               buffer.
 *                               Linked in its env's list from spawn until its handles are closed;
 *                               freed by the last close callback.
 *   struct exec__kill  kill.c   one kill in progress: the processes found so far and the
 *                               escalation / verification timer state. Owned by its proc.
 *   struct exec__watch watch.c  the inotify watcher. Owned by the env; freed by the last close
 *                               callback of its handles.
 * spawn.c starts programs, with lookup.c finding them and child.c as the vfork-and-exec half;
 * guard.c keeps the one guard process (process-wide state under its own mutex).
 */
#ifndef AGENTD_EXEC_INT_H
#define AGENTD_EXEC_INT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "exec/exec.h"

/* The cgroup v1 controllers an environment may use, in the order of exec_env.cg_dir. */
enum {
    EXEC__CG_PIDS,
    EXEC__CG_MEMORY,
    EXEC__CG_N
};

struct exec__watch;
struct exec__kill;

struct exec_env {
    uv_loop_t *loop;
    char *workspace;      /* absolute, owned */
    char **envp;          /* owned NULL-terminated copy of opts.env */
    const char *path_var; /* the value of PATH in envp, or NULL (points into envp) */
    struct exec_limits limits;
    int want_cgroup;
    enum exec_sandbox sandbox;
    int share_net;
    char *bwrap; /* owned */
    char *name;  /* owned; never NULL */
    exec_event_cb on_event;
    void *arg;

    enum exec_status status;
    uint64_t start_us;
    const char *start_error;     /* static reason the start failed, reported from the timer */
    char *error;                 /* owned: the message of the `error` status, once reported */
    struct exec_env_wait *waits; /* exec_env_wait callers until ready / error / close */
    char *cg_dir[EXEC__CG_N];    /* owned; NULL where the controller is unused */
    unsigned proc_seq;           /* names the per-proc cgroups */

    struct exec_proc *procs;   /* live procs (linked through exec_proc.next) */
    struct exec_proc *probe;   /* the bwrap probe while it runs */
    struct exec__watch *watch; /* NULL when not watching */
    uv_timer_t timer;          /* defers `ready` to the loop; closed by exec_env_close */
    int closing, timer_closed;
    uint64_t close_grace_ms;
    exec_close_cb close_cb;
    void *close_arg;
};

struct exec_proc {
    struct exec_env *env; /* borrowed back-pointer */
    struct exec_proc *next;
    pid_t pid;                /* also the process group and session id */
    int pidfd;                /* owned; closed after its poll handle */
    char *cg_dir[EXEC__CG_N]; /* owned per-proc cgroups inside the env's, or NULL */
    uv_pipe_t in, out, err;
    uv_poll_t pid_poll;
    uv_timer_t drain_timer; /* after the leader is reaped: how long to wait for pipe EOF */
    uv_timer_t kill_timer;  /* kill.c: grace period and verification polling */
    int open_handles;
    int has_in;              /* a stdin pipe was made (no exec_fd at child 0) */
    int in_open, in_closing; /* stdin handle state */
    size_t writes_pending;

    exec_data_cb on_stdout;
    exec_line_cb on_stderr;
    exec_data_cb on_stderr_data;
    exec_exit_cb on_exit;
    void *arg;
    int probe; /* the env's bwrap probe: its exit decides ready / error */

    char *line; /* stderr line buffer of line_max bytes, owned */
    size_t line_len, line_max;
    char last_err[256]; /* the last stderr line, for the probe's error message */

    uint64_t start_us;
    int wstatus;
    int exited, out_eof, err_eof, drained, done; /* exited: the leader is reaped */
    struct exec__kill *kill;                     /* non-NULL while a kill is in progress or being reported */
    char rbuf[64 * 1024];                        /* read buffer shared by stdout and stderr */
};

/* ---- env.c ------------------------------------------------------------------------------ */

/* Reports a LOG event (printf-style message). */
void exec__log(struct exec_env *env, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The probe finished: its exit status decides ready or error. */
void exec__env_probe_done(struct exec_env *env, const struct exec_exit *ex, const char *last_err);
/* A proc was unlinked and freed, or the watcher freed: frees a closing env when nothing is left. */
void exec__env_maybe_free(struct exec_env *env);

/* ---- spawn.c ---------------------------------------------------------------------------- */

/* exec_spawn without the ready check; `probe` marks the env's sandbox probe. */
int exec__spawn(struct exec_env *env, char *const *argv, const struct exec_spawn_opts *opts, int probe,
                struct exec_proc **out);

struct exec_child;
/* The bubblewrap command line that runs program (with argv[1...]) as the environment's sandbox
 * does: / read-only, fresh /dev, /proc and /tmp, the workspace bound read-write on top (after
 * /tmp, so a workspace under /tmp stays visible) and the working directory, new pid and ipc
 * namespaces (the whole sandbox dies with its first process), the network unshared unless
 * share_net, bwrap's own death tied to its parent's. Inherited descriptors pass through. A
 * malloc'd array of borrowed strings. */
char **exec__bwrap_argv(const char *bwrap, const char *workspace, int share_net, const char *program,
                        char *const *argv);
/* Fills c's rlimits from the per-process part of l (as_bytes, nproc, cpu_seconds, fsize_bytes,
 * nofile; 0 leaves one as agentd has it). A limit above agentd's own hard limit is lowered to it:
 * raising it would need privilege and would make nothing stricter. */
void exec__limits_rlimits(const struct exec_limits *l, struct exec_child *c);

/* ---- proc.c ----------------------------------------------------------------------------- */

/* Starts watching a freshly spawned p (pid and pidfd set): takes the parent's ends
 * of its pipes (in_fd -1 when it has no stdin pipe) into libuv handles and starts reading. */
void exec__proc_watch(struct exec_proc *p, int in_fd, int out_fd, int err_fd);
/* Called by kill.c when its report went out: the proc may complete now. */
void exec__proc_check_done(struct exec_proc *p);

/* ---- kill.c ----------------------------------------------------------------------------- */

/* Whether a kill is still running (its callback has not gone out). */
int exec__kill_busy(const struct exec_proc *p);
/* Delivers the kill report (if any) before the exit callback; frees the kill state. */
void exec__kill_finish(struct exec_proc *p);
/* Sends sig to every live process of session sid except `except` (one scan of /proc); returns
 * how many were signalled. */
size_t exec__session_signal_except(pid_t sid, pid_t except, int sig);
/* Sends sig to every process in a cgroup.procs file; returns how many were signalled. */
size_t exec__cgroup_signal(const char *dir, int sig);
/* SIGKILLs every live process in one of `groups` (as process group or session) and every
 * descendant of those found in one scan of /proc (children that setsid()ed away while their parent
 * lived). The group ids must still be pinned by their unreaped leaders. Returns how many. */
size_t exec__kill_tree(const pid_t *groups, size_t ngroups);
/* The proc's own cgroup directory to list its processes from (pids preferred), or NULL. */
const char *exec__proc_cgroup(const struct exec_proc *p);

/* ---- guard.c ------------------------------------------------------------------------------ */

/* Tells the guard (started first if there is none) to SIGKILL group pgid and the processes of
 * cg_dir (NULL: none) if agentd dies. 0 or -errno (no guard could be started). */
int exec__guard_add(pid_t pgid, const char *cg_dir);
/* Tells the guard to forget pgid; call before the leader is reaped. */
void exec__guard_forget(pid_t pgid);
/* Parses one entry of a message to the guard: op '+' (with *cg_dir, or NULL) or '-', and a pgid
 * above 1. 0 or -EINVAL; *cg_dir points into entry. */
int exec__guard_parse(const char *entry, char *op, pid_t *pgid, const char **cg_dir);
/* The guard's pid (0 before the first one), for tests. */
pid_t exec__guard_pid(void);

/* ---- lookup.c ----------------------------------------------------------------------------- */

#define EXEC__PROGRAM_DIRS 2
#define EXEC__DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin" /* for an environment without PATH */

/* What a lookup found: the program, and the directories its PATH needs besides the session's
 * (its own when it came from agentd's PATH, its interpreter's). */
struct exec__program {
    char path[PATH_MAX]; /* absolute */
    char dirs[EXEC__PROGRAM_DIRS][PATH_MAX];
    size_t ndirs;
};

/* Looks `name` up for a program that will run with `session_path` as its PATH (NULL: the
 * default). 0, or a negative errno with a sentence in why (which may be NULL). */
int exec__lookup(const struct exec_env *env, const char *session_path, const char *name,
                 struct exec__program *prog, char *why, size_t why_cap);

/* ---- watch.c ---------------------------------------------------------------------------- */

/* Closes the watcher's handles; exec__env_maybe_free runs when they are closed. */
void exec__watch_close(struct exec_env *env);

#endif
