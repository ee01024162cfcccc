// The losses page: a parent meter's loss day by day, as a bar chart of per cents (plain SVG,
// bars below the axis for negative losses, a dashed line at the alarm limit) and a table.
import { t, api, setText } from "./common.js";
import { chartWidth, labelEvery } from "./trend.js";

const NS = "http://www.w3.org/2000/svg";
const section = document.getElementById("loss-chart");

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

/** Bars of ``points`` ([{label, value, title}], value null: unknown) around a zero axis. */
export function drawLossBars(svg, points, { limit = null, empty = "" } = {}) {
  const width = chartWidth(svg);
  const height = 240;
  const m = { top: 16, right: 12, bottom: 30, left: 48 };
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const values = points.map((p) => p.value).filter((v) => v !== null);
  if (!values.length) {
    svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" }, empty));
    return;
  }
  const top = Math.max(1, ...values, limit || 0) * 1.1;
  const bottom = Math.min(0, ...values) * 1.1;
  const plotH = height - m.top - m.bottom;
  const plotW = width - m.left - m.right;
  const y = (v) => m.top + ((top - v) / (top - bottom)) * plotH;
  for (const v of [bottom, 0, top / 2, top]) {
    svg.append(el("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: "chart-grid" }));
    svg.append(el("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end", class: "chart-tick" }, `${Number(v.toPrecision(3))} %`));
  }
  const step = plotW / points.length;
  const every = labelEvery(points.length, plotW, 28);  // day numbers: up to two digits
  points.forEach((p, i) => {
    const x = m.left + i * step;
    if (p.value === null) {
      const gap = el("rect", { x: x + step * 0.15, y: y(0) - 1, width: Math.max(1, step * 0.7), height: 2, class: "chart-gap" });
      gap.append(el("title", {}, p.title));
      svg.append(gap);
    } else {
      const y0 = y(Math.max(0, p.value));
      const h = Math.abs(y(p.value) - y(0));
      const over = limit !== null && p.value > limit;
      const bar = el("rect", { x: x + step * 0.15, y: y0, width: Math.max(1, step * 0.7), height: Math.max(1, h), class: over ? "chart-bar over" : "chart-bar" });
      bar.append(el("title", {}, p.title));
      svg.append(bar);
    }
    if (i % every === 0) {
      svg.append(el("text", { x: x + step / 2, y: height - m.bottom + 16, "text-anchor": "middle", class: "chart-tick" }, p.label));
    }
  });
  svg.append(el("line", { x1: m.left, x2: width - m.right, y1: y(0), y2: y(0), class: "chart-axis" }));
  if (limit !== null) {
    svg.append(el("line", { x1: m.left, x2: width - m.right, y1: y(limit), y2: y(limit), class: "chart-limit" }));
  }
}

async function show() {
  const error = section.querySelector(".form-error");
  const { meter, from, to } = section.dataset;
  const limit = section.dataset.limit ? Number(section.dataset.limit) : null;
  try {
    const data = await api("GET", `/api/v1/losses?meter=${encodeURIComponent(meter)}&from=${from}&to=${to}&by=day`);
    const rows = data.losses;
    const points = rows.map((r) => {
      const day = r.from.slice(0, 10);
      const value = r.loss_pct === null ? null : Number(r.loss_pct);
      const title = value === null ? `${day}: ${t("js.losses.unknown")}` : `${day}: ${r.loss} ${r.unit} (${r.loss_pct} %)`;
      return { label: String(Number(day.slice(8, 10))), value, title };
    });
    drawLossBars(section.querySelector("svg"), points, { limit, empty: t("js.losses.no_data") });
    section.dataset.bars = String(points.filter((p) => p.value !== null).length);
    const body = section.querySelector("#loss-days tbody");
    body.replaceChildren();
    for (const r of rows) {
      const tr = document.createElement("tr");
      const cells = [r.from.slice(0, 10), r.consumption, r.children_consumption, r.loss, r.loss_pct === null ? null : `${r.loss_pct} %`];
      cells.forEach((text, i) => {
        const td = document.createElement(i === 0 ? "th" : "td");
        if (i > 0) td.className = "num";
        setText(td, text === null ? "—" : i > 0 && i < 4 ? `${text} ${r.unit}` : text);
        tr.append(td);
      });
      body.append(tr);
    }
    error.hidden = true;
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}

if (section) show();
