"""Feature scaling and outlier removal, scikit-learn compatible and fast.

Transformers: :class:`MinMaxScaler`, :class:`StandardScaler`, :class:`LogScaler`,
:class:`Clipper`, :class:`RobustScaler`; and :class:`OutlierRemover`, which drops rows
(``mask``/``remove``) and is therefore not a transformer.

Conventions (scikit-learn's): ``__init__`` only stores its arguments; ``fit`` is a reset
followed by ``partial_fit``; fitted attributes end in ``_``; NaN is ignored when fitting
and kept by ``transform``; infinities are rejected; constant columns get scale 1; the
variance is the population variance. float32 input gives float32 output; float16
input gives float16 output from ``StandardScaler``, ``MinMaxScaler`` and ``RobustScaler``
(as scikit-learn's; computed in float32/float64), float64 from the others; any other
numeric input is converted to float64; statistics accumulate in float64.
``StandardScaler``'s fitted attributes are float64; ``MinMaxScaler``'s and
``RobustScaler``'s have the input's float dtype (as scikit-learn's).

Dense only: fastnn's scalers refuse sparse input with a ``TypeError`` that names the
scikit-learn class to use for sparse data (``MaxAbsScaler``,
``StandardScaler(with_mean=False)``, ``RobustScaler(with_centering=False)``).

Numbers that do not fit are errors, never a silent scale: a column whose statistics
overflow float64 (values near 1e300 whose variance or range is infinite), or whose
scaled values overflow the output dtype (float32 above 3.4e38), is a ``ValueError``
naming the column.

The work is done by ``fastnn._core`` (csrc/kernels/scaler.cpp): one pass per statistic over fixed
256-row blocks merged in block order (Chan et al.), so the statistics are bitwise
identical for any thread count, and one fused pass per transform
``y = (x - shift) * scale + offset`` (with optional clipping), computed in float64 and
rounded once to the output dtype. ``StandardScaler`` takes its moments about the
column's first value (shifted data), so a constant column has a variance of exactly 0 and
the mean of data far from 0 (offsets of 1e8..1e12) is exact to rounding.

Quantiles (:class:`RobustScaler`, :class:`Clipper` with ``quantile_range``,
:class:`OutlierRemover` with ``method="iqr"``) are exact: selection per column over the
non-NaN values, with NumPy's default linear interpolation (as ``numpy.nanpercentile``,
hence as scikit-learn's ``RobustScaler``). To keep ``partial_fit`` exact these estimators
keep a copy of every row they were fitted on (memory ``n_samples_seen_ x n_features_in_``
values, also pickled); ``fit`` discards the previous rows.

The estimators subclass scikit-learn's ``OneToOneFeatureMixin``, ``TransformerMixin`` and
``BaseEstimator`` (so ``clone``, pipelines, ``set_output`` and its estimator checks work)
and validate input with its ``validate_data`` (scikit-learn >= 1.6 is a dependency);
with scikit-learn >= 1.9, ``StandardScaler`` also takes its callbacks
(``set_callbacks``, from ``sklearn.callback.CallbackSupportMixin``).
"""
from __future__ import annotations

import math
import numbers
from statistics import NormalDist

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from fastnn import _core

try:  # scikit-learn >= 1.9
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # pragma: no cover - older scikit-learn: no callbacks to support
    class CallbackSupportMixin:  # type: ignore[no-redef]  # a stand-in without set_callbacks
        pass

    def with_callbacks(method):
        return method

__all__ = [
    "Clipper",
    "LogScaler",
    "MinMaxScaler",
    "OutlierRemover",
    "RobustScaler",
    "StandardScaler",
]

_FLOAT_DTYPES = (np.float64, np.float32)


def _refuse_sparse(est, X):
    if sparse.issparse(X):
        raise TypeError(
            f"{type(est).__name__} got sparse input ({type(X).__name__}): fastnn's scalers are dense-only. "
            f"For sparse data use scikit-learn's {est._sparse_alternative}, or pass X.toarray() if the dense "
            "array fits in memory.")


def _validate(est, X, *, reset, ensure_all_finite=True):
    """X as a C-contiguous float32/float64 2-D array (the same object when it already is one);
    float16 stays float16 for the scalers that keep it (``_keeps_float16``)."""
    _refuse_sparse(est, X)
    dtypes = _FLOAT_DTYPES + ((np.float16,) if est._keeps_float16 else ())
    return validate_data(est, X, reset=reset, dtype=dtypes, order="C",
                         ensure_all_finite="allow-nan" if ensure_all_finite else False)


def _kernel_input(X):
    """X as the kernels take it: float16 widened to float32 (exactly)."""
    return X.astype(np.float32) if X.dtype == np.float16 else X


def _raise_infinite(X):
    raise ValueError(f"Input X contains infinity or a value too large for {X.dtype!r}.")


def _column_name(est, j):
    names = getattr(est, "feature_names_in_", None)
    return f"column {j} ({names[j]!r})" if names is not None else f"column {j}"


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _vec(v, c):
    return None if v is None else np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float64), (c,)))


