// End-to-end tests of the browser app: the release build of `dist/` served under `/ndlab/` on
// 127.0.0.1, opened in headless Chromium (playwright-core, the system's /usr/bin/chromium).
// Run: `trunk build --release --public-url /ndlab/ && node --test tests/e2e/`.
// They fail on any console error, page error, error banner, or request to another host.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { serveAndLaunch } from './server.mjs';
import { newWatchedPage } from './page.mjs';
import { tChange } from './measure.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TIMEOUT = 120_000;
const TESTIDS = [
  'example-select', 't-slider', 'order-toggle', 'threshold-input', 'channel-select', 'spectrum-plot',
  'error-plot', 'cost-plot', 'filters-plot', 'feature-maps', 'output-error-plot', 'weight-error', 'speedup',
  'copy-link',
];

let server;
let browser;
const figures = {};
const expectedCache = new Map();

/** Weight errors of the native core for an example: { 'dw-pw': [...], 'pw-dw': [...] }. */
function expected(example) {
  if (!expectedCache.has(example)) {
    const bin = join(ROOT, 'target/release/examples/expected_errors');
    const out = existsSync(bin)
      ? execFileSync(bin, [example, ROOT], { encoding: 'utf8' })
      : execFileSync('cargo', ['run', '-q', '--release', '-p', 'ndlab-lab', '--example', 'expected_errors', '--', example, ROOT], {
          encoding: 'utf8',
          cwd: ROOT,
        });
    expectedCache.set(example, JSON.parse(out));
  }
  return expectedCache.get(example);
}

before(async () => {
  ({ server, browser } = await serveAndLaunch(ROOT, CHROMIUM));
});

after(async () => {
  await browser?.close();
  await server?.close();
  console.log('e2e figures: ' + JSON.stringify(figures));
});

/** A page that records every problem: console errors, page errors, foreign requests. */
async function openPage(query = '', viewport = { width: 1400, height: 1000 }, deviceScaleFactor = 1) {
  const { context, page, problems } = await newWatchedPage(browser, { viewport, deviceScaleFactor, longTasks: true });
  context.on('request', (r) => {
    const u = new URL(r.url());
    if (!['blob:', 'data:'].includes(u.protocol) && u.hostname !== '127.0.0.1') {
      problems.push(`request to another host: ${r.url()}`);
    }
  });
  const t0 = Date.now();
  await page.goto(server.url + query);
  await page.waitForSelector('body[data-ready="1"]', { timeout: TIMEOUT });
  return { page, context, problems, wallMs: Date.now() - t0 };
}

async function noProblems(p) {
  const banner = await p.page.locator('[data-testid="load-error"]').count();
  const bannerText = banner ? await p.page.locator('[data-testid="load-error"]').innerText() : '';
  assert.deepEqual(p.problems, [], 'no console/page errors or foreign requests');
  assert.equal(banner, 0, `no error banner (${bannerText})`);
}

/** Fraction of non-white pixels of every plot canvas, by chart id. */
async function inkByChart(page) {
  return page.evaluate(() => {
    const out = {};
    for (const c of document.querySelectorAll('canvas.plot')) {
      const ctx = c.getContext('2d');
      const { data } = ctx.getImageData(0, 0, c.width, c.height);
      let ink = 0;
      for (let i = 0; i < data.length; i += 16) {
        if (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235) ink++;
      }
      out[c.dataset.chart] = ink / (data.length / 16);
    }
    return out;
  });
}

async function text(page, testid) {
  return (await page.locator(`[data-testid="${testid}"]`).innerText()).trim();
}

async function state(page) {
  return Object.fromEntries(new URL(await page.evaluate(() => location.href)).searchParams);
}

/** Waits until the weight error shown equals the core's for (example, order, T). */
async function expectWeightError(page, example, order, t) {
  const want = expected(example)[order][t - 1].toFixed(4);
  await page.waitForFunction(
    (w) => document.querySelector('[data-testid="weight-error"]')?.textContent.trim() === w,
    want,
    { timeout: TIMEOUT },
  );
  assert.equal(await text(page, 'weight-error'), want);
}

