/*
 * One Chromium page (playwright-core, as the browser suite drives it) under the orders of a test in
 * another language: tests/integ/ui_nodes.t starts the nodes (and PostgreSQL) in Python and drives
 * the page through this process. One JSON order a line on stdin, one JSON answer a line on stdout:
 *   {"op":"open","url":U}          a fresh page at U
 *   {"op":"press","sel":S,"key":K} focuses S (a CSS selector; "" for the page) and presses K
 *   {"op":"eval","js":"() => ..."} runs the function in the page, answers {"value": its result}
 *   {"op":"count","path":P}        how many requests for the path P the page has made so far
 *   {"op":"shot","name":N}         a screenshot in build/browser-shots/N.png
 *   {"op":"errors"}                the page's console and page errors so far
 * Every answer is {"ok":true,...} or {"ok":false,"error":...}. EOF closes the browser.
 */
import { createInterface } from "node:readline";
import { launchBrowser, newPage, shot } from "./lib.mjs";

const browser = await launchBrowser();
let page = null;
let counts = new Map();

async function run(o) {
  switch (o.op) {
    case "open":
      if (page) await page.context().close();
      page = await newPage(browser);
      counts = new Map();
      page.on("request", (r) => {
        const p = new URL(r.url()).pathname;
        counts.set(p, (counts.get(p) ?? 0) + 1);
      });
      await page.goto(o.url);
      return {};
    case "press":
      if (o.sel) await page.focus(o.sel);
      await page.keyboard.press(o.key);
      return {};
    case "eval":
      return { value: await page.evaluate(`(${o.js})()`) };
    case "count":
      return { value: counts.get(o.path) ?? 0 };
    case "shot":
      await shot(page, o.name);
      return {};
    case "errors":
      return { value: page.errors };
    default:
      throw new Error(`no such op: ${o.op}`);
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  let answer;
  try {
    answer = { ok: true, ...(await run(JSON.parse(line))) };
  } catch (e) {
    answer = { ok: false, error: String(e?.stack ?? e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
