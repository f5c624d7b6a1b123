"""``fastnn bench``: a one-minute table of fastnn against NumPy and, when installed,
PyTorch and scikit-learn, on BENCHMARKS.md's workloads (kernels K1a, K1b, K2, K3, K5a,
the scaler S, and one W1 and one W2 training epoch).

Each library is timed as one block per workload (warm-up, then the best of several
rounds), never interleaved with another: on a small machine, one library's spinning
worker threads would otherwise steal the other's cores. Every library gets the same
thread count. The full suites, with more workloads and repetitions, live in the
repository's bench/ (pytest-benchmark) and bench/train_report.py.
"""
from __future__ import annotations

import importlib.util
import time
from typing import Callable

import numpy as np

from fastnn import nn, ops, optim
from fastnn._config import threads

LIBRARIES = ("fastnn", "numpy", "torch", "sklearn")
W_ROWS = 100_000


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


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _limits(n: int):
    """NumPy's BLAS (and OpenMP pools of other libraries) pinned to n threads."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(n)


def _torch():
    import torch
    return torch


# ----------------------------------------------------------------------------- workloads
# Each returns {library: callable} for the libraries that can run it.


def dense_case(batch, n_in, n_out, libs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    w = rng.standard_normal((n_in, n_out), dtype=np.float32) / np.float32(np.sqrt(n_in))
    b = rng.standard_normal(n_out, dtype=np.float32)
    gy = rng.standard_normal((batch, n_out), dtype=np.float32)
    y = np.empty((batch, n_out), np.float32)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)

    def fastnn_step():
        ops.dense_forward(x, w, b, "relu", out=y)
        ops.dense_backward(gy, x, w, y, "relu", grad_x=dx, grad_w=dw, grad_b=db)

    def numpy_step():
        out = np.maximum(x @ w + b, 0)
        dz = gy * (out > 0)
        return dz @ w.T, x.T @ dz, dz.sum(axis=0)

    cases = {"fastnn": fastnn_step, "numpy": numpy_step}
    if "torch" in libs:
        torch = _torch()
        layer = torch.nn.Linear(n_in, n_out)
        tx = torch.from_numpy(x).requires_grad_()
        tg = torch.from_numpy(gy)

        def torch_step():
            layer.zero_grad(set_to_none=True)
            tx.grad = None
            torch.relu(layer(tx)).backward(tg)

        cases["torch"] = torch_step
    return cases


def batchnorm_case(libs, n=1024, c=512):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c), dtype=np.float32)
    gy = rng.standard_normal((n, c), dtype=np.float32)
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)

    def fastnn_step():
        f = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=True)
        ops.batchnorm_backward(gy, x, gamma, f.mean, f.invstd)

    def numpy_step():
        mean = x.mean(axis=0)
        invstd = 1 / np.sqrt(x.var(axis=0) + 1e-3)
        xhat = (x - mean) * invstd
        y = gamma * xhat + beta
        dxhat = gy * gamma
        dx = invstd * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
        return y, dx, (gy * xhat).sum(axis=0), gy.sum(axis=0)

    cases = {"fastnn": fastnn_step, "numpy": numpy_step}
    if "torch" in libs:
        torch = _torch()
        bn = torch.nn.BatchNorm1d(c, eps=1e-3)
        tx = torch.from_numpy(x).requires_grad_()
        tg = torch.from_numpy(gy)

        def torch_step():
            bn.zero_grad(set_to_none=True)
            tx.grad = None
            bn(tx).backward(tg)

        cases["torch"] = torch_step
    return cases


def dropout_case(libs, n=1024, c=512):
    x = np.random.default_rng(0).standard_normal((n, c), dtype=np.float32)
    y = np.empty_like(x)
    rng = np.random.default_rng(1)
    step = iter(range(1 << 62))
    cases = {"fastnn": lambda: ops.dropout_forward(x, 0.2, seed=0, step=next(step), out=y),
             "numpy": lambda: x * (rng.random(x.shape, dtype=np.float32) >= 0.2) * np.float32(1.25)}
    if "torch" in libs:
        torch = _torch()
        tx = torch.from_numpy(x)
        cases["torch"] = lambda: torch.nn.functional.dropout(tx, 0.2, training=True)
    return cases


def adam_case(libs):
    sizes = [(64, 256), (256,), (256, 256), (256,), (256, 256), (256,), (256, 1), (1,)]  # K5a: 148,481 params
    n = int(sum(np.prod(s) for s in sizes))
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    opt = optim.Adam(lr=1e-3)
    m, v = np.zeros_like(p), np.zeros_like(p)
    t = [0]

    def numpy_step():
        t[0] += 1
        m[...] = 0.9 * m + 0.1 * g
        v[...] = 0.999 * v + 0.001 * g * g
        p[...] -= 1e-3 / (1 - 0.9 ** t[0]) * m / (np.sqrt(v / (1 - 0.999 ** t[0])) + 1e-7)

    cases = {"fastnn": lambda: opt.step(p, g), "numpy": numpy_step}
    if "torch" in libs:
        torch = _torch()
        params = [torch.nn.Parameter(torch.from_numpy(rng.standard_normal(s, dtype=np.float32))) for s in sizes]
        for q in params:
            q.grad = torch.ones_like(q)
        try:
            topt = torch.optim.Adam(params, lr=1e-3, fused=True)
        except (RuntimeError, TypeError):
            topt = torch.optim.Adam(params, lr=1e-3)
        cases["torch"] = topt.step
    return cases


def scaler_case(libs, rows=W_ROWS, cols=16):
    from fastnn.preprocessing import StandardScaler
    X = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
    cases = {"fastnn": lambda: StandardScaler().fit(X).transform(X),
             "numpy": lambda: (X - X.mean(axis=0)) / X.std(axis=0)}
    if "sklearn" in libs:
        from sklearn.preprocessing import StandardScaler as SkStandardScaler
        cases["sklearn"] = lambda: SkStandardScaler().fit(X).transform(X)
    return cases


def w1_data():
    """BENCHMARKS.md's W data."""
    rng = np.random.default_rng(12345)
    X = rng.standard_normal((W_ROWS, 16), dtype=np.float32)
    eps = rng.standard_normal(W_ROWS, dtype=np.float32)
    y = (np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + np.float32(0.3) * X[:, 3] ** 2
         + np.tanh(X[:, 4] - X[:, 5]) + np.float32(0.1) * X[:, 6:16].sum(axis=1)
         + np.float32(0.1) * eps).astype(np.float32)
    return X, y


