"""Build and runtime configuration: ``show_config`` and the process-wide thread count."""
from __future__ import annotations

import contextlib
import operator
import os
import platform
import sys
from typing import Iterator, Literal, overload

from fastnn import _core


@overload
def show_config(print_: Literal[True] = ...) -> None: ...
@overload
def show_config(print_: Literal[False]) -> dict: ...
@overload
def show_config(print_: bool) -> dict | None: ...


def show_config(print_: bool = True) -> dict | None:
    """Print (or return) how fastnn was built and what it runs on.

    Parameters
    ----------
    print_ : bool, default True
        Print one line per key (and a note when built without OpenMP); False returns
        the configuration instead.

    Returns
    -------
    dict or None
        With ``print_=False``, a dict with the keys ``version``, ``simd_path``
        (``"avx512"``, ``"avx2"`` or ``"generic"``), ``simd_forced_by_env``,
        ``available_paths``, ``compiled_paths``, ``gemm_tile``, ``cpu`` (brand and
        features), ``openmp`` (enabled, version, runtime library path, fork guard),
        ``num_threads``, ``compiler``, ``build_type``, ``cxx_flags``, ``isa_flags``,
        ``python`` and ``platform``; else None.
    """
    build = _core.build_info()
    cpu = _core.cpu_info()
    config = {
        "version": build["version"],
        "simd_path": _core.simd_path(),
        "simd_forced_by_env": os.environ.get("FASTNN_SIMD") or None,
        "available_paths": list(cpu["available_paths"]),
        "compiled_paths": list(build["compiled_paths"]),
        "gemm_tile": {"mr": _core.gemm_tile()[0], "nr": _core.gemm_tile()[1]},
        "cpu": {k: v for k, v in cpu.items() if k != "available_paths"},
        "openmp": {
            "enabled": build["openmp"],
            "version": build["openmp_version"],
            "library": build["openmp_library"] or None,
            "fork_guard": _core.fork_guard_mode(),
        },
        "num_threads": get_num_threads(),
        "compiler": build["compiler"],
        "build_type": build["build_type"],
        "cxx_flags": build["cxx_flags"].strip(),
        "isa_flags": dict(build["isa_flags"]),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    if not print_:
        return config
    width = max(len(k) for k in config)
    for key, value in config.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key:<{width}} : {value}")
    if not build["openmp"]:
        print("note: built WITHOUT OpenMP: every kernel runs single-threaded")
    return None


def get_num_threads() -> int:
    """Threads fastnn kernels called from this thread may use.

    Returns
    -------
    int
        A ``threadpoolctl`` limit or an estimator's ``num_threads`` in force on this
        thread, else the ``set_num_threads`` value if one was set, else OpenMP's default
        for the calling thread (``OMP_NUM_THREADS``).
    """
    return _core.get_num_threads()


def _check_thread_count(n) -> int:
    if isinstance(n, bool):
        raise TypeError(f"n must be an int >= 1, got bool {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an int >= 1, got {type(n).__name__} {n!r}") from None
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return n


def set_num_threads(n: int) -> None:
    """Set the number of threads for every fastnn kernel, process-wide.

    The setting is global: every Python thread sees it (OpenMP's own setting is per
    calling thread, which surprises users of thread pools). Results never depend on it.

    Parameters
    ----------
    n : int
        Threads, at least 1.

    Raises
    ------
    TypeError
        If ``n`` is not an int (a bool is refused too).
    ValueError
        If ``n`` is less than 1.
    """
    _core.set_num_threads(_check_thread_count(n))


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` threads: ``with fastnn.threads(2): ...``.

    Like ``set_num_threads`` it is process-wide (not thread-local); the previous setting
    (or OpenMP's default, if none was set) is restored on exit, also on an exception.

    Parameters
    ----------
    n : int
        Threads for the block, at least 1.

    Yields
    ------
    None
        Control to the block, with the setting in force.

    Raises
    ------
    TypeError
        If ``n`` is not an int.
    ValueError
        If ``n`` is less than 1.
    """
    n = _check_thread_count(n)
    previous = _core.explicit_num_threads()
    _core.set_num_threads(n)
    try:
        yield
    finally:
        _core.set_num_threads(previous)


@contextlib.contextmanager
def calling_thread_threads(n) -> Iterator[None]:
    """Internal (the estimators' ``num_threads``): ``n`` threads for the fastnn calls of the
    CALLING thread only, restored on exit; ``None`` changes nothing. Unlike ``threads()``,
    concurrent fits in different Python threads cannot undo each other's setting."""
    if n is None:
        yield
        return
    n = _check_thread_count(n)
    previous = _core.calling_thread_num_threads()
    _core.set_calling_thread_num_threads(n)
    try:
        yield
    finally:
        _core.set_calling_thread_num_threads(previous)
