// @ts-check
// The selected job's views, the same on the dashboard and in a report: its card (state,
// progress, error) and the grid of cards (loss, accuracy and validation charts, throughput and
// traffic, the pipeline plan, time and GFLOP/s per rank, the bubble, samples, the log). Each
// render*() redraws one card from S.

import { chartSvg, hbarRow, lineChart } from 'dashboard/charts.js';
import { card, clear, h, s } from 'dashboard/dom.js';
import {
  datasetSummary, fmtInt, fmtMiB, fmtNum, fmtPct, fmtRate, fmtSec, isNum, isTransformer, modelSummary, phaseOf,
} from 'dashboard/format.js';
import { LOG_KEEP, S, latestEpoch, latestTimedEpoch } from 'dashboard/state.js';

/** @typedef {import('dashboard/state.js').RankTiming} RankTiming */
/** @typedef {import('dashboard/state.js').PlanStage} PlanStage */
/** @typedef {import('dashboard/charts.js').Point} Point */

// Time segments of the per-rank bars, in drawing order.
/** @type {{key: 'forward_s' | 'backward_s' | 'optimizer_s' | 'codec_s' | 'comm_wait_s' | 'idle_s', label: string, color: string}[]} */
const SEGMENTS = [
  { key: 'forward_s', label: 'forward', color: '#3b82f6' },
  { key: 'backward_s', label: 'backward', color: '#8b5cf6' },
  { key: 'optimizer_s', label: 'optimizer', color: '#14b8a6' },
  { key: 'codec_s', label: 'codec', color: '#f59e0b' },
  { key: 'comm_wait_s', label: 'wait', color: '#ef4444' },
  { key: 'idle_s', label: 'idle', color: '#cbd5e1' },
];
const C = { loss: '#2563eb', acc: '#059669', val: '#d97706', train: '#7c3aed', valacc: '#db2777' };

/**
 * The elements the renders update, made by buildJobView().
 * @typedef {Object} Elements
 * @property {HTMLSpanElement} jobId
 * @property {HTMLSpanElement} jobState
 * @property {HTMLDivElement} jobMeta
 * @property {HTMLDivElement} jobError
 * @property {HTMLDivElement} progress
 * @property {HTMLDivElement} progFill
 * @property {HTMLDivElement} progLabel
 * @property {HTMLDivElement} noJob
 * @property {HTMLDivElement} grid
 * @property {SVGSVGElement} chartLoss
 * @property {SVGSVGElement} chartAcc
 * @property {SVGSVGElement} chartVal
 * @property {HTMLDivElement} rankBars
 * @property {HTMLDivElement} gflops
 * @property {HTMLDivElement} plan
 * @property {HTMLDivElement} stats
 * @property {HTMLDivElement} bubble
 * @property {HTMLDivElement} samples
 * @property {HTMLElement} samplesCard
 * @property {HTMLPreElement} logs
 */
/** @type {Elements} */
let E;

/**
 * Appends the job card and the grid of cards to main. On the dashboard, `actions` goes at the
 * job card's foot and `tryCard` into the grid.
 * @param {HTMLElement} main
 * @param {{actions: HTMLElement, tryCard: HTMLElement} | null} dashboard
 */
