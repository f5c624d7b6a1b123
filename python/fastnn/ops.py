"""Functional kernels over NumPy arrays: embed them in any NumPy pipeline.

Shapes use ``N`` (rows), ``IC`` (in_features) and ``OC`` (out_features). Weights are
laid out ``(in_features, out_features)``: a dense layer computes ``act(x @ w + b)``.
float32 is the fast path; float64 is supported (used for gradient checks). Inputs of
other numeric dtypes, non-contiguous or Fortran-ordered inputs are converted once, here;
read-only inputs are never written. Every kernel releases the GIL, runs on OpenMP
threads and gives bitwise-identical results for any thread count.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from fastnn import _core
from fastnn._checks import (
    DECAY,
    MOMENTUM,
    NON_NEGATIVE,
    POSITIVE,
    Options,
    as_numeric,
    check_bool,
    check_learning_rate,
    check_ndim,
    check_no_overlap,
    check_out,
    check_params,
    check_seed,
    compute_dtype,
    out_or_new,
    to_kernel,
)

_ACTIVATION_CODES = dict(_core.Activation.__members__)  # built once: __members__ is rebuilt per access
ACTIVATIONS = tuple(_ACTIVATION_CODES)
"""Names accepted by ``activation=``: linear, relu, leaky_relu, prelu, elu, sigmoid, tanh."""


_MIN_RATE = 2.0 ** -16  # masks compare 16-bit uniforms against floor(rate * 65536)


def _drop_rate(name, rate):
    """A drop probability: 0, or in [2**-16, 1) (the resolution of the dropout mask)."""
    if rate is None:
        raise TypeError(f"{name} is required: the drop probability in [0, 1) (0.2 is a good start)")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1) (the drop probability), got {type(rate).__name__}")
    rate = float(rate)
    if not (0.0 <= rate < 1.0):
        raise ValueError(f"{name} must be in [0, 1) (the drop probability), got {rate}")
    if 0.0 < rate < _MIN_RATE:
        raise ValueError(f"{name} must be 0 or at least 2**-16 ({_MIN_RATE:.3g}), the resolution of the dropout "
                         f"mask; got {rate} (which would drop nothing)")
    return rate


# The scalar arguments of the functions below, declared once by name (fastnn._checks):
# one name is one quantity here, and the same quantity as in fastnn.nn, fastnn.optim and
# the estimators. Array arguments are checked where they are converted.
_parameter_checks = {
    "activation": Options(ACTIVATIONS),
    # >= 0 keeps leaky_relu monotone, so the backward can read the sign from the output
    "negative_slope": NON_NEGATIVE,
    "alpha": POSITIVE,  # elu's scale of negative inputs
    "momentum": MOMENTUM,
    "eps": POSITIVE,
    "rate": _drop_rate,
    "seed": check_seed,
    "step": check_seed,
    "training": check_bool,
    "delta": POSITIVE,
    "lr": check_learning_rate,
    "l1": NON_NEGATIVE,
    "l2": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "beta1": DECAY,
    "beta2": DECAY,
    "rho": DECAY,
    "nesterov": check_bool,
    "centered": check_bool,
}

__all__ = [
    "ACTIVATIONS",
    "ActivationGrads",
    "BatchNormGrads",
    "BatchNormOutput",
    "DenseGrads",
    "DropoutOutput",
    "LossOutput",
    "activation_backward",
    "activation_forward",
    "adagrad_update",
    "adam_update",
    "batchnorm_backward",
    "batchnorm_forward",
    "binary_cross_entropy_with_logits",
    "dense_backward",
    "dense_forward",
    "dropout_backward",
    "dropout_forward",
    "dropout_mask",
    "huber_loss",
    "mse_loss",
    "rmsprop_update",
    "sgd_update",
    "softmax_cross_entropy_with_logits",
]


class DenseGrads(NamedTuple):
    """Gradients of a dense layer (what ``dense_backward`` returns).

    Parameters
    ----------
    dx : ndarray of shape (N, IC) or None
        Gradient of the input; None when not requested.
    dw : ndarray of shape (IC, OC)
        Gradient of the weight.
    db : ndarray of shape (OC,) or None
        Gradient of the bias; None without bias.
    dslope : ndarray of shape (OC,) or None
        Gradient of the PReLU slopes; None for other activations.
    """

    dx: np.ndarray | None
    dw: np.ndarray
    db: np.ndarray | None
    dslope: np.ndarray | None


class ActivationGrads(NamedTuple):
    """Gradients of an activation (what ``activation_backward`` returns).

    Parameters
    ----------
    dx : ndarray
        Gradient of the input, the input's shape.
    dslope : ndarray or None
        Gradient of the PReLU slopes; None for other activations.
    """

    dx: np.ndarray
    dslope: np.ndarray | None


_ACTIVATION_MEMO: dict = {}  # (name, negative_slope, alpha) -> (enum, parameter), once validated
_ACTIVATION_MEMO_SIZE = 64
_PLAIN_NUMBERS = (int, float)


def _activation(activation, negative_slope, alpha):
    """(enum, scalar parameter) for an activation name, all three validated. Valid plain
    str/int/float combinations are remembered: validating took longer than a small GEMM."""
    memo = (type(activation) is str and type(negative_slope) in _PLAIN_NUMBERS
            and type(alpha) in _PLAIN_NUMBERS)
    if memo:
        hit = _ACTIVATION_MEMO.get((activation, negative_slope, alpha))
        if hit is not None:
            return hit
    a = check_params(_parameter_checks, {"activation": activation, "negative_slope": negative_slope, "alpha": alpha})
    param = {"leaky_relu": a["negative_slope"], "elu": a["alpha"]}.get(activation, 0.0)
    result = _ACTIVATION_CODES[activation], param
    if memo and len(_ACTIVATION_MEMO) < _ACTIVATION_MEMO_SIZE:
        _ACTIVATION_MEMO[(activation, negative_slope, alpha)] = result
    return result


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
    x : array-like of shape (N, IC)
        The input.
    w : array-like of shape (IC, OC)
        The weight.
    b : array-like of shape (OC,), optional
        The bias.
    activation : {"linear", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh"}, default "linear"
        The activation fused into the layer.
    negative_slope : float, default 0.01
        ``leaky_relu``'s slope for negative inputs, >= 0.
    alpha : float, default 1.0
        ELU's alpha, > 0.
    slope : array-like of shape (OC,), optional
        The learned PReLU slopes (prelu only).
    out : ndarray of shape (N, OC), optional
        Output buffer, written in place.
    preact_out : ndarray of shape (N, OC), optional
        Receives ``z = x @ w + b`` (the prelu backward needs it).

    Returns
    -------
    y : ndarray of shape (N, OC)
        float64 if any input is float64, else float32. A row of ``y`` depends only on
        the same row of ``x`` (bitwise), so predicting in chunks equals predicting all at
        once.

    Raises
    ------
    ValueError
        If shapes disagree, an activation is unknown, or an output buffer is not a
        writeable array of the right shape and dtype.
    """
    code, param = _activation(activation, negative_slope, alpha)
    if preact_out is None and slope is None:
        # Same-dtype C-contiguous ndarrays go straight to the kernel (None: anything else)
        y = _core.dense_forward_plain(x, w, b, out, code, param)
        if y is not None:
            return y
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
    dtype = compute_dtype(x, w, b)
    s = _slope(activation, slope, oc, dtype, "out_features")
    y = out_or_new("out", out, (n, oc), dtype)
    z = None if preact_out is None else out_or_new("preact_out", preact_out, (n, oc), dtype)
    check_no_overlap([("out", y), ("preact_out", z)], [("x", x), ("w", w), ("b", b), ("slope", slope)])
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
    grad_out : array-like of shape (N, OC)
        The gradient of the loss with respect to the layer output.
    x : array-like of shape (N, IC)
        The layer input.
    w : array-like of shape (IC, OC)
        The weight.
    out : array-like of shape (N, OC), optional
        The forward output ``y`` (needed by every activation but linear and prelu).
    activation : str, default "linear"
        As in ``dense_forward``.
    preact : array-like of shape (N, OC), optional
        ``z = x @ w + b`` (prelu only; see ``preact_out``).
    slope : array-like of shape (OC,), optional
        The PReLU slopes (prelu only).
    negative_slope : float, default 0.01
        ``leaky_relu``'s slope for negative inputs, >= 0.
    alpha : float, default 1.0
        ELU's alpha, > 0.
    need_grad_x : bool, default True
        Compute ``dx`` (False for a first layer saves a GEMM).
    bias : bool, default True
        Compute ``db``.
    grad_x : ndarray of shape (N, IC), optional
        Output buffer for ``dx``.
    grad_w : ndarray of shape (IC, OC), optional
        Output buffer for ``dw``.
    grad_b : ndarray of shape (OC,), optional
        Output buffer for ``db``.
    grad_slope : ndarray of shape (OC,), optional
        Output buffer for ``dslope``.
    accumulate : bool, default False
        Add into ``grad_w``/``grad_b``/``grad_slope`` instead of overwriting.

    Returns
    -------
    DenseGrads
        ``(dx, dw, db, dslope)``.

    Raises
    ------
    ValueError
        If shapes disagree or a required input (``out``, ``preact``) is missing.
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
    check_no_overlap([("grad_x", dx), ("grad_w", dw), ("grad_b", db), ("grad_slope", ds)],
                     [("grad_out", grad_out), ("x", x), ("w", w), ("out", out), ("preact", preact), ("slope", slope)])
    _core.dense_backward(to_kernel(grad_out, dtype), to_kernel(x, dtype), to_kernel(w, dtype), y, z, s,
                         dx, dw, db, ds, code, param, bool(accumulate))
    return DenseGrads(dx, dw, db, ds)


