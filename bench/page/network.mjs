// The page benchmark of the whole-network view (issue 19's speed items): the built-in Fashion-MNIST CNN
// on the page's test subset in headless Chromium, with the page's pool of workers
// (navigator.hardwareConcurrency). Measures, REPEAT times on fresh pages:
//  - first_accuracy_s: navigation to ?view=network → the first accuracy figure (network opened, data
//    loaded, decoupled, evaluated);
//  - point_s: a new choice (one T for all: 2, 5, 3, 6) → its accuracy (one accuracy point);
//  - edit_conv2_s / edit_conv6_s: one layer's T edited in the table (conv2, then conv6) → the accuracy:
//    the workers keep the activations before the first changed layer, so the last layer's edit is cheaper;
//  - curve: time to 10 points of the accuracy-against-MACs curve, and the main thread's longest task
//    while it computes (the page must not block: ≤ 50 ms).
// Prints JSON with medians (also target/bench-page/network.json).
//   bash scripts/bench-page.sh --network [--repeat N]
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { serveAndLaunch } from '../../tests/e2e/server.mjs';
import { newWatchedPage } from '../../tests/e2e/page.mjs';
import { ROOT, CHROMIUM, REPEAT, TIMEOUT, median } from './common.mjs';

const ACC = '[data-testid="network-accuracy"]';
const FIGURE = /^\d+\.\d % \(original \d+\.\d %, \d+ test items\)$/;

/** Runs `act`, then waits until the accuracy line has left `before` and holds a figure; seconds. */
async function timed(page, act) {
  const before = await page.textContent(ACC);
  const t0 = Date.now();
  await act();
  await page.waitForFunction(
    ([s, b, re]) => {
      const t = document.querySelector(s)?.textContent ?? '';
      return t !== b && new RegExp(re).test(t);
    },
    [ACC, before, FIGURE.source],
    { timeout: TIMEOUT },
  );
  return (Date.now() - t0) / 1000;
}

async function editLayer(page, layer, t) {
  const input = page.locator(`[data-testid="network-table"] tbody tr[data-layer="${layer}"] [data-testid="layer-t"]`);
  await input.fill(String(t));
  await input.dispatchEvent('change');
}

async function once(browser, url) {
  const { context, page, problems } = await newWatchedPage(browser, { longTasks: true });
  const t0 = Date.now();
  await page.goto(url + '?view=network&net=uniform&net_t=4&net_order=pw-dw&net_aware=0');
  await page.waitForFunction(([s, re]) => new RegExp(re).test(document.querySelector(s)?.textContent ?? ''), [ACC, FIGURE.source], {
    timeout: TIMEOUT,
  });
  const first = (Date.now() - t0) / 1000;
  const workers = await page.evaluate(() => navigator.hardwareConcurrency);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="network-table"] tbody tr').length === 6, null, {
    timeout: TIMEOUT,
  });
  // Let the time measurement of the first choice finish (it runs on worker 0 after the accuracy).
  await page.waitForFunction(() => /measured in this browser/.test(document.querySelector('[data-testid="network-speedup"]').textContent), null, {
    timeout: TIMEOUT,
  });
  const points = [];
  for (const t of [2, 5, 3, 6]) {
    points.push(
      await timed(page, async () => {
        await page.fill('[data-testid="strategy-param"]', String(t));
        await page.dispatchEvent('[data-testid="strategy-param"]', 'change');
      }),
    );
  }
  const editFirst = await timed(page, () => editLayer(page, 1, 1));
  const editLast = await timed(page, () => editLayer(page, 5, 1));
  await page.evaluate(() => (window.__longTasks.length = 0));
  const c0 = Date.now();
  await page.click('[data-testid="curve-run"]');
  await page.waitForFunction(() => Number(document.querySelector('canvas.plot-accuracy')?.dataset.points ?? 0) >= 10, null, {
    timeout: TIMEOUT,
  });
  const curve10 = (Date.now() - c0) / 1000;
  const longest = await page.evaluate(() => Math.max(0, ...window.__longTasks));
  const over50 = await page.evaluate(() => window.__longTasks.filter((d) => d > 50).length);
  await page.click('[data-testid="curve-cancel"]');
  await context.close();
  if (problems.length) throw new Error(`page problems: ${JSON.stringify(problems)}`);
  return { workers, first_accuracy_s: first, point_s: points, edit_conv2_s: editFirst, edit_conv6_s: editLast, curve_10_points_s: curve10, curve_longest_task_ms: longest, curve_tasks_over_50ms: over50 };
}

const { server, browser } = await serveAndLaunch(ROOT, CHROMIUM);
const runs = [];
try {
  for (let i = 0; i < REPEAT; i++) {
    runs.push(await once(browser, server.url));
    process.stderr.write(`run ${i + 1}/${REPEAT}: ${JSON.stringify(runs.at(-1))}\n`);
  }
} finally {
  await browser.close();
  await server.close();
}
const result = {
  network: 'built-in Fashion-MNIST CNN (6 conv layers), the page\'s test subset',
  workers: runs[0].workers,
  repeat: REPEAT,
  first_accuracy_s: median(runs.map((r) => r.first_accuracy_s)),
  point_s: median(runs.flatMap((r) => r.point_s)),
  point_s_max: Math.max(...runs.flatMap((r) => r.point_s)),
  edit_conv2_s: median(runs.map((r) => r.edit_conv2_s)),
  edit_conv6_s: median(runs.map((r) => r.edit_conv6_s)),
  curve_10_points_s: median(runs.map((r) => r.curve_10_points_s)),
  curve_longest_task_ms: Math.max(...runs.map((r) => r.curve_longest_task_ms)),
  curve_tasks_over_50ms: runs.reduce((a, r) => a + r.curve_tasks_over_50ms, 0),
  runs,
};
mkdirSync(join(ROOT, 'target/bench-page'), { recursive: true });
writeFileSync(join(ROOT, 'target/bench-page/network.json'), JSON.stringify(result, null, 2));
console.log(JSON.stringify(result, null, 2));
