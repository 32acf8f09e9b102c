/*
 * mcp_stdio — `agentd mcp --session ID`: the stdio MCP transport, for agents configured with a
 * command rather than a URL (Claude Code, Codex, OpenCode). It is a bridge, not a second server:
 * each newline-delimited JSON-RPC message read on stdin is POSTed to the running server's
 * streamable HTTP endpoint, /v1/sessions/<ID>/mcp (see mcp_http.h), and each reply body is
 * written to stdout as one line. So the runtimes, their state and the transcript are the server's,
 * shared with every other client of the session.
 *
 * Invariants: stdout carries JSON-RPC messages only (diagnostics go to stderr); every request
 * read gets exactly one reply line, a JSON-RPC error when the server could not answer it;
 * messages are forwarded one at a time, in order; stdin EOF ends the MCP session (DELETE) and
 * exits 0.
 *
 * Owns, for the command's life: one HTTP client (cli_http.h, --server/--token as every client
 * command), the Mcp-Session-Id the server issued on initialize and the protocol revision it settled
 * on. Nothing is kept on disk.
 */
#ifndef AGENTD_MCP_STDIO_H
#define AGENTD_MCP_STDIO_H

/* argv[0] is "mcp". Returns a process exit status (enum cli_exit). */
int mcp_stdio_main(int argc, char **argv);

#endif
