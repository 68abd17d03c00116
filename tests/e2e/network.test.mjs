// End-to-end tests of the whole-network view (issue 19) in headless Chromium: the built-in
// network's accuracy against onnxruntime's (tests/e2e/oracle.py), the decoupled ONNX the page
// writes evaluated by onnxruntime against the page's own figure, the settings in the URL, the
// per-layer table, the curve and its cancel, a conv opened in the lab with its real input, the
// user's own ONNX with .npz or IDX data, hostile files (one message, nothing lost), and no
// request leaving the page's own origin.
// Run: `trunk build --release --public-url /ndlab/ && node --test tests/e2e/network.test.mjs`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveAndLaunch } from './server.mjs';
import { newWatchedPage } from './page.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TIMEOUT = 300_000;
const MODEL = join(ROOT, 'assets/networks/fmnist_vgg.onnx');
const TEST = join(ROOT, 'assets/networks/fmnist_test_1000.npz');

let server;
let browser;
const figures = {};

function oracle(...args) {
  return JSON.parse(execFileSync('python3', [join(ROOT, 'tests/e2e/oracle.py'), ...args], { encoding: 'utf8' }));
}

before(async () => {
  ({ server, browser } = await serveAndLaunch(ROOT, CHROMIUM));
});

after(async () => {
  await browser?.close();
  await server?.close();
  console.log('network e2e figures: ' + JSON.stringify(figures));
});

async function openPage(query, viewport = { width: 1400, height: 900 }) {
  const { context, page, problems } = await newWatchedPage(browser, { viewport, acceptDownloads: true });
  const foreign = [];
  const origin = new URL(server.url).origin;
  context.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:')) foreign.push(u);
  });
  await page.goto(server.url + query);
  await page.waitForSelector('[data-testid="network"]', { timeout: TIMEOUT });
  return { page, context, problems, foreign };
}

