/* spawn — starting one program of an environment and registering it with the guard.
 *
 * The program is started straight from agentd with vfork (uv_spawn cannot set PR_SET_PDEATHSIG,
 * rlimits or a cgroup between fork and exec; the child half is child.c) and becomes the leader
 * of a new session, so its pid is its process group id. Then agentd's one guard (guard.c) is
 * told its group and cgroup, so that they are SIGKILLed if agentd dies; proc.c tells the guard
 * to forget them before it reaps the leader.
 *
 * exec__spawn validates first (the arguments, then the program's lookup: lookup.c), then makes
 * the descriptors, starts the program, registers it and hands everything to proc.c, which
 * watches it from then on; any failure on the way goes through one `fail:` path that kills and
 * reaps what was started. Every program agentd starts comes through here: the agents of session
 * runs and the interpreters of runtimes (which add descriptors of their own and take stderr as
 * raw bytes). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/child.h"
#include "exec/exec_int.h"

_Static_assert(3 + EXEC_SPAWN_FDS_MAX <= EXEC_CHILD_MAP_MAX,
               "stdin, stdout, stderr and the extra descriptors");

/* ---- the program's command line, limits and variables -------------------------------------- */

char **exec__bwrap_argv(const char *bwrap, const char *workspace, int share_net, const char *program,
                        char *const *argv)
{
    const char *head[] = {bwrap,
                          "--die-with-parent",
                          "--unshare-pid",
                          "--unshare-ipc",
                          "--ro-bind",
                          "/",
                          "/",
                          "--dev",
                          "/dev",
                          "--proc",
                          "/proc",
                          "--tmpfs",
                          "/tmp",
                          "--bind",
                          workspace,
                          workspace,
                          "--chdir",
                          workspace};
    size_t nhead = sizeof head / sizeof head[0], nargs = 0, i = 0;
    char **out;

    while (argv[nargs] != NULL)
        nargs++;
    out = xcalloc(nhead + nargs + 4, sizeof *out);
    for (size_t k = 0; k < nhead; k++)
        out[i++] = (char *)head[k];
    if (!share_net)
        out[i++] = "--unshare-net";
    out[i++] = "--";
    out[i++] = (char *)program;
    for (size_t k = 1; k < nargs; k++)
        out[i++] = argv[k];
    out[i] = NULL;
    return out;
}

void exec__limits_rlimits(const struct exec_limits *l, struct exec_child *c)
{
    const struct {
        int resource;
        uint64_t value;
    } want[] = {
        {RLIMIT_AS, l->as_bytes},       {RLIMIT_NPROC, l->nproc},   {RLIMIT_CPU, l->cpu_seconds},
        {RLIMIT_FSIZE, l->fsize_bytes}, {RLIMIT_NOFILE, l->nofile},
    };

    c->nrlimit = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct rlimit cur, v;
        if (want[i].value == 0 || getrlimit(want[i].resource, &cur) < 0)
            continue;
        v.rlim_cur = v.rlim_max = (rlim_t)want[i].value;
        /* CPU: SIGXCPU at the limit, a last SIGKILL one second later if it is caught. */
        if (want[i].resource == RLIMIT_CPU)
            v.rlim_max = v.rlim_cur + 1;
        if (cur.rlim_max != RLIM_INFINITY && v.rlim_max > cur.rlim_max)
            v.rlim_max = cur.rlim_max;
        if (v.rlim_cur > v.rlim_max)
            v.rlim_cur = v.rlim_max;
        c->rlimit[c->nrlimit].resource = want[i].resource;
        c->rlimit[c->nrlimit].value = v;
        c->nrlimit++;
    }
}

/* base with extra laid over it: an extra "K=V" replaces base's K. The array is allocated (free
 * it), its strings borrowed. */
static char **merge_env(char *const *base, char *const *extra)
{
    size_t nb = 0, ne = 0, n = 0;
    while (base && base[nb])
        nb++;
    while (extra[ne])
        ne++;
    char **out = xcalloc(nb + ne + 1, sizeof *out);
    for (size_t i = 0; i < nb; i++) {
        size_t klen = strcspn(base[i], "=");
        int replaced = 0;
        for (size_t j = 0; j < ne && !replaced; j++)
            replaced = strncmp(extra[j], base[i], klen) == 0 && extra[j][klen] == '=';
        if (!replaced)
            out[n++] = base[i];
    }
    for (size_t j = 0; j < ne; j++)
        out[n++] = extra[j];
    return out;
}

/* The PATH a program of env runs with before the lookup's additions: env_extra's, else the
 * environment's (NULL: none declared). */
