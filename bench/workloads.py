"""The reference workloads of /work/shared/BENCHMARKS.md, as plain callables.

Shared by the pytest-benchmark suites (``bench_*.py``, through ``conftest.py``) and by
``report.py``, so both time exactly the same code. Nothing here imports pytest.

A *case* is one library running one workload: ``case.fn()`` is the zero-argument
callable that gets timed (all inputs and, where the API allows, all outputs are
allocated beforehand) and ``case.as_numpy(case.fn())`` turns its return value into
NumPy arrays in fastnn's layout, so every library can be checked against NumPy.

Workloads
---------
- GEMM (table "Peers on GEMM" and goal "GEMM"): ``C = A @ B`` with A (M, K), B (K, N),
  float32, written into a preallocated C. 2*M*K*N flops.
- K1a/K1b/K1c (table "K: kernel workloads"): Linear+ReLU forward and backward,
  ``y = relu(x @ w + b)``, then ``dx``, ``dw``, ``db`` from ``gy = dL/dy``.
  6*B*in*out flops (three GEMMs; the elementwise work is not counted).
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import fastnn

LIBRARIES = ("fastnn", "numpy", "torch")
"""Every workload runs on fastnn and on these two baselines (torch only when installed)."""

THREAD_COUNTS = (1, 2)
"""BENCHMARKS.md quotes 1-thread ratios first; "threads" goal: 2 threads never slower."""


# --------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Gemm:
    """``C (M, N) = A (M, K) @ B (K, N)`` in float32."""

    m: int
    k: int
    n: int

    @property
    def label(self) -> str:
        """Test id, usable in ``pytest -k``: "MxKxN"."""
        return f"{self.m}x{self.k}x{self.n}"

    @property
    def title(self) -> str:
        """Group and table name, as BENCHMARKS.md writes it: "GEMM 1024^3"."""
        if self.m == self.k == self.n:
            return f"GEMM {self.m}^3"
        return f"GEMM {self.label}"

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


@dataclass(frozen=True)
class Dense:
    """Linear+ReLU forward+backward on a batch of ``batch`` rows, ``n_in -> n_out`` units."""

    id: str
    batch: int
    n_in: int
    n_out: int

    @property
    def label(self) -> str:
        return self.id

    @property
    def title(self) -> str:
        return f"{self.id} Linear+ReLU fwd+bwd B={self.batch} {self.n_in}->{self.n_out}"

    @property
    def flops(self) -> int:
        # forward x @ w, backward dz @ w.T and x.T @ dz: three GEMMs of 2*B*in*out flops.
        return 6 * self.batch * self.n_in * self.n_out


GEMM_WORKLOADS = (
    Gemm(64, 64, 64),
    Gemm(256, 256, 256),
    Gemm(256, 64, 128),  # the shape of K1a's forward GEMM
    Gemm(1024, 512, 512),  # GEMM goal (K1b's shape)
    Gemm(1024, 1024, 1024),  # GEMM goal
)
"""M x K x N shapes: the "Peers on GEMM" table plus two small ones that show overhead."""

DENSE_WORKLOADS = (
    Dense("K1a", 256, 64, 128),
    Dense("K1b", 1024, 512, 512),
    Dense("K1c", 4096, 1024, 1024),
)
"""BENCHMARKS.md K1a-c; goal: fastnn >= 2.5x faster than torch."""


# --------------------------------------------------------------------------- data
def gemm_operands(wl: Gemm, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded float32 standard-normal A (M, K) and B (K, N), C-contiguous."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((wl.m, wl.k), dtype=np.float32)
    b = rng.standard_normal((wl.k, wl.n), dtype=np.float32)
    return a, b


def dense_operands(wl: Dense, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded float32 x (B, in), w (in, out) scaled like a Glorot-ish init, b (out,), gy (B, out)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((wl.batch, wl.n_in), dtype=np.float32)
    w = rng.standard_normal((wl.n_in, wl.n_out), dtype=np.float32)
    w *= np.float32(1.0 / np.sqrt(wl.n_in))
    b = np.float32(0.1) * rng.standard_normal(wl.n_out, dtype=np.float32)
    gy = rng.standard_normal((wl.batch, wl.n_out), dtype=np.float32)
    return x, w, b, gy


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One library on one workload: ``fn`` is what gets timed."""

    lib: str
    workload: Any
    fn: Callable[[], Any]
    as_numpy: Callable[[Any], tuple[np.ndarray, ...]]
    names: tuple[str, ...]  # the names of the results, for error messages


def _identity(results):
    return tuple(results)


def _torch_to_numpy(results):
    return tuple(t.detach().numpy() for t in results)


