"""Helpers shared by the test modules (imported as `support`; conftest.py only holds fixtures,
so `from conftest import` never picks up bench/conftest.py when both folders are collected)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from fastnn import _core

TESTS = Path(__file__).resolve().parent  # the tests' root: support.py, reference.py, golden/, fuzz/
ROOT = TESTS.parent  # the repository: README.md, pyproject.toml, examples/, tools/
GOLDEN = TESTS / "golden"
SIMD_PATHS = tuple(_core.available_paths())
OPENMP = bool(_core.build_info()["openmp"])
requires_openmp = pytest.mark.skipif(not OPENMP, reason="built without OpenMP: kernels run single-threaded")
STARTUP_PATH = _core.simd_path()


def tolerance(dtype) -> dict:
    """assert_allclose tolerances against the float64 reference."""
    return {"rtol": 2e-5, "atol": 2e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-11, "atol": 1e-11}


def traced_peak(fn, *args, **kwargs) -> int:
    """Bytes: the peak of the allocations tracemalloc traces while ``fn(*args, **kwargs)``
    runs, beyond those alive before it (so the data passed in does not count)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def subprocess_env(**extra) -> dict:
    """The environment for a child interpreter: this one's, with FASTNN_SIMD pinned to the path
    this process started on, so a child computes bitwise like its parent (tests compare them;
    under FASTNN_SIMD=generic a child that auto-selected AVX2 differed in the last bits).
    ``NAME=None`` removes a variable (``FASTNN_SIMD=None``: the child picks its own path)."""
    env = dict(os.environ, FASTNN_SIMD=STARTUP_PATH)
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def run_cli(*args, cwd, timeout=120, **popen):
    """``python -m fastnn ARGS`` in ``cwd``: the CompletedProcess (text, both streams captured)."""
    return subprocess.run([sys.executable, "-m", "fastnn", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(), **popen)


def write_csv(path, header, rows):
    """A CSV file with ``header`` and ``rows`` (lists of cells); returns ``path``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def flats_table(n=300, seed=5, missing_age=0):
    """(DataFrame, y): a table of flats with a text column ("city") and numeric ones ("size",
    "age" with ``missing_age`` NaNs, "rooms"); y is a price that depends on city, size and
    rooms. Needs pandas (skips without it)."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"city": rng.choice(["Paris", "Oslo", "Rome"], n), "size": rng.uniform(20, 120, n),
                          "age": rng.uniform(0, 80, n), "rooms": rng.integers(1, 6, n).astype(np.float64)})
    if missing_age:
        frame.loc[rng.choice(n, missing_age, replace=False), "age"] = np.nan
    y = frame["size"] * 0.1 + frame["rooms"] + frame["city"].map({"Paris": 5.0, "Oslo": 2.0, "Rome": 0.0})
    return frame, y.to_numpy()
