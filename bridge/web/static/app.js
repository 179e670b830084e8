// The listening page: a WebSocket to the bridge (bridge/web/server.py), a model of runs → rows, a text
// view (tables, an aria-live alarm log), a plot per run, and the sound (audio.js). Reconnects forever.
"use strict";

const params = new URLSearchParams(location.search);
const model = { runs: new Map(), alarms: [], alarmCount: 0, status: {}, history: 600, sine: {} };
const ui = { muted: new Set(), soloed: new Set() };
const engine = new SoundEngine();
const midi = new MidiOut();
const MAX_ALARMS_SHOWN = 200;
const latency = params.get("latency") === "1" ? [] : null;
const state = { connects: 0, hellos: 0, messages: 0 };
// What the next frame must redraw: only runs that changed, the status only when a new one came.
const dirty = { runs: new Set(), status: true, all: true };
window.trainsound = { model, engine, midi, state, latency, ui };

const $ = id => document.getElementById(id);
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : String(Number(v.toPrecision(5)));
}

// -- the model --------------------------------------------------------------------------
function upsertRun(r) {
  let run = model.runs.get(r.run);
  if (!run) {
    run = { run: r.run, pan: r.pan, index: model.runs.size, step: null, epoch: null, rows: new Map(), view: null };
    model.runs.set(r.run, run);
  }
  run.pan = r.pan;
  if (r.step !== null) { run.step = r.step; run.epoch = r.epoch; }
  return run;
}

function upsertRow(run, r, now) {
  let row = run.rows.get(r.id);
  if (!row) { row = { history: [] }; run.rows.set(r.id, row); }
  Object.assign(row, { id: r.id, kind: r.kind, name: r.name, rule: r.rule, group: r.group, value: r.value, values: r.values,
                       t: r.t, voices: r.voices.length ? r.voices : (row.voices || []) });
  if (r.history) row.history = r.history.slice(-model.history);
  else if (r.value !== null) {
    row.history.push([r.t, r.value]);
    if (row.history.length > model.history) row.history.splice(0, row.history.length - model.history);
  }
  if (typeof r.reference === "number") {  // --reference: drawn dashed beside the value (docs/compare.md)
    row.refHistory = row.refHistory || [];
    row.refHistory.push([r.t, r.reference]);
    if (row.refHistory.length > model.history) row.refHistory.splice(0, row.refHistory.length - model.history);
  }
  if (latency !== null && latency.length < 200000) latency.push([r.id, r.value, now]);
}

function onMessage(msg) {
  const now = performance.timeOrigin + performance.now();
  state.messages++;
  if (msg.type === "hello") {
    state.hellos++;
    model.runs.clear();
    model.history = msg.history;
    model.sine = msg.sine;
    for (const v of $("runs").querySelectorAll(".run")) v.remove();
    $("alarms").replaceChildren();
    model.alarms = [];
    model.status = msg.status || {};
  }
  if (msg.type === "status") { model.status = msg.status; dirty.status = true; schedule(); return; }
  if (msg.type === "hello") { dirty.all = true; dirty.status = true; }
  for (const r of msg.runs || []) {
    const run = upsertRun(r);
    dirty.runs.add(run.run);
    for (const row of r.rows) upsertRow(run, row, now);
  }
  if (msg.live_runs) {
    for (const name of [...model.runs.keys()]) {
      if (!msg.live_runs.includes(name)) { const v = model.runs.get(name).view; if (v) v.root.remove(); model.runs.delete(name); }
    }
  }
  for (const a of msg.alarms || []) addAlarm(a, msg.type !== "hello");
  if (msg.alarm_count !== undefined) model.alarmCount = msg.alarm_count;
  schedule();
}

function addAlarm(a, fresh) {
  model.alarms.push(a);
  if (model.alarms.length > MAX_ALARMS_SHOWN) model.alarms.shift();
  const when = new Date(a.t * 1000).toLocaleTimeString();
  const step = a.step === null ? "" : ` step ${a.step}`;
  const li = el("li", { "data-kind": a.kind, "data-run": a.run }, `${when} ${a.run}${step}: ${a.kind} in ${a.name} (value ${fmt(a.value)})`);
  const log = $("alarms");
  log.append(li);
  while (log.children.length > MAX_ALARMS_SHOWN) log.firstElementChild.remove();
  if (fresh) {
    const run = model.runs.get(a.run);
    engine.alarm(a.run, run ? run.pan : 0);
    midi.alarm();
  }
}

