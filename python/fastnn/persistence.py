"""Safe model files: a zip of ``.npy`` arrays (the ``np.savez`` layout, uncompressed) with a
JSON header. Loading never unpickles and never runs code named by the file; every way a
file can be bad (foreign, truncated, corrupted, tampered, from a newer fastnn) is a
``ModelFormatError`` naming the path. Saving is atomic: a failed or interrupted save
leaves the old file as it was.

A pipeline's scikit-learn steps that are not fastnn's (``ColumnTransformer``,
``OneHotEncoder``, ...) are stored through skops.io, with an explicit list of trusted
types, as one uint8 entry each (``fastnn._skops_steps``); everything fastnn's own stays in
this format.

``write_model``/``read_model`` are the container; ``sequential_state``/
``optimizer_state``/``scaler_state`` and their ``*_from_state`` inverses turn fastnn
objects into (JSON config, arrays) and back, for any saver (``save_sequential`` and
``save_pipeline`` here; estimators register their own loaders with ``register_loader``,
and ``load`` dispatches on the header's ``"class"``).
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import math
import os
import re
import tempfile
import zipfile
from typing import Any, Callable

import numpy as np

from fastnn import nn, optim
from fastnn._checks import _describe
from fastnn._errors import ModelFormatError
from fastnn._files import atomic_write as _atomic_write

__all__ = [
    "FORMAT_VERSION", "MAGIC", "ModelFormatError", "load", "save", "load_pipeline", "load_sequential",
    "optimizer_from_state", "optimizer_state", "read_model", "register_loader", "save_pipeline",
    "save_sequential", "scaler_from_state", "scaler_state", "sequential_from_state", "sequential_state",
    "trusted_skops_types", "write_model",
]

FORMAT_VERSION = 1
MAGIC = "fastnn-model"

_HEADER = "__header__"
_RESERVED = ("magic", "format_version", "fastnn_version", "arrays")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_KINDS = "biufcSU"  # numbers, bools, fixed-width strings: what .npy stores without pickle
_MAX_HEADER_BYTES = 16 << 20  # a header is configuration; a larger one is not a fastnn file
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # a fixed timestamp: the same model gives the same bytes


def _fastnn_version() -> str:
    import fastnn  # at call time: the package has finished importing (no import cycle)
    return fastnn.__version__


# ----------------------------------------------------------------------------- writing


def write_model(path, header: dict, arrays: dict) -> None:
    """Write ``arrays`` and a JSON ``header`` to ``path`` (str or os.PathLike), atomically.

    The file is a zip of ``.npy`` entries (no ``.npz`` suffix is added) with the header as
    the uint8 entry ``__header__``; ``magic``, ``format_version``, ``fastnn_version`` and
    ``arrays`` (the sorted entry names) are added to it. The data goes to a temporary file
    in the same directory, is flushed to disk and renamed over ``path``: on any error or
    interrupt the old file stays intact and the temporary file is removed. A replaced
    file keeps its permission bits; a new one gets ``0o666 & ~umask``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    header : dict
        JSON-serializable (str keys, finite numbers).
    arrays : dict of str to ndarray
        Arrays of numbers, bools or fixed-width strings; names use letters, digits,
        ``_ . -`` and do not start with ``__``.

    Raises
    ------
    TypeError
        If the header is not JSON-serializable or an array has an unsupported dtype.
    ValueError
        If an array name is not allowed.
    OSError
        If the file cannot be written (the old one, if any, stays intact).
    """
    if not isinstance(header, dict):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    taken = [k for k in _RESERVED if k in header]
    if taken:
        raise ValueError(f"header keys {taken} are reserved: write_model sets them")
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict of name -> array, got {type(arrays).__name__}")
    entries = {}
    for name, value in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"array names must be strings, got {type(name).__name__} {name!r}")
        if not _NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"array name {name!r} must be letters, digits, '_', '.', '-' and not start with '__'")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"arrays[{name!r}] has dtype {arr.dtype}: object arrays would need pickle, "
                            "which fastnn model files never hold")
        if arr.dtype.kind not in _KINDS or arr.dtype.itemsize == 0:
            raise TypeError(f"arrays[{name!r}] has dtype {arr.dtype}: only numbers, bools and fixed-width "
                            "strings can be saved")
        entries[name] = arr
    full = {"magic": MAGIC, "format_version": FORMAT_VERSION, "fastnn_version": _fastnn_version(), **header,
            "arrays": sorted(entries)}
    try:
        text = json.dumps(full, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"header must be JSON-serializable (str keys, finite numbers): {exc}") from None
    entries = {_HEADER: np.frombuffer(text.encode("utf-8"), np.uint8), **entries}
    _atomic_write(path, lambda f: _write_archive(f, entries))


def _write_archive(f, entries: dict) -> None:
    # what np.savez does, minus its keyword arguments (an array named "file" would clash)
    # and with allow_pickle=False as a last guard
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in entries.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


# ----------------------------------------------------------------------------- reading


@contextlib.contextmanager
def _as_format_errors(path, what: str):
    """Inside, every exception becomes a ``ModelFormatError`` naming ``path``: the input is
    untrusted bytes, and zipfile, zlib, numpy and json each fail in their own types."""
    try:
        yield
    except ModelFormatError as exc:  # the same type (UntrustedTypeError stays one), the path added
        exc.args = (f"cannot load {os.fspath(path)!r}: {exc}",)
        raise exc from None
    except Exception as exc:
        raise ModelFormatError(f"cannot load {os.fspath(path)!r}: {what} ({type(exc).__name__}: {exc})") from exc


def read_model(path) -> tuple[dict, dict]:
    """Read a file written by ``write_model``, validated.

    Every array is read into memory (nothing stays tied to the file).

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    header : dict
        The JSON header.
    arrays : dict of str to ndarray
        The arrays, by name.

    Raises
    ------
    FileNotFoundError
        If the file does not exist (other errors opening it pass through as OSError).
    ModelFormatError
        If the file is not an intact fastnn model of a format this fastnn reads.
    """
    with open(path, "rb") as f, _as_format_errors(path, "truncated or corrupted file"):
        return _read_archive(f)


def _read_archive(f) -> tuple[dict, dict]:
    head = f.read(8)
    f.seek(0)
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ModelFormatError(_foreign(head))
    with zipfile.ZipFile(f) as zf:
        members = {}
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else None
            if name is None or name in members:
                raise ModelFormatError(f"not a fastnn model: entry {info.filename!r} is not one .npy array")
            # fastnn writes stored (uncompressed) entries only. A compressed one could declare
            # any inflated size, and reading it would allocate that much before the size checks.
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise ModelFormatError(f"entry {info.filename!r} is compressed (zip method {info.compress_type}, "
                                       f"{info.compress_size} -> {info.file_size} bytes); fastnn model files "
                                       "store their arrays uncompressed")
            members[name] = info
        if _HEADER not in members:
            raise ModelFormatError(f"not a fastnn model: no {_HEADER} entry (a plain np.savez archive?)")
        info = members.pop(_HEADER)
        if info.file_size > _MAX_HEADER_BYTES:
            raise ModelFormatError(f"the header entry is {info.file_size} bytes, more than a model header holds")
        header = _parse_header(_read_entry(zf, info, _HEADER))
        listed = header["arrays"]
        missing = sorted(set(listed) - set(members))
        if missing:
            raise ModelFormatError(f"entries {missing} named by the header are missing")
        extra = sorted(set(members) - set(listed))
        if extra:
            raise ModelFormatError(f"entries {extra} are not named by the header")
        return header, {name: _read_entry(zf, members[name], name) for name in listed}


def _foreign(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head.startswith(b"\x93NUMPY"):
        return "not a fastnn model: a single .npy array (np.save), not a model archive"
    if head[:1] == b"\x80":
        return "not a fastnn model: it looks like a Python pickle (fastnn never unpickles)"
    return f"not a fastnn model: not a zip archive (it starts with {head!r})"


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    """One .npy entry, parsed by hand: the dtype is checked before any data is read (no
    pickle path at all), and the declared size against the entry's, so a forged shape
    cannot make us allocate more than the file holds. Reading to the end checks the CRC."""
    fmt = np.lib.format
    with zf.open(info) as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ModelFormatError(f"entry {name!r} is in .npy format {version}, which fastnn does not write")
        if dtype.hasobject or dtype.kind not in _KINDS or dtype.itemsize == 0:
            raise ModelFormatError(f"entry {name!r} has dtype {dtype}: fastnn model files hold numbers only "
                                   "(object arrays would need unpickling)")
        nbytes = math.prod(shape) * dtype.itemsize
        if fh.tell() + nbytes != info.file_size:
            raise ModelFormatError(f"entry {name!r} declares {dtype} of shape {shape} ({nbytes} bytes) but holds "
                                   f"{info.file_size - fh.tell()} bytes of data")
        data = fh.read(nbytes)
        if len(data) != nbytes or fh.read(1):
            raise ModelFormatError(f"entry {name!r} does not hold the {nbytes} bytes its header declares")
    arr = np.frombuffer(data, dtype).copy()  # a writeable array of its own
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _parse_header(raw: np.ndarray) -> dict:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFormatError(f"the {_HEADER} entry is {_describe(raw)}, not a byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelFormatError(f"the header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFormatError(f"the header is a JSON {type(header).__name__}, not an object")
    if header.get("magic") != MAGIC:
        raise ModelFormatError(f"not a fastnn model (header magic {header.get('magic')!r}, expected {MAGIC!r})")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFormatError(f"format_version must be an int, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(f"written by fastnn {header.get('fastnn_version', '?')} in model format {version}; "
                               f"this fastnn {_fastnn_version()} reads format <= {FORMAT_VERSION}: upgrade fastnn")
    if version < 1:
        raise ModelFormatError(f"format_version {version} is not a fastnn model format (they start at 1)")
    listed = header.get("arrays")
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed) or len(set(listed)) != len(listed):
        raise ModelFormatError(f"header 'arrays' must be a list of distinct names, got {listed!r}")
    return header


# ----------------------------------------------------------------------------- fastnn objects

_LAYERS = {cls.__name__: cls for cls in (nn.Dense, nn.Activation, nn.BatchNorm, nn.Dropout)}
_OPTIMIZERS = {cls.__name__: cls for cls in (optim.SGD, optim.Adagrad, optim.Adam, optim.AdamW, optim.RMSProp)}
_SCHEDULES = {cls.__name__: cls for cls in (optim.Constant, optim.ExponentialDecay, optim.StepDecay,
                                             optim.CosineDecay)}
_DTYPES = ("float32", "float64")


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


def _state_mismatch(opt, model) -> str | None:
    """Why ``opt``'s state cannot belong to ``model`` (None when it can)."""
    for name, arr in opt.state.items():
        if arr.shape != model.params.shape or arr.dtype != model.dtype:
            return (f"state {name!r} is {arr.dtype} of shape {arr.shape}, but the model's params are "
                    f"{model.dtype} of shape {model.params.shape}")
    return None


