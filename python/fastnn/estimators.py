"""``DNNRegressor`` and ``DNNClassifier``: the lecture's estimator, scikit-learn compatible.

A hidden layer is ``Dense(activation)``, then ``BatchNorm`` (``batch_norm=True``), then
``Dropout`` (``dropout`` set), in both estimators. The activation stays fused into the
dense kernel (one pass over the outputs, PReLU included), and dropout comes last so batch
norm never normalizes with statistics that dropout inflated in training but that are
absent at inference (the "variance shift" of Li et al., CVPR 2019). The output layer is a
linear ``Dense``. Weights start Glorot uniform, biases at zero.

Every epoch is ONE call into the C++ core (``Sequential.train_epoch``): no Python runs per
mini-batch. Between epochs the estimator records ``history_``, evaluates the validation
loss, applies early stopping and reduce-on-plateau, and runs the callbacks.

The NaN trap: with ``nan_policy="raise"`` a non-finite loss or gradient stops training;
the estimator replays the epoch from its start up to the last finite update (the core is
deterministic, so the replay is bitwise the original run) and raises
``TrainingDivergedError`` with the model holding those last finite weights.
"""
from __future__ import annotations

import contextlib
import copy
import numbers
import sys
import time
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastnn import _core, nn, ops, optim
from fastnn._checks import (
    DECAY,
    FRACTION,
    NON_NEGATIVE,
    Interval,
    Options,
    OrNone,
    check_bool,
    check_count,
    check_int,
    check_learning_rate,
    check_params,
)
from fastnn._config import calling_thread_threads
from fastnn._errors import TrainingDivergedError, TrainingDivergedWarning

__all__ = ["DNNClassifier", "DNNRegressor"]

OPTIMIZERS = {"sgd": optim.SGD, "adagrad": optim.Adagrad, "adam": optim.Adam, "adamw": optim.AdamW,
              "rmsprop": optim.RMSProp}
