// @ts-check
// The dashboard's "Try the model" card: a 28×28 grid to draw a digit on and its predicted
// probabilities (an MLP of 784 inputs), or a prompt and its generated text (a transformer), both
// answered by the job's latest checkpoint. Not in a report.

import { api, setMessage, showResult } from 'dashboard/api.js';
import { card, clear, h } from 'dashboard/dom.js';
import { isNum, isTransformer } from 'dashboard/format.js';
import { S, hasCheckpoint, hooks } from 'dashboard/state.js';

const GRID = 28;

/**
 * @typedef {Object} Elements
 * @property {HTMLElement} tryCard
 * @property {HTMLParagraphElement} tryNote
 * @property {HTMLDivElement} tryDraw
 * @property {HTMLCanvasElement} canvas
 * @property {HTMLButtonElement} btnClear
 * @property {HTMLButtonElement} btnPredict
 * @property {HTMLDivElement} probs
 * @property {HTMLDivElement} predictInfo
 * @property {HTMLDivElement} tryGen
 * @property {HTMLTextAreaElement} prompt
 * @property {HTMLInputElement} genTokens
 * @property {HTMLInputElement} genTemp
 * @property {HTMLButtonElement} btnGenerate
 * @property {HTMLPreElement} generated
 * @property {HTMLDivElement} genInfo
 */
/** @type {Elements | null} */
let E = null;
// the drawing: one value in [0, 1] per cell, row by row
const grid = new Float64Array(GRID * GRID);

/** @returns {HTMLElement} the card */
export function buildTry() {
  // drawing
  const canvas = h('canvas', { id: 'draw-grid', width: '280', height: '280', class: 'draw-grid', 'aria-label': 'drawing grid (28×28)' });
  const btnClear = h('button', { id: 'btn-clear', type: 'button', class: 'btn' }, 'Clear');
  const btnPredict = h('button', { id: 'btn-predict', type: 'button', class: 'btn btn-primary' }, 'Predict');
  const probs = h('div', { id: 'probabilities', class: 'probs' });
  const predictInfo = h('div', { class: 'note' });
  const tryDraw = h('div', { class: 'try-draw' },
    h('div', { class: 'draw-col' }, canvas, h('div', { class: 'btn-row' }, btnClear, btnPredict)),
    h('div', { class: 'probs-col' }, probs, predictInfo));
  btnClear.addEventListener('click', () => { grid.fill(0); drawGrid(canvas); });
  btnPredict.addEventListener('click', predict);
  setupCanvas(canvas);

  // generation
  const prompt = h('textarea', { id: 'prompt', rows: '2', spellcheck: 'false', placeholder: 'prompt', 'aria-label': 'prompt' });
  const genTokens = h('input', { id: 'gen-tokens', type: 'number', min: '1', step: '1', value: '100', 'aria-label': 'tokens' });
  const genTemp = h('input', { id: 'gen-temperature', type: 'number', min: '0', step: '0.1', value: '0.8', 'aria-label': 'temperature' });
  const btnGenerate = h('button', { id: 'btn-generate', type: 'button', class: 'btn btn-primary' }, 'Generate');
  const generated = h('pre', { id: 'generated', class: 'generated' });
  const genInfo = h('div', { class: 'note' });
  btnGenerate.addEventListener('click', generate);
  const tryGen = h('div', { class: 'try-gen' },
    prompt,
    h('div', { class: 'form-row' },
      h('label', { class: 'field' }, h('span', null, 'tokens'), genTokens),
      h('label', { class: 'field' }, h('span', null, 'temperature'), genTemp),
      h('div', { class: 'grow' }),
      btnGenerate),
    generated, genInfo);

  const tryNote = h('p', { class: 'note try-note' });
  const tryCard = card('Try the model', h('div', { id: 'try' }, tryNote, tryDraw, tryGen), { wide: false });
  E = {
    tryCard, tryNote, tryDraw, canvas, btnClear, btnPredict, probs, predictInfo,
    tryGen, prompt, genTokens, genTemp, btnGenerate, generated, genInfo,
  };
  return tryCard;
}

