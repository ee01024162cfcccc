// The alarm console: standing alarms (unacknowledged first, by priority) and shelved ones,
// kept live by the feed; acknowledge, confirm, comment, shelve and unshelve go through the
// alarms API (OPC UA clients act through the same engine: their actions show here at once).
import { t, setText, bindApiForms, localTime } from "./common.js";
import { Feed } from "./feed.js";

const when = localTime;

function rowFor(a, templateId) {
  const row = document.getElementById(templateId).content.firstElementChild.cloneNode(true);
  row.dataset.alarm = a.id;
  row.className = `alarm prio-${a.priority_name}${a.acknowledged ? "" : " unacked"}`;
  const f = (name) => row.querySelector(`[data-f="${name}"]`);
  setText(f("priority").querySelector(".prio"), t(`alarm.priority.${a.priority_name}`));
  setText(f("state"), t(`alarm.state.${a.state}`));
  setText(f("class"), t(`alarm.class.${a.class}`));
  const where = f("where");
  where.replaceChildren();
  if (a.room_id) {
    const link = document.createElement("a");
    link.href = `/rooms/${encodeURIComponent(a.room_id)}`;
    link.textContent = a.room_id;
    where.append(link);
  }
  const rest = [a.meter_id, a.link].filter(Boolean).join(" ");
  if (rest) where.append(` ${rest}`);
  if (!a.room_id && !rest) where.append(a.object_id);
  const comment = f("comment");
  setText(f("detail"), a.detail || a.message);
  comment.hidden = !a.comment;
  setText(comment, a.comment ? t("alarm.comment_by", { who: a.comment_by, comment: a.comment }) : "");
  const time = f("raised").querySelector("time");
  time.dateTime = a.raised_at;
  setText(time, when(a.raised_at));
  setText(f("shelved"), a.shelved_until ? t("alarm.shelved_until", { until: when(a.shelved_until).slice(0, 16), who: a.shelved_by, reason: a.shelve_reason }) : "");
  for (const form of row.querySelectorAll("form[data-api]")) form.dataset.api = form.dataset.api.replace("{id}", a.id);
  const ack = row.querySelector('[data-action="ack"]');
  if (ack) ack.hidden = a.acknowledged;
  const confirm = row.querySelector('[data-action="confirm"]');
  if (confirm) confirm.hidden = !a.acknowledged || Boolean(a.confirmed_at);
  return row;
}

function show(msg) {
  const body = document.querySelector("#alarms tbody");
  const open = new Set([...body.querySelectorAll("details[open]")].map((d) => d.closest("tr").dataset.alarm));
  body.replaceChildren(...msg.alarms.map((a) => rowFor(a, "alarm-row")));
  for (const id of open) body.querySelector(`tr[data-alarm="${id}"] details`)?.setAttribute("open", "");
  document.querySelector("#shelved tbody").replaceChildren(...msg.shelved.map((a) => rowFor(a, "shelved-row")));
  setText(document.getElementById("standing-count"), String(msg.alarms.length));
  setText(document.getElementById("unacked-count"), String(msg.alarms.filter((a) => !a.acknowledged).length));
  setText(document.getElementById("shelved-count"), String(msg.shelved.length));
  document.getElementById("no-alarms").hidden = msg.alarms.length > 0;
  const allButton = ackAll?.querySelector("button");
  if (allButton) allButton.disabled = !msg.alarms.some((a) => !a.acknowledged);
  bindApiForms(document);
}

const ackAll = document.getElementById("ack-all");
if (ackAll) {
  ackAll.onApiBody = () => {
    const ids = [...document.querySelectorAll("#alarms tr.unacked")].map((r) => Number(r.dataset.alarm));
    return { ids, reason: "" };
  };
  ackAll.onApiSuccess = () => {};
}

new Feed({ view: "alarms" }, { onSnapshot: show, onUpdate: show });
