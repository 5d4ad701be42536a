// Thresholds view: one slider per class and a global one. Moving a slider changes only the
// page's chosen thresholds (App.chosen) and re-decides every shown image; the held-out normal
// scores behind the stored threshold are drawn as a histogram with the false-alarm rate at the
// chosen value. "Save" sends the chosen set to PUT /v1/thresholds.
'use strict';

let rows = [];
let globalTouched = null;

function finite(xs) { return xs.filter(x => typeof x === 'number' && Number.isFinite(x)); }

function rangeFor(values) {
  const v = finite(values);
  if (!v.length) return [0, 1];
  let lo = Math.min(...v), hi = Math.max(...v);
  const pad = Math.max((hi - lo) * 0.08, Math.abs(hi) * 0.02, 1e-3);
  return [lo - pad, hi + pad];
}

function shownScores(cls) {
  return App.items.filter(i => !i.error && !i.pending && (cls === null || i.class === cls)).map(i => i.score);
}

function drawHistogram(canvas, holdout, lo, hi, stored, chosen, shown, thresholdOf) {
  const w = canvas.width = canvas.clientWidth * (window.devicePixelRatio || 1) || 360;
  const h = canvas.height = canvas.clientHeight * (window.devicePixelRatio || 1) || 90;
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, w, h);
  const x = v => (v - lo) / (hi - lo) * w;
  const bins = 24, counts = new Array(bins).fill(0);
  for (const s of finite(holdout)) {
    counts[Math.min(bins - 1, Math.max(0, Math.floor((s - lo) / (hi - lo) * bins)))] += 1;
  }
  const top = Math.max(1, ...counts), base = h - 16;
  ctx.fillStyle = '#7a8fa6';
  counts.forEach((c, i) => {
    const bh = c / top * (base - 6);
    ctx.fillRect(i * w / bins + 1, base - bh, w / bins - 2, bh);
  });
  ctx.fillStyle = '#c9d1da';
  ctx.fillRect(0, base, w, 1);
  for (const s of shown) {
    const d = decide(s.score, thresholdOf(s));
    ctx.fillStyle = d === 'defect' ? '#d23c3c' : '#2e8b57';
    const sx = Math.min(w - 2, Math.max(0, x(Number.isFinite(s.score) ? s.score : hi)));
    ctx.fillRect(sx - 1, base + 3, 3, 11);
  }
  const line = (v, colour, dash) => {
    if (v === null || v === undefined || !Number.isFinite(v)) return;
    ctx.save();
    ctx.strokeStyle = colour; ctx.lineWidth = 2 * (window.devicePixelRatio || 1);
    ctx.setLineDash(dash ? [6, 4] : []);
    ctx.beginPath(); ctx.moveTo(x(v), 0); ctx.lineTo(x(v), base); ctx.stroke();
    ctx.restore();
  };
  line(stored, '#333', true);
  line(chosen, '#d23c3c', false);
}

function falseAlarms(holdout, t) {
  const h = finite(holdout);
  if (!h.length) return 'no held-out normal scores';
  const n = h.filter(s => decide(s, t) === 'defect').length;
  return 'false alarms on held-out normals: ' + n + ' of ' + h.length + ' (' + (100 * n / h.length).toFixed(1) + '%)';
}

function flipsOf(cls) {
  let n = 0, of = 0;
  for (const i of App.items) {
    if (i.error || i.pending || (cls !== null && i.class !== cls)) continue;
    of += 1;
    if (decide(i.score, chosenThreshold(i.class)) !== decide(i.score, effectiveThreshold(i.class))) n += 1;
  }
  return of ? n + ' of ' + of + ' shown image' + (of === 1 ? '' : 's') + ' would flip' : 'no image shown';
}

function makeRow(spec) {
  const slider = el('input', { type: 'range', class: 'slider', 'data-class': spec.key, 'aria-label': 'threshold of ' + spec.label });
  const value = el('output', { class: 'value' });
  const canvas = el('canvas', { class: 'hist', width: 360, height: 90 });
  const alarms = el('div', { class: 'small alarms' });
  const flips = el('div', { class: 'small flips' });
  const box = el('div', { class: 'threshold-row', 'data-class': spec.key },
    el('div', { class: 'row-head' }, el('strong', {}, spec.label), el('span', { class: 'small' }, spec.note)),
    canvas,
    el('div', { class: 'controls' }, slider, value),
    alarms, flips);
  const row = Object.assign({ slider, value, canvas, alarms, flips, box }, spec);
  const [lo, hi] = rangeFor([...spec.holdout, ...shownScores(spec.cls), spec.stored, spec.current()]);
  row.lo = lo; row.hi = hi;
  slider.min = String(lo); slider.max = String(hi); slider.step = String((hi - lo) / 1000);
  const cur = spec.current();
  slider.value = String(Number.isFinite(cur) ? cur : (lo + hi) / 2);
  slider.addEventListener('input', () => spec.set(Number(slider.value)));
  return row;
}