// -- mute and solo ------------------------------------------------------------------------
const runKey = run => `run:${run}`;
const groupKey = (run, group) => `group:${run}/${group}`;
function audible(run, group) {
  const keys = [runKey(run), groupKey(run, group)];
  if (keys.some(k => ui.muted.has(k))) return false;
  return ui.soloed.size === 0 || keys.some(k => ui.soloed.has(k));
}
function toggle(set, key) { if (set.has(key)) set.delete(key); else set.add(key); dirty.all = true; schedule(); }

// -- the view -------------------------------------------------------------------------------
let pending = false;
function schedule() { if (!pending) { pending = true; requestAnimationFrame(render); } }

function runView(run) {
  const root = el("section", { class: "run", "aria-label": `run ${run.run}` });
  const head = el("div", { class: "run-head" });
  const h = el("h3", {}, run.run);
  const step = el("span", { class: "step" });
  const mute = el("button", { type: "button", "aria-pressed": "false" }, "Mute run");
  const solo = el("button", { type: "button", "aria-pressed": "false" }, "Solo run");
  mute.addEventListener("click", () => toggle(ui.muted, runKey(run.run)));
  solo.addEventListener("click", () => toggle(ui.soloed, runKey(run.run)));
  head.append(h, step, mute, solo);
  const groups = el("div", { class: "groups", role: "group", "aria-label": `groups of ${run.run}` });
  const canvas = el("canvas", { class: "plot", role: "img", "aria-label": `plot of ${run.run}'s values; the table below has them as text` });
  const table = el("table", { class: "rows" });
  table.append(el("caption", {}, `${run.run}: latest values`));
  const thead = el("thead"); const tr = el("tr");
  for (const c of ["Group", "Name", "Value", "Pitch (Hz)", "Sound"]) tr.append(el("th", { scope: "col" }, c));
  thead.append(tr);
  const tbody = el("tbody");
  table.append(thead, tbody);
  root.append(head, groups, canvas, table);
  return { root, step, mute, solo, groups, groupButtons: new Map(), canvas, tbody, trs: new Map(), lastPlot: 0 };
}

function renderRun(run, nowMs, rows) {
  if (!run.view) { run.view = runView(run); $("runs").append(run.view.root); }
  const v = run.view;
  if (nowMs - v.lastPlot > 100) {  // the plot at 10 Hz is smooth enough and keeps the page light
    v.lastPlot = nowMs;
    const rows = [...run.rows.values()];
    drawPlot(v.canvas, rows, nowMs / 1000);
    v.canvas.dataset.legend = legendLabels(rows).join(" | ");
  }
  if (!rows) return;
  v.step.textContent = run.step === null ? "" : `step ${run.step}${run.epoch === null ? "" : `, epoch ${run.epoch}`}`;
  v.mute.setAttribute("aria-pressed", String(ui.muted.has(runKey(run.run))));
  v.solo.setAttribute("aria-pressed", String(ui.soloed.has(runKey(run.run))));
  for (const row of run.rows.values()) {
    if (!v.groupButtons.has(row.group)) {
      const span = el("span", { class: "group" }, `${row.group} `);
      const m = el("button", { type: "button", "aria-pressed": "false", "aria-label": `mute ${row.group} of ${run.run}` }, "M");
      const s = el("button", { type: "button", "aria-pressed": "false", "aria-label": `solo ${row.group} of ${run.run}` }, "S");
      m.addEventListener("click", () => toggle(ui.muted, groupKey(run.run, row.group)));
      s.addEventListener("click", () => toggle(ui.soloed, groupKey(run.run, row.group)));
      span.append(m, s);
      if (row.id.startsWith("group:")) span.append(forwardButton(run.run, row.group));  // a voice group
      v.groups.append(span);
      v.groupButtons.set(row.group, [m, s]);
    }
    let tr = v.trs.get(row.id);
    if (!tr) {
      tr = el("tr", { tabindex: "0", "data-id": row.id, "data-run": run.run, "data-group": row.group });
      for (let i = 0; i < 5; i++) tr.append(el("td", i === 2 || i === 3 ? { class: "num" } : {}));
      tr.children[0].textContent = row.group;
      tr.children[1].textContent = row.name;
      if (row.rule) tr.children[1].title = `mapping rule: ${row.rule}`;  // the config's name, one hover away
      v.tbody.append(tr);
      v.trs.set(row.id, tr);
    }
    const extra = Object.entries(row.values || {}).map(([k, x]) => `${k}=${fmt(x)}`).join(" ");
    tr.children[2].textContent = extra || fmt(row.value);
    const voice = row.voices[0];
    tr.children[3].textContent = voice ? voice.hz.toFixed(1) : "–";
    const on = audible(run.run, row.group);
    tr.children[4].textContent = !on ? "muted" : typeof row.value === "number" ? "on" : "silent (not a number)";
    tr.classList.toggle("bad", typeof row.value !== "number" && row.value !== null);
    tr.classList.toggle("muted", !on);
  }
  for (const [g, [m, s]] of v.groupButtons) {
    m.setAttribute("aria-pressed", String(ui.muted.has(groupKey(run.run, g))));
    s.setAttribute("aria-pressed", String(ui.soloed.has(groupKey(run.run, g))));
  }
}

