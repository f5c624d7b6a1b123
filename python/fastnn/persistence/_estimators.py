"""A fitted ``DNNRegressor``/``DNNClassifier`` (its parameters, model, optimizer, history
and the fitted state ``partial_fit`` and ``diagnose`` continue from) as a header and
arrays, and back. Loading checks every field against a model rebuilt from the saved
parameters, so a tampered file is a ``ModelFormatError`` here rather than a ``KeyError``
later in ``partial_fit`` or ``diagnose``.

``fastnn.estimators`` is imported at call time: it imports scikit-learn (about a second),
which loading a ``Sequential`` does not need."""
from __future__ import annotations

import numbers

import numpy as np

from fastnn import nn, optim
from fastnn._errors import ModelFormatError
from fastnn.persistence._container import write_model
from fastnn.persistence._fields import _count, _unprefixed
from fastnn.persistence._optimizer import optimizer_from_state, optimizer_state
from fastnn.persistence._sequential import _state_mismatch, sequential_from_state, sequential_state

_ESTIMATORS = ("DNNRegressor", "DNNClassifier")
_HISTORY_SCALARS = ("loss", "val_loss", "lr", "skipped", "time")


def _json_float(x):
    return float(x) if np.isfinite(x) else None


def _json_safe(value):
    """``value`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    return value


def _saved_params(est) -> dict:
    """The constructor arguments as JSON: an optimizer instance by its configuration, the
    checked ``hidden_units``, no callbacks (code is never saved), and a ``random_state``
    only when it is a seed (a Generator was consumed by fit: it is not a setting)."""
    params = est.get_params(deep=False)
    params["callbacks"] = None
    if isinstance(params["optimizer"], optim.Optimizer):
        params["optimizer"] = optimizer_state(params["optimizer"])[0]
    params["hidden_units"] = list(est._validated_params()["hidden_units"])
    if params["random_state"] is not None and not isinstance(params["random_state"], numbers.Integral):
        params["random_state"] = None
    return params


def estimator_state(est) -> tuple[dict, dict]:
    """The header (without the container's own keys) and arrays that describe a fitted
    estimator; ``estimator_from_state`` inverts it.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    """
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(est, "model_")
    model_config, model_arrays = sequential_state(est.model_)
    opt_config, opt_arrays = optimizer_state(est.optimizer_)
    names = getattr(est, "feature_names_in_", None)
    fitted = {"n_features_in_": int(est.n_features_in_), "n_iter_": int(est.n_iter_),
              "feature_names_in_": None if names is None else [str(n) for n in names],
              "best_loss_": _json_float(est.best_loss_), "hidden_index": list(est._hidden_index_),
              "y_ndim": getattr(est, "_y_ndim_", None), "rng": est._rng_.bit_generator.state,
              "divergence_": _json_safe(est.divergence_), "n_train_rows": getattr(est, "_n_train_rows_", None),
              "target_max": _json_float(getattr(est, "_target_max_", np.nan))}
    arrays = {"feature_std": est._feature_std_, "saturation": np.asarray(est._saturation_, np.float64),
              **{f"model.{k}": v for k, v in model_arrays.items()},
              **{f"optimizer.{k}": v for k, v in opt_arrays.items()},
              **{f"history.{k}": np.asarray(v, np.float64).reshape(len(est.history_["loss"]), -1)
                 for k, v in est.history_.items()}}
    if hasattr(est, "classes_"):
        classes = est.classes_
        arrays["classes"] = np.asarray(classes.tolist()) if classes.dtype.hasobject else classes
        fitted["classes_object"] = bool(classes.dtype.hasobject)
    header = {"class": type(est).__name__, "params": _saved_params(est), "fitted": fitted,
              "model": model_config, "optimizer": opt_config}
    return header, arrays


def save_estimator(est, path) -> None:
    """What ``DNNRegressor.save``/``DNNClassifier.save`` do: ``estimator_state`` written
    to ``path`` atomically."""
    header, arrays = estimator_state(est)
    write_model(path, header, arrays)


def _array(arrays, name, shape):
    a = arrays.get(name)
    if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype.kind not in "biuf":
        raise ModelFormatError(f"array {name!r} must be numeric of shape {shape}, got "
                               f"{None if a is None else (a.dtype, a.shape)}")
    return a.astype(np.float64)


def _unfitted(header):
    """The estimator the header's parameters describe, and those parameters checked."""
    from fastnn import estimators
    cls = {"DNNRegressor": estimators.DNNRegressor, "DNNClassifier": estimators.DNNClassifier}[header["class"]]
    params = dict(header["params"])
    expected = set(cls._get_param_names())
    if set(params) != expected:
        raise ModelFormatError(f"params has keys {sorted(params)}, {cls.__name__} takes {sorted(expected)}")
    if isinstance(params["optimizer"], dict):
        params["optimizer"] = optimizer_from_state(params["optimizer"], {})
    params["hidden_units"] = tuple(params["hidden_units"]) if isinstance(params["hidden_units"], list) else None
    est = cls(**params)
    try:
        return est, est._validated_params()
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"params: {exc}") from None


