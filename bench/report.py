"""Print the table the team quotes: fastnn vs NumPy vs torch on the BENCHMARKS.md workloads.

Usage, from the repository root::

    python bench/report.py [--quick] [--threads 1 2] [--no-torch] [--only gemm|dense|layers|optim]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/report.py   # NumPy's best kernel

Workloads (see workloads.py and /work/shared/BENCHMARKS.md), at 1 and 2 threads, by family:

- gemm: GEMM at 64^3, 256^3, 256x64x128, 1024x512x512 and 1024^3 ("Peers on GEMM", goal
  "GEMM"), through ``fastnn.ops.dense_forward`` and, as "fastnn kernel", through
  ``_core.gemm`` (the kernel without the Python-side checks); dense: Linear+ReLU
  forward+backward K1a, K1b, K1c (goal: >= 2.5x torch). One table, cells "time (GFLOP/s)".
  The GEMM table alone, at one thread, with NumPy's best OpenBLAS kernel::

      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/report.py --only gemm --threads 1
- layers: K2 BatchNorm1d training fwd+bwd, K3 Dropout(0.2) training fwd.
- optim: K4a/K4b clip by global norm (norm only / clipping, per-layer arrays / one flat
  buffer), K5a Adam and K5b Adagrad steps (torch: default, foreach=True, fused=True).
  layers and optim are memory-bound: one table each, with fastnn's GB/s (bytes each call
  must read and write / time) and its percentage of the ~40 GB/s single-core copy
  bandwidth of BENCHMARKS.md.

Plain timing, no pytest: for each workload and thread count, each library runs as one
block (warm-up, then best of N timed blocks), with a pause between libraries. Never
interleave fastnn and NumPy calls: on a 2-core machine each library's worker threads keep
spinning after a call and would steal the other's core. Each library's result is checked
against NumPy's before it is timed (a sanity check, not a test). The last column says how
much CPU other processes took while a row ran: the machine is shared.

Speedup = baseline time / fastnn time: above 1 means fastnn is faster. The machine is
shared and noisy: quote ratios from one run, 1-thread ratios first (BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workloads.py, when run from anywhere

import workloads  # noqa: E402
from workloads import COPY_BANDWIDTH_GBS, FAMILIES, LIBRARY_ORDER, THREAD_COUNTS  # noqa: E402

FLOP_FAMILIES = ("gemm", "dense")
"""Families whose table shows GFLOP/s (the original one-table report)."""

LIB_TITLES = {"fastnn": "fastnn", "fastnn-kernel": "fastnn kernel", "numpy": "NumPy", "torch": "torch", "torch-foreach": "torch foreach",
              "torch-fused": "torch fused"}

PAUSE_S = 0.3
"""Sleep between library blocks: lets the previous library's spinning workers go idle."""


def time_block(fn, *, repeats: int, min_block_s: float, warmup_s: float, max_total_s: float) -> float:
    """Best seconds per call of ``fn``: warm up for ``warmup_s`` (at least 2 calls), then
    time ``repeats`` blocks of enough calls to last ``min_block_s`` each and keep the fastest
    block. Slow workloads get fewer blocks (at least 3) so that one library stays under
    ``max_total_s``."""
    start = time.perf_counter()
    calls = 0
    while calls < 2 or time.perf_counter() - start < warmup_s:
        fn()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    inner = max(1, math.ceil(min_block_s / per_call))
    repeats = max(3, min(repeats, int(max_total_s / (inner * per_call))))
    best = math.inf
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            best = min(best, (time.perf_counter() - t0) / inner)
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


def measure(lib, wl, n_threads, torch, settings) -> float:
    """Best seconds per call of one library on one workload at ``n_threads``."""
    case = workloads.make_case(lib, wl, torch)
    with workloads.limit_threads(n_threads, torch):
        workloads.check_against_numpy(case, case.fn())
        return time_block(case.fn, **settings)


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def fmt_cell(seconds, flops) -> str:
    if seconds is None:
        return "-"
    return f"{fmt_time(seconds)} ({flops / seconds / 1e9:.1f})"


def fmt_load(load) -> str:
    if load is None:
        return "-"
    other, stolen = load
    return f"{other:.2f}" + (f" (+{stolen:.2f} stolen)" if stolen >= 0.05 else "")


def fmt_ratio(baseline, fastnn_s) -> str:
    if baseline is None or fastnn_s is None:
        return "-"
    return f"{baseline / fastnn_s:.2f}x"


