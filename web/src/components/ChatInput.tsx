/* The chat input: send with a mode (queue / interrupt / reject / steer), interrupt or cancel the
 * running run. Steer and interrupt show where the session's agent can do them. */
import { useSignal } from "@preact/signals";
import { useRef } from "preact/hooks";
import type { InputMode } from "@agentd/client";
import { api, noteError } from "../lib/api";
import type { SessionStore } from "../store/session";

const MODES: Array<[InputMode, string]> = [
  ["queue", "Queue: run after the current run"],
  ["interrupt", "Interrupt: stop the current run (its turn where the agent can, else cancel it), then run this"],
  ["reject", "Reject: refuse if a run is in progress"],
  ["steer", "Steer: put this into the running turn (queued, and said so, if the agent cannot take it)"],
];

export function ChatInput({ store, compact }: { store: SessionStore; compact?: boolean }) {
  const text = useSignal("");
  const mode = useSignal<InputMode>("queue");
  const err = useSignal<string | null>(null);
  const sending = useSignal(false);
  const ta = useRef<HTMLTextAreaElement>(null);
  const active = store.activeRun();
  const agent = store.session.value?.agent;
  const caps = store.session.value?.capabilities;

  async function send() {
    const t = text.value;
    if (!t.trim() || sending.value) return;
    sending.value = true;
    err.value = null;
    try {
      await api.sendMessage(store.id, t, mode.value);
      text.value = "";
      store.refreshState();
    } catch (e) {
      err.value = noteError(e);
    } finally {
      sending.value = false;
      ta.current?.focus();
    }
  }
  async function stop(how: "cancel" | "interrupt") {
    const run = store.activeRun();
    if (!run) return;
    try {
      if (how === "cancel") await api.cancelRun(store.id, run);
      else await api.interruptRun(store.id, run);
      store.refreshState();
    } catch (e) {
      err.value = noteError(e);
    }
  }
  if (agent === "none")
    return <div class="chat-input muted small">This session has no agent: use the runtime console.</div>;
  return (
    <div class={"chat-input " + (compact ? "compact" : "")} data-testid="chat-input">
      {err.value && <div class="banner error small">{err.value}</div>}
      <textarea
        ref={ta}
        rows={compact ? 2 : 3}
        placeholder={active ? "A run is in progress — your message follows the mode below" : "Message the agent…  (Enter to send, Shift+Enter for a new line)"}
        value={text.value}
        onInput={(e) => (text.value = (e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            send();
          }
        }}
        aria-label="Message"
        data-testid="message-input"
      />
      <div class="chat-row">
        <div class="seg" role="radiogroup" aria-label="When a run is in progress">
          {MODES.filter(([m]) => m !== "steer" || !caps || caps.steer).map(([m, title]) => (
            <button role="radio" aria-checked={mode.value === m} class={mode.value === m ? "on" : ""} title={title} onClick={() => (mode.value = m)} data-testid={`mode-${m}`}>
              {m}
            </button>
          ))}
        </div>
        <span class="grow" />
        {active && caps?.interrupt && (
          <button onClick={() => stop("interrupt")} data-testid="interrupt-run" title="Stop the running turn; the agent keeps its process and conversation">
            ‖ Interrupt
          </button>
        )}
        {active && (
          <button class="danger" onClick={() => stop("cancel")} data-testid="cancel-run" title="Cancel the running run: its processes are killed">
            ■ Cancel run
          </button>
        )}
        <button class="primary" onClick={send} disabled={sending.value || !text.value.trim()} data-testid="send">
          Send
        </button>
      </div>
    </div>
  );
}
