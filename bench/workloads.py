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
- K2 (family "layers"): BatchNorm1d training forward+backward, N=1024, C=512.
- K3 (family "layers"): Dropout(0.2) training forward, N=1024, C=512.
- K4a/K4b (family "optim"): clip by global norm over the gradients of an MLP
  64-256-256-256-1 (148,481 params) and of 20 x Linear(512, 512) (5,253,120 params),
  each as per-layer arrays and as one flat buffer, with and without clipping.
- K5a/K5b (family "optim"): one Adam / Adagrad step on the MLP's 148,481 params.

GEMM and K1 count flops (``workload.flops``); K2-K5 are memory-bound and count bytes
(``workload.bytes``: every read and write of each array fastnn's call must make, once).
Their GB/s is compared with BENCHMARKS.md's single-core copy bandwidth
(``COPY_BANDWIDTH_GBS``); their working sets (2-21 MB) fit in this CPU's L2/L3, so a
value above 100% is possible and means "cache-resident", not a bad count.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import fastnn
from fastnn._quickbench import K_SHAPES, usable_cpus

LIBRARIES = ("fastnn", "numpy", "torch")
"""Every GEMM/K1 workload runs on fastnn and on these two baselines (torch only when
installed). K2-K5 name their own (``libraries(wl)``): one more fastnn layout or torch
implementation where the workload has one."""

LIBRARY_ORDER = ("fastnn", "fastnn-kernel", "numpy", "torch", "torch-foreach", "torch-fused")
"""Every library name a case builder knows, in the order tables print them. "torch-*" are
torch with ``foreach=True`` / ``fused=True`` optimizers (they need torch, like "torch").
"fastnn-kernel" is the GEMM kernel alone through ``_core.gemm`` (no Python-side
validation): next to "fastnn" it shows how much of a small GEMM is call overhead."""

COPY_BANDWIDTH_GBS = 40.0
"""BENCHMARKS.md "physical limits": single-core memory (copy) bandwidth, GB/s."""

QUICK = os.environ.get("FASTNN_BENCH_QUICK", "") not in ("", "0")
"""Quick mode (``FASTNN_BENCH_QUICK=1``): the whole pytest-benchmark suite in under two
minutes: one thread count, smaller scaler data, one round of the slow workloads, and a
short time budget per benchmark (conftest.py)."""

THREAD_COUNTS = tuple(n for n in (1, 2) if n <= usable_cpus())[:1 if QUICK else None]
"""1 and 2 threads (1-thread ratios are quoted first; 2 threads must never be slower),
capped at the CPUs this process may use: 2 threads on 1 CPU time the scheduler."""


# --------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Gemm:
    """``C (M, N) = A (M, K) @ B (K, N)`` in float32."""

    m: int
    k: int
    n: int
    libraries = ("fastnn", "fastnn-kernel", "numpy", "torch")

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
    Dense("K1a", *K_SHAPES["K1a"]),
    Dense("K1b", *K_SHAPES["K1b"]),
    Dense("K1c", *K_SHAPES["K1c"]),
)
"""BENCHMARKS.md K1a-c; goal: fastnn >= 2.5x faster than torch."""


@dataclass(frozen=True)
class BatchNorm:
    """BatchNorm1d in training mode, forward then backward (dx, dgamma, dbeta), on
    ``n`` rows of ``c`` features."""

    id: str
    n: int
    c: int

    libraries = LIBRARIES
    flops = None

    @property
    def label(self) -> str:
        return self.id

    @property
    def title(self) -> str:
        return f"{self.id} BatchNorm1d train fwd+bwd N={self.n} C={self.c}"

    @property
    def bytes(self) -> int:
        # forward reads x and writes y; backward reads dy and x and writes dx (the (C,)
        # vectors are < 0.1% and not counted). fastnn's kernels actually read x three times
        # in the forward (mean, variance, normalize) and dy and x twice in the backward.
        return 5 * self.n * self.c * 4


