"""Feature scaling and outlier removal, scikit-learn compatible and fast.

Transformers: :class:`MinMaxScaler`, :class:`StandardScaler`, :class:`LogScaler`,
:class:`Clipper`, :class:`RobustScaler`; and :class:`OutlierRemover`, which drops rows
(``mask``/``remove``) and is therefore not a transformer.

Conventions (scikit-learn's): ``__init__`` only stores its arguments; ``fit`` is a reset
followed by ``partial_fit``; fitted attributes end in ``_``; NaN is ignored when fitting
and kept by ``transform``; infinities are rejected; constant columns get scale 1; the
variance is the population variance. float32 input gives float32 output, any other
numeric input is converted to float64; statistics accumulate in float64.

The work is done by ``fastnn._core`` (csrc/kernels/scaler.cpp): one pass per statistic over fixed
256-row blocks merged in block order (Chan et al.), so the statistics are bitwise
identical for any thread count, and one fused pass per transform
``y = (x - shift) * scale + offset`` (with optional clipping), computed in float64 and
rounded once to the output dtype.

Quantiles (:class:`RobustScaler`, :class:`Clipper` with ``quantile_range``,
:class:`OutlierRemover` with ``method="iqr"``) are exact: selection per column over the
non-NaN values, with NumPy's default linear interpolation (as ``numpy.nanpercentile``,
hence as scikit-learn's ``RobustScaler``). To keep ``partial_fit`` exact these estimators
keep a copy of every row they were fitted on (memory ``n_samples_seen_ x n_features_in_``
values, also pickled); ``fit`` discards the previous rows.

The estimators subclass scikit-learn's ``OneToOneFeatureMixin``, ``TransformerMixin`` and
``BaseEstimator`` (so ``clone``, pipelines, ``set_output`` and its estimator checks work)
and validate input with its ``validate_data`` (scikit-learn >= 1.6 is a dependency).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from fastnn import _core

__all__ = [
    "Clipper",
    "LogScaler",
    "MinMaxScaler",
    "OutlierRemover",
    "RobustScaler",
    "StandardScaler",
]

_FLOAT_DTYPES = (np.float64, np.float32)

def _validate(est, X, *, reset, ensure_all_finite=True):
    """X as a C-contiguous float32/float64 2-D array (no copy when it already is one)."""
    return validate_data(est, X, reset=reset, dtype=_FLOAT_DTYPES, order="C",
                         ensure_all_finite="allow-nan" if ensure_all_finite else False)


def _check_kernel_input(X):
    """The validated X, as the kernels need it (checks are done; this only asserts)."""
    if X.dtype not in (np.dtype(np.float32), np.dtype(np.float64)) or not X.flags.c_contiguous:
        X = np.ascontiguousarray(X, dtype=np.float64)
    return X


def _raise_infinite(X):
    raise ValueError(f"Input X contains infinity or a value too large for {X.dtype!r}.")


def _column_name(est, j):
    names = getattr(est, "feature_names_in_", None)
    return f"column {j} ({names[j]!r})" if names is not None else f"column {j}"


def _affine(X, shift=None, scale=None, offset=None, lo=None, hi=None):
    """(X - shift) * scale + offset [clipped], per column, into a new array of X's dtype."""
    out = np.empty(X.shape, dtype=X.dtype)
    c = X.shape[1]

    def vec(v):
        return None if v is None else np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float64), (c,)))

    any_inf = _core.scaler_affine(X, out, vec(shift), vec(scale), vec(offset), vec(lo), vec(hi))
    if any_inf:
        _raise_infinite(X)
    return out


def _handle_zeros_in_scale(scale, dtype):
    """Scales below 10 eps of the data's dtype become 1 (scikit-learn's rule)."""
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