def _restore_model(est, p: dict, header: dict, arrays: dict) -> None:
    """``model_`` and ``optimizer_`` from the file, checked against the model that the
    parameters ``p`` and the saved widths describe."""
    est.model_ = sequential_from_state(header["model"], _unprefixed("model.", arrays))
    est.optimizer_ = optimizer_from_state(header["optimizer"], _unprefixed("optimizer.", arrays))
    problem = _state_mismatch(est.optimizer_, est.model_)
    if problem:
        raise ModelFormatError(f"the optimizer does not fit the model: {problem}")
    est.n_features_in_ = int(header["fitted"]["n_features_in_"])
    # The widths first, against the saved weights (whose size the file bounds): the rebuild
    # below allocates a whole model, so forged widths must never reach it.
    dense_widths = [layer.out_features for layer in est.model_.layers if isinstance(layer, nn.Dense)]
    if est.n_features_in_ != est.model_.in_features or tuple(p["hidden_units"]) != tuple(dense_widths[:-1]):
        raise ModelFormatError(f"n_features_in_={est.n_features_in_} and hidden_units={p['hidden_units']} do not "
                               f"match the saved weights ({est.model_.in_features} inputs, hidden layers "
                               f"{tuple(dense_widths[:-1])})")
    # the layers the parameters describe, rebuilt: the file's model must be exactly that
    rebuilt = est._build_model(p, est.n_features_in_, est.model_.out_features, seed=0)
    if sequential_state(rebuilt)[0]["layers"] != header["model"]["layers"]:
        raise ModelFormatError("the model's layers do not match the estimator's parameters (hidden_units, "
                               f"activation, batch_norm, dropout) and its n_features_in_={est.n_features_in_} features")


def _restore_fitted(est, f: dict) -> None:
    """The fitted attributes that are not arrays (the header's ``fitted`` object)."""
    if [int(i) for i in f["hidden_index"]] != est._hidden_index_:
        raise ModelFormatError("hidden_index does not match the model's layers")
    if f["feature_names_in_"] is not None:
        est.feature_names_in_ = np.asarray(f["feature_names_in_"], dtype=object)
        if est.feature_names_in_.shape != (est.n_features_in_,):
            raise ModelFormatError("feature_names_in_ does not have one name per feature")
    est.n_iter_ = int(f["n_iter_"])
    est.best_loss_ = np.inf if f["best_loss_"] is None else float(f["best_loss_"])
    rng = np.random.default_rng()
    rng.bit_generator.state = f["rng"]
    est._rng_ = rng
    est.divergence_ = f["divergence_"]
    if f.get("n_train_rows") is not None:  # files of fastnn 0.1.0 record neither
        est._n_train_rows_ = _count(f["n_train_rows"], "fitted n_train_rows")
    if f.get("target_max") is not None:
        if isinstance(f["target_max"], bool) or not isinstance(f["target_max"], (int, float)):
            raise ModelFormatError(f"fitted target_max must be a number, got {f['target_max']!r}")
        est._target_max_ = float(f["target_max"])


def _restore_history(est, arrays: dict) -> None:
    """``history_`` (one row per epoch; per-layer statistics one column per hidden layer)
    and the per-feature and per-layer arrays ``diagnose`` reads."""
    from fastnn.estimators import _STAT_KEYS
    n_hidden = len(est._hidden_index_)
    est._feature_std_ = _array(arrays, "feature_std", (est.n_features_in_,))
    est._saturation_ = _array(arrays, "saturation", (n_hidden,)).tolist()
    history = _unprefixed("history.", arrays)
    if set(history) != set(_HISTORY_SCALARS + _STAT_KEYS):
        raise ModelFormatError(f"history has {sorted(history)}, expected {sorted(_HISTORY_SCALARS + _STAT_KEYS)}")
    est.history_ = {}
    for key in _HISTORY_SCALARS:
        est.history_[key] = _array(history, key, (est.n_iter_, 1))[:, 0].tolist()
    for key in _STAT_KEYS:
        est.history_[key] = _array(history, key, (est.n_iter_, n_hidden)).tolist()
    est.history_["skipped"] = [int(x) for x in est.history_["skipped"]]
    est.loss_curve_ = est.history_["loss"]


def _restore_targets(est, f: dict, arrays: dict) -> None:
    """A classifier's ``classes_``, a regressor's target dimensionality: each must fit the
    model's outputs."""
    n_out = est.model_.out_features
    if type(est).__name__ == "DNNClassifier":
        classes = arrays["classes"]
        est.classes_ = classes.astype(object) if f.get("classes_object") else classes
        if classes.ndim != 1 or len(classes) < 2 or n_out != (1 if len(classes) == 2 else len(classes)):
            raise ModelFormatError(f"{len(classes)} classes do not fit a model with {n_out} outputs")
    else:
        if f["y_ndim"] not in (1, 2) or (f["y_ndim"] == 1 and n_out != 1):
            raise ModelFormatError(f"y_ndim must be 1 (one output) or 2, got {f['y_ndim']!r}")
        est._y_ndim_ = int(f["y_ndim"])


def estimator_from_state(header: dict, arrays: dict):
    """The fitted estimator that ``estimator_state`` described (the loader ``fastnn.load``
    uses for estimator files and ``load_pipeline`` for a pipeline's last step)."""
    est, p = _unfitted(header)
    _restore_model(est, p, header, arrays)
    _restore_fitted(est, header["fitted"])
    _restore_history(est, arrays)
    _restore_targets(est, header["fitted"], arrays)
    return est
