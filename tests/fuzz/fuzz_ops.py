"""atheris fuzz target for fastnn's native kernels (RELIABILITY.md M6).

Each input picks one public entry point (the ``fastnn.ops`` kernels, clipping, the
optimizer updates, a tiny ``Sequential``, a ``fastnn.preprocessing`` scaler) and builds
its arguments from the fuzzer's bytes: shapes in [0, 9] (sometimes mismatched), ndim 0-3,
dtypes from float32/float64/int32/bool/float16/complex64/object/str, layouts (C, Fortran,
strided, negative strides, zero-stride broadcast, read-only, plain lists) and values that
include NaN, +-inf, +-1e38 and denormals, plus good and bad scalars (rates, seeds, steps,
momentum, eps, ...).

The oracle, per call:

* only ``ValueError``/``TypeError`` may escape (``FloatingPointError`` where documented:
  ``train_step``, ``clip_by_global_norm(error_if_nonfinite=True)``), and never one of
  pybind11's own messages ("incompatible function arguments", ...): validation belongs to
  the Python layer (RELIABILITY B5);
* inputs are never written; buffers updated in place are bitwise unchanged when the call
  raises ("never leaves a model half-updated");
* on success, output shapes and dtypes are those of the docstrings, plus cheap
  invariants: dropout outputs are exactly ``x * 0`` or ``x * (1 / (1 - rate))`` with the
  mask ``dropout_mask`` gives, clipping by global norm scales by exactly
  ``max_norm / norm`` or leaves the gradients alone, a dense layer on tame values agrees
  with the NumPy float64 reference, ``predict`` is independent of the batch size, ...

Anything else raises, which atheris reports as a crash and saves as ``crash-<sha1>``.
Each bug found so far is fixed and pinned by a regression test in
tests/runtime/test_fuzz_regressions.py; the harness has no skips for known bugs.

Run (normal build, or under the ASan build of tools/sanitize.sh with atheris'
``asan_with_fuzzer.so`` preloaded)::

    python tests/fuzz/fuzz_ops.py -max_total_time=60 -rss_limit_mb=4096 build/fuzz/corpus_ops

Reproduce and decode a crash (prints every call with its arguments)::

    python tests/fuzz/fuzz_ops.py --explain build/fuzz/crash-<sha1>
"""
from __future__ import annotations

import math
import os
import sys
import warnings

import atheris

with atheris.instrument_imports(include=["fastnn", "numpy"]):
    import numpy as np

    import fastnn  # noqa: F401  (instruments the package)
    import fastnn.preprocessing as preprocessing
    from fastnn import nn, ops, optim

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
import reference  # noqa: E402  (tests/reference.py: the NumPy float64 oracle)
from _instrument import instrument_package  # noqa: E402


EXPLAIN = False  # --explain: print each call and its outcome

MAX_DIM = 9
SPECIALS = [math.nan, math.inf, -math.inf, 1e38, -1e38, 3.4028235e38, -3.4028235e38, 3.5e38, 1e-40, -1e-45,
            1e-310, 5e-324, -0.0, 0.0, 1.0, -1.0, 1e300, -1e300, 65504.0, 65520.0, 2.0 ** 24 + 1]
# float32 four times as likely as any odd dtype, float64 three times
INPUT_DTYPES = ["float32"] * 4 + ["float64"] * 3 + ["int32", "bool", "float16", "complex64", "object", "str"]
LAYOUTS = ["C"] * 6 + ["F", "strided", "negative", "broadcast", "readonly", "list"]
BAD_SCALARS = [math.nan, math.inf, -math.inf, -1.0, -1e-300, 0.0, 1.0, 1.5, 1e308, True, "0.1", None,
               np.float32(0.5), np.float64("nan"), 2 ** 64, -1, 2 ** 63, complex(1, 0), np.int64(3), [0.1]]
GOOD_INTS = [0, 1, 7, 12345, 2 ** 32 - 1, 2 ** 32, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, np.uint64(5),
             np.int32(3)]
BAD_INTS = [-1, 2 ** 64, 1.5, 2.0, True, None, "1", np.float64(3.0), -(2 ** 63)]
PYBIND_LEAKS = ("incompatible function arguments", "array has incorrect number of dimensions",
                "array is not writeable", "Unable to cast", "unable to convert")


# ----------------------------------------------------------------------------- input generation