class _QuantileStore:
    """Keeps every fitted row so that quantiles after partial_fit are exact."""

    def _store_rows(self, X, first):
        rows = np.array(X, dtype=X.dtype, order="C", copy=True)
        if not first and not hasattr(self, "_rows"):
            # fastnn model files do not keep the training rows (the whole data set)
            raise ValueError(f"this {type(self).__name__} was loaded from a model file without its training "
                             "rows, so partial_fit cannot continue its exact quantiles: call fit instead")
        if first:
            self._rows = rows
        else:
            dtype = np.result_type(self._rows.dtype, rows.dtype)
            self._rows = np.concatenate([self._rows.astype(dtype, copy=False), rows.astype(dtype, copy=False)])
        return self._rows


class _Base:
    """Shared plumbing: tags, reset, the fit = reset + partial_fit convention."""

    _positive_only = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.positive_only = self._positive_only
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _reset(self):
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, key)
        for key in ("_rows", "_count", "_m2", "_min", "_max"):
            self.__dict__.pop(key, None)

    def fit(self, X, y=None):
        """Reset, then :meth:`partial_fit` on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.
        y : None
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

    def transform(self, X):
        """Scale X with the fitted statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features), float32 for float32 input
        """
        check_is_fitted(self)
        X = _validate(self, X, reset=False, ensure_all_finite=False)
        return self._transform_validated(X)

    def fit_transform(self, X, y=None):
        """Fit to X, then transform it (one validation of X).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.
        y : None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
            The transformed data, float32 for float32 input.
        """
        self._reset()
        self._check_params()
        X = _validate(self, X, reset=True, ensure_all_finite=False)
        self._update(X, True)
        return self._transform_validated(X)


class StandardScaler(_AffineScaler, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardize features: ``z = (x - mean_) / scale_`` (z-score).

    Parameters
    ----------
    with_mean : bool, default=True
        Center the data.
    with_std : bool, default=True
        Scale to unit (population) variance.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,) or None
        Per-column mean of the non-NaN values (None when with_mean and with_std are False).
    var_ : ndarray of shape (n_features,) or None
        Per-column population variance (None when with_std is False).
    scale_ : ndarray of shape (n_features,) or None
        ``sqrt(var_)``, with 1 for constant columns (None when with_std is False).
    n_samples_seen_ : int or ndarray of shape (n_features,)
        Non-NaN values seen per column (an int when all columns agree).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        When fitted on a DataFrame with string column names.

    Notes
    -----
    ``partial_fit`` merges each chunk's (count, mean, M2) with Chan et al.'s formula in
    float64: chunks give the same statistics as one ``fit`` up to float64 rounding.
    """

    def __init__(self, with_mean=True, with_std=True):
        self.with_mean = with_mean
        self.with_std = with_std

    def partial_fit(self, X, y=None):
        """Update the statistics with the rows of X (NaN ignored).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.
        y : None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        first = self._first_call()
        X = _validate(self, X, reset=first, ensure_all_finite=False)
        self._update(X, first)
        return self

    def _update(self, X, first):
        count, mean, m2, mn, mx = _core.scaler_column_stats(X, moments=True, extrema=True)
        if np.any(mn == -np.inf) or np.any(mx == np.inf):
            _raise_infinite(X)
        if first:
            self._count, self._mean, self._m2 = count, mean, m2
            self._min, self._max = mn, mx
        else:
            n_a, n_b = self._count, count
            n = n_a + n_b
            with np.errstate(divide="ignore", invalid="ignore"):
                w_b = np.where(n > 0, n_b / n, 0.0)
                w_ab = np.where(n > 0, n_a * n_b / n, 0.0)
            delta = mean - self._mean
            self._mean = self._mean + delta * w_b
            self._m2 = self._m2 + m2 + delta * delta * w_ab
            self._count = n
            self._min, self._max = np.fmin(self._min, mn), np.fmax(self._max, mx)
        self._set_attributes(X.dtype)

    def _set_attributes(self, dtype):
        count = self._count
        seen = count.astype(np.int64)
        self.n_samples_seen_ = int(seen[0]) if np.ptp(seen) == 0 else seen
        empty = count == 0
        mean = np.where(empty, np.nan, self._mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(empty, np.nan, self._m2 / count)
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
        # scikit-learn's _is_constant_feature bound, or an exactly constant column
        eps = np.finfo(np.float64).eps
        bound = count * eps * var + (count * mean * eps) ** 2
        constant = (var <= bound) | (self._min == self._max) | empty
        scale = np.sqrt(np.where(constant, 1.0, var))
        scale[constant] = 1.0
        self.scale_ = scale

    def _transform_validated(self, X):
        shift = self.mean_ if self.with_mean else None
        scale = 1.0 / self.scale_ if self.with_std else None
        return _affine(X, shift=shift, scale=scale)

    def inverse_transform(self, X):
        """Undo :meth:`transform`: ``x = z * scale_ + mean_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        X = _validate(self, X, reset=False, ensure_all_finite=False)
        return _affine(X, scale=self.scale_ if self.with_std else None,
                       offset=self.mean_ if self.with_mean else None)


