/*
 * cli — the client commands of the agentd binary: `agentd stream ...` (cli_stream.c), `agentd
 * session ...` (cli_session.c) and `agentd rt ...` (cli_rt.c). Each noun is a
 * `cli_<noun>_main(argc, argv)` that talks to a running server over HTTP (cli_http.h) and returns a
 * process exit status. What they share: the option tables and their parser (cli.c), dispatch to
 * subcommands (cli_noun.c), JSON helpers (cli_json.h), the live follower (cli_follow.c) and the
 * transcript renderer (cli_render.h). `agentd mcp` (src/mcp/mcp_stdio.c) uses the same HTTP client.
 *
 * Invariants shared by every client command, so scripts can rely on them:
 *   - the exit status is one of enum cli_exit below, whatever the command;
 *   - `--server URL` (default $AGENTD_URL, else http://127.0.0.1:4437), `--token T` (default
 *     $AGENTD_TOKEN, sent as a bearer token) and `--json` are accepted by every command, after the
 *     command or before it (cli_global_opts_first);
 *   - with --json, stdout carries exactly one JSON object per line and nothing else; human messages
 *     and errors always go to stderr.
 *
 * This header also holds the small option-table parser the commands share (one table per command
 * drives both parsing and --help). It is deliberately not core/opt: client flags are per-invocation
 * and must never be picked up from AGENTD_<NAME> variables (AGENTD_DATA, for one, is the server's
 * data directory, and would otherwise become the body of `agentd stream create --data`).
 */
#ifndef AGENTD_CLI_H
#define AGENTD_CLI_H

#include <stdio.h>

#include "core/core.h"

/* Exit statuses, documented in `agentd stream --help`. */
enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_USAGE = 1,       /* bad arguments, or a local file/stdin could not be read */
    CLI_EXIT_UNREACHABLE = 2, /* no HTTP answer: connection refused, DNS, timeout, TLS */
    CLI_EXIT_NOT_FOUND = 3,   /* 404 */
    CLI_EXIT_CONFLICT = 4,    /* 409 or 410 */
    CLI_EXIT_HTTP = 5,        /* any other non-2xx answer, or an answer we cannot understand */
};

#define CLI_DEFAULT_SERVER "http://127.0.0.1:4437"

/* `agentd stream ...`: argv[0] is "stream". Returns an enum cli_exit value. */
int cli_stream_main(int argc, char **argv);

/* ---- Option tables ------------------------------------------------------------------------ */

/* One accepted long option. A table is an array ending with an entry whose name is NULL. */
struct cli_opt {
    const char *name;    /* without the leading "--" */
    const char *metavar; /* NULL for a flag; otherwise the option takes a value, shown as this */
    const char *help;    /* one line for --help */
};

/* Options every command accepts; append to a command's table with CLI_COMMON_OPTS. */
#define CLI_COMMON_OPTS                                                                      \
    {"server", "URL", "server base URL (default $AGENTD_URL, else " CLI_DEFAULT_SERVER ")"}, \
        {"token", "TOKEN", "bearer token (default $AGENTD_TOKEN)"},                          \
        {"json", NULL, "machine-readable output: one JSON object per line"},                 \
    {                                                                                        \
        "help", NULL, "show this help"                                                       \
    }

#define CLI_ARGS_MAX_OPTS       32
#define CLI_ARGS_MAX_POSITIONAL 8

/* The result of parsing argv against a table. Values point into argv (borrowed for argv's life). */
struct cli_args {
    const struct cli_opt *table;
    const char *values[CLI_ARGS_MAX_OPTS]; /* by table index; "" for a flag that was given */
    const char *positional[CLI_ARGS_MAX_POSITIONAL];
    int npositional;
    char error[160]; /* the reason parsing failed, when it did */
};

/*
 * Parses argv[0..argc) (the words after the subcommand name) against table. Accepts `--name value`,
 * `--name=value`, `-h` for --help, `--` to end options, and `-` as a positional word; options and
 * positional words may be mixed. A repeated option keeps its last value. Returns NULL on success or
 * a reason (stored in out->error) such as "unknown option --foo". Pure: touches nothing but out.
 */
const char *cli_args_parse(const struct cli_opt *table, int argc, char **argv, struct cli_args *out);
/* The value of option name ("" for a given flag), or NULL when it was not given. name must be in
 * the table (asserted). */
const char *cli_args_get(const struct cli_args *args, const char *name);
/* Writes the table as aligned "  --name METAVAR  help" lines. */
void cli_args_usage(const struct cli_opt *table, FILE *out);

/*
 * `agentd [--server URL] [--token T] [--json] COMMAND ARGS`: the options every client command takes
 * may also come before the command. Moves those, in order, to just after the command word, so that
 * argv[1] is the command and the command parses them as its own. argv[1] not being an option is a
 * no-op. Returns 0, or -EINVAL with the reason in err: an option before the command that is not one
 * of these, a missing value, or no command at all.
 */
