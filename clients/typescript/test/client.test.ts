/* The client against a real agentd: REST calls, following with exact offsets and resume, state
 * streams, runtimes, shares, and a token-protected server. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AgentdClient,
  AgentdError,
  followSessions,
  followSessionState,
  followTranscript,
  messageText,
  sumRuns,
  type Entry,
  type FollowStatus,
  type Run,
  type Session,
} from "../src/index.js";
import { JSONL_AGENT, startAgentd, until, type Server } from "./agentd.js";

let srv: Server;
let c: AgentdClient;

beforeAll(async () => {
  srv = await startAgentd();
  c = new AgentdClient({ baseUrl: srv.url });
});
afterAll(async () => {
  await srv?.stop();
});

const jsonl = () => ({ agent: "jsonl", command: ["python3", JSONL_AGENT] });

/** Reads the whole transcript (catch-up only) through followTranscript. */
async function readAll(client: AgentdClient, id: string, offset = "-1"): Promise<Entry[]> {
  const out: Entry[] = [];
  const h = followTranscript(client, id, { offset, live: false, onEntries: (e) => out.push(...e) });
  await h.done;
  return out;
}

/* idle: agentd reads a session as running until its run's run_completed is durable, so a read right
 * after finds one run_completed per completed run */
async function waitIdle(id: string) {
  await until(async () => (await c.getSession(id)).status === "idle", 15000, "the session to be idle");
  const runs = (await c.getSession(id)).totals?.runs;
  expect((await readAll(c, id)).filter((e) => e.event.type === "run_completed").length).toBe(runs);
}

describe("REST", () => {
  it("creates, lists, gets and deletes sessions; errors carry the server's code", async () => {
    const s = await c.createSession({ agent: "none", tags: ["t1"], env: { A: "1" } });
    expect(s.id).toMatch(/^[0-9a-f]+$/);
    expect(s.env_keys).toEqual(["A"]);
    const list = await c.listSessions({ tag: "t1" });
    expect(list.sessions.map((x) => x.id)).toContain(s.id);
    expect((await c.getSession(s.id)).agent).toBe("none");
    const bad = await c.createSession({ agent: "nope" }).catch((e) => e);
    expect(bad).toBeInstanceOf(AgentdError);
    expect(bad.status).toBe(400);
    expect(bad.code).toBe("bad_request");
    await c.deleteSession(s.id);
    const gone = await c.getSession(s.id).catch((e) => e);
    expect(gone.status).toBe(404);
    expect(gone.code).toBe("not_found");
  });

  it("lists the nodes, and names the node that answered (Agentd-Node)", async () => {
    const n = await c.nodes();
    expect(n.store).toBe("sqlite");
    expect(n.answeredBy).toBe(srv.url);
    expect(n.nodes).toHaveLength(1);
    expect(n.nodes[0]).toMatchObject({ role: "owner", owner: true, self: true, state: "live", agents: 0, runtimes: 0 });
    expect(n.lease_ms).toBeUndefined();
  });

  it("runs runtimes: exec keeps state, state, history, reset, interrupt", async () => {
    const s = await c.createSession({ agent: "none" });
    const py = c.runtime(s.id, "python");
    await py.exec("x = 41");
    const r = await py.exec("print(x + 1)");
    expect(r.stdout).toBe("42\n");
    const st = await py.state();
    expect(JSON.stringify(st)).toContain('"x"');
    expect((await py.history()).length).toBe(2);
    await py.reset();
    const after = await py.exec("print('x' in globals())");
    expect(after.stdout).toBe("False\n");
    expect((await py.interrupt()).ok).toBe(true);
  });
});

