#!/usr/bin/env node
// A fake Anthropic Messages API for driving the real Claude Code CLI offline (node stdlib only).
//
//   node fake_anthropic.mjs [--script FILE] [--log FILE] [--port N]
//   (or FAKE_SCRIPT / FAKE_LOG / FAKE_PORT in the environment)
//
// Listens on 127.0.0.1 (port 0 unless told) and prints its base URL, e.g. http://127.0.0.1:40123, as
// the first line on stdout; point ANTHROPIC_BASE_URL at it. It answers:
//   HEAD /, GET /                    200 (the CLI probes reachability)
//   POST /v1/messages[?beta=true]    the next scripted turn, as SSE (or JSON when "stream" is false)
//   POST /v1/messages/count_tokens   {"input_tokens": N}
//   GET  /_fake/log                  every request so far, as a JSON array (same records as --log)
//   GET  /_fake/state                {"next": index of the next unused turn, "turns": count, ...}
//   POST /_fake/script               replaces the script (body: the script JSON) and rewinds it
//
// The script is a JSON array of turns (or {"turns": [...]}), one turn consumed per main request:
//   {"text": "..."}                                  an answer, stop_reason end_turn
//   {"tool_use": {"name": N, "input": {...}}}        one tool call, stop_reason tool_use
//   {"tool_use": [{...}, {...}], "text": "..."}      text first, then several tool calls (parallel)
//   {"error": {"status": 500, "type": "api_error", "message": "..."}}   an HTTP error answer
// Optional keys on any turn:
//   "when": "substring"  the turn is only used when the latest user prompt text (not a tool_result)
//                        contains it; turns are otherwise taken in order, skipping ones whose "when"
//                        does not match, so resumed or forked conversations can be keyed on prompts.
//   "delay_ms": N        wait N ms after message_start before the content (slow model).
//   "model": "..."       model name reported (default: the request's model).
// In "text", {{tool_result}} is replaced with the text of the last tool_result the CLI sent, and
// {{prompt}} with the latest user prompt text, so the final answer can echo what the tool returned.
//
// Side requests — anything that is not the main conversation (Claude Code sends e.g. title or topic
// requests: no tools, or a tiny max_tokens) — get a short text answer and consume no turn. When the
// script is exhausted, main requests get the text "fake: script exhausted" (logged with
// "exhausted": true) so a test can notice.
//
// Each request is recorded as one JSON line in the log file:
//   {"seq", "ts", "method", "path", "kind": "main"|"side"|"probe"|"count_tokens"|"other",
//    "turn": index or null, "exhausted": bool, "headers": {...}, "body": parsed JSON or null}
// The script, log and /_fake routes are fake_common.mjs's, shared with the other fakes.

import { fill, rid, serve, sendJson, sleep, sse, toolUses } from "./fake_common.mjs";

// ---- reading the conversation ---------------------------------------------------------------------

function blocksOf(msg) {
    if (!msg) return [];
    if (typeof msg.content === "string") return [{ type: "text", text: msg.content }];
    return Array.isArray(msg.content) ? msg.content : [];
}

function toolResultText(block) {
    const c = block.content;
    if (typeof c === "string") return c;
    if (Array.isArray(c)) return c.map((p) => (p && p.type === "text" ? p.text : "")).join("");
    return "";
}

// The latest user prompt text and the latest tool_result text, skipping role:"system" messages that
// the CLI inserts mid-conversation and the <system-reminder> blocks it prepends to prompts.
function conversationFacts(body) {
    const msgs = Array.isArray(body.messages) ? body.messages.filter((m) => m && m.role !== "system") : [];
    let prompt = null;
    let toolResult = null;
    for (let i = msgs.length - 1; i >= 0; i--) {
        const m = msgs[i];
        if (m.role !== "user") continue;
        for (const b of blocksOf(m)) {
            if (b && b.type === "tool_result" && toolResult === null) toolResult = toolResultText(b);
        }
        if (prompt === null) {
            const texts = blocksOf(m)
                .filter((b) => b && b.type === "text" && !/^\s*<system-reminder>/.test(b.text || ""))
                .map((b) => b.text);
            if (texts.length) prompt = texts.join("\n");
        }
        if (prompt !== null && toolResult !== null) break;
    }
    return { prompt: prompt || "", toolResult: toolResult || "" };
}

