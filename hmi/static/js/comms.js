// Communications: links refreshed every few seconds; the meters of the opened link with theirs.
import { t, api, setText, localTime } from "./common.js";

const REFRESH_MS = 3000;
const links = document.querySelector("#links tbody");
const devices = document.getElementById("devices");
const stateFilter = devices.querySelector("[data-state-filter]");
let openLink = null;

function latency(ms) {
  return ms == null ? "—" : `${ms.toFixed(1)} ms`;
}

function fillLink(row, l) {
  row.className = `link link-${l.state}`;
  row.dataset.link = l.name;
  const f = (name) => row.querySelector(`[data-f="${name}"]`);
  setText(row.querySelector("[data-open]"), l.name);
  row.querySelector("[data-open]").setAttribute("aria-expanded", String(l.name === openLink));
  setText(f("state").querySelector(".badge"), t(`comms.link.${l.state}`));
  setText(f("endpoint"), `${l.kind} ${l.endpoint}`);
  setText(f("devices"), `${l.devices - l.devices_offline} / ${l.devices}`);
  setText(f("connections"), `${l.connections_up} / ${l.connections}`);
  setText(f("requests"), String(l.requests));
  setText(f("errors"), String(l.errors));
  setText(f("breakdown"), t("comms.breakdown", l));
  setText(f("latency"), latency(l.latency_ms));
  // a link that cannot poll its meters in their intervals (most polls late, window after window)
  const overloaded = l.overloaded ? ` · ${t("comms.overloaded", { late: Math.round(l.late_share * 100) })}` : "";
  setText(f("queued"), `${l.queued}${overloaded}`);
  setText(f("last_error"), l.last_error ? `${l.last_error} ${localTime(l.last_error_at)}` : "");
}

async function refreshLinks() {
  const data = await api("GET", "/api/v1/links");
  const template = document.getElementById("link-row");
  const existing = new Map([...links.querySelectorAll("tr[data-link]")].map((r) => [r.dataset.link, r]));
  links.replaceChildren(...data.links.map((l) => {
    const row = existing.get(l.name) || template.content.firstElementChild.cloneNode(true);
    fillLink(row, l);
    return row;
  }));
}

async function refreshDevices() {
  if (!openLink) return;
  const query = stateFilter.value ? `?state=${encodeURIComponent(stateFilter.value)}` : "";
  const data = await api("GET", `/api/v1/links/${encodeURIComponent(openLink)}/devices${query}`);
  setText(devices.querySelector("[data-title]"), t("comms.devices_of", { link: openLink, n: data.devices.length }));
  devices.querySelector("tbody").replaceChildren(...data.devices.map((d) => {
    const tr = document.createElement("tr");
    tr.className = `device device-${d.state}`;
    tr.dataset.meter = d.meter_id;
    const texts = [
      d.meter_id, d.address ? d.address : d.circuit ? `${d.unit_id}/${d.circuit}` : String(d.unit_id), t(`comms.device.${d.state}`), d.polls, d.requests, d.errors,
      d.consecutive_failures, latency(d.latency_ms), localTime(d.last_ok_at), d.last_error ? `${d.last_error} ${localTime(d.last_error_at)}` : "",
    ];
    for (const text of texts) {
      const td = document.createElement("td");
      td.textContent = String(text);
      tr.append(td);
    }
    return tr;
  }));
  devices.hidden = false;
}

links.addEventListener("click", (event) => {
  const button = event.target.closest("[data-open]");
  if (!button) return;
  openLink = button.closest("tr").dataset.link;
  for (const b of links.querySelectorAll("[data-open]")) b.setAttribute("aria-expanded", String(b === button));
  refreshDevices();
});
stateFilter.addEventListener("change", refreshDevices);

async function tick() {
  try {
    await refreshLinks();
    await refreshDevices();
    document.getElementById("live-status").dataset.state = "live";
  } catch {
    document.getElementById("live-status").dataset.state = "reconnecting";
  }
  setTimeout(tick, REFRESH_MS);
}
setTimeout(tick, REFRESH_MS);
