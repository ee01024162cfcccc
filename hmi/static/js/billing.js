// Back-office forms: room lists become arrays, a charge rule's target becomes the API's
// "targets", and a billing run shows its bills (a preview posts nothing).
import { t, setText } from "./common.js";

const rooms = (text) => text.split(/[\s,;]+/).filter(Boolean);

for (const form of document.querySelectorAll("form[data-rooms]")) {
  form.onApiBody = (body) => ({ ...body, rooms: body.rooms ? rooms(body.rooms) : [] });
}
for (const form of document.querySelectorAll("form[data-rooms-or-null]")) {
  form.onApiBody = (body) => ({ ...body, rooms: body.rooms ? rooms(body.rooms) : null });
}
for (const form of document.querySelectorAll("form[data-targets]")) {
  form.onApiBody = (body) => {
    const { target_kind: kind, target = "", ...rest } = body;
    let targets = "all";
    if (kind === "rooms") targets = { rooms: rooms(target) };
    else if (kind === "floor") targets = { floor: target.trim() };
    else if (kind === "building") targets = { building: target.trim() };
    return { ...rest, targets };
  };
}

const run = document.querySelector("form[data-run]");
if (run) {
  const preview = run.querySelector('input[name="preview"]');
  for (const button of run.querySelectorAll("button[data-preview]")) {
    button.addEventListener("click", () => { preview.value = button.dataset.preview; });
  }
  run.onApiBody = (body) => ({ ...body, rooms: body.rooms ? rooms(body.rooms) : null, preview: preview.value === "true" });
  run.onApiSuccess = (result) => {
    const box = document.getElementById("run-result");
    const tbody = box.querySelector("tbody");
    tbody.replaceChildren();
    for (const bill of result.bills) {
      const tr = document.createElement("tr");
      const who = `${bill.customer_name || ""} ${bill.accounts.map((a) => a.room).join(", ")}`.trim();
      const cells = [bill.number || t("js.preview"), who, bill.opening_balance, bill.total, bill.total_due, bill.due_date];
      cells.forEach((value, i) => {
        const td = document.createElement("td");
        if (i === 0 && bill.id) {
          const a = document.createElement("a");
          a.href = `/bills/${bill.id}`;
          a.textContent = value;
          td.append(a);
        } else {
          td.textContent = value;
        }
        if (i >= 2 && i <= 4) td.className = "num";
        tr.append(td);
      });
      tbody.append(tr);
    }
    const key = result.preview ? "js.run_preview" : "js.run_done";
    setText(document.getElementById("run-summary"), t(key, { period: result.period, bills: result.bills.length, issued: result.issued, posted: result.posted }));
    box.hidden = false;
  };
}
