"""The model file itself: a zip of ``.npy`` arrays (the ``np.savez`` layout, uncompressed)
with a JSON header. ``write_model`` writes one atomically (through ``fastnn._files``, the
one writer); ``read_model`` reads one back, validated, never unpickling, and turns every
way a file can be bad (foreign, truncated, corrupted, tampered, from a newer fastnn) into
a ``ModelFormatError`` naming the path. What the header and arrays mean is the business
of the modules beside this one."""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import zipfile

import numpy as np

from fastnn._checks import _describe
from fastnn._errors import ModelFormatError
from fastnn._files import atomic_write as _atomic_write

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
