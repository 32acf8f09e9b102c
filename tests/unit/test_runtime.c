/* Unit tests for src/runtime: persistent bash / python / node interpreters.
 *
 * Every test runs on its own loop, with the runtime in an execution environment of its own (a
 * fresh workspace, PATH and HOME only), and ends by closing the runtime, the environment and the
 * loop; uv_loop_close failing means a handle leaked. After each close the test also checks that
 * this process has no child left (not even a zombie) and that nobody is left in the runtime's
 * process group.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "core/core.h"
#include "exec/exec.h"
#include "runtime/runtime.h"
#include "tap.h"

/* ---- a synchronous wrapper around one runtime --------------------------------------------- */

struct result {
    bool done;
    char *out, *err;
    size_t out_len, err_len, out_total;
    int status;
    enum runtime_outcome outcome;
    bool truncated, timed_out;
    uint64_t duration_us;
};

struct harness {
    uv_loop_t loop;
    struct exec_env *env;
    char ws[64];
    struct runtime *rt;
    int events_terminated;
    const char *last_reason;
    bool closed, env_closed;
};

static void on_event(struct runtime *rt, const struct runtime_event *ev, void *arg)
{
    struct harness *h = arg;

    if (ev->kind == RUNTIME_EVENT_STATUS && ev->status == RUNTIME_STATUS_TERMINATED) {
        h->events_terminated++;
        h->last_reason = ev->reason;
    }
}

/* A runtime in a fresh environment. The environment is still starting when runtime_new returns,
 * so every test's first call also waits for it to be ready. */
static void h_open_env(struct harness *h, enum runtime_lang lang, struct runtime_options *o,
                       struct exec_env_opts *eo)
{
    struct runtime_options def = {0};
    char home[80];
    char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", home, NULL};

    memset(h, 0, sizeof *h);
    if (o == NULL)
        o = &def;
    snprintf(h->ws, sizeof h->ws, "/tmp/agentd-rt-test-XXXXXX");
    if (mkdtemp(h->ws) == NULL)
        abort();
    snprintf(home, sizeof home, "HOME=%s", h->ws);
    eo->workspace = h->ws;
    eo->env = envp;
    eo->name = "rt-test";
    o->lang = lang;
    o->event_cb = on_event;
    o->event_arg = h;
    if (o->kill_grace_ms == 0)
        o->kill_grace_ms = 300;
    uv_loop_init(&h->loop);
    if (exec_env_new(&h->loop, eo, &h->env) != 0 || exec_env_start(h->env) != 0)
        bail_out("the execution environment did not start");
    o->env = h->env;
    if (runtime_new(&h->loop, o, &h->rt) != 0)
        bail_out("runtime_new failed");
}

static void h_open(struct harness *h, enum runtime_lang lang, struct runtime_options *o)
{
    struct exec_env_opts eo = {0};

    h_open_env(h, lang, o, &eo);
}

static void on_done(struct runtime *rt, const struct runtime_result *r, void *arg)
{
    struct result *res = arg;

    res->out = malloc(r->out_len + 1);
    memcpy(res->out, r->out, r->out_len);
    res->out[r->out_len] = '\0';
    res->err = malloc(r->err_len + 1);
    memcpy(res->err, r->err, r->err_len);
    res->err[r->err_len] = '\0';
    res->out_len = r->out_len;
    res->err_len = r->err_len;
    res->out_total = r->out_total;
    res->status = r->status;
    res->outcome = r->outcome;
    res->truncated = r->truncated;
    res->timed_out = r->timed_out;
    res->duration_us = r->duration_us;
    res->done = true;
}

