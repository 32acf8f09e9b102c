/* Shared small pieces: status pills, the connection badge, capped text with "show more". */
import type { FollowStatus } from "@agentd/client";
import { useState } from "preact/hooks";

export function Pill(p: { kind: string; children: preact.ComponentChildren; title?: string }) {
  return (
    <span class={`pill pill-${p.kind.replace(/[^a-z_-]/gi, "")}`} title={p.title}>
      {p.children}
    </span>
  );
}

const CONN: Record<FollowStatus, [string, string]> = {
  connecting: ["connecting", "Connecting…"],
  "catching-up": ["connecting", "Catching up…"],
  live: ["live", "Live"],
  reconnecting: ["reconnecting", "Reconnecting…"],
  gone: ["gone", "Gone"],
  unauthorized: ["gone", "Unauthorized"],
  closed: ["closed", "Closed"],
  error: ["gone", "Error"],
};

export function ConnBadge(p: { status: FollowStatus }) {
  const [k, label] = CONN[p.status];
  return (
    <span class={`conn conn-${k}`} data-testid="conn" data-status={p.status} role="status" aria-live="polite">
      <span class="dot" />
      {label}
    </span>
  );
}

/** Plain text, inert, at most `cap` characters until the reader asks for more. */
export function CappedText(p: { text: string; cap?: number; class?: string }) {
  const base = p.cap ?? 4000;
  const [limit, setLimit] = useState(base);
  const t = p.text;
  const shown = t.length > limit ? t.slice(0, limit) : t;
  return (
    <>
      <pre class={"text " + (p.class ?? "")}>{shown}</pre>
      {t.length > limit && (
        <button class="link more" onClick={() => setLimit(limit * 8)}>
          show more ({(t.length - limit).toLocaleString()} more characters)
        </button>
      )}
    </>
  );
}

export function Empty(p: { title: string; children?: preact.ComponentChildren }) {
  return (
    <div class="empty">
      <div class="empty-title">{p.title}</div>
      {p.children && <div class="empty-body">{p.children}</div>}
    </div>
  );
}
