/* @agentd/client: typed session events, the session REST API, and following a session's streams
 * with exact resume. See README.md. */
export * from "./events.js";
export * from "./client.js";
export * from "./follow.js";
export * from "./offsets.js";
export * from "./totals.js";
