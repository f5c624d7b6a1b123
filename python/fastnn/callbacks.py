"""Callbacks for ``DNNRegressor``/``DNNClassifier``: early stopping, learning-rate reduction on a
plateau, CSV and TensorBoard logs.

The estimators call three methods of every object in their ``callbacks`` list (any that
exists: the protocol is duck-typed, ``Callback`` only supplies no-op defaults):

- ``on_train_begin(estimator)``: at the start of each ``fit`` and of each ``partial_fit``
  call, after the network is built;
- ``on_epoch_end(estimator, epoch, logs)``: after every epoch. ``epoch`` is the
  estimator's cumulative epoch index (0-based, counting ``fit`` and ``partial_fit``
  together); ``logs`` holds the last value of every ``history_`` list: the scalars
  ``loss``, ``val_loss`` (NaN without validation), ``lr``, ``skipped``, ``time`` and, as a
  list with one value per hidden layer, ``zero_fraction``, ``dead_units``,
  ``grad_norm``, ``weight_norm`` and ``update_ratio``. Treat ``logs`` as read-only;
- ``on_train_end(estimator)``: when that ``fit``/``partial_fit`` call ends, also by an
  exception (``TrainingDivergedError``, an error in a callback): files get closed.

Setting ``estimator.stop_training_ = True`` in ``on_epoch_end`` ends training after that
epoch. A fresh run is recognised by ``estimator.n_iter_ == 0`` at ``on_train_begin``:
callbacks reset their state there and carry it across the calls of a ``partial_fit``
loop otherwise.

Callbacks are pickled and deep-copied with the estimator (``pickle``, ``sklearn.clone``):
open files and writers are dropped from the pickled state and reopened when needed.
"""
from __future__ import annotations

import csv
import io
import itertools
import math
import os
import sys

import numpy as np

from fastnn._checks import DECAY, FRACTION, NON_NEGATIVE, Options, ParameterChecked, check_bool, check_count
from fastnn._files import AtomicFile

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "LambdaCallback", "ReduceLROnPlateau", "TensorBoard"]

_MODES = ("min", "max")
_TB_SCALARS = ("loss", "val_loss", "lr", "skipped")
_TB_FILES = itertools.count()  # a distinct event file name per writer, even within one second


def _check_path(name, value):
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike path, got {type(value).__name__} {value!r}")
    path = os.fspath(value)
    if not path:
        raise ValueError(f"{name} must not be empty")
    return path


def _is_fresh(estimator):
    """True at the start of a run that trains from scratch (``fit``, or a first ``partial_fit``)."""
    return getattr(estimator, "n_iter_", 0) == 0


def _split_logs(logs):
    """``logs`` as (scalars, per-layer): {key: number} and {key: list of numbers}, in order."""
    scalars, layers = {}, {}
    for key, value in logs.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            layers[key] = list(value)
        else:
            scalars[key] = value
    return scalars, layers


class Callback:
    """Base class of the callbacks: every method does nothing; override the ones you need.

    Subclassing is optional (the estimators call whichever of the three methods an object
    has), but it documents intent and spares writing the no-ops.
    """

    def on_train_begin(self, estimator):
        """Called at the start of every ``fit`` and ``partial_fit`` call.

        Parameters
        ----------
        estimator : DNNRegressor or DNNClassifier
            The estimator, with ``model_``, ``history_`` and ``n_iter_`` (epochs trained
            before this call) already set.
        """

    def on_epoch_end(self, estimator, epoch, logs):
        """Called after every epoch.

        Parameters
        ----------
        estimator : DNNRegressor or DNNClassifier
            The estimator being trained; set ``estimator.stop_training_ = True`` to end
            training after this epoch.
        epoch : int
            The cumulative epoch index (0-based, across ``partial_fit`` calls).
        logs : dict
            The last value of every ``history_`` list (do not modify it).
        """

    def on_train_end(self, estimator):
        """Called when a ``fit`` or ``partial_fit`` call ends, normally or by an exception.

        Parameters
        ----------
        estimator : DNNRegressor or DNNClassifier
            The trained estimator.
        """


