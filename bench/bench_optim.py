"""Gradient clipping and optimizer steps: fastnn vs NumPy composite vs torch, float32.

BENCHMARKS.md workloads K4a/K4b (clip by global norm over the gradients of an MLP
64-256-256-256-1, 148,481 params, and of 20 x Linear(512, 512), 5,253,120 params; goal:
fastnn >= 3x faster than torch) and K5a/K5b (one Adam / Adagrad step over the MLP's
148,481 params; goal: >= 1.5x faster than torch fused and >= 4x torch default), at 1 and
2 threads. See ``workloads.clip_case`` and ``workloads.optim_case``.

K4 has four groups per model: "norm only" (max_norm far above the norm: fastnn and NumPy
only read) and "clipping" (every call scales: max_norm shrinks with the data), each with
fastnn and NumPy holding the gradients as per-layer arrays or as one flat buffer (how
fastnn models keep them). torch clips its model's per-parameter ``.grad`` tensors in every
group and always multiplies (no branch). K5: fastnn and NumPy on one flat buffer; torch
``optimizer.step()`` over the per-parameter tensors with the default implementation (the
single-tensor for-loop on CPU), ``foreach=True`` and ``fused=True``.

``extra_info`` holds GB/s (bytes: K4 4 per param, 12 when clipping; Adam 28, Adagrad 20)
and its percentage of the 40 GB/s single-core copy bandwidth.
Run: ``python -m pytest bench/bench_optim.py --benchmark-only -q`` (see conftest.py).
"""
import pytest

from workloads import CLIP_WORKLOADS, OPTIM_WORKLOADS, OptimStep, make_case, thread_cases

STEP_WORKLOADS = tuple(wl for wl in OPTIM_WORKLOADS if isinstance(wl, OptimStep))

# Calls take 10 µs-10 ms: 0.2 s per benchmark is thousands of rounds for the small ones.
clip_cases = pytest.mark.parametrize("workload,n_threads", thread_cases(CLIP_WORKLOADS, max_time=0.2),
                                     indirect=["n_threads"])
step_cases = pytest.mark.parametrize("workload,n_threads", thread_cases(STEP_WORKLOADS, max_time=0.2),
                                     indirect=["n_threads"])


@clip_cases
def test_clip_fastnn(measure, workload, n_threads):
    measure(make_case("fastnn", workload))


@clip_cases
def test_clip_numpy(measure, workload, n_threads):
    measure(make_case("numpy", workload))


@clip_cases
def test_clip_torch(measure, workload, n_threads, torch):
    measure(make_case("torch", workload, torch))


@step_cases
def test_step_fastnn(measure, workload, n_threads):
    measure(make_case("fastnn", workload))


@step_cases
def test_step_numpy(measure, workload, n_threads):
    measure(make_case("numpy", workload))


@step_cases
@pytest.mark.parametrize("variant", ["torch", "torch-foreach", "torch-fused"])
def test_step_torch(measure, workload, n_threads, variant, torch):
    measure(make_case(variant, workload, torch))
