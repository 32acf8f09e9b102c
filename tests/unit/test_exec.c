/* Unit tests for src/exec: execution environments, their processes, kills and the watcher.
 *
 * Every test runs on its own loop and ends by closing the environment and the loop;
 * uv_loop_close failing means a handle leaked. Workspaces are fresh directories under /tmp.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "core/core.h"
#include "exec/child.h"
#include "exec/exec.h"
#include "exec/exec_int.h"
#include "tap.h"

/* ---- harness ------------------------------------------------------------------------------ */

struct h {
    uv_loop_t loop;
    uv_timer_t deadline;
    bool expired;
    struct exec_env *env;
    char ws[64];
    enum exec_status statuses[8];
    int nstatus;
    uint64_t ready_us;
    char error[320];
    bool closed;
};

struct run {
    struct buf out, err;
    int nlines, ncut;
    bool exited;
    struct exec_exit ex;
    bool killed;
    struct exec_kill_report kr;
    pid_t kpids[16];
    bool saw_started;
};

static void on_event(void *arg, struct exec_env *env, const struct exec_event *ev)
{
    struct h *h = arg;

    if (ev->type != EXEC_EVENT_STATUS)
        return;
    if (h->nstatus < 8)
        h->statuses[h->nstatus++] = ev->status;
    if (ev->status == EXEC_STATUS_READY || ev->status == EXEC_STATUS_ERROR)
        h->ready_us = ev->elapsed_us;
    if (ev->status == EXEC_STATUS_ERROR)
        snprintf(h->error, sizeof h->error, "%s", ev->message ? ev->message : "");
}

static void on_deadline(uv_timer_t *t) { ((struct h *)t->data)->expired = true; }

/* Runs the loop until *flag is true or ms pass. */
static bool run_until(struct h *h, const bool *flag, uint64_t ms)
{
    h->expired = false;
    uv_timer_start(&h->deadline, on_deadline, ms, 0);
    while (!*flag && !h->expired)
        uv_run(&h->loop, UV_RUN_ONCE);
    uv_timer_stop(&h->deadline);
    return *flag;
}

static bool is_settled(const struct h *h)
{
    return h->nstatus > 0 && (h->statuses[h->nstatus - 1] == EXEC_STATUS_READY ||
                              h->statuses[h->nstatus - 1] == EXEC_STATUS_ERROR);
}

/* A started environment over a fresh workspace; returns its final start status. */
static enum exec_status h_open(struct h *h, struct exec_env_opts *opts)
{
    char *default_env[] = {"PATH=/usr/bin:/bin", NULL};
    bool settled = false;

    memset(h, 0, sizeof *h);
    uv_loop_init(&h->loop);
    uv_timer_init(&h->loop, &h->deadline);
    h->deadline.data = h;
    snprintf(h->ws, sizeof h->ws, "/tmp/agentd-exec-test-XXXXXX");
    if (mkdtemp(h->ws) == NULL)
        abort();
    if (opts->workspace == NULL)
        opts->workspace = h->ws;
    if (opts->env == NULL)
        opts->env = default_env;
    opts->on_event = on_event;
    opts->arg = h;
    if (exec_env_new(&h->loop, opts, &h->env) != 0 || exec_env_start(h->env) != 0)
        abort();
    opts->env = NULL;
    for (int i = 0; i < 500 && !settled; i++) {
        uv_run(&h->loop, UV_RUN_ONCE);
        settled = is_settled(h);
    }
    return h->nstatus > 0 ? h->statuses[h->nstatus - 1] : EXEC_STATUS_INACTIVE;
}

static void on_closed(void *arg) { ((struct h *)arg)->closed = true; }

static void rm_rf(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "# could not remove %s\n", dir);
}

static void h_close(struct h *h, const char *what)
{
    int rc;

    exec_env_close(h->env, 200, on_closed, h);
    uv_close((uv_handle_t *)&h->deadline, NULL);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&h->loop);
    ok(h->closed && h->statuses[h->nstatus - 1] == EXEC_STATUS_TERMINATED && rc == 0,
       "%s: environment terminated, loop closed cleanly", what);
    rm_rf(h->ws);
}

static void r_out(void *arg, struct exec_proc *p, const char *data, size_t len)
{
    struct run *r = arg;

    buf_append(&r->out, data, len);
}

static void r_err(void *arg, struct exec_proc *p, const char *line, size_t len, int eol)
{
    struct run *r = arg;

    buf_append(&r->err, line, len);
    if (eol)
        buf_append(&r->err, "\n", 1);
    r->nlines++;
    r->ncut += !eol;
}

static void r_exit(void *arg, struct exec_proc *p, const struct exec_exit *ex)
{
    struct run *r = arg;

    r->ex = *ex;
    r->exited = true;
}

static void r_kill(void *arg, struct exec_proc *p, const struct exec_kill_report *kr)
{
    struct run *r = arg;

    r->kr = *kr;
    r->kr.pids = r->kpids;
    r->kr.npids = kr->npids < 16 ? kr->npids : 16;
    memcpy(r->kpids, kr->pids, r->kr.npids * sizeof *kr->pids);
    r->killed = true;
}

static struct exec_spawn_opts r_opts(struct run *r, size_t line_max)
{
    return (struct exec_spawn_opts){
        .on_stdout = r_out, .on_stderr = r_err, .on_exit = r_exit, .arg = r, .line_max = line_max};
}

/* Spawns argv, writes `in` (if any) and closes stdin, and runs until the exit callback. */
static int h_run(struct h *h, struct run *r, char *const *argv, const char *in, size_t in_len)
{
    struct exec_spawn_opts o = r_opts(r, 0);
    struct exec_proc *p;
    int rc;

    memset(r, 0, sizeof *r);
    if ((rc = exec_spawn(h->env, argv, &o, &p)) != 0)
        return rc;
    if (in != NULL && exec_proc_write(p, in, in_len) != 0)
        return -EIO;
    exec_proc_close_stdin(p);
    run_until(h, &r->exited, 20000);
    buf_append(&r->out, "", 1); /* NUL-terminate for string checks, len counts it */
    r->out.len--;
    buf_append(&r->err, "", 1);
    r->err.len--;
    return r->exited ? 0 : -ETIMEDOUT;
}

static void r_free(struct run *r)
{
    buf_free(&r->out);
    buf_free(&r->err);
}

/* Whether a process is alive (exists and is not a zombie). */
static bool pid_alive(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return false;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p != NULL && p[2] != 'Z' && p[2] != 'X';
}

