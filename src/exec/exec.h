/*
 * exec — the execution environment of a session: where and how its programs run.
 *
 * An environment is one workspace directory plus the rules every program started in it obeys:
 * exactly the environment variables the session declared (nothing is inherited from agentd),
 * resource limits (setrlimit, and cgroup v1 memory/pids limits where the hierarchy is writable),
 * and optionally a bubblewrap sandbox (workspace read-write, / read-only, a private /tmp, the
 * network shared or not). Programs are started with exec_spawn() and talk to the caller through
 * pipes read on the caller's libuv loop; exec is the one place that starts, watches and kills
 * them (agents' runs and runtimes' interpreters alike), and the one place that looks programs up
 * (exec_env_find_program). A workspace watcher reports file changes in batches.
 *
 * Invariants:
 * - Every program is the leader of its own session and process group (pid == pgid), with
 *   PR_SET_PDEATHSIG = SIGKILL, and agentd's one guard process (outside every group) SIGKILLs the
 *   group (and the program's cgroup, when it has one) if agentd dies. Nothing started here outlives
 *   agentd.
 * - When a program's leader exits, whatever is left of its process group is SIGKILLed at once
 *   (the zombie leader still pins the group id, so the kill cannot reach an unrelated group).
 * - exec_proc_kill() SIGTERMs the group and every descendant it can find (members of the group
 *   and of the leader's session, the environment's cgroup, and processes whose parent chain leads
 *   to one of those, which catches children that setsid()ed away while their parent lived),
 *   SIGKILLs whatever is left after the grace period, then scans /proc until none of them is
 *   alive and reports what it killed.
 * - Each process gets exactly one exit callback, after its stdout and stderr have been delivered
 *   (or after a short drain period when something that escaped the group keeps a pipe open).
 *   The proc is freed right after that callback returns.
 * - Status changes of the environment are reported through its event callback with the names
 *   the transcript's `status` events use: inactive → starting → ready | error → terminated.
 * - Not thread-safe: every function must be called on the loop's thread. The caller must ignore
 *   SIGPIPE (agentd serve does), as with any libuv program that writes to pipes.
 */
#ifndef AGENTD_EXEC_H
#define AGENTD_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/core.h"

#define EXEC_DEFAULT_LINE_MAX 8192u /* stderr lines longer than this are cut */
#define EXEC_DEFAULT_GRACE_MS 1000u
#define EXEC_BWRAP_PATH       "/usr/bin/bwrap" /* the bubblewrap program unless told otherwise */

struct uv_loop_s;
struct exec_env;
struct exec_proc;

/* ---- the environment ------------------------------------------------------------------ */

enum exec_status {
    EXEC_STATUS_INACTIVE,   /* created, not started */
    EXEC_STATUS_STARTING,   /* checking the workspace, creating cgroups, probing the sandbox */
    EXEC_STATUS_READY,      /* programs can be spawned */
    EXEC_STATUS_ERROR,      /* the environment could not be set up; `message` says why */
    EXEC_STATUS_TERMINATED, /* closed: every process of it is gone */
};

/* "inactive", "starting", "ready", "error", "terminated". */
const char *exec_status_name(enum exec_status status);

enum exec_sandbox {
    EXEC_SANDBOX_NONE,
    EXEC_SANDBOX_BWRAP, /* bubblewrap: see exec_env_opts.bwrap_* */
};

/* Resource limits. 0 means unlimited (the limit is left as agentd has it). */
struct exec_limits {
    uint64_t as_bytes;        /* RLIMIT_AS: address space */
    uint64_t nproc;           /* RLIMIT_NPROC (not enforced for root: use cg_pids there) */
    uint64_t cpu_seconds;     /* RLIMIT_CPU: SIGXCPU, then SIGKILL one second later */
    uint64_t fsize_bytes;     /* RLIMIT_FSIZE: writing past it raises SIGXFSZ */
    uint64_t nofile;          /* RLIMIT_NOFILE */
    uint64_t cg_memory_bytes; /* cgroup v1 memory.limit_in_bytes for the whole environment */
    uint64_t cg_pids;         /* cgroup v1 pids.max for the whole environment */
};

enum exec_event_type {
    EXEC_EVENT_STATUS, /* status changed; `message` is a reason (may be NULL) */
    EXEC_EVENT_LOG,    /* something the caller may want in its log; `level` and `message` */
};

/* Borrowed: valid only during the callback. */
struct exec_event {
    enum exec_event_type type;
    enum exec_status status; /* the current status (for LOG events too) */
    const char *level;       /* LOG: "error", "warn", "info" or "debug" */
    const char *message;
    uint64_t elapsed_us; /* STATUS ready/error: time since exec_env_start */
};
typedef void (*exec_event_cb)(void *arg, struct exec_env *env, const struct exec_event *ev);

