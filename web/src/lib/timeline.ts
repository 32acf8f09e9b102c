/*
 * Folds transcript entries into timeline items, incrementally (live appends) or from scratch (after
 * an older page was prepended). Pure: no DOM. An item is replaced by a new object whenever it
 * changes, so views can skip unchanged items by identity.
 *   - deltas stream into one message item per run/kind/index; the run's final `message` replaces
 *     that item in place (same key: the DOM node stays, nothing flickers, nothing is doubled);
 *   - pre_tool/post_tool pair by id (else by name) into one tool card;
 *   - permission_request/permission_response pair by request id into one permission card;
 *   - run_start carries the user's input; run_completed closes what the run left streaming.
 */
import type {
  Entry,
  SessionEventPermissionResponse,
  SessionEvent,
  SessionEventChild,
  SessionEventError,
  SessionEventFile,
  SessionEventLog,
  SessionEventRunCompleted,
  SessionEventRuntime,
  SessionEventSession,
  SessionEventStatus,
} from "@agentd/client";
import { messageText } from "@agentd/client";

interface ItemBase {
  key: string;
  /** The entry a "fork from here" keeps last (its end is the fork's `at`). */
  entry: Entry;
  run?: string | undefined;
  ts?: number | undefined;
}

export type Item =
  | (ItemBase & { kind: "run_start"; input: string; mode: string })
  | (ItemBase & { kind: "message"; role: string; text: string; streaming: boolean; thinking: boolean })
  | (ItemBase & {
      kind: "tool";
      name: string;
      id?: string | undefined;
      input: unknown;
      output?: string | undefined;
      isError: boolean;
      done: boolean;
      durationMs?: number | undefined;
    })
  | (ItemBase & { kind: "run_end"; ev: SessionEventRunCompleted; neverStarted: boolean })
  | (ItemBase & { kind: "log"; ev: SessionEventLog })
  | (ItemBase & { kind: "error"; ev: SessionEventError })
  | (ItemBase & { kind: "status"; ev: SessionEventStatus })
  | (ItemBase & { kind: "file"; ev: SessionEventFile })
  | (ItemBase & { kind: "child"; ev: SessionEventChild })
  | (ItemBase & { kind: "runtime"; ev: SessionEventRuntime })
  | (ItemBase & { kind: "session"; ev: SessionEventSession })
  | (ItemBase & {
      kind: "permission";
      request: string;
      tool: string;
      input: unknown;
      /** set once answered (by a person, the policy, a timeout, or expired) */
      answer?: SessionEventPermissionResponse | undefined;
    })
  | (ItemBase & { kind: "steer"; text: string })
  | (ItemBase & { kind: "interrupt"; by: string })
  | (ItemBase & { kind: "other"; ev: SessionEvent });

export type ItemKind = Item["kind"];

/** Filter categories shown in the toolbar, and which item kinds each covers. */
export const CATEGORIES = {
  messages: ["message", "run_start", "steer"],
  tools: ["tool"],
  permissions: ["permission"],
  runs: ["run_start", "run_end", "interrupt"],
  logs: ["log"],
  errors: ["error"],
  status: ["status"],
  files: ["file"],
  children: ["child"],
  runtime: ["runtime"],
  session: ["session", "other"],
} as const satisfies Record<string, readonly ItemKind[]>;
export type Category = keyof typeof CATEGORIES;

export class Fold {
  items: Item[] = [];
  /** Bumped on every change: views re-read `items`. */
  version = 0;
  /** Counts of log events per level, and of events per type (for the filter badges). */
  levelCounts: Record<string, number> = { debug: 0, info: 0, warn: 0, error: 0 };
  /** The environment's latest status seen, and when. */
  envStatus: { status: string; ts?: number | undefined } | null = null;
  deleted = false;
  /** run_completed of each run seen: totals for runs whose record lacks them (older servers). */
  runEnds = new Map<string, SessionEventRunCompleted>();
  private pos = new Map<string, number>();
  private started = new Set<string>();
  private streams = new Map<string, string>(); /* run:kind:index -> item key */
  private tools = new Map<string, string>(); /* tool id (or name:) -> item key */
  private perms = new Map<string, string>(); /* permission request id -> item key */

  private put(it: Item) {
    const i = this.pos.get(it.key);
    if (i === undefined) {
      this.pos.set(it.key, this.items.length);
      this.items.push(it);
    } else {
      this.items[i] = it;
    }
  }

  private get(key: string): Item | undefined {
    const i = this.pos.get(key);
    return i === undefined ? undefined : this.items[i];
  }

  private closeStreams(run: string | undefined, kind?: string) {
    for (const [k, key] of this.streams) {
      if (!k.startsWith(`${run ?? ""}:`) || (kind && !k.startsWith(`${run ?? ""}:${kind}:`))) continue;
      const it = this.get(key);
      if (it && it.kind === "message") this.put({ ...it, streaming: false });
      this.streams.delete(k);
    }
  }

