/* Routes (deep-linkable): /  |  /s/<id>  |  /s/<id>?share=<token>  |  /s/<id>/chat */
import { signal } from "@preact/signals";
import { syncShareFromUrl } from "./api";

export type Route =
  | { name: "list" }
  | { name: "session"; id: string }
  | { name: "chat"; id: string }
  | { name: "notfound"; path: string };

export function parse(pathname: string): Route {
  if (pathname === "/" || pathname === "/index.html") return { name: "list" };
  const m = /^\/s\/([A-Za-z0-9_-]+)(\/chat)?\/?$/.exec(pathname);
  if (m) return m[2] ? { name: "chat", id: m[1] as string } : { name: "session", id: m[1] as string };
  return { name: "notfound", path: pathname };
}

export const route = signal<Route>(parse(location.pathname));

export function navigate(to: string, replace = false) {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  syncShareFromUrl();
  route.value = parse(location.pathname);
  window.scrollTo(0, 0);
}

addEventListener("popstate", () => {
  syncShareFromUrl();
  route.value = parse(location.pathname);
});

/** The share query of the current page, to keep on links inside a shared view. */
export function keepShare(path: string): string {
  const s = new URLSearchParams(location.search).get("share");
  return s ? `${path}?share=${encodeURIComponent(s)}` : path;
}

/** Click handler for in-app links: plain clicks navigate without a reload. */
export function linkClick(e: MouseEvent) {
  const a = (e.currentTarget as HTMLAnchorElement | null) ?? null;
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.origin !== location.origin) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
}
