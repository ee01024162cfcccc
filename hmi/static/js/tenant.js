// The tenant portal's account page: amount presets, the online recharge (the order is created
// through the API and the provider's pay page opens in a new tab), and the balance, days left and
// use kept live without reloading: the order is followed until it is credited, the summary
// refreshed then and every little while.
import { ApiError, api, setText, t, viewData } from "./common.js";

const view = viewData();
const base = `/api/v1/tenant/accounts/${view.account}`;
const SUMMARY_EVERY_MS = 15000;
const ORDER_EVERY_MS = 1000;
const FINAL = new Set(["credited", "expired", "failed", "refunded"]);

function show(field, text) {
  for (const el of document.querySelectorAll(`[data-f="${field}"]`)) setText(el, text);
}

async function refresh() {
  try {
    const s = await api("GET", base);
    show("balance", s.balance);
    show("days_left_text", s.days_left === null ? t("js.tenant.days_left_unknown") : t("js.tenant.days_left", { days: s.days_left }));
    show("supply", t(`state.supply.${s.supply_state}`));
    for (const key of ["today", "month"]) {
      show(`${key}_cost`, s[key].cost);
      for (const [c, q] of Object.entries(s[key].quantity)) show(`${key}_${c}`, q);
    }
    const card = document.querySelector(".balance-card");
    if (card) card.className = `card balance-card level-${s.alarm_level}`;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) window.location.assign("/tenant/login");
  }
}

const status = document.getElementById("order-status");

function say(order) {
  if (!status) return;
  status.hidden = false;
  setText(status, t(`js.tenant.order.${order.state}`, { amount: order.amount, currency: view.currency }));
  status.dataset.state = order.state;
}

async function follow(id) {
  for (;;) {
    let order;
    try {
      order = await api("GET", `/api/v1/payments/orders/${id}`);
    } catch {
      await new Promise((r) => setTimeout(r, ORDER_EVERY_MS * 3));
      continue;
    }
    say(order);
    if (FINAL.has(order.state)) {
      await refresh();
      return;
    }
    await new Promise((r) => setTimeout(r, ORDER_EVERY_MS));
  }
}

const form = document.getElementById("pay-form");
const amount = document.getElementById("pay-amount");
for (const button of document.querySelectorAll("button.preset")) {
  button.addEventListener("click", () => {
    amount.value = button.dataset.amount;
    amount.focus();
  });
}
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = form.querySelector(".form-error");
    box.hidden = true;
    amount.removeAttribute("aria-invalid");
    // opened now, while the click still counts as the tenant's own: filled once the order exists
    const tab = window.open("", "_blank");
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const order = await api("POST", "/api/v1/payments/orders", {
        room: view.room, amount: amount.value.trim(), provider: form.elements.namedItem("provider").value,
      });
      say(order);
      if (tab) tab.location.href = order.pay_url;
      else window.location.assign(order.pay_url);
      follow(order.id);
    } catch (err) {
      if (tab) tab.close();
      box.textContent = err instanceof TypeError ? t("js.network_error") : err.message;
      box.hidden = false;
      if (err instanceof ApiError && err.field === "amount") amount.setAttribute("aria-invalid", "true");
    } finally {
      button.disabled = false;
    }
  });
}

if (view.order) follow(view.order);
setInterval(refresh, SUMMARY_EVERY_MS);
