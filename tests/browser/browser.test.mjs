/*
 * The dashboard in a real browser (Debian's chromium under playwright-core) against the real agentd
 * with the built-in demo agent and the jsonl test agent. Screenshots go to build/browser-shots/.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startAgentd, launchBrowser, newPage, shot, sleep, JSONL_AGENT } from "./lib.mjs";

const T = 20000;
let srv, browser;
const jsonl = { agent: "jsonl", command: ["python3", JSONL_AGENT] };

before(async () => {
  srv = await startAgentd();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await srv?.close();
});

async function create(body, s = srv) {
  const r = await s.api("POST", "/v1/sessions", body);
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}

async function transcript(id, s = srv) {
  const r = await s.api("GET", `/v1/stream/sessions/${id}/transcript?offset=-1`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

const runEnds = (page) => page.locator('[data-testid="run-end"]').count();

async function waitRunEnds(page, n) {
  await page.waitForFunction((k) => document.querySelectorAll('[data-testid="run-end"]').length >= k, n, { timeout: T });
}

/** Every event of the transcript is in the page once: same count, no duplicate, contiguous. */
async function assertExactlyOnce(page, id, s = srv) {
  const want = (await transcript(id, s)).length;
  await page.waitForFunction((k) => window.__agentd && window.__agentd.offsets().length >= k, want, { timeout: T });
  const { offsets, ends } = await page.evaluate(() => ({ offsets: window.__agentd.offsets(), ends: window.__agentd.ends() }));
  assert.equal(new Set(offsets).size, offsets.length, "an event was shown twice");
  assert.equal(offsets.length, want, "the page has not every event of the transcript");
  for (let i = 1; i < offsets.length; i++) assert.equal(offsets[i], ends[i - 1], `gap or overlap before event ${i}`);
}

