// products.js: the product list and one product's thing model, readable: properties (type,
// range, unit, access), events with their params, functions with inputs and outputs.
import { api } from "./api.js";
import { dl, h } from "./dom.js";
import { describe } from "./forms.js";

export function productsView(root) {
  const body = h("div", null, h("p.muted", { text: "loading…" }));
  root.append(h("h1", { text: "Products" }), body);
  api.get("/api/products").then((list) => {
    const head = ["Product", "Name", "Protocol", "Codec", "Properties", "Events", "Functions",
      "Devices"].map((t, i) => h(i > 3 ? "th.num" : "th", { text: t }));
    const rows = (list.products || []).map((p) => h("tr", null,
      h("td", null, h("a", { href: "#/products/" + encodeURIComponent(p.id), text: p.id })),
      h("td", { text: p.name || "" }), h("td", { text: p.protocol || "–" }),
      h("td", { text: p.codec || "–" }), h("td.num", { text: p.properties }),
      h("td.num", { text: p.events }), h("td.num", { text: p.functions }),
      h("td.num", null, h("a", { href: "#/devices?product=" + encodeURIComponent(p.id),
        text: p.devices }))));
    body.replaceChildren(h("div.scroll", null, h("table.list", null,
      h("thead", null, h("tr", null, head)), h("tbody", null, rows))));
  }).catch((e) => body.replaceChildren(h("p.error", { role: "alert", text: e.message })));
  return () => {};
}

function specRows(specs, extra) {
  if (!specs || !specs.length) return h("p.muted", { text: "none" });
  return h("div.scroll", null, h("table.list.specs", null,
    h("thead", null, h("tr", null, h("th", { text: "Id" }), h("th", { text: "Type" }),
      h("th", { text: "Range / values" }), h("th", { text: "Unit" }),
      extra ? h("th", { text: extra.title }) : null, h("th", { text: "Description" }))),
    h("tbody", null, specs.map((s) => h("tr", null,
      h("td", null, h("code", { text: s.id }), s.name ? h("div.muted", { text: s.name }) : null),
      h("td", { text: s.type }),
      h("td", { text: describe({ ...s, unit: undefined }).slice(s.type.length).trim() || "–" }),
      h("td", { text: s.unit || "" }),
      extra ? h("td", { text: extra.value(s) }) : null,
      h("td", { text: s.description || "" }))))));
}

export function thingModel(p) {
  return h("div.model", null,
    h("h2", { text: "Properties" }),
    specRows(p.properties, { title: "Access", value: (s) => s.access || "r" }),
    h("h2", { text: "Events" }),
    (p.events && p.events.length) ? p.events.map((e) => h("section.card", null,
      h("h3", null, h("code", { text: e.id }), " ", h("span.badge", { text: e.level || "info" }),
        e.name ? " " + e.name : ""),
      e.description ? h("p", { text: e.description }) : null,
      h("h4", { text: "Params" }), specRows(e.params, { title: "Required", value: (s) => (s.required === false ? "no" : "yes") })))
      : h("p.muted", { text: "none" }),
    h("h2", { text: "Functions" }),
    (p.functions && p.functions.length) ? p.functions.map((f) => h("section.card", null,
      h("h3", null, h("code", { text: f.id }), f.name ? " " + f.name : "",
        f.timeout_ms ? h("span.muted", { text: ` timeout ${f.timeout_ms} ms` }) : null),
      f.description ? h("p", { text: f.description }) : null,
      h("h4", { text: "Inputs" }), specRows(f.inputs, { title: "Required", value: (s) => (s.required === false ? "no" : "yes") }),
      h("h4", { text: "Outputs" }), specRows(f.outputs)))
      : h("p.muted", { text: "none" }));
}

export function productView(root, id) {
  const body = h("div", null, h("p.muted", { text: "loading…" }));
  root.append(h("p.crumbs", null, h("a", { href: "#/products", text: "Products" }), " / ", id),
    h("h1", { text: id }), body);
  api.get("/api/products/" + encodeURIComponent(id)).then((p) => {
    body.replaceChildren(
      dl([["Name", p.name || "–"], ["Description", p.description || "–"],
        ["Protocol", p.protocol || "–"], ["Codec", p.codec || "–"],
        ["Devices", h("a", { href: "#/devices?product=" + encodeURIComponent(id), text: "list" })]]),
      thingModel(p));
  }).catch((e) => body.replaceChildren(h("p.error", { role: "alert", text: e.message })));
  return () => {};
}
