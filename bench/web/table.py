#!/usr/bin/env python3
"""Markdown tables from the benchmark JSON (scripts/bench-browser.sh, scripts/bench-native.sh).
Usage: python3 bench/web/table.py target/bench-web/result.json   (or native.json)"""
import json
import sys


def main():
    r = json.load(open(sys.argv[1]))
    peer = "onnxruntime-web" if "user_agent" in r else "onnxruntime"
    key = "ort_web_ms" if "user_agent" in r else "ort_ms"
    print(f"| graph | MACs | ndlab ms (min) | {peer} ms (min) | ours/peer throughput, median (min) "
          f"| ndlab GMAC/s | peer GMAC/s | measured / theoretical speed-up | max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in r["forward"]:
        m = f.get("min", {})
        peer_min = m.get(key, float("nan"))
        thr_min = peer_min / m["ndlab_ms"] if "ndlab_ms" in m else float("nan")
        mt = f["ndlab_measured_speedup"] / f["theoretical_speedup"]
        print(f"| {f['graph']} | {f['macs'] / 1e9:.2f} G | {f['ndlab_ms']:.1f} ({m.get('ndlab_ms', float('nan')):.1f}) "
              f"| {f[key]:.1f} ({peer_min:.1f}) | {f['throughput_vs_ort']:.2f} ({thr_min:.2f}) "
              f"| {f['ndlab_gmacs']:.2f} | {f['ort_gmacs']:.2f} "
              f"| {f['ndlab_measured_speedup']:.2f} / {f['theoretical_speedup']:.2f} = {mt:.2f} | {f['max_rel_diff']:.1e} |")
    fma = [f for f in r["forward"] if "ndlab_fma_ms" in f]
    if fma:
        print()
        print("| graph | SIMD128 ms (min) | FMA (relaxed SIMD) ms (min) | FMA / SIMD128 speed, median (min) "
              f"| {peer} ms (min) | throughput vs {peer}: SIMD128, FMA, median (min) "
              "| FMA GMAC/s | measured / theoretical: SIMD128, FMA | FMA max rel diff |")
        print("|---|---|---|---|---|---|---|---|---|")
    for f in fma:
        m = f["min"]
        print(f"| {f['graph']} | {f['ndlab_ms']:.1f} ({m['ndlab_ms']:.1f}) | {f['ndlab_fma_ms']:.1f} ({m['ndlab_fma_ms']:.1f}) "
              f"| {f['ndlab_ms'] / f['ndlab_fma_ms']:.2f} ({m['ndlab_ms'] / m['ndlab_fma_ms']:.2f}) "
              f"| {f[key]:.1f} ({m[key]:.1f}) "
              f"| {f['throughput_vs_ort']:.2f} ({m['throughput_vs_ort']:.2f}), "
              f"**{f['throughput_fma_vs_ort']:.2f}** ({m['throughput_fma_vs_ort']:.2f}) "
              f"| {f['ndlab_fma_gmacs']:.2f} "
              f"| {f['ndlab_measured_over_theoretical']:.2f}, {f['ndlab_fma_measured_over_theoretical']:.2f} "
              f"| {f['max_rel_diff_fma']:.1e} |")
    peers = [f for f in r["forward"] if "tfjs_wasm_ms" in f]
    if peers:
        pk = r.get("peak_gmacs", {})
        print()
        print(f"Peaks (GMAC/s, best call): SIMD128 {pk.get('simd128') or float('nan'):.2f}, "
              f"FMA {pk.get('fma') or float('nan'):.2f}")
        print()
        print("| graph | ndlab SIMD128 ms (min) | ndlab FMA ms (min) | onnxruntime-web ms (min) | tfjs-wasm ms (min) "
              "| best peer | FMA vs best peer, median (min) | SIMD128 vs best peer | FMA fraction of FMA peak "
              "| SIMD128 fraction of SIMD128 peak | tfjs formulation | max rel diff vs numpy: ndlab, FMA, ort, tfjs |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f in peers:
        m = f["min"]
        nan = float("nan")
        d = f["max_rel_diff_vs_numpy"]
        print(f"| {f['graph']} | {f['ndlab_ms']:.1f} ({m['ndlab_ms']:.1f}) "
              f"| {f.get('ndlab_fma_ms', nan):.1f} ({m.get('ndlab_fma_ms', nan):.1f}) "
              f"| {f['ort_web_ms']:.1f} ({m['ort_web_ms']:.1f}) | {f['tfjs_wasm_ms']:.1f} ({m['tfjs_wasm_ms']:.1f}) "
              f"| {f['best_peer']} | **{f.get('throughput_fma_vs_best_peer', nan):.2f}** "
              f"({m.get('throughput_fma_vs_best_peer', nan):.2f}) "
              f"| {f['throughput_vs_best_peer']:.2f} ({m['throughput_vs_best_peer']:.2f}) "
              f"| {f.get('ndlab_fma_fraction_of_peak', nan):.2f} ({m.get('ndlab_fma_fraction_of_peak', nan):.2f}) "
              f"| {f['ndlab_simd128_fraction_of_peak']:.2f} ({m['ndlab_simd128_fraction_of_peak']:.2f}) "
              f"| {f['tfjs_formulation']} "
              f"| {d['ndlab']:.1e}, {d.get('ndlab_fma', nan):.1e}, {d['ort_web']:.1e}, {d['tfjs_wasm']:.1e}"
              f"{'' if f['outputs_agree'] else ' **DISAGREE**'} |")
    if not r["decouple"]:
        return
    print()
    np_key = "numpy_native_ms" if "user_agent" in r else "numpy_ms"
    eigh = any("numpy_eigh_native_ms" in x for row in r["decouple"].values() for x in row.values())
    if eigh:
        print("| decoupling | ndlab ms, median (min) | numpy svd ms, median (min) | ratio vs svd, median (min) "
              "| numpy Gram + eigh ms, median (min) | ratio vs Gram + eigh, median (min) |")
        print("|---|---|---|---|---|---|")
    else:
        print("| decoupling | ndlab ms, median (min) | numpy native ms, median (min) | ratio, median (min) |")
        print("|---|---|---|---|")
    for size, row in r["decouple"].items():
        for order, x in row.items():
            m = x["min"]
            builds = [("", "ndlab_ms", "ratio_vs_numpy", "ratio_vs_numpy_eigh")]
            if "ndlab_fma_ms" in x:
                builds.append((", FMA build", "ndlab_fma_ms", "ratio_fma_vs_numpy", "ratio_fma_vs_numpy_eigh"))
            for label, ms, ratio, ratio_eigh in builds:
                line = (f"| {size}→{size} 3×3 {order}{label} | {x[ms]:.1f} ({m[ms]:.1f}) "
                        f"| {x[np_key]:.1f} ({m[np_key]:.1f}) | {x[ratio]:.2f} ({m[ratio]:.2f}) |")
                if eigh:
                    line += (f" {x['numpy_eigh_native_ms']:.1f} ({m['numpy_eigh_native_ms']:.1f}) "
                             f"| {x[ratio_eigh]:.2f} ({m[ratio_eigh]:.2f}) |")
                print(line)


if __name__ == "__main__":
    main()
