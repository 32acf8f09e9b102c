/*
 * agentd — one binary: `agentd serve` runs the server (src/serve); `stream`, `session` and `rt` are
 * its client (src/cli); `mcp` bridges an agent's stdio MCP to a server (src/mcp); the hidden
 * `demo-agent` is what the built-in demo agent runs (src/demo). This file only dispatches.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "demo/demo.h"
#include "mcp/mcp_stdio.h"
#include "serve/serve.h"

static const char usage[] =
    "usage: agentd [--server URL] [--token T] [--json] <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve     run the server (agentd serve --help)\n"
    "  stream    create, append to, read, tail, inspect, fork, close and delete durable streams\n"
    "            (agentd stream --help)\n"
    "  session   create, list, show, message, follow, cancel, fork, share and delete sessions\n"
    "            (agentd session --help)\n"
    "  rt        run code in a session's persistent bash/python/node runtimes: exec, state, history,\n"
    "            reset, interrupt (agentd rt --help)\n"
    "  mcp       an MCP server on stdio offering a session's runtimes as a tool (agentd mcp --help)\n"
    "  help      show this text\n";

int main(int argc, char **argv)
{
    char err[160];
    if (argc >= 2 && argv[1][0] == '-' && strcmp(argv[1], "--help") && strcmp(argv[1], "-h") &&
        cli_global_opts_first(argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "agentd: %s\n\n%s", err, usage);
        return 1;
    }
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "serve"))
        return serve_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stream"))
        return cli_stream_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "session"))
        return cli_session_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "rt"))
        return cli_rt_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "mcp"))
        return mcp_stdio_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "demo-agent")) /* hidden: what the `demo` agent runs (src/demo) */
        return demo_main(argc - 1, argv + 1);
    fprintf(stderr, "agentd: unknown command '%s'\n\n%s", argv[1], usage);
    return 1;
}
