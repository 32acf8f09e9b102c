/* Runs of the session, newest first: the permission requests waiting for an answer (allow, deny),
 * the running one (cancel), the queue of waiting inputs (remove), and finished ones with their
 * totals. */
import { usageTokens } from "@agentd/client";
import { api, noteError, readOnly } from "../lib/api";
import { cost, duration, time, tokens } from "../lib/format";
import type { SessionStore } from "../store/session";
import { Empty, Pill } from "./common";

export function RunsPanel({ store }: { store: SessionStore }) {
  const runs = [...store.runs.value].reverse();
  const ro = readOnly();
  const queued = runs.filter((r) => r.status === "queued").reverse();
  const rest = runs.filter((r) => r.status !== "queued");
  const waiting = store.permissions.value;
  async function answer(request: string, decision: "allow" | "deny") {
    try {
      await api.answerPermission(store.id, request, { decision });
      store.refreshState();
    } catch (e) {
      noteError(e);
    }
  }
  async function cancel(run: string) {
    try {
      await api.cancelRun(store.id, run);
      store.refreshState();
    } catch (e) {
      noteError(e);
    }
  }
  if (!runs.length) return <Empty title="No runs yet" />;
  return (
    <div class="panel runs" data-testid="runs-panel">
      {waiting.length > 0 && (
        <section>
          <h3>Waiting for you ({waiting.length})</h3>
          <ul class="waiting-list" data-testid="waiting">
            {waiting.map((p) => (
              <li>
                <span class="tool-name">{p.tool}</span>
                <span class="ellipsis mono small" title={JSON.stringify(p.input)}>
                  {JSON.stringify(p.input)}
                </span>
                <span class="grow" />
                {!ro && (
                  <>
                    <button class="primary" onClick={() => answer(p.request, "allow")} data-testid="waiting-allow">
                      Allow
                    </button>
                    <button class="danger" onClick={() => answer(p.request, "deny")} data-testid="waiting-deny">
                      Deny
                    </button>
                  </>
                )}
              </li>
            ))}
          </ul>
        </section>
      )}
      {queued.length > 0 && (
        <section>
          <h3>Queue ({queued.length})</h3>
          <ol class="queue" data-testid="queue">
            {queued.map((r) => (
              <li>
                <span class="ellipsis">{r.input}</span>
                {!ro && (
                  <button class="icon" title="Remove from the queue" onClick={() => cancel(r.id)}>
                    ✕
                  </button>
                )}
              </li>
            ))}
          </ol>
        </section>
      )}
      <section>
        <h3>Runs</h3>
        <ul class="runlist">
          {rest.map((r) => {
            const u = usageTokens(r.usage);
            const d = r.duration_ms ?? (r.ended_at && r.started_at ? r.ended_at - r.started_at : undefined);
            return (
              <li class="run" data-status={r.status}>
                <div class="runrow">
                  <Pill kind={r.status}>{r.status}</Pill>
                  {r.code && <code class="errcode">{r.code}</code>}
                  <span class="grow" />
                  <span class="muted small">{time(r.started_at ?? r.created_at)}</span>
                </div>
                <div class="ellipsis runinput" title={r.input}>
                  {r.input}
                </div>
                <div class="muted small">
                  {duration(d)}
                  {u.input + u.output > 0 && ` · ${tokens(u.input)} in / ${tokens(u.output)} out`}
                  {typeof r.cost_usd === "number" && ` · ${cost(r.cost_usd)}`}
                  {r.status === "running" && !ro && (
                    <button class="link danger" onClick={() => cancel(r.id)}>
                      cancel
                    </button>
                  )}
                </div>
              </li>
            );
          })}
        </ul>
      </section>
    </div>
  );
}
