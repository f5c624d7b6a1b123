"""Reading tabular data from CSV files, for the ``fastnn`` command line.

The format: UTF-8 text (a byte-order mark is allowed), a header row of column names,
``,``, ``;`` or a tab as the delimiter (found from the header and the first data line, or
given), ``"`` as the quote character, one row per line (blank lines are skipped). A name
ending in ``.gz``, ``.bz2`` or ``.xz`` is read through that decompressor. Every cell that
is read must be a finite number, except in the columns read as text: the target column of
a classifier (any labels, read as stripped strings) and the feature columns named by
``text`` (categories, read as stripped strings; a missing cell is the category
``MISSING_CATEGORY``, the empty string). ``text_columns`` finds the columns that hold text.

Reading is fast first: ``np.loadtxt`` parses the file in C. Only when that fails, or finds
a NaN or infinity, does a second pass with the ``csv`` module go through the file line by
line to report the first bad line or cell: the file, the line number as an editor shows
it (the header is line 1), the column name and the offending text. Text columns are read
by ``np.loadtxt`` as strings, in a pass of their own, so the numeric columns keep theirs.
"""
from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import lzma
import math
import os
import warnings

import numpy as np

__all__ = ["CSVError", "MISSING_CATEGORY", "header", "listing", "no_columns", "read_csv", "sniff_delimiter",
           "text_columns"]

# cells that mean "no value" (compared stripped and lower-cased)
MISSING = ("", "na", "n/a", "nan", "null", "none")
# what a missing cell of a text feature column reads as: a category of its own
MISSING_CATEGORY = ""
DELIMITERS = (",", ";", "\t")
_DECOMPRESSORS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# the first bytes of compressed files, to explain a compressed file without its extension
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"PK\x03\x04": "zip"}
SUPPORTED = ("fastnn reads UTF-8 CSV files with a header row, separated by commas, semicolons or tabs, "
             "optionally compressed as .gz, .bz2 or .xz (by the file name's extension)")
_LISTED_COLUMNS = 8  # column names shown in a message before "... and N more"


class CSVError(ValueError):
    """A CSV file that cannot be read as asked. ``path``; ``line`` (1-based, the header is
    line 1) and ``column`` (a name) when one line or cell is to blame, else None; ``problem``
    for a bad numeric cell ("missing value", "not a number", "not a finite number")."""

    def __init__(self, message: str, *, path, line: int | None = None, column: str | None = None,
                 problem: str | None = None):
        super().__init__(message)
        self.path = os.fspath(path)
        self.line = line
        self.column = column
        self.problem = problem


class _Recheck(Exception):
    """The fast path found something it cannot name precisely: take the slow path."""


def _open(path):
    opener = _DECOMPRESSORS.get(os.path.splitext(os.fspath(path))[1].lower(), open)
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def listing(names, limit: int = _LISTED_COLUMNS) -> str:
    """``'a', 'b', ...`` for a message: the first ``limit`` names, then how many more
    (a 10,000-column file must not make a 90 KB error line)."""
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    return shown if len(names) <= limit else f"{shown} ... and {len(names) - limit} more"


def sniff_delimiter(path) -> str:
    """The delimiter of ``path``: of comma, semicolon and tab, the one that splits the
    header into the most columns (the first data line must agree when it splits at all);
    a comma when none splits it."""
    with _open(path) as f:
        lines = [line for line in (f.readline(), f.readline())]
    best, best_count = ",", 1
    for delimiter in DELIMITERS:
        counts = [len(next(csv.reader([line], delimiter=delimiter), [])) for line in lines if line.strip()]
        if counts and counts[0] > best_count and all(c == counts[0] for c in counts):
            best, best_count = delimiter, counts[0]
    return best


