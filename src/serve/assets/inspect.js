// Inspect view: images dropped, picked or pasted are scored by POST /v1/predict?map=png (in
// chunks); each card shows the image with its anomaly map over it, the score, the matched class
// and its similarity, and the decision at the chosen threshold of its class. Cards carry their
// numbers in data-* attributes (data-score is the JSON number as received).
'use strict';

const CHUNK = 16;
let nextItem = 1;

// A colour for a map value in 0..1 (dark blue, cyan, yellow, red).
function heat(v) {
  const stops = [[0, [20, 20, 120]], [0.35, [0, 170, 220]], [0.65, [250, 220, 40]], [1, [220, 20, 20]]];
  v = Math.min(1, Math.max(0, v));
  for (let i = 1; i < stops.length; i++) {
    const [p1, c1] = stops[i];
    const [p0, c0] = stops[i - 1];
    if (v <= p1) {
      const t = (v - p0) / (p1 - p0);
      return c0.map((c, j) => Math.round(c + t * (c1[j] - c)));
    }
  }
  return stops[stops.length - 1][1];
}

// Colours a base64 grayscale PNG (patch scores 0..1 as 0..255) from the image's lowest patch
// score (transparent blue) to `threshold` and above (opaque red); resolves to a data URL.
function colourMap(b64, threshold) {
  return new Promise(resolve => {
    const img = new Image();
    img.onload = () => {
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const data = ctx.getImageData(0, 0, c.width, c.height);
      const px = data.data;
      let lo = 255, hi = 0;
      for (let i = 0; i < px.length; i += 4) { lo = Math.min(lo, px[i]); hi = Math.max(hi, px[i]); }
      lo /= 255;
      hi = Math.max(hi / 255, Number.isFinite(threshold) ? threshold : 0, lo + 1 / 255);
      for (let i = 0; i < px.length; i += 4) {
        const t = Math.min(1, Math.max(0, (px[i] / 255 - lo) / (hi - lo)));
        const [r, g, b] = heat(t);
        px[i] = r; px[i + 1] = g; px[i + 2] = b; px[i + 3] = Math.round(255 * (0.1 + 0.9 * t));
      }
      ctx.putImageData(data, 0, 0);
      resolve(c.toDataURL('image/png'));
    };
    img.onerror = () => resolve(null);
    img.src = 'data:image/png;base64,' + b64;
  });
}

// Places `img` in its square frame the way the model's preprocessing saw it.
function placeImage(img) {
  const p = (App.model && App.model.preprocessing) || {};
  const w = img.naturalWidth, h = img.naturalHeight;
  if (!w || !h) return;
  if (p.mode === 'ShorterSideThenCenterCrop' && p.resize && p.crop) {
    const scale = p.resize / Math.min(w, h) / p.crop * 100;
    const pw = w * scale, ph = h * scale;
    Object.assign(img.style, { width: pw + '%', height: ph + '%', left: (100 - pw) / 2 + '%', top: (100 - ph) / 2 + '%' });
  } else {
    Object.assign(img.style, { width: '100%', height: '100%', left: '0', top: '0' });
  }
}

function frame(item, big) {
  const photo = el('img', { class: 'photo', src: item.url, alt: item.name });
  photo.addEventListener('load', () => placeImage(photo));
  const f = el('div', { class: big ? 'frame big' : 'frame' }, photo);
  if (item.map) f.append(el('img', { class: 'overlay', src: item.map, alt: 'anomaly map of ' + item.name }));
  return f;
}

function decisionBadge(d) {
  return el('span', { class: 'badge ' + d.replace(' ', '-') }, d === 'defect' ? 'DEFECT' : d === 'ok' ? 'OK' : 'no threshold');
}

function itemDecision(item) {
  if (item.error) return 'error';
  return decide(item.score, chosenThreshold(item.class));
}

function card(item) {
  if (item.error) {
    return el('figure', { class: 'card failed', 'data-name': item.name, 'data-id': item.id },
      el('div', { class: 'frame' }, el('img', { class: 'photo', src: item.url, alt: item.name })),
      el('figcaption', {}, el('div', { class: 'name' }, item.name), el('div', { class: 'error' }, item.error)));
  }
  const c = el('figure', {
    class: 'card', tabindex: 0, 'data-id': item.id, 'data-name': item.name,
    'data-score': String(item.score), 'data-class': item.class,
  },
  frame(item, false),
  el('figcaption', {},
    el('div', { class: 'name', title: item.name }, item.name),
    el('div', { class: 'row' }, el('span', { class: 'score' }, fmt(item.score)), el('span', { class: 'slot-badge' })),
    el('div', { class: 'row small' }, el('span', {}, item.class), el('span', { title: 'class similarity' }, 'sim ' + fmt(item.class_similarity, 3))),
    el('div', { class: 'row small' }, el('span', { class: 'thr' }), el('span', { class: 'flip' }))));
  c.addEventListener('click', () => openLarge(item));
  c.addEventListener('keydown', ev => { if (ev.key === 'Enter') openLarge(item); });
  return c;
}

function updateCard(c, item) {
  const t = chosenThreshold(item.class);
  const d = decide(item.score, t);
  const base = decide(item.score, effectiveThreshold(item.class));
  c.dataset.decision = d;
  c.dataset.flipped = String(d !== base);
  c.classList.toggle('defect', d === 'defect');
  $('.slot-badge', c).replaceChildren(decisionBadge(d));
  $('.thr', c).textContent = 'threshold ' + fmt(t);
  $('.flip', c).textContent = d !== base ? 'flipped (was ' + base + ')' : '';
}

