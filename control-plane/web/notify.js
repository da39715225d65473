// Browser notifications for hosts and moderators who turned them on in their settings: an
// ask-to-join or a request to share while their tab is hidden. Nothing when the tab is in view
// (the page shows it), the person is not signed in or turned them off, or the browser was not
// allowed to notify.

import { me } from "./api.js";

let wanted;

async function wants() {
  if (wanted === undefined) {
    wanted = me()
      .then((who) => Boolean(who.signedIn && who.notifications))
      .catch(() => false);
  }
  return wanted;
}

export async function notifyIfHidden(title, body) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  if (!(await wants())) return;
  const shown = new Notification(title, { body, tag: `${title}:${body}` });
  shown.onclick = () => {
    window.focus();
    shown.close();
  };
}