function render() {
  pending = false;
  const nowMs = performance.timeOrigin + performance.now();
  const empty = $("runs").querySelector(".empty");
  if (empty && model.runs.size) empty.remove();
  const voices = [];
  const sounding = engine.ctx !== null || midi.port !== null;
  for (const run of model.runs.values()) {
    renderRun(run, nowMs, dirty.all || dirty.runs.has(run.run));
    if (!sounding) continue;
    for (const row of run.rows.values()) {
      const finite = typeof row.value === "number";
      for (const vc of row.voices) {
        const item = { ...vc, run: run.run, pan: run.pan, group: row.group, audible: finite && audible(run.run, row.group) };
        voices.push(item);
        midi.voice(run.index, item);
      }
    }
  }
  if (sounding) engine.sync(voices);
  $("alarm-count").textContent = model.alarmCount ? `(${model.alarmCount})` : "";
  if (dirty.status) renderStatus();
  dirty.runs.clear();
  dirty.all = false;
  dirty.status = false;
  if (latency !== null) window.trainsound.rendered = nowMs;
}

function renderIncidents(recent) {
  const list = $("incidents");
  list.replaceChildren();
  for (const i of recent || []) {
    const li = el("li", { "data-kind": i.kind, "data-run": i.run },
      `step ${i.step} ${i.run}: ${i.name} (value ${fmt(typeof i.value === "number" ? i.value : NaN)})`);
    if (i.streams > 1) {
      const more = i.streams > i.members.length ? ` and ${i.streams - i.members.length} more` : "";
      li.append(el("div", { class: "members" }, `steps ${i.step}–${i.last_step}: ${i.members.join(", ")}${more}`));
    }
    list.append(li);
  }
}

// -- bring forward (the bridge's own sine output, --audio/--wav: docs/web.md) ------------------------
let socket = null;
const forwardKey = (run, group) => JSON.stringify([run, group]);
function forwardButton(run, group) {
  const f = el("button", { type: "button", class: "forward", "aria-pressed": "false", "data-forward": forwardKey(run, group),
                           "aria-label": `bring ${group} of ${run} forward in the bridge's sound` }, "F");
  f.addEventListener("click", () => {
    const on = f.getAttribute("aria-pressed") === "true";  // pressed again: back to the bed (seconds 0)
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ forward: on ? [run, group, 0] : [run, group] }));
  });
  return f;
}
function renderForward(st) {
  const on = new Set(((st.outputs || {}).sine || {}).forward?.map(f => forwardKey(f.run, f.group)) || []);
  for (const b of document.querySelectorAll("button[data-forward]")) b.setAttribute("aria-pressed", String(on.has(b.dataset.forward)));
}

