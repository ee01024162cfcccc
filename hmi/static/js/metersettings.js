// A room's meter settings: each meter's time-of-use table as read back (and whether it matches
// the tariff) and its clock drift, from /api/v1/meters/{id}/settings; "read now" reads them again.
import { api, localTime, t } from "./common.js";

const section = document.getElementById("meter-settings");
const view = JSON.parse(document.getElementById("view-data")?.textContent || "{}");

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function render(box, s) {
  box.replaceChildren(el("h3", s.meter));
  const button = el("button", t("jobs.settings.read"), { type: "button" });
  button.addEventListener("click", () => load(box, s.meter, true));
  if (s.tou) {
    const state = s.tou.mismatch === true ? t("jobs.settings.mismatch") : s.tou.mismatch === false ? t("jobs.settings.match") : s.tou.detail;
    box.append(el("p", `${t("jobs.settings.tou")}: ${state}` + (s.tou.read_at ? ` (${localTime(s.tou.read_at)})` : ""), { "data-f": "tou-state" }));
    if (s.tou_table) {
      const table = el("table", undefined, { class: "list tou-table" });
      for (const [day, entries] of Object.entries(s.tou_table)) {
        const row = table.insertRow();
        row.insertCell().textContent = t(`jobs.settings.day.${day}`);
        row.insertCell().textContent = entries.map(([hhmm, period]) => `${hhmm} ${period}`).join(" · ");
      }
      box.append(table);
    } else {
      box.append(el("p", t("jobs.settings.not_read")));
    }
  }
  if (s.clock) {
    const drift = s.clock.drift_s;
    box.append(el("p", `${t("jobs.settings.clock")}: ` + (drift === null || drift === undefined ? t("jobs.settings.not_read")
      : t("jobs.settings.drift", { s: drift > 0 ? `+${drift}` : String(drift) })), { "data-f": "drift" }));
  }
  box.append(button);
}

async function load(box, meter, read) {
  try {
    render(box, await api("GET", `/api/v1/meters/${encodeURIComponent(meter)}/settings${read ? "?read=true" : ""}`));
    return true;
  } catch {
    return false;
  }
}

if (section && view.meters) {
  const list = section.querySelector("[data-list]");
  for (const meter of view.meters) {
    const box = el("article", undefined, { "data-meter": meter });
    list.append(box);
    load(box, meter, false).then((ok) => {
      if (!ok) box.remove();
      else if (box.querySelector("[data-f]")) section.hidden = false;
      else box.remove();
    });
  }
}