static size_t nlines(const struct buf *b)
{
    size_t n = 0;

    for (size_t k = 0; k < b->len; k++)
        n += b->p[k] == '\n';
    return n;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_levels(void)
{
    static const struct {
        const char *line, *want;
    } cases[] = {
        {"Error: cannot find module", "error"},
        {"npm ERR! code E404", "error"},
        {"[WARN] disk almost full", "warn"},
        {"warning: unused variable", "warn"},
        {"2026-11-21T10:00:00Z DEBUG connecting", "debug"},
        {"time=12:00 level=warn msg=slow", "warn"},
        {"{\"level\":\"error\",\"msg\":\"boom\"}", "error"},
        {"E1121 12:00:00.000 main.go:12] failed", "error"},
        {"W1121 12:00:00.000 main.go:12] hmm", "warn"},
        {"thread 'main' panicked at src/main.rs", "error"},
        {"Traceback (most recent call last):", "error"},
        {"Compiling foo v0.1.0", "info"},
        {"I think this is fine", "info"},
        {"[D] verbose detail", "debug"},
        {"", "info"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        is_str(exec_log_level(cases[i].line, strlen(cases[i].line)), cases[i].want, "level of '%s'",
               cases[i].line);
}

static void test_env_and_cwd(void)
{
    char *env[] = {"FOO=bar baz", "PATH=/usr/bin:/bin", "EMPTY=", NULL};
    struct exec_env_opts o = {.env = env, .name = "scrub"};
    char *argv_env[] = {"env", NULL};
    char *argv_pwd[] = {"pwd", NULL};
    char *argv_none[] = {"agentd-no-such-program", NULL};
    struct exec_proc *p;
    struct run r;
    struct h h;

    setenv("AGENTD_EXEC_LEAK", "1", 1); /* must not reach the child */
    is_int(h_open(&h, &o), EXEC_STATUS_READY, "env: ready");
    ok(h.nstatus == 2 && h.statuses[0] == EXEC_STATUS_STARTING, "env: starting, then ready");
    printf("# environment start to ready without a sandbox: %.3f ms\n", h.ready_us / 1000.0);
    is_int(h_run(&h, &r, argv_env, NULL, 0), 0, "env: ran");
    is_str(r.out.p, "FOO=bar baz\nPATH=/usr/bin:/bin\nEMPTY=\n", "env: exactly the given variables");
    r_free(&r);
    is_int(h_run(&h, &r, argv_pwd, NULL, 0), 0, "cwd: ran");
    char want[80];
    snprintf(want, sizeof want, "%s\n", exec_env_workspace(h.env));
    is_str(r.out.p, want, "cwd: the workspace");
    r_free(&r);
    struct exec_spawn_opts so = {0};
    is_int(exec_spawn(h.env, argv_none, &so, &p), -ENOENT, "spawn: missing program is -ENOENT");
    h_close(&h, "env");
    unsetenv("AGENTD_EXEC_LEAK");
}

static void test_io(void)
{
    struct exec_env_opts o = {.name = "io"};
    char *argv_mix[] = {"/bin/sh", "-c",
                        "printf 'a\\000b\\nc'; printf 'e1\\ne2\\n0123456789abcdefXYZ\\npartial' >&2", NULL};
    char *argv_cat[] = {"cat", NULL};
    struct exec_spawn_opts so;
    struct exec_proc *p;
    struct run r;
    struct h h;
    size_t big = 1 << 20;
    char *data = xmalloc(big);

    h_open(&h, &o);
    memset(&r, 0, sizeof r);
    so = r_opts(&r, 16);
    if (exec_spawn(h.env, argv_mix, &so, &p) != 0)
        abort();
    exec_proc_close_stdin(p);
    run_until(&h, &r.exited, 10000);
    ok(r.out.len == 5 && memcmp(r.out.p, "a\0b\nc", 5) == 0,
       "stdout: byte-exact with NUL and no final newline");
    const char *want_err = "e1\ne2\n0123456789abcdefXYZ\npartial";
    ok(r.err.len == strlen(want_err) && memcmp(r.err.p, want_err, r.err.len) == 0,
       "stderr: lines reassemble byte-exact");
    is_int(r.nlines, 5, "stderr: a line over line_max is cut in two");
    is_int(r.ncut, 2, "stderr: the cut line and the unterminated last line have eol false");
    is_int(r.ex.status, 0, "exit status 0");
    r_free(&r);

    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 7 + i / 251);
    is_int(h_run(&h, &r, argv_cat, data, big), 0, "stdin: cat ran");
    ok(r.out.len == big && memcmp(r.out.p, data, big) == 0, "stdin: 1 MiB through cat, byte-exact");
    r_free(&r);
    free(data);
    h_close(&h, "io");
}

static void test_exit_and_signal(void)
{
    struct exec_env_opts o = {.name = "exit"};
    char *argv_exit[] = {"/bin/sh", "-c", "exit 3", NULL};
    char *argv_segv[] = {"/bin/sh", "-c", "echo before; kill -SEGV $$", NULL};
    struct run r;
    struct h h;

    h_open(&h, &o);
    h_run(&h, &r, argv_exit, NULL, 0);
    ok(r.ex.status == 3 && r.ex.signal == 0, "exit status 3 reported");
    r_free(&r);
    h_run(&h, &r, argv_segv, NULL, 0);
    ok(r.ex.status == -1 && r.ex.signal == SIGSEGV, "crash: SIGSEGV reported (signal %d)", r.ex.signal);
    is_str(r.out.p, "before\n", "crash: output before the crash delivered");
    r_free(&r);
    h_close(&h, "exit");
}

static void test_rlimits(void)
{
    struct exec_env_opts o = {.name = "limits",
                              .limits = {.fsize_bytes = 4096, .nofile = 32, .as_bytes = 1ull << 30}};
    char *argv_fsize[] = {"/bin/sh", "-c", "head -c 100000 /dev/zero > big; echo $?", NULL};
    char *argv_ulimit[] = {"/bin/sh", "-c", "ulimit -n; ulimit -v", NULL};
    char *argv_cpu[] = {"/bin/sh", "-c", "while :; do :; done", NULL};
    struct stat st;
    char path[128];
    struct run r;
    struct h h;

    h_open(&h, &o);
    h_run(&h, &r, argv_fsize, NULL, 0);
    is_str(r.out.p, "153\n", "RLIMIT_FSIZE: the big write dies of SIGXFSZ (128+25)");
    snprintf(path, sizeof path, "%s/big", h.ws);
    ok(stat(path, &st) == 0 && st.st_size == 4096, "RLIMIT_FSIZE: the file stopped at the limit");
    r_free(&r);
    h_run(&h, &r, argv_ulimit, NULL, 0);
    is_str(r.out.p, "32\n1048576\n", "RLIMIT_NOFILE and RLIMIT_AS applied");
    r_free(&r);
    h_close(&h, "limits");

    struct exec_env_opts oc = {.name = "cpu", .limits = {.cpu_seconds = 1}};
    h_open(&h, &oc);
    uint64_t t0 = clock_mono_us();
    h_run(&h, &r, argv_cpu, NULL, 0);
    ok(r.ex.signal == SIGXCPU || r.ex.signal == SIGKILL,
       "RLIMIT_CPU: a busy loop ends by SIGXCPU (signal %d, %.1f s)", r.ex.signal,
       (clock_mono_us() - t0) / 1e6);
    r_free(&r);
    h_close(&h, "cpu");
}

static void test_kill_group(bool cgroup, bool ignore_term)
{
    struct exec_env_opts o = {.name = "kill", .cgroup = cgroup};
    char script[256];
    char *argv[] = {"/bin/sh", "-c", script, NULL};
    struct exec_spawn_opts so;
    struct exec_proc *p;
    pid_t pids[3] = {0};
    struct run r;
    struct h h;
    const char *what = cgroup ? "kill (cgroup)" : ignore_term ? "kill (TERM ignored)" : "kill";

    snprintf(script, sizeof script, "%ssleep 30 & echo $!; setsid sleep 30 & echo $!; wait",
             ignore_term ? "trap '' TERM; " : "");
    h_open(&h, &o);
    if (cgroup && !exec_env_has_cgroup(h.env)) {
        printf("ok %d # skip %s: no writable cgroup v1 hierarchy\n", ++tap_count, what);
        h_close(&h, what);
        return;
    }
    memset(&r, 0, sizeof r);
    so = r_opts(&r, 0);
    if (exec_spawn(h.env, argv, &so, &p) != 0)
        abort();
    pids[0] = exec_proc_pid(p);
    /* Wait until both background pids are printed. */
    for (int i = 0; i < 400 && nlines(&r.out) < 2; i++)
        uv_run(&h.loop, UV_RUN_ONCE);
    buf_append(&r.out, "", 1);
    if (sscanf(r.out.p, "%d %d", &pids[1], &pids[2]) != 2)
        abort();
    usleep(50 * 1000); /* let setsid take effect */
    uint64_t t0 = clock_mono_us();
    exec_proc_kill(p, ignore_term ? 300 : 1000, r_kill, &r);
    run_until(&h, &r.exited, 5000);
    double secs = (clock_mono_us() - t0) / 1e6;
    ok(r.killed && r.exited, "%s: report and exit delivered", what);
    ok(secs < 2.0, "%s: done within 2 s (%.3f s, escalated %d)", what, secs, r.kr.escalated);
    is_int(r.kr.escalated, ignore_term, "%s: SIGKILL needed only when TERM is ignored", what);
    is_int(r.kr.left, 0, "%s: nothing survived", what);
    bool found[3] = {false};
    for (size_t i = 0; i < r.kr.npids; i++)
        for (int k = 0; k < 3; k++)
            found[k] = found[k] || r.kpids[i] == pids[k];
    ok(found[0] && found[1] && found[2],
       "%s: leader, background child and setsid grandchild reported (%zu pids)", what, r.kr.npids);
    ok(!pid_alive(pids[0]) && !pid_alive(pids[1]) && !pid_alive(pids[2]), "%s: none of them alive in /proc",
       what);
    ok(r.ex.signal == (ignore_term ? SIGKILL : SIGTERM), "%s: leader ended by signal %d", what, r.ex.signal);
    r_free(&r);
    h_close(&h, what);
}

static void test_cgroup_pids(void)
{
    struct exec_env_opts o = {.name = "pids", .limits = {.cg_pids = 4, .cg_memory_bytes = 64u << 20}};
    char *argv[] = {"/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>&1; echo done", NULL};
    struct run r;
    struct h h;

    h_open(&h, &o);
    if (!exec_env_has_cgroup(h.env)) {
        printf("ok %d # skip cgroup limits: no writable cgroup v1 hierarchy\n", ++tap_count);
        h_close(&h, "cgroup");
        return;
    }
    h_run(&h, &r, argv, NULL, 0);
    ok(strstr(r.out.p, "fork") != NULL || strstr(r.out.p, "resource") != NULL,
       "cgroup pids.max: forks beyond the limit fail");
    r_free(&r);

    /* A cgroup that an agentd killed with -9 left behind (its pid gone) is removed by the next
     * environment created beside it; one whose agentd lives is not. */
    const char *dirs[2];
    char stale[PATH_MAX], live[PATH_MAX + 64], *slash;
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    exec_env_cgroup_dirs(h.env, dirs, 1);
    snprintf(stale, sizeof stale, "%s", dirs[0]);
    if ((slash = strrchr(stale, '/')) != NULL)
        *slash = '\0';
    snprintf(live, sizeof live, "%s/agentd-%d-9-live", stale, (int)getppid());
    snprintf(stale + strlen(stale), sizeof stale - strlen(stale), "/agentd-%d-9-stale", (int)dead);
    ok(mkdir(stale, 0755) == 0 && mkdir(live, 0755) == 0, "cgroup: made a stale and a live-looking cgroup");
    h_close(&h, "cgroup");
    struct exec_env_opts o2 = {.name = "sweep", .cgroup = true};
    h_open(&h, &o2);
    ok(access(stale, F_OK) != 0, "cgroup: the next environment removes the stale one");
    ok(access(live, F_OK) == 0, "cgroup: and keeps the one whose agentd (pid %d) lives", (int)getppid());
    (void)rmdir(live);
    h_close(&h, "sweep");
}

/* Programs with a protocol of their own (runtimes) get more descriptors, raw stderr, stderr read
 * on demand and signals that reach into a sandbox; all of it through exec_spawn. */
struct proto {
    struct buf out, err, err_at_mark;
    bool exited, marked;
    struct exec_exit ex;
    struct exec_proc *p;
};

static void proto_out(void *arg, struct exec_proc *p, const char *data, size_t len)
{
    struct proto *t = arg;

    buf_append(&t->out, data, len);
    if (!t->marked && memmem(t->out.p, t->out.len, "mark\n", 5) != NULL) {
        t->marked = true;
        exec_proc_read_stderr(p); /* what stderr holds now is delivered before this returns */
        buf_append(&t->err_at_mark, t->err.p ? t->err.p : "", t->err.len);
    }
}

static void proto_err(void *arg, struct exec_proc *p, const char *data, size_t len)
{
    buf_append(&((struct proto *)arg)->err, data, len);
}

static void proto_exit(void *arg, struct exec_proc *p, const struct exec_exit *ex)
{
    struct proto *t = arg;

    t->ex = *ex;
    t->exited = true;
}

static void proto_free(struct proto *t)
{
    buf_free(&t->out);
    buf_free(&t->err);
    buf_free(&t->err_at_mark);
}

/* Spawns argv with the proto callbacks and runs until its stdout holds `ready`. */
static struct exec_proc *proto_spawn(struct h *h, struct proto *t, char *const *argv, const char *ready)
{
    struct exec_spawn_opts so = {
        .on_stdout = proto_out, .on_stderr_data = proto_err, .on_exit = proto_exit, .arg = t};

    memset(t, 0, sizeof *t);
    if (exec_spawn(h->env, argv, &so, &t->p) != 0)
        abort();
    for (int i = 0; i < 1000 && !(t->out.len > 0 && memmem(t->out.p, t->out.len, ready, strlen(ready))); i++)
        uv_run(&h->loop, UV_RUN_ONCE);
    return t->p;
}

static void test_bwrap(void)
{
    struct exec_env_opts o = {.name = "bwrap", .sandbox = EXEC_SANDBOX_BWRAP};
    char *argv[] = {"/bin/sh", "-c",
                    "echo in > inside && echo wrote-inside; "
                    "(echo out > /etc/agentd-exec-test) 2>/dev/null || echo denied-etc; "
                    "(echo out > /var/tmp/agentd-exec-test) 2>/dev/null || echo denied-var; "
                    "echo t > /tmp/x && ls /tmp",
                    NULL};
    char path[128];
    struct run r;
    struct h h;

    if (h_open(&h, &o) != EXEC_STATUS_READY) {
        printf("ok %d # skip bwrap unusable here: %s\n", ++tap_count, h.error);
        h_close(&h, "bwrap");
        return;
    }
    printf("# environment start to ready with bwrap: %.3f ms\n", h.ready_us / 1000.0);
    h_run(&h, &r, argv, NULL, 0);
    /* /tmp is a fresh tmpfs holding only the workspace's mount point (the tests' is in /tmp). */
    char want[512];
    snprintf(want, sizeof want, "wrote-inside\ndenied-etc\ndenied-var\n%s\nx\n", h.ws + strlen("/tmp/"));
    is_str(r.out.p, want, "bwrap: writes inside the workspace only; /tmp is private");
    snprintf(path, sizeof path, "%s/inside", h.ws);
    ok(access(path, F_OK) == 0 && access("/etc/agentd-exec-test", F_OK) != 0,
       "bwrap: the workspace file is on the host, nothing outside");
    r_free(&r);

    /* SIGINT reaches the program inside; bwrap's outer process would die of it instead. */
    char *argv_int[] = {"/bin/sh", "-c",
                        "trap 'echo INT; exit 7' INT; echo ready; while :; do sleep 0.05; done", NULL};
    struct proto pt;
    struct exec_proc *p = proto_spawn(&h, &pt, argv_int, "ready");
    is_int(exec_proc_signal(p, SIGINT), 0, "bwrap: SIGINT sent");
    run_until(&h, &pt.exited, 5000);
    buf_append(&pt.out, "", 1);
    ok(pt.exited && pt.ex.status == 7 && strstr(pt.out.p, "INT") != NULL,
       "bwrap: the sandboxed program's trap ran, bwrap passed its exit status 7 on (status %d, signal %d)",
       pt.ex.status, pt.ex.signal);
    proto_free(&pt);
    h_close(&h, "bwrap");

    /* Start-up time over a few environments: the median is what a session start pays. */
    uint64_t us[5];
    for (int i = 0; i < 5; i++) {
        struct exec_env_opts again = {.name = "bwrap-time", .sandbox = EXEC_SANDBOX_BWRAP};
        h_open(&h, &again);
        us[i] = h.ready_us;
        exec_env_close(h.env, 0, NULL, NULL);
        uv_close((uv_handle_t *)&h.deadline, NULL);
        uv_run(&h.loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&h.loop) != 0)
            abort();
        rm_rf(h.ws);
    }
    for (int i = 1; i < 5; i++)
        for (int j = i; j > 0 && us[j] < us[j - 1]; j--) {
            uint64_t t = us[j];
            us[j] = us[j - 1];
            us[j - 1] = t;
        }
    printf("# bwrap start to ready over 5 environments: min %.2f ms, median %.2f ms, max %.2f ms\n",
           us[0] / 1e3, us[2] / 1e3, us[4] / 1e3);

    /* Closed while its probe runs: terminated, and no error status on the way. */
    struct exec_env_opts quick = {.name = "bwrap-quick", .sandbox = EXEC_SANDBOX_BWRAP};
    memset(&h, 0, sizeof h);
    uv_loop_init(&h.loop);
    snprintf(h.ws, sizeof h.ws, "/tmp");
    quick.workspace = "/tmp";
    quick.on_event = on_event;
    quick.arg = &h;
    if (exec_env_new(&h.loop, &quick, &h.env) != 0 || exec_env_start(h.env) != 0)
        abort();
    exec_env_close(h.env, 100, on_closed, &h);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    ok(h.closed && h.nstatus == 2 && h.statuses[0] == EXEC_STATUS_STARTING &&
           h.statuses[1] == EXEC_STATUS_TERMINATED && uv_loop_close(&h.loop) == 0,
       "bwrap: closed while probing goes starting -> terminated");

    struct exec_env_opts bad = {
        .name = "bwrap-bad", .sandbox = EXEC_SANDBOX_BWRAP, .bwrap_path = "/bin/false"};
    is_int(h_open(&h, &bad), EXEC_STATUS_ERROR,
           "bwrap: a sandbox that does not start is an environment error");
    h_close(&h, "bwrap-bad");
}

struct watch_log {
    char text[1024];
    int batches;
    uint64_t at[8];
};

static void on_changes(void *arg, struct exec_env *env, const struct exec_file_change *c, size_t n)
{
    struct watch_log *w = arg;
    size_t len = strlen(w->text);

    if (w->batches < 8)
        w->at[w->batches] = clock_mono_us();
    w->batches++;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(w->text + len, sizeof w->text - len, "%s %s;", exec_file_kind_name(c[i].kind),
                                c[i].path);
    len += (size_t)snprintf(w->text + len, sizeof w->text - len, "|");
}

static void touch(const char *ws, const char *rel, const char *data)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", ws, rel);
    if ((f = fopen(path, "w")) == NULL)
        abort();
    fputs(data, f);
    fclose(f);
}

