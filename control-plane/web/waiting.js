// Waiting for a stage to go live: the page says when it is scheduled, an organiser gets
// "Start the stage", and everyone's page asks again every few seconds and joins by itself
// as soon as the room is live.

import { enc, post, sleep } from "./api.js";
import { main, refuse, refusedPage } from "./page.js";
import { button, clear, h, notice } from "./ui.js";

const RETRY_MS = 1500;

// Resolves with the join answer once the stage is live; null when it is refused for another
// reason (already said on the page).
export async function joinStageWhenLive(ns, name, stage, body) {
  const api = `/api/stages/${enc(ns)}/${enc(name)}`;
  let shown = false;
  for (;;) {
    try {
      return await post(`${api}/join`, body);
    } catch (e) {
      if (e.code !== "not_live") {
        refusedPage(e);
        return null;
      }
      if (!shown) {
        shown = true;
        notice(e.message, "info");
        const start = button("Start the stage", async () => {
          try {
            await post(`${api}/start`);
            notice("Starting… the page joins in a moment.", "info");
          } catch (err) {
            refuse(err);
          }
        }, { class: "primary", "data-action": "start" });
        clear(
          main(),
          h(
            "div",
            { class: "waiting-screen", id: "not-live" },
            h("p", {}, stage.start && stage.lifecycle === "Scheduled" ? `Scheduled for ${new Date(stage.start).toLocaleString()}.` : "This stage has not started."),
            stage.isOrganizer ? start : h("div", { class: "spinner" }),
          ),
        );
      }
      await sleep(RETRY_MS);
    }
  }
}
