/*
 * serve — the `agentd serve` command: reads the options table (flags, AGENTD_<NAME>, --config), and
 * wires the server on one libuv loop: the store, the stream registry, the HTTP server with every
 * module's routes (streams, subscriptions, sessions and MCP, the dashboard). Prints the bound URL on
 * the first line of stdout and runs until SIGINT/SIGTERM, when it commits what is pending, lets
 * clients go and exits.
 *
 * Owns: the loop, the signal handlers and each module object it builds, freed in reverse order at
 * exit (with clients still connected, h2o keeps their memory until the process exits). Holds no
 * state of its own beyond the options and the base URL clients reach it at.
 */
#ifndef AGENTD_SERVE_H
#define AGENTD_SERVE_H

/* argv[0] is "serve". Returns the process exit status. */
int serve_main(int argc, char **argv);

#endif
