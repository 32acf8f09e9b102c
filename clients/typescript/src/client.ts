/*
 * The session REST API of agentd (README.md, "Sessions and runs", "Runtimes"), one method per call.
 * Errors come back as AgentdError with the server's {"error":{"code","message"}}.
 */
import type { Entry, InputMode, RunStatus, RuntimeLang, SessionEvent, Usage, EnvStatus } from "./events.js";
import { compareOffsets } from "./offsets.js";

export interface ClientOptions {
  /** The server, e.g. "http://127.0.0.1:4437"; "" (default) means this page's origin. */
  baseUrl?: string;
  /** A bearer token: the server's --token, or a share token (read-only). A function is asked per
   * request (the UI keeps it in sessionStorage). */
  token?: string | (() => string | null | undefined);
  fetch?: typeof globalThis.fetch;
}

export class AgentdError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "AgentdError";
    this.status = status;
    this.code = code;
  }
}

export interface RunSummary {
  runs: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
}

/** What an agent can do with a person in the loop (GET /v1/agents, a session's view). */
export interface Capabilities {
  approvals: boolean;
  steer: boolean;
  interrupt: boolean;
  warm: boolean;
}

/** A session's permission policy in its normal form. */
export interface PermissionPolicy {
  mode: "allow" | "ask" | "deny";
  allow: string[];
  deny: string[];
  timeout_ms: number | null;
}

/** A permission request waiting for an answer (GET .../permissions, the state stream). */
export interface PermissionRequest {
  request: string;
  tool: string;
  input?: unknown;
  run?: string;
  suggestions?: unknown[];
  tool_use_id?: string;
  created_at?: number;
  expires_at?: number;
}

export interface PermissionAnswer {
  decision: "allow" | "deny";
  message?: string;
  updated_input?: Record<string, unknown>;
  remember?: "session";
}

export interface QueuedInput {
  input: string;
  text: string;
  mode: InputMode;
  created_at: number;
}

export interface Session {
  id: string;
  agent: string;
  workspace: string;
  tags: string[];
  env_keys: string[];
  created_at: number;
  status: "idle" | "running" | "deleted" | string;
  streams: { transcript: string; state: string; inbox: string };
  runtimes: Record<string, { status: string; pid: number; calls: number }>;
  native_session: string | null;
  parent: string | null;
  active_run: string | null;
  agent_options?: Record<string, unknown>;
  /* present on servers that publish them (the list shows them when there) */
  env_status?: EnvStatus;
  last_run?: { id: string; status: RunStatus; code?: string; ended_at?: number } | null;
  last_activity?: number;
  totals?: RunSummary;
  queued?: number;
  /* a person in the loop (servers that have it) */
  capabilities?: Capabilities;
  agent_process?: { pid: number; state: "busy" | "idle" | "stopping" } | null;
  permissions?: PermissionPolicy;
  pending_permissions?: number;
}

export interface Run {
  id: string;
  status: RunStatus;
  mode: InputMode;
  created_at: number;
  input: string;
  started_at?: number;
  ended_at?: number;
  result?: string;
  code?: string;
  usage?: Usage;
  cost_usd?: number;
  duration_ms?: number;
  num_turns?: number;
  /** Where its run_start starts in the transcript (once started), and its run_completed (once ended). */
  start_offset?: string;
  end_offset?: string;
}

export interface CreateSessionBody {
  agent: string;
  command?: string[];
  workspace?: string;
  tags?: string[];
  env?: Record<string, string>;
  model?: string;
  base_url?: string;
  api_key?: string;
  program?: string;
  sandbox?: "bwrap" | "none";
  limits?: Partial<Record<"memory_bytes" | "processes" | "cpu_seconds" | "file_size_bytes" | "open_files", number>>;
  /** the permission policy (README, "A person in the loop"); omitted: allow */
  permissions?: Partial<PermissionPolicy>;
  /** false: a fresh agent process per message */
  warm?: boolean;
  [k: string]: unknown;
}

export interface MessageAnswer extends Run {
  run: string;
  /** mode steer: true when the text went into the running turn, false when it was queued instead */
  steered?: boolean;
}

export interface Share {
  token: string;
  created_at?: number;
}

