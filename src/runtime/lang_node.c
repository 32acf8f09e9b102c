/* lang_node — a persistent node driven by a small driver script (below).
 *
 * Requests "E|S NONCE LEN" arrive on the socket at fd 61, code in the memfd at fd 62. Code runs
 * with vm.runInThisContext, so var/function declarations and top-level let/const persist like in
 * the REPL, and with breakOnSigint, so SIGINT stops a synchronous loop with a catchable error
 * while the globals stay. A returned promise is awaited (SIGINT abandons the wait); a result other
 * than undefined is shown with util.inspect. Uncaught errors from callbacks are printed, not
 * fatal. process.exit ends the process, like `exit` in bash. Writes to pipes are synchronous in
 * node on Linux, so the markers written with fs.writeSync to fd 63 (the stdout pipe as well) follow
 * all of the call's output; they are flagged when the code ended process.stdout / process.stderr
 * or closed fd 1 / 2. end() is noted when called: node's stdio streams reset their writable state
 * right after ending (their destroy is a dummy), while the pipe stays shut for writing.
 */
#include <stdio.h>

#include "runtime/runtime_int.h"

static const char runtime__node_driver[] =
    "(function () {\n"
    "  'use strict';\n"
    "  const fs = require('fs'), vm = require('vm'), util = require('util'), net = require('net');\n"
    "  const base = new Set(Object.getOwnPropertyNames(globalThis));\n"
    "  let running = false, pend = false, abort = null, busy = false, buf = Buffer.alloc(0);\n"
    "  process.on('SIGINT', () => { if (abort) abort(); else if (!running) pend = true; });\n"
    "  process.on('uncaughtException', (e) => { process.stderr.write('Uncaught ' + ((e && e.stack) || "
    "util.inspect(e)) + '\\n'); });\n"
    "  process.on('unhandledRejection', (e) => { process.stderr.write('Unhandled rejection ' + ((e && "
    "e.stack) || util.inspect(e)) + '\\n'); });\n"
    "  function interrupted() { const e = new Error('Interrupted'); e.code = "
    "'ERR_SCRIPT_EXECUTION_INTERRUPTED'; return e; }\n"
    "  const ended = new Set();\n"
    "  for (const s of [process.stdout, process.stderr]) {\n"
    "    const end = s.end;\n"
    "    s.end = function (...a) { ended.add(this); return end.apply(this, a); };\n"
    "  }\n"
    "  function closed(s, fd) {\n"
    "    try { fs.fstatSync(fd); } catch (e) { return true; }\n"
    "    return ended.has(s);\n"
    "  }\n"
    "  function short(v) {\n"
    "    let r;\n"
    "    try { r = util.inspect(v, { depth: 1, breakLength: Infinity }); } catch (e) { r = '<inspect "
    "failed>'; }\n"
    "    return r.length > 120 ? r.slice(0, 117) + '...' : r;\n"
    "  }\n"
    "  function state() {\n"
    "    const gl = {};\n"
    "    let lexical = [];\n"
    "    try {\n"
    "      const s = new (require('inspector').Session)();\n"
    "      s.connect();\n"
    "      s.post('Runtime.globalLexicalScopeNames', {}, (e, r) => { if (!e) lexical = r.names; });\n"
    "      s.disconnect();\n"
    "    } catch (e) {}\n"
    "    for (const k of Object.getOwnPropertyNames(globalThis)) {\n"
    "      if (base.has(k)) continue;\n"
    "      let v; try { v = globalThis[k]; } catch (e) { continue; }\n"
    "      gl[k] = { type: typeof v, repr: short(v) };\n"
    "    }\n"
    "    for (const k of lexical) {\n"
    "      let v; try { v = vm.runInThisContext(k); } catch (e) { continue; }\n"
    "      gl[k] = { type: typeof v, repr: short(v) };\n"
    "    }\n"
    "    process.stdout.write(JSON.stringify({ cwd: process.cwd(), globals: gl }));\n"
    "  }\n"
    "  async function handle(line) {\n"
    "    const [kind, nonce, n] = line.split(' ');\n"
    "    const len = Number(n);\n"
    "    const b = Buffer.alloc(len);\n"
    "    for (let off = 0; off < len;) off += fs.readSync(62, b, off, len - off, off);\n"
    "    pend = false;\n"
    "    let status = 0;\n"
    "    if (kind === 'E') {\n"
    "      try {\n"
    "        running = true;\n"
    "        if (pend) throw interrupted();\n"
    "        let r = vm.runInThisContext(b.toString(), { filename: 'agentd', breakOnSigint: true });\n"
    "        if (r !== null && typeof r === 'object' && typeof r.then === 'function') {\n"
    "          r = await new Promise((res, rej) => { abort = () => rej(interrupted()); r.then(res, rej); "
    "});\n"
    "        }\n"
    "        if (r !== undefined) process.stdout.write(util.inspect(r) + '\\n');\n"
    "      } catch (e) {\n"
    "        if (e && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') {\n"
    "          status = 130;\n"
    "          process.stderr.write('Interrupted\\n');\n"
    "        } else {\n"
    "          status = 1;\n"
    "          process.stderr.write(((e && e.stack) || ('Uncaught ' + util.inspect(e))) + '\\n');\n"
    "        }\n"
    "      } finally {\n"
    "        running = false;\n"
    "        abort = null;\n"
    "      }\n"
    "    } else if (kind === 'S') {\n"
    "      state();\n"
    "    }\n"
    "    const f = (closed(process.stdout, 1) ? '" RUNTIME__FLAG_STDOUT
    "' : '') + (closed(process.stderr, 2) ? '" RUNTIME__FLAG_STDERR "' : '');\n"
    "    fs.writeSync(" RUNTIME__MARK_FD_STR ", '\\x1e' + nonce + ':' + status + f + '\\n');\n"
    "  }\n"
    "  async function pump() {\n"
    "    if (busy) return;\n"
    "    busy = true;\n"
    "    for (;;) {\n"
    "      const i = buf.indexOf(10);\n"
    "      if (i < 0) break;\n"
    "      const line = buf.subarray(0, i).toString();\n"
    "      buf = buf.subarray(i + 1);\n"
    "      await handle(line);\n"
    "    }\n"
    "    busy = false;\n"
    "  }\n"
    "  const ctl = new net.Socket({ fd: 61, readable: true, writable: false });\n"
    "  ctl.on('data', (d) => { buf = Buffer.concat([buf, d]); pump(); });\n"
    "  ctl.on('end', () => process.exit(0));\n"
    "  ctl.on('error', () => process.exit(0));\n"
    "})();\n";

const struct runtime__lang runtime__lang_node = {
    .name = "node",
    .search_name = "node",
    .ctl_fd = RUNTIME__CTL_FD,
    .args = (const char *const[]){"-e", runtime__node_driver, NULL},
    .request = runtime__request_socket,
    .state_json = runtime__state_passthrough,
};
