/* File edits of tool calls shown as a diff: which inputs are edits, and a line diff (LCS). */
export interface Edit {
  path: string;
  oldText: string;
  newText: string;
}

/** An edit when the tool's input looks like one (Claude Code's Edit/Write/MultiEdit, str_replace
 * editors, apply-patch-like tools with old/new strings). */
export function editOf(name: string, input: unknown): Edit | null {
  if (!input || typeof input !== "object") return null;
  const o = input as Record<string, unknown>;
  const path = String(o.file_path ?? o.path ?? o.filename ?? "");
  const str = (v: unknown) => (typeof v === "string" ? v : null);
  const oldS = str(o.old_string) ?? str(o.old_str) ?? str(o.old);
  const newS = str(o.new_string) ?? str(o.new_str) ?? str(o.new);
  if (oldS !== null && newS !== null) return { path, oldText: oldS, newText: newS };
  if (Array.isArray(o.edits)) {
    const parts = o.edits.filter((e): e is Record<string, unknown> => !!e && typeof e === "object");
    return {
      path,
      oldText: parts.map((e) => String(e.old_string ?? "")).join("\n…\n"),
      newText: parts.map((e) => String(e.new_string ?? "")).join("\n…\n"),
    };
  }
  const content = str(o.content) ?? str(o.file_text);
  if (content !== null && path && /write|create|file/i.test(name)) return { path, oldText: "", newText: content };
  return null;
}

/** Lines as [op, text], op one of " ", "-", "+". Exact LCS up to 2,000 × 2,000 lines; beyond, old then new. */
export function diffLines(a: string, b: string): Array<[string, string]> {
  const x = a === "" ? [] : a.split("\n");
  const y = b === "" ? [] : b.split("\n");
  if (x.length * y.length > 4_000_000) return [...x.map((l): [string, string] => ["-", l]), ...y.map((l): [string, string] => ["+", l])];
  const n = x.length,
    m = y.length;
  const L = new Uint32Array((n + 1) * (m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      L[i * (m + 1) + j] = x[i] === y[j] ? (L[(i + 1) * (m + 1) + j + 1] as number) + 1 : Math.max(L[(i + 1) * (m + 1) + j] as number, L[i * (m + 1) + j + 1] as number);
  const out: Array<[string, string]> = [];
  let i = 0,
    j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) {
      out.push([" ", x[i] as string]);
      i++;
      j++;
    } else if ((L[(i + 1) * (m + 1) + j] as number) >= (L[i * (m + 1) + j + 1] as number)) out.push(["-", x[i++] as string]);
    else out.push(["+", y[j++] as string]);
  }
  while (i < n) out.push(["-", x[i++] as string]);
  while (j < m) out.push(["+", y[j++] as string]);
  return out;
}
