// The browser benchmark page: ndlab (wasm, SIMD128, one thread; and its relaxed-SIMD / FMA build
// from pkg-fma/ where the browser validates relaxed SIMD) against two peers, onnxruntime-web (wasm
// backend, SIMD, numThreads = 1) and TensorFlow.js (tfjs-backend-wasm: XNNPACK, SIMD, one thread),
// on the same layer (VGG16-BN conv3_2, 256→256 3×3, padding 1), the same 1×256×56×56 input and the
// same graphs (regular; DW→PW and PW→DW at T = 1, 2, 4; numpy's factors), plus ndlab's decoupling
// time for the 256 and 512 layers and this machine's wasm arithmetic peaks (SIMD128 mul + add,
// relaxed-SIMD FMA). Runs are interleaved (ndlab, ort, ndlab FMA, tfjs, …) so that load changes on
// a shared machine hit all alike; the median is reported. Every output is checked against numpy's.
// Sets window.benchResult (or window.benchError).
import init, { Bench, Layer, kernels, peak_macs, peak_simd128 } from './pkg/bench_web.js';
import * as ort from './ort/ort.wasm.min.mjs';

const PARAMS = new URLSearchParams(location.search);
const REPEAT = Number(PARAMS.get('repeat') ?? 7);
// Optional subset: graphs (e.g. `only=regular,dw-pw:2`; decoupling is then not timed) and/or
// `decouple` (the decouplings; `only=decouple` times them alone). The peaks are always measured.
const ONLY = PARAMS.get('only')?.split(',') ?? null;
const TS = [1, 2, 4];
const [N, C, H, W, K2] = [256, 256, 56, 56, 9];
// The smallest module using f32x4.relaxed_madd: validates only where relaxed SIMD is supported.
const RELAXED_PROBE = (() => {
  // () -> v128: v128.const 0 ×3; f32x4.relaxed_madd (0xfd 0x105); end.
  const zero = [0xfd, 0x0c, ...new Array(16).fill(0)];
  const body = [0x00, ...zero, ...zero, ...zero, 0xfd, 0x85, 0x02, 0x0b];
  const code = [0x01, body.length, ...body];
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1, 0x7b, 3, 2, 1, 0, 10, code.length, ...code]);
})();
const log = (s) => { document.getElementById('log').textContent += s + '\n'; };

async function bytes(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** The f32 payload of a little-endian C-order .npy file. */
function npyF32(b) {
  const hlen = b[8] | (b[9] << 8);
  const off = 10 + hlen;
  return new Float32Array(b.buffer.slice(b.byteOffset + off, b.byteOffset + b.byteLength));
}

/** The shape in a .npy file's header. */
function npyShape(b) {
  const hlen = b[8] | (b[9] << 8);
  const header = new TextDecoder().decode(b.subarray(10, 10 + hlen));
  const m = header.match(/'shape':\s*\(([^)]*)\)/);
  return m[1].split(',').map((v) => v.trim()).filter((v) => v !== '').map(Number);
}

/** A classic script (the peers' UMD bundles), loaded once. */
function loadScript(src) {
  return new Promise((ok, fail) => {
    const s = document.createElement('script');
    s.src = src;
    s.onload = ok;
    s.onerror = () => fail(new Error(`${src}: failed to load`));
    document.head.append(s);
  });
}

