// Model view: the facts of GET /v1/model in readable form (classes, backbone and where its
// weights came from, the random-backbone warning, preprocessing, training figures, thresholds).
'use strict';

function facts(title, pairs) {
  const dl = el('dl', { class: 'facts' });
  for (const [k, v] of pairs) {
    if (v === undefined) continue;
    dl.append(el('dt', {}, k), el('dd', {}, v === null ? '-' : v));
  }
  return el('section', { class: 'card-box' }, el('h2', {}, title), dl);
}

function preprocessing(p) {
  if (!p) return '-';
  const how = p.mode === 'Square' ? 'resized to ' + p.crop + ' x ' + p.crop + ' (aspect ratio not kept)'
    : 'shorter side to ' + p.resize + ', centre crop ' + p.crop + ' x ' + p.crop;
  return how + '; masks ' + p.mask_mode;
}

function date(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : '-';
}

function renderModel() {
  const m = App.model;
  if (!m) return;
  const b = m.backbone || {};
  const random = !b.weights_file;
  const parts = [];
  if (random) {
    parts.push(el('p', { class: 'warn', id: 'random-warning' },
      'Random backbone: this model was trained on a randomly initialised backbone (seed ' + fmt(b.random_init_seed, 0) +
      '), not on pretrained weights. Its scores are a demonstration only; do not use them to accept or reject parts.'));
  }
  if (m.test_selected) {
    parts.push(el('p', { class: 'warn' }, 'This model was chosen by its test-set metrics: its reported figures are optimistic.'));
  }
  const t = m.training || {};
  const th = m.thresholds;
  const thrTable = el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'class'), el('th', {}, 'stored threshold'), el('th', {}, 'in force'))),
    el('tbody', {}, m.classes.map((c, k) => el('tr', {}, el('td', {}, c), el('td', {}, th ? fmt(th.per_class[k]) : '-'), el('td', {}, fmt(effectiveThreshold(c)))))));
  parts.push(
    facts('Classes', [['count', String(m.classes.length)], ['names', m.classes.join(', ')]]),
    facts('Backbone', [
      ['architecture', String(b.arch)], ['last layer', String(m.last_layer)],
      ['weights', random ? 'random initialisation, seed ' + fmt(b.random_init_seed, 0) : b.weights_file],
      ['weights SHA-256', b.weights_sha256 || (random ? undefined : '-')],
      ['BatchNorm statistics', String(b.bn_stats) + (b.recalibrated ? ' (re-estimated from images)' : '')],
    ]),
    facts('Scoring', [
      ['engine', m.engine + ' (' + m.precision + ')'], ['engine details', m.engine_description],
      ['input', m.input_size + ' x ' + m.input_size + ' px, patch grid ' + m.grid + ' x ' + m.grid],
      ['preprocessing', preprocessing(m.preprocessing)],
      ['descriptor', m.descriptor ? Object.entries(m.descriptor).map(([k, v]) => k + ' ' + JSON.stringify(v)).join(', ') : '-'],
    ]),
    facts('Training', [
      ['epochs', fmt(t.epochs_done, 0)], ['images', fmt(t.images, 0)], ['seconds', fmt(t.seconds, 1)],
      ['final loss', fmt(t.final_loss)], ['p(true) / p(fake)', fmt(t.final_p_true, 3) + ' / ' + fmt(t.final_p_fake, 3)],
      ['noise sigma', fmt(t.noise)], ['selected epoch', t.selected_epoch === null || t.selected_epoch === undefined ? '-' : String(t.selected_epoch)],
    ]),
    el('section', { class: 'card-box' }, el('h2', {}, 'Thresholds'),
      el('p', { class: 'small' }, th ? th.method + '; global ' + fmt(th.global) : 'none stored: the model was trained without held-out images'),
      thrTable),
    facts('File', [
      ['written by', m.tool], ['format version', String(m.format_version)], ['created', date(m.created_unix)],
      ['loaded', date(m.loaded_unix)], ['generation', String(m.generation)],
    ]),
    el('details', {}, el('summary', {}, 'Everything /v1/model says (JSON)'), el('pre', {}, JSON.stringify(m, null, 2))));
  $('#model-facts').replaceChildren(...parts);
}

App.onView.model = renderModel;
App.onThresholds.push(() => { if (App.view === 'model') renderModel(); });