def _affine(est, X, source, *, copy, shift=None, scale=None, offset=None, lo=None, hi=None):
    """``(X - shift) * scale + offset`` [clipped to lo, hi] per column, in X's dtype.

    In place when ``copy`` is false and X is ``source`` (the caller's own array, which
    needed no conversion) and writable; otherwise into a new array. An infinite X, or a
    result that overflows X's dtype, is a ValueError naming the column (X untouched).
    """
    dtype = X.dtype
    X = _kernel_input(X)
    inplace = not copy and X is source and X.flags.writeable and X.flags.aligned
    out = X if inplace else np.empty(X.shape, dtype=X.dtype)
    c = X.shape[1]
    vs, vm, vo, vl, vh = (_vec(v, c) for v in (shift, scale, offset, lo, hi))
    bad = _core.scaler_affine(X, out, vs, vm, vo, vl, vh)
    if bad < 0 and out.dtype != dtype:  # float16 output: rounded from float32, checked too
        with np.errstate(over="ignore"):
            out = out.astype(dtype)
        inf = np.flatnonzero(np.isinf(out))
        bad = int(inf[0]) if inf.size else -1
    if bad >= 0:
        r, j = divmod(int(bad), c)
        value = float(X[r, j])
        if math.isinf(value):
            _raise_infinite(X)
        with np.errstate(over="ignore", invalid="ignore"):
            result = (value - (0.0 if vs is None else vs[j])) * (1.0 if vm is None else vm[j]) \
                + (0.0 if vo is None else vo[j])
        raise ValueError(
            f"{type(est).__name__}: {_column_name(est, j)} (row {r}) holds {X.dtype.type(value)!s}, which scales to "
            f"{result:.6g}: "
            f"that overflows {dtype} (largest {np.finfo(dtype).max:.6g}). Use float64 input, or rescale the "
            "column before this step.")
    return out


def _handle_zeros_in_scale(scale, dtype):
    """Scales below 10 eps of the data's dtype become 1 (scikit-learn's rule); NaN stays NaN."""
    scale = np.array(scale, dtype=np.float64)
    scale[scale < 10 * np.finfo(dtype).eps] = 1.0
    return scale


def _check_quantile_range(name, quantile_range):
    try:
        q_min, q_max = (float(v) for v in quantile_range)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of numbers (q_min, q_max), got {quantile_range!r}") from None
    if not 0 <= q_min <= q_max <= 100:
        raise ValueError(f"Invalid quantile range: {tuple(quantile_range)!r}: {name} needs "
                         "0 <= q_min <= q_max <= 100")
    return q_min, q_max


def _check_overflow(est, values, what, dtype):
    """A ValueError naming the first column whose ``values`` (a fitted statistic) is infinite
    in ``dtype`` although the column has data (NaN marks a column without data)."""
    with np.errstate(over="ignore"):
        cast = np.asarray(values, dtype=np.float64).astype(dtype)
    bad = np.flatnonzero(np.isinf(cast))
    if bad.size:
        j = int(bad[0])
        raise ValueError(
            f"{type(est).__name__}: the {what} of {_column_name(est, j)} overflows {np.dtype(dtype)} "
            f"(it would be {float(values[j]):.6g}): its values are too large to scale. Divide the column by a "
            "power of ten first (or use float64 input).")


def _check_quantiles(est, q, rows):
    """A ValueError naming the first column with values whose quantiles (Q, C) are not finite
    (interpolating between values near +-1e308 overflows)."""
    bad = np.flatnonzero(~np.isfinite(q).all(axis=0) & ~np.isnan(rows).all(axis=0))
    if bad.size:
        _check_overflow(est, np.where(np.arange(q.shape[1]) == bad[0], np.inf, 0.0), "quantile interpolation", np.float64)


def _check_sample_weight(sample_weight, n):
    """sample_weight as a float64 (n,) array of finite values >= 0 (a number: all equal)."""
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        w = np.full(n, float(sample_weight))
    else:
        try:
            w = np.asarray(sample_weight, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"sample_weight must be an array of numbers, got {type(sample_weight).__name__}") from None
        if w.ndim != 1:
            raise ValueError(f"sample_weight must be 1D array or scalar, got shape {w.shape}")
        if w.shape[0] != n:
            raise ValueError(f"sample_weight.shape == ({w.shape[0]},), expected ({n},)!")
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight must be finite (no NaN or infinity)")
    if np.any(w < 0):
        raise ValueError(f"sample_weight must be >= 0, got {float(w.min())!r} (fastnn refuses negative weights)")
    if n and not np.any(w > 0):
        raise ValueError("sample_weight is all zero: at least one row needs a positive weight")
    return np.ascontiguousarray(w)


class _QuantileStore:
    """Keeps every fitted row so that quantiles after partial_fit are exact."""

    def _store_rows(self, X, first):
        rows = np.array(X, dtype=X.dtype, order="C", copy=True)
        if not first and not hasattr(self, "_rows"):
            # fastnn model files do not keep the training rows (the whole data set)
            raise ValueError(f"this {type(self).__name__} was loaded from a model file without its training "
                             "rows, so partial_fit cannot continue its exact quantiles: call fit instead")
        if first:
            return rows
        dtype = np.result_type(self._rows.dtype, rows.dtype)
        return np.concatenate([self._rows.astype(dtype, copy=False), rows.astype(dtype, copy=False)])


