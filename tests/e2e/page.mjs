// The one way the end-to-end tests open a page: a fresh browser context (viewport, device pixel
// ratio, optional long-task recording into `window.__longTasks`) and a page whose console errors,
// page errors and Web Worker console errors are collected in `problems` (each test asserts it is
// empty at the end). Tests add their own listeners (requests, workers, dialogs) to what it returns.

/**
 * @param {import('playwright-core').Browser} browser
 * @param {{ viewport?: {width: number, height: number}, deviceScaleFactor?: number, longTasks?: boolean,
 *           acceptDownloads?: boolean, init?: Function[] }} [opts]   init: scripts run before the page's own
 */
export async function newWatchedPage(browser, opts = {}) {
  const { viewport = { width: 1400, height: 1000 }, deviceScaleFactor = 1, longTasks = false, acceptDownloads = false, init = [] } = opts;
  const context = await browser.newContext({ viewport, deviceScaleFactor, acceptDownloads });
  for (const script of init) await context.addInitScript(script);
  if (longTasks) {
    await context.addInitScript(() => {
      window.__longTasks = [];
      new PerformanceObserver((list) => list.getEntries().forEach((e) => window.__longTasks.push(e.duration))).observe({
        type: 'longtask',
        buffered: true,
      });
    });
  }
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('worker', (w) => {
    w.on('console', (m) => {
      if (m.type() === 'error') problems.push(`worker console error: ${m.text()}`);
    });
  });
  return { context, page, problems };
}
