// @ts-check
// Numbers and job descriptions as the page writes them. Pure functions of their arguments.

/**
 * @param {unknown} x
 * @returns {x is number}
 */
export const isNum = (x) => typeof x === 'number' && Number.isFinite(x);

/**
 * @param {unknown} x
 * @param {number} [digits]
 */
export function fmtNum(x, digits = 4) {
  if (!isNum(x)) return '–';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(2);
  return Number(x.toPrecision(digits)).toString();
}
/** @param {unknown} x */
export function fmtInt(x) { return isNum(x) ? Math.round(x).toLocaleString('en-US') : '–'; }
/**
 * @param {unknown} x
 * @param {number} [digits]
 */
export function fmtPct(x, digits = 1) { return isNum(x) ? (x * 100).toFixed(digits) + '%' : '–'; }
/** @param {unknown} b */
export function fmtMiB(b) { return isNum(b) ? (b / 1048576).toFixed(2) + ' MiB' : '–'; }
/** @param {unknown} x */
export function fmtSec(x) {
  if (!isNum(x)) return '–';
  if (x === 0) return '0 s';
  if (x < 1e-3) return (x * 1e6).toFixed(0) + ' µs';
  if (x < 1) return (x * 1e3).toFixed(x < 0.01 ? 2 : 1) + ' ms';
  if (x < 120) return x.toFixed(2) + ' s';
  return Math.floor(x / 60) + ' min ' + Math.round(x % 60) + ' s';
}
/** @param {unknown} x */
export function fmtRate(x) {
  if (!isNum(x)) return '–';
  if (x >= 1e6) return (x / 1e6).toFixed(2) + ' M';
  if (x >= 1e4) return (x / 1e3).toFixed(1) + ' k';
  return x.toFixed(x >= 100 ? 0 : 1);
}

/** @param {{model_config?: import('dashboard/state.js').ModelConfig} | null | undefined} job */
export function isTransformer(job) {
  const m = job && job.model_config;
  return !!(m && (m.type === 'transformer' || m.type === 'gpt'));
}
/** @param {import('dashboard/state.js').ModelConfig | undefined} m */
export function modelSummary(m) {
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
/** @param {import('dashboard/state.js').DatasetConfig | undefined} d */
export function datasetSummary(d) {
  if (!d) return 'dataset ?';
  if (d.name === 'text' && d.source) return 'text ' + String(d.source).split('/').pop();
  return String(d.name || 'dataset ?');
}
/**
 * The badge's colour class of a job state.
 * @param {string | null | undefined} state
 */
export function phaseOf(state) {
  if (state === 'training') return 'training';
  if (state === 'completed') return 'done';
  if (state === 'failed' || state === 'stopped') return 'failed';
  return 'waiting';
}