def _compressed_hint(path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return ""
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return f"; it looks {name}-compressed"
    return ""


def _header(path, delimiter) -> list[str]:
    with _open(path) as f:
        row = next(csv.reader(f, delimiter=delimiter), None)
    where = os.fspath(path)
    if row is None:
        raise CSVError(f"{where} is empty: a header row with the column names is required", path=path, line=1)
    names = [name.strip() for name in row]
    empty = [i + 1 for i, name in enumerate(names) if not name]
    if empty:
        raise CSVError(f"{where}, line 1: the header has an empty column name (column {empty[0]} of "
                       f"{len(names)}); every column needs a name", path=path, line=1)
    if all(_is_number(name) for name in names):
        raise CSVError(f"{where}, line 1: the first line must be a header row of column names, got "
                       f"{','.join(row)!r}", path=path, line=1)
    seen, dupes = set(), []
    for name in names:
        if name in seen and name not in dupes:
            dupes.append(name)
        seen.add(name)
    if dupes:
        raise CSVError(f"{where}, line 1: duplicate column names {dupes}", path=path, line=1)
    return names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return "_" not in text


def _cell_problem(text: str) -> str | None:
    """Why a cell is not a finite number (None when it is one)."""
    s = text.strip()
    if s.lower() in MISSING:
        return "missing value"
    if not _is_number(s):
        return "not a number"
    if not math.isfinite(float(s)):
        return "not a finite number"
    return None


def _rows(path, n_columns: int, delimiter: str):
    """(line number, fields) for every non-blank data row; a line with another number of
    fields than the header is a CSVError naming it."""
    with _open(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        next(reader, None)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != n_columns:
                raise CSVError(f"{os.fspath(path)}, line {reader.line_num}: {len(row)} fields, but the header has "
                               f"{n_columns} columns", path=path, line=reader.line_num)
            yield reader.line_num, row


def _category(text: str) -> str:
    """A cell of a text feature column: stripped; any spelling of "missing" is MISSING_CATEGORY."""
    s = text.strip()
    return MISSING_CATEGORY if s.lower() in MISSING else s


def _slow(path, names, numeric, text, label, delimiter):
    """Parse with the csv module, raising at the first bad line or cell."""
    values, texts = [], []
    for line, row in _rows(path, len(names), delimiter):
        for j in numeric:
            problem = _cell_problem(row[j])
            if problem:
                raise CSVError(f"{os.fspath(path)}, line {line}, column {names[j]!r}: {problem}: {row[j]!r}",
                               path=path, line=line, column=names[j], problem=problem)
        values.append([float(row[j]) for j in numeric])
        cells = [_category(row[j]) for j in text]
        if label is not None:
            cells.append(row[label].strip())
            if cells[-1].lower() in MISSING:
                raise CSVError(f"{os.fspath(path)}, line {line}, column {names[label]!r}: missing label: "
                               f"{row[label]!r}", path=path, line=line, column=names[label])
        texts.append(cells)
    width = len(text) + (label is not None)
    return (np.array(values, dtype=np.float64).reshape(len(values), len(numeric)),
            np.array(texts, dtype=str).reshape(len(texts), width))


def _loadtxt(path, delimiter, **kw):
    with warnings.catch_warnings(), _open(path) as f:
        warnings.simplefilter("ignore")  # "input contained no data": reported below
        return np.loadtxt(f, delimiter=delimiter, skiprows=1, ndmin=2, comments=None, quotechar='"', **kw)


def _missing(cells: np.ndarray) -> np.ndarray:
    """Which of the stripped strings ``cells`` mean "no value"."""
    return np.isin(np.char.lower(cells), MISSING)


def _fast(path, names, numeric, text, label, delimiter):
    """Parse with np.loadtxt (numbers as float64, text as strings, one pass each);
    _Recheck when anything is not clean."""
    strings = text + ([] if label is None else [label])
    try:
        data = cells = None
        if numeric:
            whole = sorted(numeric) == list(range(len(names)))
            data = _loadtxt(path, delimiter, dtype=np.float64, usecols=None if whole else numeric)
            if data.shape[0] == 0:  # no rows, or (numpy < 2) no columns either: the slow path says which
                raise _Recheck
            if whole:  # loadtxt checked every line's field count; order the columns as asked
                data = data[:, numeric]
        if strings:
            cells = np.char.strip(_loadtxt(path, delimiter, dtype=str, usecols=strings))
            if cells.shape[0] == 0:
                raise _Recheck
            if label is not None and _missing(cells[:, -1]).any():
                raise _Recheck
            if text:
                cells[:, :len(text)] = np.where(_missing(cells[:, :len(text)]), MISSING_CATEGORY,
                                                cells[:, :len(text)])
        n = (data if data is not None else cells).shape[0]
        if data is not None and cells is not None and cells.shape[0] != n:
            raise _Recheck
        if not (numeric and whole):  # loadtxt looked at the used columns only: check every line's field count
            for _ in _rows(path, len(names), delimiter):
                pass
    except (ValueError, _Recheck) as exc:
        if isinstance(exc, CSVError):
            raise
        raise _Recheck from None
    if data is None:
        data = np.empty((n, 0))
    elif not np.isfinite(data).all():
        raise _Recheck
    return np.ascontiguousarray(data), (np.empty((n, 0), dtype=str) if cells is None else cells)


@contextlib.contextmanager
def _reading(path):
    """Undecodable text and broken compressed streams as one CSVError naming the file."""
    where = os.fspath(path)
    try:
        yield
    except UnicodeDecodeError as exc:
        raise CSVError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start}{_compressed_hint(path)}): "
                       f"{SUPPORTED}", path=path) from None
    except (EOFError, lzma.LZMAError, OSError) as exc:
        # gzip and bz2 report a broken stream as an OSError without errno (BadGzipFile,
        # "Invalid data stream"); an errno means the file system (missing, unreadable)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise CSVError(f"{where} is not a readable compressed file ({exc}): {SUPPORTED}", path=path) from None