def _prefixed(prefix: str, arrays: dict) -> dict:
    return {prefix + name: arr for name, arr in arrays.items()}


def _unprefixed(prefix: str, arrays: dict) -> dict:
    return {name[len(prefix):]: arr for name, arr in arrays.items() if name.startswith(prefix)}


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


# ----------------------------------------------------------------------------- pipelines

_SCALERS = ("StandardScaler", "MinMaxScaler", "LogScaler", "Clipper", "RobustScaler")
_ESTIMATORS = ("DNNRegressor", "DNNClassifier")
# scaler state that is not saved: the quantile scalers' copy of every row they were fitted
# on (the training data itself, as large as the data set); see scaler_state
_UNSAVED = ("_rows",)
_NAMES_ATTR = "feature_names_in_"


def _classes(module: str, names: tuple) -> dict:
    # at call time: preprocessing and the estimators import scikit-learn (about a second)
    mod = importlib.import_module(module)
    return {name: getattr(mod, name) for name in names}


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


def _estimator_state(est) -> tuple[dict, dict]:
    """The (header, arrays) that ``est.save`` writes, without the container's own keys."""
    with tempfile.TemporaryDirectory(prefix="fastnn-") as tmp:
        path = os.path.join(tmp, "estimator.npz")
        est.save(path)
        header, arrays = read_model(path)
    return {k: v for k, v in header.items() if k not in _RESERVED}, arrays


