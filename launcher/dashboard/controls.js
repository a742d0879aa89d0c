// @ts-check
// The dashboard's controls, none of which a report has: the server's status and the token box in
// the header, the jobs list and the new-job form in the sidebar, and the job card's actions
// (Initialize, Train, Stop).

import { api, buildTokenInput, setMessage, showResult } from 'dashboard/api.js';
import { card, clear, h } from 'dashboard/dom.js';
import { datasetSummary, isNum, modelSummary, phaseOf } from 'dashboard/format.js';
import { pollList, refresh, selectJob } from 'dashboard/live.js';
import { S, markDirty } from 'dashboard/state.js';

/**
 * @typedef {Object} Elements
 * @property {HTMLSpanElement} status
 * @property {HTMLUListElement} jobs
 * @property {HTMLSelectElement} preset
 * @property {HTMLSelectElement} format
 * @property {HTMLTextAreaElement} body
 * @property {HTMLButtonElement} submit
 * @property {HTMLButtonElement} btnInit
 * @property {HTMLInputElement} trainEpochs
 * @property {HTMLInputElement} trainLr
 * @property {HTMLButtonElement} btnTrain
 * @property {HTMLButtonElement} btnStop
 */
// Filled by the build*() functions below; empty in a report.
const E = /** @type {Partial<Elements>} */ ({});

/** @type {{name: string, yaml: string}[]} */
let presets = [];

// --- Building -------------------------------------------------------------------------------------

// The header's right side: the server's status and the token box.
export function buildHeaderRight() {
  E.status = h('span', { id: 'server-status', class: 'pill pill-unknown' }, 'connecting…');
  return h('div', { class: 'header-right' },
    E.status,
    h('label', { class: 'token-label' }, h('span', null, 'token'), buildTokenInput()));
}

export function buildSidebar() {
  const side = h('aside', { class: 'sidebar' });
  E.jobs = h('ul', { id: 'jobs', class: 'jobs' });
  side.append(card('Jobs', E.jobs, {}));

  const preset = h('select', { id: 'preset', 'aria-label': 'preset' },
    h('option', { value: '' }, 'preset: loading…'));
  const format = h('select', { id: 'job-format', 'aria-label': 'body format' },
    h('option', { value: 'json' }, 'json'), h('option', { value: 'yaml' }, 'yaml'));
  const body = h('textarea', {
    id: 'job-body', rows: '14', spellcheck: 'false', 'aria-label': 'job body',
    placeholder: 'A job as JSON or YAML, e.g.\n{"model_config": {"layer_sizes": [784, 32, 10]},\n "dataset_config": {"name": "synthetic",\n   "batch_size": 64, "synthetic": {"train_size": 512,\n   "val_size": 128, "features": 784, "classes": 10}},\n "training": {"epochs": 2, "micro_batches": 2}}\nor choose a preset above.',
  });
  const submit = h('button', { id: 'submit-job', type: 'button', class: 'btn btn-primary' }, 'Submit');
  preset.addEventListener('change', () => {
    const p = presets.find((x) => x.name === preset.value);
    if (!p) return;
    body.value = p.yaml;
    format.value = 'yaml';
  });
  submit.addEventListener('click', () => submitJob(format, body, submit));
  Object.assign(E, { preset, format, body, submit });
  side.append(card('New job',
    h('div', { class: 'form' },
      h('div', { class: 'form-row' },
        h('label', { class: 'field grow' }, h('span', null, 'preset'), preset),
        h('label', { class: 'field' }, h('span', null, 'format'), format)),
      body,
      h('div', { class: 'form-row end' }, submit)), {}));
  return side;
}

// The job card's foot.
export function buildActions() {
  const btnInit = h('button', { id: 'btn-initialize', type: 'button', class: 'btn' }, 'Initialize');
  const trainEpochs = h('input', { id: 'train-epochs', type: 'number', min: '1', step: '1', placeholder: 'epochs', 'aria-label': 'epochs' });
  const trainLr = h('input', { id: 'train-lr', type: 'number', min: '0', step: 'any', placeholder: 'learning rate', 'aria-label': 'learning rate' });
  const btnTrain = h('button', { id: 'btn-train', type: 'button', class: 'btn btn-primary' }, 'Train');
  const btnStop = h('button', { id: 'btn-stop', type: 'button', class: 'btn btn-danger' }, 'Stop');
  btnInit.addEventListener('click', () => action('initialize', btnInit));
  btnTrain.addEventListener('click', () => action('train', btnTrain, trainEpochs.value, trainLr.value));
  btnStop.addEventListener('click', () => action('stop', btnStop));
  Object.assign(E, { btnInit, trainEpochs, trainLr, btnTrain, btnStop });
  return h('div', { class: 'actions' },
    btnInit,
    h('span', { class: 'action-group' }, trainEpochs, trainLr, btnTrain),
    btnStop);
}

// --- Rendering ------------------------------------------------------------------------------------

export function renderServerStatus() {
  if (!E.status) return;
  E.status.className = 'pill ' + (S.online === null ? 'pill-unknown' : S.online ? 'pill-ok' : 'pill-bad');
  E.status.textContent = S.onlineText || (S.online === null ? 'connecting…' : S.online ? 'online' : 'offline');
}

