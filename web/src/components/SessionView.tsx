/* `/s/<id>` (and read-only with ?share=): header, filters, the live timeline, side panels, chat input. */
import { useSignal } from "@preact/signals";
import { useEffect, useMemo, useRef } from "preact/hooks";
import { LOG_LEVELS, type LogLevel } from "@agentd/client";
import { SessionStore } from "../store/session";
import { api, noteError, readOnly, tokenVersion } from "../lib/api";
import { navigate, linkClick, keepShare } from "../lib/router";
import { useKeys } from "../lib/keys";
import { CATEGORIES, itemText, type Category, type Item } from "../lib/timeline";
import { cost, shortId, tokens } from "../lib/format";
import { ConnBadge, Empty, Pill } from "./common";
import { VirtualList } from "./VirtualList";
import { ItemView, type ItemActions } from "./Items";
import { ChatInput } from "./ChatInput";
import { RunsPanel } from "./RunsPanel";
import { RuntimeConsole } from "./RuntimeConsole";
import { SharePanel } from "./SharePanel";
import { ChildrenPanel } from "./ChildrenPanel";

/** One store per open session id, kept while a view of it is mounted. */
export function useSessionStore(id: string): SessionStore {
  const store = useMemo(() => {
    const s = new SessionStore(id);
    /* start loading during the first render, not after it is painted */
    s.open();
    return s;
  }, [id, tokenVersion.value]);
  useEffect(() => {
    /* read-only view of what the page loaded, for the browser tests and for debugging */
    (window as unknown as { __agentd: unknown }).__agentd = {
      id,
      offsets: () => store.entries.map((e) => e.offset),
      ends: () => store.entries.map((e) => e.end),
      types: () => store.entries.map((e) => e.event.type),
      status: () => store.status.value,
    };
    return () => store.close();
  }, [store]);
  return store;
}

const CAT_LABELS: Record<Category, string> = {
  messages: "Messages",
  tools: "Tools",
  permissions: "Permissions",
  runs: "Runs",
  logs: "Logs",
  errors: "Errors",
  status: "Status",
  files: "Files",
  children: "Children",
  runtime: "Runtime",
  session: "Session",
};

type Panel = "runs" | "runtime" | "share" | "children";

