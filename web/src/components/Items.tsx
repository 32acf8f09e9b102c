/* One component per timeline item kind. Everything from the agent is text or sanitized markdown. */
import { memo } from "preact/compat";
import { useState } from "preact/hooks";
import { usageTokens, type PermissionAnswer } from "@agentd/client";
import type { Item } from "../lib/timeline";
import { safeJson } from "../lib/timeline";
import { MD_CAP, renderMarkdown } from "../lib/markdown";
import { cost, duration, time, tokens } from "../lib/format";
import { CappedText, Pill } from "./common";
import { linkClick, keepShare } from "../lib/router";
import { diffLines, editOf } from "../lib/diff";

export interface ItemActions {
  /** "fork from here": absent in read-only views */
  fork?: (it: Item) => void;
  /** answers a waiting permission request: absent in read-only views */
  answer?: (request: string, answer: PermissionAnswer) => Promise<void>;
  compact?: boolean;
}

/** A branch glyph drawn in SVG: the fork character (U+2442) is missing from common fonts. */
function ForkIcon() {
  return (
    <svg width="14" height="14" viewBox="0 0 16 16" fill="none" stroke="currentColor" stroke-width="1.6" aria-hidden="true">
      <circle cx="4" cy="3" r="1.6" />
      <circle cx="12" cy="3" r="1.6" />
      <circle cx="8" cy="13" r="1.6" />
      <path d="M4 4.6v1.4c0 1.8 1.4 2.8 4 2.8s4-1 4-2.8V4.6M8 8.8v2.6" />
    </svg>
  );
}

function Meta(p: { it: Item; a: ItemActions; children?: preact.ComponentChildren }) {
  return (
    <div class="meta">
      {p.children}
      <span class="grow" />
      <span class="ts" title={`offset ${p.it.entry.offset} → ${p.it.entry.end}`}>{time(p.it.ts)}</span>
      {p.a.fork && (
        <button class="icon fork" title="Fork from here: a new session whose transcript ends with this event" onClick={() => p.a.fork?.(p.it)} data-testid="fork-here">
          <ForkIcon />
        </button>
      )}
    </div>
  );
}

function Markdown({ text }: { text: string }) {
  const [all, setAll] = useState(false);
  if (text.length > MD_CAP && !all) {
    return (
      <div class="md">
        <div dangerouslySetInnerHTML={{ __html: renderMarkdown(text.slice(0, MD_CAP)) }} />
        <button class="link more" onClick={() => setAll(true)}>
          show the rest as text ({(text.length - MD_CAP).toLocaleString()} more characters)
        </button>
      </div>
    );
  }
  if (all) return <CappedText text={text} cap={MD_CAP * 2} />;
  return <div class="md" dangerouslySetInnerHTML={{ __html: renderMarkdown(text) }} />;
}

function ToolCard({ it, a }: { it: Extract<Item, { kind: "tool" }>; a: ItemActions }) {
  /* an error opens the card until the reader closes it */
  const [choice, setOpen] = useState<boolean | null>(null);
  const open = choice ?? it.isError;
  const edit = editOf(it.name, it.input);
  const summary = toolSummary(it.input);
  const state = !it.done ? "running" : it.isError ? "error" : "ok";
  return (
    <div class={`card tool tool-${state}`} data-testid="tool-card" data-state={state}>
      <button class="tool-head" onClick={() => setOpen(!open)} aria-expanded={open}>
        <span class="chev">{open ? "▾" : "▸"}</span>
        <span class="tool-name">{it.name}</span>
        <span class="tool-sum">{summary}</span>
        <span class="grow" />
        {it.durationMs !== undefined && <span class="muted small">{duration(it.durationMs)}</span>}
        <Pill kind={state === "ok" ? "success" : state}>{state === "running" ? "running…" : state}</Pill>
      </button>
      {(open || edit) && (
        <div class="tool-body">
          {edit ? (
            <Diff path={edit.path} oldText={edit.oldText} newText={edit.newText} />
          ) : (
            it.input !== undefined && (
              <>
                <div class="label">input</div>
                <CappedText text={safeJson(it.input)} cap={4000} class="code" />
              </>
            )
          )}
          {open && it.output !== undefined && (
            <>
              <div class="label">{it.isError ? "error" : "output"}</div>
              <CappedText text={it.output} cap={4000} class={"code " + (it.isError ? "err" : "")} />
            </>
          )}
        </div>
      )}
      <Meta it={it} a={a} />
    </div>
  );
}

