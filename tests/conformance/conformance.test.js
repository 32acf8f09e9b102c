// The official Durable Streams conformance suite, aimed at the server in AGENTD_URL (run.sh sets it).
// The package's own CLI looks for its test file relative to its install location, which fails when it
// is installed as a dependency, so the suite is registered here through its programmatic entry point.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.AGENTD_URL
if (!baseUrl) {
  throw new Error("AGENTD_URL is not set: start the suite with tests/conformance/run.sh")
}

runConformanceTests({ baseUrl, subscriptions: true })
