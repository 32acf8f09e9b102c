/* lookup — finding the program a spawn runs: the one program lookup of agentd.
 *
 * A name with a slash is a path (relative ones are taken from the workspace, where the program
 * will run). A bare name is searched on the session's PATH first (the environment's own, from
 * its declared variables), because the program runs with that PATH and should find what it
 * names. When it is not there, agentd's own PATH is searched too: an operator who installed an
 * agent CLI where only their shell's PATH reaches (npm into a node version manager's directory)
 * expects `claude` to be found. The program then runs with the session's PATH plus its own
 * directory, so what it starts from there is found as well.
 *
 * Scripts: when the program's first line is `#!/usr/bin/env NAME` and NAME is on neither the
 * session's PATH nor the directories already added, NAME is looked up on agentd's PATH and its
 * directory is added too (an npm-installed CLI names `node` this way, and node lives beside it
 * only sometimes). An absolute interpreter's directory is added when the PATH lacks it. A
 * program or interpreter found nowhere fails the spawn with a sentence naming both PATHs.
 *
 * Lookups happen in the parent before fork (the child must not allocate), once per spawn.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/exec_int.h"

/* Searches a PATH value for an executable regular file `name`, as execvp does (empty entries
 * are skipped). 0 with out filled, -ENOENT, or -EACCES when only non-executable ones exist. */
static int search(const char *path, const char *name, char *out, size_t cap)
{
    struct stat st;
    int err = -ENOENT;

    for (const char *p = path; p != NULL && *p != '\0';) {
        size_t n = strcspn(p, ":");
        if (n > 0 && (size_t)snprintf(out, cap, "%.*s/%s", (int)n, p, name) < cap && stat(out, &st) == 0 &&
            S_ISREG(st.st_mode)) {
            if (access(out, X_OK) == 0)
                return 0;
            err = -EACCES;
        }
        p += n;
        p += *p == ':';
    }
    return err;
}

/* Whether `dir` (len bytes) is one of the entries of a PATH value. */
static int path_has(const char *path, const char *dir, size_t len)
{
    for (const char *p = path; p != NULL && *p != '\0';) {
        size_t n = strcspn(p, ":");
        if (n == len && memcmp(p, dir, len) == 0)
            return 1;
        p += n;
        p += *p == ':';
    }
    return 0;
}

/* Adds the directory of `file` to prog->dirs unless the session's PATH or an earlier addition
 * has it. */
static void add_dir(struct exec__program *prog, const char *session_path, const char *file)
{
    const char *slash = strrchr(file, '/');
    size_t len = slash == NULL ? 0 : slash == file ? 1 : (size_t)(slash - file);

    if (len == 0 || len >= sizeof prog->dirs[0] || path_has(session_path, file, len))
        return;
    for (size_t i = 0; i < prog->ndirs; i++)
        if (strlen(prog->dirs[i]) == len && memcmp(prog->dirs[i], file, len) == 0)
            return;
    if (prog->ndirs < EXEC__PROGRAM_DIRS) {
        memcpy(prog->dirs[prog->ndirs], file, len);
        prog->dirs[prog->ndirs++][len] = '\0';
    }
}

/* The interpreter named by the program's `#!` line: `interp` gets its path and, for
 * `#!/usr/bin/env [options] NAME ...`, `env_name` gets NAME ("" otherwise). Returns false when
 * the file is not a script. */