class Gen:
    """Draws shapes, arrays and scalars from the fuzzer's bytes (zeros once they run out)."""

    def __init__(self, fdp: atheris.FuzzedDataProvider):
        self.f = fdp

    def int(self, lo, hi):
        return self.f.ConsumeIntInRange(lo, hi)

    def bool(self):
        return self.f.ConsumeBool()

    def chance(self, k):
        """True with probability 1/k."""
        return self.f.ConsumeIntInRange(0, k - 1) == 0

    def pick(self, values):
        return self.f.PickValueInList(list(values))

    def dim(self):
        return self.int(0, MAX_DIM)

    def shape(self, want):
        """``want``, or (1 time in 8) a mismatched shape: random ndim 0-3, or one side changed."""
        if not self.chance(8):
            return tuple(want)
        if self.bool() or not want:
            return tuple(self.dim() for _ in range(self.int(0, 3)))
        s = list(want)
        s[self.int(0, len(s) - 1)] = self.dim()
        return tuple(s)

    def values(self, n):
        mode = self.int(0, 3)
        if mode == 0:
            v = self.f.ConsumeFloatListInRange(n, -3.0, 3.0)
        elif mode == 1:
            v = self.f.ConsumeFloatListInRange(n, -1e3, 1e3)
        elif mode == 2:
            v = self.f.ConsumeFloatList(n)
        else:
            v = [self.pick(SPECIALS) for _ in range(n)]
        v = np.array(v, dtype=np.float64)
        if n:
            for _ in range(self.int(0, 3)):
                v[self.int(0, n - 1)] = self.pick(SPECIALS)
        return v

    def _cast(self, v, dtype):
        with np.errstate(all="ignore"):
            if dtype in ("float32", "float64", "float16"):
                return v.astype(dtype)
            if dtype in ("int32", "int64", "uint8"):
                info = np.iinfo(dtype)
                return np.nan_to_num(v, nan=0.0, posinf=info.max, neginf=info.min).clip(info.min, info.max) \
                    .astype(dtype)
            if dtype == "bool":
                return v > 0
            if dtype == "complex64":
                return (v + 0.5j).astype(np.complex64)
            if dtype == "object":
                return v.astype(object)
            return v.astype(str)

    def _layout(self, a, layout):
        if layout == "F":
            return np.asfortranarray(a)
        if layout == "strided" and a.ndim:
            big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
            view = big[tuple(slice(None, None, 2) for _ in a.shape)]
            view[...] = a
            return view
        if layout == "negative" and a.ndim:
            flip = tuple(slice(None, None, -1) for _ in a.shape)
            return a[flip].copy()[flip]
        if layout == "broadcast" and a.ndim and a.shape[0]:
            return np.broadcast_to(a[:1], a.shape)
        if layout == "readonly":
            a = a.copy()
            a.flags.writeable = False
            return a
        if layout == "list":
            return a.tolist()
        return a

    def array(self, want, dtypes=INPUT_DTYPES, layouts=LAYOUTS, exact_shape=False):
        """An input array (or, rarely, None / a scalar / a list)."""
        if self.chance(64):
            return self.pick([None, 1.5, "x"])
        shape = tuple(want) if exact_shape else self.shape(want)
        a = np.asarray(self._cast(self.values(math.prod(shape)).reshape(shape), self.pick(dtypes)))
        return self._layout(a, self.pick(layouts))

    def buffer(self, want, dtype):
        """A buffer written in place: usually the caller's own C-contiguous writeable array
        of ``dtype``; sometimes of the wrong dtype, shape or layout (must be refused)."""
        if self.chance(6):
            return self.array(want)
        return np.asarray(self._cast(self.values(math.prod(want)).reshape(want), np.dtype(dtype).name))

    def scalar(self, good):
        """One of ``good`` (a list) or, 1 time in 6, a bad scalar."""
        return self.pick(BAD_SCALARS) if self.chance(6) else self.pick(good)

    def seed(self):
        return self.pick(BAD_INTS) if self.chance(8) else self.pick(GOOD_INTS + list(range(8)))

    def activation(self):
        return "bogus" if self.chance(32) else self.pick(reference.ACTIVATIONS)


def dtype_of(a):
    return np.asarray(a).dtype


def compute_dtype(*arrays):
    """fastnn's rule: float64 when any input is float64, else float32."""
    for a in arrays:
        if a is not None:
            d = dtype_of(a)
            if d.kind == "f" and d.itemsize >= 8:
                return np.dtype(np.float64)
    return np.dtype(np.float32)


def tame(*arrays, bound=1e3):
    """All inputs real, finite and of moderate size: value checks against the reference apply."""
    for a in arrays:
        if a is None:
            continue
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
            return False
        v = a.astype(np.float64)
        if v.size and not (np.isfinite(v).all() and np.abs(v).max() <= bound):
            return False
    return True


# ----------------------------------------------------------------------------- the guarded call


class Failed:
    """What ``call`` returns when the call raised an allowed exception."""

    def __init__(self, exc):
        self.exc = exc


def describe(obj):
    if isinstance(obj, np.ndarray):
        flags = "C" if obj.flags.c_contiguous else "F" if obj.flags.f_contiguous else "strided"
        flags += "" if obj.flags.writeable else ",read-only"
        vals = np.array2string(obj.ravel()[:12], threshold=12, precision=9) if obj.dtype.kind != "O" else \
            repr(obj.ravel()[:12].tolist())
        return f"array({obj.dtype}, shape={obj.shape}, strides={obj.strides}, {flags}, values={vals})"
    if isinstance(obj, (list, tuple)) and len(repr(obj)) > 200:
        return f"{type(obj).__name__}(len={len(obj)}, {repr(obj)[:200]}...)"
    return repr(obj)


def call(fn, *args, inputs=(), inplace=(), allowed=(ValueError, TypeError), **kwargs):
    """Call ``fn`` under the oracle; return its result, or ``Failed`` for an allowed error."""
    name = getattr(fn, "__qualname__", repr(fn))
    if EXPLAIN:
        parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
        print(f"CALL {name}(\n    " + ",\n    ".join(parts) + ")")
    ins = [(a, a.tobytes()) for a in inputs if isinstance(a, np.ndarray) and not any(a is b for b in inplace)]
    bufs = [(a, a.tobytes()) for a in inplace if isinstance(a, np.ndarray)]
    try:
        result = fn(*args, **kwargs)
    except allowed as exc:
        if EXPLAIN:
            print(f"  -> {type(exc).__name__}: {exc}")
        msg = str(exc)
        if any(s in msg for s in PYBIND_LEAKS):
            raise AssertionError(f"{name}: pybind11's own error reached the user (the Python layer let a bad "
                                 f"argument through): {type(exc).__name__}: {msg}") from exc
        if not msg:
            raise AssertionError(f"{name}: {type(exc).__name__} without a message") from exc
        for a, before in bufs:
            if a.tobytes() != before:
                raise AssertionError(f"{name} raised {type(exc).__name__} ({msg}) but modified a buffer it updates "
                                     f"in place: {describe(a)}") from exc
        result = Failed(exc)
    for a, before in ins:
        if a.tobytes() != before:
            raise AssertionError(f"{name} modified an input: {describe(a)}")
    if EXPLAIN and not isinstance(result, Failed):
        print(f"  -> {describe(result) if not isinstance(result, tuple) else [describe(r) for r in result]}")
    return result


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def check_array(a, shape, dtype, what):
    check(isinstance(a, np.ndarray), f"{what}: expected an ndarray, got {type(a).__name__}")
    check(a.shape == tuple(shape), f"{what}: shape {a.shape}, expected {tuple(shape)}")
    check(a.dtype == dtype, f"{what}: dtype {a.dtype}, expected {dtype}")


