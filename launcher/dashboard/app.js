// arceus dashboard: the browser front-end of `arceus serve`, and the renderer of `arceus report`.
//
// Plain JS, no framework, no build step, no chart library: the charts are inline SVG. The whole
// DOM is built inside #app. Two modes:
//   dashboard  talks to the server on the same origin (/api/...): jobs list, job form, actions,
//              live metrics over Server-Sent Events (polling when those fail), try-the-model;
//   report     the document carries <script id="arceus-report" type="application/json">, a
//              snapshot of one job; the same job view is drawn from it with no network request.
// Nothing is stored outside this page's memory: the token lives only in a variable.
(function () {
  'use strict';

  const FINAL = new Set(['completed', 'failed', 'stopped']);
  const ACTIVE = new Set(['queued', 'training']);
  const LOG_KEEP = 200;
  const LIST_EVERY_MS = 2000;
  const POLL_EVERY_MS = 1000;
  const GRID = 28;
  // the SVG namespace, as the HTML parser assigns it (no URL literal in these files)
  const SVGNS = (() => { const d = document.createElement('div'); d.innerHTML = '<svg>'; return d.firstChild.namespaceURI; })();
  const CHART_W = 480, CHART_H = 270;  // the charts' viewBox

  // Time segments of the per-rank bars, in drawing order.
  const SEGMENTS = [
    { key: 'forward_s', label: 'forward', color: '#3b82f6' },
    { key: 'backward_s', label: 'backward', color: '#8b5cf6' },
    { key: 'optimizer_s', label: 'optimizer', color: '#14b8a6' },
    { key: 'codec_s', label: 'codec', color: '#f59e0b' },
    { key: 'comm_wait_s', label: 'wait', color: '#ef4444' },
    { key: 'idle_s', label: 'idle', color: '#cbd5e1' },
  ];
  const C = { loss: '#2563eb', acc: '#059669', val: '#d97706', train: '#7c3aed', valacc: '#db2777' };

  // ---------------------------------------------------------------------------------------------
  // State

  const S = {
    report: null,          // the report snapshot, in report mode
    token: '',             // the bearer token: this variable only
    jobs: [],
    jobsKey: '',
    online: null,          // null unknown, true, false
    onlineText: '',
    sel: null,             // the selected job's id
    userSelected: false,   // true once the user picked a job (no more auto-select of the newest)
    gen: 0,                // bumped on every selection: stale answers are dropped
    job: null,
    steps: [],
    epochs: [],
    metrics: {},
    logs: [],              // the kept lines (the last LOG_KEEP; all of them in a report)
    logNext: 0,            // the index of the next log line
    logsLoaded: false,
    es: null,
    esErrors: 0,
    esTimer: 0,
    pollTimer: 0,
    refreshing: false,
    refreshAgain: false,
    presets: [],
    ranksByJob: {},        // the initialize answer's ranks (rank 0's host)
    dirty: new Set(),
    frame: 0,
    frameTimer: 0,
    ready: false,
    lastPixels: null,
  };
  const E = {};  // the elements the renders update

  // ---------------------------------------------------------------------------------------------
  // Small helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
  function tip(text) { return s('title', null, text); }
  const isNum = (x) => typeof x === 'number' && Number.isFinite(x);

  function fmtNum(x, digits = 4) {
    if (!isNum(x)) return '–';
    if (x === 0) return '0';
    const a = Math.abs(x);
    if (a >= 1e5 || a < 1e-3) return x.toExponential(2);
    return Number(x.toPrecision(digits)).toString();
  }
  function fmtInt(x) { return isNum(x) ? Math.round(x).toLocaleString('en-US') : '–'; }
  function fmtPct(x, digits = 1) { return isNum(x) ? (x * 100).toFixed(digits) + '%' : '–'; }
  function fmtMiB(b) { return isNum(b) ? (b / 1048576).toFixed(2) + ' MiB' : '–'; }
  function fmtSec(x) {
    if (!isNum(x)) return '–';
    if (x === 0) return '0 s';
    if (x < 1e-3) return (x * 1e6).toFixed(0) + ' µs';
    if (x < 1) return (x * 1e3).toFixed(x < 0.01 ? 2 : 1) + ' ms';
    if (x < 120) return x.toFixed(2) + ' s';
    return Math.floor(x / 60) + ' min ' + Math.round(x % 60) + ' s';
  }
  function fmtRate(x) {
    if (!isNum(x)) return '–';
    if (x >= 1e6) return (x / 1e6).toFixed(2) + ' M';
    if (x >= 1e4) return (x / 1e3).toFixed(1) + ' k';
    return x.toFixed(x >= 100 ? 0 : 1);
  }

  function isTransformer(job) {
    const m = job && job.model_config;
    return !!(m && (m.type === 'transformer' || m.type === 'gpt'));
  }
  function modelSummary(m) {
    if (!m) return 'model ?';
    if (m.type === 'transformer' || m.type === 'gpt') {
      const parts = [];
      if (m.n_blocks !== undefined) parts.push(m.n_blocks + ' blocks');
      if (m.n_emb !== undefined) parts.push('n_emb ' + m.n_emb);
      if (m.n_heads !== undefined) parts.push(m.n_heads + ' heads');
      if (m.context !== undefined) parts.push('context ' + m.context);
      return 'transformer' + (parts.length ? ' (' + parts.join(', ') + ')' : '');
    }
    if (Array.isArray(m.layer_sizes)) return 'MLP ' + m.layer_sizes.join('→');
    return String(m.type || 'model');
  }
  function datasetSummary(d) {
    if (!d) return 'dataset ?';
    if (d.name === 'text' && d.source) return 'text ' + String(d.source).split('/').pop();
    return String(d.name || 'dataset ?');
  }
  function phaseOf(state) {
    if (state === 'training') return 'training';
    if (state === 'completed') return 'done';
    if (state === 'failed' || state === 'stopped') return 'failed';
    return 'waiting';
  }
  function latestEpoch() {
    if (S.epochs.length) return S.epochs[S.epochs.length - 1];
    return (S.job && S.job.latest_epoch) || null;
  }
  function latestTimedEpoch() {
    for (let i = S.epochs.length - 1; i >= 0; i--) {
      const e = S.epochs[i];
      if (Array.isArray(e.timing) && e.timing.length) return e;
    }
    return null;
  }
  function hasCheckpoint() {
    return S.epochs.length > 0 || !!(S.job && S.job.epochs_completed > 0);
  }

  // ---------------------------------------------------------------------------------------------
  // Rendering: sections are marked dirty and redrawn together, at most once per animation frame.

  function markDirty(...what) {
    for (const w of what) S.dirty.add(w);
    if (S.frame || S.frameTimer) return;
    S.frame = requestAnimationFrame(flush);
    S.frameTimer = setTimeout(flush, 400);  // a hidden tab gets no frames
  }
  function flush() {
    if (S.frame) cancelAnimationFrame(S.frame);
    if (S.frameTimer) clearTimeout(S.frameTimer);
    S.frame = 0;
    S.frameTimer = 0;
    const d = S.dirty;
    S.dirty = new Set();
    const all = d.has('job');
    try {
      if (d.has('list')) renderList();
      if (d.has('status')) renderServerStatus();
      if (all) renderJobHeader();
      if (all || d.has('steps') || d.has('epochs')) { renderProgress(); renderCharts(); renderStats(); }
      if (all || d.has('epochs')) { renderRanks(); renderGflops(); renderBubble(); renderSamples(); }
      if (all || d.has('plan') || d.has('epochs')) renderPlan();
      if (!S.report && (all || d.has('epochs') || d.has('try'))) renderTry();
      if (all || d.has('logs')) renderLogs();
    } catch (err) {
      console.error('arceus dashboard: render failed:', err);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Layout (built once)

  function card(title, body, opts = {}) {
    return h('section', { class: 'card' + (opts.wide ? ' wide' : ''), id: opts.id },
      title ? h('h3', { class: 'card-title' }, title, opts.extra || null) : null,
      body);
  }

  function buildLayout(app) {
    clear(app);
    app.classList.add(S.report ? 'mode-report' : 'mode-dashboard');

    // header
    const header = h('header', { class: 'topbar' });
    if (S.report) {
      header.append(
        h('div', { class: 'brand' },
          h('h1', { id: 'title' }, 'arceus report: ' + (S.report.run_dir || '')),
          h('span', { class: 'sub' }, S.report.generated_at ? 'generated ' + S.report.generated_at : 'report')));
    } else {
      E.status = h('span', { id: 'server-status', class: 'pill pill-unknown' }, 'connecting…');
      E.token = h('input', {
        id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
        placeholder: 'token (if the server has one)', 'aria-label': 'API token',
      });
      E.token.addEventListener('input', () => {
        S.token = E.token.value.trim();
        E.token.classList.remove('attention');
      });
      header.append(
        h('div', { class: 'brand' },
          h('h1', { id: 'title' }, 'arceus'),
          h('span', { class: 'sub' }, 'pipeline-parallel trainer')),
        h('div', { class: 'header-right' },
          E.status,
          h('label', { class: 'token-label' }, h('span', null, 'token'), E.token)));
    }
    app.append(header);

    if (!S.report) {
      E.message = h('div', { id: 'message', class: 'message', role: 'status', 'aria-live': 'polite' });
      app.append(E.message);
    }

    const layout = h('div', { class: 'layout' });
    app.append(layout);

    if (!S.report) layout.append(buildSidebar());

    const main = h('main', { class: 'main' });
    layout.append(main);

    // the job card
    E.jobId = h('span', { id: 'job-id' });
    E.jobState = h('span', { id: 'job-state', class: 'badge' }, '–');
    E.jobMeta = h('div', { class: 'job-meta' });
    E.jobError = h('div', { id: 'job-error', class: 'job-error', hidden: true });
    E.progFill = h('div', { class: 'progress-fill' });
    E.progLabel = h('div', { class: 'progress-label' });
    E.progress = h('div', { id: 'progress', class: 'progress', 'data-phase': 'waiting' },
      h('div', { class: 'progress-track' }, E.progFill), E.progLabel);
    const jobCard = h('section', { class: 'card job-card' },
      h('div', { class: 'job-title' },
        h('h2', null, S.report ? 'Run ' : 'Job ', E.jobId),
        E.jobState),
      E.jobMeta, E.progress, E.jobError);
    if (!S.report) jobCard.append(buildActions());
    main.append(jobCard);

    E.noJob = h('div', { class: 'card empty-card', hidden: true },
      h('p', null, 'No job yet. Submit one with the form: pick a preset or paste a job body, then Submit, Initialize and Train.'));
    main.append(E.noJob);

    // the grid of cards
    E.grid = h('div', { class: 'grid' });
    main.append(E.grid);
    E.chartLoss = s('svg', { id: 'chart-loss', class: 'chart', viewBox: '0 0 ' + CHART_W + ' ' + CHART_H, role: 'img', 'data-values': '[]' });
    E.chartAcc = s('svg', { id: 'chart-accuracy', class: 'chart', viewBox: '0 0 ' + CHART_W + ' ' + CHART_H, role: 'img', 'data-values': '[]' });
    E.chartVal = s('svg', { id: 'chart-val', class: 'chart', viewBox: '0 0 ' + CHART_W + ' ' + CHART_H, role: 'img', 'data-values': '[]' });
    E.rankBars = h('div', { id: 'rank-bars', class: 'hbars' });
    E.gflops = h('div', { id: 'gflops', class: 'hbars' });
    E.plan = h('div', { id: 'plan', class: 'plan' });
    E.stats = h('div', { id: 'stats', class: 'stats' });
    E.bubble = h('div', { id: 'bubble', class: 'hbars' });
    E.samples = h('div', { id: 'samples', class: 'samples' });
    E.logs = h('pre', { id: 'logs', class: 'logs' });

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
    if (!S.report) E.grid.append(buildTry());
    E.samplesCard = card('Samples (latest first)', E.samples, { wide: true });
    E.grid.append(E.samplesCard);
    E.grid.append(card(S.report ? 'Log' : 'Log (last ' + LOG_KEEP + ' lines)', E.logs, { wide: true }));
  }

  function buildSidebar() {
    const side = h('aside', { class: 'sidebar' });
    E.jobs = h('ul', { id: 'jobs', class: 'jobs' });
    side.append(card('Jobs', E.jobs, {}));

    E.preset = h('select', { id: 'preset', 'aria-label': 'preset' },
      h('option', { value: '' }, 'preset: loading…'));
    E.preset.addEventListener('change', () => {
      const p = S.presets.find((x) => x.name === E.preset.value);
      if (!p) return;
      E.body.value = p.yaml;
      E.format.value = 'yaml';
    });
    E.format = h('select', { id: 'job-format', 'aria-label': 'body format' },
      h('option', { value: 'json' }, 'json'), h('option', { value: 'yaml' }, 'yaml'));
    E.body = h('textarea', {
      id: 'job-body', rows: '14', spellcheck: 'false', 'aria-label': 'job body',
      placeholder: 'A job as JSON or YAML, e.g.\n{"model_config": {"layer_sizes": [784, 32, 10]},\n "dataset_config": {"name": "synthetic",\n   "batch_size": 64, "synthetic": {"train_size": 512,\n   "val_size": 128, "features": 784, "classes": 10}},\n "training": {"epochs": 2, "micro_batches": 2}}\nor choose a preset above.',
    });
    E.submit = h('button', { id: 'submit-job', type: 'button', class: 'btn btn-primary' }, 'Submit');
    E.submit.addEventListener('click', submitJob);
    side.append(card('New job',
      h('div', { class: 'form' },
        h('div', { class: 'form-row' },
          h('label', { class: 'field grow' }, h('span', null, 'preset'), E.preset),
          h('label', { class: 'field' }, h('span', null, 'format'), E.format)),
        E.body,
        h('div', { class: 'form-row end' }, E.submit)), {}));
    return side;
  }

  function buildActions() {
    E.btnInit = h('button', { id: 'btn-initialize', type: 'button', class: 'btn' }, 'Initialize');
    E.trainEpochs = h('input', { id: 'train-epochs', type: 'number', min: '1', step: '1', placeholder: 'epochs', 'aria-label': 'epochs' });
    E.trainLr = h('input', { id: 'train-lr', type: 'number', min: '0', step: 'any', placeholder: 'learning rate', 'aria-label': 'learning rate' });
    E.btnTrain = h('button', { id: 'btn-train', type: 'button', class: 'btn btn-primary' }, 'Train');
    E.btnStop = h('button', { id: 'btn-stop', type: 'button', class: 'btn btn-danger' }, 'Stop');
    E.btnInit.addEventListener('click', () => action('initialize'));
    E.btnTrain.addEventListener('click', () => action('train'));
    E.btnStop.addEventListener('click', () => action('stop'));
    return h('div', { class: 'actions' },
      E.btnInit,
      h('span', { class: 'action-group' }, E.trainEpochs, E.trainLr, E.btnTrain),
      E.btnStop);
  }

  function buildTry() {
    // drawing
    E.canvas = h('canvas', { id: 'draw-grid', width: '280', height: '280', class: 'draw-grid', 'aria-label': 'drawing grid (28×28)' });
    E.btnClear = h('button', { id: 'btn-clear', type: 'button', class: 'btn' }, 'Clear');
    E.btnPredict = h('button', { id: 'btn-predict', type: 'button', class: 'btn btn-primary' }, 'Predict');
    E.probs = h('div', { id: 'probabilities', class: 'probs' });
    E.predictInfo = h('div', { class: 'note' });
    E.tryDraw = h('div', { class: 'try-draw' },
      h('div', { class: 'draw-col' }, E.canvas, h('div', { class: 'btn-row' }, E.btnClear, E.btnPredict)),
      h('div', { class: 'probs-col' }, E.probs, E.predictInfo));
    E.btnClear.addEventListener('click', () => { S.grid.fill(0); drawGrid(); });
    E.btnPredict.addEventListener('click', predict);
    setupCanvas();

    // generation
    E.prompt = h('textarea', { id: 'prompt', rows: '2', spellcheck: 'false', placeholder: 'prompt', 'aria-label': 'prompt' });
    E.genTokens = h('input', { id: 'gen-tokens', type: 'number', min: '1', step: '1', value: '100', 'aria-label': 'tokens' });
    E.genTemp = h('input', { id: 'gen-temperature', type: 'number', min: '0', step: '0.1', value: '0.8', 'aria-label': 'temperature' });
    E.btnGenerate = h('button', { id: 'btn-generate', type: 'button', class: 'btn btn-primary' }, 'Generate');
    E.generated = h('pre', { id: 'generated', class: 'generated' });
    E.genInfo = h('div', { class: 'note' });
    E.btnGenerate.addEventListener('click', generate);
    E.tryGen = h('div', { class: 'try-gen' },
      E.prompt,
      h('div', { class: 'form-row' },
        h('label', { class: 'field' }, h('span', null, 'tokens'), E.genTokens),
        h('label', { class: 'field' }, h('span', null, 'temperature'), E.genTemp),
        h('div', { class: 'grow' }),
        E.btnGenerate),
      E.generated, E.genInfo);

    E.tryNote = h('p', { class: 'note try-note' });
    E.tryCard = card('Try the model', h('div', { id: 'try' }, E.tryNote, E.tryDraw, E.tryGen), { wide: false });
    return E.tryCard;
  }

  // ---------------------------------------------------------------------------------------------
  // Renders

  function renderServerStatus() {
    if (!E.status) return;
    E.status.className = 'pill ' + (S.online === null ? 'pill-unknown' : S.online ? 'pill-ok' : 'pill-bad');
    E.status.textContent = S.onlineText || (S.online === null ? 'connecting…' : S.online ? 'online' : 'offline');
  }

  function renderList() {
    if (!E.jobs) return;
    clear(E.jobs);
    if (!S.jobs.length) {
      E.jobs.append(h('li', { class: 'jobs-empty' }, S.online === false ? 'server unreachable' : 'no jobs yet'));
      return;
    }
    const jobs = [...S.jobs].sort((a, b) => b.id - a.id);
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
      E.jobs.append(li);
    }
  }

  function renderJobHeader() {
    const job = S.job;
    const none = !job;
    if (E.noJob) E.noJob.hidden = !(none && !S.report && S.sel === null);
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
    if (!S.report) {
      document.title = job ? 'arceus · job ' + S.sel + ' ' + state : 'arceus';
      for (const b of [E.btnInit, E.btnTrain, E.btnStop]) b.disabled = S.sel === null;
    }
  }

  function renderProgress() {
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

  // nice ticks over [lo, hi]
  function niceScale(lo, hi, count) {
    if (!isNum(lo) || !isNum(hi)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-12) {
      const d = Math.abs(lo) > 1e-12 ? Math.abs(lo) * 0.1 : 0.5;
      lo -= d; hi += d;
    }
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    const nlo = Math.floor(lo / step + 1e-9) * step;
    const nhi = Math.ceil(hi / step - 1e-9) * step;
    const ticks = [];
    for (let v = nlo; v <= nhi + step * 1e-6; v += step) ticks.push(Number(v.toPrecision(12)));
    return { lo: nlo, hi: nhi, ticks, step };
  }

  // A line chart: series [{label, color, points:[[x, y|null]], line, dots, fmt}] on a left axis,
  // optional right-axis series (own domain), vertical markers [{x, label}].
  function lineChart(svg, o) {
    clear(svg);
    const W = CHART_W, H = CHART_H;
    const hasRight = o.right && o.right.series.some((r) => r.points.some((p) => isNum(p[1])));
    const m = { t: 56, r: hasRight ? 50 : 16, b: 44, l: 54 };
    const pw = W - m.l - m.r, ph = H - m.t - m.b;
    svg.append(s('rect', { x: 0, y: 0, width: W, height: H, class: 'chart-bg' }));
    svg.append(s('text', { x: 10, y: 20, class: 'chart-title' }, o.title));
    if (o.subtitle) svg.append(s('text', { x: W - 10, y: 20, class: 'chart-sub', 'text-anchor': 'end' }, o.subtitle));

    const all = o.series.flatMap((r) => r.points);
    const ys = all.map((p) => p[1]).filter(isNum);
    const xs = all.map((p) => p[0]).filter(isNum);
    // legend
    let lx = m.l;
    const legendItems = o.series.concat(hasRight ? o.right.series : []).filter((r) => r.points.some((p) => isNum(p[1])));
    if (legendItems.length) {
      for (const r of legendItems) {
        const g = s('g', { class: 'chart-legend', transform: `translate(${lx},${m.t - 16})` });
        if (r.line === false) g.append(s('circle', { cx: 6, cy: -3, r: 3.5, fill: r.color }));
        else g.append(s('line', { x1: 0, y1: -3, x2: 14, y2: -3, stroke: r.color, 'stroke-width': 2.5 }));
        g.append(s('text', { x: 19, y: 1 }, r.label));
        svg.append(g);
        lx += 30 + r.label.length * 6.6;
      }
    }
    if (!ys.length) {
      svg.append(s('rect', { x: m.l, y: m.t, width: pw, height: ph, class: 'plot-frame' }));
      svg.append(s('text', { x: m.l + pw / 2, y: m.t + ph / 2 + 4, class: 'chart-empty', 'text-anchor': 'middle' }, o.empty || 'no data yet'));
      return;
    }
    let ylo = Math.min(...ys), yhi = Math.max(...ys);
    if (o.yDomain) { ylo = Math.min(ylo, o.yDomain[0]); yhi = Math.max(yhi, o.yDomain[1]); }
    if (o.yZero) ylo = Math.min(ylo, 0);
    const ysc = niceScale(ylo, yhi, 4);
    let xlo = o.xDomain ? o.xDomain[0] : Math.min(...xs);
    let xhi = o.xDomain ? o.xDomain[1] : Math.max(...xs);
    if (xhi <= xlo) { xlo -= 0.5; xhi += 0.5; }
    const X = (x) => m.l + ((x - xlo) / (xhi - xlo)) * pw;
    const Y = (y) => m.t + ph - ((y - ysc.lo) / (ysc.hi - ysc.lo)) * ph;

    // grid and y ticks
    const axes = s('g', { class: 'axes' });
    for (const t of ysc.ticks) {
      const y = Y(t);
      axes.append(s('line', { x1: m.l, x2: m.l + pw, y1: y, y2: y, class: 'grid-line' }));
      axes.append(s('text', { x: m.l - 7, y: y + 4, 'text-anchor': 'end', class: 'tick' }, (o.yFmt || fmtNum)(t)));
    }
    // x ticks (integers)
    const xsc = niceScale(xlo, xhi, Math.max(2, Math.min(6, Math.round(xhi - xlo))));
    const xstep = Math.max(1, xsc.step);
    for (let t = Math.ceil(xlo / xstep) * xstep; t <= xhi + 1e-9; t += xstep) {
      const tv = Number(t.toPrecision(12));
      if (Math.abs(tv - Math.round(tv)) > 1e-9) continue;
      const x = X(tv);
      axes.append(s('line', { x1: x, x2: x, y1: m.t + ph, y2: m.t + ph + 5, class: 'tick-mark' }));
      axes.append(s('text', { x, y: m.t + ph + 19, 'text-anchor': 'middle', class: 'tick' }, String(tv)));
    }
    axes.append(s('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, class: 'axis-line' }));
    axes.append(s('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph, class: 'axis-line' }));
    axes.append(s('text', { x: m.l + pw / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis-label' }, o.xLabel || ''));
    svg.append(axes);

    // markers (epoch boundaries)
    if (o.markers && o.markers.length && o.markers.length <= 30) {
      const mg = s('g', { class: 'markers' });
      for (const mk of o.markers) {
        const x = X(mk.x);
        if (x < m.l - 0.5 || x > m.l + pw + 0.5) continue;
        mg.append(s('line', { x1: x, x2: x, y1: m.t, y2: m.t + ph, class: 'marker-line' }, tip(mk.label)));
        if (o.markers.length <= 12) mg.append(s('text', { x: x + 4, y: m.t + 11, class: 'marker-text' }, mk.label));
      }
      svg.append(mg);
    }

    // right axis
    let YR = null;
    if (hasRight) {
      const rys = o.right.series.flatMap((r) => r.points.map((p) => p[1])).filter(isNum);
      const d = o.right.domain || [Math.min(...rys), Math.max(...rys)];
      const rsc = niceScale(Math.min(d[0], ...rys), Math.max(d[1], ...rys), 4);
      YR = (y) => m.t + ph - ((y - rsc.lo) / (rsc.hi - rsc.lo)) * ph;
      const rg = s('g', { class: 'axes' });
      for (const t of rsc.ticks) rg.append(s('text', { x: m.l + pw + 7, y: YR(t) + 4, class: 'tick' }, (o.right.fmt || fmtNum)(t)));
      rg.append(s('line', { x1: m.l + pw, x2: m.l + pw, y1: m.t, y2: m.t + ph, class: 'axis-line' }));
      svg.append(rg);
    }

    const drawSeries = (r, Yf) => {
      const g = s('g', { class: 'series' });
      if (r.line !== false) {
        let d = '', pen = false;
        for (const [x, y] of r.points) {
          if (!isNum(y) || !isNum(x)) { pen = false; continue; }
          d += (pen ? 'L' : 'M') + X(x).toFixed(2) + ' ' + Yf(y).toFixed(2);
          pen = true;
        }
        if (d) g.append(s('path', { d, fill: 'none', stroke: r.color, 'stroke-width': 2, 'stroke-linejoin': 'round', 'stroke-linecap': 'round' }));
      }
      // points with tooltips: all of them when few, else a sample (plus the last one)
      const pts = r.points.filter((p) => isNum(p[1]) && isNum(p[0]));
      const every = Math.max(1, Math.ceil(pts.length / 160));
      pts.forEach((p, i) => {
        const visible = r.line === false || r.dots || i === pts.length - 1;
        if (!visible && i % every !== 0) return;
        const c = s('circle', {
          cx: X(p[0]).toFixed(2), cy: Yf(p[1]).toFixed(2), r: visible ? 3.5 : 5,
          class: visible ? 'dot' : 'hover-dot', fill: visible ? r.color : 'transparent', stroke: visible ? '#fff' : 'none',
        }, tip((r.tipX || ((x) => String(x)))(p[0]) + ' · ' + r.label + ' ' + (r.fmt || fmtNum)(p[1])));
        g.append(c);
      });
      svg.append(g);
    };
    for (const r of o.series) drawSeries(r, Y);
    if (hasRight) for (const r of o.right.series) drawSeries(r, YR);
  }

  // the index (1-based) of the last step of each epoch, from the steps list
  function epochEnds() {
    const ends = new Map();
    S.steps.forEach((st, i) => { if (st && st.epoch !== undefined) ends.set(st.epoch, i + 1); });
    return ends;
  }

  function renderCharts() {
    const losses = S.steps.map((st) => (st ? st.loss : null));
    const accs = S.steps.map((st) => (st ? st.accuracy : null));
    const vals = S.epochs.map((e) => e.val_loss);
    E.chartLoss.setAttribute('data-values', JSON.stringify(losses.map((v) => (v === undefined ? null : v))));
    E.chartAcc.setAttribute('data-values', JSON.stringify(accs.map((v) => (v === undefined ? null : v))));
    E.chartVal.setAttribute('data-values', JSON.stringify(vals.map((v) => (v === undefined ? null : v))));

    const ends = epochEnds();
    const markers = [];
    let prev = null;
    S.steps.forEach((st, i) => {
      if (st && prev !== null && st.epoch !== prev) markers.push({ x: i + 0.5, label: 'epoch ' + st.epoch });
      if (st) prev = st.epoch;
    });
    const valAt = (key) => S.epochs.filter((e) => ends.has(e.epoch) && isNum(e[key])).map((e) => [ends.get(e.epoch), e[key]]);
    const stepTip = (x) => {
      const st = S.steps[x - 1];
      return st ? 'step ' + x + ' (epoch ' + st.epoch + ', step ' + st.step + (isNum(st.steps) ? '/' + st.steps : '') + ')' : 'step ' + x;
    };
    const n = S.steps.length;
    const xDomain = n ? [1, Math.max(2, n)] : null;
    const pct = (v) => (v * 100).toFixed(0) + '%';
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
    const ep = (e) => e.epoch;
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

  function hbarRow(attrs, label, sublabel, segments, scale, valueText) {
    const track = h('div', { class: 'hbar-track' });
    for (const seg of segments) {
      if (!(seg.value > 0)) continue;
      track.append(h('div', {
        class: 'hbar-seg', 'data-seg': seg.key || null,
        style: `width:${((seg.value / scale) * 100).toFixed(3)}%;background:${seg.color}`,
        title: seg.title,
      }));
    }
    return h('div', Object.assign({ class: 'hbar' }, attrs),
      h('div', { class: 'hbar-label' }, h('span', { class: 'hbar-name' }, label), sublabel ? h('span', { class: 'hbar-sub' }, sublabel) : null),
      track,
      h('div', { class: 'hbar-value' }, valueText));
  }

  function rankName(t) {
    return t.stage === -1 || t.stage === undefined && t.rank === 0 ? 'orchestrator' : 'stage ' + t.stage;
  }

  function renderRanks() {
    clear(E.rankBars);
    const e = latestTimedEpoch();
    if (!e) { E.rankBars.append(h('p', { class: 'note' }, 'no epoch timing yet')); return; }
    const rows = [...e.timing].sort((a, b) => a.rank - b.rank);
    const totals = rows.map((t) => SEGMENTS.reduce((acc, g) => acc + (isNum(t[g.key]) && t[g.key] > 0 ? t[g.key] : 0), 0));
    const scale = Math.max(1e-12, ...totals, ...rows.map((t) => (isNum(t.wall_s) ? t.wall_s : 0)));
    rows.forEach((t, i) => {
      const segs = SEGMENTS.map((g) => ({
        key: g.label, value: isNum(t[g.key]) ? t[g.key] : 0, color: g.color,
        title: 'rank ' + t.rank + ' ' + g.label + ': ' + fmtSec(t[g.key]),
      }));
      const row = hbarRow({ class: 'hbar rank-bar', 'data-rank': t.rank, 'data-stage': t.stage },
        'rank ' + t.rank, rankName(t) + (t.host ? ' · ' + t.host : ''), segs, scale,
        fmtSec(totals[i]) + (isNum(t.wall_s) ? ' / ' + fmtSec(t.wall_s) : ''));
      row.title = SEGMENTS.map((g) => g.label + ' ' + fmtSec(t[g.key])).join(', ') + (isNum(t.wall_s) ? ', wall ' + fmtSec(t.wall_s) : '');
      E.rankBars.append(row);
    });
    E.rankBars.append(h('p', { class: 'note' }, 'epoch ' + e.epoch + ' · bar = sum of the parts; the value shows it / the rank\'s wall time'));
  }

  function renderGflops() {
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

  function renderBubble() {
    clear(E.bubble);
    const e = latestEpoch();
    if (!e || !(isNum(e.bubble_measured) || isNum(e.bubble_theoretical))) {
      E.bubble.append(h('p', { class: 'note' }, 'no completed epoch yet'));
      return;
    }
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

  function renderStats() {
    clear(E.stats);
    const job = S.job;
    if (!job) return;
    const e = latestEpoch();
    const tr = isTransformer(job);
    const last = S.steps[S.steps.length - 1];
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

  function renderPlan() {
    clear(E.plan);
    const job = S.job;
    const plan = job && Array.isArray(job.plan) ? job.plan : null;
    if (!plan || !plan.length) {
      E.plan.append(h('p', { class: 'note' }, !job ? '' :
        isTransformer(job) ? 'not partitioned yet: Train partitions a transformer job over the ranks'
          : 'not initialized yet: Initialize partitions the layers over the ranks'));
      return;
    }
    // rank 0's host: the latest timing, else the initialize answer
    let host0 = null;
    const te = latestTimedEpoch();
    if (te) { const t0 = te.timing.find((t) => t.rank === 0); if (t0) host0 = t0.host; }
    const ranks = S.ranksByJob[S.sel] || (Array.isArray(job.ranks) ? job.ranks : null);
    if (!host0 && ranks) { const r0 = ranks.find((r) => r && r.rank === 0); if (r0) host0 = r0.host; }
    const flow = h('div', { class: 'plan-flow' });
    flow.append(h('div', { class: 'plan-box orchestrator', 'data-rank': '0' },
      h('div', { class: 'pb-head' }, h('span', { class: 'pb-rank' }, 'rank 0'), h('span', { class: 'pb-tag' }, 'orchestrator')),
      host0 ? h('div', { class: 'pb-host' }, host0) : null,
      h('div', { class: 'pb-line' }, 'data, labels, loss'),
      h('div', { class: 'pb-line muted' }, 'feeds stage ' + (plan[0].stage !== undefined ? plan[0].stage : 1))));
    const stages = [...plan].sort((a, b) => (a.stage - b.stage) || (a.rank - b.rank));
    for (const st of stages) {
      flow.append(arrow());
      const layers = Array.isArray(st.layers) && st.layers.length === 2
        ? (st.layers[0] === st.layers[1] ? 'layer ' + st.layers[0] : 'layers ' + st.layers[0] + '–' + st.layers[1]) : '';
      let arch = null;
      if (Array.isArray(st.layer_sizes)) arch = h('div', { class: 'pb-arch' }, st.layer_sizes.join('→'));
      else if (Array.isArray(st.layer_names)) arch = h('div', { class: 'pb-names' }, st.layer_names.map((n) => h('span', { class: 'chip' }, n)));
      flow.append(h('div', { class: 'plan-box stage', 'data-rank': st.rank, 'data-stage': st.stage, title: 'stage ' + st.stage + ' on rank ' + st.rank },
        h('div', { class: 'pb-head' }, h('span', { class: 'pb-rank' }, 'rank ' + st.rank), h('span', { class: 'pb-tag' }, 'stage ' + st.stage)),
        st.host ? h('div', { class: 'pb-host' }, st.host) : null,
        layers ? h('div', { class: 'pb-line' }, layers) : null,
        arch,
        isNum(st.parameters) ? h('div', { class: 'pb-params' }, fmtInt(st.parameters) + ' parameters') : null));
    }
    E.plan.append(flow);
    const total = stages.reduce((a, st) => a + (isNum(st.parameters) ? st.parameters : 0), 0);
    E.plan.append(h('p', { class: 'note' }, stages.length + ' stage' + (stages.length === 1 ? '' : 's') + ', ' + fmtInt(total) +
      ' parameters; activations flow left to right, gradients back, and the last stage reports the loss to rank 0'));
  }
  function arrow() {
    return h('div', { class: 'plan-arrow', 'aria-hidden': 'true' },
      s('svg', { viewBox: '0 0 40 16', width: 40, height: 16 },
        s('line', { x1: 2, y1: 8, x2: 32, y2: 8, stroke: '#94a3b8', 'stroke-width': 2 }),
        s('path', { d: 'M30 3 L38 8 L30 13 Z', fill: '#94a3b8' })));
  }

  function renderSamples() {
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

  function renderLogs() {
    const el = E.logs;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
    el.textContent = S.logs.length ? S.logs.join('\n') : (S.job ? '(no log lines yet)' : '');
    if (atBottom || !S.logsScrolled) { el.scrollTop = el.scrollHeight; S.logsScrolled = true; }
  }

  function renderTry() {
    if (!E.tryCard) return;
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

  // ---------------------------------------------------------------------------------------------
  // The drawing grid

  function setupCanvas() {
    S.grid = new Float64Array(GRID * GRID);
    let drawing = false, lastPos = null, lastCell = -1;
    const cv = E.canvas;
    const pos = (ev) => {
      const r = cv.getBoundingClientRect();
      return [((ev.clientX - r.left) / r.width) * GRID, ((ev.clientY - r.top) / r.height) * GRID];
    };
    const stamp = (x, y) => {
      const c = Math.floor(x), r = Math.floor(y);
      if (c < 0 || r < 0 || c >= GRID || r >= GRID) return;
      const cell = r * GRID + c;
      if (cell === lastCell) return;
      lastCell = cell;
      S.grid[cell] = 1;
      for (const [dr, dc] of [[-1, 0], [1, 0], [0, -1], [0, 1]]) {
        const rr = r + dr, cc = c + dc;
        if (rr < 0 || cc < 0 || rr >= GRID || cc >= GRID) continue;
        const k = rr * GRID + cc;
        S.grid[k] = Math.min(1, S.grid[k] + 0.5);
      }
    };
    const paint = (ev) => {
      const p = pos(ev);
      if (lastPos) {  // fill the cells between two pointer events
        const dx = p[0] - lastPos[0], dy = p[1] - lastPos[1];
        const n = Math.max(1, Math.ceil(Math.hypot(dx, dy) * 3));
        for (let i = 1; i <= n; i++) stamp(lastPos[0] + (dx * i) / n, lastPos[1] + (dy * i) / n);
      } else stamp(p[0], p[1]);
      lastPos = p;
      drawGrid();
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
    drawGrid();
  }

  function drawGrid() {
    const cv = E.canvas;
    const ctx = cv.getContext('2d');
    const cw = cv.width / GRID, ch = cv.height / GRID;
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, cv.width, cv.height);
    for (let r = 0; r < GRID; r++) {
      for (let c = 0; c < GRID; c++) {
        const v = S.grid[r * GRID + c];
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
    for (let r = 0; r < GRID; r++) rows.push(Array.from(S.grid.subarray(r * GRID, (r + 1) * GRID)));
    return rows;
  }

  async function predict() {
    if (S.sel === null) return;
    const id = S.sel, gen = S.gen;
    const pixels = gridRows();
    window.arceusLastPixels = pixels;
    E.btnPredict.disabled = true;
    E.predictInfo.textContent = 'predicting…';
    try {
      const r = await api('POST', `/api/jobs/${id}/predict`, { json: { pixels } });
      if (gen !== S.gen) return;
      if (!r.ok) {
        E.predictInfo.textContent = '';
        showResult('predict', id, r);
        return;
      }
      window.arceusLastPrediction = r.data;
      renderProbabilities(r.data);
      const ck = r.data.checkpoint;
      E.predictInfo.textContent = 'class ' + r.data.class + (ck ? ' · checkpoint epoch ' + ck.epoch + (ck.step ? ' step ' + ck.step : '') : '');
      setMessage('predict job ' + id + ': class ' + r.data.class, 'ok');
    } finally {
      renderTry();
    }
  }

  function renderProbabilities(ans) {
    clear(E.probs);
    const ps = Array.isArray(ans.probabilities) ? ans.probabilities : [];
    ps.forEach((p, k) => {
      E.probs.append(h('div', {
        class: 'prob' + (k === ans.class ? ' best' : ''), 'data-class': k, 'data-p': JSON.stringify(p),
        title: 'class ' + k + ': ' + (isNum(p) ? (p * 100).toFixed(3) + '%' : String(p)),
      },
        h('span', { class: 'prob-class' }, String(k)),
        h('span', { class: 'prob-track' }, h('span', { class: 'prob-fill', style: 'width:' + (isNum(p) ? Math.max(0, Math.min(1, p)) * 100 : 0).toFixed(2) + '%' })),
        h('span', { class: 'prob-pct' }, isNum(p) ? (p * 100).toFixed(1) + '%' : '–')));
    });
  }

  async function generate() {
    if (S.sel === null) return;
    const id = S.sel, gen = S.gen;
    const body = { prompt: E.prompt.value };
    const n = parseInt(E.genTokens.value, 10);
    if (Number.isFinite(n)) body.tokens = n;
    const t = parseFloat(E.genTemp.value);
    if (Number.isFinite(t)) body.temperature = t;
    E.btnGenerate.disabled = true;
    E.genInfo.textContent = 'generating…';
    try {
      const r = await api('POST', `/api/jobs/${id}/generate`, { json: body });
      if (gen !== S.gen) return;
      E.genInfo.textContent = '';
      if (!r.ok) { showResult('generate', id, r); return; }
      window.arceusLastGeneration = r.data;
      clear(E.generated);
      const text = typeof r.data.text === 'string' ? r.data.text : '';
      const prompt = typeof r.data.prompt === 'string' ? r.data.prompt : body.prompt;
      if (prompt && text.startsWith(prompt)) E.generated.append(h('b', null, prompt), text.slice(prompt.length));
      else E.generated.append(prompt ? h('b', null, prompt) : null, text);
      const ck = r.data.checkpoint;
      E.genInfo.textContent = ck ? 'checkpoint epoch ' + ck.epoch + (ck.step ? ' step ' + ck.step : '') : '';
      setMessage('generate job ' + id + ': ' + text.length + ' characters', 'ok');
    } finally {
      renderTry();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Network

  async function api(method, path, opts = {}) {
    const headers = {};
    let body;
    if (method !== 'GET') {
      if (S.token) headers.Authorization = 'Bearer ' + S.token;
      if (opts.raw !== undefined) { body = opts.raw; headers['Content-Type'] = opts.type || 'application/json'; }
      else { body = JSON.stringify(opts.json === undefined ? {} : opts.json); headers['Content-Type'] = 'application/json'; }
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body, cache: 'no-store' });
    } catch (err) {
      return { ok: false, status: 0, data: null, error: 'the server does not answer (' + (err && err.message ? err.message : err) + ')' };
    }
    let data = null, text = '';
    try { text = await res.text(); data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    const error = res.ok ? null : (data && data.error ? String(data.error) : (text || res.statusText || 'HTTP ' + res.status).slice(0, 300));
    return { ok: res.ok, status: res.status, data, error };
  }

  function setMessage(text, kind) {
    if (!E.message) return;
    E.message.textContent = text;
    E.message.className = 'message ' + (kind === 'error' ? 'message-error' : kind === 'ok' ? 'message-ok' : '');
    E.message.setAttribute('data-kind', kind || 'info');
  }

  function showResult(what, id, r) {
    if (r.ok) {
      const msg = r.data && (r.data.message || r.data.status);
      setMessage(what + (id !== null ? ' job ' + id : '') + ': ' + (msg || 'ok'), 'ok');
      return;
    }
    if (r.status === 401) {
      setMessage(what + ': 401 unauthorized: ' + (r.error || 'this server needs a token') +
        ' — enter the token in the box at the top right and try again', 'error');
      if (E.token) { E.token.classList.add('attention'); E.token.focus(); }
      return;
    }
    setMessage(what + (id !== null ? ' job ' + id : '') + ' failed' + (r.status ? ' (' + r.status + ')' : '') + ': ' + r.error, 'error');
  }

  async function submitJob() {
    const format = E.format.value === 'yaml' ? 'yaml' : 'json';
    const text = E.body.value;
    if (!text.trim()) { setMessage('submit: the job body is empty: choose a preset or paste a JSON/YAML job', 'error'); return; }
    if (format === 'json') {
      try { JSON.parse(text); } catch (err) {
        setMessage('submit: the body is not valid JSON (' + err.message + '); choose yaml in the format select for a YAML body', 'error');
        return;
      }
    }
    E.submit.disabled = true;
    try {
      const r = await api('POST', '/api/jobs', { raw: text, type: format === 'yaml' ? 'application/yaml' : 'application/json' });
      if (r.ok && r.data) {
        const id = isNum(r.data.id) ? r.data.id : parseInt(r.data.job_id, 10);
        setMessage('submit: job ' + id + ' created' + (r.data.message ? ' (' + r.data.message + ')' : '') + '; next: Initialize, then Train', 'ok');
        await pollList();
        if (Number.isFinite(id)) selectJob(id, true);
      } else showResult('submit', null, r);
    } finally {
      E.submit.disabled = false;
    }
  }

  async function action(kind) {
    if (S.sel === null) return;
    const id = S.sel;
    let path, json = {};
    if (kind === 'initialize') path = `/api/network/initialize/${id}`;
    else if (kind === 'stop') path = `/api/jobs/${id}/stop`;
    else {
      path = `/api/network/train/${id}`;
      const ep = E.trainEpochs.value.trim(), lr = E.trainLr.value.trim();
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
    const btn = kind === 'initialize' ? E.btnInit : kind === 'stop' ? E.btnStop : E.btnTrain;
    btn.disabled = true;
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
      btn.disabled = false;
    }
  }

  async function loadPresets() {
    const r = await api('GET', '/api/presets');
    clear(E.preset);
    const list = r.ok && r.data && Array.isArray(r.data.presets) ? r.data.presets : [];
    S.presets = list.filter((p) => p && typeof p.name === 'string');
    E.preset.append(h('option', { value: '' }, S.presets.length ? 'choose a preset…' : (r.ok ? 'no presets' : 'presets unavailable')));
    for (const p of S.presets) E.preset.append(h('option', { value: p.name }, p.name));
  }

  // The jobs list, every LIST_EVERY_MS.
  async function pollList() {
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

    const ids = S.jobs.map((j) => j.id);
    const newest = ids.length ? Math.max(...ids) : null;
    if (newest !== null && (S.sel === null || !ids.includes(S.sel) || (!S.userSelected && newest > S.sel))) {
      selectJob(newest, false);
    } else if (S.sel !== null && S.job) {
      const mine = S.jobs.find((j) => j.id === S.sel);
      if (mine && (mine.state !== S.job.state || mine.epochs_completed !== S.job.epochs_completed)) refresh();
    }
    if (newest === null && !S.ready) { markDirty('job'); setReadySoon(); }
    return true;
  }

  function selectJob(id, byUser) {
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
    if (E.probs) { clear(E.probs); E.predictInfo.textContent = ''; }
    if (E.generated) { clear(E.generated); E.genInfo.textContent = ''; }
    markDirty('list', 'job');
    refresh();
  }

  // Refetches the selected job, then its metrics and new log lines (after the job: a job seen in
  // a final state has all its steps in the metrics fetched next). Overlapping calls coalesce.
  async function refresh() {
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

  function mergeMetrics(m) {
    S.metrics = m;
    const fetched = Array.isArray(m.steps) ? m.steps : [];
    if (fetched.length >= S.steps.length) S.steps = fetched.slice();
    else S.steps = fetched.concat(S.steps.slice(fetched.length));
    const byEpoch = new Map();
    for (const e of S.epochs) byEpoch.set(e.epoch, e);
    for (const e of Array.isArray(m.epochs) ? m.epochs : []) byEpoch.set(e.epoch, e);
    S.epochs = [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
  }

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

  // The stream when the job can still change; polling when streams keep failing.
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
    const on = (type, fn) => es.addEventListener(type, (ev) => {
      if (gen !== S.gen || S.es !== es) return;
      let d;
      try { d = JSON.parse(ev.data); } catch (_) { return; }
      S.esErrors = 0;
      fn(d);
    });
    on('step', onStep);
    on('epoch', onEpoch);
    on('log', onLog);
    on('state', onState);
    on('dropped', () => refresh());
    es.onerror = () => {
      if (S.es !== es) return;
      es.close();
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

  function onStep(d) {
    const i = d.index;
    if (!isNum(i)) { S.steps.push(d); markDirty('steps'); return; }
    if (i < S.steps.length) return;          // already have it
    if (i > S.steps.length) { refresh(); return; }  // a gap: refetch
    S.steps.push(d);
    markDirty('steps');
  }
  function onEpoch(d) {
    if (!d || d.epoch === undefined) return;
    const k = S.epochs.findIndex((e) => e.epoch === d.epoch);
    if (k >= 0) S.epochs[k] = d; else { S.epochs.push(d); S.epochs.sort((a, b) => a.epoch - b.epoch); }
    if (S.job) S.job.epochs_completed = Math.max(S.job.epochs_completed || 0, S.epochs.length);
    markDirty('epochs', 'try');
    refresh();  // the job's progress and totals
  }
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

  function setReadySoon() {
    if (S.ready) return;
    markDirty('job');
    const done = () => { S.ready = true; window.arceusReady = true; };
    // after the frame that draws it
    requestAnimationFrame(() => setTimeout(done, 0));
    setTimeout(() => { if (!S.ready) { flush(); done(); } }, 500);
  }

  // ---------------------------------------------------------------------------------------------
  // Start

  function readReport() {
    const el = document.getElementById('arceus-report');
    if (!el) return null;
    try {
      const r = JSON.parse(el.textContent);
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
    window.arceusReady = false;
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
      S.dirty = new Set(['job']);
      flush();
      S.ready = true;
      window.arceusReady = true;
      return;
    }

    markDirty('job', 'list', 'status');
    loadPresets();
    pollList();
    setInterval(pollList, LIST_EVERY_MS);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