static void result_free(struct result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static struct result run_t(struct harness *h, const char *code, uint64_t timeout_ms)
{
    struct result r = {0};

    if (runtime_exec(h->rt, code, strlen(code), timeout_ms, on_done, &r) != 0)
        bail_out("runtime_exec refused");
    while (!r.done)
        uv_run(&h->loop, UV_RUN_ONCE);
    return r;
}

static struct result run(struct harness *h, const char *code) { return run_t(h, code, 10000); }

/* Runs `code` and checks stdout; returns whether it matched. */
static int expect_out(struct harness *h, const char *code, const char *want, const char *what)
{
    struct result r = run(h, code);
    int good = r.outcome == RUNTIME_OK && strcmp(r.out, want) == 0;

    ok(good, "%s", what);
    if (!good) {
        diag("code %s", code);
        diag("got outcome %s status %d out [%s] err [%s]", runtime_outcome_name(r.outcome), r.status, r.out,
             r.err);
    }
    result_free(&r);
    return good;
}

struct state_wait {
    bool done;
    int rc;
    char *json;
};

static void on_state(struct runtime *rt, int rc, const char *json, void *arg)
{
    struct state_wait *w = arg;

    w->rc = rc;
    w->json = json ? strdup(json) : NULL;
    w->done = true;
}

static char *state_of(struct harness *h)
{
    struct state_wait w = {0};

    if (runtime_state(h->rt, on_state, &w) != 0)
        return NULL;
    while (!w.done)
        uv_run(&h->loop, UV_RUN_ONCE);
    return w.json;
}

/* Number of live processes (zombies included) whose process group is `pgid`. */
static int group_members(int pgid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    if (pgid <= 0 || d == NULL) {
        if (d)
            closedir(d);
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        char path[300], buf[512];
        FILE *f;
        size_t len;

        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')');
        int ppid, pgrp;
        char st;
        /* A zombie is dead already; reaping orphans is init's job. */
        if (rp && sscanf(rp + 2, "%c %d %d", &st, &ppid, &pgrp) == 3 && pgrp == pgid && st != 'Z')
            n++;
    }
    closedir(d);
    return n;
}

/* SIGKILL is delivered at once but dying takes a moment: poll for up to a second. */
static bool group_gone(int pgid)
{
    for (int i = 0; i < 100; i++) {
        if (group_members(pgid) == 0)
            return true;
        usleep(10000);
    }
    return false;
}

static void on_closed(void *arg) { ((struct harness *)arg)->closed = true; }
static void on_env_closed(void *arg) { ((struct harness *)arg)->env_closed = true; }

/* Closes runtime, environment and loop, then checks nothing is left behind. */
static void h_close(struct harness *h, const char *what)
{
    int pgid = runtime_pgid(h->rt), st;
    char cmd[128];

    runtime_close(h->rt, on_closed, h);
    exec_env_close(h->env, 300, on_env_closed, h);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    ok(h->closed && h->env_closed && uv_loop_close(&h->loop) == 0,
       "%s: runtime, environment and loop closed cleanly", what);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->ws);
    (void)!system(cmd);
    errno = 0;
    ok(waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD, "%s: no child process left", what);
    ok(group_gone(pgid), "%s: process group %d is empty", what, pgid);
}