def same(a, b):
    """Bitwise-equal values (NaN equal to NaN, -0.0 equal to 0.0)."""
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


# ----------------------------------------------------------------------------- targets


def act_kwargs(g, act, units, dtype):
    kw = {}
    if act == "leaky_relu" and g.bool():
        kw["negative_slope"] = g.scalar([0.0, 0.01, 0.2, 1.0, 3.0])
    if act == "elu" and g.bool():
        kw["alpha"] = g.scalar([0.5, 1.0, 2.0])
    if act == "prelu" and not g.chance(16):
        kw["slope"] = g.array((units,), dtypes=[dtype] * 6 + INPUT_DTYPES)
    elif act != "prelu" and g.chance(32):
        kw["slope"] = g.array((units,))
    return kw


def lipschitz(act, kw):
    """A bound on |act'| (for turning a pre-activation error bound into an output bound)."""
    c = 1.0
    if act == "leaky_relu":
        c = max(1.0, float(kw.get("negative_slope", 0.01)))
    if act == "elu":
        c = max(1.0, float(kw.get("alpha", 1.0)))
    if act == "prelu":
        c = max(1.0, float(np.abs(np.asarray(kw["slope"], np.float64)).max(initial=0.0)))
    return c


def act_ulps(act, kw):
    """The absolute scale of a few ulps of the activation's own rounding (exp-based ones)."""
    if act == "elu":
        return float(kw.get("alpha", 1.0))
    return 1.0 if act in ("sigmoid", "tanh") else 0.0


def t_dense_forward(g):
    n, ic, oc = g.dim(), g.dim(), g.dim()
    x, w = g.array((n, ic)), g.array((ic, oc))
    b = g.array((oc,)) if g.bool() else None
    act = g.activation()
    dt = compute_dtype(x, w, b)
    kw = act_kwargs(g, act, oc, dt)
    out = g.buffer((n, oc), dt) if g.chance(4) else None
    z = g.buffer((n, oc), dt) if g.chance(3) else None
    y = call(ops.dense_forward, x, w, b, act, **kw, out=out, preact_out=z, inputs=[x, w, b, kw.get("slope")],
             inplace=[out, z])
    if isinstance(y, Failed):
        return
    (n, ic), oc = np.shape(x), np.shape(w)[1]  # what was accepted (a fuzzed shape may differ from the plan)
    check_array(y, (n, oc), dt, "dense_forward y")
    check(out is None or y is out, "dense_forward did not return out")
    if act == "relu":
        check(not (y < 0).any(), "relu output < 0")
    if act in ("sigmoid",):
        check(not ((y < 0) | (y > 1)).any(), "sigmoid output outside [0, 1]")
    if act == "tanh":
        check(not ((y < -1) | (y > 1)).any(), "tanh output outside [-1, 1]")
    if tame(x, w, b, kw.get("slope")) and act != "bogus":
        # RELIABILITY section 1: |y32 - y64| <= K u (|x||w| + |b|) (+ activation ulps)
        x64, w64 = np.asarray(x, np.float64), np.asarray(w, np.float64)
        b64 = None if b is None else np.asarray(b, np.float64)
        args = {k: np.asarray(v, np.float64) if k == "slope" else float(v) for k, v in kw.items()}
        ref, _ = reference.dense_forward(x64, w64, b64, act, **args)
        mag = np.abs(x64) @ np.abs(w64) + (0 if b64 is None else np.abs(b64))
        u = 2.0 ** -24 if dt == np.float32 else 2.0 ** -53
        # inputs are rounded to dt first (int32/bool/float16 -> float32 is exact, float64 -> float32 is not)
        bound = (ic + 3) * u * mag * lipschitz(act, args) + 8 * u * (np.abs(ref) + act_ulps(act, args)) + 1e-30
        err = np.abs(y.astype(np.float64) - ref)
        if (err > bound).any():
            i = np.unravel_index(np.argmax(err - bound), err.shape)
            raise AssertionError(f"dense_forward({act}) differs from the float64 reference at {i}: "
                                 f"{y[i]} vs {ref[i]} (error {err[i]}, bound {bound[i]})")


def t_dense_backward(g):
    n, ic, oc = g.dim(), g.dim(), g.dim()
    x, w, gy = g.array((n, ic)), g.array((ic, oc)), g.array((n, oc))
    act = g.activation()
    dt = compute_dtype(x, w, gy)
    kw = act_kwargs(g, act, oc, dt)
    y = g.array((n, oc)) if not g.chance(16) else None
    z = g.array((n, oc)) if act == "prelu" and not g.chance(16) else None
    need_grad_x, bias = not g.chance(4), not g.chance(4)
    accumulate = g.chance(6)
    gw = g.buffer((ic, oc), dt) if accumulate or g.chance(4) else None
    gb = g.buffer((oc,), dt) if accumulate or g.chance(4) else None
    gs = g.buffer((oc,), dt) if act == "prelu" and (accumulate or g.chance(4)) else None
    r = call(ops.dense_backward, gy, x, w, y, act, preact=z, need_grad_x=need_grad_x, bias=bias, grad_w=gw,
             grad_b=gb, grad_slope=gs, accumulate=accumulate, **kw,
             inputs=[gy, x, w, y, z, kw.get("slope")], inplace=[gw, gb, gs])
    if isinstance(r, Failed):
        return
    (n, ic), oc = np.shape(x), np.shape(w)[1]
    if need_grad_x:
        check_array(r.dx, (n, ic), dt, "dense_backward dx")
    else:
        check(r.dx is None, "dx computed although need_grad_x=False")
    check_array(r.dw, (ic, oc), dt, "dense_backward dw")
    if bias:
        check_array(r.db, (oc,), dt, "dense_backward db")
    else:
        check(r.db is None, "db computed although bias=False")
    if act == "prelu":
        check_array(r.dslope, (oc,), dt, "dense_backward dslope")
    if n == 0 and not accumulate:
        check(not r.dw.any() and (r.db is None or not r.db.any()), "batch 0 must give zero dw and db")


