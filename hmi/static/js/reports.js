// The reports page: the form asks GET /api/v1/reports/{kind}; the answer's chart is drawn with
// uPlot (served from /static/vendor, loaded before this module as the global uPlot) and its rows
// fill the table; the download links carry the same parameters with another format.
import { t, api } from "./common.js";

const section = document.getElementById("report");
const form = section?.querySelector("[data-report-form]");
const config = JSON.parse(document.getElementById("report-groups")?.textContent || "{}");
const COLORS = ["#c0392b", "#e67e22", "#2e86c1", "#27ae60", "#8e44ad", "#7f8c8d"];
let plot = null;
let asked = 0; // the latest request: an older answer arriving after it is dropped

function label(name) {
  const key = `report.col.${name}`;
  const text = t(key);
  return text === key ? name : text;
}

function params(format) {
  const data = new FormData(form);
  const kind = data.get("kind");
  const q = new URLSearchParams();
  for (const name of ["from", "to", "interval", "group"]) if (data.get(name)) q.set(name, data.get(name));
  if (kind === "compare") q.set("commodity", data.get("commodity"));
  if (format !== "json") q.set("format", format);
  q.set("lang", document.documentElement.lang || "en");
  return `/api/v1/reports/${encodeURIComponent(kind)}?${q}`;
}

function fillGroups() {
  const kind = form.elements.kind.value;
  const select = form.elements.group;
  const current = select.value;
  select.replaceChildren(...(config.groups[kind] || []).map((g) => {
    const o = document.createElement("option");
    o.value = g;
    o.textContent = t(`report.key.${g}`);
    return o;
  }));
  select.value = (config.groups[kind] || []).includes(current) ? current : config.defaults[kind];
  section.querySelector("[data-commodity]").hidden = kind !== "compare";
  form.elements.interval.disabled = kind === "arrears";
  form.elements.from.disabled = kind === "arrears";
  updateLinks();
}

function updateLinks() {
  for (const a of section.querySelectorAll("[data-download]")) a.href = params(a.dataset.download);
}

function drawChart(chart) {
  const holder = section.querySelector("[data-chart]");
  if (plot) plot.destroy();
  plot = null;
  holder.replaceChildren();
  if (!chart || !chart.categories.length || typeof uPlot === "undefined") return;
  const xs = chart.categories.map((_, i) => i);
  const stacked = chart.type === "stacked";
  const raw = chart.series.map((s) => s.values);
  // stacked bars: each series drawn as the running sum, the tallest first so the others lie on top
  let shown = raw;
  let order = chart.series.map((_, i) => i);
  if (stacked) {
    shown = raw.map((_, i) => xs.map((x) => raw.slice(0, i + 1).reduce((sum, s) => (s[x] === null ? sum : sum + s[x]), 0)));
    order = order.reverse();
  }
  const bars = uPlot.paths.bars({ size: [0.6, 60] });
  const series = [{ label: "", value: (u, v) => (v === null || v === undefined ? "" : chart.categories[v] || "") }];
  for (const i of order) {
    const asBars = stacked || i === 0 || chart.type === "grouped" && chart.series.length === 1;
    series.push({
      label: label(chart.series[i].name),
      stroke: COLORS[i % COLORS.length],
      fill: asBars ? `${COLORS[i % COLORS.length]}cc` : undefined,
      width: asBars ? 0 : 2,
      paths: asBars ? bars : undefined,
      points: { show: !asBars },
      value: (u, v, si, idx) => (idx === null || raw[i][idx] === null || raw[i][idx] === undefined ? "—" : `${raw[i][idx]} ${chart.unit}`),
    });
  }
  const data = [xs, ...order.map((i) => shown[i])];
  const width = Math.max(320, holder.clientWidth || 720);
  plot = new uPlot({
    width, height: 280,
    scales: { x: { time: false, range: [-0.5, xs.length - 0.5] }, y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
    axes: [
      { values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? chart.categories[v] ?? "" : "")), gap: 4 },
      { label: chart.unit, size: 60 },
    ],
    series,
  }, data, holder);
  holder.dataset.series = String(chart.series.length);
  holder.dataset.points = String(xs.length);
}

function fillTable(body) {
  const table = section.querySelector("[data-table]");
  const columns = body.columns.map((c) => c.name);
  const numeric = new Set(body.columns.filter((c) => c.kind !== "text").map((c) => c.name));
  const head = document.createElement("tr");
  for (const c of columns) {
    const th = document.createElement("th");
    th.textContent = label(c);
    if (numeric.has(c)) th.className = "num";
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...body.rows.map((row) => {
    const tr = document.createElement("tr");
    for (const c of columns) {
      const td = document.createElement("td");
      td.textContent = row[c] ?? "—";
      if (numeric.has(c)) td.className = "num";
      tr.append(td);
    }
    return tr;
  }));
  const foot = document.createElement("tr");
  columns.forEach((c, i) => {
    const td = document.createElement("td");
    td.textContent = i === 0 ? t("report.total") : numeric.has(c) ? body.totals[c] ?? "" : "";
    if (numeric.has(c)) td.className = "num";
    foot.append(td);
  });
  table.tFoot.replaceChildren(foot);
  section.querySelector("[data-empty]").hidden = body.rows.length > 0;
  section.dataset.rows = String(body.rows.length);
}

async function show() {
  const error = section.querySelector(".form-error");
  section.dataset.state = "loading";
  const mine = ++asked;
  try {
    const body = await api("GET", params("json"));
    if (mine !== asked) return;
    error.hidden = true;
    fillTable(body);
    drawChart(body.chart);
    section.dataset.state = "shown";
  } catch (err) {
    if (mine !== asked) return;
    error.textContent = err.message;
    error.hidden = false;
    section.dataset.state = "error";
  }
}

if (form) {
  fillGroups();
  form.addEventListener("change", (event) => {
    if (event.target.name === "kind") fillGroups();
    updateLinks();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    updateLinks();
    show();
  });
  show();
}
