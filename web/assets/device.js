// device.js: one device: its state and every property (value, unit, time) updated live from
// /api/stream, a chart of a numeric property (history from /events, then live points), the event
// feed, and (admin tokens only) a form per function and per writable property.
import { api, enc, openStream, query, session } from "./api.js";
import { LineChart } from "./chart.js";
import { append, badge, clear, dl, fmtAgo, fmtTime, fmtValue, h } from "./dom.js";
import { field, isNumeric, readAll } from "./forms.js";

const FEED_MAX = 100; // events kept in the feed
const HISTORY_EVENTS = 1000; // property events read for the chart (one page, the API's maximum)

function eventSummary(ev) {
  switch (ev.kind) {
    case "property":
      return Object.entries(ev.values || {}).map(([k, v]) => `${k}=${fmtValue(v)}`).join(", ");
    case "event":
      return `${ev.name || ""} ${ev.values ? JSON.stringify(ev.values) : ""}`;
    case "online":
      return "connected";
    case "offline":
      return ev.name ? `reason ${ev.name}` : "disconnected";
    default: // command replies
      if (ev.success === false) return `${ev.name || ""} failed: ${ev.code || ""} ${ev.message || ""}`;
      return `${ev.name || ""} ok ${ev.outputs ? JSON.stringify(ev.outputs) : ""}` +
        (ev.values ? JSON.stringify(ev.values) : "");
  }
}

// The answer of a command as shown under its form.
function commandResult(out, res, err) {
  clear(out);
  out.className = "result";
  if (err) {
    out.classList.add("bad");
    append(out, [h("strong", { text: `${err.status || ""} ${err.code}` }), " ", err.message,
      err.path ? h("span.muted", { text: ` (at ${err.path})` }) : null]);
    return;
  }
  if (res.queued) {
    out.append(h("strong", { text: "queued" }), ` message ${res.messageId}: the device is offline; ` +
      "the command is sent when it connects.");
    return;
  }
  out.classList.add(res.success ? "good" : "bad");
  append(out, [h("strong", { text: res.success ? "success" : `failed: ${res.code}` }),
    ` message ${res.messageId}`, res.message ? ` — ${res.message}` : null]);
  const payload = res.outputs || res.properties;
  if (payload && Object.keys(payload).length)
    out.append(h("pre.outputs", { text: JSON.stringify(payload, null, 2) }));
}