test('default view: every control and plot, non-blank canvases, numbers of the core', async () => {
  const p = await openPage();
  const { page } = p;
  for (const id of TESTIDS) {
    assert.equal(await page.locator(`[data-testid="${id}"]`).count(), 1, `data-testid=${id}`);
  }
  const ink = await inkByChart(page);
  for (const [chart, frac] of Object.entries(ink)) assert.ok(frac > 0.01, `${chart} canvas has ink (${frac})`);
  assert.equal(Object.keys(ink).length, 6);
  const s = await state(page);
  const t = Number(s.t);
  const slider = page.getByTestId('t-slider');
  assert.equal(await slider.inputValue(), String(t));
  assert.match(await slider.getAttribute('aria-valuetext'), /^T = \d+ of \d+$/);
  await expectWeightError(page, s.example, s.order, t);
  assert.match(await text(page, 'speedup'), /^\d+\.\d\d×$/);
  assert.match(await text(page, 'source'), /licence/);
  figures.first_plots_ms = Number(await page.evaluate(() => document.body.dataset.plotsMs));
  figures.main_plots_ms = Number(await page.evaluate(() => document.body.dataset.mainPlotsMs));
  figures.decouple_ms_both_orders = Number(await page.getByTestId('decouple-time').getAttribute('data-ms'));
  figures.default_example = s.example;
  mkdirSync(join(ROOT, 'docs'), { recursive: true });
  // The README's screenshot shows the measured times (taken once the worker is idle).
  await page.waitForSelector('[data-testid="measured-speedup"][data-settled="true"]', { timeout: TIMEOUT });
  await page.screenshot({ path: join(ROOT, 'docs/screenshot.png'), fullPage: false });
  await noProblems(p);
  await p.context.close();
});

test('measured speed-up and GMAC/s of the worker\'s forwards are shown and consistent', async () => {
  const p = await openPage('?example=vgg16bn_conv3_2&t=2&order=dw-pw');
  const { page } = p;
  await page.waitForFunction(() => /GMAC/.test(document.querySelector('[data-testid="gmacs"]')?.textContent ?? ''), null, {
    timeout: TIMEOUT,
  });
  // The first forward on an input is untimed (computed term by term); the worker times both
  // layers once it is idle. Times from single runs are marked as first runs.
  const first = await text(page, 'measured');
  assert.doesNotMatch(first, /timing/, 'GMAC/s are shown only with both times');
  await page.waitForSelector('[data-testid="measured-speedup"][data-settled="true"]', { timeout: TIMEOUT });
  const settled = await text(page, 'measured');
  assert.doesNotMatch(settled, /first runs/);
  if (!/first runs/.test(first)) assert.equal(first, settled, 'a settled time changed again');
  const [, h, w] = (await page.locator('p.source', { hasText: 'Input' }).innerText()).match(/Input \d+×(\d+)×(\d+)/);
  const hw = Number(h) * Number(w);
  // The figures shown for the decoupled layer at T (DW→PW), against hand-computed MACs of
  // conv3_2 (256→256 3×3, stride 1) on the input shown: 256·256·9·H·W and 256·T·(9 + 256)·H·W.
  const check = async (t) => {
    const speedup = await text(page, 'measured-speedup');
    assert.match(speedup, /^\d+\.\d\d×$/);
    const [, origMs, decMs] = (await text(page, 'measured')).match(/original ([\d.]+) ms, decoupled ([\d.]+) ms/);
    // Same ratio as the two times shown (rounded to 0.1 ms there).
    const ratio = Number(origMs) / Number(decMs);
    assert.ok(Math.abs(Number(speedup.slice(0, -1)) - ratio) <= 0.05 * ratio + 0.01, `${speedup} vs ${origMs}/${decMs}`);
    assert.ok(ratio > 0.3 && ratio < 20, `measured speed-up ${ratio} is sane`);
    const [, og, dg] = (await text(page, 'gmacs')).match(/original ([\d.]+), decoupled ([\d.]+) GMAC\/s/);
    const wantOrig = (256 * 256 * 9 * hw) / Number(origMs) / 1e6;
    const wantDec = (256 * t * (9 + 256) * hw) / Number(decMs) / 1e6;
    assert.ok(Math.abs(Number(og) - wantOrig) <= 0.1 * wantOrig + 0.1, `original ${og} GMAC/s vs ${wantOrig}`);
    assert.ok(Math.abs(Number(dg) - wantDec) <= 0.1 * wantDec + 0.1, `decoupled ${dg} GMAC/s vs ${wantDec}`);
    assert.ok(Number(og) > 0.05 && Number(og) < 500 && Number(dg) > 0.05 && Number(dg) < 500, 'sane GMAC/s');
    return { ratio, og: Number(og), dg: Number(dg), origMs };
  };
  const { ratio, og, dg, origMs } = await check(2);
  // Another T: the maps come from the terms kept by the first forward; the worker times the
  // decoupled layer at T = 4 once idle (the original's time stays), then settles again.
  await page.getByTestId('t-slider').fill('4');
  await page.waitForSelector('canvas.plot-maps[data-t="4"]', { timeout: TIMEOUT });
  await page.waitForFunction(
    () =>
      document.querySelector('[data-testid="measured-speedup"]')?.dataset.settled === 'true' &&
      /decoupled [\d.]+ ms/.test(document.querySelector('[data-testid="measured"]')?.textContent ?? ''),
    null,
    { timeout: TIMEOUT },
  );
  const at4 = await check(4);
  assert.equal(at4.origMs, origMs, 'the original layer is timed once per input');
  figures.measured_speedup_t2 = ratio;
  figures.gmacs = { original: og, decoupled: dg };
  await noProblems(p);
  await p.context.close();
});