class LambdaCallback(Callback):
    """A callback from plain functions, for quick hooks.

    Parameters
    ----------
    on_train_begin : callable or None, default None
        ``f(estimator)``, called at the start of every ``fit`` and ``partial_fit``.
    on_epoch_end : callable or None, default None
        ``f(estimator, epoch, logs)``, called after every epoch.
    on_train_end : callable or None, default None
        ``f(estimator)``, called when training ends.

    Raises
    ------
    TypeError
        If a hook is neither callable nor None.

    Notes
    -----
    The callback pickles (with its estimator) only when its functions do: module-level
    functions do, lambdas and closures do not. ``sklearn.clone`` works with any.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import DNNRegressor
    >>> from fastnn.callbacks import LambdaCallback
    >>> losses = []
    >>> cb = LambdaCallback(on_epoch_end=lambda est, epoch, logs: losses.append(logs["loss"]))
    >>> X = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    >>> reg = DNNRegressor(hidden_units=(4,), epochs=3, callbacks=[cb], random_state=0).fit(X, X[:, 0])
    >>> len(losses)
    3
    """

    def __init__(self, on_train_begin=None, on_epoch_end=None, on_train_end=None):
        for name, fn in (("on_train_begin", on_train_begin), ("on_epoch_end", on_epoch_end),
                         ("on_train_end", on_train_end)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__} {fn!r}")
        self._begin, self._epoch_end, self._end = on_train_begin, on_epoch_end, on_train_end

    def on_train_begin(self, estimator):
        if self._begin is not None:
            self._begin(estimator)

    def on_epoch_end(self, estimator, epoch, logs):
        if self._epoch_end is not None:
            self._epoch_end(estimator, epoch, logs)

    def on_train_end(self, estimator):
        if self._end is not None:
            self._end(estimator)


def _check_monitor(name, value):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str (a key of the epoch logs), got {type(value).__name__}")
    return value


class _Monitor(Callback, ParameterChecked):
    """The one rule for "the monitored log improved", shared by EarlyStopping and
    ReduceLROnPlateau (and through them by the estimators' ``early_stopping`` and
    ``lr_patience``): in mode "min" an epoch improves when its value is below
    ``best * (1 - rel_delta) - min_delta`` (``best * (1 + rel_delta)`` for a negative best);
    in mode "max" above the mirror image. The first finite value always improves;
    NaN never does."""

    # rel_delta is the estimators' tol, patience their patience/lr_patience: one constraint each
    _parameter_checks = {"monitor": _check_monitor, "patience": check_count, "min_delta": NON_NEGATIVE,
                         "rel_delta": DECAY, "mode": Options(_MODES)}

    def _init_monitor(self, monitor, patience, min_delta, rel_delta, mode):
        self._set_checked(monitor=monitor, patience=patience, min_delta=min_delta, rel_delta=rel_delta, mode=mode)

    def _no_validation(self, epoch=None):
        at = "" if epoch is None else f" got val_loss=NaN at epoch {epoch}:"
        return (f"{type(self).__name__}(monitor='val_loss'){at} the estimator measures a validation loss only with "
                "early_stopping=True (it then holds out validation_fraction of the rows), and never in "
                f"partial_fit. Set early_stopping=True on the estimator, or use {type(self).__name__}(monitor='loss').")

    def _value(self, logs, epoch):
        name = type(self).__name__
        if self.monitor not in logs:
            scalars, _ = _split_logs(logs)
            raise ValueError(f"{name} monitor={self.monitor!r} is not in the epoch logs; choose one of {sorted(scalars)}")
        value = logs[self.monitor]
        if isinstance(value, (list, tuple, np.ndarray)):
            raise ValueError(f"{name} monitor={self.monitor!r} is a per-layer log (a list); monitor a scalar such as "
                             "'val_loss' or 'loss'")
        value = float(value)
        if self.monitor == "val_loss" and math.isnan(value):
            raise ValueError(self._no_validation(epoch))
        return value

    def _improved(self, value, best):
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        if self.mode == "min":
            return value < best * (1 - self.rel_delta if best >= 0 else 1 + self.rel_delta) - self.min_delta
        return value > best * (1 + self.rel_delta if best >= 0 else 1 - self.rel_delta) + self.min_delta