describe("a person in the loop", () => {
  const v2 = (extra: Record<string, unknown> = {}) => ({ agent: "jsonl", command: ["python3", JSONL_AGENT, "--v2"], ...extra });

  it("lists, follows and answers permission requests; interrupt and steer; capabilities", async () => {
    const agents = await c.agents();
    expect(agents.find((a) => a.name === "claude-code")?.capabilities).toEqual({ approvals: true, steer: true, interrupt: true, warm: true });
    const s = await c.createSession(v2({ permissions: { mode: "ask" } }));
    expect(s.permissions?.mode).toBe("ask");
    const sent = await c.sendMessage(s.id, "tool echo asked");
    const pending = await until(async () => (await c.permissions(s.id)).permissions[0], 15000, "a permission request");
    expect(pending.tool).toBe("Bash");
    expect(pending.input).toEqual({ command: "echo asked" });
    let waiting = 0;
    const h = followSessionState(c, s.id, { live: false, onChange: (st) => (waiting = st.permissions.size) });
    await h.done;
    expect(waiting).toBe(1);
    const ans = await c.answerPermission(s.id, pending.request, { decision: "allow" });
    expect(ans.decision).toBe("allow");
    const again = await c.answerPermission(s.id, pending.request, { decision: "deny" }).catch((e) => e);
    expect(again.code).toBe("conflict");
    await waitIdle(s.id);
    const evs = (await readAll(c, s.id)).map((e) => e.event);
    const resp = evs.find((e) => e.type === "permission_response");
    expect(resp && resp.type === "permission_response" && resp.by).toBe("user");
    expect(evs.find((e) => e.type === "run_completed" && e.run === sent.run)).toBeTruthy();

    const p = await c.patchSession(s.id, { permissions: { mode: "allow" } });
    expect(p.permissions?.mode).toBe("allow");
    expect((await c.getSession(s.id)).capabilities?.interrupt).toBe(true);
    const run = await c.sendMessage(s.id, "sleep 30");
    await until(async () => (await readAll(c, s.id)).some((e) => e.event.type === "pre_tool" && e.event.run === run.run), 15000, "the tool to start");
    const steered = await c.sendMessage(s.id, "also this", "steer");
    expect(steered.steered).toBe(true);
    const stop = await c.interruptRun(s.id, run.run);
    expect(stop.run).toBe(run.run);
    await waitIdle(s.id);
    expect((await c.runs(s.id)).find((r) => r.id === run.run)?.status).toBe("interrupted");
    expect((await c.inbox(s.id)).length).toBe(0);
  });

  it("answers 409 unsupported_by_agent where the agent cannot interrupt; queued inputs can be withdrawn", async () => {
    const s = await c.createSession(jsonl());
    const run = await c.sendMessage(s.id, "sleep 30");
    const queued = await c.sendMessage(s.id, "echo later");
    expect((await c.inbox(s.id)).map((i) => i.input)).toEqual([queued.run]);
    const e = await c.interruptRun(s.id, run.run).catch((x) => x);
    expect(e).toBeInstanceOf(AgentdError);
    expect(e.code).toBe("unsupported_by_agent");
    expect(e.status).toBe(409);
    expect((await c.withdrawInput(s.id, queued.run)).status).toBe("withdrawn");
    await c.cancelRun(s.id, run.run);
    await waitIdle(s.id);
  });
});