export function buildJobView(main, dashboard) {
  const progFill = h('div', { class: 'progress-fill' });
  const progLabel = h('div', { class: 'progress-label' });
  const samples = h('div', { id: 'samples', class: 'samples' });
  E = {
    jobId: h('span', { id: 'job-id' }),
    jobState: h('span', { id: 'job-state', class: 'badge' }, '–'),
    jobMeta: h('div', { class: 'job-meta' }),
    jobError: h('div', { id: 'job-error', class: 'job-error', hidden: true }),
    progFill,
    progLabel,
    progress: h('div', { id: 'progress', class: 'progress', 'data-phase': 'waiting' },
      h('div', { class: 'progress-track' }, progFill), progLabel),
    noJob: h('div', { class: 'card empty-card', hidden: true },
      h('p', null, 'No job yet. Submit one with the form: pick a preset or paste a job body, then Submit, Initialize and Train.')),
    grid: h('div', { class: 'grid' }),
    chartLoss: chartSvg('chart-loss'),
    chartAcc: chartSvg('chart-accuracy'),
    chartVal: chartSvg('chart-val'),
    rankBars: h('div', { id: 'rank-bars', class: 'hbars' }),
    gflops: h('div', { id: 'gflops', class: 'hbars' }),
    plan: h('div', { id: 'plan', class: 'plan' }),
    stats: h('div', { id: 'stats', class: 'stats' }),
    bubble: h('div', { id: 'bubble', class: 'hbars' }),
    samples,
    samplesCard: card('Samples (latest first)', samples, { wide: true }),
    logs: h('pre', { id: 'logs', class: 'logs' }),
  };
  const jobCard = h('section', { class: 'card job-card' },
    h('div', { class: 'job-title' },
      h('h2', null, S.report ? 'Run ' : 'Job ', E.jobId),
      E.jobState),
    E.jobMeta, E.progress, E.jobError);
  if (dashboard) jobCard.append(dashboard.actions);
  main.append(jobCard, E.noJob, E.grid);

  const legend = h('div', { class: 'legend' },
    SEGMENTS.map((g) => h('span', { class: 'legend-item' },
      h('i', { class: 'swatch', style: 'background:' + g.color }), g.label)));
  E.grid.append(
    card(null, E.chartLoss, {}),
    card(null, E.chartAcc, {}),
    card(null, E.chartVal, {}),
    card('Throughput and traffic', E.stats, {}),
    card('Pipeline plan', E.plan, { wide: true }),
    card('Time per rank (latest epoch)', [legend, E.rankBars], {}),
    card('GFLOP/s per rank (latest epoch)', E.gflops, {}),
    card('Pipeline bubble (latest epoch)', E.bubble, {}));
  if (dashboard) E.grid.append(dashboard.tryCard);
  E.grid.append(E.samplesCard);
  E.grid.append(card(S.report ? 'Log' : 'Log (last ' + LOG_KEEP + ' lines)', E.logs, { wide: true }));
}

// --- The job card ---------------------------------------------------------------------------------

export function renderJobHeader() {
  const job = S.job;
  const none = !job;
  E.noJob.hidden = !(none && !S.report && S.sel === null);
  E.grid.hidden = none && S.sel === null;
  E.jobId.textContent = S.sel === null ? '' : String(S.sel);
  const state = job ? (job.state || job.status || '?') : (S.sel === null ? 'none' : 'loading');
  E.jobState.textContent = state;
  E.jobState.className = 'badge badge-' + phaseOf(state);
  E.jobState.setAttribute('data-state', state);
  clear(E.jobMeta);
  if (job) {
    const bits = [modelSummary(job.model_config), datasetSummary(job.dataset_config)];
    if (isNum(job.world_size)) bits.push(job.world_size + ' ranks');
    if (isNum(job.devices) && job.devices > 0 && isNum(job.world_size) && job.devices > job.world_size - 1) bits.push(job.devices + ' stage processes');
    if (job.created_at) bits.push('created ' + job.created_at.replace('T', ' ').replace('Z', ' UTC'));
    if (isNum(job.seconds) && job.seconds > 0) bits.push('ran ' + fmtSec(job.seconds));
    if (job.output_dir) bits.push(job.output_dir);
    E.jobMeta.append(...bits.map((b, i) => h('span', { class: i === 0 ? 'meta strong' : 'meta' }, b)));
  }
  const err = job && job.error;
  E.jobError.hidden = !err;
  E.jobError.textContent = err ? String(err) : '';
  if (!S.report) document.title = job ? 'arceus · job ' + S.sel + ' ' + state : 'arceus';
}