@dataclass(frozen=True)
class Dropout:
    """Inverted dropout in training mode, forward only, on an (n, c) float32 array."""

    id: str
    n: int
    c: int
    rate: float

    libraries = LIBRARIES
    flops = None

    @property
    def label(self) -> str:
        return self.id

    @property
    def title(self) -> str:
        return f"{self.id} Dropout({self.rate:g}) train fwd N={self.n} C={self.c}"

    @property
    def bytes(self) -> int:
        # reads x, writes y and the packed keep-mask fastnn returns (1 bit per element).
        return self.n * self.c * 4 * 2 + self.n * self.c // 8


def mlp_layers(*sizes: int) -> tuple[tuple[int, int], ...]:
    """The (in, out) of each Linear layer of an MLP with these layer sizes."""
    return tuple(zip(sizes[:-1], sizes[1:]))


MLP_K4A = mlp_layers(*K_SHAPES["MLP"])  # 148,481 params
LINEAR20_K4B = ((512, 512),) * 20  # 5,253,120 params


def param_shapes(layers) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(fastnn shape, torch shape) of each parameter in model order: per Linear layer its
    weight, (in, out) in fastnn and (out, in) as ``nn.Linear`` keeps it, then its bias."""
    shapes = []
    for n_in, n_out in layers:
        shapes.append(((n_in, n_out), (n_out, n_in)))
        shapes.append(((n_out,), (n_out,)))
    return shapes


def n_params(layers) -> int:
    return sum(math.prod(fs) for fs, _ in param_shapes(layers))


@dataclass(frozen=True)
class Clip:
    """Clip by global norm (max_norm applied with one factor to every gradient).

    ``clips``: True makes every call scale (the norm is always above max_norm: see
    ``clip_case``), False gives a max_norm far above the norm, so fastnn and NumPy compute
    the norm and never scale. ``flat``: fastnn and NumPy hold the gradients as one flat
    buffer (how fastnn models keep them) instead of one array per weight and bias. torch
    always clips its model's per-parameter ``.grad`` tensors, and always multiplies them
    by ``min(1, max_norm / norm)`` (no branch), so its work is the same in all four rows.
    """

    id: str
    model: str
    layers: tuple
    clips: bool
    flat: bool

    libraries = LIBRARIES
    flops = None

    @property
    def n_params(self) -> int:
        return n_params(self.layers)

    @property
    def n_arrays(self) -> int:
        return 2 * len(self.layers)

    @property
    def label(self) -> str:
        return f"{self.id}-{'clip' if self.clips else 'normonly'}-{'flat' if self.flat else 'arrays'}"

    @property
    def title(self) -> str:
        layout = "1 flat buffer" if self.flat else f"{self.n_arrays} arrays"
        return f"{self.id} clip global norm, {'clipping' if self.clips else 'norm only'}, {layout}"

    @property
    def bytes(self) -> int:
        # the norm reads every gradient once; scaling reads and writes each again.
        return self.n_params * 4 * (3 if self.clips else 1)


@dataclass(frozen=True)
class OptimStep:
    """One optimizer step (``kind``: "adam" or "adagrad") over a model's parameters:
    fastnn and NumPy on one flat buffer, torch on the model's per-parameter tensors."""

    id: str
    kind: str
    model: str
    layers: tuple

    libraries = ("fastnn", "numpy", "torch", "torch-foreach", "torch-fused")
    flops = None

    @property
    def n_params(self) -> int:
        return n_params(self.layers)

    @property
    def label(self) -> str:
        return self.id

    @property
    def title(self) -> str:
        name = {"adam": "Adam", "adagrad": "Adagrad"}[self.kind]
        return f"{self.id} {name} step, {self.n_params:,} params"

    @property
    def bytes(self) -> int:
        # Adam reads p, g, m, v and writes p, m, v; Adagrad reads p, g, acc, writes p, acc.
        return self.n_params * 4 * (7 if self.kind == "adam" else 5)


LAYER_WORKLOADS = (
    BatchNorm("K2", *K_SHAPES["K2"]),
    Dropout("K3", *K_SHAPES["K3"]),
)
"""BENCHMARKS.md K2 (goal >= 2x torch) and K3 (goal >= 15x torch)."""

CLIP_WORKLOADS = tuple(
    Clip(id_, model, layers, clips, flat)
    for id_, model, layers in (("K4a", "MLP 64-256-256-256-1", MLP_K4A), ("K4b", "20 x Linear(512, 512)", LINEAR20_K4B))
    for clips in (False, True)
    for flat in (False, True)
)
"""BENCHMARKS.md K4a-b (goal >= 3x torch), four rows each: norm only / clipping, per-layer
arrays / one flat buffer."""

