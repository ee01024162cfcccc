// Room detail: live status and every meter value with its quality.
import { t, setText, viewData, localTime } from "./common.js";
import { Feed } from "./feed.js";
import { fill } from "./tiles.js";
import { bindSupply, loadHistory } from "./supply.js";
import { bindLedger, refreshLedger } from "./ledger.js";

const view = viewData();
const status = document.getElementById("room-status");

function valueText(v) {
  if (v.value === null || v.value === undefined) return "—";
  const text = typeof v.value === "boolean" ? t(`js.bool.${v.value}`) : String(v.value);
  return v.unit ? `${text} ${v.unit}` : text;
}

function qualityText(v) {
  const q = t(`state.quality.${v.quality}`);
  return v.reason && v.reason !== "none" ? `${q} (${t(`state.reason.${v.reason}`)})` : q;
}

function showSupply(name, v) {
  const el = document.querySelector(`[data-supply-state][data-tag="${CSS.escape(name)}"]`);
  if (!el) return;
  const kind = el.closest("[data-supply]").dataset.kind;
  const state = v.value === null || v.value === undefined ? "unknown" : String(v.value);
  setText(el, t(`supply.${kind}.${state}`));
  el.className = `q-${v.quality}`;
}

function showTag(name, v) {
  showSupply(name, v);
  let row = document.querySelector(`tr[data-tag="${CSS.escape(name)}"]`);
  if (!row) {
    const meter = name.slice(0, name.lastIndexOf("."));
    const body = document.querySelector(`[data-meter="${CSS.escape(meter)}"] tbody`);
    if (!body) return;
    row = document.createElement("tr");
    row.dataset.tag = name;
    const th = document.createElement("th");
    th.scope = "row";
    const point = name.slice(name.lastIndexOf(".") + 1);
    const label = t(`point.${point}`);
    th.textContent = label === `point.${point}` ? point : `${label} `;
    if (label !== `point.${point}`) {
      const small = document.createElement("small");
      small.className = "id";
      small.textContent = point;
      th.append(small);
    }
    row.append(th);
    for (const f of ["value", "quality", "ts"]) {
      const td = document.createElement("td");
      td.dataset.f = f;
      row.append(td);
    }
    body.append(row);
  }
  row.className = `q-${v.quality}`;
  setText(row.querySelector('[data-f="value"]'), valueText(v));
  setText(row.querySelector('[data-f="quality"]'), qualityText(v));
  setText(row.querySelector('[data-f="ts"]'), localTime(v.server_ts).slice(11));
}

function showAlarms(alarms) {
  const section = document.getElementById("room-alarms");
  if (!section || !alarms) return;
  const rows = alarms.map((a) => {
    const tr = document.createElement("tr");
    tr.className = `alarm prio-${a.priority_name}${a.acknowledged ? "" : " unacked"}`;
    tr.dataset.alarm = a.id;
    const prio = document.createElement("span");
    prio.className = "prio";
    prio.textContent = t(`alarm.priority.${a.priority_name}`);
    const texts = [null, t(`alarm.state.${a.state}`), t(`alarm.class.${a.class}`), a.detail || a.message, localTime(a.raised_at)];
    texts.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 0) td.append(prio);
      else td.textContent = text;
      tr.append(td);
    });
    return tr;
  });
  section.querySelector("tbody").replaceChildren(...rows);
  section.querySelector("[data-empty]").hidden = rows.length > 0;
}

function onSnapshot(msg) {
  lastBalance = msg.room.balance;
  showAlarms(msg.alarms);
  fill(status, msg.room, { currency: view.currency });
  for (const m of msg.meters) {
    for (const [point, v] of Object.entries(m.points)) showTag(`${m.id}.${point}`, v);
  }
  document.dispatchEvent(new CustomEvent("room-snapshot", { detail: msg }));
}

let lastBalance = null;
let ledgerTimer = null;

function onUpdate(msg) {
  if (msg.alarms) showAlarms(msg.alarms);
  if (msg.room && view.ledger && msg.room.balance !== lastBalance) {
    // the balance moved: a recharge, a refund or a deduction was posted; show the entry (debounced)
    lastBalance = msg.room.balance;
    clearTimeout(ledgerTimer);
    ledgerTimer = setTimeout(() => refreshLedger(view.room, { canReverse: view.can_reverse }).catch(() => {}), 300);
  }
  if (msg.room) {
    fill(status, msg.room, { currency: view.currency });
    document.dispatchEvent(new CustomEvent("room-update", { detail: msg.room }));
  }
  for (const [name, v] of Object.entries(msg.tags || {})) showTag(name, v);
}

new Feed({ view: "room", room: view.room }, { onSnapshot, onUpdate });
bindSupply(view.meters);
bindLedger(() => refreshLedger(view.room, { canReverse: view.can_reverse }));
if (view.commands) loadHistory(view.meters);
