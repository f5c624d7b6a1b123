"""A short benchmark of the dense-layer kernels against NumPy, for ``python -m fastnn``.

Each library is timed as one block (warm-up, then the best of several rounds), never
interleaved with the other: on a small machine, one library's spinning worker threads
would otherwise steal the other's cores. The full suites live in the repository's bench/.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from fastnn import ops
from fastnn._config import threads

# (label, batch, in_features, out_features): BENCHMARKS.md K1a and K1b, and a GEMM.
WORKLOADS = (
    ("K1a  256x64 -> 128", 256, 64, 128),
    ("K1b 1024x512 -> 512", 1024, 512, 512),
    ("GEMM 1024x1024x1024", 1024, 1024, 1024),
)


def best_time(fn: Callable[[], object], budget: float = 0.25, rounds: int = 5) -> float:
    """Best per-call seconds over `rounds` rounds of about budget/rounds seconds each."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, int(budget / rounds / once))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def _numpy_blas_limit(n: int):
    """NumPy's BLAS pinned to n threads, so both libraries get the same cores."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(n, user_api="blas")


def dense_cases(batch: int, n_in: int, n_out: int, gemm_only: bool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    w = rng.standard_normal((n_in, n_out), dtype=np.float32) / np.float32(np.sqrt(n_in))
    b = rng.standard_normal(n_out, dtype=np.float32)
    gy = rng.standard_normal((batch, n_out), dtype=np.float32)
    y = np.empty((batch, n_out), np.float32)
    if gemm_only:
        return (lambda: ops.dense_forward(x, w, out=y)), (lambda: np.matmul(x, w, out=y))
    dx = np.empty((batch, n_in), np.float32)
    dw = np.empty((n_in, n_out), np.float32)
    db = np.empty(n_out, np.float32)

    def fastnn_step():
        ops.dense_forward(x, w, b, "relu", out=y)
        ops.dense_backward(gy, x, w, y, "relu", grad_x=dx, grad_w=dw, grad_b=db)

    def numpy_step():
        out = np.maximum(x @ w + b, 0)
        dz = gy * (out > 0)
        return dz @ w.T, x.T @ dz, dz.sum(axis=0)

    return fastnn_step, numpy_step


def run(thread_counts=(1, 2), budget: float = 0.25, out=print) -> list[dict]:
    """Time each workload at each thread count; print a table; return its rows."""
    rows = []
    out(f"{'workload':<22} {'threads':>7} {'fastnn ms':>10} {'numpy ms':>10} {'speedup':>8} {'fastnn GFLOP/s':>15}")
    for label, batch, n_in, n_out in WORKLOADS:
        gemm_only = label.startswith("GEMM")
        flops = 2.0 * batch * n_in * n_out * (1 if gemm_only else 3)
        for n in thread_counts:
            ours, theirs = dense_cases(batch, n_in, n_out, gemm_only)
            with threads(n):
                t_ours = best_time(ours, budget)
            time.sleep(0.1)
            with _numpy_blas_limit(n):
                t_numpy = best_time(theirs, budget)
            time.sleep(0.1)
            row = {"workload": label, "threads": n, "fastnn_s": t_ours, "numpy_s": t_numpy,
                   "speedup": t_numpy / t_ours, "gflops": flops / t_ours / 1e9}
            rows.append(row)
            out(f"{label:<22} {n:>7} {t_ours * 1e3:>10.3f} {t_numpy * 1e3:>10.3f} {row['speedup']:>7.2f}x "
                f"{row['gflops']:>15.1f}")
    return rows