struct exec_env_opts {
    const char *workspace; /* an existing directory; made absolute. Copied. */
    char *const *env;      /* NULL-terminated "K=V" list passed exactly; NULL = empty. Copied. */
    struct exec_limits limits;
    int cgroup; /* use a cgroup even without cg_* limits: the kill then also finds
                                  processes that left the group and were orphaned. Implied by a
                                  cg_* limit. Skipped (with a LOG event) when not writable. */
    enum exec_sandbox sandbox;
    int bwrap_share_net;    /* bwrap: keep the host network (default: unshared, loopback only) */
    const char *bwrap_path; /* bwrap: the program; NULL = EXEC_BWRAP_PATH. Copied. */
    const char *name;       /* for log lines and the cgroup's name, e.g. a session id. Copied. */
    exec_event_cb on_event; /* may be NULL */
    void *arg;
};

/* Creates an inactive environment on `loop`. The options are copied. Returns 0, -EINVAL (no
 * workspace), or -ENOMEM never (allocation failure aborts). Free with exec_env_close(). */
int exec_env_new(struct uv_loop_s *loop, const struct exec_env_opts *opts,
                 struct exec_env **out) CORE_UNUSED_RESULT;

/* Starts the environment: reports `starting` at once (inside this call), then `ready` or `error`
 * from the loop: checks the workspace, creates the cgroups, and with bwrap runs /bin/true in the
 * sandbox once so a broken sandbox is an environment error, not a spawn error. 0 or -EALREADY. */
int exec_env_start(struct exec_env *env) CORE_UNUSED_RESULT;

enum exec_status exec_env_status(const struct exec_env *env);
/* The absolute workspace path. Borrowed for the environment's lifetime. */
const char *exec_env_workspace(const struct exec_env *env);
/* True when the environment's processes are in cgroups of its own. */
int exec_env_has_cgroup(const struct exec_env *env);
/* Why the environment is in `error` (the message of that status event), else NULL. Borrowed. */
const char *exec_env_error(const struct exec_env *env);
/* The environment's cgroup directories (one per controller it got; they hold its cg_* limits;
 * each program gets a cgroup of its own inside them), for diagnostics and tests. Set up inside
 * exec_env_start, so available from then until exec_env_close. Borrowed. Returns how many were
 * stored in dirs (at most cap). */
size_t exec_env_cgroup_dirs(const struct exec_env *env, const char **dirs, size_t cap);

/* A wait for an environment to finish starting. The caller embeds it (like a uv_req) and owns
 * it; the environment borrows it until its callback has run or exec_env_wait_cancel. */
struct exec_env_wait;
/* `status` is EXEC_STATUS_READY, EXEC_STATUS_ERROR, or EXEC_STATUS_TERMINATED when the
 * environment is being closed (nothing can start in it any more; do not call it again). */
typedef void (*exec_wait_cb)(void *arg, struct exec_env *env, enum exec_status status);
struct exec_env_wait {
    struct exec_env_wait *next; /* private to exec */
    exec_wait_cb cb;
    void *arg;
};
/* Calls cb once, from the loop, when env reports `ready` or `error`, or from inside
 * exec_env_close. Only for an environment still inactive or starting (asserted); the caller must
 * not reuse w before its callback ran or it was cancelled. */
void exec_env_wait(struct exec_env *env, struct exec_env_wait *w, exec_wait_cb cb, void *arg);
/* Forgets w (no callback). A no-op when w is not waiting. */
void exec_env_wait_cancel(struct exec_env *env, struct exec_env_wait *w);

/* Looks a program up as exec_spawn does for argv[0]: a name with a slash is taken as is
 * (relative to the workspace); a bare name is searched on the environment's PATH (its own, from
 * the declared variables; "/usr/local/bin:/usr/bin:/bin" without one), then on agentd's PATH (the
 * program then runs with its directory added to its PATH). A script whose `#!/usr/bin/env NAME`
 * names an interpreter found on neither PATH is not found either. On success *path is the
 * absolute path (malloc'd: free it). 0, -ENOENT (not found), -EACCES (found, not executable),
 * -ENAMETOOLONG. */
int exec_env_find_program(const struct exec_env *env, const char *name, char **path) CORE_UNUSED_RESULT;

typedef void (*exec_close_cb)(void *arg);
/* Kills every process of the environment (SIGTERM, SIGKILL after grace_ms), stops the watcher,
 * removes the cgroups, reports `terminated`, and frees it; `cb` (may be NULL) runs last, after
 * every proc's exit callback. The env must not be used after this call. NULL is a no-op. */
