// The control-plane API as the pages use it: JSON in and out, and every refusal turned into
// an ApiError carrying the server's `message`, which pages show to people as it is.

export class ApiError extends Error {
  constructor(status, code, message, body = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const fallback = {
  401: "Sign in first.",
  403: "You are not allowed to do that.",
  404: "This page does not exist, or it is not open to you.",
  409: "This is full right now.",
  429: "Too many attempts. Wait a moment and try again.",
  503: "This is not available right now. Try again in a moment.",
};

// Turns a non-2xx response into an ApiError with the server's own words.
export async function errorFrom(res) {
  let body = {};
  try {
    body = await res.json();
  } catch {
    // Not JSON (a proxy's error page): fall back to a generic sentence.
  }
  const message =
    body.message || fallback[res.status] || `Something went wrong (HTTP ${res.status}).`;
  return new ApiError(res.status, body.error || `http_${res.status}`, message, body);
}

export async function api(method, path, body) {
  const init = { method, headers: { accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached. Check your connection.");
  }
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return { status: 204 };
  const text = await res.text();
  const data = text ? JSON.parse(text) : {};
  // Callers that care about 202 vs 200 (a room that is starting) read `status`.
  Object.defineProperty(data, "status", { value: res.status, enumerable: false });
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body = {}) => api("POST", path, body);
export const del = (path) => api("DELETE", path);

export const me = () => get("/api/me");

// Path segments after a fixed prefix: `/e/ns/name` with prefix "e" gives ["ns", "name"].
export function pathParams(prefix) {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (prefix) {
    if (parts[0] !== prefix) return [];
    return parts.slice(1);
  }
  return parts;
}

export const query = (name) => new URLSearchParams(location.search).get(name);

export const enc = encodeURIComponent;

// A WebSocket URL on this origin.
export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