// Main conversation requests carry the tool list; the CLI's side requests (titles, topics, quota
// probes) send no tools or a tiny max_tokens.
function isMain(body) {
    if (!Array.isArray(body.tools) || body.tools.length === 0) return false;
    if (typeof body.max_tokens === "number" && body.max_tokens < 256) return false;
    return true;
}

// ---- answering ------------------------------------------------------------------------------------

function contentOf(turn, facts) {
    const out = [];
    if (typeof turn.text === "string") out.push({ type: "text", text: fill(turn.text, facts) });
    for (const u of toolUses(turn, "toolu_fake")) out.push({ type: "tool_use", ...u });
    if (out.length === 0) out.push({ type: "text", text: "" });
    return out;
}

function usage(out) {
    return { input_tokens: 100, output_tokens: out, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
}

async function answer(res, body, content, turn) {
    const model = (turn && turn.model) || body.model || "claude-fake";
    const stop = content.some((b) => b.type === "tool_use") ? "tool_use" : "end_turn";
    const id = rid("msg_fake");
    const outTokens = 20 * content.length;
    if (!body.stream) {
        res.writeHead(200, { "content-type": "application/json", "request-id": rid("req_") });
        res.end(JSON.stringify({ id, type: "message", role: "assistant", model, content,
                                 stop_reason: stop, stop_sequence: null, usage: usage(outTokens) }));
        return;
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache",
                         "request-id": rid("req_") });
    sse(res, "message_start", { type: "message_start", message: { id, type: "message", role: "assistant", model,
        content: [], stop_reason: null, stop_sequence: null, usage: usage(1) } });
    if (turn && turn.delay_ms) await sleep(turn.delay_ms);
    content.forEach((b, index) => {
        if (b.type === "text") {
            sse(res, "content_block_start", { type: "content_block_start", index, content_block: { type: "text", text: "" } });
            sse(res, "content_block_delta", { type: "content_block_delta", index, delta: { type: "text_delta", text: b.text } });
        } else {
            sse(res, "content_block_start", { type: "content_block_start", index,
                content_block: { type: "tool_use", id: b.id, name: b.name, input: {} } });
            sse(res, "content_block_delta", { type: "content_block_delta", index,
                delta: { type: "input_json_delta", partial_json: JSON.stringify(b.input) } });
        }
        sse(res, "content_block_stop", { type: "content_block_stop", index });
    });
    sse(res, "message_delta", { type: "message_delta", delta: { stop_reason: stop, stop_sequence: null },
                                usage: { output_tokens: outTokens } });
    sse(res, "message_stop", { type: "message_stop" });
    res.end();
}

function apiError(res, status, type, message) {
    sendJson(res, status, { type: "error", error: { type, message } });
}

serve("fake_anthropic", async ({ req, res, path, body, rec, script, record }) => {
    if (req.method !== "POST") return false;
    if (path === "/v1/messages/count_tokens") {
        rec.kind = "count_tokens"; record(rec);
        return sendJson(res, 200, { input_tokens: 100 });
    }
    if (path !== "/v1/messages") return false;
    if (!body || typeof body !== "object") {
        record(rec);
        return apiError(res, 400, "invalid_request_error", "body is not JSON");
    }
    if (!isMain(body)) {
        rec.kind = "side"; record(rec);
        return answer(res, body, [{ type: "text", text: "Fake session" }], null);
    }
    rec.kind = "main";
    const facts = conversationFacts(body);
    const i = script.pick(facts.prompt);
    if (i === null) {
        rec.exhausted = true; record(rec);
        return answer(res, body, [{ type: "text", text: "fake: script exhausted" }], null);
    }
    rec.turn = i; record(rec);
    const turn = script.turns[i] || {};
    if (turn.error) {
        const e = turn.error;
        return apiError(res, e.status || 500, e.type || "api_error", e.message || "fake error");
    }
    return answer(res, body, contentOf(turn, facts), turn);
});