def _as_rows(arr):
    """View an array of any shape as (rows, last axis) for the elementwise kernels."""
    if arr.ndim == 0:
        return arr.reshape(1, 1)
    return arr.reshape(-1, arr.shape[-1]) if arr.ndim != 2 else arr


def activation_forward(x, activation, *, negative_slope=0.01, alpha=1.0, slope=None, out=None):
    """Apply an activation elementwise to an array of any shape.

    Parameters
    ----------
    x : array-like
        The input.
    activation : {"linear", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh"}
        The activation.
    negative_slope : float, default 0.01
        ``leaky_relu``'s slope for negative inputs, >= 0.
    alpha : float, default 1.0
        ELU's alpha, > 0.
    slope : array-like, optional
        PReLU slopes, one per unit of the last axis (prelu only).
    out : ndarray, optional
        Output buffer of x's shape.

    Returns
    -------
    ndarray
        ``act(x)``, x's shape; float64 for float64 input, else float32.
    """
    x = as_numeric("x", x)
    code, param = _activation(activation, negative_slope, alpha)
    dtype = compute_dtype(x)
    units = x.shape[-1] if x.ndim else 1
    s = _slope(activation, slope, units, dtype, "the last axis of x")
    y = out_or_new("out", out, x.shape, dtype)
    check_no_overlap([("out", y)], [("x", x), ("slope", slope)], elementwise=True)
    _core.activation_forward(_as_rows(to_kernel(x, dtype)), _as_rows(y), code, param, s)
    return y


