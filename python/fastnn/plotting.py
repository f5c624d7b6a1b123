"""``plot_history``: the training curves of an estimator in one matplotlib figure.

matplotlib is an optional extra (``pip install 'fastnn[plot]'``), imported on call. The
figure is a plain ``matplotlib.figure.Figure`` on the non-interactive Agg canvas, built
without pyplot: no global state (backend, current figure) changes, and nothing leaks
when many figures are made. In Jupyter, the returned figure displays itself.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

__all__ = ["plot_history"]

_LAYER_KEYS = ("zero_fraction", "grad_norm")


def _as_history(history):
    """The ``history_`` dict of an estimator, or ``history`` itself when it is a mapping."""
    if isinstance(history, Mapping):
        return history
    if hasattr(type(history), "fit"):
        if not hasattr(history, "history_"):
            raise ValueError(f"history: this {type(history).__name__} is not fitted yet (it has no history_); "
                             "call fit first")
        return history.history_
    raise TypeError(f"history must be an estimator's history_ dict or a fitted estimator, "
                    f"got {type(history).__name__}")


def _curves(history):
    """Validate ``history``: (loss, val_loss or None, {key: (epochs, n_hidden) array})."""
    if "loss" not in history:
        raise ValueError(f"history must hold a 'loss' list (an estimator's history_), got the keys {sorted(history)}")
    epochs = len(history["loss"]) if hasattr(history["loss"], "__len__") else -1
    if epochs < 1:
        raise ValueError(f"history['loss'] must be a non-empty list with one number per epoch, "
                         f"got {history['loss']!r}")
    for key, values in history.items():
        if not hasattr(values, "__len__") or len(values) != epochs:
            got = len(values) if hasattr(values, "__len__") else type(values).__name__
            raise ValueError(f"history[{key!r}] must have one entry per epoch like history['loss'] ({epochs}), "
                             f"got {got}")

    def column(key, ndim, what):
        try:
            values = np.asarray(history[key], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"history[{key!r}] must hold {what}: {exc}") from None
        if values.ndim != ndim:
            raise ValueError(f"history[{key!r}] must hold {what}, got an array of shape {values.shape}")
        return values

    loss = column("loss", 1, "one number per epoch")
    val = column("val_loss", 1, "one number per epoch") if "val_loss" in history else None
    layers = {key: column(key, 2, "per epoch a list with one number per hidden layer, the same count every epoch")
              for key in _LAYER_KEYS if key in history}
    return loss, (val if val is not None and np.isfinite(val).any() else None), layers


def _log_if_positive(ax, arrays):
    """Log y-scale when every finite value is positive (linear otherwise)."""
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.empty(0)
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")


def _layer_panel(ax, values, ylabel, title):
    epochs = np.arange(values.shape[0])
    for i in range(values.shape[1]):
        ax.plot(epochs, values[:, i], label=f"layer {i}")
    if values.shape[1]:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no hidden layers", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def plot_history(history, path=None, *, title=None):
    """Plot loss, per-layer zero fraction and per-layer gradient norm per epoch.

    Three panels side by side: (1) ``loss`` and, when recorded, ``val_loss`` (log
    y-scale when all values are positive); (2) per hidden layer, the share of zero
    activations (dying ReLU shows as a curve climbing to 1); (3) per hidden layer, the
    mean gradient norm (log scale when all positive: vanishing gradients shrink from the
    output side, exploding ones grow). Epochs are numbered from 0, as in the callbacks.

    Parameters
    ----------
    history : dict or fitted DNNRegressor/DNNClassifier
        An estimator's ``history_`` (``"loss"`` required; ``"val_loss"``,
        ``"zero_fraction"`` and ``"grad_norm"`` used when present), or the estimator.
    path : str, os.PathLike or None, default None
        Where to save the figure; the extension picks the format (``.png``, ``.svg``,
        ``.pdf``, ...). None: do not save.
    title : str or None, default None
        A title over the three panels.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with three axes (``fig.axes``).

    Raises
    ------
    ImportError
        When matplotlib is not installed: ``pip install 'fastnn[plot]'``.
    TypeError
        When ``history`` is neither a dict nor an estimator, or ``path``/``title`` have
        the wrong type.
    ValueError
        When ``history`` has no ``"loss"``, no epochs, or lists of inconsistent lengths,
        or the estimator is not fitted.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise ImportError("plot_history needs the optional extra: pip install 'fastnn[plot]'") from exc
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str, os.PathLike or None, got {type(path).__name__}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    loss, val, layers = _curves(_as_history(history))

    fig = Figure(figsize=(13, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_zero, ax_grad = fig.subplots(1, 3)
    epochs = np.arange(loss.size)
    ax_loss.plot(epochs, loss, label="loss")
    if val is not None:
        ax_loss.plot(epochs, val, label="val_loss")
    _log_if_positive(ax_loss, [loss] if val is None else [loss, val])
    ax_loss.legend(fontsize="small")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss")

    empty = np.empty((loss.size, 0))
    _layer_panel(ax_zero, layers.get("zero_fraction", empty), "share of zero activations", "zero fraction")
    ax_zero.set_ylim(-0.02, 1.02)
    grad = layers.get("grad_norm", empty)
    _layer_panel(ax_grad, grad, "mean gradient norm", "gradient norm")
    _log_if_positive(ax_grad, [grad.ravel()])
    for ax in fig.axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title is not None:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path)
    return fig
