"""``fastnn bench``: a one-minute table of fastnn against NumPy and, when installed,
PyTorch, scikit-learn and JAX, on the reference workloads (kernels K1a, K1b, K2, K3, K5a,
the scaler S, and one W1, W1R and W2 training epoch). The W workloads are defined here
once (``W_WORKLOADS``, ``w1_data``, ``trainer``) for every benchmark that runs them.

Each library is timed as one block per workload (warm-up, then the best of several
rounds), never interleaved with another: on a small machine, one library's spinning
worker threads would otherwise steal the other's cores. Every library gets the same
thread count. The full suites, with more workloads and repetitions, live in the
repository's bench/ (pytest-benchmark) and bench/train_report.py.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fastnn import nn, ops, optim
from fastnn._config import threads

LIBRARIES = ("fastnn", "numpy", "torch", "sklearn", "jax", "jax_scan")
W_ROWS = 100_000

# The kernel workloads' shapes, defined here once (bench/workloads.py builds its suites'
# workloads from them): K1 Linear+ReLU (batch, in, out), K2 batch norm (rows, features),
# K3 dropout (rows, features, rate), K4a/K5a the MLP's layer sizes (148,481 parameters).
K_SHAPES: dict[str, tuple] = {
    "K1a": (256, 64, 128),
    "K1b": (1024, 512, 512),
    "K1c": (4096, 1024, 1024),
    "K2": (1024, 512),
    "K3": (1024, 512, 0.2),
    "MLP": (64, 256, 256, 256, 1),
}


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


def _dense_row(name, libs):
    batch, n_in, n_out = K_SHAPES[name]
    return dense_case(batch, n_in, n_out, libs)


def batchnorm_case(libs, n=K_SHAPES["K2"][0], c=K_SHAPES["K2"][1]):
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


def dropout_case(libs, n=K_SHAPES["K3"][0], c=K_SHAPES["K3"][1], rate=K_SHAPES["K3"][2]):
    x = np.random.default_rng(0).standard_normal((n, c), dtype=np.float32)
    y = np.empty_like(x)
    rng = np.random.default_rng(1)
    step = iter(range(1 << 62))
    scale = np.float32(1.0 / (1.0 - rate))
    cases = {"fastnn": lambda: ops.dropout_forward(x, rate, seed=0, step=next(step), out=y),
             "numpy": lambda: x * (rng.random(x.shape, dtype=np.float32) >= rate) * scale}
    if "torch" in libs:
        torch = _torch()
        tx = torch.from_numpy(x)
        cases["torch"] = lambda: torch.nn.functional.dropout(tx, rate, training=True)
    return cases


def adam_case(libs):
    widths = K_SHAPES["MLP"]
    sizes = [s for a, b in zip(widths[:-1], widths[1:]) for s in ((a, b), (b,))]  # K5a: 148,481 params
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


# ----------------------------------------------------------------------------- W workloads
# The training workloads, defined here once: ``fastnn bench``, the pytest-benchmark suite
# (bench/bench_train.py), bench/train_report.py and tools/smoke_test.py all use them.


@dataclass(frozen=True)
class TrainingWorkload:
    """One epoch of Adam (lr 1e-3) on the W data: 16 inputs, ``hidden`` ReLU layers, one
    output, mean squared error. ``regularized``: each hidden layer is Dense, BatchNorm,
    ReLU, Dropout(0.2), and the gradients are clipped to norm 1.0."""

    name: str
    hidden: tuple
    batch: int
    regularized: bool = False

    @property
    def title(self) -> str:
        """The benchmark group's name, e.g. "W1 epoch (16-128-64-32-1, batch 256)"."""
        widths = "-".join(str(w) for w in (16,) + self.hidden + (1,))
        return f"{self.name} epoch ({widths}, batch {self.batch}{', BN+dropout+clip' if self.regularized else ''})"


W_WORKLOADS = {
    "W1": TrainingWorkload("W1", (128, 64, 32), 256),
    "W1R": TrainingWorkload("W1R", (128, 64, 32), 256, regularized=True),
    "W2": TrainingWorkload("W2", (64, 32), 32),
}


