"""Peak tracemalloc-traced allocations of DNNRegressor/DNNClassifier.fit beyond X, as a
share of X's size (issue 14, target "memory": <= 5% for float32 C-contiguous X).

    python tools/fit_memory.py --rows 4000000 --features 16
"""
import argparse
import os
import sys

import numpy as np

import fastnn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from support import traced_peak  # noqa: E402  (tests/support.py: the one measurement, shared with the test)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.features), dtype=np.float32)
    y = X[:, 0] * np.float32(2) + np.float32(0.1)
    labels = (X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)
    cases = [
        ("regressor", fastnn.DNNRegressor, X, y, {}),
        ("regressor early_stopping", fastnn.DNNRegressor, X, y, {"early_stopping": True}),
        ("regressor float64 y", fastnn.DNNRegressor, X, y.astype(np.float64), {}),
        ("regressor sample_weight", fastnn.DNNRegressor, X, y, {"sample_weight": True}),
        ("classifier 2 classes", fastnn.DNNClassifier, X, labels % 2, {}),
        ("classifier 3 classes", fastnn.DNNClassifier, X, labels, {}),
        ("classifier 3 classes early_stopping", fastnn.DNNClassifier, X, labels, {"early_stopping": True}),
        ("regressor Fortran-order X", fastnn.DNNRegressor, np.asfortranarray(X), y, {}),
        ("regressor float64 X", fastnn.DNNRegressor, X.astype(np.float64), y, {}),
    ]
    print(f"X: {args.rows} x {args.features} float32 = {X.nbytes / 2**20:.1f} MiB")
    for cls, target in ((fastnn.DNNRegressor, y), (fastnn.DNNClassifier, labels)):  # imports, caches: not fit's
        cls(hidden_units=(16,), epochs=1, early_stopping=True, random_state=0).fit(X[:1000], target[:1000])
    for name, cls, Xc, yc, kw in cases:
        weights = np.ones(args.rows, np.float64) if kw.pop("sample_weight", False) else None
        est = cls(hidden_units=(16,), epochs=args.epochs, batch_size=args.batch_size, random_state=0, **kw)
        peak = traced_peak(est.fit, Xc, yc, sample_weight=weights)
        print(f"{name:40s} peak {peak / 2**20:8.1f} MiB = {100 * peak / X.nbytes:6.2f}% of the float32 X")
        del Xc


if __name__ == "__main__":
    main()