def activation_backward(grad_out, out=None, activation="linear", *, preact=None, slope=None,
                        negative_slope=0.01, alpha=1.0, grad_in=None):
    """Gradient through an activation: ``dx = grad_out * act'(.)``.

    ``out`` is the forward output (every activation but linear and prelu); prelu needs
    ``preact`` (its input) and ``slope`` and also returns ``dslope`` summed over all
    leading axes.

    Parameters
    ----------
    grad_out : array-like
        The gradient of the loss with respect to the activation's output.
    out : array-like, optional
        The forward output.
    activation : str, default "linear"
        The activation.
    preact : array-like, optional
        The forward input (prelu only).
    slope : array-like, optional
        The PReLU slopes (prelu only).
    negative_slope : float, default 0.01
        ``leaky_relu``'s slope for negative inputs, >= 0.
    alpha : float, default 1.0
        ELU's alpha, > 0.
    grad_in : ndarray, optional
        Output buffer for ``dx``.

    Returns
    -------
    ActivationGrads
        ``(dx, dslope)``.
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
    # in place over grad_out or out is safe elementwise; prelu also sums grad_out for dslope
    check_no_overlap([("grad_in", dx)], [("grad_out", g), ("out", out), ("preact", preact), ("slope", slope)],
                     elementwise=activation != "prelu")
    ds = np.empty(units, dtype=dtype) if activation == "prelu" else None
    _core.activation_backward(_as_rows(to_kernel(g, dtype)), None if y is None else _as_rows(y),
                              None if z is None else _as_rows(z), s, _as_rows(dx), ds, code, param, False)
    return ActivationGrads(dx, ds)


# ----------------------------------------------------------------------------- batch norm


class BatchNormOutput(NamedTuple):
    """What ``batchnorm_forward`` returns.

    Parameters
    ----------
    y : ndarray of shape (N, C)
        The normalized output.
    mean : ndarray of shape (C,) or None
        The batch mean (training; None at inference).
    invstd : ndarray of shape (C,) or None
        The batch's ``1 / sqrt(var + eps)`` (training; None at inference).
    """

    y: np.ndarray
    mean: np.ndarray | None
    invstd: np.ndarray | None


class BatchNormGrads(NamedTuple):
    """What ``batchnorm_backward`` returns.

    Parameters
    ----------
    dx : ndarray of shape (N, C)
        Gradient of the input.
    dgamma : ndarray of shape (C,)
        Gradient of gamma.
    dbeta : ndarray of shape (C,)
        Gradient of beta.
    """

    dx: np.ndarray
    dgamma: np.ndarray
    dbeta: np.ndarray


def _feature_vector(name, v, c, dtype, *, writes=False):
    """A (C,) per-feature vector; one written in place must be the caller's exact buffer."""
    if writes:
        return check_out(name, v, (c,), dtype)
    a = as_numeric(name, v)
    if a.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},) (num_features), got {a.shape}")
    return to_kernel(a, dtype)


def _bn_momentum_eps(momentum, eps):
    checked = check_params(_parameter_checks, {"momentum": momentum, "eps": eps})
    return checked["momentum"], checked["eps"]