void exec_env_close(struct exec_env *env, uint64_t grace_ms, exec_close_cb cb, void *arg);

/* ---- processes ------------------------------------------------------------------------ */

/* How a process ended. Borrowed: valid only during the exit callback. */
struct exec_exit {
    int status; /* exit status, or -1 when killed by a signal */
    int signal; /* the signal that killed it, or 0 */
    int core_dumped;
    uint64_t duration_us;
};

/* What exec_proc_kill() did. Borrowed: valid only during the callback. */
struct exec_kill_report {
    const pid_t *pids; /* every process found and signalled, the leader first */
    size_t npids;
    int escalated; /* SIGKILL was needed after the grace period */
    size_t left;   /* processes still alive when verification gave up (should be 0) */
    uint64_t elapsed_us;
};

/* stdout: raw bytes, exactly as written, in order. */
typedef void (*exec_data_cb)(void *arg, struct exec_proc *p, const char *data, size_t len);
/* stderr: one line without its newline. `eol` is false when the line was cut at line_max (the
 * rest follows in the next call) or is the last bytes before end of file without a newline, so
 * line + (eol ? "\n" : "") over all calls is exactly what the program wrote. */
typedef void (*exec_line_cb)(void *arg, struct exec_proc *p, const char *line, size_t len, int eol);
typedef void (*exec_exit_cb)(void *arg, struct exec_proc *p, const struct exec_exit *ex);
typedef void (*exec_kill_cb)(void *arg, struct exec_proc *p, const struct exec_kill_report *r);

/* One more descriptor for a program: our `parent` descriptor becomes its `child`. */
struct exec_fd {
    int child;  /* 0 (replaces the stdin pipe) or above 2 */
    int parent; /* a descriptor of ours, or EXEC_FD_STDOUT */
};
#define EXEC_FD_STDOUT     (-2) /* parent: the program's own stdout pipe, as a second descriptor */
#define EXEC_SPAWN_FDS_MAX 4

struct exec_spawn_opts {
    exec_data_cb on_stdout;      /* may be NULL: output is drained and dropped */
    exec_line_cb on_stderr;      /* may be NULL */
    exec_data_cb on_stderr_data; /* stderr as raw bytes instead of lines (then on_stderr must be
                                    NULL); for callers that frame output themselves */
    exec_exit_cb on_exit;        /* may be NULL */
    void *arg;
    size_t line_max;           /* 0 = EXEC_DEFAULT_LINE_MAX */
    char *const *env_extra;    /* NULL-terminated "K=V" added to (or replacing in) the environment's
                                      list for this program only (e.g. an agent's run settings) */
    const struct exec_fd *fds; /* more descriptors for the program (at most EXEC_SPAWN_FDS_MAX),
                                    e.g. a control socket; borrowed for the call: the caller closes
                                    its copies once exec_spawn returned. With one at child 0 there
                                    is no stdin pipe (exec_proc_write answers -EPIPE). */
    size_t nfds;
    char *why; /* may be NULL: when exec_spawn fails, a sentence saying why (e.g. the PATHs
                       searched for a program not found), cut to why_cap bytes with its NUL; ""
                       when the errno says it all */
    size_t why_cap;
};

/* Starts argv[0] (looked up as exec_env_find_program says) with argv, in the workspace, in its
 * own process group, sandboxed and limited as the environment says, with the environment's
 * variables (PATH extended when the lookup went to agentd's PATH). stdin is a pipe written with
 * exec_proc_write(). Returns 0 and the live proc, -EAGAIN when the environment is not ready,
 * -ENOENT / -EACCES when the program is not found or not executable (opts->why says where it was
 * looked for), or another negative errno from pipe/fork; nothing is left behind on failure. */
int exec_spawn(struct exec_env *env, char *const *argv, const struct exec_spawn_opts *opts,
               struct exec_proc **out) CORE_UNUSED_RESULT;

pid_t exec_proc_pid(const struct exec_proc *p);

/* Sends sig to what runs in the program: its process group; in a bwrap sandbox, every process of
 * its session except bwrap's outer process (the leader), which would die of it and take the
 * sandbox along, while an interactive shell inside makes a group of its own that the leader's
 * group does not reach. 0, or -ESRCH once the leader has exited. */
int exec_proc_signal(struct exec_proc *p, int sig);

/* Reads what the program's stderr pipe holds right now, without waiting, and delivers it through
 * the stderr callback before returning: for callers that just learned on stdout that the program
 * wrote its stderr before (a completion marker). No-op after end of file. */
void exec_proc_read_stderr(struct exec_proc *p);

