"""Input validation at the API edge: every check names the argument, what was expected
and what was got. Inputs are converted once here (dtype, C order); kernels never copy."""
from __future__ import annotations

import math
import numbers
import os
import sys
from types import ModuleType
from typing import Optional

import numpy as np

try:  # Unix: the address-space limit (ulimit -v) caps what a copy can allocate
    import resource
    _resource: Optional[ModuleType] = resource
except ImportError:  # pragma: no cover (Windows)
    _resource = None

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"array of dtype {x.dtype} and shape {x.shape}"
    return f"{type(x).__name__}"


def as_numeric(name: str, x) -> np.ndarray:
    """``x`` as an ndarray of a real numeric dtype (no copy when it already is one)."""
    if x is None:
        raise TypeError(f"{name} must be an array of numbers, got None")
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype} (take .real explicitly if intended)")
    if kind not in "biuf":
        raise TypeError(f"{name} must be an array of numbers, got {_describe(arr)}")
    return arr


def compute_dtype(*arrays: np.ndarray | None) -> np.dtype:
    """float64 when any input is float64 (or wider), else float32: the fast path."""
    for a in arrays:
        if a is not None and a.dtype.kind == "f" and a.dtype.itemsize >= 8:
            return _FLOAT64
    return _FLOAT32


