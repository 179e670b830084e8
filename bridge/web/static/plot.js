// A live plot per run on a canvas: each stream's recent values (log scale when all are positive),
// the last WINDOW_S seconds scrolling to the left, the loss drawn thick; with --reference, each stream's
// reference value dashed beside it (docs/compare.md). The table next to it has the
// same values as text; the canvas is labelled for screen readers and hidden from them otherwise.
"use strict";

const WINDOW_S = 60;
const MIN_WINDOW_S = 5;
const COLOURS = ["#7fdcd0", "#f7c873", "#b39ddb", "#81c784", "#64b5f6", "#f48fb1", "#ffb74d", "#4dd0e1",
                 "#aed581", "#e57373", "#9fa8da", "#fff176"];

function drawPlot(canvas, rows, nowS) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  // The last WINDOW_S seconds, or less while a run is young (at least MIN_WINDOW_S), so it fills the width.
  let first = nowS;
  for (const r of rows) if (r.history.length && r.history[0][0] < first) first = r.history[0][0];
  const span = Math.min(WINDOW_S, Math.max(MIN_WINDOW_S, nowS - first));
  const t0 = nowS - span;
  let lo = Infinity, hi = -Infinity, positive = true;
  for (const r of rows) for (const [t, v] of r.history.concat(r.refHistory || [])) {
    if (t < t0 || typeof v !== "number") continue;
    if (v <= 0) positive = false;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!(hi >= lo)) { g.fillStyle = "#9aa3ad"; g.fillText("waiting for values…", 8, 16); return; }
  const f = positive ? Math.log10 : (x => x);
  let a = f(lo), b = f(hi);
  if (b - a < 1e-9) { a -= 0.5; b += 0.5; }
  const x = t => (t - t0) / span * w;
  const y = v => h - 4 - (f(v) - a) / (b - a) * (h - 8);
  const line = points => {
    g.beginPath();
    let pen = false;
    for (const [t, v] of points) {
      if (t < t0 || typeof v !== "number") { pen = false; continue; }
      if (pen) g.lineTo(x(t), y(v)); else { g.moveTo(x(t), y(v)); pen = true; }
    }
    g.stroke();
  };
  rows.forEach((r, i) => {
    g.strokeStyle = r.kind === "loss" ? "#ffffff" : COLOURS[i % COLOURS.length];
    g.lineWidth = r.kind === "loss" ? 2.5 : 1.2;
    line(r.history);
    if (r.refHistory) { g.setLineDash([5, 4]); line(r.refHistory); g.setLineDash([]); }  // the reference, dashed
  });
  drawLegend(g, rows, w);
  g.fillStyle = "#9aa3ad";
  g.fillText(`${positive ? "log " : ""}${lo.toPrecision(3)} … ${hi.toPrecision(3)}, last ${Math.round(span)} s`, 8, 14);
}

// Which line is which: each stream's colour and name, top right (the loss in white), at most LEGEND_MAX.
const LEGEND_MAX = 8;
function legendLabel(r) { return r.group && r.group !== r.name ? `${r.group} ${r.name}` : r.name; }
function drawLegend(g, rows, w) {
  const shown = rows.slice(0, LEGEND_MAX);
  const labels = shown.map(legendLabel);
  if (rows.length > LEGEND_MAX) labels.push(`+${rows.length - LEGEND_MAX} more`);
  const width = Math.max(...labels.map(t => g.measureText(t).width)) + 22;
  let y = 14;
  labels.forEach((t, i) => {
    if (i < shown.length) {
      const r = shown[i];
      g.fillStyle = r.kind === "loss" ? "#ffffff" : COLOURS[i % COLOURS.length];
      g.fillRect(w - width, y - 6, 12, r.kind === "loss" ? 3 : 2);
    }
    g.fillStyle = "#d6dbe0";
    g.fillText(t, w - width + 16, y);
    y += 13;
  });
  return labels;
}

window.drawPlot = drawPlot;
window.legendLabels = rows => rows.slice(0, LEGEND_MAX).map(legendLabel);
