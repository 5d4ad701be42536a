// Shared state and helpers of the cras inspection page (plain JavaScript, no framework).
// Contract: the bearer token lives in App.token only (never stored); every API call goes
// through api(); decisions on the page use decide(), the server's rule on f32 values.
'use strict';

const App = {
  token: null,
  model: null,        // GET /v1/model
  thresholds: null,   // GET /v1/thresholds
  chosen: {},         // class name -> threshold chosen on the page (number or null)
  items: [],          // inspected images, in the order added
  view: 'inspect',
  onRedecide: [],     // callbacks run when a chosen threshold changes
  onThresholds: [],   // callbacks run when the server's threshold set is (re)loaded
  onView: {},         // view name -> callback run when it is shown
};

const $ = (sel, root) => (root || document).querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function setStatus(text, kind) {
  const s = $('#status');
  s.textContent = text || '';
  s.className = kind || '';
}

class AuthError extends Error {}

// Calls the API with the token; answers the parsed JSON or throws with the server's message.
async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({}, opts.headers || {});
  if (App.token) opts.headers['Authorization'] = 'Bearer ' + App.token;
  let response;
  try {
    response = await fetch(path, opts);
  } catch (e) {
    throw new Error('the server cannot be reached (' + e.message + ')');
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 401) {
    showLogin(body && body.error);
    throw new AuthError('a token is needed: type it in the field at the top');
  }
  if (!response.ok) {
    throw new Error((body && body.error) || ('HTTP ' + response.status));
  }
  return body;
}

function showLogin(message) {
  const form = $('#login');
  form.hidden = false;
  setStatus(App.token ? 'wrong token' : 'this server needs a token', 'bad');
  if (message) form.title = message;
}

// The decision rule of the server (crate::infer::decide) on f32 values.
function decide(score, threshold) {
  if (threshold === null || threshold === undefined || !Number.isFinite(threshold)) return 'no threshold';
  if (score === null || score === undefined || !Number.isFinite(score)) return 'defect';
  return Math.fround(score) >= Math.fround(threshold) ? 'defect' : 'ok';
}

function fmt(x, digits) {
  if (x === null || x === undefined) return '-';
  if (typeof x === 'number' && !Number.isFinite(x)) return String(x);
  return typeof x === 'number' ? x.toFixed(digits === undefined ? 4 : digits) : String(x);
}

// The threshold in force on the server for a class (saved set, else model).
function effectiveThreshold(cls) {
  const t = App.thresholds && App.thresholds.classes.find(c => c.name === cls);
  return t ? t.effective : null;
}

function chosenThreshold(cls) {
  return Object.prototype.hasOwnProperty.call(App.chosen, cls) ? App.chosen[cls] : effectiveThreshold(cls);
}

function redecide() {
  for (const f of App.onRedecide) f();
}

async function loadThresholds(resetChosen) {
  App.thresholds = await api('/v1/thresholds');
  if (resetChosen) {
    App.chosen = {};
    for (const c of App.thresholds.classes) App.chosen[c.name] = c.effective;
  }
  for (const f of App.onThresholds) f();
  redecide();
}

function showView(name) {
  App.view = name;
  for (const b of document.querySelectorAll('#tabs button')) {
    b.classList.toggle('active', b.dataset.view === name);
  }
  for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== 'view-' + name;
  if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
  if (App.onView[name]) App.onView[name]();
}

async function start() {
  try {
    App.model = await api('/v1/model');
    await loadThresholds(true);
    $('#login').hidden = true;
    setStatus(App.model.classes.length + ' classes, model generation ' + App.model.generation, 'good');
    if (App.onView[App.view]) App.onView[App.view]();
  } catch (e) {
    if (!(e instanceof AuthError)) setStatus(e.message, 'bad');
  }
}

document.addEventListener('DOMContentLoaded', () => {
  for (const b of document.querySelectorAll('#tabs button')) {
    b.addEventListener('click', () => showView(b.dataset.view));
  }
  $('#login').addEventListener('submit', ev => {
    ev.preventDefault();
    App.token = $('#token').value.trim() || null;
    $('#token').value = '';
    start();
  });
  const wanted = location.hash.slice(1);
  showView(['inspect', 'thresholds', 'line', 'model'].includes(wanted) ? wanted : 'inspect');
  start();
});
