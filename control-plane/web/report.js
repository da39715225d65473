// The event report `/report/{ns}/{event}` (organisers): attendance per session (peak
// watching, peak on camera, unique joiners) and the recordings to download.

import { enc, get, pathParams } from "./api.js";
import { main, refuse, whoami, refusedPage } from "./page.js";
import { clear, h, notice, setTitle } from "./ui.js";

const num = (n) => h("td", { class: "num" }, n === undefined || n === null ? "–" : String(n));

function duration(s) {
  if (!s && s !== 0) return "";
  const m = Math.round(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m} min`;
}

function size(bytes) {
  if (!bytes && bytes !== 0) return "";
  return bytes > 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

async function run() {
  const [ns, event] = pathParams("report");
  if (!ns || !event) {
    notice("This link is not an event report link.");
    return;
  }
  await whoami();
  let r;
  try {
    r = await get(`/api/events/${enc(ns)}/${enc(event)}/report`);
  } catch (e) {
    refusedPage(e);
    return;
  }
  setTitle(`Report · ${r.title || event}`);
  const sessions = r.sessions || [];
  const recordings = sessions.flatMap((s) => (s.recordings || []).map((x) => ({ ...x, sessionTitle: s.title || s.session })));
  clear(
    main(),
    h("p", {}, h("a", { href: `/e/${enc(ns)}/${enc(event)}` }, "Back to the event")),
    h("h2", { class: "section-title" }, "Attendance"),
    sessions.length
      ? h(
          "table",
          { id: "attendance" },
          h("thead", {}, h("tr", {}, h("th", {}, "Session"), h("th", {}, "Peak watching"), h("th", {}, "Peak on camera"), h("th", {}, "Unique joiners"))),
          h(
            "tbody",
            {},
            sessions.map((s) => h("tr", {}, h("td", {}, s.title || s.session), num(s.peakWatching), num(s.peakOnCamera), num(s.uniqueJoiners))),
          ),
        )
      : h("p", { class: "muted" }, "No attendance recorded yet."),
    h("h2", { class: "section-title" }, "Recordings"),
    recordings.length
      ? h(
          "table",
          { id: "recordings" },
          h("thead", {}, h("tr", {}, h("th", {}, "Session"), h("th", {}, "Started"), h("th", {}, "Length"), h("th", {}, "Size"), h("th", {}, "File"))),
          h(
            "tbody",
            {},
            recordings.map((x) =>
              h(
                "tr",
                {},
                h("td", {}, x.sessionTitle),
                h("td", {}, x.start ? new Date(x.start).toLocaleString() : ""),
                h("td", {}, duration(x.durationSeconds)),
                h("td", {}, size(x.sizeBytes)),
                h("td", {}, x.url ? h("a", { href: x.url, download: "" }, "Download MP4") : [x.state || "", x.file ? h("code", {}, ` ${x.file}`) : null]),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, r.ended ? "No recordings." : "Recordings are listed here when the event ends."),
  );
}

run();