/** An NHWC (1 × h × w × c) array as CHW. */
function nhwcToChw(a, h, w, c) {
  const out = new Float32Array(a.length);
  for (let p = 0; p < h * w; p++) {
    for (let ch = 0; ch < c; ch++) out[ch * h * w + p] = a[p * c + ch];
  }
  return out;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** max |a − b| / max |b|. */
function maxRelDiff(a, b) {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return a.length === b.length ? d / m : Infinity;
}

function macs(graph, t) {
  const hw = H * W;
  if (graph === 'regular') return N * C * K2 * hw;
  if (graph === 'dw-pw') return C * t * K2 * hw + C * t * N * hw;
  return N * t * C * hw + N * t * K2 * hw;
}

function theoretical(graph, t) {
  return graph === 'regular' ? 1 : macs('regular', 1) / macs(graph, t);
}

/** Times the functions `fs` interleaved, `repeat` times after two warm-ups each; for each,
 * { med, min, runs } in ms (the minimum is the figure least disturbed by other load on the machine).
 * A function may return a clean-up function, called after its time is taken (not timed). */
async function interleaved(fs, repeat = REPEAT, warmups = 2) {
  const ts = fs.map(() => []);
  for (let i = 0; i < repeat + warmups; i++) {
    for (const [j, f] of fs.entries()) {
      const t0 = performance.now();
      const done = await f();
      if (i >= warmups) ts[j].push(performance.now() - t0);
      if (typeof done === 'function') done();
    }
  }
  return ts.map((t) => ({ med: median(t), min: Math.min(...t), runs: t }));
}

/** This machine's wasm arithmetic peaks, GMAC/s: 10 independent f32x4 multiply-add chains
 * (`peak_simd128`: f32x4.mul + f32x4.add, from the SIMD128 module; `peak_fma`: f32x4.relaxed_madd,
 * from the relaxed-SIMD module), each in two forms: `registers` (acc = mac(acc, m, c): no memory
 * traffic, each step waits for the chain's previous one) and `l1` (acc = mac(v, m, acc) with v
 * loaded from a 3 KB buffer: the GEMM's pattern, only the add waits for the accumulator). Each call
 * runs ≈ 40 ms; the calls alternate, `rounds` each after warm-ups (tier-up to TurboFan); a kind's
 * peak is its best call over both forms. */
async function measurePeaks(fma, rounds) {
  const kinds = [['simd128', peak_simd128]];
  if (fma) kinds.push(['fma', fma.peak_fma]);
  const forms = [[0, 'registers'], [1, 'l1']];
  const [m, c] = [0.9999, 1e-4];
  const loops = [];
  for (const [kind, f] of kinds) {
    for (const [form, formName] of forms) {
      // Warm-up for 150 ms of short calls: tier-up to TurboFan (compiled in the background).
      for (const t0 = performance.now(); performance.now() - t0 < 150;) f(form, 2_000, m, c);
      // Calibration: double the count until a call takes ≥ 10 ms (performance.now() is coarse
      // on a page that is not cross-origin isolated), then scale to ≈ 40 ms.
      let [probe, took] = [10_000, 0];
      for (;;) {
        const t0 = performance.now();
        f(form, probe, m, c);
        took = performance.now() - t0;
        if (took >= 10 || probe >= 1 << 28) break;
        probe *= 2;
      }
      // Twice more, the fastest kept (a call may have run in Liftoff, or been preempted).
      for (let i = 0; i < 2; i++) {
        const t0 = performance.now();
        f(form, probe, m, c);
        took = Math.min(took, performance.now() - t0);
      }
      const iters = Math.max(1_000, Math.round((probe * 40) / Math.max(0.5, took)));
      loops.push({ kind, form, formName, iters, macs: peak_macs(form, iters), run: () => { f(form, iters, m, c); } });
    }
  }
  const res = await interleaved(loops.map((l) => l.run), rounds, 1);
  const out = {};
  for (const [j, l] of loops.entries()) {
    out[l.kind] ??= { gmacs: 0 };
    const g = { gmacs: l.macs / res[j].min / 1e6, median_gmacs: l.macs / res[j].med / 1e6, iters: l.iters, runs_ms: res[j].runs.map((v) => +v.toFixed(2)) };
    out[l.kind][l.formName] = g;
    if (g.gmacs > out[l.kind].gmacs) Object.assign(out[l.kind], { gmacs: g.gmacs, form: l.formName });
  }
  // A short call (≈ 15 ms) of each kind's best form, for the forwards' interleaved rounds.
  for (const [kind, f] of kinds) {
    const l = loops.find((x) => x.kind === kind && x.formName === out[kind].form);
    const iters = Math.max(1_000, Math.round((l.iters * 15) / 40));
    Object.defineProperty(out[kind], 'short', { enumerable: false, value: { macs: peak_macs(l.form, iters), run: () => { f(l.form, iters, m, c); } } });
  }
  return out;
}

/** TensorFlow.js with the wasm backend (XNNPACK), SIMD on, one thread (the page is not
 * cross-origin isolated, so no SharedArrayBuffer; setThreadsCount(1) as well); its wasm binaries
 * served from node_modules (setWasmPaths). Returns tf and what it runs with. */
async function loadTfjs() {
  await loadScript('./tfjs-core/tf-core.min.js');
  await loadScript('./tfjs-wasm/tf-backend-wasm.min.js');
  const tf = window.tf;
  tf.wasm.setWasmPaths(new URL('./tfjs-wasm/', location.href).href);
  tf.wasm.setThreadsCount(1);
  if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: the wasm backend did not initialise');
  await tf.ready();
  const binaries = performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.endsWith('.wasm') && n.includes('/tfjs-wasm/')).map((n) => n.split('/').pop());
  const info = {
    version: tf.version_core,
    backend: tf.getBackend(),
    wasm_backend: tf.wasm.version_wasm,
    simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'),
    multithread_support: await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'),
    cross_origin_isolated: self.crossOriginIsolated === true,
    threads: tf.wasm.getThreadsCount(),
    binary: binaries,
  };
  if (info.threads !== 1 || binaries.some((n) => n.includes('threaded')) || !info.simd) {
    throw new Error(`tfjs must run wasm SIMD on one thread: ${JSON.stringify(info)}`);
  }
  return { tf, info };
}

