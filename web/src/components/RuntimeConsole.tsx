/* The session's persistent runtimes (bash / python / node): exec, state, history, reset, interrupt.
 * Calls also show in the timeline (the server records them as `runtime` events). */
import { useSignal } from "@preact/signals";
import type { RuntimeLang } from "@agentd/client";
import { api, noteError } from "../lib/api";
import { duration, time } from "../lib/format";
import { CappedText, Pill } from "./common";

interface Out {
  n: number;
  lang: RuntimeLang;
  what: string;
  code?: string;
  stdout?: string;
  stderr?: string;
  status?: number;
  ms?: number;
  json?: string;
  error?: string;
}

let seq = 0;

export function RuntimeConsole({ id }: { id: string }) {
  const lang = useSignal<RuntimeLang>("bash");
  const code = useSignal("");
  const outs = useSignal<Out[]>([]);
  const busy = useSignal(false);
  const add = (o: Omit<Out, "n">) => (outs.value = [{ ...o, n: ++seq }, ...outs.value].slice(0, 50));

  async function act(what: "exec" | "state" | "history" | "reset" | "interrupt") {
    const rt = api.runtime(id, lang.value);
    const l = lang.value;
    if (what !== "interrupt") busy.value = true;
    try {
      if (what === "exec") {
        const c = code.value;
        if (!c.trim()) return;
        const r = await rt.exec(c);
        add({ lang: l, what, code: c, stdout: r.stdout, stderr: r.stderr, status: r.status, ms: r.duration_us / 1000 });
      } else if (what === "history") {
        const calls = await rt.history(20);
        add({ lang: l, what, json: calls.map((c) => `#${c.seq} ${time(c.started_at_ms)} exit ${c.status} ${duration(c.duration_us / 1000)}  ${c.code}`).join("\n") || "(no calls yet)" });
      } else {
        const r = what === "state" ? await rt.state() : what === "reset" ? await rt.reset() : await rt.interrupt();
        add({ lang: l, what, json: JSON.stringify(r, null, 2) });
      }
    } catch (e) {
      add({ lang: l, what, error: noteError(e) });
    } finally {
      if (what !== "interrupt") busy.value = false;
    }
  }

  return (
    <div class="panel console" data-testid="runtime-console">
      <div class="seg" role="radiogroup" aria-label="Language">
        {(["bash", "python", "node"] as RuntimeLang[]).map((l) => (
          <button role="radio" aria-checked={lang.value === l} class={lang.value === l ? "on" : ""} onClick={() => (lang.value = l)} data-testid={`rt-${l}`}>
            {l}
          </button>
        ))}
      </div>
      <textarea
        class="code-in"
        rows={5}
        spellcheck={false}
        placeholder={lang.value === "bash" ? "echo $PWD; ls" : lang.value === "python" ? "import sys; print(sys.version)" : "console.log(process.version)"}
        value={code.value}
        onInput={(e) => (code.value = (e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            act("exec");
          }
        }}
        aria-label="Code"
        data-testid="rt-code"
      />
      <div class="chat-row">
        <button class="primary" disabled={busy.value} onClick={() => act("exec")} data-testid="rt-run" title="Run (Ctrl+Enter)">
          ▶ Run
        </button>
        <button onClick={() => act("state")} data-testid="rt-state">State</button>
        <button onClick={() => act("history")} data-testid="rt-history">History</button>
        <button onClick={() => act("reset")} data-testid="rt-reset">Reset</button>
        <button onClick={() => act("interrupt")} data-testid="rt-interrupt">Interrupt</button>
      </div>
      <div class="outs" data-testid="rt-outputs">
        {outs.value.map((o) => (
          <div class="rtout" key={o.n} data-testid="rt-output">
            <div class="rthead">
              <span class="tag">{o.lang}</span> <span class="muted">{o.what}</span>
              {o.status !== undefined && <Pill kind={o.status === 0 ? "success" : "error"}>exit {o.status}</Pill>}
              <span class="grow" />
              {o.ms !== undefined && <span class="muted small">{duration(o.ms)}</span>}
            </div>
            {o.code && <CappedText text={o.code} cap={1000} class="code" />}
            {o.stdout ? <CappedText text={o.stdout} cap={4000} class="code out" /> : null}
            {o.stderr ? <CappedText text={o.stderr} cap={4000} class="code err" /> : null}
            {o.json && <CappedText text={o.json} cap={4000} class="code" />}
            {o.error && <div class="banner error small">{o.error}</div>}
          </div>
        ))}
      </div>
    </div>
  );
}
