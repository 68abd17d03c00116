// The browser benchmark page: ndlab (wasm, SIMD128, one thread) against onnxruntime-web (wasm
// backend, SIMD, numThreads = 1) on the same layer (VGG16-BN conv3_2, 256→256 3×3, padding 1),
// the same 1×256×56×56 input and the same graphs (regular; DW→PW and PW→DW at T = 1, 2, 4), plus
// ndlab's decoupling time for the 256 and 512 layers. Runs are interleaved (ndlab, ort, ndlab, …)
// so that load changes on a shared machine hit both alike; the median is reported.
// Sets window.benchResult (or window.benchError).
import init, { Bench, Layer } from './pkg/bench_web.js';
import * as ort from './ort/ort.wasm.min.mjs';

const PARAMS = new URLSearchParams(location.search);
const REPEAT = Number(PARAMS.get('repeat') ?? 7);
// Optional subset: graphs (e.g. `only=regular,dw-pw:2`; decoupling is then not timed) and/or
// `decouple` (the decouplings; `only=decouple` times them alone).
const ONLY = PARAMS.get('only')?.split(',') ?? null;
const TS = [1, 2, 4];
const [N, C, H, W, K2] = [256, 256, 56, 56, 9];
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

/** Times `a` and `b` interleaved, `REPEAT` times after two warm-ups each; [median a, median b,
 * min a, min b, runs a, runs b] in ms (the minimum is the figure least disturbed by other load on the
 * machine). */
async function interleaved(a, b) {
  const ta = [], tb = [];
  for (let i = 0; i < REPEAT + 2; i++) {
    let t0 = performance.now();
    await a();
    if (i >= 2) ta.push(performance.now() - t0);
    t0 = performance.now();
    await b();
    if (i >= 2) tb.push(performance.now() - t0);
  }
  return [median(ta), median(tb), Math.min(...ta), Math.min(...tb), ta, tb];
}

/** [median, min] of `repeat` timed runs, in ms. */
function timeMs(f, repeat) {
  const ts = [];
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    f();
    ts.push(performance.now() - t0);
  }
  return [median(ts), Math.min(...ts)];
}

async function main() {
  await init();
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.simd = true;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
  const layerNpy = await bytes('assets/layers/craft_vgg16bn_conv3_2_256x256x3x3.npy');
  const xNpy = await bytes('data/x.npy');
  const numpy = await (await fetch('data/numpy.json')).json();
  const x = npyF32(xNpy);
  const bench = new Bench(layerNpy, xNpy);
  const feeds = { x: new ort.Tensor('float32', x, [1, C, H, W]) };
  const result = {
    onnxruntime_web: ort.env.versions?.web ?? ort.env.versions?.common ?? 'unknown',
    user_agent: navigator.userAgent,
    threads: 1,
    repeat: REPEAT,
    input: [1, C, H, W],
    layer: 'VGG16-BN conv3_2 256→256 3×3, stride 1, padding 1',
    forward: [],
    decouple: {},
  };
  // Decoupling (once for the forwards, then timed): 256 (the layer) and 512 (w512.npy).
  bench.decouple();
  const l256 = new Layer(layerNpy);
  const l512 = new Layer(await bytes('data/w512.npy'));
  for (const [name, layer] of ONLY && !ONLY.includes('decouple') ? [] : [['256', l256], ['512', l512]]) {
    const row = {};
    for (const order of ['dw-pw', 'pw-dw']) {
      layer.decouple(order); // warm-up: wasm tiers up on the first calls
      layer.decouple(order);
      const [ms, min] = timeMs(() => layer.decouple(order), REPEAT);
      const np = numpy.svd_ms[name][order];
      const npMin = numpy.svd_min_ms[name][order];
      row[order] = {
        ndlab_ms: ms, numpy_native_ms: np, ratio_vs_numpy: ms / np,
        min: { ndlab_ms: min, numpy_native_ms: npMin, ratio_vs_numpy: min / npMin },
      };
    }
    result.decouple[name] = row;
    log(`decouple ${name}: ${JSON.stringify(row)}`);
  }
  const graphs = [['regular', 0], ...TS.flatMap((t) => [['dw-pw', t], ['pw-dw', t]])]
    .filter(([g, t]) => !ONLY || ONLY.includes(g === 'regular' ? g : `${g}:${t}`));
  let regularMs = null, ortRegularMs = null, regularMin = null, ortRegularMin = null;
  for (const [graph, t] of graphs) {
    const file = graph === 'regular' ? 'regular' : `${graph}_T${t}`;
    const session = await ort.InferenceSession.create(await bytes(`data/${file}.onnx`), {
      executionProviders: ['wasm'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: 1,
    });
    const ours = graph === 'regular' ? () => bench.regular() : () => bench.decoupled();
    if (graph !== 'regular') bench.prepare(graph, t);
    let theirs = null;
    const [ndlabMs, ortMs, ndlabMin, ortMin, ndlabRuns, ortRuns] = await interleaved(ours, async () => { theirs = (await session.run(feeds)).y; });
    const diff = maxRelDiff(bench.output(), theirs.data);
    await session.release();
    if (graph === 'regular') [regularMs, ortRegularMs, regularMin, ortRegularMin] = [ndlabMs, ortMs, ndlabMin, ortMin];
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
    row.runs_ms = { ndlab: ndlabRuns.map((v) => +v.toFixed(1)), ort_web: ortRuns.map((v) => +v.toFixed(1)) };
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
