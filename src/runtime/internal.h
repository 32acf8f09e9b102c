/* runtime internals shared by the files of src/runtime/ — not for other modules.
 *
 * Objects and who owns them:
 *   struct runtime        runtime.c  the public handle: options, call queue, timers, history,
 *                                    and a list of every process it started that is not freed.
 *   struct runtime__proc  proc.c     one interpreter process (plus its guard): pipes, pidfds,
 *                                    its stop/kill escalation. Owned by the runtime's list; freed
 *                                    by the last close callback of its handles.
 *   struct runtime__call  runtime.c  one queued exec/state/init request with its captures.
 *
 * Wiring: proc.c reports bytes, end of file and "everything reaped" back through
 * runtime__on_data() and runtime__on_proc_done(); runtime.c decides what they mean for the
 * current call. A language (lang_*.c) only knows how to start its driver and phrase a request.
 */
#ifndef AGENTD_RUNTIME_INTERNAL_H
#define AGENTD_RUNTIME_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "runtime/runtime.h"

/* Child-side descriptor numbers. High enough that user code using 3..9 does not collide. */
#define RUNTIME__CTL_FD      61 /* request socket for python/node (bash reads requests on fd 0) */
#define RUNTIME__CODE_FD     62 /* memfd holding the code of the current request */
/* A second descriptor on the stdout pipe: drivers write their completion markers there, so code
 * that closes or redirects fd 1 (or the language's stdout object) cannot silence them. */
#define RUNTIME__MARK_FD     63
#define RUNTIME__MARK_FD_STR "63" /* the same, for driver code */

/* Completion marker: "\x1e" NONCE ":" STATUS FLAGS "\n", written to RUNTIME__MARK_FD after the call's
 * output. FLAGS are letters saying what the code broke: RUNTIME__FLAG_STDOUT when its stdout
 * (fd 1 or the language's stream object) is closed, RUNTIME__FLAG_STDERR likewise for stderr. */
#define RUNTIME__FLAG_STDOUT "o"
#define RUNTIME__FLAG_STDERR "e"

#define RUNTIME__NONCE_LEN     32   /* hex characters (128 bits) */
#define RUNTIME__NONCE_LEN_STR "32" /* the same, for driver code */
#define RUNTIME__NEEDLE_MAX    (RUNTIME__NONCE_LEN + 2)

/* ---- frame.c: nonces, marker scanning and bounded capture ---------------------------------- */

/* Fills `hex` with RUNTIME__NONCE_LEN random hex digits and a NUL, from getrandom(2). */
void runtime__nonce(char hex[RUNTIME__NONCE_LEN + 1]);

/* Finds one needle in a byte stream that arrives in pieces. The needle's first byte must not
 * occur again inside it (markers start with \x1e and continue in hex), which lets a failed partial
 * match restart at the current byte with no back-tracking table. Bytes that are not part of the
 * needle are passed to `emit` in order; bytes of a partial match are held back (they are known:
 * a prefix of the needle) until the match fails or completes. */
struct runtime__scan {
    char needle[RUNTIME__NEEDLE_MAX];
    size_t len;
    size_t matched;
    bool found;
};
typedef void (*runtime__emit_cb)(void *arg, const char *p, size_t n);

void runtime__scan_init(struct runtime__scan *s, const char *needle, size_t len);
/* Feeds n bytes; returns how many were consumed: n, or the offset just past the needle when it
 * completes (s->found is then true and the rest belongs to the caller). */
size_t runtime__scan_feed(struct runtime__scan *s, const char *p, size_t n, runtime__emit_cb emit, void *arg);
/* End of stream: releases a held partial match as ordinary output. */
void runtime__scan_flush(struct runtime__scan *s, runtime__emit_cb emit, void *arg);

/* Keeps the first `limit` bytes of a stream and counts the rest. */
struct runtime__capture {
    char *buf; /* owned; free with runtime__capture_free */
    size_t len, cap, limit;
    size_t total;
    bool truncated;
};
void runtime__capture_init(struct runtime__capture *c, size_t limit);
void runtime__capture_add(void *capture, const char *p, size_t n); /* a runtime__emit_cb */
/* Appends the truncation notice when bytes were dropped, then `note` (a line of agentd's own, or
 * NULL) on a line of its own; neither counts against the limit. Call once, at the end. */
void runtime__capture_finish(struct runtime__capture *c, const char *note);
void runtime__capture_free(struct runtime__capture *c);

/* ---- lang_*.c: what differs between bash, python and node ----------------------------------- */

enum runtime__kind {
    RUNTIME__EXEC,
    RUNTIME__STATE,
    RUNTIME__INIT
};

struct runtime__lang {
    const char *name;
    const char *default_path; /* tried first */
    const char *search_name;  /* else looked up on PATH */
    int ctl_fd;               /* child descriptor the driver reads request lines from */
    const char *init;         /* NULL, or code run before the process counts as ready */
    const char *state_code;   /* NULL: state is a driver request; else code run as an exec */
    bool nonce_in_code;       /* the nonce and a newline precede the code in the memfd (so the
                                  request line, which bash reads a byte at a time, stays short) */
    /* Fills argv (program first, NULL-terminated, at most 8 slots). */
    void (*argv)(const char *program, const char **argv);
    /* Formats the request line announcing `code_len` bytes in the code memfd. Returns its
     * length (always < cap; lines stay far below PIPE_BUF so they are written atomically). */
    size_t (*request)(char *buf, size_t cap, enum runtime__kind kind, const char *nonce, size_t code_len);
    /* Turns the state request's stdout into members of `obj` (a json_t *). 0 or -EPROTO. */
    int (*state_json)(const char *out, size_t len, void *obj);
};