/** Waits until the accuracy line holds a figure for the current choice; returns [acc, original, n]. */
async function accuracy(page, timeout = TIMEOUT) {
  const sel = '[data-testid="network-accuracy"]';
  await page.waitForFunction(
    (s) => /^\d+\.\d % \(original \d+\.\d %, \d+ test items\)$/.test(document.querySelector(s)?.textContent ?? ''),
    sel,
    { timeout },
  );
  const text = await page.textContent(sel);
  const m = text.match(/^(\d+\.\d) % \(original (\d+\.\d) %, (\d+) test items\)$/);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** Sets a control and waits for the accuracy line to go back to "computing" and then to a figure. */
async function recompute(page, act) {
  const before = await page.textContent('[data-testid="network-accuracy"]');
  await act();
  await page.waitForFunction(
    (b) => document.querySelector('[data-testid="network-accuracy"]')?.textContent !== b,
    before,
    { timeout: TIMEOUT },
  );
  return accuracy(page);
}

test('built-in network: accuracy, URL, table, downloaded ONNX agrees with onnxruntime, open a conv in the lab', async () => {
  const { page, context, problems, foreign } = await openPage('?view=network&net=uniform&net_t=4&net_order=pw-dw&net_aware=0');
  // The lab is hidden in this view.
  assert.equal(await page.isVisible('[data-testid="spectrum-plot"]'), false);
  const t0 = Date.now();
  const [acc, original, n] = await accuracy(page);
  figures.first_accuracy_s = (Date.now() - t0) / 1000;
  const want = oracle(MODEL, TEST);
  assert.equal(n, want.n);
  assert.equal(original, Number(((100 * want.correct) / want.n).toFixed(1)), 'original accuracy = onnxruntime');
  figures.uniform_pw_dw_t4 = acc;
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="network-table"] tbody tr').length === 6, null, {
    timeout: TIMEOUT,
  });
  // The README's picture of this view (the measured time comes a moment after the accuracy).
  await page.waitForFunction(() => /measured in this browser/.test(document.querySelector('[data-testid="network-speedup"]').textContent), null, {
    timeout: TIMEOUT,
  });
  await page.screenshot({ path: join(ROOT, 'docs/network-screenshot.png'), fullPage: true });

  // The decoupled network the page writes, run by onnxruntime: the page's accuracy.
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: TIMEOUT }), page.click('[data-testid="download-onnx"]')]);
  const dir = mkdtempSync(join(tmpdir(), 'ndlab-net-'));
  const path = join(dir, download.suggestedFilename());
  await download.saveAs(path);
  const got = oracle(path, TEST);
  const ortAcc = (100 * got.correct) / got.n;
  assert.ok(Math.abs(ortAcc - acc) <= 0.15, `page ${acc} % against onnxruntime on its ONNX ${ortAcc} %`);
  figures.downloaded_onnx_ort = ortAcc;

  // The table as CSV: one row per conv.
  const [csv] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="download-csv"]')]);
  const csvPath = join(dir, 'layers.csv');
  await csv.saveAs(csvPath);
  const lines = execFileSync('cat', [csvPath], { encoding: 'utf8' }).trim().split('\n');
  assert.equal(lines.length, 7, lines.join('\n'));

  // The speed-up line, then data-aware on: the same T does better (EXPLORATION.md: 93.1 → 95.2 % on this subset).
  await page.waitForFunction(() => /fewer conv MACs/.test(document.querySelector('[data-testid="network-speedup"]').textContent));
  const [aware] = await recompute(page, () => page.check('[data-testid="network-aware"]'));
  figures.uniform_pw_dw_t4_aware = aware;
  assert.ok(aware > acc, `data-aware ${aware} % should beat data-free ${acc} %`);
  await page.waitForFunction(() => new URL(location.href).searchParams.get('net_aware') !== '0');

  // T per layer: conv2 at T = 1 is in the URL and changes the accuracy.
  const before = await page.textContent('[data-testid="network-accuracy"]');
  await page.locator('[data-testid="network-table"] tbody tr[data-layer="1"] [data-testid="layer-t"]').fill('1');
  await page.locator('[data-testid="network-table"] tbody tr[data-layer="1"] [data-testid="layer-t"]').dispatchEvent('change');
  await page.waitForFunction(() => (new URL(location.href).searchParams.get('net_ts') ?? '').split(',')[1] === '1', null, {
    timeout: 10_000,
  });
  await page.waitForFunction((b) => document.querySelector('[data-testid="network-accuracy"]').textContent !== b, before, {
    timeout: TIMEOUT,
  });
  await accuracy(page);

  // Strategy: a MAC budget of 3×: the plan is at least that much cheaper.
  await page.selectOption('[data-testid="strategy-select"]', 'budget');
  await page.fill('[data-testid="strategy-param"]', '3');
  await page.dispatchEvent('[data-testid="strategy-param"]', 'change');
  await page.waitForFunction(
    () => {
      const m = document.querySelector('[data-testid="network-speedup"]').textContent.match(/^(\d+\.\d+)× fewer/);
      return m && Number(m[1]) >= 2.95;
    },
    null,
    { timeout: TIMEOUT },
  );
  const [budgetAcc] = await accuracy(page);
  figures.budget3_pw_dw_aware = budgetAcc;
  assert.equal(new URL(page.url()).searchParams.get('net_speedup'), '3');

  // The curve: some points, then cancel.
  await page.click('[data-testid="curve-run"]');
  await page.waitForFunction(() => Number(document.querySelector('canvas.plot-accuracy')?.dataset.points ?? 0) >= 2, null, {
    timeout: TIMEOUT,
  });
  await page.click('[data-testid="curve-cancel"]');
  await page.waitForFunction(() => !document.querySelector('[data-testid="curve-run"]').disabled, null, { timeout: TIMEOUT });

  // A conv in the lab, with what feeds it in the network.
  await page.locator('[data-testid="network-table"] tbody tr[data-layer="3"] [data-testid="layer-open"]').click();
  await page.waitForFunction(() => /conv4/.test(document.querySelector('[data-testid="input-description"]')?.textContent ?? ''), null, {
    timeout: TIMEOUT,
  });
  assert.ok(await page.isVisible('[data-testid="spectrum-plot"]'), 'the lab is shown');
  assert.match(await page.textContent('[data-testid="input-description"]'), /Input 64×14×14: the real activations that feed conv4/);
  await page.waitForSelector('[data-testid="output-error"]:not(:empty)', { timeout: TIMEOUT });

  assert.deepEqual(problems, []);
  assert.deepEqual(foreign, []);
  await context.close();
});

