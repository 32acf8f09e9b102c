/* The shell: top bar, the route's view, the token prompt. */
import { useEffect } from "preact/hooks";
import { signal } from "@preact/signals";
import type { ComponentType } from "preact";
import { needToken, readOnly, tokenVersion, setToken, storedToken } from "../lib/api";
import { route, linkClick } from "../lib/router";
import { restartFeed } from "../store/sessions";
import { SessionList } from "./SessionList";
import { SessionView } from "./SessionView";
import { ChatView } from "./ChatView";
import { TokenPrompt } from "./TokenPrompt";
import { Empty } from "./common";
import { theme, toggleTheme } from "../lib/theme";

export function App() {
  const r = route.value;
  useEffect(() => {
    if (tokenVersion.value) restartFeed();
  }, [tokenVersion.value]);
  return (
    <div class="app">
      <nav class="topbar">
        {readOnly() ? (
          <span class="brand">
            <span class="logo" aria-hidden="true" /> agentd
          </span>
        ) : (
          <a class="brand" href="/" onClick={linkClick}>
            <span class="logo" aria-hidden="true" /> agentd
          </a>
        )}
        <span class="grow" />
        {!readOnly() && <NodesSlot />}
        <button class="icon" onClick={toggleTheme} title="Light / dark" aria-label="Toggle dark mode" data-testid="theme">
          {theme.value === "dark" ? "☀" : "☾"}
        </button>
        {storedToken() && !readOnly() && (
          <button class="link small" onClick={() => setToken(null)} title="Forget the token in this tab">
            forget token
          </button>
        )}
      </nav>
      {r.name === "list" && <SessionList />}
      {r.name === "session" && <SessionView key={r.id} id={r.id} />}
      {r.name === "chat" && <ChatView key={r.id} id={r.id} />}
      {r.name === "notfound" && (
        <div class="page">
          <Empty title="No such page">
            <a href="/" onClick={linkClick}>
              Back to the sessions
            </a>
          </Empty>
        </div>
      )}
      {needToken.value && !readOnly() && <TokenPrompt />}
    </div>
  );
}

/* The node badge (components/Nodes.tsx) loads after the page: it costs the first load nothing. */
const NodeBadge = signal<ComponentType | null>(null);
function NodesSlot() {
  useEffect(() => {
    if (!NodeBadge.value) void import("./Nodes").then((m) => (NodeBadge.value = m.NodeBadge));
  }, []);
  const B = NodeBadge.value;
  return B ? <B /> : null;
}
