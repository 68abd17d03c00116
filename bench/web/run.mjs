// Serves the browser benchmark on 127.0.0.1 and runs it in headless Chromium (playwright-core);
// prints the JSON result on stdout. No COOP/COEP headers: the page is not cross-origin isolated,
// so the peers get no SharedArrayBuffer and run on one thread, as on an ordinary site.
// Usage (after the build steps of scripts/bench-browser.sh):
//   node bench/web/run.mjs [--repeat N] [--out FILE] [--only regular,dw-pw:2,decouple,peak,…]
// (`--only peak`: the machine's peaks alone; they are measured in every run.)
import { createServer } from 'node:http';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
// URL prefix → directory served (nothing else is reachable).
const MOUNTS = [
  ['/pkg/', join(ROOT, 'target/bench-web/pkg')],
  ['/pkg-fma/', join(ROOT, 'target/bench-web/pkg-fma')],
  ['/data/', join(ROOT, 'target/bench-web/data')],
  ['/ort/', join(ROOT, 'node_modules/onnxruntime-web/dist')],
  // TensorFlow.js: the UMD bundles and the backend's wasm binaries (setWasmPaths('/tfjs-wasm/')).
  ['/tfjs-core/', join(ROOT, 'node_modules/@tensorflow/tfjs-core/dist')],
  ['/tfjs-wasm/', join(ROOT, 'node_modules/@tensorflow/tfjs-backend-wasm/dist')],
  ['/assets/', join(ROOT, 'assets')],
  ['/', join(ROOT, 'bench/web')],
];
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

function serve() {
  const server = createServer(async (req, res) => {
    try {
      let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      if (path === '/') path = '/index.html';
      const [prefix, dir] = MOUNTS.find(([p]) => path.startsWith(p));
      const file = normalize(join(dir, path.slice(prefix.length)));
      if (!file.startsWith(dir) || !(await stat(file)).isFile()) throw new Error('no');
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(await readFile(file));
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

const server = await serve();
const only = arg('--only') ? `&only=${encodeURIComponent(arg('--only'))}` : '';
const url = `http://127.0.0.1:${server.address().port}/?repeat=${arg('--repeat', '7')}${only}`;
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
let code = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e}\n`));
  await page.goto(url);
  await page.waitForFunction(() => window.benchResult || window.benchError, null, { timeout: 900_000, polling: 500 });
  const { result, error } = await page.evaluate(() => ({ result: window.benchResult, error: window.benchError }));
  if (error) throw new Error(error);
  const json = JSON.stringify(result, null, 2);
  console.log(json);
  const out = arg('--out');
  if (out) await writeFile(out, json + '\n');
} catch (e) {
  console.error(`benchmark failed: ${e.message ?? e}`);
  code = 1;
} finally {
  await browser.close();
  server.close();
}
process.exit(code);