/** The tfjs formulations of a graph (NHWC; weights already in tfjs layouts, `w`), each a function
 * returning the output tensor (inside tf.tidy: intermediates freed). Several where tfjs has no
 * single op for the graph; the fastest is timed (see `tfjsGraph`).
 * - regular: tf.conv2d (3 × 3, 'same').
 * - dw-pw: "multiplier" = tf.depthwiseConv2d with channel multiplier T (output channel c·T + i,
 *   as ONNX's group-C conv), then a 1 × 1 tf.conv2d; "replicate" (T > 1) = each input channel
 *   repeated T times (tf.tile on a C × 1 view: one copy of C·T planes), a depthwise conv of
 *   multiplier 1, then the 1 × 1 conv.
 * - pw-dw: "reshape-sum" = 1 × 1 tf.conv2d C → N·T (channel n·T + i), tf.depthwiseConv2d
 *   (multiplier 1) over the N·T channels, then the grouped sum N·T → N as a reshape to
 *   [1, H, W, N, T] (free) and tf.sum over the last axis (T = 1: no sum); "split-addN" (T > 1) =
 *   for each term i a 1 × 1 conv C → N (rows n·T + i of the pointwise), a depthwise conv over its
 *   N channels, and tf.addN of the T results (same MACs, no reshape).
 */
function tfjsFormulations(tf, graph, t, w) {
  const same = (a, f) => tf.depthwiseConv2d(a, f, 1, 'same');
  const pw = (a, f) => tf.conv2d(a, f, 1, 'valid');
  if (graph === 'regular') return { conv2d: (x) => tf.tidy(() => tf.conv2d(x, w.k, 1, 'same')) };
  if (graph === 'dw-pw') {
    const f = { multiplier: (x) => tf.tidy(() => pw(same(x, w.dw), w.pw)) };
    if (t > 1) {
      f.replicate = (x) => tf.tidy(() => {
        const rep = tf.reshape(tf.tile(tf.reshape(x, [1, H, W, C, 1]), [1, 1, 1, 1, t]), [1, H, W, C * t]);
        return pw(same(rep, w.dwRep), w.pw);
      });
    }
    return f;
  }
  const f = {
    'reshape-sum': (x) => tf.tidy(() => {
      const mid = same(pw(x, w.pw), w.dw);
      return t === 1 ? mid : tf.sum(tf.reshape(mid, [1, H, W, N, t]), 4);
    }),
  };
  if (t > 1) f['split-addN'] = (x) => tf.tidy(() => tf.addN(w.terms.map(([p, d]) => same(pw(x, p), d))));
  return f;
}

/** The tfjs weights of a graph from data/tfjs/ (tensors kept for the whole run). */
async function tfjsWeights(tf, graph, t) {
  const load = async (name) => {
    const b = await bytes(`data/tfjs/${name}.npy`);
    return tf.tensor(npyF32(b), npyShape(b));
  };
  if (graph === 'regular') return { k: await load('regular_k') };
  const w = { dw: await load(`${graph}_T${t}_dw`), pw: await load(`${graph}_T${t}_pw`) };
  if (graph === 'dw-pw' && t > 1) w.dwRep = tf.reshape(w.dw, [3, 3, C * t, 1]);
  if (graph === 'pw-dw' && t > 1) {
    // Term i: pointwise columns n·T + i, depthwise channels n·T + i.
    const pwAll = tf.reshape(w.pw, [1, 1, C, N, t]);
    const dwAll = tf.reshape(w.dw, [3, 3, N, t, 1]);
    w.terms = Array.from({ length: t }, (_, i) => [
      tf.reshape(tf.slice(pwAll, [0, 0, 0, 0, i], [1, 1, C, N, 1]), [1, 1, C, N]),
      tf.reshape(tf.slice(dwAll, [0, 0, 0, i, 0], [3, 3, N, 1, 1]), [3, 3, N, 1]),
    ]);
    pwAll.dispose();
    dwAll.dispose();
  }
  return w;
}