test('slider, keyboard and ordering change T and the weight error as the core says', async () => {
  const p = await openPage('?example=vgg16bn_conv3_2&t=3&order=dw-pw');
  const { page } = p;
  await expectWeightError(page, 'vgg16bn_conv3_2', 'dw-pw', 3);
  assert.equal(await text(page, 'speedup'), '2.90×');
  const before = await text(page, 'weight-error');
  // Every chart that shows T must change on screen: the marks of the layered charts (their
  // overlays) and the filters (redrawn whole).
  const pixels = () =>
    page.evaluate(() =>
      Object.fromEntries(
        [...document.querySelectorAll('.plot-stack')].map((s) => {
          const c = s.querySelector('canvas.plot');
          const shown = s.querySelector('canvas.plot-overlay') ?? c;
          return [c.dataset.chart, shown.toDataURL()];
        }),
      ),
    );
  const shotsBefore = await pixels();
  // Layered charts keep their base on a T change: only their marks overlay is redrawn.
  const baseDraws = () =>
    page.evaluate(() =>
      ['spectrum', 'error', 'cost', 'outerr'].map((c) => document.querySelector(`canvas.plot-${c}`).dataset.baseDraws),
    );
  const drawsBefore = await baseDraws();
  await page.getByTestId('t-slider').fill('5');
  assert.equal(await page.getByTestId('t-slider').getAttribute('aria-valuetext'), 'T = 5 of 9');
  await expectWeightError(page, 'vgg16bn_conv3_2', 'dw-pw', 5);
  assert.notEqual(await text(page, 'weight-error'), before);
  assert.equal(await text(page, 'speedup'), '1.74×');
  const shotsAfter = await pixels();
  assert.deepEqual(await baseDraws(), drawsBefore, 'a T change redrew the base of a layered chart');
  for (const chart of ['spectrum', 'error', 'cost', 'filters', 'outerr']) {
    assert.notEqual(shotsAfter[chart], shotsBefore[chart], `${chart} did not redraw for T = 5`);
  }
  // (The worker idle: the maps at T = 5 drawn and both layers timed at T = 5.)
  await page.waitForSelector('canvas.plot-maps[data-t="5"]', { timeout: TIMEOUT });
  await page.waitForSelector('[data-testid="measured-speedup"][data-settled="true"]', { timeout: TIMEOUT });
  // Redraw time of the charts after a T change (256→256 layer), median of 9 changes, each from
  // an idle worker (maps drawn, the new T timed); see measure.mjs.
  const changes = [];
  for (const v of [2, 4, 6, 3, 7, 5, 8, 4, 2]) {
    changes.push(await tChange(page, v));
    assert.equal(changes.at(-1).mapsT, String(v), 'the feature maps at the new T are drawn in the frame of the change');
    await page.waitForSelector('[data-testid="measured-speedup"][data-settled="true"]', { timeout: TIMEOUT });
  }
  const median = (k) => changes.map((c) => c[k]).sort((a, b) => a - b)[changes.length >> 1];
  figures.t_change_256_charts_ms = median('charts_ms');
  figures.t_change_256_to_next_frame_ms = median('frame_ms');
  figures.t_change_256_work_ms = median('work_ms');
  figures.t_change_256_work_ms_max = Math.max(...changes.map((c) => c.work_ms));
  await expectWeightError(page, 'vgg16bn_conv3_2', 'dw-pw', 2);
  // Rapid drag: every value from 1 to 9 and back to 4 without waiting; the page ends on T = 4
  // (numbers and feature maps), and the longest main-thread task meanwhile is recorded. The bound
  // is a freeze check, not a speed measure (0–88 ms recorded on this 2-core VM): running a forward
  // or drawing every chart per step on the main thread would break it.
  await page.evaluate(() => (window.__longTasks.length = 0));
  for (const v of [1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 7, 6, 5, 4]) await page.getByTestId('t-slider').fill(String(v));
  await expectWeightError(page, 'vgg16bn_conv3_2', 'dw-pw', 4);
  await page.waitForSelector('canvas.plot-maps[data-t="4"]', { timeout: TIMEOUT });
  figures.drag_longest_task_ms = await page.evaluate(() => Math.max(0, ...window.__longTasks));
  assert.ok(figures.drag_longest_task_ms < 300, `a ${figures.drag_longest_task_ms} ms task during the drag`);
  await page.getByTestId('t-slider').fill('2');
  await page.waitForSelector('canvas.plot-maps[data-t="2"]', { timeout: TIMEOUT });
  // Keyboard: ← lowers T, → raises it, o toggles the ordering.
  await page.locator('h1').click();
  await page.keyboard.press('ArrowLeft');
  await expectWeightError(page, 'vgg16bn_conv3_2', 'dw-pw', 1);
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await expectWeightError(page, 'vgg16bn_conv3_2', 'dw-pw', 3);
  await page.keyboard.press('o');
  await expectWeightError(page, 'vgg16bn_conv3_2', 'pw-dw', 3);
  assert.match(await text(page, 'order-toggle'), /PW→DW/);
  await page.getByTestId('order-toggle').click();
  await expectWeightError(page, 'vgg16bn_conv3_2', 'dw-pw', 3);
  // The threshold sets T.
  await page.getByTestId('threshold-input').fill('0.99');
  await page.getByTestId('threshold-input').dispatchEvent('change');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('tau') === '0.99');
  const tThreshold = Number((await state(page)).t);
  assert.ok(tThreshold >= 1 && tThreshold <= 9);
  await expectWeightError(page, 'vgg16bn_conv3_2', 'dw-pw', tThreshold);
  await noProblems(p);
  await p.context.close();
});