describe("following", () => {
  it("delivers a run's events once each, with offsets that fork exactly after an event", async () => {
    const s = await c.createSession(jsonl());
    const seen: Entry[] = [];
    const statuses: FollowStatus[] = [];
    const h = followTranscript(c, s.id, {
      onEntries: (e) => seen.push(...e),
      onStatus: (st) => statuses.push(st),
    });
    await c.sendMessage(s.id, "delta one two three; tool echo hi; echo last words");
    await until(() => seen.some((e) => e.event.type === "run_completed"), 15000, "run_completed");
    h.stop();
    expect(statuses).toContain("live");
    const types = seen.map((e) => e.event.type);
    expect(types.filter((t) => t === "delta")).toHaveLength(3);
    expect(types).toContain("pre_tool");
    expect(types).toContain("post_tool");
    /* contiguous: each event starts where the previous ended */
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.offset).toBe(seen[i - 1]!.end);
    /* same as a fresh catch-up read */
    const all = await readAll(c, s.id);
    expect(all.map((e) => [e.offset, e.end, e.event.type])).toEqual(seen.map((e) => [e.offset, e.end, e.event.type]));

    /* fork right after the first whole message: the fork's transcript is the parent's up to there,
     * then agentd's own records: the end of the run the fork cut (cancelled, code forked; it does
     * not go on in the fork) and "forked" */
    const msg = seen.find((e) => e.event.type === "message")!;
    const f = await c.fork(s.id, { at: msg.end });
    const forked = await readAll(c, f.id);
    const kept = forked.filter((e) => e.offset < msg.end);
    expect(kept.map((e) => [e.offset, e.event.type])).toEqual(
      all.filter((e) => e.offset < msg.end).map((e) => [e.offset, e.event.type]),
    );
    const last = kept[kept.length - 1]!;
    expect(last.event.type).toBe("message");
    expect(messageText(last.event as never)).toBe("one two three");
    expect(forked.slice(kept.length).map((e) => e.event)).toMatchObject([
      { type: "run_completed", status: "cancelled", code: "forked" },
      { type: "session", action: "forked", at: msg.end },
    ]);
  });

  it("resumes from a delivered offset with no duplicate and no gap", async () => {
    const s = await c.createSession(jsonl());
    await c.sendMessage(s.id, "count 30");
    await waitIdle(s.id);
    const all = await readAll(c, s.id);
    const cut = all[Math.floor(all.length / 2)]!;
    const rest = await readAll(c, s.id, cut.end);
    const head = all.filter((e) => e.end <= cut.end);
    expect([...head, ...rest].map((e) => e.offset)).toEqual(all.map((e) => e.offset));
  });

  it("catches up across several responses (a transcript over the 1 MiB read chunk)", async () => {
    const s = await c.createSession(jsonl());
    await c.sendMessage(s.id, ["echo big", "tool head -c 3000000 /dev/zero | tr '\\000' A", "echo after"].join("\n"));
    await waitIdle(s.id);
    const all = await readAll(c, s.id);
    expect(all[0]!.offset).toBe("0000000000000000_0000000000000000");
    for (let i = 1; i < all.length; i++) expect(all[i]!.offset).toBe(all[i - 1]!.end);
    expect(all[all.length - 1]!.event.type).toBe("run_completed");
    const post = all.find((e) => e.event.type === "post_tool")!.event as { output: string };
    expect(post.output.length).toBe(3_000_000);
  });

  it("survives a server restart: reconnecting, then the new events exactly once", async () => {
    const s = await c.createSession(jsonl());
    const seen: Entry[] = [];
    const statuses: FollowStatus[] = [];
    const errs: string[] = [];
    const h = followTranscript(c, s.id, { onEntries: (e) => seen.push(...e), onStatus: (st, err) => { statuses.push(st); if (err) errs.push(err.message); } });
    await c.sendMessage(s.id, "echo before");
    await until(() => seen.some((e) => e.event.type === "run_completed"), 15000, "first run");
    await srv.restart();
    await until(() => statuses.includes("reconnecting"), 10000, "reconnecting");
    await c.sendMessage(s.id, "echo after");
    await until(() => seen.filter((e) => e.event.type === "run_completed").length === 2, 20000, "second run").catch((e) => {
      throw new Error(`${e.message}; statuses ${statuses.join(",")} ${errs.join(";")}; seen ${seen.map((x) => x.event.type).join(",")}`);
    });
    h.stop();
    const all = await readAll(c, s.id);
    expect(seen.map((e) => e.offset)).toEqual(all.map((e) => e.offset));
    expect(statuses[statuses.length - 1]).toBe("closed");
    expect(statuses.slice(statuses.indexOf("reconnecting"))).toContain("live");
  });

  it("stops with 'gone' when the session's streams are deleted, instead of retrying", async () => {
    const s = await c.createSession({ agent: "none" });
    await c.deleteSession(s.id, { streams: "delete" });
    const statuses: FollowStatus[] = [];
    const h = followTranscript(c, s.id, { onEntries: () => {}, onStatus: (st) => statuses.push(st) });
    await h.done;
    expect(statuses).toContain("gone");
    expect(statuses).not.toContain("reconnecting");
  });

  it("materializes the sessions feed and a session's runs (totals are run totals)", async () => {
    let sessions = new Map<string, Session>();
    const feed = followSessions(c, { onChange: (m) => (sessions = new Map(m)) });
    const s = await c.createSession(jsonl());
    await until(() => sessions.get(s.id), 5000, "the new session in the feed");
    let runs = new Map<string, Run>();
    const st = followSessionState(c, s.id, { onChange: (x) => (runs = new Map(x.runs)) });
    await c.sendMessage(s.id, "echo a");
    await waitIdle(s.id);
    await c.sendMessage(s.id, "echo b c");
    await until(() => [...runs.values()].filter((r) => r.status === "success").length === 2, 15000, "two runs");
    await until(() => sessions.get(s.id)?.status === "idle", 5000, "idle in the feed");
    await c.deleteSession(s.id);
    await until(() => !sessions.has(s.id), 5000, "deleted from the feed");
    feed.stop();
    st.stop();
    expect(sumRuns(runs.values()).runs).toBe(2);
  });
});