def gemm_case(lib: str, wl: Gemm, torch=None, seed: int = 0) -> Case:
    """GEMM with preallocated output: fastnn ``dense_forward`` (linear, no bias, ``out=``),
    ``np.matmul(a, b, out=c)`` or ``torch.mm(a, b, out=c)``."""
    a, b = gemm_operands(wl, seed)
    c = np.empty((wl.m, wl.n), dtype=np.float32)
    if lib == "fastnn":
        dense_forward = fastnn.ops.dense_forward

        def fn():
            return (dense_forward(a, b, out=c),)

        return Case(lib, wl, fn, _identity, ("c",))
    if lib == "numpy":
        matmul = np.matmul

        def fn():
            return (matmul(a, b, out=c),)

        return Case(lib, wl, fn, _identity, ("c",))
    if lib == "torch":
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        mm = torch.mm

        def fn():
            return (mm(ta, tb, out=tc),)

        return Case(lib, wl, fn, _torch_to_numpy, ("c",))
    raise ValueError(f"unknown library {lib!r}, expected one of {LIBRARIES}")


def dense_case(lib: str, wl: Dense, torch=None, seed: int = 0) -> Case:
    """Linear+ReLU forward+backward (dx, dw, db), returning ``(y, dx, dw, db)``.

    - fastnn: ``dense_forward(x, w, b, "relu", out=y)`` then ``dense_backward`` into
      preallocated ``grad_x``, ``grad_w``, ``grad_b``.
    - numpy: the composite a NumPy user writes, ``y = np.maximum(x @ w + b, 0)``,
      ``dz = gy * (y > 0)``, ``dx = dz @ w.T``, ``dw = x.T @ dz``, ``db = dz.sum(0)``
      (it allocates its temporaries, as that code does).
    - torch: ``relu(F.linear(x, W, b))`` with W of shape (out, in) as ``nn.Linear`` keeps
      it, and ``torch.autograd.grad`` for the backward: exactly forward+backward, with no
      ``.grad`` accumulation or zeroing in the timed region. Inputs are leaf tensors made
      once; autograd allocates the gradients (it has no ``out=``).
    """
    x, w, b, gy = dense_operands(wl, seed)
    names = ("y", "dx", "dw", "db")
    if lib == "fastnn":
        dense_forward, dense_backward = fastnn.ops.dense_forward, fastnn.ops.dense_backward
        y = np.empty((wl.batch, wl.n_out), dtype=np.float32)
        dx = np.empty_like(x)
        dw = np.empty_like(w)
        db = np.empty_like(b)

        def fn():
            dense_forward(x, w, b, "relu", out=y)
            g = dense_backward(gy, x, w, out=y, activation="relu", need_grad_x=True, bias=True,
                               grad_x=dx, grad_w=dw, grad_b=db)
            return y, g.dx, g.dw, g.db

        return Case(lib, wl, fn, _identity, names)
    if lib == "numpy":
        def fn():
            y = np.maximum(x @ w + b, 0)
            dz = gy * (y > 0)
            return y, dz @ w.T, x.T @ dz, dz.sum(0)

        return Case(lib, wl, fn, _identity, names)
    if lib == "torch":
        F = torch.nn.functional
        with torch.no_grad():  # build the leaves; nothing here is recorded
            tx = torch.from_numpy(x).requires_grad_(True)
            tw = torch.from_numpy(np.ascontiguousarray(w.T)).requires_grad_(True)  # (out, in)
            tb = torch.from_numpy(b).requires_grad_(True)
            tgy = torch.from_numpy(gy)
        grad = torch.autograd.grad

        def fn():
            y = F.relu(F.linear(tx, tw, tb))
            dx, dw, db = grad(y, (tx, tw, tb), tgy)
            return y, dx, dw, db

        def as_numpy(results):
            y, dx, dw, db = _torch_to_numpy(results)
            return y, dx, dw.T, db  # torch's dw is (out, in)

        return Case(lib, wl, fn, as_numpy, names)
    raise ValueError(f"unknown library {lib!r}, expected one of {LIBRARIES}")


def make_case(lib: str, wl, torch=None, seed: int = 0) -> Case:
    """The case for any workload."""
    return (gemm_case if isinstance(wl, Gemm) else dense_case)(lib, wl, torch, seed)


# --------------------------------------------------------------------------- checks
@functools.lru_cache(maxsize=4)
def numpy_reference(wl, seed: int = 0) -> tuple[np.ndarray, ...]:
    """NumPy's float32 results for a workload (cached: K1c's take a fraction of a second)."""
    case = make_case("numpy", wl, seed=seed)
    return tuple(np.array(r, copy=True) for r in case.as_numpy(case.fn()))