ACTIVATIONS = ("linear", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh")
NAN_POLICIES = ("raise", "skip")
_DEFAULT_LEARNING_RATE = 0.05
_PROBE_ROWS = 2048
_SATURATION = {"sigmoid": lambda y: (y < 0.02) | (y > 0.98), "tanh": lambda y: np.abs(y) > 0.99}
_STAT_KEYS = ("zero_fraction", "dead_units", "grad_norm", "weight_norm", "update_ratio")

_PARAMS_DOC = """
    Parameters
    ----------
    hidden_units : sequence of int, default (64, 32)
        Units per hidden layer, input side first (``(64, 32)``: two hidden layers). An
        empty sequence gives a linear model.
    activation : {"relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh", "linear"}
        Activation of every hidden layer. ReLU and ELU resist vanishing gradients;
        sigmoid and tanh saturate in deep networks (``diagnose()`` shows it).
    optimizer : {"adagrad", "adam", "adamw", "sgd", "rmsprop"} or fastnn.optim optimizer
        A name is built with ``learning_rate``, ``l1`` and ``l2``; an instance is copied at
        ``fit`` (yours is never changed) and brings its own learning rate and
        regularization, so ``learning_rate``, ``l1`` and ``l2`` must stay at their
        defaults.
    learning_rate : float, default 0.05
        Initial learning rate (the lecture's Adagrad default).
    batch_size : int, default 32
        Rows per mini-batch (fewer for the last one).
    epochs : int, default 100
        Passes over the training data (``fit``); ``partial_fit`` runs one.
    dropout : float or None, default None
        DROP probability after every hidden layer, in [0, 1) (0.2 is a good start). It is
        NOT a keep probability: ``keep_prob=0.8`` is ``dropout=0.2``.
    batch_norm : bool, default False
        Batch normalization after every hidden layer's activation.
    clip_norm : float or None, default None
        Clip the gradient to this global norm before every update.
    l1, l2 : float, default 0.0
        Weight regularization (weights only: not biases, batch norm or PReLU slopes).
    loss : str
        Regressor: "mse" (mean squared error) or "huber". Classifier: "cross_entropy".
    validation_fraction : float, default 0.1
        Share of the training rows held out (stratified for the classifier) to measure
        ``val_loss``, only when ``early_stopping=True``.
    early_stopping : bool, default False
        Stop when ``val_loss`` has not improved by a relative ``tol`` for ``patience``
        epochs, and restore the weights of the best epoch: it installs
        ``fastnn.callbacks.EarlyStopping("val_loss", patience=patience, rel_delta=tol)``.
    patience : int, default 10
        Epochs without improvement before early stopping.
    lr_patience : int or None, default None
        Reduce-on-plateau: after this many epochs without improvement of the monitored
        loss (``val_loss`` with early stopping, else the training loss) multiply the
        learning rate by ``lr_factor``, down to ``min_lr``. None: off. It installs
        ``fastnn.callbacks.ReduceLROnPlateau`` with ``rel_delta=tol`` (one rule for both).
    lr_factor : float, default 0.5
        Factor in (0, 1) the learning rate is multiplied by on a plateau.
    min_lr : float, default 1e-6
        The learning rate never drops below this.
    tol : float, default 1e-4
        Relative improvement that counts (``new < best * (1 - tol)``).
    nan_policy : {"raise", "skip"}, default "raise"
        "raise": at the first non-finite loss or gradient, restore the last finite weights
        and raise ``fastnn.TrainingDivergedError`` naming epoch, step and layer. "skip":
        skip such mini-batches and count them in ``history_["skipped"]``.
    random_state : int, numpy Generator/RandomState or None
        Seeds the weights, the validation split, the shuffles and the dropout masks; an
        int makes ``fit`` reproducible bit for bit (for any thread count).
    verbose : int, default 0
        0: silent. 1: a progress bar over the epochs (tqdm, on stderr) with the latest
        loss and validation loss. 2: one line per epoch on stdout (also ``partial_fit``).
    callbacks : list or None
        ``fastnn.callbacks`` objects (``EarlyStopping``, ``CSVLogger``, ``TensorBoard``,
        ``LambdaCallback``) or any object with some of ``on_train_begin(estimator)``,
        ``on_epoch_end(estimator, epoch, logs)`` (``logs``: the epoch's ``history_``
        values) and ``on_train_end(estimator)`` (called also when training raises);
        setting ``estimator.stop_training_ = True`` ends training after the epoch.
    num_threads : int or None
        Threads for this estimator's training and prediction, set for the calling thread
        only (None: fastnn's process-wide setting, see ``fastnn.set_num_threads``).
    keep_prob : None
        Refused: fastnn takes the drop rate (``dropout``); kept only to explain that.
"""

_ATTRS_DOC = """
    Attributes
    ----------
    model_ : fastnn.nn.Sequential, the fitted network
    optimizer_ : the fastnn.optim optimizer that trained it (its state included)
    n_features_in_, feature_names_in_ : the input width (and column names of a DataFrame)
    n_iter_ : int, epochs trained (``fit`` and ``partial_fit`` together)
    loss_curve_ : list of float, the training loss per epoch
    history_ : dict of per-epoch lists: "loss", "val_loss" (NaN without validation), "lr",
        "skipped", "time", and per hidden layer (a list per epoch, shape (epochs,
        n_hidden)): "zero_fraction" (zero activations, before dropout), "dead_units"
        (units that never output a positive value in the epoch), "grad_norm" (mean over
        the epoch's updates), "weight_norm", "update_ratio" (last update / weights)
    best_loss_ : float, best monitored loss (early stopping)
"""


_CALLBACK_HOOKS = ("on_train_begin", "on_epoch_end", "on_train_end")


def _checked_callbacks(callbacks) -> list:
    """``callbacks`` as a list of objects with at least one hook (a clear TypeError for a
    function, a string, a lone callback object, ...)."""
    if callbacks is None:
        return []
    example = "callbacks=[fastnn.callbacks.EarlyStopping()]"
    if not isinstance(callbacks, (list, tuple)):
        lone = any(hasattr(callbacks, hook) for hook in _CALLBACK_HOOKS)
        raise TypeError(f"callbacks must be a list of callback objects ({example}), got "
                        f"{type(callbacks).__name__}" + (": wrap it in a list" if lone else
                                                         "; for a function use fastnn.callbacks.LambdaCallback("
                                                         "on_epoch_end=fn)"))
    for i, cb in enumerate(callbacks):
        if not any(callable(getattr(cb, hook, None)) for hook in _CALLBACK_HOOKS):
            raise TypeError(f"callbacks[{i}] must be a callback object with on_train_begin, on_epoch_end or "
                            f"on_train_end (such as fastnn.callbacks.EarlyStopping()), got {type(cb).__name__}"
                            + ("; for a function use fastnn.callbacks.LambdaCallback(on_epoch_end=fn)"
                               if callable(cb) else ""))
    return list(callbacks)


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SMALL = 4096  # elements: below this a boolean temporary costs less than two reductions
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _as_float32(a, name, where, unit="column"):
    """2-D ``a`` as float32, C-contiguous, refusing NaN, infinity and values beyond
    float32's range (|x| > 3.4e38: the network computes in float32) with the columns named.
    The check is a min and a max per column of the float32 array (any NaN or overflow
    shows there), so it allocates nothing the size of ``a``. ``unit`` names a column in
    messages ("column" for X, whose numbers the CLI turns into names; "output" for y)."""
    with np.errstate(over="ignore"):  # values beyond float32 become inf: found just below
        a32 = np.ascontiguousarray(a, dtype=np.float32)
    if a32.size == 0:
        return a32
    if a32.size <= _SMALL:  # a few rows (predict's fast path): one pass, columns only on failure
        if np.isfinite(a32).all():
            return a32
        finite = np.isfinite(a32).all(axis=0)
    else:
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(a32.min(axis=0)) & np.isfinite(a32.max(axis=0))
    if not finite.all():
        raise ValueError(_nonfinite_message(a, np.flatnonzero(~finite), name, where, unit))
    return a32


def _training_X(X):
    """``X`` as float32, C-contiguous (a float32 C-contiguous X as it is, any other one
    copy), refused like ``_as_float32`` does, and the standard deviation of each of its
    columns. Both come from one pass of the core's column-statistics kernel: fit allocates
    nothing the size of X beyond that one copy (issue 14: peak <= 5% of X)."""
    with np.errstate(over="ignore"):  # values beyond float32 become inf: found just below
        X32 = np.ascontiguousarray(X, dtype=np.float32)
    stats = _core.scaler_column_stats(X32, moments=True, extrema=True)
    # NaN is left out of the statistics (count < rows); infinity shows in the extrema
    finite = (stats.count == X32.shape[0]) & np.isfinite(stats.min) & np.isfinite(stats.max)
    if not finite.all():
        raise ValueError(_nonfinite_message(X, np.flatnonzero(~finite), "X", "fit", "column"))
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(np.maximum(stats.m2, 0.0) / stats.count)
    return X32, std


def _absmax(a) -> float:
    """The largest |value| of a float array, by two reductions (no temporary of its size)."""
    if a is None or a.size == 0 or a.dtype.kind != "f":
        return 0.0
    return float(max(-a.min(), a.max()))


def _nonfinite_message(a, columns, name, where, unit):
    """What is wrong with the given columns of ``a``: NaN/infinity, or finite values too
    large for float32; the column and the remedy (the CLI puts names on "column j")."""
    huge, missing = [], []
    for j in columns[:10]:
        col = np.asarray(a[:, j], dtype=np.float64)
        finite = np.isfinite(col)
        if finite.all():
            row = int(np.argmax(np.abs(col)))
            huge.append(f"{unit} {j} reaches {col[row]:.3g} (row {row})")
        else:
            count = int((~finite).sum())
            missing.append(f"{unit} {j} ({count} value{'s' if count > 1 else ''})")
    more = f" and {len(columns) - 10} more {unit}s" if len(columns) > 10 else ""
    parts = []
    if missing:
        parts.append(f"{name} passed to {where} contains NaN or infinity: {', '.join(missing)}{more}. A network cannot "
                     "train on them: drop or impute those rows first; fastnn.preprocessing scalers (StandardScaler, "
                     "MinMaxScaler, ...) ignore NaN when fitting and keep it in transform, so impute after scaling")
    if huge:
        parts.append(f"{name} passed to {where} has values outside float32's range (|x| <= {_FLOAT32_MAX:.3g}), in "
                     f"which fastnn computes: {', '.join(huge)}{more if not missing else ''}. " +
                     ("Rescale the target first (sklearn.compose.TransformedTargetRegressor, or divide it by a power "
                      "of ten)" if unit == "output" else "Rescale those columns first (divide by a power of ten, or "
                      "take logarithms: fastnn.preprocessing.LogScaler)"))
    return ". ".join(parts) + "."


def _hidden_units(name, units):
    if isinstance(units, numbers.Integral) and not isinstance(units, bool):
        units = (units,)
    if isinstance(units, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of ints such as (64, 32), got {type(units).__name__} {units!r}")
    try:
        units = tuple(units)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints such as (64, 32), got {type(units).__name__} "
                        f"{units!r}") from None
    return tuple(check_count(f"{name}[{i}]", u) for i, u in enumerate(units))


def _optimizer(name, value):
    if isinstance(value, str):
        return Options(tuple(OPTIMIZERS))(name, value)
    if not isinstance(value, optim.Optimizer):
        raise TypeError(f"{name} must be a name or a fastnn.optim optimizer, got {type(value).__name__}")
    return value


# The estimators' parameters and their bounds, declared once (scikit-learn's
# _parameter_constraints style) with the constraints of fastnn._checks: the same quantity
# has the same constraint object as in fastnn.nn, fastnn.optim, fastnn.ops and the
# callbacks the estimators install (a learning rate is >= 0 everywhere, a drop rate in
# [0, 1) everywhere, lr_factor is ReduceLROnPlateau's factor ...).
_PARAMETER_CHECKS = {
    "hidden_units": _hidden_units,
    "activation": ops._parameter_checks["activation"],
    "optimizer": _optimizer,
    "learning_rate": check_learning_rate,
    "batch_size": check_count,
    "epochs": check_count,
    "dropout": OrNone(ops._parameter_checks["rate"]),
    "batch_norm": check_bool,
    "clip_norm": OrNone(NON_NEGATIVE),  # 0 trains nothing, as a learning rate of 0
    "l1": NON_NEGATIVE,
    "l2": NON_NEGATIVE,
    "validation_fraction": FRACTION,
    "early_stopping": check_bool,
    "patience": check_count,
    "lr_patience": OrNone(check_count),
    "lr_factor": FRACTION,
    "min_lr": NON_NEGATIVE,
    "tol": DECAY,
    "nan_policy": Options(NAN_POLICIES),
    "verbose": Interval(int, 0),
    "callbacks": lambda name, value: _checked_callbacks(value),
    "num_threads": OrNone(check_count),
}


_FINITE_CHECK_ROWS = 65536  # rows per predict() call when checking that a restored model's outputs are finite


class _BaseDNN(BaseEstimator):
    """Shared fitting machinery; see DNNRegressor / DNNClassifier."""

    # checked by _validated_params, not by scikit-learn (whose machinery wants its own constraint objects)
    _parameter_checks = _PARAMETER_CHECKS

    _losses: tuple = ()

    def __init__(self, hidden_units=(64, 32), activation="relu", optimizer="adagrad",
                 learning_rate=_DEFAULT_LEARNING_RATE, batch_size=32, epochs=100, dropout=None, batch_norm=False,
                 clip_norm=None, l1=0.0, l2=0.0, loss=None, validation_fraction=0.1, early_stopping=False,
                 patience=10, lr_patience=None, lr_factor=0.5, min_lr=1e-6, tol=1e-4, nan_policy="raise",
                 random_state=None, verbose=0, callbacks=None, num_threads=None, keep_prob=None):
        self.hidden_units = hidden_units
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.clip_norm = clip_norm
        self.l1 = l1
        self.l2 = l2
        self.loss = loss
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.min_lr = min_lr
        self.tol = tol
        self.nan_policy = nan_policy
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.num_threads = num_threads
        self.keep_prob = keep_prob

    # ------------------------------------------------------------------ validation

    def _validated_params(self) -> dict:
        """Every hyperparameter checked against ``_parameter_checks`` (scikit-learn:
        validation happens in fit); the checked values by name."""
        if self.keep_prob is not None:
            raise ops.keep_prob_refusal(self.keep_prob, "dropout")
        p = check_params(self._parameter_checks, {name: getattr(self, name) for name in self._parameter_checks})
        p["loss"] = Options(self._losses)("loss", self._default_loss if self.loss is None else self.loss)
        if isinstance(self.optimizer, optim.Optimizer) and (p["learning_rate"] != _DEFAULT_LEARNING_RATE or p["l1"]
                                                            or p["l2"]):
            raise ValueError("with an optimizer instance set its lr, l1 and l2 on the instance; leave "
                             "learning_rate, l1 and l2 of the estimator at their defaults")
        return p

    def _new_optimizer(self, p):
        if isinstance(self.optimizer, optim.Optimizer):
            opt = copy.deepcopy(self.optimizer)
            opt.iterations, opt.state = 0, {}
            return opt
        return OPTIMIZERS[self.optimizer](lr=p["learning_rate"], l1=p["l1"], l2=p["l2"])

    def _check_X(self, X, reset, where):
        if (not reset and type(X) is np.ndarray and X.ndim == 2 and X.dtype in _FLOATS and X.shape[0] >= 1
                and X.shape[1] == self.n_features_in_ and not hasattr(self, "feature_names_in_")):
            # the fast path (predict of a few rows): a plain float array of the right width is
            # all scikit-learn's validate_data would check here; values are checked below
            return _as_float32(X, "X", where)
        X = validate_data(self, X, reset=reset, dtype=(np.float32, np.float64), ensure_all_finite=False,
                          ensure_min_samples=1)
        return _as_float32(X, "X", where)

    # ------------------------------------------------------------------ the network

    def _build_model(self, p, n_in, n_out, seed):
        layers, width, hidden = [], n_in, []
        for units in p["hidden_units"]:
            hidden.append(len(layers))
            layers.append(nn.Dense(width, units, activation=self.activation))
            if self.batch_norm:
                layers.append(nn.BatchNorm(units))
            if p["dropout"]:  # None or 0: no dropout layer
                layers.append(nn.Dropout(p["dropout"]))
            width = units
        layers.append(nn.Dense(width, n_out))
        self._hidden_index_ = hidden
        return nn.Sequential(layers, seed=seed)

    def _snapshot(self):
        return (self.model_.params.copy(), self.model_.buffers.copy(), self.model_.step,
                copy.deepcopy(self.optimizer_.state), self.optimizer_.iterations, self.optimizer_.schedule.lr)

    def _restore(self, snap):
        params, buffers, step, state, iterations, lr = snap
        self.model_.params[...] = params
        self.model_.buffers[...] = buffers
        self.model_.step = step
        self.optimizer_.state = copy.deepcopy(state)
        self.optimizer_.iterations = iterations
        self.optimizer_.schedule.lr = lr

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y, sample_weight=None):
        """Train from scratch for ``epochs`` epochs (fewer with early stopping).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; converted to float32 once.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (regression) or class labels (classification).
        sample_weight : array-like of shape (n_samples,), default None
            Non-negative weight of each row in the loss; None weighs every row 1.

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            If the inputs are malformed (shapes, non-finite values under
            ``nan_policy="raise"``, negative weights) or a parameter is out of range.
        TrainingDivergedError
            If the loss or a gradient became non-finite; the model keeps its last
            finite weights.
        """
        for attr in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, attr)
        return self._fit(X, y, sample_weight, partial=False, classes=None)

    def _partial_fit(self, X, y, sample_weight, classes):
        return self._fit(X, y, sample_weight, partial=True, classes=classes)

    def _fit(self, X, y, sample_weight, partial, classes, collective=None):
        """The one training driver (fit, partial_fit, fastnn.dask through partial_fit,
        fastnn.distributed through ``collective``): validate, build on the first call,
        split, train the epochs, probe saturation."""
        collective = _ONE_PROCESS if collective is None else collective
        p = self._validated_params()
        first = not hasattr(self, "model_")
        self._check_label_types(y)
        X, y = validate_data(self, X, y, reset=first, dtype=(np.float32, np.float64), ensure_all_finite=False,
                             multi_output=self._multi_output, y_numeric=self._y_numeric, ensure_min_samples=1)
        X32, feature_std = _training_X(X)
        target, n_out = self._encode_targets(y, first, classes)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
            if sample_weight.min() < 0:
                raise ValueError("sample_weight must be non-negative")
            if not sample_weight.sum() > 0:
                raise ValueError("sample_weight must not be all zero")
        collective.check_data(X, target, sample_weight)
        n_train = self._training_rows(p, X.shape[0], partial)
        if first:
            rng = np.random.default_rng(collective.shared_seed(self._seed_from(self.random_state)))
            self._rng_ = rng
            self.model_ = self._build_model(p, X.shape[1], n_out, int(rng.integers(2 ** 31)))
            try:
                self.model_._check_workspace(min(p["batch_size"], n_train))
            except MemoryError:
                del self.model_, self._rng_  # nothing half-built stays behind
                raise
            self.optimizer_ = self._new_optimizer(p)
            self.history_ = {k: [] for k in ("loss", "val_loss", "lr", "skipped", "time") + _STAT_KEYS}
            self.n_iter_ = 0
            self.best_loss_ = np.inf
            # the raw scale of every feature, for diagnose() (the litres-vs-millilitres soup)
            self._feature_std_ = feature_std
            self.divergence_ = None
        self._n_train_rows_ = getattr(self, "_n_train_rows_", 0) + n_train  # for diagnose(): too few rows?
        data = _TrainingData(X32, target, sample_weight, self._split(target, p, partial))
        del X, y, X32, target, sample_weight  # data holds what training needs; nothing else stays alive
        epochs = 1 if partial else p["epochs"]
        with calling_thread_threads(p["num_threads"]):
            with collective.training(self.model_):
                self._train(p, data, epochs, partial, collective)
            self._saturation_ = self._probe_saturation(data.probe_rows())
        return self

    def _check_label_types(self, y):
        """Targets a regressor takes as they are (validate_data checks them)."""

    def _training_rows(self, p, n, partial) -> int:
        """The rows one call trains on (after the validation split), once a configuration
        in which no mini-batch could train has been refused: batch norm divides each batch
        by its variance, which is 0 for a batch of one row, so the core would skip them all."""
        n_train = n if partial or not self.early_stopping else n - int(np.ceil(p["validation_fraction"] * n))
        if self.batch_norm and p["batch_size"] < 2:
            raise ValueError("batch_norm=True needs batch_size >= 2: batch norm divides each mini-batch by its "
                             "variance, which is 0 for a batch of one row, so no batch could train with batch_size=1")
        if self.batch_norm and n_train < 2:
            raise ValueError(f"batch_norm=True needs at least 2 training rows, got n_samples={n_train}: the variance "
                             "of one row is 0, so no batch could train")
        return n_train

    def _probe_saturation(self, X):
        """Per hidden layer, the share of sigmoid/tanh outputs in the flat tails (derivative
        below about 2% of its peak), on training rows; NaN for other activations."""
        if self.activation not in _SATURATION or X.shape[0] == 0:
            return [float("nan")] * len(self._hidden_index_)
        outputs = self.model_.layer_outputs(X)
        return [float(np.mean(_SATURATION[self.activation](outputs[i]))) for i in self._hidden_index_]

    def _split(self, target, p, partial):
        """Which rows train and which are held out for ``val_loss`` (early stopping): a
        ``fastnn._core.RowSplit``, which the core reads by index (no row is copied)."""
        n = target.shape[0]
        if not self.early_stopping or partial:
            return _core.RowSplit(n)
        n_val = int(np.ceil(p["validation_fraction"] * n))
        if n_val < 1 or n - n_val < 2:
            raise ValueError(f"early_stopping needs at least 2 training rows and 1 validation row: "
                             f"{n} rows with validation_fraction={p['validation_fraction']}")
        held, classes = self._held_out_per_class(target, n_val)
        return _core.RowSplit(n, key=int(self._rng_.integers(2 ** 63)), held=held, classes=classes)

    def _held_out_per_class(self, target, n_val):
        """How many rows of each class to hold out, and the class of each row (None: one
        class, regression)."""
        return [n_val], None

    @staticmethod
    def _seed_from(random_state):
        if random_state is None:
            return None
        if isinstance(random_state, np.random.RandomState):
            return int(random_state.randint(2 ** 31))
        if isinstance(random_state, np.random.Generator):
            return int(random_state.integers(2 ** 31))
        return check_int("random_state", random_state, low=0)

    def _train(self, p, data, epochs, partial, collective):
        self.stop_training_ = False
        # the built-in callbacks (early stopping, reduce-on-plateau) run in every process; the
        # user's, like the logs, in one
        builtins = self._builtin_callbacks(p, validation=data.split.held_out > 0 and not partial)
        callbacks = builtins + (p["callbacks"] if collective.rank == 0 else [])
        progress = _Progress(p["verbose"] if collective.rank == 0 else 0, epochs, partial, collective.describe)
        try:
            for cb in callbacks:
                getattr(cb, "on_train_begin", lambda est: None)(self)
            self._epochs(p, data, epochs, progress, collective, callbacks)
        finally:  # also after a TrainingDivergedError: loggers close their files, the bar ends
            progress.close()
            for cb in callbacks:
                getattr(cb, "on_train_end", lambda est: None)(self)

    def _builtin_callbacks(self, p, validation) -> list:
        """``early_stopping`` and ``lr_patience`` as the callbacks users can pass themselves
        (fastnn.callbacks): one rule each, with ``tol`` as their relative delta."""
        from fastnn.callbacks import Callback, EarlyStopping, ReduceLROnPlateau
        builtins: list[Callback] = []
        if validation:
            builtins.append(EarlyStopping("val_loss", patience=p["patience"], rel_delta=p["tol"]))
        if p["lr_patience"] is not None:
            builtins.append(ReduceLROnPlateau("val_loss" if validation else "loss", patience=p["lr_patience"],
                                              factor=p["lr_factor"], min_lr=p["min_lr"], rel_delta=p["tol"]))
        self._early_stopping_ = builtins[0] if validation else None
        return builtins

    def _epochs(self, p, data, epochs, progress, collective, callbacks):
        model, opt = self.model_, self.optimizer_
        skip = self.nan_policy == "skip"
        previous = None  # with nan_policy="skip": the state at the start of the last epoch trained
        for _ in range(epochs):
            epoch = self.n_iter_
            start = time.perf_counter()
            lr = opt.lr
            snap = self._snapshot()
            kw = dict(batch_size=p["batch_size"], loss=self._core_loss, optimizer=opt, clip_norm=p["clip_norm"],
                      shuffle=True, seed=int(self._rng_.integers(2 ** 63)), sample_weight=data.weight,
                      reduction=collective.reduction, statistics=collective.statistics, split=data.split)
            r = collective.combine(model, model.train_epoch(data.X, data.target, skip_nonfinite=skip, **kw))
            if r.diverged or (r.steps == 0 and r.skipped) or not np.all(np.isfinite(model.params)):
                self._stop_at_divergence(r, snap, epoch, data, dict(kw, skip_nonfinite=skip), lr, start, progress,
                                         previous, collective)
                break
            previous = snap if skip else None
            val_loss = np.nan if data.split.held_out == 0 else self._validation_loss(data)
            self._record(r, lr, val_loss, time.perf_counter() - start)
            self.n_iter_ += 1
            progress.epoch_done(epoch, r, val_loss, lr)
            logs = {k: list(v[-1]) if isinstance(v[-1], list) else v[-1] for k, v in self.history_.items()}
            for cb in callbacks:
                getattr(cb, "on_epoch_end", lambda est, e, l: None)(self, epoch, logs)
            if self._early_stopping_ is not None and self._early_stopping_.best_ is not None:
                self.best_loss_ = self._early_stopping_.best_
            collective.after_epoch(self, epoch)
            self.stop_training_ = collective.agree(self.stop_training_)
            if self.stop_training_:
                break

    def _validation_loss(self, data) -> float:
        """The loss on the held-out rows, read from X by index in chunks (nothing the size of
        the held-out part is gathered): the chunks' mean losses weighted by their rows (by
        their sample weights, unless the held-out rows weigh nothing), summed in float64."""
        weight = data.weight
        if weight is not None and not sum(float(weight[rows].sum(dtype=np.float64))
                                          for rows in nn.held_out_chunks(data.split)) > 0:
            weight = None
        total = size = 0.0
        for rows in nn.held_out_chunks(data.split):
            w = None if weight is None else weight[rows]
            share = float(rows.size) if w is None else float(w.sum(dtype=np.float64))
            if share > 0:  # a chunk that weighs nothing adds nothing (its weighted mean is undefined)
                total += self._loss_on(data.X[rows], data.target[rows], w) * share
                size += share
        return total / size

    def _stop_at_divergence(self, r, snap, epoch, data, kw, lr, start, progress, previous, collective):
        """The NaN trap: restore the last finite weights; raise, or with nan_policy="skip"
        record the epoch and stop with a warning."""
        where = self._restore_last_finite(r, snap, epoch, data, kw, previous,
                                          lambda: collective.all(self._predicts_finite(data.X)))
        if self.nan_policy != "skip":
            raise TrainingDivergedError(f"training diverged (the NaN trap) {where}", epoch=epoch,
                                        step=self.divergence_["step"], layer=self.divergence_["layer"])
        self._record(r, lr, np.nan, time.perf_counter() - start)
        self.n_iter_ += 1
        progress.epoch_done(epoch, r, np.nan, lr)
        warnings.warn(TrainingDivergedWarning(
            f"training stopped (nan_policy='skip', the NaN trap: {r.skipped} of the epoch's {r.steps + r.skipped} "
            f"mini-batches were skipped) {where}"), stacklevel=6)

    def _record(self, r, lr, val_loss, seconds):
        h = self.history_
        h["loss"].append(float(r.loss))
        h["val_loss"].append(float(val_loss))
        h["lr"].append(float(lr))
        h["skipped"].append(int(r.skipped))
        h["time"].append(float(seconds))
        for key in _STAT_KEYS:
            values = getattr(r, key)
            h[key].append([float(values[i]) for i in self._hidden_index_])
        self.loss_curve_ = h["loss"]

    def _restore_last_finite(self, r, snap, epoch, data, kw, previous, outputs_finite) -> str:
        """Restore the last weights that are finite and predict finite values for X (replaying
        the epoch up to them; with nan_policy="skip", where even the epoch's start fails,
        the previous epoch's start ``previous``; ``outputs_finite()`` says whether every
        process's rows get finite outputs), record ``divergence_`` for diagnose(),
        and say where it happened, what the model holds and the remedies ("at epoch E,
        step S: ...")."""
        bad_step = r.bad_step if r.bad_step >= 0 else 0
        # keep the updates before the bad batch; when its LOSS was non-finite, the weights
        # of the last update already overflow the forward pass: keep one update fewer
        keep = max(bad_step - (r.bad_layer < 0), 0) if r.bad_step >= 0 else max(r.steps + r.skipped - 1, 0)
        replay = None
        back = 1
        while True:  # step back until the weights, and what they predict for X, are finite
            self._restore(snap)
            if keep > 0:
                replay = self.model_.train_epoch(data.X, data.target, max_batches=keep, **kw)
            if keep == 0 or (np.all(np.isfinite(self.model_.params)) and outputs_finite()):
                break
            # Weights blown up over many updates (SGD, a huge learning rate) can stay finite
            # while their outputs overflow: step back 1, 2, 4 ... updates, not one at a time.
            keep = max(keep - back, 0)
            back *= 2
        start_epoch = epoch
        finite_outputs = keep > 0 or outputs_finite()
        if not finite_outputs and previous is not None:  # skipped batches blew up the last epoch
            self._restore(previous)
            start_epoch, finite_outputs = epoch - 1, outputs_finite()
        layer = None
        if r.bad_layer >= 0:
            layer = next((h for h, i in enumerate(self._hidden_index_) if i == r.bad_layer), len(self._hidden_index_))
        # the statistics of the replayed updates: evidence for diagnose()
        stats = {key: [float(getattr(replay, key)[i]) if replay is not None and keep > 0 else float("nan")
                       for i in self._hidden_index_] for key in ("grad_norm", "update_ratio")}
        self.divergence_ = {"epoch": epoch, "step": bad_step, "layer": layer, "restored_steps": keep,
                            "restored_epoch": start_epoch,
                            "learning_rate": float(self.optimizer_.lr), **stats,
                            "input_max": _absmax(data.X), "target_max": _absmax(data.target)}
        where = "the loss" if layer is None else (
            f"the gradient of hidden layer {layer}" if layer < len(self._hidden_index_) else
            "the gradient of the output layer")
        from fastnn.doctor import nan_trap_remedies
        if finite_outputs:
            holds = (f"The model holds the last weights that gave a finite loss and finite outputs for every "
                     f"training row (epoch {start_epoch}, after {keep if start_epoch == epoch else 0} of its "
                     f"updates)")
        else:
            holds = (f"Even the weights at the start of epoch {start_epoch}, which the model holds, give non-finite "
                     f"outputs for some training rows: predict() will return them")
        return (f"at epoch {epoch}, step {bad_step}: {where} is not finite. {holds}. Remedies: "
                f"{nan_trap_remedies(self.divergence_, self)}. diagnose() has the evidence.")

    def _predicts_finite(self, X) -> bool:
        """Whether the model's outputs for every row of X are finite, chunk by chunk (nothing
        the size of X is allocated)."""
        rows = _FINITE_CHECK_ROWS
        return all(np.all(np.isfinite(self.model_.predict(X[start:start + rows])))
                   for start in range(0, X.shape[0], rows))

    # ------------------------------------------------------------------ inference

    def _forward(self, X, where):
        if not hasattr(self, "model_"):
            check_is_fitted(self, "model_")  # raises scikit-learn's NotFittedError
        X = self._check_X(X, reset=False, where=where)
        if self.num_threads is None:
            return self.model_.predict(X)
        with calling_thread_threads(self.num_threads):
            return self.model_.predict(X)

    def diagnose(self):
        """Run the training doctor on this fitted estimator.

        Returns
        -------
        list of fastnn.doctor.Finding
            Findings (failure mode, evidence, remedy) from ``history_`` and the training
            data, most urgent first; empty when no rule fired.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        """
        check_is_fitted(self, "model_")
        from fastnn.doctor import diagnose
        return diagnose(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------ persistence

    def save(self, path):
        """Write the fitted estimator to a model file, atomically.

        The file is a NumPy ``.npz`` zip with a JSON header and no pickle (see
        ``fastnn.persistence``); a failed save leaves an existing file intact.
        ``fastnn.load(path)`` gives the estimator back with bitwise-identical predictions,
        its history and its optimizer state (so ``partial_fit`` continues). Callbacks are
        not saved.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        OSError
            If the file cannot be written.
        """
        from fastnn.persistence._estimators import save_estimator
        save_estimator(self, path)


# Labels per chunk when y is read piecewise: temporaries of a chunk's size, not y's.
_LABEL_CHUNK = 65536


def _unique_labels(y) -> np.ndarray:
    """``np.unique(y)`` of a 1-D y, reading it a chunk at a time."""
    if y.shape[0] <= _LABEL_CHUNK:
        return np.unique(y)
    return np.unique(np.concatenate([np.unique(y[i:i + _LABEL_CHUNK]) for i in range(0, y.shape[0], _LABEL_CHUNK)]))


def _class_codes(y, classes) -> np.ndarray:
    """Each label's index in the sorted ``classes``, computed a chunk at a time: one byte per
    row for fewer than 257 classes (the core reads uint8 labels as they are; two classes
    train with bce on the 0/1 codes), else int64."""
    codes = np.empty(y.shape[0], np.uint8 if len(classes) <= 256 else np.int64)
    for i in range(0, y.shape[0], _LABEL_CHUNK):
        codes[i:i + _LABEL_CHUNK] = np.searchsorted(classes, y[i:i + _LABEL_CHUNK])
    return codes


class _TrainingData(NamedTuple):
    """What the epochs of one fit read: X (float32, C-contiguous), the encoded targets and
    the sample weights (or None), all of every row, and the split that says which rows
    train (visited by index: no row is copied)."""
    X: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None
    split: _core.RowSplit

    def probe_rows(self) -> np.ndarray:
        """Up to ``_PROBE_ROWS`` training rows for the saturation probe: the first rows of X,
        or with rows held out, a keyed sample of the training rows."""
        if self.split.held_out == 0:
            return self.X[:_PROBE_ROWS]
        return self.X[self.split.epoch_rows(0, min(_PROBE_ROWS, self.split.training))]


class _OneProcess:
    """How the training driver exchanges with the other processes of a data-parallel run
    (``fastnn.distributed`` subclasses it); this one is a single process, so every hook
    is a no-op."""

    rank, ranks = 0, 1
    reduction = None      # nn.GradientReduction for train_epoch's reduction stage
    statistics = True     # record the per-layer statistics (diagnose() reads them)
    describe = ""         # appended to the per-epoch log line

    def check_data(self, X, target, weight):
        """Every process passed the same data (a debug check)."""

    def shared_seed(self, seed):
        """The seed every process uses (one process: its own)."""
        return seed

    @contextlib.contextmanager
    def training(self, model):
        """Around the epochs of one call (per-process dropout keys, the reduction)."""
        yield

    def combine(self, model, r):
        """One epoch's result for the whole run: the processes' tallies added."""
        return r

    def agree(self, flag) -> bool:
        """The first process's ``flag`` (a callback's stop request), everywhere."""
        return bool(flag)

    def all(self, flag) -> bool:
        """Whether ``flag`` holds on every process."""
        return bool(flag)

    def after_epoch(self, est, epoch):
        """A debug check that every process holds the same model."""


_ONE_PROCESS = _OneProcess()


class _Progress:
    """``verbose=1``: a tqdm progress bar over the epochs of ``fit`` showing the latest
    loss and validation loss (on stderr); ``verbose>=2``, or ``partial_fit`` with
    ``verbose``: one line per epoch on stdout. ``verbose=0``: nothing."""

    def __init__(self, verbose, epochs, partial, suffix=""):
        self.verbose = verbose
        self.suffix = suffix
        self.bar = None
        if verbose == 1 and not partial:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=epochs, unit="epoch", dynamic_ncols=True)

    def epoch_done(self, epoch, r, val_loss, lr):
        if not self.verbose:
            return
        stats = {"loss": f"{r.loss:.4g}"}
        if not np.isnan(val_loss):
            stats["val_loss"] = f"{val_loss:.4g}"
        if r.skipped:
            stats["skipped"] = r.skipped
        if self.bar is not None:
            self.bar.set_postfix(stats, refresh=False)
            self.bar.update(1)
        else:
            text = " - ".join(f"{k} {v}" for k, v in stats.items())
            print(f"epoch {epoch + 1}: {text} - lr {lr:.3g}{self.suffix}", file=sys.stdout, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class DNNRegressor(RegressorMixin, _BaseDNN):
    __doc__ = ("""A dense neural network regressor, modelled on the lecture's ``DNNRegressor``.

    ``reg = DNNRegressor(hidden_units=(64, 32)).fit(X, y)``; ``reg.predict(X)``;
    ``reg.score(X, y)`` is R². ``y`` may be 1-D or 2-D (several outputs).
""" + _PARAMS_DOC + _ATTRS_DOC)

    _losses = ("mse", "huber")
    _default_loss = "mse"
    _multi_output = True
    _y_numeric = True

    def __init__(self, hidden_units=(64, 32), activation="relu", optimizer="adagrad",
                 learning_rate=_DEFAULT_LEARNING_RATE, batch_size=32, epochs=100, dropout=None, batch_norm=False,
                 clip_norm=None, l1=0.0, l2=0.0, loss="mse", validation_fraction=0.1, early_stopping=False,
                 patience=10, lr_patience=None, lr_factor=0.5, min_lr=1e-6, tol=1e-4, nan_policy="raise",
                 random_state=None, verbose=0, callbacks=None, num_threads=None, keep_prob=None):
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})

    @property
    def _core_loss(self):
        return self.loss

    def _encode_targets(self, y, first, classes):
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"y must be numeric for regression, got dtype {y.dtype} (for class labels use "
                             "DNNClassifier)")
        target = _as_float32(y.reshape(len(y), -1), "y", "fit", unit="output")
        self._target_max_ = max(getattr(self, "_target_max_", 0.0), _absmax(target))
        if first:
            self._y_ndim_ = y.ndim
        elif target.shape[1] != self.model_.out_features:
            raise ValueError(f"y has {target.shape[1]} outputs, but the model was fitted with "
                             f"{self.model_.out_features}")
        return np.ascontiguousarray(target), target.shape[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def partial_fit(self, X, y, sample_weight=None):
        """Train one epoch over (X, y), continuing from the current weights.

        The optimizer state carries over too (the first call initializes both). No
        validation split, no early stopping.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default None
            Non-negative weight of each row in the loss.

        Returns
        -------
        self
            The estimator.
        """
        return self._partial_fit(X, y, sample_weight, None)

    def score(self, X, y, sample_weight=None):
        """R² of ``predict(X)`` against ``y`` (scikit-learn's ``r2_score``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows to predict.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The true targets.
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the rows.

        Returns
        -------
        float
            The coefficient of determination.

        Raises
        ------
        ValueError
            With fewer than 2 rows: R² compares the errors with the spread of ``y``, which
            one row does not have (scikit-learn would warn and return NaN).
        """
        n = np.shape(y)[0] if np.ndim(y) else 0
        if n < 2:
            raise ValueError(f"score needs at least 2 rows (R^2 compares the errors with the spread of y), got {n}")
        return super().score(X, y, sample_weight=sample_weight)

    def predict(self, X):
        """Predict targets for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions, 1-D for a 1-D training target. Computed in float32 (the model's
            precision), returned as float64 like scikit-learn's regressors.
        """
        out = self._forward(X, "predict").astype(np.float64)
        return out.ravel() if self._y_ndim_ == 1 else out

    def _loss_on(self, X, target, weight):
        pred = self.model_.predict(X)
        if self.loss == "huber":
            return float(ops.huber_loss(pred, target, sample_weight=weight).loss)
        return float(ops.mse_loss(pred, target, sample_weight=weight).loss)


class DNNClassifier(ClassifierMixin, _BaseDNN):
    __doc__ = ("""A dense neural network classifier (binary or multiclass), modelled on the
    lecture's ``DNNRegressor`` with a softmax (or, for two classes, a sigmoid) output.

    ``clf = DNNClassifier(hidden_units=(64, 32)).fit(X, y)``; ``clf.predict(X)``,
    ``clf.predict_proba(X)``, ``clf.score(X, y)`` (accuracy). Labels may be of any type
    scikit-learn accepts; ``classes_`` holds them, sorted.
""" + _PARAMS_DOC + _ATTRS_DOC + """    classes_ : array of the class labels
""")

    _losses = ("cross_entropy",)
    _default_loss = "cross_entropy"
    _multi_output = False
    _y_numeric = False

    def __init__(self, hidden_units=(64, 32), activation="relu", optimizer="adagrad",
                 learning_rate=_DEFAULT_LEARNING_RATE, batch_size=32, epochs=100, dropout=None, batch_norm=False,
                 clip_norm=None, l1=0.0, l2=0.0, loss="cross_entropy", validation_fraction=0.1,
                 early_stopping=False, patience=10, lr_patience=None, lr_factor=0.5, min_lr=1e-6, tol=1e-4,
                 nan_policy="raise", random_state=None, verbose=0, callbacks=None, num_threads=None, keep_prob=None):
        super().__init__(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})

    @property
    def _core_loss(self):
        return "bce" if len(self.classes_) == 2 else "softmax_cross_entropy"

    def _encode_targets(self, y, first, classes):
        # the label checks read y's distinct labels (y is 1-D here: validate_data made it so):
        # the kind of target they make is the kind y is, and no temporary the size of y is made
        found = _unique_labels(y)
        check_classification_targets(found)
        kind = type_of_target(found)
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"DNNClassifier takes binary or multiclass labels, got {kind} targets")
        if first:
            self.classes_ = found if classes is None else np.unique(np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(f"DNNClassifier needs at least 2 classes in y, got 1 class: {self.classes_[0]!r}")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes {classes!r} differ from the classes of the first partial_fit {self.classes_!r}")
        unseen = np.setdiff1d(found, self.classes_)
        if unseen.size:
            raise ValueError(f"y has labels {unseen.tolist()} that are not in classes_ {self.classes_.tolist()}")
        return _class_codes(y, self.classes_), 1 if len(self.classes_) == 2 else len(self.classes_)

    def _check_label_types(self, y):
        """Labels of one kind: all strings or all numbers (booleans count as numbers), none
        missing. NumPy cannot sort a mix, and would fail with "'<' not supported between
        instances of 'int' and 'str'"."""
        labels = np.asarray(y, dtype=object) if not isinstance(y, np.ndarray) or y.dtype.hasobject else None
        if labels is None or labels.ndim != 1:
            return
        kinds = {}
        for i, value in enumerate(labels.tolist()):
            if value is None or (isinstance(value, float) and value != value):
                raise ValueError(f"y has a missing label ({value!r}) at row {i}: drop or fill those rows first")
            kind = "str" if isinstance(value, (str, np.str_)) else (
                "number" if isinstance(value, (numbers.Number, np.bool_)) else type(value).__name__)
            kinds.setdefault(kind, (i, value))
        if len(kinds) > 1:
            examples = ", ".join(f"{value!r} ({kind}, row {i})" for kind, (i, value) in kinds.items())
            raise TypeError(f"y mixes label types: {examples}; labels must be all strings or all numbers (convert "
                            "them, e.g. y.astype(str))")

    def _held_out_per_class(self, target, n_val):
        # stratified: each class's share of the held-out rows follows its share of the data
        # (largest remainders), counted without a temporary the size of y
        codes = target  # the class codes (see _class_codes)
        n = codes.shape[0]
        counts = sum(np.bincount(codes[i:i + _LABEL_CHUNK], minlength=len(self.classes_))
                     for i in range(0, n, _LABEL_CHUNK))
        exact = n_val * counts / n
        held = np.floor(exact).astype(np.int64)
        extra = np.argsort(-(exact - held), kind="stable")[:n_val - int(held.sum())]
        held[extra] += 1
        return held.tolist(), codes

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train one epoch over (X, y), continuing from the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.
        classes : array-like, default None
            Every label that will ever appear; required on the first call, as in
            scikit-learn.
        sample_weight : array-like of shape (n_samples,), default None
            Non-negative weight of each row in the loss.

        Returns
        -------
        self
            The estimator.

        Raises
        ------
        ValueError
            If ``classes`` is missing on the first call, or a label is not in it.
        """
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._partial_fit(X, y, sample_weight, classes)

    def decision_function(self, X):
        """Compute the logits of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            1-D for two classes (positive: ``classes_[1]``), else one column per class.
        """
        z = self._forward(X, "decision_function")
        return z.ravel() if z.shape[1] == 1 else z

    def predict_proba(self, X):
        """Predict class probabilities for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Probabilities, columns in ``classes_`` order; each row sums to 1.
        """
        z = self._forward(X, "predict_proba").astype(np.float64)
        if z.shape[1] == 1:
            p = 0.5 * (1.0 + np.tanh(0.5 * z[:, 0]))  # the logistic function without overflow
            return np.column_stack([1.0 - p, p])
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Predict the logarithm of the class probabilities for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            ``log(predict_proba(X))``, columns in ``classes_`` order.
        """
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predict the most probable class of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        z = self._forward(X, "predict")
        idx = (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)
        return self.classes_[idx]

    def _loss_on(self, X, target, weight):
        z = self.model_.predict(X)
        if z.shape[1] == 1:  # two classes: the codes are the 0/1 targets
            target = target.reshape(-1, 1).astype(z.dtype)
            return float(ops.binary_cross_entropy_with_logits(z, target, sample_weight=weight).loss)
        return float(ops.softmax_cross_entropy_with_logits(z, target, sample_weight=weight).loss)
