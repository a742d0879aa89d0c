// @ts-check
// arceus dashboard: the browser front-end of `arceus serve`, and the renderer of `arceus report`.
// This module starts the page; the others are
//   state.js     the server's JSON shapes, the state S, the redraw schedule
//   api.js       requests (with the token) and the message bar
//   live.js      the jobs list, the selected job, its server-sent events
//   views.js     the job card and the grid of cards, drawn from S
//   charts.js    line charts (inline SVG) and horizontal bars
//   controls.js  the header's status and token, the sidebar (jobs, new job), the actions
//   try.js       try the model: draw and predict, or prompt and generate
//   dom.js, format.js  building elements; numbers and names as text
// ES modules with no build step, no framework and no chart library. They import each other by
// bare specifiers ('dashboard/state.js'): index.html's import map sends them to /dashboard/, and
// `arceus report` maps each to a data: URL of its text, so that the report is one file.
//
// Two modes:
//   dashboard  talks to the server on the same origin (/api/...): jobs list, job form, actions,
//              live metrics over Server-Sent Events (polling when those fail), try-the-model;
//   report     the document carries <script id="arceus-report" type="application/json">, a
//              snapshot of one job; the same job view is drawn from it with no network request.

import { buildMessageBar } from 'dashboard/api.js';
import {
  buildActions, buildHeaderRight, buildSidebar, loadPresets, renderActions, renderList, renderServerStatus,
} from 'dashboard/controls.js';
import { clear, h } from 'dashboard/dom.js';
import { watchJobs } from 'dashboard/live.js';
import { S, flush, hooks, markDirty, setRenderer } from 'dashboard/state.js';
import { buildTry, renderTry } from 'dashboard/try.js';
import {
  buildJobView, renderBubble, renderCharts, renderGflops, renderJobHeader, renderLogs, renderPlan, renderProgress,
  renderRanks, renderSamples, renderStats,
} from 'dashboard/views.js';

/**
 * Redraws what changed: the one place that says which card shows which section of S.
 * @param {Set<import('dashboard/state.js').Section>} d
 */
function render(d) {
  const all = d.has('job');
  if (d.has('list')) renderList();
  if (d.has('status')) renderServerStatus();
  if (all) { renderJobHeader(); renderActions(); }
  if (all || d.has('steps') || d.has('epochs')) { renderProgress(); renderCharts(); renderStats(); }
  if (all || d.has('epochs')) { renderRanks(); renderGflops(); renderBubble(); renderSamples(); }
  if (all || d.has('plan') || d.has('epochs')) renderPlan();
  if (!S.report && (all || d.has('epochs') || d.has('try'))) renderTry();
  if (all || d.has('logs')) renderLogs();
}

/** @param {HTMLElement} app */
function buildLayout(app) {
  clear(app);
  app.classList.add(S.report ? 'mode-report' : 'mode-dashboard');

  const header = h('header', { class: 'topbar' });
  if (S.report) {
    header.append(
      h('div', { class: 'brand' },
        h('h1', { id: 'title' }, 'arceus report: ' + (S.report.run_dir || '')),
        h('span', { class: 'sub' }, S.report.generated_at ? 'generated ' + S.report.generated_at : 'report')));
  } else {
    header.append(
      h('div', { class: 'brand' },
        h('h1', { id: 'title' }, 'arceus'),
        h('span', { class: 'sub' }, 'pipeline-parallel trainer')),
      buildHeaderRight());
  }
  app.append(header);
  if (!S.report) app.append(buildMessageBar());

  const layout = h('div', { class: 'layout' });
  app.append(layout);
  if (!S.report) layout.append(buildSidebar());
  const main = h('main', { class: 'main' });
  layout.append(main);
  buildJobView(main, S.report ? null : { actions: buildActions(), tryCard: buildTry() });
}

/** @returns {import('dashboard/state.js').Report | null} */
function readReport() {
  const el = document.getElementById('arceus-report');
  if (!el) return null;
  try {
    const r = JSON.parse(el.textContent || '');
    return r && typeof r === 'object' ? r : null;
  } catch (err) {
    console.error('arceus report: the embedded JSON does not parse:', err);
    return { report: true, run_dir: '(unreadable report)', job: null, metrics: {}, logs: [] };
  }
}

function start() {
  let app = document.getElementById('app');
  if (!app) { app = document.createElement('div'); app.id = 'app'; document.body.appendChild(app); }
  S.report = readReport();
  hooks.arceusReady = false;
  setRenderer(render);
  buildLayout(app);

  if (S.report) {
    const r = S.report;
    document.title = 'arceus report: ' + (r.run_dir || '');
    S.job = r.job || null;
    S.sel = S.job && S.job.id !== undefined ? S.job.id : null;
    const m = r.metrics || {};
    S.metrics = m;
    S.steps = Array.isArray(m.steps) ? m.steps.slice() : [];
    S.epochs = Array.isArray(m.epochs) ? m.epochs.slice().sort((a, b) => a.epoch - b.epoch) : [];
    S.logs = Array.isArray(r.logs) ? r.logs.map(String) : [];
    if (S.job && !S.job.state && m.state) S.job.state = m.state;
    markDirty('job');
    flush();
    S.ready = true;
    hooks.arceusReady = true;
    return;
  }

  markDirty('job', 'list', 'status');
  loadPresets();
  watchJobs();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
