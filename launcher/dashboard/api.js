// @ts-check
// Talking to the server: requests on the same origin (/api/...) with the bearer token, and the
// message bar that tells their outcome. The token lives only in a variable of this module.

import { h } from 'dashboard/dom.js';

/**
 * An answer: `data` is the parsed JSON body (null when none or not JSON), `error` the server's
 * `error` field or the start of its body when not ok. Status 0: the server did not answer.
 * @typedef {{ok: boolean, status: number, data: any, error: string | null}} Reply
 */

let token = '';
/** @type {HTMLInputElement | null} */
let tokenInput = null;
/** @type {HTMLDivElement | null} */
let messageBar = null;

/**
 * GET, or a POST of `json` (or of `raw` text of Content-Type `type`); never throws.
 * @param {'GET' | 'POST'} method
 * @param {string} path
 * @param {{json?: unknown, raw?: string, type?: string}} [opts]
 * @returns {Promise<Reply>}
 */
export async function api(method, path, opts = {}) {
  /** @type {Record<string, string>} */
  const headers = {};
  let body;
  if (method !== 'GET') {
    if (token) headers.Authorization = 'Bearer ' + token;
    if (opts.raw !== undefined) { body = opts.raw; headers['Content-Type'] = opts.type || 'application/json'; }
    else { body = JSON.stringify(opts.json === undefined ? {} : opts.json); headers['Content-Type'] = 'application/json'; }
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store' });
  } catch (err) {
    const e = /** @type {{message?: string}} */ (err);
    return { ok: false, status: 0, data: null, error: 'the server does not answer (' + (e && e.message ? e.message : err) + ')' };
  }
  let data = null, text = '';
  try { text = await res.text(); data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  const error = res.ok ? null : (data && data.error ? String(data.error) : (text || res.statusText || 'HTTP ' + res.status).slice(0, 300));
  return { ok: res.ok, status: res.status, data, error };
}

// The token box of the header.
export function buildTokenInput() {
  tokenInput = h('input', {
    id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'token (if the server has one)', 'aria-label': 'API token',
  });
  const input = tokenInput;
  input.addEventListener('input', () => {
    token = input.value.trim();
    input.classList.remove('attention');
  });
  return input;
}

// The message bar under the header.
export function buildMessageBar() {
  messageBar = h('div', { id: 'message', class: 'message', role: 'status', 'aria-live': 'polite' });
  return messageBar;
}

/**
 * @param {string} text
 * @param {'info' | 'ok' | 'error'} kind
 */
export function setMessage(text, kind) {
  if (!messageBar) return;
  messageBar.textContent = text;
  messageBar.className = 'message ' + (kind === 'error' ? 'message-error' : kind === 'ok' ? 'message-ok' : '');
  messageBar.setAttribute('data-kind', kind || 'info');
}

/**
 * Tells the outcome of an action; a 401 points at the token box.
 * @param {string} what
 * @param {import('dashboard/state.js').JobId | null} id
 * @param {Reply} r
 */
export function showResult(what, id, r) {
  if (r.ok) {
    const msg = r.data && (r.data.message || r.data.status);
    setMessage(what + (id !== null ? ' job ' + id : '') + ': ' + (msg || 'ok'), 'ok');
    return;
  }
  if (r.status === 401) {
    setMessage(what + ': 401 unauthorized: ' + (r.error || 'this server needs a token') +
      ' — enter the token in the box at the top right and try again', 'error');
    if (tokenInput) { tokenInput.classList.add('attention'); tokenInput.focus(); }
    return;
  }
  setMessage(what + (id !== null ? ' job ' + id : '') + ' failed' + (r.status ? ' (' + r.status + ')' : '') + ': ' + r.error, 'error');
}