export interface RuntimeResult {
  stdout: string;
  stderr: string;
  status: number;
  duration_us: number;
  truncated: boolean;
  outcome: string;
  timed_out: boolean;
  stdout_base64?: string;
  stderr_base64?: string;
  seq?: number;
  value?: unknown;
}

export interface RuntimeCall {
  seq: number;
  code: string;
  status: number;
  outcome: string;
  timed_out: boolean;
  started_at_ms: number;
  duration_us: number;
  out_bytes: number;
  err_bytes: number;
  truncated: boolean;
}

export interface AgentInfo {
  name: string;
  available?: boolean;
  description?: string;
  needs?: string[];
  capabilities?: Capabilities;
  /** The program says what it can do when it starts (jsonl, demo): see the session's capabilities. */
  capabilities_announced?: boolean;
}

export interface EventsPage {
  /** Oldest first (the server answers newest first; this is the order to show them in). */
  entries: Entry[];
  /** Pass as `before` for the page of older events; null at the start of the transcript. */
  nextBefore: string | null;
  /** The transcript's tail when read: follow from here to miss nothing. */
  tail: string;
}

/** One node of GET /v1/nodes: every node that uses the server's database (one, "local", on SQLite). */
export interface NodeInfo {
  /** Its name among the nodes: its --node-url, else host name and data dir. */
  node: string;
  /** The URL clients reach it at (--node-url), or null when it gave none. */
  url: string | null;
  role: "owner" | "follower";
  /** Holds the write lease: every write is served by this node. */
  owner: boolean;
  /** The node that answered. */
  self: boolean;
  /** Since its last heartbeat. */
  seen_ms_ago: number;
  /** As the server judges it: "live" (heard of within a few heartbeats), "unreachable" (not heard of
   * for longer: killed, paused, cut off from the database), "stopped" (stopped cleanly). */
  state: "live" | "unreachable" | "stopped";
  /** Its live agents and open runtimes as its heartbeat recorded them (the answering node's: now);
   * null for a node of an older agentd, which does not record them. Followers run none. */
  agents: number | null;
  runtimes: number | null;
  /** The owner's: the lease's epoch (bumped by every takeover) and time left (negative: expired). */
  epoch?: number;
  lease_ms_left?: number;
}

export interface Nodes {
  store: string;
  /** The answering node's --lease-ms (PostgreSQL only). */
  lease_ms?: number;
  nodes: NodeInfo[];
  /** The answer's Agentd-Node header: the node this client talks to (null if the server sent none). */
  answeredBy: string | null;
}

/** Agents every server knows; GET /v1/agents, where the server has it, says more. */
export const DEFAULT_AGENTS: AgentInfo[] = [
  { name: "demo", description: "built-in demo agent: no API key needed" },
  { name: "jsonl", description: "any program speaking agentd's jsonl protocol", needs: ["command"] },
  { name: "claude-code", description: "Claude Code" },
  { name: "codex", description: "OpenAI Codex" },
  { name: "opencode", description: "OpenCode" },
  { name: "none", description: "no agent: runtimes only" },
];

export class AgentdClient {
  readonly baseUrl: string;
  readonly #token: ClientOptions["token"];
  readonly #fetch: typeof globalThis.fetch;

  constructor(opts: ClientOptions = {}) {
    this.baseUrl = (opts.baseUrl ?? "").replace(/\/+$/, "");
    this.#token = opts.token;
    this.#fetch = opts.fetch ?? ((...a: Parameters<typeof fetch>) => globalThis.fetch(...a));
  }

  /** The bearer token in force now, if any. */
  token(): string | undefined {
    const t = typeof this.#token === "function" ? this.#token() : this.#token;
    return t || undefined;
  }

  /** Headers for any request to this server (the bearer token, when there is one). */
  headers(): Record<string, string> {
    const t = this.token();
    return t ? { Authorization: `Bearer ${t}` } : {};
  }

  url(path: string): string {
    return this.baseUrl + path;
  }

  get fetchImpl(): typeof globalThis.fetch {
    return this.#fetch;
  }

  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    return (await this.#send<T>(method, path, body, signal)).json;
  }