test('your own ONNX with .npz and IDX data; hostile files are one message and lose nothing', async () => {
  const { page, context, problems, foreign } = await openPage('?view=network&net=uniform&net_t=4&net_order=pw-dw&net_aware=0');
  await accuracy(page);
  const dir = mkdtempSync(join(tmpdir(), 'ndlab-user-'));

  // A file that is not a model: the built-in network stays.
  const junk = join(dir, 'junk.onnx');
  writeFileSync(junk, 'this is not an ONNX model at all');
  await page.setInputFiles('[data-testid="network-file"]', junk);
  await page.waitForFunction(() => /the network before stays/.test(document.querySelector('[data-testid="network-status"]').textContent), null, {
    timeout: TIMEOUT,
  });
  assert.match(await page.textContent('[data-testid="network-summary"]'), /Fashion-MNIST CNN \(built in\)/);

  // The model as the user's file: no data yet.
  await page.setInputFiles('[data-testid="network-file"]', MODEL);
  await page.waitForFunction(() => /^fmnist_vgg\.onnx/.test(document.querySelector('[data-testid="network-summary"]').textContent), null, {
    timeout: TIMEOUT,
  });
  assert.match(await page.textContent('[data-testid="network-accuracy"]'), /needs labelled data/);

  // Junk data: one message, nothing changes.
  const junkNpz = join(dir, 'junk.npz');
  writeFileSync(junkNpz, 'PK not really a zip');
  await page.setInputFiles('[data-testid="network-data"]', junkNpz);
  await page.waitForFunction(() => /the data before stays/.test(document.querySelector('[data-testid="network-status"]').textContent), null, {
    timeout: TIMEOUT,
  });

  // Its .npz: the first 128 items calibrate, the other 872 are the test set.
  const want = oracle(MODEL, TEST, '128');
  await page.setInputFiles('[data-testid="network-data"]', TEST);
  const [, original, n] = await accuracy(page);
  assert.equal(n, want.n);
  assert.equal(original, Number(((100 * want.correct) / want.n).toFixed(1)));

  // The same items as an IDX pair.
  const idx = oracle('--idx', TEST, join(dir, 'idx'));
  await page.setInputFiles('[data-testid="network-data"]', [idx.images, idx.labels]);
  await page.waitForFunction(() => /t10k-images/.test(document.querySelector('[data-testid="network-summary"]').textContent), null, {
    timeout: TIMEOUT,
  });
  const [, original2, n2] = await accuracy(page);
  assert.equal(n2, want.n);
  assert.equal(original2, original);

  assert.deepEqual(problems, []);
  assert.deepEqual(foreign, []);
  await context.close();
});

test('absurd URL values are clamped, and the page still answers', async () => {
  const { page, context, problems } = await openPage('?view=network&net=budget&net_speedup=1e9&net_t=99999&net_ts=1,x,3&net_tau=7');
  // 64× (the clamp) is out of this network's reach: the accuracy line says so and how far it goes.
  await page.waitForFunction(
    () => /^not computed: .*out of reach.*\d\.\d\d× fewer.*the most this network allows/.test(
      document.querySelector('[data-testid="network-accuracy"]')?.textContent ?? ''),
    null,
    { timeout: TIMEOUT },
  );
  assert.doesNotMatch(await page.textContent('[data-testid="network-status"]'), /sensitivity \(/, 'no stage left hanging');
  const u = new URL(page.url());
  assert.ok(Number(u.searchParams.get('net_speedup') ?? '2') <= 64, u.search);
  assert.ok(Number(u.searchParams.get('net_t') ?? '1') <= 121, u.search);
  // The page still answers: a reachable choice gets its figure.
  const [acc, original] = await recompute(page, () => page.selectOption('[data-testid="strategy-select"]', 'uniform'));
  assert.ok(acc > 10 && acc <= 100 && original > 90, `${acc} / ${original}`);
  assert.deepEqual(problems, []);
  await context.close();
});

test('on a phone (390×844) neither view is wider than the screen', async () => {
  const { page, context, problems } = await openPage('?view=network', { width: 390, height: 844 });
  await accuracy(page);
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok((await overflow()) <= 0, `network view overflows by ${await overflow()} px`);
  await page.click('[data-testid="view-lab"]');
  await page.waitForSelector('[data-testid="kernels"]', { timeout: TIMEOUT });
  assert.ok((await overflow()) <= 0, `layer view overflows by ${await overflow()} px`);
  assert.deepEqual(problems, []);
  await context.close();
});
