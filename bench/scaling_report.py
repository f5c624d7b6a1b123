"""The numbers of docs/scaling.md: compute per step, bytes allreduced per step, a
ring-allreduce cost model, and the measured 2-rank loopback efficiency of
``fastnn.distributed.fit`` next to the model's prediction for loopback.

    python bench/scaling_report.py [--ranks 2 [4 8 ...]] [--json FILE]

needs mpi4py and an ``mpiexec`` (``pip install mpi4py mpich``). It runs, every process
with ONE thread (OMP_NUM_THREADS=1, ``num_threads=1``):

1. here: the per-step compute time of W1 (16-128-64-32-1, ReLU, batch 256, Adam, MSE; the
   data of BENCHMARKS.md) and of W1 widened to 1024-unit layers (16-1024-1024-1024-1),
   with ``Sequential.train_epoch`` (the benchmarks' path: the whole epoch in the core),
   at batch 256 and at 256 / p (one rank's part of a global batch of 256);
2. ``mpiexec -n 1`` and ``mpiexec -n p`` (p in ``--ranks``, default 2) of this file with
   ``--worker``: the epoch time of ``fastnn.distributed.fit`` on the same global work
   (W1: one epoch of 100,000 rows = 391 steps; wide: 32 steps of 256 rows), best of 3
   epochs, slowest rank; on p ranks also a ping-pong between ranks 0 and 1 (loopback
   latency and bandwidth), the time of the actual Allreduce of each model's gradient
   buffer, and the compute of 256 / p rows measured on all ranks at once.

The model: one step on p ranks costs ``compute(batch / p) + allreduce(p)`` with the ring
``allreduce(p) = 2 (p - 1) / p * bytes / bandwidth + 2 (p - 1) * latency`` (no overlap:
the one Allreduce follows the backward pass). Efficiency = T(1) / (p * T(p)) for a fixed
global batch (strong scaling); with a fixed per-rank batch (weak scaling, global batch
256 p) it is ``compute / (compute + allreduce(p))``. Benchmarks record, they never assert.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = {"W1": (128, 64, 32), "W1-wide": (1024, 1024, 1024)}
BATCH = 256
STEPS = {"W1": None, "W1-wide": 32}  # None: the full epoch of 100,000 rows
NETWORKS = {  # name: (bandwidth bytes/s, latency s): line rate, typical MPI latency
    "10 Gbit/s Ethernet (TCP, 25 us)": (10e9 / 8, 25e-6),
    "100 Gbit/s (RDMA, 2 us)": (100e9 / 8, 2e-6),
}
NODES = (2, 8, 64)


def w1_data():
    from fastnn._quickbench import w1_data as data
    return data()


def n_params(hidden, n_in=16, n_out=1):
    widths = (n_in, *hidden, n_out)
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def ring_allreduce(nbytes, p, bandwidth, latency):
    """Seconds for a ring Allreduce of ``nbytes`` over ``p`` ranks."""
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency if p > 1 else 0.0


# ----------------------------------------------------------------------------- 1. compute


def compute_per_step(hidden, batch, steps, repeats=3):
    """Best seconds per step of ``Sequential.train_epoch`` (1 thread) over ``steps`` batches."""
    import fastnn
    from fastnn import nn, optim
    X, y = w1_data()
    layers, w = [], 16
    for h in hidden:
        layers.append(nn.Dense(w, h, activation="relu"))
        w = h
    layers.append(nn.Dense(w, 1))
    model = nn.Sequential(layers, seed=0)
    opt = optim.Adam(lr=1e-3)
    best = np.inf
    with fastnn.threads(1):
        model.train_epoch(X, y, batch_size=batch, optimizer=opt, seed=0, max_batches=2, statistics=False)
        for r in range(repeats):
            t0 = time.perf_counter()
            res = model.train_epoch(X, y, batch_size=batch, optimizer=opt, seed=r + 1, max_batches=steps,
                                    statistics=False)
            best = min(best, (time.perf_counter() - t0) / res.steps)
    return best


# ----------------------------------------------------------------------------- 2. MPI worker


def worker():
    from mpi4py import MPI

    import fastnn
    from fastnn import distributed
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    fastnn.set_num_threads(1)
    X, y = w1_data()
    out = {"size": size, "mpi": MPI.Get_library_version().splitlines()[0].strip()}
    if size >= 2:
        out["pingpong"] = pingpong(comm)
    for name, hidden in MODELS.items():
        rows = X.shape[0] if STEPS[name] is None else BATCH * STEPS[name]
        reg = fastnn.DNNRegressor(hidden_units=hidden, optimizer="adam", learning_rate=1e-3, batch_size=BATCH,
                                  epochs=3, random_state=0, num_threads=1)
        distributed.fit(reg, X[:rows], y[:rows], statistics=False)
        epoch = comm.allreduce(min(reg.history_["time"]), op=MPI.MAX)
        steps = -(-rows // BATCH)
        res = {"rows": rows, "steps": steps, "epoch_s": epoch, "step_s": epoch / steps,
               "bytes": distributed.allreduce_bytes(reg.model_)}
        if size > 1:
            res["allreduce_s"] = time_allreduce(comm, reg.model_.grads.copy())
            # the compute of one rank's part while every rank computes (shared cores, caches,
            # memory bandwidth): train_epoch at batch 256 / size on all ranks at once
            comm.Barrier()
            alone_steps = 100 if STEPS[name] is None else min(STEPS[name], 16)
            res["concurrent_compute_s"] = comm.allreduce(compute_per_step(hidden, BATCH // size, alone_steps),
                                                         op=MPI.MAX)
        out[name] = res
    if rank == 0:
        print("SCALING-JSON " + json.dumps(out), flush=True)


def pingpong(comm):
    """Loopback latency (half the round trip of 8 bytes) and bandwidth (8 MiB one way)."""
    rank = comm.Get_rank()
    res = {}
    for label, nbytes, reps in (("small", 8, 2000), ("large", 8 << 20, 40)):
        buf = np.zeros(nbytes, np.uint8)
        best = np.inf
        for _ in range(3):
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(reps if rank < 2 else 0):  # ranks 0 and 1; the others wait
                if rank == 0:
                    comm.Send(buf, dest=1)
                    comm.Recv(buf, source=1)
                else:
                    comm.Recv(buf, source=0)
                    comm.Send(buf, dest=0)
            best = min(best, (time.perf_counter() - t0) / reps / 2)
        res[label] = best
    latency = res["small"]
    return {"latency_s": latency, "bandwidth_Bps": (8 << 20) / max(res["large"] - latency, 1e-12),
            "one_way_8MiB_s": res["large"]}


def time_allreduce(comm, buf, reps=50):
    from mpi4py import MPI
    times = []
    for _ in range(reps):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ----------------------------------------------------------------------------- driver


def mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    exe = str(here) if here.exists() else shutil.which("mpiexec") or shutil.which("mpirun")
    if exe is None:
        sys.exit("no mpiexec: pip install mpi4py mpich")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    extra = ["-launcher", "fork"] if "HYDRA" in version else ["--oversubscribe"]
    return [exe, *extra]


def run_worker(n):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(mpiexec() + ["-n", str(n), sys.executable, __file__, "--worker"], capture_output=True,
                          text=True, env=env, timeout=900)
    if proc.returncode:
        sys.exit(f"mpiexec -n {n} failed:\n{proc.stdout}\n{proc.stderr}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("SCALING-JSON "))
    return json.loads(line[len("SCALING-JSON "):])


def report(args):
    import fastnn
    cfg = fastnn.show_config(print_=False)
    ranks = sorted(set(args.ranks))
    compute = {}
    for name, hidden in MODELS.items():
        steps = 100 if STEPS[name] is None else STEPS[name]
        compute[name] = {"params": n_params(hidden),
                         **{f"step_{BATCH // p}_s": compute_per_step(hidden, BATCH // p, steps) for p in (1, *ranks)}}
    one = run_worker(1)
    many = {p: run_worker(p) for p in ranks}
    pp = many[ranks[0]]["pingpong"]
    lat, bw = pp["latency_s"], pp["bandwidth_Bps"]
    ms = lambda s: f"{s * 1e3:.3f}"
    print(f"fastnn {cfg['version']} ({cfg['simd_path']}), {cfg['cpu']['brand']}, {os.cpu_count()} CPUs, 1 thread "
          f"per process; {one['mpi']}\n")
    print("## Compute per step and bytes per Allreduce (1 rank, 1 thread)\n")
    print("| model | parameters | bytes allreduced per step | train_epoch ms/step, batch 256 | "
          + " | ".join(f"batch {BATCH // p}" for p in ranks) + " | distributed.fit ms/step, 1 rank, batch 256 |")
    print("|---|---:|---:|---:|" + "---:|" * len(ranks) + "---:|")
    for name in MODELS:
        c = compute[name]
        print(f"| {name} {'-'.join(map(str, (16, *MODELS[name], 1)))} | {c['params']:,} | {4 * c['params']:,} | "
              + " | ".join(ms(c[f"step_{BATCH // p}_s"]) for p in (1, *ranks)) + f" | {ms(one[name]['step_s'])} |")
    print("\n## Ring-allreduce model: ms per Allreduce, and predicted efficiency\n")
    print("compute = train_epoch ms/step at batch 256 on 1 thread. Weak scaling (256 rows per node, global batch "
          "256 p): compute / (compute + allreduce). Strong scaling (global batch 256): compute / (compute + p "
          "allreduce), taking compute(256 / p) = compute(256) / p.\n")
    print("| model | network | p | allreduce ms | weak-scaling efficiency | strong-scaling efficiency |")
    print("|---|---|---:|---:|---:|---:|")
    model_rows = []
    for name in MODELS:
        c = compute[name]
        nbytes = 4 * c["params"]
        for net, (b, l) in NETWORKS.items():
            for p in NODES:
                ar = ring_allreduce(nbytes, p, b, l)
                weak = c["step_256_s"] / (c["step_256_s"] + ar)
                strong = c["step_256_s"] / (c["step_256_s"] + p * ar)
                model_rows.append((name, net, p, ar, weak, strong))
                print(f"| {name} | {net} | {p} | {ms(ar)} | {weak:.1%} | {strong:.1%} |")
    print(f"\n## Loopback on this machine (ping-pong: latency {lat * 1e6:.2f} us, bandwidth {bw / 1e9:.2f} GB/s)\n")
    print("Same global work (batch 256) on 1 rank and on p ranks. Predicted step on p ranks = compute(256 / p) + "
          "the 1-rank loop's overhead per step (distributed.fit minus train_epoch at 256) + ring allreduce(p) "
          "with the ping-pong latency and bandwidth; compute(256 / p) measured alone, and measured on every "
          "rank at once (shared caches, memory bandwidth, cores).\n")
    print("| model | p | allreduce ms: model | measured | compute ms alone | all ranks at once | step ms 1 rank | "
          "p ranks | efficiency measured | predicted (alone) | predicted (at once) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    loop = {}
    for name in MODELS:
        c = compute[name]
        t1 = one[name]["step_s"]
        overhead = max(t1 - c["step_256_s"], 0.0)
        for p in ranks:
            r = many[p][name]
            ar_model = ring_allreduce(r["bytes"], p, bw, lat)
            alone, together = c[f"step_{BATCH // p}_s"], r["concurrent_compute_s"]
            tp = r["step_s"]
            pred_alone = t1 / (p * (alone + overhead + ar_model))
            pred_together = t1 / (p * (together + overhead + ar_model))
            loop[f"{name}/{p}"] = {"allreduce_model_s": ar_model, "allreduce_measured_s": r["allreduce_s"],
                                   "compute_alone_s": alone, "compute_together_s": together, "step_1_s": t1,
                                   "step_p_s": tp, "efficiency": t1 / (p * tp), "predicted_alone": pred_alone,
                                   "predicted_together": pred_together}
            print(f"| {name} | {p} | {ms(ar_model)} | {ms(r['allreduce_s'])} | {ms(alone)} | {ms(together)} | "
                  f"{ms(t1)} | {ms(tp)} | {t1 / (p * tp):.1%} | {pred_alone:.1%} | {pred_together:.1%} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": cfg, "compute": compute, "one_rank": one,
                                               "ranks": {str(p): v for p, v in many.items()}, "model": model_rows,
                                               "loopback": loop}, indent=1, default=str))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the raw numbers to this file")
    parser.add_argument("--ranks", type=int, nargs="+", default=[2],
                        help="rank counts to measure on this machine besides 1 (default: 2)")
    args = parser.parse_args()
    if args.worker:
        worker()
    else:
        report(args)


if __name__ == "__main__":
    main()
