// The event-wide chat: a WebSocket to the control plane (cookie auth), shared by the event
// page and every session of the event. Reconnects with backoff if the connection drops.

import { enc, wsUrl } from "./api.js";
import { chatPanel, notice } from "./ui.js";

// Messages carry `at` in Unix seconds.
const atMs = (at) => (typeof at === "number" ? at * 1000 : Date.parse(at) || Date.now());

export function eventChat(ns, event, title = "Event chat") {
  let ws = null;
  let retry = 500;
  let everOpened = false;
  let failures = 0;
  const panel = chatPanel(title, (text) => {
    if (ws?.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({ type: "chat", text }));
    return true;
  }, { id: "event-chat" });
  const open = () => {
    ws = new WebSocket(wsUrl(`/api/events/${enc(ns)}/${enc(event)}/chat`));
    ws.onopen = () => {
      retry = 500;
      everOpened = true;
    };
    ws.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.type === "history") {
        panel.reset((e.messages || []).map((x) => ({ name: x.name, text: x.text, at_ms: atMs(x.at) })));
      } else if (e.type === "chat") {
        panel.add(e.message.name, e.message.text, atMs(e.message.at));
      } else if (e.type === "refused") {
        notice(e.message);
      }
    };
    ws.onclose = () => {
      // Never got in (no event chat, or no ticket): leave the panel out rather than retry.
      if (!everOpened && ++failures >= 2) {
        panel.el.hidden = true;
        return;
      }
      setTimeout(open, retry);
      retry = Math.min(retry * 2, 15_000);
    };
  };
  open();
  return panel;
}
