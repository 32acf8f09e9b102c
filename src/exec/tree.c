/*
 * tree — copying and removing a directory tree (a session's workspace or its agent's home), as
 * blocking calls made from libuv's thread pool: neither touches the loop, and both run after the
 * tree's programs are gone (the caller sees to that: a fork copies a parent that may still run,
 * which `cp -a` tolerates; a removal follows the environment's close).
 */
#include <errno.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "exec/exec.h"

extern char **environ;

int exec_tree_copy(const char *from, const char *to)
{
    char *src = xasprintf("%s/.", from);
    char *argv[] = {"cp", "-a", "--reflink=auto", "--", src, (char *)to, NULL};
    pid_t pid;
    int status = 0, rc = posix_spawnp(&pid, "cp", NULL, NULL, argv, environ);
    if (rc != 0)
        rc = -rc;
    else if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = -EIO;
    free(src);
    return rc;
}

static int tree__remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    /* Depth first, so a directory comes after its content; FTW_DNR (unreadable) is tried as is. */
    if (remove(path) != 0 && errno != ENOENT)
        log_warn("exec: cannot remove %s: %s", path, strerror(errno));
    return 0;
}

int exec_tree_remove(const char *path)
{
    /* FTW_PHYS: a symlink is removed, never followed; FTW_MOUNT: another filesystem mounted inside
     * is left alone. */
    if (nftw(path, tree__remove_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0 && errno != ENOENT)
        return -errno;
    return access(path, F_OK) == 0 ? -ENOTEMPTY : 0;
}
