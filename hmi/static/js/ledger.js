// Reversing a ledger entry: a dialog asks for the reason; the API posts a compensating entry.
import { t, api, setText, bindApiForms, localTime } from "./common.js";

const REVERSIBLE = new Set(["opening", "recharge", "refund", "deduction", "charge", "late_fee", "apportionment"]);
const RECEIPTS = new Set(["recharge", "refund", "opening", "settlement", "reversal"]);

function label(key, fallback) {
  const text = t(key);
  return text === key ? fallback : text;
}

/** Ledger rows as the server renders them (see _ledger.html), for refreshes in place. */
export function renderLedger(table, entries, { room, canReverse }) {
  const reversed = new Set(entries.map((e) => e.reverses).filter(Boolean));
  const rows = entries.map((e) => {
    const tr = document.createElement("tr");
    tr.dataset.entry = e.id;
    tr.className = `kind-${e.kind}`;
    const detail = [];
    if (e.quantity) detail.push(e.meter_id ? `${e.quantity} · ${e.meter_id}` : e.quantity);
    if (e.channel) detail.push(label(`channel.${e.channel}`, e.channel));
    if (e.reference) detail.push(e.reference);
    if (e.reason) detail.push(e.reason);
    const cells = [
      String(e.id), localTime(e.ts), `${t(`ledger.kind.${e.kind}`)}${e.reverses ? ` #${e.reverses}` : ""}`,
      e.amount, e.balance_after, detail.join(" · "), e.actor,
    ];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 3) td.className = `num ${e.amount.startsWith("-") ? "debit" : "credit"}`;
      if (i === 4) td.className = "num";
      tr.append(td);
    });
    const actions = document.createElement("td");
    if (RECEIPTS.has(e.kind)) {
      const a = document.createElement("a");
      a.href = `/cashier/receipt/${encodeURIComponent(room)}/${e.id}`;
      a.className = "small";
      a.textContent = t("receipt.link");
      actions.append(a, " ");
    }
    if (canReverse && REVERSIBLE.has(e.kind) && !reversed.has(e.id)) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.reverse = e.id;
      b.textContent = `${t("ledger.reverse")}…`;
      actions.append(b);
    }
    tr.append(actions);
    return tr;
  });
  table.querySelector("tbody").replaceChildren(...rows);
}

/** Fetch the room's latest entries and show them. */
export async function refreshLedger(room, options) {
  const table = document.querySelector(`table[data-ledger="${CSS.escape(room)}"]`);
  if (!table) return;
  const data = await api("GET", `/api/v1/rooms/${encodeURIComponent(room)}/account/ledger?limit=10`);
  renderLedger(table, data.entries, { room, ...options });
}

export function bindLedger(onReversed) {
  const dialog = document.getElementById("reverse-dialog");
  if (!dialog) return;
  const form = document.getElementById("reverse-form");
  const template = form.dataset.api;
  form.querySelector("[data-cancel]").addEventListener("click", () => dialog.close());
  form.onApiSuccess = () => {
    dialog.close();
    onReversed();
  };
  // a reversal that credits the account waits for a second user: the page says so (common.js)
  form.onApiPending = () => dialog.close();
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-reverse]");
    if (!button) return;
    const entry = button.dataset.reverse;
    form.dataset.api = template.replace("{id}", entry);
    setText(form.querySelector("[data-question]"), t("js.reverse_question", { entry }));
    form.reset();
    form.querySelector(".form-error").hidden = true;
    dialog.showModal();
  });
  bindApiForms(dialog);
}