def header(env: dict, settings: dict, quick: bool, families, rounds: int) -> str:
    coretype = env["OPENBLAS_CORETYPE"] or "unset"
    l2 = env["OPENBLAS_L2_SIZE"] or "unset"
    lines = [
        f"## fastnn benchmark report ({datetime.datetime.now():%Y-%m-%d %H:%M}{', --quick' if quick else ''})",
        "",
        f"- CPU: {env['cpu_brand']}, {env['logical_cpus']} logical CPUs, "
        f"AVX-512: {'yes' if env['cpu_avx512f'] else 'no'}",
        f"- fastnn {env['fastnn_version']}: SIMD path **{env['fastnn_simd_path']}**"
        f"{' (forced by FASTNN_SIMD)' if env['fastnn_simd_forced_by_env'] else ''}, "
        f"GEMM tile {env['fastnn_gemm_tile']}",
        f"- NumPy {env['numpy_version']}: {env['numpy_blas']} {env['numpy_blas_version']}, "
        f"kernel **{env['openblas_architecture']}** ({env['numpy_blas_threading']}); "
        f"OPENBLAS_CORETYPE={coretype}, OPENBLAS_L2_SIZE={l2}",
    ]
    if env["OPENBLAS_CORETYPE"] or env["OPENBLAS_L2_SIZE"]:
        lines.append("  (OpenBLAS kernel choice overridden by the environment; for NumPy's best run "
                     "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/report.py`)")
    if env["torch_version"]:
        lines.append(f"- torch {env['torch_version']}: CPU capability {env['torch_cpu_capability']}, "
                     f"MKL {'yes' if env['torch_mkl'] else 'no'}"
                     + (f"; torch.optim default on CPU: {env['torch_optim_default_cpu']}" if "optim" in families else ""))
    else:
        lines.append("- torch: not installed (torch columns omitted)")
    lines += [
        f"- timing: best of up to {settings['repeats']} blocks of >= {settings['min_block_s'] * 1e3:.0f} ms "
        f"after {settings['warmup_s'] * 1e3:.0f} ms warm-up; each library timed as its own block, "
        f"{PAUSE_S:.1f} s pause between libraries, {rounds} round(s) of every library per row (best kept)",
    ]
    if any(f in FLOP_FAMILIES for f in families):
        lines.append("- GEMM/K1 cells: time per call (GFLOP/s); GEMM counts 2*M*K*N flops, K1 6*B*in*out "
                     "(its three GEMMs)")
    if any(f not in FLOP_FAMILIES for f in families):
        lines += [
            f"- K2-K5 cells: time per call; fastnn GB/s = bytes per call / time, each array read or written "
            f"once (K2 5*N*C*4, K3 8.125 B/element with the bit mask, K4 4 B/param or 12 when clipping, "
            f"Adam 28 B/param, Adagrad 20); % of {COPY_BANDWIDTH_GBS:g} GB/s = BENCHMARKS.md's single-core "
            f"copy bandwidth. Working sets (0.6-21 MB) sit in L2/L3: above 100% is possible",
        ]
    if "optim" in families:
        lines += [
            "- K4 'clipping' rows scale every call (max_norm shrinks with the gradients), 'norm only' rows "
            "never (max_norm 1e6); fastnn/NumPy hold per-layer arrays or one flat buffer as the row says, "
            "torch always its model's per-parameter .grad tensors and always multiplies (no branch)",
            "- K5: fastnn/NumPy on one flat buffer; torch optimizer.step() on per-parameter tensors",
        ]
    lines += [
        "- speedup = baseline time / fastnn time (> 1: fastnn faster)",
        "- other load: cores busy with other processes (or stolen) while the row ran; "
        "distrust rows where it is well above 0",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter timing blocks (a smoke run)")
    parser.add_argument("--threads", type=int, nargs="+", default=list(THREAD_COUNTS),
                        help="thread counts to run (default: 1 2)")
    parser.add_argument("--no-torch", action="store_true", help="skip torch even when it is installed")
    parser.add_argument("--only", choices=tuple(FAMILIES), help="run one family of workloads")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time each row's libraries this many times in turn and keep each one's best: "
                             "on a shared machine every library then meets the quiet moments (default 1)")
    parser.add_argument("--block-ms", type=float, default=None,
                        help="length of one timed block in ms (default 50, --quick 10): short blocks with "
                             "several rounds dodge other processes' time slices")
    args = parser.parse_args(argv)

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None

    if args.quick:
        settings = dict(repeats=3, min_block_s=0.01, warmup_s=0.02, max_total_s=0.5)
    else:
        settings = dict(repeats=10, min_block_s=0.05, warmup_s=0.2, max_total_s=3.0)
    if args.block_ms is not None:
        settings["min_block_s"] = args.block_ms / 1e3
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    families = [family for family in FAMILIES if args.only in (None, family)]
    env = workloads.describe_environment(torch)
    print(header(env, settings, args.quick, families, args.rounds), flush=True)

    flop_workloads = [wl for family in families if family in FLOP_FAMILIES for wl in FAMILIES[family]]
    if flop_workloads:
        flop_table(flop_workloads, args.threads, torch, settings, args.rounds)
    for family in families:
        if family not in FLOP_FAMILIES:
            bandwidth_table(family, FAMILIES[family], args.threads, torch, settings, args.rounds)
    return 0