/* inotify instances this process holds. */
static int inotify_instances(void)
{
    char path[64], target[64];
    int n = 0;

    for (int fd = 0; fd < 1024; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(path, target, sizeof target - 1);
        if (len > 0) {
            target[len] = '\0';
            n += strcmp(target, "anon_inode:inotify") == 0;
        }
    }
    return n;
}

static void test_watch(void)
{
    struct exec_env_opts o = {.name = "watch"};
    struct watch_log w = {0};
    char path[256];
    bool never = false;
    struct h h;

    h_open(&h, &o);
    snprintf(path, sizeof path, "%s/.git", h.ws);
    mkdir(path, 0755);
    is_int(exec_watch_start(h.env, 150, on_changes, &w), 0, "watch: started");
    is_int(exec_watch_start(h.env, 150, on_changes, &w), -EALREADY, "watch: one per environment");
    touch(h.ws, "a.txt", "one");
    touch(h.ws, "a.txt", "two");
    touch(h.ws, "gone.txt", "x");
    snprintf(path, sizeof path, "%s/gone.txt", h.ws);
    unlink(path);
    touch(h.ws, ".git/HEAD", "ref");
    snprintf(path, sizeof path, "%s/sub", h.ws);
    mkdir(path, 0755);
    touch(h.ws, "sub/deep.txt", "d");
    uint64_t t0 = clock_mono_us();
    run_until(&h, &never, 400);
    snprintf(path, sizeof path, "%s/a.txt", h.ws);
    unlink(path);
    touch(h.ws, "sub/deep.txt", "changed");
    run_until(&h, &never, 100);
    touch(h.ws, "b.txt", "b");
    run_until(&h, &never, 400);
    is_str(
        w.text,
        "created a.txt;created sub;created sub/deep.txt;|deleted a.txt;modified sub/deep.txt;created b.txt;|",
        "watch: coalesced batches (created+deleted cancels, .git skipped, new dirs watched)");
    is_int(w.batches, 2, "watch: two batches");
    ok(w.batches >= 2 && w.at[0] - t0 >= 140000 && w.at[1] - w.at[0] >= 150000,
       "watch: batches rate limited (%.0f ms after the first change, %.0f ms apart)", (w.at[0] - t0) / 1e3,
       (w.at[1] - w.at[0]) / 1e3);
    exec_watch_stop(h.env);

    /* Watchers share one inotify instance per loop: instances are few per user (128 by default,
     * for all of the user's processes), and a server has a watcher per session. */
    struct exec_env *envs[8];
    struct watch_log logs[8];
    char dirs[8][96];
    memset(logs, 0, sizeof logs);
    for (int i = 0; i < 8; i++) {
        char *envp[] = {"PATH=/usr/bin:/bin", NULL};
        snprintf(dirs[i], sizeof dirs[i], "%s/e%d", h.ws, i);
        mkdir(dirs[i], 0755);
        struct exec_env_opts eo = {.workspace = dirs[i], .env = envp, .name = "watch-many"};
        if (exec_env_new(&h.loop, &eo, &envs[i]) != 0 || exec_env_start(envs[i]) != 0)
            abort();
    }
    run_until(&h, &never, 50);
    int started = 0;
    for (int i = 0; i < 8; i++)
        started += exec_watch_start(envs[i], 50, on_changes, &logs[i]) == 0;
    is_int(started, 8, "watch: eight environments watch at once");
    is_int(inotify_instances(), 1, "watch: they share one inotify instance");
    for (int i = 0; i < 8; i++) {
        char rel[40];
        snprintf(rel, sizeof rel, "e%d/f%d.txt", i, i);
        touch(h.ws, rel, "x");
    }
    run_until(&h, &never, 300);
    int right = 0;
    for (int i = 0; i < 8; i++) {
        char want[32];
        snprintf(want, sizeof want, "created f%d.txt;|", i);
        right += strcmp(logs[i].text, want) == 0;
    }
    is_int(right, 8, "watch: each environment hears only its own workspace");
    for (int i = 0; i < 8; i++)
        exec_env_close(envs[i], 0, NULL, NULL);
    run_until(&h, &never, 50);
    is_int(inotify_instances(), 0, "watch: the instance closes with its last watcher");
    h_close(&h, "watch");
}

