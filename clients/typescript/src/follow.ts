/*
 * Following a session's streams live, from an offset, with exact resume: built on the official
 * @durable-streams/client (catch-up, SSE, reconnects from the last offset it delivered, pause while
 * a browser tab is hidden) and @durable-streams/state (MaterializedState for the State Protocol
 * streams). What this file adds, and why, is in README.md: a status for the UI ("reconnecting"),
 * terminal errors (404/410/401) that stop instead of retrying, and each event's own offset.
 */
import { stream, FetchError, DurableStreamError } from "@durable-streams/client";
import type { StreamResponse } from "@durable-streams/client";
import { MaterializedState, isChangeEvent, isControlEvent } from "@durable-streams/state";
import type { StateEvent } from "@durable-streams/state";
import type { AgentdClient, PermissionRequest, Run, Session } from "./client.js";
import type { Entry, SessionEvent } from "./events.js";
import { arrayElementLengths, chunkBounds } from "./offsets.js";
import { SseParser, mergeJsonParts, type SseControl } from "./sse.js";

export type FollowStatus =
  | "connecting" /* first request in flight */
  | "catching-up" /* reading history, not at the tail yet */
  | "live" /* at the tail, waiting for more */
  | "reconnecting" /* the connection failed; retrying from the last offset */
  | "gone" /* 404 or 410: the stream or session is no more */
  | "unauthorized" /* 401/403: the token is missing or wrong */
  | "closed" /* stopped by the caller, or the stream was closed */
  | "error";

export interface FollowHandle {
  /** The offset after the last data delivered: resume from here. */
  readonly offset: string;
  readonly status: FollowStatus;
  stop(): void;
  /** Resolves when following ends (stop, gone, closed, error). */
  readonly done: Promise<void>;
}

interface FollowBase {
  /** "-1" (the start, default), "now", or an offset delivered earlier. */
  offset?: string;
  /** false: catch up and stop. Default true (SSE). */
  live?: boolean;
  onStatus?: (s: FollowStatus, err?: Error) => void;
  signal?: AbortSignal;
  /** Longest wait between reconnect attempts, ms (default 2000: a UI wants to be back quickly). */
  maxRetryDelayMs?: number;
}

export interface FollowTranscriptOptions extends FollowBase {
  /** Called once per delivered chunk, in order, with each event's bounds. */
  onEntries: (entries: Entry[], meta: { offset: string; upToDate: boolean }) => void;
}

function errStatus(e: unknown): number | undefined {
  if (e instanceof FetchError) return e.status;
  if (e instanceof DurableStreamError) return e.status;
  return undefined;
}

function terminalStatus(e: unknown): FollowStatus {
  return statusOf(errStatus(e));
}

function statusOf(s: number | undefined): FollowStatus {
  if (s === 404 || s === 410) return "gone";
  if (s === 401 || s === 403) return "unauthorized";
  return "error";
}

/**
 * The common loop: hands each text chunk from `offset` on to `deliver`, tracks the status, and stops
 * on terminal errors. A catch-up (live: false) reads through the library's stream(); a live follow
 * reads its SSE connection itself (sse.ts says why).
 */
