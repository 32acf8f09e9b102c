/*
 * A virtualized vertical list with measured (variable) heights: only the rows in and near the
 * viewport are in the DOM. Rows are measured with one ResizeObserver; unmeasured rows count as
 * `estimate`. It keeps the reader's place: stuck to the bottom while at the bottom (a live
 * timeline), and anchored on the first visible row when rows are inserted above (older pages) or
 * rows above change height.
 */
import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

interface Props {
  count: number;
  keyOf: (i: number) => string;
  render: (i: number) => ComponentChildren;
  estimate: number;
  /** Start at the bottom and follow new rows while the reader is there. */
  stickToBottom?: boolean;
  /** Called when the reader scrolls near the top (load older rows). */
  onNearTop?: () => void;
  overscan?: number;
  class?: string;
  /** Changes when the content changes without a count change (re-measure, re-render). */
  version?: number;
  /** Scroll to this row index (once per change of the value). */
  scrollTo?: { index: number; seq: number } | null;
  label?: string;
}

export function VirtualList(p: Props) {
  const box = useRef<HTMLDivElement>(null);
  const heights = useRef(new Map<string, number>());
  const [, setTick] = useState(0);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewH, setViewH] = useState(600);
  const atBottom = useRef(p.stickToBottom ?? false);
  const anchor = useRef<{ key: string; delta: number } | null>(null);
  const ro = useRef<ResizeObserver | null>(null);
  const overscan = p.overscan ?? 600;

  /* prefix sums of row tops (O(n) per render: fine for the thousands of rows a page holds) */
  const tops = new Float64Array(p.count + 1);
  for (let i = 0; i < p.count; i++) tops[i + 1] = (tops[i] as number) + (heights.current.get(p.keyOf(i)) ?? p.estimate);
  const total = tops[p.count] as number;

  function indexAt(y: number): number {
    let lo = 0,
      hi = p.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((tops[mid + 1] as number) <= y) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  const first = Math.max(0, indexAt(scrollTop - overscan));
  const last = Math.min(p.count, indexAt(scrollTop + viewH + overscan) + 1);

  /* measure rows as they render or change size */
  useEffect(() => {
    ro.current = new ResizeObserver((entries) => {
      let changed = false;
      for (const e of entries) {
        const el = e.target as HTMLElement;
        const k = el.dataset.vkey;
        if (!k) continue;
        const h = el.offsetHeight;
        if (h && heights.current.get(k) !== h) {
          heights.current.set(k, h);
          changed = true;
        }
      }
      if (changed) setTick((x) => x + 1);
    });
    const el = box.current;
    const onResize = () => el && setViewH(el.clientHeight);
    onResize();
    addEventListener("resize", onResize);
    return () => {
      ro.current?.disconnect();
      removeEventListener("resize", onResize);
    };
  }, []);

  useLayoutEffect(() => {
    const el = box.current;
    if (!el || !ro.current) return;
    for (const c of Array.from(el.querySelectorAll<HTMLElement>("[data-vkey]"))) ro.current.observe(c);
  });

  /* keep the reader's place after every layout */
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    } else if (anchor.current) {
      const { key, delta } = anchor.current;
      for (let i = 0; i < p.count; i++) {
        if (p.keyOf(i) === key) {
          const want = (tops[i] as number) + delta;
          if (Math.abs(el.scrollTop - want) > 1) el.scrollTop = want;
          break;
        }
      }
    }
  });

  useEffect(() => {
    if (!p.scrollTo || !box.current) return;
    atBottom.current = false;
    box.current.scrollTop = tops[Math.min(p.scrollTo.index, p.count)] as number;
  }, [p.scrollTo?.seq]);

  function onScroll() {
    const el = box.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    const i = indexAt(el.scrollTop);
    if (i < p.count) anchor.current = { key: p.keyOf(i), delta: el.scrollTop - (tops[i] as number) };
    setScrollTop(el.scrollTop);
    if (el.scrollTop < 400 && p.onNearTop) p.onNearTop();
  }

  const rows = [];
  for (let i = first; i < last; i++) {
    const k = p.keyOf(i);
    rows.push(
      <div key={k} data-vkey={k} class="vrow" style={{ transform: `translateY(${tops[i]}px)` }}>
        {p.render(i)}
      </div>,
    );
  }
  return (
    <div ref={box} class={"vlist " + (p.class ?? "")} onScroll={onScroll} role="list" aria-label={p.label}>
      <div class="vspace" style={{ height: `${total}px` }}>
        {rows}
      </div>
    </div>
  );
}
