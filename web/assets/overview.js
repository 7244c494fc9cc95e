// overview.js: the overview page: devices online per adapter and product, message rates
// (received, accepted, rejected by reason), the store queue and commits, the outbox and the north
// link, from /api/status and /metrics polled every 2 s (rates from counter differences).
import { api, metrics, query } from "./api.js";
import { sparkline } from "./chart.js";
import { clear, dl, fmtDuration, fmtNum, h } from "./dom.js";

const POLL_MS = 2000;
const HISTORY = 60; // samples kept for the sparklines (2 minutes)
const PRODUCT_ONLINE_MS = 10000; // online counts per product: paged, so less often
const ONLINE_PAGES_MAX = 10; // ... and at most this many pages of 1,000 online devices

export function overviewView(root) {
  let timer = null, prev = null, stopped = false, productsAt = 0;
  const hist = { recv: [], acc: [], rej: [] };
  let products = null, onlineByProduct = null, onlineCapped = false;

  const err = h("p.error", { role: "alert" });
  const cards = h("div.cards");
  const rejected = h("div.card");
  const perProduct = h("div.card");
  root.append(h("h1", { text: "Overview" }), err, cards, h("div.grid2", null, perProduct, rejected));

  function card(title, value, sub, spark) {
    return h("section.card.stat", { "aria-label": title },
      h("h2", { text: title }), h("p.big", { text: value }), sub ? h("p.sub", null, sub) : null,
      spark || null);
  }

  async function loadProducts() {
    // device counts per product come with the list; online ones from the paged online list
    const list = await api.get("/api/products");
    products = list.products || [];
    const counts = {};
    let cursor = null, pages = 0;
    onlineCapped = false;
    do {
      const page = await api.get("/api/devices" + query({ online: "true", limit: 1000, cursor }));
      for (const d of page.devices) counts[d.product] = (counts[d.product] || 0) + 1;
      cursor = page.next_cursor;
      pages++;
    } while (cursor && pages < ONLINE_PAGES_MAX && !stopped);
    onlineCapped = !!cursor;
    onlineByProduct = counts;
    productsAt = Date.now();
  }

  function renderProducts() {
    clear(perProduct).append(h("h2", { text: "Devices per product" }));
    if (!products) { perProduct.append(h("p.muted", { text: "loading…" })); return; }
    const rows = products.map((p) => h("tr", null,
      h("td", null, h("a", { href: "#/products/" + encodeURIComponent(p.id), text: p.id })),
      h("td", { text: p.protocol || "–" }),
      h("td.num", null, h("a", { href: "#/devices?product=" + encodeURIComponent(p.id) + "&online=true",
        text: (onlineByProduct[p.id] || 0) + (onlineCapped ? "+" : "") })),
      h("td.num", { text: onlineCapped ? "–" : Math.max(0, p.devices - (onlineByProduct[p.id] || 0)) }),
      h("td.num", { text: p.devices }),
    ));
    perProduct.append(h("table.list", null,
      h("thead", null, h("tr", null, h("th", { text: "Product" }), h("th", { text: "Protocol" }),
        h("th.num", { text: "Online" }), h("th.num", { text: "Offline" }),
        h("th.num", { text: "Devices" }))),
      h("tbody", null, rows)));
    if (onlineCapped) perProduct.append(h("p.hint", { text: `Online counts stop at ${ONLINE_PAGES_MAX * 1000} devices.` }));
  }

  async function tick() {
    try {
      const [st, m] = await Promise.all([api.get("/api/status"), metrics()]);
      if (stopped) return;
      if (!products || Date.now() - productsAt > PRODUCT_ONLINE_MS) await loadProducts();
      if (stopped) return;
      err.textContent = "";
      const now = performance.now();
      const cur = {
        t: now,
        recv: m.get("iotgw_messages_received_total"),
        acc: m.get("iotgw_messages_accepted_total"),
        rej: m.byName("iotgw_messages_rejected_total"),
        commits: m.get("iotgw_store_batches_total"),
        events: m.get("iotgw_events_committed_total"),
      };
      const rate = (k) => (prev ? Math.max(0, (cur[k] - prev[k]) / ((now - prev.t) / 1000)) : NaN);
      const rejTotal = cur.rej.reduce((a, r) => a + r.value, 0);
      const rejRate = prev ? Math.max(0, (rejTotal - prev.rejTotal) / ((now - prev.t) / 1000)) : NaN;
      cur.rejTotal = rejTotal;
      const r = { recv: rate("recv"), acc: rate("acc"), rej: rejRate, commits: rate("commits"),
                  events: rate("events") };
      for (const k of ["recv", "acc", "rej"]) if (Number.isFinite(r[k])) {
        hist[k].push(r[k]);
        if (hist[k].length > HISTORY) hist[k].shift();
      }
      const sessions = Object.entries(st.sessions || {}).map(([a, n]) => `${a} ${n}`).join(" · ");
      const north = st.north || {};
      const store = st.store || {};
      clear(cards).append(
        card("Devices online", `${fmtNum(st.devices_online)} / ${fmtNum(st.devices)}`, sessions || "no adapters"),
        card("Messages in /s", fmtNum(r.recv), `total ${fmtNum(cur.recv, 0)}`, sparkline(hist.recv)),
        card("Accepted /s", fmtNum(r.acc), `total ${fmtNum(cur.acc, 0)}`, sparkline(hist.acc)),
        card("Rejected /s", fmtNum(r.rej), `total ${fmtNum(rejTotal, 0)}`, sparkline(hist.rej)),
        card("Store queue", `${fmtNum(store.queue_depth)} / ${fmtNum(store.queue_max)}`,
          store.failing ? h("span.bad", { text: `commits failing: ${store.failure_reason}` })
            : `${fmtNum(r.commits)} commits/s · ${fmtNum(r.events)} events/s` +
              (r.commits > 0 ? ` · ${fmtNum(r.events / r.commits)} per commit` : "") +
              (Number.isFinite(store.commit_ms_last) ? ` · last commit ${store.commit_ms_last.toFixed(2)} ms` : "")),
        card("North link", !north.enabled ? "disabled" : north.connected ? "connected" : "down",
          north.enabled ? `outbox ${fmtNum(north.outbox_depth)} · in flight ${fmtNum(north.inflight)}` +
            ` · forwarded ${fmtNum(north.forwarded, 0)}` : `outbox ${fmtNum(north.outbox_depth)}`),
        card("Gateway", st.version || "–", h("span", null,
          `up ${fmtDuration(st.uptime_s)} · ${st.loops} loops · ${st.threads} threads · ` +
          `${fmtNum(st.connections)} connections`)),
      );
      const reasons = cur.rej.filter((x) => x.value > 0).sort((a, b) => b.value - a.value);
      clear(rejected).append(h("h2", { text: "Rejected messages by reason" }),
        reasons.length ? h("table.list", null,
          h("thead", null, h("tr", null, h("th", { text: "Reason" }), h("th.num", { text: "/s" }),
            h("th.num", { text: "Total" }))),
          h("tbody", null, reasons.map((x) => {
            const p = prev && prev.rej.find((y) => y.labels.reason === x.labels.reason);
            const rr = p ? (x.value - p.value) / ((now - prev.t) / 1000) : NaN;
            return h("tr", null, h("td", { text: x.labels.reason || "–" }),
              h("td.num", { text: fmtNum(rr) }), h("td.num", { text: fmtNum(x.value, 0) }));
          })))
          : h("p.muted", { text: "none" }));
      renderProducts();
      prev = cur;
    } catch (e) {
      if (!stopped) err.textContent = "Cannot refresh: " + e.message;
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  }
  renderProducts();
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
