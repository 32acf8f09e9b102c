/* Asked once when the server wants a token (401): kept in sessionStorage, sent as a bearer header. */
import { useSignal } from "@preact/signals";
import { setToken } from "../lib/api";

export function TokenPrompt() {
  const t = useSignal("");
  return (
    <div class="modal-back">
      <form
        class="modal narrow"
        data-testid="token-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (t.value.trim()) setToken(t.value.trim());
        }}
      >
        <h2>This server needs a token</h2>
        <p class="muted small">
          agentd was started with <code>--token</code>. Enter it once: it is kept for this tab only (sessionStorage) and sent as an
          <code> Authorization</code> header, never in a URL.
        </p>
        <input type="password" autoFocus autocomplete="off" placeholder="token" value={t.value} onInput={(e) => (t.value = (e.target as HTMLInputElement).value)} data-testid="token-input" aria-label="Token" />
        <div class="actions">
          <button class="primary" type="submit" data-testid="token-submit">
            Continue
          </button>
        </div>
      </form>
    </div>
  );
}
