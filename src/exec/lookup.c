/* lookup — finding the program a spawn runs: the one program lookup of agentd.
 *
 * A name with a slash is a path (relative ones are taken from the workspace, where the program
 * will run); a bare name is searched on the environment's own PATH, never on agentd's, because
 * the program runs with the environment's variables and must find what its own PATH names.
 * Lookups happen in the parent before fork: the child must not allocate.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/exec_int.h"

#define LOOKUP_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin" /* an environment without PATH */

int exec__resolve(const struct exec_env *env, const char *name, char *out, size_t cap)
{
    const char *path = env->path_var != NULL ? env->path_var : LOOKUP_DEFAULT_PATH;
    struct stat st;
    int err = -ENOENT;

    if (strchr(name, '/') != NULL) {
        if ((size_t)snprintf(out, cap, "%s", name) >= cap)
            return -ENAMETOOLONG;
        if (name[0] != '/' && (size_t)snprintf(out, cap, "%s/%s", env->workspace,
                                               strncmp(name, "./", 2) == 0 ? name + 2 : name) >= cap)
            return -ENAMETOOLONG;
        return access(out, X_OK) == 0 ? 0 : -errno;
    }
    for (const char *p = path;; p++) {
        size_t n = strcspn(p, ":");
        if (n > 0 && (size_t)snprintf(out, cap, "%.*s/%s", (int)n, p, name) < cap) {
            if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
                if (access(out, X_OK) == 0)
                    return 0;
                err = -EACCES;
            }
        }
        p += n;
        if (*p == '\0')
            return err;
    }
}

int exec_env_find_program(const struct exec_env *env, const char *name, char **path)
{
    char found[PATH_MAX];
    int rc = exec__resolve(env, name, found, sizeof found);

    if (rc == 0)
        *path = xstrdup(found);
    return rc;
}
