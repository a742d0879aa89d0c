// End-to-end test of the dashboard: starts `arceus serve` on 3 ranks, drives the page in headless
// Chromium (submit a job, Initialize, Train, watch it complete, draw a digit, Predict) and checks
// what the page shows against the REST API.
//
//   node tests/browser/dashboard.mjs --arceus BIN --mpirun MPIRUN --workdir DIR --artifacts DIR
//
// MPIRUN is a launcher that already adds what this host needs (--allow-run-as-root, --oversubscribe).
// Exit 0 passed, 1 failed, 77 skipped (no /usr/bin/chromium or no playwright-core).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  SKIP, collectErrors, diffNumbers, fail, launch, loadPlaywright, log, parseArgs, run, sleep, waitFor, withTimeout,
} from './lib.mjs';

const NAME = 'dashboard';

const JOB = {
  model_config: { layer_sizes: [784, 32, 10] },
  dataset_config: {
    name: 'synthetic', batch_size: 64,
    synthetic: { train_size: 512, val_size: 128, features: 784, classes: 10 },
  },
  training: { epochs: 2, micro_batches: 2 },
};

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function tail(file, lines = 40) {
  try {
    const text = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function getJson(url, { method = 'GET', body, timeout = 10000 } = {}) {
  const res = await fetch(url, {
    method,
    headers: body !== undefined ? { 'Content-Type': 'application/json' } : undefined,
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(timeout),
  });
  const text = await res.text();
  let data = null;
  try { data = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, data, text };
}

await run(NAME, async () => {
  const args = parseArgs(process.argv.slice(2), ['arceus', 'mpirun', 'workdir', 'artifacts']);
  const pw = await loadPlaywright();
  if (!pw.chromium) {
    console.log(`SKIPPED: ${pw.reason}`);
    return SKIP;
  }
  for (const [flag, file] of [['--arceus', args.arceus], ['--mpirun', args.mpirun]]) {
    try { fs.accessSync(file, fs.constants.X_OK); } catch { fail(`${flag} ${file}: not an executable file`); }
  }
  const bin = path.resolve(args.arceus);
  const mpirun = path.resolve(args.mpirun);
  const workdir = path.resolve(args.workdir);
  const artifacts = path.resolve(args.artifacts);
  fs.mkdirSync(workdir, { recursive: true });
  fs.mkdirSync(artifacts, { recursive: true });
  const serveLog = path.join(artifacts, 'serve.log');

  // 1. the server
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const logFd = fs.openSync(serveLog, 'w');
  const argv = ['-np', '3', bin, 'serve', '--port', String(port), '--host', '127.0.0.1', '--quiet', '--data-root', workdir];
  log(NAME, `starting: ${mpirun} ${argv.join(' ')} (cwd ${workdir}, log ${serveLog})`);
  const server = spawn(mpirun, argv, { cwd: workdir, detached: true, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  let exited = null;
  server.on('exit', (code, signal) => { exited = { code, signal }; });
  server.on('error', (err) => { exited = { code: null, signal: null, error: err.message }; });
  // The whole group (mpirun and the ranks), even after mpirun itself has exited.
  let cleaned = false;
  const killGroup = (signal) => {
    if (!server.pid || cleaned) return;
    try { process.kill(-server.pid, signal); } catch { /* the group is gone */ }
  };
  process.on('exit', () => killGroup('SIGKILL'));
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killGroup('SIGKILL'); process.exit(1); });

  let browser = null;
  let page = null;
  try {
    const alive = () => {
      if (exited) fail(`the server exited early (${exited.error || `code ${exited.code}, signal ${exited.signal}`}); ${serveLog}:\n${tail(serveLog)}`);
    };
    await waitFor(async () => {
      alive();
      try {
        const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2000) });
        return res.status === 200;
      } catch { return false; }
    }, { timeout: 60000, interval: 300, what: `GET ${base}/healthz to answer 200`, describe: () => `${serveLog}:\n${tail(serveLog)}` });
    log(NAME, `server up on ${base}`);

    // 2. the page
    browser = await launch(pw.chromium, { width: 1400, height: 1000 });
    page = browser.page;
    page.setDefaultTimeout(30000);
    const errors = collectErrors(page);
    await page.goto(`${base}/`, { waitUntil: 'load', timeout: 30000 });
    await waitFor(() => page.evaluate(() => window.arceusReady === true), { timeout: 30000, what: 'window.arceusReady' });
    log(NAME, 'page loaded');

    // Fails at once when the page reports an error in #message.
    const messageError = async () => {
      const m = await page.$eval('#message', (el) => ({ kind: el.getAttribute('data-kind'), text: el.textContent })).catch(() => null);
      if (m && m.kind === 'error') fail(`the page says: ${m.text}`);
    };
    const describePage = async () => {
      const s = await page.evaluate(() => ({
        state: document.querySelector('#job-state') && document.querySelector('#job-state').textContent,
        id: document.querySelector('#job-id') && document.querySelector('#job-id').textContent,
        message: document.querySelector('#message') && document.querySelector('#message').textContent,
      }));
      return `#job-id ${JSON.stringify(s.id)}, #job-state ${JSON.stringify(s.state)}, #message ${JSON.stringify(s.message)}`;
    };

    // 3. submit, initialize, train
    await page.selectOption('#job-format', 'json');
    await page.fill('#job-body', JSON.stringify(JOB, null, 2));
    const created = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/jobs', { timeout: 30000 });
    await page.click('#submit-job');
    const createdRes = await withTimeout(created, 35000, 'the answer to POST /api/jobs');
    let createdBody = null;
    try { createdBody = await createdRes.json(); } catch { /* below */ }
    if (createdRes.status() !== 201 || !createdBody) fail(`POST /api/jobs answered ${createdRes.status()}: ${JSON.stringify(createdBody)}`);
    const id = createdBody.id ?? Number(createdBody.job_id);
    if (!Number.isInteger(id)) fail(`POST /api/jobs answered no id: ${JSON.stringify(createdBody)}`);
    log(NAME, `job ${id} created`);
    await waitFor(async () => {
      await messageError();
      return page.evaluate((jid) => !!document.querySelector(`#jobs [data-job-id="${jid}"]`) &&
        document.querySelector('#job-id').textContent.trim() === String(jid), id);
    }, { timeout: 20000, what: `job ${id} in #jobs and selected in #job-id`, describe: describePage });

    await page.click('#btn-initialize');
    await waitFor(async () => {
      await messageError();
      return (await page.locator('#plan .stage').count()) === 2;
    }, { timeout: 60000, what: 'two #plan .stage boxes after Initialize', describe: describePage });
    log(NAME, 'initialized: 2 stages drawn');

    await page.fill('#train-epochs', '2');
    await page.click('#btn-train');
    let last = '';
    await waitFor(async () => {
      alive();
      await messageError();
      const state = (await page.textContent('#job-state')).trim();
      if (state !== last) { log(NAME, `#job-state: ${state}`); last = state; }
      if (state === 'failed' || state === 'stopped') {
        const j = await getJson(`${base}/api/jobs/${id}`).catch(() => null);
        fail(`job ${id} ended ${state}: ${j && j.data ? j.data.error : '?'}; ${serveLog}:\n${tail(serveLog)}`);
      }
      return state === 'completed';
    }, { timeout: 120000, interval: 250, what: `#job-state to read "completed"`, describe: describePage });

    // 4. the charts and the plan against the API
    const metrics = await getJson(`${base}/api/jobs/${id}/metrics`);
    if (metrics.status !== 200 || !metrics.data || !Array.isArray(metrics.data.steps)) fail(`GET /api/jobs/${id}/metrics answered ${metrics.status}: ${metrics.text.slice(0, 300)}`);
    const losses = metrics.data.steps.map((s) => s.loss);
    if (!losses.length) fail(`job ${id} completed with no steps in its metrics`);
    let diff = null;
    await waitFor(async () => {
      const attr = await page.getAttribute('#chart-loss', 'data-values');
      let got;
      try { got = JSON.parse(attr); } catch { diff = `#chart-loss data-values does not parse: ${String(attr).slice(0, 200)}`; return false; }
      diff = diffNumbers(got, losses, '#chart-loss data-values');
      return diff === null;
    }, { timeout: 10000, what: 'the loss chart to show every step', describe: () => diff });
    const pathCount = await page.locator('#chart-loss path').count();
    if (pathCount < 1) fail('#chart-loss draws no line');
    for (const rank of [1, 2]) {
      const box = page.locator(`#plan .stage[data-rank="${rank}"]`);
      if ((await box.count()) !== 1) fail(`#plan has no .stage[data-rank="${rank}"]`);
      const text = await box.textContent();
      if (!text.includes(`rank ${rank}`)) fail(`#plan .stage[data-rank="${rank}"] does not name "rank ${rank}": ${JSON.stringify(text)}`);
    }
    log(NAME, `loss chart matches the ${losses.length} steps; plan names ranks 1 and 2`);

    // 5. draw a digit, predict, and compare with the API's own answer
    const canvas = page.locator('canvas#draw-grid');
    await canvas.scrollIntoViewIfNeeded();
    const bb = await canvas.boundingBox();
    if (!bb) fail('canvas#draw-grid is not visible');
    const at = (fx, fy) => [bb.x + bb.width * fx, bb.y + bb.height * fy];
    const stroke = async (from, to) => {
      await page.mouse.move(...at(...from));
      await page.mouse.down();
      await page.mouse.move(...at(...to), { steps: 12 });
      await page.mouse.up();
    };
    await stroke([0.5, 0.18], [0.5, 0.82]);
    await stroke([0.3, 0.3], [0.7, 0.7]);
    await waitFor(() => page.isEnabled('#btn-predict'), { timeout: 15000, what: '#btn-predict to be enabled' });
    await page.click('#btn-predict');
    await waitFor(async () => {
      await messageError();
      return (await page.locator('#probabilities [data-class]').count()) === 10;
    }, { timeout: 30000, what: '10 #probabilities [data-class] bars after Predict', describe: describePage });
    const pixels = await page.evaluate(() => window.arceusLastPixels);
    if (!Array.isArray(pixels) || pixels.length !== 28 || !pixels.every((r) => Array.isArray(r) && r.length === 28)) {
      fail(`window.arceusLastPixels is not 28 rows of 28: ${JSON.stringify(pixels).slice(0, 200)}`);
    }
    const ink = pixels.flat().filter((v) => v > 0).length;
    if (ink < 20) fail(`the strokes drew only ${ink} cells on the grid`);
    const answer = await getJson(`${base}/api/jobs/${id}/predict`, { method: 'POST', body: { pixels }, timeout: 30000 });
    if (answer.status !== 200 || !answer.data || !Array.isArray(answer.data.probabilities)) {
      fail(`POST /api/jobs/${id}/predict answered ${answer.status}: ${answer.text.slice(0, 300)}`);
    }
    const want = answer.data.probabilities;
    if (want.length !== 10) fail(`predict answered ${want.length} probabilities, not 10`);
    const shown = await page.$$eval('#probabilities [data-class]', (els) => els.map((e) => [e.getAttribute('data-class'), e.getAttribute('data-p')]));
    const got = [];
    for (const [cls, p] of shown) {
      let v;
      try { v = JSON.parse(p); } catch { fail(`data-p of class ${cls} does not parse: ${JSON.stringify(p)}`); }
      got[Number(cls)] = v;
    }
    const pdiff = diffNumbers(got, want, '#probabilities data-p');
    if (pdiff) fail(`${pdiff} (the page's prediction differs from POST /predict with the same pixels)`);
    const sum = want.reduce((a, b) => a + b, 0);
    if (!(Math.abs(sum - 1) <= 1e-5)) fail(`the probabilities sum to ${sum}, not 1`);
    log(NAME, `prediction: class ${answer.data.class}, probabilities match the API's`);

    // 6. the picture, the console
    await sleep(300);
    const shot = path.join(artifacts, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    if (errors.length) fail(`the page logged ${errors.length} error(s):\n  ${errors.join('\n  ')}`);
    console.log(`dashboard: OK (job ${id}, ${losses.length} steps, probabilities match)`);
    return 0;
  } catch (err) {
    if (page) {
      const shot = path.join(artifacts, 'dashboard-failure.png');
      try { await page.screenshot({ path: shot, fullPage: true }); console.error(`failure screenshot: ${shot}`); } catch { /* no page */ }
    }
    console.error(`${serveLog} (last lines):\n${tail(serveLog, 25)}`);
    throw err;
  } finally {
    if (browser) await browser.close();
    // a graceful stop first, then the whole process group
    if (!exited) {
      try { await fetch(`${base}/api/shutdown`, { method: 'POST', signal: AbortSignal.timeout(3000) }); } catch { /* killed below */ }
      for (let i = 0; i < 30 && !exited; i++) await sleep(100);
    }
    killGroup('SIGTERM');
    for (let i = 0; i < 50 && !exited; i++) await sleep(100);
    await sleep(200);
    killGroup('SIGKILL');
    cleaned = true;
  }
});
