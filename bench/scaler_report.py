"""Scaler speed table: fastnn vs scikit-learn ``fit_transform`` (BENCHMARKS.md workload S).

Usage, from the repository root (one core, as the team quotes it)::

    taskset -c 1 python bench/scaler_report.py [--quick] [--threads 1] [--fastnn-from DIR]

``--fastnn-from DIR`` imports fastnn from DIR (a ``pip install --target DIR`` of another
commit) instead of this checkout, so an old build and the new one can be timed on the
same machine, minutes apart, against the same scikit-learn.

Workload: 1,000,000 x 32 standard normal values (seed 0), float32 and float64;
``StandardScaler().fit_transform(X)`` and ``MinMaxScaler().fit_transform(X)``. Each
library runs as its own block (report.py's ``time_block``: warm-up, then the best of
several timed blocks). fastnn's result is checked against scikit-learn's before timing.
Speedup = scikit-learn time / fastnn time. On a shared machine, ``--clock thread`` (CPU
time of this thread, user + system, best of ``--rounds``) is steadier than wall time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _import_fastnn_from(path: str) -> None:
    """Make ``import fastnn`` load the build under ``path``, not the editable checkout."""
    sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
    sys.path.insert(0, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter timing blocks")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="fastnn thread counts (default: 1)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fastnn-from", metavar="DIR", help="import fastnn from DIR instead of this checkout")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="wall: report.py's time_block; thread: best of --rounds calls in this thread's CPU "
                             "time (user + system), which other processes on a shared machine do not inflate; "
                             "only meaningful with one fastnn thread")
    parser.add_argument("--rounds", type=int, default=10, help="calls per library with --clock thread")
    args = parser.parse_args(argv)
    if args.fastnn_from:
        _import_fastnn_from(args.fastnn_from)

    import numpy as np
    from sklearn import preprocessing as sk_pre

    import fastnn
    from fastnn import preprocessing as fp

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import time_block  # noqa: E402

    settings = (dict(repeats=3, min_block_s=0.01, warmup_s=0.02, max_total_s=1.0) if args.quick
                else dict(repeats=10, min_block_s=0.05, warmup_s=0.2, max_total_s=6.0))

    def best(fn):
        if args.clock == "wall":
            return time_block(fn, **settings)
        fn()  # warm-up
        times = []
        for _ in range(args.rounds):
            t0 = time.thread_time()
            fn()
            times.append(time.thread_time() - t0)
        return min(times)
    cfg = fastnn.show_config(print_=False)
    print(f"fastnn {cfg['version']} from {Path(fastnn.__file__).parent}, SIMD path {cfg['simd_path']}, "
          f"CPU {cfg['cpu']}")
    print(f"{args.clock} clock; {args.rows} x 32")
    print(f"{'workload':44s} {'fastnn':>10s} {'sklearn':>10s} {'speedup':>8s}")
    for dtype in ("float32", "float64"):
        X = np.random.default_rng(0).standard_normal((args.rows, 32)).astype(dtype)
        for name in ("StandardScaler", "MinMaxScaler"):
            ours, theirs = getattr(fp, name), getattr(sk_pre, name)
            np.testing.assert_allclose(ours().fit_transform(X[:4096]), theirs().fit_transform(X[:4096]),
                                       rtol=1e-4, atol=1e-4)
            time.sleep(0.3)
            t_sk = best(lambda: theirs().fit_transform(X))
            for n in args.threads:
                with fastnn.threads(n):
                    time.sleep(0.3)
                    t_fn = best(lambda: ours().fit_transform(X))
                label = f"{name}.fit_transform {dtype} {n}thr"
                print(f"{label:44s} {t_fn * 1e3:8.1f}ms {t_sk * 1e3:8.1f}ms {t_sk / t_fn:7.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
