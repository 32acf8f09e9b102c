/* runtime internals shared by the files of src/runtime/ — not for other modules.
 *
 * Objects and who owns them:
 *   struct runtime        runtime.c  the public handle: options, call queue, timers, history,
 *                                    and a list of every process it started that is not freed.
 *   struct runtime__proc  proc.c     one interpreter process: the exec_proc that runs it (exec/
 *                                    starts, watches and kills it), our ends of its request
 *                                    socket and code memfd, its graceful-stop timer. Owned by the
 *                                    runtime's list; freed by its timer's close callback, after
 *                                    exec reported the exit.
 *   struct runtime__call  runtime.c  one queued exec/state/init request with its captures.
 *
 * Wiring: proc.c reports bytes and "everything reaped" back through runtime__on_data() and
 * runtime__on_proc_done(); runtime.c decides what they mean for the current call. A language (lang_*.c) only knows how to start its driver and phrase a request.
 */
#ifndef AGENTD_RUNTIME_INT_H
#define AGENTD_RUNTIME_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "runtime/runtime.h"

struct exec_env;
struct exec_proc;

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

#define RUNTIME__ARGS_MAX      6    /* arguments of an interpreter after its name */
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
    int found;
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
    int truncated;
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
    const char *search_name; /* the interpreter, looked up by exec */
    int ctl_fd;              /* child descriptor the driver reads request lines from */
    const char *init;        /* NULL, or code run before the process counts as ready */
    const char *state_code;  /* NULL: state is a driver request; else code run as an exec */
    int nonce_in_code;       /* the nonce and a newline precede the code in the memfd (so the
                                  request line, which bash reads a byte at a time, stays short) */
    const char *const *args; /* the interpreter's arguments after its name, NULL-terminated
                                  (at most RUNTIME__ARGS_MAX) */
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
    uv_loop_t *loop;
    const struct runtime__lang *lang;
    const char *program; /* looked up by exec_spawn */
    struct exec_env *env;
    uint64_t grace_ms;
};

struct runtime__proc {
    struct runtime *rt;         /* owner (borrowed back-pointer) */
    struct runtime__proc *next; /* in the owner's list of processes not yet freed */
    struct exec_proc *xp;       /* borrowed from exec until its exit callback; NULL after */
    int pid;                    /* the interpreter's (also its process group id) */
    int ctl_fd;                 /* our end of the request socket; -1 after "exit" */
    int code_fd;                /* memfd shared with the child at RUNTIME__CODE_FD */
    uv_timer_t stop_timer;      /* graceful stop: EOF first, the kill after grace_ms */
    uint64_t grace_ms;
    int status;         /* once exited: exit status, or 128+N when killed by signal N */
    const char *reason; /* static text: why the process is ending */
    int ready;          /* the driver accepts requests (init done) */
    int exited, killed, stopping;
};

/* Starts the interpreter through exec_spawn in cfg->env. On success *out is live and reports
 * through the runtime__on_* functions; on failure nothing is left behind. 0, -EAGAIN when the
 * environment is not ready, or another negative errno from exec_spawn. */
int runtime__proc_spawn(struct runtime *rt, const struct runtime__proc_config *cfg,
                        struct runtime__proc **out) CORE_UNUSED_RESULT;
/* Puts `code` in the memfd and writes the request line. 0, or negative errno (the process is
 * then being killed and will report done). */
int runtime__proc_send(struct runtime__proc *p, const char *code, size_t len, const char *line,
                       size_t line_len) CORE_UNUSED_RESULT;
/* Reads whatever stderr holds right now (without waiting) and reports it as data. */
void runtime__proc_drain_err(struct runtime__proc *p);
/* SIGINT to what runs in the interpreter (exec_proc_signal). */
void runtime__proc_interrupt(struct runtime__proc *p);
/* Graceful stop: EOF on the request channel; after grace, exec's kill (SIGTERM, then SIGKILL
 * after another grace). */
void runtime__proc_stop(struct runtime__proc *p, const char *reason);
/* SIGKILL now (exec's kill with no grace period). */
void runtime__proc_kill(struct runtime__proc *p, const char *reason);

/* ---- runtime.c: callbacks from proc.c ------------------------------------------------------ */

/* stream 1 = stdout, 2 = stderr. */
void runtime__on_data(struct runtime__proc *proc, int stream, const char *p, size_t n);
/* The interpreter exited and its output is delivered (exec's exit callback): the proc's story
 * is over. It is freed later, with runtime__on_proc_freed as its last word. */
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
    int timed_out, truncated;
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