def check_against_numpy(case: Case, results, rtol: float = 1e-2) -> None:
    """Raise AssertionError unless every result is within ``rtol`` of NumPy's (norm-wise).

    A sanity check, not a test of accuracy (tests/ does that): it catches a benchmark
    that times a wrong or empty computation. Hence norm-wise and loose: where ``z`` lies
    within rounding of 0 the ReLU mask may differ between libraries, and each such entry
    moves K1c's dx by ~1e-3 of its norm; a wrong computation is off by O(1).
    """
    if case.lib == "numpy":
        return
    want = numpy_reference(case.workload)
    got = case.as_numpy(results)
    for name, g, r in zip(case.names, got, want):
        if g.shape != r.shape:
            raise AssertionError(f"{case.lib} {case.workload.title}: {name} has shape {g.shape}, NumPy's {r.shape}")
        err = float(np.linalg.norm(g.astype(np.float64) - r)) / max(float(np.linalg.norm(r.astype(np.float64))), 1e-30)
        if not err <= rtol:
            raise AssertionError(f"{case.lib} {case.workload.title}: {name} differs from NumPy's "
                                 f"by {err:.2e} (norm-wise relative) > {rtol}")


# --------------------------------------------------------------------------- threads
@contextlib.contextmanager
def limit_threads(n: int, torch=None) -> Iterator[int]:
    """Run the block with ``n`` threads in fastnn (``fastnn.threads``), NumPy's BLAS
    (threadpoolctl) and, when given, torch (``torch.set_num_threads``); restore after."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(fastnn.threads(n))
        stack.enter_context(threadpool_limits(n, user_api="blas"))
        if torch is not None:
            previous = torch.get_num_threads()
            torch.set_num_threads(n)
            stack.callback(torch.set_num_threads, previous)
        yield n


# --------------------------------------------------------------------------- environment
def numpy_blas() -> dict:
    """threadpoolctl's record of the BLAS NumPy runs (its OpenBLAS kernel: "architecture")."""
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    for info in blas:  # prefer the library shipped in numpy's own wheel
        if os.path.basename(os.path.dirname(info.get("filepath", ""))).startswith("numpy"):
            return info
    for info in blas:
        if info.get("filepath", "").startswith(numpy_dir):
            return info
    return blas[0] if blas else {}


def describe_environment(torch=None) -> dict:
    """What a reader needs to trust a number: CPU, SIMD path, BLAS kernels, versions."""
    cfg = fastnn.show_config(print_=False)
    blas = numpy_blas()
    env = {
        "cpu_brand": cfg["cpu"]["brand"],
        "cpu_avx512f": cfg["cpu"].get("avx512f"),
        "logical_cpus": os.cpu_count(),
        "fastnn_version": cfg["version"],
        "fastnn_simd_path": cfg["simd_path"],
        "fastnn_simd_forced_by_env": cfg["simd_forced_by_env"],
        "fastnn_gemm_tile": f"{cfg['gemm_tile']['mr']}x{cfg['gemm_tile']['nr']}",
        "numpy_version": np.__version__,
        "numpy_blas": blas.get("internal_api"),
        "numpy_blas_version": blas.get("version"),
        "openblas_architecture": blas.get("architecture"),
        "numpy_blas_threading": blas.get("threading_layer"),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "torch_version": None,
    }
    if torch is not None:
        env["torch_version"] = torch.__version__
        env["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        env["torch_mkl"] = torch.backends.mkl.is_available()
    return env


# --------------------------------------------------------------------------- load
class BackgroundLoad:
    """CPU time used by *other* processes (and stolen by the hypervisor) over an interval,
    in cores: the share of the machine this run did not get. Linux only (/proc/stat);
    elsewhere ``read()`` gives None. The machine is shared: a number measured while this
    is well above 0 (a 2-thread one above all) is not to be quoted."""

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        mine = os.times()
        return ((user + nice + system + irq + softirq) / tick, steal / tick,
                mine.user + mine.system, time.perf_counter())

    def read(self) -> tuple[float, float] | None:
        """(cores used by other processes, cores stolen by the hypervisor) since creation."""
        end = self._sample()
        if self._start is None or end is None:
            return None
        busy, steal, mine, wall = (e - s for e, s in zip(end, self._start))
        return max(0.0, busy - mine) / wall, steal / wall


# --------------------------------------------------------------------------- pytest
def thread_cases(workload_list) -> list:
    """pytest parameters ``(workload, n_threads)``: one benchmark group per workload and
    thread count, holding every library. For ``@pytest.mark.parametrize("workload,n_threads",
    ..., indirect=["n_threads"])``: the ``n_threads`` fixture of conftest.py applies it."""
    import pytest  # only the suites need pytest; report.py does not

    return [
        pytest.param(wl, n, id=f"{wl.label}-{n}thr",
                     marks=pytest.mark.benchmark(group=f"{wl.title}, {n} thread{'s' * (n > 1)}"))
        for wl in workload_list
        for n in THREAD_COUNTS
    ]