static void test_protocol_fds(void)
{
    struct exec_env_opts o = {.name = "fds"};
    /* bash (dash takes single-digit descriptors only); --norc: with a socket as stdin, Debian's
     * bash would read ~/.bashrc as if started by sshd. */
    char *argv[] = {"/bin/bash", "--norc", "-c",
                    "read line; echo \"got:$line\" >&63; printf 'e1\\ne2-no-newline' >&2; echo mark; "
                    "read rest; echo \"rest:$rest\"",
                    NULL};
    int sv[2];
    struct proto t = {0};
    struct h h;

    h_open(&h, &o);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    struct exec_fd fds[] = {{0, sv[1]}, {63, EXEC_FD_STDOUT}};
    struct exec_spawn_opts so = {.on_stdout = proto_out,
                                 .on_stderr_data = proto_err,
                                 .on_exit = proto_exit,
                                 .arg = &t,
                                 .fds = fds,
                                 .nfds = 2};
    is_int(exec_spawn(h.env, argv, &so, &t.p), 0, "fds: spawned with a socket as stdin and fd 63 on stdout");
    close(sv[1]);
    is_int(exec_proc_write(t.p, "x", 1), -EPIPE, "fds: no stdin pipe when an exec_fd is placed at 0");
    (void)!write(sv[0], "hello\n", 6);
    run_until(&h, &t.marked, 5000);
    is_str(t.err_at_mark.p, "e1\ne2-no-newline",
           "read_stderr: stderr written before the mark is delivered at once, raw (no line split)");
    (void)!write(sv[0], "bye\n", 4);
    close(sv[0]);
    run_until(&h, &t.exited, 5000);
    buf_append(&t.out, "", 1);
    is_str(t.out.p, "got:hello\nmark\nrest:bye\n", "fds: fd 63 writes into the stdout pipe, in order");
    proto_free(&t);

    struct exec_proc *p;
    struct exec_fd bad[] = {{1, 0}};
    struct exec_spawn_opts so_bad = {.fds = bad, .nfds = 1};
    is_int(exec_spawn(h.env, argv, &so_bad, &p), -EINVAL, "fds: placing over stdout is refused");
    struct exec_spawn_opts so_both = {.on_stderr = r_err, .on_stderr_data = proto_err};
    is_int(exec_spawn(h.env, argv, &so_both, &p), -EINVAL, "stderr as lines and as bytes at once is refused");
    h_close(&h, "fds");
}

