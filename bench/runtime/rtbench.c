/* rtbench — round trip and cold start of agentd runtimes through the in-process C API.
 *
 * Prints one line per measurement, the format bench/runtime/run.sh tabulates:
 *     <system> <lang> <what> <p50_us> <p99_us> <n>
 * where <what> is a command (spaces as '_') or "cold" (runtime_new → first call done, the
 * interpreter's start-up included). Runtimes run in an execution environment over the current
 * directory, started (ready) before anything is measured, as a session's is after its first
 * call. Usage: rtbench [calls=2000] [cold_starts=30].
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "exec/exec.h"
#include "runtime/runtime.h"

struct wait {
    int done;
    enum runtime_outcome outcome;
    char out[64];
};

static void on_done(struct runtime *rt, const struct runtime_result *r, void *arg)
{
    struct wait *w = arg;
    size_t n = r->out_len < sizeof w->out - 1 ? r->out_len : sizeof w->out - 1;

    memcpy(w->out, r->out, n);
    w->out[n] = '\0';
    w->outcome = r->outcome;
    w->done = 1;
}

static void exec_wait(uv_loop_t *loop, struct runtime *rt, const char *code, struct wait *w)
{
    memset(w, 0, sizeof *w);
    if (runtime_exec(rt, code, strlen(code), 0, on_done, w) != 0)
        abort();
    while (!w->done)
        uv_run(loop, UV_RUN_ONCE);
    if (w->outcome != RUNTIME_OK) {
        fprintf(stderr, "rtbench: %s ended %s\n", code, runtime_outcome_name(w->outcome));
        exit(1);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *lang, const char *what, uint64_t *ns, size_t n)
{
    char name[64];

    qsort(ns, n, sizeof *ns, cmp_u64);
    snprintf(name, sizeof name, "%s", what);
    for (char *p = name; *p; p++)
        if (*p == ' ')
            *p = '_';
    printf("agentd %s %s %.1f %.1f %zu\n", lang, name, (double)ns[n / 2] / 1e3,
           (double)ns[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1e3, n);
    fflush(stdout);
}

static struct exec_env *env; /* one per loop, like a session's */

static void open_env(uv_loop_t *loop)
{
    char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};
    struct exec_env_opts o = {.workspace = ".", .env = envp, .name = "rtbench"};

    uv_loop_init(loop);
    if (exec_env_new(loop, &o, &env) != 0 || exec_env_start(env) != 0)
        abort();
    while (exec_env_status(env) == EXEC_STATUS_STARTING)
        uv_run(loop, UV_RUN_ONCE);
    if (exec_env_status(env) != EXEC_STATUS_READY) {
        fprintf(stderr, "rtbench: the execution environment did not start\n");
        exit(1);
    }
}

static void close_env(uv_loop_t *loop)
{
    exec_env_close(env, 0, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

static struct runtime *open_rt(uv_loop_t *loop, enum runtime_lang lang)
{
    struct runtime_options o = {.lang = lang, .env = env};
    struct runtime *rt;

    if (runtime_new(loop, &o, &rt) != 0) {
        fprintf(stderr, "rtbench: runtime_new failed\n");
        exit(1);
    }
    return rt;
}

static void close_rt(uv_loop_t *loop, struct runtime *rt)
{
    runtime_close(rt, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void round_trips(enum runtime_lang lang, const char *init, const char *a, const char *b, size_t n)
{
    uv_loop_t loop;
    struct runtime *rt;
    struct wait w;
    uint64_t *ta = calloc(n, sizeof *ta), *tb = calloc(n, sizeof *tb);

    open_env(&loop);
    rt = open_rt(&loop, lang);
    exec_wait(&loop, rt, init, &w);
    for (size_t i = 0; i < n / 10; i++) /* warm up */
        exec_wait(&loop, rt, a, &w);
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = uv_hrtime();
        exec_wait(&loop, rt, a, &w);
        uint64_t t1 = uv_hrtime();
        exec_wait(&loop, rt, b, &w);
        tb[i] = uv_hrtime() - t1;
        ta[i] = t1 - t0;
    }
    if (atoi(w.out) <= (int)n) {
        fprintf(stderr, "rtbench: state was not kept (%s)\n", w.out);
        exit(1);
    }
    close_rt(&loop, rt);
    close_env(&loop);
    report(runtime_lang_name(lang), a, ta, n);
    report(runtime_lang_name(lang), b, tb, n);
    free(ta);
    free(tb);
}

static void cold_starts(enum runtime_lang lang, const char *code, size_t n)
{
    uv_loop_t loop;
    uint64_t *t = calloc(n, sizeof *t);
    struct wait w;

    open_env(&loop);
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = uv_hrtime();
        struct runtime *rt = open_rt(&loop, lang);
        exec_wait(&loop, rt, code, &w);
        t[i] = uv_hrtime() - t0;
        close_rt(&loop, rt);
    }
    close_env(&loop);
    report(runtime_lang_name(lang), "cold", t, n);
    free(t);
}

int main(int argc, char **argv)
{
    size_t calls = argc > 1 ? (size_t)atol(argv[1]) : 2000;
    size_t colds = argc > 2 ? (size_t)atol(argv[2]) : 30;

    round_trips(RUNTIME_BASH, "x=0", "x=$((x+1))", "echo $x", calls);
    round_trips(RUNTIME_PYTHON, "x = 0", "x = x + 1", "print(x)", calls);
    cold_starts(RUNTIME_BASH, "x=$((x+1))", colds);
    cold_starts(RUNTIME_PYTHON, "x = 1", colds);
    return 0;
}
