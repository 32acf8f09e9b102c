/* runtime — persistent bash / python / node interpreters driven from one libuv loop.
 *
 * A runtime is one interpreter process that keeps its state (variables, functions, imports, cwd)
 * between calls. Callers hand it code with runtime_exec() and get stdout, stderr, the exit status
 * and timings back in a callback on the same loop.
 *
 * Invariants:
 * - The process is started lazily by the first call that needs it, through exec_spawn in the
 *   runtime's execution environment (opts.env: the session's workspace, declared variables,
 *   limits, cgroups and sandbox), so exec's guarantees hold: the leader of its own session and
 *   process group, PR_SET_PDEATHSIG and a guard that kill the group if agentd goes away, kills
 *   that find and verify every descendant. A call made while the environment is still starting
 *   waits for it.
 * - One call runs at a time; further calls wait in FIFO order. Every accepted call gets exactly
 *   one done callback, even when the runtime is reset or closed underneath it.
 * - Code reaches the interpreter through a memfd plus a short request line on a private pipe;
 *   the code itself runs with stdin from /dev/null, so it cannot swallow the next request.
 * - Each call ends with a completion marker on stdout carrying a fresh 128-bit nonce from
 *   getrandom and the exit status; output that merely looks like a marker, lacks a trailing
 *   newline, is binary or is huge cannot end a call early or late. The driver writes the
 *   marker after flushing both streams, so when it arrives the call's stderr is in its pipe.
 * - Output beyond opts.output_limit (per stream) is counted and drained, never buffered.
 * - A timeout or runtime_interrupt() sends SIGINT to the group (state is kept); if the call has
 *   not ended kill_grace_ms later, the group is SIGKILLed and the next call starts a fresh process.
 * - Every process started here is reaped; close, reset, idle culling and kills leave no member
 *   of the runtime's process group behind.
 * - Nothing here blocks the loop: spawning forks and execs without waiting for the child.
 * - Not thread-safe: every function must be called on the loop's thread.
 */
#ifndef AGENTD_RUNTIME_H
#define AGENTD_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define RUNTIME_DEFAULT_OUTPUT_LIMIT (1024u * 1024u)
#define RUNTIME_DEFAULT_IDLE_MS      (30u * 60u * 1000u)
#define RUNTIME_DEFAULT_TIMEOUT_MS   30000u
#define RUNTIME_DEFAULT_GRACE_MS     1000u
#define RUNTIME_DEFAULT_SPIN_US      250
#define RUNTIME_DEFAULT_HISTORY      100u

struct uv_loop_s;
struct runtime;
struct exec_env;

enum runtime_lang {
    RUNTIME_BASH,
    RUNTIME_PYTHON,
    RUNTIME_NODE
};

/* Life-cycle of the interpreter process, with the names the transcript's `status` event uses. */
enum runtime_status {
    RUNTIME_STATUS_INACTIVE,   /* no process (never started, or culled / killed / reset) */
    RUNTIME_STATUS_STARTING,   /* spawned, driver not ready yet */
    RUNTIME_STATUS_READY,      /* waiting for or running calls */
    RUNTIME_STATUS_ERROR,      /* the process could not be started */
    RUNTIME_STATUS_TERMINATED, /* the process ended; `reason` in the event says why */
};

/* How a call ended. `status` in the result is meaningful for OK and INTERRUPTED (130). */
enum runtime_outcome {
    RUNTIME_OK,            /* the code ran to its end; status is its exit status */
    RUNTIME_INTERRUPTED,   /* stopped by SIGINT (interrupt or timeout); the state is kept */
    RUNTIME_KILLED,        /* ignored SIGINT for kill_grace_ms: group SIGKILLed, state lost, the
                            next call starts a fresh process */
    RUNTIME_EXITED,        /* the code ended the interpreter (exit, crash); state lost */
    RUNTIME_CANCELLED,     /* reset or close came first; the code may have partly run */
    RUNTIME_FAILED,        /* the interpreter could not be started; `error` says why */
    RUNTIME_OUTPUT_CLOSED, /* the code closed the interpreter's stdout or stderr (the descriptor or
                              the language's stream object), so later output could not reach
                              agentd: the process was replaced by a fresh one at once (state lost),
                              and stderr ends with a line saying so; status is the code's */
};

/* Result of one call. Borrowed: valid only during the callback that receives it. out/err are
 * not NUL-terminated and may contain any bytes; when `truncated`, each overflowing stream ends
 * with a "[agentd: output truncated ...]" line and *_total counts every byte produced. */
struct runtime_result {
    uint64_t seq; /* 1, 2, ... per runtime */
    const char *code;
    size_t code_len;
    const char *out;
    size_t out_len, out_total;
    const char *err;
    size_t err_len, err_total;
    int status; /* exit status; 128+N when ended by signal N; -1 when the code
                                 never reached a process (FAILED, or CANCELLED while queued) */
    enum runtime_outcome outcome;
    int truncated;
    int timed_out;          /* the per-call timeout fired (outcome INTERRUPTED or KILLED) */
    int error;              /* negative errno for RUNTIME_FAILED, else 0 */
    uint64_t started_at_ms; /* wall clock (Unix ms) when the call was handed to the process */
    uint64_t queued_us;     /* time spent waiting behind other calls and for start-up */
    uint64_t duration_us;   /* from hand-over to completion */
};

enum runtime_event_kind {
    RUNTIME_EVENT_STATUS, /* the process changed status */
    RUNTIME_EVENT_EXEC,   /* a runtime_exec call finished (sent before its done callback) */
};

