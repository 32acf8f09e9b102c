/*
 * cli.c — the option-table parser shared by the client subcommands (see cli.h). Kept free of I/O
 * other than the usage printer so it can be unit-tested on plain argv arrays.
 */
#include "cli/cli.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cli__opt_find(const struct cli_opt *table, const char *name, size_t len)
{
    for (int i = 0; table[i].name != NULL; i++)
        if (strlen(table[i].name) == len && memcmp(table[i].name, name, len) == 0)
            return i;
    return -1;
}

const char *cli_args_parse(const struct cli_opt *table, int argc, char **argv, struct cli_args *out)
{
    memset(out, 0, sizeof(*out));
    out->table = table;
    int only_positional = 0;

    for (int i = 0; i < argc; i++) {
        const char *word = argv[i];
        int is_option = !only_positional && word[0] == '-' && word[1] != '\0';
        if (!is_option) {
            if (out->npositional == CLI_ARGS_MAX_POSITIONAL) {
                snprintf(out->error, sizeof(out->error), "too many arguments");
                return out->error;
            }
            out->positional[out->npositional++] = word;
            continue;
        }
        if (strcmp(word, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (strcmp(word, "-h") == 0)
            word = "--help";
        if (word[1] != '-') {
            snprintf(out->error, sizeof(out->error), "unknown option %s", word);
            return out->error;
        }
        const char *name = word + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        int index = cli__opt_find(table, name, name_len);
        if (index < 0 || index >= CLI_ARGS_MAX_OPTS) {
            snprintf(out->error, sizeof(out->error), "unknown option --%.*s", (int)name_len, name);
            return out->error;
        }
        if (table[index].metavar == NULL) {
            if (eq != NULL) {
                snprintf(out->error, sizeof(out->error), "option --%s takes no value", table[index].name);
                return out->error;
            }
            out->values[index] = "";
        } else if (eq != NULL) {
            out->values[index] = eq + 1;
        } else if (i + 1 < argc) {
            out->values[index] = argv[++i];
        } else {
            snprintf(out->error, sizeof(out->error), "option --%s needs a value (%s)", table[index].name,
                     table[index].metavar);
            return out->error;
        }
    }
    return NULL;
}

const char *cli_args_get(const struct cli_args *args, const char *name)
{
    int index = cli__opt_find(args->table, name, strlen(name));
    assert(index >= 0 && index < CLI_ARGS_MAX_OPTS);
    return args->values[index];
}

void cli_args_usage(const struct cli_opt *table, FILE *out)
{
    for (int i = 0; table[i].name != NULL; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", table[i].name, table[i].metavar ? " " : "",
                 table[i].metavar ? table[i].metavar : "");
        fprintf(out, "  %-26s %s\n", left, table[i].help);
    }
}

const char *cli_args_server(const struct cli_args *args)
{
    const char *server = cli_args_get(args, "server");
    if (server == NULL || server[0] == '\0')
        server = getenv("AGENTD_URL");
    if (server == NULL || server[0] == '\0')
        server = CLI_DEFAULT_SERVER;
    return server;
}

const char *cli_args_token(const struct cli_args *args)
{
    const char *token = cli_args_get(args, "token");
    if (token == NULL || token[0] == '\0')
        token = getenv("AGENTD_TOKEN");
    if (token == NULL || token[0] == '\0')
        return NULL;
    return token;
}

/* ---- Options before the command ----------------------------------------------------------- */

int cli_global_opts_first(int argc, char **argv, char *err, size_t errlen)
{
    static const struct cli_opt globals[] = {CLI_COMMON_OPTS, {NULL, NULL, NULL}};
    int at = 1;
    while (at < argc && argv[at][0] == '-' && argv[at][1] != '\0') {
        const char *name = argv[at] + 2, *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        int i = argv[at][1] == '-' ? cli__opt_find(globals, name, len) : -1;
        if (i < 0 || strcmp(globals[i].name, "help") == 0) {
            snprintf(err, errlen,
                     "unknown option %s before the command (--server, --token and --json may come first)",
                     argv[at]);
            return -EINVAL;
        }
        if (globals[i].metavar != NULL && eq == NULL && ++at == argc) {
            snprintf(err, errlen, "option --%s needs a value (%s)", globals[i].name, globals[i].metavar);
            return -EINVAL;
        }
        at++;
    }
    if (at == argc) {
        snprintf(err, errlen, "no command after the options");
        return -EINVAL;
    }
    char *command = argv[at];
    memmove(argv + 2, argv + 1, (size_t)(at - 1) * sizeof *argv);
    argv[1] = command;
    return 0;
}

FILE *cli_detail_stream(void) { return isatty(STDOUT_FILENO) ? stdout : stderr; }