def w1_data(rows: int = W_ROWS):
    """The W data: ``rows`` x 16 standard normal float32 features (seed 12345) and a
    nonlinear target with noise. The first ``rows`` rows of the full 100k set."""
    rng = np.random.default_rng(12345)
    X = rng.standard_normal((W_ROWS, 16), dtype=np.float32)
    eps = rng.standard_normal(W_ROWS, dtype=np.float32)
    y = (np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + np.float32(0.3) * X[:, 3] ** 2
         + np.tanh(X[:, 4] - X[:, 5]) + np.float32(0.1) * X[:, 6:16].sum(axis=1)
         + np.float32(0.1) * eps).astype(np.float32)
    return X[:rows], y[:rows]


class Unsupported(Exception):
    """A library cannot run a workload; the message says why."""


class Trainer:
    """One library training one workload: ``epoch()`` runs one epoch (a new shuffle each
    time), ``mse()`` is the training-set mean squared error now."""

    def __init__(self, epoch: Callable[[], object], mse: Callable[[], float]):
        self.epoch, self.mse = epoch, mse


def trainer(lib: str, wl: TrainingWorkload, X, y) -> Trainer:
    """A ``Trainer`` for ``lib`` ("fastnn", "torch", "sklearn", "jax": a jitted step per
    batch, or "jax_scan": the whole epoch in one jitted ``lax.scan``); raises
    ``Unsupported`` (with the reason) or ImportError (library missing)."""
    makers = {"fastnn": _fastnn_trainer, "torch": _torch_trainer, "sklearn": _sklearn_trainer, "jax": _jax_trainer,
              "jax_scan": _jax_scan_trainer}
    if lib not in makers:
        raise ValueError(f"lib must be one of {sorted(makers)}, got {lib!r}")
    return makers[lib](wl, X, y)


def _fastnn_trainer(wl, X, y):
    layers, w = [], 16
    for h in wl.hidden:
        if wl.regularized:
            layers += [nn.Dense(w, h), nn.BatchNorm(h), nn.Activation("relu"), nn.Dropout(0.2)]
        else:
            layers.append(nn.Dense(w, h, activation="relu"))
        w = h
    model = nn.Sequential(layers + [nn.Dense(w, 1)], seed=0)
    opt = optim.Adam(lr=1e-3)
    seeds = itertools.count()
    clip = 1.0 if wl.regularized else None
    return Trainer(lambda: model.train_epoch(X, y, batch_size=wl.batch, optimizer=opt, clip_norm=clip,
                                             seed=next(seeds)),
                   lambda: float(((model.predict(X)[:, 0] - y) ** 2).mean()))


def _torch_trainer(wl, X, y):
    torch = _torch()
    torch.manual_seed(0)
    layers, w = [], 16
    for h in wl.hidden:
        layers.append(torch.nn.Linear(w, h))
        if wl.regularized:
            layers += [torch.nn.BatchNorm1d(h, momentum=0.01, eps=1e-3), torch.nn.ReLU(), torch.nn.Dropout(0.2)]
        else:
            layers.append(torch.nn.ReLU())
        w = h
    model = torch.nn.Sequential(*layers, torch.nn.Linear(w, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    tX, ty = torch.from_numpy(X), torch.from_numpy(y).reshape(-1, 1)
    rows, seeds = len(X), itertools.count()

    def epoch():
        model.train()
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(next(seeds)))
        for start in range(0, rows, wl.batch):
            idx = order[start:start + wl.batch]
            if wl.regularized and len(idx) == 1:
                break  # batch norm cannot train on one row
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(tX[idx]), ty[idx]).backward()
            if wl.regularized:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    def mse():
        model.eval()
        with torch.no_grad():
            return float(((model(tX) - ty) ** 2).mean())

    return Trainer(epoch, mse)