OPTIM_WORKLOADS = CLIP_WORKLOADS + (
    OptimStep("K5a", "adam", "MLP 64-256-256-256-1", MLP_K4A),
    OptimStep("K5b", "adagrad", "MLP 64-256-256-256-1", MLP_K4A),
)
"""K4a-b plus BENCHMARKS.md K5a-b (goal >= 1.5x torch fused, >= 4x torch default)."""

FAMILIES = {
    "gemm": GEMM_WORKLOADS,
    "dense": DENSE_WORKLOADS,
    "layers": LAYER_WORKLOADS,
    "optim": OPTIM_WORKLOADS,
}
"""The workload families, as ``report.py --only`` names them."""


def libraries(wl) -> tuple[str, ...]:
    """The libraries (``LIBRARY_ORDER`` names) a workload runs on."""
    return tuple(getattr(wl, "libraries", LIBRARIES))


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


def batchnorm_operands(wl: BatchNorm, seed: int = 0):
    """Seeded float32 x (N, C) with mean 0.5 and std 2, gamma ~ 1, beta ~ 0 (C,), dy (N, C)."""
    rng = np.random.default_rng(seed)
    x = np.float32(2.0) * rng.standard_normal((wl.n, wl.c), dtype=np.float32) + np.float32(0.5)
    gamma = np.float32(1.0) + np.float32(0.1) * rng.standard_normal(wl.c, dtype=np.float32)
    beta = np.float32(0.1) * rng.standard_normal(wl.c, dtype=np.float32)
    dy = rng.standard_normal((wl.n, wl.c), dtype=np.float32)
    return x, gamma, beta, dy


def dropout_operand(wl: Dropout, seed: int = 0) -> np.ndarray:
    """Seeded float32 standard-normal x (N, C) (no exact zeros, so y == 0 means dropped)."""
    x = np.random.default_rng(seed).standard_normal((wl.n, wl.c), dtype=np.float32)
    x[x == 0] = np.float32(1.0)
    return x


def flat_gradients(layers, seed: int = 0) -> np.ndarray:
    """Seeded float32 gradients of every parameter, in model order, as one flat buffer
    (0.01 x standard normal: a global norm of 3.9 for K4a, 23 for K4b)."""
    rng = np.random.default_rng(seed)
    return np.float32(0.01) * rng.standard_normal(n_params(layers), dtype=np.float32)


def flat_params(layers, seed: int = 0) -> np.ndarray:
    """Seeded float32 initial parameters in model order: weights N(0, 1/in), biases N(0, 0.01)."""
    rng = np.random.default_rng(seed + 1)
    parts = []
    for n_in, n_out in layers:
        parts.append(rng.standard_normal(n_in * n_out, dtype=np.float32) * np.float32(1.0 / np.sqrt(n_in)))
        parts.append(np.float32(0.1) * rng.standard_normal(n_out, dtype=np.float32))
    return np.concatenate(parts)


def split_params(flat: np.ndarray, layers, torch_layout: bool = False) -> list[np.ndarray]:
    """Per-parameter arrays (copies) cut from a flat buffer in model order, each reshaped
    to fastnn's (or torch's) shape. The data is the same flat segment either way (a
    reshape, not a transpose): every K4/K5 computation is elementwise or a global sum, so
    results compare as flat buffers."""
    arrays, offset = [], 0
    for fastnn_shape, torch_shape in param_shapes(layers):
        size = math.prod(fastnn_shape)
        arrays.append(flat[offset:offset + size].reshape(torch_shape if torch_layout else fastnn_shape).copy())
        offset += size
    return arrays