describe("shares and tokens", () => {
  it("a share token reads the session and cannot write", async () => {
    const s = await c.createSession(jsonl());
    await c.sendMessage(s.id, "echo shared");
    await waitIdle(s.id);
    const sh = await c.createShare(s.id);
    expect((await c.shares(s.id)).map((x) => x.token)).toContain(sh.token);
    const tokSrv = await startAgentd({ token: "secret-token" });
    try {
      const admin = new AgentdClient({ baseUrl: tokSrv.url, token: "secret-token" });
      const anon = new AgentdClient({ baseUrl: tokSrv.url });
      const e = await anon.listSessions().catch((x) => x);
      expect(e).toBeInstanceOf(AgentdError);
      expect(e.status).toBe(401);
      const t = await admin.createSession(jsonl());
      await admin.sendMessage(t.id, "echo hi");
      const share = await admin.createShare(t.id);
      const viewer = new AgentdClient({ baseUrl: tokSrv.url, token: share.token });
      expect((await viewer.getSession(t.id)).id).toBe(t.id);
      const entries = await readAll(viewer, t.id);
      expect(entries[0]!.event.type).toBe("session");
      const w = await viewer.sendMessage(t.id, "no").catch((x) => x);
      expect(w).toBeInstanceOf(AgentdError);
      expect([401, 403]).toContain(w.status);
      const statuses: FollowStatus[] = [];
      await followTranscript(anon, t.id, { onEntries: () => {}, onStatus: (x) => statuses.push(x) }).done;
      expect(statuses).toContain("unauthorized");
      await admin.revokeShare(t.id, share.token);
      const after = await viewer.getSession(t.id).catch((x) => x);
      expect(after.status).toBe(401);
    } finally {
      await tokSrv.stop();
    }
  });
});

describe("history pages", () => {
  it("pages back from the tail, newest page first, contiguous with the live tail", async () => {
    const s = await c.createSession(jsonl());
    await c.sendMessage(s.id, "count 50");
    await waitIdle(s.id);
    const pages: Entry[][] = [];
    let before: string | undefined;
    let tail = "";
    for (;;) {
      const p = await c.eventsBefore(s.id, { limit: 17, ...(before ? { before } : {}) });
      if (!tail) tail = p.tail;
      pages.unshift(p.entries);
      expect(p.entries.length).toBeLessThanOrEqual(17);
      if (!p.nextBefore) break;
      before = p.nextBefore;
    }
    /* read after the pages: the environment may have added an event since (compare up to tail) */
    const all = (await readAll(c, s.id)).filter((e) => e.end <= tail);
    expect(tail).toBe(all[all.length - 1]!.end);
    const paged = pages.flat();
    expect(paged.map((e) => [e.offset, e.end, e.event.type])).toEqual(all.map((e) => [e.offset, e.end, e.event.type]));
  });
});
