"""Print the table the team quotes: fastnn vs NumPy vs torch on the BENCHMARKS.md workloads.

Usage, from the repository root::

    python bench/report.py [--quick] [--threads 1 2] [--no-torch] [--only gemm|dense]
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/report.py   # NumPy's best kernel

Workloads (see workloads.py and /work/shared/BENCHMARKS.md): GEMM at 64^3, 256^3,
256x64x128, 1024x512x512 and 1024^3 ("Peers on GEMM", goal "GEMM"), and Linear+ReLU
forward+backward K1a, K1b, K1c (goal: >= 2.5x torch), at 1 and 2 threads.

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
from workloads import DENSE_WORKLOADS, GEMM_WORKLOADS, THREAD_COUNTS  # noqa: E402

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


def header(env: dict, settings: dict, quick: bool) -> str:
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
                     f"MKL {'yes' if env['torch_mkl'] else 'no'}")
    else:
        lines.append("- torch: not installed (torch columns omitted)")
    lines += [
        f"- timing: best of up to {settings['repeats']} blocks of >= {settings['min_block_s'] * 1e3:.0f} ms "
        f"after {settings['warmup_s'] * 1e3:.0f} ms warm-up; each library timed as its own block, "
        f"{PAUSE_S:.1f} s pause between libraries",
        "- cells: time per call (GFLOP/s); GEMM counts 2*M*K*N flops, K1 6*B*in*out (its three GEMMs)",
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
    parser.add_argument("--only", choices=("gemm", "dense"), help="run one family of workloads")
    args = parser.parse_args(argv)

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    libs = [lib for lib in workloads.LIBRARIES if lib != "torch" or torch is not None]

    if args.quick:
        settings = dict(repeats=3, min_block_s=0.01, warmup_s=0.02, max_total_s=0.5)
    else:
        settings = dict(repeats=10, min_block_s=0.05, warmup_s=0.2, max_total_s=3.0)

    chosen = {"gemm": GEMM_WORKLOADS, "dense": DENSE_WORKLOADS}
    workload_list = [wl for family, wls in chosen.items() if args.only in (None, family) for wl in wls]

    env = workloads.describe_environment(torch)
    print(header(env, settings, args.quick), flush=True)

    columns = ["workload", "threads", "fastnn", "NumPy"]
    if torch is not None:
        columns.append("torch")
    columns.append("vs NumPy")
    if torch is not None:
        columns.append("vs torch")
    columns.append("other load")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|", flush=True)

    for wl in workload_list:
        for n in args.threads:
            workloads.numpy_reference(wl)  # the check's reference, computed before any pause
            best = {}
            load = workloads.BackgroundLoad()
            for lib in libs:
                time.sleep(PAUSE_S)
                best[lib] = measure(lib, wl, n, torch, settings)
            row = [wl.title, str(n)] + [fmt_cell(best[lib], wl.flops) for lib in libs]
            row.append(fmt_ratio(best["numpy"], best["fastnn"]))
            if torch is not None:
                row.append(fmt_ratio(best["torch"], best["fastnn"]))
            row.append(fmt_load(load.read()))
            print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