def w1_case(libs, hidden=(128, 64, 32), batch=256):
    """One epoch of W1 (or, with its hidden sizes and batch, W2): fastnn's train_epoch,
    a PyTorch eager loop with Adam, scikit-learn's MLPRegressor.partial_fit."""
    X, y = w1_data()
    widths = (16,) + hidden
    model = nn.Sequential([nn.Dense(a, b, activation="relu") for a, b in zip(widths, hidden)]
                          + [nn.Dense(hidden[-1], 1)], seed=0)
    opt = optim.Adam(lr=1e-3)
    seeds = iter(range(1 << 62))
    cases = {"fastnn": lambda: model.train_epoch(X, y, batch_size=batch, optimizer=opt, seed=next(seeds))}
    if "torch" in libs:
        torch = _torch()
        layers = []
        for a, b in zip(widths, hidden):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        net = torch.nn.Sequential(*layers, torch.nn.Linear(hidden[-1], 1))
        topt = torch.optim.Adam(net.parameters(), lr=1e-3)
        tX, ty = torch.from_numpy(X), torch.from_numpy(y).reshape(-1, 1)

        def torch_epoch():
            order = torch.randperm(W_ROWS)
            for start in range(0, W_ROWS, batch):
                idx = order[start:start + batch]
                topt.zero_grad(set_to_none=True)
                torch.nn.functional.mse_loss(net(tX[idx]), ty[idx]).backward()
                topt.step()

        cases["torch"] = torch_epoch
    if "sklearn" in libs:
        import warnings

        from sklearn.neural_network import MLPRegressor
        mlp = MLPRegressor(hidden_layer_sizes=hidden, batch_size=batch, learning_rate_init=1e-3, random_state=0)

        def sklearn_epoch():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mlp.partial_fit(X, y)

        cases["sklearn"] = sklearn_epoch
    return cases


# (label, maker, rounds): W1 epochs take a second or more in the baselines: fewer rounds
WORKLOADS = (
    ("K1a dense fwd+bwd 256x64->128", lambda libs: dense_case(256, 64, 128, libs), 5),
    ("K1b dense fwd+bwd 1024x512->512", lambda libs: dense_case(1024, 512, 512, libs), 5),
    ("K2 batch norm fwd+bwd 1024x512", batchnorm_case, 5),
    ("K3 dropout(0.2) fwd 1024x512", dropout_case, 5),
    ("K5a Adam step, 148,481 params", adam_case, 5),
    ("S StandardScaler fit+transform 100k x 16", scaler_case, 3),
    ("W1 one training epoch (100k rows)", w1_case, 1),
    ("W2 one training epoch (batch 32)", lambda libs: w1_case(libs, hidden=(64, 32), batch=32), 1),
)


def run(thread_counts=(1,), budget: float = 0.25, out=print, libraries=None) -> list[dict]:
    """Time every workload with each library present, at each thread count; print a
    Markdown table (milliseconds, and each baseline's time over fastnn's); return rows."""
    libs = [lib for lib in (libraries or LIBRARIES) if lib in ("fastnn", "numpy") or _have(lib)]
    others = [lib for lib in libs if lib != "fastnn"]
    out("| workload | threads | " + " | ".join(f"{lib} ms" for lib in libs) + " | "
        + " | ".join(f"{lib} / fastnn" for lib in others) + " |")
    out("|---|---:|" + "---:|" * (len(libs) + len(others)))
    rows = []
    for label, make, rounds in WORKLOADS:
        for n in thread_counts:
            cases = make(libs)
            times = {}
            for lib in libs:
                if lib not in cases:
                    continue
                if lib == "torch":
                    _torch().set_num_threads(n)  # its own pool, besides the OpenMP one threadpoolctl pins
                with threads(n) if lib == "fastnn" else _limits(n):
                    times[lib] = best_time(cases[lib], budget if rounds > 1 else 0.0, rounds=rounds)
                time.sleep(0.05)
            row = {"workload": label, "threads": n, **{f"{lib}_s": t for lib, t in times.items()}}
            rows.append(row)
            cell = lambda lib: f"{times[lib] * 1e3:.3f}" if lib in times else "-"
            ratio = lambda lib: f"{times[lib] / times['fastnn']:.1f}x" if lib in times else "-"
            out(f"| {label} | {n} | " + " | ".join(cell(lib) for lib in libs) + " | "
                + " | ".join(ratio(lib) for lib in others) + " |")
    return rows
