"""scikit-learn pipeline steps inside fastnn model files, through skops.io.

``fastnn.save`` keeps fastnn's own scalers and estimators in fastnn's format; any other
step of a ``Pipeline`` (a ``ColumnTransformer`` with a ``OneHotEncoder``, a
``SimpleImputer``, ...) is stored as the bytes of ``skops.io.dumps`` in one uint8 entry of
the model file. Loading it never unpickles: skops rebuilds the object from its JSON schema,
and fastnn first lists every type that schema names and refuses the file (an
``UntrustedTypeError`` naming them) when one is not in ``trusted_types()``, an explicit list
much narrower than skops' own defaults (which trust every scikit-learn class). Saving
checks the same list, so fastnn never writes a file it would refuse to read.

``FunctionTransformer`` is trusted only together with the functions it holds, and the only
trusted functions are a few NumPy ufuncs (``TRUSTED_FUNCTIONS``): loading a user function
would import and later call code named by the file. Any other function is refused by
name when saving. Lambdas cannot be stored at all.

``trusted_types()`` is the full list (classes as ``module.qualname``).
"""
from __future__ import annotations

import functools
import io
import json
import zipfile

import numpy as np

from fastnn._errors import ModelFormatError, UntrustedTypeError

__all__ = ["TRUSTED_FUNCTIONS", "dumps_step", "loads_step", "step_class", "trusted_types"]

_MAX_SCHEMA_BYTES = 16 << 20  # as a fastnn header: configuration, not data