function followRaw(
  client: AgentdClient,
  path: string,
  opts: FollowBase,
  deliver: (text: string, offset: string, upToDate: boolean) => void,
): FollowHandle {
  const ac = new AbortController();
  if (opts.signal) {
    if (opts.signal.aborted) ac.abort();
    else opts.signal.addEventListener("abort", () => ac.abort(), { once: true });
  }
  let status: FollowStatus = "connecting";
  let offset = opts.offset ?? "-1";
  const set = (s: FollowStatus, err?: Error) => {
    if (s === status && !err) return;
    if (status === "gone" || status === "unauthorized" || (status === "closed" && s !== "closed")) return;
    status = s;
    opts.onStatus?.(s, err);
  };
  const base = client.fetchImpl;
  let sseOpened = false;
  /* The library retries network errors and 5xx forever with backoff and offers no status of its
   * own: watching its fetch is how the UI learns that it is reconnecting and when it is back. */
  const watched: typeof fetch = async (input, init) => {
    /* a new SSE request while live means the last connection ended (server restart, network, the
     * server's periodic close): reconnecting until its first chunk says live again */
    const sse = String(input instanceof Request ? input.url : input).includes("live=sse");
    if (sse && sseOpened && status === "live") set("reconnecting");
    try {
      const r = await base(input, init);
      if (sse && r.ok) sseOpened = true;
      if (r.status >= 500 || r.status === 429) set("reconnecting");
      return r;
    } catch (e) {
      if (!ac.signal.aborted && !init?.signal?.aborted) set("reconnecting");
      throw e;
    }
  };
  let res: StreamResponse | undefined;
  const absolute = client.url(path).startsWith("http")
    ? client.url(path)
    : new URL(client.url(path), globalThis.location?.href).toString();
  const aborted = new Promise<void>((f) => ac.signal.addEventListener("abort", () => f(), { once: true }));
  const open = () =>
    stream({
      url: absolute,
      offset,
      live: false,
      json: true,
      headers: { Authorization: () => client.headers().Authorization ?? "" },
      fetch: watched,
      signal: ac.signal,
      warnOnHttp: false,
      backoffOptions: { initialDelay: 100, maxDelay: opts.maxRetryDelayMs ?? 2000, multiplier: 1.5, maxRetries: Infinity },
    });
  /* One stream() call of a catch-up, delivering its chunks. Resolves true when it is over (caught
   * up, stream closed, stopped); throws what the library threw (after the chunks it had read were
   * delivered). */
  const once = async (): Promise<boolean> => {
    res = await open();
    if (ac.signal.aborted) return true;
    const r = res;
    let finish!: (upToDate: boolean) => void;
    const ended = new Promise<boolean>((f) => (finish = f));
    r.subscribeText((chunk) => {
      if (ac.signal.aborted) return;
      deliver(chunk.text, chunk.offset, chunk.upToDate);
      offset = chunk.offset;
      set(chunk.upToDate ? "closed" : "catching-up");
      if (chunk.streamClosed) finish(true);
      else finish(chunk.upToDate);
    });
    /* r.closed can settle before the subscriber was handed the last chunk (seen with a 10 MB
     * chunk): wait for the up-to-date chunk */
    const settle = (): Promise<boolean> => Promise.race([ended, new Promise<boolean>((f) => setTimeout(() => f(true), 30000))]);
    const closed = r.closed.then(settle, async (e: unknown) => {
      await settle();
      throw e;
    });
    return Promise.race([ended, closed, aborted.then(() => true)]);
  };

  const hidden = () => typeof document === "object" && document.hidden === true;
  const wait = (ms: number) =>
    new Promise<void>((f) => {
      const t = setTimeout(f, ms);
      ac.signal.addEventListener("abort", () => (clearTimeout(t), f()), { once: true });
    });
  const whenVisible = () =>
    new Promise<void>((f) => {
      const on = () => {
        if (hidden() && !ac.signal.aborted) return;
        document.removeEventListener("visibilitychange", on);
        ac.signal.removeEventListener("abort", on);
        f();
      };
      document.addEventListener("visibilitychange", on);
      ac.signal.addEventListener("abort", on, { once: true });
    });

  /* One SSE request from `offset`, read until it ends. Resolves "closed" when the stream was
   * closed, "more" when the connection ended after delivering something (reconnect at once),
   * "retry" when it failed first (back off); throws a FetchError on a status not worth retrying. */
  const sseOnce = async (cursor: { value: string }): Promise<"closed" | "more" | "retry"> => {
    const req = new AbortController();
    const stopReq = () => req.abort();
    ac.signal.addEventListener("abort", stopReq, { once: true });
    /* a hidden tab holds no connection (HTTP/1.1 allows six per origin, for all tabs together) */
    const onVisibility = () => hidden() && req.abort();
    if (typeof document === "object") document.addEventListener("visibilitychange", onVisibility);
    let delivered = false;
    try {
      const u = new URL(absolute);
      u.searchParams.set("offset", offset);
      u.searchParams.set("live", "sse");
      if (cursor.value) u.searchParams.set("cursor", cursor.value);
      const auth = client.headers().Authorization;
      const r = await watched(u.toString(), { headers: { accept: "text/event-stream", ...(auth ? { authorization: auth } : {}) }, signal: req.signal });
      if (!r.ok) {
        r.body?.cancel().catch(() => {});
        if (r.status >= 500 || r.status === 429 || r.status === 408) return "retry";
        throw new FetchError(r.status, undefined, undefined, {}, u.toString(), `HTTP ${r.status}`);
      }
      if (!r.body) return "retry";
      const reader = r.body.getReader();
      const parser = new SseParser();
      const dec = new TextDecoder();
      let parts: string[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        /* every whole event of what arrived is delivered now, in this task */
        for (const ev of parser.feed(dec.decode(value, { stream: true }))) {
          if (ev.type === "data") {
            parts.push(ev.data);
            continue;
          }
          const c = JSON.parse(ev.data) as SseControl;
          const next = c.streamNextOffset ?? offset;
          if (c.streamCursor) cursor.value = c.streamCursor;
          const text = mergeJsonParts(parts);
          parts = [];
          if (ac.signal.aborted) return "closed";
          deliver(text, next, !!c.upToDate);
          offset = next;
          delivered = true;
          if (c.streamClosed) return "closed";
          set(c.upToDate ? "live" : "catching-up");
        }
      }
      return delivered ? "more" : "retry";
    } catch (e) {
      if (e instanceof FetchError) throw e;
      /* the network failed, the server went away, or the tab was hidden (not a failure) */
      if (!ac.signal.aborted && !req.signal.aborted) set("reconnecting");
      return delivered || req.signal.aborted ? "more" : "retry";
    } finally {
      ac.signal.removeEventListener("abort", stopReq);
      if (typeof document === "object") document.removeEventListener("visibilitychange", onVisibility);
    }
  };

  const live = async () => {
    const cursor = { value: "" };
    let delay = 100;
    for (;;) {
      if (hidden()) await whenVisible();
      if (ac.signal.aborted) return;
      const how = await sseOnce(cursor);
      if (ac.signal.aborted || how === "closed") return;
      if (how === "more") {
        delay = 100;
        continue;
      }
      set("reconnecting");
      await wait(delay);
      delay = Math.min(opts.maxRetryDelayMs ?? 2000, delay * 1.5);
    }
  };

  const done = (async () => {
    for (;;) {
      try {
        if (opts.live !== false) {
          await live();
          break;
        }
        /* live: false reads ONE response in @durable-streams/client 0.2.6 (it stops after the
         * first response even when that one is not up to date): a catch-up goes on from the
         * delivered offset until a chunk is up to date. */
        const how = await once();
        if (ac.signal.aborted || how === true) break;
      } catch (e) {
        if (ac.signal.aborted) break;
        /* 404 and 410 are final: a stopping agentd answers 503 (retried), never 404 for what
         * exists, and a starting one answers nothing before its streams are loaded. */
        set(terminalStatus(e), e instanceof Error ? e : new Error(String(e)));
        return;
      }
    }
    set("closed");
  })();
  return {
    get offset() {
      return offset;
    },
    get status() {
      return status;
    },
    stop() {
      ac.abort();
      res?.cancel();
      set("closed");
    },
    done,
  };
}