/** Largest max |a − b| / max |b| at which two outputs agree (numpy's float64 result rounded to
 * f32 is the reference; the runtimes' f32 sums differ from it by a few ulps). */
const TOL = 1e-4;

/** Checks a tfjs output (a tensor, NHWC 1 × H × W × N) against numpy's (CHW, `ref`); returns the
 * max relative difference, throws on a wrong shape or a difference above TOL. Negative control:
 * the same data read as CHW without the transposition must disagree, or the check could not see
 * a layout error (a constant or all-zero output would pass it). */
function checkTfjs(y, ref, what) {
  if (y.shape.join('×') !== `1×${H}×${W}×${N}`) throw new Error(`${what}: tfjs output shape ${y.shape.join('×')}, expected 1×${H}×${W}×${N}`);
  const data = y.dataSync();
  const d = maxRelDiff(nhwcToChw(data, H, W, N), ref);
  if (!(d <= TOL)) throw new Error(`${what}: tfjs output differs from numpy's (max rel diff ${d} > ${TOL})`);
  const raw = maxRelDiff(data, ref);
  if (!(raw > TOL)) throw new Error(`${what}: the check is vacuous (the NHWC data read as CHW agree too: ${raw})`);
  return d;
}

/** Picks the fastest tfjs formulation of a graph (interleaved, 3 timed runs each after a warm-up,
 * by minimum) and returns { name, fn, calibration_ms, diffs } after checking every formulation's
 * output against numpy's (`ref`, CHW; throws on a mismatch): diffs = max rel diff per formulation. */
async function tfjsGraph(tf, graph, t, w, x, ref) {
  const forms = Object.entries(tfjsFormulations(tf, graph, t, w));
  const diffs = {};
  for (const [name, f] of forms) {
    const y = f(x);
    diffs[name] = checkTfjs(y, ref, `${graph === 'regular' ? graph : `${graph} T=${t}`}, tfjs ${name}`);
    y.dispose();
  }
  const run = (f) => () => { const y = f(x); return () => y.dispose(); };
  const calibration = {};
  let best = forms[0];
  if (forms.length > 1) {
    const res = await interleaved(forms.map(([, f]) => run(f)), 3, 1);
    forms.forEach(([name], j) => { calibration[name] = +res[j].min.toFixed(2); });
    best = forms[res.reduce((b, r, j) => (r.min < res[b].min ? j : b), 0)];
  }
  return { name: best[0], fn: best[1], calibration_ms: calibration, diffs };
}

/** The relaxed-SIMD (FMA) build of the ndlab module, or null where relaxed SIMD does not validate
 * or the build is absent. */
async function loadFma() {
  if (!WebAssembly.validate(RELAXED_PROBE)) return null;
  const r = await fetch('./pkg-fma/bench_web.js', { method: 'HEAD' });
  if (!r.ok) return null;
  const mod = await import('./pkg-fma/bench_web.js');
  await mod.default();
  return mod;
}

