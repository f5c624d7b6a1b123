"""A fitted ``fastnn.preprocessing`` scaler as (JSON config, arrays) and back, each
loaded attribute checked against a freshly fitted reference of the same class."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastnn._checks import _describe
from fastnn._errors import ModelFormatError
from fastnn.persistence._fields import _allowed, _classes, _fields, _lookup

_SCALERS = ("StandardScaler", "MinMaxScaler", "LogScaler", "Clipper", "RobustScaler")
# scaler state that is not saved: the quantile scalers' copy of every row they were fitted
# on (the training data itself, as large as the data set); see scaler_state
_UNSAVED = ("_rows",)
_NAMES_ATTR = "feature_names_in_"


def _param_to_json(value, where: str):
    """A scaler's constructor argument as JSON: None, a bool, number or string, or a flat
    sequence of numbers (``feature_range``, ``quantile_range``, per-column bounds)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list, np.ndarray)):
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.dtype.kind in "iuf":
            return arr.tolist()
    raise TypeError(f"{where} is {value!r}: only None, bools, numbers, strings and flat sequences of numbers "
                    "can be saved")


def _param_from_json(value, where: str):
    """The inverse of ``_param_to_json`` (a sequence comes back as a tuple)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise ModelFormatError(f"{where} must be None, a bool, number, string or list of numbers, got {value!r}")


def scaler_state(scaler) -> tuple[dict, dict]:
    """Describe a fitted ``fastnn.preprocessing`` scaler.

    Not saved: the copy of every fitted row that ``RobustScaler`` and
    ``Clipper(quantile_range=...)`` keep to make ``partial_fit`` exact; a loaded one
    transforms identically, but its quantiles after ``partial_fit`` cover only the rows
    given after loading.

    Parameters
    ----------
    scaler : StandardScaler, MinMaxScaler, LogScaler, Clipper or RobustScaler
        A fitted scaler.

    Returns
    -------
    config : dict
        JSON: the class name, the constructor arguments (``get_params()``; a sequence of
        numbers, e.g. ``Clipper(lower=[...])``, is loaded back as a tuple) and the
        fitted attributes that are not arrays (ints, floats, None,
        ``feature_names_in_`` as a list of strings).
    arrays : dict of str to ndarray
        Copies of the fitted arrays, public (``mean_``, ``scale_``, ...) and private
        (the running moments ``partial_fit`` continues from).

    Raises
    ------
    TypeError
        If ``scaler`` is not one of these classes, or holds an attribute that cannot be
        saved.
    sklearn.exceptions.NotFittedError
        If the scaler is not fitted.
    """
    allowed = _classes("fastnn.preprocessing", _SCALERS)
    cls = _allowed(scaler, allowed, "scaler")
    from fastnn.preprocessing import check_is_fitted
    check_is_fitted(scaler)
    params = {k: _param_to_json(v, f"{cls.__name__}.{k}") for k, v in scaler.get_params(deep=False).items()}
    fitted: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, value in vars(scaler).items():
        if name in params or name in _UNSAVED:
            continue
        if name == _NAMES_ATTR:
            fitted[name] = [str(v) for v in value]
        elif isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise TypeError(f"{cls.__name__}.{name} has dtype {value.dtype}: it cannot be saved")
            arrays[name] = value.copy()
        elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
            fitted[name] = value.item() if isinstance(value, np.generic) else value
        else:
            raise TypeError(f"{cls.__name__}.{name} is a {type(value).__name__}: it cannot be saved")
    return {"class": cls.__name__, "params": params, "fitted": fitted}, arrays


def _reference_data(cls, args: dict, n_features: int) -> np.ndarray:
    """A few rows of ``n_features`` columns that a scaler built with ``args`` accepts."""
    X = np.tile(np.array([[1.0], [2.0], [3.0], [5.0]]), (1, n_features))
    offset = args.get("offset")
    if cls.__name__ == "LogScaler" and isinstance(offset, (int, float)) and math.isfinite(offset):
        X += max(0.0, 1.0 - offset)  # x + offset > 0
    return X


def _state_problem(value, reference, n_features: int) -> str | None:
    """What is wrong with a loaded fitted attribute, judged by the same attribute of a
    reference instance fitted on ``n_features`` columns (None when nothing is)."""
    kinds = {"b": ("b", "bool"), "i": ("iu", "integer"), "u": ("iu", "integer"), "f": ("f", "float")}
    if reference is None:
        return None if value is None else f"must be None, got {_describe(value)}"
    if isinstance(reference, np.ndarray):
        accepted, word = kinds.get(reference.dtype.kind, ("", str(reference.dtype)))
        if not isinstance(value, np.ndarray) or value.shape != reference.shape or value.dtype.kind not in accepted:
            return f"must be a {word} array of shape {reference.shape}, got {_describe(value)}"
        return None
    if isinstance(reference, bool):
        return None if isinstance(value, bool) else f"must be a bool, got {value!r}"
    if isinstance(reference, int):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return None
        if isinstance(value, np.ndarray) and value.shape == (n_features,) and value.dtype.kind in "iu":
            return None  # a count per column (StandardScaler.n_samples_seen_ with NaN)
        if isinstance(value, float) and math.isfinite(value) and value >= 0:
            return None  # a total weight (StandardScaler.n_samples_seen_ with sample_weight)
        if (isinstance(value, np.ndarray) and value.shape == (n_features,) and value.dtype.kind == "f"
                and bool(np.all(np.isfinite(value) & (value >= 0)))):
            return None  # a total weight per column
        return f"must be a non-negative int or one int per feature, got {_describe(value)}"
    if isinstance(reference, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"must be a number, got {value!r}"
    if isinstance(reference, str):
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    return f"is a {type(reference).__name__} in this fastnn, which a file cannot hold"


def scaler_from_state(config, arrays, n_features: int | None = None):
    """Build the fitted scaler that ``scaler_state`` described.

    Every attribute is checked against a reference instance of the same class and
    parameters freshly fitted on a few rows of ``n_features_in_`` columns.

    Parameters
    ----------
    config : dict
        The JSON description.
    arrays : dict of str to ndarray
        The fitted arrays.
    n_features : int, optional
        When given, must equal the saved ``n_features_in_`` (a pipeline passes its
        estimator's).

    Returns
    -------
    scaler
        A fitted scaler that transforms bitwise as the original.

    Raises
    ------
    ModelFormatError
        For a missing, extra, mistyped or misshapen attribute, an unknown class or
        parameters the class refuses.
    """
    name, params, fitted = _fields(config, ("class", "params", "fitted"), "scaler")
    cls = _lookup(name, _classes("fastnn.preprocessing", _SCALERS), "scaler", "scaler")
    if not isinstance(params, dict) or not isinstance(fitted, dict) or not isinstance(arrays, dict):
        raise ModelFormatError(f"{name}: params, fitted and arrays must be JSON objects / dicts")
    expected = set(cls._get_param_names())
    # a file written before a parameter existed (fastnn 60c4ab6) implies its old behaviour
    added = {k: v for k, v in getattr(cls, "_params_added", {}).items() if k not in params}
    if added and set(params) | set(added) == expected:
        params = {**params, **added}
    if set(params) != expected:
        raise ModelFormatError(f"{name}.params has keys {sorted(params)}, {name} takes {sorted(expected)}")
    args = {k: _param_from_json(v, f"{name}.params.{k}") for k, v in params.items()}
    n = fitted.get("n_features_in_")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or (n_features is not None and n != n_features):
        want = "a positive int" if n_features is None else f"{n_features} (the estimator's)"
        raise ModelFormatError(f"{name}.n_features_in_ must be {want}, got {n!r}")
    # every array a scaler holds has one entry per feature: checked before the reference
    # fit, so that a forged n_features_in_ cannot make it allocate more than the file holds
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.ndim < 1 or value.shape[0] != n:
            raise ModelFormatError(f"{name}.{key} must be an array of {n} values (one per feature), got "
                                   f"{_describe(value)}")
    upgrade = getattr(cls, "_upgrade_state", None)
    if upgrade is not None:  # the private state of an older fastnn, in today's terms
        fitted, arrays = upgrade(dict(fitted), dict(arrays))
    both = sorted(set(fitted) & set(arrays))
    if both:
        raise ModelFormatError(f"{name}: {both} are both in fitted and in arrays")
    try:
        reference = cls(**args).fit(_reference_data(cls, args, n))
        scaler = cls(**args)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{name}.params: {exc}") from None
    state = {k: v for k, v in vars(reference).items() if k not in args and k not in _UNSAVED}
    saved = {k: v for k, v in {**fitted, **arrays}.items() if k != _NAMES_ATTR}
    missing, extra = sorted(set(state) - set(saved)), sorted(set(saved) - set(state))
    if missing or extra:
        raise ModelFormatError(f"{name} fitted state: missing {missing}, unexpected {extra}")
    for key, ref in state.items():
        problem = _state_problem(saved[key], ref, n)
        if problem:
            raise ModelFormatError(f"{name}.{key} {problem}")
        setattr(scaler, key, saved[key].copy() if isinstance(saved[key], np.ndarray) else saved[key])
    names = fitted.get(_NAMES_ATTR)
    if names is not None:
        if not isinstance(names, list) or len(names) != n or not all(isinstance(v, str) for v in names):
            raise ModelFormatError(f"{name}.{_NAMES_ATTR} must be a list of {n} strings, got {names!r}")
        scaler.feature_names_in_ = np.asarray(names, dtype=object)
    return scaler