static void test_signal_and_quick_kill(void)
{
    struct exec_env_opts o = {.name = "signal"};
    char *argv_int[] = {"/bin/sh", "-c",
                        "trap 'echo INT; exit 7' INT; echo ready; while :; do sleep 0.05; done", NULL};
    char *argv_stubborn[] = {"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done", NULL};
    struct proto t;
    struct run r = {0};
    struct h h;

    h_open(&h, &o);
    struct exec_proc *p = proto_spawn(&h, &t, argv_int, "ready");
    is_int(exec_proc_signal(p, SIGINT), 0, "signal: SIGINT sent");
    run_until(&h, &t.exited, 5000);
    buf_append(&t.out, "", 1);
    ok(t.exited && t.ex.status == 7 && strstr(t.out.p, "INT") != NULL,
       "signal: the program's trap ran and it exited 7 (status %d)", t.ex.status);
    proto_free(&t);

    p = proto_spawn(&h, &t, argv_stubborn, "ready");
    uint64_t t0 = clock_mono_us();
    exec_proc_kill(p, 0, r_kill, &r);
    run_until(&h, &t.exited, 5000);
    double ms = (clock_mono_us() - t0) / 1e3;
    ok(t.exited && t.ex.signal == SIGKILL && r.killed && r.kr.escalated && r.kr.left == 0 && ms < 200,
       "kill with no grace: SIGKILL at once, verified in %.1f ms", ms);
    proto_free(&t);

    p = proto_spawn(&h, &t, argv_stubborn, "ready");
    memset(&r, 0, sizeof r);
    t0 = clock_mono_us();
    exec_proc_kill(p, 10000, r_kill, &r);
    exec_proc_kill(p, 0, NULL, NULL);
    run_until(&h, &t.exited, 5000);
    ms = (clock_mono_us() - t0) / 1e3;
    ok(t.exited && t.ex.signal == SIGKILL && r.killed && ms < 500,
       "a second kill with a shorter grace brings the SIGKILL forward (%.1f ms, not 10 s)", ms);
    proto_free(&t);
    h_close(&h, "signal");
}

struct waited {
    int calls;
    enum exec_status status;
};

static void on_waited(void *arg, struct exec_env *env, enum exec_status status)
{
    struct waited *w = arg;

    w->calls++;
    w->status = status;
}

static void test_env_wait(void)
{
    char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    struct exec_env_opts o = {.workspace = "/tmp", .env = envp, .name = "wait"};
    struct exec_env_wait w1, w2, w3;
    struct waited a = {0}, b = {0}, c = {0};
    struct exec_env *env;
    uv_loop_t loop;

    uv_loop_init(&loop);
    if (exec_env_new(&loop, &o, &env) != 0)
        abort();
    exec_env_wait(env, &w1, on_waited, &a); /* inactive: waits through the start */
    if (exec_env_start(env) != 0)
        abort();
    exec_env_wait(env, &w2, on_waited, &b);
    exec_env_wait(env, &w3, on_waited, &c);
    exec_env_wait_cancel(env, &w3);
    is_int(a.calls + b.calls, 0, "wait: no callback inside exec_env_wait or exec_env_start");
    while (exec_env_status(env) == EXEC_STATUS_STARTING)
        uv_run(&loop, UV_RUN_ONCE);
    ok(a.calls == 1 && b.calls == 1 && a.status == EXEC_STATUS_READY && b.status == EXEC_STATUS_READY,
       "wait: both waits called once with ready");
    is_int(c.calls, 0, "wait: a cancelled wait is not called");
    exec_env_close(env, 0, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);

    struct exec_env_opts bad = {.workspace = "/nonexistent/agentd", .env = envp, .name = "wait-bad"};
    memset(&a, 0, sizeof a);
    if (exec_env_new(&loop, &bad, &env) != 0 || exec_env_start(env) != 0)
        abort();
    exec_env_wait(env, &w1, on_waited, &a);
    while (exec_env_status(env) == EXEC_STATUS_STARTING)
        uv_run(&loop, UV_RUN_ONCE);
    ok(a.calls == 1 && a.status == EXEC_STATUS_ERROR && exec_env_error(env) != NULL &&
           strstr(exec_env_error(env), "workspace") != NULL,
       "wait: an environment that fails calls with error, and exec_env_error says why (%s)",
       exec_env_error(env) ? exec_env_error(env) : "NULL");
    exec_env_close(env, 0, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);

    memset(&a, 0, sizeof a);
    if (exec_env_new(&loop, &o, &env) != 0 || exec_env_start(env) != 0)
        abort();
    exec_env_wait(env, &w1, on_waited, &a);
    exec_env_close(env, 0, NULL, NULL);
    ok(a.calls == 1 && a.status == EXEC_STATUS_TERMINATED,
       "wait: closing the environment ends the wait at once");
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(uv_loop_close(&loop), 0, "wait: loop closed cleanly");
}

static void test_find_program(void)
{
    char path_var[160];
    char *envp[] = {path_var, NULL};
    struct exec_env_opts o = {.env = envp, .name = "find"};
    char file[128], *found = NULL;
    struct h h;

    /* h_open makes the workspace; its PATH names the workspace's bin/ before /usr/bin. */
    snprintf(path_var, sizeof path_var, "PATH=/nonexistent:/usr/bin:/bin");
    h_open(&h, &o);
    is_int(exec_env_find_program(h.env, "sh", &found), 0, "find: a bare name on the environment's PATH");
    is_str(found, "/usr/bin/sh", "find: the first match, as an absolute path");
    free(found);
    found = NULL;
    is_int(exec_env_find_program(h.env, "agentd-no-such-program", &found), -ENOENT,
           "find: missing is -ENOENT");
    snprintf(file, sizeof file, "%s/tool", h.ws);
    touch(h.ws, "tool", "#!/bin/sh\n");
    is_int(exec_env_find_program(h.env, "./tool", &found), -EACCES,
           "find: a path with a slash is taken from the workspace; not executable is -EACCES");
    chmod(file, 0755);
    is_int(exec_env_find_program(h.env, "./tool", &found), 0, "find: executable now");
    ok(found != NULL && strncmp(found, h.ws, strlen(h.ws)) == 0, "find: relative to the workspace (%s)",
       found ? found : "NULL");
    free(found);

    /* A program only on agentd's PATH runs, with its directory after the session's PATH. */
    char bin[96], *old_path = getenv("PATH") ? xstrdup(getenv("PATH")) : NULL;
    char *argv_only[] = {"agentd-only-here", NULL}, *argv_none[] = {"agentd-nowhere", NULL};
    char agentd_path[256], why[512];
    struct run r;
    snprintf(bin, sizeof bin, "%s/bin", h.ws);
    mkdir(bin, 0755);
    touch(h.ws, "bin/agentd-only-here", "#!/bin/sh\necho \"$PATH\"\n");
    snprintf(file, sizeof file, "%s/agentd-only-here", bin);
    chmod(file, 0755);
    snprintf(agentd_path, sizeof agentd_path, "%s:/usr/bin:/bin", bin);
    setenv("PATH", agentd_path, 1);
    is_int(h_run(&h, &r, argv_only, NULL, 0), 0, "find: a program only on agentd's PATH is spawned");
    char want[200];
    snprintf(want, sizeof want, "/nonexistent:/usr/bin:/bin:%s\n", bin);
    is_str(r.out.p, want, "find: it runs with the session's PATH plus its own directory");
    r_free(&r);
    struct exec_proc *p;
    struct exec_spawn_opts so = {.why = why, .why_cap = sizeof why};
    is_int(exec_spawn(h.env, argv_none, &so, &p), -ENOENT, "find: found nowhere is -ENOENT");
    ok(strstr(why, "(/nonexistent:/usr/bin:/bin)") && strstr(why, agentd_path),
       "find: why names both PATHs searched (%s)", why);
    if (old_path != NULL)
        setenv("PATH", old_path, 1);
    free(old_path);
    h_close(&h, "find");
}

static void test_close_kills(void)
{
    struct exec_env_opts o = {.name = "close"};
    char *argv[] = {"sleep", "30", NULL};
    char *argv_true[] = {"true", NULL};
    struct exec_spawn_opts so;
    struct exec_proc *p;
    struct run r;
    struct h h;
    pid_t pid;

    h_open(&h, &o);
    memset(&r, 0, sizeof r);
    so = r_opts(&r, 0);
    if (exec_spawn(h.env, argv, &so, &p) != 0)
        abort();
    pid = exec_proc_pid(p);
    uint64_t t0 = clock_mono_us();
    h_close(&h, "close with a running program");
    ok(r.exited && r.ex.signal == SIGTERM && !pid_alive(pid), "close: the program was stopped (%.0f ms)",
       (clock_mono_us() - t0) / 1e3);
    r_free(&r);

    struct exec_env_opts missing = {.name = "missing", .workspace = "/nonexistent/agentd-exec"};
    is_int(h_open(&h, &missing), EXEC_STATUS_ERROR, "missing workspace: error status");
    is_int(exec_spawn(h.env, argv_true, &so, &p), -EAGAIN, "missing workspace: spawn refused");
    h_close(&h, "missing");
}

