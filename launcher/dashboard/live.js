// @ts-check
// Keeps S in step with the server, on the dashboard: the jobs list every LIST_EVERY_MS, the
// selected job (GET it, its metrics and its new log lines), and while it can still change its
// server-sent events (GET .../events?since=<steps held>), or polling when streams keep failing.
// Every answer is dropped when another job has been selected since it was asked (S.gen).

import { api } from 'dashboard/api.js';
import { isNum } from 'dashboard/format.js';
import { ACTIVE, FINAL, LOG_KEEP, S, markDirty, setReadySoon } from 'dashboard/state.js';
import { clearTryOutputs } from 'dashboard/try.js';

/** @typedef {import('dashboard/state.js').JobId} JobId */
/** @typedef {import('dashboard/state.js').Step} Step */
/** @typedef {import('dashboard/state.js').Epoch} Epoch */

const LIST_EVERY_MS = 2000;
const POLL_EVERY_MS = 1000;

// The jobs list now and every LIST_EVERY_MS.
export function watchJobs() {
  pollList();
  setInterval(pollList, LIST_EVERY_MS);
}

// GET /api/jobs; selects the newest job until the user picks one. False when offline.
export async function pollList() {
  const r = await api('GET', '/api/jobs');
  if (!r.ok || !r.data || !Array.isArray(r.data.jobs)) {
    S.online = false;
    S.onlineText = 'offline' + (r.status ? ' (' + r.status + ')' : '');
    markDirty('status', 'list');
    if (S.sel === null) setReadySoon();
    return false;
  }
  S.online = true;
  S.jobs = r.data.jobs;
  const active = S.jobs.filter((j) => ACTIVE.has(j.state)).length;
  S.onlineText = 'online · ' + S.jobs.length + ' job' + (S.jobs.length === 1 ? '' : 's') + (active ? ' · ' + active + ' active' : '');
  markDirty('status');
  const key = JSON.stringify(S.jobs.map((j) => [j.id, j.state, j.epochs_completed, j.epochs])) + '|' + S.sel;
  if (key !== S.jobsKey) { S.jobsKey = key; markDirty('list'); }

  const ids = S.jobs.map((j) => Number(j.id));
  const newest = ids.length ? Math.max(...ids) : null;
  if (newest !== null && (S.sel === null || !ids.includes(Number(S.sel)) || (!S.userSelected && newest > Number(S.sel)))) {
    selectJob(newest, false);
  } else if (S.sel !== null && S.job) {
    const mine = S.jobs.find((j) => j.id === S.sel);
    if (mine && (mine.state !== S.job.state || mine.epochs_completed !== S.job.epochs_completed)) refresh();
  }
  if (newest === null && !S.ready) { markDirty('job'); setReadySoon(); }
  return true;
}

/**
 * @param {JobId} id
 * @param {boolean} byUser  the user picked it (no more auto-select of the newest)
 */
export function selectJob(id, byUser) {
  if (byUser) S.userSelected = true;
  if (id === S.sel) return;
  closeStream();
  stopPolling();
  S.gen++;
  S.sel = id;
  S.job = null;
  S.steps = [];
  S.epochs = [];
  S.metrics = {};
  S.logs = [];
  S.logNext = 0;
  S.logsLoaded = false;
  S.logsScrolled = false;
  S.esErrors = 0;
  S.jobsKey = '';
  clearTryOutputs();
  markDirty('list', 'job');
  refresh();
}

// Refetches the selected job, then its metrics and new log lines (after the job: a job seen in
// a final state has all its steps in the metrics fetched next). Overlapping calls coalesce.
export async function refresh() {
  if (S.sel === null) return;
  if (S.refreshing) { S.refreshAgain = true; return; }
  S.refreshing = true;
  try {
    do {
      S.refreshAgain = false;
      await refreshOnce();
    } while (S.refreshAgain);
  } finally {
    S.refreshing = false;
  }
}

async function refreshOnce() {
  const id = S.sel, gen = S.gen;
  const jr = await api('GET', `/api/jobs/${id}`);
  if (gen !== S.gen) return;
  if (!jr.ok || !jr.data) {
    if (jr.status === 404) { S.job = null; markDirty('job'); }
    setReadySoon();
    return;
  }
  /** @type {import('dashboard/state.js').Job} */
  const job = jr.data;
  const logFrom = S.logsLoaded ? S.logNext : Math.max(0, (isNum(job.log_lines) ? job.log_lines : 0) - LOG_KEEP);
  const [mr, lr] = await Promise.all([
    api('GET', `/api/jobs/${id}/metrics`),
    api('GET', `/api/jobs/${id}/logs?offset=${logFrom}`),
  ]);
  if (gen !== S.gen) return;
  const prevState = S.job ? S.job.state : null;
  S.job = job;
  if (mr.ok && mr.data) mergeMetrics(mr.data);
  if (lr.ok && lr.data && Array.isArray(lr.data.lines)) {
    const off = isNum(lr.data.offset) ? lr.data.offset : logFrom;
    addLogs(off, lr.data.lines);
    S.logsLoaded = true;
  }
  if (prevState !== job.state) S.esErrors = 0;
  // the list shows what the job card shows, without waiting for its next poll
  const mine = S.jobs.find((j) => j.id === job.id);
  if (mine && (mine.state !== job.state || mine.epochs_completed !== job.epochs_completed)) {
    mine.state = job.state;
    mine.status = job.status;
    mine.epochs_completed = job.epochs_completed;
    if (isNum(job.epochs)) mine.epochs = job.epochs;
    markDirty('list');
  }
  markDirty('job');
  ensureLive();
  setReadySoon();
}

/**
 * Takes GET .../metrics: its steps, unless the stream has brought more; its epochs over ours.
 * @param {import('dashboard/state.js').Metrics} m
 */
