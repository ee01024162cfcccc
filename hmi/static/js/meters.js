// The meter tree page: the CSV import of manual readings (a dry run lists every bad row).
import { t, api, toast, ApiError } from "./common.js";

const form = document.querySelector("form[data-import]");

function showReport(report) {
  const box = form.querySelector("[data-report]");
  const body = box.querySelector("tbody");
  body.replaceChildren();
  for (const p of report.problems || []) {
    const tr = document.createElement("tr");
    for (const text of [String(p.line), p.column, p.error]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    body.append(tr);
  }
  const summary = report.dry_run
    ? t("js.import.checked", { rows: report.rows, valid: report.valid, bad: (report.problems || []).length })
    : report.stored
      ? t("js.import.stored", { stored: report.stored })
      : t("js.import.refused", { bad: (report.problems || []).length });
  box.querySelector("[data-summary]").textContent = summary;
  box.hidden = false;
}

if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = form.querySelector(".form-error");
    error.hidden = true;
    const body = { csv: form.elements.csv.value, dry_run: form.elements.dry_run.checked };
    if (form.elements.reason.value) body.reason = form.elements.reason.value;
    try {
      const report = await api("POST", "/api/v1/readings/import", body);
      showReport(report);
      if (!report.dry_run && report.stored) {
        toast(t("js.import.stored", { stored: report.stored }));
        setTimeout(() => window.location.reload(), 800);
      }
    } catch (err) {
      if (err instanceof ApiError && err.body && err.body.problems) {
        showReport(err.body);
      } else {
        error.textContent = err.message;
        error.hidden = false;
      }
    }
  });
}