class MinMaxScaler(_AffineScaler, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale each feature linearly to ``feature_range``: ``x * scale_ + min_``.

    Parameters
    ----------
    feature_range : tuple (min, max), default=(0, 1)
        The range the fitted data is mapped to.
    clip : bool, default=False
        Clip transformed values of unseen data to ``feature_range``.

    Attributes
    ----------
    data_min_, data_max_, data_range_ : ndarray of shape (n_features,)
        Per-column minimum, maximum and their difference (NaN ignored).
    scale_ : ndarray of shape (n_features,)
        ``(max - min) / data_range_``, with ranges below 10 eps of the input dtype
        treated as 1 (constant columns).
    min_ : ndarray of shape (n_features,)
        ``feature_range[0] - data_min_ * scale_``.
    n_samples_seen_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
    """

    def __init__(self, feature_range=(0, 1), clip=False):
        self.feature_range = feature_range
        self.clip = clip

    def _range(self):
        try:
            lo, hi = (float(v) for v in self.feature_range)
        except (TypeError, ValueError):
            raise TypeError(f"feature_range must be a pair of numbers, got {self.feature_range!r}") from None
        if not lo < hi:
            raise ValueError("Minimum of desired feature range must be smaller than maximum. "
                             f"Got {tuple(self.feature_range)!r}.")
        return lo, hi

    def partial_fit(self, X, y=None):
        """Update the per-column minimum and maximum with the rows of X (NaN ignored).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.
        y : None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        self._range()
        first = self._first_call()
        X = _validate(self, X, reset=first, ensure_all_finite=False)
        self._update(X, first)
        return self

    def _update(self, X, first):
        lo, hi = self._range()
        count, _, _, mn, mx = _core.scaler_column_stats(X, moments=False, extrema=True)
        if np.any(mn == -np.inf) or np.any(mx == np.inf):
            _raise_infinite(X)
        mn = np.where(count > 0, mn, np.nan)
        mx = np.where(count > 0, mx, np.nan)
        if not first:
            mn = np.fmin(self.data_min_, mn)
            mx = np.fmax(self.data_max_, mx)
            self.n_samples_seen_ += X.shape[0]
        else:
            self.n_samples_seen_ = X.shape[0]
        self.data_min_, self.data_max_ = mn, mx
        self.data_range_ = mx - mn
        self.scale_ = (hi - lo) / _handle_zeros_in_scale(self.data_range_, X.dtype)
        self.min_ = lo - mn * self.scale_

    def _transform_validated(self, X):
        if self.clip:
            lo, hi = self._range()
            return _affine(X, scale=self.scale_, offset=self.min_, lo=lo, hi=hi)
        return _affine(X, scale=self.scale_, offset=self.min_)

    def _check_params(self):
        self._range()

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
        check_is_fitted(self)
        X = _validate(self, X, reset=False, ensure_all_finite=False)
        return _affine(X, shift=self.min_, scale=1.0 / self.scale_)


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
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
    """

    _positive_only = True

    def __init__(self, offset=1.0):
        self.offset = offset

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
            The data, one row per sample.
        y : None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        offset = _check_offset(self.offset)
        first = self._first_call()
        X = _validate(self, X, reset=first)
        count, _, _, mn, _ = _core.scaler_column_stats(X, moments=False, extrema=True)
        bad = np.flatnonzero((count > 0) & ~(mn + offset > 0))
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
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    Notes
    -----
    With ``quantile_range``, ``partial_fit`` is exact: the estimator keeps every fitted
    row (see the module docstring). Clipping loses information: there is no
    ``inverse_transform``.
    """

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
            The data, one row per sample.
        y : None
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
        self.n_samples_seen_ = X.shape[0] + (0 if first else self.n_samples_seen_)
        c = X.shape[1]
        if q is None:
            lower = self._bound("lower", self.lower, c, -np.inf)
            upper = self._bound("upper", self.upper, c, np.inf)
            if np.any(lower > upper):
                raise ValueError(f"Clipper: lower must be <= upper, got lower={self.lower!r}, upper={self.upper!r}")
            self.lower_, self.upper_ = lower, upper
            return self
        rows = self._store_rows(X, first)
        quantiles = _core.scaler_quantiles(rows, np.array(q) / 100.0)
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
        X = _validate(self, X, reset=False)
        lo = np.where(np.isnan(self.lower_), -np.inf, self.lower_)  # all-NaN columns: no bound
        hi = np.where(np.isnan(self.upper_), np.inf, self.upper_)
        return _affine(X, lo=lo, hi=hi)


class RobustScaler(_QuantileStore, _Base, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale with statistics robust to outliers: ``(x - median) / IQR``.

    Parameters
    ----------
    quantile_range : tuple (q_min, q_max), default=(25, 75)
        Percentiles whose difference is the scale.

    Attributes
    ----------
    center_ : ndarray of shape (n_features,)
        Per-column median (NaN ignored).
    scale_ : ndarray of shape (n_features,)
        Per-column ``percentile(q_max) - percentile(q_min)``; values below 10 eps of the
        input dtype (constant columns) become 1.
    n_samples_seen_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)

    Notes
    -----
    Quantiles are exact (selection, NumPy's linear interpolation: the values of
    scikit-learn's RobustScaler). ``partial_fit`` stays exact by keeping every fitted row
    (see the module docstring).
    """

    def __init__(self, quantile_range=(25, 75)):
        self.quantile_range = quantile_range

    def partial_fit(self, X, y=None):
        """Update the median and IQR with the rows of X (exact over all rows seen).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The data, one row per sample.
        y : None
            Ignored; accepted for scikit-learn's API.

        Returns
        -------
        self
        """
        q_min, q_max = _check_quantile_range("quantile_range", self.quantile_range)
        first = self._first_call()
        X = _validate(self, X, reset=first)
        self.n_samples_seen_ = X.shape[0] + (0 if first else self.n_samples_seen_)
        rows = self._store_rows(X, first)
        q = _core.scaler_quantiles(rows, np.array([q_min, 50.0, q_max]) / 100.0)
        self.center_ = q[1]
        self.scale_ = _handle_zeros_in_scale(q[2] - q[0], X.dtype)
        return self

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
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        return _affine(X, shift=self.center_, scale=1.0 / self.scale_)

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
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        return _affine(X, scale=self.scale_, offset=self.center_)


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
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
    """

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
        y : None
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
            Targets, filtered in step with X.

        Returns
        -------
        X_kept : array-like of shape (n_kept, n_features)
            The rows of X where :meth:`mask` is True (a DataFrame stays one).
        y_kept : array-like of shape (n_kept,) or (n_kept, n_outputs)
            The same rows of y; returned only when y is given.
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
