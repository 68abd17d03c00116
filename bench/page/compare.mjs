// The page benchmark of the equal-cost comparison (issue 21): the default 256→256 layer
// (VGG16-BN conv3_2, astronaut image, speed-up 4, the Pareto sweep) in headless Chromium, with the
// page's pool of comparison workers (one per core the browser reports, at most 4) and with one
// worker (navigator.hardwareConcurrency forced to 1, as before the pool), interleaved, REPEAT runs
// each. Per run: the page's own figures from the comparison's start (workers started, layer and
// input loaded in each): time to the table's seven rows and to the whole report (the Pareto plot is
// drawn from it), and the main-thread work of T changes made while the comparison computes.
// Prints JSON; medians and the pool/one-worker ratio in the same run.
//   bash scripts/bench-page.sh [--repeat N]      (builds dist/ first)
import { join } from 'node:path';
import { mkdirSync, writeFileSync } from 'node:fs';
import { serveAndLaunch } from '../../tests/e2e/server.mjs';
import { newWatchedPage } from '../../tests/e2e/page.mjs';
import { tChange } from '../../tests/e2e/measure.mjs';
import { ROOT, CHROMIUM, REPEAT, TIMEOUT, median } from './common.mjs';

async function once(browser, url, cores) {
  const { context, page, problems } = await newWatchedPage(browser, { longTasks: true });
  if (cores) {
    await page.addInitScript((n) => Object.defineProperty(Navigator.prototype, 'hardwareConcurrency', { get: () => n }), cores);
  }
  await page.goto(url);
  await page.waitForSelector('[data-testid="measured-speedup"][data-settled="true"]', { timeout: TIMEOUT });
  await page.getByTestId('relatives').scrollIntoViewIfNeeded();
  await page.waitForSelector('[data-testid="compare-status"][data-state="running"]', { timeout: TIMEOUT });
  const workers = Number(await page.getByTestId('compare-status').getAttribute('data-workers'));
  // T changes at the top of the page while the pool computes.
  await page.locator('h1').scrollIntoViewIfNeeded();
  const changes = [];
  for (const t of [3, 5, 7, 4, 6, 2]) {
    if ((await page.getByTestId('compare-status').getAttribute('data-state')) !== 'running') break;
    changes.push(await tChange(page, t));
    await page.waitForTimeout(300);
  }
  await page.waitForSelector('[data-testid="compare-status"][data-state="done"]', { timeout: TIMEOUT });
  await page.waitForSelector('[data-testid="pareto-plot"] canvas[data-drawn="true"]', { timeout: TIMEOUT });
  const status = page.getByTestId('compare-status');
  const rowsMs = Number(await status.getAttribute('data-rows-ms'));
  const doneMs = Number(await status.getAttribute('data-done-ms'));
  const rows = await page.locator('[data-testid="compare-table"] tbody tr').count();
  const longest = await page.evaluate(() => Math.max(0, ...window.__longTasks));
  await context.close();
  if (problems.length) throw new Error(`page problems: ${JSON.stringify(problems)}`);
  if (rows !== 7) throw new Error(`${rows} rows`);
  return {
    workers,
    rows_s: rowsMs / 1e3,
    pareto_s: doneMs / 1e3,
    t_change_work_ms: changes.map((c) => Math.round(c.work_ms * 10) / 10),
    t_change_frame_ms: changes.map((c) => Math.round(c.frame_ms * 10) / 10),
    longest_task_ms: longest,
  };
}

const { server, browser } = await serveAndLaunch(ROOT, CHROMIUM);
const hc = await (async () => {
  const p = await browser.newPage();
  const n = await p.evaluate(() => navigator.hardwareConcurrency);
  await p.close();
  return n;
})();
const runs = { pool: [], one: [] };
try {
  for (let i = 0; i < REPEAT; i++) {
    runs.pool.push(await once(browser, server.url, null));
    runs.one.push(await once(browser, server.url, 1));
    process.stderr.write(`run ${i + 1}/${REPEAT}: pool ${JSON.stringify(runs.pool.at(-1))} one ${JSON.stringify(runs.one.at(-1))}\n`);
  }
} finally {
  await browser.close();
  await server.close();
}
const summary = (rs) => ({
  workers: rs[0].workers,
  rows_s: median(rs.map((r) => r.rows_s)),
  pareto_s: median(rs.map((r) => r.pareto_s)),
  t_change_work_ms_median: median(rs.flatMap((r) => r.t_change_work_ms)),
  t_change_work_ms_max: Math.max(...rs.flatMap((r) => r.t_change_work_ms)),
  t_change_frame_ms_median: median(rs.flatMap((r) => r.t_change_frame_ms)),
  longest_task_ms_max: Math.max(...rs.map((r) => r.longest_task_ms)),
});
const result = {
  layer: 'vgg16bn_conv3_2 (256→256, 3×3), astronaut, speed-up 4, Pareto sweep',
  hardware_concurrency: hc,
  repeat: REPEAT,
  pool: summary(runs.pool),
  one_worker: summary(runs.one),
  runs,
};
result.pool_speedup_rows = result.one_worker.rows_s / result.pool.rows_s;
result.pool_speedup_pareto = result.one_worker.pareto_s / result.pool.pareto_s;
mkdirSync(join(ROOT, 'target/bench-page'), { recursive: true });
writeFileSync(join(ROOT, 'target/bench-page/compare.json'), JSON.stringify(result, null, 2));
console.log(JSON.stringify(result, null, 2));
