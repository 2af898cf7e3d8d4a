// supaqueue dashboard: polls the JSON API (live updates without reloading), draws charts with
// uPlot, and sends actions as JSON POSTs carrying the session's CSRF token. No build step.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const FIGURES_EVERY_MS = 3000;
const SERIES_EVERY_MS = 10000;
const JOBS_EVERY_MS = 5000;
const JOB_EVERY_MS = 3000;
window.sqCharts = {};  // queue name -> {throughput, depth}: read by the browser tests

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

async function api(path) {
  const response = await fetch(path, {credentials: "same-origin"});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw apiError(response, body);
  return body;
}

// The server answered with an error (`status` set): its message is shown, not just a red dot.
function apiError(response, body) {
  const err = new Error(body.error || `${response.status} ${response.statusText}`);
  err.status = response.status;
  return err;
}

async function act(path, body = {}) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF},
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw apiError(response, answer);
  return answer;
}

function flash(text, kind = "ok") {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
}

function setLive(ok) {
  const live = document.getElementById("live");
  live.textContent = ok ? "live" : "offline";
  live.className = ok ? "live" : "live offline";
}

// What the last refresh met: null (all well), the API's error (the server answered, e.g. no
// such job, the database is down), or no answer at all (the dashboard process is gone).
function showProblem(err) {
  const box = document.getElementById("problem");
  const live = document.getElementById("live");
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = err.status
    ? err.message
    : "No answer from the dashboard: is `supaqueue ui` still running?";
  box.hidden = false;
  if (err.status) {
    live.textContent = "error";
    live.className = "live problem";
  }
}

// Asks in a <dialog>; resolves true on Confirm. `extra` is an optional form element.
function confirmAction(text, extra = null) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const holder = document.getElementById("confirm-extra");
  holder.replaceChildren(...(extra ? [extra] : []));
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function guarded(label, fn) {
  try {
    const message = await fn();
    if (message) flash(message);
  } catch (err) {
    flash(`${label}: ${err.message}`, "error");
  }
}

function every(ms, fn) {
  const tick = async () => {
    try {
      await fn();
      setLive(true);
      showProblem(null);
    } catch (err) {
      setLive(false);
      showProblem(err);
    }
  };
  tick();
  return setInterval(tick, ms);
}

