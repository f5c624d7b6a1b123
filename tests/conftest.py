"""Shared fixtures: run kernel tests on every SIMD path this CPU has.

The `simd` fixture switches fastnn's kernel table in-process through the private test hook
`_core._select_path` (the same rules as FASTNN_SIMD); test_config.py checks the
environment variable itself in subprocesses.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import fastnn
from fastnn import _core

SIMD_PATHS = tuple(_core.available_paths())
_STARTUP_PATH = _core.simd_path()


@pytest.fixture(params=SIMD_PATHS)
def simd(request):
    _core._select_path(request.param)
    try:
        yield request.param
    finally:
        _core._select_path(_STARTUP_PATH)


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)


@pytest.fixture(autouse=True)
def _restore_threads():
    """No test leaks a thread setting into the next."""
    before = _core.explicit_num_threads()
    yield
    _core.set_num_threads(before)


def tolerance(dtype) -> dict:
    """assert_allclose tolerances against the float64 reference."""
    return {"rtol": 2e-5, "atol": 2e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-11, "atol": 1e-11}


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("FASTNN_SIMD", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


__all__ = ["SIMD_PATHS", "fastnn", "subprocess_env", "tolerance"]
