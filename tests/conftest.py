"""Shared fixtures: run kernel tests on every SIMD path this CPU has.

The `simd` fixture switches fastnn's kernel table in-process through the private test hook
`_core._select_path` (the same rules as FASTNN_SIMD); test_config.py checks the
environment variable itself in subprocesses.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from fastnn import _core

from support import SIMD_PATHS, STARTUP_PATH


@pytest.fixture(params=SIMD_PATHS)
def simd(request):
    _core._select_path(request.param)
    try:
        yield request.param
    finally:
        _core._select_path(STARTUP_PATH)


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)


@pytest.fixture(autouse=True)
def _restore_threads():
    """No test leaks a thread setting into the next."""
    before = _core.explicit_num_threads()
    yield
    _core.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """``slow`` cases run only when asked for (``-m slow`` or FASTNN_SLOW=1): they take
    minutes or many GiB, which the default suite (and CI) must not spend."""
    markexpr = config.getoption("markexpr", "") or ""
    if os.environ.get("FASTNN_SLOW") == "1" or ("slow" in markexpr and "not slow" not in markexpr):
        return
    skip = pytest.mark.skip(reason="slow: opt in with -m slow (or FASTNN_SLOW=1)")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
