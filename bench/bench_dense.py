"""Linear+ReLU forward+backward: fastnn vs NumPy composite vs torch autograd, float32.

BENCHMARKS.md workloads K1a (B=256, 64->128), K1b (B=1024, 512->512) and K1c
(B=4096, 1024->1024); goal: fastnn >= 2.5x faster than torch. Each call is one forward
``y = relu(x @ w + b)`` and one backward giving dx, dw and db (see ``workloads.dense_case``
for exactly what each library runs). GFLOP/s (6*B*in*out / time) is in ``extra_info``.
Run: ``python -m pytest bench/bench_dense.py --benchmark-only -q`` (see conftest.py).
"""
import pytest

from workloads import DENSE_WORKLOADS, QUICK, dense_case, thread_cases

# K1c takes a few hundred ms a call: a fixed, small number of rounds keeps the suite short.
PEDANTIC = {"K1c": dict(rounds=1 if QUICK else 3, iterations=1, warmup_rounds=1)}

cases = pytest.mark.parametrize("workload,n_threads", thread_cases(DENSE_WORKLOADS), indirect=["n_threads"])


@cases
def test_dense_relu_fastnn(measure, workload, n_threads):
    measure(dense_case("fastnn", workload), PEDANTIC.get(workload.id))


@cases
def test_dense_relu_numpy(measure, workload, n_threads):
    measure(dense_case("numpy", workload), PEDANTIC.get(workload.id))


@cases
def test_dense_relu_torch(measure, workload, n_threads, torch):
    measure(dense_case("torch", workload, torch), PEDANTIC.get(workload.id))
