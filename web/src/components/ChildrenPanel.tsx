/* Child sessions as a tree (GET .../children, two levels), else from the transcript's child events. */
import { useSignal } from "@preact/signals";
import { useEffect } from "preact/hooks";
import type { Session } from "@agentd/client";
import { api } from "../lib/api";
import { keepShare, linkClick } from "../lib/router";
import { shortId } from "../lib/format";
import type { SessionStore } from "../store/session";
import { Empty, Pill } from "./common";

interface Node {
  s: Pick<Session, "id" | "agent" | "status">;
  kids: Node[];
}

async function tree(id: string, depth: number): Promise<Node[]> {
  const kids = await api.children(id);
  return Promise.all(kids.map(async (k) => ({ s: k, kids: depth > 1 ? await tree(k.id, depth - 1).catch(() => []) : [] })));
}

export function ChildrenPanel({ store }: { store: SessionStore }) {
  const nodes = useSignal<Node[] | null>(null);
  store.version.value;
  const fromEvents = store.fold.items.filter((it) => it.kind === "child" && it.ev.action === "spawned");
  const n = fromEvents.length;
  useEffect(() => {
    tree(store.id, 3).then(
      (t) => (nodes.value = t),
      () => (nodes.value = null),
    );
  }, [store.id, n]);
  const list: Node[] =
    nodes.value ??
    fromEvents.map((it) => ({ s: { id: it.kind === "child" ? it.ev.child : "", agent: "", status: "" }, kids: [] }));
  if (!list.length) return <Empty title="No child sessions" />;
  return (
    <div class="panel children">
      <Tree nodes={list} />
    </div>
  );
}

function Tree({ nodes }: { nodes: Node[] }) {
  return (
    <ul class="tree">
      {nodes.map((n) => (
        <li>
          <a href={keepShare(`/s/${n.s.id}`)} onClick={linkClick} class="mono">
            {shortId(n.s.id)}
          </a>{" "}
          {n.s.agent && <span class="muted small">{n.s.agent}</span>} {n.s.status && <Pill kind={n.s.status === "running" ? "running" : "idle"}>{n.s.status}</Pill>}
          {n.kids.length > 0 && <Tree nodes={n.kids} />}
        </li>
      ))}
    </ul>
  );
}