export function renderTry() {
  if (!E) return;
  const job = S.job;
  const m = job && job.model_config;
  const tr = isTransformer(job);
  const drawable = !!(m && !tr && Array.isArray(m.layer_sizes) && m.layer_sizes[0] === GRID * GRID);
  const ck = hasCheckpoint();
  E.tryDraw.hidden = !drawable;
  E.tryGen.hidden = !tr;
  E.tryCard.hidden = !job;
  let note = '';
  if (!job) note = '';
  else if (!drawable && !tr) note = 'Drawing needs an MNIST-format model (784 = 28×28 inputs); this one takes ' +
    (m && Array.isArray(m.layer_sizes) ? m.layer_sizes[0] : '?') + ' inputs.';
  else if (!ck) note = 'Available once a checkpoint exists (after the first completed epoch).';
  else note = drawable ? 'Draw a digit with the mouse, then Predict.' : 'Type a prompt, then Generate.';
  E.tryNote.textContent = note;
  E.btnPredict.disabled = !(drawable && ck);
  E.btnGenerate.disabled = !(tr && ck);
}

// Another job was selected: the answers shown were the previous job's.
export function clearTryOutputs() {
  if (!E) return;
  clear(E.probs);
  E.predictInfo.textContent = '';
  clear(E.generated);
  E.genInfo.textContent = '';
}

// --- The drawing grid -----------------------------------------------------------------------------

/** @param {HTMLCanvasElement} cv */
function setupCanvas(cv) {
  let drawing = false;
  /** @type {number[] | null} */
  let lastPos = null;
  let lastCell = -1;
  /** @param {PointerEvent} ev */
  const pos = (ev) => {
    const r = cv.getBoundingClientRect();
    return [((ev.clientX - r.left) / r.width) * GRID, ((ev.clientY - r.top) / r.height) * GRID];
  };
  /**
   * @param {number} x
   * @param {number} y
   */
  const stamp = (x, y) => {
    const c = Math.floor(x), r = Math.floor(y);
    if (c < 0 || r < 0 || c >= GRID || r >= GRID) return;
    const cell = r * GRID + c;
    if (cell === lastCell) return;
    lastCell = cell;
    grid[cell] = 1;
    for (const [dr, dc] of [[-1, 0], [1, 0], [0, -1], [0, 1]]) {
      const rr = r + dr, cc = c + dc;
      if (rr < 0 || cc < 0 || rr >= GRID || cc >= GRID) continue;
      const k = rr * GRID + cc;
      grid[k] = Math.min(1, grid[k] + 0.5);
    }
  };
  /** @param {PointerEvent} ev */
  const paint = (ev) => {
    const p = pos(ev);
    if (lastPos) {  // fill the cells between two pointer events
      const dx = p[0] - lastPos[0], dy = p[1] - lastPos[1];
      const n = Math.max(1, Math.ceil(Math.hypot(dx, dy) * 3));
      for (let i = 1; i <= n; i++) stamp(lastPos[0] + (dx * i) / n, lastPos[1] + (dy * i) / n);
    } else stamp(p[0], p[1]);
    lastPos = p;
    drawGrid(cv);
  };
  cv.addEventListener('pointerdown', (ev) => {
    if (ev.button !== undefined && ev.button !== 0) return;
    drawing = true; lastPos = null; lastCell = -1;
    try { cv.setPointerCapture(ev.pointerId); } catch (_) { /* synthetic pointer */ }
    ev.preventDefault();
    paint(ev);
  });
  cv.addEventListener('pointermove', (ev) => { if (drawing) { ev.preventDefault(); paint(ev); } });
  const stop = () => { drawing = false; lastPos = null; lastCell = -1; };
  cv.addEventListener('pointerup', stop);
  cv.addEventListener('pointercancel', stop);
  cv.addEventListener('lostpointercapture', stop);
  drawGrid(cv);
}

/** @param {HTMLCanvasElement} cv */
function drawGrid(cv) {
  const ctx = /** @type {CanvasRenderingContext2D} */ (cv.getContext('2d'));
  const cw = cv.width / GRID, ch = cv.height / GRID;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, cv.width, cv.height);
  for (let r = 0; r < GRID; r++) {
    for (let c = 0; c < GRID; c++) {
      const v = grid[r * GRID + c];
      if (v <= 0) continue;
      const shade = Math.round(255 - v * 230);
      ctx.fillStyle = `rgb(${shade},${shade},${Math.min(255, shade + 12)})`;
      ctx.fillRect(c * cw, r * ch, Math.ceil(cw), Math.ceil(ch));
    }
  }
  ctx.strokeStyle = 'rgba(100,116,139,0.14)';
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let i = 1; i < GRID; i++) {
    ctx.moveTo(Math.round(i * cw) + 0.5, 0); ctx.lineTo(Math.round(i * cw) + 0.5, cv.height);
    ctx.moveTo(0, Math.round(i * ch) + 0.5); ctx.lineTo(cv.width, Math.round(i * ch) + 0.5);
  }
  ctx.stroke();
}

