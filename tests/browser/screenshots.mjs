// The pictures of the README and docs/dashboard.md (docs/img/): the dashboard of a Fashion-MNIST job served by
// `mpirun -np 3 arceus serve`, once while it trains and once done with a drawn input
// predicted, and the report of that run. Not a test; run by hand after changing the page:
//   node tests/browser/screenshots.mjs --arceus build/arceus --mpirun scripts/mpirun --out docs/img
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadPlaywright, launch, parseArgs, run, sleep, waitFor } from './lib.mjs';

await run('screenshots', async () => {
  const args = parseArgs(process.argv.slice(2), ['arceus', 'mpirun', 'out']);
  const { chromium, reason } = await loadPlaywright();
  if (!chromium) throw new Error(reason);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'arceus-shots-'));
  const port = await new Promise((ok) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
  const server = spawn(path.resolve(args.mpirun), ['-np', '3', path.resolve(args.arceus), 'serve', '--port', String(port), '--quiet'],
                       { cwd: work, detached: true, stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  const api = async (method, p, body) => (await fetch(base + p, { method, headers: { 'Content-Type': 'application/json' },
                                                                   body: body && JSON.stringify(body) })).json();
  try {
    await waitFor(async () => (await fetch(base + '/healthz').catch(() => null))?.ok, { timeout: 60000, what: 'the server' });
    const job = await api('POST', '/api/jobs', {
      model_config: { layer_sizes: [784, 256, 128, 10] },
      dataset_config: { name: 'FashionMNIST', batch_size: 128, val_batch_size: 1000, normalize: { mean: [0.286], std: [0.353] } },
      training: { epochs: 3, learning_rate: 0.1, momentum: 0.9, micro_batches: 4, schedule: '1f1b' } });
    await api('POST', `/api/network/initialize/${job.id}`, {});
    const { page, close } = await launch(chromium, { width: 1400, height: 1000 });
    try {
      await page.goto(base + '/');
      await api('POST', `/api/network/train/${job.id}`, {});
      await waitFor(async () => (await api('GET', `/api/jobs/${job.id}/metrics`)).epochs.length >= 1, { timeout: 120000, what: 'epoch 1' });
      await sleep(1500);
      await page.screenshot({ path: path.join(args.out, 'dashboard-training.png'), fullPage: false });
      await waitFor(async () => (await page.textContent('#job-state')) === 'completed', { timeout: 300000, what: 'completed' });
      await page.locator('canvas#draw-grid').scrollIntoViewIfNeeded();
      const bb = await page.locator('canvas#draw-grid').boundingBox();
      const at = (x, y) => [bb.x + bb.width * x, bb.y + bb.height * y];
      // A trouser-like shape: two legs.
      for (const [from, to] of [[[0.35, 0.15], [0.3, 0.9]], [[0.65, 0.15], [0.7, 0.9]], [[0.35, 0.15], [0.65, 0.15]]]) {
        await page.mouse.move(...at(...from)); await page.mouse.down();
        await page.mouse.move(...at(...to), { steps: 16 }); await page.mouse.up();
      }
      await page.click('#btn-predict');
      await page.waitForSelector('#probabilities [data-class]');
      await sleep(300);
      await page.screenshot({ path: path.join(args.out, 'dashboard.png'), fullPage: true });
    } finally {
      await close();
    }
    await api('POST', '/api/shutdown', {});
    console.log(`screenshots in ${args.out}; run directory ${work}/runs/serve/job-${job.id}`);
  } finally {
    try { process.kill(-server.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});
