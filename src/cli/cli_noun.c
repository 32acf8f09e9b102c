/*
 * cli_noun.c — what every noun with subcommands shares (`agentd session`, `agentd rt`, `agentd
 * stream`): finding the subcommand among its options, parsing them, --help, and the repeated-option
 * walker cli_args_each. Declared in cli.h.
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli_http.h"
#include "core/core.h"

static int cli__opt_takes_value(const struct cli_opt *table, const char *word)
{
    const char *name = word + 2;
    for (int i = 0; table[i].name != NULL; i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].metavar != NULL;
    return 0;
}

int cli_args_each(const struct cli_opt *table, int argc, char **argv, const char *name, cli_value_cb cb,
                  void *arg)
{
    size_t name_len = strlen(name);
    for (int i = 0; i < argc; i++) {
        const char *word = argv[i];
        if (strcmp(word, "--") == 0)
            return 0;
        if (word[0] != '-' || word[1] != '-')
            continue;
        const char *value = NULL;
        if (strncmp(word + 2, name, name_len) == 0 && word[2 + name_len] == '=')
            value = word + 3 + name_len;
        else if (strcmp(word + 2, name) == 0 && i + 1 < argc)
            value = argv[++i];
        else if (strchr(word, '=') == NULL && cli__opt_takes_value(table, word))
            i++; /* another option's value, which may look like --name */
        if (value != NULL) {
            int rc = cb(arg, value);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static void cli__noun_usage(const struct cli_noun *noun, FILE *out)
{
    fprintf(out, "Usage: agentd %s COMMAND ARGS [--server URL] [--token TOKEN] [--json]\n\n%s\n", noun->name,
            noun->intro);
    for (size_t i = 0; i < noun->ncommands; i++) {
        char left[48];
        snprintf(left, sizeof(left), "%s %s", noun->commands[i].name, noun->commands[i].synopsis);
        fprintf(out, "  %-24s %s\n", left, noun->commands[i].summary);
    }
    fprintf(out,
            "\nRun `agentd %s COMMAND --help` for a command's options.\n"
            "Server: --server, else $AGENTD_URL, else " CLI_DEFAULT_SERVER
            ". Token: --token, else $AGENTD_TOKEN.\n%s",
            noun->name, noun->footer);
}

/* Does word name an option that takes a value in any of the noun's commands? Used to find the
 * command word when options come first. */
static int cli__noun_option_takes_value(const struct cli_noun *noun, const char *word)
{
    if (word[1] != '-' || strchr(word, '=') != NULL)
        return 0;
    for (size_t i = 0; i < noun->ncommands; i++)
        if (cli__opt_takes_value(noun->commands[i].opts, word))
            return 1;
    return 0;
}

int cli_noun_main(const struct cli_noun *noun, int argc, char **argv)
{
    if (argc < 2) {
        cli__noun_usage(noun, stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cli__noun_usage(noun, stdout);
        return CLI_EXIT_OK;
    }
    int at = 1;
    while (at < argc && argv[at][0] == '-' && argv[at][1] != '\0') {
        if (cli__noun_option_takes_value(noun, argv[at]))
            at++;
        at++;
    }
    const struct cli_command *command = NULL;
    for (size_t i = 0; at < argc && i < noun->ncommands; i++)
        if (strcmp(argv[at], noun->commands[i].name) == 0)
            command = &noun->commands[i];
    if (command == NULL) {
        if (at < argc)
            fprintf(stderr, "agentd %s: unknown command '%s' (see agentd %s --help)\n", noun->name, argv[at],
                    noun->name);
        else
            cli__noun_usage(noun, stderr);
        return CLI_EXIT_USAGE;
    }

    /* The words around the command, in order, are its arguments (they point into argv). */
    char **words = xcalloc((size_t)argc, sizeof(*words));
    int nwords = 0, status = CLI_EXIT_USAGE;
    for (int i = 1; i < argc; i++)
        if (i != at)
            words[nwords++] = argv[i];
    struct cli_args args;
    const char *reason = cli_args_parse(command->opts, nwords, words, &args);
    if (reason != NULL) {
        fprintf(stderr, "agentd %s %s: %s (see --help)\n", noun->name, command->name, reason);
        goto fail;
    }
    if (cli_args_get(&args, "help") != NULL) {
        fprintf(stdout, "Usage: agentd %s %s %s [OPTIONS]\n%s\n\nOptions:\n", noun->name, command->name,
                command->synopsis, command->summary);
        cli_args_usage(command->opts, stdout);
        status = CLI_EXIT_OK;
        goto fail;
    }
    if (args.npositional < command->min_args || args.npositional > command->max_args) {
        fprintf(stderr, "agentd %s %s: expected %s (see --help)\n", noun->name, command->name,
                command->synopsis[0] != '\0' ? command->synopsis : "no arguments");
        goto fail;
    }
    struct cli_client client = {
        .http = cli_http_new(cli_args_server(&args), cli_args_token(&args)),
        .json = cli_args_get(&args, "json") != NULL,
        .nwords = nwords,
        .words = words,
    };
    status = command->run(&client, &args);
    cli_http_free(client.http);
fail:
    free(words);
    return status;
}