export function renderProgress() {
  const job = S.job;
  const state = job ? job.state : null;
  const phase = job ? phaseOf(state) : 'waiting';
  E.progress.setAttribute('data-phase', phase);
  const p = (job && job.progress) || {};
  let epoch = p.epoch, step = p.step, steps = p.steps;
  const last = S.steps[S.steps.length - 1];
  if (last && (!isNum(epoch) || last.epoch > epoch || (last.epoch === epoch && last.step > (step || 0)))) {
    epoch = last.epoch; step = last.step; steps = last.steps;
  }
  let total = p.epochs;
  if (!isNum(total) && job && job.train_request && isNum(job.train_request.epochs)) total = job.train_request.epochs;
  if (!isNum(total) && job && isNum(job.epochs)) total = job.epochs;
  let frac = 0;
  if (state === 'completed') frac = 1;
  else if (isNum(epoch) && isNum(total) && total > 0) {
    const within = isNum(step) && isNum(steps) && steps > 0 ? step / steps : 0;
    frac = Math.min(1, Math.max(0, (epoch - 1 + within) / total));
  }
  E.progFill.style.width = (frac * 100).toFixed(1) + '%';
  const parts = [phase];
  if (state && phase === 'waiting') parts[0] = 'waiting (' + state + ')';
  if (state === 'stopped') parts[0] = 'stopped';
  if (isNum(epoch)) parts.push('epoch ' + epoch + (isNum(total) ? '/' + total : ''));
  if (isNum(step)) parts.push('step ' + step + (isNum(steps) ? '/' + steps : ''));
  if (frac > 0 && frac < 1) parts.push(fmtPct(frac, 0));
  E.progLabel.textContent = job ? parts.join(' · ') : '';
  E.progress.title = E.progLabel.textContent;
}

// --- Charts ---------------------------------------------------------------------------------------

// the index (1-based) of the last step of each epoch, from the steps list
function epochEnds() {
  /** @type {Map<number, number>} */
  const ends = new Map();
  S.steps.forEach((st, i) => { if (st && st.epoch !== undefined) ends.set(st.epoch, i + 1); });
  return ends;
}