function mergeMetrics(m) {
  S.metrics = m;
  const fetched = Array.isArray(m.steps) ? m.steps : [];
  if (fetched.length >= S.steps.length) S.steps = fetched.slice();
  else S.steps = fetched.concat(S.steps.slice(fetched.length));
  /** @type {Map<number, Epoch>} */
  const byEpoch = new Map();
  for (const e of S.epochs) byEpoch.set(e.epoch, e);
  for (const e of Array.isArray(m.epochs) ? m.epochs : []) byEpoch.set(e.epoch, e);
  S.epochs = [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
}

/**
 * @param {number} offset  the index of lines[0]
 * @param {unknown[]} lines
 */
function addLogs(offset, lines) {
  if (offset > S.logNext && S.logsLoaded) { S.logs.push('… (' + (offset - S.logNext) + ' lines not shown)'); }
  const skip = Math.max(0, S.logNext - offset);
  const fresh = S.logsLoaded ? lines.slice(skip) : lines;
  if (!fresh.length && S.logsLoaded) return;
  if (!S.logsLoaded && offset > 0) S.logs.push('… (' + offset + ' earlier lines)');
  for (const l of fresh) S.logs.push(String(l));
  S.logNext = Math.max(S.logNext, offset + lines.length);
  if (S.logs.length > LOG_KEEP) S.logs = S.logs.slice(S.logs.length - LOG_KEEP);
  markDirty('logs');
}

// --- The stream when the job can still change; polling when streams keep failing -----------------

function ensureLive() {
  if (S.report) return;
  const st = S.job && S.job.state;
  if (!st || FINAL.has(st)) { closeStream(); stopPolling(); return; }
  if (typeof EventSource === 'function' && S.esErrors < 3) {
    stopPolling();
    if (!S.es && !S.esTimer) openStream();
  } else {
    closeStream();
    startPolling();
  }
}

function openStream() {
  const id = S.sel, gen = S.gen;
  let es;
  try {
    es = new EventSource(`/api/jobs/${id}/events?since=${S.steps.length}`);
  } catch (_) {
    S.esErrors = 3;
    startPolling();
    return;
  }
  S.es = es;
  const stream = es;
  /**
   * @param {string} type
   * @param {(d: any) => void} fn  takes the event's parsed data
   */
  const on = (type, fn) => stream.addEventListener(type, (ev) => {
    if (gen !== S.gen || S.es !== stream) return;
    let d;
    try { d = JSON.parse(/** @type {MessageEvent} */ (ev).data); } catch (_) { return; }
    S.esErrors = 0;
    fn(d);
  });
  on('step', onStep);
  on('epoch', onEpoch);
  on('log', onLog);
  on('state', onState);
  on('dropped', () => refresh());
  es.onerror = () => {
    if (S.es !== stream) return;
    stream.close();
    S.es = null;
    S.esErrors++;
    if (gen !== S.gen) return;
    // reconnect with the steps we have now, after checking the job's state
    S.esTimer = setTimeout(() => { S.esTimer = 0; if (gen === S.gen) { refresh(); ensureLive(); } }, 400 * S.esErrors);
  };
}

function closeStream() {
  if (S.es) { S.es.close(); S.es = null; }
  if (S.esTimer) { clearTimeout(S.esTimer); S.esTimer = 0; }
}
function startPolling() {
  if (S.pollTimer) return;
  S.pollTimer = setInterval(() => {
    if (S.job && ACTIVE.has(S.job.state)) refresh();
    else if (S.job && FINAL.has(S.job.state)) stopPolling();
  }, POLL_EVERY_MS);
}
function stopPolling() {
  if (S.pollTimer) { clearInterval(S.pollTimer); S.pollTimer = 0; }
}

// --- Events ---------------------------------------------------------------------------------------

/** @param {Step} d */
function onStep(d) {
  const i = d.index;
  if (!isNum(i)) { S.steps.push(d); markDirty('steps'); return; }
  if (i < S.steps.length) return;          // already have it
  if (i > S.steps.length) { refresh(); return; }  // a gap: refetch
  S.steps.push(d);
  markDirty('steps');
}
/** @param {Epoch} d */
function onEpoch(d) {
  if (!d || d.epoch === undefined) return;
  const k = S.epochs.findIndex((e) => e.epoch === d.epoch);
  if (k >= 0) S.epochs[k] = d; else { S.epochs.push(d); S.epochs.sort((a, b) => a.epoch - b.epoch); }
  if (S.job) S.job.epochs_completed = Math.max(S.job.epochs_completed || 0, S.epochs.length);
  markDirty('epochs', 'try');
  refresh();  // the job's progress and totals
}
/** @param {{index?: number, line?: unknown}} d */
function onLog(d) {
  if (!d || typeof d.line !== 'string') return;
  const i = d.index;
  if (!isNum(i) || i === S.logNext) {
    S.logs.push(d.line);
    S.logNext++;
    if (S.logs.length > LOG_KEEP) S.logs.splice(0, S.logs.length - LOG_KEEP);
    markDirty('logs');
  } else if (i > S.logNext) refresh();
}
/** @param {{state?: string, error?: string | null}} d */
function onState(d) {
  if (!d || !S.job) return;
  if (FINAL.has(d.state)) {
    // the last word: close the stream (else EventSource reconnects) and refetch everything;
    // the state is shown together with the final metrics
    closeStream();
    refresh().then(() => {
      if (S.job && !FINAL.has(S.job.state)) { S.job.state = d.state; if (d.error) S.job.error = d.error; markDirty('job'); ensureLive(); }
    });
    return;
  }
  S.job.state = d.state;
  if (d.error) S.job.error = d.error;
  markDirty('job');
}

