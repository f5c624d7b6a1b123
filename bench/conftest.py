"""Shared fixtures for fastnn's pytest-benchmark suites. The workloads are defined in
workloads.py (kernels: GEMM, K1-K5) and in fastnn._quickbench (training epochs W1, W1R,
W2, also run by ``fastnn bench``); docs/performance.md shows the results.

Run from the repository root (pyproject's ``testpaths`` is ``tests``, so name ``bench/``)::

    python -m pytest bench/ --benchmark-only -q
    FASTNN_BENCH_QUICK=1 python -m pytest bench/ --benchmark-only -q   # under two minutes

Compare two saved runs::

    python -m pytest bench/ --benchmark-only --benchmark-save=before
    ...                                                   # change something
    python -m pytest bench/ --benchmark-only --benchmark-save=after
    pytest-benchmark compare 0001 0002 --group-by=group --columns=min,median,rounds

NumPy with its best OpenBLAS kernel (the kernel it ran is recorded in each benchmark's ``extra_info`` and machine info)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench/ --benchmark-only -q

Useful pytest-benchmark options: ``--benchmark-save=NAME`` / ``--benchmark-compare``,
``--benchmark-json=FILE`` (keeps ``extra_info``: GFLOP/s, threads, SIMD path, OpenBLAS
kernel), ``-k gemm``. The plain-timing table the team quotes is ``python bench/report.py``.

Benchmarks record, they never assert speed. Each group (``@pytest.mark.benchmark(group=...)``)
holds fastnn, NumPy and torch (K5: torch's default, foreach and fused optimizers) on one
workload and one thread count, so the table's relative column reads as the ratio between
them. torch benchmarks are skipped when torch is not installed. Suites: bench_gemm.py
(GEMM), bench_dense.py (K1), bench_layers.py (K2 batch norm, K3 dropout), bench_optim.py
(K4 clipping, K5 Adam/Adagrad), bench_preprocessing.py (S scalers), bench_train.py (W1,
W1R, W2 epochs against PyTorch, scikit-learn and JAX); ``-k K4a`` or ``-k 1thr`` pick by test id.

Collection: benchmark modules are named ``bench_*.py`` (never ``test_*.py``, so they cannot
clash with same-named modules in tests/); ``pytest_collect_file`` below collects them
whenever pytest is pointed at this folder. No pytest.ini here: the repository's
pyproject settings (``--strict-markers``, ``filterwarnings = ["error"]``) apply.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

# The bench modules and report.py share workloads.py; make it importable under any
# --import-mode (the default "prepend" already puts this folder on sys.path).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import workloads  # noqa: E402

PAUSE_S = 0.25
"""Sleep before each benchmark so the previous library's worker threads stop spinning
(OpenBLAS workers spin for tens of ms after a call; on 2 cores they would steal one)."""


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Quick mode (``FASTNN_BENCH_QUICK=1``, workloads.QUICK): at most 0.02 s and one
    round per benchmark, after pytest-benchmark has read its command-line options."""
    session = getattr(config, "_benchmarksession", None)
    if workloads.QUICK and session is not None:
        from pytest_benchmark.utils import SecondsDecimal
        session.options.update(max_time=SecondsDecimal(0.02), min_rounds=1, min_time=SecondsDecimal(0.000005))


def pytest_collect_file(file_path, parent):
    """Collect ``bench_*.py`` in this folder as test modules (their functions are ``test_*``).

    A file named on the command line is already collected by pytest itself, whatever its
    name: leave it alone then, or each benchmark would run twice.
    """
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the CPU brand, fastnn's SIMD path and NumPy's OpenBLAS kernel with the run."""
    machine_info["fastnn_bench"] = workloads.describe_environment(sys.modules.get("torch"))


@pytest.fixture(scope="session")
def torch():
    """The torch module, or skip the benchmark when torch is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture
def n_threads(request):
    """Thread count (parametrized indirectly), applied for the whole benchmark to fastnn
    (``fastnn.threads``), NumPy's BLAS (threadpoolctl) and torch when the test uses it."""
    n = request.param
    torch_module = request.getfixturevalue("torch") if "torch" in request.fixturenames else None
    with workloads.limit_threads(n, torch_module):
        yield n


@pytest.fixture(scope="session")
def environment():
    """describe_environment() once per session: CPU brand, SIMD path, OpenBLAS kernel."""
    return workloads.describe_environment()


@pytest.fixture
def measure(benchmark, n_threads, environment):
    """``measure(case, pedantic=None)``: pause, warm up, check the result against NumPy's,
    time ``case.fn`` with pytest-benchmark, and record ``extra_info``.

    ``pedantic``: keyword arguments for ``benchmark.pedantic`` (slow workloads), else the
    automatic calibration of ``benchmark(...)`` is used.

    ``extra_info`` holds GFLOP/s for the workloads that count flops (GEMM, K1) and, for
    those that count bytes (K2-K5, memory-bound), GB/s and its percentage of
    the single-core copy bandwidth (``workloads.COPY_BANDWIDTH_GBS``).
    """

    def run(case, pedantic=None):
        info = benchmark.extra_info
        wl = case.workload
        flops, nbytes = getattr(wl, "flops", None), getattr(wl, "bytes", None)
        info.update(
            lib=case.lib,
            workload=wl.title,
            threads=n_threads,
            simd_path=environment["fastnn_simd_path"],
            openblas_architecture=environment["openblas_architecture"],
            cpu_brand=environment["cpu_brand"],
        )
        if flops:
            info["flops"] = flops
        if nbytes:
            info["bytes"] = nbytes
        time.sleep(PAUSE_S)
        # Warm-up (thread pools, caches, lazy initialisation); its results are copied at
        # once, as the stateful workloads (optimizers, clipping) overwrite them in place.
        results = workloads.snapshot(case, case.fn())
        load = workloads.BackgroundLoad()
        if pedantic is None:
            benchmark(case.fn)
        else:
            benchmark.pedantic(case.fn, **pedantic)
        other = load.read()  # CPU other processes took meanwhile: the machine is shared
        if other is not None:
            info["other_load_cores"], info["stolen_cores"] = round(other[0], 2), round(other[1], 2)
        # Checked after timing, so a wrong result fails the test (never an unused fixture).
        workloads.check_results(case, results)
        stats = benchmark.stats  # None under --benchmark-disable
        if stats:
            if flops:
                info["gflops_median"] = round(flops / stats.stats.median / 1e9, 2)
                info["gflops_best"] = round(flops / stats.stats.min / 1e9, 2)
            if nbytes:
                gbs = nbytes / stats.stats.median / 1e9
                info["gbytes_per_s_median"] = round(gbs, 2)
                info["gbytes_per_s_best"] = round(nbytes / stats.stats.min / 1e9, 2)
                info[f"pct_of_{workloads.COPY_BANDWIDTH_GBS:g}GBs_median"] = round(
                    100 * gbs / workloads.COPY_BANDWIDTH_GBS, 1)

    return run
