/* Starts the real agentd (AGENTD_BIN, else ../../build/release/agentd) on port 0 with a temp data dir. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../../..");
export const BIN = process.env.AGENTD_BIN ?? join(repo, "build/release/agentd");
export const JSONL_AGENT = join(repo, "tests/agents/jsonl_agent.py");

export interface Server {
  url: string;
  port: number;
  data: string;
  token?: string;
  proc: ChildProcess;
  stop(): Promise<void>;
  /** Stops and starts again on the same port and data dir. */
  restart(): Promise<void>;
}

function launch(args: string[]): Promise<{ proc: ChildProcess; url: string }> {
  return new Promise((res, rej) => {
    const proc = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const timer = setTimeout(() => rej(new Error("agentd did not start: " + out)), 10000);
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^(http:\/\/\S+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        res({ proc, url: m[1]! });
      }
    });
    proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    proc.on("exit", (code) => {
      clearTimeout(timer);
      rej(new Error(`agentd exited (${code}): ${out}`));
    });
  });
}

function stopProc(p: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (p.exitCode !== null || p.signalCode !== null) return res();
    p.once("exit", () => res());
    p.kill("SIGTERM");
  });
}

export async function startAgentd(opts: { token?: string } = {}): Promise<Server> {
  if (!existsSync(BIN)) throw new Error(`no agentd binary at ${BIN} (make, or set AGENTD_BIN)`);
  const data = mkdtempSync(join(tmpdir(), "agentd-client-"));
  const extra = opts.token ? ["--token", opts.token] : [];
  let { proc, url } = await launch(["serve", "--listen", "127.0.0.1:0", "--data", data, ...extra]);
  const port = Number(new URL(url).port);
  const s: Server = {
    url,
    port,
    data,
    proc,
    async stop() {
      await stopProc(s.proc);
      rmSync(data, { recursive: true, force: true });
    },
    async restart() {
      await stopProc(s.proc);
      for (let i = 0; ; i++) {
        try {
          ({ proc, url } = await launch(["serve", "--listen", `127.0.0.1:${port}`, "--data", data, ...extra]));
          s.proc = proc;
          return;
        } catch (e) {
          if (i > 20) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
  if (opts.token) s.token = opts.token;
  return s;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until<T>(f: () => T | undefined | false | Promise<T | undefined | false>, ms = 10000, what = "condition"): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