export function renderCharts() {
  const losses = S.steps.map((st) => (st ? st.loss : null));
  const accs = S.steps.map((st) => (st ? st.accuracy : null));
  const vals = S.epochs.map((e) => e.val_loss);
  // the values drawn, for the browser tests
  E.chartLoss.setAttribute('data-values', JSON.stringify(losses.map((v) => (v === undefined ? null : v))));
  E.chartAcc.setAttribute('data-values', JSON.stringify(accs.map((v) => (v === undefined ? null : v))));
  E.chartVal.setAttribute('data-values', JSON.stringify(vals.map((v) => (v === undefined ? null : v))));

  const ends = epochEnds();
  /** @type {{x: number, label: string}[]} */
  const markers = [];
  /** @type {number | null} */
  let prev = null;
  S.steps.forEach((st, i) => {
    if (st && prev !== null && st.epoch !== prev) markers.push({ x: i + 0.5, label: 'epoch ' + st.epoch });
    if (st) prev = st.epoch;
  });
  /**
   * @param {'val_loss' | 'val_accuracy'} key
   * @returns {Point[]}
   */
  const valAt = (key) => S.epochs.filter((e) => ends.has(e.epoch) && isNum(e[key])).map((e) => [/** @type {number} */ (ends.get(e.epoch)), e[key]]);
  /** @param {number} x */
  const stepTip = (x) => {
    const st = S.steps[x - 1];
    return st ? 'step ' + x + ' (epoch ' + st.epoch + ', step ' + st.step + (isNum(st.steps) ? '/' + st.steps : '') + ')' : 'step ' + x;
  };
  const n = S.steps.length;
  const xDomain = n ? [1, Math.max(2, n)] : null;
  /** @param {number} v */
  const pct = (v) => (v * 100).toFixed(0) + '%';
  /** @param {number} v */
  const pctTip = (v) => fmtPct(v, 2);
  const tr = isTransformer(S.job);

  lineChart(E.chartLoss, {
    title: 'Loss per step', subtitle: n ? 'latest ' + fmtNum(losses[n - 1]) : '',
    xLabel: 'step', xDomain, markers, empty: 'no steps yet',
    series: [
      { label: 'train loss', color: C.loss, points: losses.map((v, i) => [i + 1, v]), tipX: stepTip },
      { label: 'val loss', color: C.val, line: false, points: valAt('val_loss'), tipX: stepTip },
    ],
  });
  lineChart(E.chartAcc, {
    title: tr ? 'Token accuracy per step' : 'Accuracy per step',
    subtitle: n && isNum(accs[n - 1]) ? 'latest ' + fmtPct(accs[n - 1]) : '',
    xLabel: 'step', xDomain, markers, empty: 'no steps yet', yFmt: pct, yDomain: [0, 1],
    series: [
      { label: 'train accuracy', color: C.acc, points: accs.map((v, i) => [i + 1, v]), fmt: pctTip, tipX: stepTip },
      { label: 'val accuracy', color: C.valacc, line: false, points: valAt('val_accuracy'), fmt: pctTip, tipX: stepTip },
    ],
  });
  /** @param {import('dashboard/state.js').Epoch} e */
  const ep = (e) => e.epoch;
  /** @param {number} x */
  const epTip = (x) => 'epoch ' + x;
  const ne = S.epochs.length;
  lineChart(E.chartVal, {
    title: 'Validation per epoch',
    subtitle: ne ? 'val loss ' + fmtNum(vals[ne - 1]) + (isNum(S.epochs[ne - 1].val_accuracy) ? ' · acc ' + fmtPct(S.epochs[ne - 1].val_accuracy) : '') : '',
    xLabel: 'epoch', empty: 'no completed epoch yet', legendAlways: true,
    xDomain: ne ? [Math.min(...S.epochs.map(ep)), Math.max(Math.min(...S.epochs.map(ep)) + 1, Math.max(...S.epochs.map(ep)))] : null,
    series: [
      { label: 'val loss', color: C.val, points: S.epochs.map((e) => [e.epoch, e.val_loss]), dots: true, tipX: epTip },
      { label: 'train loss', color: C.train, points: S.epochs.map((e) => [e.epoch, e.train_loss]), dots: true, tipX: epTip },
    ],
    right: {
      fmt: pct, domain: [0, 1],
      series: [{ label: 'val accuracy', color: C.valacc, points: S.epochs.map((e) => [e.epoch, e.val_accuracy]), dots: true, fmt: pctTip, tipX: epTip }],
    },
  });
}

// --- Throughput and traffic -----------------------------------------------------------------------

