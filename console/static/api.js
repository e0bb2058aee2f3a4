// Sign-in and calls to the user API. The session (the user's Supabase
// access and refresh tokens) lives in this browser's localStorage; the
// service never sees a password.

const STORE = "orchable.console.session";
let settings = null;
let session = null;
let refreshing = null;

export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function loadSettings() {
  const r = await fetch("config.json", { cache: "no-store" });
  if (!r.ok) throw new APIError(r.status, "config", "The console settings could not be loaded.");
  settings = await r.json();
  try { session = JSON.parse(localStorage.getItem(STORE) || "null"); } catch { session = null; }
  return settings;
}

export function currentSession() { return session; }

function save(s) {
  session = s;
  if (s) localStorage.setItem(STORE, JSON.stringify(s)); else localStorage.removeItem(STORE);
}

function claims(token) {
  try {
    const b = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(b + "===".slice((b.length + 3) % 4)));
  } catch { return {}; }
}

function fromAuth(body, kind) {
  const c = claims(body.access_token);
  return {
    kind,
    access_token: body.access_token,
    refresh_token: body.refresh_token || null,
    expires_at: body.expires_at ? body.expires_at * 1000 : (c.exp ? c.exp * 1000 : Date.now() + 3600e3),
    user_id: (body.user && body.user.id) || c.sub || "",
    email: (body.user && body.user.email) || c.email || "",
  };
}

async function authToken(grant, payload) {
  const r = await fetch(`${settings.supabase_url}/auth/v1/token?grant_type=${grant}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", apikey: settings.anon_key || "" },
    body: JSON.stringify(payload),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const msg = body.error_description || body.msg || body.message || `Sign-in failed (${r.status}).`;
    throw new APIError(r.status, body.error_code || body.error || "auth", msg);
  }
  return body;
}

export async function signInWithPassword(email, password) {
  save(fromAuth(await authToken("password", { email, password }), "password"));
  return session;
}

export async function signInDev() {
  const r = await fetch("dev/session", { method: "POST" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new APIError(r.status, body.code || "dev", body.message || "Dev sign-in failed.");
  save({ kind: "dev", access_token: body.access_token, refresh_token: null,
    expires_at: Date.parse(body.expires_at), user_id: body.user_id, email: body.email });
  return session;
}

export function signOut() {
  const s = session;
  save(null);
  if (s && s.kind === "password" && settings) {
    fetch(`${settings.supabase_url}/auth/v1/logout`, { method: "POST",
      headers: { apikey: settings.anon_key || "", Authorization: `Bearer ${s.access_token}` } }).catch(() => {});
  }
}

// refresh renews the session: the refresh-token grant, or a new dev token.
async function refresh() {
  if (!session) throw new APIError(401, "signed_out", "Sign in first.");
  if (!refreshing) {
    refreshing = (async () => {
      try {
        if (session.kind === "dev") return await signInDev();
        if (!session.refresh_token) throw new APIError(401, "expired", "Your session expired; sign in again.");
        save(fromAuth(await authToken("refresh_token", { refresh_token: session.refresh_token }), "password"));
        return session;
      } finally { refreshing = null; }
    })();
  }
  return refreshing;
}

async function token() {
  if (!session) throw new APIError(401, "signed_out", "Sign in first.");
  if (session.expires_at - Date.now() < 30e3) await refresh();
  return session.access_token;
}

let onSignedOut = () => {};
export function whenSignedOut(fn) { onSignedOut = fn; }

export let requestCount = 0;

// api calls the user API as the signed-in user; one retry after a refresh
// when the token was refused.
export async function api(method, path, body) {
  for (let attempt = 0; ; attempt++) {
    let tok;
    try { tok = await token(); } catch (e) { save(null); onSignedOut(); throw e; }
    requestCount++;
    const r = await fetch(`/api/v1${path}`, {
      method,
      headers: { Authorization: `Bearer ${tok}`, ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    if (r.status === 401 && attempt === 0) {
      try { await refresh(); continue; } catch { save(null); onSignedOut(); }
    }
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    if (!r.ok) {
      const msg = (data && data.message) || `Request failed (${r.status}).`;
      throw new APIError(r.status, (data && data.code) || "request_failed", msg);
    }
    return data;
  }
}