def batchnorm_forward(x, gamma, beta, running_mean=None, running_var=None, *, training=True, momentum=0.99,
                      eps=1e-3, out=None, mean_out=None, invstd_out=None):
    """Batch normalization over the rows of ``x``, per feature.

    Training: ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the batch mean and
    biased variance; the running statistics, when given, are updated in place as
    ``running = momentum * running + (1 - momentum) * batch`` (the TensorFlow/Keras
    convention: ``momentum`` weighs the OLD value; PyTorch's ``momentum=0.1`` is
    fastnn's 0.9), with the unbiased variance for ``running_var`` (as PyTorch).
    Inference: ``running_mean``/``running_var`` replace the batch statistics, so each row
    is normalized independently of the others.

    Parameters
    ----------
    x : array-like of shape (N, C)
        The input; training needs N >= 2 (one row has zero variance).
    gamma : array-like of shape (C,)
        Scale.
    beta : array-like of shape (C,)
        Shift.
    running_mean : ndarray of shape (C,), optional
        Updated in place in training (then a writeable array of x's float dtype);
        required at inference.
    running_var : ndarray of shape (C,), optional
        As ``running_mean``.
    training : bool, default True
        Batch statistics (True) or the running ones (False).
    momentum : float, default 0.99
        Weight of the old running value, in [0, 1].
    eps : float, default 1e-3
        Added to the variance, > 0 (Keras' default).
    out : ndarray of shape (N, C), optional
        Output buffer for ``y``.
    mean_out : ndarray of shape (C,), optional
        Output buffer for the batch mean.
    invstd_out : ndarray of shape (C,), optional
        Output buffer for the batch's inverse standard deviation.

    Returns
    -------
    BatchNormOutput
        ``(y, mean, invstd)``.

    Raises
    ------
    ValueError
        If shapes disagree, training has fewer than 2 rows, or inference lacks the
        running statistics.
    """
    x = as_numeric("x", x)
    check_ndim("x", x, 2, "(n_samples, num_features)")
    n, c = x.shape
    momentum, eps = _bn_momentum_eps(momentum, eps)
    training = _parameter_checks["training"]("training", training)
    dtype = compute_dtype(x)
    g = _feature_vector("gamma", gamma, c, dtype)
    b = _feature_vector("beta", beta, c, dtype)
    if training and n < 2:
        raise ValueError(f"batch norm training needs at least 2 rows: the variance of {n} row(s) is zero, "
                         "so every output would be beta. Use a larger batch (or training=False).")
    if (running_mean is None) != (running_var is None):
        raise ValueError("pass both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise ValueError("training=False normalizes with running_mean and running_var: pass them")
    rm = rv = None
    if running_mean is not None:
        rm = _feature_vector("running_mean", running_mean, c, dtype, writes=training)
        rv = _feature_vector("running_var", running_var, c, dtype, writes=training)
    y = out_or_new("out", out, (n, c), dtype)
    mean = invstd = None
    if training:
        mean = out_or_new("mean_out", mean_out, (c,), dtype)
        invstd = out_or_new("invstd_out", invstd_out, (c,), dtype)
    check_no_overlap([("out", y), ("mean_out", mean), ("invstd_out", invstd), ("running_mean", rm),
                      ("running_var", rv)], [("x", x), ("gamma", gamma), ("beta", beta)])
    _core.batchnorm_forward(to_kernel(x, dtype), g, b, y, mean, invstd, rm, rv, bool(training), eps, momentum)
    return BatchNormOutput(y, mean, invstd)


def batchnorm_backward(grad_out, x, gamma, mean, invstd, *, grad_x=None, grad_gamma=None, grad_beta=None,
                       accumulate=False):
    """Gradients of training-mode batch norm, in the standard two-reduction form:
    ``dbeta = sum(dy)``, ``dgamma = sum(dy * xhat)``,
    ``dx = gamma * invstd / N * (N * dy - dbeta - xhat * dgamma)`` with
    ``xhat = (x - mean) * invstd``; ``mean`` and ``invstd`` come from ``batchnorm_forward``.
    Sums run in fixed row chunks in float64: bitwise identical for any thread count.

    Parameters
    ----------
    grad_out : array-like of shape (N, C)
        Gradient of the loss with respect to the output.
    x : array-like of shape (N, C)
        The forward input.
    gamma : array-like of shape (C,)
        Scale.
    mean : array-like of shape (C,)
        The batch mean from ``batchnorm_forward``.
    invstd : array-like of shape (C,)
        The batch's inverse standard deviation from ``batchnorm_forward``.
    grad_x : ndarray of shape (N, C), optional
        Output buffer for ``dx``.
    grad_gamma : ndarray of shape (C,), optional
        Output buffer for ``dgamma``.
    grad_beta : ndarray of shape (C,), optional
        Output buffer for ``dbeta``.
    accumulate : bool, default False
        Add into ``grad_gamma`` and ``grad_beta`` instead of overwriting.

    Returns
    -------
    BatchNormGrads
        ``(dx (N, C), dgamma (C,), dbeta (C,))``.
    """
    x = as_numeric("x", x)
    check_ndim("x", x, 2, "(n_samples, num_features)")
    n, c = x.shape
    g_out = as_numeric("grad_out", grad_out)
    if g_out.shape != (n, c):
        raise ValueError(f"grad_out must have shape {(n, c)}, got {g_out.shape}")
    if n < 1:
        raise ValueError("batchnorm_backward needs at least one row")
    dtype = compute_dtype(x, g_out)
    if accumulate and (grad_gamma is None or grad_beta is None):
        raise ValueError("accumulate=True adds into grad_gamma and grad_beta: pass them")
    dx = out_or_new("grad_x", grad_x, (n, c), dtype)
    dgamma = out_or_new("grad_gamma", grad_gamma, (c,), dtype)
    dbeta = out_or_new("grad_beta", grad_beta, (c,), dtype)
    check_no_overlap([("grad_x", dx), ("grad_gamma", dgamma), ("grad_beta", dbeta)],
                     [("grad_out", grad_out), ("x", x), ("gamma", gamma), ("mean", mean), ("invstd", invstd)])
    _core.batchnorm_backward(to_kernel(g_out, dtype), to_kernel(x, dtype), _feature_vector("gamma", gamma, c, dtype),
                             _feature_vector("mean", mean, c, dtype), _feature_vector("invstd", invstd, c, dtype),
                             dx, dgamma, dbeta, bool(accumulate))
    return BatchNormGrads(dx, dgamma, dbeta)


# ----------------------------------------------------------------------------- dropout


class DropoutOutput(NamedTuple):
    """What ``dropout_forward`` returns.

    Parameters
    ----------
    y : ndarray
        The output, x's shape.
    mask : ndarray of uint8 or None
        The kept elements as packed bits (little bit order:
        ``np.unpackbits(mask, bitorder="little")[:x.size]``), or None when nothing is
        dropped (inference, or rate 0).
    """

    y: np.ndarray
    mask: np.ndarray | None


def _percent(p: float) -> str:
    return f"{100 * p:.4g}%"


def keep_prob_refusal(keep_prob, name: str = "rate") -> ValueError:
    """The error for a ``keep_prob`` argument: fastnn takes the drop rate. It gives the
    conversion with the caller's own numbers (TensorFlow 1's ``keep_prob=0.8`` is
    ``rate=0.2``; mixing them up drops 80% instead of 20%)."""
    try:
        kp = float(keep_prob)
    except (TypeError, ValueError):
        kp = math.nan
    if not 0.0 < kp <= 1.0:
        return ValueError(f"fastnn takes the DROP rate ({name}, in [0, 1)), not keep_prob: pass {name}=1 - keep_prob "
                          f"(got keep_prob={keep_prob!r})")
    return ValueError(f"fastnn takes the DROP rate, not keep_prob: keep_prob={kp:g} keeps {_percent(kp)} of the units, "
                      f"so pass {name}={1.0 - kp:g}. (Passing {kp:g} as {name} would drop {_percent(kp)} of the units "
                      f"instead of {_percent(1.0 - kp)}.)")


def _check_rate(rate, keep_prob, name="rate"):
    """The drop rate, after refusing a ``keep_prob`` (with the conversion)."""
    if keep_prob is not None:
        raise keep_prob_refusal(keep_prob, name)
    return _drop_rate(name, rate)


def _mask_buffer(n):
    return np.empty((n + 7) // 8, dtype=np.uint8)


def dropout_forward(x, rate=None, *, seed, step=0, training=True, out=None, mask_out=None, keep_prob=None):
    """Inverted dropout: each element is zeroed with probability ``rate`` (the DROP
    probability, 0 <= rate < 1) and the survivors are scaled by ``1 / (1 - rate)``, so the
    expected activation is unchanged; at inference (``training=False``) or with
    ``rate=0`` it is the identity.

    The mask is a pure function of ``(seed, step, element index)`` through the
    counter-based Philox4x32-10 generator: identical for any thread count and SIMD path,
    different for each ``step``. Element ``e`` (in C order) is dropped when the 16-bit
    uniform ``(word >> (16 * (e % 2))) & 0xFFFF``, with ``word`` the ``(e // 2) % 4``-th
    output word of ``philox4x32_10(counter=(e // 8 low 32 bits, e // 8 high 32 bits,
    step low, step high), key=(seed low, seed high))``, is below ``floor(rate * 65536)``:
    the drop probability is ``rate`` rounded down to a multiple of 2**-16, and a non-zero
    rate below 2**-16 is refused (it would drop nothing).
    A dropped NaN/Inf stays visible (``x * 0``).

    Parameters
    ----------
    x : array-like
        The input.
    rate : float
        The DROP probability, 0 <= rate < 1.
    seed : int
        Key of the mask.
    step : int, default 0
        Counter of the mask (a new mask per step).
    training : bool, default True
        False is the identity.
    out : ndarray, optional
        Output buffer of x's shape.
    mask_out : ndarray of uint8, optional
        Output buffer for the packed mask, ``ceil(x.size / 8)`` bytes.
    keep_prob : float, optional
        Refused (with the conversion in the message): dropout takes a drop rate.

    Returns
    -------
    DropoutOutput
        ``(y, mask)``: ``mask`` packs the kept elements as bits for ``dropout_backward``.

    Raises
    ------
    ValueError
        If ``rate`` is out of range (or below 2**-16 but not 0) or ``keep_prob`` is
        passed.
    """
    rate = _check_rate(rate, keep_prob)
    seed, step, training = check_params(_parameter_checks, {"seed": seed, "step": step, "training": training}).values()
    x = as_numeric("x", x)
    dtype = compute_dtype(x)
    y = out_or_new("out", out, x.shape, dtype)
    check_no_overlap([("out", y), ("mask_out", mask_out)], [("x", x)], elementwise=True)
    xk = to_kernel(x, dtype)
    if not training or rate == 0.0:
        np.copyto(y, xk)
        return DropoutOutput(y, None)
    mask = _mask_buffer(x.size) if mask_out is None else check_out("mask_out", mask_out, ((x.size + 7) // 8,),
                                                                    np.dtype(np.uint8))
    _core.dropout(xk.reshape(-1), y.reshape(-1), mask, None, x.size, rate, seed, step, False)
    return DropoutOutput(y, mask)


def dropout_backward(grad_out, rate=None, *, mask=None, seed=None, step=0, grad_in=None, keep_prob=None):
    """Gradient of dropout: ``dx = dy * keep / (1 - rate)``.

    Parameters
    ----------
    grad_out : array-like
        The gradient of the loss with respect to the output.
    rate : float
        The DROP probability, 0 <= rate < 1.
    mask : ndarray of uint8, optional
        The packed mask from ``dropout_forward``.
    seed : int, optional
        Without ``mask``: regenerate it from the forward's ``seed`` (no mask stored).
    step : int, default 0
        The forward's step, with ``seed``.
    grad_in : ndarray, optional
        Output buffer for ``dx``.
    keep_prob : float, optional
        Refused: dropout takes a drop rate.

    Returns
    -------
    ndarray
        ``dx``, grad_out's shape.

    Raises
    ------
    ValueError
        If neither ``mask`` nor ``seed`` is given, or the mask's size is wrong.
    """
    rate = _check_rate(rate, keep_prob)
    g = as_numeric("grad_out", grad_out)
    dtype = compute_dtype(g)
    dx = out_or_new("grad_in", grad_in, g.shape, dtype)
    check_no_overlap([("grad_in", dx)], [("grad_out", g), ("mask", mask)], elementwise=True)
    gk = to_kernel(g, dtype)
    if rate == 0.0:
        np.copyto(dx, gk)
        return dx
    if mask is None and seed is None:
        raise ValueError("dropout_backward needs the mask from dropout_forward, or its seed (and step)")
    m = None
    if mask is not None:
        m = as_numeric("mask", mask)
        if m.dtype != np.uint8 or m.shape != ((g.size + 7) // 8,):
            raise ValueError(f"mask must be the packed uint8 mask of shape ({(g.size + 7) // 8},) from "
                             f"dropout_forward, got {m.dtype} {m.shape}")
        m = np.ascontiguousarray(m)
        seed = 0 if seed is None else seed
    _core.dropout(gk.reshape(-1), dx.reshape(-1), None, m, g.size, rate, check_seed("seed", seed),
                  check_seed("step", step), True)
    return dx


def dropout_mask(shape, rate=None, *, seed, step=0, keep_prob=None):
    """Compute the keep-mask ``dropout_forward`` uses for an input of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        The input's shape.
    rate : float
        The DROP probability, 0 <= rate < 1.
    seed : int
        Key of the mask.
    step : int, default 0
        Counter of the mask.
    keep_prob : float, optional
        Refused: dropout takes a drop rate.

    Returns
    -------
    ndarray of bool
        True where an element is kept, of the given shape.
    """
    rate = _check_rate(rate, keep_prob)
    shape = tuple(int(d) for d in np.atleast_1d(shape)) if not isinstance(shape, tuple) else shape
    if any(d < 0 for d in shape):
        raise ValueError(f"shape must be non-negative, got {shape}")
    n = int(np.prod(shape, dtype=np.int64))
    bits = _mask_buffer(n)
    _core.dropout(None, None, bits, None, n, rate, check_seed("seed", seed), check_seed("step", step), False)
    return np.unpackbits(bits, bitorder="little", count=n).astype(bool).reshape(shape)


# ----------------------------------------------------------------------------- losses


class LossOutput(NamedTuple):
    """What the losses return.

    Parameters
    ----------
    loss : float
        The weighted mean loss.
    grad : ndarray
        The gradient of the loss with respect to the prediction (or logits), their shape.
    """

    loss: float
    grad: np.ndarray


def _as_rows2d(name, a):
    return a.reshape(-1, 1) if a.ndim == 1 else a


def _sample_weight(sample_weight, n, dtype):
    if sample_weight is None:
        return None, float(n)
    w = as_numeric("sample_weight", sample_weight)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    w = to_kernel(w, dtype)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    total = float(w.sum(dtype=np.float64))
    if total <= 0:
        raise ValueError("sample_weight must not be all zero")
    return w, total


def _elementwise_loss(kind, name, pred, target, sample_weight, delta=1.0):
    p = as_numeric(name, pred)
    t = as_numeric("target", target)
    if p.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n_samples,) or 2-D (n_samples, n_outputs), got shape {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"target must have {name}'s shape {p.shape}, got {t.shape}")
    dtype = compute_dtype(p)
    p2 = _as_rows2d(name, to_kernel(p, dtype))
    if p2.shape[0] == 0:
        raise ValueError(f"{name} is empty: the mean loss of no samples is undefined")
    if p2.shape[1] == 0:
        raise ValueError(f"{name} has no outputs (shape {p.shape}): the mean loss over no elements is undefined")
    w, total = _sample_weight(sample_weight, p2.shape[0], dtype)
    grad = np.empty(p2.shape, dtype)
    value = _core.loss(kind, p2, _as_rows2d("target", to_kernel(t, dtype)), None, w, grad, total, delta)
    return LossOutput(value, grad.reshape(p.shape))


def mse_loss(pred, target, sample_weight=None):
    """Mean squared error, weighted per sample.

    The mean over all elements of ``(pred - target)**2`` (no 1/2); the gradient is
    ``2 * (pred - target) * w_i / (K * sum(w))``.

    Parameters
    ----------
    pred : array-like of shape (N,) or (N, K)
        Predictions.
    target : array-like of pred's shape
        Targets.
    sample_weight : array-like of shape (N,), optional
        Non-negative weight per sample; None weighs every sample 1.

    Returns
    -------
    LossOutput
        ``(loss, grad)``.
    """
    return _elementwise_loss(_core.LossKind.mse, "pred", pred, target, sample_weight)


def huber_loss(pred, target, delta=1.0, sample_weight=None):
    """Huber loss, mean over elements, weighted per sample.

    ``0.5 r**2`` for ``|r| <= delta``, else ``delta * (|r| - delta / 2)``, with
    ``r = pred - target``.

    Parameters
    ----------
    pred : array-like of shape (N,) or (N, K)
        Predictions.
    target : array-like of pred's shape
        Targets.
    delta : float, default 1.0
        Where the loss turns from quadratic to linear, > 0.
    sample_weight : array-like of shape (N,), optional
        Non-negative weight per sample; None weighs every sample 1.

    Returns
    -------
    LossOutput
        ``(loss, grad)``.
    """
    delta = _parameter_checks["delta"]("delta", delta)
    return _elementwise_loss(_core.LossKind.huber, "pred", pred, target, sample_weight, delta)


def binary_cross_entropy_with_logits(logits, target, sample_weight=None):
    """Binary cross-entropy on logits, stable for any logit.

    ``max(z, 0) - z * t + log(1 + exp(-|z|))``; mean over elements, weighted per sample.
    Its gradient is ``sigmoid(z) - t`` (scaled like the loss).

    Parameters
    ----------
    logits : array-like of shape (N,) or (N, K)
        Logits ``z``.
    target : array-like of logits' shape
        Targets ``t`` in [0, 1].
    sample_weight : array-like of shape (N,), optional
        Non-negative weight per sample; None weighs every sample 1.

    Returns
    -------
    LossOutput
        ``(loss, grad)``.
    """
    return _elementwise_loss(_core.LossKind.bce_logits, "logits", logits, target, sample_weight)


def softmax_cross_entropy_with_logits(logits, labels, sample_weight=None):
    """Softmax cross-entropy on logits (N, K) (log-sum-exp with the row max subtracted:
    stable for logits of +/-1e4), averaged over samples with optional weights.

    ``labels`` is either class indices, integers of shape (N,) in [0, K), or target
    probabilities of shape (N, K). The gradient is ``softmax(z) - onehot`` per sample.

    Parameters
    ----------
    logits : array-like of shape (N, K)
        Logits.
    labels : array-like of shape (N,) or (N, K)
        Class indices or target probabilities.
    sample_weight : array-like of shape (N,), optional
        Non-negative weight per sample; None weighs every sample 1.

    Returns
    -------
    LossOutput
        ``(loss, grad)``.

    Raises
    ------
    ValueError
        If a class index is out of range or not an integer.
    """
    z = as_numeric("logits", logits)
    check_ndim("logits", z, 2, "(n_samples, n_classes)")
    n, k = z.shape
    if n == 0:
        raise ValueError("logits is empty: the mean loss of no samples is undefined")
    if k == 0:
        raise ValueError(f"logits has no classes (shape {z.shape}): softmax over no classes is undefined")
    dtype = compute_dtype(z)
    zk = to_kernel(z, dtype)
    y = as_numeric("labels", labels)
    target = idx = None
    if y.ndim == 1:
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},) (class indices) or ({n}, {k}), got {y.shape}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise ValueError("class-index labels must be integers")
        idx = np.ascontiguousarray(y, dtype=np.int64)
        bad = (idx < 0) | (idx >= k)
        if bad.any():
            raise ValueError(f"labels must be class indices in [0, {k}), got {idx[bad][0]} at row {int(np.argmax(bad))}")
    elif y.shape == (n, k):
        target = to_kernel(y, dtype)
    else:
        raise ValueError(f"labels must have shape ({n},) (class indices) or ({n}, {k}) (probabilities), got {y.shape}")
    w, total = _sample_weight(sample_weight, n, dtype)
    grad = np.empty((n, k), dtype)
    value = _core.loss(_core.LossKind.softmax_ce, zk, target, idx, w, grad, total, 1.0)
    return LossOutput(value, grad)


# ----------------------------------------------------------------------------- optimizer updates


def _flat(name, a, *, writes, dtype=None, n=None):
    """A 1-D float buffer. Buffers updated in place must be the caller's own contiguous,
    writeable float array (a converted copy would silently lose the update)."""
    if writes:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} is updated in place and must be a numpy array, got {type(a).__name__}")
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} is updated in place and must be float32 or float64, got {a.dtype}")
        if dtype is not None and a.dtype != dtype:
            raise TypeError(f"{name} must have dtype {dtype} like params, got {a.dtype}")
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D (a flat buffer), got shape {a.shape}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be contiguous (it is updated in place)")
        if not a.flags.writeable:
            raise ValueError(f"{name} is read-only but is updated in place")
    else:
        a = as_numeric(name, a)
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D (a flat buffer), got shape {a.shape}")
        a = to_kernel(a, dtype)
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have length {n} like params, got {a.shape[0]}")
    return a


