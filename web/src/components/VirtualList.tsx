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
  /* the scrollTop this list last read or wrote: compared against instead of reading the DOM,
   * since reading or writing scrollTop forces a layout */
  const knownTop = useRef(0);
  /* the height the list was last scrolled to the bottom of, and a frame already asked for that */
  const bottomDone = useRef(-1);
  const bottomFrame = useRef(0);
  const totalRef = useRef(0);
  /* When the reader last touched the list (wheel, touch, its scrollbar, scrolling keys): only such a
   * scroll leaves the bottom. Our own scrolls, and the browser clamping scrollTop when rows shrink,
   * come a frame later, when more rows may have come in: by then they look like leaving it. */
  const lastInput = useRef(-1e9);
  const pressed = useRef(false);
  const overscan = p.overscan ?? 600;

  /* One ResizeObserver for the rows. A row is observed once, when it mounts (observing it again
   * would report it again: the spec restarts an observation), and its size comes from the entry,
   * not from offsetHeight. */
  const ro = useRef<ResizeObserver | null>(null);
  if (!ro.current && typeof ResizeObserver !== "undefined") {
    ro.current = new ResizeObserver((entries) => {
      let changed = false;
      for (const e of entries) {
        const el = e.target as HTMLElement;
        const k = el.dataset.vkey;
        if (!k) continue;
        const h = Math.round(e.borderBoxSize?.[0]?.blockSize ?? el.offsetHeight);
        if (h && heights.current.get(k) !== h) {
          heights.current.set(k, h);
          changed = true;
        }
      }
      if (changed) setTick((x) => x + 1);
    });
  }
  const refs = useRef(new Map<string, (el: HTMLElement | null) => void>());
  function rowRef(k: string) {
    let f = refs.current.get(k);
    if (!f) {
      let mounted: HTMLElement | null = null;
      f = (el) => {
        if (el === mounted) return;
        if (mounted) ro.current?.unobserve(mounted);
        mounted = el;
        if (el) ro.current?.observe(el);
        else refs.current.delete(k);
      };
      refs.current.set(k, f);
    }
    return f;
  }

  /* prefix sums of row tops (O(n) per render: fine for the thousands of rows a page holds) */
  const tops = new Float64Array(p.count + 1);
  for (let i = 0; i < p.count; i++) tops[i + 1] = (tops[i] as number) + (heights.current.get(p.keyOf(i)) ?? p.estimate);
  const total = tops[p.count] as number;
  totalRef.current = total;

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

  /* stuck to the bottom, the window is the bottom of the list as it is now: a new row is rendered
   * in the same pass that adds it, not after the scroll that follows (a burst would skip it) */
  const stuck = atBottom.current && !!p.stickToBottom;
  const viewTop = stuck ? Math.max(0, total - viewH) : scrollTop;
  const first = Math.max(0, indexAt(viewTop - overscan));
  const last = Math.min(p.count, indexAt(viewTop + viewH + overscan) + 1);

  useEffect(() => {
    const el = box.current;
    const onResize = () => el && setViewH(el.clientHeight);
    onResize();
    addEventListener("resize", onResize);
    const input = () => (lastInput.current = performance.now());
    /* the scrollbar is the list's own: a press on a row (a button in it) is not a scroll */
    const down = (e: MouseEvent) => {
      if (e.target !== el) return;
      pressed.current = true;
      input();
    };
    const up = () => {
      if (!pressed.current) return; /* a click elsewhere (the send button) is not a scroll */
      pressed.current = false;
      input();
    };
    /* keys that scroll, not typing (in the chat input while the agent streams, say) */
    const key = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
      if (/^(PageUp|PageDown|ArrowUp|ArrowDown|Home|End| )$/.test(e.key)) input();
    };
    el?.addEventListener("wheel", input, { passive: true });
    el?.addEventListener("touchmove", input, { passive: true });
    el?.addEventListener("mousedown", down);
    addEventListener("mouseup", up);
    addEventListener("keydown", key);
    return () => {
      el?.removeEventListener("wheel", input);
      el?.removeEventListener("touchmove", input);
      el?.removeEventListener("mousedown", down);
      removeEventListener("mouseup", up);
      removeEventListener("keydown", key);
      ro.current?.disconnect();
      cancelAnimationFrame(bottomFrame.current);
      removeEventListener("resize", onResize);
    };
  }, []);

  /* keep the reader's place after every render */
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    if (atBottom.current) {
      if (bottomDone.current !== total) toBottom();
    } else if (anchor.current) {
      const { key, delta } = anchor.current;
      for (let i = 0; i < p.count; i++) {
        if (p.keyOf(i) === key) {
          const want = (tops[i] as number) + delta;
          if (Math.abs(knownTop.current - want) > 1) {
            el.scrollTop = want;
            knownTop.current = el.scrollTop;
          }
          break;
        }
      }
    }
  });

  /* Scrolls to the bottom in the next frame: once per frame at most, since writing scrollTop lays
   * the page out at once and renders can come faster than frames. */
  function toBottom() {
    if (bottomFrame.current) return;
    bottomFrame.current = requestAnimationFrame(() => {
      bottomFrame.current = 0;
      if (!atBottom.current || !box.current) return;
      bottomDone.current = totalRef.current;
      box.current.scrollTop = totalRef.current;
      knownTop.current = box.current.scrollTop;
    });
  }

  useEffect(() => {
    if (!p.scrollTo || !box.current) return;
    atBottom.current = false;
    box.current.scrollTop = tops[Math.min(p.scrollTo.index, p.count)] as number;
    knownTop.current = box.current.scrollTop;
  }, [p.scrollTo?.seq]);

  function onScroll() {
    const el = box.current;
    if (!el) return;
    const reader = pressed.current || performance.now() - lastInput.current < 1000;
    if (atBottom.current && !reader) {
      /* our own scroll, or the browser clamping: nothing to read (reading scrollTop here lays out
       * what the renders since the last frame changed, measured as the top cost of a live
       * timeline); catch up with rows that came since */
      if (bottomDone.current !== totalRef.current) toBottom();
      if (knownTop.current < 400 && p.onNearTop) p.onNearTop();
      return;
    }
    const top = el.scrollTop;
    const prev = knownTop.current;
    knownTop.current = top;
    const gap = el.scrollHeight - top - el.clientHeight;
    const bottom = gap < 40;
    /* the reader scrolling down to the end of a list that grows while they scroll sticks too: the
     * end they reached has moved by the time the scroll event comes */
    if (!atBottom.current) atBottom.current = bottom || (reader && top > prev && gap < el.clientHeight / 2);
    else if (top < prev - 1 && !bottom) atBottom.current = false; /* the reader scrolled up */
    else if (!bottom) {
      /* still stuck (the reader scrolled down, or not far): follow the rows that came since */
      bottomDone.current = -1;
      toBottom();
    }
    if (!atBottom.current) bottomDone.current = -1;
    const i = indexAt(top);
    if (i < p.count) anchor.current = { key: p.keyOf(i), delta: top - (tops[i] as number) };
    setScrollTop(top);
    if (top < 400 && p.onNearTop) p.onNearTop();
  }

  const rows = [];
  for (let i = first; i < last; i++) {
    const k = p.keyOf(i);
    rows.push(
      <div key={k} ref={rowRef(k)} data-vkey={k} class="vrow" style={{ transform: `translateY(${tops[i]}px)` }}>
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
