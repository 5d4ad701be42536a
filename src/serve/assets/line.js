// Line view: the last predictions the service made for any client, from GET /v1/recent polled
// every second while the view is shown (only what is new since the last id is fetched), with
// the defect rate per class and the throughput of the last minute.
'use strict';

const KEEP = 200;
let lineItems = [];
let lastId = 0;
let polling = null;
let lastAnswer = null;

function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function renderLine() {
  const a = lastAnswer;
  if (!a) return;
  const tiles = [
    el('div', { class: 'tile' }, el('span', { class: 'big-number', id: 'line-throughput' }, a.throughput.per_s.toFixed(2)), el('span', {}, 'images/s over the last ' + a.throughput.window_s + ' s')),
    el('div', { class: 'tile' }, el('span', { class: 'big-number', id: 'line-total' }, String(a.total)), el('span', {}, 'images scored since start')),
  ];
  for (const c of a.per_class) {
    tiles.push(el('div', { class: 'tile' + (c.defects ? ' warn-tile' : ''), 'data-class': c.class },
      el('span', { class: 'big-number' }, (100 * c.defect_rate).toFixed(1) + '%'),
      el('span', {}, c.class + ': ' + c.defects + ' defect' + (c.defects === 1 ? '' : 's') + ' in the last ' + c.count)));
  }
  $('#line-stats').replaceChildren(...tiles,
    el('div', { class: 'small live' }, 'live, updated ' + clock(a.now_unix_ms) + ' (last ' + a.capacity + ' predictions kept)'));
  const body = $('#line-table tbody');
  body.replaceChildren(...lineItems.slice().reverse().map(e => el('tr', { class: e.decision === 'defect' ? 'defect' : '', 'data-id': e.id, 'data-name': e.name },
    el('td', {}, String(e.id)), el('td', {}, clock(e.unix_ms)), el('td', { class: 'name' }, e.name), el('td', {}, e.class),
    el('td', {}, fmt(e.score)), el('td', {}, fmt(e.threshold)), el('td', {}, decisionBadge(e.decision)))));
}

async function poll() {
  try {
    const a = await api('/v1/recent?since=' + lastId);
    if (a.total < lastId) { lineItems = []; lastId = 0; }
    lineItems.push(...a.items);
    if (a.items.length) lastId = a.items[a.items.length - 1].id;
    lineItems = lineItems.slice(-KEEP);
    lastAnswer = a;
    renderLine();
  } catch (e) {
    if (!(e instanceof AuthError)) setStatus('line view: ' + e.message, 'bad');
  }
}

function startPolling() {
  if (polling) return;
  poll();
  polling = setInterval(() => {
    if (App.view !== 'line') { clearInterval(polling); polling = null; return; }
    if (!document.hidden) poll();
  }, 1000);
}

App.onView.line = startPolling;
