/*
 * serve — the `agentd serve` command: reads the options table, opens the store, builds the stream
 * registry and the HTTP server on one libuv loop, prints the bound URL on the first line of stdout,
 * and runs until SIGINT/SIGTERM, when it commits what is pending and exits.
 */
#ifndef AGENTD_SERVE_H
#define AGENTD_SERVE_H

/* argv[0] is "serve". Returns the process exit status. */
int serve_main(int argc, char **argv);

#endif