def t_activation(g):
    shape = tuple(g.dim() for _ in range(g.int(0, 3)))
    x = g.array(shape)
    act = g.activation()
    dt = compute_dtype(x)
    units = np.shape(x)[-1] if np.ndim(x) else 1
    kw = act_kwargs(g, act, units, dt)
    if g.bool():
        out = g.buffer(shape, dt) if g.chance(4) else None
        y = call(ops.activation_forward, x, act, **kw, out=out, inputs=[x, kw.get("slope")], inplace=[out])
        if isinstance(y, Failed):
            return
        check_array(y, np.shape(x), dt, "activation_forward")
        if act == "relu":
            check(not (y < 0).any(), "relu output < 0")
        if tame(x, kw.get("slope")):
            args = {k: np.asarray(v, np.float64) if k == "slope" else float(v) for k, v in kw.items()}
            ref = reference.act_forward(act, np.asarray(x, np.float64), **args)
            u = 2.0 ** -24 if dt == np.float32 else 2.0 ** -53
            bound = 8 * u * (np.abs(ref) + lipschitz(act, args) * np.abs(np.asarray(x, np.float64)) +
                           act_ulps(act, args)) + 1e-30
            check(not (np.abs(y - ref) > bound).any(), f"activation_forward({act}) differs from the reference")
        return
    y = g.array(shape) if not g.chance(16) else None
    z = g.array(shape) if act == "prelu" and not g.chance(16) else None
    out = g.buffer(shape, dt) if g.chance(4) else None
    r = call(ops.activation_backward, x, y, act, preact=z, grad_in=out, **kw, inputs=[x, y, z, kw.get("slope")],
             inplace=[out])
    if isinstance(r, Failed):
        return
    check_array(r.dx, np.shape(x), dt, "activation_backward dx")
    if act == "prelu":
        check_array(r.dslope, (units,), dt, "activation_backward dslope")


def t_batchnorm(g):
    n, c = g.dim(), g.dim()
    x = g.array((n, c))
    dt = compute_dtype(x)
    gamma, beta = g.array((c,)), g.array((c,))
    momentum = g.scalar([0.0, 0.5, 0.9, 0.99, 1.0])
    eps = g.scalar([1e-3, 1e-5, 1e-12, 1.0])
    training = not g.chance(3)
    rm = rv = None
    if not g.chance(4):
        rm, rv = g.buffer((c,), dt), g.buffer((c,), dt)
        if not training and g.chance(4):
            rm, rv = g.array((c,)), g.array((c,))
    r = call(ops.batchnorm_forward, x, gamma, beta, rm, rv, training=training, momentum=momentum, eps=eps,
             inputs=[x, gamma, beta] + ([] if training else [rm, rv]), inplace=[rm, rv] if training else [])
    if isinstance(r, Failed):
        return
    n, c = np.shape(x)
    check_array(r.y, (n, c), dt, "batchnorm_forward y")
    if training:
        check_array(r.mean, (c,), dt, "batchnorm_forward mean")
        check_array(r.invstd, (c,), dt, "batchnorm_forward invstd")
        check(not (r.invstd < 0).any(), "batchnorm invstd < 0")
        if tame(x):
            x64 = np.asarray(x, np.float64)
            tol = 1e-5 if dt == np.float32 else 1e-12
            check(np.allclose(r.mean, x64.mean(axis=0), rtol=tol, atol=tol * (1 + np.abs(x64).max(initial=0))),
                  "batchnorm batch mean differs from the reference")
    else:
        check(r.mean is None and r.invstd is None, "inference returned batch statistics")
    # backward on these statistics, with an independent grad_out
    gy = g.array((n, c))
    accumulate = g.chance(6)
    gg = g.buffer((c,), dt) if accumulate or g.chance(4) else None
    gbeta = g.buffer((c,), dt) if accumulate or g.chance(4) else None
    mean = r.mean if training and not g.chance(8) else g.array((c,))
    invstd = r.invstd if training and not g.chance(8) else g.array((c,))
    b = call(ops.batchnorm_backward, gy, x, gamma, mean, invstd, grad_gamma=gg, grad_beta=gbeta,
             accumulate=accumulate, inputs=[gy, x, gamma, mean, invstd], inplace=[gg, gbeta])
    if isinstance(b, Failed):
        return
    dt = compute_dtype(x, gy)
    check_array(b.dx, (n, c), dt, "batchnorm_backward dx")
    check_array(b.dgamma, (c,), dt, "batchnorm_backward dgamma")
    check_array(b.dbeta, (c,), dt, "batchnorm_backward dbeta")


def rate_value(g):
    return g.scalar([0.0, 0.1, 0.5, 0.9, 0.999, 2.0 ** -16, 1.0 - 2.0 ** -16, 0.3333])


