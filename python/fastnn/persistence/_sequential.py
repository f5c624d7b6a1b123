"""A ``fastnn.nn.Sequential`` (its layers, flat parameters and buffers, dropout counter)
as (JSON config, arrays) and back, and the model files of ``save_sequential``, which may
hold the model's optimizer too."""
from __future__ import annotations

import math

import numpy as np

from fastnn import nn, optim
from fastnn._checks import _describe
from fastnn._errors import ModelFormatError
from fastnn.persistence._container import _as_format_errors, read_model, write_model
from fastnn.persistence._fields import (
    _DTYPES,
    _allowed,
    _arguments,
    _construct,
    _count,
    _fields,
    _lookup,
    _prefixed,
    _unprefixed,
)
from fastnn.persistence._optimizer import optimizer_from_state, optimizer_state

_LAYERS = {cls.__name__: cls for cls in (nn.Dense, nn.Activation, nn.BatchNorm, nn.Dropout)}


def sequential_state(model) -> tuple[dict, dict]:
    """Describe a ``fastnn.nn.Sequential`` completely.

    Gradients are not state: every backward pass overwrites them.

    Parameters
    ----------
    model : fastnn.nn.Sequential
        The model.

    Returns
    -------
    config : dict
        JSON: the layers (type and constructor arguments), ``seed``, ``dtype`` and
        ``step`` (the dropout counter).
    arrays : dict of str to ndarray
        Copies of the flat ``params`` and ``buffers``.
    """
    _allowed(model, {"Sequential": nn.Sequential}, "model")
    layers = [{"type": _allowed(layer, _LAYERS, f"model.layers[{i}]").__name__,
               "args": _arguments(layer, f"model.layers[{i}]")}
              for i, layer in enumerate(model.layers)]
    config = {"layers": layers, "seed": int(model.seed), "dtype": model.dtype.name, "step": int(model.step)}
    if nn._declared_width(model.layers) is None:  # width-free layers only: the width they learned (or null)
        config["input_dim"] = model.in_features
    return config, {"params": model.params.copy(), "buffers": model.buffers.copy()}


def sequential_from_state(config, arrays) -> nn.Sequential:
    """Build the ``Sequential`` that ``sequential_state`` described.

    Parameters
    ----------
    config : dict
        The JSON description.
    arrays : dict of str to ndarray
        The parameters and buffers.

    Returns
    -------
    fastnn.nn.Sequential
        A model that predicts and trains on bitwise as the original would.

    Raises
    ------
    ModelFormatError
        If anything in the description is inconsistent.
    """
    if isinstance(config, dict) and "input_dim" in config:  # a model of width-free layers only
        config = dict(config)
        input_dim = config.pop("input_dim")
        input_dim = None if input_dim is None else _count(input_dim, "model.input_dim")
    else:
        input_dim = None
    layers, seed, dtype, step = _fields(config, ("layers", "seed", "dtype", "step"), "model")
    if not isinstance(layers, list) or not layers:
        raise ModelFormatError(f"model.layers must be a non-empty list, got {layers!r}")
    built = []
    for i, spec in enumerate(layers):
        where = f"model.layers[{i}]"
        kind, args = _fields(spec, ("type", "args"), where)
        built.append(_construct(_lookup(kind, _LAYERS, "layer type", where), args, where))
    if dtype not in _DTYPES:
        raise ModelFormatError(f"model.dtype must be one of {_DTYPES}, got {dtype!r}")
    seed, step = _count(seed, "model.seed"), _count(step, "model.step")
    params, buffers = _fields(arrays, ("params", "buffers"), "model arrays")
    # sizes first: forged layer widths must not make us allocate more than the file holds
    for name, value, specs in (("params", params, "param_specs"), ("buffers", buffers, "buffer_specs")):
        size = sum(math.prod(s.shape) for layer in built for s in getattr(layer, specs)())
        if not isinstance(value, np.ndarray) or value.size != size:
            raise ModelFormatError(f"model array {name!r} must hold {size} values for these layers, "
                                   f"got {_describe(value)}")
    try:
        model = nn.Sequential(built, seed=seed, dtype=np.dtype(dtype), input_dim=input_dim or None)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"model: {exc}") from None
    for name, value, into in (("params", params, model.params), ("buffers", buffers, model.buffers)):
        if not isinstance(value, np.ndarray) or value.dtype != into.dtype or value.shape != into.shape:
            raise ModelFormatError(f"model array {name!r} must be {into.dtype} of shape {into.shape} for these "
                                   f"layers, got {_describe(value)}")
        into[...] = value
    model.step = step
    return model


def _state_mismatch(opt, model) -> str | None:
    """Why ``opt``'s state cannot belong to ``model`` (None when it can)."""
    for name, arr in opt.state.items():
        if arr.shape != model.params.shape or arr.dtype != model.dtype:
            return (f"state {name!r} is {arr.dtype} of shape {arr.shape}, but the model's params are "
                    f"{model.dtype} of shape {model.params.shape}")
    return None


def save_sequential(model, path, optimizer=None) -> None:
    """Save a ``Sequential`` (and optionally its optimizer) to ``path``, atomically.

    ``load(path)`` gives the model back; ``load_sequential(path)`` the pair.

    Parameters
    ----------
    model : fastnn.nn.Sequential
        The model.
    path : str or os.PathLike
        Where to write.
    optimizer : fastnn.optim.Optimizer, optional
        Its optimizer, saved too so that training can resume.

    Raises
    ------
    ValueError
        If the optimizer's state does not belong to this model.
    """
    config, arrays = sequential_state(model)
    header = {"class": "Sequential", "model": config, "optimizer": None}
    files = _prefixed("model.", arrays)
    if optimizer is not None:
        header["optimizer"], opt_arrays = optimizer_state(optimizer)
        problem = _state_mismatch(optimizer, model)
        if problem:
            raise ValueError(f"optimizer does not belong to this model: {problem}")
        files.update(_prefixed("optimizer.", opt_arrays))
    write_model(path, header, files)


def _sequential_file(header: dict, arrays: dict):
    if header.get("class") != "Sequential":
        raise ModelFormatError(f"it holds a {header.get('class')!r}, not a Sequential "
                               "(fastnn.persistence.load reads any model)")
    model = sequential_from_state(header.get("model"), _unprefixed("model.", arrays))
    opt_config = header.get("optimizer")
    if opt_config is None:
        return model, None
    opt = optimizer_from_state(opt_config, _unprefixed("optimizer.", arrays))
    problem = _state_mismatch(opt, model)
    if problem:
        raise ModelFormatError(f"the optimizer does not fit the model: {problem}")
    return model, opt


def load_sequential(path) -> tuple[nn.Sequential, optim.Optimizer | None]:
    """Load a model and its optimizer from a file of ``save_sequential``.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    model : fastnn.nn.Sequential
        The model.
    optimizer : fastnn.optim.Optimizer or None
        Its optimizer, None if it was not saved.

    Raises
    ------
    ModelFormatError
        If the file is not a saved ``Sequential``.
    """
    header, arrays = read_model(path)
    with _as_format_errors(path, "malformed model"):
        return _sequential_file(header, arrays)