export function deviceView(root, id) {
  let stopped = false, stream = null, chart = null, agoTimer = null;
  let dev = null, model = null, chartProp = null;
  const propCells = new Map(); // property id -> {value, time, row}
  const path = "/api/devices/" + enc(id);

  const err = h("p.error", { role: "alert" });
  const head = h("div.devhead");
  const live = h("span.live", { id: "live-state", text: "connecting…" });
  const propsBox = h("section.card", { "aria-labelledby": "props-h" });
  const chartBox = h("section.card", { "aria-labelledby": "chart-h" });
  const feedList = h("ol.feed", { id: "feed", "aria-live": "off" });
  const feedBox = h("section.card", { "aria-labelledby": "feed-h" },
    h("h2", { id: "feed-h", text: "Events" }), feedList);
  const cmdBox = h("div", { id: "commands" });
  root.append(h("p.crumbs", null, h("a", { href: "#/devices", text: "Devices" }), " / ", id),
    h("div.titlebar", null, h("h1", { text: id }), live), err, head,
    h("div.grid2", null, propsBox, h("div", null, chartBox, feedBox)), cmdBox);

  function renderHead() {
    clear(head).append(dl([
      ["Name", dev.name || "–"],
      ["Product", h("a", { href: "#/products/" + enc(dev.product), text: dev.product })],
      ["State", h("span", { id: "dev-state" }, badge(dev.online),
        !dev.online && dev.offline_reason ? h("span.muted", { text: " " + dev.offline_reason }) : null)],
      ["Adapter", dev.adapter || "–"], ["Peer", dev.peer || "–"],
      ["Last seen", h("span", { title: fmtTime(dev.last_seen), text: fmtAgo(dev.last_seen) })],
      ["Online since", dev.online && dev.online_since ? fmtTime(dev.online_since) : "–"],
    ]));
  }

  function specOf(pid) {
    return (model && (model.properties || []).find((p) => p.id === pid)) || { id: pid };
  }

  function renderProps() {
    propCells.clear();
    const ids = model ? (model.properties || []).map((p) => p.id) : Object.keys(dev.properties || {});
    const rows = ids.map((pid) => {
      const cur = (dev.properties || {})[pid] || {};
      const spec = specOf(pid);
      const value = h("td.value", { id: "prop-" + pid, text: fmtValue(cur.value) });
      const time = h("td.time", { text: fmtTime(cur.time), title: cur.time ? fmtAgo(cur.time) : "" });
      const row = h("tr", { dataset: { prop: pid } }, h("th", { scope: "row" }, h("code", { text: pid })),
        value, h("td", { text: spec.unit || "" }), time);
      propCells.set(pid, { value, time, row });
      return row;
    });
    const readBtn = h("button", { type: "button", id: "read-fresh", title: "Ask the device for its current values" },
      "Read from device");
    const readOut = h("div.result", { role: "status" });
    readBtn.addEventListener("click", async () => {
      readBtn.disabled = true;
      readOut.textContent = "asking the device…";
      try {
        const res = await api.get(path + "/properties?fresh=1");
        commandResult(readOut, res);
        for (const [pid, v] of Object.entries(res.properties || {}))
          if (v && v.time) updateProp(pid, v.value, v.time);
      } catch (e) {
        commandResult(readOut, null, e);
      } finally {
        readBtn.disabled = false;
      }
    });
    clear(propsBox).append(h("h2", { id: "props-h", text: "Properties" }),
      h("div.scroll", null, h("table.list.props", null,
        h("thead", null, h("tr", null, h("th", { text: "Property" }), h("th", { text: "Value" }),
          h("th", { text: "Unit" }), h("th", { text: "Time" }))),
        h("tbody", null, rows))),
      h("div.actions", null, readBtn), readOut);
  }

  function updateProp(pid, value, time) {
    if (!dev.properties) dev.properties = {};
    const old = dev.properties[pid];
    if (old && old.time && time < old.time) return; // an older value arriving late
    dev.properties[pid] = { value, time };
    const c = propCells.get(pid);
    if (c) {
      c.value.textContent = fmtValue(value);
      c.time.textContent = fmtTime(time);
      c.row.classList.remove("flash");
      void c.row.offsetWidth; // restarts the highlight
      c.row.classList.add("flash");
    }
    if (chart && pid === chartProp && typeof value === "number") chart.add(time, value);
  }

  function feedItem(ev) {
    return h("li", { dataset: { kind: ev.kind } },
      h("time", { datetime: new Date(ev.time).toISOString(), text: fmtTime(ev.time, true) }),
      h("span.kind." + ev.kind, { text: ev.kind }), h("span.what", { text: eventSummary(ev) }));
  }

  function addFeed(ev) {
    feedList.prepend(feedItem(ev));
    while (feedList.children.length > FEED_MAX) feedList.lastChild.remove();
  }

  async function loadChart(pid) {
    chartProp = pid;
    if (chart) chart.destroy();
    const area = chartBox.querySelector(".chart-area");
    const spec = specOf(pid);
    chart = new LineChart(area, { label: `${pid} over time`, unit: spec.unit || "" });
    try {
      const page = await api.get(path + "/events" + query({ kind: "property", limit: HISTORY_EVENTS }));
      if (stopped || chartProp !== pid) return;
      const pts = [];
      for (const ev of page.events || [])
        if (ev.values && typeof ev.values[pid] === "number") pts.push({ t: ev.time, v: ev.values[pid] });
      const cur = (dev.properties || {})[pid];
      if (cur && typeof cur.value === "number" && cur.time) pts.push({ t: cur.time, v: cur.value });
      chart.set(pts);
    } catch (e) {
      if (!stopped) err.textContent = "History: " + e.message;
    }
  }

  function renderChart() {
    const numeric = model ? (model.properties || []).filter(isNumeric).map((p) => p.id)
      : Object.entries(dev.properties || {}).filter(([, v]) => typeof v.value === "number").map(([k]) => k);
    clear(chartBox).append(h("h2", { id: "chart-h", text: "Chart" }));
    if (!numeric.length) { chartBox.append(h("p.muted", { text: "no numeric property" })); return; }
    const sel = h("select", { id: "chart-prop", "aria-label": "Property to chart" },
      numeric.map((p) => h("option", { value: p }, p)));
    sel.addEventListener("change", () => loadChart(sel.value));
    chartBox.append(h("div.actions", null, h("label", { for: "chart-prop" }, "Property "), sel),
      h("div.chart-area"));
    loadChart(numeric[0]);
  }

  function commandForm({ title, specs, note, submitLabel, btnId, send }) {
    const fields = {};
    for (const s of specs || []) fields[s.id] = field(s, { prefix: btnId });
    const out = h("div.result", { role: "status", "aria-live": "polite" });
    const btn = h("button", { type: "submit", id: btnId }, submitLabel);
    const form = h("form.card.command", {
      onsubmit: async (e) => {
        e.preventDefault();
        const r = readAll(fields);
        if (!r.ok) { commandResult(out, null, { code: "invalid_input", message: r.error }); return; }
        btn.disabled = true;
        clear(out).append(h("span.muted", { text: "waiting for the device…" }));
        try {
          commandResult(out, await send(r.value));
        } catch (ex) {
          commandResult(out, null, ex);
        } finally {
          btn.disabled = false;
        }
      },
    }, title ? h("h3", null, title) : null, note ? h("p.muted", { text: note }) : null,
    Object.values(fields).map((f) => f.el), h("div.actions", null, btn), out);
    return form;
  }

  function renderCommands() {
    clear(cmdBox);
    if (!session.canWrite || !model) return; // a read token sees no write controls
    const fns = model.functions || [];
    const writable = (model.properties || []).filter((p) => p.access === "rw");
    if (fns.length) {
      cmdBox.append(h("h2", { text: "Functions" }), h("div.cmdgrid", null, fns.map((f) =>
        commandForm({
          title: h("code", { text: f.id }), specs: f.inputs,
          note: [f.name, f.description, f.timeout_ms ? `reply within ${f.timeout_ms} ms` : null].filter(Boolean).join(" · "),
          submitLabel: "Invoke", btnId: "invoke-" + f.id,
          send: (inputs) => api.post(`${path}/functions/${enc(f.id)}`, { inputs }),
        }))));
    }
    if (writable.length) {
      cmdBox.append(h("h2", { text: "Write properties" }), h("div.cmdgrid", null, writable.map((p) =>
        commandForm({
          title: null, specs: [{ ...p, required: true }],
          submitLabel: "Write", btnId: "write-" + p.id,
          send: (v) => api.put(`${path}/properties`, { properties: v }),
        }))));
    }
  }

  function onStream(ev) {
    if (stopped || ev.device !== id) return;
    addFeed(ev);
    if (!dev) return; // the state read that follows has it
    if (ev.kind === "property") {
      for (const [pid, v] of Object.entries(ev.values || {})) updateProp(pid, v, ev.time);
      dev.last_seen = ev.time;
    } else if (ev.kind === "online" || ev.kind === "offline") {
      dev.online = ev.kind === "online";
      if (dev.online) dev.online_since = ev.time;
      else dev.offline_reason = ev.name || null;
      dev.last_seen = ev.time;
      renderHead();
    }
  }

  async function load() {
    try {
      // the stream first, so that nothing committed between the reads and the stream is missed
      let lost = false;
      stream = openStream({ device: id }, onStream, (s) => {
        live.textContent = s === "open" ? "live" : s === "retry" ? "reconnecting…" : "";
        live.className = "live " + s;
        if (s === "retry") lost = true;
        if (s === "open" && lost && dev) { // values committed while the stream was down
          lost = false;
          api.get(path).then((d) => {
            if (stopped) return;
            for (const [pid, v] of Object.entries(d.properties || {}))
              if (v && v.time) updateProp(pid, v.value, v.time);
            Object.assign(dev, { ...d, properties: dev.properties });
            renderHead();
          }).catch(() => {});
        }
      });
      dev = await api.get(path);
      if (stopped) return;
      try {
        model = await api.get("/api/products/" + enc(dev.product));
      } catch (e) {
        model = null;
        err.textContent = "Thing model not available: " + e.message;
      }
      if (stopped) return;
      renderHead();
      renderProps();
      renderChart();
      renderCommands();
      const page = await api.get(path + "/events" + query({ limit: 50 }));
      if (stopped) return;
      const seen = new Set(Array.from(feedList.children).map((li) => li.textContent));
      for (const ev of page.events || []) { // newest first, below the live ones
        const li = feedItem(ev);
        if (!seen.has(li.textContent)) feedList.append(li);
      }
      agoTimer = setInterval(() => { if (dev) renderHead(); }, 10000);
    } catch (e) {
      if (!stopped) err.textContent = e.status === 404 ? `No device "${id}".` : e.message;
    }
  }
  load();
  return () => {
    stopped = true;
    if (stream) stream.close();
    if (chart) chart.destroy();
    clearInterval(agoTimer);
  };
}