function updateRow(row) {
  const t = row.current();
  if (Number.isFinite(t) && document.activeElement !== row.slider) row.slider.value = String(t);
  row.value.textContent = fmt(t);
  row.alarms.textContent = falseAlarms(row.holdout, t);
  row.flips.textContent = flipsOf(row.cls);
  const shown = App.items.filter(i => !i.error && !i.pending && (row.cls === null || i.class === row.cls));
  drawHistogram(row.canvas, row.holdout, row.lo, row.hi, row.stored, t, shown, i => chosenThreshold(i.class));
}

function renderRows() {
  const box = $('#threshold-rows');
  if (!App.thresholds) return;
  const t = App.thresholds;
  const allHoldout = t.classes.flatMap(c => c.holdout_scores);
  const specs = [{
    key: '*', label: 'All classes', cls: null, holdout: allHoldout, stored: t.global.model,
    note: 'moves every class at once; global threshold ' + fmt(t.global.effective) + (t.method ? ' (stored: ' + t.method + ')' : ''),
    current: () => (globalTouched !== null ? globalTouched : t.global.effective),
    set: v => { globalTouched = v; for (const c of t.classes) App.chosen[c.name] = v; redecide(); },
  }];
  for (const c of t.classes) {
    specs.push({
      key: c.name, label: c.name, cls: c.name, holdout: c.holdout_scores, stored: c.model,
      note: 'stored ' + fmt(c.model) + (c.saved !== null ? ', saved ' + fmt(c.saved) : '') + ', in force ' + fmt(c.effective),
      current: () => chosenThreshold(c.name),
      set: v => { App.chosen[c.name] = v; redecide(); },
    });
  }
  rows = specs.map(makeRow);
  box.replaceChildren(...rows.map(r => r.box));
  updateRows();
  const saved = t.saved ? 'saved set in force (' + (t.file || 'file') + ')' : (t.active === 'model' ? 'the model\'s stored thresholds are in force' : 'no threshold in force');
  $('#threshold-status').textContent = saved + (t.unknown_classes.length ? '; saved names unknown to this model: ' + t.unknown_classes.join(', ') : '');
}

function updateRows() {
  if (App.view !== 'thresholds') return;
  for (const r of rows) updateRow(r);
}

async function saveThresholds() {
  const perClass = {};
  for (const c of App.thresholds.classes) {
    const v = App.chosen[c.name];
    if (typeof v === 'number' && Number.isFinite(v)) perClass[c.name] = Math.fround(v);
  }
  const body = { per_class: perClass };
  if (globalTouched !== null) body.global = Math.fround(globalTouched);
  try {
    await api('/v1/thresholds', { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    globalTouched = null;
    await loadThresholds(true);
    setStatus('threshold set saved; the server decides with it now', 'good');
  } catch (e) {
    setStatus('not saved: ' + e.message, 'bad');
  }
}

async function deleteThresholds() {
  try {
    await api('/v1/thresholds', { method: 'DELETE' });
    globalTouched = null;
    await loadThresholds(true);
    setStatus('saved set removed; the model\'s thresholds are in force', 'good');
  } catch (e) {
    setStatus('not removed: ' + e.message, 'bad');
  }
}

App.onThresholds.push(renderRows);
App.onRedecide.push(updateRows);
App.onView.thresholds = renderRows;

document.addEventListener('DOMContentLoaded', () => {
  $('#save-thresholds').addEventListener('click', saveThresholds);
  $('#delete-thresholds').addEventListener('click', deleteThresholds);
  $('#revert-thresholds').addEventListener('click', () => {
    globalTouched = null;
    App.chosen = {};
    for (const c of App.thresholds.classes) App.chosen[c.name] = c.effective;
    renderRows();
    redecide();
  });
  window.addEventListener('resize', updateRows);
});