/* request for the python and node drivers: "E|S <nonce> <code length>\n" on the control socket. */
size_t runtime__request_socket(char *buf, size_t cap, enum runtime__kind kind, const char *nonce,
                               size_t code_len);

/* state_json for drivers that print a JSON object themselves: merges its members into obj. */
int runtime__state_passthrough(const char *out, size_t len, void *obj);

extern const struct runtime__lang runtime__lang_bash;
extern const struct runtime__lang runtime__lang_python;
extern const struct runtime__lang runtime__lang_node;

/* ---- proc.c: one interpreter process ------------------------------------------------------ */

struct runtime__proc_config {
    const struct runtime__lang *lang;
    const char *program;
    const char *cwd;
    char *const *envp;
    uint64_t grace_ms;
    const char *bwrap; /* NULL: no sandbox */
    bool bwrap_share_net;
    const struct exec_limits *limits; /* may be NULL */
    char *const *cgroups;             /* NULL-terminated; may be NULL */
};

struct runtime__proc {
    struct runtime *rt;         /* owner (borrowed back-pointer) */
    bool sandboxed;             /* pid is bwrap's: interrupts go to the rest of its session */
    struct runtime__proc *next; /* in the owner's list of live processes */
    uv_loop_t *loop;
    pid_t pid, guard_pid;   /* pid is also the process group id */
    int pidfd, guard_pidfd; /* owned; closed once their poll handles are closed */
    int ctl_fd;             /* our end of the request socket; -1 after "exit" */
    int code_fd;            /* memfd shared with the child at RUNTIME__CODE_FD */
    int life_fd;            /* write end the guard waits on; closing it fires the guard */
    uv_pipe_t out, err;
    uv_poll_t pid_poll, guard_poll;
    uv_timer_t timer; /* stop escalation, then the drain deadline */
    int open_handles;
    int wstatus;
    uint64_t grace_ms;
    const char *reason; /* static text: why the process is ending */
    bool ready;         /* the driver accepts requests (init done) */
    bool exited, guard_exited, out_eof, err_eof, drained, killed, stopping, done;
    int stop_step;
    char rbuf[64 * 1024]; /* read buffer; data is copied out before the next read */
    char dbuf[16 * 1024]; /* for runtime__proc_drain_err, which runs inside a read */
};

/* Starts the interpreter and its guard. On success *out is live and reports through the
 * runtime__on_* functions; on failure nothing is left behind. 0 or negative errno. */
RUNTIME_MUST_CHECK int runtime__proc_spawn(uv_loop_t *loop, struct runtime *rt,
                                           const struct runtime__proc_config *cfg,
                                           struct runtime__proc **out);
/* Puts `code` in the memfd and writes the request line. 0, or negative errno (the process is
 * then being killed and will report done). */
RUNTIME_MUST_CHECK int runtime__proc_send(struct runtime__proc *p, const char *code, size_t len,
                                          const char *line, size_t line_len);
/* Reads whatever stderr holds right now (without waiting) and reports it as data. */
void runtime__proc_drain_err(struct runtime__proc *p);
/* SIGINT to the whole process group. */
void runtime__proc_interrupt(struct runtime__proc *p);
/* Graceful stop: EOF on the request channel, SIGTERM after grace, SIGKILL after another. */
void runtime__proc_stop(struct runtime__proc *p, const char *reason);
/* SIGKILL the group now. */
void runtime__proc_kill(struct runtime__proc *p, const char *reason);
/* Closes the handles; the proc is freed (and runtime__on_proc_freed called) when they are. */
void runtime__proc_release(struct runtime__proc *p);

/* ---- runtime.c: callbacks from proc.c ------------------------------------------------------ */

/* stream 1 = stdout, 2 = stderr; p == NULL means end of file. */
void runtime__on_data(struct runtime__proc *proc, int stream, const char *p, size_t n);
/* Leader and guard reaped and both pipes drained: the proc's story is over. */
void runtime__on_proc_done(struct runtime__proc *proc);
void runtime__on_proc_freed(struct runtime *rt, struct runtime__proc *proc);

/* ---- history.c ------------------------------------------------------------------------------ */

#define RUNTIME__HISTORY_CODE_MAX 4096

struct runtime__record {
    uint64_t seq;
    char *code; /* owned, at most RUNTIME__HISTORY_CODE_MAX bytes */
    size_t code_kept, code_len;
    int status;
    enum runtime_outcome outcome;
    bool timed_out, truncated;
    uint64_t started_at_ms, queued_us, duration_us;
    size_t out_bytes, err_bytes;
};

struct runtime__history {
    struct runtime__record *ring; /* owned array of `max` slots */
    size_t max, head, count;      /* head: next slot to write */
};

void runtime__history_init(struct runtime__history *h, size_t max);
void runtime__history_add(struct runtime__history *h, const struct runtime_result *res);
char *runtime__history_json(const struct runtime__history *h, size_t limit);
void runtime__history_free(struct runtime__history *h);

#endif