def _name(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _trusted_classes() -> list:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn import preprocessing as skp

    from fastnn import preprocessing as fp
    sklearn = [Pipeline, FeatureUnion, ColumnTransformer, skp.OneHotEncoder, skp.OrdinalEncoder, SimpleImputer,
               MissingIndicator, skp.StandardScaler, skp.MinMaxScaler, skp.MaxAbsScaler, skp.RobustScaler,
               skp.FunctionTransformer]
    fastnn = [fp.StandardScaler, fp.MinMaxScaler, fp.LogScaler, fp.Clipper, fp.RobustScaler]  # inside those
    containers = [dict, list, tuple, str, int, float, bool, slice, type(None)]
    arrays = [np.ndarray, np.dtype, np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
              np.uint64, np.uint32, np.uint16, np.uint8, np.bool_, np.str_, np.object_]
    return sklearn + fastnn + containers + arrays


TRUSTED_FUNCTIONS = ("numpy.log", "numpy.log1p", "numpy.log2", "numpy.log10", "numpy.exp", "numpy.expm1",
                     "numpy.sqrt", "numpy.cbrt", "numpy.absolute", "numpy.square", "numpy.sign", "numpy.arcsinh")


@functools.lru_cache(maxsize=None)
def trusted_types() -> frozenset:
    """Every type (``module.qualname``) and function a skops part may name."""
    return frozenset(map(_name, _trusted_classes())) | frozenset(TRUSTED_FUNCTIONS) | _dtype_classes()


def _dtype_classes() -> frozenset:
    """NumPy 2's per-dtype classes (numpy.dtypes.Float64DType, ...), which skops may name."""
    dtypes = getattr(np, "dtypes", None)
    if dtypes is None:
        return frozenset()
    return frozenset(_name(cls) for name in dir(dtypes) if isinstance(cls := getattr(dtypes, name), type)
                     and issubclass(cls, np.dtype) and name not in ("VoidDType", "ObjectDType"))


def _skops():
    try:
        import skops.io
    except ImportError:
        return None
    return skops.io


def _archive(data: bytes, where: str) -> zipfile.ZipFile:
    """The skops archive, checked as fastnn checks its own files: stored entries only, and
    every ``.npy`` entry parsed by fastnn's own reader (numbers only, the declared shape
    matching the bytes), so that no entry makes skops allocate more than the file holds."""
    from fastnn.persistence._container import _read_entry
    zf = zipfile.ZipFile(io.BytesIO(data))
    for info in zf.infolist():
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise ModelFormatError(f"{where}: skops entry {info.filename!r} is compressed; fastnn stores "
                                   "skops parts uncompressed")
        if info.filename.endswith(".npy"):
            _read_entry(zf, info, f"{where} {info.filename}")
    return zf


def _named_types(data: bytes, where: str) -> list:
    """Every ``module.class`` the skops schema names (classes, functions, types)."""
    zf = _archive(data, where)
    info = zf.getinfo("schema.json")
    if info.file_size > _MAX_SCHEMA_BYTES:
        raise ModelFormatError(f"{where}: the skops schema is {info.file_size} bytes")
    schema = json.loads(zf.read(info).decode("utf-8"))
    found, stack = set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__module__" in node or "__class__" in node:
                module, cls = node.get("__module__"), node.get("__class__")
                if not isinstance(module, str) or not isinstance(cls, str):
                    raise ModelFormatError(f"{where}: a skops node names {module!r}.{cls!r}")
                found.add(f"{module}.{cls}")  # a class, or the type or function a node refers to
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(found)


def _untrusted(data: bytes, where: str) -> list:
    trusted = trusted_types()
    return [t for t in _named_types(data, where) if t not in trusted]


def step_class(step) -> str:
    """The ``module.qualname`` a skops part of ``step`` is recorded under."""
    return _name(type(step))


def dumps_step(step, where: str) -> np.ndarray:
    """``step`` as the uint8 bytes of a skops archive (stored, uncompressed).

    Raises ``ImportError`` without skops and ``TypeError`` naming every type or function
    that ``loads_step`` would refuse."""
    sio = _skops()
    if sio is None:
        raise ImportError(f"{where} is a {step_class(step)}: saving scikit-learn steps needs skops "
                          "(pip install 'fastnn[skops]')")
    try:
        data = sio.dumps(step, compression=zipfile.ZIP_STORED)
    except Exception as exc:  # skops cannot store e.g. a lambda
        raise TypeError(f"{where} ({step_class(step)}) cannot be saved through skops: {exc}") from None
    bad = _untrusted(data, where)
    if bad:
        raise TypeError(f"{where} ({step_class(step)}) holds {bad}, which fastnn does not load (it trusts "
                        f"scikit-learn's {', '.join(sorted(_short_trusted()))} and the NumPy functions "
                        f"{', '.join(TRUSTED_FUNCTIONS)}); use fastnn's scalers or pickle at your own risk")
    return np.frombuffer(data, np.uint8).copy()


def _short_trusted() -> set:
    return {t.rsplit(".", 1)[1] for t in trusted_types() if t.startswith("sklearn.")}


def loads_step(raw, recorded_class, where: str):
    """The step a ``dumps_step`` entry holds; ``ModelFormatError`` for anything else, and
    ``UntrustedTypeError`` (a ``ModelFormatError``) naming any type not trusted."""
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFormatError(f"{where}: the skops entry must be a 1-D uint8 array")
    sio = _skops()
    if sio is None:
        raise ModelFormatError(f"{where} is a scikit-learn step saved with skops, which is not installed: "
                               "pip install 'fastnn[skops]'")
    data = raw.tobytes()
    bad = _untrusted(data, where)
    if bad:
        raise UntrustedTypeError(f"{where} names untrusted types {bad}; fastnn loads only "
                                 f"{sorted(_short_trusted())} from scikit-learn", bad)
    if recorded_class not in trusted_types() or recorded_class.startswith(("builtins.", "numpy.")):
        raise ModelFormatError(f"{where}: the header records the step as {recorded_class!r}, not a trusted "
                               "scikit-learn class")
    step = sio.loads(data, trusted=_named_types(data, where))
    if step_class(step) != recorded_class:
        raise ModelFormatError(f"{where}: the header says {recorded_class!r} but the skops part holds a "
                               f"{step_class(step)}")
    return step