def check_ndim(name: str, arr: np.ndarray, ndim: int, meaning: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {meaning}, got shape {arr.shape}")


def _physical_memory() -> int | None:
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not every platform names them
        return None
    return pages * page if pages > 0 and page > 0 else None


_PHYSICAL_MEMORY = _physical_memory()
_CHECKED_COPY_BYTES = 64 << 20  # smaller copies cannot matter: no system call for them


def _available_memory() -> int | None:
    """MemAvailable + SwapFree (Linux): what the kernel can still back right now."""
    try:
        with open("/proc/meminfo", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        return sum(int(fields[k].split()[0]) * 1024 for k in (b"MemAvailable", b"SwapFree"))
    except (OSError, KeyError, ValueError, IndexError):
        return None


def _address_space_left() -> tuple[int, int] | None:
    """(bytes the address-space limit ``RLIMIT_AS`` still allows, the limit), or None."""
    if _resource is None:
        return None
    soft = _resource.getrlimit(_resource.RLIMIT_AS)[0]
    if soft == _resource.RLIM_INFINITY or soft < 0:
        return None
    try:
        with open("/proc/self/statm", "rb") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        used = 0
    return max(soft - used, 0), soft


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2 ** 30:.1f} GiB"


def copy_limit() -> tuple[int, str]:
    """The most bytes one converted copy may take now, and what sets that limit: the
    memory the system can still provide (MemAvailable + SwapFree on Linux, else the
    physical memory) and what the address-space limit ``RLIMIT_AS`` leaves, whichever is
    lower."""
    limit, why = sys.maxsize, "the largest size an array can have"
    available = _available_memory()
    if available is not None and available < limit:
        limit, why = available, f"the memory available ({_gib(available)} of RAM and swap)"
    elif available is None and _PHYSICAL_MEMORY is not None and _PHYSICAL_MEMORY < limit:
        limit, why = _PHYSICAL_MEMORY, f"the physical memory ({_gib(_PHYSICAL_MEMORY)})"
    left = _address_space_left()
    if left is not None and left[0] < limit:
        limit, why = left[0], f"what the address-space limit RLIMIT_AS ({_gib(left[1])}) leaves ({_gib(left[0])})"
    return limit, why


def check_allocation(nbytes: int, what: str, remedy: str) -> None:
    """``MemoryError`` "{what} would need N bytes, more than {the limit}; {remedy}" when
    allocating ``nbytes`` would exceed ``copy_limit()``. Checked BEFORE allocating: on
    Linux a too-large allocation often succeeds and the OOM killer ends the process
    later, when the pages are touched."""
    if nbytes < _CHECKED_COPY_BYTES:
        return
    limit, why = copy_limit()
    if nbytes > limit:
        raise MemoryError(f"{what} would need {nbytes} bytes ({_gib(nbytes)}), more than {why}; {remedy}")


def check_copy_size(shape: tuple, dtype, name: str = "the input") -> int:
    """The bytes a C-contiguous copy of ``shape`` in ``dtype`` takes; ``MemoryError`` naming
    the sizes when that exceeds ``copy_limit()``. Checked BEFORE copying: a zero-stride
    view (``np.broadcast_to``) holds a few bytes but its copy can hold terabytes."""
    n = math.prod(int(d) for d in shape)  # Python ints: no overflow
    nbytes = n * np.dtype(dtype).itemsize
    check_allocation(nbytes, f"{name} of shape {tuple(shape)} ({n} elements) as a {np.dtype(dtype)} copy",
                     f"it is not contiguous or not {np.dtype(dtype)}, so it cannot be used in place: pass smaller "
                     "chunks")
    return nbytes


def to_kernel(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous copy in ``dtype`` only when needed; the caller's array is never written.
    A copy larger than ``copy_limit()`` is refused with ``MemoryError`` before anything is
    allocated (``check_copy_size``)."""
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr
    check_copy_size(arr.shape, dtype)
    return np.ascontiguousarray(arr, dtype=dtype)


def check_out(name: str, out, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """An output buffer must be the caller's own writeable array of exactly the right
    dtype, shape and layout: converting it would silently lose the write."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {_describe(out)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


_may_share_memory = np.may_share_memory  # bound once: check_no_overlap runs on every kernel call


def _same_elements(a: np.ndarray, b: np.ndarray) -> bool:
    """a and b view exactly the same elements in the same order (a true in-place call)."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.shape == b.shape
            and a.strides == b.strides and a.dtype.itemsize == b.dtype.itemsize)


def check_no_overlap(outputs, inputs, *, elementwise: bool = False) -> None:
    """Refuse an output buffer that overlaps an input or another output (RELIABILITY B3):
    a kernel that reads an input in blocks (GEMM, batch reductions) after writing part of
    the output would read its own results. ``elementwise=True`` admits the one safe case,
    an output that IS the input (``out=x``: each element is read before it is written).

    ``outputs`` and ``inputs`` are (name, array or None) pairs; only arrays are compared."""
    # Plain loops that stop at the first clash: this runs on every kernel call, and for a
    # small GEMM list-building here cost more than the kernel itself.
    for i, (oname, o) in enumerate(outputs):
        if not isinstance(o, np.ndarray):
            continue
        clash = None
        for iname, a in inputs:
            if (isinstance(a, np.ndarray) and _may_share_memory(o, a)
                    and not (elementwise and _same_elements(o, a))):
                clash = iname
                break
        if clash is None:
            for other, a in outputs[i + 1:]:
                if isinstance(a, np.ndarray) and _may_share_memory(o, a):
                    clash = other
                    break
        if clash is not None:
            raise ValueError(f"{oname} shares memory with {clash}: the kernel would read values it has "
                             f"already overwritten; pass a separate {oname} buffer")


def out_or_new(name: str, out, shape: tuple, dtype: np.dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype) if out is None else check_out(name, out, shape, dtype)


# ----------------------------------------------------------------------------- parameters
# One constraint object per kind of parameter, scikit-learn's ``_parameter_constraints``
# style: every public class declares its parameters once, in a table
# ``_parameter_checks = {name: constraint}`` (the estimators, the layers and Sequential of
# fastnn.nn, the optimizers and schedules of fastnn.optim, the callbacks), and fastnn.ops
# and fastnn.optim one table each for their functions' scalar arguments. A constraint is
# called as ``constraint(name, value)`` and returns the checked value, or raises a
# TypeError/ValueError naming the argument. The same quantity uses the same constraint
# everywhere (a learning rate is >= 0, a momentum in [0, 1], an eps > 0 ...);
# tests/api/test_parameter_constraints.py walks every table and checks both.


def _bounds(low, high, low_open, high_open) -> str:
    """The bounds as a reader writes them: "in [0, 1)" or ">= 0"."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "a real number"


def check_scalar(name: str, value, *, low: float | None = None, high: float | None = None, low_open: bool = False,
                 high_open: bool = False) -> float:
    """A finite real number within the bounds (TypeError for a non-number, ValueError
    for a bound or a non-finite value), as a float."""
    if type(value) is not float:  # the common case skips the slower abstract-class check
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
        value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if ((low is not None and (value <= low if low_open else value < low))
            or (high is not None and (value >= high if high_open else value > high))):
        raise ValueError(f"{name} must be {_bounds(low, high, low_open, high_open)}, got {value}")
    return value


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """An int (a bool is not one) within ``[low, high]``, as a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int{' ' + _bounds(low, high, False, False) if low is not None else ''}, "
                        f"got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_bounds(low, high, False, False)}, got {value}")
    return value


class Interval:
    """A number within bounds (scikit-learn's ``Interval``): ``kind`` is ``float`` (any
    finite real, returned as a float) or ``int`` (an int, not a bool, with closed bounds);
    ``None`` for no bound; ``hint`` is added to the message of a value out of bounds. Two
    intervals are equal when they accept the same values."""

    def __init__(self, kind: type, low=None, high=None, *, low_open: bool = False, high_open: bool = False,
                 hint: str = ""):
        if kind not in (int, float) or (kind is int and (low_open or high_open)):
            raise TypeError(f"Interval takes kind int (closed bounds) or float, got {kind!r}")
        self.kind, self.low, self.high, self.low_open, self.high_open = kind, low, high, low_open, high_open
        self.hint = hint

    def __call__(self, name: str, value):
        try:
            if self.kind is int:
                return check_int(name, value, low=self.low, high=self.high)
            return check_scalar(name, value, low=self.low, high=self.high, low_open=self.low_open,
                                high_open=self.high_open)
        except ValueError as exc:
            if not self.hint:
                raise
            raise ValueError(f"{exc} ({self.hint})") from None

    def _key(self) -> tuple:
        return (self.kind, self.low, self.high, self.low_open, self.high_open)

    def __eq__(self, other):
        return isinstance(other, Interval) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"Interval({self.kind.__name__}: {_bounds(self.low, self.high, self.low_open, self.high_open)})"


class Options:
    """One of a fixed set of strings (scikit-learn's ``StrOptions``): TypeError for a
    non-string, ValueError for an unknown one; ``remedies`` maps a refused string to its
    own message (e.g. ``"prelu"`` for a layer that has no parameters)."""

    def __init__(self, values, remedies: dict | None = None):
        self.values = tuple(values)
        self.remedies = dict(remedies or {})

    def __call__(self, name: str, value):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, one of {self.values}, got {type(value).__name__} {value!r}")
        if value in self.remedies:
            raise ValueError(f"{name}={value!r}: {self.remedies[value]}")
        if value not in self.values:
            raise ValueError(f"{name} must be one of {self.values}, got {value!r}")
        return value

    def __eq__(self, other):
        return isinstance(other, Options) and (self.values, self.remedies) == (other.values, other.remedies)

    def __hash__(self):
        return hash(self.values)

    def __repr__(self):
        return f"Options{self.values}"


class OrNone:
    """None, or a value ``inner`` accepts (None is returned as is)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, name: str, value):
        return None if value is None else self.inner(name, value)

    def __eq__(self, other):
        return isinstance(other, OrNone) and self.inner == other.inner

    def __hash__(self):
        return hash(("OrNone", self.inner))

    def __repr__(self):
        return f"OrNone({self.inner!r})"


def check_bool(name: str, value) -> bool:
    """True or False (NumPy's bool too); 0 and 1 are not accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_params(table: dict, values: dict) -> dict:
    """Every value checked by its parameter's constraint in ``table`` (a class's
    ``_parameter_checks``); the checked values by name. A name missing from the table is a
    bug in fastnn, not in the caller: KeyError."""
    return {name: table[name](name, value) for name, value in values.items()}


class ParameterChecked:
    """A public class whose constructor arguments are declared once, in its
    ``_parameter_checks`` table, and stored checked by ``_set_checked``."""

    _parameter_checks: dict = {}

    def _set_checked(self, **values) -> None:
        """Store the arguments as attributes of the same names, each checked by its
        ``_parameter_checks`` entry."""
        for name, value in check_params(self._parameter_checks, values).items():
            setattr(self, name, value)


# The constraint of each quantity, shared by every table that takes it.
# A learning rate: 0 trains nothing but measures (an epoch's statistics of a frozen model).
check_learning_rate = Interval(float, 0.0)
# A count of things (rows, units, epochs, features).
check_count = Interval(int, 1)
# A seed or a step counter: the core keys its random streams by a 64-bit unsigned int.
check_seed = Interval(int, 0, 2 ** 64 - 1)
# A penalty or decay strength (l1, l2, weight_decay), a lower learning-rate bound, a norm
# bound (clip_norm, max_norm: 0 zeroes every update, as a learning rate of 0).
NON_NEGATIVE = Interval(float, 0.0)
# A strictly positive real: a divisor's guard (eps), a Huber delta, a decay period.
POSITIVE = Interval(float, 0.0, low_open=True)
# The weight of the OLD value in a running average: BatchNorm's running statistics
# (Keras convention) and SGD/RMSProp momentum alike; 1 keeps the old value forever.
MOMENTUM = Interval(float, 0.0, 1.0, hint="the weight of the OLD value; BatchNorm follows Keras: PyTorch's "
                                          "BatchNorm momentum=0.1 is 0.9 here")
# The decay of a moving average that must forget (Adam's beta1/beta2, RMSProp's rho), or a
# tolerance relative to the value it compares.
DECAY = Interval(float, 0.0, 1.0, high_open=True)
# A factor that reduces (a learning-rate reduction), or a fraction of the data held out.
FRACTION = Interval(float, 0.0, 1.0, low_open=True, high_open=True)