def save_pipeline(pipeline, path, *, metadata=None) -> None:
    """Save a fitted scikit-learn ``Pipeline`` ending in a fastnn estimator to ``path``, atomically.

    The last step is a fitted ``fastnn.DNNRegressor`` or ``DNNClassifier``. Each step before
    it is either a fitted ``fastnn.preprocessing`` scaler (``StandardScaler``,
    ``MinMaxScaler``, ``LogScaler``, ``Clipper``, ``RobustScaler``), saved in fastnn's own
    format (``scaler_state``), or a fitted scikit-learn step of a trusted type
    (``ColumnTransformer``, ``OneHotEncoder``, ``SimpleImputer``, ...; see
    ``fastnn._skops_steps``), saved through skops.io (``pip install 'fastnn[skops]'``) as
    one uint8 entry; loading it never unpickles and refuses untrusted types by name. The
    file also holds the estimator's state (as ``est.save`` writes it) and ``metadata``, a
    JSON object of your own (the ``fastnn`` command line stores the feature and target
    column names there). ``fastnn.load(path)`` (or ``load_pipeline``) gives back a
    ``Pipeline`` of the same step names whose predictions are bitwise those of the
    original, with the metadata as its attribute ``fastnn_metadata_`` (a dict, empty when
    none was saved). The pipeline's ``memory`` and ``verbose`` are not saved.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        The fitted pipeline: fastnn scalers and trusted scikit-learn steps (through skops),
        ending in a fastnn estimator.
    path : str or os.PathLike
        Where to write.
    metadata : dict, optional
        A JSON object of your own, saved with the pipeline.

    Raises
    ------
    TypeError
        For a step that cannot be saved safely (``OutlierRemover`` drops rows and is not a
        pipeline step; a scikit-learn step holding an untrusted type, e.g. a
        ``FunctionTransformer`` of your own function).
    ImportError
        For a scikit-learn step without skops installed.
    sklearn.exceptions.NotFittedError
        For an unfitted step.
    ValueError
        When the steps disagree on the number of features.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted
    from fastnn import _skops_steps
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"pipeline must be a sklearn.pipeline.Pipeline, got {type(pipeline).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict (JSON object) or None, got {type(metadata).__name__}")
    if not pipeline.steps:
        raise ValueError("the pipeline has no steps")
    *others, (est_name, est) = pipeline.steps
    allowed = _classes("fastnn.preprocessing", _SCALERS)
    _allowed(est, _classes("fastnn.estimators", _ESTIMATORS), f"the last pipeline step {est_name!r}")
    steps, files, tail = [], {}, []
    for i, (name, step) in enumerate(others):
        where = f"pipeline step {name!r}"
        if type(step).__module__.startswith("fastnn."):  # fastnn's own: its format and checks
            _allowed(step, allowed, where)
            config, arrays = scaler_state(step)
            steps.append({"name": name, "scaler": config})
            files.update(_prefixed(f"step{i}.", arrays))
            tail.append((name, step))
            continue
        if not hasattr(step, "fit"):
            raise TypeError(f"{where} is {step!r}: only fitted transformers can be saved")
        check_is_fitted(step)
        files[f"step{i}.skops"] = _skops_steps.dumps_step(step, where)
        steps.append({"name": name, "skops": {"class": _skops_steps.step_class(step)}})
        tail = []
    est_header, est_arrays = _estimator_state(est)  # NotFittedError when the estimator is not fitted
    widths = {name: step.n_features_in_ for name, step in tail + [(est_name, est)]}
    if len(set(widths.values())) > 1:
        raise ValueError(f"the pipeline's steps were fitted on different numbers of features: {widths}")
    steps.append({"name": est_name, "estimator": est_header})
    files.update(_prefixed(f"step{len(others)}.", est_arrays))
    write_model(path, {"class": "Pipeline", "steps": steps, "metadata": metadata}, files)


def _step_name(name, where: str, seen: set) -> str:
    if not isinstance(name, str) or not name or "__" in name or name in seen:
        raise ModelFormatError(f"{where}.name must be a distinct non-empty string without '__', got {name!r}")
    seen.add(name)
    return name


def _pipeline_file(header: dict, arrays: dict):
    from sklearn.pipeline import Pipeline
    keys = sorted(k for k in header if k not in _RESERVED + ("class",))
    if keys != ["metadata", "steps"]:
        raise ModelFormatError(f"the 'Pipeline' header has keys {keys}, expected ['metadata', 'steps']")
    steps, metadata = header["steps"], header["metadata"]
    if not isinstance(steps, list) or not steps:
        raise ModelFormatError(f"pipeline.steps must be a non-empty list, got {steps!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ModelFormatError(f"pipeline.metadata must be a JSON object, got {metadata!r}")
    prefixes = tuple(f"step{i}." for i in range(len(steps)))
    stray = sorted(k for k in arrays if not k.startswith(prefixes))
    if stray:
        raise ModelFormatError(f"arrays {stray} belong to no pipeline step")
    last = len(steps) - 1
    seen: set = set()
    est_name, est_header = _fields(steps[last], ("name", "estimator"), f"steps[{last}]")
    est_name = _step_name(est_name, f"steps[{last}]", seen)
    kind = est_header.get("class") if isinstance(est_header, dict) else None
    if kind not in _ESTIMATORS:
        raise ModelFormatError(f"steps[{last}].estimator must be a saved {' or '.join(_ESTIMATORS)}, got {kind!r}")
    est = _loader(kind)(est_header, _unprefixed(f"step{last}.", arrays))
    # the fastnn scalers after the last scikit-learn step see the estimator's features
    sklearn_steps = [i for i, step in enumerate(steps[:last]) if isinstance(step, dict) and "skops" in step]
    after = sklearn_steps[-1] if sklearn_steps else -1
    built = []
    for i, step in enumerate(steps[:last]):
        if i in sklearn_steps:
            built.append(_skops_step(step, i, _unprefixed(f"step{i}.", arrays), seen))
            continue
        name, config = _fields(step, ("name", "scaler"), f"steps[{i}]")
        name = _step_name(name, f"steps[{i}]", seen)
        width = est.n_features_in_ if i > after else None
        built.append((name, scaler_from_state(config, _unprefixed(f"step{i}.", arrays), width)))
    pipeline = Pipeline(built + [(est_name, est)])
    pipeline.fastnn_metadata_ = {} if metadata is None else metadata
    return pipeline


def trusted_skops_types() -> frozenset:
    """What a scikit-learn step stored through skops may name (``module.qualname``): the
    scikit-learn classes ``ColumnTransformer``, ``OneHotEncoder``, ``OrdinalEncoder``,
    ``SimpleImputer``, ``MissingIndicator``, ``StandardScaler``, ``MinMaxScaler``,
    ``MaxAbsScaler``, ``RobustScaler``, ``FunctionTransformer``, ``Pipeline``,
    ``FeatureUnion``; fastnn's scalers; NumPy arrays, dtypes and scalars; plain containers;
    and the NumPy functions a ``FunctionTransformer`` may hold (``np.log1p``, ``np.log``,
    ``np.sqrt``, ...). Anything else is refused when saving and when loading.

    Returns
    -------
    frozenset of str
        The trusted type names.
    """
    from fastnn import _skops_steps
    return _skops_steps.trusted_types()


def _skops_step(step, i: int, arrays: dict, seen: set):
    """(name, step) of a scikit-learn step stored through skops (see save_pipeline)."""
    from fastnn import _skops_steps
    name, config = _fields(step, ("name", "skops"), f"steps[{i}]")
    name = _step_name(name, f"steps[{i}]", seen)
    (recorded,) = _fields(config, ("class",), f"steps[{i}].skops")
    if not isinstance(recorded, str) or set(arrays) != {"skops"}:
        raise ModelFormatError(f"steps[{i}] must record its class as a string and hold exactly one array "
                               f"'step{i}.skops', got {recorded!r} and {sorted(arrays)}")
    return name, _skops_steps.loads_step(arrays["skops"], recorded, f"steps[{i}] ({name!r})")


def load_pipeline(path):
    """Load the ``Pipeline`` saved by ``save_pipeline``.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    sklearn.pipeline.Pipeline
        The pipeline; its ``fastnn_metadata_`` attribute is the saved metadata.

    Raises
    ------
    ModelFormatError
        For a file holding anything else.
    """
    header, arrays = read_model(path)
    with _as_format_errors(path, "malformed model"):
        if header.get("class") != "Pipeline":
            raise ModelFormatError(f"it holds a {header.get('class')!r}, not a Pipeline "
                                   "(fastnn.persistence.load reads any model)")
        return _pipeline_file(header, arrays)


# ----------------------------------------------------------------------------- dispatch

_LOADERS: dict[str, Callable[[dict, dict], object]] = {}
# modules that register loaders when imported: tried when a file names an unknown class
_PROVIDERS = ("fastnn.estimators",)


def register_loader(class_name: str, fn: Callable[[dict, dict], object]) -> None:
    """Teach ``load`` to build another class of model file.

    Parameters
    ----------
    class_name : str
        The header's ``"class"`` this loader handles (replacing any earlier loader for
        that name).
    fn : callable
        ``fn(header, arrays)`` returns the object. It should raise ``ModelFormatError``
        for what it finds wrong; any other exception is reported as one.

    Raises
    ------
    TypeError
        If ``class_name`` is not a str or ``fn`` is not callable.
    """
    if not isinstance(class_name, str) or not class_name:
        raise TypeError(f"class_name must be a non-empty string, got {class_name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(header, arrays), got {type(fn).__name__}")
    _LOADERS[class_name] = fn


def _loader(name):
    if isinstance(name, str) and name not in _LOADERS:
        for module in _PROVIDERS:  # a fixed list: the file never chooses what is imported
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
    fn = _LOADERS.get(name) if isinstance(name, str) else None
    if fn is None:
        raise ModelFormatError(f"it holds a {name!r}, which this fastnn cannot build "
                               f"(known: {', '.join(sorted(_LOADERS))})")
    return fn


def save(obj, path, **kwargs) -> None:
    """Save a fastnn model to ``path``, atomically; ``load(path)`` gives it back.

    Parameters
    ----------
    obj : DNNRegressor, DNNClassifier, sklearn.pipeline.Pipeline or fastnn.nn.Sequential
        A fitted estimator, a scikit-learn ``Pipeline`` of fastnn scalers and trusted
        scikit-learn steps ending in one (see ``save_pipeline``), or a ``Sequential`` (see
        ``save_sequential``).
    path : str or os.PathLike
        Where to write.
    **kwargs
        ``metadata=`` for a pipeline, ``optimizer=`` for a ``Sequential``.

    Raises
    ------
    TypeError
        For any other object, or a keyword that does not apply to it.
    """
    from sklearn.pipeline import Pipeline
    if isinstance(obj, nn.Sequential):
        save_sequential(obj, path, **kwargs)
    elif isinstance(obj, Pipeline):
        save_pipeline(obj, path, **kwargs)
    elif callable(getattr(obj, "save", None)) and type(obj).__module__ == "fastnn.estimators":
        if kwargs:
            raise TypeError(f"saving a {type(obj).__name__} takes no options, got {sorted(kwargs)}")
        obj.save(path)
    else:
            raise TypeError(f"fastnn.save takes a fastnn estimator, a Pipeline ending in one or a Sequential, "
                        f"got {type(obj).__name__}")


def load(path):
    """Load the object saved at ``path``; never unpickles.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    object
        An estimator, a Pipeline or a ``Sequential``, built by the loader registered
        for the header's ``"class"``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelFormatError
        If the file is not an intact fastnn model.
    """
    header, arrays = read_model(path)
    with _as_format_errors(path, "malformed model"):
        return _loader(header.get("class"))(header, arrays)


register_loader("Sequential", lambda header, arrays: _sequential_file(header, arrays)[0])
register_loader("Pipeline", _pipeline_file)
