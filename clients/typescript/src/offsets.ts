/*
 * Offsets of single events. A read answers a chunk of JSON messages and the offset after it
 * (Stream-Next-Offset); the protocol's offsets are opaque, but agentd documents them as byte positions
 * ("%016d_%016d", the second part the byte count; doc/ARCHITECTURE.md, "Offsets, forks and deletion")
 * and stores a JSON-mode record as "m1,m2," served as "[m1,m2]". So from the raw text of a chunk and
 * its end offset, the start of every message follows exactly: walk back from the end, each message
 * taking its UTF-8 length plus one for its comma. When an offset is not of that form, every event of
 * the chunk gets the chunk's end as both bounds (still exact for resume, coarse for "fork from here").
 */

const WIDTH = 16;

/** The byte position of an agentd offset, or null when it is not of agentd's form. */
export function offsetPosition(off: string): number | null {
  const m = /^(\d{16})_(\d{16})$/.exec(off);
  if (!m || Number(m[1]) !== 0) return null;
  return Number(m[2]);
}

export function formatOffset(pos: number): string {
  return "0".repeat(WIDTH) + "_" + String(pos).padStart(WIDTH, "0");
}

/** Compares two offsets of one stream (they sort as strings: fixed width). */
export function compareOffsets(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function utf8Length(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdfff) n += 2; /* each half of a pair: 4 bytes for the pair */
    else n += 3;
  }
  return n;
}

/**
 * The UTF-8 byte length of each top-level element of a JSON array text, as the server sent it
 * (whatever lies between the separators). Returns null when the text is not an array.
 */
export function arrayElementLengths(text: string): number[] | null {
  let i = 0;
  while (i < text.length && /\s/.test(text[i] as string)) i++;
  if (text[i] !== "[") return null;
  const lengths: number[] = [];
  let depth = 0,
    inStr = false,
    start = i + 1,
    sawAny = false;
  for (i = i + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inStr) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inStr = false;
      continue;
    }
    if (c === 0x22) {
      inStr = true;
      sawAny = true;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      depth++;
      sawAny = true;
    } else if (c === 0x7d /* } */ || (c === 0x5d /* ] */ && depth > 0)) {
      depth--;
    } else if (c === 0x5d && depth === 0) {
      if (sawAny) lengths.push(utf8Length(text, start, i));
      return lengths;
    } else if (c === 0x2c /* , */ && depth === 0) {
      lengths.push(utf8Length(text, start, i));
      start = i + 1;
    } else if (c > 0x20) {
      sawAny = true;
    }
  }
  return null;
}

/** Bounds of each message of a chunk that ends at `end`: [start, end) pairs as offsets. */
export function chunkBounds(lengths: number[], end: string): Array<[string, string]> {
  const endPos = offsetPosition(end);
  if (endPos === null) return lengths.map(() => [end, end]);
  const out: Array<[string, string]> = new Array(lengths.length);
  let pos = endPos;
  for (let i = lengths.length - 1; i >= 0; i--) {
    const start = pos - ((lengths[i] as number) + 1);
    out[i] = [formatOffset(start), formatOffset(pos)];
    pos = start;
  }
  return out;
}