/* A tool call the agent asked about: Allow / Deny (and "allow for this session") while it waits,
 * then who decided what. */
function PermissionCard({ it, a }: { it: Extract<Item, { kind: "permission" }>; a: ItemActions }) {
  const [busy, setBusy] = useState(false);
  const [why, setWhy] = useState("");
  const ans = it.answer;
  const state = !ans ? "waiting" : ans.decision === "allow" ? "allowed" : "denied";
  async function answer(decision: "allow" | "deny", remember = false) {
    if (!a.answer || busy) return;
    setBusy(true);
    try {
      await a.answer(it.request, {
        decision,
        ...(why.trim() ? { message: why.trim() } : {}),
        ...(remember ? { remember: "session" as const } : {}),
      });
    } finally {
      setBusy(false);
    }
  }
  return (
    <div class={`card perm perm-${state}`} data-testid="permission-card" data-state={state} data-request={it.request}>
      <div class="perm-head">
        <span class="perm-icon">?</span>
        <span class="muted small">{ans ? "asked to use" : "asks to use"}</span>
        <span class="tool-name">{it.tool}</span>
        <span class="tool-sum">{toolSummary(it.input)}</span>
        <span class="grow" />
        <Pill kind={state === "waiting" ? "queued" : state === "allowed" ? "success" : "error"}>{state}</Pill>
      </div>
      {it.input !== undefined && <CappedText text={safeJson(it.input)} cap={2000} class="code" />}
      {ans ? (
        <div class="muted small" data-testid="permission-answer">
          {ans.decision} by {ans.by}
          {ans.rule && <> (rule <code>{ans.rule}</code>)</>}
          {ans.message && <>: {ans.message}</>}
        </div>
      ) : (
        a.answer && (
          <div class="perm-acts">
            <input class="perm-why" placeholder="why (optional; the agent reads it)" value={why} onInput={(e) => setWhy((e.target as HTMLInputElement).value)} aria-label="Why" />
            <button class="primary" disabled={busy} onClick={() => answer("allow")} data-testid="perm-allow">
              Allow
            </button>
            <button disabled={busy} onClick={() => answer("allow", true)} data-testid="perm-remember" title="Allow, and allow the same call for the rest of this session">
              Allow always
            </button>
            <button class="danger" disabled={busy} onClick={() => answer("deny")} data-testid="perm-deny">
              Deny
            </button>
          </div>
        )
      )}
      <Meta it={it} a={a} />
    </div>
  );
}

function toolSummary(input: unknown): string {
  if (!input || typeof input !== "object") return "";
  const o = input as Record<string, unknown>;
  for (const k of ["command", "file_path", "path", "pattern", "url", "query", "code", "description"]) {
    const v = o[k];
    if (typeof v === "string") return v.length > 120 ? v.slice(0, 120) + "…" : v;
  }
  const s = safeJson(input).replace(/\s+/g, " ");
  return s.length > 120 ? s.slice(0, 120) + "…" : s;
}

function Diff(p: { path: string; oldText: string; newText: string }) {
  const lines = diffLines(p.oldText, p.newText);
  const [all, setAll] = useState(false);
  const shown = all ? lines : lines.slice(0, 400);
  return (
    <div class="diff" data-testid="diff">
      <div class="diff-path mono">{p.path}</div>
      <pre>
        {shown.map(([op, text]) => (
          <div class={`dl dl-${op === "+" ? "add" : op === "-" ? "del" : "ctx"}`}>
            <span class="dop">{op}</span>
            {text.length > 2000 ? text.slice(0, 2000) + "…" : text}
          </div>
        ))}
      </pre>
      {lines.length > shown.length && (
        <button class="link more" onClick={() => setAll(true)}>
          show all {lines.length} lines
        </button>
      )}
    </div>
  );
}

