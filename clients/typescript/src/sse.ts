/*
 * The live part of following a stream: one SSE request (`?offset=X&live=sse`) read and parsed here,
 * every complete data+control pair handed on in the same task it arrived in, and a new request from
 * the last delivered offset when the connection ends. Why not @durable-streams/client's SSE mode
 * (which catch-up reads still use): it turns every SSE event into a synthetic Response, reads it
 * back with Response.text() and pulls the next event only after the consumer returned, so each event
 * costs several task hops in a row. In a busy tab that was most of the live latency (measured in
 * bench/ui: 1,000 events 10 ms apart, p90 190 ms from the server to the callback with the library
 * against 30 ms for an EventSource in the same page; README.md, "Live reading").
 */

/** One SSE event of the Durable Streams protocol: `data` (a chunk of the stream) or `control`. */
export type SseEvent = { type: "data"; data: string } | { type: "control"; data: string };

/** An incremental parser of text/event-stream: feed it text as it arrives, get whole events. */
export class SseParser {
  private buf = "";
  private type = "";
  private data: string[] = [];

  feed(text: string): SseEvent[] {
    const out: SseEvent[] = [];
    this.buf += text;
    let start = 0;
    for (;;) {
      const nl = this.nextBreak(start);
      if (nl < 0) break;
      const line = this.buf.slice(start, nl);
      start = this.buf.charCodeAt(nl) === 0x0d && this.buf.charCodeAt(nl + 1) === 0x0a ? nl + 2 : nl + 1;
      if (line === "") {
        if (this.data.length && (this.type === "data" || this.type === "control"))
          out.push({ type: this.type, data: this.data.join("\n") });
        this.type = "";
        this.data = [];
        continue;
      }
      const colon = line.indexOf(":");
      if (colon === 0) continue; /* a comment (keep-alive) */
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.charCodeAt(0) === 0x20) value = value.slice(1);
      if (field === "event") this.type = value;
      else if (field === "data") this.data.push(value);
    }
    this.buf = this.buf.slice(start);
    return out;
  }

  private nextBreak(from: number): number {
    const re = /[\r\n]/g;
    re.lastIndex = from;
    const m = re.exec(this.buf);
    if (!m) return -1;
    /* a \r at the very end may be the first half of \r\n: wait for the next text */
    return m[0] === "\r" && m.index + 1 === this.buf.length ? -1 : m.index;
  }
}

/** The control event's fields (the protocol's names). */
export interface SseControl {
  streamNextOffset?: string;
  streamCursor?: string;
  upToDate?: boolean;
  streamClosed?: boolean;
}

/**
 * The data events before a control, as one JSON array text the way @durable-streams/client builds
 * it for catch-up reads (each part's outer brackets dropped, parts joined by commas), so the
 * per-event offsets (offsets.ts) are measured on the same text either way.
 */
export function mergeJsonParts(parts: string[]): string {
  if (!parts.length) return "";
  const inner: string[] = [];
  for (const part of parts) {
    const t = part.trim();
    if (!t) continue;
    if (t.startsWith("[") && t.endsWith("]")) {
      const i = t.slice(1, -1).trim();
      if (i) inner.push(i);
    } else inner.push(t);
  }
  return `[${inner.join(",")}]`;
}
