// What the fake model servers share (node stdlib only): options, the script and its turn picking,
// the request log, the /_fake/* control routes, the HTTP server. Each fake (fake_anthropic.mjs,
// fake_openai_responses.mjs, fake_chat_completions.mjs) adds its wire format. See README.md.
//
// Script: a JSON array of turns (or {"turns": [...]}); one turn is consumed per main request.
//   {"text": "..."}, {"tool_use": {"name", "input", "id"?} | [...]}, {"error": {"status","type","message"}}
//   with optional "when" (substring of the latest user prompt), "delay_ms", "model".
// Text may hold {{tool_result}} (latest tool result the client sent) and {{prompt}}.

import http from "node:http";
import fs from "node:fs";
import crypto from "node:crypto";

export function option(name, envName) {
    const i = process.argv.indexOf(name);
    if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
    return process.env[envName];
}

export const rid = (prefix) => prefix + crypto.randomBytes(9).toString("hex");
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseTurns(doc) {
    const turns = Array.isArray(doc) ? doc : doc && Array.isArray(doc.turns) ? doc.turns : null;
    if (!turns) throw new Error("script must be a JSON array of turns or {\"turns\": [...]}");
    return turns;
}

export class Script {
    constructor(path) {
        this.set(path ? JSON.parse(fs.readFileSync(path, "utf8")) : []);
    }

    set(doc) {
        this.turns = parseTurns(doc);
        this.used = new Array(this.turns.length).fill(false);
    }

    // The index of the next unused turn whose "when" (if any) occurs in prompt, marked used; or null.
    pick(prompt) {
        for (let i = 0; i < this.turns.length; i++) {
            if (this.used[i]) continue;
            const t = this.turns[i];
            if (t && typeof t.when === "string" && !prompt.includes(t.when)) continue;
            this.used[i] = true;
            return i;
        }
        return null;
    }

    state() {
        return { next: this.used.indexOf(false), turns: this.turns.length, used: this.used.filter(Boolean).length };
    }
}

export function fill(text, facts) {
    return String(text).replaceAll("{{tool_result}}", facts.toolResult || "").replaceAll("{{prompt}}", facts.prompt || "");
}

// The turn's tool calls as [{id, name, input}] (ids generated with prefix unless the script gives one).
export function toolUses(turn, prefix) {
    const uses = turn.tool_use === undefined ? [] : Array.isArray(turn.tool_use) ? turn.tool_use : [turn.tool_use];
    return uses.map((u) => ({ id: u.id || rid(prefix), name: u.name, input: u.input || {} }));
}

export function sendJson(res, status, doc) {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(doc));
}

export function sse(res, event, data) {
    res.write(event ? `event: ${event}\ndata: ${JSON.stringify(data)}\n\n` : `data: ${JSON.stringify(data)}\n\n`);
}

const KEEP_HEADERS = ["user-agent", "anthropic-beta", "anthropic-version", "x-api-key", "authorization",
                      "x-app", "content-type", "openai-beta", "session_id", "originator"];

// Runs a fake: handler(ctx) answers the model routes. ctx = {req, res, path, body, rec, script, record}.
// The handler sets rec.kind / rec.turn / rec.exhausted and calls record(rec) itself before answering.
export function serve(name, handler) {
    const script = new Script(option("--script", "FAKE_SCRIPT"));
    const logPath = option("--log", "FAKE_LOG");
    const port = Number(option("--port", "FAKE_PORT") || 0);
    const logFd = logPath ? fs.openSync(logPath, "a") : null;
    const records = [];
    let seq = 0;
    const record = (rec) => {
        records.push(rec);
        if (logFd !== null) fs.writeSync(logFd, JSON.stringify(rec) + "\n");
    };

    async function handle(req, res, raw) {
        const path = req.url.split("?")[0];
        const headers = {};
        for (const h of KEEP_HEADERS) if (req.headers[h] !== undefined) headers[h] = req.headers[h];
        let body = null;
        if (raw.length) {
            try { body = JSON.parse(raw.toString("utf8")); } catch { body = null; }
        }
        const rec = { seq: ++seq, ts: new Date().toISOString(), method: req.method, path: req.url, kind: "other",
                      turn: null, exhausted: false, headers, body };
        if ((req.method === "HEAD" || req.method === "GET") && path === "/") {
            rec.kind = "probe"; rec.body = null; record(rec);
            res.writeHead(200, { "content-type": "text/plain" });
            res.end(req.method === "HEAD" ? undefined : `${name}\n`);
            return;
        }
        if (req.method === "GET" && path === "/_fake/log") return sendJson(res, 200, records);
        if (req.method === "GET" && path === "/_fake/state") return sendJson(res, 200, { ...script.state(), requests: seq });
        if (req.method === "POST" && path === "/_fake/script") {
            try { script.set(body); } catch (e) { return sendJson(res, 400, { error: String(e.message) }); }
            return sendJson(res, 200, { turns: script.turns.length });
        }
        const handled = await handler({ req, res, path, body, rec, script, record });
        if (handled === false) {
            record(rec);
            sendJson(res, 404, { error: { type: "not_found", message: `no route ${req.method} ${path}` } });
        }
    }

    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            handle(req, res, Buffer.concat(chunks)).catch((e) => {
                process.stderr.write(`${name}: ${e.stack || e}\n`);
                if (!res.headersSent) sendJson(res, 500, { error: { type: "server_error", message: String(e) } });
                else res.end();
            });
        });
    });
    server.listen(port, "127.0.0.1", () => {
        process.stdout.write(`http://127.0.0.1:${server.address().port}\n`);
    });
    for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => { server.close(); process.exit(0); });
    return server;
}
