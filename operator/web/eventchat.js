// The event-wide chat: a WebSocket to the control plane (cookie auth), shared by the event
// page and every session of the event. Reconnects with backoff if the connection drops.

import { enc, wsUrl } from "./api.js";
import { chatPanel } from "./ui.js";

const atMs = (at) => (typeof at === "number" ? at : Date.parse(at) || Date.now());

export function eventChat(ns, event, title = "Event chat") {
  let ws = null;
  let retry = 500;
  const panel = chatPanel(title, (text) => {
    if (ws?.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({ type: "chat", text }));
    return true;
  }, { id: "event-chat" });
  const open = () => {
    ws = new WebSocket(wsUrl(`/api/events/${enc(ns)}/${enc(event)}/chat`));
    ws.onopen = () => {
      retry = 500;
    };
    ws.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.type === "history") {
        panel.reset((e.messages || []).map((x) => ({ name: x.from?.name, text: x.text, at_ms: atMs(x.at) })));
      } else if (e.type === "chat") {
        panel.add(e.from?.name, e.text, atMs(e.at));
      } else if (e.type === "error" || e.type === "refused") {
        panel.disable(e.message || "Chat is not available.");
      }
    };
    ws.onclose = () => {
      setTimeout(open, retry);
      retry = Math.min(retry * 2, 15_000);
    };
  };
  open();
  return panel;
}
