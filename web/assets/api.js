// api.js: the console's only way to the gateway: the management API with the session's bearer
// token (sessionStorage), /metrics parsing, and /api/stream read with fetch() (EventSource cannot
// send an Authorization header) with reconnection.

const TOKEN_KEY = "iotgw.token";
const ROLE_KEY = "iotgw.role";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get role() { return sessionStorage.getItem(ROLE_KEY) || "read"; },
  get canWrite() { return this.role === "admin"; },
  save(token, role) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(ROLE_KEY, role);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const msg = (body && body.message) || fallback || `HTTP ${status}`;
    super(msg);
    this.status = status;
    this.code = (body && body.error) || "http_" + status;
    this.path = body && body.path;
    this.body = body;
  }
}

// Listeners of "the token is no longer accepted" (401 on any request).
const unauthorizedHandlers = [];
export function onUnauthorized(fn) { unauthorizedHandlers.push(fn); }

function headers(token, extra) {
  const hd = { Accept: "application/json", ...extra };
  if (token) hd.Authorization = "Bearer " + token;
  return hd;
}

async function send(method, path, body, opts = {}) {
  const token = opts.token !== undefined ? opts.token : session.token;
  const init = { method, headers: headers(token), signal: opts.signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, null, "the gateway cannot be reached");
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (res.status === 401 && opts.token === undefined) unauthorizedHandlers.forEach((f) => f());
  if (!res.ok) throw new ApiError(res.status, json, text.slice(0, 200));
  return json === null ? text : json;
}

export const api = {
  get: (path, opts) => send("GET", path, undefined, opts),
  post: (path, body, opts) => send("POST", path, body, opts),
  put: (path, body, opts) => send("PUT", path, body, opts),
  raw: send,
};

export const enc = encodeURIComponent;

export function query(params) {
  const q = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${enc(k)}=${enc(v)}`).join("&");
  return q ? "?" + q : "";
}

// Checks the token and finds its role (GET /api/token: 401 for a token the gateway does not know).
export async function login(token) {
  const who = await api.get("/api/token", { token });
  return who && who.role === "admin" ? "admin" : "read";
}

// Prometheus text -> Map "name{labels}" -> number, plus byName(name) -> [{labels, value}].
export function parseMetrics(text) {
  const all = new Map();
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const sp = line.lastIndexOf(" ");
    if (sp < 0) continue;
    all.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return {
    all,
    get(key, dflt = 0) { return all.has(key) ? all.get(key) : dflt; },
    byName(name) {
      const out = [];
      for (const [k, v] of all) {
        if (k === name) out.push({ labels: {}, value: v });
        else if (k.startsWith(name + "{")) {
          const labels = {};
          for (const m of k.slice(name.length + 1, -1).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
            labels[m[1]] = m[2];
          out.push({ labels, value: v });
        }
      }
      return out;
    },
  };
}

export async function metrics(opts) {
  return parseMetrics(await send("GET", "/metrics", undefined, opts));
}

// Reads /api/stream with the filters (device, product, kind) and calls onEvent(json) per event,
// onState("open"|"retry"|"closed"). Reconnects with back-off (1 s doubling to 30 s) until
// close(). One stream per page: the gateway bounds stream clients (admin.stream_clients_max).
export function openStream(filters, onEvent, onState = () => {}) {
  let ctl = null, closed = false, delay = 1000, timer = null;
  const path = "/api/stream" + query(filters || {});

  async function run() {
    ctl = new AbortController();
    try {
      const res = await fetch(path, {
        headers: headers(session.token, { Accept: "text/event-stream" }),
        signal: ctl.signal, cache: "no-store",
      });
      if (res.status === 401) { unauthorizedHandlers.forEach((f) => f()); return; }
      if (!res.ok || !res.body) throw new Error("stream answered " + res.status);
      onState("open");
      delay = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let at;
        while ((at = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, at);
          buf = buf.slice(at + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(l[5] === " " ? 6 : 5)).join("\n");
          if (!data) continue; // a comment (keep-alive)
          let ev;
          try { ev = JSON.parse(data); } catch { continue; }
          onEvent(ev);
        }
      }
    } catch (e) {
      if (closed) return;
    }
    if (closed) return;
    onState("retry");
    timer = setTimeout(run, delay);
    delay = Math.min(delay * 2, 30000);
  }
  run();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (ctl) ctl.abort();
      onState("closed");
    },
  };
}
