#!/usr/bin/env node
// A fake OpenAI Responses API for driving the real Codex CLI offline (node stdlib only).
//
//   node fake_openai_responses.mjs [--script FILE] [--log FILE] [--port N]
//
// Prints its base URL (http://127.0.0.1:PORT) on the first stdout line; configure Codex with
// base_url = "<url>/v1" and wire_api = "responses" (see README.md). Answers POST /v1/responses (and
// /responses) as an SSE stream: response.created, then per output item response.output_item.added,
// (response.output_text.delta), response.output_item.done, and finally response.completed with usage.
// Also GET /v1/models (one model, "fake-model"). Script, log and /_fake routes: fake_common.mjs.
//
// A turn's "text" becomes an assistant message item; each "tool_use" {name, input} a function_call
// item whose arguments are JSON.stringify(input) (Codex's shell tool is "exec_command" in 0.169,
// input {"cmd": "..."}). Codex 0.169 offers an MCP server's tools inside one {"type":"namespace",
// "name":"mcp__<server>","tools":[...]} entry and takes only calls that name the namespace: a
// tool_use named "<namespace>__<tool>" whose namespace is in the request becomes a function_call
// {name: <tool>, namespace: <namespace>}.
// {{tool_result}} is the output of the latest function_call_output item in the request's input.
// Requests without tools (side requests, e.g. a compaction or title prompt) get a short text and
// consume no turn.

import { fill, rid, serve, sendJson, sleep, sse, toolUses } from "./fake_common.mjs";

function outputText(o) {
    if (typeof o === "string") return o;
    if (Array.isArray(o)) return o.map((p) => (p && typeof p.text === "string" ? p.text : "")).join("");
    if (o && typeof o === "object" && typeof o.content === "string") return o.content;
    return o === undefined || o === null ? "" : JSON.stringify(o);
}

function conversationFacts(body) {
    const items = Array.isArray(body.input) ? body.input : typeof body.input === "string"
        ? [{ type: "message", role: "user", content: body.input }] : [];
    let prompt = null;
    let toolResult = null;
    for (let i = items.length - 1; i >= 0; i--) {
        const it = items[i] || {};
        if (toolResult === null && (it.type === "function_call_output" || it.type === "custom_tool_call_output")) {
            toolResult = outputText(it.output);
        }
        if (prompt === null && it.role === "user" && (it.type === "message" || it.type === undefined)) {
            const text = typeof it.content === "string" ? it.content
                : (it.content || []).filter((p) => p && typeof p.text === "string").map((p) => p.text).join("\n");
            // Codex sends its environment context and instructions as user messages too.
            if (!/^\s*<(environment_context|user_instructions|permissions)/.test(text)) prompt = text;
        }
        if (prompt !== null && toolResult !== null) break;
    }
    return { prompt: prompt || "", toolResult: toolResult || "" };
}

function isMain(body) {
    return Array.isArray(body.tools) && body.tools.length > 0;
}

function itemsOf(turn, facts, tools) {
    const namespaces = (tools || []).filter((t) => t && t.type === "namespace").map((t) => t.name);
    const out = [];
    if (typeof turn.text === "string") {
        out.push({ type: "message", id: rid("msg_fake"), role: "assistant", status: "completed",
                   content: [{ type: "output_text", text: fill(turn.text, facts), annotations: [] }] });
    }
    for (const u of toolUses(turn, "call_fake")) {
        const ns = namespaces.find((n) => u.name.startsWith(n + "__"));
        const call = { type: "function_call", id: rid("fc_fake"), call_id: u.id, name: u.name,
                       arguments: JSON.stringify(u.input), status: "completed" };
        if (ns) {
            call.namespace = ns;
            call.name = u.name.slice(ns.length + 2);
        }
        out.push(call);
    }
    return out;
}

