/* `/s/<id>/chat`: the focused chat — the conversation only (inputs, replies, tool cards, errors),
 * streaming, with the input at the bottom. */
import { readOnly } from "../lib/api";
import { keepShare, linkClick } from "../lib/router";
import { shortId } from "../lib/format";
import type { Item } from "../lib/timeline";
import { useSessionStore } from "./SessionView";
import { ConnBadge, Empty, Pill } from "./common";
import { VirtualList } from "./VirtualList";
import { ItemView, type ItemActions } from "./Items";
import { ChatInput } from "./ChatInput";

const CHAT_KINDS = new Set(["run_start", "message", "tool", "error", "run_end"]);
const ACTIONS: ItemActions = { compact: true };

export function ChatView({ id }: { id: string }) {
  const store = useSessionStore(id);
  store.version.value;
  const items = store.fold.items.filter((it) => CHAT_KINDS.has(it.kind));
  const busy = !!store.activeRun();
  const s = store.session.value;
  return (
    <div class="page chat-page">
      <header class="chat-head">
        <a href={keepShare(`/s/${id}`)} onClick={linkClick} class="muted" data-testid="full-view">
          ← Full view
        </a>
        <span class="mono strong">{shortId(id)}</span>
        <span class="muted">{s?.agent}</span>
        <Pill kind={busy ? "running" : "idle"}>{busy ? "working…" : "idle"}</Pill>
        <span class="grow" />
        <ConnBadge status={store.status.value} />
      </header>
      {store.problem.value && <div class="banner warn" data-testid="problem">{store.problem.value === "deleted" ? "This session was deleted." : store.problem.value}</div>}
      <div class="chat-col">
        {items.length === 0 ? (
          <Empty title={store.status.value === "connecting" ? "Loading…" : "Say hello"}>{readOnly() ? "" : "Messages and replies appear here as they stream."}</Empty>
        ) : (
          <VirtualList
            class="timeline chat"
            label="Conversation"
            count={items.length}
            estimate={80}
            version={store.version.value}
            stickToBottom
            onNearTop={() => store.loadOlder()}
            keyOf={(i) => (items[i] as Item).key}
            render={(i) => <ItemView it={items[i] as Item} a={ACTIONS} />}
          />
        )}
        {!readOnly() && <ChatInput store={store} compact />}
      </div>
    </div>
  );
}