def _check_delimiter(delimiter):
    if delimiter is not None and delimiter not in DELIMITERS:
        raise ValueError(f"delimiter must be one of {DELIMITERS}, got {delimiter!r}")


def header(path, *, delimiter=None) -> list[str]:
    """The column names of ``path`` (its header row, stripped), checked as ``read_csv`` checks
    them; ``delimiter`` None: found by ``sniff_delimiter``. Raises CSVError as ``read_csv``."""
    _check_delimiter(delimiter)
    with _reading(path):
        return _header(path, sniff_delimiter(path) if delimiter is None else delimiter)


def no_columns(path, names, absent, role: str, delimiter=None) -> CSVError:
    """The CSVError for ``absent`` column names (``role`` says what they were asked for, e.g.
    "the target", "named by --drop"): it lists the file's first columns, and suggests
    --delimiter when the header did not split."""
    columns_are = f"its columns are {listing(names)}"
    if len(names) == 1 and any(d in names[0] for d in DELIMITERS if d != delimiter):
        columns_are += " (one column: if another character separates the fields, name it with --delimiter)"
    s = "s" if len(absent) > 1 else ""
    return CSVError(f"{os.fspath(path)} has no column{s} {listing(absent)} ({role}); {columns_are}", path=path)


def text_columns(path, columns, *, delimiter=None) -> list[str]:
    """The names among ``columns`` (feature columns of ``path``) that hold text: more than
    half of their non-missing cells are not numbers. A column of numbers with gaps, or with
    a few stray words, is not text (``read_csv`` names its first bad cell). Raises CSVError
    as ``read_csv`` for an unknown column, an unreadable file or a line that lacks one of
    ``columns`` (the field counts of the other lines are ``read_csv``'s to check)."""
    _check_delimiter(delimiter)
    with _reading(path):
        if delimiter is None:
            delimiter = sniff_delimiter(path)
        names = _header(path, delimiter)
        absent = [c for c in columns if c not in names]
        if absent:
            raise no_columns(path, names, absent, "asked for as features", delimiter)
        index = [names.index(c) for c in columns]
        if not index:
            return []
        try:
            cells = np.char.strip(_loadtxt(path, delimiter, dtype=str, usecols=index))
        except ValueError:  # a line loadtxt cannot split: the csv module reads it, or names it
            cells = np.array([[row[j].strip() for j in index] for _, row in _rows(path, len(names), delimiter)],
                             dtype=str).reshape(-1, len(index))
    return [name for name, column in zip(columns, cells.T) if _mostly_words(column[~_missing(column)])]


