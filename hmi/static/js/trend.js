// A bar chart of interval consumption drawn as SVG (no library): one bar per interval, the
// value axis from zero, missing intervals shown as gaps, a title per bar for the exact value.
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * exp >= value) return step * exp;
  }
  return 10 * exp;
}

/**
 * The width to draw ``svg`` at: the width it is shown at (one unit a CSS pixel), so that its
 * 11 px labels stay 11 px on a phone instead of being scaled down with a fixed 720-unit
 * drawing; 720 while it is not laid out (hidden).
 */
export function chartWidth(svg) {
  const shown = Math.round(svg.getBoundingClientRect().width);
  return shown >= 200 ? shown : 720;
}

/** Every how many bars a label fits (at least ``spacing`` units apart). */
export function labelEvery(count, plotWidth, spacing = 44) {
  return Math.max(1, Math.ceil(count / Math.max(1, Math.floor(plotWidth / spacing))));
}

/**
 * Draw ``bars`` ([{label, title, value}], value null for a gap) into ``svg``.
 * ``unit`` labels the axis; ``empty`` is shown when there is nothing to draw.
 */
export function drawBars(svg, bars, { unit = "", empty = "" } = {}) {
  const width = chartWidth(svg);
  const height = 240;
  const m = { top: 16, right: 12, bottom: 34, left: 56 };
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const values = bars.map((b) => b.value).filter((v) => v !== null && v !== undefined);
  if (!values.length) {
    svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" }, empty));
    return;
  }
  const top = niceMax(Math.max(...values));
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const y = (v) => m.top + plotH - (v / top) * plotH;
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    svg.append(el("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: "chart-grid" }));
    svg.append(el("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end", class: "chart-tick" }, Number(v.toPrecision(3)).toString()));
  }
  svg.append(el("text", { x: 4, y: m.top - 4, class: "chart-unit" }, unit));
  const step = plotW / bars.length;
  const every = labelEvery(bars.length, plotW);
  bars.forEach((b, i) => {
    const x = m.left + i * step;
    if (b.value !== null && b.value !== undefined) {
      const rect = el("rect", { x: x + step * 0.12, y: y(b.value), width: Math.max(1, step * 0.76), height: Math.max(0, m.top + plotH - y(b.value)), class: "chart-bar" });
      rect.append(el("title", {}, b.title));
      svg.append(rect);
    } else {
      const gap = el("rect", { x: x + step * 0.12, y: m.top + plotH - 2, width: Math.max(1, step * 0.76), height: 2, class: "chart-gap" });
      gap.append(el("title", {}, b.title));
      svg.append(gap);
    }
    if (i % every === 0) {
      svg.append(el("text", { x: x + step / 2, y: height - m.bottom + 16, "text-anchor": "middle", class: "chart-tick" }, b.label));
    }
  });
  svg.append(el("line", { x1: m.left, x2: width - m.right, y1: m.top + plotH, y2: m.top + plotH, class: "chart-axis" }));
}
