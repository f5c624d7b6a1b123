"""W1, W1R, W2 (fastnn._quickbench.W_WORKLOADS): seconds per epoch and train MSE after 3 epochs for fastnn
(Sequential.train_epoch), JAX (the whole epoch as one jitted lax.scan, and a jitted step per
batch), PyTorch eager and scikit-learn's MLPRegressor, 1 and 2 threads, in rounds.

    python bench/train_report.py [--threads 1 2] [--rounds 3] [--no-torch] [--no-sklearn] [--no-jax]
    python bench/train_report.py --overhead [--threads 1]

Each cell runs pinned (taskset) to the first n CPUs of this process's affinity mask; JAX's
XLA pool is limited to one thread at n = 1 (XLA_FLAGS, fixed when jax is imported). The
libraries take turns within each round and every cell keeps its best round.

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

import numpy as np
from threadpoolctl import threadpool_limits

import fastnn
from fastnn import nn, optim
from fastnn._quickbench import W_WORKLOADS, Unsupported, trainer, w1_data


def data():
    """The W data (defined once, in fastnn._quickbench, with the workloads)."""
    return w1_data()


WORKLOADS = W_WORKLOADS


def run_cell(lib, name, epochs=3):
    """(best epoch seconds, train MSE after ``epochs`` epochs), or None when ``lib`` cannot
    run the workload (scikit-learn and JAX have no W1R)."""
    X, y = data()
    try:
        t = trainer(lib, W_WORKLOADS[name], X, y)
    except Unsupported:
        return None
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        t.epoch()
        times.append(time.perf_counter() - t0)
    return min(times), t.mse()


def child(lib, name, n):
    """Run one cell in this process and print its result as JSON."""
    with fastnn.threads(n), threadpool_limits(n):
        if lib == "torch":
            import torch
            torch.set_num_threads(n)
        result = run_cell(lib, name)
    print(json.dumps(result))


def cell(lib, name, n):
    import os
    cpus = sorted(os.sched_getaffinity(0))[-n:]
    env = dict(os.environ)
    if lib.startswith("jax") and n == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    r = subprocess.run(["taskset", "-c", ",".join(map(str, cpus)), sys.executable, __file__, "--child", lib, name,
                        str(n)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        if "No module named" in r.stderr:
            return None
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def overhead(name, n, rounds=16):
    """(epoch seconds with statistics off, on, the median of the on/off ratios of adjacent
    epochs (pairs cancel the slow drifts of a shared machine), DNNRegressor's best epoch)."""
    hidden, batch = WORKLOADS[name].hidden, WORKLOADS[name].batch
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
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every cell, best kept")
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
    print(f"fastnn {cfg['version']} ({cfg['simd_path']} path), CPU {cfg['cpu']['brand']}; seconds per epoch "
          f"(best of {args.rounds} rounds of 3 epochs), train MSE after 3 epochs in brackets")
    libs = ["fastnn"] + ([] if args.no_jax else ["jax_scan", "jax"]) + ([] if args.no_torch else ["torch"]) \
        + ([] if args.no_sklearn else ["sklearn"])
    names = {"fastnn": "fastnn", "jax_scan": "JAX scan", "jax": "JAX step", "torch": "torch", "sklearn": "sklearn"}
    others = libs[1:]
    print("| workload | threads | " + " | ".join(names[lib] for lib in libs) + " | "
          + " | ".join(f"{names[lib]} / fastnn" for lib in others) + " |")
    print("|---|---:|" + "---:|" * (len(libs) + len(others)))
    for name in WORKLOADS:
        for n in args.threads:
            cells = {}
            for _ in range(args.rounds):
                for lib in libs:
                    c = cell(lib, name, n)
                    if c is not None and (lib not in cells or c[0] < cells[lib][0]):
                        cells[lib] = c
            fmt = lambda c: "-" if not c else f"{c[0]:.3f} s ({c[1]:.4f})"
            ratio = lambda c: "-" if not c else f"{c[0] / cells['fastnn'][0]:.2f}x"
            print(f"| {name} | {n} | " + " | ".join(fmt(cells.get(lib)) for lib in libs) + " | "
                  + " | ".join(ratio(cells.get(lib)) for lib in others) + " |", flush=True)


if __name__ == "__main__":
    main()
