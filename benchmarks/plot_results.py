"""Bar chart of a bench_decoder.py JSON: python benchmarks/plot_results.py results.json out.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    res = json.load(open(src))
    rows = [r for r in res["rows"] if not r["case"].startswith("encoder")]
    engines = [e for e in ("official", "onnxruntime", "samfast_onnx", "samfast") if any(e in r for r in rows)]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(engines)
    for i, eng in enumerate(engines):
        xs = [j + i * width for j, r in enumerate(rows) if eng in r]
        ys = [r[eng] for r in rows if eng in r]
        bars = ax.bar(xs, ys, width, label=eng)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([j + width * (len(engines) - 1) / 2 for j in range(len(rows))], [r["case"] for r in rows])
    ax.set_ylabel("ms per prompt (median, postprocessing incl.)")
    m = res["machine"]
    ax.set_title(f"SAM {res['arch']} decoder, {m['cpu']} ({m['cores']} vCPUs), image {res['image'][0]}x{res['image'][1]}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
