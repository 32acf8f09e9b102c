/*
 * Agent output is untrusted. Markdown is rendered by marked with raw HTML turned into text (the
 * renderer never emits the agent's HTML), then sanitized by DOMPurify (drops javascript: and other
 * unsafe URLs, event handlers, anything a parser quirk could let through). Links open in a new tab
 * without a referrer. What one message may render is capped (MD_CAP); the view offers the rest.
 */
import { Marked } from "marked";
import DOMPurify from "dompurify";

export const MD_CAP = 20_000;

const escapeHtml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");

const md = new Marked({ gfm: true, breaks: true, async: false });
md.use({
  renderer: {
    html(token) {
      return escapeHtml(token.text);
    },
    image(token) {
      /* no remote fetches on the viewer's behalf: an image is shown as its link */
      const href = token.href ?? "";
      return `<a href="${escapeHtml(href)}">${escapeHtml(token.text || href)}</a>`;
    },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

const cache = new Map<string, string>();

/** Sanitized HTML for a markdown text (at most MD_CAP characters of it). */
export function renderMarkdown(text: string): string {
  const src = text.length > MD_CAP ? text.slice(0, MD_CAP) : text;
  const hit = cache.get(src);
  if (hit !== undefined) return hit;
  const raw = md.parse(src) as string;
  const clean = DOMPurify.sanitize(raw, {
    FORBID_TAGS: ["style", "img", "svg", "math", "form", "input", "button", "iframe", "object", "embed"],
    FORBID_ATTR: ["style"],
    ALLOW_DATA_ATTR: false,
  });
  if (cache.size > 500) cache.clear();
  cache.set(src, clean);
  return clean;
}