/* Queues bytes for stdin (copied). 0, or -EPIPE once stdin is closed or the process ended. */
int exec_proc_write(struct exec_proc *p, const void *data, size_t len) CORE_UNUSED_RESULT;
/* Closes stdin once the queued writes are written. Idempotent. */
void exec_proc_close_stdin(struct exec_proc *p);

/* SIGTERM to the group and its known descendants, SIGKILL after grace_ms (0: SIGKILL at once),
 * then verification (see the invariants). `cb` (may be NULL) runs once, just before the exit
 * callback. A second call while a kill is in progress only brings its SIGKILL forward to
 * grace_ms after the first call, if that is sooner (its cb is ignored); after exit it is not
 * allowed (the proc is gone). */
void exec_proc_kill(struct exec_proc *p, uint64_t grace_ms, exec_kill_cb cb, void *arg);
/* exec_proc_kill with the SIGTERM term_ms after the call (at most grace_ms): the processes are
 * found at once, while their parent links still lead to them, and the program may end by itself
 * meanwhile (a line on its stdin asked it to) without losing track of what it started. A second
 * call brings the SIGTERM forward too, if sooner. */
void exec_proc_kill_after(struct exec_proc *p, uint64_t term_ms, uint64_t grace_ms, exec_kill_cb cb,
                          void *arg);

/* SIGKILLs, now and without a grace period, every program exec started that is still running in
 * this process (each one's process group and cgroup: what the guard would kill if agentd died),
 * for a process about to exit that must leave nothing running behind it (a node that lost its
 * write lease). Nothing is reaped or reported: the caller exits next. Any thread. Returns the
 * number of programs signalled. */
size_t exec_kill_all(void);

/* ---- the workspace watcher ------------------------------------------------------------ */

enum exec_file_kind {
    EXEC_FILE_CREATED,
    EXEC_FILE_MODIFIED,
    EXEC_FILE_DELETED,
    EXEC_FILE_OVERFLOW
};

/* "created", "modified", "deleted", "overflow". */
const char *exec_file_kind_name(enum exec_file_kind kind);

/* One coalesced change. `path` is relative to the workspace ("" for OVERFLOW: the kernel dropped
 * events, so anything may have changed). */
struct exec_file_change {
    const char *path;
    enum exec_file_kind kind;
};
/* A batch, in the order paths first changed. Borrowed: valid only during the callback. */
typedef void (*exec_watch_cb)(void *arg, struct exec_env *env, const struct exec_file_change *changes,
                              size_t n);

/* Watches the workspace recursively (new directories are added as they appear; .git and
 * node_modules are skipped). Changes to one path within a window are coalesced (created then
 * modified is created, created then deleted is nothing, deleted then created is modified), and
 * at most one batch is reported per rate_ms: a batch goes out rate_ms after the first change it
 * holds. 0, -EALREADY, or a negative errno from inotify. */
int exec_watch_start(struct exec_env *env, uint64_t rate_ms, exec_watch_cb cb, void *arg) CORE_UNUSED_RESULT;
/* Reports now what changed so far: reads what the kernel has queued for the watcher (every change
 * a process made before this call, e.g. one that has exited or answered since) and calls cb with
 * the batch at once, without waiting for rate_ms (nothing when nothing changed). For the end of a
 * unit of work whose changes must be reported before its end is. No-op without a watcher. */
void exec_watch_flush(struct exec_env *env);
/* Stops watching; pending changes are dropped. Idempotent. The watcher's handles close on the
 * next loop turn; exec_watch_start returns -EALREADY until then. */
void exec_watch_stop(struct exec_env *env);

/* ---- helpers -------------------------------------------------------------------------- */

/* Guesses the log level of one line of a program's stderr from its first words: "error",
 * "warn", "info" or "debug" (static strings). Understands plain prefixes ("Error:", "WARNING",
 * "npm ERR!"), bracketed ones ("[warn]"), logfmt/JSON levels ("level=debug", "\"level\":\"error\"")
 * and glog's "E0102 ..." form. Lines it cannot place are "info". */
const char *exec_log_level(const char *line, size_t len);

/* ---- directory trees (tree.c): blocking, for the thread pool ---- */

/* Copies what is in `from` into the existing directory `to` (cp -a, reflinks where the filesystem
 * has them). 0 or a negative errno. */
int exec_tree_copy(const char *from, const char *to) CORE_UNUSED_RESULT;
/* Removes the tree at path, never following symlinks nor entering other filesystems. 0 (also when
 * it did not exist) or a negative errno when something is left. */
int exec_tree_remove(const char *path) CORE_UNUSED_RESULT;

#endif