export function renderStats() {
  clear(E.stats);
  const job = S.job;
  if (!job) return;
  const e = latestEpoch();
  const tr = isTransformer(job);
  const last = S.steps[S.steps.length - 1];
  /**
   * @param {string} label
   * @param {string} value
   * @param {string} sub
   * @param {string} key
   */
  const tile = (label, value, sub, key) => h('div', { class: 'stat', 'data-stat': key },
    h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value), sub ? h('div', { class: 'stat-sub' }, sub) : null);
  const rateKey = tr ? 'tokens_per_second' : 'samples_per_second';
  const unit = tr ? 'tokens/s' : 'samples/s';
  const rate = e && isNum(e[rateKey]) ? e[rateKey] : (last ? last[rateKey] : null);
  E.stats.append(tile(unit, isNum(rate) ? fmtRate(rate) : '–',
    (e ? 'epoch ' + e.epoch : 'latest step') + (last && isNum(last[rateKey]) ? ' · last step ' + fmtRate(last[rateKey]) : ''), 'rate'));

  let raw = S.metrics && isNum(S.metrics.bytes_raw) ? S.metrics.bytes_raw : null;
  let wire = S.metrics && isNum(S.metrics.bytes_wire) ? S.metrics.bytes_wire : null;
  const sumRaw = S.epochs.reduce((a, x) => a + (isNum(x.bytes_raw) ? x.bytes_raw : 0), 0);
  const sumWire = S.epochs.reduce((a, x) => a + (isNum(x.bytes_wire) ? x.bytes_wire : 0), 0);
  if (raw === null || sumRaw > raw) { raw = sumRaw || null; wire = sumWire || null; }
  let ratio = raw && wire ? wire / raw : null;
  if (S.metrics && isNum(S.metrics.wire_ratio) && raw === S.metrics.bytes_raw) ratio = S.metrics.wire_ratio;
  E.stats.append(tile('MiB raw → on the wire', raw !== null ? fmtMiB(raw).replace(' MiB', '') + ' → ' + fmtMiB(wire) : '–',
    ratio !== null ? 'ratio ' + ratio.toFixed(3) + ' (' + (1 / ratio).toFixed(1) + '× smaller)' : 'no traffic yet', 'traffic'));
  if (e && isNum(e.bytes_raw)) {
    E.stats.append(tile('latest epoch traffic', fmtMiB(e.bytes_raw).replace(' MiB', '') + ' → ' + fmtMiB(e.bytes_wire),
      isNum(e.bytes_wire) && e.bytes_raw > 0 ? 'ratio ' + (e.bytes_wire / e.bytes_raw).toFixed(3) : '', 'epoch-traffic'));
  }
  E.stats.append(tile('epoch time', e ? fmtSec(e.seconds) : '–', isNum(job.seconds) && job.seconds > 0 ? 'job ' + fmtSec(job.seconds) : '', 'time'));
  const fin = job.final || S.metrics.final || e;
  if (fin) {
    E.stats.append(tile(tr ? 'val loss' : 'val accuracy',
      tr ? fmtNum(fin.val_loss) : fmtPct(fin.val_accuracy, 2),
      tr ? 'val accuracy ' + fmtPct(fin.val_accuracy) : 'val loss ' + fmtNum(fin.val_loss),
      'val'));
  }
  E.stats.append(tile('steps', fmtInt(S.steps.length), S.epochs.length + ' epoch' + (S.epochs.length === 1 ? '' : 's') + ' done', 'steps'));
}

// --- Per rank: time, GFLOP/s; the bubble ----------------------------------------------------------

/** @param {RankTiming} t */
function rankName(t) {
  return t.stage === -1 || t.stage === undefined && t.rank === 0 ? 'orchestrator' : 'stage ' + t.stage;
}

export function renderRanks() {
  clear(E.rankBars);
  const e = latestTimedEpoch();
  if (!e) { E.rankBars.append(h('p', { class: 'note' }, 'no epoch timing yet')); return; }
  const rows = [...e.timing].sort((a, b) => a.rank - b.rank);
  const totals = rows.map((t) => SEGMENTS.reduce((acc, g) => {
    const v = t[g.key];
    return acc + (isNum(v) && v > 0 ? v : 0);
  }, 0));
  const scale = Math.max(1e-12, ...totals, ...rows.map((t) => (isNum(t.wall_s) ? t.wall_s : 0)));
  rows.forEach((t, i) => {
    const segs = SEGMENTS.map((g) => {
      const v = t[g.key];
      return {
        key: g.label, value: isNum(v) ? v : 0, color: g.color,
        title: 'rank ' + t.rank + ' ' + g.label + ': ' + fmtSec(v),
      };
    });
    const row = hbarRow({ class: 'hbar rank-bar', 'data-rank': t.rank, 'data-stage': t.stage },
      'rank ' + t.rank, rankName(t) + (t.host ? ' · ' + t.host : ''), segs, scale,
      fmtSec(totals[i]) + (isNum(t.wall_s) ? ' / ' + fmtSec(t.wall_s) : ''));
    row.title = SEGMENTS.map((g) => g.label + ' ' + fmtSec(t[g.key])).join(', ') + (isNum(t.wall_s) ? ', wall ' + fmtSec(t.wall_s) : '');
    E.rankBars.append(row);
  });
  E.rankBars.append(h('p', { class: 'note' }, 'epoch ' + e.epoch + ' · bar = sum of the parts; the value shows it / the rank\'s wall time'));
}