def _concat(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a).reshape(-1) for a in arrays])


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One library on one workload: ``fn`` is what gets timed."""

    lib: str
    workload: Any
    fn: Callable[[], Any]
    as_numpy: Callable[[Any], tuple[np.ndarray, ...]]
    names: tuple[str, ...]  # the names of the results, for error messages
    check: Callable[[tuple], None] | None = None
    """Replaces the comparison with NumPy's results where they cannot be equal (dropout:
    each library draws its own mask): raises AssertionError on a wrong result."""


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
    if lib == "fastnn-kernel":
        kernel_gemm = fastnn._core.gemm

        def fn():
            kernel_gemm(a, b, c)
            return (c,)

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


def batchnorm_case(lib: str, wl: BatchNorm, torch=None, seed: int = 0) -> Case:
    """BatchNorm1d training forward+backward, returning ``(y, dx, dgamma, dbeta)``.

    All three use eps=1e-3 and update running statistics with weight 0.01 on the batch
    (fastnn/Keras ``momentum=0.99`` is torch's ``momentum=0.01``).

    - fastnn: ``batchnorm_forward(x, gamma, beta, running_mean, running_var,
      training=True, out=y, mean_out=mean, invstd_out=invstd)`` then
      ``batchnorm_backward(dy, x, gamma, mean, invstd, grad_x=dx, grad_gamma=dgamma,
      grad_beta=dbeta)``, every output preallocated.
    - numpy: the composite a NumPy user writes (mean, biased variance, normalize; the
      standard backward ``dx = gamma * invstd / N * (N dy - sum dy - xhat sum(dy xhat))``),
      allocating its temporaries.
    - torch: ``F.batch_norm(x, running_mean, running_var, weight, bias, training=True,
      momentum=0.01, eps=1e-3)`` and ``torch.autograd.grad`` (nothing accumulates).
    """
    x, gamma, beta, dy = batchnorm_operands(wl, seed)
    n, c = x.shape
    eps, momentum = 1e-3, 0.99
    names = ("y", "dx", "dgamma", "dbeta")
    running_mean = np.zeros(c, dtype=np.float32)
    running_var = np.ones(c, dtype=np.float32)
    if lib == "fastnn":
        forward, backward = fastnn.ops.batchnorm_forward, fastnn.ops.batchnorm_backward
        y, dx = np.empty_like(x), np.empty_like(x)
        mean, invstd, dgamma, dbeta = (np.empty(c, dtype=np.float32) for _ in range(4))

        def fn():
            forward(x, gamma, beta, running_mean, running_var, training=True, momentum=momentum, eps=eps,
                    out=y, mean_out=mean, invstd_out=invstd)
            backward(dy, x, gamma, mean, invstd, grad_x=dx, grad_gamma=dgamma, grad_beta=dbeta)
            return y, dx, dgamma, dbeta

        return Case(lib, wl, fn, _identity, names)
    if lib == "numpy":
        unbias = np.float32(n / (n - 1))

        def fn():
            mean = x.mean(axis=0)
            xc = x - mean
            var = (xc * xc).mean(axis=0)
            invstd = 1.0 / np.sqrt(var + eps)
            xhat = xc * invstd
            y = gamma * xhat + beta
            running_mean[:] = momentum * running_mean + (1 - momentum) * mean
            running_var[:] = momentum * running_var + (1 - momentum) * (var * unbias)
            dbeta = dy.sum(axis=0)
            dgamma = (dy * xhat).sum(axis=0)
            dx = (gamma * invstd / n) * (n * dy - dbeta - xhat * dgamma)
            return y, dx, dgamma, dbeta

        return Case(lib, wl, fn, _identity, names)
    if lib == "torch":
        F = torch.nn.functional
        with torch.no_grad():
            tx = torch.from_numpy(x).requires_grad_(True)
            tgamma = torch.from_numpy(gamma).requires_grad_(True)
            tbeta = torch.from_numpy(beta).requires_grad_(True)
            tdy = torch.from_numpy(dy)
            trm, trv = torch.from_numpy(running_mean), torch.from_numpy(running_var)
        grad = torch.autograd.grad

        def fn():
            y = F.batch_norm(tx, trm, trv, tgamma, tbeta, training=True, momentum=1 - momentum, eps=eps)
            dx, dgamma, dbeta = grad(y, (tx, tgamma, tbeta), tdy)
            return y, dx, dgamma, dbeta

        return Case(lib, wl, fn, _torch_to_numpy, names)
    raise ValueError(f"unknown library {lib!r} for {wl.title}, expected one of {libraries(wl)}")


def check_dropout(wl: Dropout, x: np.ndarray, y: np.ndarray, lib: str) -> None:
    """A dropout output is right when the dropped fraction is close to ``rate`` (within
    0.01: its standard deviation is 0.0006 for K3) and every survivor is x / (1 - rate)."""
    if y.shape != x.shape:
        raise AssertionError(f"{lib} {wl.title}: y has shape {y.shape}, x {x.shape}")
    kept = y != 0
    dropped = 1.0 - float(kept.mean())
    if not abs(dropped - wl.rate) <= 0.01:
        raise AssertionError(f"{lib} {wl.title}: dropped {dropped:.4f} of the elements, expected ~{wl.rate}")
    scale = y[kept].astype(np.float64) / x[kept].astype(np.float64)
    want = 1.0 / (1.0 - wl.rate)
    err = float(np.max(np.abs(scale - want))) if scale.size else 0.0
    if not err <= 1e-5 * want:
        raise AssertionError(f"{lib} {wl.title}: survivors scaled by up to {want + err:.7f}, expected {want:.7f}")


def dropout_case(lib: str, wl: Dropout, torch=None, seed: int = 0) -> Case:
    """Dropout training forward, returning ``(y,)``; checked by ``check_dropout`` (each
    library draws its own mask, so there is nothing to compare element by element).

    - fastnn: ``dropout_forward(x, rate, seed=..., step=i, out=y)`` with ``i`` counting the
      calls (a new mask each call, as in training). It also returns the packed keep-mask,
      which it allocates each call (there is no ``mask_out=``).
    - numpy: ``x * (rng.random(x.shape, dtype=np.float32) >= rate) * (1 / (1 - rate))``
      (float32 uniforms: half the random bits of the float64 default, the faster choice).
    - torch: ``F.dropout(x, rate, training=True)``.
    """
    x = dropout_operand(wl, seed)
    rate = wl.rate

    def check(got):
        check_dropout(wl, x, got[0], lib)

    if lib == "fastnn":
        dropout_forward = fastnn.ops.dropout_forward
        y = np.empty_like(x)
        steps = itertools.count()

        def fn():
            return (dropout_forward(x, rate, seed=seed + 12345, step=next(steps), out=y).y,)

        return Case(lib, wl, fn, _identity, ("y",), check)
    if lib == "numpy":
        rng = np.random.default_rng(seed + 12345)
        scale = np.float32(1.0 / (1.0 - rate))

        def fn():
            return (x * (rng.random(x.shape, dtype=np.float32) >= rate) * scale,)

        return Case(lib, wl, fn, _identity, ("y",), check)
    if lib == "torch":
        F = torch.nn.functional
        tx = torch.from_numpy(x)
        torch.manual_seed(seed)

        def fn():
            return (F.dropout(tx, rate, training=True),)

        return Case(lib, wl, fn, _torch_to_numpy, ("y",), check)
    raise ValueError(f"unknown library {lib!r} for {wl.title}, expected one of {libraries(wl)}")


NO_CLIP_MAX_NORM = 1e6
"""max_norm of the "norm only" rows: far above every K4 gradient norm (<= 23)."""

CLIP_FIRST = 0.999
"""Clipping rows: the first call's max_norm is this times the initial norm (float64). The
libraries' own norms of the same data differ by up to ~1.5e-5 relative (NumPy's
``np.dot`` sums in float32), so every library clips the first call: results compare."""

CLIP_SHRINK = 1.0 - 2.0 ** -14
"""Clipping rows: each later call's max_norm is the previous one times this, so it stays
below the current norm (which the previous call set to the previous max_norm, give or take
the library's rounding: NumPy's float32 dot products move by ~1e-5) and every call scales.
The gradients shrink by 6.1e-5 relative per call (x0.05 after 50,000 calls, about the
most a K4a NumPy case makes in report.py): far from float32 underflow or subnormals."""


def clip_case(lib: str, wl: Clip, torch=None, seed: int = 0) -> Case:
    """Clip by global norm, returning ``(gradients after the call as one flat array, norm)``.

    max_norm: ``NO_CLIP_MAX_NORM`` for the "norm only" rows; for the clipping rows it starts
    at ``CLIP_FIRST`` x the initial norm and shrinks by ``CLIP_SHRINK`` every call, so
    every call of fastnn and NumPy scales (the timed function raises if one did not).
    torch gets that first max_norm and keeps it: it multiplies every call anyway.

    - fastnn: ``optim.clip_by_global_norm(grads, max_norm)`` with ``grads`` the list of
      per-layer weight and bias arrays, or the one flat buffer (``wl.flat``).
    - numpy: ``sqrt(sum(np.dot(g, g)))`` over 1-D views of the same arrays, then
      ``g *= max_norm / norm`` when above max_norm.
    - torch: ``torch.nn.utils.clip_grad_norm_(params, max_norm)`` on a model's per-parameter
      tensors (nn.Linear shapes) holding these gradients in ``.grad`` (foreach
      implementation: the default on CPU).
    """
    flat = flat_gradients(wl.layers, seed)
    first_limit = float(np.linalg.norm(flat.astype(np.float64))) * CLIP_FIRST if wl.clips else NO_CLIP_MAX_NORM
    names = ("grads", "norm")

    def as_numpy(results):
        grads, norm = results
        return _concat(grads), np.array([float(norm)])

    if lib in ("fastnn", "numpy"):
        grads = [flat.copy()] if wl.flat else split_params(flat, wl.layers)
        if lib == "fastnn":
            clip = fastnn.optim.clip_by_global_norm
            arg = grads[0] if wl.flat else grads

            def clip_once(limit):
                return clip(arg, limit)
        else:
            views = [g.reshape(-1) for g in grads]
            dot, sqrt = np.dot, math.sqrt

            def clip_once(limit):
                norm = sqrt(sum(float(dot(v, v)) for v in views))
                if norm > limit:
                    factor = np.float32(limit / norm)
                    for v in views:
                        v *= factor
                return norm

        if not wl.clips:
            def fn():
                return grads, clip_once(NO_CLIP_MAX_NORM)
        else:
            limit = [first_limit]

            def fn():
                norm = clip_once(limit[0])
                if not norm > limit[0]:
                    raise AssertionError(f"{lib} {wl.title}: norm {norm} <= max_norm {limit[0]}: no clipping")
                limit[0] *= CLIP_SHRINK
                return grads, norm

        return Case(lib, wl, fn, as_numpy, names)
    if lib == "torch":
        params = []
        for g in split_params(flat, wl.layers, torch_layout=True):
            p = torch.nn.Parameter(torch.zeros(g.shape))
            p.grad = torch.from_numpy(g)
            params.append(p)
        clip_grad_norm_ = torch.nn.utils.clip_grad_norm_
        grads = [p.grad for p in params]

        def fn():
            return grads, clip_grad_norm_(params, first_limit)

        def torch_as_numpy(results):
            grads, norm = results
            return _concat(g.numpy() for g in grads), np.array([float(norm)])

        return Case(lib, wl, fn, torch_as_numpy, names)
    raise ValueError(f"unknown library {lib!r} for {wl.title}, expected one of {libraries(wl)}")


ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
"""torch.optim.Adam's defaults; fastnn gets the same eps (its default is Keras' 1e-7)."""
ADAGRAD = dict(lr=0.05, eps=1e-10, initial_accumulator=0.1)
"""fastnn's documented lr and initial accumulator (Keras), torch's eps (fastnn: 1e-7)."""


def numpy_adam(p, g, m, v, t, lr, b1, b2, eps) -> None:
    """Adam step ``t`` (from 1) in place, as a NumPy user writes it (torch's formula)."""
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * (g * g)
    denom = np.sqrt(v)
    denom *= 1.0 / math.sqrt(1 - b2 ** t)
    denom += eps
    p -= (lr / (1 - b1 ** t)) * m / denom


def numpy_adagrad(p, g, acc, lr, eps) -> None:
    """Adagrad step in place, as a NumPy user writes it (eps outside the square root)."""
    acc += g * g
    denom = np.sqrt(acc)
    denom += eps
    p -= lr * g / denom


def optim_case(lib: str, wl: OptimStep, torch=None, seed: int = 0) -> Case:
    """One Adam or Adagrad step per call (the step count goes on from call to call),
    returning ``(p - p0, m, v)`` (Adam) or ``(p - p0, accumulator)`` (Adagrad) as flat
    float64/float32 arrays (p - p0: a step changes p by ~1e-3, far below p's own scale).

    - fastnn: ``ops.adam_update(p, g, m, v, step, lr=1e-3, eps=1e-8)`` or
      ``ops.adagrad_update(p, g, acc, lr=0.05, eps=1e-10)`` on flat buffers.
    - numpy: the update as in-place NumPy expressions on the same flat buffers.
    - torch / torch-foreach / torch-fused: ``optimizer.step()`` of ``torch.optim.Adam`` /
      ``Adagrad`` (default arguments but lr, and Adagrad's ``initial_accumulator_value=0.1``)
      over the model's per-parameter tensors with their ``.grad`` set; plain "torch" is the
      default constructor, which on CPU runs the single-tensor for-loop implementation
      (torch only defaults to foreach on CUDA-like devices), then ``foreach=True`` and
      ``fused=True``.
    """
    p0 = flat_params(wl.layers, seed)
    g = flat_gradients(wl.layers, seed)
    adam = wl.kind == "adam"
    names = ("p - p0", "m", "v") if adam else ("p - p0", "accumulator")

    def flat_as_numpy(results):
        p, *state = results
        return (p.astype(np.float64) - p0, *state)

    if lib in ("fastnn", "numpy"):
        p = p0.copy()
        steps = itertools.count(1)
        if adam:
            lr, b1, b2, eps = ADAM["lr"], ADAM["beta1"], ADAM["beta2"], ADAM["eps"]
            m, v = np.zeros_like(p), np.zeros_like(p)
            if lib == "fastnn":
                adam_update = fastnn.ops.adam_update

                def fn():
                    adam_update(p, g, m, v, next(steps), lr=lr, beta1=b1, beta2=b2, eps=eps)
                    return p, m, v
            else:
                def fn():
                    numpy_adam(p, g, m, v, next(steps), lr, b1, b2, eps)
                    return p, m, v
        else:
            lr, eps = ADAGRAD["lr"], ADAGRAD["eps"]
            acc = np.full_like(p, ADAGRAD["initial_accumulator"])
            if lib == "fastnn":
                adagrad_update = fastnn.ops.adagrad_update

                def fn():
                    adagrad_update(p, g, acc, lr=lr, eps=eps)
                    return p, acc
            else:
                def fn():
                    numpy_adagrad(p, g, acc, lr, eps)
                    return p, acc

        return Case(lib, wl, fn, flat_as_numpy, names)
    if lib in ("torch", "torch-foreach", "torch-fused"):
        variant = {"torch": {}, "torch-foreach": dict(foreach=True), "torch-fused": dict(fused=True)}[lib]
        params = []
        for p, gp in zip(split_params(p0, wl.layers, torch_layout=True),
                         split_params(g, wl.layers, torch_layout=True)):
            tp = torch.nn.Parameter(torch.from_numpy(p))
            tp.grad = torch.from_numpy(gp)
            params.append(tp)
        if adam:
            opt = torch.optim.Adam(params, lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"],
                                   **variant)
            state_keys = ("exp_avg", "exp_avg_sq")
        else:
            opt = torch.optim.Adagrad(params, lr=ADAGRAD["lr"], eps=ADAGRAD["eps"],
                                      initial_accumulator_value=ADAGRAD["initial_accumulator"], **variant)
            state_keys = ("sum",)
        step = opt.step

        def fn():
            step()
            return params

        def torch_as_numpy(results):
            dp = _concat(t.detach().numpy() for t in results).astype(np.float64) - p0
            return (dp, *(_concat(opt.state[t][k].detach().numpy() for t in results) for k in state_keys))

        return Case(lib, wl, fn, torch_as_numpy, names)
    raise ValueError(f"unknown library {lib!r} for {wl.title}, expected one of {libraries(wl)}")


_CASE_BUILDERS = {
    Gemm: gemm_case,
    Dense: dense_case,
    BatchNorm: batchnorm_case,
    Dropout: dropout_case,
    Clip: clip_case,
    OptimStep: optim_case,
}


def make_case(lib: str, wl, torch=None, seed: int = 0) -> Case:
    """The case for any workload."""
    return _CASE_BUILDERS[type(wl)](lib, wl, torch, seed)


# --------------------------------------------------------------------------- checks
@functools.lru_cache(maxsize=4)
def numpy_reference(wl, seed: int = 0) -> tuple[np.ndarray, ...]:
    """NumPy's float32 results for a workload (cached: K1c's take a fraction of a second)."""
    case = make_case("numpy", wl, seed=seed)
    return tuple(np.array(r, copy=True) for r in case.as_numpy(case.fn()))


def snapshot(case: Case, results) -> tuple[np.ndarray, ...]:
    """Copies of one call's results as NumPy arrays, taken at once: later calls overwrite
    the buffers they live in (preallocated outputs, and the in-place updates of the
    optimizer and clipping workloads, whose state moves on every call)."""
    return tuple(np.array(r, copy=True) for r in case.as_numpy(results))


def check_results(case: Case, got: tuple[np.ndarray, ...], rtol: float = 1e-2) -> None:
    """Raise AssertionError unless every result (a ``snapshot``) is within ``rtol`` of
    NumPy's (norm-wise); or, for a case with its own ``check`` (dropout), unless it passes
    that check.

    A sanity check, not a test of accuracy (tests/ does that): it catches a benchmark
    that times a wrong or empty computation. Hence norm-wise and loose: where ``z`` lies
    within rounding of 0 the ReLU mask may differ between libraries, and each such entry
    moves K1c's dx by ~1e-3 of its norm; a wrong computation is off by O(1). The stateful
    workloads (K4, K5) compare the first call on fresh data, and K5 compares the change
    ``p - p0`` (a step is ~1e-3 of p: a skipped update would pass a comparison of p).
    """
    if case.check is not None:
        case.check(got)
        return
    if case.lib == "numpy":
        return
    want = numpy_reference(case.workload)
    for name, g, r in zip(case.names, got, want):
        if g.shape != r.shape:
            raise AssertionError(f"{case.lib} {case.workload.title}: {name} has shape {g.shape}, NumPy's {r.shape}")
        err = float(np.linalg.norm(g.astype(np.float64) - r)) / max(float(np.linalg.norm(r.astype(np.float64))), 1e-30)
        if not err <= rtol:
            raise AssertionError(f"{case.lib} {case.workload.title}: {name} differs from NumPy's "
                                 f"by {err:.2e} (norm-wise relative) > {rtol}")


def check_against_numpy(case: Case, results, rtol: float = 1e-2) -> None:
    """``check_results`` on the results one call of ``case.fn`` just returned."""
    check_results(case, snapshot(case, results), rtol)


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
        env["torch_optim_default_cpu"] = torch_optim_default(torch)
    return env


def torch_optim_default(torch) -> str:
    """Which implementation ``torch.optim.Adam(params)`` (no foreach/fused argument) runs
    for CPU tensors: torch only defaults to foreach on CUDA-like devices. Read from torch's
    own (private) chooser; "unknown" when it is not there."""
    try:
        from torch.optim.optimizer import _default_to_fused_or_foreach

        fused, foreach = _default_to_fused_or_foreach([torch.zeros(1)], False, False)
    except Exception:  # a private helper: absent or changed in another torch version
        return "unknown"
    return "fused" if fused else "foreach" if foreach else "single-tensor for-loop"


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
def thread_cases(workload_list, **benchmark_options) -> list:
    """pytest parameters ``(workload, n_threads)``: one benchmark group per workload and
    thread count, holding every library. For ``@pytest.mark.parametrize("workload,n_threads",
    ..., indirect=["n_threads"])``: the ``n_threads`` fixture of conftest.py applies it.
    ``benchmark_options`` go to the ``benchmark`` marker (e.g. ``max_time=0.25`` for
    families of fast calls; a marker's value wins over ``--benchmark-max-time``)."""
    import pytest  # only the suites need pytest; report.py does not

    if QUICK:  # conftest's quick time budget applies to every benchmark
        benchmark_options = {}
    return [
        pytest.param(wl, n, id=f"{wl.label}-{n}thr",
                     marks=pytest.mark.benchmark(group=f"{wl.title}, {n} thread{'s' * (n > 1)}",
                                                 **benchmark_options))
        for wl in workload_list
        for n in THREAD_COUNTS
    ]
