// @ts-check
// What the page knows: the shapes of the server's answers (the same JSON `arceus report`
// inlines), the one state object S, and the redraw schedule. Modules change S, then name what
// they changed with markDirty(); the renderer app.js registers redraws those sections together,
// at most once per animation frame. Nothing is stored outside this page's memory.

// --- The server's JSON, as far as the page reads it ----------------------------------------------

/** @typedef {number | string} JobId  a number on the server; the run directory's name in a report */
/**
 * @typedef {Object} ModelConfig
 * @property {string} [type]  mlp, transformer (gpt)
 * @property {number[]} [layer_sizes]
 * @property {number} [n_blocks]
 * @property {number} [n_emb]
 * @property {number} [n_heads]
 * @property {number} [context]
 */
/**
 * @typedef {Object} DatasetConfig
 * @property {string} [name]
 * @property {string} [source]  the text file of a `text` dataset
 */
/**
 * One training step: a row of GET .../metrics' `steps`, or a `step` event.
 * @typedef {Object} Step
 * @property {number} [index]  its index in `steps` (events only)
 * @property {number} epoch
 * @property {number} step  1-based within the epoch
 * @property {number} [steps]  steps per epoch
 * @property {number | null} [loss]
 * @property {number | null} [accuracy]
 * @property {number} [samples_per_second]
 * @property {number} [tokens_per_second]
 */
/**
 * One rank's time over an epoch (seconds), from every rank's report.
 * @typedef {Object} RankTiming
 * @property {number} rank
 * @property {number} [stage]  -1 for the orchestrator
 * @property {string} [host]
 * @property {number} [wall_s]
 * @property {number} [forward_s]
 * @property {number} [backward_s]
 * @property {number} [optimizer_s]
 * @property {number} [codec_s]
 * @property {number} [comm_wait_s]
 * @property {number} [idle_s]
 * @property {number} [gflops]
 * @property {number} [flops]
 */
/**
 * A completed epoch: a row of GET .../metrics' `epochs`, or an `epoch` event.
 * @typedef {Object} Epoch
 * @property {number} epoch
 * @property {number} [train_loss]
 * @property {number} [train_accuracy]
 * @property {number} [val_loss]
 * @property {number} [val_accuracy]
 * @property {number} [seconds]
 * @property {number} [samples_per_second]
 * @property {number} [tokens_per_second]
 * @property {number} [bytes_raw]
 * @property {number} [bytes_wire]
 * @property {number} [bubble_measured]
 * @property {number} [bubble_theoretical]
 * @property {number} [bubble_simulated]
 * @property {RankTiming[]} [timing]
 * @property {string} [sample]  a transformer's generated text
 */
/**
 * A stage of the job's plan.
 * @typedef {Object} PlanStage
 * @property {number} stage  1-based
 * @property {number} rank
 * @property {string} [host]
 * @property {number[]} [layers]  [first, last]
 * @property {number[]} [layer_sizes]
 * @property {string[]} [layer_names]
 * @property {number} [parameters]
 * @property {number[]} [replica_ranks]  with replicas: the stage's rank in each replica
 * @property {string[]} [replica_hosts]
 */
/** @typedef {{rank: number, host?: string}} RankInfo */
/** @typedef {{val_loss?: number, val_accuracy?: number}} Final */
/**
 * GET /api/jobs/<id> (and a row of GET /api/jobs, which has fewer fields).
 * @typedef {Object} Job
 * @property {JobId} id
 * @property {string} [state]
 * @property {string} [status]  the same as state
 * @property {ModelConfig} [model_config]
 * @property {DatasetConfig} [dataset_config]
 * @property {number} [epochs]
 * @property {number} [epochs_completed]
 * @property {number} [log_lines]
 * @property {number} [world_size]
 * @property {number} [devices]
 * @property {string} [created_at]
 * @property {number} [seconds]
 * @property {string} [output_dir]
 * @property {string | null} [error]
 * @property {PlanStage[]} [plan]
 * @property {RankInfo[]} [ranks]
 * @property {{epoch?: number, step?: number, steps?: number, epochs?: number}} [progress]
 * @property {{epochs?: number}} [train_request]
 * @property {Final | null} [final]
 * @property {Epoch | null} [latest_epoch]
 */
/**
 * GET /api/jobs/<id>/metrics.
 * @typedef {Object} Metrics
 * @property {string} [state]
 * @property {Step[]} [steps]
 * @property {Epoch[]} [epochs]
 * @property {number} [bytes_raw]
 * @property {number} [bytes_wire]
 * @property {number} [wire_ratio]
 * @property {Final | null} [final]
 */
/**
 * The snapshot `arceus report` inlines as <script id="arceus-report" type="application/json">.
 * @typedef {Object} Report
 * @property {boolean} [report]
 * @property {string} [run_dir]
 * @property {string} [generated_at]
 * @property {Job | null} job
 * @property {Metrics} [metrics]
 * @property {string[]} [logs]
 */

// --- Constants ------------------------------------------------------------------------------------