async function main() {
  await init();
  const fma = await loadFma();
  const { tf, info: tfjsInfo } = await loadTfjs();
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.simd = true;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
  const layerNpy = await bytes('assets/layers/craft_vgg16bn_conv3_2_256x256x3x3.npy');
  const xNpy = await bytes('data/x.npy');
  const numpy = await (await fetch('data/numpy.json')).json();
  const x = npyF32(xNpy);
  const bench = new Bench(layerNpy, xNpy);
  const benchFma = fma ? new fma.Bench(layerNpy, xNpy) : null;
  const feeds = { x: new ort.Tensor('float32', x, [1, C, H, W]) };
  const xNhwcNpy = await bytes('data/tfjs/x.npy');
  const xTf = tf.tensor(npyF32(xNhwcNpy), npyShape(xNhwcNpy));
  const result = {
    onnxruntime_web: ort.env.versions?.web ?? ort.env.versions?.common ?? 'unknown',
    tfjs: tfjsInfo,
    user_agent: navigator.userAgent,
    threads: 1,
    relaxed_simd: fma !== null,
    ndlab_kernels: kernels(),
    ndlab_fma_kernels: fma ? fma.kernels() : null,
    repeat: REPEAT,
    input: [1, C, H, W],
    layer: 'VGG16-BN conv3_2 256→256 3×3, stride 1, padding 1',
    forward: [],
    decouple: {},
  };
  // The machine's limit, before the forwards (and again after them: the best of both is kept).
  const peaksBefore = await measurePeaks(fma, 9);
  log(`peaks: ${JSON.stringify(peaksBefore)}`);
  // Decoupling (once for the forwards, then timed): 256 (the layer) and 512 (w512.npy).
  bench.decouple();
  benchFma?.decouple();
  const l256 = new Layer(layerNpy);
  const l512 = new Layer(await bytes('data/w512.npy'));
  // The FMA build's decoupling (relaxed_madd in its Gram and M·V tiles), interleaved with the SIMD128 one.
  const fmaLayers = fma ? { 256: new fma.Layer(layerNpy), 512: new fma.Layer(await bytes('data/w512.npy')) } : null;
  for (const [name, layer] of ONLY && !ONLY.includes('decouple') ? [] : [['256', l256], ['512', l512]]) {
    const row = {};
    for (const order of ['dw-pw', 'pw-dw']) {
      const fs = [() => layer.decouple(order)];
      if (fmaLayers) fs.push(() => fmaLayers[name].decouple(order));
      const [plain, fused] = await interleaved(fs); // two warm-ups each: wasm tiers up on the first calls
      // numpy native, one thread (make_graphs.py): np.linalg.svd of the stacked slices, and the
      // like-for-like Gram route (batched MᵀM, np.linalg.eigh, M V; `…_eigh`).
      const np = numpy.svd_ms[name][order];
      const npMin = numpy.svd_min_ms[name][order];
      const ne = numpy.eigh_ms[name][order];
      const neMin = numpy.eigh_min_ms[name][order];
      row[order] = {
        ndlab_ms: plain.med, numpy_native_ms: np, ratio_vs_numpy: plain.med / np,
        numpy_eigh_native_ms: ne, ratio_vs_numpy_eigh: plain.med / ne,
        min: {
          ndlab_ms: plain.min, numpy_native_ms: npMin, ratio_vs_numpy: plain.min / npMin,
          numpy_eigh_native_ms: neMin, ratio_vs_numpy_eigh: plain.min / neMin,
        },
      };
      if (fused) {
        Object.assign(row[order], { ndlab_fma_ms: fused.med, ratio_fma_vs_numpy: fused.med / np, ratio_fma_vs_numpy_eigh: fused.med / ne });
        Object.assign(row[order].min, { ndlab_fma_ms: fused.min, ratio_fma_vs_numpy: fused.min / npMin, ratio_fma_vs_numpy_eigh: fused.min / neMin });
      }
    }
    result.decouple[name] = row;
    log(`decouple ${name}: ${JSON.stringify(row)}`);
  }
  const graphs = [['regular', 0], ...TS.flatMap((t) => [['dw-pw', t], ['pw-dw', t]])]
    .filter(([g, t]) => !ONLY || ONLY.includes(g === 'regular' ? g : `${g}:${t}`));
  let regularMs = null, ortRegularMs = null, regularMin = null, ortRegularMin = null, fmaRegularMs = null, fmaRegularMin = null;
  for (const [graph, t] of graphs) {
    const file = graph === 'regular' ? 'regular' : `${graph}_T${t}`;
    const session = await ort.InferenceSession.create(await bytes(`data/${file}.onnx`), {
      executionProviders: ['wasm'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: 1,
    });
    const run = (b) => (graph === 'regular' ? () => b.regular() : () => b.decoupled());
    if (graph !== 'regular') {
      bench.prepare(graph, t);
      benchFma?.prepare(graph, t);
    }
    // numpy's output (float64 arithmetic on the same float32 weights; make_graphs.py), CHW.
    const ref = npyF32(await bytes(`data/ref/${file}.npy`));
    const tfw = await tfjsWeights(tf, graph, t);
    const tfg = await tfjsGraph(tf, graph, t, tfw, xTf, ref);
    let theirs = null, tfOut = null;
    const fs = [run(bench), async () => { theirs = (await session.run(feeds)).y; }];
    if (benchFma) fs.push(run(benchFma));
    // tfjs: only its ops are timed (input and weights are tensors already, in NHWC); the previous
    // output is freed after the time is taken.
    fs.push(() => { const y = tfg.fn(xTf); return () => { tfOut?.dispose(); tfOut = y; }; });
    // Short peak calls in the same rounds (the machine's limit next to each ndlab run).
    fs.push(peaksBefore.simd128.short.run);
    if (benchFma) fs.push(peaksBefore.fma.short.run);
    const res = await interleaved(fs);
    const [nd, or] = res;
    const fm = benchFma ? res[2] : null;
    const tfr = res[benchFma ? 3 : 2];
    const pkS = res[benchFma ? 4 : 3];
    const pkF = benchFma ? res[5] : null;
    const [ndlabMs, ortMs, ndlabMin, ortMin] = [nd.med, or.med, nd.min, or.min];
    const diff = maxRelDiff(bench.output(), theirs.data);
    // Agreement of every timed run's last output with numpy's (tfjs: checked as it was timed).
    const tfjsVsNumpy = checkTfjs(tfOut, ref, `${graph === 'regular' ? graph : `${graph} T=${t}`}, tfjs ${tfg.name} (timed)`);
    const tfChw = nhwcToChw(tfOut.dataSync(), H, W, N);
    const vsNumpy = {
      ndlab: maxRelDiff(bench.output(), ref),
      ort_web: maxRelDiff(theirs.data, ref),
      tfjs_wasm: tfjsVsNumpy,
      ...(benchFma ? { ndlab_fma: maxRelDiff(benchFma.output(), ref) } : {}),
    };
    tfOut.dispose();
    tfOut = null;
    for (const v of Object.values(tfw)) (Array.isArray(v) ? v.flat() : [v]).forEach((a) => a.dispose());
    await session.release();
    if (graph === 'regular') [regularMs, ortRegularMs, regularMin, ortRegularMin] = [ndlabMs, ortMs, ndlabMin, ortMin];
    if (graph === 'regular' && fm) [fmaRegularMs, fmaRegularMin] = [fm.med, fm.min];
    const m = macs(graph, t);
    const [bestPeer, bestPeerMs] = tfr.med < ortMs ? ['tfjs-wasm', tfr.med] : ['onnxruntime-web', ortMs];
    const [bestPeerMin, bestPeerMinMs] = tfr.min < ortMin ? ['tfjs-wasm', tfr.min] : ['onnxruntime-web', ortMin];
    const row = {
      graph: graph === 'regular' ? 'regular' : `${graph} T=${t}`,
      macs: m,
      ndlab_ms: ndlabMs,
      ort_web_ms: ortMs,
      throughput_vs_ort: ortMs / ndlabMs,
      ndlab_gmacs: m / ndlabMs / 1e6,
      ort_gmacs: m / ortMs / 1e6,
      max_rel_diff: diff,
      tfjs_wasm_ms: tfr.med,
      tfjs_wasm_gmacs: m / tfr.med / 1e6,
      tfjs_formulation: tfg.name,
      tfjs_formulations_min_ms: tfg.calibration_ms,
      tfjs_formulations_max_rel_diff_vs_numpy: tfg.diffs,
      max_rel_diff_tfjs: maxRelDiff(tfChw, theirs.data),
      max_rel_diff_vs_numpy: vsNumpy,
      outputs_agree: Object.values(vsNumpy).every((v) => v <= TOL),
      best_peer: bestPeer,
      best_peer_ms: bestPeerMs,
      throughput_vs_best_peer: bestPeerMs / ndlabMs,
      theoretical_speedup: theoretical(graph, t),
      ndlab_measured_speedup: regularMs / ndlabMs,
      ort_measured_speedup: ortRegularMs / ortMs,
      min: {
        ndlab_ms: ndlabMin,
        ort_web_ms: ortMin,
        throughput_vs_ort: ortMin / ndlabMin,
        ndlab_gmacs: m / ndlabMin / 1e6,
        ort_gmacs: m / ortMin / 1e6,
        ndlab_measured_speedup: regularMin / ndlabMin,
        ndlab_measured_over_theoretical: regularMin / ndlabMin / theoretical(graph, t),
        tfjs_wasm_ms: tfr.min,
        tfjs_wasm_gmacs: m / tfr.min / 1e6,
        best_peer: bestPeerMin,
        best_peer_ms: bestPeerMinMs,
        throughput_vs_best_peer: bestPeerMinMs / ndlabMin,
      },
    };
    if (fm) {
      Object.assign(row, {
        ndlab_fma_ms: fm.med,
        throughput_fma_vs_ort: ortMs / fm.med,
        ndlab_fma_gmacs: m / fm.med / 1e6,
        max_rel_diff_fma: maxRelDiff(benchFma.output(), theirs.data),
        ndlab_fma_measured_speedup: fmaRegularMs / fm.med,
        ndlab_fma_measured_over_theoretical: fmaRegularMs / fm.med / theoretical(graph, t),
        throughput_fma_vs_best_peer: bestPeerMs / fm.med,
      });
      Object.assign(row.min, {
        ndlab_fma_ms: fm.min,
        throughput_fma_vs_ort: ortMin / fm.min,
        ndlab_fma_gmacs: m / fm.min / 1e6,
        ndlab_fma_measured_over_theoretical: fmaRegularMin / fm.min / theoretical(graph, t),
        throughput_fma_vs_best_peer: bestPeerMinMs / fm.min,
      });
    }
    // Fraction of the peak round by round (ndlab's GMAC/s over the peak call's in the same round).
    const paired = (t, p, pm) => median(t.runs.map((v, i) => (m / v) / (pm / p.runs[i])));
    row.ndlab_simd128_fraction_of_peak_paired = paired(nd, pkS, peaksBefore.simd128.short.macs);
    if (fm) row.ndlab_fma_fraction_of_peak_paired = paired(fm, pkF, peaksBefore.fma.short.macs);
    row.peak_gmacs_in_rounds = {
      simd128: peaksBefore.simd128.short.macs / pkS.min / 1e6,
      ...(pkF ? { fma: peaksBefore.fma.short.macs / pkF.min / 1e6 } : {}),
    };
    const r1 = (xs) => xs.map((v) => +v.toFixed(1));
    row.runs_ms = { ndlab: r1(nd.runs), ort_web: r1(or.runs), ...(fm ? { ndlab_fma: r1(fm.runs) } : {}), tfjs_wasm: r1(tfr.runs) };
    row.ndlab_measured_over_theoretical = row.ndlab_measured_speedup / row.theoretical_speedup;
    log(JSON.stringify(row));
    // A wrong output ends the run (no figures for a graph that was not computed right).
    if (!row.outputs_agree) throw new Error(`${row.graph}: outputs disagree with numpy's (max rel diff > ${TOL}): ${JSON.stringify(vsNumpy)}`);
    result.forward.push(row);
  }
  const peaksAfter = await measurePeaks(fma, 9);
  log(`peaks after: ${JSON.stringify(peaksAfter)}`);
  result.peaks = { before: peaksBefore, after: peaksAfter };
  // The run's peak: the best call of the long measures before and after the forwards and of the
  // short ones in the forwards' rounds.
  const best = (kind) => Math.max(peaksBefore[kind].gmacs, peaksAfter[kind].gmacs, ...result.forward.map((r) => r.peak_gmacs_in_rounds[kind] ?? 0));
  result.peak_gmacs = { simd128: best('simd128'), fma: fma ? best('fma') : null };
  // ndlab's GMAC/s as fractions of the run's peaks (median time in the row, minimum time in its
  // `min`; `…_paired` in the row: round by round against the peak call of the same round).
  for (const row of result.forward) {
    for (const r of [row, row.min]) {
      r.ndlab_simd128_fraction_of_peak = r.ndlab_gmacs / result.peak_gmacs.simd128;
      if (r.ndlab_fma_gmacs !== undefined) r.ndlab_fma_fraction_of_peak = r.ndlab_fma_gmacs / result.peak_gmacs.fma;
    }
  }
  window.benchResult = result;
}

main().catch((e) => {
  window.benchError = String(e?.stack ?? e);
  log('error: ' + window.benchError);
});
