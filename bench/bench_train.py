"""Training epochs W1, W1R and W2 (fastnn._quickbench.W_WORKLOADS, the one definition):
fastnn's ``Sequential.train_epoch`` against a PyTorch eager loop, scikit-learn's
``MLPRegressor.partial_fit``, a jitted JAX step per batch and a JAX epoch compiled as one
``lax.scan`` (``jax_scan``), each in the group of its workload and
thread count. A library that is not installed is skipped with the reason; so is one that
cannot run a workload (scikit-learn and the plain-JAX baseline have no batch norm or
dropout, so no W1R). JAX's XLA thread pool is fixed when jax is imported: its rows record
``threads_limited=False``.

Run: ``python -m pytest bench/bench_train.py --benchmark-only -q`` (see conftest.py; with
``FASTNN_BENCH_QUICK=1`` on 20,000 rows, one round, one thread count).
"""
import pytest

from fastnn._quickbench import W_WORKLOADS, Unsupported, trainer, w1_data
from workloads import QUICK, THREAD_COUNTS

ROWS = 20_000 if QUICK else 100_000
# The warm-up epoch runs before the timing (below), so the MSE check has a trained start.
PEDANTIC = dict(rounds=1 if QUICK else 3, iterations=1, warmup_rounds=0)
LIBS = ("fastnn", "torch", "sklearn", "jax", "jax_scan")

cases = pytest.mark.parametrize(
    "workload,n_threads",
    [pytest.param(wl, n, id=f"{name}-{n}thr") for name, wl in W_WORKLOADS.items() for n in THREAD_COUNTS],
    indirect=["n_threads"])


@cases
@pytest.mark.parametrize("lib", LIBS)
def test_train_epoch(benchmark, request, lib, workload, n_threads):
    if lib != "fastnn":
        pytest.importorskip({"sklearn": "sklearn.neural_network", "jax_scan": "jax"}.get(lib, lib))
    if lib == "torch":
        request.getfixturevalue("torch").set_num_threads(n_threads)
    benchmark.group = f"{workload.title}, {n_threads} thread{'s' * (n_threads > 1)}"
    X, y = w1_data(ROWS)
    try:
        t = trainer(lib, workload, X, y)
    except Unsupported as exc:
        pytest.skip(str(exc))
    t.epoch()  # warm-up: JIT compilation, thread pools, first allocations
    before = t.mse()
    benchmark.extra_info.update(lib=lib, workload=workload.name, rows=ROWS, threads=n_threads,
                                threads_limited=not lib.startswith("jax"))
    benchmark.pedantic(t.epoch, **PEDANTIC)
    after = t.mse()
    benchmark.extra_info.update(mse_before=round(before, 5), mse_after=round(after, 5))
    assert after < before, f"{lib} did not train: MSE {before} -> {after}"
