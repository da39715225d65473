// When a page re-joins a live room by itself: its SFU pod died, the relay it watched through
// is leaving, or the control plane restarted. The decisions are plain functions (how long to
// wait before the next try, whether an error is worth another try); RoomView does the I/O.

// The first retry comes quickly (a replacement pod or a restarted control plane is often back
// within seconds); later ones spread out, up to MAX_DELAY_MS.
export const FIRST_DELAY_MS = 300;
export const MAX_DELAY_MS = 4000;
// After this long without getting back in, the page stops and offers a button.
export const GIVE_UP_MS = 90_000;

// The wait before try number `attempt` (0 for the first retry): exponential, capped, and
// jittered over its upper half so a room's pages do not all knock at the same instant.
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

// Whether trying again may help: the network or the server was away (no answer, a 5xx, a
// room not live yet because its pod is being replaced, a room still starting), or the SFU
// closed the socket before letting us in. A refusal in words (ended, not allowed, full) is
// final: the page shows it instead.
export function worthRetrying(e) {
  if (!e) return true;
  if (e.refused) return false;
  if (e.code === "not_live" || e.code === "network") return true;
  if (typeof e.status === "number") return e.status === 0 || e.status >= 500 || e.status === 429;
  return true;
}
