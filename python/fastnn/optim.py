"""Optimizers' building blocks. This module holds gradient clipping; the fused update
kernels are in ``fastnn.ops`` (``sgd_update``, ``adagrad_update``, ``adam_update``,
``rmsprop_update``)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from fastnn import _core
from fastnn._checks import check_scalar

__all__ = ["clip_by_global_norm", "clip_by_value", "global_norm"]


def _grad_buffers(grads) -> list[np.ndarray]:
    """The arrays clipped in place: one float array or a sequence of them (any shape),
    each the caller's own contiguous, writeable float32/float64 array."""
    arrays: Sequence = [grads] if isinstance(grads, np.ndarray) else list(grads)
    out = []
    for i, g in enumerate(arrays):
        name = f"grads[{i}]" if not isinstance(grads, np.ndarray) else "grads"
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{name} must be a numpy array (clipped in place), got {type(g).__name__}")
        if g.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64, got {g.dtype}")
        if not g.flags.c_contiguous:
            raise ValueError(f"{name} must be contiguous (it is scaled in place)")
        out.append(g.reshape(-1))
    return out


def global_norm(grads) -> float:
    """sqrt of the sum of squares over every array, accumulated in float64 in a fixed
    order (float32 entries near 1e20 do not overflow; identical for any thread count)."""
    return math.sqrt(sum(_core.sum_squares(g) for g in _grad_buffers(grads)))


def clip_by_global_norm(grads, max_norm, *, error_if_nonfinite=False) -> float:
    """Scale every array in place by exactly ``max_norm / norm`` when the global norm
    exceeds ``max_norm`` (one factor for all), and return the norm before clipping.

    A non-finite norm (a NaN or Inf somewhere) leaves every gradient untouched and is
    returned as is (or raises ``FloatingPointError`` with ``error_if_nonfinite=True``):
    the NaN is reported, never spread into every gradient as PyTorch's default does.

    Parameters
    ----------
    grads : float array, or a sequence of float arrays (e.g. a model's flat gradient buffer)
    max_norm : float >= 0
    """
    max_norm = check_scalar("max_norm", max_norm, low=0.0)
    buffers = _grad_buffers(grads)
    for g in buffers:
        if not g.flags.writeable:
            raise ValueError("grads must be writeable (they are scaled in place)")
    norm = math.sqrt(sum(_core.sum_squares(g) for g in buffers))
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise FloatingPointError(f"the global gradient norm is {norm}: a gradient holds NaN or Inf")
        return norm
    if norm > max_norm:
        factor = max_norm / norm
        for g in buffers:
            _core.scale_(g, factor)
    return norm


def clip_by_value(grads, lo, hi) -> None:
    """Clamp every gradient entry to [lo, hi] in place (NaN stays NaN)."""
    lo = check_scalar("lo", lo)
    hi = check_scalar("hi", hi)
    if lo > hi:
        raise ValueError(f"lo must be <= hi, got lo={lo}, hi={hi}")
    for g in _grad_buffers(grads):
        if not g.flags.writeable:
            raise ValueError("grads must be writeable (they are clipped in place)")
        _core.clip_value_(g, lo, hi)