/** The picture of `canvas` at CSS-pixel resolution, as RGBA bytes in base64: at a device pixel
 * ratio of 2, each CSS pixel's four device pixels when they agree, alpha 0 when they do not. */
async function cssPicture(page, selector) {
  return page.evaluate((selector) => {
    const c = document.querySelector(selector);
    const r = Math.round(c.width / c.clientWidth);
    const [w, h] = [c.clientWidth, c.clientHeight];
    const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
    const out = new Uint8Array(w * h * 4);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const at = (dx, dy) => ((y * r + dy) * c.width + x * r + dx) * 4;
        const first = at(0, 0);
        let same = true;
        for (let dy = 0; dy < r; dy++) for (let dx = 0; dx < r; dx++) for (let k = 0; k < 3; k++) same &&= data[at(dx, dy) + k] === data[first + k];
        const o = (y * w + x) * 4;
        for (let k = 0; k < 3; k++) out[o + k] = data[first + k];
        out[o + 3] = same ? 255 : 0;
      }
    }
    let s = '';
    for (let i = 0; i < out.length; i += 0x8000) s += String.fromCharCode(...out.subarray(i, i + 0x8000));
    return { w, h, backing: [c.width, c.height], b64: btoa(s) };
  }, selector);
}

test('HiDPI: at a device pixel ratio of 2 the heat maps are the 1× picture at twice the resolution', async () => {
  const q = '?example=vgg16bn_conv3_2&t=3&order=dw-pw';
  const pictures = [];
  for (const scale of [1, 2]) {
    const p = await openPage(q, { width: 1400, height: 1000 }, scale);
    await p.page.waitForSelector('canvas.plot-maps[data-t="3"]', { timeout: TIMEOUT });
    await p.page.waitForSelector('[data-testid="measured-speedup"][data-settled="true"]', { timeout: TIMEOUT });
    pictures.push({ maps: await cssPicture(p.page, 'canvas.plot-maps'), filters: await cssPicture(p.page, 'canvas.plot-filters') });
    await noProblems(p);
    await p.context.close();
  }
  for (const chart of ['maps', 'filters']) {
    const [one, two] = pictures.map((p) => p[chart]);
    assert.deepEqual([two.w, two.h], [one.w, one.h], `${chart}: the same CSS size`);
    assert.deepEqual(two.backing, [2 * one.w, 2 * one.h], `${chart}: the backing store is CSS size × 2`);
    const [a, b] = [Buffer.from(one.b64, 'base64'), Buffer.from(two.b64, 'base64')];
    // Heat-map pixels (coloured: not a grey of text or background) inside a uniform 3 × 3
    // neighbourhood at 1×: at 2× the same colour on all four device pixels.
    const px = (x, y) => a.readUIntBE((y * one.w + x) * 4, 3);
    let compared = 0;
    let wrong = 0;
    for (let y = 1; y < one.h - 1; y++) {
      for (let x = 1; x < one.w - 1; x++) {
        const i = (y * one.w + x) * 4;
        if (a[i] === a[i + 1] && a[i + 1] === a[i + 2]) continue;
        const c = px(x, y);
        let uniform = true;
        for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) uniform &&= px(x + dx, y + dy) === c;
        if (!uniform) continue;
        compared++;
        if (b[i + 3] !== 255 || b.readUIntBE(i, 3) !== c) wrong++;
      }
    }
    figures[`hidpi_${chart}_pixels_compared`] = compared;
    assert.ok(compared > 20000, `${chart}: ${compared} heat-map pixels compared`);
    assert.equal(wrong, 0, `${chart}: ${wrong} of ${compared} heat-map pixels differ at 2×`);
  }
});

