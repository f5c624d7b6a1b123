"""show_config, the process-wide thread setting, and FASTNN_SIMD at import."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import fastnn
from fastnn import _core

from support import OPENMP, SIMD_PATHS, requires_openmp, subprocess_env


def test_show_config_reports_the_build_and_runtime(capsys):
    cfg = fastnn.show_config(print_=False)
    assert cfg["version"] == fastnn.__version__
    assert cfg["simd_path"] in ("generic", "avx2", "avx512")
    assert cfg["simd_path"] in cfg["available_paths"]
    assert set(cfg["available_paths"]) <= set(cfg["compiled_paths"])
    assert cfg["num_threads"] == fastnn.get_num_threads()
    assert cfg["openmp"]["enabled"] is OPENMP
    assert "gcc" in cfg["compiler"] or "clang" in cfg["compiler"]
    assert cfg["build_type"]
    assert "-march=native" not in cfg["cxx_flags"]
    assert fastnn.show_config() is None
    printed = capsys.readouterr().out
    assert "simd_path" in printed and cfg["simd_path"] in printed
    # a build without OpenMP says so, and runs single-threaded
    assert ("WITHOUT OpenMP" in printed) is (not OPENMP)
    if not OPENMP:
        assert cfg["num_threads"] == 1


def test_auto_picks_the_best_available_path():
    code = "import fastnn._core as c; print(c.simd_path(), c.available_paths()[-1])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(FASTNN_SIMD=None), timeout=120, check=True).stdout.split()
    assert out[0] == out[1]


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_fastnn_simd_forces_a_path(path):
    code = ("import numpy as np, fastnn; "
            "print(fastnn.show_config(print_=False)['simd_path']); "
            "print(fastnn.ops.dense_forward(np.ones((5, 7), np.float32), np.ones((7, 3), np.float32)).sum())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(FASTNN_SIMD=path), timeout=120, check=True).stdout.split()
    assert out == [path, "105.0"]


def test_unknown_fastnn_simd_is_a_clear_import_error():
    r = subprocess.run([sys.executable, "-c", "import fastnn"], capture_output=True, text=True,
                       env=subprocess_env(FASTNN_SIMD="sse9"), timeout=120)
    assert r.returncode == 1
    assert "FASTNN_SIMD must be one of 'generic', 'avx2', 'avx512' or 'auto', got 'sse9'" in r.stderr


def test_unsupported_fastnn_simd_is_a_clear_import_error():
    missing = [p for p in ("avx2", "avx512") if p not in SIMD_PATHS]
    if not missing:
        pytest.skip("this CPU runs every path")
    r = subprocess.run([sys.executable, "-c", "import fastnn"], capture_output=True, text=True,
                       env=subprocess_env(FASTNN_SIMD=missing[-1]), timeout=120)
    assert r.returncode == 1, r.stderr
    assert f"FASTNN_SIMD='{missing[-1]}'" in r.stderr
    assert "Illegal instruction" not in r.stderr


@requires_openmp
def test_set_num_threads_is_process_wide():
    fastnn.set_num_threads(1)
    assert fastnn.get_num_threads() == 1
    seen = []
    t = threading.Thread(target=lambda: seen.append(fastnn.get_num_threads()))
    t.start()
    t.join()
    assert seen == [1]  # a new Python thread sees the setting (OpenMP's own is per thread)
    fastnn.set_num_threads(3)
    assert fastnn.get_num_threads() == 3


@requires_openmp
def test_threads_context_manager_nests_and_restores():
    fastnn.set_num_threads(2)
    with fastnn.threads(1):
        assert fastnn.get_num_threads() == 1
        with fastnn.threads(3):
            assert fastnn.get_num_threads() == 3
        assert fastnn.get_num_threads() == 1
    assert fastnn.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"):
        with fastnn.threads(1):
            raise RuntimeError("boom")
    assert fastnn.get_num_threads() == 2


@requires_openmp
def test_threads_restore_openmp_default_when_nothing_was_set():
    _core.set_num_threads(0)
    default = fastnn.get_num_threads()
    with fastnn.threads(1):
        assert fastnn.get_num_threads() == 1
    assert _core.explicit_num_threads() == 0
    assert fastnn.get_num_threads() == default


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError),
                                     (True, TypeError), (None, TypeError)])
def test_bad_thread_counts(bad, exc):
    with pytest.raises(exc, match="n must be"):
        fastnn.set_num_threads(bad)
    with pytest.raises(exc, match="n must be"):
        with fastnn.threads(bad):
            pass


@requires_openmp
def test_omp_num_threads_is_the_default():
    code = "import fastnn; print(fastnn.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(OMP_NUM_THREADS=3), timeout=120, check=True).stdout
    assert out.strip() == "3"


def test_threadpoolctl_sees_fastnns_openmp_runtime():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    cfg = fastnn.show_config(print_=False)
    if not cfg["openmp"]["enabled"]:
        pytest.skip("built without OpenMP")
    import os
    libs = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp"]
    ours = os.path.realpath(cfg["openmp"]["library"])
    assert any(os.path.realpath(i["filepath"]) == ours for i in libs), (ours, libs)
    # The limit applies to the calling thread's OpenMP default, which fastnn honours when no
    # explicit fastnn setting was made.
    _core.set_num_threads(0)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fastnn.get_num_threads() == 1


def test_results_do_not_depend_on_the_thread_count_across_processes():
    code = ("import numpy as np, fastnn; rng = np.random.default_rng(1); "
            "x = rng.standard_normal((900, 64), dtype=np.float32); w = rng.standard_normal((64, 200), dtype=np.float32); "
            "y = fastnn.ops.dense_forward(x, w, None, 'tanh'); "
            "g = fastnn.ops.dense_backward(np.ones_like(y), x, w, y, 'tanh'); "
            "import hashlib; print(hashlib.sha256(y.tobytes() + g.dw.tobytes() + g.db.tobytes() + g.dx.tobytes()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=subprocess_env(OMP_NUM_THREADS=n), timeout=120, check=True).stdout
               for n in (1, 2, 4)}
    assert len(digests) == 1