function gridRows() {
  const rows = [];
  for (let r = 0; r < GRID; r++) rows.push(Array.from(grid.subarray(r * GRID, (r + 1) * GRID)));
  return rows;
}

// --- Predict and generate -------------------------------------------------------------------------

async function predict() {
  if (S.sel === null || !E) return;
  const el = E;
  const id = S.sel, gen = S.gen;
  const pixels = gridRows();
  hooks.arceusLastPixels = pixels;
  el.btnPredict.disabled = true;
  el.predictInfo.textContent = 'predicting…';
  try {
    const r = await api('POST', `/api/jobs/${id}/predict`, { json: { pixels } });
    if (gen !== S.gen) return;
    if (!r.ok) {
      el.predictInfo.textContent = '';
      showResult('predict', id, r);
      return;
    }
    hooks.arceusLastPrediction = r.data;
    renderProbabilities(el.probs, r.data);
    const ck = r.data.checkpoint;
    el.predictInfo.textContent = 'class ' + r.data.class + (ck ? ' · checkpoint epoch ' + ck.epoch + (ck.step ? ' step ' + ck.step : '') : '');
    setMessage('predict job ' + id + ': class ' + r.data.class, 'ok');
  } finally {
    renderTry();
  }
}

/**
 * @param {HTMLElement} probs
 * @param {{probabilities?: unknown[], class?: number}} ans  POST .../predict's answer
 */
function renderProbabilities(probs, ans) {
  clear(probs);
  const ps = Array.isArray(ans.probabilities) ? ans.probabilities : [];
  ps.forEach((p, k) => {
    probs.append(h('div', {
      class: 'prob' + (k === ans.class ? ' best' : ''), 'data-class': k, 'data-p': JSON.stringify(p),
      title: 'class ' + k + ': ' + (isNum(p) ? (p * 100).toFixed(3) + '%' : String(p)),
    },
      h('span', { class: 'prob-class' }, String(k)),
      h('span', { class: 'prob-track' }, h('span', { class: 'prob-fill', style: 'width:' + (isNum(p) ? Math.max(0, Math.min(1, p)) * 100 : 0).toFixed(2) + '%' })),
      h('span', { class: 'prob-pct' }, isNum(p) ? (p * 100).toFixed(1) + '%' : '–')));
  });
}

async function generate() {
  if (S.sel === null || !E) return;
  const el = E;
  const id = S.sel, gen = S.gen;
  /** @type {{prompt: string, tokens?: number, temperature?: number}} */
  const body = { prompt: el.prompt.value };
  const n = parseInt(el.genTokens.value, 10);
  if (Number.isFinite(n)) body.tokens = n;
  const t = parseFloat(el.genTemp.value);
  if (Number.isFinite(t)) body.temperature = t;
  el.btnGenerate.disabled = true;
  el.genInfo.textContent = 'generating…';
  try {
    const r = await api('POST', `/api/jobs/${id}/generate`, { json: body });
    if (gen !== S.gen) return;
    el.genInfo.textContent = '';
    if (!r.ok) { showResult('generate', id, r); return; }
    hooks.arceusLastGeneration = r.data;
    clear(el.generated);
    const text = typeof r.data.text === 'string' ? r.data.text : '';
    const prompt = typeof r.data.prompt === 'string' ? r.data.prompt : body.prompt;
    if (prompt && text.startsWith(prompt)) el.generated.append(h('b', null, prompt), text.slice(prompt.length));
    else el.generated.append(prompt ? h('b', null, prompt) : '', text);
    const ck = r.data.checkpoint;
    el.genInfo.textContent = ck ? 'checkpoint epoch ' + ck.epoch + (ck.step ? ' step ' + ck.step : '') : '';
    setMessage('generate job ' + id + ': ' + text.length + ' characters', 'ok');
  } finally {
    renderTry();
  }
}
