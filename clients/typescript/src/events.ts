/*
 * The transcript's event vocabulary (doc/ARCHITECTURE.md, doc/AGENT-PROTOCOL.md) as a discriminated
 * union on `type`. Every event the server stores carries `type`, `ts` (ms) and `session`; events of a
 * run carry `run`; events an agent wrote keep its own line under `native`. Unknown types and extra
 * fields are kept (UnknownEvent), so a newer server never breaks an older client.
 */

export type LogLevel = "debug" | "info" | "warn" | "error";
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

export type EnvStatus = "inactive" | "starting" | "ready" | "error" | "terminated";
export type RunStatus = "queued" | "running" | "success" | "error" | "cancelled" | "interrupted";
export type InputMode = "queue" | "interrupt" | "reject" | "steer";
export type RuntimeLang = "bash" | "python" | "node";

interface Base {
  ts?: number;
  session?: string;
  run?: string;
  native?: unknown;
}

export interface ContentBlock {
  type: string;
  text?: string;
  [k: string]: unknown;
}

export interface SessionEventMessage extends Base {
  type: "message";
  role?: "assistant" | "user" | string;
  content?: ContentBlock[] | string;
  text?: string;
}
export interface SessionEventDelta extends Base {
  type: "delta";
  text: string;
  kind?: "text" | "thinking" | "tool_input" | string;
  index?: number;
}
export interface SessionEventPreTool extends Base {
  type: "pre_tool";
  name: string;
  id?: string;
  input?: unknown;
}
export interface SessionEventPostTool extends Base {
  type: "post_tool";
  id?: string;
  name?: string;
  output?: string;
  is_error?: boolean;
}
export interface Usage {
  input_tokens?: number;
  output_tokens?: number;
  cache_read_input_tokens?: number;
  cache_creation_input_tokens?: number;
  [k: string]: unknown;
}
export interface SessionEventRunStart extends Base {
  type: "run_start";
  input?: string;
  mode?: InputMode;
}
export interface SessionEventRunCompleted extends Base {
  type: "run_completed";
  status: RunStatus;
  duration_ms?: number;
  result?: string;
  usage?: Usage;
  cost_usd?: number;
  num_turns?: number;
  code?: string;
  exit_status?: number;
}
export interface SessionEventLog extends Base {
  type: "log";
  level: LogLevel;
  text: string;
  scope?: string;
}
export interface SessionEventError extends Base {
  type: "error";
  message: string;
  code: string;
  retryable?: boolean;
}
export interface SessionEventStatus extends Base {
  type: "status";
  /** agent: a warm agent's process `started` or `stopped` (reason: idle, forked, ...) */
  scope: "environment" | "runtime" | "agent" | string;
  status: string;
  lang?: RuntimeLang;
  reason?: string;
  pid?: number;
  elapsed_us?: number;
  exit_status?: number;
}
/** The agent asks before using a tool (README, "A person in the loop"); answered by a
 * permission_response with the same `request`. */
export interface SessionEventPermissionRequest extends Base {
  type: "permission_request";
  request: string;
  tool: string;
  input?: unknown;
  suggestions?: unknown[];
  tool_use_id?: string;
}
export type PermissionDecider = "policy" | "user" | "timeout" | "expired";
export interface SessionEventPermissionResponse extends Base {
  type: "permission_response";
  request: string;
  decision: "allow" | "deny";
  by: PermissionDecider | string;
  message?: string;
  rule?: string;
  updated_input?: unknown;
  remember?: "session";
}
/** Text a user put into a running turn (mode steer). */
export interface SessionEventSteer extends Base {
  type: "steer";
  text: string;
}
/** A run's turn was asked to stop (its process and conversation stay): the run ends interrupted. */
export interface SessionEventInterrupt extends Base {
  type: "interrupt";
  by?: "user" | "message" | string;
}
export interface FileChange {
  path: string;
  change: string;
}
export interface SessionEventFile extends Base {
  type: "file";
  changes: FileChange[];
  count: number;
}
export interface SessionEventChild extends Base {
  type: "child";
  action: "spawned" | "completed" | string;
  child: string;
  status?: string;
  result?: string;
}
export interface SessionEventRuntime extends Base {
  type: "runtime";
  action: "exec" | "eval" | "reset" | "interrupt" | string;
  lang: RuntimeLang;
  code?: string;
  status?: number;
  outcome?: string;
  timed_out?: boolean;
  duration_us?: number;
  stdout?: string;
  stderr?: string;
  truncated?: boolean;
  rc?: number;
}
export interface SessionEventSession extends Base {
  type: "session";
  action: "created" | "forked" | "deleted" | string;
  from?: string;
  at?: string;
  parent?: string;
}
/** A type this client does not know (yet): kept whole. */
export interface UnknownEvent extends Base {
  type: string;
  [k: string]: unknown;
}

export type KnownEvent =
  | SessionEventMessage
  | SessionEventDelta
  | SessionEventPreTool
  | SessionEventPostTool
  | SessionEventRunStart
  | SessionEventRunCompleted
  | SessionEventLog
  | SessionEventError
  | SessionEventStatus
  | SessionEventFile
  | SessionEventChild
  | SessionEventRuntime
  | SessionEventSession
  | SessionEventPermissionRequest
  | SessionEventPermissionResponse
  | SessionEventSteer
  | SessionEventInterrupt;

export type SessionEvent = KnownEvent;
export type EventType = KnownEvent["type"];
export const EVENT_TYPES: readonly EventType[] = [
  "message",
  "delta",
  "pre_tool",
  "post_tool",
  "run_start",
  "run_completed",
  "log",
  "error",
  "status",
  "file",
  "child",
  "runtime",
  "session",
  "permission_request",
  "permission_response",
  "steer",
  "interrupt",
];

/** A transcript event with its place in the stream: `offset` where it starts, `end` where the next
 * one starts (fork with `at: end` to keep the event in the fork). */
export interface Entry {
  offset: string;
  end: string;
  event: SessionEvent;
}

/** Narrowing helper: `isEvent(e, "log")` is `e is SessionEventLog`. */
export function isEvent<T extends EventType>(e: { type: string }, type: T): e is Extract<KnownEvent, { type: T }> {
  return e.type === type;
}

/** The text of a message (its text blocks joined), whatever shape the agent used. */
export function messageText(m: SessionEventMessage): string {
  if (typeof m.text === "string" && m.content === undefined) return m.text;
  const c = m.content;
  if (typeof c === "string") return c;
  if (Array.isArray(c))
    return c
      .filter((b) => b && typeof b.text === "string")
      .map((b) => b.text as string)
      .join("");
  return typeof m.text === "string" ? m.text : "";
}

/** Tokens of a usage object: input (with cache reads/creations) and output. */
export function usageTokens(u: Usage | undefined): { input: number; output: number } {
  if (!u) return { input: 0, output: 0 };
  const n = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  return {
    input: n(u.input_tokens) + n(u.cache_read_input_tokens) + n(u.cache_creation_input_tokens),
    output: n(u.output_tokens),
  };
}
