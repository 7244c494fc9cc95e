// devices.js: the device list: search (q), product and online filters, server-side pages with the
// API's cursors (a stack of the cursors seen gives "previous"); never more than one page loaded.
import { api, query } from "./api.js";
import { append, badge, clear, fmtAgo, h } from "./dom.js";

const PAGE = 50;
const REFRESH_MS = 10000;

// Filters live in the hash (#/devices?product=x&online=true&q=y) so that links and reloads keep them.
function hashParams() {
  const i = location.hash.indexOf("?");
  return new URLSearchParams(i >= 0 ? location.hash.slice(i + 1) : "");
}

export function devicesView(root) {
  const hp = hashParams();
  const state = { q: hp.get("q") || "", product: hp.get("product") || "",
                  online: hp.get("online") || "", cursors: [null], page: 0 };
  let stopped = false, timer = null, seq = 0, searchTimer = null;

  const q = h("input", { type: "search", id: "dev-q", placeholder: "id or name", value: state.q,
                         "aria-label": "Search devices by id or name" });
  const product = h("select", { id: "dev-product", "aria-label": "Product" },
    h("option", { value: "" }, "all products"));
  const online = h("select", { id: "dev-online", "aria-label": "Online" },
    h("option", { value: "" }, "online and offline"), h("option", { value: "true" }, "online"),
    h("option", { value: "false" }, "offline"));
  online.value = state.online;
  const prevBtn = h("button", { type: "button", id: "dev-prev" }, "‹ Previous");
  const nextBtn = h("button", { type: "button", id: "dev-next" }, "Next ›");
  const info = h("span.muted", { id: "dev-page", "aria-live": "polite" });
  const err = h("p.error", { role: "alert" });
  const tbody = h("tbody", { id: "dev-rows" });
  root.append(
    h("h1", { text: "Devices" }),
    h("form.filters", { role: "search", onsubmit: (e) => { e.preventDefault(); restart(); } },
      q, product, online),
    err,
    h("div.scroll", null, h("table.list.devices", null,
      h("thead", null, h("tr", null, h("th", { text: "Device" }), h("th", { text: "Name" }),
        h("th", { text: "Product" }), h("th", { text: "State" }), h("th", { text: "Adapter" }),
        h("th", { text: "Last seen" }))),
      tbody)),
    h("div.pager", null, prevBtn, info, nextBtn));

  api.get("/api/products").then((list) => {
    for (const p of list.products || []) product.append(h("option", { value: p.id }, p.id));
    product.value = state.product;
  }).catch(() => {});

  function syncHash() {
    const qs = new URLSearchParams();
    if (state.q) qs.set("q", state.q);
    if (state.product) qs.set("product", state.product);
    if (state.online) qs.set("online", state.online);
    const want = "#/devices" + (qs.toString() ? "?" + qs : "");
    if (location.hash !== want) history.replaceState(null, "", want);
  }

  function restart() {
    state.q = q.value.trim();
    state.product = product.value;
    state.online = online.value;
    state.cursors = [null];
    state.page = 0;
    syncHash();
    load();
  }

  async function load() {
    clearTimeout(timer);
    const my = ++seq;
    try {
      const page = await api.get("/api/devices" + query({
        limit: PAGE, q: state.q, product: state.product, online: state.online,
        cursor: state.cursors[state.page],
      }));
      if (stopped || my !== seq) return;
      err.textContent = "";
      state.cursors[state.page + 1] = page.next_cursor || null;
      append(clear(tbody), page.devices.map((d) => h("tr", { dataset: { id: d.id } },
        h("td", null, h("a", { href: "#/devices/" + encodeURIComponent(d.id), text: d.id })),
        h("td", { text: d.name || "" }),
        h("td", { text: d.product }),
        h("td", null, badge(d.online), d.online ? null : d.offline_reason ?
          h("span.muted", { text: " " + d.offline_reason }) : null),
        h("td", { text: d.adapter || "–" }),
        h("td", { title: d.last_seen ? new Date(d.last_seen).toISOString() : "",
                  text: fmtAgo(d.last_seen) }))));
      if (!page.devices.length) tbody.append(h("tr", null, h("td.muted", { colspan: 6, text: "no devices match" })));
      const from = state.page * PAGE + (page.devices.length ? 1 : 0);
      info.textContent = `page ${state.page + 1} · ${from}–${state.page * PAGE + page.devices.length}`;
      prevBtn.disabled = state.page === 0;
      nextBtn.disabled = !page.next_cursor;
    } catch (e) {
      if (!stopped && my === seq) err.textContent = e.status === 400 ? e.message : "Cannot load devices: " + e.message;
    }
    if (!stopped && my === seq) timer = setTimeout(load, REFRESH_MS);
  }

  prevBtn.addEventListener("click", () => { if (state.page > 0) { state.page--; load(); } });
  nextBtn.addEventListener("click", () => {
    if (state.cursors[state.page + 1]) { state.page++; load(); }
  });
  q.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(restart, 300); });
  product.addEventListener("change", restart);
  online.addEventListener("change", restart);
  load();
  return () => { stopped = true; clearTimeout(timer); clearTimeout(searchTimer); };
}