/* Runs the loop for `ms` milliseconds. */
static void on_sleep(uv_timer_t *t) { *(bool *)t->data = true; }
static void spin(struct harness *h, uint64_t ms)
{
    uv_timer_t t;
    bool fired = false;

    uv_timer_init(&h->loop, &t);
    t.data = &fired;
    uv_timer_start(&t, on_sleep, ms, 0);
    while (!fired)
        uv_run(&h->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&h->loop, UV_RUN_NOWAIT);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_bash_state(void)
{
    struct harness h;
    struct result r;
    char *js;

    h_open(&h, RUNTIME_BASH, NULL);
    expect_out(&h, "x=5; declare -A m=([k]=v); f() { echo fn$1; }; cd /tmp; export E1=abc", "",
               "bash: define variables, function, cwd");
    expect_out(&h, "echo $x ${m[k]}; f 1; pwd; echo $E1", "5 v\nfn1\n/tmp\nabc\n",
               "bash: variables, declare -A, functions, cwd and exports persist");
    js = state_of(&h);
    ok(js && strstr(js, "\"cwd\":\"/tmp\"") && strstr(js, "\"E1\":\"abc\"") &&
           strstr(js, "\"functions\":[\"f\"]") && strstr(js, "\"x\":\"5\"") &&
           strstr(js, "\"running\":true") && !strstr(js, "__agentd"),
       "bash: state reports cwd, exports, variables, functions");
    if (tap_failed)
        diag("%s", js ? js : "(null)");
    free(js);

    r = run(&h, "echo out; echo oops >&2; false");
    ok(r.outcome == RUNTIME_OK && r.status == 1 && strcmp(r.out, "out\n") == 0 &&
           strcmp(r.err, "oops\n") == 0,
       "bash: stderr separate, status of last command");
    result_free(&r);
    r = run(&h, "(exit 7)");
    ok(r.status == 7 && r.outcome == RUNTIME_OK, "bash: exit status 7 reported");
    result_free(&r);
    r = run(&h, "echo 'unterminated");
    ok(r.outcome == RUNTIME_OK && r.status == 2 && strstr(r.err, "unexpected EOF"),
       "bash: syntax error reported, runtime alive");
    result_free(&r);
    r = run(&h, "exit 3");
    ok(r.outcome == RUNTIME_EXITED && r.status == 3, "bash: exit ends the process, status 3");
    result_free(&r);
    expect_out(&h, "echo ${x:-fresh}", "fresh\n", "bash: next call gets a fresh process");

    h_close(&h, "bash state");
}

static void test_python_state(void)
{
    struct harness h;
    struct result r;
    char *js;

    h_open(&h, RUNTIME_PYTHON, NULL);
    expect_out(&h, "import os, json\nx = 41\ndef f(a):\n    return a + 1\nos.chdir('/tmp')", "",
               "python: define, import, chdir");
    expect_out(&h, "print(f(x)); print(os.getcwd()); print(json.dumps([1]))", "42\n/tmp\n[1]\n",
               "python: globals, functions, imports and cwd persist");
    expect_out(&h, "x * 2", "82\n", "python: trailing expression is displayed");
    js = state_of(&h);
    ok(js && strstr(js, "\"modules\":[\"json\",\"os\"]") && strstr(js, "\"cwd\":\"/tmp\"") &&
           strstr(js, "\"x\":{\"type\":\"int\",\"repr\":\"41\"}") && strstr(js, "\"f\":"),
       "python: state reports cwd, modules, globals with type and repr");
    if (tap_failed)
        diag("%s", js ? js : "(null)");
    free(js);
    r = run(&h, "1/0");
    ok(r.outcome == RUNTIME_OK && r.status == 1 && strstr(r.err, "ZeroDivisionError") &&
           !strstr(r.err, "_agentd_main"),
       "python: exception gives status 1 and a traceback without driver frames");
    result_free(&r);
    expect_out(&h, "import sys\nprint(repr(sys.stdin.read()))", "''\n", "python: stdin is /dev/null");
    r = run(&h, "import sys; sys.exit(4)");
    ok(r.outcome == RUNTIME_EXITED && r.status == 4, "python: sys.exit ends the process");
    result_free(&r);
    h_close(&h, "python state");
}

static void test_node_state(void)
{
    struct harness h;
    struct result r;
    char *js;

    h_open(&h, RUNTIME_NODE, NULL);
    expect_out(&h, "var a = 1; let b = 2; function g() { return a + b }; process.chdir('/tmp')", "",
               "node: define var, let, function, chdir");
    expect_out(&h, "console.log(g()); console.log(process.cwd())", "3\n/tmp\n",
               "node: globals, let and cwd persist");
    js = state_of(&h);
    ok(js && strstr(js, "\"a\":{\"type\":\"number\",\"repr\":\"1\"}") &&
           strstr(js, "\"b\":{\"type\":\"number\"") && strstr(js, "\"g\":{\"type\":\"function\"") &&
           strstr(js, "\"cwd\":\"/tmp\""),
       "node: state reports cwd and globals");
    if (js && !strstr(js, "\"b\":"))
        diag("%s", js ? js : "(null)");
    free(js);
    r = run(&h, "throw new Error('boom')");
    ok(r.outcome == RUNTIME_OK && r.status == 1 && strstr(r.err, "boom"),
       "node: thrown error gives status 1 and the message on stderr");
    result_free(&r);
    r = run_t(&h, "a = 5; while (true) {}", 300);
    ok(r.outcome == RUNTIME_INTERRUPTED && r.timed_out && r.duration_us < 1000000,
       "node: busy loop interrupted by timeout in %llu us", (unsigned long long)r.duration_us);
    result_free(&r);
    expect_out(&h, "console.log(a)", "5\n", "node: globals kept after the interrupt");
    h_close(&h, "node state");
}

static void test_reset_history(void)
{
    struct harness h;
    struct runtime_options o = {.history_max = 3};
    char *js;
    int pgid;

    h_open(&h, RUNTIME_BASH, &o);
    expect_out(&h, "x=5; sleep 1000 & :", "", "reset: set a variable, start a background job");
    pgid = runtime_pgid(h.rt);
    ok(runtime_reset(h.rt) == 0, "reset: accepted");
    js = state_of(&h);
    ok(js && strstr(js, "\"running\":false"), "reset: state shows no process");
    free(js);
    expect_out(&h, "echo ${x:-unset}", "unset\n", "reset: variables are gone");
    ok(group_gone(pgid), "reset: old process group (and its background job) is gone");
    if (tap_failed) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "ps -eo pid,ppid,pgid,stat,comm | awk '$3==%d'", pgid);
        (void)!system(cmd);
    }
    for (int i = 0; i < 3; i++) {
        struct result r = run(&h, "echo hi");
        result_free(&r);
    }
    ok(runtime_history_count(h.rt) == 3, "history: bounded to 3 entries");
    js = runtime_history_json(h.rt, 2);
    ok(js && strstr(js, "\"seq\":5") && strstr(js, "\"seq\":4") && !strstr(js, "\"seq\":3") &&
           strstr(js, "\"code\":\"echo hi\"") && strstr(js, "\"out_bytes\":3"),
       "history: last calls with code, size and seq");
    free(js);
    h_close(&h, "reset");
}