export function renderGflops() {
  clear(E.gflops);
  const e = latestTimedEpoch();
  if (!e) { E.gflops.append(h('p', { class: 'note' }, 'no epoch timing yet')); return; }
  const rows = [...e.timing].filter((t) => t.stage !== -1).sort((a, b) => a.rank - b.rank);
  if (!rows.length) { E.gflops.append(h('p', { class: 'note' }, 'no stage timing')); return; }
  const scale = Math.max(1e-12, ...rows.map((t) => (isNum(t.gflops) ? t.gflops : 0)));
  for (const t of rows) {
    E.gflops.append(hbarRow({ 'data-rank': t.rank },
      'rank ' + t.rank, rankName(t) + (t.host ? ' · ' + t.host : ''),
      [{ value: t.gflops, color: '#6366f1', title: 'rank ' + t.rank + ': ' + fmtNum(t.gflops) + ' GFLOP/s' + (isNum(t.flops) ? ' (' + fmtNum(t.flops / 1e9) + ' GFLOP)' : '') }],
      scale, (isNum(t.gflops) ? t.gflops.toFixed(t.gflops >= 100 ? 0 : 2) : '–') + ' GFLOP/s'));
  }
}

export function renderBubble() {
  clear(E.bubble);
  const e = latestEpoch();
  if (!e || !(isNum(e.bubble_measured) || isNum(e.bubble_theoretical))) {
    E.bubble.append(h('p', { class: 'note' }, 'no completed epoch yet'));
    return;
  }
  /** @type {[string, number | undefined, string][]} */
  const rows = [
    ['measured', e.bubble_measured, '#ef4444'],
    ['theoretical', e.bubble_theoretical, '#64748b'],
  ];
  if (isNum(e.bubble_simulated) && e.bubble_simulated !== e.bubble_theoretical) rows.push(['simulated', e.bubble_simulated, '#94a3b8']);
  for (const [name, v, color] of rows) {
    E.bubble.append(hbarRow({ 'data-kind': name }, name, null,
      [{ value: v, color, title: name + ' bubble ' + fmtPct(v, 2) }], 1, fmtPct(v)));
  }
  E.bubble.append(h('p', { class: 'note' }, 'epoch ' + e.epoch + ' · the share of the stages\' time lost to pipeline fill and drain'));
}

// --- The pipeline plan ----------------------------------------------------------------------------

export function renderPlan() {
  clear(E.plan);
  const job = S.job;
  const plan = job && Array.isArray(job.plan) ? job.plan : null;
  if (!job || !plan || !plan.length) {
    E.plan.append(h('p', { class: 'note' }, !job ? '' :
      isTransformer(job) ? 'not partitioned yet: Train partitions a transformer job over the ranks'
        : 'not initialized yet: Initialize partitions the layers over the ranks'));
    return;
  }
  // rank 0's host: the latest timing, else the initialize answer
  /** @type {string | null | undefined} */
  let host0 = null;
  const te = latestTimedEpoch();
  if (te) { const t0 = te.timing.find((t) => t.rank === 0); if (t0) host0 = t0.host; }
  const ranks = (S.sel !== null && S.ranksByJob[S.sel]) || (Array.isArray(job.ranks) ? job.ranks : null);
  if (!host0 && ranks) { const r0 = ranks.find((r) => r && r.rank === 0); if (r0) host0 = r0.host; }
  const stages = [...plan].sort((a, b) => (a.stage - b.stage) || (a.rank - b.rank));
  // Replicas: one row per copy of the pipeline, each fed its share of the batch by rank 0.
  const replicas = Array.isArray(stages[0].replica_ranks) ? stages[0].replica_ranks.length : 1;
  for (let r = 0; r < replicas; ++r) {
    const flow = h('div', { class: 'plan-flow', 'data-replica': String(r) });
    flow.append(h('div', { class: 'plan-box orchestrator', 'data-rank': '0' },
      h('div', { class: 'pb-head' }, h('span', { class: 'pb-rank' }, 'rank 0'), h('span', { class: 'pb-tag' }, 'orchestrator')),
      host0 ? h('div', { class: 'pb-host' }, host0) : null,
      h('div', { class: 'pb-line' }, 'data, labels, loss'),
      h('div', { class: 'pb-line muted' }, (replicas > 1 ? 'replica ' + r + ': ' : '') + 'feeds stage ' +
        (plan[0].stage !== undefined ? plan[0].stage : 1))));
    for (const st of stages) {
      flow.append(arrow());
      const rank = replicas > 1 && st.replica_ranks ? st.replica_ranks[r] : st.rank;
      const host = replicas > 1 && st.replica_hosts ? st.replica_hosts[r] : st.host;
      flow.append(stageBox(st, rank, host, replicas > 1 ? r : null));
    }
    E.plan.append(flow);
  }
  const total = stages.reduce((a, st) => a + (isNum(st.parameters) ? st.parameters : 0), 0);
  E.plan.append(h('p', { class: 'note' }, (replicas > 1 ? replicas + ' replicas of ' : '') + stages.length + ' stage' +
    (stages.length === 1 ? '' : 's') + ', ' + fmtInt(total) +
    ' parameters; activations flow left to right, gradients back, and the last stage reports the loss to rank 0' +
    (replicas > 1 ? '; each stage sums its gradients with its other replicas every step' : '')));
}

