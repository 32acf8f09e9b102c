/* The "New session" form: agent, workspace, model settings, tool permissions (where the agent can ask),
 * sandbox, limits, env, tags, first message. */
import { useSignal } from "@preact/signals";
import { useEffect, useRef } from "preact/hooks";
import { DEFAULT_AGENTS, type AgentInfo, type CreateSessionBody } from "@agentd/client";
import { api, noteError } from "../lib/api";

const LIMITS: Array<[keyof NonNullable<CreateSessionBody["limits"]>, string, number]> = [
  ["memory_bytes", "Memory (MiB)", 1 << 20],
  ["processes", "Processes", 1],
  ["cpu_seconds", "CPU seconds", 1],
  ["file_size_bytes", "File size (MiB)", 1 << 20],
  ["open_files", "Open files", 1],
];

/** Splits a command line on spaces, keeping "quoted words" together. */
export function splitCommand(s: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (let m; (m = re.exec(s)); ) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? m[3] ?? ""));
  return out;
}

export function NewSession(p: { onClose: () => void; onCreated: (id: string) => void }) {
  const agents = useSignal<AgentInfo[]>(DEFAULT_AGENTS);
  const agent = useSignal("demo");
  const command = useSignal("");
  const workspace = useSignal("");
  const model = useSignal("");
  const baseUrl = useSignal("");
  const apiKey = useSignal("");
  const program = useSignal("");
  const sandbox = useSignal(false);
  const perm = useSignal<"allow" | "ask" | "deny">("allow");
  const limits = useSignal<Record<string, string>>({});
  const env = useSignal("");
  const tags = useSignal("");
  const text = useSignal("");
  const busy = useSignal(false);
  const err = useSignal<string | null>(null);
  const first = useRef<HTMLSelectElement>(null);

  useEffect(() => {
    api.agents().then((a) => (agents.value = a), () => {});
    first.current?.focus();
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && p.onClose();
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
  }, []);

  async function submit(e: Event) {
    e.preventDefault();
    err.value = null;
    const body: CreateSessionBody = { agent: agent.value };
    if (agent.value === "jsonl") body.command = splitCommand(command.value);
    if (workspace.value.trim()) body.workspace = workspace.value.trim();
    if (model.value.trim()) body.model = model.value.trim();
    if (baseUrl.value.trim()) body.base_url = baseUrl.value.trim();
    if (apiKey.value) body.api_key = apiKey.value;
    if (program.value.trim()) body.program = program.value.trim();
    if (sandbox.value) body.sandbox = "bwrap";
    if (perm.value !== "allow") body.permissions = { mode: perm.value };
    const lim: Record<string, number> = {};
    for (const [k, , mul] of LIMITS) {
      const v = limits.value[k];
      if (v && Number(v) > 0) lim[k] = Math.round(Number(v) * mul);
    }
    if (Object.keys(lim).length) body.limits = lim;
    const envObj: Record<string, string> = {};
    for (const line of env.value.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) envObj[line.slice(0, i).trim()] = line.slice(i + 1);
    }
    if (Object.keys(envObj).length) body.env = envObj;
    const t = tags.value.split(",").map((x) => x.trim()).filter(Boolean);
    if (t.length) body.tags = t;
    busy.value = true;
    try {
      const s = await api.createSession(body);
      if (text.value.trim() && agent.value !== "none") await api.sendMessage(s.id, text.value, "queue");
      p.onCreated(s.id);
    } catch (x) {
      err.value = noteError(x);
    } finally {
      busy.value = false;
    }
  }

  const info = agents.value.find((a) => a.name === agent.value);
  const needsModel = ["claude-code", "codex", "opencode"].includes(agent.value);
  /* agents that ask before using a tool (or may: a jsonl program says so itself) */
  const canAsk = agent.value !== "none" && (info?.capabilities ? info.capabilities.approvals : true);
  return (
    <div class="modal-back" onClick={(e) => e.target === e.currentTarget && p.onClose()}>
      <form class="modal" onSubmit={submit} aria-label="New session" data-testid="new-session-form">
        <h2>New session</h2>
        <label>
          Agent
          <select ref={first} value={agent.value} onChange={(e) => (agent.value = (e.target as HTMLSelectElement).value)} name="agent">
            {agents.value.map((a) => (
              <option value={a.name} disabled={a.available === false}>
                {a.name}
                {a.available === false ? " (not installed)" : ""}
              </option>
            ))}
          </select>
          {info?.description && <span class="hint">{info.description}</span>}
        </label>
        {agent.value === "jsonl" && (
          <label>
            Command
            <input name="command" required placeholder="python3 /path/to/agent.py --flag" value={command.value} onInput={(e) => (command.value = (e.target as HTMLInputElement).value)} />
            <span class="hint">A program speaking doc/AGENT-PROTOCOL.md, started once per run.</span>
          </label>
        )}
        <label>
          Workspace
          <input name="workspace" placeholder="a new directory under the data dir" value={workspace.value} onInput={(e) => (workspace.value = (e.target as HTMLInputElement).value)} />
        </label>
        {needsModel && (
          <fieldset>
            <legend>Model</legend>
            <div class="grid2">
              <label>
                Model
                <input value={model.value} onInput={(e) => (model.value = (e.target as HTMLInputElement).value)} />
              </label>
              <label>
                Program
                <input placeholder="the CLI on the server's PATH" value={program.value} onInput={(e) => (program.value = (e.target as HTMLInputElement).value)} />
              </label>
              <label>
                Base URL
                <input value={baseUrl.value} onInput={(e) => (baseUrl.value = (e.target as HTMLInputElement).value)} />
              </label>
              <label>
                API key
                <input type="password" autocomplete="off" value={apiKey.value} onInput={(e) => (apiKey.value = (e.target as HTMLInputElement).value)} />
              </label>
            </div>
          </fieldset>
        )}
        {canAsk && (
          <label>
            Tool permissions
            <select value={perm.value} onChange={(e) => (perm.value = (e.target as HTMLSelectElement).value as "allow" | "ask" | "deny")} name="permissions" data-testid="new-permissions">
              <option value="allow">allow: the agent uses its tools without asking</option>
              <option value="ask">ask: each tool call waits for your Allow / Deny</option>
              <option value="deny">deny: every tool call is refused</option>
            </select>
            <span class="hint">Rules and a timeout: PATCH /v1/sessions/&lt;id&gt; (README, "A person in the loop").</span>
          </label>
        )}
        <details>
          <summary>Sandbox, limits, environment, tags</summary>
          <label class="check">
            <input type="checkbox" checked={sandbox.value} onChange={(e) => (sandbox.value = (e.target as HTMLInputElement).checked)} />
            Run in a bubblewrap sandbox (workspace writable, the rest read-only)
          </label>
          <div class="grid3">
            {LIMITS.map(([k, label]) => (
              <label>
                {label}
                <input
                  type="number"
                  min="0"
                  value={limits.value[k] ?? ""}
                  onInput={(e) => (limits.value = { ...limits.value, [k]: (e.target as HTMLInputElement).value })}
                />
              </label>
            ))}
          </div>
          <label>
            Environment (NAME=value per line)
            <textarea rows={3} value={env.value} onInput={(e) => (env.value = (e.target as HTMLTextAreaElement).value)} />
          </label>
          <label>
            Tags (comma separated)
            <input value={tags.value} onInput={(e) => (tags.value = (e.target as HTMLInputElement).value)} />
          </label>
        </details>
        {agent.value !== "none" && (
          <label>
            First message (optional)
            <textarea name="text" rows={3} placeholder="What should the agent do?" value={text.value} onInput={(e) => (text.value = (e.target as HTMLTextAreaElement).value)} />
          </label>
        )}
        {err.value && <div class="banner error">{err.value}</div>}
        <div class="actions">
          <button type="button" onClick={p.onClose}>
            Cancel
          </button>
          <button type="submit" class="primary" disabled={busy.value} data-testid="create-session">
            {busy.value ? "Creating…" : "Create session"}
          </button>
        </div>
      </form>
    </div>
  );
}
