// The room page's consumption chart: day (hourly bars), week or month (daily bars).
import { t, api, setText, localTime } from "./common.js";
import { drawBars } from "./trend.js";

const section = document.getElementById("trend");

function shift(iso, range, step) {
  const d = new Date(`${iso}T12:00:00Z`);
  if (range === "day") d.setUTCDate(d.getUTCDate() + step);
  else if (range === "week") d.setUTCDate(d.getUTCDate() + 7 * step);
  else d.setUTCMonth(d.getUTCMonth() + step, 1);
  return d.toISOString().slice(0, 10);
}

function barLabel(iso, range) {
  const local = localTime(iso); // "YYYY-MM-DD HH:MM:SS" in the site's zone
  return range === "day" ? local.slice(11, 13) : range === "week" ? local.slice(5, 10) : String(Number(local.slice(8, 10)));
}

let asked = 0; // the latest request: an answer to an earlier one arriving after it is not shown

async function show() {
  const request = ++asked;
  const range = section.querySelector('[aria-pressed="true"]').dataset.range;
  const date = section.querySelector("[data-date]").value;
  const error = section.querySelector(".form-error");
  try {
    const data = await api("GET", `/api/v1/rooms/${encodeURIComponent(section.dataset.room)}/trend?range=${range}&date=${date}`);
    if (request !== asked) return;
    error.hidden = true;
    for (const figure of section.querySelectorAll("figure[data-series]")) {
      const series = data.series[figure.dataset.series] || { unit: "", points: [] };
      const bars = series.points.map((p) => ({
        label: barLabel(p.t, range),
        value: p.v,
        title: `${localTime(p.t).slice(0, range === "day" ? 16 : 10)}: ${p.v === null ? t("trend.no_data") : `${p.v} ${series.unit}`} (${t("trend.intervals", { n: p.intervals })})`,
      }));
      const total = series.points.reduce((sum, p) => sum + (p.v || 0), 0);
      setText(figure.querySelector("[data-total]"), t("trend.total", { total: Number(total.toFixed(3)), unit: series.unit }));
      drawBars(figure.querySelector("svg"), bars, { unit: series.unit, empty: t("trend.no_data") });
      figure.dataset.bars = String(series.points.length);
    }
    section.dataset.shown = `${range} ${date}`;
  } catch (err) {
    if (request !== asked) return;
    error.textContent = err.message;
    error.hidden = false;
  }
}

if (section) {
  section.addEventListener("click", (event) => {
    const rangeButton = event.target.closest("[data-range]");
    const stepButton = event.target.closest("[data-step]");
    const dateInput = section.querySelector("[data-date]");
    if (rangeButton) {
      for (const b of section.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b === rangeButton));
      show();
    } else if (stepButton) {
      const range = section.querySelector('[aria-pressed="true"]').dataset.range;
      dateInput.value = shift(dateInput.value, range, Number(stepButton.dataset.step));
      show();
    }
  });
  section.querySelector("[data-date]").addEventListener("change", show);
  show();
}