/**
 * One stage's box in a row of the plan.
 * @param {PlanStage} st
 * @param {number} rank
 * @param {string | undefined} host
 * @param {number | null} replica
 */
function stageBox(st, rank, host, replica) {
  const layers = Array.isArray(st.layers) && st.layers.length === 2
    ? (st.layers[0] === st.layers[1] ? 'layer ' + st.layers[0] : 'layers ' + st.layers[0] + '–' + st.layers[1]) : '';
  let arch = null;
  if (Array.isArray(st.layer_sizes)) arch = h('div', { class: 'pb-arch' }, st.layer_sizes.join('→'));
  else if (Array.isArray(st.layer_names)) arch = h('div', { class: 'pb-names' }, st.layer_names.map((/** @type {string} */ n) => h('span', { class: 'chip' }, n)));
  const tag = (replica !== null ? 'replica ' + replica + ', ' : '') + 'stage ' + st.stage;
  return h('div', { class: 'plan-box stage', 'data-rank': rank, 'data-stage': st.stage, title: tag + ' on rank ' + rank },
    h('div', { class: 'pb-head' }, h('span', { class: 'pb-rank' }, 'rank ' + rank), h('span', { class: 'pb-tag' }, tag)),
    host ? h('div', { class: 'pb-host' }, host) : null,
    layers ? h('div', { class: 'pb-line' }, layers) : null,
    arch,
    isNum(st.parameters) ? h('div', { class: 'pb-params' }, fmtInt(st.parameters) + ' parameters') : null);
}

function arrow() {
  return h('div', { class: 'plan-arrow', 'aria-hidden': 'true' },
    s('svg', { viewBox: '0 0 40 16', width: 40, height: 16 },
      s('line', { x1: 2, y1: 8, x2: 32, y2: 8, stroke: '#94a3b8', 'stroke-width': 2 }),
      s('path', { d: 'M30 3 L38 8 L30 13 Z', fill: '#94a3b8' })));
}

// --- Samples and the log --------------------------------------------------------------------------

export function renderSamples() {
  clear(E.samples);
  const with_ = S.epochs.filter((e) => typeof e.sample === 'string');
  const tr = isTransformer(S.job);
  E.samplesCard.hidden = !tr && !with_.length;
  if (!with_.length) { E.samples.append(h('p', { class: 'note' }, 'no sample yet: one is written after each epoch')); return; }
  for (const e of with_.slice().reverse()) {
    E.samples.append(h('div', { class: 'sample', 'data-epoch': e.epoch },
      h('div', { class: 'sample-head' }, 'epoch ' + e.epoch, isNum(e.val_loss) ? h('span', { class: 'muted' }, ' · val loss ' + fmtNum(e.val_loss)) : null),
      h('pre', null, e.sample)));
  }
}

export function renderLogs() {
  const el = E.logs;
  const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  el.textContent = S.logs.length ? S.logs.join('\n') : (S.job ? '(no log lines yet)' : '');
  if (atBottom || !S.logsScrolled) { el.scrollTop = el.scrollHeight; S.logsScrolled = true; }
}