static void test_framing(void)
{
    struct harness h;
    struct result r;
    char spoof[512];

    h_open(&h, RUNTIME_BASH, NULL);
    /* Marker-shaped text, including a real-looking 32-hex nonce, on both streams. */
    snprintf(spoof, sizeof spoof, "printf '\\036%s:0\\n\\036'; printf '\\036%s\\n' >&2; printf '\\036'",
             "0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef");
    r = run(&h, spoof);
    ok(r.outcome == RUNTIME_OK && r.out_len == 38 &&
           memcmp(r.out,
                  "\036"
                  "0123456789abcdef0123456789abcdef:0\n\036\036",
                  38) == 0 &&
           r.err_len == 34,
       "framing: spoofed markers are plain output");
    if (tap_failed)
        diag("out %zu err %zu [%s]", r.out_len, r.err_len, r.err);
    result_free(&r);
    expect_out(&h, "printf abc", "abc", "framing: output without trailing newline");
    r = run(&h, "printf '\\000\\001\\377\\036x\\n'");
    ok(r.outcome == RUNTIME_OK && r.out_len == 6 && memcmp(r.out, "\0\1\377\036x\n", 6) == 0,
       "framing: binary output byte-exact");
    result_free(&r);
    r = run(&h, "head -c 10000000 /dev/zero | tr '\\0' a; echo done >&2");
    ok(r.outcome == RUNTIME_OK && r.truncated && r.out_total == 10000000 &&
           r.out_len < RUNTIME_DEFAULT_OUTPUT_LIMIT + 200 && strstr(r.out + (1 << 20), "truncated") &&
           strcmp(r.err, "done\n") == 0,
       "framing: 10 MB output truncated to the limit, total counted");
    result_free(&r);
    expect_out(&h, "echo still-alive", "still-alive\n", "framing: runtime works after 10 MB");
    expect_out(&h, "cat; read -r line; echo \"got:$line\"", "got:\n",
               "framing: code reading stdin sees /dev/null");
    expect_out(&h, "echo next", "next\n", "framing: the next request was not swallowed");
    h_close(&h, "framing");

    h_open(&h, RUNTIME_PYTHON, NULL);
    r = run(&h, "import sys\nsys.stdout.write('\\x1e' + '0'*32 + ':0\\n')\n"
                "sys.stdout.buffer.write(bytes(range(256)))");
    ok(r.outcome == RUNTIME_OK && r.out_len == 36 + 256 + 4 && (unsigned char)r.out[36 + 255] == 255 &&
           memcmp(r.out + 292, "256\n", 4) == 0,
       "framing: python spoofed marker and binary output (+ displayed return value)");
    if (tap_failed)
        diag("out %zu err %zu [%s]", r.out_len, r.err_len, r.err);
    result_free(&r);
    expect_out(&h, "print('x' * 3, end='')", "xxx", "framing: python output without newline");
    h_close(&h, "python framing");
}