static int shebang(const char *file, char *interp, size_t icap, char *env_name, size_t ncap)
{
    char line[256];
    ssize_t n;
    int fd = open(file, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return 0;
    n = read(fd, line, sizeof line - 1);
    close(fd);
    if (n < 3 || line[0] != '#' || line[1] != '!')
        return 0;
    line[n] = '\0';
    line[strcspn(line, "\n")] = '\0';
    char *p = line + 2 + strspn(line + 2, " \t");
    size_t len = strcspn(p, " \t");
    if (len == 0 || len >= icap)
        return 0;
    memcpy(interp, p, len);
    interp[len] = '\0';
    env_name[0] = '\0';
    const char *base = strrchr(interp, '/');
    if (strcmp(base != NULL ? base + 1 : interp, "env") != 0)
        return 1;
    /* env's arguments: options (-S, -u NAME is rare enough to ignore) and VAR=value come first. */
    for (p += len;;) {
        p += strspn(p, " \t");
        len = strcspn(p, " \t");
        if (len == 0)
            return 1;
        if (p[0] != '-' && memchr(p, '=', len) == NULL)
            break;
        p += len;
    }
    if (len < ncap) {
        memcpy(env_name, p, len);
        env_name[len] = '\0';
    }
    return 1;
}

/* The interpreter part of the lookup (see the file comment). */
static int lookup_interpreter(struct exec__program *prog, const char *session_path, const char *agentd_path,
                              char *why, size_t why_cap)
{
    char interp[PATH_MAX], name[NAME_MAX + 1], found[PATH_MAX];

    if (!shebang(prog->path, interp, sizeof interp, name, sizeof name))
        return 0;
    if (name[0] == '\0') {
        if (interp[0] == '/')
            add_dir(prog, session_path, interp);
        return 0;
    }
    if (strchr(name, '/') != NULL || search(session_path, name, found, sizeof found) == 0)
        return 0;
    for (size_t i = 0; i < prog->ndirs; i++)
        if (search(prog->dirs[i], name, found, sizeof found) == 0)
            return 0;
    if (search(agentd_path, name, found, sizeof found) == 0) {
        add_dir(prog, session_path, found);
        return 0;
    }
    snprintf(why, why_cap,
             "%s starts with #!%s %s, and %s is on neither the session's PATH (%s) nor agentd's PATH (%s)",
             prog->path, interp, name, name, session_path, agentd_path);
    return -ENOENT;
}

int exec__lookup(const struct exec_env *env, const char *session_path, const char *name,
                 struct exec__program *prog, char *why, size_t why_cap)
{
    const char *agentd_path = getenv("PATH");
    char scratch[8];
    int rc;

    if (why == NULL || why_cap == 0) {
        why = scratch;
        why_cap = sizeof scratch;
    }
    why[0] = '\0';
    prog->ndirs = 0;
    if (session_path == NULL)
        session_path = EXEC__DEFAULT_PATH;
    if (agentd_path == NULL)
        agentd_path = "";
    if (strchr(name, '/') != NULL) {
        const char *rel = strncmp(name, "./", 2) == 0 ? name + 2 : name;
        if ((size_t)snprintf(prog->path, sizeof prog->path, "%s%s%s", name[0] == '/' ? "" : env->workspace,
                             name[0] == '/' ? "" : "/", name[0] == '/' ? name : rel) >= sizeof prog->path)
            return -ENAMETOOLONG;
        if (access(prog->path, X_OK) < 0) {
            rc = -errno;
            snprintf(why, why_cap, "%s: %s", prog->path, strerror(-rc));
            return rc;
        }
    } else if ((rc = search(session_path, name, prog->path, sizeof prog->path)) < 0) {
        int rc2 = search(agentd_path, name, prog->path, sizeof prog->path);
        if (rc2 < 0) {
            rc = rc == -EACCES || rc2 == -EACCES ? -EACCES : -ENOENT;
            snprintf(why, why_cap,
                     rc == -EACCES
                         ? "%s is not executable where found on the session's PATH (%s) or agentd's PATH (%s)"
                         : "%s is on neither the session's PATH (%s) nor agentd's PATH (%s)",
                     name, session_path, agentd_path);
            return rc;
        }
        add_dir(prog, session_path, prog->path);
    }
    return lookup_interpreter(prog, session_path, agentd_path, why, why_cap);
}

int exec_env_find_program(const struct exec_env *env, const char *name, char **path)
{
    struct exec__program prog;
    int rc = exec__lookup(env, env->path_var, name, &prog, NULL, 0);

    if (rc == 0)
        *path = xstrdup(prog.path);
    return rc;
}
