// Shared helpers of the HMI pages: messages, the JSON API with the session's CSRF token,
// toasts, and forms that submit to the API (<form data-api="METHOD /api/v1/path">).

const messages = JSON.parse(document.getElementById("i18n-data")?.textContent || "{}");

/** The message `key` with {name} placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = messages[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

const siteZone = document.querySelector('meta[name="site-tz"]')?.content || undefined;
const stamp = new Intl.DateTimeFormat("sv-SE", {
  timeZone: siteZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

/** An ISO timestamp as "YYYY-MM-DD HH:MM:SS" in the site's time zone (what the server renders). */
export function localTime(iso) {
  return iso ? stamp.format(new Date(iso)) : "";
}

export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content || "";
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.field = body?.field || null;
    this.body = body;
  }
}

/** The answer of an action that waits for a second user's approval (HTTP 202): `request` is
 * the pending approval request; nothing has happened yet. */
export class PendingApproval {
  constructor(request) {
    this.request = request;
  }
}

/** Call the JSON API with the session cookie and the CSRF header. A 202 answer (sent for
 * approval) comes back as a PendingApproval. */
export async function api(method, path, body) {
  const init = { method, headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  if (response.status === 202) return new PendingApproval(data);
  return data;
}

let toastTimer = null;
export function toast(text, kind = "ok") {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = text;
  el.className = `toast-${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), kind === "error" ? 8000 : 4000);
}

/** Form fields as a JSON object: empty optional fields are left out, typed by data-type,
 * and dotted names nested ("contact.name" → {contact: {name}}). */
export function formBody(form) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name || el.name === "csrf" || el.disabled) continue;
    if (el.type === "radio" && !el.checked) continue;
    let value = el.type === "checkbox" ? el.checked : el.value;
    if (value === "" && !el.required) continue;
    const type = el.dataset.type || (el.type === "number" ? "number" : "");
    if (type === "bool") value = value === true || value === "true";
    else if (type === "int") value = Number.parseInt(value, 10);
    else if (type === "number") value = Number(value);
    else if (type === "datetime" && value) value = new Date(value).toISOString();
    // "contact.name" fills body.contact.name
    const path = el.name.split(".");
    let node = body;
    for (const key of path.slice(0, -1)) node = node[key] ??= {};
    node[path[path.length - 1]] = value;
  }
  return body;
}

function showFormError(form, err) {
  const box = form.querySelector(".form-error");
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  // fetch fails with a TypeError when the server cannot be reached; other errors are a form's own checks
  const message = err instanceof TypeError ? t("js.network_error") : err.message;
  if (err instanceof ApiError && err.field) {
    const field = form.elements.namedItem(err.field.split(".")[0]);
    if (field && field.setAttribute) field.setAttribute("aria-invalid", "true");
  }
  if (box) {
    box.textContent = message;
    box.hidden = false;
  }
  toast(message, "error");
}

/** Say in the form (and a toast) that its action was sent for approval and has not happened yet. */
function showPending(form, request) {
  const text = t("js.sent_for_approval", { id: request.id });
  let note = form.querySelector(".form-pending");
  if (!note) {
    note = document.createElement("p");
    note.className = "form-pending";
    note.setAttribute("role", "status");
    (form.querySelector(".form-error") || form.lastElementChild).before(note);
  }
  note.replaceChildren(text, " ");
  const link = document.createElement("a");
  link.href = "/approvals";
  link.textContent = t("js.approvals_link");
  note.append(link);
  note.hidden = false;
  note.dataset.approval = request.id;
  const pending = document.getElementById("pending-approval");
  if (pending) {
    pending.textContent = text;
    pending.dataset.approval = request.id;
    pending.hidden = false;
  }
  toast(text, "pending");
}

/** Submit <form data-api="METHOD /path"> to the API; on success reload, follow data-next, or call
 * the form's onApiSuccess; when the action was sent for approval, say so (and call onApiPending). */
export function bindApiForms(root = document) {
  for (const form of root.querySelectorAll("form[data-api]")) {
    if (form.dataset.bound) continue;
    form.dataset.bound = "1";
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const [method, path] = form.dataset.api.split(" ");
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      const button = form.querySelector('button[type="submit"], button:not([type])');
      if (button) button.disabled = true;
      try {
        const result = await api(method, path, form.onApiBody ? form.onApiBody(formBody(form)) : formBody(form));
        const box = form.querySelector(".form-error");
        if (box) box.hidden = true;
        if (result instanceof PendingApproval) {
          showPending(form, result.request);
          if (form.onApiPending) form.onApiPending(result.request);
          return;
        }
        toast(form.dataset.done || t("js.saved"));
        if (form.onApiSuccess) form.onApiSuccess(result);
        else if (form.dataset.next) window.location.assign(form.dataset.next.replace("{id}", encodeURIComponent(result?.id ?? "")));
        else if ("reload" in form.dataset) window.location.reload();
      } catch (err) {
        showFormError(form, err);
      } finally {
        if (button) button.disabled = false;
      }
    });
  }
}

export function viewData() {
  return JSON.parse(document.getElementById("view-data")?.textContent || "{}");
}

export function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

// a print button (no inline script: the page's policy forbids it)
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-print]")) window.print();
});

// phones: the navigation folds behind its Menu button (shown by the stylesheet on narrow screens);
// without this script it simply stays open
document.documentElement.classList.add("js");
document.addEventListener("click", (event) => {
  const toggle = event.target.closest(".menu-toggle");
  if (!toggle) return;
  const nav = document.getElementById(toggle.getAttribute("aria-controls"));
  const open = toggle.getAttribute("aria-expanded") !== "true";
  toggle.setAttribute("aria-expanded", String(open));
  nav?.classList.toggle("open", open);
});

/** Each cell of a list table gets its column's heading as data-label: on a phone the rows become
 * cards and each value shows its label (the stylesheet), however the rows were drawn. */
function labelCells(table) {
  const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
  for (const row of table.querySelectorAll("tbody tr")) {
    [...row.children].forEach((cell, i) => {
      if (heads[i] && cell.dataset.label !== heads[i]) cell.dataset.label = heads[i];
    });
  }
}

export function labelTables(root = document) {
  for (const table of root.querySelectorAll("table.list, table.points")) {
    labelCells(table);
    if (table.dataset.labelled) continue;
    table.dataset.labelled = "1";
    new MutationObserver(() => labelCells(table)).observe(table, { childList: true, subtree: true });
  }
}

function ready() {
  bindApiForms();
  labelTables();
}

document.addEventListener("DOMContentLoaded", ready);
if (document.readyState !== "loading") ready();