/* kill -9 of the process that started a program (a fork of this test stands in for agentd): the
 * leader dies of its PR_SET_PDEATHSIG, and the guard SIGKILLs its group, so the background job
 * that nothing else would reach dies too. */
static void test_guard_kill9(void)
{
    char *argv[] = {"sh", "-c", "sleep 300 & echo $!; exec sleep 301", NULL};
    char ws[] = "/tmp/agentd-exec-guard-XXXXXX";
    pid_t pids[2] = {0, 0}, agent;
    int pfd[2];

    if (mkdtemp(ws) == NULL || pipe(pfd) < 0)
        abort();
    if ((agent = fork()) == 0) {
        struct exec_env_opts o = {.name = "guard", .workspace = ws};
        struct exec_spawn_opts so;
        struct exec_proc *p;
        struct run r;
        struct h h;

        close(pfd[0]);
        memset(&r, 0, sizeof r);
        so = r_opts(&r, 0);
        if (h_open(&h, &o) != EXEC_STATUS_READY || exec_spawn(h.env, argv, &so, &p) != 0)
            _exit(1);
        while (r.out.len == 0 || memchr(r.out.p, '\n', r.out.len) == NULL)
            uv_run(&h.loop, UV_RUN_ONCE);
        pids[0] = exec_proc_pid(p);
        pids[1] = (pid_t)atoi(r.out.p);
        if (write(pfd[1], pids, sizeof pids) != sizeof pids)
            _exit(1);
        for (;;)
            pause();
    }
    close(pfd[1]);
    if (read(pfd[0], pids, sizeof pids) != sizeof pids)
        pids[0] = pids[1] = 0;
    close(pfd[0]);
    ok(pids[0] > 0 && pids[1] > 0 && pid_alive(pids[0]) && pid_alive(pids[1]),
       "guard: the program and its background job run");
    uint64_t t0 = clock_mono_us();
    kill(agent, SIGKILL);
    waitpid(agent, NULL, 0);
    while ((pid_alive(pids[0]) || pid_alive(pids[1])) && clock_mono_us() - t0 < 2000000)
        usleep(5000);
    ok(pids[1] > 0 && !pid_alive(pids[0]) && !pid_alive(pids[1]),
       "guard: kill -9 of agentd ends the program and its background job (%.0f ms)",
       (clock_mono_us() - t0) / 1e3);
    rm_rf(ws);
}

/* A process group that pauses until killed; once its parent is gone only the guard kills it. It
 * keeps none of our descriptors: one that outlived the test by mistake would hold prove's pipe. */
/* A process group of one sleeping process. Returns once the group exists: a guard told its pgid
 * before the child's setsid() ran (a loaded machine may not schedule the child for a while) would
 * find no such group, and the test would see the child survive a kill that was never possible. */
static pid_t group_start(void)
{
    int p[2];
    char c;

    if (pipe(p) < 0)
        abort();
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        if (write(p[1], "g", 1) != 1)
            _exit(1);
        for (int fd = 0; fd < 1024; fd++)
            close(fd);
        for (;;)
            pause();
    }
    if (pid < 0)
        abort();
    close(p[1]);
    if (read(p[0], &c, 1) != 1)
        abort();
    close(p[0]);
    return pid;
}

#define GUARD_GROUPS 400

struct guard_report {
    pid_t guard[4]; /* the guard: first, after a 200 ms stall, after it stopped, after its death */
    int add_rc;     /* the add that restarted it after its death */
    int stall_failed, stuck_failed;
    double stuck_ms; /* the changes sent while the guard stopped for good */
    pid_t groups[GUARD_GROUPS + 2];
};

/* The stand-in for agentd in test_guard_restart (a fork of the test): registers GUARD_GROUPS
 * groups, stalls its guard, stops it (a new one replaces it), kills that one, registers two more
 * (the first restarts the guard, which must be told every group), forgets the first of those and
 * reports. */
static _Noreturn void guard_restart_agent(int out)
{
    struct guard_report rep = {0};
    pid_t cont;

    for (int i = 0; i < GUARD_GROUPS; i++)
        if (exec__guard_add(rep.groups[i] = group_start(), NULL) != 0)
            _exit(1);
    rep.guard[0] = exec__guard_pid();
    /* A guard that stops reading for 200 ms (a loaded machine) while more changes come than its
     * socket queues is waited for, not replaced. */
    kill(rep.guard[0], SIGSTOP);
    if ((cont = fork()) == 0) {
        usleep(200 * 1000);
        kill(rep.guard[0], SIGCONT);
        _exit(0);
    }
    for (int i = 0; i < 2 * GUARD_GROUPS; i++) {
        exec__guard_forget(rep.groups[i % GUARD_GROUPS]);
        rep.stall_failed += exec__guard_add(rep.groups[i % GUARD_GROUPS], NULL) != 0;
    }
    waitpid(cont, NULL, 0);
    rep.guard[1] = exec__guard_pid();
    /* One that stops for good is replaced once a send waited a second for room. */
    kill(rep.guard[1], SIGSTOP);
    uint64_t t0 = clock_mono_us();
    for (int i = 0; i < 2 * GUARD_GROUPS; i++) {
        exec__guard_forget(rep.groups[i % GUARD_GROUPS]);
        rep.stuck_failed += exec__guard_add(rep.groups[i % GUARD_GROUPS], NULL) != 0;
    }
    rep.stuck_ms = (clock_mono_us() - t0) / 1e3;
    rep.guard[2] = exec__guard_pid();
    kill(rep.guard[2], SIGKILL);
    while (pid_alive(rep.guard[2]))
        usleep(1000);
    rep.add_rc = exec__guard_add(rep.groups[GUARD_GROUPS] = group_start(), NULL);
    rep.guard[3] = exec__guard_pid();
    (void)!exec__guard_add(rep.groups[GUARD_GROUPS + 1] = group_start(), NULL);
    /* The new guard was told the registry, this add included: it must not list it twice, or the
     * "-" below would leave one entry that kills a group id agentd no longer owns. */
    exec__guard_forget(rep.groups[GUARD_GROUPS]);
    if (write(out, &rep, sizeof rep) != sizeof rep)
        _exit(1);
    for (;;)
        pause();
}

/* Forks a stand-in for agentd that runs agent(out) and writes its report (len bytes) to out, then
 * waits to be killed; fills rep with the report (zeros if none came). The stand-in's pid. */
static pid_t guard_agent_start(void (*agent)(int out), void *rep, size_t len)
{
    pid_t pid;
    int pfd[2];

    if (pipe(pfd) < 0)
        abort();
    if ((pid = fork()) == 0) {
        close(pfd[0]);
        agent(pfd[1]);
        _exit(1);
    }
    close(pfd[1]);
    if (read(pfd[0], rep, len) != (ssize_t)len)
        memset(rep, 0, len);
    close(pfd[0]);
    return pid;
}

/* A guard replaced while hundreds of programs run is told all of them: more than its socket
 * queues as one datagram each before the new guard reads. Then a kill -9 of agentd ends every one. */
static void test_guard_restart(void)
{
    struct guard_report rep;
    pid_t agent = guard_agent_start(guard_restart_agent, &rep, sizeof rep);
    int left = 0, first_left = -1;

    ok(rep.guard[0] > 0 && rep.guard[1] == rep.guard[0] && rep.stall_failed == 0,
       "guard: a guard stalled for 200 ms under %d changes is waited for, not replaced (%d adds failed)",
       4 * GUARD_GROUPS, rep.stall_failed);
    ok(rep.guard[2] > 0 && rep.guard[2] != rep.guard[1] && rep.stuck_failed == 0 && rep.stuck_ms >= 1000,
       "guard: a guard stopped for good is replaced after a send waited 1 s (%.0f ms, %d adds failed)",
       rep.stuck_ms, rep.stuck_failed);
    ok(rep.add_rc == 0 && rep.guard[3] > 0 && rep.guard[3] != rep.guard[2],
       "guard: the add after the guard's death starts a new one (rc %d)", rep.add_rc);
    uint64_t t0 = clock_mono_us();
    kill(agent, SIGKILL);
    waitpid(agent, NULL, 0);
    for (int i = 0; i < GUARD_GROUPS + 2; i++) {
        if (i == GUARD_GROUPS)
            continue;
        while (rep.groups[i] > 0 && pid_alive(rep.groups[i]) && clock_mono_us() - t0 < 3000000)
            usleep(2000);
        if (rep.groups[i] <= 0 || pid_alive(rep.groups[i])) {
            left++;
            if (first_left < 0)
                first_left = i;
        }
    }
    ok(left == 0,
       "guard: kill -9 of agentd ends all %d groups registered before and after the restart "
       "(%d left, the first #%d; %.0f ms)",
       GUARD_GROUPS + 1, left, first_left, (clock_mono_us() - t0) / 1e3);
    ok(rep.groups[GUARD_GROUPS] > 0 && pid_alive(rep.groups[GUARD_GROUPS]),
       "guard: the group whose add restarted the guard, forgotten since, is not killed");
    for (int i = 0; i < GUARD_GROUPS + 2; i++)
        if (rep.groups[i] > 0 && pid_alive(rep.groups[i]))
            kill(rep.groups[i], SIGKILL);
}

