/* The leadscore dashboard: each panel reads one JSON endpoint of this server and draws inline SVG. */
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { admin: false };

function $(id) { return document.getElementById(id); }

function node(tag, attrs, text) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function shape(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

function note(id, text, error) {
  const el = $(id);
  el.textContent = text || "";
  el.classList.toggle("error", Boolean(error));
}

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" },
                                       ...(options || {}) });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  return { status: response.status, ok: response.ok, body };
}

function detail(result) {
  const d = result.body && result.body.detail;
  return typeof d === "string" ? d : `HTTP ${result.status}`;
}

function fmt(value, digits) {
  return value === null || value === undefined ? "n/a" : Number(value).toFixed(digits === undefined ? 3 : digits);
}

function facts(dl, pairs) {
  clear(dl);
  for (const [k, v] of pairs) { dl.appendChild(node("dt", {}, k)); dl.appendChild(node("dd", {}, v)); }
}

function message(svg, text) {
  clear(svg);
  const box = svg.viewBox.baseVal;
  svg.appendChild(shape("text", { x: box.width / 2, y: box.height / 2, "text-anchor": "middle" }, text));
}

/* --- charts ------------------------------------------------------------------------------------- */

function radar(svg, metrics, labels) {
  clear(svg);
  const names = Object.keys(metrics), cx = 160, cy = 150, r = 100, n = names.length;
  const point = (i, v) => [cx + r * v * Math.sin(2 * Math.PI * i / n), cy - r * v * Math.cos(2 * Math.PI * i / n)];
  for (const ring of [0.25, 0.5, 0.75, 1]) {
    const pts = names.map((_, i) => point(i, ring).join(",")).join(" ");
    svg.appendChild(shape("polygon", { points: pts, class: "axis", fill: "none" }));
  }
  names.forEach((name, i) => {
    const [x, y] = point(i, 1), [lx, ly] = point(i, 1.22);
    svg.appendChild(shape("line", { x1: cx, y1: cy, x2: x, y2: y, class: "axis" }));
    const value = metrics[name];
    svg.appendChild(shape("text", { x: lx, y: ly, "text-anchor": "middle" }, `${labels[name] || name} ${fmt(value, 2)}`));
  });
  const pts = names.map((name, i) => point(i, Math.max(0, Math.min(1, metrics[name] || 0))).join(",")).join(" ");
  svg.appendChild(shape("polygon", { points: pts, class: "area" }));
}

function hbars(svg, items, options) {
  clear(svg);
  if (!items.length) { message(svg, (options && options.empty) || "No data"); return; }
  const box = svg.viewBox.baseVal, left = 130, right = 50, row = Math.min(24, (box.height - 10) / items.length);
  const max = Math.max(...items.map(d => d.value), 1e-9);
  items.forEach((d, i) => {
    const y = 5 + i * row, w = (box.width - left - right) * d.value / max;
    svg.appendChild(shape("text", { x: left - 6, y: y + row * 0.65, "text-anchor": "end" }, d.label.slice(0, 20)));
    const bar = shape("rect", { x: left, y: y + 2, width: Math.max(w, 1), height: row - 4, class: "bar" });
    bar.appendChild(shape("title", {}, `${d.label}: ${d.text}`));
    svg.appendChild(bar);
    svg.appendChild(shape("text", { x: left + w + 4, y: y + row * 0.65 }, d.text));
  });
}

function vbars(svg, items) {
  clear(svg);
  const box = svg.viewBox.baseVal, bottom = box.height - 22, top = 14, width = (box.width - 20) / items.length;
  const max = Math.max(...items.map(d => d.value), 1);
  svg.appendChild(shape("line", { x1: 10, y1: bottom, x2: box.width - 10, y2: bottom, class: "axis" }));
  items.forEach((d, i) => {
    const h = (bottom - top) * d.value / max, x = 10 + i * width;
    const bar = shape("rect", { x: x + 2, y: bottom - h, width: width - 4, height: Math.max(h, 0), class: "bar" });
    bar.appendChild(shape("title", {}, `${d.label}: ${d.value}`));
    svg.appendChild(bar);
    svg.appendChild(shape("text", { x: x + width / 2, y: bottom + 14, "text-anchor": "middle" }, d.label));
    if (d.value) svg.appendChild(shape("text", { x: x + width / 2, y: bottom - h - 3, "text-anchor": "middle" }, d.value));
  });
}