export function SessionView({ id }: { id: string }) {
  const store = useSessionStore(id);
  const ro = readOnly();
  const cats = useSignal<Record<Category, boolean>>(Object.fromEntries(Object.keys(CATEGORIES).map((k) => [k, true])) as Record<Category, boolean>);
  const levels = useSignal<Record<LogLevel, boolean>>({ debug: true, info: true, warn: true, error: true });
  const q = useSignal("");
  const panel = useSignal<Panel>("runs");
  const actionErr = useSignal<string | null>(null);
  const searchRef = useRef<HTMLInputElement>(null);
  /* the banner waits a moment: a connection the server closes on schedule is back at once */
  const lost = useSignal(false);
  const st = store.status.value;
  useEffect(() => {
    if (st !== "reconnecting") {
      lost.value = false;
      return;
    }
    const t = setTimeout(() => (lost.value = true), 700);
    return () => clearTimeout(t);
  }, [st]);

  useKeys(
    {
      "/": () => searchRef.current?.focus(),
      c: () => navigate(keepShare(`/s/${id}/chat`)),
      Escape: () => navigate("/"),
    },
    [id],
  );

  store.version.value; /* re-render on every flush */
  const fold = store.fold;
  const s = store.session.value;
  const text = q.value.trim().toLowerCase();
  const kinds = new Set<string>();
  for (const [c, on] of Object.entries(cats.value)) if (on) for (const k of CATEGORIES[c as Category]) kinds.add(k);
  const items: Item[] = fold.items.filter((it) => {
    if (!kinds.has(it.kind)) return false;
    if (it.kind === "log" && !levels.value[it.ev.level]) return false;
    if (text && !itemText(it).toLowerCase().includes(text)) return false;
    return true;
  });

  const actions: ItemActions = useMemo(
    () =>
      ro
        ? {}
        : {
            fork: async (it: Item) => {
              try {
                const f = await api.fork(id, { at: it.entry.end });
                navigate(`/s/${f.id}`);
              } catch (e) {
                actionErr.value = noteError(e);
              }
            },
            answer: async (request, answer) => {
              try {
                await api.answerPermission(id, request, answer);
                store.refreshState();
              } catch (e) {
                actionErr.value = noteError(e);
              }
            },
          },
    [id, ro, store],
  );

  async function forkAll() {
    try {
      const f = await api.fork(id);
      navigate(`/s/${f.id}`);
    } catch (e) {
      actionErr.value = noteError(e);
    }
  }
  async function del() {
    if (!confirm(`Delete session ${id}? Its runtimes stop; its streams stay readable until deleted.`)) return;
    try {
      await api.deleteSession(id);
      navigate("/");
    } catch (e) {
      actionErr.value = noteError(e);
    }
  }

  const busy = !!store.activeRun();
  const env = fold.envStatus?.status ?? s?.env_status ?? "inactive";
  const t = store.totals.value;
  const problem = store.problem.value;
  const queued = store.runs.value.filter((r) => r.status === "queued").length;

  return (
    <div class="page session-page">
      <header class="shead">
        <div class="crumbs">
          {!ro && (
            <a href="/" onClick={linkClick} class="muted">
              Sessions
            </a>
          )}
          {!ro && <span class="muted"> / </span>}
          <span class="mono strong" title={id}>
            {shortId(id)}
          </span>
          {ro && <Pill kind="readonly">read-only shared view</Pill>}
        </div>
        <div class="shead-main">
          <div class="facts">
            <Pill kind={busy ? "running" : "idle"} title="busy: a run is in progress (apart from the environment's health)">
              {busy ? "busy" : "idle"}
            </Pill>
            <Pill kind={`env-${env}`} title="execution environment">
              env {env}
            </Pill>
            {queued > 0 && <Pill kind="queued">{queued} queued</Pill>}
            {store.permissions.value.length > 0 && (
              <span data-testid="pending-count">
                <Pill kind="queued" title="permission requests waiting for an answer (Runs panel, or in the timeline)">
                  {store.permissions.value.length} waiting for approval
                </Pill>
              </span>
            )}
            {s?.agent_process && (
              <span class="fact" data-testid="agent-process" title="the agent's process (a warm agent stays between messages)">
                <span class="muted">agent process</span> {s.agent_process.state} <span class="muted mono">{s.agent_process.pid}</span>
              </span>
            )}
            <span class="fact">
              <span class="muted">agent</span> {s?.agent ?? "…"}
            </span>
            <span class="fact ellipsis" title={s?.workspace}>
              <span class="muted">workspace</span> <span class="mono">{s?.workspace ?? "…"}</span>
            </span>
            <span class="fact" data-testid="totals">
              <span class="muted">totals</span> {t.runs} run{t.runs === 1 ? "" : "s"} · {tokens(t.input_tokens)} in · {tokens(t.output_tokens)} out · {cost(t.cost_usd)}
            </span>
            {s?.parent && (
              <span class="fact">
                <span class="muted">parent</span>{" "}
                <a href={keepShare(`/s/${s.parent}`)} onClick={linkClick} class="mono">
                  {shortId(s.parent)}
                </a>
              </span>
            )}
          </div>
          <div class="acts">
            <ConnBadge status={store.status.value} />
            <a class="btn" href={keepShare(`/s/${id}/chat`)} onClick={linkClick} title="Focused chat view (c)" data-testid="open-chat">
              Chat view
            </a>
            {!ro && (
              <>
                <button onClick={forkAll} data-testid="fork" title="Fork the whole session (transcript and a copy of its workspace)">
                  Fork
                </button>
                <button onClick={() => (panel.value = "share")} data-testid="share">
                  Share
                </button>
                <button class="danger" onClick={del} data-testid="delete">
                  Delete
                </button>
              </>
            )}
          </div>
        </div>
      </header>
      {problem && (
        <div class={`banner ${problem === "deleted" || problem === "not found" ? "warn" : "error"}`} data-testid="problem">
          {problem === "deleted"
            ? "This session was deleted. What it recorded is shown below; nothing new will come."
            : problem === "not found"
              ? "No such session (it may have been deleted)."
              : problem}
        </div>
      )}
      {lost.value && store.status.value === "reconnecting" && (
        <div class="banner warn" data-testid="reconnecting">
          Connection lost — reconnecting; the timeline resumes from offset {store.entries.length ? store.entries[store.entries.length - 1]?.end : "-1"} with nothing missed.
        </div>
      )}
      {actionErr.value && (
        <div class="banner error" onClick={() => (actionErr.value = null)}>
          {actionErr.value}
        </div>
      )}
      <div class="toolbar" role="toolbar" aria-label="Timeline filters">
        <div class="chips">
          {(Object.keys(CATEGORIES) as Category[]).map((c) => (
            <button
              class={"chip " + (cats.value[c] ? "on" : "")}
              aria-pressed={cats.value[c]}
              data-testid={`cat-${c}`}
              onClick={() => (cats.value = { ...cats.value, [c]: !cats.value[c] })}
            >
              {CAT_LABELS[c]}
            </button>
          ))}
        </div>
        <div class="chips levels" role="group" aria-label="Log levels">
          {LOG_LEVELS.map((l) => (
            <button
              class={`chip lvlchip lvl-${l} ` + (levels.value[l] ? "on" : "")}
              aria-pressed={levels.value[l]}
              data-testid={`level-${l}`}
              onClick={() => (levels.value = { ...levels.value, [l]: !levels.value[l] })}
            >
              {l} <span class="count">{fold.levelCounts[l] ?? 0}</span>
            </button>
          ))}
        </div>
        <input
          ref={searchRef}
          class="search"
          type="search"
          placeholder="Search this session…  ( / )"
          value={q.value}
          onInput={(e) => (q.value = (e.target as HTMLInputElement).value)}
          aria-label="Search this session"
          data-testid="search"
        />
        {text && <span class="muted small">{items.length} matches</span>}
      </div>
      <div class="session-body">
        <main class="timeline-col">
          {items.length === 0 ? (
            store.status.value === "connecting" ? (
              <Empty title="Loading the transcript…" />
            ) : fold.items.length === 0 ? (
              <Empty title="Nothing here yet">{ro ? "The session has no events yet." : "Send a message below, or run code in the runtime console."}</Empty>
            ) : (
              <Empty title="No event matches these filters" />
            )
          ) : (
            <VirtualList
              class="timeline"
              label="Timeline"
              count={items.length + 1}
              estimate={64}
              version={store.version.value}
              stickToBottom
              onNearTop={() => store.loadOlder()}
              keyOf={(i) => (i === 0 ? "__top" : (items[i - 1] as Item).key)}
              render={(i) =>
                i === 0 ? (
                  <div class="top-note muted small">
                    {store.loadingOlder.value ? "Loading older events…" : store.hasOlder.value ? "Scroll up for older events" : "Start of the session"}
                  </div>
                ) : (
                  <ItemView it={items[i - 1] as Item} a={actions} />
                )
              }
            />
          )}
          {!ro && <ChatInput store={store} />}
        </main>
        <aside class="side">
          <div class="tabs" role="tablist">
            {(["runs", "runtime", "share", "children"] as Panel[])
              .filter((x) => !ro || x === "runs" || x === "children")
              .map((x) => (
                <button role="tab" class={panel.value === x ? "on" : ""} aria-selected={panel.value === x} onClick={() => (panel.value = x)} data-testid={`tab-${x}`}>
                  {x === "runs" ? "Runs" : x === "runtime" ? "Runtime" : x === "share" ? "Share" : "Children"}
                </button>
              ))}
          </div>
          {panel.value === "runs" && <RunsPanel store={store} />}
          {panel.value === "runtime" && !ro && <RuntimeConsole id={id} />}
          {panel.value === "share" && !ro && <SharePanel id={id} />}
          {panel.value === "children" && <ChildrenPanel store={store} />}
        </aside>
      </div>
    </div>
  );
}