def _weight_mask(weight_mask, n):
    if weight_mask is None:
        return None
    m = np.asarray(weight_mask)
    if m.shape != (n,):
        raise ValueError(f"weight_mask must have shape ({n},) like params, got {m.shape}")
    if m.dtype != np.bool_ and m.dtype != np.uint8:
        raise TypeError(f"weight_mask must be bool or uint8, got {m.dtype}")
    return np.ascontiguousarray(m.view(np.uint8) if m.dtype == np.bool_ else m)


def _hyper(**values):
    """The update's hyperparameters, each checked by its constraint in ``_parameter_checks``."""
    return check_params(_parameter_checks, values)


def _optimizer_step(kind, params, grads, states, weight_mask, hyper, step=1):
    p = _flat("params", params, writes=True)
    n = p.shape[0]
    g = _flat("grads", grads, writes=False, dtype=p.dtype, n=n)
    buffers = [None if s is None else _flat(name, s, writes=True, dtype=p.dtype, n=n) for name, s in states]
    while len(buffers) < 3:
        buffers.append(None)
    _core.optimizer_step(kind, p, g, buffers[0], buffers[1], buffers[2], _weight_mask(weight_mask, n),
                         _core.OptimizerHyper(**hyper), step)


def sgd_update(params, grads, lr, *, velocity=None, momentum=0.0, nesterov=False, l1=0.0, l2=0.0, weight_mask=None):
    """In-place SGD step on a flat buffer (PyTorch's form): ``v = momentum * v + g``;
    ``p -= lr * (g + momentum * v if nesterov else v)``; without momentum ``p -= lr * g``.

    ``l1``/``l2`` add ``l1 * sign(p) + 2 * l2 * p`` to the gradient of the entries
    ``weight_mask`` marks (all when None): the penalty ``l1 * sum|w| + l2 * sum w**2``.

    Parameters
    ----------
    params : ndarray
        Flat float parameters, updated in place.
    grads : array-like
        Gradients, params' shape.
    lr : float
        Learning rate.
    velocity : ndarray, optional
        Momentum buffer, params' shape, updated in place (needed with momentum).
    momentum : float, default 0.0
        Momentum factor, in [0, 1].
    nesterov : bool, default False
        Nesterov momentum.
    l1 : float, default 0.0
        L1 penalty on the entries ``weight_mask`` marks.
    l2 : float, default 0.0
        L2 penalty on the entries ``weight_mask`` marks.
    weight_mask : array-like of bool, optional
        The entries the penalties (and AdamW's decay) apply to; None: all.
    """
    h = _hyper(lr=lr, momentum=momentum, l1=l1, l2=l2, nesterov=nesterov)
    if h["momentum"] > 0 and velocity is None:
        raise ValueError("momentum > 0 needs the velocity buffer (zeros, like params)")
    if h["nesterov"] and h["momentum"] == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    _optimizer_step(_core.OptimizerKind.sgd, params, grads,
                    [("velocity", velocity if h["momentum"] > 0 else None)], weight_mask, h)


