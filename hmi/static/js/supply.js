// Relay and valve control on the room page: a confirmation dialog with a reason, the command
// through the API (which waits for the meter's read-back), and the room's command history.
import { t, api, ApiError, toast, setText, localTime } from "./common.js";

const dialog = document.getElementById("supply-dialog");
const history = document.getElementById("commands");

export async function loadHistory(meters) {
  if (!history) return;
  const lists = await Promise.all(meters.map((m) => api("GET", `/api/v1/meters/${encodeURIComponent(m)}/commands`).catch(() => ({ commands: [] }))));
  const commands = lists.flatMap((l) => l.commands).sort((a, b) => b.id - a.id).slice(0, 20);
  const rows = commands.map((c) => {
    const tr = document.createElement("tr");
    tr.className = `command status-${c.status}`;
    tr.dataset.command = c.id;
    for (const text of [localTime(c.requested_at), c.meter, t(`supply.action.${c.action}`), t(`supply.status.${c.status}`), c.detail]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  history.querySelector("tbody").replaceChildren(...rows);
  history.querySelector("[data-empty]").hidden = rows.length > 0;
}

export function bindSupply(meters) {
  if (!dialog) return;
  const form = document.getElementById("supply-form");
  const error = form.querySelector(".form-error");
  const pending = form.querySelector("[data-pending]");
  const confirm = form.querySelector("[data-confirm]");
  let target = null;
  for (const button of document.querySelectorAll("[data-switch]")) {
    button.addEventListener("click", () => {
      const kind = button.closest("[data-supply]").dataset.kind;
      target = { meter: button.dataset.meter, action: button.dataset.switch, kind };
      setText(document.getElementById("supply-title"), t(`supply.${kind}.${target.action}`));
      setText(form.querySelector("[data-question]"), t(`supply.question.${target.action}`, { meter: target.meter }));
      confirm.className = target.action === "disconnect" ? "danger" : "primary";
      form.reset();
      error.hidden = true;
      pending.hidden = true;
      confirm.disabled = false;
      dialog.showModal();
      form.elements.reason.focus();
    });
  }
  form.querySelector("[data-cancel]").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = form.elements.reason.value.trim();
    if (!reason) {
      error.textContent = t("supply.reason_needed");
      error.hidden = false;
      return;
    }
    confirm.disabled = true;
    pending.hidden = false;
    error.hidden = true;
    try {
      const result = await api("POST", `/api/v1/meters/${encodeURIComponent(target.meter)}/supply`, { action: target.action, reason });
      dialog.close();
      toast(result.status === "running" ? t("supply.running") : t("supply.confirmed", { meter: target.meter }));
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message : t("js.network_error");
      error.hidden = false;
      confirm.disabled = false;
    } finally {
      pending.hidden = true;
      loadHistory(meters);
    }
  });
}
