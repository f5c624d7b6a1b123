"""W1, W1R, W2 of BENCHMARKS.md: seconds per epoch and train MSE after 3 epochs for fastnn
(Sequential.train_epoch), PyTorch eager and scikit-learn's MLPRegressor, 1 and 2 threads.

    python bench/train_report.py [--threads 1 2] [--no-torch] [--no-sklearn]
    python bench/train_report.py --overhead [--threads 1]

``--overhead`` measures, in one process per thread count, what the per-layer statistics
cost a W1/W2 epoch (train_epoch with statistics on against off, alternated 16 times, the
median ratio of adjacent epochs) and what DNNRegressor adds around the same epoch (its history, snapshot and
bookkeeping: the best epoch of an 8-epoch fit against the best bare train_epoch).

Each (library, workload, thread count) runs in its own process: in one process, the worker
threads another library leaves spinning (OpenMP, OpenBLAS) would steal the cores.
Speedup = the baseline's best epoch time / fastnn's best epoch time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import fastnn
from fastnn import nn, optim
from fastnn._quickbench import W_ROWS as N, w1_data


def data():
    """Exactly BENCHMARKS.md's W data (one definition, shared with ``fastnn bench``)."""
    return w1_data()


# id: (hidden units, batch size, regularized = BatchNorm + Dropout(0.2) + clip 1.0)
WORKLOADS = {"W1": ((128, 64, 32), 256, False), "W1R": ((128, 64, 32), 256, True), "W2": ((64, 32), 32, False)}


def fastnn_run(X, y, hidden, batch, reg, epochs=3):
    layers, w = [], 16
    for h in hidden:
        if reg:
            layers += [nn.Dense(w, h), nn.BatchNorm(h), nn.Activation("relu"), nn.Dropout(0.2)]
        else:
            layers.append(nn.Dense(w, h, activation="relu"))
        w = h
    layers.append(nn.Dense(w, 1))
    model = nn.Sequential(layers, seed=0)
    opt = optim.Adam(lr=1e-3)
    times = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train_epoch(X, y, batch_size=batch, optimizer=opt, clip_norm=1.0 if reg else None, seed=epoch)
        times.append(time.perf_counter() - t0)
    return min(times), float(((model.predict(X)[:, 0] - y) ** 2).mean())


def torch_run(X, y, hidden, batch, reg, epochs=3):
    import torch
    torch.manual_seed(0)
    layers, w = [], 16
    for h in hidden:
        layers.append(torch.nn.Linear(w, h))
        if reg:
            layers += [torch.nn.BatchNorm1d(h, momentum=0.01, eps=1e-3), torch.nn.ReLU(), torch.nn.Dropout(0.2)]
        else:
            layers.append(torch.nn.ReLU())
        w = h
    layers.append(torch.nn.Linear(w, 1))
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y).reshape(-1, 1)
    times = []
    for epoch in range(epochs):
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(epoch))
        t0 = time.perf_counter()
        for s in range(0, N, batch):
            idx = perm[s:s + batch]
            if reg and len(idx) == 1:
                break
            opt.zero_grad()
            loss = ((model(Xt[idx]) - yt[idx]) ** 2).mean()
            loss.backward()
            if reg:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        mse = float(((model(Xt) - yt) ** 2).mean())
    return min(times), mse


def sklearn_run(X, y, hidden, batch, reg, epochs=3):
    if reg:
        return None  # MLPRegressor has no batch norm or dropout
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    model = MLPRegressor(hidden_layer_sizes=hidden, batch_size=batch, learning_rate_init=1e-3, max_iter=1,
                         warm_start=True, shuffle=True, random_state=0, tol=0, n_iter_no_change=10 ** 9)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            t0 = time.perf_counter()
            model.fit(X, y)
            times.append(time.perf_counter() - t0)
    return min(times), float(((model.predict(X) - y) ** 2).mean())


RUNNERS = {"fastnn": fastnn_run, "torch": torch_run, "sklearn": sklearn_run}


def child(lib, name, n):
    """Run one cell in this process and print its result as JSON."""
    hidden, batch, reg = WORKLOADS[name]
    X, y = data()
    with fastnn.threads(n), threadpool_limits(n):
        if lib == "torch":
            import torch
            torch.set_num_threads(n)
        result = RUNNERS[lib](X, y, hidden, batch, reg)
    print(json.dumps(result))


def cell(lib, name, n):
    r = subprocess.run([sys.executable, __file__, "--child", lib, name, str(n)], capture_output=True, text=True)
    if r.returncode != 0:
        if "No module named" in r.stderr:
            return None
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def overhead(name, n, rounds=16):
    """(epoch seconds with statistics off, on, the median of the on/off ratios of adjacent
    epochs (pairs cancel the slow drifts of a shared machine), DNNRegressor's best epoch)."""
    hidden, batch, _ = WORKLOADS[name]
    X, y = data()
    with fastnn.threads(n):
        model = nn.Sequential([nn.Dense(w, h, activation="relu") for w, h in zip((16,) + hidden, hidden)]
                              + [nn.Dense(hidden[-1], 1)], seed=0)
        opt = optim.Adam(lr=1e-3)
        times = {True: [], False: []}
        for r in range(rounds):
            for stats in (True, False) if r % 2 else (False, True):
                t0 = time.perf_counter()
                model.train_epoch(X, y, batch_size=batch, optimizer=opt, seed=r, statistics=stats)
                times[stats].append(time.perf_counter() - t0)
        ratio = float(np.median(np.array(times[True]) / np.array(times[False])))
        est = fastnn.DNNRegressor(hidden_units=hidden, optimizer="adam", learning_rate=1e-3, batch_size=batch,
                                  epochs=rounds // 2, random_state=0).fit(X, y)
    return min(times[False]), min(times[True]), ratio, min(est.history_["time"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--overhead", action="store_true", help="cost of the statistics and of the estimator")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.overhead:
        print("| workload | threads | train_epoch, statistics off | on | statistics cost (median of pairs) | "
              "DNNRegressor epoch | estimator cost |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in ("W1", "W2"):
            for n in args.threads:
                off, on, ratio, est = overhead(name, n)
                print(f"| {name} | {n} | {off:.4f} s | {on:.4f} s | {100 * (ratio - 1):+.1f}% | {est:.4f} s | "
                      f"{100 * (est / on - 1):+.1f}% |", flush=True)
        return
    if args.child:
        lib, name, n = args.child
        child(lib, name, int(n))
        return
    cfg = fastnn.show_config(print_=False)
    print(f"fastnn {cfg['version']} ({cfg['simd_path']}), CPU {cfg['cpu']['brand']}; "
          f"seconds per epoch (best of 3), train MSE after 3 epochs in brackets; W1 floor 26 ms at Zen 5 peak")
    print("| workload | threads | fastnn | torch | sklearn | vs torch | vs sklearn |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    libs = ["fastnn"] + (["torch"] if not args.no_torch else []) + (["sklearn"] if not args.no_sklearn else [])
    for name in WORKLOADS:
        for n in args.threads:
            cells = {lib: cell(lib, name, n) for lib in libs}
            fmt = lambda c: "-" if not c else f"{c[0]:.3f} s ({c[1]:.4f})"
            ratio = lambda c: "-" if not c else f"{c[0] / cells['fastnn'][0]:.1f}x"
            print(f"| {name} | {n} | {fmt(cells['fastnn'])} | {fmt(cells.get('torch'))} | {fmt(cells.get('sklearn'))} "
                  f"| {ratio(cells.get('torch'))} | {ratio(cells.get('sklearn'))} |", flush=True)


if __name__ == "__main__":
    main()