def adagrad_update(params, grads, accumulator, lr=0.05, *, eps=1e-7, l1=0.0, l2=0.0, weight_mask=None):
    """In-place Adagrad step (TensorFlow/Keras form, eps outside the square root):
    ``a += g**2; p -= lr * g / (sqrt(a) + eps)``. Start ``accumulator`` at 0.1
    (``initial_accumulator_value``).

    Parameters
    ----------
    params : ndarray
        Flat float parameters, updated in place.
    grads : array-like
        Gradients, params' shape.
    accumulator : ndarray
        Sum of squared gradients, params' shape, updated in place.
    lr : float, default 0.05
        Learning rate.
    eps : float, default 1e-7
        Added outside the square root, > 0.
    l1 : float, default 0.0
        L1 penalty on the entries ``weight_mask`` marks.
    l2 : float, default 0.0
        L2 penalty on the entries ``weight_mask`` marks.
    weight_mask : array-like of bool, optional
        The entries the penalties (and AdamW's decay) apply to; None: all.
    """
    h = _hyper(lr=lr, eps=eps, l1=l1, l2=l2)
    _optimizer_step(_core.OptimizerKind.adagrad, params, grads, [("accumulator", accumulator)], weight_mask, h)


def adam_update(params, grads, m, v, step, lr=1e-3, *, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.0,
                l1=0.0, l2=0.0, weight_mask=None):
    """In-place Adam step with bias correction (the paper's form, eps added to the square
    root of the bias-corrected second moment, as PyTorch and optax do); ``step`` counts
    from 1. ``weight_decay > 0`` makes it AdamW: ``p -= lr * weight_decay * p`` (decoupled,
    on the entries ``weight_mask`` marks) before the Adam update.

    Parameters
    ----------
    params : ndarray
        Flat float parameters, updated in place.
    grads : array-like
        Gradients, params' shape.
    m : ndarray
        First moment, params' shape, updated in place.
    v : ndarray
        Second moment, params' shape, updated in place.
    step : int
        The update count, from 1.
    lr : float, default 1e-3
        Learning rate.
    beta1 : float, default 0.9
        Decay of the first moment.
    beta2 : float, default 0.999
        Decay of the second moment.
    eps : float, default 1e-7
        Added to the square root of the bias-corrected second moment, > 0.
    weight_decay : float, default 0.0
        AdamW's decoupled decay.
    l1 : float, default 0.0
        L1 penalty on the entries ``weight_mask`` marks.
    l2 : float, default 0.0
        L2 penalty on the entries ``weight_mask`` marks.
    weight_mask : array-like of bool, optional
        The entries the penalties (and AdamW's decay) apply to; None: all.
    """
    h = _hyper(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, l1=l1, l2=l2)
    step = check_seed("step", step)
    if not 1 <= step < 2 ** 63:  # Adam's step is an update count (bias correction), narrower than a seed
        raise ValueError(f"step counts updates from 1 and must be below 2**63, got {step}")
    _optimizer_step(_core.OptimizerKind.adam, params, grads, [("m", m), ("v", v)], weight_mask, h, step)