class _Base:
    """Shared plumbing: tags, reset, the fit = reset + partial_fit convention."""

    _sparse_alternative = "StandardScaler(with_mean=False) or MaxAbsScaler"
    _keeps_float16 = False  # as scikit-learn's scalers: float16 output for float16 input
    # parameters added after fastnn 60c4ab6, with the value a model file written then implies
    _params_added: dict = {}

    def _positive_only(self):
        return False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = False
        tags.input_tags.positive_only = self._positive_only()
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _reset(self):
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, key)
        for key in ("_rows", "_count", "_shift", "_sum", "_m2", "_mean", "_min", "_max"):
            self.__dict__.pop(key, None)

    def fit(self, X, y=None):
        """Reset, then :meth:`partial_fit` on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense only (sparse input is a TypeError).
        y : ignored
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        self._reset()
        return self.partial_fit(X, y)

    def _first_call(self):
        return not hasattr(self, "n_features_in_")


# --------------------------------------------------------------------------- scalers
class _AffineScaler(_Base, TransformerMixin):  # TransformerMixin here: set_output wraps transform
    """The scalers whose transform is one fused pass ``(x - shift) * scale + offset``."""

    def _check_params(self):
        """Validate constructor parameters before a fit (hook)."""
        _check_bool("copy", self.copy)

    def _forward(self):
        """(shift, scale, offset, lo, hi) of :meth:`transform`, float64 or None."""
        raise NotImplementedError

    def _backward(self):
        """(shift, scale, offset) of :meth:`inverse_transform`, float64 or None."""
        raise NotImplementedError

    def _transform(self, X, copy):
        check_is_fitted(self)
        copy = self.copy if copy is None else _check_bool("copy", copy)
        Xv = _validate(self, X, reset=False, ensure_all_finite=False)
        shift, scale, offset, lo, hi = self._forward()
        return _affine(self, Xv, X, copy=copy, shift=shift, scale=scale, offset=offset, lo=lo, hi=hi)

    def _inverse_transform(self, X, copy):
        check_is_fitted(self)
        copy = self.copy if copy is None else _check_bool("copy", copy)
        Xv = _validate(self, X, reset=False, ensure_all_finite=False)
        shift, scale, offset = self._backward()
        return _affine(self, Xv, X, copy=copy, shift=shift, scale=scale, offset=offset)

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X).transform(X)`` with one validation of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample (dense only).
        y : None
            Ignored; accepted for scikit-learn's API.
        **fit_params : dict
            Passed to the fit (``sample_weight`` where the scaler takes it).

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
            A new array (X is never changed by a fit, whatever ``copy``).
        """
        self._reset()
        self._check_params()
        Xv = _validate(self, X, reset=True, ensure_all_finite=False)
        self._fit_batch(Xv, True, y, **fit_params)
        shift, scale, offset, lo, hi = self._forward()
        return _affine(self, Xv, None, copy=True, shift=shift, scale=scale, offset=offset, lo=lo, hi=hi)

    def _fit_batch(self, X, first, y=None, **fit_params):
        self._update(X, first, **fit_params)


def _f64(v):
    return None if v is None else np.asarray(v, dtype=np.float64)