function RunEnd({ it, a }: { it: Extract<Item, { kind: "run_end" }>; a: ItemActions }) {
  const ev = it.ev;
  const u = usageTokens(ev.usage);
  if (it.neverStarted && ev.status === "cancelled")
    return (
      <div class="run-bound run-end run-cancelled" data-testid="run-end" data-status={ev.status}>
        <span class="line" />
        <span class="muted small">a queued input was removed before it ran</span>
        <span class="line" />
      </div>
    );
  return (
    <div class={`run-bound run-end run-${ev.status}`} data-testid="run-end" data-status={ev.status}>
      <span class="line" />
      <Pill kind={ev.status}>{ev.status}</Pill>
      {ev.code && <code class="errcode">{ev.code}</code>}
      <span class="muted small">
        {duration(ev.duration_ms)}
        {u.input + u.output > 0 && ` · ${tokens(u.input)} in / ${tokens(u.output)} out`}
        {typeof ev.cost_usd === "number" && ` · ${cost(ev.cost_usd)}`}
        {ev.num_turns ? ` · ${ev.num_turns} turn${ev.num_turns > 1 ? "s" : ""}` : ""}
      </span>
      <span class="line" />
      {a.fork && (
        <button class="icon fork" title="Fork from here" onClick={() => a.fork?.(it)} data-testid="fork-here">
          <ForkIcon />
        </button>
      )}
    </div>
  );
}

function RunStart({ it, a }: { it: Extract<Item, { kind: "run_start" }>; a: ItemActions }) {
  return (
    <div class="turn-user" data-testid="run-start">
      <div class="run-bound">
        <span class="line" />
        <span class="muted small">
          run {it.run?.replace(/^run_/, "").slice(0, 8)} · {it.mode} · {time(it.ts)}
        </span>
        <span class="line" />
      </div>
      {it.input && (
        <div class="bubble user">
          <CappedText text={it.input} cap={8000} class="plain" />
        </div>
      )}
      {a.fork && !a.compact && (
        <div class="user-actions">
          <button class="icon fork" title="Fork from here" onClick={() => a.fork?.(it)} data-testid="fork-here">
            <ForkIcon />
          </button>
        </div>
      )}
    </div>
  );
}

