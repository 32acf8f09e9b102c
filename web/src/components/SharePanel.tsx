/* Share links: create (read-only link to this session), copy, revoke. */
import { useSignal } from "@preact/signals";
import { useEffect } from "preact/hooks";
import type { Share } from "@agentd/client";
import { api, noteError } from "../lib/api";
import { ago } from "../lib/format";

export function shareUrl(id: string, token: string): string {
  return `${location.origin}/s/${id}?share=${encodeURIComponent(token)}`;
}

export function SharePanel({ id }: { id: string }) {
  const shares = useSignal<Share[]>([]);
  const err = useSignal<string | null>(null);
  const copied = useSignal<string | null>(null);
  const load = () => api.shares(id).then((s) => (shares.value = s), (e) => (err.value = noteError(e)));
  useEffect(() => {
    load();
  }, [id]);
  async function create() {
    try {
      await api.createShare(id);
      await load();
    } catch (e) {
      err.value = noteError(e);
    }
  }
  async function revoke(t: string) {
    try {
      await api.revokeShare(id, t);
      await load();
    } catch (e) {
      err.value = noteError(e);
    }
  }
  async function copy(t: string) {
    try {
      await navigator.clipboard.writeText(shareUrl(id, t));
      copied.value = t;
    } catch {
      /* no clipboard (plain http on another host): the link is selectable */
      copied.value = null;
    }
  }
  return (
    <div class="panel share" data-testid="share-panel">
      <p class="muted small">A share link opens this session read-only: its transcript, runs and state, and nothing else. Anyone with the link can read it until you revoke it.</p>
      <button class="primary" onClick={create} data-testid="share-create">
        Create share link
      </button>
      {err.value && <div class="banner error small">{err.value}</div>}
      <ul class="shares">
        {shares.value.map((s) => (
          <li data-testid="share-item">
            <input class="mono" readOnly value={shareUrl(id, s.token)} onFocus={(e) => (e.target as HTMLInputElement).select()} data-testid="share-url" />
            <div class="chat-row">
              <span class="muted small">created {ago(s.created_at)}</span>
              <span class="grow" />
              <button onClick={() => copy(s.token)}>{copied.value === s.token ? "Copied" : "Copy"}</button>
              <button class="danger" onClick={() => revoke(s.token)} data-testid="share-revoke">
                Revoke
              </button>
            </div>
          </li>
        ))}
      </ul>
    </div>
  );
}