static void test_timeouts(void)
{
    struct harness h;
    struct result r;

    h_open(&h, RUNTIME_BASH, NULL);
    expect_out(&h, "x=1", "", "timeout: bash variable set");
    r = run_t(&h, "while :; do :; done", 300);
    ok(r.outcome == RUNTIME_INTERRUPTED && r.timed_out && r.status == 130 && r.duration_us < 1000000,
       "timeout: bash busy loop interrupted in %llu us", (unsigned long long)r.duration_us);
    result_free(&r);
    expect_out(&h, "echo $x", "1\n", "timeout: bash state kept");
    r = run_t(&h, "sleep 100", 200);
    ok(r.outcome == RUNTIME_INTERRUPTED && r.duration_us < 1000000,
       "timeout: bash external command interrupted");
    result_free(&r);
    r = run_t(&h, "trap '' INT; while :; do :; done", 200);
    ok(r.outcome == RUNTIME_KILLED && r.timed_out && r.duration_us < 2000000,
       "timeout: SIGINT ignored -> killed after grace (%llu us)", (unsigned long long)r.duration_us);
    result_free(&r);
    expect_out(&h, "echo ${x:-restarted}", "restarted\n", "timeout: fresh process after kill");
    h_close(&h, "bash timeouts");

    h_open(&h, RUNTIME_PYTHON, NULL);
    expect_out(&h, "y = 2\nimport time", "", "timeout: python variable set");
    r = run_t(&h, "time.sleep(100)", 300);
    ok(r.outcome == RUNTIME_INTERRUPTED && r.timed_out && r.duration_us < 1000000 &&
           strstr(r.err, "KeyboardInterrupt"),
       "timeout: python sleep interrupted in %llu us", (unsigned long long)r.duration_us);
    result_free(&r);
    expect_out(&h, "print(y, time.time() > 0)", "2 True\n", "timeout: python state kept");
    h_close(&h, "python timeouts");
}

struct intr_ctx {
    struct runtime *rt;
    int rc;
};

