/*
 * The nodes agentd runs on (GET /v1/nodes, answered by the node this page reaches, never forwarded)
 * and which node that is (the answer's Agentd-Node). Polled, not followed: a short GET every few
 * seconds holds none of the tab's connections. Polled only while the tab is visible: every 2 s while
 * someone looks at the list (`detail`), every 10 s for the top bar's badge when several nodes share
 * the database, and not at all on a single node once answered (nothing there changes but its load).
 * Each node's state (live, unreachable, stopped) and load are the server's (recorded by each node's
 * heartbeat): nothing here guesses from the times.
 */
import { signal } from "@preact/signals";
import type { NodeInfo, Nodes } from "@agentd/client";
import { api, noteError } from "../lib/api";

export const nodes = signal<Nodes | null>(null);
/** Why the last poll failed (the node is down, or the token is wrong); null after an answer. */
export const nodesError = signal<string | null>(null);

let users = 0;
let watchers = 0;
let timer = 0;
let busy = false;

/** Not heard of for a few of its heartbeats, as the server judges it: killed, paused, or cut off from
 * the database. A node stopped cleanly is not: it is listed "stopped". */
export function unreachable(n: NodeInfo): boolean {
  return n.state === "unreachable";
}

function period(): number {
  if (watchers) return 2000;
  return nodes.value && nodes.value.nodes.length < 2 ? 0 : 10000;
}

function schedule() {
  clearTimeout(timer);
  const ms = period();
  timer = users && ms && !document.hidden ? (setTimeout(poll, ms) as unknown as number) : 0;
}

async function poll() {
  if (!users || document.hidden || busy) return; /* one in flight: its end schedules the next */
  busy = true;
  clearTimeout(timer);
  try {
    nodes.value = await api.nodes();
    nodesError.value = null;
  } catch (e) {
    nodesError.value = noteError(e);
  }
  busy = false;
  schedule();
}

function onVisibility() {
  if (document.hidden) clearTimeout(timer);
  else void poll();
}

/** Polls while the returned function has not been called. detail: someone reads the list (2 s). */
export function watchNodes(detail = false): () => void {
  if (detail) watchers++;
  if (users++ === 0) document.addEventListener("visibilitychange", onVisibility);
  void poll();
  return () => {
    if (detail) watchers--;
    if (--users === 0) {
      document.removeEventListener("visibilitychange", onVisibility);
      clearTimeout(timer);
    }
  };
}
