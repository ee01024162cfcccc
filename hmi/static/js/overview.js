// The overview grid: live tiles for the current filter and page.
import { t, setText, viewData } from "./common.js";
import { Feed } from "./feed.js";
import { fill } from "./tiles.js";

const grid = document.getElementById("grid");
const template = document.getElementById("tile-template");
const view = viewData();

function tileOf(id) {
  return grid.querySelector(`[data-room="${CSS.escape(id)}"]`);
}

function newTile(r) {
  const el = template.content.firstElementChild.cloneNode(true);
  fill(el, r);
  return el;
}

function showCounts(counts) {
  for (const [state, n] of Object.entries(counts)) {
    const el = document.querySelector(`[data-count="${state}"]`);
    if (el) setText(el, String(n));
  }
}

function onSnapshot(msg) {
  // the page's membership may have changed (state filters): rebuild in order, reusing tiles
  const existing = new Map([...grid.querySelectorAll("[data-room]")].map((el) => [el.dataset.room, el]));
  const fragment = document.createDocumentFragment();
  for (const r of msg.rooms) {
    const el = existing.get(r.id) || newTile(r);
    fill(el, r);
    fragment.appendChild(el);
  }
  grid.replaceChildren(fragment);
  showCounts(msg.counts);
  const first = msg.total ? (msg.page - 1) * msg.page_size + 1 : 0;
  const last = Math.min(msg.page * msg.page_size, msg.total);
  setText(document.getElementById("showing"), t("js.showing", { first, last, total: msg.total }));
}

function onUpdate(msg) {
  for (const r of msg.rooms || []) {
    const el = tileOf(r.id);
    if (el) fill(el, r);
  }
  if (msg.counts) showCounts(msg.counts);
}

new Feed({ view: "overview", filter: view.filter, page: view.page, page_size: view.page_size }, { onSnapshot, onUpdate });
