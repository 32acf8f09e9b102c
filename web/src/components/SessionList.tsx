/* `/`: every session, live from the `sessions` feed, filtered, virtualized. */
import { useComputed, useSignal } from "@preact/signals";
import { useEffect, useRef } from "preact/hooks";
import type { Session } from "@agentd/client";
import { feedError, feedStatus, sessions, useFeed } from "../store/sessions";
import { navigate, linkClick } from "../lib/router";
import { useKeys } from "../lib/keys";
import { ago, cost, shortId, tokens } from "../lib/format";
import { ConnBadge, Empty, Pill } from "./common";
import { VirtualList } from "./VirtualList";
import { NewSession } from "./NewSession";

type StatusFilter = "all" | "running" | "idle" | "failed";

function lastOutcome(s: Session): string | null {
  return s.last_run?.status ?? null;
}

export function SessionList() {
  useEffect(() => useFeed(), []);
  const q = useSignal("");
  const status = useSignal<StatusFilter>("all");
  const agent = useSignal("");
  const tag = useSignal("");
  const showNew = useSignal(false);
  const search = useRef<HTMLInputElement>(null);

  useKeys({ "/": () => search.current?.focus(), n: () => (showNew.value = true) });

  const agents = useComputed(() => [...new Set(sessions.value.map((s) => s.agent))].sort());
  const tags = useComputed(() => [...new Set(sessions.value.flatMap((s) => s.tags ?? []))].sort());
  const shown = useComputed(() => {
    const text = q.value.trim().toLowerCase();
    return sessions.value.filter((s) => {
      if (status.value === "running" && s.status !== "running") return false;
      if (status.value === "idle" && s.status !== "idle") return false;
      if (status.value === "failed" && !(lastOutcome(s) === "error" || s.env_status === "error")) return false;
      if (agent.value && s.agent !== agent.value) return false;
      if (tag.value && !(s.tags ?? []).includes(tag.value)) return false;
      if (text && !`${s.id} ${s.agent} ${s.workspace} ${(s.tags ?? []).join(" ")}`.toLowerCase().includes(text)) return false;
      return true;
    });
  });
  const list = shown.value;
  const running = sessions.value.filter((s) => s.status === "running").length;

  return (
    <div class="page list-page">
      <div class="list-head">
        <div>
          <h1>Sessions</h1>
          <div class="sub">
            {sessions.value.length} sessions · {running} running <ConnBadge status={feedStatus.value} />
          </div>
        </div>
        <button class="primary" data-testid="new-session" onClick={() => (showNew.value = true)} title="New session (n)">
          + New session
        </button>
      </div>
      <div class="filters" role="search">
        <input
          ref={search}
          type="search"
          placeholder="Filter by id, agent, workspace, tag…  ( / )"
          value={q.value}
          onInput={(e) => (q.value = (e.target as HTMLInputElement).value)}
          aria-label="Filter sessions"
        />
        <div class="seg" role="group" aria-label="Status">
          {(["all", "running", "idle", "failed"] as StatusFilter[]).map((s) => (
            <button class={status.value === s ? "on" : ""} onClick={() => (status.value = s)} data-testid={`status-${s}`}>
              {s}
            </button>
          ))}
        </div>
        <select value={agent.value} onChange={(e) => (agent.value = (e.target as HTMLSelectElement).value)} aria-label="Agent">
          <option value="">all agents</option>
          {agents.value.map((a) => (
            <option value={a}>{a}</option>
          ))}
        </select>
        <select value={tag.value} onChange={(e) => (tag.value = (e.target as HTMLSelectElement).value)} aria-label="Tag">
          <option value="">all tags</option>
          {tags.value.map((t) => (
            <option value={t}>{t}</option>
          ))}
        </select>
      </div>
      {feedError.value && feedStatus.value !== "live" && <div class="banner warn">{feedError.value}</div>}
      {list.length === 0 ? (
        sessions.value.length === 0 && feedStatus.value !== "live" && feedStatus.value !== "closed" ? (
          <Empty title="Loading sessions…" />
        ) : sessions.value.length === 0 ? (
          <Empty title="No sessions yet">
            Start one with <b>New session</b>: the <code>demo</code> agent needs no API key and shows every kind of event.
          </Empty>
        ) : (
          <Empty title="No session matches these filters" />
        )
      ) : (
        <div class="table">
          <div class="tr th" role="row">
            <span>Session</span>
            <span>Agent</span>
            <span>Status</span>
            <span>Last run</span>
            <span>Tags</span>
            <span>Usage</span>
            <span>Activity</span>
          </div>
          <VirtualList
            class="sessions"
            label="Sessions"
            count={list.length}
            estimate={52}
            keyOf={(i) => (list[i] as Session).id}
            render={(i) => <Row s={list[i] as Session} />}
          />
        </div>
      )}
      {showNew.value && (
        <NewSession
          onClose={() => (showNew.value = false)}
          onCreated={(id) => {
            showNew.value = false;
            navigate(`/s/${id}`);
          }}
        />
      )}
    </div>
  );
}

function Row({ s }: { s: Session }) {
  const busy = s.status === "running";
  const env = s.env_status;
  const last = s.last_run;
  const t = s.totals;
  return (
    <a class="tr row" href={`/s/${s.id}`} onClick={linkClick} data-testid="session-row" data-id={s.id} role="row">
      <span class="mono">
        {shortId(s.id)}
        {s.parent && <span class="muted" title={`child of ${s.parent}`}> ↳</span>}
        <div class="muted small ellipsis" title={s.workspace}>
          {s.workspace}
        </div>
      </span>
      <span>{s.agent}</span>
      <span class="stack">
        <Pill kind={busy ? "running" : "idle"}>{busy ? "busy" : "idle"}</Pill>
        {env && env !== "ready" && env !== "inactive" && <Pill kind={`env-${env}`}>env {env}</Pill>}
        {!!s.queued && <Pill kind="queued">{s.queued} queued</Pill>}
      </span>
      <span>{last ? <Pill kind={last.status} title={last.code}>{last.status}</Pill> : <span class="muted">—</span>}</span>
      <span class="tags">
        {(s.tags ?? []).map((x) => (
          <span class="tag">{x}</span>
        ))}
      </span>
      <span class="muted small">
        {t && t.runs ? `${t.runs} run${t.runs === 1 ? "" : "s"} · ${tokens(t.input_tokens + t.output_tokens)} tok · ${cost(t.cost_usd)}` : "—"}
      </span>
      <span class="muted small" title={new Date(s.last_activity ?? s.created_at).toLocaleString()}>
        {ago(s.last_activity ?? s.created_at)}
      </span>
    </a>
  );
}
