/*
 * The nodes agentd runs on: the top bar's badge (the node this page talks to, and a dot saying
 * whether every node is well) and, from its button, the list of nodes: which node this page talks
 * to, and for each node its role, its lease's time left (the owner) or when it was last heard of,
 * and its load (every node's, as its heartbeat recorded it). The data is store/nodes.ts's (polled while the tab is visible: every 2 s while the
 * list is open). Loaded after the page (App's NodesSlot), so none of it is in the first load. Esc,
 * a click outside or focus leaving closes the list. Every string here comes from the server and is
 * rendered as text.
 */
import type { NodeInfo, Nodes } from "@agentd/client";
import { useSignal } from "@preact/signals";
import { useEffect, useRef } from "preact/hooks";
import { tokenVersion } from "../lib/api";
import { duration } from "../lib/format";
import { nodes, nodesError, unreachable, watchNodes } from "../store/nodes";
import { Pill } from "./common";

/** A node's URL without its scheme, to read at a glance. */
function label(s: string): string {
  return s.replace(/^https?:\/\//, "");
}

function nameOf(n: NodeInfo, v: Nodes): string {
  return label(n.url ?? (n.self ? v.answeredBy : null) ?? n.node);
}

export function NodeBadge() {
  useEffect(() => watchNodes(), [tokenVersion.value]); /* a new token: ask again at once */
  const open = useSignal(false);
  const root = useRef<HTMLSpanElement>(null);
  const button = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (!open.value) return;
    const outside = (e: Event) => root.current?.contains(e.target as Node) || close();
    addEventListener("mousedown", outside);
    return () => removeEventListener("mousedown", outside);
  }, [open.value]);
  function close(refocus = false) {
    open.value = false;
    if (refocus) button.current?.focus();
  }

  const v = nodes.value;
  const self = v?.nodes.find((n) => n.self);
  const many = (v?.nodes.length ?? 0) > 1;
  const bad = v?.nodes.some(unreachable) || (v && !v.nodes.some((n) => n.owner));
  const state = nodesError.value ? "gone" : bad ? "reconnecting" : "live";
  if (!v && !nodesError.value) return null;
  return (
    <span
      class="nodes-anchor"
      ref={root}
      onKeyDown={(e) => e.key === "Escape" && open.value && (e.stopPropagation(), close(true))}
      onFocusOut={(e) => e.relatedTarget && !root.current?.contains(e.relatedTarget as Node) && close()}
    >
      <button
        ref={button}
        class={`icon conn conn-${state}`}
        onClick={() => (open.value = !open.value)}
        aria-expanded={open.value}
        aria-haspopup="dialog"
        title="The node this page talks to: the nodes agentd runs on"
        data-testid="node-badge"
      >
        <span class="dot" />
        {v ? label(v.answeredBy ?? self?.url ?? self?.node ?? "") : "nodes"}
        {many && self && ` · ${self.role} · ${v?.nodes.length} nodes`}
      </button>
      {open.value && <NodesPanel />}
    </span>
  );
}

function NodesPanel() {
  useEffect(() => watchNodes(true), []);
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => box.current?.focus(), []);
  const v = nodes.value;
  const list = v ? [...v.nodes].sort((a, b) => +b.owner - +a.owner || (a.node < b.node ? -1 : 1)) : [];
  const self = list.find((n) => n.self);
  const owner = list.find((n) => n.owner);
  /* each node's load as its heartbeat recorded it (none from a node of an older agentd) */
  const load = list.some((n) => n.agents != null);
  return (
    <div class="nodes-pop" role="dialog" aria-label="Nodes" tabIndex={-1} ref={box} data-testid="nodes-panel">
      <h3>
        Nodes <span class="muted">· {v ? about(v) : "…"}</span>
      </h3>
      {nodesError.value && <div class="banner warn">{nodesError.value}</div>}
      {v && self && (
        <p class="small" data-testid="nodes-self">
          This page talks to <b class="mono">{nameOf(self, v)}</b>
          {!self.owner && owner && (
            <>
              , which forwards its requests to the owner, <b class="mono">{nameOf(owner, v)}</b>
            </>
          )}
          {!owner && ". No node holds the write lease: writes wait for one to take it"}.
        </p>
      )}
      <ul class={load ? "nodelist load" : "nodelist"} aria-label="Nodes">
        {list.map((n) => (
          <Row key={n.node} n={n} v={v as Nodes} load={load} />
        ))}
      </ul>
    </div>
  );
}

function about(v: Nodes): string {
  const lease = v.lease_ms ? `, lease ${duration(v.lease_ms)}` : "";
  return `${v.store}${lease}, ${v.nodes.length === 1 ? "one node" : `${v.nodes.length} nodes`}`;
}

function loadText(n: NodeInfo): string {
  const a = `${n.agents} live agent${n.agents === 1 ? "" : "s"}`;
  return n.runtimes ? `${a} · ${n.runtimes} runtime${n.runtimes === 1 ? "" : "s"}` : a;
}

function Row({ n, v, load }: { n: NodeInfo; v: Nodes; load: boolean }) {
  const gone = n.state !== "live";
  const state = n.state === "live" ? "ok" : n.state;
  const left = n.lease_ms_left ?? 0;
  let when = `${gone ? (n.state === "stopped" ? "stopped" : "last seen") : "seen"} ${duration(n.seen_ms_ago)} ago`;
  if (v.store === "sqlite") when = "the only node"; /* no lease: its epoch and time left mean nothing */
  else if (n.owner && left > 0) when = `lease ${duration(left)} left · epoch ${n.epoch}`;
  else if (n.owner) when = `lease expired · ${when}`;
  return (
    <li data-testid="node-row" data-node={n.node} data-role={n.role} data-state={state} data-self={n.self ? "1" : undefined}>
      <span class="node-name">
        <span class="ellipsis mono" title={n.node}>
          {nameOf(n, v)}
        </span>
        {n.self && <span class="tag">this page</span>}
      </span>
      <Pill kind={n.state === "unreachable" ? "error" : n.owner && !gone ? "success" : "follower"}>
        {gone ? n.state : n.role}
      </Pill>
      <span class="muted small">{when}</span>
      {load && <span class="small" data-testid="node-load">{n.agents != null && !gone && loadText(n)}</span>}
    </li>
  );
}
