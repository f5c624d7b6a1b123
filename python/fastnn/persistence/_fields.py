"""Turning fastnn objects into JSON configuration and back, for every saver in this
package: an object's constructor arguments read from its attributes, and a class rebuilt
from arguments read from a file, where every name, type and value is checked and each
refusal is a ``ModelFormatError`` naming where in the file it is."""
from __future__ import annotations

import importlib
import inspect

import numpy as np

from fastnn._errors import ModelFormatError

_DTYPES = ("float32", "float64")  # what a model and its optimizer state may hold


def _allowed(obj, allowed: dict, what: str):
    """The class of ``obj`` if it is exactly one of ``allowed`` (a subclass may behave
    differently, and would be rebuilt as its base)."""
    cls = type(obj)
    if allowed.get(cls.__name__) is not cls:
        raise TypeError(f"{what} is a {cls.__module__}.{cls.__qualname__}: only {sorted(allowed)} can be saved")
    return cls


def _parameters(cls) -> dict:
    """The constructor arguments that fully describe an instance of ``cls``: its
    positional-or-keyword parameters (keyword-only ones are aliases, e.g. ``keep_prob``)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items() if k != "self" and p.kind is p.POSITIONAL_OR_KEYWORD}


def _type_problem(value, default) -> str | None:
    """What is wrong with ``value`` for a parameter whose default is ``default``: bools,
    strings and numbers keep their type; a required argument is a number or a string (its
    constructor checks which). Never a list or an object: nothing nested reaches a class."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"must be a bool, got {value!r}"
    if isinstance(default, str):
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return f"must be a number or a string, got {value!r}"
    if isinstance(value, str) and isinstance(default, (int, float)):
        return f"must be a number, got {value!r}"
    return None


def _arguments(obj, where: str, skip=()) -> dict:
    """The constructor arguments of ``obj``, read back from its attributes of the same names."""
    args = {}
    for name, param in _parameters(type(obj)).items():
        if name in skip:
            continue
        value = getattr(obj, name)
        if isinstance(value, np.generic):
            value = value.item()
        problem = _type_problem(value, param.default)
        if problem:
            raise TypeError(f"{where}.{name} {problem}: it cannot be saved")
        args[name] = value
    return args


def _construct(cls, args, where: str, **given):
    """``cls(**args, **given)`` for ``args`` read from a file: exactly the expected names,
    of the expected types; the constructor's own validation errors become format errors."""
    params = _parameters(cls)
    if not isinstance(args, dict):
        raise ModelFormatError(f"{where} must be a JSON object, got {args!r}")
    expected = set(params) - set(given)
    if set(args) != expected:
        raise ModelFormatError(f"{where} has arguments {sorted(args)}, {cls.__name__} takes {sorted(expected)}")
    for name, value in args.items():
        problem = _type_problem(value, params[name].default)
        if problem:
            raise ModelFormatError(f"{where}.{name} {problem}")
    try:
        return cls(**args, **given)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{where}: {exc}") from None


def _fields(config, keys: tuple, where: str) -> list:
    """The values of exactly ``keys`` in the JSON object ``config``."""
    if not isinstance(config, dict):
        raise ModelFormatError(f"{where} must be a JSON object, got {type(config).__name__}")
    if set(config) != set(keys):
        raise ModelFormatError(f"{where} has keys {sorted(config)}, expected {sorted(keys)}")
    return [config[k] for k in keys]


def _count(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ModelFormatError(f"{where} must be a non-negative int, got {value!r}")
    return value


def _lookup(name, allowed: dict, what: str, where: str):
    cls = allowed.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFormatError(f"{where}: unknown {what} {name!r} (known: {', '.join(sorted(allowed))})")
    return cls


def _prefixed(prefix: str, arrays: dict) -> dict:
    return {prefix + name: arr for name, arr in arrays.items()}


def _unprefixed(prefix: str, arrays: dict) -> dict:
    return {name[len(prefix):]: arr for name, arr in arrays.items() if name.startswith(prefix)}


def _classes(module: str, names: tuple) -> dict:
    """The classes ``names`` of ``module``, imported at call time: preprocessing and the
    estimators import scikit-learn (about a second), which a ``Sequential`` does not need."""
    mod = importlib.import_module(module)
    return {name: getattr(mod, name) for name in names}
