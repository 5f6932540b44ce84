// caviar serve: the charts, as pure functions from columnar tables to Plotly figures.
// A table is {columns: [...], data: {name: [...]}}; every text from a results folder goes through
// esc() before Plotly sees it (Plotly reads a little HTML in labels). Only SVG traces: no WebGL
// (works without a GPU and under a policy that allows no eval).
"use strict";

const Charts = (() => {
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  const col = (t, name) => (t && t.data[name]) || [];
  const finite = (v) => typeof v === "number" && isFinite(v);
  const better = (mode) => (a, b) => (mode === "min" ? a < b : a > b);
  const params = (t) => (t ? t.columns.filter((c) => c.startsWith("params_")) : []);
  const bare = (c) => c.replace(/^params_/, "");
  const base = (title, extra) => Object.assign({
    title: { text: esc(title), font: { size: 14 } }, margin: { t: 36, r: 16, b: 44, l: 56 },
    hovermode: "closest", showlegend: true, legend: { orientation: "h", y: -0.2 },
  }, extra || {});
  // A value on the axis its scale wants: 1 - beta on a log axis for one_minus_log.
  const onAxis = (scale, v) => (scale === "one_minus_log" && finite(v) ? 1 - v : v);
  const axisType = (scale) => (scale === "log" || scale === "one_minus_log" ? "log" : scale === "category" ? "category" : "-");
  const axisTitle = (name, scale) => esc(scale === "one_minus_log" ? `1 - ${name}` : name);
  const STATUS_COLOR = { completed: "#1f77b4", pruned: "#aaaaaa", failed: "#d62728" };
  // Coarse-to-fine rounds take matplotlib's tab10 colours, as the report's figures do.
  const ROUND_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  // Trial order on a slice: mid blue to navy, both ends well visible on white (Plotly's "Blues"
  // ends near white, where its markers vanish).
  const ORDER_SCALE = [[0, "#4292c6"], [1, "#08306b"]];
  // The distinct coarse-to-fine rounds of the trials, in order, or null for a one-round sweep.
  function roundsOf(trials) {
    const r = [...new Set(col(trials, "round").filter((v) => v !== null && v !== undefined))].sort((a, b) => a - b);
    return r.length > 1 ? r : null;
  }
  // A marker's symbol by status: a pruned trial's score comes from fewer epochs, so it is hollow.
  const symbolOf = (status) => (status === "pruned" ? "circle-open" : "circle");

  function bestSoFar(xs, ys, mode) {
    const out = []; let best = null;
    ys.forEach((y, i) => { if (finite(y) && (best === null || better(mode)(y, best))) best = y; out.push(best); });
    return { x: xs, y: out };
  }

  // Score by trial order (each trial's score, coloured by status, or by round for a coarse-to-fine
  // sweep with pruned trials hollow) and the best so far.
  function history(trials, mode, metric) {
    const ids = col(trials, "trial_id"), score = col(trials, "score"), status = col(trials, "status");
    const order = ids.map((_, i) => i).sort((a, b) => ids[a] - ids[b]), rounds = roundsOf(trials), rnd = col(trials, "round");
    const xs = order.map((i) => ids[i]), ys = order.map((i) => score[i]), st = order.map((i) => status[i]);
    const scored = (i) => st[i] === "completed" || st[i] === "pruned";
    const traces = (rounds ? rounds.map((r, k) => {
      const at = order.map((_, i) => i).filter((i) => scored(i) && rnd[order[i]] === r);
      return { type: "scatter", mode: "markers", name: `round ${esc(r)}`, x: at.map((i) => xs[i]), y: at.map((i) => ys[i]),
        marker: { color: ROUND_COLORS[k % 10], size: 6, symbol: at.map((i) => symbolOf(st[i])) } };
    }) : ["completed", "pruned"].map((s) => ({
      type: "scatter", mode: "markers", name: s, marker: { color: STATUS_COLOR[s], size: 6 },
      x: xs.filter((_, i) => st[i] === s), y: ys.filter((_, i) => st[i] === s),
    }))).filter((t) => t.x.length);
    const b = bestSoFar(xs, ys, mode);
    traces.push({ type: "scatter", mode: "lines", name: "best so far", line: { color: rounds ? "#333333" : "#ff7f0e", shape: "hv" }, x: b.x, y: b.y });
    return { data: traces, layout: base("Optimization history", { xaxis: { title: { text: "trial" } }, yaxis: { title: { text: esc(metric) } } }) };
  }

  // One line per scored trial across the hyperparameters' axes (each scaled to [0, 1] on its own
  // scale), coloured by score: parallel coordinates drawn as SVG lines.
  function parallel(trials, scales, metric) {
    const names = params(trials), score = col(trials, "score");
    const dims = names.map((c) => axis(col(trials, c), scales[bare(c)], bare(c)));
    dims.push(axis(score, "linear", metric));
    const rows = score.map((s, i) => i).filter((i) => finite(score[i]));
    const lo = Math.min(...rows.map((i) => score[i])), hi = Math.max(...rows.map((i) => score[i]));
    const bands = 5, traces = [];
    for (let b = 0; b < bands; b++) {   // five colour bands keep it one trace per band, not per trial
      const x = [], y = [];
      rows.forEach((i) => {
        const band = hi > lo ? Math.min(bands - 1, Math.floor(((score[i] - lo) / (hi - lo)) * bands)) : bands - 1;
        if (band !== b) return;
        dims.forEach((d, k) => { x.push(k); y.push(d.pos[i]); });
        x.push(null); y.push(null);
      });
      traces.push({ type: "scatter", mode: "lines", x, y, hoverinfo: "skip", showlegend: false,
        line: { width: 1, color: `rgba(${40 + 50 * b},${90 + 25 * b},${200 - 35 * b},${0.25 + 0.15 * b})` } });
    }
    dims.forEach((d, k) => traces.push({ type: "scatter", mode: "text", x: [k, k], y: [-0.06, 1.06], showlegend: false,
      text: [esc(d.low), esc(d.high)], hoverinfo: "skip", textfont: { size: 10 } }));
    return { data: traces, layout: base("Parallel coordinates", { showlegend: false,
      xaxis: { tickvals: dims.map((_, k) => k), ticktext: dims.map((d) => d.title), zeroline: false },
      yaxis: { showticklabels: false, range: [-0.12, 1.12], zeroline: false, showgrid: false } }) };
  }

  function axis(values, scale, name) {
    if (scale === "category" || values.some((v) => v !== null && typeof v !== "number")) {
      const cats = [...new Set(values.map(String))].sort();
      return { title: esc(name), low: cats[0] || "", high: cats[cats.length - 1] || "",
        pos: values.map((v) => (cats.length > 1 ? cats.indexOf(String(v)) / (cats.length - 1) : 0.5)) };
    }
    const log = axisType(scale) === "log";
    const t = (v) => { const w = onAxis(scale, v); return finite(w) && (!log || w > 0) ? (log ? Math.log10(w) : w) : null; };
    const tv = values.map(t).filter((v) => v !== null);
    const lo = Math.min(...tv), hi = Math.max(...tv);
    const fmt = (v) => (log ? (10 ** v).toPrecision(2) : Number(v.toPrecision(3)).toString());
    return { title: axisTitle(name, scale), low: tv.length ? fmt(lo) : "", high: tv.length ? fmt(hi) : "",
      pos: values.map((v) => { const w = t(v); return w === null ? null : hi > lo ? (w - lo) / (hi - lo) : 0.5; }) };
  }

  // Mean score over a grid of two hyperparameters (binned on their own scales), trials on top.
  function contour(trials, scales, x, y, metric, mode) {
    const score = col(trials, "score"), ok = score.map((s) => finite(s)), { rows, note } = markerRows(trials, mode);
    const tx = (c) => col(trials, c).map((v) => { const w = onAxis(scales[bare(c)], v); return axisType(scales[bare(c)]) === "log" && w > 0 ? Math.log10(w) : w; });
    const tX = tx(x), tY = tx(y), drawn = rows.filter((i) => ok[i]);
    const xs = tX.filter((_, i) => ok[i]), ys = tY.filter((_, i) => ok[i]), zs = score.filter((_, i) => ok[i]);
    const label = (c) => axisTitle(bare(c), scales[bare(c)]) + (axisType(scales[bare(c)]) === "log" ? " (log10)" : "");
    return { data: [
      { type: "histogram2dcontour", x: xs, y: ys, z: zs, histfunc: "avg", nbinsx: 8, nbinsy: 8, colorscale: "Viridis",
        contours: { coloring: "heatmap" }, colorbar: { title: { text: esc(metric) } }, name: esc(metric) },
      { type: "scatter", mode: "markers", x: drawn.map((i) => tX[i]), y: drawn.map((i) => tY[i]),
        name: "trials", marker: { color: "#ffffff", size: 5, line: { color: "#333", width: 1 } } },
    ], layout: base("Contour" + note, { showlegend: false, xaxis: { title: { text: label(x) } }, yaxis: { title: { text: label(y) } } }) };
  }

  // Score against each hyperparameter, side by side: coloured by round for a coarse-to-fine sweep
  // (pruned trials hollow), else by trial order.
  function slice(trials, scales, metric, mode) {
    const names = params(trials), n = Math.max(names.length, 1), { rows, note } = markerRows(trials, mode);
    const rounds = roundsOf(trials), rnd = col(trials, "round"), status = col(trials, "status");
    const layout = base("Slice" + note, { showlegend: Boolean(rounds), grid: { rows: 1, columns: n, pattern: "independent" }, yaxis: { title: { text: esc(metric) } },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, margin: { t: 56, r: 16, b: 44, l: 56 } });   // above: the axes' titles are below
    const groups = rounds ? rounds.map((r, k) => ({ name: `round ${esc(r)}`, color: ROUND_COLORS[k % 10], rows: rows.filter((i) => rnd[i] === r) }))
      : [{ name: "trials", rows }];
    const data = [];
    names.forEach((c, k) => {
      const s = scales[bare(c)], ax = k === 0 ? "" : String(k + 1), values = col(trials, c), score = col(trials, "score");
      layout[`xaxis${ax}`] = { type: axisType(s), title: { text: axisTitle(bare(c), s) } };
      groups.forEach((g) => data.push({ type: "scatter", mode: "markers", xaxis: `x${ax}`, yaxis: `y${ax}`, name: g.name,
        legendgroup: g.name, showlegend: Boolean(rounds) && k === 0,
        x: g.rows.map((i) => (typeof values[i] === "string" ? esc(values[i]) : onAxis(s, values[i]))), y: g.rows.map((i) => score[i]),
        marker: rounds ? { size: 5, color: g.color, symbol: g.rows.map((i) => symbolOf(status[i])) }
          : { size: 5, color: g.rows.map((i) => col(trials, "trial_id")[i]), colorscale: ORDER_SCALE, showscale: k === 0,
            colorbar: { title: { text: "trial" }, thickness: 10 } } }));
    });
    return { data, layout };
  }

  // The trials whose curves are drawn: all of them up to MAX_CURVES, else the best half of that
  // many and the others evenly spaced (a browser draws 1,000 curves quickly, 10,000 slowly).
  // The same for the markers of a slice or a contour (each marker is an SVG element).
  const MAX_CURVES = 1000, MAX_MARKERS = 2000;
  function sampled(ids, score, mode, most) {
    if (ids.length <= most) return null;
    const order = ids.map((_, i) => i).filter((i) => finite(score[i])).sort((a, b) => (better(mode)(score[a], score[b]) ? -1 : better(mode)(score[b], score[a]) ? 1 : 0));
    const keep = new Set(order.slice(0, most / 2).map((i) => ids[i]));
    const step = ids.length / (most / 2);
    for (let k = 0; k < most / 2; k++) keep.add(ids[Math.floor(k * step)]);
    return keep;
  }
  // Row indices of `trials` whose markers are drawn (all, or a `sampled` set), and a title's note.
  function markerRows(trials, mode) {
    const ids = col(trials, "trial_id"), keep = sampled(ids, col(trials, "score"), mode, MAX_MARKERS);
    const rows = ids.map((_, i) => i).filter((i) => !keep || keep.has(ids[i]));
    return { rows, note: keep ? ` (${rows.length} of ${ids.length} trials: the best and others evenly spaced)` : "" };
  }

  // Each trial's metric by epoch, grouped by status (completed, pruned faded, diverged, failed), the best trial on top.
  function intermediate(epochs, trials, metric, mode) {
    const status = {}, ids = col(trials, "trial_id"), st = col(trials, "status"), score = col(trials, "score");
    ids.forEach((id, i) => { status[id] = st[i]; });
    let bestId = null, best = null;
    ids.forEach((id, i) => { if (st[i] !== "failed" && finite(score[i]) && (best === null || better(mode)(score[i], best))) { best = score[i]; bestId = id; } });
    const shown = sampled(ids, score, mode, MAX_CURVES);
    const tid = col(epochs, "trial_id"), ep = col(epochs, "epoch"), m = col(epochs, metric);
    const groups = { completed: { x: [], y: [] }, pruned: { x: [], y: [] }, diverged: { x: [], y: [] }, failed: { x: [], y: [] },
      best: { x: [], y: [] } };
    for (let i = 0; i < tid.length; i++) {
      if (shown && !shown.has(tid[i])) continue;
      const g = tid[i] === bestId ? "best" : status[tid[i]] in groups ? status[tid[i]] : "completed";
      if (i > 0 && tid[i - 1] !== tid[i]) { groups[g].x.push(null); groups[g].y.push(null); }
      groups[g].x.push(ep[i]); groups[g].y.push(m[i]);
    }
    const look = { completed: { color: "rgba(31,119,180,0.35)", width: 1 }, pruned: { color: "rgba(150,150,150,0.3)", width: 1 },
      diverged: { color: "rgba(140,86,75,0.5)", width: 1 }, failed: { color: "rgba(214,39,40,0.5)", width: 1 },
      best: { color: "#ff7f0e", width: 3 } };
    // A trial that failed in its first epoch has one point, no line: failed curves show their points.
    const data = Object.keys(groups).filter((g) => groups[g].x.length).map((g) => ({ type: "scatter", mode: g === "failed" ? "lines+markers" : "lines",
      marker: { size: 4, color: look[g].color },
      name: g === "best" ? `best (trial ${esc(bestId)})` : g, x: groups[g].x, y: groups[g].y, line: look[g], connectgaps: false }));
    const title = shown ? `Intermediate values (${shown.size} of ${ids.length} trials: the best and others evenly spaced)` : "Intermediate values";
    return { data, layout: base(title, { xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: esc(metric) } } }) };
  }

  // The empirical distribution of the scores: the fraction of trials scoring at most x.
  function edf(series, metric) {
    const data = series.map(({ name, scores }) => {
      const s = scores.filter(finite).sort((a, b) => a - b);
      return { type: "scatter", mode: "lines", line: { shape: "hv" }, name: esc(name), x: s, y: s.map((_, i) => (i + 1) / s.length) };
    });
    return { data, layout: base("Empirical distribution", { xaxis: { title: { text: esc(metric) } }, yaxis: { title: { text: "fraction of trials" }, range: [0, 1.02] } }) };
  }

  function importance(rows) {
    const r = rows.filter((x) => finite(x.importance)).reverse();
    return { data: [{ type: "bar", orientation: "h", x: r.map((x) => x.importance), y: r.map((x) => esc(x.param)),
      name: "importance", marker: { color: "#2ca02c" } }],
    layout: base("Hyperparameter importance (share of score variance, ε²)", { showlegend: false, xaxis: { range: [0, 1] }, margin: { t: 36, r: 16, b: 44, l: 120 } }) };
  }

  // A babysat run: its metric and learning rate by epoch, with the babysitter's events marked.
  function timeline(epochs, events, metric) {
    const ep = col(epochs, "epoch"), m = col(epochs, metric), lr = col(epochs, "learning_rate");
    const data = [
      { type: "scatter", mode: "lines+markers", name: esc(metric), x: ep, y: m, marker: { size: 4 } },
      { type: "scatter", mode: "lines", name: "learning rate", x: ep, y: lr, yaxis: "y2", line: { dash: "dot", color: "#7f7f7f", shape: "hv" } },
    ];
    const at = {}; ep.forEach((e, i) => { at[e] = m[i]; });
    const marks = { rollback: ["x", "#d62728"], diverged: ["x-open", "#8c0000"], plateau: ["triangle-down", "#ff7f0e"],
      nudge: ["star", "#9467bd"], nudge_refused: ["star-open", "#9467bd"], stop: ["square", "#000"], final: ["diamond", "#2ca02c"] };
    const ev = col(events, "event"), ee = col(events, "epoch"), detail = col(events, "detail");
    Object.keys(marks).forEach((kind) => {
      const idx = ev.map((e, i) => i).filter((i) => ev[i] === kind);
      if (!idx.length) return;
      data.push({ type: "scatter", mode: "markers", name: kind, x: idx.map((i) => ee[i]), y: idx.map((i) => (ee[i] in at ? at[ee[i]] : null)),
        marker: { symbol: marks[kind][0], color: marks[kind][1], size: 12 },
        hovertext: idx.map((i) => esc(`${kind}: ${detail[i] || ""}`)), hoverinfo: "text+x" });
    });
    return { data, layout: base("Timeline", { xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: esc(metric) } },
      yaxis2: { title: { text: "learning rate" }, type: "log", overlaying: "y", side: "right", exponentformat: "e" }, margin: { t: 36, r: 70, b: 44, l: 56 } }) };
  }

  return { esc, col, finite, params, bare, bestSoFar, history, parallel, contour, slice, intermediate, edf, importance, timeline, base };
})();
