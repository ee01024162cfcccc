// Room tiles and room status blocks: fill the server's markup (data-f fields) from a summary.
import { t, setText } from "./common.js";

export const STATES = ["offline", "off", "alarm", "low", "no_account", "ok", "unknown"];

export function fieldTexts(r) {
  return {
    name: r.name,
    state: t(`state.room.${r.state}`),
    where: `${r.building_name} · ${r.floor_name}`,
    balance: r.balance ?? "—",
    supply: t(`state.supply.${r.supply ?? "unknown"}`),
    account: t(`state.account.${r.account ?? "unknown"}`),
    comm: t(`state.comm.${r.comm}`),
    alarm: t(`state.alarm_level.${r.alarm_level ?? "unknown"}`),
    active_alarms: r.active_alarms ?? "—",
    power: r.power == null ? "—" : `${r.power.toFixed(2)} kW`,
    alarms: r.active_alarms ? t("js.active_alarms", { n: r.active_alarms }) : "",
  };
}

export function fill(el, r, { currency } = {}) {
  const texts = fieldTexts(r);
  if (currency && r.balance != null) texts.balance = `${r.balance} ${currency}`;
  for (const f of el.querySelectorAll("[data-f]")) {
    const name = f.dataset.f;
    if (!(name in texts)) continue;
    setText(f, String(texts[name]));
    if (name === "balance") f.className = `q-${r.balance_quality || "none"}`;
    if (name === "power") f.className = `q-${r.power_quality || "none"}`;
    if (name === "alarms") f.hidden = !r.active_alarms;
  }
  for (const s of STATES) el.classList.toggle(`state-${s}`, s === r.state);
  if (el.dataset.room !== undefined && el.tagName === "A") {
    el.dataset.room = r.id;
    el.href = `/rooms/${encodeURIComponent(r.id)}`;
  }
}
