/* Page shortcuts: single keys, ignored while typing in a field or with Ctrl/Cmd held. */
import { useEffect } from "preact/hooks";

export function useKeys(keys: Record<string, () => void>, deps: unknown[] = []) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || e.metaKey || e.ctrlKey) return;
      const f = keys[e.key];
      if (!f) return;
      e.preventDefault();
      f();
    };
    addEventListener("keydown", onKey);
    return () => removeEventListener("keydown", onKey);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
}