  add(entry: Entry) {
    const ev = entry.event;
    const base = { key: entry.offset, entry, run: ev.run, ts: ev.ts };
    this.version++;
    switch (ev.type) {
      case "run_start":
        if (ev.run) this.started.add(ev.run);
        this.put({ ...base, kind: "run_start", input: ev.input ?? "", mode: ev.mode ?? "queue" });
        return;
      case "delta": {
        if (ev.kind === "tool_input") return; /* the tool card shows the whole input */
        const kind = ev.kind === "thinking" ? "thinking" : "text";
        const sk = `${ev.run ?? ""}:${kind}:${ev.index ?? 0}`;
        const key = this.streams.get(sk);
        const it = key ? this.get(key) : undefined;
        if (it && it.kind === "message") {
          this.put({ ...it, text: it.text + (ev.text ?? ""), entry });
        } else {
          this.streams.set(sk, entry.offset);
          this.put({ ...base, kind: "message", role: "assistant", text: ev.text ?? "", streaming: true, thinking: kind === "thinking" });
        }
        return;
      }
      case "message": {
        const text = messageText(ev);
        const role = ev.role ?? "assistant";
        const sk = [...this.streams.keys()].find((k) => k.startsWith(`${ev.run ?? ""}:text:`));
        const key = sk ? this.streams.get(sk) : undefined;
        const it = key ? this.get(key) : undefined;
        if (sk && it && it.kind === "message" && role === "assistant") {
          /* the final message replaces what streamed, in the same slot */
          this.streams.delete(sk);
          this.closeStreams(ev.run, "thinking");
          this.put({ ...it, text, streaming: false, entry });
        } else {
          this.put({ ...base, kind: "message", role, text, streaming: false, thinking: false });
        }
        return;
      }
      case "pre_tool": {
        const item: Item = { ...base, kind: "tool", name: ev.name, id: ev.id, input: ev.input ?? {}, isError: false, done: false };
        this.tools.set(ev.id ?? `name:${ev.name}`, entry.offset);
        this.put(item);
        return;
      }
      case "post_tool": {
        const tk = ev.id && this.tools.has(ev.id) ? ev.id : `name:${ev.name ?? ""}`;
        const key = this.tools.get(tk);
        const it = key ? this.get(key) : undefined;
        if (it && it.kind === "tool") {
          this.tools.delete(tk);
          this.put({
            ...it,
            output: ev.output ?? "",
            isError: !!ev.is_error,
            done: true,
            entry,
            durationMs: it.ts !== undefined && ev.ts !== undefined ? ev.ts - it.ts : undefined,
          });
        } else {
          this.put({ ...base, kind: "tool", name: ev.name ?? ev.id ?? "tool", id: ev.id, input: undefined, output: ev.output ?? "", isError: !!ev.is_error, done: true });
        }
        return;
      }
      case "run_completed":
        if (ev.run) this.runEnds.set(ev.run, ev);
        this.closeStreams(ev.run);
        for (const [tk, key] of this.tools) {
          const it = this.get(key);
          if (it && it.kind === "tool" && it.run === ev.run) {
            this.put({ ...it, done: true });
            this.tools.delete(tk);
          }
        }
        /* a queued input removed before it ran ends as cancelled, with no run_start and no time */
        this.put({ ...base, kind: "run_end", ev, neverStarted: !this.started.has(ev.run ?? "") && !ev.duration_ms });
        return;
      case "log":
        this.levelCounts[ev.level] = (this.levelCounts[ev.level] ?? 0) + 1;
        this.put({ ...base, kind: "log", ev });
        return;
      case "error":
        this.put({ ...base, kind: "error", ev });
        return;
      case "status":
        if (ev.scope === "environment") this.envStatus = { status: ev.status, ts: ev.ts };
        this.put({ ...base, kind: "status", ev });
        return;
      case "file":
        this.put({ ...base, kind: "file", ev });
        return;
      case "child":
        this.put({ ...base, kind: "child", ev });
        return;
      case "runtime":
        this.put({ ...base, kind: "runtime", ev });
        return;
      case "session":
        if (ev.action === "deleted") this.deleted = true;
        this.put({ ...base, kind: "session", ev });
        return;
      case "permission_request":
        this.perms.set(ev.request, entry.offset);
        this.put({ ...base, kind: "permission", request: ev.request, tool: ev.tool, input: ev.input ?? {} });
        return;
      case "permission_response": {
        const key = this.perms.get(ev.request);
        const it = key ? this.get(key) : undefined;
        if (it && it.kind === "permission") {
          this.perms.delete(ev.request);
          this.put({ ...it, answer: ev, entry });
        } else {
          this.put({ ...base, kind: "permission", request: ev.request, tool: "tool", input: undefined, answer: ev });
        }
        return;
      }
      case "steer":
        this.put({ ...base, kind: "steer", text: ev.text ?? "" });
        return;
      case "interrupt":
        this.put({ ...base, kind: "interrupt", by: ev.by ?? "user" });
        return;
      default:
        this.put({ ...base, kind: "other", ev });
    }
  }
}

/** Text of an item for search (bounded: a 5 MB output is searched in its first 200 KB). */
export function itemText(it: Item): string {
  const cap = (s: string) => (s.length > 200_000 ? s.slice(0, 200_000) : s);
  switch (it.kind) {
    case "run_start":
      return it.input;
    case "message":
      return cap(it.text);
    case "tool":
      return cap(`${it.name} ${safeJson(it.input)} ${it.output ?? ""}`);
    case "log":
      return cap(`${it.ev.level} ${it.ev.text}`);
    case "error":
      return `${it.ev.code} ${it.ev.message}`;
    case "runtime":
      return cap(`${it.ev.lang} ${it.ev.code ?? ""} ${it.ev.stdout ?? ""} ${it.ev.stderr ?? ""}`);
    case "file":
      return it.ev.changes.map((c) => c.path).join(" ");
    case "permission":
      return cap(`${it.tool} ${safeJson(it.input)} ${it.answer?.decision ?? "waiting"} ${it.answer?.message ?? ""}`);
    case "steer":
      return it.text;
    case "interrupt":
      return `interrupt ${it.by}`;
    default:
      return cap(safeJson("ev" in it ? it.ev : ""));
  }
}

export function safeJson(v: unknown): string {
  if (v === undefined) return "";
  if (typeof v === "string") return v;
  try {
    return JSON.stringify(v, null, 2) ?? "";
  } catch {
    return String(v);
  }
}
