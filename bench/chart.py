"""The README's performance chart and table, from ONE run of ``fastnn bench``'s
workloads (kernels, scaler, W1 and W2 epochs; fastnn against NumPy, PyTorch and
scikit-learn, each library timed as its own block):

    python bench/chart.py [--threads 1] [--budget 1.0] [--out docs/benchmarks]

writes ``<out>.png`` (how many times faster fastnn is than each baseline, log scale) and
``<out>.md`` (the table, with the CPU and versions), and prints the table.
"""
from __future__ import annotations

import argparse
import io
import platform
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

import fastnn
from fastnn import _quickbench


def versions() -> str:
    parts = [f"fastnn {fastnn.__version__} ({fastnn.show_config(print_=False)['simd_path']})",
             f"NumPy {np.__version__}"]
    for name in ("torch", "sklearn"):
        try:
            module = __import__(name)
            parts.append(f"{'PyTorch' if name == 'torch' else 'scikit-learn'} {module.__version__}")
        except ImportError:
            pass
    return ", ".join(parts)


def chart(rows, path: Path, title: str) -> None:
    from matplotlib.figure import Figure
    baselines = [lib for lib in ("numpy", "torch", "sklearn") if any(f"{lib}_s" in r for r in rows)]
    labels = [r["workload"].split(" ", 1)[0] + (f" ({r['threads']}t)" if len({x['threads'] for x in rows}) > 1
                                                 else "") for r in rows]
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(baselines)
    x = np.arange(len(rows))
    names = {"numpy": "NumPy", "torch": "PyTorch eager", "sklearn": "scikit-learn"}
    for i, lib in enumerate(baselines):
        ratio = [r[f"{lib}_s"] / r["fastnn_s"] if f"{lib}_s" in r else np.nan for r in rows]
        bars = ax.bar(x + (i - (len(baselines) - 1) / 2) * width, ratio, width, label=f"vs {names[lib]}")
        ax.bar_label(bars, labels=[f"{v:.1f}" if np.isfinite(v) else "" for v in ratio], fontsize=7, padding=1)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(x, labels)
    ax.set_ylabel("baseline time / fastnn time (> 1: fastnn faster)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per kernel measurement")
    parser.add_argument("--out", default="docs/benchmarks", help="path without extension")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        rows = _quickbench.run(tuple(args.threads), budget=args.budget)
    cpu = fastnn.show_config(print_=False)["cpu"]["brand"]
    title = f"{cpu}, {platform.machine()}; {versions()}"
    table = buffer.getvalue()
    text = (f"Measured with `python bench/chart.py --threads {' '.join(map(str, args.threads))} --budget {args.budget}`"
            f" on {title}. Milliseconds; ratios are the baseline's time over fastnn's, from this one run.\n\n{table}")
    out.with_suffix(".md").write_text(text)
    chart(rows, out.with_suffix(".png"), title)
    print(text)


if __name__ == "__main__":
    main()