test('on a narrow screen a T change and its timing move nothing below the numbers', async () => {
  const p = await openPage('?example=vgg16bn_conv3_2&t=2&order=dw-pw', { width: 420, height: 900 });
  const { page } = p;
  await page.waitForSelector('[data-testid="measured-speedup"][data-settled="true"]', { timeout: TIMEOUT });
  for (const v of ['3', '5']) {
    // The maps card's top at every frame from the change until both layers are timed at the new T.
    await page.evaluate((v) => {
      const card = document.querySelector('[data-testid="feature-maps"]');
      window.__tops = [card.getBoundingClientRect().top + scrollY];
      const sample = () => {
        window.__tops.push(card.getBoundingClientRect().top + scrollY);
        if (!window.__stop) requestAnimationFrame(sample);
      };
      window.__stop = false;
      requestAnimationFrame(sample);
      const slider = document.querySelector('[data-testid="t-slider"]');
      slider.value = v;
      slider.dispatchEvent(new Event('input', { bubbles: true }));
    }, v);
    await page.waitForSelector(`canvas.plot-maps[data-t="${v}"]`, { timeout: TIMEOUT });
    await page.waitForSelector('[data-testid="measured-speedup"][data-settled="true"]', { timeout: TIMEOUT });
    const tops = await page.evaluate(() => ((window.__stop = true), window.__tops));
    assert.ok(tops.length > 3, `${tops.length} frames sampled`);
    assert.deepEqual([...new Set(tops)], [tops[0]], `the maps card moved during T = ${v}: ${[...new Set(tops)]}`);
  }
  await noProblems(p);
  await p.context.close();
});

