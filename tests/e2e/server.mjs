// A tiny static file server for the end-to-end tests: serves `dist/` under a sub-path
// (`/ndlab/`, as GitHub Pages serves a project site) on 127.0.0.1 and a free port.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.md': 'text/markdown; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** Serves `root` under `prefix`; resolves to { url, close }. The server runs in a child process
 * (this file run as a script): in the test's own process it would share the event loop with
 * Playwright's driver, which handles a stream of browser events while a page loads, and its
 * answers then came 100–500 ms late (measured), which a real local server does not do. */
export async function serve(root, prefix = '/ndlab/') {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), resolve(root), prefix], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise((ok, fail) => {
    child.once('error', fail);
    child.once('exit', (code) => fail(new Error(`the test server exited (${code})`)));
    child.stdout.once('data', (d) => ok(Number(String(d).trim())));
  });
  child.removeAllListeners('exit');
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    close: () => new Promise((ok) => (child.exitCode !== null ? ok() : (child.once('exit', () => ok()), child.kill()))),
  };
}

/** The server itself: serves `base` under `prefix` on 127.0.0.1 and a free port (printed). */
function listen(base, prefix) {
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      if (!path.startsWith(prefix)) {
        res.writeHead(404).end('not under ' + prefix);
        return;
      }
      let file = normalize(join(base, path.slice(prefix.length)));
      if (!file.startsWith(base)) {
        res.writeHead(403).end();
        return;
      }
      if ((await stat(file).catch(() => null))?.isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) listen(process.argv[2], process.argv[3]);

/** The suites' set-up: serves `root`/dist under `/ndlab/` and launches headless Chromium (no sandbox, no
 * GPU, no background traffic). Resolves to { server, browser }. */
export async function serveAndLaunch(root, executablePath) {
  if (!existsSync(join(root, 'dist/index.html'))) {
    throw new Error('build first: trunk build --release --public-url /ndlab/');
  }
  const server = await serve(join(root, 'dist'), '/ndlab/');
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return { server, browser };
}
