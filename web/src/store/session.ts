/*
 * One open session: its latest history page, older pages on demand, the live transcript from the
 * page's tail (one live connection per tab: the state stream is caught up, not followed), its runs,
 * and its description. Events are folded into the timeline in a microtask after they arrive: what one
 * task delivered is rendered together, with no frame of delay.
 */
import { batch, signal } from "@preact/signals";
import {
  AgentdError,
  compareOffsets,
  followSessionState,
  followTranscript,
  sumRuns,
  type ActiveQuery,
  type Entry,
  type FollowHandle,
  type FollowStatus,
  type PermissionRequest,
  type Run,
  type RunSummary,
  type Session,
} from "@agentd/client";
import { MaterializedState } from "@durable-streams/state";
import { api, noteError, noteUnauthorized } from "../lib/api";
import { Fold } from "../lib/timeline";

export const PAGE = 300;

export class SessionStore {
  readonly id: string;
  readonly session = signal<Session | null>(null);
  readonly status = signal<FollowStatus>("connecting");
  /** "deleted" | "not found" | "unauthorized" | an error text; the view shows it instead of retrying */
  readonly problem = signal<string | null>(null);
  readonly version = signal(0);
  readonly runs = signal<Run[]>([]);
  readonly active = signal<ActiveQuery | null>(null);
  /** Permission requests waiting for an answer (the state stream), oldest first. */
  readonly permissions = signal<PermissionRequest[]>([]);
  readonly totals = signal<RunSummary>({ runs: 0, input_tokens: 0, output_tokens: 0, cost_usd: 0 });
  readonly hasOlder = signal(false);
  readonly loadingOlder = signal(false);
  /** Every entry loaded, oldest first (history pages + live). */
  entries: Entry[] = [];
  fold = new Fold();
  private nextBefore: string | null = null;
  private lastEnd = "";
  private pending: Entry[] = [];
  private scheduled = false;
  private follow: FollowHandle | null = null;
  private stateOffset = "-1";
  private state = new MaterializedState();
  private stateBusy: Promise<void> | null = null;
  private stateAgain = false;
  private timer: ReturnType<typeof setInterval> | null = null;
  private closed = false;
  private opened = false;

  constructor(id: string) {
    this.id = id;
  }

  async open() {
    if (this.opened) return;
    this.opened = true;
    /* the description and the latest page are independent: ask for both at once */
    const [desc, page] = await Promise.allSettled([api.getSession(this.id), api.eventsBefore(this.id, { limit: PAGE })]);
    if (desc.status === "fulfilled") {
      this.session.value = desc.value;
    } else {
      const e = desc.reason;
      if (e instanceof AgentdError && e.status === 404) {
        /* a deleted session's transcript may still be readable: show it, marked deleted */
        this.problem.value = "not found";
      } else {
        this.problem.value = noteError(e);
        if (e instanceof AgentdError && e.status === 401) return;
      }
    }
    let from = "-1";
    if (page.status === "fulfilled") {
      this.nextBefore = page.value.nextBefore;
      this.hasOlder.value = page.value.nextBefore !== null;
      this.push(page.value.entries);
      from = page.value.tail || this.lastEnd || "-1";
    } else {
      const e = page.reason;
      /* a server without history pages: follow the whole transcript instead */
      if (!(e instanceof AgentdError && e.status === 404 && /resource/.test(e.message))) {
        if (e instanceof AgentdError && (e.status === 404 || e.status === 410)) {
          this.problem.value = this.problem.value ?? "not found";
          this.status.value = "gone";
          return;
        }
        noteError(e);
      }
    }
    if (this.closed) return;
    this.follow = followTranscript(api, this.id, {
      offset: from,
      onEntries: (es) => this.push(es),
      onStatus: (st, err) => {
        this.status.value = st;
        if (st === "gone") this.problem.value = this.problem.value ?? "deleted";
        if (st === "unauthorized") {
          noteUnauthorized();
          this.problem.value = "unauthorized: this page needs a token or a valid share link";
        }
      },
    });
    this.refreshState();
    this.timer = setInterval(() => {
      if (!document.hidden) this.refreshState();
    }, 4000);
  }

