// What the page benchmarks (compare.mjs, network.mjs) share: the repository root, Chromium's
// path, command-line options, the time-out and medians.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** `--name VALUE` from the command line, or `dflt`. */
export const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
export const REPEAT = Number(arg('--repeat', '3'));
export const TIMEOUT = Number(process.env.BENCH_TIMEOUT ?? 600_000);
/** The median of `xs` (null when empty). */
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : null;
};
