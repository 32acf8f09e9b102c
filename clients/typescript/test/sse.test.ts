import { describe, expect, it } from "vitest";
import { SseParser, mergeJsonParts } from "../src/sse.js";

describe("sse", () => {
  it("parses events split anywhere, with CRLF, comments and multi-line data", () => {
    const text =
      'event: data\ndata:[{"a":1},\ndata: {"b":"x:y"}]\n\n: keep-alive\n\r\nevent: control\r\ndata:{"streamNextOffset":"0000000000000000_0000000000000042","upToDate":true}\r\n\r\n' +
      "event: other\ndata: ignored\n\nevent: data\ndata: [3]\n\n";
    const whole = new SseParser().feed(text);
    expect(whole).toEqual([
      { type: "data", data: '[{"a":1},\n{"b":"x:y"}]' },
      { type: "control", data: '{"streamNextOffset":"0000000000000000_0000000000000042","upToDate":true}' },
      { type: "data", data: "[3]" },
    ]);
    /* the same text in every split of one and two cuts gives the same events */
    for (let i = 0; i <= text.length; i += 3) {
      const p = new SseParser();
      expect([...p.feed(text.slice(0, i)), ...p.feed(text.slice(i))]).toEqual(whole);
    }
    /* an event is not handed on before its blank line */
    expect(new SseParser().feed("event: data\ndata: [1]\n")).toEqual([]);
  });

  it("merges the data before a control into one array text, as catch-up reads get it", () => {
    expect(mergeJsonParts(['[{"a":1},{"b":2}]', " [ 3 ] ", "[]"])).toBe('[{"a":1},{"b":2},3]');
    expect(mergeJsonParts([])).toBe("");
  });
});