async function answer(res, body, items, turn) {
    const model = (turn && turn.model) || body.model || "fake-model";
    const id = rid("resp_fake");
    const created_at = Math.floor(Date.now() / 1000);
    const usage = { input_tokens: 100, input_tokens_details: { cached_tokens: 0 }, output_tokens: 20 * items.length,
                    output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 100 + 20 * items.length };
    const base = { id, object: "response", created_at, model, status: "in_progress", output: [] };
    if (body.stream === false) {
        return sendJson(res, 200, { ...base, status: "completed", output: items, usage });
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let n = 0;
    sse(res, "response.created", { type: "response.created", sequence_number: n++, response: base });
    sse(res, "response.in_progress", { type: "response.in_progress", sequence_number: n++, response: base });
    if (turn && turn.delay_ms) await sleep(turn.delay_ms);
    items.forEach((item, output_index) => {
        if (item.type === "message") {
            const text = item.content[0].text;
            sse(res, "response.output_item.added", { type: "response.output_item.added", sequence_number: n++,
                output_index, item: { ...item, status: "in_progress", content: [] } });
            sse(res, "response.content_part.added", { type: "response.content_part.added", sequence_number: n++,
                item_id: item.id, output_index, content_index: 0, part: { type: "output_text", text: "", annotations: [] } });
            sse(res, "response.output_text.delta", { type: "response.output_text.delta", sequence_number: n++,
                item_id: item.id, output_index, content_index: 0, delta: text });
            sse(res, "response.output_text.done", { type: "response.output_text.done", sequence_number: n++,
                item_id: item.id, output_index, content_index: 0, text });
            sse(res, "response.content_part.done", { type: "response.content_part.done", sequence_number: n++,
                item_id: item.id, output_index, content_index: 0, part: item.content[0] });
        } else {
            sse(res, "response.output_item.added", { type: "response.output_item.added", sequence_number: n++,
                output_index, item: { ...item, status: "in_progress", arguments: "" } });
            sse(res, "response.function_call_arguments.delta", { type: "response.function_call_arguments.delta",
                sequence_number: n++, item_id: item.id, output_index, delta: item.arguments });
            sse(res, "response.function_call_arguments.done", { type: "response.function_call_arguments.done",
                sequence_number: n++, item_id: item.id, output_index, arguments: item.arguments });
        }
        sse(res, "response.output_item.done", { type: "response.output_item.done", sequence_number: n++,
                                                output_index, item });
    });
    sse(res, "response.completed", { type: "response.completed", sequence_number: n++,
        response: { ...base, status: "completed", output: items, usage } });
    res.end();
}

serve("fake_openai_responses", async ({ req, res, path, body, rec, script, record }) => {
    if (req.method === "GET" && (path === "/v1/models" || path === "/models")) {
        rec.kind = "models"; record(rec);
        return sendJson(res, 200, { object: "list", data: [{ id: "fake-model", object: "model", owned_by: "fake" }] });
    }
    if (req.method !== "POST" || (path !== "/v1/responses" && path !== "/responses")) return false;
    if (!body || typeof body !== "object") {
        record(rec);
        return sendJson(res, 400, { error: { type: "invalid_request_error", message: "body is not JSON" } });
    }
    const facts = conversationFacts(body);
    if (!isMain(body)) {
        rec.kind = "side"; record(rec);
        return answer(res, body, itemsOf({ text: "Fake session" }, facts), null);
    }
    rec.kind = "main";
    const i = script.pick(facts.prompt);
    if (i === null) {
        rec.exhausted = true; record(rec);
        return answer(res, body, itemsOf({ text: "fake: script exhausted" }, facts), null);
    }
    rec.turn = i; record(rec);
    const turn = script.turns[i] || {};
    if (turn.error) {
        const e = turn.error;
        return sendJson(res, e.status || 500, { error: { type: e.type || "server_error", message: e.message || "fake error" } });
    }
    return answer(res, body, itemsOf(turn, facts, body.tools), turn);
});
