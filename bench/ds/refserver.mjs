// Starts the Durable Streams reference server (the pinned @durable-streams/server) for make bench.
// Usage: node refserver.mjs DATA_DIR [LONG_POLL_TIMEOUT_MS]
// File-backed (dataDir set), so every append is fdatasync'ed like agentd --durability fsync.
// Prints the bound URL as the first line of stdout, the same contract as `agentd serve`,
// then serves until SIGTERM or SIGINT.
import { DurableStreamTestServer, FileBackedStreamStore } from '@durable-streams/server';

const dataDir = process.argv[2];
const longPollTimeout = Number(process.argv[3] ?? 2000);
if (!dataDir) {
  console.error('usage: node refserver.mjs DATA_DIR [LONG_POLL_TIMEOUT_MS]');
  process.exit(2);
}

// The server logs through console.log/info; keep stdout for the URL line alone.
console.log = console.info = console.debug = console.warn;

// compression stays off: the bench client sends no Accept-Encoding, and agentd compresses nothing.
const server = new DurableStreamTestServer({
  port: 0, host: '127.0.0.1', dataDir, longPollTimeout, compression: false,
});
// The file store keeps 100 append handles by default (maxFileHandles) and the test server offers no
// option for it: with 1,000 streams a handle is evicted between a write and its fdatasync and the
// append fails ("handle not found", answered 404). Give it one per stream of the largest phase, so
// that its figures are its best, not its default's failures.
await server.store.close();
server.store = new FileBackedStreamStore({ dataDir, maxFileHandles: 4096 });
const url = await server.start();
process.stdout.write(`${url}\n`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await server.stop();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