int cli_global_opts_first(int argc, char **argv, char *err, size_t errlen) CORE_UNUSED_RESULT;

/*
 * Where a command prints what follows its one result (`session new`: the id, then the workspace):
 * stdout when it is a terminal, where a person reads both, else stderr, so that
 * `export AGENTD_SESSION=$(agentd session new ...)` captures the result alone.
 */
FILE *cli_detail_stream(void);

/* The server URL for a command: --server, else $AGENTD_URL, else CLI_DEFAULT_SERVER. */
const char *cli_args_server(const struct cli_args *args);
/* The bearer token: --token, else $AGENTD_TOKEN, else NULL. */
const char *cli_args_token(const struct cli_args *args);

/* ---- Nouns with subcommands: `agentd session ...`, `agentd rt ...` ------------------------ */

struct cli_http;

/* One invocation of a subcommand: what its run function gets besides the parsed arguments. */
struct cli_client {
    struct cli_http *http; /* owned by cli_noun_main */
    int json;              /* --json was given */
    int nwords;            /* the subcommand's words (borrowed from argv), for options that may */
    char **words;          /* be repeated: see cli_args_each */
};

struct cli_command {
    const char *name;
    const char *synopsis;   /* positional words, for usage lines */
    int min_args, max_args; /* how many positional words */
    const struct cli_opt *opts;
    int (*run)(struct cli_client *client, const struct cli_args *args); /* returns an exit status */
    const char *summary;
};

/* A noun: its subcommands and the text around their list in `agentd NOUN --help`. */
struct cli_noun {
    const char *name; /* "session" */
    const struct cli_command *commands;
    size_t ncommands;
    const char *intro;  /* printed before the command list */
    const char *footer; /* printed after it and the server and token sources (output format, exit statuses) */
};

/*
 * `agentd NOUN ...`: argv[0] is the noun. Finds the subcommand (options may come before it, as in
 * `agentd rt --session S exec CODE`), parses its options, handles --help, checks the number of
 * positional words, opens the HTTP client from --server/--token and runs it. Returns an exit status.
 * Defined in cli_noun.c.
 */
int cli_noun_main(const struct cli_noun *noun, int argc, char **argv);
/* Calls cb(arg, value) for each occurrence of --name VALUE (or --name=VALUE) in argv, in order,
 * reading argv as cli_args_parse would with table; returns 0 or cb's first nonzero value. */
typedef int (*cli_value_cb)(void *arg, const char *value);
int cli_args_each(const struct cli_opt *table, int argc, char **argv, const char *name, cli_value_cb cb,
                  void *arg);
/* `agentd session ...` (cli_session.c) and `agentd rt ...` (cli_rt.c); argv[0] is the noun. */
int cli_session_main(int argc, char **argv);
int cli_rt_main(int argc, char **argv);

/* ---- Following a stream live: `agentd session tail`, `send --wait` (cli_follow.c) --------- */

/*
 * What cli_follow hands its caller. Each callback returns 0 to keep following, nonzero to stop.
 * Content is delivered exactly once and in order: a data event is held until the control event
 * after it confirms the offset it ends at; when the connection breaks in between, the held data is
 * dropped and the reconnect (from the last confirmed offset) delivers it again.
 */
struct cli_follow_cb {
    /* Confirmed content: n bytes (base64 data events decoded), for an application/json stream a
     * JSON array; offset is where it ends. Both borrowed until the callback returns. */
    int (*on_data)(void *arg, const char *p, size_t n, const char *offset);
    /* After each control event, once the content it confirmed was delivered (not called when
     * on_data stopped). up_to_date: the read had reached the stream's tail; closed: the stream is
     * closed, and cli_follow returns after this call whatever it answers. May be NULL. */
    int (*on_control)(void *arg, const char *offset, int up_to_date, int closed);
    void *arg;
};

/*
 * Follows the stream at url_path ("/v1/stream/...", escaped, no query) with `live=sse` reads from
 * *offset, reconnecting from the last confirmed offset whenever the server ends a response or the
 * connection breaks (at once after a useful connection, else with a growing pause up to 5 s; one
 * note on stderr per outage). *offset is a malloc'd string that cli_follow may replace: on return
 * it is the last confirmed offset (content of a batch after the piece on_data stopped at is not
 * delivered). Returns CLI_EXIT_OK when a callback stopped it or the stream was closed, else the
 * failure's exit status, reported on stderr as "agentd: <what>: ..." (the stream does not exist,
 * or the server was unreachable on the first attempt). http is busy while callbacks run: they
 * must make their own requests on another client.
 */
int cli_follow(struct cli_http *http, const char *what, const char *url_path, char **offset,
               const struct cli_follow_cb *cb);

#endif
