// Apportionment rules: the preview table (POST /api/v1/apportionment/preview, posting nothing),
// and the new-rule form's fields turned into the API's body.
import { t, api, setText } from "./common.js";

function keyText(key) {
  const parts = [];
  if ("area_m2" in key) parts.push(t("js.apportionment.area", { area: key.area_m2 }));
  if ("weight" in key) parts.push(t("js.apportionment.weight", { weight: key.weight }));
  if ("consumption" in key) parts.push(t("js.apportionment.consumption", { consumption: key.consumption }));
  if ("equal" in key) parts.push(t("js.apportionment.equal"));
  if ("days_open" in key) parts.push(t("js.apportionment.days", { open: key.days_open, days: key.days }));
  return parts.join(" · ");
}

for (const form of document.querySelectorAll("form[data-preview]")) {
  const section = form.closest("[data-rule]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = section.querySelector(":scope > .form-error");
    const result = section.querySelector("[data-result]");
    try {
      const data = await api("POST", "/api/v1/apportionment/preview", {
        rule: Number(form.dataset.preview), from: form.elements.from.value, to: form.elements.to.value,
      });
      setText(result.querySelector("[data-summary]"), t("js.apportionment.summary", {
        quantity: data.quantity, unit: data.unit, total: data.total, shares: data.shares.length,
        vacant: data.vacant.length > 6 ? `${data.vacant.slice(0, 6).join(", ")} … (${data.vacant.length})` : data.vacant.join(", ") || "—",
      }));
      const body = result.querySelector("tbody");
      body.replaceChildren();
      for (const s of data.shares) {
        const tr = document.createElement("tr");
        tr.dataset.room = s.room;
        for (const [i, text] of [s.room, keyText(s.key), `${s.quantity} ${data.unit}`, s.amount].entries()) {
          const td = document.createElement(i === 0 ? "th" : "td");
          if (i >= 2) td.className = "num";
          td.textContent = text;
          tr.append(td);
        }
        body.append(tr);
      }
      result.hidden = false;
      error.hidden = true;
    } catch (err) {
      result.hidden = true;
      error.textContent = err.message;
      error.hidden = false;
    }
  });
}

const ruleForm = document.querySelector("form[data-rule-form]");
if (ruleForm) {
  ruleForm.onApiBody = (body) => {
    const { target_kind: kind, building, floor, rooms, weights, pricing, price, ...rest } = body;
    const out = { ...rest };
    if (kind === "rooms") out.targets = { rooms: (rooms || "").split(/[\s,;]+/).filter(Boolean) };
    else if (kind === "floor") out.targets = { floor };
    else out.targets = { building };
    if (weights && weights.trim()) {
      out.weights = {};
      for (const pair of weights.split(/[\s,;]+/).filter(Boolean)) {
        const [room, w] = pair.split("=");
        out.weights[room] = w;
      }
    }
    out.pricing = pricing === "price" ? { price } : "tariff";
    return out;
  };
}