test('changing the example and the image redraws with the right numbers', async () => {
  const p = await openPage('?example=vgg16bn_conv3_2&t=2');
  const { page } = p;
  await page.getByTestId('example-select').selectOption('vgg16bn_conv1_1');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('example') === 'vgg16bn_conv1_1');
  await expectWeightError(page, 'vgg16bn_conv1_1', 'dw-pw', 2);
  await page.getByTestId('order-toggle').click();
  await expectWeightError(page, 'vgg16bn_conv1_1', 'pw-dw', 2);
  assert.equal(await page.getByTestId('t-slider').getAttribute('max'), '3');
  // A built-in image: the maps are redrawn from its input (106×160 for the cat: 451×300 → 160×106).
  await page.waitForSelector('canvas.plot-maps[data-drawn="true"]', { timeout: TIMEOUT });
  const mapsBefore = await page.evaluate(() => document.querySelector('canvas.plot-maps').toDataURL());
  await page.getByTestId('image-select').selectOption('chelsea');
  await page.waitForFunction(() => /Input 3×106×160/.test(document.body.innerText), null, { timeout: TIMEOUT });
  await page.waitForFunction(
    (before) => document.querySelector('canvas.plot-maps').toDataURL() !== before,
    mapsBefore,
    { timeout: TIMEOUT },
  );
  // The user's own file.
  const afterBuiltin = await page.evaluate(() => document.querySelector('canvas.plot-maps').toDataURL());
  await page.getByTestId('image-file').setInputFiles(join(ROOT, 'assets/images/coffee_384x256.png'));
  await page.waitForFunction(
    (before) => document.querySelector('canvas.plot-maps').toDataURL() !== before,
    afterBuiltin,
    { timeout: TIMEOUT },
  );
  // The address follows the state 120 ms after it settles.
  await page.waitForFunction(() => new URL(location.href).searchParams.get('image') === 'upload', null, {
    timeout: TIMEOUT,
  });
  assert.equal((await state(page)).image, 'upload');
  await noProblems(p);
  await p.context.close();
});