/* ---- a new guard that cannot be told the registry ---- */

#define GUARD_FAT_ENTRIES 4000 /* of about 4 KiB each: a hundred times what the socket queues */

struct guard_resend_report {
    pid_t stopped;         /* the new guard the watcher stopped (0: none seen) */
    int fail_rc, ok_rc;    /* the add whose restart could not resend; the next add */
    double fail_ms, ok_ms; /* how long the failed add took, and the next */
    int stopped_killed;    /* the stopped guard died of SIGKILL */
    pid_t old_group;       /* registered before both restarts, only ever resent */
    pid_t new_guard;       /* the guard after the second restart */
};

static pid_t guard_known[2];
static pid_t guard_stopped;

/* The stand-in's watcher: the first child that is a guard other than guard_known (a guard is
 * reparented to the stand-in, a subreaper) is stopped as soon as it appears, before the registry
 * it is being sent can all fit in its socket. Only the test stops it: nothing in guard.c waits. */
static void *guard_stopper(void *arg)
{
    char path[64], list[4096], comm[64];
    uint64_t t0 = clock_mono_us();

    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
    while (clock_mono_us() - t0 < 10000000) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(list, 1, sizeof list - 1, f) : 0;
        if (f)
            fclose(f);
        list[n] = '\0';
        for (char *p = list, *end; *p; p = end) {
            pid_t pid = (pid_t)strtol(p, &end, 10);
            if (end == p)
                break;
            if (pid == guard_known[0] || pid == guard_known[1])
                continue;
            snprintf(comm, sizeof comm, "/proc/%d/comm", (int)pid);
            FILE *c = fopen(comm, "r");
            size_t m = c ? fread(comm, 1, sizeof comm - 1, c) : 0;
            if (c)
                fclose(c);
            comm[m] = '\0';
            if (strcmp(comm, "exe\n") == 0 || strcmp(comm, "agentd-guard\n") == 0) {
                kill(pid, SIGSTOP);
                __atomic_store_n(&guard_stopped, pid, __ATOMIC_SEQ_CST);
                return NULL;
            }
        }
    }
    return NULL;
}

static _Noreturn void guard_resend_agent(int out)
{
    struct guard_resend_report rep = {0};
    static char fat[4000];
    pthread_t watcher;
    int st;

    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    memset(fat, 'x', sizeof fat - 1);
    memcpy(fat, "/nonexistent-agentd-test/", 25); /* the guard's kill finds no such cgroup */
    if (exec__guard_add(rep.old_group = group_start(), NULL) != 0)
        _exit(1);
    for (int i = 0; i < GUARD_FAT_ENTRIES; i++)
        if (exec__guard_add(rep.old_group, fat) != 0)
            _exit(1);
    guard_known[0] = exec__guard_pid();
    kill(guard_known[0], SIGKILL);
    waitpid(guard_known[0], NULL, 0);
    pthread_create(&watcher, NULL, guard_stopper, NULL);
    uint64_t t0 = clock_mono_us();
    pid_t g = group_start();
    rep.fail_rc = exec__guard_add(g, NULL);
    rep.fail_ms = (clock_mono_us() - t0) / 1e3;
    pthread_join(watcher, NULL);
    rep.stopped = guard_stopped;
    for (int i = 0; rep.stopped > 0 && i < 3000 && !rep.stopped_killed; i++) {
        if (waitpid(rep.stopped, &st, WNOHANG) == rep.stopped)
            rep.stopped_killed = WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 1 : -1;
        else
            usleep(1000); /* a stopped guard left alone would never be reaped */
    }
    kill(g, SIGKILL); /* its add failed: the caller kills the program */
    waitpid(g, NULL, 0);
    guard_known[1] = rep.stopped;
    g = group_start();
    t0 = clock_mono_us();
    rep.ok_rc = exec__guard_add(g, NULL);
    rep.ok_ms = (clock_mono_us() - t0) / 1e3;
    rep.new_guard = exec__guard_pid();
    if (write(out, &rep, sizeof rep) != sizeof rep)
        _exit(1);
    for (;;)
        pause();
}

/* A new guard that reads nothing for GUARD_SEND_TIMEOUT_MS while it is told the registry is
 * SIGKILLed, the add that started it fails (its caller kills the program), and the next change
 * starts another, which is told everything: a kill -9 of agentd then ends a group registered
 * before both restarts. */
static void test_guard_resend_fails(void)
{
    struct guard_resend_report rep;
    pid_t agent = guard_agent_start(guard_resend_agent, &rep, sizeof rep);

    ok(rep.stopped > 0 && rep.fail_rc < 0 && rep.fail_ms >= 1000,
       "guard: an add whose new guard cannot be told the registry fails after a send waited 1 s (rc %d, "
       "%.0f ms)",
       rep.fail_rc, rep.fail_ms);
    ok(rep.stopped_killed == 1, "guard: that guard is SIGKILLed, not left stopped");
    ok(rep.ok_rc == 0 && rep.new_guard > 0 && rep.new_guard != rep.stopped,
       "guard: the next add starts another guard, told all %d entries in %.0f ms (rc %d)",
       GUARD_FAT_ENTRIES + 2, rep.ok_ms, rep.ok_rc);
    uint64_t t0 = clock_mono_us();
    kill(agent, SIGKILL);
    waitpid(agent, NULL, 0);
    while (rep.old_group > 0 && pid_alive(rep.old_group) && clock_mono_us() - t0 < 3000000)
        usleep(2000);
    ok(rep.old_group > 0 && !pid_alive(rep.old_group),
       "guard: kill -9 of agentd ends a group registered before both restarts (%.0f ms)",
       (clock_mono_us() - t0) / 1e3);
    if (rep.old_group > 0 && pid_alive(rep.old_group))
        kill(rep.old_group, SIGKILL);
}

/* The guard runs kill(-pgid) for what it reads, so it refuses a pgid that is not a whole number
 * above 1: -1 would be every process of the uid, 0 its own group (and then nothing after it). */
static void test_guard_parse(void)
{
    const char *bad[] = {"+1",   "+0",           "+-5", "+",      "+abc", "+12x",
                         "+ 12", "+99999999999", "-1",  "-12 /x", "*12",  ""};
    const char *cg;
    char op;
    pid_t pgid;
    int nbad = 0;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (exec__guard_parse(bad[i], &op, &pgid, &cg) == 0) {
            diag("guard: accepted '%s'", bad[i]);
            nbad++;
        }
    }
    is_int(nbad, 0, "guard: refuses pgids 1, 0, negative, malformed or out of range");
    ok(exec__guard_parse("+12", &op, &pgid, &cg) == 0 && op == '+' && pgid == 12 && cg == NULL,
       "guard: parses +pgid");
    ok(exec__guard_parse("+12 /sys/fs/cgroup/pids/a b", &op, &pgid, &cg) == 0 && pgid == 12 && cg != NULL &&
           strcmp(cg, "/sys/fs/cgroup/pids/a b") == 0,
       "guard: parses +pgid and the cgroup directory");
    ok(exec__guard_parse("-34", &op, &pgid, &cg) == 0 && op == '-' && pgid == 34, "guard: parses -pgid");

    /* A guard of our own, told "+0" and a malformed entry first: it still kills the real group. */
    char *argv[] = {"agentd-exec-guard", NULL}, *envp[] = {"AGENTD_EXEC_GUARD=1", NULL};
    char msg[64];
    int sv[2], len;
    pid_t guard = 0, group = group_start();

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    struct exec_child c = {.path = "/proc/self/exe",
                           .argv = argv,
                           .envp = envp,
                           .cwd = "/",
                           .map = {{0, sv[1]}, {1, 1}, {2, 2}},
                           .nmap = 3};
    if (exec_child_spawn(&c, &guard) != 0)
        abort();
    close(sv[1]);
    len = snprintf(msg, sizeof msg, "+0%c+12x%c+%d", '\0', '\0', (int)group);
    ok(send(sv[0], msg, (size_t)len, MSG_NOSIGNAL) == len, "guard: sent +0, +12x and a real group");
    close(sv[0]);
    waitpid(guard, NULL, 0);
    uint64_t t0 = clock_mono_us();
    while (pid_alive(group) && clock_mono_us() - t0 < 2000000)
        usleep(2000);
    ok(!pid_alive(group), "guard: at end of file it kills the real group listed after +0");
    if (pid_alive(group))
        kill(group, SIGKILL);
    waitpid(group, NULL, 0);
}

