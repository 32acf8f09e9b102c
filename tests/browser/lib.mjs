/* Test harness: the real agentd (AGENTD_BIN, else build/release/agentd) on port 0 with a temp data dir,
 * and Debian's chromium (CHROMIUM, else /usr/bin/chromium) driven by playwright-core. */
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../..");
export const BIN = process.env.AGENTD_BIN ?? join(repo, "build/release/agentd");
export const JSONL_AGENT = join(repo, "tests/agents/jsonl_agent.py");
export const SHOTS = process.env.SHOTS_DIR ?? join(repo, "build/browser-shots");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

function launch(args) {
  return new Promise((res, rej) => {
    const proc = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const timer = setTimeout(() => rej(new Error("agentd did not start: " + out)), 10000);
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /^(http:\/\/\S+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        res({ proc, url: m[1] });
      }
    });
    proc.stderr.on("data", (d) => (out += d));
    proc.on("exit", (code) => {
      clearTimeout(timer);
      rej(new Error(`agentd exited (${code}): ${out}`));
    });
  });
}

function stopProc(p) {
  return new Promise((res) => {
    if (p.exitCode !== null || p.signalCode !== null) return res();
    p.once("exit", () => res());
    p.kill("SIGTERM");
  });
}

export async function startAgentd({ token, args = [] } = {}) {
  if (!existsSync(BIN)) throw new Error(`no agentd at ${BIN}: make first, or set AGENTD_BIN`);
  const data = mkdtempSync(join(tmpdir(), "agentd-browser-"));
  const extra = [...(token ? ["--token", token] : []), ...args];
  let { proc, url } = await launch(["serve", "--listen", "127.0.0.1:0", "--data", data, ...extra]);
  const port = new URL(url).port;
  const s = {
    url,
    data,
    token,
    get proc() {
      return proc;
    },
    async api(method, path, body, tok = token) {
      const headers = { "content-type": "application/json" };
      if (tok) headers.authorization = `Bearer ${tok}`;
      const r = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {}
      return { status: r.status, json, text };
    },
    async stop() {
      await stopProc(proc);
    },
    async start() {
      for (let i = 0; ; i++) {
        try {
          ({ proc, url } = await launch(["serve", "--listen", `127.0.0.1:${port}`, "--data", data, ...extra]));
          return;
        } catch (e) {
          if (i > 30) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
    async close() {
      await stopProc(proc);
      rmSync(data, { recursive: true, force: true });
    },
  };
  return s;
}

export async function launchBrowser() {
  /* playwright gives every launch a fresh temporary profile (--user-data-dir of its own) */
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return browser;
}

/** A page whose console errors and page errors are collected (tests assert there are none). */
export async function newPage(browser, opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 }, ...opts });
  const page = await ctx.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource|ERR_CONNECTION_REFUSED|net::ERR/.test(m.text())) page.errors.push(m.text());
  });
  return page;
}

export async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