def _sklearn_trainer(wl, X, y):
    if wl.regularized:
        raise Unsupported("scikit-learn's MLPRegressor has no batch norm or dropout")
    import warnings

    from sklearn.neural_network import MLPRegressor
    mlp = MLPRegressor(hidden_layer_sizes=wl.hidden, batch_size=wl.batch, learning_rate_init=1e-3, shuffle=True,
                       random_state=0)

    def epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlp.partial_fit(X, y)

    return Trainer(epoch, lambda: float(((mlp.predict(X) - y) ** 2).mean()))


def _jax_model(wl):
    """The plain-JAX W network: torch-like uniform init (weights and biases drawn from
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch.nn.Linear), the MSE loss and fastnn's
    Adam (lr 1e-3, betas 0.9/0.999, eps 1e-7, bias correction as optim.Adam) as one pure
    update function of (params, m, v, t, xb, yb)."""
    if wl.regularized:
        raise Unsupported("the JAX baseline (plain jax, no Flax) has no batch norm or dropout")
    import jax
    import jax.numpy as jnp

    widths = (16,) + wl.hidden + (1,)
    keys = jax.random.split(jax.random.PRNGKey(0), 2 * (len(widths) - 1))
    params = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        bound = 1.0 / np.sqrt(a)
        params.append((jax.random.uniform(keys[2 * i], (a, b), jnp.float32, -bound, bound),
                       jax.random.uniform(keys[2 * i + 1], (b,), jnp.float32, -bound, bound)))

    def predict(p, x):
        for w, b in p[:-1]:
            x = jax.nn.relu(x @ w + b)
        return (x @ p[-1][0] + p[-1][1])[:, 0]

    def loss(p, xb, yb):
        return jnp.mean((predict(p, xb) - yb) ** 2)

    def update(p, m, v, t, xb, yb):
        g = jax.grad(loss)(p, xb, yb)
        m = jax.tree_util.tree_map(lambda m_, g_: 0.9 * m_ + 0.1 * g_, m, g)
        v = jax.tree_util.tree_map(lambda v_, g_: 0.999 * v_ + 0.001 * g_ * g_, v, g)
        step_size = 1e-3 / (1 - 0.9 ** t)
        inv_sqrt_bc2 = 1 / jnp.sqrt(1 - 0.999 ** t)
        p = jax.tree_util.tree_map(lambda p_, m_, v_: p_ - step_size * m_ / (jnp.sqrt(v_) * inv_sqrt_bc2 + 1e-7),
                                   p, m, v)
        return p, m, v

    zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)
    return {"params": params, "m": zeros(), "v": zeros(), "t": 0}, update, loss


def _jax_trainer(wl, X, y):
    """JAX with one jitted step per batch, driven from Python (the usual training loop)."""
    import jax
    import jax.numpy as jnp

    state, update, loss = _jax_model(wl)
    step = jax.jit(update)
    jX, jy = jnp.asarray(X), jnp.asarray(y)
    rng = np.random.default_rng(0)

    def epoch():
        order = rng.permutation(len(X))
        p, m, v, t = state["params"], state["m"], state["v"], state["t"]
        for start in range(0, len(X), wl.batch):
            idx = order[start:start + wl.batch]
            t += 1
            p, m, v = step(p, m, v, jnp.float32(t), jX[idx], jy[idx])
        jax.block_until_ready(p)
        state.update(params=p, m=m, v=v, t=t)

    return Trainer(epoch, lambda: float(loss(state["params"], jX, jy)))


