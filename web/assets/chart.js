// chart.js: the console's SVG line chart (no library): a time series of one numeric value with
// axes, min/max labels and a hover read-out; redrawn whole on each update (a few hundred points).

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function niceTime(ms, span) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  if (span > 2 * 86400e3) return `${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}h`;
  if (span > 600e3) return `${p(d.getHours())}:${p(d.getMinutes())}`;
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function fmt(v) {
  return Number.isInteger(v) ? String(v) : String(+v.toPrecision(4));
}

// new LineChart(container, {label, unit, maxPoints}); .set(points) / .add(t, v); points are
// [{t: ms, v: number}] in any order.
export class LineChart {
  constructor(container, { label = "", unit = "", maxPoints = 500, height = 180 } = {}) {
    this.unit = unit;
    this.maxPoints = maxPoints;
    this.points = [];
    this.height = height;
    this.svg = s("svg", { class: "chart", role: "img", "aria-label": label,
                          preserveAspectRatio: "none" });
    container.append(this.svg);
    this.resize = () => this.draw();
    this.ro = new ResizeObserver(this.resize);
    this.ro.observe(container);
    this.container = container;
  }

  destroy() {
    this.ro.disconnect();
    this.svg.remove();
  }

  set(points) {
    this.points = points.filter((p) => Number.isFinite(p.v) && Number.isFinite(p.t))
      .sort((a, b) => a.t - b.t).slice(-this.maxPoints);
    this.draw();
  }

  add(t, v) {
    if (!Number.isFinite(v) || !Number.isFinite(t)) return;
    const last = this.points[this.points.length - 1];
    if (last && t < last.t) { this.set(this.points.concat([{ t, v }])); return; }
    this.points.push({ t, v });
    if (this.points.length > this.maxPoints) this.points.shift();
    this.draw();
  }

  draw() {
    const svg = this.svg;
    const W = Math.max(200, Math.floor(this.container.clientWidth || 600)), H = this.height;
    const L = 48, R = 10, T = 10, B = 24;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const pts = this.points;
    if (!pts.length) {
      const t = s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "muted" });
      t.textContent = "no values yet";
      svg.append(t);
      return;
    }
    let t0 = pts[0].t, t1 = pts[pts.length - 1].t;
    let v0 = Math.min(...pts.map((p) => p.v)), v1 = Math.max(...pts.map((p) => p.v));
    if (t1 === t0) { t0 -= 1000; t1 += 1000; }
    if (v1 === v0) { v0 -= 1; v1 += 1; }
    const pad = (v1 - v0) * 0.08;
    v0 -= pad; v1 += pad;
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);

    const grid = s("g", { class: "grid" });
    for (let i = 0; i <= 4; i++) {
      const v = v0 + ((v1 - v0) * i) / 4, yy = y(v);
      grid.append(s("line", { x1: L, x2: W - R, y1: yy, y2: yy }));
      const lab = s("text", { x: L - 6, y: yy + 4, "text-anchor": "end" });
      lab.textContent = fmt(+v.toPrecision(3));
      grid.append(lab);
    }
    for (let i = 0; i <= 3; i++) {
      const t = t0 + ((t1 - t0) * i) / 3;
      const lab = s("text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 3 ? "end" : "middle" });
      lab.textContent = niceTime(t, t1 - t0);
      grid.append(lab);
    }
    svg.append(grid);
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join("");
    svg.append(s("path", { d, class: "line" }));
    const last = pts[pts.length - 1];
    svg.append(s("circle", { cx: x(last.t), cy: y(last.v), r: 3, class: "dot" }));

    // hover read-out: the nearest point
    const hover = s("g", { class: "hover", visibility: "hidden" });
    const hl = s("line", { y1: T, y2: H - B });
    const ht = s("text", { y: T + 12 });
    hover.append(hl, ht);
    svg.append(hover);
    svg.onmousemove = (e) => {
      const r = svg.getBoundingClientRect();
      const mx = ((e.clientX - r.left) / r.width) * W;
      const tt = t0 + ((mx - L) / (W - L - R)) * (t1 - t0);
      let best = pts[0];
      for (const p of pts) if (Math.abs(p.t - tt) < Math.abs(best.t - tt)) best = p;
      const bx = x(best.t);
      hl.setAttribute("x1", bx);
      hl.setAttribute("x2", bx);
      ht.setAttribute("x", bx > W / 2 ? bx - 6 : bx + 6);
      ht.setAttribute("text-anchor", bx > W / 2 ? "end" : "start");
      ht.textContent = `${fmt(best.v)}${this.unit ? " " + this.unit : ""} @ ${niceTime(best.t, 0)}`;
      hover.setAttribute("visibility", "visible");
    };
    svg.onmouseleave = () => hover.setAttribute("visibility", "hidden");
  }
}

// A small sparkline of recent numbers (overview rates).
export function sparkline(values, { width = 120, height = 28 } = {}) {
  const svg = s("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, width, height,
                         "aria-hidden": "true" });
  if (values.length < 2) return svg;
  const max = Math.max(1, ...values);
  const d = values.map((v, i) =>
    `${i ? "L" : "M"}${((i / (values.length - 1)) * width).toFixed(1)},` +
    `${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`).join("");
  svg.append(s("path", { d }));
  return svg;
}