def check_dropout_values(y, x, mask_bits, rate, dt, what):
    """y == x * (kept ? T(1 / (1 - rate)) : 0), exactly (dropout.cpp's formula)."""
    keep = np.unpackbits(mask_bits, bitorder="little", count=y.size).astype(bool).reshape(y.shape)
    xv = np.asarray(x).astype(dt)
    scale = dt.type(1.0 / (1.0 - rate))
    with np.errstate(all="ignore"):
        expect = xv * np.where(keep, scale, dt.type(0))
    check(same(y, expect.astype(dt)), f"{what}: outputs are not exactly 0 or x / (1 - rate)")
    return keep


def t_dropout(g):
    shape = tuple(g.dim() for _ in range(g.int(0, 3)))
    x = g.array(shape)
    dt = compute_dtype(x)
    rate, seed, step = rate_value(g), g.seed(), g.seed()
    training = not g.chance(4)
    out = g.buffer(shape, dt) if g.chance(4) else None
    size = math.prod(shape)
    mask_out = g.buffer(((size + 7) // 8,), np.uint8) if g.chance(4) else None
    kw = {"keep_prob": 0.8} if g.chance(32) else {}
    r = call(ops.dropout_forward, x, rate, seed=seed, step=step, training=training, out=out, mask_out=mask_out,
             **kw, inputs=[x], inplace=[out, mask_out])
    if isinstance(r, Failed):
        return
    check_array(r.y, np.shape(x), dt, "dropout_forward y")
    xv = np.asarray(x).astype(dt)
    if not training or rate == 0.0:
        check(r.mask is None, "dropout at inference / rate 0 returned a mask")
        check(same(r.y, xv), "dropout at inference / rate 0 is not the identity")
        return
    check_array(r.mask, ((r.y.size + 7) // 8,), np.dtype(np.uint8), "dropout_forward mask")
    keep = check_dropout_values(r.y, x, r.mask, float(rate), dt, "dropout_forward")
    m = call(ops.dropout_mask, np.shape(x), rate, seed=seed, step=step)
    check(not isinstance(m, Failed), f"dropout_mask refused what dropout_forward took: {getattr(m, 'exc', '')}")
    check_array(m, np.shape(x), np.dtype(bool), "dropout_mask")
    check(np.array_equal(m, keep), "dropout_mask differs from the mask dropout_forward used")
    # backward: from the stored mask, or regenerated from (seed, step)
    gy = g.array(np.shape(x))
    by_mask = g.bool()
    dx = call(ops.dropout_backward, gy, rate, mask=r.mask if by_mask else None, seed=None if by_mask else seed,
              step=step, inputs=[gy, r.mask])
    if isinstance(dx, Failed):
        return
    gdt = compute_dtype(gy)
    check_array(dx, np.shape(gy), gdt, "dropout_backward dx")
    bits = r.mask if by_mask else np.packbits(ops.dropout_mask(np.shape(gy), rate, seed=seed, step=step).ravel(),
                                              bitorder="little")
    check_dropout_values(dx, gy, bits, float(rate), gdt, "dropout_backward")


def t_dropout_misc(g):
    """dropout_backward and dropout_mask with arbitrary (possibly bad) arguments."""
    shape = tuple(g.dim() for _ in range(g.int(0, 3)))
    rate = rate_value(g)
    if g.bool():
        bad_shape = g.pick([shape, list(shape), np.array(shape), -1, (2, -1), (1.5,), "3", None, (np.int64(2), 3)])
        m = call(ops.dropout_mask, bad_shape, rate, seed=g.seed(), step=g.seed())
        if not isinstance(m, Failed):
            check(isinstance(m, np.ndarray) and m.dtype == bool, "dropout_mask: not a bool array")
        return
    gy = g.array(shape)
    size = math.prod(shape)
    mask = g.array(((size + 7) // 8,), dtypes=["uint8"] * 4 + INPUT_DTYPES) if g.bool() else None
    seed = g.seed() if mask is None or g.bool() else None
    r = call(ops.dropout_backward, gy, rate, mask=mask, seed=seed, step=g.seed(), inputs=[gy, mask])
    if not isinstance(r, Failed):
        check_array(r, np.shape(gy), compute_dtype(gy), "dropout_backward dx")


LOSSES = ("mse", "huber", "bce", "softmax")


def t_loss(g):
    kind = g.pick(LOSSES)
    n, k = g.dim(), g.dim()
    want = (n, k) if kind == "softmax" or g.bool() else (n,)
    pred = g.array(want)
    sw = g.array((n,)) if g.chance(3) else None
    if kind == "softmax" and g.bool():
        labels = g.array((n,), dtypes=["int64"] * 4 + INPUT_DTYPES)
        if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and k and g.bool():
            labels = np.abs(labels.astype(np.int64)) % k
    else:
        target = g.array(np.shape(pred) if isinstance(pred, np.ndarray) else want)
        labels = target
    dt = compute_dtype(pred)
    if kind == "mse":
        r = call(ops.mse_loss, pred, labels, sample_weight=sw, inputs=[pred, labels, sw])
    elif kind == "huber":
        r = call(ops.huber_loss, pred, labels, delta=g.scalar([1.0, 0.5, 1e-6, 1e6]), sample_weight=sw,
                 inputs=[pred, labels, sw])
    elif kind == "bce":
        r = call(ops.binary_cross_entropy_with_logits, pred, labels, sample_weight=sw, inputs=[pred, labels, sw])
    else:
        r = call(ops.softmax_cross_entropy_with_logits, pred, labels, sample_weight=sw, inputs=[pred, labels, sw])
    if isinstance(r, Failed):
        return
    check(isinstance(r.loss, float), f"{kind} loss is a {type(r.loss).__name__}, not a float")
    check_array(r.grad, np.shape(pred), dt, f"{kind} grad")
    if kind in ("mse", "huber"):
        check(not r.loss < 0, f"{kind} loss {r.loss} < 0")
    if tame(pred, labels, sw, bound=30.0):
        p = np.asarray(pred, np.float64)
        t = np.asarray(labels, np.float64)
        w = np.ones(p.shape[0]) if sw is None else np.asarray(sw, np.float64)
        per = None
        if kind == "mse":
            per = (p - t) ** 2
        elif kind == "huber":
            return  # delta is fuzzed; mse/bce/softmax cover the shared weighting code
        elif kind == "bce":
            per = np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
        elif t.ndim == 2:
            lse = np.log(np.exp(p - p.max(axis=1, keepdims=True)).sum(axis=1)) + p.max(axis=1)
            per = (t * (lse[:, None] - p)).sum(axis=1)  # -sum t log softmax(z) (t need not sum to 1)
        else:
            lse = np.log(np.exp(p - p.max(axis=1, keepdims=True)).sum(axis=1)) + p.max(axis=1)
            per = lse - p[np.arange(p.shape[0]), t.astype(np.int64)]
        per = per.reshape(p.shape[0], -1).mean(axis=1)
        ref = float((w * per).sum() / w.sum())
        tol = 1e-4 if dt == np.float32 else 1e-10
        check(abs(r.loss - ref) <= tol * (1 + np.abs(per).max(initial=0) * w.max(initial=0) / w.sum()),
              f"{kind} loss {r.loss} differs from the float64 reference {ref}")


def grad_list(g):
    k = g.int(0, 3)
    arrays = []
    for _ in range(k):
        shape = tuple(g.dim() for _ in range(g.int(0, 2)))
        dt = g.pick(["float32", "float32", "float64"])
        arrays.append(g.buffer(shape, dt))
    if k == 1 and g.bool():
        return arrays[0], arrays if isinstance(arrays[0], np.ndarray) else []
    return (tuple(arrays) if g.chance(4) else arrays), arrays


def t_clip_global(g):
    grads, arrays = grad_list(g)
    max_norm = g.scalar([0.0, 1e-30, 0.5, 1.0, 10.0, 1e30])
    strict = g.chance(4)
    allowed = (ValueError, TypeError, FloatingPointError) if strict else (ValueError, TypeError)
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]
    norm = call(optim.clip_by_global_norm, grads, max_norm, error_if_nonfinite=strict, inplace=arrays,
                allowed=allowed)
    if isinstance(norm, Failed):
        if isinstance(norm.exc, FloatingPointError):
            check(not math.isfinite(_norm64(before)), "FloatingPointError for a finite norm")
        return
    check(isinstance(norm, float), f"clip_by_global_norm returned a {type(norm).__name__}")
    ref = _norm64(before)
    if not math.isfinite(ref) or not math.isfinite(norm):
        if max(float(np.abs(b).max(initial=0)) for b in before) < 1e150 and all(np.isfinite(b).all() for b in before):
            check(math.isfinite(norm), f"finite gradients gave a non-finite norm {norm} (float64 accumulation)")
        if not math.isfinite(norm):
            check(all(a.tobytes() == b.tobytes() for a, b in zip(arrays, before)),
                  "a non-finite norm must leave the gradients untouched")
        return
    check(abs(norm - ref) <= 1e-12 * ref + 1e-300, f"norm {norm} differs from the float64 reference {ref}")
    if norm <= float(max_norm):
        check(all(a.tobytes() == b.tobytes() for a, b in zip(arrays, before)), "clipped below max_norm")
    else:
        factor = float(max_norm) / norm
        for a, b in zip(arrays, before):
            with np.errstate(all="ignore"):
                expect = b * b.dtype.type(factor)
            check(same(a, expect), "clipping did not multiply by exactly max_norm / norm")


def _norm64(arrays):
    return math.sqrt(sum(float(np.sum(np.square(b.astype(np.float64)))) for b in arrays)) if arrays else 0.0


def t_clip_value(g):
    grads, arrays = grad_list(g)
    lo = g.scalar([-1.0, 0.0, -0.0, -1e-40, -1e30, -1e300])
    hi = g.scalar([1.0, 0.0, 1e-40, 1e30, 1e300])
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]
    r = call(optim.clip_by_value, grads, lo, hi)
    if isinstance(r, Failed):
        check(all(a.tobytes() == b.tobytes() for a, b in zip(arrays, before) if isinstance(a, np.ndarray)),
              f"clip_by_value raised ({r.exc}) but clipped some gradients")
        return
    for a, b in zip(arrays, before):
        t = b.dtype.type
        with np.errstate(all="ignore"):
            expect = np.minimum(np.maximum(b, t(lo)), t(hi))  # np.maximum/minimum keep NaN
        check(same(a, expect), f"clip_by_value: {describe(a)} is not clip({describe(b)}, {lo}, {hi}) (NaN kept)")


OPT_KINDS = ("sgd", "adagrad", "adam", "rmsprop")


def t_optimizer_op(g):
    kind = g.pick(OPT_KINDS)
    n = g.dim()
    dt = g.pick(["float32", "float32", "float64"])
    params = g.buffer((n,), dt)
    grads = g.array((n,))
    kw = {"lr": g.scalar([0.0, 1e-3, 0.1, 1.0, 1e30])}
    if g.bool():
        kw.update(l1=g.scalar([0.0, 0.01]), l2=g.scalar([0.0, 0.01]))
    mask = g.pick([None, None, "bool", "uint8", "float32"])
    if mask is not None:
        mask = g.array((n,), dtypes=[mask])
    kw["weight_mask"] = mask
    states = {}
    if kind == "sgd":
        kw.update(momentum=g.scalar([0.0, 0.0, 0.9]), nesterov=g.bool())
        if kw["momentum"] != 0.0 or g.chance(8):
            states["velocity"] = kw["velocity"] = g.buffer((n,), dt)
        fn, args = ops.sgd_update, (params, grads)
    elif kind == "adagrad":
        states["accumulator"] = g.buffer((n,), dt)
        kw["eps"] = g.scalar([1e-7, 0.0])
        fn, args = ops.adagrad_update, (params, grads, states["accumulator"])
    elif kind == "adam":
        states["m"], states["v"] = g.buffer((n,), dt), g.buffer((n,), dt)
        step = g.seed()
        kw.update(beta1=g.scalar([0.9, 0.0, 0.5]), beta2=g.scalar([0.999, 0.0, 0.9]),
                  eps=g.scalar([1e-7, 0.0, 1.0]), weight_decay=g.scalar([0.0, 0.01]))
        fn, args = ops.adam_update, (params, grads, states["m"], states["v"], step)
    else:
        states["square_avg"] = g.buffer((n,), dt)
        kw.update(rho=g.scalar([0.9, 0.0, 0.99]), eps=g.scalar([1e-7, 0.0]), momentum=g.scalar([0.0, 0.9]),
                  centered=g.bool())
        if kw["momentum"] != 0.0 or g.chance(8):
            states["momentum_buffer"] = kw["momentum_buffer"] = g.buffer((n,), dt)
        if kw["centered"] or g.chance(8):
            states["grad_avg"] = kw["grad_avg"] = g.buffer((n,), dt)
        fn, args = ops.rmsprop_update, (params, grads, states["square_avg"])
    r = call(fn, *args, **kw, inputs=[grads, mask], inplace=[params] + list(states.values()))
    if isinstance(r, Failed):
        if kind == "adam" and isinstance(step, (int, np.integer)) and not isinstance(step, bool) \
                and 1 <= int(step) < 2 ** 63 and "step" in str(r.exc):  # steps are int64 (documented)
            raise AssertionError(f"adam_update refused the valid step={int(step)}: {r.exc}")
        return
    check(r is None, "an in-place update returned a value")


def t_optimizer_class(g):
    cls = g.pick([optim.SGD, optim.Adagrad, optim.Adam, optim.AdamW, optim.RMSProp])
    kw = {"lr": g.scalar([1e-3, 0.1])}
    if cls is optim.SGD and g.bool():
        kw.update(momentum=g.scalar([0.9, 0.0]), nesterov=g.bool())
    if cls is optim.RMSProp and g.bool():
        kw.update(momentum=g.scalar([0.9, 0.0]), centered=g.bool())
    if cls in (optim.Adam, optim.AdamW) and g.bool():
        kw.update(beta1=g.scalar([0.9]), beta2=g.scalar([0.999]))
    opt = call(cls, **kw)
    if isinstance(opt, Failed):
        return
    n = g.dim()
    dt = g.pick(["float32", "float64"])
    params = g.buffer((n,), dt)
    for i in range(g.int(1, 3)):
        grads = g.array((n,))
        state = {k: v.copy() for k, v in opt.state.items()}
        it = opt.iterations
        r = call(opt.step, params, grads, inputs=[grads], inplace=[params])
        if isinstance(r, Failed):
            check(opt.iterations == it, "a refused step advanced iterations")
            check(set(state) == set(opt.state) and all(same(state[k], opt.state[k]) for k in state),
                  "a refused step changed the optimizer state")
            return
        check(opt.iterations == it + 1, "a step did not advance iterations")


def build_model(g):
    dtype = g.pick([np.float32, np.float64])
    n_in, hid, n_out = g.int(1, 5), g.int(1, 5), g.int(1, 4)
    layers = [nn.Dense(n_in, hid, activation=g.pick(reference.ACTIVATIONS))]
    if g.bool():
        layers.append(nn.BatchNorm(hid, momentum=g.scalar([0.99, 0.0, 0.5]), eps=g.scalar([1e-3, 1e-8])))
    if g.bool():
        layers.append(nn.Dropout(g.scalar([0.0, 0.2, 0.5, 0.9])))
    if g.chance(3):
        layers.append(nn.Activation(g.pick(["relu", "tanh", "sigmoid", "elu", "leaky_relu", "linear"])))
    layers.append(nn.Dense(hid, n_out, use_bias=not g.chance(4)))
    return nn.Sequential(layers, seed=g.seed(), dtype=dtype)


def t_sequential(g):
    model = call(build_model, g)
    if isinstance(model, Failed):
        return
    n = g.dim()
    x = g.array((n, model.in_features))
    what = g.int(0, 2)
    if np.ndim(x) == 2:
        n = np.shape(x)[0]  # the fuzzed x may have other rows than asked for: any is fine
    if what == 0:
        training = g.bool()
        y = call(model.forward, x, training=training, inputs=[x])
        if isinstance(y, Failed):
            return
        check_array(y, (n, model.out_features), model.dtype, "Sequential.forward")
        gy = g.array((n, model.out_features))
        gx = call(model.backward, gy, inputs=[gy])
        if not isinstance(gx, Failed):
            check_array(gx, (n, model.in_features), model.dtype, "Sequential.backward")
        return
    if what == 1:
        y = call(model.predict, x, inputs=[x])
        if isinstance(y, Failed):
            return
        check_array(y, (n, model.out_features), model.dtype, "Sequential.predict")
        chunked = call(model.predict, x, batch_size=g.int(1, 4), inputs=[x])
        check(not isinstance(chunked, Failed) and same(chunked, y), "predict depends on the batch size")
        return
    loss = g.pick(["mse", "huber", "bce", "softmax_cross_entropy", "bogus"])
    if loss == "softmax_cross_entropy" and g.bool():
        y = g.array((n,), dtypes=["int64"] * 4 + INPUT_DTYPES)
        if isinstance(y, np.ndarray) and y.dtype.kind in "iu":
            y = np.abs(y.astype(np.int64)) % model.out_features
    else:
        y = g.array((n, model.out_features) if g.bool() or model.out_features > 1 else (n,))
    opt = g.pick([optim.SGD(0.01), optim.Adam(1e-3), optim.Adagrad(), optim.RMSProp(momentum=0.5),
                  optim.AdamW(), "adam", None])
    clip = None if g.bool() else g.scalar([1.0, 0.0, 1e-30])
    snap = (model.params.copy(), model.buffers.copy(), model.step)
    state = {k: v.copy() for k, v in opt.state.items()} if isinstance(opt, optim.Optimizer) else None
    it = getattr(opt, "iterations", None)
    r = call(model.train_step, x, y, loss=loss, optimizer=opt, clip_norm=clip, inputs=[x, y],
             allowed=(ValueError, TypeError, FloatingPointError))
    if isinstance(r, Failed):
        check(same(model.params, snap[0]) and same(model.buffers, snap[1]),
              f"train_step raised {type(r.exc).__name__} but changed the model")
        if state is not None:
            check(set(state) == set(opt.state) and all(same(v, opt.state[k]) for k, v in state.items()),
                  "train_step raised but changed the optimizer state")
        return
    check(isinstance(r, float), f"train_step returned a {type(r).__name__}")
    check(math.isfinite(r), f"train_step returned the non-finite loss {r} instead of raising FloatingPointError")
    check(model.step == snap[2] + 1, "train_step did not count one step")
    check(opt.iterations == it + 1, "train_step did not count one optimizer iteration")


SCALERS = ("StandardScaler", "MinMaxScaler", "RobustScaler", "LogScaler", "Clipper")


def make_scaler(g, name):
    if name == "StandardScaler":
        return preprocessing.StandardScaler(with_mean=g.pick([True, True, False]), with_std=g.pick([True, True, False]))
    if name == "MinMaxScaler":
        return preprocessing.MinMaxScaler(feature_range=g.pick([(0, 1), (-1, 1), (1, 0), (0, 0), "ab", (0, 1, 2),
                                                                (0, math.nan)]), clip=g.bool())
    if name == "RobustScaler":
        return preprocessing.RobustScaler(quantile_range=g.pick([(25, 75), (0, 100), (50, 50), (75, 25), (-1, 50),
                                                                 (10.5, 90), "x"]))
    if name == "LogScaler":
        return preprocessing.LogScaler(offset=g.pick([1.0, 0.0, 10.0, 1e300, math.nan, "1"]))
    return preprocessing.Clipper(lower=g.pick([None, -1.0, 0.0, [0.0], math.nan]), upper=g.pick([None, 1.0, 2.0]),
                                 quantile_range=g.pick([None, None, (5, 95), (0, 100), (95, 5)]))


def scaler_dtype(scaler, X):
    """A scaler's output dtype: X's when float32 (or float16, for the scalers that keep it:
    API.md), else float64."""
    kept = (np.float32,) + ((np.float16,) if scaler._keeps_float16 else ())
    return dtype_of(X) if dtype_of(X) in kept else np.dtype(np.float64)


def t_scaler(g):
    name = g.pick(SCALERS)
    scaler = make_scaler(g, name)
    n, c = g.dim(), g.dim()
    X = g.array((n, c))
    how = g.int(0, 2)
    if how == 0:
        fitted = call(scaler.fit, X, inputs=[X])
    elif how == 1:
        fitted = call(scaler.partial_fit, X, inputs=[X])
        if not isinstance(fitted, Failed):
            X2 = g.array((g.dim(), c))
            fitted = call(scaler.partial_fit, X2, inputs=[X2])
    else:
        Z = call(scaler.fit_transform, X, inputs=[X])
        if isinstance(Z, Failed):
            return
        check_array(Z, np.shape(X), scaler_dtype(scaler, X), f"{name}.fit_transform")
        Z2 = call(scaler.transform, X, inputs=[X])
        check(not isinstance(Z2, Failed) and same(Z, Z2), f"{name}: fit_transform(X) != fit(X).transform(X)")
        return
    if isinstance(fitted, Failed):
        return
    check(fitted is scaler, f"{name}.fit did not return self")
    X3 = g.array((g.dim(), c))
    Z = call(scaler.transform, X3, inputs=[X3])
    if isinstance(Z, Failed):
        return
    check_array(Z, np.shape(X3), scaler_dtype(scaler, X3), f"{name}.transform")
    x3 = np.asarray(X3, np.float64)
    check(not (np.isnan(x3) & ~np.isnan(Z)).any(), f"{name}.transform: a NaN input did not stay NaN")
    if hasattr(scaler, "inverse_transform"):
        back = call(scaler.inverse_transform, Z, inputs=[Z])
        if not isinstance(back, Failed):
            check_array(back, Z.shape, Z.dtype, f"{name}.inverse_transform")


TARGETS = [t_dense_forward, t_dense_backward, t_activation, t_batchnorm, t_dropout, t_dropout_misc, t_loss,
           t_clip_global, t_clip_value, t_optimizer_op, t_optimizer_class, t_sequential, t_scaler]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    g = Gen(fdp)
    target = TARGETS[g.int(0, len(TARGETS) - 1)]
    if EXPLAIN:
        print(f"TARGET {target.__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow-in-cast warnings from NumPy are expected here
        target(g)


def main(argv):
    global EXPLAIN
    if len(argv) > 2 and argv[1] == "--explain":
        EXPLAIN = True
        for path in argv[2:]:
            with open(path, "rb") as f:
                data = f.read()
            print(f"== {path} ({len(data)} bytes)")
            TestOneInput(data)
        return
    instrument_package("fastnn")  # only when fuzzing: importing this module leaves fastnn as it is
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
