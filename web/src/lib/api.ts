/*
 * The one AgentdClient of the page. Its token is, in order: a share token from the URL (read-only
 * view; kept for this page only), else the server token the user typed once (sessionStorage: this
 * tab, until it closes). It goes out as a bearer header only; no URL the UI makes carries it.
 */
import { signal } from "@preact/signals";
import { AgentdClient, AgentdError } from "@agentd/client";

const TOKEN_KEY = "agentd.token";

function readShare(): string | null {
  return new URLSearchParams(location.search).get("share");
}

/** The share token of this page, when it is a shared (read-only) view. */
export const shareToken = signal<string | null>(readShare());
export const readOnly = () => shareToken.value !== null;

/** Set when the server answered 401 and there is no share token: the UI asks for the token. */
export const needToken = signal(false);

export function storedToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(t: string | null) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lives as long as this page */
  }
  memToken = t;
  needToken.value = false;
  tokenVersion.value++;
}
let memToken: string | null = storedToken();

/** Bumped when the token changes, so stores reconnect with it. */
export const tokenVersion = signal(0);

export const api = new AgentdClient({ token: () => shareToken.value ?? memToken });

/** Call after a failed request: a 401 without a share token means "ask for the token". */
export function noteError(e: unknown): string {
  if (e instanceof AgentdError) {
    if (e.status === 401 && !shareToken.value) needToken.value = true;
    return `${e.code}: ${e.message}`;
  }
  return e instanceof Error ? e.message : String(e);
}

/** A stream said 401/403: ask for the token (unless this is a share view, where it cannot help). */
export function noteUnauthorized() {
  if (!shareToken.value) needToken.value = true;
}

/** Re-reads the share token after a client-side navigation. */
export function syncShareFromUrl() {
  shareToken.value = readShare();
}
