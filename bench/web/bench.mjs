// The browser benchmark page: ndlab (wasm, SIMD128, one thread; and its relaxed-SIMD / FMA build
// from pkg-fma/ where the browser validates relaxed SIMD) against onnxruntime-web (wasm
// backend, SIMD, numThreads = 1) on the same layer (VGG16-BN conv3_2, 256→256 3×3, padding 1),
// the same 1×256×56×56 input and the same graphs (regular; DW→PW and PW→DW at T = 1, 2, 4), plus
// ndlab's decoupling time for the 256 and 512 layers. Runs are interleaved (ndlab, ndlab FMA, ort, …)
// so that load changes on a shared machine hit both alike; the median is reported.
// Sets window.benchResult (or window.benchError).
import init, { Bench, Layer, kernels } from './pkg/bench_web.js';
import * as ort from './ort/ort.wasm.min.mjs';

const PARAMS = new URLSearchParams(location.search);
const REPEAT = Number(PARAMS.get('repeat') ?? 7);
// Optional subset: graphs (e.g. `only=regular,dw-pw:2`; decoupling is then not timed) and/or
// `decouple` (the decouplings; `only=decouple` times them alone).
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

/** Times the functions `fs` interleaved, `REPEAT` times after two warm-ups each; for each,
 * { med, min, runs } in ms (the minimum is the figure least disturbed by other load on the machine). */
async function interleaved(fs) {
  const ts = fs.map(() => []);
  for (let i = 0; i < REPEAT + 2; i++) {
    for (const [j, f] of fs.entries()) {
      const t0 = performance.now();
      await f();
      if (i >= 2) ts[j].push(performance.now() - t0);
    }
  }
  return ts.map((t) => ({ med: median(t), min: Math.min(...t), runs: t }));
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
  const result = {
    onnxruntime_web: ort.env.versions?.web ?? ort.env.versions?.common ?? 'unknown',
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
      const np = numpy.svd_ms[name][order];
      const npMin = numpy.svd_min_ms[name][order];
      row[order] = {
        ndlab_ms: plain.med, numpy_native_ms: np, ratio_vs_numpy: plain.med / np,
        min: { ndlab_ms: plain.min, numpy_native_ms: npMin, ratio_vs_numpy: plain.min / npMin },
      };
      if (fused) {
        Object.assign(row[order], { ndlab_fma_ms: fused.med, ratio_fma_vs_numpy: fused.med / np });
        Object.assign(row[order].min, { ndlab_fma_ms: fused.min, ratio_fma_vs_numpy: fused.min / npMin });
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
    let theirs = null;
    const fs = [run(bench), async () => { theirs = (await session.run(feeds)).y; }];
    if (benchFma) fs.push(run(benchFma));
    const [nd, or, fm] = await interleaved(fs);
    const [ndlabMs, ortMs, ndlabMin, ortMin] = [nd.med, or.med, nd.min, or.min];
    const diff = maxRelDiff(bench.output(), theirs.data);
    await session.release();
    if (graph === 'regular') [regularMs, ortRegularMs, regularMin, ortRegularMin] = [ndlabMs, ortMs, ndlabMin, ortMin];
    if (graph === 'regular' && fm) [fmaRegularMs, fmaRegularMin] = [fm.med, fm.min];
    const m = macs(graph, t);
    const row = {
      graph: graph === 'regular' ? 'regular' : `${graph} T=${t}`,
      macs: m,
      ndlab_ms: ndlabMs,
      ort_web_ms: ortMs,
      throughput_vs_ort: ortMs / ndlabMs,
      ndlab_gmacs: m / ndlabMs / 1e6,
      ort_gmacs: m / ortMs / 1e6,
      max_rel_diff: diff,
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
      });
      Object.assign(row.min, {
        ndlab_fma_ms: fm.min,
        throughput_fma_vs_ort: ortMin / fm.min,
        ndlab_fma_gmacs: m / fm.min / 1e6,
        ndlab_fma_measured_over_theoretical: fmaRegularMin / fm.min / theoretical(graph, t),
      });
    }
    const r1 = (xs) => xs.map((v) => +v.toFixed(1));
    row.runs_ms = { ndlab: r1(nd.runs), ort_web: r1(or.runs), ...(fm ? { ndlab_fma: r1(fm.runs) } : {}) };
    row.ndlab_measured_over_theoretical = row.ndlab_measured_speedup / row.theoretical_speedup;
    result.forward.push(row);
    log(JSON.stringify(row));
  }
  window.benchResult = result;
}

main().catch((e) => {
  window.benchError = String(e?.stack ?? e);
  log('error: ' + window.benchError);
});
