// The hub's JSON API as the signed-in browser sees it: the session cookie travels by itself
// (HttpOnly: scripts never read it); unsafe methods carry the session's CSRF token.
let csrf = null;
let onSignedOut = null;

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.errorId = (body && body.error_id) || "";
    this.details = (body && body.details) || null;
    this.retryAfter = 0;
  }
}

// Called when the hub says the session is gone (expired, revoked): the screen keeps what was
// typed (see drafts.js) and sends the user to sign in, then back.
export function whenSignedOut(fn) {
  onSignedOut = fn;
}

export async function api(method, path, body, { headers = {}, quiet401 = false } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrf) h["X-CSRF-Token"] = csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (exc) {
    const err = new ApiError(0, { message: String(exc), error_id: "unreachable" });
    throw err;
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text.slice(0, 200) };
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    err.retryAfter = Number(resp.headers.get("Retry-After") || 0);
    if (resp.status === 401 && !quiet401 && onSignedOut) onSignedOut(err);
    throw err;
  }
  return data;
}

// The current session: {user, csrf, expires_at} or null.
export async function loadSession() {
  try {
    const s = await api("GET", "/auth/session", undefined, { quiet401: true });
    csrf = s.csrf;
    return s;
  } catch (err) {
    if (err.status === 401) return null;
    throw err;
  }
}

export async function signIn(username, password) {
  const s = await api("POST", "/auth/login", { username, password }, { quiet401: true });
  csrf = s.csrf;
  return s;
}

export async function signOut() {
  try {
    await api("POST", "/auth/logout", {}, { quiet401: true });
  } finally {
    csrf = null;
  }
}

// Where to go after signing in: only a path on this hub (never an open redirect).
export function safeNext(value, fallback) {
  return value && value.startsWith("/") && !value.startsWith("//") && !value.includes("\\")
    ? value
    : fallback;
}

export function loginUrl(reason) {
  const next = location.pathname + location.search + location.hash;
  return `/login?next=${encodeURIComponent(next)}${reason ? `&reason=${reason}` : ""}`;
}

export function homeOf(role) {
  return { calltaker: "/console/", supervisor: "/board/", admin: "/board/" }[role] || "/";
}
