"""Input validation at the API edge: every check names the argument, what was expected
and what was got. Inputs are converted once here (dtype, C order); kernels never copy."""
from __future__ import annotations

import math
import numbers

import numpy as np

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"array of dtype {x.dtype} and shape {x.shape}"
    return f"{type(x).__name__}"


def as_numeric(name: str, x) -> np.ndarray:
    """``x`` as an ndarray of a real numeric dtype (no copy when it already is one)."""
    if x is None:
        raise TypeError(f"{name} must be an array of numbers, got None")
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype} (take .real explicitly if intended)")
    if kind not in "biuf":
        raise TypeError(f"{name} must be an array of numbers, got {_describe(arr)}")
    return arr


def compute_dtype(*arrays: np.ndarray | None) -> np.dtype:
    """float64 when any input is float64 (or wider), else float32: the fast path."""
    for a in arrays:
        if a is not None and a.dtype.kind == "f" and a.dtype.itemsize >= 8:
            return _FLOAT64
    return _FLOAT32


def check_ndim(name: str, arr: np.ndarray, ndim: int, meaning: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {meaning}, got shape {arr.shape}")


def to_kernel(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous copy in ``dtype`` only when needed; the caller's array is never written."""
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr, dtype=dtype)


def check_out(name: str, out, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """An output buffer must be the caller's own writeable array of exactly the right
    dtype, shape and layout: converting it would silently lose the write."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {_describe(out)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def out_or_new(name: str, out, shape: tuple, dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype) if out is None else check_out(name, out, shape, dtype)


def check_scalar(name: str, value, *, low: float | None = None, low_open: bool = False) -> float:
    """A finite real number, optionally bounded below."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    return value
