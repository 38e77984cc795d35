// Conveyor dashboard: fills the server-rendered page from the JSON API and refreshes it
// every 2 s while the tab is visible. Job data only ever reaches the page as text
// (textContent, attribute values), never as markup.
"use strict";

(() => {
  const REFRESH_MS = 2000;
  const TOKEN_KEY = "conveyor.apiToken";
  const body = document.body;
  const $ = (selector) => document.querySelector(selector);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const pageToken = meta("conveyor-csrf");
  const authMode = meta("conveyor-auth"); // none | given (the browser sent it) | required

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // -- API ----------------------------------------------------------------------------------
  const storedToken = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(method, path, payload) {
    const headers = { Accept: "application/json" };
    const token = storedToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: "no-store", credentials: "same-origin" };
    if (method !== "GET") {
      headers["X-CSRF-Token"] = pageToken;
      if (payload !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(payload);
      }
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      askForToken(token ? "That token was refused." : "");
      throw new HttpError(401, "the API token is needed");
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new HttpError(response.status, detail(data, response));
    return data;
  }

  function detail(data, response) {
    const value = data && data.detail;
    if (typeof value === "string") return value;
    if (Array.isArray(value)) return value.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
    return `${response.status} ${response.statusText}`;
  }

  // -- small DOM helpers (text only) --------------------------------------------------------
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "data") Object.assign(node.dataset, value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  const td = (text, cls) => el("td", { class: cls, text: text ?? "" });
  const num = (value) => td(value ?? "", "num");
  const statusBadge = (status) => el("span", { class: `status status-${status}`, text: status });
  const jobLink = (id) => el("a", { href: `/dashboard/jobs/${Number(id)}`, text: `#${id}` });

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // Local time, "2026-12-01 07:15:46": short, and sorts as it reads.
  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    const two = (n) => String(n).padStart(2, "0");
    const day = `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`;
    return `${day} ${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
  }

  function ago(iso) {
    const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    return seconds < 120 ? `${seconds} s ago` : `${Math.round(seconds / 60)} min ago`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "n/a";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 120) return `${seconds.toFixed(1)} s`;
    return `${(seconds / 60).toFixed(1)} min`;
  }

  const pretty = (value) => (value === undefined ? "" : JSON.stringify(value, null, 2));
  const firstLine = (text) => (text ? text.split("\n")[0].slice(0, 120) : "");

  function showBanner(text, ok = false) {
    const banner = $("#banner");
    banner.textContent = text;
    banner.classList.toggle("ok", ok);
    banner.hidden = !text;
  }

  // -- confirmation --------------------------------------------------------------------------
  function confirmAction(text) {
    const dialog = $("#confirm");
    $("#confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    });
  }

  // Ask, act, say what happened, refresh at once.
  async function act(question, call, done) {
    if (!(await confirmAction(question))) return;
    try {
      const result = await call();
      showBanner(done(result), true);
    } catch (error) {
      if (error.status !== 401) showBanner(`Refused: ${error.message}`);
    }
    refreshNow();
  }

  // -- the API token (API_TOKEN set) ----------------------------------------------------------
  function askForToken(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stop();
    $("#content").hidden = true;
    $("#forget-token").hidden = true;
    $("#login").hidden = false;
    $("#login-error").textContent = message;
    $("#login-token").focus();
  }

  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#login-token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#login-token").value = "";
    $("#login").hidden = true;
    $("#content").hidden = false;
    $("#forget-token").hidden = false;
    refreshNow();
  });

  $("#forget-token").addEventListener("click", () => askForToken(""));

  // -- refreshing ------------------------------------------------------------------------------
  let timer = null;
  let busy = false;
  let refreshes = 0;

  function stop() {
    clearTimeout(timer);
    timer = null;
  }

  function schedule() {
    stop();
    if (!document.hidden) timer = setTimeout(refreshNow, REFRESH_MS);
  }

  async function refreshNow() {
    stop();
    if (busy || !$("#login").hidden) return;
    busy = true;
    try {
      await pages[body.dataset.page]();
      refreshes += 1;
      body.dataset.refreshes = String(refreshes); // tests wait on it
      const updated = `live · updated ${new Date().toLocaleTimeString()}`;
      setText($("#live"), document.hidden ? "paused while hidden" : updated);
      if ($("#banner").dataset.stale) showBanner("");
      delete $("#banner").dataset.stale;
    } catch (error) {
      if (error.status !== 401) {
        showBanner(`Could not refresh: ${error.message}`);
        $("#banner").dataset.stale = "1";
      }
    } finally {
      busy = false;
    }
    if ($("#login").hidden) schedule();
  }

  // A hidden tab does not poll; it refreshes as soon as it is shown again.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      stop();
      setText($("#live"), "paused while hidden");
    } else {
      refreshNow();
    }
  });

  // -- Overview ----------------------------------------------------------------------------------
  const statusColumns = () =>
    [...document.querySelectorAll("thead th[data-status]")].map((th) => th.dataset.status);

  async function overviewPage() {
    const overview = await api("GET", "/overview");
    renderCounts(overview.queues);
    drawChart($("#chart"), overview.per_minute);
    const { queue_wait: wait, run_time: run, workers } = overview;
    setText($("#wait-p50"), duration(wait.p50));
    setText($("#wait-p95"), duration(wait.p95));
    setText($("#run-p50"), duration(run.p50));
    setText($("#run-p95"), duration(run.p95));
    setText($("#workers-live"), String(workers.live));
    setText($("#slots-busy"), `${workers.busy} / ${workers.slots}`);
  }

  function renderCounts(counts) {
    const statuses = statusColumns();
    const names = Object.keys(counts).sort();
    const totals = Object.fromEntries(statuses.map((s) => [s, 0]));
    const rows = names.map((name) => {
      const queueLink = el("a", { href: jobsHref({ queue: name }), text: name });
      const row = el("tr", { data: { queue: name } }, el("td", { class: "name" }, queueLink));
      let total = 0;
      for (const status of statuses) {
        const n = counts[name][status] || 0;
        total += n;
        totals[status] += n;
        const link = el("a", { href: jobsHref({ queue: name, status }), text: String(n) });
        row.append(el("td", { class: "num", data: { status } }, link));
      }
      row.append(el("td", { class: "num", data: { status: "total" }, text: String(total) }));
      return row;
    });
    $("#counts tbody").replaceChildren(...rows);
    const sum = statuses.reduce((acc, s) => acc + totals[s], 0);
    $("#counts tfoot").replaceChildren(
      ...(names.length > 1
        ? [el("tr", {}, td("all queues"), ...statuses.map((s) => num(totals[s])), num(sum))]
        : []),
    );
    $("#counts-empty").hidden = names.length > 0;
  }

  function jobsHref(filter) {
    const query = new URLSearchParams(Object.entries(filter).filter(([, v]) => v));
    return `/dashboard/jobs?${query}`;
  }

  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // Drawn at the size it is shown, so that its text keeps the page's size.
  function drawChart(chart, minutes) {
    const width = Math.max(200, chart.clientWidth);
    const [height, left, bottom, top] = [chart.clientHeight || 180, 36, 20, 10];
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    if (!minutes || minutes.length === 0) {
      chart.replaceChildren(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "n/a"));
      return;
    }
    const peak = Math.max(1, ...minutes.map((m) => Math.max(m.finished, m.failed)));
    const x = (i) => left + ((width - left - 4) * i) / Math.max(1, minutes.length - 1);
    const y = (v) => height - bottom - ((height - bottom - top) * v) / peak;
    const line = (key) => minutes.map((m, i) => `${x(i).toFixed(1)},${y(m[key]).toFixed(1)}`).join(" ");
    chart.replaceChildren(
      svg("line", { class: "axis", x1: left, y1: y(0), x2: width, y2: y(0) }),
      svg("line", { class: "axis", x1: left, y1: y(peak), x2: width, y2: y(peak) }),
      svg("text", { x: left - 4, y: y(peak) + 4, "text-anchor": "end" }, String(peak)),
      svg("text", { x: left - 4, y: y(0) + 4, "text-anchor": "end" }, "0"),
      svg("text", { x: left, y: height - 4 }, `${minutes.length} min ago`),
      svg("text", { x: width, y: height - 4, "text-anchor": "end" }, "now"),
      svg("polyline", { class: "line-finished", points: line("finished") }),
      svg("polyline", { class: "line-failed", points: line("failed") }),
    );
  }

  // -- Queues ------------------------------------------------------------------------------------
  let queueSettings = new Map();

  async function queuesPage() {
    const { queues } = await api("GET", "/queues");
    queueSettings = new Map(queues.map((q) => [q.name, q]));
    const statuses = statusColumns();
    const rows = queues.map((q) => {
      const held = q.paused_until && new Date(q.paused_until) > new Date();
      const state = q.paused ? "paused" : held ? `backing off until ${when(q.paused_until)}` : "running";
      const actions = el(
        "td",
        {},
        el("button", { type: "button", data: { action: q.paused ? "resume" : "pause" }, text: q.paused ? "Resume" : "Pause" }),
        el("button", { type: "button", data: { action: "edit" }, text: "Edit limits" }),
      );
      return el(
        "tr",
        { data: { queue: q.name } },
        td(q.name, "name"),
        actions,
        el("td", { data: { field: "state" } }, statusBadge(q.paused ? "paused" : "running"), held ? ` ${state}` : ""),
        el("td", { class: "num", data: { field: "concurrency" }, text: q.concurrency ?? "none" }),
        el("td", { data: { field: "rate_limit" }, text: q.rate_limit ?? "none" }),
        el("td", { class: "num", data: { field: "key_concurrency" }, text: q.key_concurrency ?? "none" }),
        el("td", { data: { field: "fair" }, text: q.fair ? "yes" : "no" }),
        ...statuses.map((s) => num((q.counts || {})[s] || 0)),
      );
    });
    $("#queues tbody").replaceChildren(...rows);
    $("#queues-empty").hidden = queues.length > 0;
  }

  function queuePath(name, action = "") {
    return `/queues/${encodeURIComponent(name)}${action ? `/${action}` : ""}`;
  }

  function queueActions() {
    $("#queues tbody").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      const name = button.closest("tr").dataset.queue;
      const action = button.dataset.action;
      if (action === "edit") {
        openEditor(name);
        return;
      }
      const question =
        action === "pause"
          ? `Pause queue “${name}”? No job of it starts on any worker until it is resumed.`
          : `Resume queue “${name}”?`;
      act(question, () => api("POST", queuePath(name, action)), () => `Queue “${name}” ${action}d.`);
    });

    const dialog = $("#edit-queue");
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "save") return;
      const name = dialog.dataset.queue;
      const limit = (id) => {
        const text = $(id).value.trim();
        return text === "" ? null : Number(text);
      };
      const rate = $("#edit-rate-limit").value.trim();
      const changes = {
        concurrency: limit("#edit-concurrency"),
        rate_limit: /^(none)?$/i.test(rate) ? null : rate,
        key_concurrency: limit("#edit-key-concurrency"),
        fair: $("#edit-fair").checked,
      };
      const said = Object.entries(changes)
        .map(([key, value]) => `${key.replace("_", " ")} ${value ?? "none"}`)
        .join(", ");
      act(`Set queue “${name}”: ${said}?`, () => api("PUT", queuePath(name), changes), () => `Queue “${name}” updated.`);
    });
  }

  function openEditor(name) {
    const q = queueSettings.get(name) || {};
    const dialog = $("#edit-queue");
    dialog.dataset.queue = name;
    $("#edit-name").textContent = name;
    $("#edit-concurrency").value = q.concurrency ?? "";
    $("#edit-rate-limit").value = q.rate_limit ?? "";
    $("#edit-key-concurrency").value = q.key_concurrency ?? "";
    $("#edit-fair").checked = Boolean(q.fair);
    dialog.returnValue = "";
    dialog.showModal();
  }

  // -- Workers -------------------------------------------------------------------------------------
  async function workersPage() {
    const { workers } = await api("GET", "/workers");
    const rows = workers.map((w) =>
      el(
        "tr",
        { data: { worker: w.id } },
        td(w.id, "name"),
        td(w.host),
        num(w.pid),
        td((w.queues || []).join(", ") || "all", "name"),
        num(`${w.busy} / ${w.slots}`),
        td(when(w.started_at)),
        td(ago(w.last_heartbeat)),
        td(w.version),
      ),
    );
    $("#workers tbody").replaceChildren(...rows);
    $("#workers-empty").hidden = workers.length > 0;
  }

  // -- Jobs ----------------------------------------------------------------------------------------
  const address = new URLSearchParams(location.search);
  const jobFilter = () => {
    const filter = {};
    for (const key of ["status", "queue", "type"]) if (address.get(key)) filter[key] = address.get(key);
    return filter;
  };
  const RETRYABLE = ["failed", "cancelled"];
  const CANCELLABLE = ["pending", "processing"];

  function describe(filter) {
    const parts = [`every ${filter.status} job`];
    if (filter.queue) parts.push(`of queue “${filter.queue}”`);
    if (filter.type) parts.push(`of type “${filter.type}”`);
    return parts.join(" ");
  }

  async function jobsPage() {
    const filter = jobFilter();
    const limit = Number(address.get("limit")) || Number(body.dataset.pageSize);
    const query = new URLSearchParams({ ...filter, limit: String(limit) });
    if (address.get("before_id")) query.set("before_id", address.get("before_id"));
    const { jobs } = await api("GET", `/jobs?${query}`);
    const rows = jobs.map((job) =>
      el(
        "tr",
        { data: { id: job.id } },
        el("td", { class: "num" }, jobLink(job.id)),
        el("td", {}, statusBadge(job.status)),
        td(job.type, "name"),
        td(job.queue, "name"),
        num(job.priority),
        num(`${job.attempts}/${job.max_attempts}`),
        td(when(job.created_at)),
        td(firstLine(job.last_error), "wrap"),
      ),
    );
    $("#jobs tbody").replaceChildren(...rows);
    $("#jobs-empty").hidden = jobs.length > 0;

    const older = $("#older");
    older.hidden = jobs.length < limit;
    if (jobs.length) {
      const next = new URLSearchParams(address);
      next.set("before_id", String(jobs[jobs.length - 1].id));
      older.href = `?${next}`;
    }
    const newest = new URLSearchParams(address);
    newest.delete("before_id");
    $("#newest").href = `?${newest}`;
    $("#newest").hidden = !address.get("before_id");
  }

  function jobsActions() {
    const filter = jobFilter();
    const retry = $("#bulk-retry");
    const cancel = $("#bulk-cancel");
    retry.disabled = !RETRYABLE.includes(filter.status);
    cancel.disabled = !CANCELLABLE.includes(filter.status);
    if (retry.disabled && cancel.disabled) {
      $("#bulk-hint").textContent = "Filter by status to act on every matching job.";
    }
    retry.addEventListener("click", () =>
      act(`Retry ${describe(filter)}?`, () => api("POST", "/jobs/retry", filter), (r) => `${r.count} jobs retried.`),
    );
    cancel.addEventListener("click", () =>
      act(`Cancel ${describe(filter)}?`, () => api("POST", "/jobs/cancel", filter), (r) => `${r.count} jobs cancelled.`),
    );
  }

  // -- Job -------------------------------------------------------------------------------------------
  const jobId = Number(body.dataset.jobId);
  const SHOWN_APART = new Set(["payload", "result", "last_error", "progress", "progress_message", "depends_on"]);
  let jobStatus = null;

  async function jobPage() {
    let job;
    try {
      job = await api("GET", `/jobs/${jobId}`);
    } catch (error) {
      if (error.status !== 404) throw error;
      $("#job-body").hidden = true;
      showBanner(`Job ${jobId} does not exist (or was pruned).`);
      jobStatus = null;
      $("#job-retry").disabled = $("#job-cancel").disabled = true;
      return;
    }
    jobStatus = job.status;
    const badge = $("#job-status");
    setText(badge, job.status);
    badge.className = `status status-${job.status}`;
    $("#job-retry").disabled = !RETRYABLE.includes(job.status);
    $("#job-cancel").disabled = !CANCELLABLE.includes(job.status);

    const fields = Object.entries(job).filter(([key]) => !SHOWN_APART.has(key));
    const shown = fields.map(([key, value]) => `${key}=${JSON.stringify(value)}`).join("\n");
    const list = $("#job-fields");
    if (list.dataset.shown !== shown) {
      list.dataset.shown = shown;
      list.replaceChildren(
        ...fields.flatMap(([key, value]) => [
          el("dt", { text: key }),
          el("dd", { data: { field: key }, text: value === null ? "null" : typeof value === "object" ? JSON.stringify(value) : String(value) }),
        ]),
      );
    }
    setText($("#job-payload"), pretty(job.payload));
    setText($("#job-result"), pretty(job.result));
    setText($("#job-error"), job.last_error || "none");

    const progress = $("#job-progress");
    const reported = job.progress !== null && job.progress !== undefined;
    progress.hidden = !reported;
    if (reported) progress.value = job.progress;
    const said = reported
      ? `${Math.round(job.progress * 100)} %${job.progress_message ? ` · ${job.progress_message}` : ""}`
      : "none reported";
    setText($("#job-progress-text"), said);

    const deps = job.depends_on || [];
    const depsKey = deps.join(",");
    const depsList = $("#job-dependencies");
    if (depsList.dataset.shown !== depsKey || !depsList.childElementCount) {
      depsList.dataset.shown = depsKey;
      depsList.replaceChildren(
        ...(deps.length
          ? deps.map((id) => el("li", {}, jobLink(id)))
          : [el("li", { class: "muted", text: "none" })]),
      );
    }
    const dependents = (await api("GET", `/jobs/${jobId}/dependents`)).jobs;
    const dependentsKey = dependents.map((d) => `${d.id}:${d.status}`).join(",");
    const dependentsList = $("#job-dependents");
    if (dependentsList.dataset.shown !== dependentsKey || !dependentsList.childElementCount) {
      dependentsList.dataset.shown = dependentsKey;
      dependentsList.replaceChildren(
        ...(dependents.length
          ? dependents.map((d) => el("li", {}, jobLink(d.id), ` ${d.type} · ${d.status}`))
          : [el("li", { class: "muted", text: "none" })]),
      );
    }
    const { starts } = await api("GET", `/jobs/${jobId}/starts`);
    renderTimeline(job, starts);
  }

  function renderTimeline(job, starts) {
    // each start the store kept (the last 101), numbered from the last, which is attempt
    // `attempts` (a snoozed run gives its attempt back, so earlier numbers may repeat)
    const started = starts.map((time, i) => [
      time,
      i === starts.length - 1 ? `started (attempt ${job.attempts} of ${job.max_attempts})` : "started",
    ]);
    const events = [
      [job.created_at, "created"],
      [job.run_at !== job.created_at && job.status === "pending" ? job.run_at : null, "due to run"],
      ...started,
      [job.finished_at, `finished: ${job.status}`],
    ].filter(([time]) => time);
    events.sort((a, b) => new Date(a[0]) - new Date(b[0]));
    const text = events.map(([time, what]) => `${time} ${what}`).join("\n");
    const list = $("#job-timeline");
    if (list.dataset.shown === text) return;
    list.dataset.shown = text;
    list.replaceChildren(
      ...events.map(([time, what]) => el("li", {}, el("time", { datetime: time, text: when(time) }), ` ${what}`)),
    );
  }

  function jobActions() {
    $("#job-retry").addEventListener("click", () =>
      act(`Retry job ${jobId} (${jobStatus})?`, () => api("POST", `/jobs/${jobId}/retry`), () => `Job ${jobId} retried.`),
    );
    $("#job-cancel").addEventListener("click", () =>
      act(`Cancel job ${jobId} (${jobStatus})?`, () => api("POST", `/jobs/${jobId}/cancel`), () => `Job ${jobId} cancelled.`),
    );
  }

  // -- Periodic --------------------------------------------------------------------------------------
  async function periodicPage() {
    const { periodic } = await api("GET", "/periodic");
    const rows = periodic.map((p) =>
      el(
        "tr",
        { data: { name: p.name } },
        td(p.name, "name"),
        el("td", {}, el("code", { text: p.schedule })),
        td(p.timezone),
        td(p.active === false ? "inactive" : when(p.next_tick)),
        td(when(p.last_tick)),
        el("td", {}, p.last_job_id ? jobLink(p.last_job_id) : "", p.last_job_status ? " " : "", p.last_job_status ? statusBadge(p.last_job_status) : ""),
      ),
    );
    $("#periodic tbody").replaceChildren(...rows);
    $("#periodic-empty").hidden = periodic.length > 0;
  }

  // -- start -------------------------------------------------------------------------------------------
  const pages = {
    overview: overviewPage,
    queues: queuesPage,
    workers: workersPage,
    jobs: jobsPage,
    job: jobPage,
    periodic: periodicPage,
  };
  const actions = { queues: queueActions, jobs: jobsActions, job: jobActions };
  if (actions[body.dataset.page]) actions[body.dataset.page]();

  if (authMode === "required" && !storedToken()) {
    askForToken("");
  } else {
    $("#forget-token").hidden = !storedToken();
    refreshNow();
  }
})();
