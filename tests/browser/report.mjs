// Opens a report written by `arceus report` (one self-contained HTML file) in headless Chromium
// and checks it: it renders (window.arceusReady), it logs no error, it requests nothing but
// itself, and its loss chart carries every step's loss of the run.
//
//   node tests/browser/report.mjs --report FILE.html --metrics-json FILE.json --artifacts DIR
//
// FILE.json holds the expected steps: {"steps": [{"loss": ...}, ...]}.
// Exit 0 passed, 1 failed, 77 skipped (no /usr/bin/chromium or no playwright-core).

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { SKIP, collectErrors, diffNumbers, fail, launch, loadPlaywright, log, parseArgs, run, waitFor } from './lib.mjs';

const NAME = 'report';

await run(NAME, async () => {
  const args = parseArgs(process.argv.slice(2), ['report', 'metrics-json', 'artifacts']);
  const pw = await loadPlaywright();
  if (!pw.chromium) {
    console.log(`SKIPPED: ${pw.reason}`);
    return SKIP;
  }
  const reportFile = path.resolve(args.report);
  const artifacts = path.resolve(args.artifacts);
  if (!fs.existsSync(reportFile)) fail(`--report ${reportFile}: no such file`);
  let expected;
  try {
    expected = JSON.parse(fs.readFileSync(path.resolve(args['metrics-json']), 'utf8'));
  } catch (e) {
    fail(`--metrics-json ${args['metrics-json']}: ${e.message}`);
  }
  if (!expected || !Array.isArray(expected.steps)) fail(`--metrics-json ${args['metrics-json']}: no "steps" array`);
  const losses = expected.steps.map((s) => s.loss);
  fs.mkdirSync(artifacts, { recursive: true });

  const html = fs.readFileSync(reportFile, 'utf8');
  if (!html.includes('id="arceus-report"')) fail(`${reportFile} carries no <script id="arceus-report">`);

  const url = pathToFileURL(reportFile).href;
  const browser = await launch(pw.chromium, { width: 1400, height: 1000 });
  try {
    const page = browser.page;
    page.setDefaultTimeout(30000);
    const errors = collectErrors(page);
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(url, { waitUntil: 'load', timeout: 30000 });
    await waitFor(() => page.evaluate(() => window.arceusReady === true), { timeout: 30000, what: 'window.arceusReady' });

    const title = (await page.textContent('#title').catch(() => '')) || '';
    if (!title.startsWith('arceus report: ')) fail(`the page's title reads ${JSON.stringify(title)}, not "arceus report: <run dir>"`);
    for (const sel of ['#jobs', '#submit-job', '#btn-initialize', '#btn-train', '#btn-stop', '#draw-grid', '#btn-generate', '#token']) {
      if ((await page.locator(sel).count()) !== 0) fail(`the report shows ${sel}: a report has no jobs list, form, buttons or try-the-model`);
    }

    const attr = await page.getAttribute('#chart-loss', 'data-values');
    let got;
    try { got = JSON.parse(attr); } catch { fail(`#chart-loss data-values does not parse: ${String(attr).slice(0, 200)}`); }
    const diff = diffNumbers(got, losses, '#chart-loss data-values');
    if (diff) fail(diff);
    if (losses.length && (await page.locator('#chart-loss path').count()) < 1) fail('#chart-loss draws no line');

    const others = requests.filter((u) => u !== url && !u.startsWith('data:'));
    if (others.length) fail(`the report requested ${others.length} URL(s) besides itself: ${others.slice(0, 10).join(', ')}`);

    const shot = path.join(artifacts, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    if (errors.length) fail(`the page logged ${errors.length} error(s):\n  ${errors.join('\n  ')}`);
    log(NAME, `${title}: ${losses.length} steps on the loss chart, no request besides the file`);
    console.log(`report: OK (${losses.length} steps)`);
    return 0;
  } finally {
    await browser.close();
  }
});