function renderStatus() {
  const st = model.status || {};
  renderForward(st);
  renderIncidents((st.alarms || {}).recent);
  const m = st.mapping || {};
  const items = [
    ["uptime", st.uptime === undefined ? "–" : `${Math.round(st.uptime)} s`],
    ["messages", st.received], ["accepted", st.accepted], ["mapped", m.mapped], ["dropped", st.dropped_total],
    ["lost in the kernel", st.kernel_drops], ["alarms", m.alarms], ["runs", (st.runs || []).length],
    ["listening on", (st.listen || []).join(":")],
  ];
  const dl = $("counters");
  if (dl.children.length !== items.length * 2) {
    dl.replaceChildren();
    for (const [k] of items) dl.append(el("dt", {}, k), el("dd"));
  }
  items.forEach(([, val], i) => { dl.children[2 * i + 1].textContent = val === undefined || val === null ? "–" : String(val); });
  const body = $("outputs").tBodies[0];
  body.replaceChildren();
  for (const [name, h] of Object.entries(st.outputs || {})) {
    const details = Object.entries(h).filter(([k]) => k !== "ok").map(([k, x]) => `${k}=${x}`).join(", ");
    const tr = el("tr", h.ok ? {} : { class: "bad" });
    tr.append(el("td", {}, name), el("td", {}, h.ok ? "ok" : "NOT OK"), el("td", {}, details));
    body.append(tr);
  }
}

// -- the connection ---------------------------------------------------------------------------
let retry = 250;
function connect() {
  const token = params.get("token");
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws` +
              (token ? `?token=${encodeURIComponent(token)}` : "");
  const ws = socket = window.trainsound.socket = new WebSocket(url);
  ws.onopen = () => {
    state.connects++;
    retry = 250;
    $("conn").textContent = "connected";
    $("conn").className = "";
  };
  ws.onmessage = e => onMessage(JSON.parse(e.data));
  ws.onclose = () => {
    $("conn").textContent = "bridge not answering — retrying";
    $("conn").className = "down";
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 2000);
  };
}

// -- controls -----------------------------------------------------------------------------------
async function toggleListen() {
  const b = $("listen");
  if (engine.running) { await engine.stop(); b.setAttribute("aria-pressed", "false"); b.textContent = "Listen"; return; }
  await engine.start();
  b.setAttribute("aria-pressed", "true");
  b.textContent = "Stop";
  dirty.all = true;
  schedule();
}
$("listen").addEventListener("click", toggleListen);
$("volume").addEventListener("input", e => engine.setVolume(Number(e.target.value)));
$("midi").addEventListener("click", async () => {
  try {
    const ports = await midi.open();
    const sel = $("midi-out");
    for (const p of ports) sel.append(el("option", { value: p.id }, p.name));
    $("midi-label").hidden = false;
    $("midi").hidden = true;
    $("midi-state").textContent = ports.length ? "" : "no MIDI ports found";
  } catch (err) {
    $("midi-state").textContent = `Web MIDI unavailable: ${err.message || err}`;
  }
});
$("midi-out").addEventListener("change", e => { midi.choose(e.target.value); dirty.all = true; schedule(); });

document.addEventListener("keydown", e => {
  const t = e.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement) return;
  if (e.key === "l" || e.key === "L") { if (!(t instanceof HTMLTableRowElement) || !e.shiftKey) { toggleListen(); return; } }
  if (!(t instanceof HTMLTableRowElement) || !t.dataset.id) return;
  const all = [...document.querySelectorAll("#runs tr[data-id]")];
  const i = all.indexOf(t);
  if (e.key === "ArrowDown" && i + 1 < all.length) { all[i + 1].focus(); e.preventDefault(); }
  else if (e.key === "ArrowUp" && i > 0) { all[i - 1].focus(); e.preventDefault(); }
  else if (e.key === "m") toggle(ui.muted, groupKey(t.dataset.run, t.dataset.group));
  else if (e.key === "s") toggle(ui.soloed, groupKey(t.dataset.run, t.dataset.group));
  else if (e.key === "M") toggle(ui.muted, runKey(t.dataset.run));
  else if (e.key === "S") toggle(ui.soloed, runKey(t.dataset.run));
});
setInterval(schedule, 250);  // the plot scrolls even when nothing new arrives
connect();
