"""Python-coverage instrumentation for fastnn when ``atheris.instrument_imports`` cannot do it.

An editable install (scikit-build-core's redirecting finder) loads ``fastnn`` through a
custom loader whose modules ``instrument_imports`` leaves uninstrumented (atheris warns
"imported by a custom loader" and libFuzzer then sees almost no Python edges). After the
import, ``instrument_package`` patches every function and method defined in the package's
modules in place (``atheris.instrument_func``), once; code atheris already instrumented
(a normal, non-editable install) is left alone.
"""
from __future__ import annotations

import sys
import types

import atheris

_TRACE_NAMES = ("_trace_branch", "_trace_cmp", "_reserve_counter")
_done: set = set()


def _instrumented(code: types.CodeType) -> bool:
    return any(n in code.co_names for n in _TRACE_NAMES)


def _patch(fn) -> None:
    code = getattr(fn, "__code__", None)
    if code is None or id(fn) in _done or _instrumented(code):
        return
    _done.add(id(fn))
    atheris.instrument_func(fn)


def _walk(obj, module_name: str, seen: set) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        for f in (obj.fget, obj.fset, obj.fdel):
            if f is not None:
                _walk(f, module_name, seen)
        return
    if isinstance(obj, types.FunctionType):
        if obj.__module__ == module_name:
            _patch(obj)
        return
    if isinstance(obj, type) and obj.__module__ == module_name:
        for value in vars(obj).values():
            _walk(value, module_name, seen)


def instrument_package(package: str) -> int:
    """Instrument every function/method of the loaded modules of ``package``; returns how
    many were patched by this call."""
    before = len(_done)
    seen: set = set()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == package or name.startswith(package + ".")):
            continue
        for value in list(vars(module).values()):
            _walk(value, name, seen)
    return len(_done) - before
