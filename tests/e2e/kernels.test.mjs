// End-to-end tests of the two worker builds (issue 6): in Chromium, which has relaxed SIMD, the page
// starts the relaxed-SIMD (FMA) worker and says so next to its measured times; where relaxed SIMD
// does not validate (simulated by making `WebAssembly.validate` refuse the probe module, as Safari
// would) it starts the SIMD128 worker, and both builds give the page the same numbers.
// Run: `trunk build --release --public-url /ndlab/ && node --test tests/e2e/kernels.test.mjs`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serveAndLaunch } from './server.mjs';
import { newWatchedPage } from './page.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TIMEOUT = 120_000;
const QUERY = '?example=vgg16bn_conv3_2&t=2&order=dw-pw';

let server;
let browser;

before(async () => {
  ({ server, browser } = await serveAndLaunch(ROOT, CHROMIUM));
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Opens the page (with relaxed SIMD hidden when `noRelaxed`); records workers started, wasm files
 * fetched and every console or page error. */
async function open(noRelaxed) {
  // The probe is the only module that uses f32x4.relaxed_madd (opcode 0xfd 0x85 0x02).
  const hideRelaxed = () => {
    const validate = WebAssembly.validate;
    WebAssembly.validate = (bytes, ...rest) => {
      const b = new Uint8Array(bytes.buffer ?? bytes, bytes.byteOffset ?? 0, bytes.byteLength);
      for (let i = 0; i + 2 < b.length; i++) if (b[i] === 0xfd && b[i + 1] === 0x85 && b[i + 2] === 0x02) return false;
      return validate.call(WebAssembly, bytes, ...rest);
    };
  };
  const { context, page, problems } = await newWatchedPage(browser, { init: noRelaxed ? [hideRelaxed] : [] });
  const workers = [];
  const wasm = [];
  page.on('worker', (w) => workers.push(new URL(w.url()).pathname));
  context.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.endsWith('.wasm')) wasm.push(u.pathname);
  });
  await page.goto(server.url + QUERY);
  await page.waitForSelector('body[data-ready="1"]', { timeout: TIMEOUT });
  await page.waitForFunction(() => /GMAC/.test(document.querySelector('[data-testid="gmacs"]')?.textContent ?? ''), null, {
    timeout: TIMEOUT,
  });
  const text = async (id) => (await page.locator(`[data-testid="${id}"]`).innerText()).trim();
  const shown = {
    kernels: await text('kernels'),
    weightError: await text('weight-error'),
    outputError: await text('output-error'),
    measured: await text('measured'),
  };
  const banner = await page.locator('[data-testid="load-error"]').count();
  return { page, context, problems, workers, wasm, shown, banner };
}

test('Chromium loads the relaxed-SIMD (FMA) worker and labels its measured times', async () => {
  const p = await open(false);
  assert.deepEqual(p.problems, []);
  assert.equal(p.banner, 0, 'no error banner');
  // The main worker and the relatives panel's: both the FMA build, under /ndlab/.
  assert.ok(p.workers.length >= 1, 'a worker started');
  assert.deepEqual([...new Set(p.workers)], ['/ndlab/ndlab-worker-fma_loader.js'], `workers: ${p.workers}`);
  assert.ok(p.wasm.includes('/ndlab/ndlab-worker-fma_bg.wasm'), `FMA worker wasm fetched: ${p.wasm}`);
  assert.ok(!p.wasm.includes('/ndlab/ndlab-worker_bg.wasm'), `SIMD128 worker wasm not fetched: ${p.wasm}`);
  assert.equal(p.shown.kernels, 'wasm SIMD128 + FMA (relaxed)');
  assert.match(p.shown.measured, /original [\d.]+ ms, decoupled [\d.]+ ms/);
  mkdirSync(join(ROOT, 'target'), { recursive: true });
  await p.page.locator('section.numbers').screenshot({ path: join(ROOT, 'target/kernels-fma.png') });
  await p.context.close();
});

test('without relaxed SIMD the page loads the SIMD128 worker and shows the same numbers', async () => {
  const fma = await open(false);
  await fma.context.close();
  const p = await open(true);
  assert.deepEqual(p.problems, []);
  assert.equal(p.banner, 0, 'no error banner');
  assert.ok(p.workers.length >= 1, 'a worker started');
  assert.deepEqual([...new Set(p.workers)], ['/ndlab/ndlab-worker_loader.js'], `workers: ${p.workers}`);
  assert.ok(p.wasm.includes('/ndlab/ndlab-worker_bg.wasm'), `SIMD128 worker wasm fetched: ${p.wasm}`);
  assert.ok(!p.wasm.some((w) => w.includes('fma')), `FMA worker wasm not fetched: ${p.wasm}`);
  assert.equal(p.shown.kernels, 'wasm SIMD128');
  // The weight error comes from the f64 decoupling (identical in both builds); the output error from
  // the forwards, where FMA only changes rounding (4 decimals shown).
  assert.equal(p.shown.weightError, fma.shown.weightError);
  assert.equal(p.shown.outputError, fma.shown.outputError);
  await p.page.locator('section.numbers').screenshot({ path: join(ROOT, 'target/kernels-simd128.png') });
  await p.context.close();
});
