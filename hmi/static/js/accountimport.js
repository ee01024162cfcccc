// Pre-set accounts: upload a CSV or XLSX file, check it (every bad row with its line, column and
// why), import it, open the prepared accounts with one job, or withdraw one that will not be opened.
import { api, csrfToken, t, toast } from "./common.js";

const form = document.getElementById("import-form");
const summary = document.getElementById("import-summary");
const table = document.getElementById("import-errors");

async function upload(dryRun) {
  const file = form.elements.file.files[0];
  if (!file) {
    toast(t("jobs.import.pick"), "error");
    return;
  }
  const data = new FormData();
  data.append("file", file, file.name);
  const response = await fetch(`/api/v1/accounts/import?dry_run=${dryRun}`, {
    method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" },
  });
  const body = await response.json();
  const tbody = table.querySelector("tbody");
  tbody.replaceChildren();
  for (const e of body.errors || []) {
    const row = tbody.insertRow();
    row.dataset.line = e.line;
    for (const text of [e.line, e.column, e.error]) row.insertCell().textContent = String(text);
  }
  table.hidden = !(body.errors || []).length;
  summary.hidden = false;
  if (!response.ok && !body.errors) {
    summary.textContent = body.error || `HTTP ${response.status}`;
    return;
  }
  summary.textContent = dryRun
    ? t("jobs.import.checked", { rows: body.rows, valid: body.valid, bad: body.rows - body.valid })
    : body.created ? t("jobs.import.created", { n: body.created }) : t("jobs.import.nothing", { bad: body.rows - body.valid });
  if ((body.new_customers || []).length) summary.textContent += ` ${t("jobs.import.new_customers", { names: body.new_customers.join(", ") })}`;
  if (!dryRun && body.created) window.setTimeout(() => window.location.reload(), 800);
}

for (const button of form.querySelectorAll("[data-mode]")) {
  button.addEventListener("click", () => upload(button.dataset.mode === "dry").catch(() => toast(t("js.network_error"), "error")));
}

document.getElementById("open-all")?.addEventListener("click", async () => {
  try {
    const job = await api("POST", "/api/v1/jobs", { kind: "open", targets: { account: "prepared" } });
    window.location.assign(`/jobs/${job.id}`);
  } catch (err) {
    toast(err.message, "error");
  }
});

for (const button of document.querySelectorAll("#prepared button.withdraw")) {
  button.addEventListener("click", async () => {
    if (!window.confirm(t("jobs.import.withdraw_confirm", { room: button.dataset.room }))) return;
    try {
      await api("POST", `/api/v1/accounts/prepared/${button.dataset.id}/withdraw`, {});
      button.closest("tr").remove();
      toast(t("jobs.import.withdrawn", { room: button.dataset.room }));
    } catch (err) {
      toast(err.message, "error");
    }
  });
}