class EarlyStopping(_Monitor):
    """Stop training when a monitored log has stopped improving; keep the best weights.

    ``DNNRegressor(early_stopping=True, patience=p, tol=t)`` installs
    ``EarlyStopping("val_loss", patience=p, rel_delta=t)``: one rule for both.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A scalar key of the epoch logs: "val_loss", "loss", ... The estimators measure
        ``val_loss`` only with ``early_stopping=True`` (they then hold out
        ``validation_fraction`` of the rows), and never in ``partial_fit``; without
        validation monitor "loss".
    patience : int >= 1, default 10
        Epochs without improvement after which training stops.
    min_delta : float >= 0, default 0.0
        An epoch improves only when it beats the best value by more than this (absolute).
    rel_delta : float in [0, 1), default 0.0
        ... and by more than this share of the best value (relative; the estimators' ``tol``).
    mode : {"min", "max"}, default "min"
        Whether lower ("min", losses) or higher ("max") values are better.
    restore_best_weights : bool, default True
        At ``on_train_end``, put back the parameters and buffers (batch-norm running
        statistics) of the best epoch, when this callback stopped training in that call
        or the call trained from scratch (``fit``). In a ``partial_fit`` loop the weights
        are kept as they are until this callback asks to stop. Never when training
        ended by an exception: after ``TrainingDivergedError`` the model keeps the last
        finite weights, as the error says.

    Attributes
    ----------
    best_ : float or None, the best monitored value so far
    best_epoch_ : int or None, the (cumulative) epoch that reached it
    stopped_epoch_ : int or None, the epoch after which this callback stopped training
        (None: it has not)

    Notes
    -----
    State is reset when a run starts from scratch (``n_iter_ == 0``) and carried across
    ``partial_fit`` calls otherwise. ``partial_fit`` trains one epoch per call, so a
    stop only sets ``estimator.stop_training_``: loop ``while not
    est.stop_training_: est.partial_fit(X, y)``. With the estimator's own
    ``early_stopping=True`` as well, the estimator's restores its best weights first and
    this callback's restore (run after it) wins.
    """

    _parameter_checks = {**_Monitor._parameter_checks, "restore_best_weights": check_bool}

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, mode="min", restore_best_weights=True,
                 rel_delta=0.0):
        self._init_monitor(monitor, patience, min_delta, rel_delta, mode)
        self._set_checked(restore_best_weights=restore_best_weights)
        self._reset()

    def _reset(self):
        self.best_ = None
        self.best_epoch_ = None
        self.stopped_epoch_ = None
        self._wait = 0
        self._best_weights = None
        self._stopped_now = False
        self._fresh = False
        self._outer_exc_id = id(None)

    def on_train_begin(self, estimator):
        if self.monitor == "val_loss" and getattr(estimator, "early_stopping", True) is False:
            raise ValueError(self._no_validation())
        fresh = _is_fresh(estimator)
        if fresh:
            self._reset()
        self._fresh, self._stopped_now = fresh, False
        # the exception being handled around the fit call, if any: at on_train_end
        # another one means training itself raised (on_train_end runs in a finally)
        self._outer_exc_id = id(sys.exc_info()[1])

    def on_epoch_end(self, estimator, epoch, logs):
        value = self._value(logs, epoch)
        if self._improved(value, self.best_):
            self.best_, self.best_epoch_, self._wait = value, epoch, 0
            if self.restore_best_weights:
                model = estimator.model_
                self._best_weights = (model.params.copy(), model.buffers.copy())
            return
        self._wait += 1
        if self._wait >= self.patience:
            estimator.stop_training_ = True
            self.stopped_epoch_ = epoch
            self._stopped_now = True

    def on_train_end(self, estimator):
        raised = id(sys.exc_info()[1]) != self._outer_exc_id
        if raised or not self.restore_best_weights or self._best_weights is None:
            return
        if self._stopped_now or self._fresh:
            params, buffers = self._best_weights
            estimator.model_.params[...] = params
            estimator.model_.buffers[...] = buffers


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` (down to ``min_lr``) after ``patience``
    epochs without improvement of a monitored log.

    ``DNNRegressor(lr_patience=p, lr_factor=f, min_lr=m, tol=t)`` installs
    ``ReduceLROnPlateau(monitor, patience=p, factor=f, min_lr=m, rel_delta=t)``, monitoring
    ``val_loss`` with ``early_stopping=True`` and ``loss`` otherwise.

    Parameters
    ----------
    monitor : str, default "loss"
        A scalar key of the epoch logs ("val_loss" needs the estimator's validation).
    patience : int >= 1, default 10
        Epochs without improvement after which the rate is reduced.
    factor : float in (0, 1), default 0.5
        The rate is multiplied by this.
    min_lr : float >= 0, default 1e-6
        The rate never goes below this.
    min_delta : float >= 0, default 0.0
        An epoch improves only when it beats the best value by more than this (absolute).
    rel_delta : float in [0, 1), default 0.0
        ... and by more than this share of the best value (relative; the estimators' ``tol``).
    mode : {"min", "max"}, default "min"
        Whether lower or higher values are better.

    Attributes
    ----------
    best_ : float or None, the best monitored value since the last reduction's start
    reductions_ : int, how many times the learning rate was reduced

    Notes
    -----
    It sets ``estimator.optimizer_.schedule.lr`` (the base rate of the optimizer's
    schedule). State is reset when a run starts from scratch (``n_iter_ == 0``).
    """

    # factor is the estimators' lr_factor and StepDecay's factor; min_lr the estimators' min_lr
    _parameter_checks = {**_Monitor._parameter_checks, "factor": FRACTION, "min_lr": NON_NEGATIVE}

    def __init__(self, monitor="loss", patience=10, factor=0.5, min_lr=1e-6, min_delta=0.0, rel_delta=0.0,
                 mode="min"):
        self._init_monitor(monitor, patience, min_delta, rel_delta, mode)
        self._set_checked(factor=factor, min_lr=min_lr)
        self._reset()

    def _reset(self):
        self.best_ = None
        self.reductions_ = 0
        self._wait = 0

    def on_train_begin(self, estimator):
        if _is_fresh(estimator):
            self._reset()

    def on_epoch_end(self, estimator, epoch, logs):
        value = self._value(logs, epoch)
        if self._improved(value, self.best_):
            self.best_, self._wait = value, 0
            return
        self._wait += 1
        if self._wait >= self.patience:
            schedule = estimator.optimizer_.schedule
            schedule.lr = max(schedule.lr * self.factor, self.min_lr)
            self.reductions_ += 1
            self._wait = 0


class _FileCallback(Callback):
    """A callback holding an open resource (file, writer) from ``on_train_begin`` to
    ``on_train_end``; pickles without it. Subclasses implement ``_open`` and ``_close``."""

    _handle = None

    def _open(self, estimator, fresh):
        raise NotImplementedError

    def _close(self):
        raise NotImplementedError

    def on_train_begin(self, estimator):
        self._release()  # still open when a later callback's on_train_begin raised
        self._open(estimator, _is_fresh(estimator))

    def on_train_end(self, estimator):
        self._release()

    def _ensure_open(self, estimator):
        """Reopen (continuing) after unpickling, or when used without on_train_begin."""
        if self._handle is None:
            self._open(estimator, False)

    def _release(self):
        if self._handle is not None:
            try:
                self._close()
            finally:
                self._handle = None

    def __getstate__(self):
        state = dict(vars(self))
        state.pop("_handle", None)
        return state


class CSVLogger(_FileCallback):
    """Write one CSV row per epoch: the epoch, the scalar logs, the per-layer values.

    Columns: ``epoch`` (the cumulative index), then the scalar logs (``loss``,
    ``val_loss``, ``lr``, ``skipped``, ``time``), then every per-layer log flattened by
    hidden layer: ``zero_fraction_0, zero_fraction_1, ..., dead_units_0, ...``. Floats
    are written in full precision (``repr``), so the file reproduces ``history_``
    exactly; NaN is written ``nan``.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file. Its folder must exist.
    append : bool, default False
        False: a run from scratch (``fit``) truncates the file. True: rows are added to
        an existing file; its header must then be the same (else ``ValueError``), and is
        not written again. Either way the calls of a ``partial_fit`` loop continue the
        same file.
    separator : str, default ","
        The field delimiter, one character.

    Notes
    -----
    A run that starts the file afresh writes its rows to a temporary file next to
    ``path`` (flushed after every row) that replaces ``path`` atomically at
    ``on_train_end``, also when training raises: a crash or a kill mid-run leaves the
    previous log whole, never a torn mix. A run that continues the file (``append=True``,
    later ``partial_fit`` calls) appends and flushes row by row; the rows already there
    are never rewritten.
    """

    def __init__(self, path, append=False, separator=","):
        self.path = _check_path("path", path)
        self.append = check_bool("append", append)
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\r\n\"":
            raise ValueError(f"separator must be one character other than a newline or '\"', got {separator!r}")
        self.separator = separator
        self._started = False
        self._existing_header = None  # header already in the file: rows must match it
        self._writer = None
        self._atomic = None  # the new version of the file, while a fresh run writes it

    def _open(self, estimator, fresh):
        truncate = not self.append and (fresh or not self._started)
        self._existing_header = None if truncate else self._read_header()
        if truncate:  # a new version of the file, put in place at on_train_end
            self._atomic = AtomicFile(self.path)
            self._handle = io.TextIOWrapper(self._atomic.file, encoding="utf-8", newline="")
        else:
            self._atomic = None
            self._handle = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle, delimiter=self.separator, lineterminator="\n")
        self._started = True

    def _read_header(self):
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                return next(csv.reader(f, delimiter=self.separator), None)
        except FileNotFoundError:
            return None

    def _close(self):
        self._writer = None
        if self._atomic is None:
            self._handle.close()
            return
        atomic, self._atomic = self._atomic, None
        try:
            self._handle.flush()
            self._handle.detach()
        except BaseException:
            atomic.discard()
            raise
        atomic.commit()

    def on_epoch_end(self, estimator, epoch, logs):
        self._ensure_open(estimator)
        scalars, layers = _split_logs(logs)
        header = ["epoch", *scalars, *(f"{key}_{i}" for key, values in layers.items() for i in range(len(values)))]
        row = [epoch, *scalars.values(), *(v for values in layers.values() for v in values)]
        if self._existing_header is None:
            self._writer.writerow(header)
        elif self._existing_header != header:
            raise ValueError(f"CSVLogger: {self.path} has the columns {self._existing_header}, but this run logs "
                             f"{header}; write to another file, or use append=False to replace it")
        self._existing_header = header
        self._writer.writerow(row)
        self._handle.flush()

    def __getstate__(self):
        state = super().__getstate__()
        state["_writer"] = state["_atomic"] = None
        return state


class TensorBoard(_FileCallback):
    """Write the training curves and weight histograms for TensorBoard (``tensorboardX``).

    Per epoch (``global_step`` = the cumulative epoch index) the scalars ``loss``,
    ``val_loss`` (when finite), ``lr`` and ``skipped``, and per hidden layer ``i``
    (0 = next to the input) ``layer_{i}/zero_fraction``, ``layer_{i}/dead_units``,
    ``layer_{i}/grad_norm``, ``layer_{i}/weight_norm`` and ``layer_{i}/update_ratio``.
    With ``histograms=True`` also ``layer_{i}/weight``, ``layer_{i}/bias`` of every
    hidden Dense layer and ``output/weight``, ``output/bias`` of the output layer.
    Watch it with ``tensorboard --logdir <log_dir>``.

    Parameters
    ----------
    log_dir : str or os.PathLike
        The run's folder (created when missing). Every ``fit``/``partial_fit`` call
        writes a new event file there; TensorBoard reads them together as one run.
    histograms : bool, default True
        Also write weight and bias histograms every epoch (a little slower, larger files).

    Raises
    ------
    ImportError
        When ``tensorboardX`` is not installed: ``pip install 'fastnn[tensorboard]'``.

    Notes
    -----
    The writer is opened at ``on_train_begin``, flushed after every epoch and closed at
    ``on_train_end``. Scalars are stored in float32. A second ``fit`` into the same
    ``log_dir`` restarts at step 0; give each run its own folder to compare runs.
    """

    def __init__(self, log_dir, histograms=True):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise ImportError("TensorBoard needs the optional extra: pip install 'fastnn[tensorboard]'") from exc
        self._summary_writer = SummaryWriter
        self.log_dir = _check_path("log_dir", log_dir)
        self.histograms = check_bool("histograms", histograms)

    def _open(self, estimator, fresh):
        # tensorboardX names event files by the second and opens them "wb": a unique
        # suffix keeps two calls within one second from overwriting each other
        suffix = f".{os.getpid()}.{next(_TB_FILES)}"
        self._handle = self._summary_writer(logdir=self.log_dir, filename_suffix=suffix)

    def _close(self):
        self._handle.close()

    def on_epoch_end(self, estimator, epoch, logs):
        self._ensure_open(estimator)
        writer = self._handle
        scalars, layers = _split_logs(logs)
        for key in _TB_SCALARS:
            if key in scalars and math.isfinite(scalars[key]):
                writer.add_scalar(key, float(scalars[key]), epoch)
        for key, values in layers.items():
            for i, value in enumerate(values):
                writer.add_scalar(f"layer_{i}/{key}", float(value), epoch)
        if self.histograms:
            for tag, values in self._weights(estimator):
                writer.add_histogram(tag, values, epoch)
        writer.flush()

    @staticmethod
    def _weights(estimator):
        """(tag, array) of the weights and biases of the hidden Dense layers and the output."""
        params = estimator.model_.named_params()
        hidden = list(getattr(estimator, "_hidden_index_", []))
        dense = sorted({int(key.split(".")[0]) for key in params if key.endswith(".weight")})
        names = {index: f"layer_{i}" for i, index in enumerate(hidden)}
        out = [index for index in dense if index not in names]
        if out:
            names[out[-1]] = "output"
        for index, name in sorted(names.items()):
            for kind in ("weight", "bias"):
                key = f"{index}.{kind}"
                if key in params:
                    yield f"{name}/{kind}", np.asarray(params[key])
