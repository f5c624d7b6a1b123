"""GIL release, Python threads sharing kernels, and fork after OpenMP use."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn import ops

from support import subprocess_env


def test_gil_is_released_during_a_long_kernel():
    """A pure-Python loop keeps running at a good fraction of its normal rate while another
    thread is inside a long dense kernel (a GIL-holding kernel drops it to ~2%)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 1000), dtype=np.float32)
    w = rng.standard_normal((1000, 500), dtype=np.float32)

    def count_for(seconds, stop=None):
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end and not (stop and stop.is_set()):
            n += 1
        return n

    baseline = count_for(0.2) / 0.2
    done = threading.Event()

    def work():
        with fastnn.threads(1):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.5:
                ops.dense_forward(x, w, None, "relu")
        done.set()

    t = threading.Thread(target=work)
    t0 = time.perf_counter()
    t.start()
    n = count_for(10.0, stop=done)
    elapsed = time.perf_counter() - t0
    t.join()
    assert n / elapsed >= 0.25 * baseline, (n / elapsed, baseline)


def test_python_threads_share_kernels_safely():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((40, 30)).astype(np.float32)
    w.flags.writeable = False
    xs = [rng.standard_normal((257, 40)).astype(np.float32) for _ in range(8)]
    serial = [ops.dense_backward(np.ones((257, 30), np.float32), x, w, ops.dense_forward(x, w, None, "elu"), "elu")
              for x in xs]
    results = [None] * 8

    def run(i):
        for _ in range(20):
            y = ops.dense_forward(xs[i], w, None, "elu")
            results[i] = ops.dense_backward(np.ones((257, 30), np.float32), xs[i], w, y, "elu")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        for a, b in zip(got, want):
            if b is not None:
                assert np.array_equal(a, b)


FORK_SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, os, sys, numpy as np, fastnn

    def child(q):
        # big enough (67 MFLOP) that the kernel wakes the OpenMP pool
        x = np.ones((512, 256), np.float32); w = np.ones((256, 256), np.float32)
        q.put(float(fastnn.ops.dense_forward(x, w, np.zeros(256, np.float32)).sum()))

    if __name__ == "__main__":
        method = sys.argv[1]
        fastnn.set_num_threads(2)
        q0 = mp.SimpleQueue(); child(q0); expected = q0.get()   # the parent's OpenMP pool is now up
        ctx = mp.get_context(method); q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,)); p.start(); p.join(30)
        assert not p.is_alive(), "child hung after fork (libgomp); pthread_atfork guard missing"
        assert q.get(timeout=5) == expected
        if method == "fork":                                    # a bare os.fork too
            pid = os.fork()
            if pid == 0:
                q2 = mp.SimpleQueue(); child(q2); os._exit(0 if q2.get() == expected else 3)
            _, status = os.waitpid(pid, 0)
            assert os.WEXITSTATUS(status) == 0
        child(q0); assert q0.get() == expected                  # and the parent still works
        print(method + "-ok")
""")


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_child_processes_after_openmp_use(tmp_path, method):
    """fork after OpenMP use used to hang forever with libgomp (RELIABILITY.md 8.6)."""
    script = tmp_path / "fork_check.py"
    script.write_text(FORK_SCRIPT)
    try:
        r = subprocess.run([sys.executable, str(script), method], capture_output=True, text=True, timeout=120,
                           env=subprocess_env(OMP_NUM_THREADS=2))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{method} child after OpenMP use hung (libgomp is not fork-safe; see threading.cpp)")
    assert r.returncode == 0, r.stderr
    assert f"{method}-ok" in r.stdout