function intervals(svg, arms) {
  clear(svg);
  const box = svg.viewBox.baseVal, left = 90, right = 20;
  const max = Math.max(...arms.map(a => a.high || a.rate || 0), 0.01);
  const x = v => left + (box.width - left - right) * (v || 0) / max;
  svg.appendChild(shape("line", { x1: left, y1: box.height - 16, x2: box.width - right, y2: box.height - 16, class: "axis" }));
  svg.appendChild(shape("text", { x: box.width - right, y: box.height - 3, "text-anchor": "end" }, `${fmt(100 * max, 1)}%`));
  arms.forEach((a, i) => {
    const y = 20 + i * 32;
    svg.appendChild(shape("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, a.arm));
    if (a.low !== null && a.high !== null) svg.appendChild(shape("line", { x1: x(a.low), y1: y, x2: x(a.high), y2: y, class: "ci" }));
    const rate = a.rate === null ? "n/a" : `${fmt(100 * a.rate, 1)}%`;
    const ci = a.low === null || a.high === null ? "no interval yet" : `95% CI ${fmt(100 * a.low, 1)}-${fmt(100 * a.high, 1)}%`;
    const dot = shape("circle", { cx: x(a.rate), cy: y, r: 5, class: "bar" });
    dot.appendChild(shape("title", {}, `${a.arm}: ${a.conversions}/${a.n} converted, ${rate} (${ci})`));
    svg.appendChild(dot);
    svg.appendChild(shape("text", { x: x(a.rate), y: y - 8, "text-anchor": "middle" }, `${rate} (n=${a.n})`));
  });
}

function line(svg, values, labels) {
  clear(svg);
  const box = svg.viewBox.baseVal, pad = 24;
  svg.appendChild(shape("line", { x1: pad, y1: box.height - pad, x2: box.width - pad, y2: box.height - pad, class: "axis" }));
  const step = values.length > 1 ? (box.width - 2 * pad) / (values.length - 1) : 0;
  const at = (v, i) => [values.length > 1 ? pad + i * step : box.width / 2, box.height - pad - (box.height - 2 * pad) * v / 100];
  if (values.length > 1) svg.appendChild(shape("polyline", { points: values.map((v, i) => at(v, i).join(",")).join(" "), class: "line" }));
  values.forEach((v, i) => {
    const [cx, cy] = at(v, i);
    const dot = shape("circle", { cx, cy, r: 4, class: "bar" });
    dot.appendChild(shape("title", {}, `${labels[i]}: ${v}`));
    svg.appendChild(dot);
    svg.appendChild(shape("text", { x: cx, y: cy - 7, "text-anchor": "middle" }, v));
  });
}

function timeline(svg, weeks, events) {
  clear(svg);
  const box = svg.viewBox.baseVal, left = 34, right = 12, top = 14, bottom = box.height - 34;
  const times = weeks.map(w => Date.parse(`${w.week}T00:00:00Z`));
  const start = Math.min(...times, ...events.map(e => Date.parse(e.at)));
  const end = Math.max(...times.map(t => t + 7 * 864e5), ...events.map(e => Date.parse(e.at)), start + 864e5);
  const x = t => left + (box.width - left - right) * (t - start) / (end - start);
  const y = v => bottom - (bottom - top) * Math.max(0, Math.min(1, v));
  for (const v of [0, 0.5, 1]) {
    svg.appendChild(shape("line", { x1: left, y1: y(v), x2: box.width - right, y2: y(v), class: "axis" }));
    svg.appendChild(shape("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(1)));
  }
  const labelled = [...new Set(weeks.map(w => w.week))].sort(), every = Math.ceil(labelled.length / 8);
  labelled.forEach((week, i) => {  // at most 8 week labels: the rest in each dot's tooltip
    if (i % every) return;
    svg.appendChild(shape("text", { x: x(Date.parse(`${week}T00:00:00Z`) + 3.5 * 864e5), y: bottom + 14, "text-anchor": "middle" }, week.slice(5)));
  });
  weeks.forEach((w, i) => {  // estimates of weeks with open leads: hollow dot, 95% interval
    const px = x(times[i] + 3.5 * 864e5);
    for (const [key, cls, name] of [["roc_auc", "auc", "ROC-AUC"], ["conversion", "conv", "conversion"]]) {
      const est = w[`est_${key}`], low = w[`est_${key}_low`], high = w[`est_${key}_high`];
      if (est === null || est === undefined) continue;
      if (low !== null && high !== null) svg.appendChild(shape("line", { x1: px, y1: y(low), x2: px, y2: y(high), class: `whisker-${cls}` }));
      const dot = shape("circle", { cx: px, cy: y(est), r: 3.5, class: `est-${cls}` });
      dot.appendChild(shape("title", {}, `week of ${w.week} (${w.model_version}): estimated ${name} ${fmt(est)} (95% ${fmt(low)}-${fmt(high)}), ${w.open} of ${w.leads} leads still open`));
      svg.appendChild(dot);
    }
  });
  for (const [key, cls] of [["roc_auc", "auc"], ["conversion", "conv"]]) {
    const pts = weeks.map((w, i) => [w, x(times[i] + 3.5 * 864e5)]).filter(([w]) => w[key] !== null);
    if (pts.length > 1) svg.appendChild(shape("polyline", { points: pts.map(([w, px]) => `${px},${y(w[key])}`).join(" "), class: cls }));
    for (const [w, px] of pts) {
      const dot = shape("circle", { cx: px, cy: y(w[key]), r: 3.5, class: `dot-${cls}` });
      dot.appendChild(shape("title", {}, `week of ${w.week} (${w.model_version}): ${key === "roc_auc" ? "ROC-AUC" : "conversion"} ${fmt(w[key])}, ${w.labelled} of ${w.leads} labelled`));
      svg.appendChild(dot);
    }
  }
  let lastLabel = -Infinity, row = 0;
  for (const e of events) {
    const px = x(Date.parse(e.at));
    const mark = shape("line", { x1: px, y1: top - 6, x2: px, y2: bottom, class: "marker" });
    mark.appendChild(shape("title", {}, `${e.at}: ${e.event}${e.version ? ` ${e.version}` : ""}${e.detail ? ` (${e.detail})` : ""}`));
    svg.appendChild(mark);
    if (px - lastLabel < 40 && row === 1) continue;  // crowded: the line's tooltip names it
    row = px - lastLabel < 40 ? 1 : 0;
    lastLabel = px;
    svg.appendChild(shape("text", { x: Math.min(px + 2, box.width - 40), y: bottom + 26 - row * 8, class: "marker-label" }, e.event));
  }
}

function stateBars(svg, items) {
  clear(svg);
  svg.setAttribute("viewBox", `0 0 420 ${10 + 22 * items.length}`);
  const box = svg.viewBox.baseVal, left = 130, right = 60, row = 22;
  const max = Math.max(...items.map(d => d.value || 0), 0.25);
  items.forEach((d, i) => {
    const y = 5 + i * row, w = (box.width - left - right) * (d.value || 0) / max;
    svg.appendChild(shape("text", { x: left - 6, y: y + row * 0.65, "text-anchor": "end" }, d.label.slice(0, 20)));
    const bar = shape("rect", { x: left, y: y + 2, width: Math.max(w, 1), height: row - 4, class: `state-${d.state}` });
    bar.appendChild(shape("title", {}, `${d.label}: PSI ${fmt(d.value)} (${d.state}) - ${d.reason}`));
    svg.appendChild(bar);
    svg.appendChild(shape("text", { x: left + w + 4, y: y + row * 0.65 }, `${fmt(d.value, 2)} ${d.state}`));
  });
}

const STATE_CLASS = { ok: "state-ok", warn: "state-warn", alert: "state-alert" };

function heatmap(svg, d) {
  clear(svg);
  const left = 150, top = 8, bottom = 34, width = 420 - left - 8, rowH = 16;
  const height = top + rowH * d.features.length + bottom;
  svg.setAttribute("viewBox", `0 0 420 ${height}`);
  const colW = width / d.periods.length, cells = new Map(d.cells.map(c => [`${c.feature}|${c.period}`, c]));
  d.features.forEach((f, r) => {
    svg.appendChild(shape("text", { x: left - 6, y: top + r * rowH + rowH * 0.7, "text-anchor": "end" }, f.slice(0, 20)));
    d.periods.forEach((p, c) => {
      const cell = cells.get(`${f}|${p}`);
      if (!cell) return;
      const rect = shape("rect", { x: left + c * colW + 1, y: top + r * rowH + 1, width: Math.max(colW - 2, 1), height: rowH - 2,
                                   class: `cell ${STATE_CLASS[cell.state] || "state-none"}` });
      rect.appendChild(shape("title", {}, `${f}, week of ${p}: PSI ${fmt(cell.psi)} (${cell.state}, ${cell.n} leads) - ${cell.reason}`));
      svg.appendChild(rect);
      if (colW >= 24 && cell.psi !== null) svg.appendChild(shape("text", { x: left + (c + 0.5) * colW, y: top + r * rowH + rowH * 0.72, "text-anchor": "middle", class: "cell-text" }, fmt(cell.psi, 2)));
    });
  });
  const every = Math.ceil(d.periods.length / 6);
  d.periods.forEach((p, c) => {
    if (c % every) return;
    svg.appendChild(shape("text", { x: left + (c + 0.5) * colW, y: top + rowH * d.features.length + 14, "text-anchor": "middle" }, p.slice(5)));
  });
  svg.appendChild(shape("text", { x: 8, y: height - 4 }, "Week (Monday). Colour: state (grey: too few leads); number: PSI."));
}

function scatter(svg, points, names) {
  clear(svg);
  const box = svg.viewBox.baseVal, pad = 12;
  const xs = points.map(p => p.x), ys = points.map(p => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const x = v => pad + (box.width - 2 * pad) * (v - x0) / ((x1 - x0) || 1);
  const y = v => box.height - pad - (box.height - 2 * pad) * (v - y0) / ((y1 - y0) || 1);
  svg.appendChild(shape("rect", { x: 1, y: 1, width: box.width - 2, height: box.height - 2, class: "frame" }));
  for (const p of points) {
    const dot = shape("circle", { cx: x(p.x).toFixed(1), cy: y(p.y).toFixed(1), r: 2.6, class: `seg seg-${p.cluster % 12}` });
    dot.appendChild(shape("title", {}, names[p.cluster] || `segment ${p.cluster}`));
    svg.appendChild(dot);
  }
}

/* --- panels -------------------------------------------------------------------------------------- */

const RADAR_LABELS = { precision: "Precision", recall: "Recall", f1: "F1", roc_auc: "ROC-AUC", accuracy: "Accuracy" };

async function loadModel() {
  const result = await api("/v1/dashboard/model");
  if (!result.ok) { note("model-note", detail(result), true); message($("radar"), "No model"); message($("importance"), "No model"); return; }
  const m = result.body, window = m.training_window || [];
  facts($("model-facts"), [["Version", m.version], ["Model", m.model || "n/a"], ["Created", m.created_at || "n/a"],
    ["Training window", window.length ? `${window[0] || "?"} to ${window[1] || "?"}` : "not recorded"],
    ...Object.entries(m.metrics).map(([k, v]) => [RADAR_LABELS[k] || k, fmt(v)]),
    ...Object.entries(m.other_metrics).slice(0, 4).map(([k, v]) => [k, fmt(v)])]);
  radar($("radar"), m.metrics, RADAR_LABELS);
  note("model-note", m.missing.length ? `Not in the model's test metrics: ${m.missing.map(k => RADAR_LABELS[k]).join(", ")} (drawn at 0).` : "");
  hbars($("importance"), m.importance.map(d => ({ label: d.feature, value: d.share, text: `${fmt(100 * d.share, 1)}%` })),
        { empty: m.importance_note || "No importances" });
  note("importance-note", m.importance_note || "Share of the model's total importance, per input column.");
}

async function loadScores() {
  const days = Math.max(1, Math.min(365, Number($("days").value) || 30));
  const result = await api(`/v1/dashboard/scores?days=${days}`);
  if (!result.ok) { note("scores-note", detail(result), true); message($("histogram"), "Unavailable"); message($("tiers"), "Unavailable"); return; }
  const s = result.body;
  vbars($("histogram"), s.bins.map(b => ({ label: `${b.low}`, value: b.count })));
  hbars($("tiers"), Object.entries(s.tiers).map(([t, c]) => ({ label: t, value: c, text: String(c) })), { empty: "No leads scored" });
  note("scores-note", `${s.count} lead score(s) in the last ${s.days} day(s)${s.truncated ? ` (newest ${s.limit} shown)` : ""}.${asOf(s)}`);
}

const EVENT_NAMES = { activate: "activation", rollback: "rollback", gate: "gate decision", retrain: "retrain cycle", challenger: "challenger" };

async function loadPerformance() {
  const weeks = Math.max(1, Math.min(104, Number($("weeks").value) || 26));
  const result = await api(`/v1/dashboard/performance?weeks=${weeks}`);
  const legend = clear($("performance-legend"));
  if (!result.ok) { note("performance-note", detail(result), true); message($("performance"), "Unavailable"); return; }
  const p = result.body;
  const matured = p.series.filter(w => w.labelled > 0), estimated = p.series.filter(w => w.est_roc_auc !== null || w.est_conversion !== null);
  if (!p.series.length) message($("performance"), `No leads scored by ${p.version} in the last ${p.weeks} week(s)`);
  else if (!matured.length && !estimated.length) message($("performance"), "No matured week yet");
  else timeline($("performance"), p.series, p.events);
  for (const [cls, text] of [["key-auc", "realized ROC-AUC"], ["key-conv", "realized conversion"], ["key-est", "estimated (hollow, 95% interval)"], ["key-marker", "registry event"]]) {
    legend.appendChild(node("li", { class: cls }, text));
  }
  const scored = p.series.reduce((n, w) => n + w.leads, 0), labelled = p.series.reduce((n, w) => n + w.labelled, 0);
  const kinds = [...new Set(p.events.map(e => EVENT_NAMES[e.event] || e.event))];
  const words = matured.length
    ? `${scored} lead(s) scored by ${p.version}, ${labelled} with a matured label (${p.label_window_days}-day window); ROC-AUC needs ${p.min_labelled} labelled leads of both outcomes in a week.`
    : `No matured week yet: none of the ${scored} lead(s) scored by ${p.version} in the last ${p.weeks} week(s) has a label (converted, lost, or ${p.label_window_days} days passed).`;
  const guessed = estimated.length ? ` ${estimated.length} week(s) with open leads are estimated from the calibrated scores.` : "";
  note("performance-note", `${words}${guessed}${kinds.length ? ` Events: ${kinds.join(", ")}.` : ""}${p.truncated ? ` Newest ${p.limit} scores only.` : ""}${asOf(p)}`);
}

async function loadMonitoring() {
  const reasons = clear($("monitoring-reasons"));
  const result = await api("/v1/dashboard/monitoring");
  if (!result.ok) { note("monitoring-note", detail(result), true); message($("drift"), "Unavailable"); return; }
  const m = result.body;
  if (!m.checked_at) { message($("drift"), "No monitoring check saved yet"); note("monitoring-note", "No monitoring check saved yet: run leadscore monitor check."); return; }
  const versions = new Set(m.drift.map(d => d.model_version));
  const drift = m.drift.slice().sort((a, b) => (b.value || 0) - (a.value || 0)).slice(0, 12);
  if (drift.length) {
    stateBars($("drift"), drift.map(d => ({ label: versions.size > 1 ? `${d.subject} (${d.model_version.slice(-6)})` : d.subject, value: d.value, state: d.state, reason: d.reason })));
  } else message($("drift"), "No feature drift judged in the last check");
  for (const s of [...m.score_drift, ...m.performance, ...m.other, ...m.drift.filter(d => d.state !== "ok")]) {
    reasons.appendChild(node("li", { class: `state-${s.state}` }, `${s.state.toUpperCase()} ${s.check} ${s.subject} (${s.model_version}, ${s.period}): ${s.reason}`));
  }
  const counts = Object.entries(m.states).map(([k, v]) => `${v} ${k}`).join(", ");
  note("monitoring-note", `Checked ${m.checked_at}: ${counts || "no states"}.`);
}

async function loadDrift() {
  const result = await api("/v1/dashboard/drift?weeks=12");
  if (!result.ok) { note("heatmap-note", detail(result), true); message($("drift-heatmap"), "Unavailable"); return; }
  const d = result.body;
  if (d.note || !d.periods.length) { message($("drift-heatmap"), "No drift to show"); note("heatmap-note", d.note || ""); return; }
  heatmap($("drift-heatmap"), d);
  const alerts = d.cells.filter(c => c.state === "alert").length, warns = d.cells.filter(c => c.state === "warn").length;
  note("heatmap-note", `${d.leads} lead score(s) by ${d.version} over ${d.periods.length} week(s)${d.truncated ? ` (newest ${d.limit})` : ""}: ${alerts} alert and ${warns} warning cell(s) among the score and the ${d.features.length - 1} most drifted features.${asOf(d)}`);
}

function asOf(body) {
  return body.computed_at ? ` Figures as of ${new Date(body.computed_at).toLocaleTimeString()}.` : "";
}

function pct(value) { return value === null || value === undefined ? "n/a" : `${fmt(100 * value, 1)}%`; }

async function loadSegments() {
  const days = Math.max(1, Math.min(365, Number($("segment-days").value) || 90));
  const k = Math.max(2, Math.min(12, Number($("segment-k").value) || 5));
  const result = await api(`/v1/dashboard/segments?days=${days}&k=${k}`);
  const body = clear($("segments").tBodies[0]);
  if (!result.ok) { note("segments-note", detail(result), true); message($("segments-scatter"), "Unavailable"); return; }
  const s = result.body, names = {};
  if (s.note || !s.segments.length) { message($("segments-scatter"), "No segments"); note("segments-note", s.note || "No segments"); return; }
  s.segments.forEach((g, i) => {
    names[g.cluster] = `Segment ${i + 1}: ${g.leads} leads, mean probability ${pct(g.mean_probability)}`;
    const row = node("tr");
    const key = node("td");
    key.appendChild(node("span", { class: `swatch seg-${g.cluster % 12}`, "aria-hidden": "true" }));
    key.appendChild(document.createTextNode(` ${i + 1}`));
    row.appendChild(key);
    for (const text of [`${g.leads} (${pct(g.share)})`, g.labelled ? `${pct(g.conversion)} of ${g.labelled}` : "none matured",
                        pct(g.mean_probability), g.traits || "-"]) row.appendChild(node("td", {}, text));
    body.appendChild(row);
  });
  scatter($("segments-scatter"), s.points, names);
  note("segments-note", `${s.leads} lead(s) scored by ${s.version} in the last ${s.days} day(s)${s.truncated ? ` (newest ${s.limit})` : ""}, in ${s.segments.length} k-means segments on the numeric features; ${s.points.length} drawn on the first two principal components. Conversion counts leads whose ${s.label_window_days}-day label matured.${asOf(s)}`);
}

function adminOnly(button) {
  button.disabled = !state.admin;
  if (!state.admin) button.title = "Needs an admin key"; else button.removeAttribute("title");
}

async function switchModel(path, question) {
  if (!window.confirm(question)) return;
  const result = await api(path, { method: "POST" });
  note("versions-note", result.ok ? `Now serving ${result.body.active} (was ${result.body.previous || "none"}).` : detail(result), !result.ok);
  await loadModelPanels();
}

async function loadVersions() {
  const result = await api("/v1/model/versions");
  const body = $("versions").tBodies[0];
  clear(body);
  if (!result.ok) { note("versions-note", detail(result), true); message($("versions-chart"), "Unavailable"); return; }
  const versions = result.body.versions;
  for (const v of versions) {
    const row = node("tr");
    const stateText = [v.active ? "active" : "", v.serving ? "serving" : ""].filter(Boolean).join(", ") || "-";
    for (const text of [v.version, v.model || "", fmt(v.metrics && v.metrics.roc_auc), stateText]) row.appendChild(node("td", {}, text));
    const cell = node("td");
    if (!v.active) {
      const button = node("button", { type: "button", "aria-label": `Activate ${v.version}` }, "Activate");
      adminOnly(button);
      button.addEventListener("click", () => switchModel(`/v1/model/activate/${encodeURIComponent(v.version)}`, `Activate version ${v.version}?`));
      cell.appendChild(button);
    }
    row.appendChild(cell);
    body.appendChild(row);
  }
  const oldestFirst = versions.slice().reverse();
  vbars($("versions-chart"), oldestFirst.map(v => ({ label: v.version.slice(-6), value: Math.round(1000 * ((v.metrics && v.metrics.roc_auc) || 0)) / 1000 })));
  $("versions-chart").appendChild(shape("text", { x: 12, y: 11 }, "ROC-AUC per version (oldest first)"));
}

async function pollJob(job) {
  for (;;) {
    const result = await api(`/v1/model/train/${encodeURIComponent(job)}`);
    if (!result.ok) { note("versions-note", detail(result), true); return; }
    const j = result.body, log = $("train-log");
    log.hidden = false;
    log.textContent = (j.log_tail || []).join("\n") || "(no output yet)";
    note("versions-note", `Training job ${j.job}: ${j.state}${j.error ? ` (${j.error})` : ""}`, j.state === "failed");
    if (j.state !== "running") { await loadModelPanels(); return; }
    await new Promise(done => setTimeout(done, 2000));
  }
}

/* every panel that depends on the served version, after it may have changed */
async function loadModelPanels() {
  await Promise.all([loadVersions(), loadModel(), loadPerformance(), loadDrift(), loadSegments()]);
}

async function train() {
  const result = await api("/v1/model/train", { method: "POST" });
  if (!result.ok) { note("versions-note", `Training not started: ${detail(result)}`, true); return; }
  await pollJob(result.body.job);
}

async function loadExperiments() {
  const target = clear($("experiments"));
  const result = await api("/v1/dashboard/experiments");
  if (!result.ok) { note("experiments-note", detail(result), true); return; }
  const listed = result.body.experiments;
  if (!listed.length) {
    const svg = shape("svg", { viewBox: "0 0 420 60", role: "img", "aria-label": "No experiments" });
    target.appendChild(svg);
    message(svg, "No experiments yet");
    return;
  }
  for (const found of listed) {
    const e = found.experiment, block = node("div", { class: "experiment" });
    block.appendChild(node("h3", {}, `${e.name} (${e.status}): ${e.treatment} vs ${e.control}`));
    const svg = shape("svg", { viewBox: "0 0 420 90", role: "img", "aria-label": `Conversion per arm of ${e.name}` });
    block.appendChild(svg);
    target.appendChild(block);
    intervals(svg, found.arms || []);
    const advice = found.recommendation || {};
    block.appendChild(node("p", {}, `Recommendation: ${advice.action || "n/a"}${(advice.reasons || []).length ? ` - ${advice.reasons.join("; ")}` : ""}`));
  }
  const b = result.body;
  note("experiments-note", `${b.total > b.limit ? `The newest ${b.limit} of ${b.total} experiments.` : ""}${asOf(b)}`.trim());
}

async function lookUp(event) {
  event.preventDefault();
  const id = $("lead-id").value.trim();
  if (!id) return;
  const result = await api(`/v1/leads/${encodeURIComponent(id)}/scores`);
  clear($("lead-reasons"));
  if (!result.ok) { facts($("lead-facts"), []); message($("lead-history"), "No scores"); note("lead-note", detail(result), true); return; }
  const h = result.body, last = h.latest;
  facts($("lead-facts"), [["Lead", h.lead_id], ["Score", String(last.score)], ["Tier", last.tier || "n/a"],
    ["Probability", fmt(last.probability)], ["Model", last.model_version], ["Scored", last.scored_at]]);
  const reasons = last.reasons || {};
  for (const side of ["positive", "negative"]) {
    const list = node("ul", { "aria-label": `${side} reasons` });
    for (const r of reasons[side] || []) list.appendChild(node("li", {}, `${side === "positive" ? "+" : "-"} ${r.text || r.field}`));
    if (list.childNodes.length) $("lead-reasons").appendChild(list);
  }
  if (!$("lead-reasons").childNodes.length) $("lead-reasons").appendChild(node("p", { class: "note" }, "No reasons recorded for this score."));
  const oldestFirst = h.history.slice().reverse();
  line($("lead-history"), oldestFirst.map(e => e.score), oldestFirst.map(e => e.scored_at));
  note("lead-note", `${h.history.length} score(s), newest first in the history; the chart runs oldest to newest.`);
}

async function start() {
  const me = await api("/v1/dashboard/whoami");
  if (!me.ok) { $("who").textContent = detail(me); return; }
  state.admin = me.body.role === "admin";
  $("who").textContent = `Signed in as ${me.body.name} (${me.body.role})`;
  adminOnly($("rollback"));
  adminOnly($("train"));
  if (!state.admin) note("versions-note", "Activate, Roll back and Train now need an admin key.");
  $("rollback").addEventListener("click", () => switchModel("/v1/model/rollback", "Roll back to the previously active version?"));
  $("train").addEventListener("click", train);
  $("scores-form").addEventListener("submit", event => { event.preventDefault(); loadScores(); });
  $("lead-form").addEventListener("submit", lookUp);
  $("performance-form").addEventListener("submit", event => { event.preventDefault(); loadPerformance(); });
  $("segments-form").addEventListener("submit", event => { event.preventDefault(); loadSegments(); });
  message($("lead-history"), "Enter a lead id to see its scores");
  await Promise.all([loadModel(), loadScores(), loadPerformance(), loadMonitoring(), loadDrift(), loadVersions(),
                     loadExperiments(), loadSegments()]);
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
