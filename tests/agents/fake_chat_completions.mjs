#!/usr/bin/env node
// A fake OpenAI Chat Completions API for driving the real OpenCode CLI offline (node stdlib only).
//
//   node fake_chat_completions.mjs [--script FILE] [--log FILE] [--port N]
//
// Prints its base URL (http://127.0.0.1:PORT) on the first stdout line; give OpenCode
// "baseURL": "<url>/v1" for an @ai-sdk/openai-compatible provider (see README.md). Answers
// POST /v1/chat/completions (and /chat/completions) as SSE chunks (chat.completion.chunk, a final
// chunk with finish_reason and usage, then [DONE]), or as one JSON completion when "stream" is not
// true; GET /v1/models lists "fake-model". Script, log and /_fake routes: fake_common.mjs.
//
// A turn's "text" becomes delta content; each "tool_use" {name, input} a tool_calls entry with
// arguments JSON.stringify(input) (OpenCode's shell tool is "bash", input {"command", "description"};
// MCP tools are named <server>_<tool>, e.g. "rt_runtime"). {{tool_result}} is the content of the latest
// role:"tool" message. Requests without tools (OpenCode's title generation) are side requests: a short
// text, no turn consumed.

import { fill, rid, serve, sendJson, sleep, sse, toolUses } from "./fake_common.mjs";

function textOf(content) {
    if (typeof content === "string") return content;
    if (Array.isArray(content)) return content.map((p) => (p && typeof p.text === "string" ? p.text : "")).join("\n");
    return "";
}

function conversationFacts(body) {
    const msgs = Array.isArray(body.messages) ? body.messages : [];
    let prompt = null;
    let toolResult = null;
    for (let i = msgs.length - 1; i >= 0; i--) {
        const m = msgs[i] || {};
        if (toolResult === null && m.role === "tool") toolResult = textOf(m.content);
        if (prompt === null && m.role === "user") prompt = textOf(m.content);
        if (prompt !== null && toolResult !== null) break;
    }
    return { prompt: prompt || "", toolResult: toolResult || "" };
}

function isMain(body) {
    return Array.isArray(body.tools) && body.tools.length > 0;
}

function chunk(id, model, created, delta, finish, usage) {
    const c = { id, object: "chat.completion.chunk", created, model,
                choices: [{ index: 0, delta, finish_reason: finish || null }] };
    if (usage) c.usage = usage;
    return c;
}

async function answer(res, body, turn, facts) {
    const model = (turn && turn.model) || body.model || "fake-model";
    const id = rid("chatcmpl-fake");
    const created = Math.floor(Date.now() / 1000);
    const text = typeof turn.text === "string" ? fill(turn.text, facts) : null;
    const calls = toolUses(turn, "call_fake").map((u, index) => ({
        index, id: u.id, type: "function", function: { name: u.name, arguments: JSON.stringify(u.input) } }));
    const finish = calls.length ? "tool_calls" : "stop";
    const usage = { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 };
    if (body.stream !== true) {
        const message = { role: "assistant", content: text };
        if (calls.length) message.tool_calls = calls.map(({ index, ...c }) => c);
        return sendJson(res, 200, { id, object: "chat.completion", created, model,
                                    choices: [{ index: 0, message, finish_reason: finish }], usage });
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    sse(res, null, chunk(id, model, created, { role: "assistant", content: "" }));
    if (turn.delay_ms) await sleep(turn.delay_ms);
    if (text !== null) sse(res, null, chunk(id, model, created, { content: text }));
    for (const c of calls) sse(res, null, chunk(id, model, created, { tool_calls: [c] }));
    sse(res, null, chunk(id, model, created, {}, finish, usage));
    res.write("data: [DONE]\n\n");
    res.end();
}

serve("fake_chat_completions", async ({ req, res, path, body, rec, script, record }) => {
    if (req.method === "GET" && (path === "/v1/models" || path === "/models")) {
        rec.kind = "models"; record(rec);
        return sendJson(res, 200, { object: "list", data: [{ id: "fake-model", object: "model", owned_by: "fake" }] });
    }
    if (req.method !== "POST" || (path !== "/v1/chat/completions" && path !== "/chat/completions")) return false;
    if (!body || typeof body !== "object") {
        record(rec);
        return sendJson(res, 400, { error: { type: "invalid_request_error", message: "body is not JSON" } });
    }
    const facts = conversationFacts(body);
    if (!isMain(body)) {
        rec.kind = "side"; record(rec);
        return answer(res, body, { text: "Fake session" }, facts);
    }
    rec.kind = "main";
    const i = script.pick(facts.prompt);
    if (i === null) {
        rec.exhausted = true; record(rec);
        return answer(res, body, { text: "fake: script exhausted" }, facts);
    }
    rec.turn = i; record(rec);
    const turn = script.turns[i] || {};
    if (turn.error) {
        const e = turn.error;
        return sendJson(res, e.status || 500, { error: { type: e.type || "server_error", message: e.message || "fake error" } });
    }
    return answer(res, body, turn, facts);
});
