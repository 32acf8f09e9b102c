/*
 * demo — `agentd demo-agent`, the built-in demo agent: a program (not an adapter) that speaks the
 * jsonl protocol of doc/AGENT-PROTOCOL.md, so that a newcomer without an API key sees a real
 * session with every kind of event. The `demo` adapter (src/agent) runs it: agentd's own
 * executable, resolved when the server starts, with this hidden subcommand.
 *
 * Per message it: names its conversation (`session`, kept across runs under $HOME so a resumed
 * conversation counts its turns, a forked one continues a copy), logs at debug, info, warn and
 * error, streams a short answer in `delta`s and repeats it as a `message`, runs three tools that
 * really touch the workspace (lists it, reads README.md — an `is_error` result when there is
 * none — and appends to demo-notes.md, which the workspace watcher reports as a `file` event),
 * reports one non-fatal `error` with a code, streams its reply (which echoes the message and
 * describes the workspace), and ends with a `result` carrying usage and cost.
 *
 * It reads stdin between steps: a cancel line or EOF ends the run at once with an is_error result.
 * AGENTD_DEMO_DELAY_MS (default 40, 0..5000) sets the pause per delta, so a person watches the
 * reply being written; tests make it short. A message containing "slow" takes at least 100 ms per
 * delta (several seconds in all), for tests that act in the middle of a run.
 */
#ifndef AGENTD_DEMO_H
#define AGENTD_DEMO_H

/* The subcommand's entry: argv[0] is "demo-agent". Returns the exit status. */
int demo_main(int argc, char **argv);

#endif