const fmt = {
  seconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 90) return `${Math.round(s)}s`;
    if (s < 5400) return `${Math.round(s / 60)}m`;
    if (s < 172800) return `${(s / 3600).toFixed(1)}h`;
    return `${(s / 86400).toFixed(1)}d`;
  },
  ms: (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`),
  rate: (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(2)),
  time: (iso) => (iso ? new Date(iso).toLocaleString() : "–"),
};

function stateBadge(state) {
  return el("span", {class: `state ${state}`}, state);
}

function queueState(q) {
  if (q.paused_by_operator_since && q.paused_by_stack) {
    return el("span", {class: "state paused"}, "paused (stack + operator)");
  }
  if (q.paused_by_operator_since) return el("span", {class: "state paused"}, "paused (operator)");
  if (q.paused_by_stack) return el("span", {class: "state paused"}, "paused (stack)");
  if (q.dispatch_held_since) {
    return el("span", {class: "state held", title: q.dispatch_hold_reason || ""},
              "held: no dispatcher");
  }
  // the target answered 429/503 with Retry-After (sql/0027): the queue, or some of its keys
  if (q.held_until) {
    return el("span", {class: "state backoff", title: q.hold_reason || ""},
              `held until ${new Date(q.held_until).toLocaleTimeString()}`);
  }
  if (q.held_keys) {
    return el("span", {class: "state backoff", title: q.key_hold_reason || ""},
              `running, ${q.held_keys} key${q.held_keys === 1 ? "" : "s"} held`);
  }
  return el("span", {class: "state running"}, "running");
}

// --- queues page -----------------------------------------------------------------------

function queueActions(q) {
  const paused = Boolean(q.paused_by_operator_since);
  const toggle = el("button", {type: "button", class: "pause"}, paused ? "Resume" : "Pause");
  toggle.dataset.queue = q.name;
  toggle.addEventListener("click", () => guarded(toggle.textContent, async () => {
    const verb = paused ? "resume" : "pause";
    const text = paused
      ? `Resume queue ${q.name}?`
      : `Pause queue ${q.name}? No new calls start until it is resumed (calls in flight finish).`;
    if (!(await confirmAction(text))) return null;
    await act(`/api/queues/${encodeURIComponent(q.name)}/${verb}`);
    await refreshFigures();
    return `queue ${q.name} ${paused ? "resumed" : "paused"}`;
  }));
  const purge = el("button", {type: "button", class: "purge danger"}, "Purge…");
  purge.dataset.queue = q.name;
  purge.addEventListener("click", () => guarded("Purge", async () => {
    const age = el("select", {id: "purge-age"},
      el("option", {value: ""}, "any age"),
      el("option", {value: "24"}, "older than 1 day"),
      el("option", {value: "168"}, "older than 7 days"));
    const label = el("label", {}, "finished ", age);
    const ok = await confirmAction(
      `Delete the finished jobs (success, failed, cancelled) of queue ${q.name} and their ` +
      "attempt history? Jobs that others still wait for are kept.", label);
    if (!ok) return null;
    const hours = age.value === "" ? null : Number(age.value);
    const answer = await act(`/api/queues/${encodeURIComponent(q.name)}/purge`,
                             {older_than_hours: hours});
    await refreshFigures();
    return `purged ${answer.purged} job(s) of ${q.name}`;
  }));
  const lift = liftHoldButton(q);
  return el("td", {class: "actions"}, toggle, " ", purge, ...(lift ? [" ", lift] : []));
}

// A hold by the target's Retry-After (sql/0027) ended early by the operator (`lift_hold`): the
// queue's own hold, else (none) the holds of its keys. The queue dispatches at once.
function liftHoldButton(q) {
  if (!q.held_until && !q.held_keys) return null;
  const allKeys = !q.held_until;
  const button = el("button", {type: "button", class: "lift-hold"},
                    allKeys ? "Lift key holds" : "Lift hold");
  button.dataset.queue = q.name;
  button.addEventListener("click", () => guarded("Lift hold", async () => {
    const text = allKeys
      ? `Lift the holds of ${q.held_keys} key${q.held_keys === 1 ? "" : "s"} of queue ` +
        `${q.name}? Their jobs are dispatched at once, and those their Retry-After delayed ` +
        "are due now."
      : `Lift the hold of queue ${q.name} (held until ${fmt.time(q.held_until)}: ` +
        `${q.hold_reason})? Its jobs are dispatched at once, and those its Retry-After ` +
        "delayed are due now.";
    if (!(await confirmAction(text))) return null;
    const answer = await act(`/api/queues/${encodeURIComponent(q.name)}/lift-hold`,
                             allKeys ? {all_keys: true} : {});
    await refreshFigures();
    return liftedText(answer);
  }));
  return button;
}

// lift_hold's answer, as `supaqueue lift-hold` says it
function liftedText(answer) {
  if (!answer.lifted) {
    return answer.key !== null ? `nothing to do: key ${answer.key} of queue ${answer.name} was not held`
      : answer.all_keys ? `nothing to do: no key of queue ${answer.name} was held`
      : `nothing to do: queue ${answer.name} was not held`;
  }
  const lifted = answer.key !== null ? `hold of key ${answer.key} lifted`
    : answer.all_keys ? `holds of ${answer.lifted_keys} key(s) lifted` : "hold lifted";
  // made_due (sql/0033): the jobs whose retry waited for the target's Retry-After, due now
  let text = `queue ${answer.name}: ${lifted}; ${answer.made_due} job(s) delayed by a ` +
    `Retry-After made due now; ${answer.dispatched} job(s) dispatched`;
  if (answer.held_until) text += `; the queue itself is held until ${fmt.time(answer.held_until)}`;
  if (answer.held_keys) text += `; ${answer.held_keys} key(s) still held`;
  return text;
}

function liftKeyButton(name, k) {
  const button = el("button", {type: "button", class: "lift-hold"}, "Lift hold");
  button.addEventListener("click", () => guarded("Lift hold", async () => {
    const text = `Lift the hold of key ${k.key} of queue ${name} (held until ` +
      `${fmt.time(k.held_until)}: ${k.hold_reason})? Its jobs are dispatched at once, and ` +
      "those its Retry-After delayed are due now.";
    if (!(await confirmAction(text))) return null;
    const answer = await act(`/api/queues/${encodeURIComponent(name)}/lift-hold`, {key: k.key});
    return liftedText(answer);
  }));
  return button;
}

async function refreshFigures() {
  const rows = await api("/api/figures");
  const body = document.querySelector("#queues tbody");
  body.replaceChildren(...rows.map((q) => el("tr", {"data-queue": q.name},
    el("td", {}, el("a", {href: `/jobs?queue=${encodeURIComponent(q.name)}`}, q.name)),
    el("td", {}, queueState(q)),
    el("td", {class: "num"}, `${q.busy_workers}/${q.workers}`),
    el("td", {class: "num"}, fmt.rate(q.rate_limit_per_second)),
    el("td", {class: "num"}, String(q.pending)),
    el("td", {class: "num"}, String(q.ready)),
    el("td", {class: "num"}, String(q.in_progress)),
    el("td", {class: "num"}, fmt.seconds(q.oldest_pending_age_seconds)),
    // the last minute's count, as the chart's last point (the hour's average misled)
    el("td", {class: "num"}, String(q.succeeded_last_minute)),
    el("td", {class: "num"}, String(q.failed_last_minute)),
    el("td", {class: "num"}, fmt.ms(q.attempt_p50_ms)),
    el("td", {class: "num"}, fmt.ms(q.attempt_p95_ms)),
    // keys with work (issue #26): the queue's page lists the busiest
    el("td", {class: "num keys"}, q.active_keys
      ? el("a", {href: `/queues/${encodeURIComponent(q.name)}`}, String(q.active_keys)) : "–"),
    queueActions(q))));
  for (const q of rows) chartsOf(q.name);
}

function chartsOf(name) {
  if (window.sqCharts[name]) return window.sqCharts[name];
  const card = el("article", {class: "chart-card", "data-queue": name}, el("h3", {}, name));
  document.getElementById("charts").append(card);
  const width = Math.min(560, Math.max(320, card.clientWidth - 16));
  // y from 0, at least to 1: an idle queue shows a flat line at the bottom, not a scale to 100
  const fromZero = {y: {range: (u, min, max) => [0, Math.max(1, max)]}};
  const throughput = new uPlot({
    title: "jobs per minute (last hour)", width, height: 180, scales: fromZero,
    series: [{}, {label: "succeeded", stroke: "#2e9d5b", width: 2},
             {label: "failed", stroke: "#d64545", width: 2},
             {label: "failed attempts", stroke: "#e59a2f", dash: [4, 4]}],
    axes: [{}, {size: 40}],
  }, [[], [], [], []], card);
  // from the first sample (at least a minute, at most DEPTH_WINDOW_S) to now
  const depthChart = new uPlot({
    title: "depth: unfinished jobs (last hour)", width, height: 140, scales: fromZero,
    series: [{}, {label: "unfinished", stroke: "#3b7dd8", width: 2, fill: "rgba(59,125,216,.12)"}],
    axes: [{}, {size: 40}],
  }, [[], []], card);
  window.sqCharts[name] = {throughput, depth: depthChart};
  return window.sqCharts[name];
}

async function refreshSeries(names) {
  const rows = await api("/api/series");
  const byQueue = {};
  for (const r of rows) (byQueue[r.queue] ??= []).push(r);
  const figures = await api("/api/figures");
  for (const q of figures) {
    // one row per minute of the last hour (the API includes empty minutes)
    const series = byQueue[q.queue] ?? [];
    const times = series.map((r) => Date.parse(r.bucket) / 1000);
    const pick = (key) => series.map((r) => Number(r[key]));
    const charts = chartsOf(q.name);
    charts.throughput.setData([times, pick("succeeded"), pick("failed"), pick("failed_attempts")]);
    charts.depth.setData([times, pick("depth")]);
  }
}

function queuesPage() {
  every(FIGURES_EVERY_MS, refreshFigures);
  every(SERIES_EVERY_MS, refreshSeries);
}

// --- queue page: its busiest keys (issue #26) ------------------------------------------

function queuePage() {
  const name = document.body.dataset.queue;
  async function load() {
    const view = await api(`/api/queues/${encodeURIComponent(name)}/keys`);
    const shown = view.keys.length;
    document.getElementById("keys-summary").textContent = shown === 0
      ? "No key has work: this queue's jobs carry no key, or none is waiting."
      : `${view.active_keys} active key${view.active_keys === 1 ? "" : "s"}` +
        (view.active_keys > shown ? `; the busiest ${shown} shown` : "");
    document.querySelector("#keys tbody").replaceChildren(...view.keys.map((k) =>
      el("tr", {"data-key": k.key},
        el("td", {class: "key"}, k.key),
        el("td", {class: "num"}, String(k.running)),
        el("td", {class: "num"}, k.ready_capped ? `${k.ready}+` : String(k.ready)),
        el("td", {}, k.next_turn_at ? fmt.time(k.next_turn_at) : "idle"),
        el("td", {}, k.held_until ? el("span", {class: "state backoff"}, fmt.time(k.held_until))
                                  : "–"),
        el("td", {}, k.hold_reason ?? "–"),
        el("td", {class: "actions"}, k.held_until ? liftKeyButton(name, k) : ""))));
    document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
  }
  every(FIGURES_EVERY_MS, load);
}

// --- jobs page -------------------------------------------------------------------------

function jobsPage() {
  const form = document.getElementById("filters");
  const params = new URLSearchParams(location.search);
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  // the page is in the URL (?after=<last job of the previous page>&page=N): a reload, a shared
  // link or Back shows the same page
  let cursor = params.get("after") || null;  // last job of the previous page (keyset paging)
  let pageNo = Math.max(1, Number(params.get("page")) || 1);
  if (!cursor) pageNo = 1;


  function query() {
    const q = new URLSearchParams();
    for (const key of ["queue", "state", "since", "error"]) {
      const value = form.elements[key].value;
      if (value) q.set(key, value);
    }
    return q;
  }

  function pageUrl() {
    const q = query();
    if (cursor) {
      q.set("after", cursor);
      q.set("page", String(pageNo));
    }
    return `/jobs?${q}`;
  }

  async function load() {
    const q = query();
    if (cursor) q.set("after", cursor);
    q.set("limit", "50");
    let rows;
    try {
      rows = await api(`/api/jobs?${q}`);
    } catch (err) {
      document.querySelector("#jobs tbody").replaceChildren();
      document.getElementById("page-info").textContent = "";
      document.getElementById("next").disabled = true;
      document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
      throw err;
    }
    document.querySelector("#jobs tbody").replaceChildren(...rows.map((j) => el("tr", {"data-job": j.id},
      el("td", {}, el("a", {href: `/jobs/${j.id}`}, j.id.slice(0, 8))),
      el("td", {}, j.queue_name),
      el("td", {}, stateBadge(j.status)),
      el("td", {class: "num"}, String(j.attempts)),
      el("td", {}, fmt.time(j.created_at)),
      el("td", {}, fmt.time(j.finished_at)),
      el("td", {class: "error"}, j.last_error || ""))));
    const next = document.getElementById("next");
    next.disabled = rows.length < 50;
    next.dataset.after = rows.length ? rows[rows.length - 1].id : "";
    document.getElementById("first").disabled = pageNo === 1;
    document.getElementById("page-info").textContent =
      rows.length ? `page ${pageNo}` : "no jobs match";
    document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    cursor = null; pageNo = 1;
    history.replaceState(null, "", `/jobs?${query()}`);
    guarded("Jobs", load);
  });
  document.getElementById("next").addEventListener("click", (event) => {
    cursor = event.target.dataset.after; pageNo += 1;
    history.pushState(null, "", pageUrl());
    guarded("Jobs", load);
  });
  document.getElementById("first").addEventListener("click", () => {
    cursor = null; pageNo = 1;
    history.pushState(null, "", pageUrl());
    guarded("Jobs", load);
  });
  window.addEventListener("popstate", () => {
    const now = new URLSearchParams(location.search);
    cursor = now.get("after") || null;
    pageNo = cursor ? Math.max(1, Number(now.get("page")) || 2) : 1;
    guarded("Jobs", load);
  });
  bulkActions(form, query, () => { cursor = null; pageNo = 1; return load(); });
  // The queue list first, so that a ?queue= filter applies from the first load on; then live:
  // the first page follows new jobs, later pages stay put while being read.
  api("/api/figures").then((queues) => {
    const select = form.elements.queue;
    for (const q of queues) select.append(el("option", {value: q.name}, q.name));
    const asked = params.get("queue") || "";
    if (asked && !queues.some((q) => q.name === asked)) {
      // a queue that no longer exists: keep it selected, so the API says so (never "all")
      select.append(el("option", {value: asked}, `${asked} (unknown)`));
    }
    select.value = asked;
    if (pageNo > 1) guarded("Jobs", load);  // a later page from the URL: loaded once, then kept
    every(JOBS_EVERY_MS, async () => { if (pageNo === 1) await load(); });
  }, (err) => flash(`Jobs: ${err.message}`, "error"));
}

// --- job page --------------------------------------------------------------------------

function jobPage() {
  const id = document.body.dataset.job;
  const retry = document.getElementById("retry");
  const cancel = document.getElementById("cancel");

  function related(list) {
    return list.map((j) => el("li", {},
      el("a", {href: `/jobs/${j.id}`}, j.id), " ", stateBadge(j.status), ` (${j.queue_name})`));
  }

  async function load() {
    const job = await api(`/api/jobs/${id}`);
    const facts = [["state", stateBadge(job.status)], ["queue", job.queue_name],
      ["attempts", `${job.attempts} of ${job.max_attempts}`], ["priority", String(job.priority)],
      ["run at", fmt.time(job.run_at)], ["created", fmt.time(job.created_at)],
      ["finished", fmt.time(job.finished_at)], ["dedup key", job.dedup_key ?? "–"],
      ["last status", job.last_status_code ?? "–"], ["last error", job.last_error ?? "–"],
      ["last response", job.last_response_excerpt ? el("code", {}, job.last_response_excerpt) : "–"],
      ["source", job.source_name ? `${job.source} ${job.source_name}` : (job.source ?? "–")],
      ["lease until", job.lease ? fmt.time(job.lease.lease_expires_at) : "–"]];
    document.getElementById("facts").replaceChildren(
      ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    // payload_text/result_text: as Postgres wrote them (JSON.parse would round 1e-400 to 0)
    document.getElementById("payload").textContent = job.payload_text ?? JSON.stringify(job.payload, null, 2);
    document.getElementById("result").textContent = job.result_text ?? JSON.stringify(job.result, null, 2);
    document.querySelector("#attempts tbody").replaceChildren(...attemptRows(job, (a) =>
      el("tr", {},
        el("td", {class: "num"}, String(a.attempt)), el("td", {}, a.outcome),
        el("td", {class: "num"}, a.status_code ?? "–"), el("td", {class: "num"}, fmt.ms(a.duration_ms)),
        el("td", {}, fmt.time(a.ended_at)), el("td", {class: "error"}, a.error ?? ""),
        el("td", {}, el("code", {}, a.response_excerpt ?? "")))));
    document.getElementById("depends-on").replaceChildren(...related(job.depends_on));
    document.getElementById("dependents").replaceChildren(...related(job.dependents));
    retry.hidden = !["failed", "cancelled"].includes(job.status);
    cancel.hidden = !["pending", "in_progress"].includes(job.status);
    runNowButton(job, load);
    document.body.dataset.status = job.status;
  }

  retry.addEventListener("click", () => guarded("Retry", async () => {
    if (!(await confirmAction("Retry this job with fresh attempts? Jobs its failure cancelled come back too."))) return null;
    const answer = await act(`/api/jobs/${id}/retry`);
    await load();
    return answer.changed ? "job retried" : "job was not failed or cancelled";
  }));
  cancel.addEventListener("click", () => guarded("Cancel", async () => {
    if (!(await confirmAction("Cancel this job and the jobs waiting for it? A call in flight may still reach the function; its outcome is dropped."))) return null;
    const answer = await act(`/api/jobs/${id}/cancel`);
    await load();
    return answer.changed ? "job cancelled" : "job had already finished";
  }));
  every(JOB_EVERY_MS, load);
}

// --- issue 22: bulk actions on the jobs filter, run now, runs in the attempt history -----

// "Retry failed…" / "Cancel pending…" act on every job of the filter (queue, since, error; the
// state filter is the action's own). Each asks the server for the count first and confirms
// with it; the answer says how many changed.
function bulkActions(form, query, reload) {
  const filter = () => {
    const q = query();
    return {queue: q.get("queue") || null, since: q.get("since") || null,
            error: q.get("error") || null};
  };
  const describe = (f) => [
    f.queue ? `of queue ${f.queue}` : "of every queue",
    f.since ? `created in the last ${f.since}` : "",
    f.error ? `whose error or response contains "${f.error}"` : ""].filter(Boolean).join(" ");
  const bulk = (button, action, noun, verb, warning) => button.addEventListener("click",
    () => guarded(button.textContent.replace("…", ""), async () => {
      const f = filter();
      const {count} = await act(`/api/bulk/${action}`, {...f, dry_run: true});
      if (!count) return `no ${noun} job ${describe(f)}`;
      const ok = await confirmAction(
        `${verb} ${count} ${noun} job${count === 1 ? "" : "s"} ${describe(f)}?${warning}`);
      if (!ok) return null;
      const answer = await act(`/api/bulk/${action}`, f);
      await reload();
      return `${verb === "Retry" ? "retried" : "cancelled"} ${answer.count} job(s)`;
    }));
  bulk(document.getElementById("bulk-retry"), "retry-failed", "failed", "Retry",
       " Each gets fresh attempts; jobs its failure cancelled come back too.");
  bulk(document.getElementById("bulk-cancel"), "cancel-pending", "pending", "Cancel",
       " Jobs waiting for them are cancelled too.");
}

// Attempts are numbered from 1 again in each run: a row before each run after the first names
// the operator action that started it.
function attemptRows(job, row) {
  const starts = {};
  for (const a of job.operator_actions ?? []) {
    if (a.action !== "run_job_now") starts[a.run] = `${a.action} · ${fmt.time(a.at)} · ${a.by}`;
  }
  const rows = [];
  let run = 1;
  const mark = (n) => el("tr", {class: "run-start", "data-run": String(n)},
    el("td", {colSpan: 7}, `run ${n}: started by ${starts[n] ?? "a retry"}`));
  for (const a of job.attempt_history) {
    if ((a.run ?? 1) !== run) { run = a.run ?? 1; rows.push(mark(run)); }
    rows.push(row(a));
  }
  const last = Math.max(1, ...Object.keys(starts).map(Number));
  if (last > run) rows.push(mark(last));  // retried; no attempt of that run has ended yet
  return rows;
}

// "Run now": a pending job delayed to later (its run_at, or a retry's backoff).
function runNowButton(job, reload) {
  const button = document.getElementById("run-now");
  button.hidden = !(job.status === "pending" && Date.parse(job.run_at) > Date.now());
  if (button.dataset.bound) return;
  button.dataset.bound = "1";
  button.addEventListener("click", () => guarded("Run now", async () => {
    if (!(await confirmAction("Run this job now instead of at its scheduled time?"))) return null;
    const answer = await act(`/api/jobs/${document.body.dataset.job}/run-now`);
    await reload();
    return answer.changed ? "job is due now" : "job was not delayed";
  }));
}


// --- schedules page --------------------------------------------------------------------

function lastJob(row) {
  if (!row.last_job) return el("td", {}, "–");
  return el("td", {}, el("a", {href: `/jobs/${row.last_job}`}, fmt.time(row.last_job_created_at)),
            " ", stateBadge(row.last_job_status));
}

function jobsMadeLink(kind, row) {
  const link = el("a", {href: `/schedules?show=${kind}:${encodeURIComponent(row.name)}`,
                        class: "made-link"}, String(row.jobs_last_day));
  link.dataset.kind = kind;
  link.dataset.name = row.name;
  return el("td", {class: "num"}, link);
}

function schedulesPage() {
  const made = document.getElementById("made");
  let shown = new URLSearchParams(location.search).get("show");

  async function runNow(row) {
    const text = `Enqueue one job of schedule ${row.name} on queue ${row.queue_name} now? ` +
      `Its next run (${fmt.time(row.next_run_at)}) stays.`;
    if (!(await confirmAction(text))) return null;
    const answer = await act(`/api/schedules/${encodeURIComponent(row.name)}/run`);
    shown = `schedule:${row.name}`;
    history.replaceState(null, "", `/schedules?show=${encodeURIComponent(shown)}`);
    await refresh();
    return `enqueued job ${answer.job}`;
  }

  async function refresh() {
    const [schedules, triggers] = await Promise.all([api("/api/schedules"),
                                                     api("/api/triggers")]);
    document.querySelector("#schedules tbody").replaceChildren(...schedules.map((s) => {
      const run = el("button", {type: "button", class: "run-now"}, "Run now");
      run.dataset.schedule = s.name;
      run.addEventListener("click", () => guarded("Run now", () => runNow(s)));
      return el("tr", {"data-schedule": s.name},
        el("td", {}, s.name), el("td", {}, s.queue_name),
        el("td", {}, el("code", {}, s.cron), ` (${s.timezone})`),
        el("td", {}, fmt.time(s.next_run_at)), el("td", {}, fmt.time(s.last_slot)),
        lastJob(s), jobsMadeLink("schedule", s), el("td", {class: "actions"}, run));
    }));
    document.querySelector("#triggers tbody").replaceChildren(...triggers.map((t) =>
      el("tr", {"data-trigger": t.name},
        el("td", {}, t.name), el("td", {}, t.queue_name),
        el("td", {}, `${t.table_schema}.${t.table_name}`), el("td", {}, t.events.join(", ")),
        el("td", {}, t.condition ? el("code", {}, t.condition) : "–"),
        lastJob(t), jobsMadeLink("trigger", t))));
    if (!schedules.length) {
      document.querySelector("#schedules tbody").append(
        el("tr", {}, el("td", {colSpan: 8, class: "empty"}, "No schedules: declare them in the stack.")));
    }
    if (!triggers.length) {
      document.querySelector("#triggers tbody").append(
        el("tr", {}, el("td", {colSpan: 7, class: "empty"}, "No triggers: declare them in the stack.")));
    }
    if (shown) {
      const [kind, ...rest] = shown.split(":");
      const name = rest.join(":");
      const detail = await api(`/api/sources/${encodeURIComponent(kind)}/${encodeURIComponent(name)}/jobs`);
      document.getElementById("made-title").textContent =
        `Jobs made by ${kind} ${name} (newest first)`;
      document.querySelector("#made-jobs tbody").replaceChildren(...detail.jobs.map((j) =>
        el("tr", {"data-job": j.id},
          el("td", {}, el("a", {href: `/jobs/${j.id}`}, j.id)),
          el("td", {}, j.queue_name), el("td", {}, stateBadge(j.status)),
          el("td", {class: "num"}, String(j.attempts)), el("td", {}, fmt.time(j.created_at)),
          el("td", {}, fmt.time(j.finished_at)), el("td", {class: "error"}, j.last_error || ""))));
      made.hidden = false;
    }
    document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.made-link");
    if (!link) return;
    event.preventDefault();
    shown = `${link.dataset.kind}:${link.dataset.name}`;
    history.pushState(null, "", link.getAttribute("href"));
    guarded("Schedules", refresh);
  });
  every(JOB_EVERY_MS, refresh);
}

const pages = {queues: queuesPage, queue: queuePage, jobs: jobsPage, job: jobPage,
               schedules: schedulesPage};
pages[document.body.dataset.page]?.();
