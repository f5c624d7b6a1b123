"""Functional kernels over NumPy arrays: embed them in any NumPy pipeline.

Shapes use ``N`` (rows), ``IC`` (in_features) and ``OC`` (out_features). Weights are
laid out ``(in_features, out_features)``: a dense layer computes ``act(x @ w + b)``.
float32 is the fast path; float64 is supported (used for gradient checks). Inputs of
other numeric dtypes, non-contiguous or Fortran-ordered inputs are converted once, here;
read-only inputs are never written. Every kernel releases the GIL, runs on OpenMP
threads and gives bitwise-identical results for any thread count.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import _core
from fastnn._checks import (
    as_numeric,
    check_ndim,
    check_scalar,
    compute_dtype,
    out_or_new,
    to_kernel,
)

_ACTIVATION_CODES = dict(_core.Activation.__members__)  # built once: __members__ is rebuilt per access
ACTIVATIONS = tuple(_ACTIVATION_CODES)
"""Names accepted by ``activation=``: linear, relu, leaky_relu, prelu, elu, sigmoid, tanh."""

__all__ = [
    "ACTIVATIONS",
    "ActivationGrads",
    "DenseGrads",
    "activation_backward",
    "activation_forward",
    "dense_backward",
    "dense_forward",
]


class DenseGrads(NamedTuple):
    """Gradients of a dense layer: ``dx (N, IC)`` (None when not requested),
    ``dw (IC, OC)``, ``db (OC,)`` (None without bias), ``dslope (OC,)`` (prelu only)."""

    dx: np.ndarray | None
    dw: np.ndarray
    db: np.ndarray | None
    dslope: np.ndarray | None


class ActivationGrads(NamedTuple):
    """Gradients of an activation: ``dx`` (shape of the input) and ``dslope`` (prelu only)."""

    dx: np.ndarray
    dslope: np.ndarray | None


def _activation(activation, negative_slope, alpha):
    """(enum, scalar parameter) for an activation name, validated."""
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a string, one of {ACTIVATIONS}, got {type(activation).__name__}")
    code = _ACTIVATION_CODES.get(activation)
    if code is None:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if activation == "leaky_relu":
        # >= 0 keeps the function monotone, so the backward can read the sign from the output.
        return code, check_scalar("negative_slope", negative_slope, low=0.0)
    if activation == "elu":
        return code, check_scalar("alpha", alpha, low=0.0, low_open=True)
    return code, 0.0


def _slope(activation, slope, n_units, dtype, n_units_name):
    if activation != "prelu":
        if slope is not None:
            raise ValueError(f"slope is only used by activation='prelu', got activation={activation!r}")
        return None
    if slope is None:
        raise ValueError(f"activation='prelu' needs slope, an array of shape ({n_units},) ({n_units_name})")
    s = as_numeric("slope", slope)
    if s.shape != (n_units,):
        raise ValueError(f"slope must have shape ({n_units},) ({n_units_name}), got {s.shape}")
    return to_kernel(s, dtype)


def _matching(name, arr, shape, dtype, why):
    """An optional companion array (forward output, pre-activation) of a given shape."""
    a = as_numeric(name, arr)
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ({why}), got {a.shape}")
    return to_kernel(a, dtype)


def dense_forward(x, w, b=None, activation="linear", *, negative_slope=0.01, alpha=1.0, slope=None,
                  out=None, preact_out=None):
    """Dense layer forward with fused bias and activation: ``y = act(x @ w + b)``.

    Parameters
    ----------
    x : array of shape (N, IC)
    w : array of shape (IC, OC)
    b : array of shape (OC,), optional
    activation : {"linear", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh"}
    negative_slope : float >= 0, leaky_relu's slope for z < 0 (default 0.01)
    alpha : float > 0, ELU's alpha (default 1.0)
    slope : array of shape (OC,), the learned PReLU slopes (prelu only)
    out : float array of shape (N, OC), optional, written in place
    preact_out : float array of shape (N, OC), optional: receives ``z = x @ w + b``
        (the prelu backward needs it)

    Returns
    -------
    y : array of shape (N, OC), float64 if any input is float64, else float32.
        A row of ``y`` depends only on the same row of ``x`` (bitwise), so predicting in
        chunks equals predicting all at once.
    """
    x = as_numeric("x", x)
    w = as_numeric("w", w)
    b = None if b is None else as_numeric("b", b)
    check_ndim("x", x, 2, "(n_samples, in_features)")
    check_ndim("w", w, 2, "(in_features, out_features)")
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w must have shape (in_features, out_features) = ({x.shape[1]}, OC) to match "
                         f"x of shape {x.shape}, got {w.shape}")
    n, oc = x.shape[0], w.shape[1]
    if b is not None and b.shape != (oc,):
        raise ValueError(f"b must have shape ({oc},) (out_features), got {b.shape}")
    code, param = _activation(activation, negative_slope, alpha)
    dtype = compute_dtype(x, w, b)
    s = _slope(activation, slope, oc, dtype, "out_features")
    y = out_or_new("out", out, (n, oc), dtype)
    z = None if preact_out is None else out_or_new("preact_out", preact_out, (n, oc), dtype)
    _core.dense_forward(to_kernel(x, dtype), to_kernel(w, dtype), None if b is None else to_kernel(b, dtype),
                        y, z, code, param, s)
    return y


def dense_backward(grad_out, x, w, out=None, activation="linear", *, preact=None, slope=None,
                   negative_slope=0.01, alpha=1.0, need_grad_x=True, bias=True, grad_x=None, grad_w=None,
                   grad_b=None, grad_slope=None, accumulate=False):
    """Dense layer backward with the activation derivative fused in.

    With ``dz = grad_out * act'(.)``: ``dx = dz @ w.T``, ``dw = x.T @ dz``,
    ``db = dz.sum(0)`` and, for prelu, ``dslope = (grad_out * min(z, 0)).sum(0)``.
    Sums over the batch run in fixed chunks (``db`` accumulated in float64): results are
    bitwise identical for any thread count.

    Parameters
    ----------
    grad_out : array of shape (N, OC), the gradient of the loss w.r.t. the layer output
    x : array of shape (N, IC), the layer input
    w : array of shape (IC, OC)
    out : array of shape (N, OC), the forward output ``y`` (needed by every activation
        but linear and prelu)
    activation, negative_slope, alpha, slope : as in ``dense_forward``
    preact : array of shape (N, OC), ``z = x @ w + b`` (prelu only; see ``preact_out``)
    need_grad_x : bool, compute ``dx`` (False for a first layer saves a GEMM)
    bias : bool, compute ``db``
    grad_x, grad_w, grad_b, grad_slope : optional output buffers
    accumulate : bool, add into ``grad_w``/``grad_b``/``grad_slope`` instead of overwriting

    Returns
    -------
    DenseGrads(dx, dw, db, dslope)
    """
    x = as_numeric("x", x)
    w = as_numeric("w", w)
    grad_out = as_numeric("grad_out", grad_out)
    check_ndim("x", x, 2, "(n_samples, in_features)")
    check_ndim("w", w, 2, "(in_features, out_features)")
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"w must have shape ({x.shape[1]}, OC) to match x of shape {x.shape}, got {w.shape}")
    n, ic, oc = x.shape[0], x.shape[1], w.shape[1]
    if grad_out.shape != (n, oc):
        raise ValueError(f"grad_out must have shape ({n}, {oc}) (n_samples, out_features), got {grad_out.shape}")
    code, param = _activation(activation, negative_slope, alpha)
    if accumulate and (grad_w is None or (bias and grad_b is None)):
        raise ValueError("accumulate=True adds into grad_w (and grad_b): pass them")
    dtype = compute_dtype(x, w, grad_out)
    y = z = None
    if activation not in ("linear", "prelu"):
        if out is None:
            raise ValueError(f"activation={activation!r} backward needs out, the forward output of shape ({n}, {oc})")
        y = _matching("out", out, (n, oc), dtype, "the forward output")
    if activation == "prelu":
        if preact is None:
            raise ValueError(f"activation='prelu' backward needs preact (z = x @ w + b) of shape ({n}, {oc}); "
                             "get it from dense_forward(..., preact_out=...)")
        z = _matching("preact", preact, (n, oc), dtype, "the pre-activation")
    s = _slope(activation, slope, oc, dtype, "out_features")
    dx = out_or_new("grad_x", grad_x, (n, ic), dtype) if need_grad_x else None
    dw = out_or_new("grad_w", grad_w, (ic, oc), dtype)
    db = out_or_new("grad_b", grad_b, (oc,), dtype) if bias else None
    ds = out_or_new("grad_slope", grad_slope, (oc,), dtype) if activation == "prelu" else None
    if accumulate and ds is not None and grad_slope is None:
        raise ValueError("accumulate=True with prelu adds into grad_slope: pass it")
    _core.dense_backward(to_kernel(grad_out, dtype), to_kernel(x, dtype), to_kernel(w, dtype), y, z, s,
                         dx, dw, db, ds, code, param, bool(accumulate))
    return DenseGrads(dx, dw, db, ds)


def _as_rows(arr):
    """View an array of any shape as (rows, last axis) for the elementwise kernels."""
    if arr.ndim == 0:
        return arr.reshape(1, 1)
    return arr.reshape(-1, arr.shape[-1]) if arr.ndim != 2 else arr


def activation_forward(x, activation, *, negative_slope=0.01, alpha=1.0, slope=None, out=None):
    """Elementwise ``act(x)`` for an array of any shape (prelu: one slope per last-axis unit).

    Returns an array of x's shape, float64 for float64 input, else float32.
    """
    x = as_numeric("x", x)
    code, param = _activation(activation, negative_slope, alpha)
    dtype = compute_dtype(x)
    units = x.shape[-1] if x.ndim else 1
    s = _slope(activation, slope, units, dtype, "the last axis of x")
    y = out_or_new("out", out, x.shape, dtype)
    _core.activation_forward(_as_rows(to_kernel(x, dtype)), _as_rows(y), code, param, s)
    return y


def activation_backward(grad_out, out=None, activation="linear", *, preact=None, slope=None,
                        negative_slope=0.01, alpha=1.0, grad_in=None):
    """Gradient through an activation: ``dx = grad_out * act'(.)``.

    ``out`` is the forward output (every activation but linear and prelu); prelu needs
    ``preact`` (its input) and ``slope`` and also returns ``dslope`` summed over all
    leading axes.

    Returns
    -------
    ActivationGrads(dx, dslope)
    """
    g = as_numeric("grad_out", grad_out)
    code, param = _activation(activation, negative_slope, alpha)
    dtype = compute_dtype(g)
    units = g.shape[-1] if g.ndim else 1
    y = z = None
    if activation not in ("linear", "prelu"):
        if out is None:
            raise ValueError(f"activation={activation!r} backward needs out, the forward output of shape {g.shape}")
        y = _matching("out", out, g.shape, dtype, "the forward output")
    if activation == "prelu":
        if preact is None:
            raise ValueError(f"activation='prelu' backward needs preact, the forward input of shape {g.shape}")
        z = _matching("preact", preact, g.shape, dtype, "the forward input")
    s = _slope(activation, slope, units, dtype, "the last axis of grad_out")
    dx = out_or_new("grad_in", grad_in, g.shape, dtype)
    ds = np.empty(units, dtype=dtype) if activation == "prelu" else None
    _core.activation_backward(_as_rows(to_kernel(g, dtype)), None if y is None else _as_rows(y),
                              None if z is None else _as_rows(z), s, _as_rows(dx), ds, code, param, False)
    return ActivationGrads(dx, ds)