function sortedItems() {
  const order = $('#sort').value;
  const items = App.items.slice();
  const key = i => (i.error ? -Infinity : (Number.isFinite(i.score) ? i.score : Infinity));
  if (order === 'desc') items.sort((a, b) => key(b) - key(a));
  if (order === 'asc') items.sort((a, b) => key(a) - key(b));
  return items;
}

function renderResults() {
  const box = $('#results');
  const cards = new Map();
  for (const c of box.children) cards.set(c.dataset.id, c);
  const wanted = sortedItems().map(item => {
    let c = cards.get(String(item.id));
    if (!c) c = card(item);
    return c;
  });
  box.replaceChildren(...wanted);
  updateDecisions();
}

function updateDecisions() {
  let defects = 0, flips = 0, scored = 0;
  for (const c of $('#results').children) {
    const item = App.items.find(i => String(i.id) === c.dataset.id);
    if (!item || item.error) continue;
    updateCard(c, item);
    scored += 1;
    if (c.dataset.decision === 'defect') defects += 1;
    if (c.dataset.flipped === 'true') flips += 1;
  }
  const pending = App.items.filter(i => i.pending).length;
  $('#summary').textContent = scored
    ? scored + ' scored, ' + defects + ' defect' + (defects === 1 ? '' : 's') + (flips ? ', ' + flips + ' flipped by the chosen thresholds' : '') + (pending ? ', ' + pending + ' waiting' : '')
    : (pending ? pending + ' waiting' : '');
}

function openLarge(item) {
  const content = $('#modal-content');
  const d = itemDecision(item);
  content.replaceChildren(
    frame(item, true),
    el('dl', { class: 'facts' },
      el('dt', {}, 'image'), el('dd', {}, item.name),
      el('dt', {}, 'score'), el('dd', {}, String(item.score)),
      el('dt', {}, 'class'), el('dd', {}, item.class + ' (similarity ' + fmt(item.class_similarity, 4) + ')'),
      el('dt', {}, 'threshold'), el('dd', {}, fmt(chosenThreshold(item.class))),
      el('dt', {}, 'decision'), el('dd', {}, decisionBadge(d)),
      el('dt', {}, 'server'), el('dd', {}, item.server_decision + ' at ' + fmt(item.server_threshold) + ', ' + fmt(item.ms, 1) + ' ms')));
  $('#modal').hidden = false;
  $('#modal-close').focus();
}

async function scoreChunk(items) {
  const form = new FormData();
  for (const item of items) form.append('image', item.file, item.name);
  try {
    const answer = await api('/v1/predict?map=png', { method: 'POST', body: form });
    const maps = await Promise.all(answer.predictions.map(p => (p.map ? colourMap(p.map, p.threshold) : null)));
    answer.predictions.forEach((p, i) => {
      Object.assign(items[i], {
        score: p.score === null ? NaN : p.score, class: p.class, class_similarity: p.class_similarity,
        server_threshold: p.threshold, server_decision: p.decision, ms: p.ms, map: maps[i], pending: false,
      });
    });
  } catch (e) {
    for (const item of items) Object.assign(item, { error: e.message, pending: false });
  }
}

async function addFiles(files) {
  const images = Array.from(files).filter(f => !f.type || f.type.startsWith('image/'));
  if (!images.length) { setStatus('no image among the dropped files', 'bad'); return; }
  const fresh = images.map(f => ({ id: nextItem++, file: f, name: f.name || 'pasted.png', url: URL.createObjectURL(f), pending: true }));
  App.items.push(...fresh);
  updateDecisions();
  for (let i = 0; i < fresh.length; i += CHUNK) {
    const chunk = fresh.slice(i, i + CHUNK);
    await scoreChunk(chunk);
    renderResults();
  }
  for (const f of App.onThresholds) f();
}

App.onRedecide.push(updateDecisions);

document.addEventListener('DOMContentLoaded', () => {
  const drop = $('#drop');
  $('#files').addEventListener('change', ev => { addFiles(ev.target.files); ev.target.value = ''; });
  for (const name of ['dragenter', 'dragover']) {
    drop.addEventListener(name, ev => { ev.preventDefault(); drop.classList.add('over'); });
  }
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', ev => {
    ev.preventDefault();
    drop.classList.remove('over');
    addFiles(ev.dataTransfer.files);
  });
  document.addEventListener('paste', ev => {
    const files = Array.from((ev.clipboardData && ev.clipboardData.files) || []);
    if (files.length) { showView('inspect'); addFiles(files); }
  });
  $('#opacity').addEventListener('input', ev => {
    document.documentElement.style.setProperty('--overlay', String(ev.target.value / 100));
  });
  document.documentElement.style.setProperty('--overlay', String($('#opacity').value / 100));
  $('#sort').addEventListener('change', renderResults);
  $('#clear').addEventListener('click', () => {
    for (const i of App.items) URL.revokeObjectURL(i.url);
    App.items = [];
    renderResults();
    for (const f of App.onThresholds) f();
  });
  $('#modal-close').addEventListener('click', () => { $('#modal').hidden = true; });
  $('#modal').addEventListener('click', ev => { if (ev.target.id === 'modal') $('#modal').hidden = true; });
  document.addEventListener('keydown', ev => { if (ev.key === 'Escape') $('#modal').hidden = true; });
});
