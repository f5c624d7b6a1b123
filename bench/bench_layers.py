"""Batch norm and dropout layers: fastnn vs NumPy composite vs torch, float32, 1 and 2 threads.

BENCHMARKS.md workloads K2 (BatchNorm1d training forward+backward, N=1024, C=512; goal:
fastnn >= 2x faster than torch) and K3 (Dropout(0.2) training forward, N=1024, C=512;
goal: >= 15x faster than torch). See ``workloads.batchnorm_case`` and
``workloads.dropout_case`` for exactly what each library runs. Both are memory-bound:
``extra_info`` holds GB/s (every array read or written once per call: 5 x N x C x 4 bytes
for K2, 8.125 bytes per element for K3) and its percentage of the 40 GB/s single-core
copy bandwidth; the data (2 MiB per array) stays in L2/L3, so above 100% is possible.
Dropout results are checked by their drop fraction and survivor scale, not against NumPy.
Run: ``python -m pytest bench/bench_layers.py --benchmark-only -q`` (see conftest.py).
"""
import pytest

from workloads import LAYER_WORKLOADS, make_case, thread_cases

# Calls take 0.1-10 ms: 0.25 s per benchmark gives 25-2500 rounds and keeps the suite short.
cases = pytest.mark.parametrize("workload,n_threads", thread_cases(LAYER_WORKLOADS, max_time=0.25),
                                indirect=["n_threads"])


@cases
def test_layer_fastnn(measure, workload, n_threads):
    measure(make_case("fastnn", workload))


@cases
def test_layer_numpy(measure, workload, n_threads):
    measure(make_case("numpy", workload))


@cases
def test_layer_torch(measure, workload, n_threads, torch):
    measure(make_case("torch", workload, torch))