test("create a demo session in the UI, send a message, watch the reply stream in", async () => {
  const page = await newPage(browser, { viewport: { width: 1400, height: 1000 } });
  await page.goto(srv.url + "/");
  await page.click('[data-testid="new-session"]');
  await page.fill('textarea[name="text"]', "hello from the browser");
  await page.click('[data-testid="create-session"]');
  await page.waitForURL(/\/s\/[0-9a-f]+$/, { timeout: T });
  const id = new URL(page.url()).pathname.split("/")[2];
  /* the reply is seen while it streams (deltas), then whole */
  await page.waitForSelector('[data-testid="message"][data-streaming="1"]', { timeout: T });
  await waitRunEnds(page, 1);
  await page.waitForSelector('[data-testid="run-end"][data-status="success"]');
  assert.equal(await page.locator('[data-streaming="1"]').count(), 0, "a message still shows as streaming");
  assert.equal(await page.getByText("hello from the browser", { exact: false }).count() >= 1, true);
  assert.ok((await page.locator('[data-testid="tool-card"]').count()) >= 3, "tool cards");
  assert.ok((await page.locator('[data-testid="log"]').count()) >= 3, "log lines");
  assert.equal(await page.locator('[data-testid="error-code"]').first().textContent(), "demo_rate_limited");
  /* the workspace change, when the server reported one (its watcher does not always catch the
   * demo's write: requests W12); the timeline is virtualized, so search to find the card */
  if ((await transcript(id)).some((e) => e.type === "file")) {
    await page.fill('[data-testid="search"]', "demo-notes.md");
    await page.waitForSelector('[data-testid="file-event"]', { timeout: T });
    await page.fill('[data-testid="search"]', "");
  }
  /* a second message through the chat input */
  await page.fill('[data-testid="message-input"]', "and a second one");
  await page.click('[data-testid="send"]');
  await waitRunEnds(page, 2);
  await page.getByText("message 2 of this conversation").first().waitFor({ timeout: T });
  await assertExactlyOnce(page, id);
  await shot(page, "2-session-tools-logs");
  /* the list shows it; screenshot with a few more sessions */
  await create({ agent: "none", tags: ["runtime-only"] });
  const failing = await create({ ...jsonl, tags: ["jsonl", "test"] });
  await srv.api("POST", `/v1/sessions/${failing}/messages`, { text: "echo trying; fail it did not work" });
  const busy = await create({ ...jsonl, tags: ["jsonl", "long"] });
  await srv.api("POST", `/v1/sessions/${busy}/messages`, { text: "sleep 30" });
  await page.goto(srv.url + "/");
  await page.waitForSelector(`[data-testid="session-row"][data-id="${id}"]`, { timeout: T });
  await page.waitForSelector('[data-testid="conn"][data-status="live"]');
  await page.locator(`[data-testid="session-row"][data-id="${failing}"]`).getByText("error").waitFor({ timeout: T });
  await page.locator(`[data-testid="session-row"][data-id="${busy}"]`).getByText("busy").waitFor({ timeout: T });
  /* the status filter */
  await page.click('[data-testid="status-running"]');
  assert.equal(await page.locator('[data-testid="session-row"]').count(), 1);
  await page.click('[data-testid="status-failed"]');
  assert.equal(await page.locator(`[data-testid="session-row"][data-id="${failing}"]`).count(), 1);
  await page.click('[data-testid="status-all"]');
  await shot(page, "1-session-list");
  await srv.api("DELETE", `/v1/sessions/${busy}`);
  await page.goto(`${srv.url}/s/${id}/chat`);
  await waitRunEnds(page, 2);
  await shot(page, "3-chat-view");
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("filter the timeline's logs by level", async () => {
  const id = await create({ agent: "demo", env: { AGENTD_DEMO_DELAY_MS: "1" } });
  await srv.api("POST", `/v1/sessions/${id}/messages`, { text: "logs please" });
  const page = await newPage(browser, { viewport: { width: 1400, height: 1600 } });
  await page.goto(`${srv.url}/s/${id}`);
  await waitRunEnds(page, 1);
  const count = (lvl) => page.locator(`[data-testid="log"][data-level="${lvl}"]`).count();
  assert.ok((await count("debug")) > 0 && (await count("warn")) > 0 && (await count("error")) > 0);
  await page.click('[data-testid="level-debug"]');
  await page.click('[data-testid="level-info"]');
  assert.equal(await count("debug"), 0);
  assert.equal(await count("info"), 0);
  assert.ok((await count("warn")) > 0 && (await count("error")) > 0, "warn and error stay");
  await page.click('[data-testid="level-debug"]');
  assert.ok((await count("debug")) > 0);
  /* type filter and search */
  await page.click('[data-testid="cat-logs"]');
  assert.equal(await page.locator('[data-testid="log"]').count(), 0);
  await page.click('[data-testid="cat-logs"]');
  /* dark mode, kept across a reload */
  await page.click('[data-testid="theme"]');
  await page.reload();
  await waitRunEnds(page, 1);
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
  await shot(page, "6-session-dark");
  await page.click('[data-testid="theme"]');
  await page.fill('[data-testid="search"]', "demo_rate_limited");
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="tool-card"]').length === 0);
  assert.equal(await page.locator('[data-testid="error-event"]').count(), 1);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("reload in the middle of a streaming run: every event shown exactly once", async () => {
  const id = await create({ agent: "demo" });
  const page = await newPage(browser, { viewport: { width: 1400, height: 2400 } });
  await page.goto(`${srv.url}/s/${id}`);
  await page.waitForSelector('[data-testid="conn"][data-status="live"]', { timeout: T });
  await page.fill('[data-testid="message-input"]', "slow please");
  await page.click('[data-testid="send"]');
  await page.waitForSelector('[data-testid="message"][data-streaming="1"]', { timeout: T });
  assert.equal(await runEnds(page), 0, "the run ended before the reload");
  await page.reload();
  /* usually still streaming after the reload; on a loaded machine the run may end first */
  await page.waitForSelector('[data-testid="message"][data-streaming="1"], [data-testid="run-end"]', { timeout: T });
  await waitRunEnds(page, 1);
  await assertExactlyOnce(page, id);
  assert.equal(await page.locator('[data-streaming="1"]').count(), 0);
  /* the final reply is there once: deltas were replaced, not added to */
  assert.equal(await page.getByText('You said: "slow please"').count(), 1);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("a streaming timeline follows the bottom until the reader scrolls up, and again once back", async () => {
  const id = await create(jsonl);
  const page = await newPage(browser, { viewport: { width: 1400, height: 900 } });
  await page.goto(`${srv.url}/s/${id}`);
  await page.waitForSelector('[data-testid="conn"][data-status="live"]', { timeout: T });
  const shown = (n) => page.getByText(`n=${n}`, { exact: true }).count();
  const gap = () => page.evaluate(() => {
    const el = document.querySelector(".timeline");
    return el.scrollHeight - el.scrollTop - el.clientHeight;
  });
  await srv.api("POST", `/v1/sessions/${id}/messages`, { text: "count 300 20" });
  /* stuck to the bottom: the newest rows are rendered as they come (a row is in the DOM only while
   * near the view, so poll the newest one shown rather than one row) */
  const newest = () => Math.max(0, ...[...document.querySelectorAll('[data-testid="message"]')].map((m) => Number(/n=(\d+)/.exec(m.textContent)?.[1] ?? 0)));
  for (const t0 = Date.now(); (await page.evaluate(newest)) < 60; await sleep(50))
    assert.ok(Date.now() - t0 < T, "the timeline does not show the newest rows");
  await page.mouse.move(500, 500);
  await page.mouse.wheel(0, -1500);
  await page.waitForFunction(() => {
    const el = document.querySelector(".timeline");
    return el.scrollHeight - el.scrollTop - el.clientHeight > 600;
  }, null, { timeout: T });
  /* the row in the middle of the view (its place may shift by pixels as rows above are measured) */
  const middle = () => page.evaluate(() => {
    const r = document.querySelector(".timeline").getBoundingClientRect();
    return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2)?.closest("[data-vkey]")?.getAttribute("data-vkey");
  });
  await sleep(300);
  const before = await middle();
  const seen = await page.evaluate(newest);
  await sleep(1500);
  /* the reader's place is kept while rows come in below it */
  assert.ok(before, "no row in the middle of the view");
  assert.equal(await middle(), before, "the view moved while the reader read");
  assert.ok((await gap()) > 600, "the view went back to the bottom by itself");
  assert.ok(seen < 280, "the run ended before the reader scrolled up");
  /* back at the bottom (scrolling down faster than rows come), it follows again, to the last row */
  for (let i = 0; i < 100 && (await gap()) > 40; i++) {
    await page.mouse.wheel(0, 4000);
    await sleep(100);
  }
  await page.getByText("n=300", { exact: true }).waitFor({ timeout: T });
  await page.waitForFunction(() => {
    const el = document.querySelector(".timeline");
    return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
  }, null, { timeout: T });
  assert.equal(await shown(300), 1);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("stop and restart agentd under an open page: reconnecting, then it resumes", async () => {
  const id = await create({ ...jsonl });
  await srv.api("POST", `/v1/sessions/${id}/messages`, { text: "echo before the restart" });
  const page = await newPage(browser, { viewport: { width: 1400, height: 1600 } });
  await page.goto(`${srv.url}/s/${id}`);
  await waitRunEnds(page, 1);
  await page.waitForSelector('[data-testid="conn"][data-status="live"]', { timeout: T });
  await srv.stop();
  await page.waitForSelector('[data-testid="conn"][data-status="reconnecting"]', { timeout: T });
  await page.waitForSelector('[data-testid="reconnecting"]');
  await srv.start();
  await page.waitForSelector('[data-testid="conn"][data-status="live"]', { timeout: T });
  await srv.api("POST", `/v1/sessions/${id}/messages`, { text: "echo after the restart" });
  await waitRunEnds(page, 2);
  await page.getByText("after the restart").first().waitFor({ timeout: T });
  await assertExactlyOnce(page, id);
  await page.context().close();
});

test("a session deleted under an open page is shown as deleted, not retried", async () => {
  const id = await create({ ...jsonl });
  await srv.api("POST", `/v1/sessions/${id}/messages`, { text: "echo soon gone" });
  const page = await newPage(browser);
  await page.goto(`${srv.url}/s/${id}`);
  await waitRunEnds(page, 1);
  await page.waitForSelector('[data-testid="conn"][data-status="live"]', { timeout: T });
  const r = await srv.api("DELETE", `/v1/sessions/${id}?streams=delete`);
  assert.equal(r.status, 204);
  await page.waitForSelector('[data-testid="problem"]', { timeout: T });
  await page.waitForSelector('[data-testid="conn"][data-status="gone"], [data-testid="conn"][data-status="closed"]', { timeout: T });
  let requests = 0;
  page.on("request", (q) => q.url().includes("/transcript") && requests++);
  await sleep(3000);
  assert.ok(requests <= 1, `the page kept asking for the transcript (${requests} requests in 3 s)`);
  assert.equal(await page.getByText("soon gone").count() >= 1, true, "what it recorded stays on screen");
  await page.context().close();
});

test("input modes: the queue of waiting inputs, remove one, reject while busy, cancel, interrupt", async () => {
  const id = await create({ ...jsonl });
  const page = await newPage(browser, { viewport: { width: 1400, height: 1400 } });
  await page.goto(`${srv.url}/s/${id}`);
  await page.waitForSelector('[data-testid="conn"][data-status="live"]', { timeout: T });
  const send = async (text, mode) => {
    await page.click(`[data-testid="mode-${mode}"]`);
    await page.fill('[data-testid="message-input"]', text);
    await page.click('[data-testid="send"]');
  };
  await send("sleep 30", "queue");
  await page.waitForSelector('[data-testid="cancel-run"]', { timeout: T });
  await send("echo queued one", "queue");
  await send("echo queued two", "queue");
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="queue"] li').length === 2, null, { timeout: T });
  /* remove the first waiting input */
  await page.locator('[data-testid="queue"] li').first().locator("button").click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="queue"] li').length === 1, null, { timeout: T });
  /* reject while a run is in progress: refused, said so */
  await send("echo rejected", "reject");
  await page.locator(".chat-input .banner.error").getByText("conflict").waitFor({ timeout: T });
  /* cancel the running run: it ends cancelled, the queued one runs */
  await page.click('[data-testid="cancel-run"]');
  await page.waitForSelector('[data-testid="run-end"][data-status="cancelled"]', { timeout: T });
  await page.locator(".timeline").getByText("queued two").nth(1).waitFor({ timeout: T });
  assert.equal(await page.locator(".timeline").getByText("queued one").count(), 0, "a removed input ran");
  /* interrupt: a long run is cancelled by the next message */
  await send("sleep 30", "queue");
  await page.waitForSelector('[data-testid="cancel-run"]', { timeout: T });
  await send("echo interrupting", "interrupt");
  await page.locator(".timeline").getByText("interrupting").nth(1).waitFor({ timeout: T });
  /* cancelled: the removed input (its run never started), the cancelled run, the interrupted one */
  assert.equal(await page.locator('[data-testid="run-end"][data-status="cancelled"]').count(), 3);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("a person in the loop: allow a tool call, steer a running turn, interrupt it", async () => {
  /* the demo agent asks before it writes to the workspace when the session's policy may refuse; the
   * New session form sets the policy */
  const page = await newPage(browser, { viewport: { width: 1400, height: 1200 } });
  await page.goto(srv.url + "/");
  await page.click('[data-testid="new-session"]');
  await page.selectOption('[data-testid="new-permissions"]', "ask");
  await page.fill('textarea[name="text"]', "please write your notes");
  await page.click('[data-testid="create-session"]');
  await page.waitForURL(/\/s\/[0-9a-f]+$/, { timeout: T });
  const id = new URL(page.url()).pathname.split("/")[2];
  await page.waitForSelector('[data-testid="conn"][data-status="live"]', { timeout: T });
  const card = page.locator('[data-testid="permission-card"][data-state="waiting"]');
  await card.waitFor({ timeout: T });
  await page.waitForSelector('[data-testid="pending-count"]', { timeout: T });
  await page.waitForSelector('[data-testid="waiting"] li', { timeout: T });
  await shot(page, "7-permission-request");
  await card.locator('[data-testid="perm-allow"]').click();
  await page.waitForSelector('[data-testid="permission-card"][data-state="allowed"]', { timeout: T });
  await waitRunEnds(page, 1);
  await page.waitForSelector('[data-testid="run-end"][data-status="success"]', { timeout: T });
  assert.equal(await page.locator('[data-testid="pending-count"]').count(), 0, "still shown as waiting");
  assert.match(await page.locator('[data-testid="permission-answer"]').first().textContent(), /allow by user/);

  /* steer and interrupt are offered for the demo agent (it announced both); a slow message to act on */
  const r = await srv.api("PATCH", `/v1/sessions/${id}`, { permissions: { mode: "allow" } });
  assert.equal(r.status, 200, r.text);
  await page.fill('[data-testid="message-input"]', "a slow one, please");
  await page.click('[data-testid="mode-queue"]');
  await page.click('[data-testid="send"]');
  await page.waitForSelector('[data-testid="interrupt-run"]', { timeout: T });
  await page.click('[data-testid="mode-steer"]');
  await page.fill('[data-testid="message-input"]', "mind the bananas");
  await page.click('[data-testid="send"]');
  await page.waitForSelector('[data-testid="steer-event"]', { timeout: T });
  await page.click('[data-testid="interrupt-run"]');
  await page.waitForSelector('[data-testid="run-end"][data-status="interrupted"]', { timeout: T });
  await page.waitForSelector('[data-testid="interrupt-event"]', { timeout: T });
  await shot(page, "8-steer-interrupt");
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("fork from an event: the fork's timeline ends there", async () => {
  const id = await create({ ...jsonl });
  await srv.api("POST", `/v1/sessions/${id}/messages`, { text: "echo first answer" });
  const page = await newPage(browser, { viewport: { width: 1400, height: 1600 } });
  await page.goto(`${srv.url}/s/${id}`);
  await waitRunEnds(page, 1);
  await page.fill('[data-testid="message-input"]', "echo second answer");
  await page.click('[data-testid="send"]');
  await waitRunEnds(page, 2);
  const parent = await page.evaluate(() => ({ offsets: window.__agentd.offsets(), ends: window.__agentd.ends(), types: window.__agentd.types() }));
  const firstEnd = parent.types.indexOf("run_completed");
  await page.locator('[data-testid="run-end"]').first().locator('[data-testid="fork-here"]').click();
  await page.waitForURL((u) => /\/s\/[0-9a-f]+$/.test(u.pathname) && !u.pathname.endsWith(id), { timeout: T });
  const fid = new URL(page.url()).pathname.split("/")[2];
  await page.waitForSelector('[data-testid="session-event"]', { timeout: T });
  await page.waitForFunction(() => window.__agentd && window.__agentd.types().at(-1) === "session");
  const fork = await page.evaluate(() => ({ offsets: window.__agentd.offsets(), types: window.__agentd.types() }));
  /* the parent's events up to its first run_completed, then the fork's own "forked" record */
  assert.deepEqual(fork.offsets.slice(0, -1), parent.offsets.slice(0, firstEnd + 1));
  assert.equal(fork.types.at(-2), "run_completed");
  const timeline = page.locator(".timeline");
  assert.equal((await timeline.getByText("first answer").count()) >= 1, true);
  assert.equal(await timeline.getByText("second answer").count(), 0);
  const t = await transcript(fid);
  assert.deepEqual(t.at(-1).type, "session");
  assert.equal(t.at(-1).action, "forked");
  await page.context().close();
});

test("run code in the runtime console", async () => {
  const id = await create({ agent: "none" });
  const page = await newPage(browser);
  await page.goto(`${srv.url}/s/${id}`);
  await page.click('[data-testid="tab-runtime"]');
  await page.click('[data-testid="rt-python"]');
  await page.fill('[data-testid="rt-code"]', "answer = 6 * 7\nprint(f'the answer is {answer}')");
  await page.click('[data-testid="rt-run"]');
  await page.getByText("the answer is 42").first().waitFor({ timeout: T });
  await page.click('[data-testid="rt-state"]');
  await page.locator('[data-testid="rt-output"]').first().getByText('"answer"').waitFor({ timeout: T });
  await page.click('[data-testid="rt-bash"]');
  await page.fill('[data-testid="rt-code"]', "echo bash says $((20 + 1)) from $(basename $PWD)");
  await page.click('[data-testid="rt-run"]');
  await page.locator('[data-testid="rt-output"]').getByText("bash says 21").first().waitFor({ timeout: T });
  /* the calls are in the timeline too */
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="runtime-event"]').length >= 2, null, { timeout: T });
  await shot(page, "5-runtime-console");
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("hostile agent output renders inert and the tab stays responsive", async () => {
  const id = await create({ ...jsonl });
  const prompt = [
    "echo <img src=x onerror=window.__pwned=1> and <svg onload=window.__pwned=2>",
    "echo <script>window.__pwned=3</script> [click me](javascript:window.__pwned=4) <a href=javascript:window.__pwned=5>raw link</a>",
    "tool head -c 5000000 /dev/zero | tr '\\000' A",
    "error <img src=y onerror=window.__pwned=6>",
    "echo done",
  ].join("\n");
  await srv.api("POST", `/v1/sessions/${id}/messages`, { text: prompt });
  const page = await newPage(browser, { viewport: { width: 1400, height: 1600 } });
  await page.goto(`${srv.url}/s/${id}`);
  await page.waitForSelector('[data-testid="run-end"]', { timeout: 60000 });
  const t0 = Date.now();
  await page.evaluate(() => 1);
  assert.ok(Date.now() - t0 < 2000, "the tab answers");
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.locator(".md img, .md svg, .md script").count(), 0);
  assert.equal(await page.locator('a[href^="javascript"]').count(), 0);
  const link = page.getByText("click me").first();
  if (await link.count()) await link.click();
  /* the 5 MB one-line output: capped, with "show more" (tools only, so the card is on screen) */
  for (const c of ["messages", "runs", "logs", "errors", "status", "files", "session"]) await page.click(`[data-testid="cat-${c}"]`);
  await page.locator('[data-testid="tool-card"] .tool-head').first().click();
  const longest = await page.evaluate(() => Math.max(...[...document.querySelectorAll("pre")].map((p) => p.textContent.length)));
  assert.ok(longest < 100_000, `a pre holds ${longest} characters`);
  assert.ok((await page.getByText(/show more|show the rest/).count()) > 0);
  await page.click('[data-testid="cat-errors"]');
  await page.getByText("<img src=y onerror=window.__pwned=6>").first().waitFor();
  await sleep(300);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test("several tabs: each holds one live connection, all stay live, the last still works", async () => {
  const ids = [];
  for (let i = 0; i < 4; i++) ids.push(await create({ ...jsonl }));
  const ctx = await browser.newContext();
  const pages = [];
  const list = await ctx.newPage();
  await list.goto(srv.url + "/");
  pages.push(list);
  for (const id of ids) {
    const p = await ctx.newPage();
    await p.goto(`${srv.url}/s/${id}`);
    pages.push(p);
  }
  for (const p of pages) await p.waitForSelector('[data-testid="conn"][data-status="live"]', { timeout: T });
  const last = pages.at(-1);
  await last.fill('[data-testid="message-input"]', "echo five tabs open");
  await last.click('[data-testid="send"]');
  await last.getByText("five tabs open").nth(1).waitFor({ timeout: T });
  await list.waitForSelector(`[data-testid="session-row"][data-id="${ids[3]}"]`);
  await ctx.close();
});

test("token-protected server: asked once, bearer only; a share link is read-only", async () => {
  const tok = "browser-test-token";
  const ts = await startAgentd({ token: tok });
  try {
    const page = await newPage(browser, { viewport: { width: 1400, height: 1200 } });
    const urls = [];
    page.on("request", (r) => urls.push(r.url()));
    await page.goto(ts.url + "/");
    await page.waitForSelector('[data-testid="token-form"]', { timeout: T });
    await page.fill('[data-testid="token-input"]', tok);
    await page.click('[data-testid="token-submit"]');
    await page.waitForSelector('[data-testid="conn"][data-status="live"]', { timeout: T });
    const id = await create({ ...jsonl }, ts);
    await ts.api("POST", `/v1/sessions/${id}/messages`, { text: "echo **shared** hello" });
    await page.waitForSelector(`[data-testid="session-row"][data-id="${id}"]`, { timeout: T });
    await page.click(`[data-testid="session-row"][data-id="${id}"]`);
    await waitRunEnds(page, 1);
    /* the token survives a reload of the tab */
    await page.reload();
    await waitRunEnds(page, 1);
    assert.equal(await page.locator('[data-testid="token-form"]').count(), 0);
    await page.click('[data-testid="share"]');
    await page.click('[data-testid="share-create"]');
    const shareUrl = await page.locator('[data-testid="share-url"]').first().inputValue();
    assert.match(shareUrl, /\/s\/[0-9a-f]+\?share=/);
    assert.ok(!urls.some((u) => u.includes(tok)), "the token went into a URL");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("agentd.token")), tok);

    /* a fresh browser context (no token) opens the share link */
    const viewer = await newPage(browser, { viewport: { width: 1400, height: 1000 } });
    await viewer.goto(shareUrl);
    await waitRunEnds(viewer, 1);
    await viewer.getByText("shared").first().waitFor();
    for (const w of ["chat-input", "fork", "delete", "share", "fork-here", "tab-runtime", "tab-share", "new-session"])
      assert.equal(await viewer.locator(`[data-testid="${w}"]`).count(), 0, `write control ${w} in the share view`);
    assert.equal(await viewer.locator('[data-testid="token-form"]').count(), 0);
    await shot(viewer, "4-share-view");
    const token = new URL(shareUrl).searchParams.get("share");
    const write = await viewer.evaluate(
      async ([sid, t]) => (await fetch(`/v1/sessions/${sid}/messages`, { method: "POST", headers: { Authorization: `Bearer ${t}`, "Content-Type": "application/json" }, body: '{"text":"no"}' })).status,
      [id, token],
    );
    assert.ok(write === 401 || write === 403, `a write with the share token got ${write}`);
    await viewer.goto(shareUrl.replace("?share", "/chat?share"));
    await viewer.getByText("shared").first().waitFor({ timeout: T });
    assert.equal(await viewer.locator('[data-testid="chat-input"]').count(), 0);
    assert.deepEqual(viewer.errors, []);
    await viewer.context().close();
    await page.context().close();
  } finally {
    await ts.close();
  }
});