test('the address reproduces the view; hostile values are clamped', async () => {
  const p = await openPage('?example=dlib_conv64_1&t=4&order=pw-dw&channel=5&out=7');
  const { page } = p;
  await expectWeightError(page, 'dlib_conv64_1', 'pw-dw', 4);
  await page.reload();
  await page.waitForSelector('body[data-ready="1"]', { timeout: TIMEOUT });
  const s = await state(page);
  assert.equal(s.example, 'dlib_conv64_1');
  assert.equal(s.t, '4');
  assert.equal(s.order, 'pw-dw');
  assert.equal(s.channel, '5');
  assert.equal(await page.getByTestId('channel-select').inputValue(), '5');
  await expectWeightError(page, 'dlib_conv64_1', 'pw-dw', 4);
  // The channel fields take whole numbers clamped to the layer's channels (64 here); anything
  // else puts the current channel back.
  const typeChannel = async (id, v) => {
    await page.getByTestId(id).fill(v);
    await page.getByTestId(id).dispatchEvent('change');
  };
  await typeChannel('channel-select', '9999');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('channel') === '63');
  assert.equal(await page.getByTestId('channel-select').inputValue(), '63');
  for (const bad of ['-3', '2.5', '']) {
    await typeChannel('channel-select', bad);
    assert.equal(await page.getByTestId('channel-select').inputValue(), '63', `after '${bad}'`);
  }
  await typeChannel('out-channel-select', '12');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('out') === '12');
  await typeChannel('channel-select', '5');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('channel') === '5');
  // "copy link" copies the current view's address at once (the address bar follows the state
  // once it settles), and that address reproduces the view.
  await p.context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await page.getByTestId('t-slider').fill('6');
  await page.getByTestId('copy-link').click();
  const copied = await page.evaluate(async () => {
    for (let i = 0; i < 50; i++) {
      const text = await navigator.clipboard.readText();
      if (text) return text;
      await new Promise((r) => setTimeout(r, 50));
    }
    return '';
  });
  const link = new URL(copied);
  assert.equal(link.searchParams.get('t'), '6');
  assert.equal(link.searchParams.get('example'), 'dlib_conv64_1');
  assert.ok(link.pathname.startsWith('/ndlab/'), link.pathname);
  await page.waitForFunction((href) => location.href === href, copied, { timeout: TIMEOUT });
  await page.goto(copied);
  await expectWeightError(page, 'dlib_conv64_1', 'pw-dw', 6);
  await noProblems(p);
  await p.context.close();

  const h = await openPage('?example=../../etc/passwd&t=99999&order=evil&tau=NaN&channel=-3&out=1e9&rule=<script>');
  const hs = await state(h.page);
  assert.equal(hs.example, 'vgg16bn_conv3_2');
  assert.equal(hs.t, '9');
  assert.equal(hs.order, 'dw-pw');
  assert.equal(hs.rule, 'mean');
  assert.equal(hs.channel, '0');
  assert.ok(Number(hs.out) <= 255);
  await expectWeightError(h.page, 'vgg16bn_conv3_2', 'dw-pw', 9);
  await noProblems(h);
  await h.context.close();
});

test('bundle size (gzip) is recorded', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const { gzipSync } = await import('node:zlib');
  // What one browser downloads: the app and ONE worker build (SIMD128 or relaxed-SIMD FMA, picked at
  // run time; tests/e2e/kernels.test.mjs), so the larger worker counts.
  let total = 0;
  let worker = 0;
  for (const f of readdirSync(join(ROOT, 'dist')).filter((f) => f.endsWith('.wasm'))) {
    const gz = gzipSync(readFileSync(join(ROOT, 'dist', f))).length;
    figures[`gzip_${f}`] = gz;
    if (f.startsWith('ndlab-worker')) worker = Math.max(worker, gz);
    else total += gz;
  }
  total += worker;
  figures.gzip_wasm_total = total;
  // The 1 MB of the first round held until the whole-network view landed (app 437 → 583 KB, worker
  // 451 → 666 KB gzip, 2026-12-07): 1.26 MB now. Known debt: the network engine belongs in a worker of
  // its own, loaded only by the network view. This bound keeps it from growing further unnoticed.
  // 2026-12-08: 1.34 MB after the comparison's speed work (worker +55 KB) and its pool (page +30 KB);
  // bound raised to 1.35 MB (BENCHMARKS.md, "Bundle size").
  assert.ok(total > 0 && total <= 1_350_000, `wasm gzip ${total} B ≤ 1.35 MB`);
  writeFileSync(join(ROOT, 'target/e2e-figures.json'), JSON.stringify(figures, null, 2));
});