export function renderList() {
  const list = E.jobs;
  if (!list) return;
  clear(list);
  if (!S.jobs.length) {
    list.append(h('li', { class: 'jobs-empty' }, S.online === false ? 'server unreachable' : 'no jobs yet'));
    return;
  }
  const jobs = [...S.jobs].sort((a, b) => Number(b.id) - Number(a.id));
  for (const j of jobs) {
    const state = j.state || j.status || '?';
    const total = j.epochs;
    const li = h('li', {
      class: 'job-item' + (j.id === S.sel ? ' selected' : ''), 'data-job-id': j.id, tabindex: '0',
      role: 'button', 'aria-pressed': j.id === S.sel ? 'true' : 'false',
      title: 'job ' + j.id + ': ' + state,
    },
      h('div', { class: 'job-line' },
        h('span', { class: 'job-num' }, '#' + j.id),
        h('span', { class: 'job-state badge badge-' + phaseOf(state), 'data-state': state }, state)),
      h('div', { class: 'job-desc' }, modelSummary(j.model_config)),
      h('div', { class: 'job-sub' },
        datasetSummary(j.dataset_config),
        isNum(total) ? ' · ' + (j.epochs_completed || 0) + '/' + total + ' epochs' : ''));
    li.addEventListener('click', () => selectJob(j.id, true));
    li.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); selectJob(j.id, true); } });
    list.append(li);
  }
}

// The actions need a selected job.
export function renderActions() {
  for (const b of [E.btnInit, E.btnTrain, E.btnStop]) if (b) b.disabled = S.sel === null;
}

// --- Actions --------------------------------------------------------------------------------------

export async function loadPresets() {
  const select = E.preset;
  if (!select) return;
  const r = await api('GET', '/api/presets');
  clear(select);
  /** @type {any[]} */
  const list = r.ok && r.data && Array.isArray(r.data.presets) ? r.data.presets : [];
  presets = list.filter((p) => p && typeof p.name === 'string');
  select.append(h('option', { value: '' }, presets.length ? 'choose a preset…' : (r.ok ? 'no presets' : 'presets unavailable')));
  for (const p of presets) select.append(h('option', { value: p.name }, p.name));
}

/**
 * POST /api/jobs with the form's body, then select the new job.
 * @param {HTMLSelectElement} formatSelect
 * @param {HTMLTextAreaElement} bodyText
 * @param {HTMLButtonElement} button
 */
async function submitJob(formatSelect, bodyText, button) {
  const format = formatSelect.value === 'yaml' ? 'yaml' : 'json';
  const text = bodyText.value;
  if (!text.trim()) { setMessage('submit: the job body is empty: choose a preset or paste a JSON/YAML job', 'error'); return; }
  if (format === 'json') {
    try { JSON.parse(text); } catch (err) {
      setMessage('submit: the body is not valid JSON (' + /** @type {Error} */ (err).message + '); choose yaml in the format select for a YAML body', 'error');
      return;
    }
  }
  button.disabled = true;
  try {
    const r = await api('POST', '/api/jobs', { raw: text, type: format === 'yaml' ? 'application/yaml' : 'application/json' });
    if (r.ok && r.data) {
      const id = isNum(r.data.id) ? r.data.id : parseInt(r.data.job_id, 10);
      setMessage('submit: job ' + id + ' created' + (r.data.message ? ' (' + r.data.message + ')' : '') + '; next: Initialize, then Train', 'ok');
      await pollList();
      if (Number.isFinite(id)) selectJob(id, true);
    } else showResult('submit', null, r);
  } finally {
    button.disabled = false;
  }
}

/**
 * Initialize, Train (with the epochs and learning rate typed, if any) or Stop the selected job.
 * @param {'initialize' | 'train' | 'stop'} kind
 * @param {HTMLButtonElement} button
 * @param {string} [epochs]
 * @param {string} [learningRate]
 */
async function action(kind, button, epochs = '', learningRate = '') {
  if (S.sel === null) return;
  const id = S.sel;
  let path;
  /** @type {{epochs?: number, learning_rate?: number}} */
  const json = {};
  if (kind === 'initialize') path = `/api/network/initialize/${id}`;
  else if (kind === 'stop') path = `/api/jobs/${id}/stop`;
  else {
    path = `/api/network/train/${id}`;
    const ep = epochs.trim(), lr = learningRate.trim();
    if (ep !== '') {
      const n = Number(ep);
      if (!Number.isInteger(n) || n < 1) { setMessage('train: epochs must be a positive integer', 'error'); return; }
      json.epochs = n;
    }
    if (lr !== '') {
      const x = Number(lr);
      if (!Number.isFinite(x) || x <= 0) { setMessage('train: the learning rate must be a positive number', 'error'); return; }
      json.learning_rate = x;
    }
  }
  button.disabled = true;
  setMessage(kind + ' job ' + id + '…', 'info');
  try {
    const r = await api('POST', path, { json });
    showResult(kind, id, r);
    if (r.ok && kind === 'initialize' && r.data && Array.isArray(r.data.ranks)) S.ranksByJob[id] = r.data.ranks;
    if (r.ok && kind === 'initialize' && r.data && Array.isArray(r.data.stages) && S.job && id === S.sel) {
      S.job.plan = r.data.stages;  // drawn now; the refresh below confirms it
      if (S.job.state === 'created') S.job.state = 'initialized';
      markDirty('job');
    }
    if (id === S.sel) { S.esErrors = 0; await refresh(); }
    pollList();
  } finally {
    button.disabled = false;
  }
}
