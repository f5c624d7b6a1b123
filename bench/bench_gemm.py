"""GEMM throughput: fastnn vs NumPy (OpenBLAS) vs torch (MKL), float32, 1 and 2 threads.

BENCHMARKS.md, table "Peers on GEMM" and goal "GEMM" (>= 0.95x OpenBLAS-SkylakeX and
>= 2x torch at 1024^3 and 1024x512x512). ``C = A @ B`` into a preallocated C:
fastnn ``dense_forward(a, b, out=c)`` (activation "linear", no bias), ``np.matmul(a, b,
out=c)``, ``torch.mm(a, b, out=c)``. GFLOP/s (2*M*K*N / time) is in ``extra_info``.
Run: ``python -m pytest bench/bench_gemm.py --benchmark-only -q`` (see conftest.py).
"""
import pytest

from workloads import GEMM_WORKLOADS, gemm_case, thread_cases

cases = pytest.mark.parametrize("workload,n_threads", thread_cases(GEMM_WORKLOADS), indirect=["n_threads"])


@cases
def test_gemm_fastnn(measure, workload, n_threads):
    measure(gemm_case("fastnn", workload))


@cases
def test_gemm_numpy(measure, workload, n_threads):
    measure(gemm_case("numpy", workload))


@cases
def test_gemm_torch(measure, workload, n_threads, torch):
    measure(gemm_case("torch", workload, torch))