def _jax_scan_trainer(wl, X, y):
    """JAX with the whole epoch compiled: the shuffle, the gathers and every update in one
    jitted ``lax.scan`` over the full batches (the remainder rows sit the epoch out)."""
    import jax
    import jax.numpy as jnp

    state, update, loss = _jax_model(wl)
    batches = len(X) // wl.batch
    jX, jy = jnp.asarray(X), jnp.asarray(y)

    @jax.jit
    def epoch_fn(p, m, v, t, key):
        order = jax.random.permutation(key, len(X))[:batches * wl.batch].reshape(batches, wl.batch)

        def body(carry, idx):
            p, m, v, t = carry
            t = t + 1.0
            p, m, v = update(p, m, v, t, jX[idx], jy[idx])
            return (p, m, v, t), None

        (p, m, v, t), _ = jax.lax.scan(body, (p, m, v, t), order)
        return p, m, v, t

    keys = iter(jax.random.split(jax.random.PRNGKey(1), 1000))

    def epoch():
        p, m, v, t = epoch_fn(state["params"], state["m"], state["v"], jnp.float32(state["t"]), next(keys))
        jax.block_until_ready(p)
        state.update(params=p, m=m, v=v, t=t)

    epoch_fn.lower(state["params"], state["m"], state["v"], jnp.float32(0), next(keys)).compile()
    return Trainer(epoch, lambda: float(loss(state["params"], jX, jy)))


def w1_case(libs, workload="W1", rows=W_ROWS):
    """One epoch of a W workload for each of ``libs`` that can run it (``run``'s rows)."""
    X, y = w1_data(rows)
    cases = {}
    for lib in libs:
        if lib == "numpy":
            continue
        try:
            cases[lib] = trainer(lib, W_WORKLOADS[workload], X, y).epoch
        except (Unsupported, ImportError):
            continue
    return cases


# (label, maker, rounds): W1 epochs take a second or more in the baselines: fewer rounds
WORKLOADS = (
    ("K1a dense fwd+bwd 256x64->128", lambda libs: _dense_row("K1a", libs), 5),
    ("K1b dense fwd+bwd 1024x512->512", lambda libs: _dense_row("K1b", libs), 5),
    ("K2 batch norm fwd+bwd 1024x512", batchnorm_case, 5),
    ("K3 dropout(0.2) fwd 1024x512", dropout_case, 5),
    ("K5a Adam step, 148,481 params", adam_case, 5),
    ("S StandardScaler fit+transform 100k x 16", scaler_case, 3),
    ("W1 one training epoch (100k rows)", w1_case, 1),
    ("W1R one training epoch (batch norm, dropout, clipping)", lambda libs: w1_case(libs, "W1R"), 1),
    ("W2 one training epoch (batch 32)", lambda libs: w1_case(libs, "W2"), 1),
)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no affinity masks
        return max(1, os.cpu_count() or 1)


def capped_thread_counts(thread_counts) -> tuple[int, ...]:
    """``thread_counts`` without the counts above ``usable_cpus()`` (one row at that count
    instead): more threads than CPUs time the scheduler, not the library."""
    cpus = usable_cpus()
    return tuple(sorted({min(int(n), cpus) for n in thread_counts}))


def run(thread_counts=(1,), budget: float = 0.25, out=print, libraries=None, json_path=None) -> list[dict]:
    """Time every workload with each library present, at each thread count (capped at the
    CPUs this process may use); print a Markdown table (milliseconds, and each baseline's
    time over fastnn's); return the rows, and write them as JSON to ``json_path`` if given."""
    libs = [lib for lib in (libraries or LIBRARIES) if lib in ("fastnn", "numpy") or _have(lib.split("_")[0])]
    others = [lib for lib in libs if lib != "fastnn"]
    counts = capped_thread_counts(thread_counts)
    if counts != tuple(sorted(set(thread_counts))):
        out(f"(thread counts capped at the {usable_cpus()} CPU(s) this process may use: {list(counts)})\n")
    out("| workload | threads | " + " | ".join(f"{lib} ms" for lib in libs) + " | "
        + " | ".join(f"{lib} / fastnn" for lib in others) + " |")
    out("|---|---:|" + "---:|" * (len(libs) + len(others)))
    rows = []
    for label, make, rounds in WORKLOADS:
        for n in counts:
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
    if json_path is not None:
        from fastnn._config import show_config
        config = show_config(print_=False)
        report = {"fastnn_version": config["version"], "config": config,
                  "usable_cpus": usable_cpus(), "budget_s": budget, "libraries": libs, "rows": rows}
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    return rows
