"""Sanitizer canaries (RELIABILITY.md M2): deliberate bugs that MUST be reported.

A sanitizer job that reports nothing proves nothing unless the sanitizer is known to be
wired in. The canaries (csrc/testing/canaries.cpp) are compiled only with
-DFASTNN_SANITIZER_CANARIES=ON, so in the normal suite every test here is skipped. In a
sanitizer build (tools/sanitize.sh) each canary runs in a subprocess that inherits
LD_PRELOAD and the *SAN_OPTIONS, and must die with the sanitizer's own report.

Which reports to expect follows the -fsanitize= flags the build recorded in
build_info()["cxx_flags"]; tools/sanitize.sh also sets FASTNN_EXPECT_SANITIZERS, so a build
that lost its flags fails here instead of skipping. For valgrind, FASTNN_CANARY_LAUNCHER
holds the valgrind command line to run the subprocess under.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from fastnn import _core

INFO = _core.build_info()
CANARIES = bool(INFO.get("sanitizer_canaries"))
EXPECTED_ENV = os.environ.get("FASTNN_EXPECT_SANITIZERS", "")
LAUNCHER = shlex.split(os.environ.get("FASTNN_CANARY_LAUNCHER", ""))


def _compiled_sanitizers() -> set:
    found = set()
    for group in re.findall(r"-fsanitize=([\w,-]+)", INFO.get("cxx_flags", "")):
        found.update(group.split(","))
    return found


# "address", "undefined", "thread", "leak" (ASan with detect_leaks=1) and "memcheck" (valgrind).
SANITIZERS = {s for s in EXPECTED_ENV.split(",") if s} or _compiled_sanitizers()

pytestmark = pytest.mark.skipif(
    not CANARIES and not EXPECTED_ENV,
    reason="canaries are compiled only with -DFASTNN_SANITIZER_CANARIES=ON (tools/sanitize.sh)",
)


def test_build_has_canaries_and_the_expected_sanitizers():
    """Inside tools/sanitize.sh a build without canaries or flags is a wiring error."""
    assert CANARIES, "this _core was built without -DFASTNN_SANITIZER_CANARIES=ON"
    if EXPECTED_ENV:
        compiled = _compiled_sanitizers()
        missing = {s for s in SANITIZERS if s not in ("leak", "memcheck") and s not in compiled}
        assert not missing, f"build_info()['cxx_flags'] lacks -fsanitize={','.join(sorted(missing))}: {INFO['cxx_flags']}"


def _run_canary(name: str, **options) -> subprocess.CompletedProcess:
    """Run _core._canary_<name>() in a fresh interpreter; reports go to its stderr."""
    env = dict(os.environ)
    # tools/sanitize.sh sends reports to files (log_path) so that none is missed in a child
    # whose output a test captured; the canary's report must come back here instead.
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS"):
        extra = options.get(var, "")
        env[var] = ":".join(p for p in (env.get(var, ""), "log_path=stderr", extra) if p)
    code = f"import fastnn._core as c; c._canary_{name}()"
    return subprocess.run([*LAUNCHER, sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env=env)


def _assert_reported(r: subprocess.CompletedProcess, *needles: str) -> None:
    for needle in needles:
        assert needle in r.stderr, (
            f"sanitizer NOT wired in: {needle!r} missing (rc={r.returncode})\n--- stderr ---\n{r.stderr[-4000:]}")
    assert r.returncode != 0, f"the canary's report did not fail the process\n{r.stderr[-4000:]}"


@pytest.mark.skipif(not SANITIZERS & {"address", "memcheck"}, reason="needs ASan or valgrind memcheck")
def test_heap_out_of_bounds_read_is_reported():
    r = _run_canary("heap_oob")
    if "memcheck" in SANITIZERS:
        _assert_reported(r, "Invalid read of size 4", "canary_heap_oob")
    else:
        _assert_reported(r, "ERROR: AddressSanitizer: heap-buffer-overflow", "canary_heap_oob")


@pytest.mark.skipif("undefined" not in SANITIZERS, reason="needs UBSan")
def test_signed_integer_overflow_is_reported():
    r = _run_canary("int_overflow")
    _assert_reported(r, "runtime error: signed integer overflow", "canaries.cpp")


@pytest.mark.skipif(not SANITIZERS & {"address", "memcheck"}, reason="needs LeakSanitizer or valgrind memcheck")
def test_leak_is_reported():
    """Forces detect_leaks=1 (the ASan suite itself runs with detect_leaks=0); the
    suppressions in LSAN_OPTIONS stay in force, so this also proves they do not hide it."""
    if "memcheck" in SANITIZERS:
        r = _run_canary("leak")
        _assert_reported(r, "definitely lost", "canary_leak")
    else:
        r = _run_canary("leak", ASAN_OPTIONS="detect_leaks=1")
        _assert_reported(r, "ERROR: LeakSanitizer: detected memory leaks", "canary_leak")


@pytest.mark.skipif("thread" not in SANITIZERS, reason="needs ThreadSanitizer")
def test_data_race_is_reported():
    r = _run_canary("data_race", TSAN_OPTIONS="halt_on_error=1")
    _assert_reported(r, "WARNING: ThreadSanitizer: data race", "race_body")