class StandardScaler(_AffineScaler, CallbackSupportMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardize features: ``z = (x - mean_) / scale_`` (z-score).

    Parameters
    ----------
    with_mean : bool, default=True
        Center the data.
    with_std : bool, default=True
        Scale to unit (population) variance.
    copy : bool, default=True
        False: :meth:`transform` and :meth:`inverse_transform` write into X itself when X
        is a writable, aligned, C-contiguous float32/float64 ndarray; any other input is
        converted into a new array (scikit-learn also transforms Fortran-ordered float
        arrays in place; fastnn copies those). :meth:`fit` and :meth:`fit_transform`
        never change X.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,) or None
        Per-column (weighted) mean of the non-NaN values (None when with_mean and with_std
        are False); NaN for a column without values. float64.
    var_ : ndarray of shape (n_features,) or None
        Per-column population variance (None when with_std is False); exactly 0 for a
        constant column. float64.
    scale_ : ndarray of shape (n_features,) or None
        ``sqrt(var_)``, with 1 for (near-)constant columns (scikit-learn's bound) and NaN
        for a column without values (None when with_std is False).
    n_samples_seen_ : int, float or ndarray of shape (n_features,)
        Non-NaN values seen per column (an int when all columns agree); with
        ``sample_weight``, their total weight (a float).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)
        When fitted on a DataFrame with string column names.

    Notes
    -----
    ``partial_fit`` merges each chunk's (weight, sum about a fixed shift, M2) with Chan et
    al.'s formula in float64: chunks give the same statistics as one ``fit`` up to
    float64 rounding. Where fastnn differs from scikit-learn on purpose: sparse input is
    refused (use ``sklearn.preprocessing.StandardScaler(with_mean=False)`` or
    ``MaxAbsScaler``); negative sample weights are refused; a column whose variance
    overflows float64, or whose scaled values overflow the output dtype, is a ValueError
    naming it; ``transform`` computes ``(x - mean_) * (1 / scale_)`` in float64 and rounds
    once (scikit-learn subtracts and divides in X's dtype: a few ulps apart).
    """

    _sparse_alternative = "StandardScaler(with_mean=False) or MaxAbsScaler"
    _keeps_float16 = True
    _params_added = {"copy": True}

    def __init__(self, with_mean=True, with_std=True, *, copy=True):
        self.with_mean = with_mean
        self.with_std = with_std
        self.copy = copy

    @staticmethod
    def _upgrade_state(fitted, arrays):
        """A model file of fastnn 60c4ab6 kept (count, mean, m2, min, max): the same moments
        about a shift equal to the mean, with a zero sum."""
        if "_mean" in arrays and "_shift" not in arrays:
            arrays["_shift"] = arrays.pop("_mean")
            arrays["_sum"] = np.zeros_like(arrays["_shift"])
            arrays.pop("_min", None)
            arrays.pop("_max", None)
            fitted.setdefault("_weighted", False)
        return fitted, arrays

    def _check_params(self):
        _check_bool("copy", self.copy)
        _check_bool("with_mean", self.with_mean)
        _check_bool("with_std", self.with_std)

    def fit(self, X, y=None, sample_weight=None):
        """Reset, then :meth:`partial_fit` on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense only (sparse input is a TypeError).
        y : ignored
            Ignored; accepted for scikit-learn's API.
        sample_weight : array-like of shape (n_samples,) or float, default=None
            Weight of each row (finite, >= 0); None: all 1.

        Returns
        -------
        self
        """
        self._reset()
        return self.partial_fit(X, y, sample_weight)

    @with_callbacks
    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the statistics with the rows of X (NaN ignored).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense only (sparse input is a TypeError).
        y : ignored
            Ignored; accepted for scikit-learn's API.
        sample_weight : array-like of shape (n_samples,) or float, default=None
            Weight of each row (finite, >= 0); None: all 1.

        Returns
        -------
        self
        """
        self._check_params()
        first = self._first_call()
        Xv = _validate(self, X, reset=first, ensure_all_finite=False)
        self._fit_batch(Xv, first, y, sample_weight=sample_weight)
        return self

    @with_callbacks
    def fit_transform(self, X, y=None, sample_weight=None):
        """``fit(X, sample_weight=sample_weight).transform(X)`` with one validation of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample (dense only).
        y : None
            Ignored; accepted for scikit-learn's API.
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the rows in the statistics.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
            A new array in X's float dtype.
        """
        return super().fit_transform(X, y, sample_weight=sample_weight)

    def _fit_batch(self, X, first, y=None, sample_weight=None):
        ctx = self._init_callback_context() if hasattr(self, "_init_callback_context") else None
        if ctx is not None:
            ctx.call_on_fit_task_begin(estimator=self, X=X, y=y, metadata={"sample_weight": sample_weight})
        self._update(X, first, sample_weight)
        if ctx is not None:
            ctx.call_on_fit_task_end(estimator=self, X=X, y=y, metadata={"sample_weight": sample_weight},
                                     reconstruction_attributes={})

    def _update(self, X, first, sample_weight=None):
        w = None if sample_weight is None else _check_sample_weight(sample_weight, X.shape[0])
        shift = np.full(X.shape[1], np.nan) if first else self._shift.copy()
        st = _core.scaler_column_stats(_kernel_input(X), moments=True, extrema=False, shift=shift, weights=w)
        count, total, m2 = st.count, st.sum, st.m2
        self._check_finite(X, count, total, m2)
        if not first:  # merge with the rows seen so far (same shifts): Chan et al.
            n_a = self._count
            n = n_a + count
            both = (n_a > 0) & (count > 0)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                delta = np.where(both, total / np.where(both, count, 1) - self._sum / np.where(both, n_a, 1), 0.0)
                m2 = self._m2 + m2 + np.where(both, delta * delta * (n_a * count / np.where(both, n, 1)), 0.0)
            total = self._sum + total
            count = n
            self._check_finite(X, count, total, m2)
        # everything is computed and checked: now the state changes, all at once
        self._count, self._shift, self._sum, self._m2 = count, shift, total, m2
        self._weighted = (not first and getattr(self, "_weighted", False)) or w is not None
        self._set_attributes()

    def _check_finite(self, X, count, total, m2):
        """Infinite input, or statistics that overflow float64, are a ValueError naming the column."""
        has = count > 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            var = m2 / np.where(has, count, 1)
        bad = np.flatnonzero(has & ~(np.isfinite(total) & np.isfinite(var)))
        if not bad.size:
            return
        j = int(bad[0])
        col = X[:, j]
        if np.isinf(col).any():
            _raise_infinite(X)
        big = float(np.nanmax(np.abs(col)))
        raise ValueError(
            f"StandardScaler: the variance of {_column_name(self, j)} overflows float64 (its values reach "
            f"{big:.6g}): it cannot be standardized. Divide the column by a power of ten first.")

    def _set_attributes(self):
        count = self._count
        if self._weighted:
            seen = count.copy()
            self.n_samples_seen_ = float(seen[0]) if np.ptp(seen) == 0 else seen
        else:
            seen = count.astype(np.int64)
            self.n_samples_seen_ = int(seen[0]) if np.ptp(seen) == 0 else seen
        empty = count == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(empty, np.nan, self._shift + self._sum / np.where(empty, 1, count))
            var = np.where(empty, np.nan, self._m2 / np.where(empty, 1, count))
        if not self.with_mean and not self.with_std:
            self.mean_ = None
            self.var_ = None
            self.scale_ = None
            return
        self.mean_ = mean
        if not self.with_std:
            self.var_ = None
            self.scale_ = None
            return
        self.var_ = var
        # scikit-learn's _is_constant_feature bound (exactly constant columns have var 0)
        eps = np.finfo(np.float64).eps
        constant = var <= count * eps * var + (count * mean * eps) ** 2
        self.scale_ = np.where(constant, 1.0, np.sqrt(var))

    def _forward(self):
        scale = 1.0 / self.scale_ if self.with_std else None
        return (self.mean_ if self.with_mean else None), scale, None, None, None

    def _backward(self):
        return None, (self.scale_ if self.with_std else None), (self.mean_ if self.with_mean else None)

    def transform(self, X, copy=None):
        """Scale X with the fitted statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.
        copy : bool, default=None
            None: the ``copy`` parameter. False: in place when X allows it (see ``copy``).

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features), float32 for float32 input
        """
        return self._transform(X, copy)

    def inverse_transform(self, X, copy=None):
        """Undo :meth:`transform`: ``x = z * scale_ + mean_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.
        copy : bool, default=None
            None: the ``copy`` parameter. False: in place when X allows it.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        return self._inverse_transform(X, copy)


class MinMaxScaler(_AffineScaler, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale each feature linearly to ``feature_range``: ``x * scale_ + min_``.

    Parameters
    ----------
    feature_range : tuple (min, max), default=(0, 1)
        The (min, max) every feature is mapped to.
    clip : bool, default=False
        Clip transformed values of unseen data to ``feature_range``.
    copy : bool, default=True
        False: :meth:`transform` and :meth:`inverse_transform` write into X itself when X
        is a writable, aligned, C-contiguous float32/float64 ndarray; otherwise they
        return a new array. :meth:`fit` never changes X.

    Attributes
    ----------
    data_min_, data_max_, data_range_ : ndarray of shape (n_features,)
        Per-column minimum, maximum and their difference (NaN ignored; NaN for a column
        without values), in the input's float dtype.
    scale_ : ndarray of shape (n_features,)
        ``(max - min) / data_range_``, with ranges below 10 eps of the input dtype
        treated as 1 (constant columns); the input's float dtype.
    min_ : ndarray of shape (n_features,)
        ``feature_range[0] - data_min_ * scale_``; the input's float dtype.
    n_samples_seen_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)

    Notes
    -----
    Where fastnn differs from scikit-learn on purpose: sparse input is refused (use
    ``sklearn.preprocessing.MaxAbsScaler``);
    ``scale_`` and ``min_`` are computed in float64 and rounded once; the transform is
    ``x * scale_ + min_`` in float64, rounded once; a range or scaled value that
    overflows is a ValueError naming the column.
    """

    _sparse_alternative = "MaxAbsScaler"
    _keeps_float16 = True
    _params_added = {"copy": True}

    def __init__(self, feature_range=(0, 1), clip=False, *, copy=True):
        self.feature_range = feature_range
        self.clip = clip
        self.copy = copy

    def _range(self):
        try:
            lo, hi = (float(v) for v in self.feature_range)
        except (TypeError, ValueError):
            raise TypeError(f"feature_range must be a pair of numbers, got {self.feature_range!r}") from None
        if not lo < hi:
            raise ValueError("Minimum of desired feature range must be smaller than maximum. "
                             f"Got {tuple(self.feature_range)!r}.")
        return lo, hi

    def _check_params(self):
        self._range()
        _check_bool("clip", self.clip)
        _check_bool("copy", self.copy)

    def partial_fit(self, X, y=None):
        """Update the per-column minimum and maximum with the rows of X (NaN ignored).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense only (sparse input is a TypeError).
        y : ignored
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        self._check_params()
        first = self._first_call()
        X = _validate(self, X, reset=first, ensure_all_finite=False)
        self._update(X, first)
        return self

    def _update(self, X, first):
        lo, hi = self._range()
        st = _core.scaler_column_stats(_kernel_input(X), moments=False, extrema=True)
        mn, mx = st.min, st.max
        if np.any(mn == -np.inf) or np.any(mx == np.inf):
            _raise_infinite(X)
        dtype = X.dtype
        if not first:
            dtype = np.result_type(self.data_min_.dtype, dtype)
            mn = np.fmin(self.data_min_, mn)
            mx = np.fmax(self.data_max_, mx)
        empty = ~(mn <= mx)
        mn = np.where(empty, np.nan, mn)
        mx = np.where(empty, np.nan, mx)
        with np.errstate(over="ignore", invalid="ignore"):
            data_range = mx - mn
        _check_overflow(self, data_range, "range (max - min)", dtype)
        scale = (hi - lo) / _handle_zeros_in_scale(data_range, dtype)
        offset = lo - mn * scale
        _check_overflow(self, scale, "scale_", dtype)
        _check_overflow(self, offset, "min_", dtype)
        self.n_samples_seen_ = X.shape[0] + (0 if first else self.n_samples_seen_)
        self.data_min_, self.data_max_ = mn.astype(dtype), mx.astype(dtype)
        self.data_range_ = data_range.astype(dtype)
        self.scale_ = scale.astype(dtype)
        self.min_ = offset.astype(dtype)

    def _forward(self):
        lo, hi = self._range() if self.clip else (None, None)
        return None, _f64(self.scale_), _f64(self.min_), lo, hi

    def _backward(self):
        return _f64(self.min_), 1.0 / _f64(self.scale_), None

    def transform(self, X):
        """Scale X to ``feature_range`` (clipped when ``clip``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features), float32 for float32 input
        """
        return self._transform(X, None)

    def inverse_transform(self, X):
        """Undo :meth:`transform`: ``x = (y - min_) / scale_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        return self._inverse_transform(X, None)


def _check_offset(offset):
    if isinstance(offset, bool) or not isinstance(offset, numbers.Real) or not math.isfinite(offset):
        raise ValueError(f"offset must be a finite real number, got {offset!r}")
    return float(offset)


class LogScaler(_Base, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Log scaling: ``y = log(x + offset)``.

    Parameters
    ----------
    offset : float, default=1.0
        Added before the logarithm (``log1p`` for 1). Every non-NaN value must satisfy
        ``x + offset > 0``: otherwise ``fit`` and ``transform`` raise a ValueError naming
        the column.

    Attributes
    ----------
    n_samples_seen_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)

    Notes
    -----
    The scikit-learn tag ``positive_only`` is declared only when ``offset <= 1``: then
    every x <= -1 is refused (the negative input scikit-learn's checks probe). With a
    larger offset, negative values down to ``-offset`` are accepted and the tag is not
    declared. Dense only: for sparse data use ``sklearn.preprocessing.FunctionTransformer``
    with ``np.log1p``.
    """

    _sparse_alternative = "FunctionTransformer(np.log1p, accept_sparse=True)"

    def __init__(self, offset=1.0):
        self.offset = offset

    def _positive_only(self):
        try:
            return _check_offset(self.offset) <= 1.0
        except ValueError:
            return False

    def _bad_column(self, j, value, offset):
        return ValueError(
            f"Negative values in data passed to LogScaler: {_column_name(self, j)} holds {value!r}, "
            f"and x + offset = {value + offset!r} <= 0 (offset={offset!r}); log scaling needs "
            f"x > -offset: raise offset or clip the column first")

    def partial_fit(self, X, y=None):
        """Check that every value of X has ``x + offset > 0``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense only (sparse input is a TypeError).
        y : ignored
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        offset = _check_offset(self.offset)
        first = self._first_call()
        X = _validate(self, X, reset=first)
        st = _core.scaler_column_stats(X, moments=False, extrema=True)
        mn, mx = st.min, st.max
        bad = np.flatnonzero((mn <= mx) & ~(mn + offset > 0))
        if bad.size:
            j = int(bad[0])
            raise self._bad_column(j, float(mn[j]), offset)
        self.n_samples_seen_ = X.shape[0] + (0 if first else self.n_samples_seen_)
        return self

    def transform(self, X):
        """``log(X + offset)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        offset = _check_offset(self.offset)
        X = _validate(self, X, reset=False)
        out = np.empty(X.shape, dtype=X.dtype)
        first_bad = _core.scaler_log(X, out, offset)
        if first_bad >= 0:
            r, j = divmod(int(first_bad), X.shape[1])
            raise self._bad_column(j, float(X[r, j]), offset)
        return out

    def inverse_transform(self, X):
        """``exp(X) - offset``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        offset = _check_offset(self.offset)
        X = _validate(self, X, reset=False)
        return (np.exp(X.astype(np.float64)) - offset).astype(X.dtype, copy=False)


class Clipper(_QuantileStore, _Base, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Hard capping: clip each column to ``[lower_, upper_]`` (NaN stays NaN).

    Parameters
    ----------
    lower, upper : float or array-like of shape (n_features,), default=None
        Fixed bounds (None: unbounded on that side), e.g. ``Clipper(-7, 10)``.
    quantile_range : tuple (q_min, q_max) in [0, 100], default=None
        Learn the bounds instead: the per-column q_min-th and q_max-th percentiles of the
        fitted data (exact, NaN ignored, NumPy's linear interpolation). Not combined with
        ``lower``/``upper``.

    Attributes
    ----------
    lower_, upper_ : ndarray of shape (n_features,)
        The bounds used by :meth:`transform` (-inf / inf for an open side).
    n_samples_seen_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)

    Notes
    -----
    With ``quantile_range``, ``partial_fit`` is exact: the estimator keeps every fitted
    row (see the module docstring). Clipping loses information: there is no
    ``inverse_transform``. Dense only: for sparse data use ``numpy.clip`` on ``X.data``.
    """

    _sparse_alternative = "FunctionTransformer with numpy.clip on X.data"

    def __init__(self, lower=None, upper=None, quantile_range=None):
        self.lower = lower
        self.upper = upper
        self.quantile_range = quantile_range

    def _bound(self, name, value, n_features, default):
        if value is None:
            return np.full(n_features, default)
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full(n_features, float(arr))
        if arr.shape != (n_features,):
            raise ValueError(f"{name} must be a number or have shape ({n_features},), got shape {arr.shape}")
        if np.isnan(arr).any():
            raise ValueError(f"{name} must not contain NaN")
        return arr

    def partial_fit(self, X, y=None):
        """Learn the bounds (quantile_range) or check X against fixed bounds.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense only (sparse input is a TypeError).
        y : ignored
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        if self.quantile_range is not None and (self.lower is not None or self.upper is not None):
            raise ValueError("Clipper: give either fixed bounds (lower, upper) or quantile_range, not both")
        q = None if self.quantile_range is None else _check_quantile_range("quantile_range", self.quantile_range)
        first = self._first_call()
        X = _validate(self, X, reset=first)
        c = X.shape[1]
        if q is None:
            lower = self._bound("lower", self.lower, c, -np.inf)
            upper = self._bound("upper", self.upper, c, np.inf)
            if np.any(lower > upper):
                raise ValueError(f"Clipper: lower must be <= upper, got lower={self.lower!r}, upper={self.upper!r}")
            self.n_samples_seen_ = X.shape[0] + (0 if first else self.n_samples_seen_)
            self.lower_, self.upper_ = lower, upper
            return self
        rows = self._store_rows(X, first)
        quantiles = _core.scaler_quantiles(rows, np.array(q) / 100.0)
        _check_quantiles(self, quantiles, rows)
        self._rows = rows
        self.n_samples_seen_ = X.shape[0] + (0 if first else self.n_samples_seen_)
        self.lower_, self.upper_ = quantiles[0], quantiles[1]
        return self

    def transform(self, X):
        """Clip X to ``[lower_, upper_]`` per column.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        Xv = _validate(self, X, reset=False)
        lo = np.where(np.isnan(self.lower_), -np.inf, self.lower_)  # all-NaN columns: no bound
        hi = np.where(np.isnan(self.upper_), np.inf, self.upper_)
        return _affine(self, Xv, X, copy=True, lo=lo, hi=hi)


class RobustScaler(_QuantileStore, _AffineScaler, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale with statistics robust to outliers: ``(x - median) / IQR``.

    Parameters
    ----------
    quantile_range : tuple (q_min, q_max), default=(25, 75)
        Percentiles whose difference is the scale, 0 <= q_min <= q_max <= 100.
    with_centering : bool, default=True
        Subtract the median (``center_``).
    with_scaling : bool, default=True
        Divide by the quantile range (``scale_``).
    unit_variance : bool, default=False
        Divide ``scale_`` further by the quantile range of the standard normal
        distribution, so that normally distributed columns get variance 1 (needs
        0 < q_min < q_max < 100).
    copy : bool, default=True
        False: :meth:`transform` and :meth:`inverse_transform` write into X itself when X
        is a writable, aligned, C-contiguous float32/float64 ndarray; otherwise they
        return a new array. :meth:`fit` never changes X.

    Attributes
    ----------
    center_ : ndarray of shape (n_features,) or None
        Per-column median (NaN ignored); None without centering. The input's float dtype.
    scale_ : ndarray of shape (n_features,) or None
        Per-column ``percentile(q_max) - percentile(q_min)`` (divided by the normal's
        when ``unit_variance``); values below 10 eps of the input dtype (constant
        columns) become 1; None without scaling. The input's float dtype.
    n_samples_seen_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)

    Notes
    -----
    Quantiles are exact (selection, NumPy's linear interpolation: the values of
    scikit-learn's RobustScaler). ``partial_fit`` (which scikit-learn's RobustScaler does
    not have) stays exact by keeping every fitted row (see the module docstring). Where
    fastnn differs from scikit-learn on purpose: sparse input is refused (use
    ``sklearn.preprocessing.RobustScaler(with_centering=False)``); ``unit_variance`` with q_min = 0, q_max = 100 or
    q_min = q_max is a ValueError (scikit-learn gives a scale of 0 or infinity); the
    attributes keep the input's dtype with ``unit_variance`` too.
    """

    _sparse_alternative = "RobustScaler(with_centering=False)"
    _keeps_float16 = True
    _params_added = {"with_centering": True, "with_scaling": True, "unit_variance": False, "copy": True}

    def __init__(self, quantile_range=(25, 75), *, with_centering=True, with_scaling=True, unit_variance=False,
                 copy=True):
        self.quantile_range = quantile_range
        self.with_centering = with_centering
        self.with_scaling = with_scaling
        self.unit_variance = unit_variance
        self.copy = copy

    def _check_params(self):
        q_min, q_max = _check_quantile_range("quantile_range", self.quantile_range)
        for name in ("with_centering", "with_scaling", "unit_variance", "copy"):
            _check_bool(name, getattr(self, name))
        if self.unit_variance and self.with_scaling and not 0 < q_min < q_max < 100:
            raise ValueError(f"unit_variance=True needs 0 < q_min < q_max < 100 (the normal distribution's "
                             f"quantile range is infinite or 0 otherwise), got quantile_range={self.quantile_range!r}")
        return q_min, q_max

    def partial_fit(self, X, y=None):
        """Update the median and IQR with the rows of X (exact over all rows seen).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense only (sparse input is a TypeError).
        y : ignored
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        self._check_params()
        first = self._first_call()
        X = _validate(self, X, reset=first)
        self._update(X, first)
        return self

    def fit_transform(self, X, y=None):
        """``fit(X).transform(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample (dense only).
        y : None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
            A new array in X's float dtype.
        """
        return self.fit(X).transform(X) if self.copy else self.fit(X)._transform(X, True)

    def _update(self, X, first):
        q_min, q_max = self._check_params()
        rows = self._store_rows(X, first)
        dtype = rows.dtype
        wanted = ([50.0] if self.with_centering else []) + ([q_min, q_max] if self.with_scaling else [])
        q = _core.scaler_quantiles(_kernel_input(rows), np.array(wanted) / 100.0) if wanted else None
        if q is not None:
            _check_quantiles(self, q, rows)
        center = scale = None
        if self.with_centering:
            center = q[0].astype(dtype)
        if self.with_scaling:
            lo, hi = q[-2], q[-1]
            with np.errstate(over="ignore", invalid="ignore"):
                iqr = hi - lo
            _check_overflow(self, iqr, "quantile range", np.float64)
            scale = _handle_zeros_in_scale(iqr, dtype)
            if self.unit_variance:
                normal = NormalDist()
                scale = scale / (normal.inv_cdf(q_max / 100.0) - normal.inv_cdf(q_min / 100.0))
            _check_overflow(self, scale, "scale_", dtype)
            scale = scale.astype(dtype)
        self._rows = rows
        self.n_samples_seen_ = X.shape[0] + (0 if first else self.n_samples_seen_)
        self.center_, self.scale_ = center, scale

    def _forward(self):
        scale = 1.0 / _f64(self.scale_) if self.with_scaling else None
        return (_f64(self.center_) if self.with_centering else None), scale, None, None, None

    def _backward(self):
        return None, (_f64(self.scale_) if self.with_scaling else None), \
            (_f64(self.center_) if self.with_centering else None)

    def transform(self, X):
        """Center and scale X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
        """
        return self._transform(X, None)

    def inverse_transform(self, X):
        """Undo :meth:`transform`: ``x = z * scale_ + center_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        return self._inverse_transform(X, None)


# --------------------------------------------------------------------------- outliers
_DEFAULT_THRESHOLDS = {"zscore": 3.0, "iqr": 1.5}


class OutlierRemover(_Base, BaseEstimator):
    """Remove outlying rows before training (the lecture's "remove outliers").

    A row is an outlier when any of its non-NaN values lies outside the column's
    inlier interval ``[lower_, upper_]``:

    - ``method="zscore"``: ``mean +- threshold * std`` (population std; constant columns
      use std 1), default threshold 3;
    - ``method="iqr"``: ``[q1 - threshold * IQR, q3 + threshold * IQR]`` (Tukey's fences,
      exact quartiles), default threshold 1.5.

    NaN values never make a row an outlier. This is not a scikit-learn transformer (those
    cannot drop rows), so it does not run scikit-learn's estimator checks: use
    ``mask(X)`` or ``remove(X, y)``, which keeps X and y aligned.

    Parameters
    ----------
    method : {"zscore", "iqr"}, default="zscore"
    threshold : float > 0, default=None
        None: 3 for "zscore", 1.5 for "iqr".

    Attributes
    ----------
    lower_, upper_ : ndarray of shape (n_features,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features,)
    """

    _sparse_alternative = "IsolationForest (sklearn.ensemble)"

    def __init__(self, method="zscore", threshold=None):
        self.method = method
        self.threshold = threshold

    def _threshold(self):
        if self.method not in _DEFAULT_THRESHOLDS:
            raise ValueError(f"method must be one of {tuple(_DEFAULT_THRESHOLDS)}, got {self.method!r}")
        t = _DEFAULT_THRESHOLDS[self.method] if self.threshold is None else self.threshold
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (math.isfinite(t) and t > 0):
            raise ValueError(f"threshold must be a finite number > 0, got {self.threshold!r}")
        return float(t)

    def fit(self, X, y=None):
        """Learn the per-column inlier intervals from X (NaN ignored).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.
        y : ignored
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        t = self._threshold()
        self._reset()
        X = _validate(self, X, reset=True)
        if self.method == "zscore":
            scaler = StandardScaler().fit(X)
            self.lower_ = scaler.mean_ - t * scaler.scale_
            self.upper_ = scaler.mean_ + t * scaler.scale_
        else:
            q1, q3 = _core.scaler_quantiles(X, np.array([0.25, 0.75]))
            iqr = q3 - q1
            self.lower_ = q1 - t * iqr
            self.upper_ = q3 + t * iqr
        return self

    def mask(self, X):
        """Boolean inlier mask of the rows of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        mask : ndarray of shape (n_samples,), bool
            True for the rows to keep.
        """
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        outside = (X < self.lower_) | (X > self.upper_)  # False for NaN
        return ~outside.any(axis=1)

    def remove(self, X, y=None):
        """The inlier rows of X (and of y, in step).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            The targets, filtered in step with X (optional).

        Returns
        -------
        X_kept : the rows of X where :meth:`mask` is True (a DataFrame stays one)
        y_kept : the same rows of y; returned only when y is given
        """
        keep = self.mask(X)
        X_kept = _take_rows(X, keep)
        if y is None:
            return X_kept
        n_y = y.shape[0] if hasattr(y, "shape") else len(y)
        if n_y != keep.shape[0]:
            raise ValueError(f"y must have one entry per row of X ({keep.shape[0]}), got {n_y}")
        return X_kept, _take_rows(y, keep)


def _take_rows(a, keep):
    if hasattr(a, "iloc"):
        return a.iloc[keep]
    if isinstance(a, np.ndarray):
        return a[keep]
    return np.asarray(a)[keep]
