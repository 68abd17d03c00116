#!/usr/bin/env python3
"""Markdown tables of scripts/bench-network.sh's JSON: accuracy at each conv-MAC reduction per strategy."""
import json
import sys


def main():
    r = json.load(open(sys.argv[1]))
    print(f"Original: top-1 {100 * r['original_accuracy']:.2f} % on {r['test_images']} test images, "
          f"{r['conv_macs']:,} conv MACs per image.\n")
    targets = sorted({p["target"] for p in r["points"]})
    print("| strategy | ordering | data | " + " | ".join(f"≥ {t:g}× fewer conv MACs" for t in targets) + " |")
    print("|---|---|---|" + "---|" * len(targets))
    keys = []
    for p in r["points"]:
        k = (p["strategy"], p["order"], p["data_aware"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        cells = []
        for t in targets:
            p = next((p for p in r["points"] if (p["strategy"], p["order"], p["data_aware"]) == k and p["target"] == t), None)
            cells.append("—" if p is None else f"{100 * p['accuracy']:.2f} % ({p['speedup']:.2f}×, {p['setting']})")
        print(f"| {k[0]} | {k[1]} | {'data-aware' if k[2] else 'data-free'} | " + " | ".join(cells) + " |")
    print()
    for t in r["timing"]:
        print(f"- {t['order']} T = {t['t']}: {t['ms_1000_images']:.0f} ms for 1000 images against {t['original_ms_1000_images']:.0f} ms "
              f"(measured {t['measured_speedup']:.2f}×, conv MACs {t['theoretical_speedup']:.2f}× fewer; {r['kernels']})")


if __name__ == "__main__":
    main()