/**
 * Follows a session's transcript from `offset`: every event exactly once, in order, each with its
 * own offset (start) and end. Resume after a reload with the last `end` (or handle.offset).
 */
export function followTranscript(client: AgentdClient, sessionId: string, opts: FollowTranscriptOptions): FollowHandle {
  let warned = false;
  return followRaw(client, `/v1/stream/sessions/${encodeURIComponent(sessionId)}/transcript`, opts, (text, offset, upToDate) => {
    if (!text) {
      opts.onEntries([], { offset, upToDate });
      return;
    }
    const events = JSON.parse(text) as SessionEvent[];
    const lengths = arrayElementLengths(text);
    let bounds: Array<[string, string]>;
    if (lengths && lengths.length === events.length) {
      bounds = chunkBounds(lengths, offset);
    } else {
      if (!warned) console.warn("agentd client: could not place events of a chunk; using the chunk's offset");
      warned = true;
      bounds = events.map(() => [offset, offset]);
    }
    const entries: Entry[] = events.map((event, i) => {
      const b = bounds[i] as [string, string];
      return { offset: b[0], end: b[1], event };
    });
    opts.onEntries(entries, { offset, upToDate });
  });
}

export interface FollowStateOptions extends FollowBase {
  /** Apply onto this state (e.g. to catch up again later from handle.offset); default a new one. */
  state?: MaterializedState;
  /** Called after each delivered chunk was applied, with the state and that chunk's events. */
  onChange: (state: MaterializedState, events: StateEvent[], meta: { offset: string; upToDate: boolean }) => void;
}

/** Follows a State Protocol stream into a MaterializedState (a `reset` control clears it). */
export function followState(client: AgentdClient, path: string, opts: FollowStateOptions): FollowHandle & { state: MaterializedState } {
  const state = opts.state ?? new MaterializedState();
  const h = followRaw(client, path, opts, (text, offset, upToDate) => {
    const events = text ? (JSON.parse(text) as StateEvent[]) : [];
    for (const ev of events) {
      if (isChangeEvent(ev)) state.apply(ev);
      else if (isControlEvent(ev) && ev.headers.control === "reset") state.clear();
    }
    opts.onChange(state, events, { offset, upToDate });
  });
  return Object.assign(h, { state });
}

/** The `sessions` feed (every session, live) as a MaterializedState of type "session". */
export function followSessions(
  client: AgentdClient,
  opts: FollowBase & { onChange: (sessions: Map<string, Session>, meta: { offset: string; upToDate: boolean }) => void },
) {
  return followState(client, "/v1/stream/sessions", {
    ...opts,
    onChange: (state, _events, meta) => opts.onChange(state.getType("session") as Map<string, Session>, meta),
  });
}

export interface ActiveQuery {
  run: string;
  started_at: number;
}

/** A session's `state` stream: its run records, which run is active since when, and the
 * permission requests waiting for an answer. */
export function followSessionState(
  client: AgentdClient,
  sessionId: string,
  opts: FollowBase & {
    state?: MaterializedState;
    onChange: (
      s: { runs: Map<string, Run>; active: ActiveQuery | null; permissions: Map<string, PermissionRequest> },
      meta: { offset: string; upToDate: boolean },
    ) => void;
  },
) {
  return followState(client, `/v1/stream/sessions/${encodeURIComponent(sessionId)}/state`, {
    ...opts,
    onChange: (state, _events, meta) =>
      opts.onChange(
        {
          runs: state.getType("run") as Map<string, Run>,
          active: (state.get<ActiveQuery | null>("active_query", "current") ?? null) as ActiveQuery | null,
          permissions: state.getType("permission") as Map<string, PermissionRequest>,
        },
        meta,
      ),
  });
}
