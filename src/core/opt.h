/*
 * opt — one options table drives command-line flags, environment variables, a config file and --help
 * (the way redis config.c and tmux options-table.c do it).
 *
 * Each definition names a field of a caller's struct by offset. Precedence, lowest first: the table's
 * default, the config file (`--config FILE`, lines of `name value` or `name = value`, # comments),
 * the environment (AGENTD_<NAME> upper-cased, dashes as underscores), then flags (`--name value`,
 * `--name=value`, bare `--name` for booleans). Strings are heap copies owned by the target struct;
 * release them with opt_free.
 */
#ifndef AGENTD_OPT_H
#define AGENTD_OPT_H

#include <stddef.h>
#include <stdio.h>

enum opt_type {
    OPT_STRING, /* char *          */
    OPT_INT,    /* long long       */
    OPT_BOOL,   /* int, 0 or 1     */
    OPT_ENUM,   /* char *, one of the '|'-separated choices */
};

struct opt_def {
    const char *name;
    enum opt_type type;
    const char *defval; /* NULL: no default (string stays NULL) */
    long long min, max; /* OPT_INT bounds */
    const char *choices;
    const char *help;
    size_t offset;
};

/*
 * Fills `target` from defaults, config file, environment and argv[1..]. Positional arguments are
 * moved, in order, to the front of argv starting at argv[1]; *npos receives how many there are.
 * Returns 0, 1 when --help was asked (help already printed to stdout), or -EINVAL with a message
 * in err.
 */
int opt_parse(const struct opt_def *defs, size_t n, void *target, int argc, char **argv, int *npos,
              const char *usage, char *err, size_t errlen);
void opt_help(FILE *out, const char *usage, const struct opt_def *defs, size_t n);
void opt_free(const struct opt_def *defs, size_t n, void *target);

#endif