// Job states. (Of string | undefined: a job read from the server may lack its state.)
/** @type {ReadonlySet<string | null | undefined>} */
export const FINAL = new Set(['completed', 'failed', 'stopped']);
/** @type {ReadonlySet<string | null | undefined>} */
export const ACTIVE = new Set(['queued', 'training']);
export const LOG_KEEP = 200;  // log lines kept on the dashboard (a report keeps all)

// --- The state ------------------------------------------------------------------------------------

/**
 * @typedef {Object} State
 * @property {Report | null} report  the report snapshot, in report mode
 * @property {Job[]} jobs  GET /api/jobs
 * @property {string} jobsKey  what the jobs list was last drawn from
 * @property {boolean | null} online  null unknown
 * @property {string} onlineText
 * @property {JobId | null} sel  the selected job's id
 * @property {boolean} userSelected  true once the user picked a job (no more auto-select of the newest)
 * @property {number} gen  bumped on every selection: stale answers are dropped
 * @property {Job | null} job  the selected job
 * @property {Step[]} steps
 * @property {Epoch[]} epochs  sorted by epoch
 * @property {Metrics} metrics  the latest GET .../metrics
 * @property {string[]} logs  the kept lines (the last LOG_KEEP; all of them in a report)
 * @property {number} logNext  the index of the next log line
 * @property {boolean} logsLoaded
 * @property {boolean} logsScrolled  the log was scrolled to its end once
 * @property {EventSource | null} es  the selected job's event stream
 * @property {number} esErrors  stream failures in a row (3: poll instead)
 * @property {number} esTimer  the stream's reconnection
 * @property {number} pollTimer
 * @property {boolean} refreshing
 * @property {boolean} refreshAgain
 * @property {Record<string, RankInfo[]>} ranksByJob  the initialize answer's ranks (rank 0's host)
 * @property {boolean} ready  drawn once (window.arceusReady)
 */

/** @type {State} */
export const S = {
  report: null,
  jobs: [],
  jobsKey: '',
  online: null,
  onlineText: '',
  sel: null,
  userSelected: false,
  gen: 0,
  job: null,
  steps: [],
  epochs: [],
  metrics: {},
  logs: [],
  logNext: 0,
  logsLoaded: false,
  logsScrolled: false,
  es: null,
  esErrors: 0,
  esTimer: 0,
  pollTimer: 0,
  refreshing: false,
  refreshAgain: false,
  ranksByJob: {},
  ready: false,
};

/**
 * What the browser tests read besides the DOM.
 * @typedef {Object} TestHooks
 * @property {boolean} [arceusReady]  the page has drawn what it had at start
 * @property {number[][]} [arceusLastPixels]  the grid sent by the last Predict
 * @property {unknown} [arceusLastPrediction]
 * @property {unknown} [arceusLastGeneration]
 */
export const hooks = /** @type {Window & TestHooks} */ (window);

// --- What S says, derived -------------------------------------------------------------------------

/** @returns {Epoch | null} */
export function latestEpoch() {
  if (S.epochs.length) return S.epochs[S.epochs.length - 1];
  return (S.job && S.job.latest_epoch) || null;
}
/** @returns {(Epoch & {timing: RankTiming[]}) | null} */
export function latestTimedEpoch() {
  for (let i = S.epochs.length - 1; i >= 0; i--) {
    const e = S.epochs[i];
    if (Array.isArray(e.timing) && e.timing.length) return /** @type {Epoch & {timing: RankTiming[]}} */ (e);
  }
  return null;
}
export function hasCheckpoint() {
  return S.epochs.length > 0 || !!(S.job && S.job.epochs_completed && S.job.epochs_completed > 0);
}

// --- Redraws: sections are marked dirty and redrawn together, at most once per animation frame ---

/** @typedef {'list' | 'status' | 'job' | 'steps' | 'epochs' | 'plan' | 'try' | 'logs'} Section  'job': all of the job's */

/** @type {(dirty: Set<Section>) => void} */
let renderer = () => {};
/** @type {Set<Section>} */
let dirty = new Set();
let frame = 0;
let frameTimer = 0;

/**
 * Who redraws the dirty sections (app.js).
 * @param {(dirty: Set<Section>) => void} fn
 */
export function setRenderer(fn) { renderer = fn; }

/** @param {...Section} what */
export function markDirty(...what) {
  for (const w of what) dirty.add(w);
  if (frame || frameTimer) return;
  frame = requestAnimationFrame(flush);
  frameTimer = setTimeout(flush, 400);  // a hidden tab gets no frames
}

export function flush() {
  if (frame) cancelAnimationFrame(frame);
  if (frameTimer) clearTimeout(frameTimer);
  frame = 0;
  frameTimer = 0;
  const d = dirty;
  dirty = new Set();
  try {
    renderer(d);
  } catch (err) {
    console.error('arceus dashboard: render failed:', err);
  }
}

// window.arceusReady once the page has drawn what it had at start.
export function setReadySoon() {
  if (S.ready) return;
  markDirty('job');
  const done = () => { S.ready = true; hooks.arceusReady = true; };
  // after the frame that draws it
  requestAnimationFrame(() => setTimeout(done, 0));
  setTimeout(() => { if (!S.ready) { flush(); done(); } }, 500);
}
