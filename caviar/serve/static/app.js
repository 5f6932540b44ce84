// caviar serve: the pages. Data comes from the JSON API (/api/...) and goes into the page as text
// (textContent, never innerHTML); charts are built by charts.js. A running run is polled every
// second for the rows after its cursors, so new trials, epochs and events appear without a reload.
"use strict";

(() => {
  const body = document.body, main = document.getElementById("main"), live = document.getElementById("live");
  const errors = [];
  window.addEventListener("error", (e) => { errors.push(String(e.message)); body.dataset.errors = errors.join(" | "); });
  window.addEventListener("unhandledrejection", (e) => { errors.push(String(e.reason)); body.dataset.errors = errors.join(" | "); });

  const POLL_LIVE = 1000, POLL_IDLE = 5000;
  const MAX_FAILED = 10;   // failed trials listed on a run page (the report lists every one)
  const el = (tag, attrs, ...kids) => {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (k === "text") node.textContent = v; else node.setAttribute(k, v); });
    kids.forEach((k) => node.append(k));
    return node;
  };
  const api = async (path, options) => {
    const answer = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    const data = await answer.json().catch(() => ({ error: `${answer.status} ${answer.statusText}` }));
    if (!answer.ok) throw new Error(data.error || `${answer.status}`);
    return data;
  };
  const runUrl = (name) => `/api/runs/${encodeURIComponent(name)}`;
  const num = (v) => (typeof v === "number" && isFinite(v) ? (Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : Number(v.toPrecision(4)).toString()) : "–");
  const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–");
  const span = (s) => (s === null || s === undefined ? "–" : s < 90 ? `${s.toFixed(1)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);

  function table(columns, rows) {
    const head = el("tr", {}, ...columns.map((c) => el("th", { text: c })));
    return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((v) => el("td", { text: v }))))));
  }

  function draw(id, figure) {
    const node = document.getElementById(id);
    if (node) Plotly.react(node, figure.data, figure.layout, { responsive: true, displaylogo: false });
  }

  // ---- the runs list ----------------------------------------------------------------------------
  async function runsPage() {
    const { runs } = await api("/api/runs");
    main.replaceChildren();
    if (!runs.length) { main.append(el("p", { class: "muted", text: "No runs under this results folder yet." })); return; }
    const form = el("form", { action: "/compare", method: "get", id: "compare-form" });
    const rows = runs.map((r) => el("tr", { "data-status": r.status },
      el("td", {}, el("input", { type: "checkbox", name: "run", value: r.name })),
      el("td", {}, el("a", { href: `/run/${encodeURIComponent(r.name)}`, text: r.name })),
      el("td", { text: r.kind }), el("td", { class: `status ${r.status}`, text: r.status }),
      el("td", { text: `${num(r.best)} (${r.metric}, ${r.mode})` }),
      el("td", { text: r.planned ? `${r.done} / ${r.planned}` : String(r.done) }),
      el("td", { text: when(r.started) }), el("td", { text: span(r.duration) })));
    const head = el("tr", {}, ...["", "run", "kind", "status", "best", "trials / epochs", "started", "duration"].map((c) => el("th", { text: c })));
    form.append(el("table", { id: "runs" }, el("thead", {}, head), el("tbody", {}, ...rows)),
      el("button", { type: "submit", text: "compare the checked runs" }));
    main.append(form);
    body.dataset.ready = "1";
    if (runs.some((r) => r.status === "running")) setTimeout(() => runsPage().catch(fail), POLL_IDLE);
  }

  // ---- one run, live -------------------------------------------------------------------------------
  function blank() { return { cursor: "", table: null }; }
  function append(store, answer) {
    if (answer.reset || !store.table) store.table = { columns: [], data: {} };
    const t = store.table;
    answer.columns.forEach((c) => {
      if (!(c in t.data)) { t.data[c] = new Array(answer.start).fill(null); t.columns.push(c); }
      const into = t.data[c];
      answer.data[c].forEach((v) => into.push(v));
    });
    t.columns.filter((c) => !(c in answer.data)).forEach((c) => { for (let i = 0; i < answer.rows; i++) t.data[c].push(null); });
    store.cursor = answer.cursor;
    return answer.rows > 0 || answer.reset;
  }

  async function runPage(name) {
    const state = { trials: blank(), epochs: blank(), events: blank(), info: null, contour: null, built: false,
      dirty: false, nextDraw: 0 };
    main.replaceChildren(el("section", { id: "summary" }), el("section", { id: "controls" }), el("section", { id: "charts" }),
      el("section", { id: "tables" }));
    const tick = async () => {
      state.info = await api(runUrl(name));
      const info = state.info, babysat = info.kind === "babysit";
      const cols = babysat ? "" : `&columns=trial_id,epoch,${encodeURIComponent(info.metric)}`;
      const got = await Promise.all([
        babysat ? null : api(`${runUrl(name)}/trials?since=${state.trials.cursor}`),
        api(`${runUrl(name)}/epochs?since=${state.epochs.cursor}${cols}`),
        babysat ? api(`${runUrl(name)}/events?since=${state.events.cursor}`) : null,
      ]);
      const changed = [["trials", got[0]], ["epochs", got[1]], ["events", got[2]]]
        .map(([k, a]) => (a ? append(state[k], a) : false)).some(Boolean);
      summary(info);
      controls(name, info);
      state.dirty = state.dirty || changed || !state.built;
      if (state.dirty && Date.now() >= state.nextDraw) {   // a big run redraws less often than it polls
        const start = Date.now();
        await render(name, state);
        state.dirty = false;
        state.nextDraw = Date.now() + 3 * (Date.now() - start);
      }
      state.built = true;
      body.dataset.ready = "1";
      live.textContent = info.status === "running" ? "● live" : "";
      setTimeout(() => tick().catch(fail), info.status === "running" ? POLL_LIVE : POLL_IDLE);
    };
    await tick();
  }

  function summary(info) {
    const counts = Object.entries(info.counts || {}).map(([k, v]) => `${v} ${k}`).join(", ");
    const items = [["kind", info.kind], ["status", info.status], ["metric", `${info.metric} (${info.mode})`],
      ["best", `${num(info.best)}${info.best_at !== null ? (info.kind === "babysit" ? ` at epoch ${info.best_at}` : ` (trial ${info.best_at})`) : ""}`],
      [info.kind === "babysit" ? "epochs" : "trials", info.planned ? `${info.done} / ${info.planned}` : String(info.done)],
      ["started", when(info.started)], ["duration", span(info.duration)]];
    if (counts) items.push(["statuses", counts]);
    document.getElementById("summary").replaceChildren(el("dl", {}, ...items.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])));
  }

  function controls(name, info) {
    const box = document.getElementById("controls");
    if (!info.nudge) { box.replaceChildren(); box.dataset.shown = ""; return; }
    if (box.dataset.shown) return;
    box.dataset.shown = "1";
    const lr = el("input", { name: "learning_rate", placeholder: "e.g. 1e-3", size: "10" });
    const l2 = el("input", { name: "l2", placeholder: "e.g. 1e-4", size: "10" });
    const said = el("span", { id: "nudge-said", class: "muted" });
    const send = async (extra) => {
      const set = {};
      if (lr.value.trim()) set.learning_rate = lr.value.trim();
      if (l2.value.trim()) set.l2 = l2.value.trim();
      try {
        const answer = await api(`${runUrl(name)}/nudge`, { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify(Object.assign({ set }, extra)) });
        said.textContent = `sent: ${answer.nudge} (applied at the next epoch)`;
      } catch (e) { said.textContent = `refused: ${e.message}`; }
    };
    const button = (text, extra) => { const b = el("button", { type: "button", text }); b.addEventListener("click", () => send(extra)); return b; };
    box.replaceChildren(el("h2", { text: "Nudge this run" }), el("label", { text: "learning rate " }, lr), el("label", { text: " l2 " }, l2),
      button("apply", {}), button("roll back", { rollback: true }), button("stop", { stop: true }), el("br"), said);
  }

  async function render(name, state) {
    const info = state.info, charts = document.getElementById("charts");
    const want = info.kind === "babysit" ? ["timeline"] : ["history", "intermediate", "parallel", "contour", "slice", "edf", "importance"];
    want.forEach((id) => { if (!document.getElementById(`chart-${id}`)) charts.append(el("div", { id: `chart-${id}`, class: "chart" })); });
    const trials = state.trials.table, epochs = state.epochs.table, scales = info.scales || {};
    if (info.kind === "babysit") {
      draw("chart-timeline", Charts.timeline(epochs, state.events.table, info.metric));
      eventsTable(state.events.table);
      return;
    }
    draw("chart-history", Charts.history(trials, info.mode, info.metric));
    draw("chart-intermediate", Charts.intermediate(epochs, trials, info.metric, info.mode));
    draw("chart-parallel", Charts.parallel(trials, scales, info.metric));
    contourChoice(state);
    draw("chart-slice", Charts.slice(trials, scales, info.metric, info.mode));
    draw("chart-edf", Charts.edf([{ name, scores: Charts.col(trials, "score") }], info.metric));
    const { importance } = await api(`${runUrl(name)}/importance`);
    draw("chart-importance", Charts.importance(importance));
    state.importance = importance;
    topTable(trials, info);
  }

  function contourChoice(state) {
    const names = Charts.params(state.trials.table), host = document.getElementById("chart-contour");
    if (names.length < 2) { host.replaceChildren(el("p", { class: "muted", text: "Contour: needs two searched hyperparameters." })); return; }
    if (!state.contour) {
      state.contour = [names[0], names[1]];
      const pick = (k) => { const s = el("select", {}, ...names.map((n) => el("option", { value: n, text: Charts.bare(n) }))); s.value = state.contour[k];
        s.addEventListener("change", () => { state.contour[k] = s.value; drawContour(state); }); return s; };
      host.before(el("div", { class: "picker" }, el("span", { text: "contour of " }), pick(0), el("span", { text: " and " }), pick(1)));
    }
    drawContour(state);
  }
  function drawContour(state) {
    const [x, y] = state.contour;
    draw("chart-contour", Charts.contour(state.trials.table, state.info.scales || {}, x, y, state.info.metric, state.info.mode));
  }

  function topTable(trials, info) {
    const ids = Charts.col(trials, "trial_id"), score = Charts.col(trials, "score"), status = Charts.col(trials, "status");
    const sign = info.mode === "min" ? 1 : -1;
    const order = ids.map((_, i) => i).filter((i) => Charts.finite(score[i]) && status[i] !== "failed")
      .sort((a, b) => sign * (score[a] - score[b]) || ids[a] - ids[b]).slice(0, 10);
    const names = Charts.params(trials);
    const rows = order.map((i) => [String(ids[i]), status[i], num(score[i]), ...names.map((c) => { const v = Charts.col(trials, c)[i]; return typeof v === "number" ? num(v) : String(v); })]);
    const allFailed = ids.map((_, i) => i).filter((i) => status[i] === "failed");
    const failed = allFailed.slice(0, MAX_FAILED).map((i) => [String(ids[i]), String(Charts.col(trials, "error")[i] || "")]);
    const host = document.getElementById("tables");
    host.replaceChildren(el("h2", { text: "Best trials" }), table(["trial", "status", "score", ...names.map(Charts.bare)], rows));
    const more = allFailed.length > MAX_FAILED ? `: ${MAX_FAILED} of ${allFailed.length} shown (the report lists them all)` : "";
    if (failed.length) host.append(el("h2", { text: `Failed trials${more}` }), table(["trial", "error"], failed));
  }

  function eventsTable(events) {
    const e = (c) => Charts.col(events, c);
    const rows = e("event").map((ev, i) => [String(e("epoch")[i]), ev, num(e("base_learning_rate")[i]), num(e("score")[i]), String(e("detail")[i] || "")]);
    document.getElementById("tables").replaceChildren(el("h2", { text: "Events" }), table(["epoch", "event", "base learning rate", "score", "detail"], rows));
  }

  // ---- compare ------------------------------------------------------------------------------------
  async function comparePage(names) {
    const runs = await Promise.all(names.map(async (name) => {
      const info = await api(runUrl(name));
      const babysat = info.kind === "babysit";
      const t = await api(babysat ? `${runUrl(name)}/epochs?columns=epoch,${encodeURIComponent(info.metric)}` : `${runUrl(name)}/trials?columns=trial_id,score,status`);
      const x = babysat ? t.data.epoch : t.data.trial_id, y = babysat ? t.data[info.metric] : t.data.score;
      return { name, info, x: x || [], y: y || [] };
    }));
    main.replaceChildren(table(["run", "kind", "status", "metric", "best", "trials / epochs", "started", "duration"],
      runs.map(({ name, info }) => [name, info.kind, info.status, `${info.metric} (${info.mode})`, num(info.best), String(info.done), when(info.started), span(info.duration)])),
    el("div", { id: "chart-compare-history", class: "chart" }), el("div", { id: "chart-compare-edf", class: "chart" }));
    const metric = runs.length ? runs[0].info.metric : "score";
    draw("chart-compare-history", { data: runs.map((r) => { const b = Charts.bestSoFar(r.x, r.y, r.info.mode); return { type: "scatter", mode: "lines", line: { shape: "hv" }, name: Charts.esc(r.name), x: b.x, y: b.y }; }),
      layout: Charts.base("Best so far", { xaxis: { title: { text: "trial (epoch for a babysat run)" } }, yaxis: { title: { text: Charts.esc(metric) } } }) });
    draw("chart-compare-edf", Charts.edf(runs.map((r) => ({ name: r.name, scores: r.y })), metric));
    body.dataset.ready = "1";
  }

  function fail(e) {
    errors.push(String(e && e.message ? e.message : e));
    body.dataset.errors = errors.join(" | ");
    main.prepend(el("p", { class: "error", text: `error: ${e && e.message ? e.message : e}` }));
  }

  const runs = JSON.parse(body.dataset.runs || "[]");
  const page = body.dataset.page;
  (page === "run" ? runPage(runs[0]) : page === "compare" ? comparePage(runs) : runsPage()).catch(fail);
})();
