// dom.js: small DOM helpers of the console: element building with no HTML parsing (every value
// from the gateway is set as text), and the formatting of times, values and numbers.

// h("tag.class", {attr: value, onclick: fn}, child, ...): children are nodes, strings (text),
// arrays of those, or null/undefined/false (skipped).
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = String(v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

// Local time "2026-12-07 06:47:52" (and ".123" with ms), "–" when unknown.
export function fmtTime(ms, withMs = false) {
  if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return "–";
  const d = new Date(Number(ms));
  const s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${s}.${pad(d.getMilliseconds(), 3)}` : s;
}

// "12 s ago", "3 min ago"...
export function fmtAgo(ms, now = Date.now()) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function fmtValue(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(+v.toPrecision(6));
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function fmtNum(n, digits = 1) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(digits) + " M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(digits) + " k";
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

export function fmtDuration(s) {
  if (!Number.isFinite(s)) return "–";
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${hh} h` : hh ? `${hh} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

// A definition list from [[term, value], ...].
export function dl(pairs, cls = "facts") {
  return h("dl." + cls, null, pairs.map(([k, v]) => h("div", null, h("dt", { text: k }), h("dd", null, v))));
}

export function badge(online) {
  return h("span.badge." + (online ? "on" : "off"), { text: online ? "online" : "offline" });
}
