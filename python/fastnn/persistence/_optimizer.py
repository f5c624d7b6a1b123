"""A ``fastnn.optim`` optimizer (its class, hyperparameters, learning-rate schedule,
update count and state buffers) as (JSON config, arrays), and back."""
from __future__ import annotations

import numpy as np

from fastnn import optim
from fastnn._checks import _describe
from fastnn._errors import ModelFormatError
from fastnn.persistence._fields import _DTYPES, _allowed, _arguments, _construct, _count, _fields, _lookup

_OPTIMIZERS = {cls.__name__: cls for cls in (optim.SGD, optim.Adagrad, optim.Adam, optim.AdamW, optim.RMSProp)}
_SCHEDULES = {cls.__name__: cls for cls in (optim.Constant, optim.ExponentialDecay, optim.StepDecay,
                                             optim.CosineDecay)}


def optimizer_state(opt) -> tuple[dict, dict]:
    """Describe a ``fastnn.optim`` optimizer completely.

    Parameters
    ----------
    opt : fastnn.optim.Optimizer
        The optimizer.

    Returns
    -------
    config : dict
        JSON: class, hyperparameters, learning rate (a schedule's ``config()``) and
        update count.
    arrays : dict of str to ndarray
        Copies of its state.
    """
    cls = _allowed(opt, _OPTIMIZERS, "optimizer")
    _allowed(opt.schedule, _SCHEDULES, "the optimizer's learning-rate schedule")
    config = {"class": cls.__name__, "lr": opt.schedule.config(), "args": _arguments(opt, "optimizer", skip=("lr",)),
              "iterations": int(opt.iterations)}
    return config, {name: arr.copy() for name, arr in opt.state.items()}


def optimizer_from_state(config, arrays) -> optim.Optimizer:
    """Build the optimizer that ``optimizer_state`` described.

    Parameters
    ----------
    config : dict
        The JSON description.
    arrays : dict of str to ndarray
        Its state.

    Returns
    -------
    fastnn.optim.Optimizer
        An optimizer that continues bitwise where the original stopped.

    Raises
    ------
    ModelFormatError
        If anything in the description is inconsistent.
    """
    name, lr, args, iterations = _fields(config, ("class", "lr", "args", "iterations"), "optimizer")
    cls = _lookup(name, _OPTIMIZERS, "optimizer", "optimizer")
    if not isinstance(lr, dict):
        raise ModelFormatError(f"optimizer.lr must be a JSON object (a schedule), got {lr!r}")
    lr = dict(lr)
    kind = _lookup(lr.pop("kind", None), _SCHEDULES, "schedule", "optimizer.lr")
    opt = _construct(cls, args, "optimizer.args", lr=_construct(kind, lr, "optimizer.lr"))
    if not isinstance(arrays, dict):
        raise ModelFormatError(f"optimizer arrays must be a dict, got {type(arrays).__name__}")
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray) or value.dtype.name not in _DTYPES:
            raise ModelFormatError(f"optimizer state {key!r} must be a float32 or float64 array, got "
                                   f"{_describe(value)}")
    if len({v.dtype for v in arrays.values()}) > 1:
        raise ModelFormatError("optimizer state arrays mix float32 and float64")
    if iterations and opt._state_names and not arrays:  # an update has run: its state must be there
        raise ModelFormatError(f"optimizer state {list(opt._state_names)} is missing after {iterations} updates")
    try:
        opt.load_state_dict({"class": cls.__name__, "iterations": _count(iterations, "optimizer.iterations"),
                             "state": arrays})
    except ValueError as exc:
        raise ModelFormatError(f"optimizer: {exc}") from None
    return opt
