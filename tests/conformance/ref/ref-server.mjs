// Starts the Durable Streams reference server (npm @durable-streams/server) with the same command-line
// shape as `agentd serve`, so run.sh can compare agentd with it: DS_SERVER=ref ./run.sh
//   node ref-server.mjs --listen HOST:PORT --data DIR [--long-poll-timeout MS]
// Prints the bound URL as the first line of stdout; stops on SIGTERM or SIGINT.
import { DurableStreamTestServer } from "@durable-streams/server"

// The reference logs with console.log; stdout is reserved for the URL line.
console.log = console.info = console.debug = (...a) => console.error(...a)

const args = process.argv.slice(2)
const opt = { listen: "127.0.0.1:0", data: undefined, "long-poll-timeout": "30000" }
for (let i = 0; i < args.length; i += 2) {
  const name = args[i].replace(/^--/, "")
  if (!(name in opt) || i + 1 >= args.length) {
    console.error(`ref-server: bad argument ${args[i]}`)
    process.exit(2)
  }
  opt[name] = args[i + 1]
}
const colon = opt.listen.lastIndexOf(":")
const server = new DurableStreamTestServer({
  host: opt.listen.slice(0, colon),
  port: Number(opt.listen.slice(colon + 1)),
  dataDir: process.env.DS_REF_MEMORY ? undefined : opt.data,
  longPollTimeout: Number(opt["long-poll-timeout"]),
})
const url = await server.start()
process.stdout.write(`${url}\n`)
const stop = async () => {
  await server.stop()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