def rmsprop_update(params, grads, square_avg, lr=1e-3, *, rho=0.9, eps=1e-7, momentum=0.0, momentum_buffer=None,
                   centered=False, grad_avg=None, l1=0.0, l2=0.0, weight_mask=None):
    """In-place RMSProp step (PyTorch's form, eps outside the square root):
    ``s = rho * s + (1 - rho) * g**2``; centered subtracts the squared running mean of g;
    ``d = g / (sqrt(s) + eps)``; with momentum ``b = momentum * b + d``; ``p -= lr * d``.

    Parameters
    ----------
    params : ndarray
        Flat float parameters, updated in place.
    grads : array-like
        Gradients, params' shape.
    square_avg : ndarray
        Running average of squared gradients, params' shape, updated in place.
    lr : float, default 1e-3
        Learning rate.
    rho : float, default 0.9
        Decay of the averages.
    eps : float, default 1e-7
        Added outside the square root, > 0.
    momentum : float, default 0.0
        Momentum factor, in [0, 1].
    momentum_buffer : ndarray, optional
        Momentum buffer, params' shape (needed with momentum).
    centered : bool, default False
        Subtract the squared running mean of the gradient.
    grad_avg : ndarray, optional
        Running mean of the gradient, params' shape (needed when centered).
    l1 : float, default 0.0
        L1 penalty on the entries ``weight_mask`` marks.
    l2 : float, default 0.0
        L2 penalty on the entries ``weight_mask`` marks.
    weight_mask : array-like of bool, optional
        The entries the penalties (and AdamW's decay) apply to; None: all.
    """
    h = _hyper(lr=lr, rho=rho, eps=eps, momentum=momentum, l1=l1, l2=l2, centered=centered)
    if h["momentum"] > 0 and momentum_buffer is None:
        raise ValueError("momentum > 0 needs momentum_buffer (zeros, like params)")
    if centered and grad_avg is None:
        raise ValueError("centered=True needs grad_avg (zeros, like params)")
    _optimizer_step(_core.OptimizerKind.rmsprop, params, grads,
                    [("square_avg", square_avg), ("momentum_buffer", momentum_buffer if h["momentum"] > 0 else None),
                     ("grad_avg", grad_avg if centered else None)], weight_mask, h)
