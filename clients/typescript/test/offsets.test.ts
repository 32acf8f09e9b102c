import { describe, expect, it } from "vitest";
import { arrayElementLengths, chunkBounds, formatOffset, offsetPosition } from "../src/offsets.js";

describe("offsets", () => {
  it("measures each element in UTF-8 bytes, strings with brackets and escapes included", () => {
    const a = '{"t":"a,]}"}';
    const b = '{"t":"é\\"😀","x":[1,{"y":2}]}';
    const c = '"plain"';
    expect(arrayElementLengths(`[${a},${b},${c}]`)).toEqual([
      Buffer.byteLength(a),
      Buffer.byteLength(b),
      Buffer.byteLength(c),
    ]);
    expect(arrayElementLengths("[]")).toEqual([]);
    expect(arrayElementLengths("{}")).toBeNull();
    expect(arrayElementLengths("[1,2")).toBeNull();
  });

  it("places a chunk's events by walking back from its end offset", () => {
    const end = formatOffset(100);
    const b = chunkBounds([10, 20], end);
    expect(b).toEqual([
      [formatOffset(68), formatOffset(79)],
      [formatOffset(79), formatOffset(100)],
    ]);
    expect(offsetPosition(end)).toBe(100);
    expect(offsetPosition("abc")).toBeNull();
    expect(chunkBounds([3], "opaque")).toEqual([["opaque", "opaque"]]);
  });
});
