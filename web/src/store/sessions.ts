/*
 * The session list, live from the `sessions` feed (a State Protocol stream). Followed only while the
 * list is on screen: a tab holds at most one live connection (this feed, or the open session).
 */
import { signal } from "@preact/signals";
import { followSessions, type FollowHandle, type FollowStatus, type Session } from "@agentd/client";
import { api, noteError, noteUnauthorized } from "../lib/api";

export const sessions = signal<Session[]>([]);
export const feedStatus = signal<FollowStatus>("connecting");
export const feedError = signal<string | null>(null);
let handle: FollowHandle | null = null;
let users = 0;
let pending: Map<string, Session> | null = null;

function publish() {
  if (!pending) return;
  const list = [...pending.values()].filter((s) => s.status !== "deleted");
  list.sort((a, b) => b.created_at - a.created_at);
  sessions.value = list;
  pending = null;
}

export function useFeed(): () => void {
  if (users++ === 0) {
    handle = followSessions(api, {
      onChange: (m) => {
        const first = pending === null;
        pending = m;
        /* one list per animation frame, however many updates arrive */
        if (first) requestAnimationFrame(publish);
      },
      onStatus: (st, err) => {
        feedStatus.value = st;
        if (st === "unauthorized") noteUnauthorized();
        feedError.value = err ? noteError(err) : null;
      },
    });
  }
  return () => {
    if (--users === 0) {
      handle?.stop();
      handle = null;
    }
  };
}

/** Restarts the feed (after the token changed). */
export function restartFeed() {
  if (!handle) return;
  handle.stop();
  users = 0;
  useFeed();
}