def _mostly_words(cells: np.ndarray) -> bool:
    """Whether more than half of the stripped strings ``cells`` are not numbers."""
    try:
        cells.astype(np.float64)
        if not (np.char.find(cells, "_") >= 0).any():
            return False  # all numbers: the common case, at C speed
    except ValueError:
        pass
    values, counts = np.unique(cells, return_counts=True)
    words = sum(int(k) for v, k in zip(values, counts) if not _is_number(str(v)))
    return words > len(cells) / 2


def read_csv(path, target=None, *, columns=None, labels=False, delimiter=None, text=()):
    """Read a CSV file with a header row: numeric columns, and optionally text ones.

    Parameters
    ----------
    path : str or os.PathLike
        The file; a name ending in ``.gz``, ``.bz2`` or ``.xz`` is decompressed.
    target : str or None
        The column to return as ``y``; None: no target (``y`` is None).
    columns : sequence of str or None
        The feature columns to read, in this order (other columns are ignored, whatever
        they hold); None: every column but ``target``.
    labels : bool, default False
        Read ``target`` as class labels (stripped strings) instead of numbers.
    delimiter : {",", ";", "\\t"} or None
        The field separator; None: found from the header and first data line
        (``sniff_delimiter``).
    text : sequence of str, default ()
        Feature columns to read as text (categories): stripped strings, any cell that
        means "missing" (empty, NA, N/A, NaN, null, None) read as ``MISSING_CATEGORY``
        (the empty string). Every other feature column is numeric.

    Returns
    -------
    X : ndarray of shape (n_rows, n_features)
        float64; with ``text`` columns an object array holding a float for each numeric
        cell and a str for each text cell, columns in ``columns`` order.
    y : ndarray of shape (n_rows,) (float64, or str for labels) or None
    feature_names : list of str
    target_name : str or None

    Raises
    ------
    FileNotFoundError, OSError
        The file cannot be opened.
    CSVError (a ValueError)
        Anything wrong with the contents, naming the file, and where it applies the line
        (1-based, the header is line 1), the column and the offending text: a numeric cell
        that is missing (empty, NA, N/A, NaN, null, None), not a number or infinite; a
        missing label; a line with another number of fields than the header; an empty,
        numeric or duplicate column name; a ``target``, ``columns`` or ``text`` entry that
        is not a column (the message lists the first columns); no data rows; bytes that are
        not UTF-8 text or a broken compressed stream (the message says what is supported).
    """
    _check_delimiter(delimiter)
    with _reading(path):
        if delimiter is None:
            delimiter = sniff_delimiter(path)
        names = _header(path, delimiter)
        if target is not None and target not in names:
            raise no_columns(path, names, [target], "the target", delimiter)
        features = [n for n in names if n != target] if columns is None else [str(c) for c in columns]
        text = [str(c) for c in text]
        absent = [c for c in features if c not in names]
        if absent:
            raise no_columns(path, names, absent, "needed as features", delimiter)
        if not features:
            raise CSVError(f"{os.fspath(path)} has no feature columns: only the target {target!r}", path=path)
        stray = [c for c in text if c not in features]
        if stray:
            raise ValueError(f"text names {stray}, which are not among the feature columns")
        index = {n: j for j, n in enumerate(names)}
        numeric = [index[n] for n in features if n not in text]
        text_index = [index[n] for n in features if n in text]
        label = None
        if target is not None:
            if labels:
                label = index[target]
            else:
                numeric.append(index[target])
        try:
            data, cells = _fast(path, names, numeric, text_index, label, delimiter)
        except _Recheck:
            data, cells = _slow(path, names, numeric, text_index, label, delimiter)
    if data.shape[0] == 0:
        raise CSVError(f"{os.fspath(path)} has a header but no data rows", path=path)
    n_numeric = len(features) - len(text_index)
    if text_index:
        X = np.empty((data.shape[0], len(features)), dtype=object)
        is_text = np.isin(features, text)
        X[:, ~is_text] = data[:, :n_numeric]
        X[:, is_text] = cells[:, :len(text_index)]
    else:
        X = np.ascontiguousarray(data[:, :n_numeric])
    if target is None:
        y = None
    elif labels:
        y = np.asarray(cells[:, -1], dtype=str)
    else:
        y = data[:, n_numeric].copy()
    return X, y, features, target