  close() {
    this.closed = true;
    this.follow?.stop();
    if (this.timer) clearInterval(this.timer);
  }

  /** Catches the state stream up from where it was (runs, queue, active run). */
  refreshState(): Promise<void> {
    if (this.stateBusy) {
      this.stateAgain = true;
      return this.stateBusy;
    }
    this.stateBusy = (async () => {
      do {
        this.stateAgain = false;
        const h = followSessionState(api, this.id, {
          live: false,
          offset: this.stateOffset,
          state: this.state,
          onChange: (s) => {
            const runs = [...s.runs.values()].sort((a, b) => a.created_at - b.created_at);
            const perms = [...s.permissions.values()].sort((a, b) => (a.created_at ?? 0) - (b.created_at ?? 0));
            batch(() => {
              this.runs.value = runs;
              this.active.value = s.active;
              this.permissions.value = perms;
              this.totals.value = this.sumTotals(runs);
            });
          },
        });
        await h.done;
        this.stateOffset = h.offset;
      } while (this.stateAgain && !this.closed);
      this.stateBusy = null;
    })();
    return this.stateBusy;
  }

  /** Run totals: each finished run's record, or its run_completed when the record lacks them. */
  private sumTotals(runs: Run[]): RunSummary {
    const done = runs
      .filter((r) => r.status !== "queued" && r.status !== "running")
      .map((r) => {
        if (r.usage || r.cost_usd !== undefined) return r;
        const end = this.fold.runEnds.get(r.id);
        return end ? { ...r, usage: end.usage, cost_usd: end.cost_usd } : r;
      });
    return sumRuns(done);
  }

  async refreshSession() {
    try {
      this.session.value = await api.getSession(this.id);
    } catch (e) {
      if (e instanceof AgentdError && e.status === 404) this.problem.value = "deleted";
    }
  }

  private push(es: Entry[]) {
    for (const e of es) {
      /* exactly once, whatever a reconnect re-sends */
      if (this.lastEnd && compareOffsets(e.offset, this.lastEnd) < 0) continue;
      this.pending.push(e);
      this.lastEnd = e.end;
    }
    if (!this.pending.length || this.scheduled) return;
    this.scheduled = true;
    /* A microtask: what arrived in one task is folded and rendered together, at once. Waiting for
     * the next animation frame cost ~9 ms a row (measured); a render no longer lays the page out
     * (VirtualList scrolls once per frame), so rendering more often than frames is cheap. */
    if (document.hidden) setTimeout(() => this.flush(), 100);
    else queueMicrotask(() => this.flush());
  }

  private flush() {
    this.scheduled = false;
    const batchEs = this.pending;
    this.pending = [];
    let runEvent = false;
    for (const e of batchEs) {
      this.entries.push(e);
      this.fold.add(e);
      const t = e.event.type;
      if (t === "run_start" || t === "run_completed" || t === "permission_request" || t === "permission_response")
        runEvent = true;
      if (t === "session" && (e.event as { action?: string }).action === "deleted") this.problem.value = "deleted";
    }
    batch(() => {
      this.version.value++;
      if (runEvent) this.totals.value = this.sumTotals(this.runs.value);
    });
    if (runEvent) {
      this.refreshState();
      this.refreshSession();
    }
  }

  /** Loads the page before the oldest loaded event; the timeline is folded again from the start. */
  async loadOlder() {
    if (!this.nextBefore || this.loadingOlder.value) return;
    this.loadingOlder.value = true;
    try {
      const page = await api.eventsBefore(this.id, { before: this.nextBefore, limit: PAGE });
      this.nextBefore = page.nextBefore;
      this.entries = [...page.entries, ...this.entries];
      const f = new Fold();
      for (const e of this.entries) f.add(e);
      this.fold = f;
      batch(() => {
        this.hasOlder.value = page.nextBefore !== null;
        this.version.value++;
      });
    } catch (e) {
      noteError(e);
    } finally {
      this.loadingOlder.value = false;
    }
  }

  /** The run the server is running now, if any. */
  activeRun(): string | null {
    return this.active.value?.run ?? this.session.value?.active_run ?? null;
  }
}