  /** The answer's JSON, and the response for its headers; throws AgentdError on an error status. */
  async #send<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<{ json: T; res: Response }> {
    const headers: Record<string, string> = { ...this.headers() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = JSON.stringify(body);
    if (signal) init.signal = signal;
    const res = await this.#fetch(this.url(path), init);
    const text = await res.text();
    let json: unknown = undefined;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        /* not JSON: reported below when the status is an error */
      }
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new AgentdError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? (text || res.statusText));
    }
    return { json: json as T, res };
  }

  health(): Promise<unknown> {
    return this.request("GET", "/v1/health");
  }

  /** GET /v1/nodes, answered by the node this client reaches (never forwarded), and which one that is. */
  async nodes(signal?: AbortSignal): Promise<Nodes> {
    const { json, res } = await this.#send<Omit<Nodes, "answeredBy">>("GET", "/v1/nodes", undefined, signal);
    return { ...json, answeredBy: res.headers.get("Agentd-Node") };
  }

  async agents(): Promise<AgentInfo[]> {
    try {
      const r = await this.request<{ agents: AgentInfo[] }>("GET", "/v1/agents");
      return r.agents;
    } catch (e) {
      if (e instanceof AgentdError && (e.status === 404 || e.status === 405)) return DEFAULT_AGENTS;
      throw e;
    }
  }

  /* ---- sessions ---- */

  listSessions(q: { tag?: string; limit?: number; before?: number } = {}): Promise<{ sessions: Session[]; next_before?: number }> {
    const p = new URLSearchParams();
    if (q.tag) p.set("tag", q.tag);
    if (q.limit) p.set("limit", String(q.limit));
    if (q.before) p.set("before", String(q.before));
    const qs = p.toString();
    return this.request("GET", "/v1/sessions" + (qs ? "?" + qs : ""));
  }

  createSession(body: CreateSessionBody): Promise<Session> {
    return this.request("POST", "/v1/sessions", body);
  }

  getSession(id: string, signal?: AbortSignal): Promise<Session> {
    return this.request("GET", `/v1/sessions/${enc(id)}`, undefined, signal);
  }

  /** streams: "delete" also deletes its streams (readers then get 410/404). */
  deleteSession(id: string, opts: { streams?: "delete" } = {}): Promise<void> {
    return this.request("DELETE", `/v1/sessions/${enc(id)}` + (opts.streams ? "?streams=delete" : ""));
  }

  sendMessage(id: string, text: string, mode: InputMode = "queue"): Promise<MessageAnswer> {
    return this.request("POST", `/v1/sessions/${enc(id)}/messages`, { text, mode });
  }

  async runs(id: string): Promise<Run[]> {
    return (await this.request<{ runs: Run[] }>("GET", `/v1/sessions/${enc(id)}/runs`)).runs;
  }

  cancelRun(id: string, run: string): Promise<{ run: string; status: string }> {
    return this.request("POST", `/v1/sessions/${enc(id)}/runs/${enc(run)}/cancel`, {});
  }

  /** Stops the run's turn and keeps the agent and its conversation; 409 unsupported_by_agent where
   * the agent cannot. */
  interruptRun(id: string, run: string): Promise<{ run: string; status: string }> {
    return this.request("POST", `/v1/sessions/${enc(id)}/runs/${enc(run)}/interrupt`, {});
  }

  /** What can change after creation: the permission policy (merged), warm. */
  patchSession(id: string, body: { permissions?: Partial<PermissionPolicy>; warm?: boolean }): Promise<Session> {
    return this.request("PATCH", `/v1/sessions/${enc(id)}`, body);
  }

  /** The permission requests waiting for an answer, oldest first, and the policy. */
  permissions(id: string, signal?: AbortSignal): Promise<{ permissions: PermissionRequest[]; policy: PermissionPolicy }> {
    return this.request("GET", `/v1/sessions/${enc(id)}/permissions`, undefined, signal);
  }

  /** Answers a request: 404 unknown, 409 answered already or expired. */
  answerPermission(id: string, request: string, answer: PermissionAnswer): Promise<{ request: string; decision: string; by: string; rule?: string }> {
    return this.request("POST", `/v1/sessions/${enc(id)}/permissions/${enc(request)}`, answer);
  }

  /** The inputs waiting to run, oldest first. */
  async inbox(id: string): Promise<QueuedInput[]> {
    return (await this.request<{ inputs: QueuedInput[] }>("GET", `/v1/sessions/${enc(id)}/inbox`)).inputs;
  }

  /** Withdraws a queued input before it runs (409 once it started). */
  withdrawInput(id: string, input: string): Promise<{ run: string; status: string }> {
    return this.request("DELETE", `/v1/sessions/${enc(id)}/inbox/${enc(input)}`);
  }

  /** A fork of the session: its transcript up to `at` (default: the tail) and a copy of its workspace. */
  fork(id: string, opts: { at?: string; tags?: string[] } = {}): Promise<Session> {
    return this.request("POST", `/v1/sessions/${enc(id)}/fork`, opts);
  }

  createShare(id: string): Promise<{ token: string; session: string; urls: Record<string, string> }> {
    return this.request("POST", `/v1/sessions/${enc(id)}/share`, {});
  }

  async shares(id: string): Promise<Share[]> {
    return (await this.request<{ shares: Share[] }>("GET", `/v1/sessions/${enc(id)}/share`)).shares;
  }

  revokeShare(id: string, token: string): Promise<void> {
    return this.request("DELETE", `/v1/sessions/${enc(id)}/share/${enc(token)}`);
  }

  async children(id: string): Promise<Session[]> {
    return (await this.request<{ children: Session[] }>("GET", `/v1/sessions/${enc(id)}/children`)).children;
  }

  spawnChild(id: string, body: CreateSessionBody & { text?: string }): Promise<Session & { run?: string }> {
    return this.request("POST", `/v1/sessions/${enc(id)}/children`, body);
  }

  /* ---- runtimes ---- */

  runtime(id: string, lang: RuntimeLang) {
    const base = `/v1/sessions/${enc(id)}/runtimes/${enc(lang)}`;
    return {
      exec: (code: string, opts: { timeout_ms?: number } = {}) =>
        this.request<RuntimeResult>("POST", `${base}/exec`, { code, ...opts }),
      eval: (code: string, opts: { timeout_ms?: number } = {}) =>
        this.request<RuntimeResult>("POST", `${base}/eval`, { code, ...opts }),
      state: () => this.request<Record<string, unknown>>("POST", `${base}/state`, {}),
      history: async (limit = 50) =>
        (await this.request<{ calls: RuntimeCall[] }>("GET", `${base}/history?limit=${limit}`)).calls,
      reset: () => this.request<{ ok: boolean; was_running?: boolean }>("POST", `${base}/reset`, {}),
      interrupt: () => this.request<{ ok: boolean; was_running: boolean }>("POST", `${base}/interrupt`, {}),
    };
  }

  /* ---- history pages ---- */

  /**
   * A page of the transcript before `before` (default: the tail), newest events of it, at most
   * `limit`; GET /v1/sessions/<id>/events. Returned oldest first with each event's bounds.
   */
  async eventsBefore(id: string, opts: { before?: string; limit?: number; signal?: AbortSignal } = {}): Promise<EventsPage> {
    const p = new URLSearchParams();
    if (opts.before) p.set("before", opts.before);
    if (opts.limit) p.set("limit", String(opts.limit));
    const qs = p.toString();
    const r = await this.request<{
      events: Array<SessionEvent & { offset: string }>;
      next_before?: string | null;
      tail?: string;
    }>("GET", `/v1/sessions/${enc(id)}/events` + (qs ? "?" + qs : ""), undefined, opts.signal);
    const newestFirst = r.events;
    const tail = r.tail ?? opts.before ?? "";
    const entries: Entry[] = new Array(newestFirst.length);
    let end = opts.before ?? tail;
    for (let i = 0; i < newestFirst.length; i++) {
      const ev = { ...(newestFirst[i] as SessionEvent & { offset: string }) };
      const offset = ev.offset;
      delete (ev as { offset?: string }).offset;
      entries[newestFirst.length - 1 - i] = { offset, end, event: ev as SessionEvent };
      end = offset;
    }
    entries.sort((a, b) => compareOffsets(a.offset, b.offset));
    return { entries, nextBefore: r.next_before ?? null, tail };
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}
