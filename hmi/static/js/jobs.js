// Jobs: the form (targets, parameters, a count before confirming), cancel and approve buttons,
// and live progress of every job on the page over the WebSocket feed.
import { api, ApiError, t, setText, toast } from "./common.js";
import { Feed } from "./feed.js";

const form = document.getElementById("job-form");

function showError(err) {
  const box = form?.querySelector(".form-error");
  const message = err instanceof TypeError ? t("js.network_error") : err.message;
  if (box) {
    box.textContent = message;
    box.hidden = false;
  }
  toast(message, "error");
}

function jobBody() {
  const f = form.elements;
  const kind = f.kind.value;
  const rooms = f.rooms.value.split(/[\s,;]+/).filter(Boolean);
  const targets = {};
  if (rooms.length) targets.rooms = rooms;
  else {
    for (const name of ["building", "floor", "state"]) if (f[name].value) targets[name] = f[name].value;
    if (f.alarm_level.value) targets.alarm_level = Number.parseInt(f.alarm_level.value, 10);
    if (kind === "open" && !Object.keys(targets).length) targets.account = "prepared";
  }
  const params = {};
  for (const label of form.querySelectorAll("[data-for]")) {
    if (!label.dataset.for.split(" ").includes(kind)) continue;
    const input = label.querySelector("input, select, textarea");
    const name = input.name.slice(2);
    if (input.value === "") continue;
    if (name === "thresholds") {
      params.thresholds = input.value.split("/").map((money, i) => ({ level: i + 1, money: money.trim() }));
    } else if (name === "max_drift_s") {
      params.max_drift_s = Number(input.value);
    } else {
      params[name] = input.value;
    }
  }
  const body = { kind, targets, params };
  if (f.run_at.value) body.run_at = new Date(f.run_at.value).toISOString();
  if (f.repeat.value) body.repeat = f.repeat.value;
  if (f.reason.value) body.reason = f.reason.value;
  return body;
}

function showParams() {
  const kind = form.elements.kind.value;
  for (const label of form.querySelectorAll("[data-for]")) label.hidden = !label.dataset.for.split(" ").includes(kind);
  reset();
}

function reset() {
  document.getElementById("job-confirm").disabled = true;
  document.getElementById("job-count").hidden = true;
}

if (form) {
  form.elements.kind.addEventListener("change", showParams);
  form.addEventListener("input", (event) => { if (event.target.name !== "kind") reset(); });
  showParams();
  document.getElementById("job-preview").addEventListener("click", async () => {
    try {
      const body = jobBody();
      const preview = await api("POST", "/api/v1/jobs/preview", { kind: body.kind, targets: body.targets, params: body.params });
      const count = document.getElementById("job-count");
      count.textContent = t(`jobs.preview.${preview.target_type}`, { n: preview.count }) +
        (preview.approval ? ` ${t("jobs.preview.approval", { why: preview.approval })}` : "");
      count.hidden = false;
      form.querySelector(".form-error").hidden = true;
      document.getElementById("job-confirm").disabled = preview.count === 0;
    } catch (err) {
      showError(err);
    }
  });
  document.getElementById("job-confirm").addEventListener("click", async () => {
    try {
      const job = await api("POST", "/api/v1/jobs", jobBody());
      toast(t("jobs.created", { id: job.id }));
      window.location.reload();
    } catch (err) {
      showError(err);
    }
  });
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-cancel], [data-approve]");
  if (!button) return;
  const [action, id] = button.dataset.cancel ? ["cancel", button.dataset.cancel] : ["approve", button.dataset.approve];
  if (action === "cancel" && !window.confirm(t("jobs.cancel_confirm", { id }))) return;
  try {
    await api("POST", `/api/v1/jobs/${encodeURIComponent(id)}/${action}`, {});
    window.location.reload();
  } catch (err) {
    toast(err instanceof ApiError ? err.message : t("js.network_error"), "error");
  }
});

function showJob(row, job) {
  row.dataset.state = job.state;
  setText(row.querySelector('[data-f="state"]'), t(`jobs.job_state.${job.state}`));
  const bar = row.querySelector('[data-f="progress"]');
  if (bar) {
    bar.max = job.total || 1;
    bar.value = job.done + job.failed + job.cancelled;
  }
  setText(row.querySelector('[data-f="counts"]'), `${job.done}/${job.total}` + (job.failed ? ` · ${t("jobs.failed_n", { n: job.failed })}` : ""));
}

function showItem(event) {
  const row = document.querySelector(`#items tr[data-target="${CSS.escape(event.target)}"]`);
  if (!row) return;
  row.className = `item-${event.state}`;
  setText(row.querySelector('[data-f="state"]'), t(`jobs.item_state.${event.state}`));
  setText(row.querySelector('[data-f="attempts"]'), String(event.attempts));
  setText(row.querySelector('[data-f="detail"]'), event.detail);
}

function apply(jobs, items) {
  let unknown = false;
  for (const job of jobs) {
    const row = document.querySelector(`[data-job="${job.id}"]`);
    if (row) showJob(row, job);
    else if (document.getElementById("jobs")) unknown = true;
  }
  const detail = document.getElementById("job");
  for (const item of items || []) if (detail && String(item.job) === detail.dataset.job) showItem(item);
  return unknown;
}

if (document.querySelector("[data-job]")) {
  new Feed({ view: "jobs" }, {
    onSnapshot: (msg) => apply(msg.jobs, []),
    onUpdate: (msg) => apply(msg.jobs, msg.items),
  });
}
