import { chromium } from 'playwright-core';
import { serve } from '/work/wt-web/tests/e2e/server.mjs';
const server = await serve('/work/wt-web/dist', '/ndlab/');
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await browser.newPage();
page.on('console', (m) => console.log('console', m.type(), m.text()));
page.on('worker', (w) => w.on('console', (m) => console.log('worker', m.text())));
await page.goto(server.url);
await page.waitForSelector('body[data-ready="1"]', { timeout: 120000 });
await page.setInputFiles('[data-testid="file-input"]', '/work/wt-web/tests/corpus/good.npz');
await page.waitForTimeout(8000);
const dump = async () => console.log(await page.evaluate(() => ({
  title: document.querySelector('.layer-title')?.textContent,
  err: document.querySelector('[data-testid="load-error"]')?.textContent,
  prog: document.querySelector('[data-testid="progress"]')?.textContent,
  drawn: [...document.querySelectorAll('canvas.plot')].map((c) => c.dataset.chart + ':' + c.dataset.drawn),
  file: document.querySelector('[data-testid="file-name"]')?.textContent,
  opts: [...document.querySelectorAll('[data-testid="layer-select"] option')].map((o) => o.value + '|' + o.disabled),
})));
await dump();
await page.screenshot({ path: '/tmp/dbg.png' });
await browser.close(); await server.close();