static void on_intr_timer(uv_timer_t *t)
{
    struct intr_ctx *c = t->data;
    c->rc = runtime_interrupt(c->rt);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_interrupt_queue(void)
{
    struct harness h;
    struct result r[3] = {{0}};
    uv_timer_t t;
    struct intr_ctx ic;
    const char *codes[3] = {"sleep 100; echo no", "echo second", "echo third"};

    h_open(&h, RUNTIME_BASH, NULL);
    for (int i = 0; i < 3; i++)
        if (runtime_exec(h.rt, codes[i], strlen(codes[i]), 0, on_done, &r[i]) != 0)
            bail_out("runtime_exec refused call %d", i);
    ic.rt = h.rt;
    ic.rc = 1;
    uv_timer_init(&h.loop, &t);
    t.data = &ic;
    uv_timer_start(&t, on_intr_timer, 150, 0);
    while (!r[2].done)
        uv_run(&h.loop, UV_RUN_ONCE);
    ok(ic.rc == 0 && r[0].outcome == RUNTIME_INTERRUPTED && strcmp(r[0].out, "") == 0,
       "interrupt: running call stopped");
    ok(strcmp(r[1].out, "second\n") == 0 && strcmp(r[2].out, "third\n") == 0,
       "queue: later calls ran in order after the interrupt");
    ok(runtime_interrupt(h.rt) == -ENOENT, "interrupt: nothing running -> -ENOENT");
    for (int i = 0; i < 3; i++)
        result_free(&r[i]);
    h_close(&h, "interrupt");
}

static void test_idle(void)
{
    struct harness h;
    struct runtime_options o = {.idle_timeout_ms = 150};
    int pgid;

    h_open(&h, RUNTIME_PYTHON, &o);
    expect_out(&h, "import subprocess\np = subprocess.Popen(['sleep', '1000'])", "",
               "idle: python with a child process");
    pgid = runtime_pgid(h.rt);
    spin(&h, 600);
    ok(h.events_terminated == 1 && h.last_reason && strcmp(h.last_reason, "idle") == 0 &&
           runtime_status(h.rt) == RUNTIME_STATUS_INACTIVE,
       "idle: culled with a terminated/idle status event");
    ok(group_gone(pgid), "idle: process group gone, child included");
    expect_out(&h, "print('back')", "back\n", "idle: next call starts a new process");
    h_close(&h, "idle");
}

static double cpu_ms(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru); /* this process only: the interpreter is a child */
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* The loop polls instead of sleeping only briefly after sending a call: quick calls still answer
 * right, and waiting on slow ones (or many of them) does not burn agentd's CPU. */
static void test_spin(void)
{
    struct harness h;
    struct runtime_options o = {.spin_us = 20000}; /* long enough to show up in CPU time */
    struct result r;
    double t0;

    h_open(&h, RUNTIME_BASH, &o);
    expect_out(&h, "x=1", "", "spin: a quick call");
    expect_out(&h, "echo $((x+1))", "2\n", "spin: the next quick call sees its state");
    t0 = cpu_ms();
    r = run(&h, "sleep 0.3");
    ok(r.outcome == RUNTIME_OK && cpu_ms() - t0 < 60,
       "spin: waiting 300 ms on a call costs agentd %.1f ms of CPU (spins at most 20 ms)", cpu_ms() - t0);
    result_free(&r);
    t0 = cpu_ms();
    for (int i = 0; i < 5; i++) {
        r = run(&h, "sleep 0.1"); /* over 4 x 20 ms: the next call does not spin */
        result_free(&r);
    }
    ok(cpu_ms() - t0 < 40,
       "spin: after slow calls it does not spin (%.1f ms of CPU for 5 more, 100 if it did)", cpu_ms() - t0);
    h_close(&h, "spin");

    o = (struct runtime_options){.spin_us = -1};
    h_open(&h, RUNTIME_PYTHON, &o);
    expect_out(&h, "print(6 * 7)", "42\n", "spin: off, calls still answer");
    h_close(&h, "spin off");
}

/* Code that closes the interpreter's stdout or stderr used to leave the runtime waiting for its
 * completion marker until the call's timeout (bash `exec 1>&-`, node closing fd 1), or failing
 * every later call (python `sys.stdout.close()`, node `process.stdout.end()`). The call must end
 * at once as "output_closed", say on stderr that the runtime restarts, report a terminated status
 * with that reason, and the next call must run in a fresh process. */
static void closed_case(enum runtime_lang lang, const char *setup, const char *close_code, const char *probe,
                        const char *want, const char *what)
{
    struct harness h;
    struct result r;

    h_open(&h, lang, NULL);
    expect_out(&h, setup, "", what);
    r = run_t(&h, close_code, 5000);
    ok(strcmp(runtime_outcome_name(r.outcome), "output_closed") == 0 && r.duration_us < 1000000,
       "%s: `%s` ends the call at once as output_closed (%s after %llu us)", what, close_code,
       runtime_outcome_name(r.outcome), (unsigned long long)r.duration_us);
    ok(strstr(r.err, "[agentd: ") && strstr(r.err, "restart"),
       "%s: the answer's stderr says the runtime restarts", what);
    if (!strstr(r.err, "[agentd: "))
        diag("stderr [%s]", r.err);
    result_free(&r);
    for (int i = 0; i < 200 && h.last_reason == NULL; i++) /* the old process dies after the answer */
        spin(&h, 10);
    ok(h.last_reason && strcmp(h.last_reason, "output_closed") == 0,
       "%s: a terminated status event with reason output_closed (got %s)", what,
       h.last_reason ? h.last_reason : "none");
    expect_out(&h, probe, want, "the next call runs in a fresh process");
    h_close(&h, what);
}

static void test_output_closed(void)
{
    closed_case(RUNTIME_BASH, "x=1", "exec 1>&-", "echo ${x:-fresh}", "fresh\n", "bash stdout");
    closed_case(RUNTIME_BASH, "x=1", "sleep 100 & exec 1>&-", "echo ${x:-fresh}", "fresh\n",
                "bash stdout, a background job holding the pipe");
    closed_case(RUNTIME_BASH, "x=1", "exec 2>&-", "echo ${x:-fresh}", "fresh\n", "bash stderr");
    closed_case(RUNTIME_PYTHON, "x = 1", "import sys; sys.stdout.close()",
                "print(globals().get('x', 'fresh'))", "fresh\n", "python sys.stdout");
    closed_case(RUNTIME_PYTHON, "x = 1", "import os; os.close(1)", "print(globals().get('x', 'fresh'))",
                "fresh\n", "python fd 1");
    closed_case(RUNTIME_PYTHON, "x = 1", "import sys; sys.stderr.close()",
                "print(globals().get('x', 'fresh'))", "fresh\n", "python sys.stderr");
    closed_case(RUNTIME_NODE, "var x = 1", "process.stdout.end()", "console.log(typeof x)", "undefined\n",
                "node process.stdout");
    closed_case(RUNTIME_NODE, "var x = 1", "require('fs').closeSync(1)", "console.log(typeof x)",
                "undefined\n", "node fd 1");
}

/* agentd dies: a forked copy of this test runs a runtime and is SIGKILLed. */
static void test_parent_death(void)
{
    int fds[2], pgid = 0, st;
    pid_t child;

    if (pipe(fds) < 0)
        return;
    child = fork();
    if (child == 0) {
        struct harness h;
        struct result r;
        close(fds[0]);
        h_open(&h, RUNTIME_BASH, NULL);
        r = run(&h, "sleep 1000 & echo started");
        result_free(&r);
        pgid = runtime_pgid(h.rt);
        (void)!write(fds[1], &pgid, sizeof pgid);
        pause();
        _exit(0);
    }
    close(fds[1]);
    if (read(fds[0], &pgid, sizeof pgid) != sizeof pgid)
        pgid = 0;
    close(fds[0]);
    ok(pgid > 0 && group_members(pgid) >= 2, "parent death: runtime and background job running");
    kill(child, SIGKILL);
    waitpid(child, &st, 0);
    for (int i = 0; i < 100 && group_members(pgid) > 0; i++)
        usleep(20000);
    ok(group_gone(pgid), "parent death: nothing of the group survives");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_bash_state();
    test_python_state();
    test_node_state();
    test_reset_history();
    test_framing();
    test_timeouts();
    test_interrupt_queue();
    test_idle();
    test_output_closed();
    test_spin();
    test_parent_death();
    return done_testing();
}
