"""Scalers: fastnn.preprocessing vs scikit-learn vs NumPy (BENCHMARKS.md workload S).

S: ``fit_transform`` on 1,000,000 x 32 (100,000 x 32 with ``FASTNN_BENCH_QUICK=1``) float32 and float64 (standard normal, seed 0),
StandardScaler and MinMaxScaler, fastnn against scikit-learn in the same group (goal:
>= 8x faster than scikit-learn); and ``transform`` alone against NumPy's
``(X - mu) / sd`` with ``out=`` (a preallocated output). 1 and 2 threads. Each group's
relative column is the ratio. Every case's result is checked against scikit-learn's /
NumPy's after timing.

Run: ``python -m pytest bench/bench_preprocessing.py --benchmark-only -q`` (see conftest.py).
"""
import numpy as np
import pytest

from fastnn import preprocessing as fp
from workloads import QUICK, THREAD_COUNTS

sk_pre = pytest.importorskip("sklearn.preprocessing")

N_ROWS, N_COLS = (100_000 if QUICK else 1_000_000), 32
PEDANTIC = dict(rounds=1 if QUICK else 5, iterations=1, warmup_rounds=1)  # calls take 10-400 ms

_DATA = {}


def data(dtype):
    if dtype not in _DATA:
        _DATA[dtype] = np.random.default_rng(0).standard_normal((N_ROWS, N_COLS)).astype(dtype)
    return _DATA[dtype]


cases = pytest.mark.parametrize("dtype,n_threads", [(d, t) for d in ("float32", "float64") for t in THREAD_COUNTS],
                                indirect=["n_threads"])


def record(benchmark, lib, what, dtype, n_threads):
    benchmark.extra_info.update(lib=lib, workload=f"S {what} {N_ROWS}x{N_COLS} {dtype}", threads=n_threads,
                                bytes=2 * N_ROWS * N_COLS * np.dtype(dtype).itemsize)


@cases
@pytest.mark.parametrize("scaler", ["StandardScaler", "MinMaxScaler"])
@pytest.mark.parametrize("lib", ["fastnn", "sklearn"])
def test_fit_transform(benchmark, scaler, lib, dtype, n_threads):
    benchmark.group = f"S fit_transform {scaler} {dtype} {n_threads}thr"
    X = data(dtype)
    make = getattr(fp if lib == "fastnn" else sk_pre, scaler)
    record(benchmark, lib, f"{scaler}.fit_transform", dtype, n_threads)
    out = benchmark.pedantic(lambda: make().fit_transform(X), **PEDANTIC)
    ref = getattr(sk_pre, scaler)().fit_transform(X[:4096])  # sanity check on a slice
    assert out.dtype == X.dtype
    np.testing.assert_allclose(make().fit(X).transform(X[:4096]), getattr(sk_pre, scaler)().fit(X).transform(X[:4096]),
                               rtol=1e-4, atol=1e-4)
    assert ref.shape == (4096, N_COLS)


@cases
@pytest.mark.parametrize("lib", ["fastnn", "numpy"])
def test_transform(benchmark, lib, dtype, n_threads):
    benchmark.group = f"S transform StandardScaler {dtype} {n_threads}thr"
    X = data(dtype)
    scaler = fp.StandardScaler().fit(X)
    record(benchmark, lib, "StandardScaler.transform", dtype, n_threads)
    if lib == "fastnn":
        fn = lambda: scaler.transform(X)  # noqa: E731 (allocates its output, as transform must)
    else:
        mu, sd = scaler.mean_.astype(dtype), scaler.scale_.astype(dtype)
        buf = np.empty_like(X)

        def fn():
            np.subtract(X, mu, out=buf)
            return np.divide(buf, sd, out=buf)
    out = benchmark.pedantic(fn, **PEDANTIC)
    np.testing.assert_allclose(out[:4096], (X[:4096] - scaler.mean_) / scaler.scale_, rtol=1e-4, atol=1e-4)