/* Borrowed for the duration of the event callback. */
struct runtime_event {
    enum runtime_event_kind kind;
    enum runtime_status status;          /* STATUS */
    const char *reason;                  /* STATUS: "spawned", "ready", "idle", "reset",
                                             "closed", "killed", "exited", "output_closed",
                                             or an errno text */
    int pid;                             /* STATUS: the interpreter's pid (0 if none) */
    const struct runtime_result *result; /* EXEC */
};

typedef void (*runtime_event_cb)(struct runtime *rt, const struct runtime_event *ev, void *arg);
typedef void (*runtime_done_cb)(struct runtime *rt, const struct runtime_result *res, void *arg);
/* json is NUL-terminated and borrowed for the callback; rc is 0 or a negative errno. */
typedef void (*runtime_state_cb)(struct runtime *rt, int rc, const char *json, void *arg);
typedef void (*runtime_close_cb)(void *arg);

/* Zero means "default" for every numeric field. Strings are copied by runtime_new. */
struct runtime_options {
    enum runtime_lang lang;
    struct exec_env *env;      /* where the interpreter runs (required). Borrowed: it must
                                         stay open until runtime_close has been called (the two may
                                         close in the same loop turn, either first) */
    const char *program;       /* interpreter; NULL: bash, python3 or node, looked up as
                                         exec_spawn does (exec_env_find_program) */
    size_t output_limit;       /* bytes kept per stream per call (1 MiB) */
    uint64_t idle_timeout_ms;  /* stop the process after this long unused (30 min);
                                     UINT64_MAX: never */
    uint64_t timeout_ms;       /* default per-call timeout (30 s) */
    uint64_t kill_grace_ms;    /* SIGINT → SIGKILL, exit → SIGTERM → SIGKILL steps (1 s) */
    unsigned history_max;      /* calls kept by runtime_history_json (100) */
    int64_t spin_us;           /* keep the loop polling this long after sending a call, while
                                     calls answer that fast (250); negative: never */
    runtime_event_cb event_cb; /* may be NULL */
    void *event_arg;
};

/* Validates options, looks the interpreter up and allocates the runtime; starts nothing. `loop`
 * is the environment's. Returns 0, -EINVAL (bad lang, no env), -ENOENT (no such interpreter),
 * -EACCES (not executable). Free with runtime_close. */
int runtime_new(struct uv_loop_s *loop, const struct runtime_options *opts,
                struct runtime **out) CORE_UNUSED_RESULT;

/* Queues `code` (copied; any bytes) to run after earlier calls. timeout_ms 0 uses the runtime's
 * default. `cb` runs exactly once, never before runtime_exec returns. Returns 0, or -ESHUTDOWN
 * after runtime_close. */
int runtime_exec(struct runtime *rt, const char *code, size_t len, uint64_t timeout_ms, runtime_done_cb cb,
                 void *arg) CORE_UNUSED_RESULT;

/* Queues a state query (it runs in order with calls and does not appear in the history) and
 * answers a JSON object: {"lang","running","pid","cwd", ...} plus, per language,
 *   bash:   "exported":{name:value}, "variables":{name:value} (set since start), "functions":[..]
 *   python: "modules":[..], "globals":{name:{"type","repr"}}
 *   node:   "globals":{name:{"type","repr"}}
 * When no process is running, answers {"running":false,...} without starting one. */
int runtime_state(struct runtime *rt, runtime_state_cb cb, void *arg) CORE_UNUSED_RESULT;

/* Kills the current process (the running call ends CANCELLED) so the next call starts a fresh
 * one with the same settings. Queued calls stay queued. History is kept. Returns 0 or
 * -ESHUTDOWN. */
int runtime_reset(struct runtime *rt) CORE_UNUSED_RESULT;

/* Interrupts the running call as a timeout would (SIGINT, then SIGKILL after the grace period).
 * Returns 0, -ENOENT when nothing is running, -ESHUTDOWN after close. */
int runtime_interrupt(struct runtime *rt) CORE_UNUSED_RESULT;

/* The last `limit` calls (0: all kept), oldest first, as a JSON array of
 * {"seq","code","code_len","status","outcome","timed_out","started_at_ms","queued_us",
 *  "duration_us","out_bytes","err_bytes","truncated"}; code is cut to 4 KiB.
 * Returns a NUL-terminated string to free with free(). */
char *runtime_history_json(const struct runtime *rt, size_t limit);

/* Number of calls held in the history ring (at most history_max). */
size_t runtime_history_count(const struct runtime *rt);

enum runtime_status runtime_status(const struct runtime *rt);
enum runtime_lang runtime_lang(const struct runtime *rt);
/* Process group (== pid of the interpreter) of the current process, 0 when none. */
int runtime_pgid(const struct runtime *rt);

/* Stops the runtime: queued calls end CANCELLED (their callbacks run inside runtime_close); an
 * idle process is asked to exit (EOF on its request channel), then SIGTERM, then SIGKILL,
 * kill_grace_ms apart; a busy one is SIGKILLed and its call ends CANCELLED.
 * `cb` (may be NULL) runs once every process is reaped and every handle closed; `rt` is freed
 * right after it and must not be used once runtime_close returns. */
void runtime_close(struct runtime *rt, runtime_close_cb cb, void *arg);

const char *runtime_lang_name(enum runtime_lang lang);
/* Parses "bash", "python" or "node". Returns 0 or -EINVAL. */
int runtime_lang_parse(const char *name, enum runtime_lang *out) CORE_UNUSED_RESULT;
const char *runtime_status_name(enum runtime_status status);
const char *runtime_outcome_name(enum runtime_outcome outcome);

#endif