export const ItemView = memo(function ItemView({ it, a }: { it: Item; a: ItemActions }) {
  switch (it.kind) {
    case "run_start":
      return <RunStart it={it} a={a} />;
    case "message":
      return (
        <div class={`msg ${it.role === "user" ? "msg-user" : ""} ${it.thinking ? "thinking" : ""} ${it.streaming ? "streaming" : ""}`} data-testid="message" data-streaming={it.streaming ? "1" : "0"}>
          {it.thinking && <div class="label">thinking</div>}
          {it.role === "user" ? <CappedText text={it.text} class="plain" /> : <Markdown text={it.text} />}
          {it.streaming && <span class="caret" aria-hidden="true" />}
          {!a.compact && <Meta it={it} a={a} />}
        </div>
      );
    case "tool":
      return <ToolCard it={it} a={a} />;
    case "permission":
      return <PermissionCard it={it} a={a} />;
    case "steer":
      return (
        <div class="msg msg-user steer" data-testid="steer-event">
          <div class="label">steered into the running turn</div>
          <CappedText text={it.text} class="plain" />
        </div>
      );
    case "interrupt":
      return (
        <div class="statusline" data-testid="interrupt-event">
          <Pill kind="interrupted">interrupt</Pill>
          <span class="muted small">the turn was asked to stop ({it.by}); the agent keeps its conversation</span>
          <span class="ts">{time(it.ts)}</span>
        </div>
      );
    case "run_end":
      return <RunEnd it={it} a={a} />;
    case "log":
      return (
        <div class={`logline lvl-${it.ev.level}`} data-testid="log" data-level={it.ev.level}>
          <span class="lvl">{it.ev.level}</span>
          {it.ev.scope && <span class="muted small">{it.ev.scope}</span>}
          <CappedText text={it.ev.text} cap={2000} class="plain" />
          <span class="ts">{time(it.ts)}</span>
        </div>
      );
    case "error":
      return (
        <div class="card errcard" data-testid="error-event">
          <div class="errhead">
            <span class="erricon">!</span>
            <code class="errcode" data-testid="error-code">{it.ev.code}</code>
            {it.ev.retryable && <Pill kind="queued">retryable</Pill>}
          </div>
          <CappedText text={it.ev.message} cap={4000} class="plain" />
          <Meta it={it} a={a} />
        </div>
      );
    case "status":
      return (
        <div class="statusline" data-testid="status-event">
          <span class="muted small">{it.ev.scope === "runtime" ? `${it.ev.lang} runtime` : it.ev.scope === "agent" ? `agent process ${it.ev.pid ?? ""}` : "environment"}</span>
          <Pill kind={`env-${it.ev.status}`}>{it.ev.status}</Pill>
          {it.ev.reason && <span class="muted small">{it.ev.reason}</span>}
          {it.ev.elapsed_us !== undefined && <span class="muted small">{duration(it.ev.elapsed_us / 1000)}</span>}
          <span class="ts">{time(it.ts)}</span>
        </div>
      );
    case "file":
      return (
        <div class="card filecard" data-testid="file-event">
          <div class="label">
            {it.ev.count} file change{it.ev.count === 1 ? "" : "s"}
          </div>
          <ul class="files">
            {it.ev.changes.slice(0, 50).map((c) => (
              <li>
                <span class={`fchg fchg-${c.change}`}>{c.change}</span> <span class="mono">{c.path}</span>
              </li>
            ))}
            {it.ev.changes.length > 50 && <li class="muted">… {it.ev.changes.length - 50} more</li>}
          </ul>
        </div>
      );
    case "child":
      return (
        <div class="statusline" data-testid="child-event">
          <span class="muted small">child session {it.ev.action}</span>
          <a class="mono" href={keepShare(`/s/${it.ev.child}`)} onClick={linkClick}>
            {it.ev.child.slice(0, 8)}
          </a>
          {it.ev.status && <Pill kind={it.ev.status}>{it.ev.status}</Pill>}
          {it.ev.result && <span class="muted small ellipsis">{it.ev.result}</span>}
        </div>
      );
    case "runtime":
      return (
        <div class="card rtcard" data-testid="runtime-event">
          <div class="rthead">
            <span class="tag">{it.ev.lang}</span> <span class="muted">{it.ev.action}</span>
            {it.ev.status !== undefined && <Pill kind={it.ev.status === 0 ? "success" : "error"}>exit {it.ev.status}</Pill>}
            {it.ev.timed_out && <Pill kind="error">timed out</Pill>}
            <span class="grow" />
            {it.ev.duration_us !== undefined && <span class="muted small">{duration(it.ev.duration_us / 1000)}</span>}
          </div>
          {it.ev.code && <CappedText text={it.ev.code} cap={2000} class="code" />}
          {it.ev.stdout && <CappedText text={it.ev.stdout} cap={2000} class="code out" />}
          {it.ev.stderr && <CappedText text={it.ev.stderr} cap={2000} class="code err" />}
        </div>
      );
    case "session":
      return (
        <div class="statusline" data-testid="session-event">
          <span class="muted small">
            session {it.ev.action}
            {it.ev.from && (
              <>
                {" "}
                from{" "}
                <a href={keepShare(`/s/${it.ev.from}`)} onClick={linkClick} class="mono">
                  {it.ev.from.slice(0, 8)}
                </a>
              </>
            )}
          </span>
          <span class="ts">{time(it.ts)}</span>
        </div>
      );
    default:
      return (
        <div class="statusline">
          <span class="muted small">{it.ev.type}</span>
          <CappedText text={safeJson(it.ev)} cap={1000} class="code" />
        </div>
      );
  }
});
