// forms.js: form fields generated from the thing model's value specs (int/long/float/double with
// min/max, bool, enum, string with max_length, date, struct and array as JSON), and the reading of
// a filled form back into the JSON value the API validates.
import { h } from "./dom.js";

let uid = 0;
const NUMERIC = new Set(["int", "long", "float", "double", "date"]);
export const isNumeric = (spec) => NUMERIC.has(spec.type) && spec.type !== "date";

// A one-line description of a spec: "float −40…125 °C", "enum eco|comfort", "string ≤32".
export function describe(spec) {
  const parts = [spec.type];
  if (spec.min !== undefined || spec.max !== undefined)
    parts.push(`${spec.min ?? "…"}…${spec.max ?? "…"}`);
  if (spec.type === "enum" && spec.values) parts.push(spec.values.join(" | "));
  if (spec.type === "string" && spec.max_length) parts.push(`≤ ${spec.max_length} chars`);
  if (spec.type === "array") parts.push(`of ${spec.item ? spec.item.type : "?"}` +
    (spec.max_items ? `, ≤ ${spec.max_items}` : ""));
  if (spec.type === "struct" && spec.fields) parts.push(`{${spec.fields.map((f) => f.id).join(", ")}}`);
  if (spec.unit) parts.push(spec.unit);
  return parts.join(" ");
}

// One field: {el (the labelled row), read() -> {ok, value, empty, error}, input}.
export function field(spec, { prefix = "f", required = spec.required !== false } = {}) {
  const id = `${prefix}-${spec.id}-${++uid}`;
  let input;
  const t = spec.type;
  if (t === "bool") {
    input = h("select", { id, name: spec.id },
      required ? null : h("option", { value: "" }, "—"),
      h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
  } else if (t === "enum") {
    input = h("select", { id, name: spec.id }, required ? null : h("option", { value: "" }, "—"),
      (spec.values || []).map((v) => h("option", { value: String(v) }, String(v))));
  } else if (t === "int" || t === "long" || t === "float" || t === "double") {
    input = h("input", { id, name: spec.id, type: "number", inputmode: t === "int" || t === "long" ? "numeric" : "decimal",
      step: t === "int" || t === "long" ? "1" : "any", min: spec.min, max: spec.max, required });
  } else if (t === "date") {
    input = h("input", { id, name: spec.id, type: "datetime-local", step: "1", required });
  } else if (t === "string") {
    input = h("input", { id, name: spec.id, type: "text", maxlength: spec.max_length, required });
  } else {
    input = h("textarea", { id, name: spec.id, rows: 3, required, placeholder: t === "array" ? "[ … ] (JSON)" : "{ … } (JSON)",
      spellcheck: "false" });
  }
  const el = h("div.field", null,
    h("label", { for: id }, spec.name || spec.id, required ? null : h("span.muted", { text: " (optional)" })),
    input, h("span.hint", { text: describe(spec) }));

  function read() {
    const raw = input.value;
    if (raw === "" || raw === undefined) {
      return required ? { ok: false, error: `${spec.id}: a value is needed` } : { ok: true, empty: true };
    }
    if (t === "bool") return { ok: true, value: raw === "true" };
    if (t === "enum") {
      const v = (spec.values || []).find((x) => String(x) === raw);
      return { ok: true, value: v === undefined ? raw : v };
    }
    if (t === "int" || t === "long" || t === "float" || t === "double") {
      const n = Number(raw);
      if (!Number.isFinite(n)) return { ok: false, error: `${spec.id}: not a number` };
      if ((t === "int" || t === "long") && !Number.isInteger(n)) return { ok: false, error: `${spec.id}: must be an integer` };
      return { ok: true, value: n };
    }
    if (t === "date") {
      const ms = new Date(raw).getTime();
      return Number.isFinite(ms) ? { ok: true, value: ms } : { ok: false, error: `${spec.id}: not a date` };
    }
    if (t === "string") return { ok: true, value: raw };
    try {
      return { ok: true, value: JSON.parse(raw) };
    } catch {
      return { ok: false, error: `${spec.id}: not valid JSON` };
    }
  }
  return { el, read, input };
}

// Reads fields into an object; {ok:false, error} at the first problem.
export function readAll(fields) {
  const out = {};
  for (const [id, f] of Object.entries(fields)) {
    const r = f.read();
    if (!r.ok) { f.input.focus(); return { ok: false, error: r.error }; }
    if (!r.empty) out[id] = r.value;
  }
  return { ok: true, value: out };
}