static const char *session_path(const struct exec_env *env, const struct exec_spawn_opts *opts)
{
    for (char *const *e = opts->env_extra; e != NULL && *e != NULL; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            return *e + 5;
    return env->path_var;
}

/* The variables the program gets: the environment's, opts->env_extra laid over them, and PATH
 * extended by the directories the lookup added. NULL when that is just env->envp; else an
 * allocated array (free it) of borrowed strings, but for *path_entry (free it too). */
static char **spawn_envp(const struct exec_env *env, const struct exec_spawn_opts *opts,
                         const struct exec__program *prog, char **path_entry)
{
    const char *path = session_path(env, opts);
    char *const *extra = opts->env_extra;
    size_t ne = 0, n = 0;
    char **list, **out;

    *path_entry = NULL;
    if (prog->ndirs == 0)
        return extra != NULL ? merge_env(env->envp, extra) : NULL;
    *path_entry = xasprintf("PATH=%s:%s%s%s", path != NULL ? path : EXEC__DEFAULT_PATH, prog->dirs[0],
                            prog->ndirs > 1 ? ":" : "", prog->ndirs > 1 ? prog->dirs[1] : "");
    while (extra != NULL && extra[ne] != NULL)
        ne++;
    list = xcalloc(ne + 2, sizeof *list);
    for (size_t i = 0; i < ne; i++)
        if (strncmp(extra[i], "PATH=", 5) != 0)
            list[n++] = extra[i];
    list[n] = *path_entry;
    out = merge_env(env->envp, list);
    free(list);
    return out;
}

/* ---- descriptors ------------------------------------------------------------------------- */

/* The descriptors of a spawn in the making; -1 where there is none. The child's ends are closed
 * once the program has them; the parent's ends go to proc.c (exec__proc_watch). */
struct spawn_fds {
    int in[2], out[2], err[2];
    int cg[EXEC__CG_N]; /* cgroup.procs of the proc's cgroups, for the program to join */
};

static void spawn_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void spawn_fds_close(struct spawn_fds *f)
{
    for (int i = 0; i < 2; i++) {
        spawn_close(&f->in[i]);
        spawn_close(&f->out[i]);
        spawn_close(&f->err[i]);
    }
    for (int c = 0; c < EXEC__CG_N; c++)
        spawn_close(&f->cg[c]);
}

/* The pipes (stdin only with has_in). 0 or -errno. */
static int spawn_pipes(struct spawn_fds *f, int has_in)
{
    if ((has_in && pipe2(f->in, O_CLOEXEC) < 0) || pipe2(f->out, O_CLOEXEC) < 0 ||
        pipe2(f->err, O_CLOEXEC) < 0)
        return -errno;
    return 0;
}

/* Creates the proc's own cgroup inside each of the env's, so a kill can list exactly this
 * program's processes; the env's directory holds the limits for all of them. */
static void spawn_cgroups(struct exec_env *env, struct exec_proc *p, int cg_fd[EXEC__CG_N])
{
    unsigned seq = ++env->proc_seq;

    for (int c = 0; c < EXEC__CG_N; c++) {
        char file[PATH_MAX + 32];
        cg_fd[c] = -1;
        if (env->cg_dir[c] == NULL)
            continue;
        p->cg_dir[c] = xasprintf("%s/p%u", env->cg_dir[c], seq);
        if (mkdir(p->cg_dir[c], 0755) < 0) {
            /* Fall back to the env's directory: limits still apply, attribution is lost. */
            free(p->cg_dir[c]);
            p->cg_dir[c] = NULL;
            snprintf(file, sizeof file, "%s/cgroup.procs", env->cg_dir[c]);
        } else {
            snprintf(file, sizeof file, "%s/cgroup.procs", p->cg_dir[c]);
        }
        cg_fd[c] = open(file, O_WRONLY | O_CLOEXEC);
    }
}

/* ---- the program ------------------------------------------------------------------------ */

/* Starts the program: its variables, its command line (inside bwrap or not), its descriptors,
 * its cgroups and limits. 0 or -errno from vfork (exec failures show as exit status 127). */
static int spawn_program(struct exec_env *env, struct exec_proc *p, char *const *argv,
                         const struct exec_spawn_opts *opts, const struct exec__program *prog,
                         const struct spawn_fds *f)
{
    char *path_entry = NULL, **bw = NULL, **merged = spawn_envp(env, opts, prog, &path_entry);
    struct exec_child sp = {.envp = merged != NULL ? merged : env->envp, .pdeathsig = 1};
    int rc;

    if (env->sandbox == EXEC_SANDBOX_BWRAP) {
        bw = exec__bwrap_argv(env->bwrap, env->workspace, env->share_net, prog->path, argv);
        sp.path = env->bwrap;
        sp.argv = bw;
    } else {
        sp.path = prog->path;
        sp.argv = argv;
        sp.cwd = env->workspace;
    }
    if (f->in[0] >= 0)
        sp.map[sp.nmap++] = (struct exec_child_fd){0, f->in[0]};
    sp.map[sp.nmap++] = (struct exec_child_fd){1, f->out[1]};
    sp.map[sp.nmap++] = (struct exec_child_fd){2, f->err[1]};
    for (size_t i = 0; i < opts->nfds; i++)
        sp.map[sp.nmap++] = (struct exec_child_fd){
            opts->fds[i].child, opts->fds[i].parent == EXEC_FD_STDOUT ? f->out[1] : opts->fds[i].parent};
    for (int c = 0; c < EXEC__CG_N; c++)
        if (f->cg[c] >= 0)
            sp.join[sp.njoin++] = f->cg[c];
    exec__limits_rlimits(&env->limits, &sp);
    p->start_us = clock_mono_us();
    rc = exec_child_spawn(&sp, &p->pid);
    free(bw);
    free(merged);
    free(path_entry);
    return rc;
}

/* ---- exec_spawn -------------------------------------------------------------------------- */

/* What the caller may ask: 0 or -EINVAL; *has_in says whether stdin is a pipe of ours. */
static int spawn_check(char *const *argv, const struct exec_spawn_opts *opts, int *has_in)
{
    *has_in = 1;
    if (argv == NULL || argv[0] == NULL || opts->nfds > EXEC_SPAWN_FDS_MAX ||
        (opts->on_stderr != NULL && opts->on_stderr_data != NULL))
        return -EINVAL;
    for (size_t i = 0; i < opts->nfds; i++) {
        if (opts->fds[i].child != 0 && opts->fds[i].child <= 2)
            return -EINVAL;
        *has_in = *has_in && opts->fds[i].child != 0;
    }
    return 0;
}

static struct exec_proc *spawn_proc_new(struct exec_env *env, const struct exec_spawn_opts *opts, int probe,
                                        int has_in)
{
    struct exec_proc *p = xcalloc(1, sizeof *p);

    p->env = env;
    p->pidfd = -1;
    p->probe = probe;
    p->has_in = has_in;
    p->on_stdout = opts->on_stdout;
    p->on_stderr = opts->on_stderr;
    p->on_stderr_data = opts->on_stderr_data;
    p->on_exit = opts->on_exit;
    p->arg = opts->arg;
    p->line_max = opts->line_max > 0 ? opts->line_max : EXEC_DEFAULT_LINE_MAX;
    p->line = xmalloc(p->line_max);
    return p;
}

int exec_spawn(struct exec_env *env, char *const *argv, const struct exec_spawn_opts *opts,
               struct exec_proc **out)
{
    assert(opts != NULL && out != NULL);
    if (env->status != EXEC_STATUS_READY || env->closing)
        return -EAGAIN;
    return exec__spawn(env, argv, opts, 0, out);
}

int exec__spawn(struct exec_env *env, char *const *argv, const struct exec_spawn_opts *opts, int probe,
                struct exec_proc **out)
{
    struct spawn_fds f = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    struct exec__program prog;
    struct exec_proc *p;
    int has_in, rc;

    if (opts->why != NULL && opts->why_cap > 0)
        opts->why[0] = '\0';
    if ((rc = spawn_check(argv, opts, &has_in)) < 0 ||
        (rc = exec__lookup(env, session_path(env, opts), argv[0], &prog, opts->why, opts->why_cap)) < 0)
        return rc;

    p = spawn_proc_new(env, opts, probe, has_in);
    if ((rc = spawn_pipes(&f, has_in)) < 0)
        goto fail;
    spawn_cgroups(env, p, f.cg);
    if ((rc = spawn_program(env, p, argv, opts, &prog, &f)) < 0)
        goto fail;
    if ((p->pidfd = exec_child_pidfd(p->pid)) < 0) {
        rc = p->pidfd;
        goto fail;
    }
    if ((rc = exec__guard_add(p->pid, exec__proc_cgroup(p))) < 0)
        goto fail;
    /* The program has its ends and the guard knows it: from here on nothing fails (libuv
     * refuses only invalid arguments), and proc.c owns the proc. */
    exec__proc_watch(p, f.in[1], f.out[0], f.err[0]);
    f.in[1] = f.out[0] = f.err[0] = -1;
    spawn_fds_close(&f);
    p->next = env->procs;
    env->procs = p;
    *out = p;
    return 0;

fail:
    /* Nothing handed out yet: kill and reap what was started (the guard does not list it). */
    if (p->pid > 0) {
        kill(-p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    spawn_close(&p->pidfd);
    spawn_fds_close(&f);
    for (int c = 0; c < EXEC__CG_N; c++) {
        if (p->cg_dir[c] != NULL)
            (void)rmdir(p->cg_dir[c]);
        free(p->cg_dir[c]);
    }
    free(p->line);
    free(p);
    return rc;
}