def available(libs, torch) -> list[str]:
    """The libraries of ``libs`` that can run: torch's only when torch is imported."""
    return [lib for lib in libs if not lib.startswith("torch") or torch is not None]


def time_row(wl, n, libs, torch, settings, rounds) -> tuple[dict, tuple | None]:
    """Best seconds per call of each library on one workload over ``rounds`` turns (each
    library a block of its own per turn), and the background load."""
    workloads.numpy_reference(wl)  # the check's reference, computed before any pause
    best = {}
    load = workloads.BackgroundLoad()
    for _ in range(rounds):
        for lib in libs:
            time.sleep(PAUSE_S)
            best[lib] = min(best.get(lib, math.inf), measure(lib, wl, n, torch, settings))
    return best, load.read()


def print_row(cells) -> None:
    print("| " + " | ".join(cells) + " |", flush=True)


def print_columns(columns) -> None:
    print_row(columns)
    print("|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|", flush=True)


def flop_table(workload_list, thread_counts, torch, settings, rounds) -> None:
    """GEMM and K1: fastnn, NumPy, torch as "time (GFLOP/s)" and the speedups; GEMM rows
    also time fastnn's kernel alone (``_core.gemm``), and its speedup over NumPy."""
    libs = available([lib for lib in LIBRARY_ORDER if any(lib in workloads.libraries(wl) for wl in workload_list)],
                     torch)
    baselines = [lib for lib in libs if not lib.startswith("fastnn")]
    print("### GEMM and K1 (Linear+ReLU fwd+bwd)\n")
    columns = ["workload", "threads"] + [LIB_TITLES[lib] for lib in libs]
    columns += [f"vs {LIB_TITLES[lib]}" for lib in baselines]
    kernel_column = "fastnn-kernel" in libs and "numpy" in libs
    if kernel_column:
        columns.append("kernel vs NumPy")
    print_columns(columns + ["other load"])
    for wl in workload_list:
        for n in thread_counts:
            runs = [lib for lib in libs if lib in workloads.libraries(wl)]
            best, load = time_row(wl, n, runs, torch, settings, rounds)
            row = [wl.title, str(n)] + [fmt_cell(best.get(lib), wl.flops) for lib in libs]
            row += [fmt_ratio(best.get(lib), best["fastnn"]) for lib in baselines]
            if kernel_column:
                row.append(fmt_ratio(best.get("numpy"), best.get("fastnn-kernel")))
            row.append(fmt_load(load))
            print_row(row)
    print(flush=True)


def bandwidth_table(family, workload_list, thread_counts, torch, settings, rounds) -> None:
    """A memory-bound family (K2-K5): every library's time, fastnn's GB/s and its share
    of the copy bandwidth, and the speedups over each baseline."""
    libs = [lib for lib in LIBRARY_ORDER if any(lib in workloads.libraries(wl) for wl in workload_list)]
    libs = available(libs, torch)
    ids = ", ".join(dict.fromkeys(wl.id for wl in workload_list))
    print(f"### {family} ({ids})\n")
    columns = ["workload", "threads"] + [LIB_TITLES[lib] for lib in libs]
    columns += ["fastnn GB/s", f"% of {COPY_BANDWIDTH_GBS:g} GB/s"]
    columns += [f"vs {LIB_TITLES[lib]}" for lib in libs if lib != "fastnn"] + ["other load"]
    print_columns(columns)
    for wl in workload_list:
        for n in thread_counts:
            runs = [lib for lib in libs if lib in workloads.libraries(wl)]
            best, load = time_row(wl, n, runs, torch, settings, rounds)
            fastnn_s = best.get("fastnn")
            row = [wl.title, str(n)] + [fmt_time(best[lib]) if lib in best else "-" for lib in libs]
            if fastnn_s is None:
                row += ["-", "-"]
            else:
                gbs = wl.bytes / fastnn_s / 1e9
                row += [f"{gbs:.1f}", f"{100 * gbs / COPY_BANDWIDTH_GBS:.0f}%"]
            row += [fmt_ratio(best.get(lib), fastnn_s) for lib in libs if lib != "fastnn"]
            row.append(fmt_load(load))
            print_row(row)
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
