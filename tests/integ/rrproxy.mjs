#!/usr/bin/env node
// A round-robin HTTP proxy for tests: each request goes to the next of N upstream URLs, so a client
// that keeps one connection still reaches every node of a cluster. Node's own http module, no
// dependencies.
//
//     node tests/integ/rrproxy.mjs [--listen 127.0.0.1:0] URL...
//
// Prints its URL (http://HOST:PORT) as the first line of stdout once it listens, as agentd does.
// Everything is streamed both ways as it comes: request bodies, response bodies (chunked, SSE,
// long-poll), status and headers unchanged but for the hop-by-hop ones (each side of the proxy has
// its own connection). The client's Host header is kept, so URLs a server builds from it point back
// to the proxy. An upstream that cannot be reached answers 502 {"error":{"code":"proxy_upstream"}};
// one that fails mid-answer ends the client's connection (a truncated body, never a clean end).
// The answer carries X-Rrproxy-Upstream: the upstream URL that served it (tests use it to check the
// spread). WebSocket upgrades are not proxied (the conformance suite has none). SIGTERM/SIGINT: exit
// at once.
import http from "node:http"

const args = process.argv.slice(2)
let listen = "127.0.0.1:0"
const upstreams = []
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--listen") listen = args[++i]
  else upstreams.push(new URL(args[i]))
}
if (upstreams.length === 0) {
  process.stderr.write("usage: rrproxy.mjs [--listen HOST:PORT] URL...\n")
  process.exit(2)
}

// Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection, not to the message.
const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
  "upgrade", "proxy-authenticate", "proxy-authorization"])
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })
let next = 0

function forwardHeaders(raw) {
  const out = []
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1])
  }
  return out
}

const server = http.createServer((req, res) => {
  const up = upstreams[next++ % upstreams.length]
  const upReq = http.request({
    host: up.hostname, port: up.port, method: req.method, path: req.url, agent,
    headers: forwardHeaders(req.rawHeaders),
  })
  upReq.on("response", (upRes) => {
    const headers = forwardHeaders(upRes.rawHeaders)
    headers.push("X-Rrproxy-Upstream", up.origin)
    res.writeHead(upRes.statusCode, upRes.statusMessage, headers)
    res.flushHeaders() // an SSE or long-poll answer has its headers long before any body
    upRes.pipe(res)
    // The upstream died mid-answer: the client must see a broken body, not a complete one.
    upRes.on("close", () => {
      if (!upRes.complete) res.destroy()
    })
    upRes.on("error", () => res.destroy())
  })
  upReq.on("error", (err) => {
    if (res.headersSent) {
      res.destroy()
      return
    }
    const body = JSON.stringify({ error: { code: "proxy_upstream", message: `${up.origin}: ${err.message}` } })
    res.writeHead(502, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) })
    res.end(body)
  })
  // The client went away (an SSE reader closing, a timeout): let the upstream see it too.
  res.on("close", () => {
    if (!res.writableFinished) upReq.destroy()
  })
  req.pipe(upReq)
})
// Long polls and SSE streams may last: no request or idle deadline of the proxy's own.
server.requestTimeout = 0
server.headersTimeout = 60000
server.keepAliveTimeout = 30000

const sep = listen.lastIndexOf(":")
server.listen(Number(listen.slice(sep + 1)), listen.slice(0, sep).replace(/^\[|\]$/g, ""), () => {
  const a = server.address()
  process.stdout.write(`http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}\n`)
})
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0))
