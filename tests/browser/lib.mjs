// Shared helpers of the browser tests: argument parsing, launching the system Chromium through
// playwright-core (never a downloaded browser), waiting with deadlines, collecting console errors.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const CHROMIUM = process.env.ARCEUS_CHROMIUM || '/usr/bin/chromium';
export const SKIP = 77;  // the exit code CTest's SKIP_RETURN_CODE is set to

// The flags this closed network needs: no first-run, no background fetches of any kind.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export class TestFailure extends Error {}

export function fail(message) {
  throw new TestFailure(message);
}

export function log(name, message) {
  console.log(`[${name}] ${message}`);
}

// --key value pairs; a flag with no value gets true.
export function parseArgs(argv, required) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) fail(`unexpected argument '${a}'`);
    const key = a.slice(2);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[key] = true;
    else { out[key] = next; i++; }
  }
  const missing = required.filter((k) => typeof out[k] !== 'string');
  if (missing.length) fail(`missing ${missing.map((k) => '--' + k).join(', ')}`);
  return out;
}

// playwright-core, or null with the reason (the caller exits SKIPPED).
export async function loadPlaywright() {
  if (!fs.existsSync(CHROMIUM)) return { reason: `${CHROMIUM} is not installed` };
  try {
    const mod = await import('playwright-core');
    const chromium = mod.chromium || (mod.default && mod.default.chromium);
    if (!chromium) return { reason: 'playwright-core has no chromium export' };
    return { chromium };
  } catch (e) {
    return { reason: `playwright-core is not installed (cd tests/browser && npm ci): ${e.message.split('\n')[0]}` };
  }
}

// Launches Chromium with a fresh temporary profile; returns {context, page, close}.
export async function launch(chromium, { width = 1400, height = 1000 } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'arceus-chromium-'));
  let context;
  try {
    context = await withTimeout(
      chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
        viewport: { width, height },
        timeout: 60000,
      }),
      90000,
      'launching Chromium',
    );
  } catch (e) {
    fs.rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  const page = context.pages()[0] || (await context.newPage());
  const close = async () => {
    try { await withTimeout(context.close(), 20000, 'closing Chromium'); } catch { /* the process dies with us */ }
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, close };
}

// Records console errors and uncaught page errors. Failed loads of a favicon are not errors.
export function collectErrors(page) {
  const errors = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    const where = (msg.location() && msg.location().url) || '';
    if (/Failed to load resource/i.test(text) && /favicon/i.test(where)) return;  // the browser's own favicon probe
    errors.push(`console.error: ${text}${where ? ` (${where})` : ''}`);
  });
  page.on('pageerror', (err) => errors.push(`page error: ${err.stack || err.message || String(err)}`));
  return errors;
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new TestFailure(`timed out after ${ms / 1000} s: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn() until it returns a truthy value; fails with what (and the last value/error) at the deadline.
export async function waitFor(fn, { timeout = 30000, interval = 250, what = 'a condition', describe } = {}) {
  const deadline = Date.now() + timeout;
  let last, lastError;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
      lastError = undefined;
    } catch (e) {
      if (e instanceof TestFailure) throw e;  // fn's own verdict: no retry
      lastError = e;
    }
    if (Date.now() >= deadline) {
      let extra = '';
      if (describe) { try { extra = ` (${await describe()})`; } catch { /* ignore */ } }
      else if (lastError) extra = ` (last error: ${lastError.message.split('\n')[0]})`;
      fail(`timed out after ${timeout / 1000} s waiting for ${what}${extra}`);
    }
    await sleep(interval);
  }
}

// Exact equality of two number arrays (as JSON numbers); null when equal, else a description.
export function diffNumbers(got, want, label) {
  if (!Array.isArray(got)) return `${label}: not an array: ${JSON.stringify(got)}`;
  if (got.length !== want.length) return `${label}: ${got.length} values on the page, ${want.length} expected`;
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) return `${label}[${i}]: ${JSON.stringify(got[i])} on the page, ${JSON.stringify(want[i])} expected`;
  }
  return null;
}

// Runs main(); prints the failure and exits 1, or exits with main's code.
export async function run(name, main) {
  let code = 1;
  try {
    code = (await main()) ?? 0;
  } catch (e) {
    if (e instanceof TestFailure) console.error(`${name}: FAILED: ${e.message}`);
    else console.error(`${name}: FAILED: ${e && e.stack ? e.stack : e}`);
    code = 1;
  }
  process.exit(code);
}