/* The fds a program sees: `ls /proc/self/fd` started by exec_child_spawn with stdout on a pipe;
 * the highest one listed, or -1. */
static int child_max_fd(void)
{
    char *argv[] = {"/bin/ls", "-1", "/proc/self/fd", NULL}, *envp[] = {NULL};
    char out[4096];
    size_t len = 0;
    ssize_t n;
    int pfd[2], max = -1;
    pid_t pid;

    if (pipe2(pfd, O_CLOEXEC) < 0)
        abort();
    struct exec_child c = {
        .path = argv[0], .argv = argv, .envp = envp, .map = {{1, pfd[1]}, {2, 2}}, .nmap = 2};
    if (exec_child_spawn(&c, &pid) != 0)
        abort();
    close(pfd[1]);
    while (len < sizeof out - 1 && (n = read(pfd[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    close(pfd[0]);
    waitpid(pid, NULL, 0);
    out[len] = '\0';
    for (char *p = out; *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
        if (atoi(p) > max)
            max = atoi(p);
    return max;
}

/* A descriptor of agentd above 1023 without O_CLOEXEC (many clients, a raised RLIMIT_NOFILE)
 * does not reach a program, with close_range and with the loop kernels without it use. */
static void test_close_high_fds(void)
{
    struct rlimit rl;
    int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur <= 1500 || fd < 0 || dup2(fd, 1500) < 0) {
        ok(1, "# SKIP RLIMIT_NOFILE %lu is too low for fd 1500", (unsigned long)rl.rlim_cur);
        ok(1, "# SKIP RLIMIT_NOFILE too low");
        return;
    }
    close(fd);
    int with = child_max_fd();
    exec_child_no_close_range = 1;
    int without = child_max_fd();
    exec_child_no_close_range = 0;
    close(1500);
    ok(with >= 2 && with < 100, "child: fd 1500 does not reach the program (close_range; highest %d)", with);
    ok(without >= 2 && without < 100, "child: nor without close_range (the close loop; highest %d)", without);
}

/* exec_proc_kill_after (a cancel with a cancel line): the program is asked on stdin to stop and
 * does, leaving a background child and a setsid()ed one: it exits by itself, not of the SIGTERM,
 * and both children, known from the first scan, get the SIGTERM when it comes. A program that does
 * not stop gets it after the delay. */
static void test_kill_after(void)
{
    struct exec_env_opts o = {.name = "killafter"};
    char *argv[] = {"/bin/sh", "-c", "sleep 30 & echo $!; setsid sleep 30 & echo $!; read x; exit 3", NULL};
    char *argv_deaf[] = {"sleep", "30", NULL};
    struct exec_spawn_opts so;
    struct exec_proc *p;
    pid_t pids[3] = {0};
    struct run r;
    struct h h;

    h_open(&h, &o);
    memset(&r, 0, sizeof r);
    so = r_opts(&r, 0);
    if (exec_spawn(h.env, argv, &so, &p) != 0)
        abort();
    pids[0] = exec_proc_pid(p);
    for (int i = 0; i < 400 && nlines(&r.out) < 2; i++)
        uv_run(&h.loop, UV_RUN_ONCE);
    buf_append(&r.out, "", 1);
    if (sscanf(r.out.p, "%d %d", &pids[1], &pids[2]) != 2)
        abort();
    usleep(50 * 1000); /* let setsid take effect */
    exec_proc_kill_after(p, 300, 2000, r_kill, &r);
    if (exec_proc_write(p, "stop\n", 5) != 0)
        abort();
    run_until(&h, &r.exited, 5000);
    ok(r.exited && r.ex.signal == 0 && r.ex.status == 3,
       "kill_after: the program ended by itself (exit %d, signal %d)", r.ex.status, r.ex.signal);
    ok(r.killed && r.kr.elapsed_us >= 300000 && !r.kr.escalated && r.kr.left == 0,
       "kill_after: its children got the SIGTERM after 300 ms (%.0f ms), no SIGKILL", r.kr.elapsed_us / 1e3);
    ok(!pid_alive(pids[1]) && !pid_alive(pids[2]), "kill_after: the background and setsid children are gone");
    r_free(&r);

    memset(&r, 0, sizeof r);
    so = r_opts(&r, 0);
    if (exec_spawn(h.env, argv_deaf, &so, &p) != 0)
        abort();
    uint64_t t0 = clock_mono_us();
    exec_proc_kill_after(p, 200, 2000, r_kill, &r);
    run_until(&h, &r.exited, 5000);
    double ms = (clock_mono_us() - t0) / 1e3;
    ok(r.exited && r.ex.signal == SIGTERM && ms >= 200 && ms < 1000,
       "kill_after: a program that does not stop gets the SIGTERM after 200 ms (%.0f ms)", ms);
    r_free(&r);
    h_close(&h, "kill_after");
}

/* exec_kill_all (a node that lost its write lease, about to exit): two programs, one ignoring
 * SIGTERM, each with a background child and a setsid()ed grandchild: all dead at once, no grace. */
static void test_kill_all(void)
{
    struct exec_env_opts o = {.name = "killall"};
    char *argv[] = {"/bin/sh", "-c", "trap '' TERM; sleep 30 & echo $!; setsid sleep 30 & echo $!; wait",
                    NULL};
    struct exec_spawn_opts so[2];
    struct exec_proc *p[2];
    pid_t pids[6] = {0};
    struct run r[2];
    struct h h;

    h_open(&h, &o);
    for (int i = 0; i < 2; i++) {
        memset(&r[i], 0, sizeof r[i]);
        so[i] = r_opts(&r[i], 0);
        if (exec_spawn(h.env, argv, &so[i], &p[i]) != 0)
            abort();
        pids[3 * i] = exec_proc_pid(p[i]);
        for (int k = 0; k < 400 && nlines(&r[i].out) < 2; k++)
            uv_run(&h.loop, UV_RUN_ONCE);
        buf_append(&r[i].out, "", 1);
        if (sscanf(r[i].out.p, "%d %d", &pids[3 * i + 1], &pids[3 * i + 2]) != 2)
            abort();
    }
    usleep(50 * 1000); /* let setsid take effect */
    is_int((int)exec_kill_all(), 2, "kill_all: both programs' groups signalled");
    bool any = true;
    for (int k = 0; k < 100 && any; k++) {
        usleep(10 * 1000);
        any = false;
        for (int i = 0; i < 6; i++)
            any = any || pid_alive(pids[i]);
    }
    ok(!any, "kill_all: leaders, background children and setsid grandchildren all dead");
    run_until(&h, &r[0].exited, 5000);
    run_until(&h, &r[1].exited, 5000);
    ok(r[0].ex.signal == SIGKILL && r[1].ex.signal == SIGKILL, "kill_all: SIGKILL, no grace period");
    r_free(&r[0]);
    r_free(&r[1]);
    h_close(&h, "kill_all");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_threshold = LOG_ERROR;
    test_levels();
    test_env_and_cwd();
    test_io();
    test_exit_and_signal();
    test_rlimits();
    test_kill_group(false, false);
    test_kill_group(false, true);
    test_kill_group(true, false);
    test_kill_all();
    test_kill_after();
    test_cgroup_pids();
    test_bwrap();
    test_watch();
    test_close_kills();
    test_guard_kill9();
    test_guard_restart();
    test_guard_resend_fails();
    test_guard_parse();
    test_close_high_fds();
    test_protocol_fds();
    test_signal_and_quick_kill();
    test_env_wait();
    test_find_program();
    return done_testing();
}
