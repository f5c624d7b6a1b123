"""Model files under faults (RELIABILITY.md 6, P2 and P4): saves SIGKILLed at random points
and inside the critical window, and a pipeline file truncated or bit-flipped at every 1/20.

A killed save must leave at ``path`` either the old or the new model, byte for byte, loadable
with its own predictions. A SIGKILLed process cannot clean up, so it may leave its temporary
file (``.<name>XXXX.tmp`` next to ``path``); nothing else may. Sequential and estimator files
are truncated and flipped in test_persistence.py and test_estimator_persistence.py; this file
covers the pipeline file.
"""
from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline

import fastnn
from fastnn import persistence as P
from fastnn import preprocessing as pre
from fastnn._errors import ModelFormatError

from support import subprocess_env

RANDOM_TRIALS = 50   # kills at a random point of one save
WINDOW_TRIALS = 5    # kills inside each critical window (os.replace, file fsync, directory fsync)
SEED = 20261127      # the kill delays are drawn from random.Random(SEED)


def _temp_files(directory, base="model.fnn"):
    """The temporary files a save of ``base`` makes (``tempfile.mkstemp(prefix="." + base,
    suffix=".tmp")`` in fastnn._files.atomic_write)."""
    return sorted(n for n in os.listdir(directory) if n.startswith("." + base) and n.endswith(".tmp"))


# ----------------------------------------------------------------------------- kill trials

# One "zygote" process imports fastnn and fits the two models once, then forks one saving
# child per trial and SIGKILLs it: every trial is its own process (fastnn loaded, the models
# loaded from their files) without paying the 1.5 s interpreter + scikit-learn start-up 65
# times. test_kill_fresh_interpreters repeats the random trials with brand-new interpreters.
KILL_SCRIPT = textwrap.dedent(r"""
    import json, os, random, select, signal, sys, time
    import numpy as np
    import fastnn

    work, n_random, n_window, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    y = X @ [1.0, -2.0, 0.5, 3.0] + 0.1 * rng.standard_normal(200)
    small = dict(hidden_units=(16, 8), epochs=2, batch_size=32, batch_norm=True, dropout=0.1)
    old = fastnn.DNNRegressor(random_state=0, **small).fit(X, y)
    new = fastnn.DNNRegressor(random_state=1, **small).fit(X, y)
    old_path, new_path, target = (os.path.join(work, n) for n in ("old.fnn", "new.fnn", "model.fnn"))
    old.save(old_path)
    new.save(new_path)
    old_bytes, new_bytes = (open(p, "rb").read() for p in (old_path, new_path))
    assert old_bytes != new_bytes
    want = {"old": old.predict(X), "new": new.predict(X)}

    def wait_for(fd, n=1, timeout=30.0):
        got, end = b"", time.monotonic() + timeout
        while len(got) < n:
            ready, _, _ = select.select([fd], [], [], max(end - time.monotonic(), 0))
            if not ready:
                raise TimeoutError(f"the saving child did not report in {timeout} s (got {got!r})")
            chunk = os.read(fd, n - len(got))
            if not chunk:
                raise EOFError(f"the saving child died early (got {got!r})")
            got += chunk
        return got

    def start_child(mode):
        # fork a child that LOADS both models (fastnn.load), reports "S" and saves them over
        # `target` in turn, new first; in a window mode the patched call reports and sleeps
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                a, b = fastnn.load(new_path), fastnn.load(old_path)
                if mode == "replace":
                    real_replace = os.replace
                    def slow_replace(src, dst):
                        os.write(w, b"R"); time.sleep(30); real_replace(src, dst)
                    os.replace = slow_replace
                elif mode in ("fsync-file", "fsync-dir"):
                    # a save fsyncs the temp file, then (after os.replace) the directory
                    real_fsync, calls, stop_at = os.fsync, [], 1 if mode == "fsync-file" else 2
                    def slow_fsync(fd):
                        calls.append(fd)
                        os.write(w, b"F")
                        if len(calls) == stop_at:
                            time.sleep(30)
                        real_fsync(fd)
                    os.fsync = slow_fsync
                elif mode == "time":
                    os.write(w, b"S"); a.save(target)
                    os.write(w, b"D"); time.sleep(30)
                os.write(w, b"S")
                while True:
                    a.save(target)
                    b.save(target)
            finally:
                os._exit(3)  # never run the zygote's code in the child
        os.close(w)
        return pid, r

    def kill(pid, r):
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(r)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child status {status:#x}"

    def temp_files():
        return sorted(n for n in os.listdir(work) if n.startswith(".model.fnn") and n.endswith(".tmp"))

    # how long ONE save takes in such a child (from its "S" to the end of its first save)
    durations = []
    for _ in range(5):
        with open(target, "wb") as f:
            f.write(old_bytes)
        pid, r = start_child("time")
        wait_for(r)
        t0 = time.perf_counter()
        wait_for(r)
        durations.append(time.perf_counter() - t0)
        kill(pid, r)
    save_s = float(np.median(durations))

    delays = random.Random(seed)
    modes = ["random"] * n_random + ["replace", "fsync-file", "fsync-dir"] * n_window
    trials = []
    for i, mode in enumerate(modes):
        with open(target, "wb") as f:  # the existing model: the old one
            f.write(old_bytes)
        before = set(temp_files())
        pid, r = start_child(mode)
        wait_for(r)
        if mode == "random":
            delay = delays.uniform(0.0, save_s)
        else:  # inside the window: the patched call has reported and sleeps
            wait_for(r, {"replace": 1, "fsync-file": 1, "fsync-dir": 2}[mode])
            delay = delays.uniform(0.0, 0.02)
        time.sleep(delay)
        kill(pid, r)
        data = open(target, "rb").read()
        state = "old" if data == old_bytes else "new" if data == new_bytes else "neither"
        loaded = None
        try:
            loaded = bool(np.array_equal(fastnn.load(target).predict(X), want[state])) if state != "neither" else None
        except Exception as exc:  # reported: the test fails on it
            loaded = f"{type(exc).__name__}: {exc}"
        new_tmp = sorted(set(temp_files()) - before)
        tmp_state = [("new" if open(os.path.join(work, n), "rb").read() == new_bytes else "partial") for n in new_tmp]
        trials.append({"trial": i, "mode": mode, "delay_ms": round(delay * 1e3, 3), "state": state,
                       "predicts_same": loaded, "new_tmp": new_tmp, "tmp_state": tmp_state})
    stale = temp_files()
    # one more save, not killed: are the killed saves' temporary files cleaned up by it?
    new.save(target)
    print(json.dumps({"save_ms": round(save_s * 1e3, 3), "trials": trials, "stale_before_next_save": stale,
                      "stale_after_next_save": temp_files(),
                      "final_is_new": open(target, "rb").read() == new_bytes}))
""")


@pytest.fixture(scope="module")
def kill_report(tmp_path_factory):
    work = tmp_path_factory.mktemp("kills")
    script = work / "kill_saves.py"
    script.write_text(KILL_SCRIPT)
    try:
        r = subprocess.run([sys.executable, str(script), str(work), str(RANDOM_TRIALS), str(WINDOW_TRIALS),
                            str(SEED)], capture_output=True, text=True, timeout=180, env=subprocess_env())
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the kill trials hung: {exc.stderr}")
    assert r.returncode == 0, r.stderr[-4000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    report["work"] = str(work)
    return report


def test_a_save_killed_anywhere_leaves_the_old_or_the_new_model(kill_report, capsys):
    trials = kill_report["trials"]
    assert len(trials) == RANDOM_TRIALS + 3 * WINDOW_TRIALS
    bad = [t for t in trials if t["state"] == "neither" or t["predicts_same"] is not True]
    assert not bad, f"killed saves that left a broken model: {bad}"
    for t in trials:
        # a killed save can leave at most its own temporary file, complete or not
        assert len(t["new_tmp"]) <= 1, t
    window = {m: [t for t in trials if t["mode"] == m] for m in ("replace", "fsync-file", "fsync-dir")}
    for t in window["replace"] + window["fsync-file"]:
        # killed before os.replace: the old file, and the new one complete in the temp file
        assert t["state"] == "old" and t["tmp_state"] == ["new"], t
    for t in window["fsync-dir"]:
        # killed after os.replace (fsync of the directory): the new file, nothing left over
        assert t["state"] == "new" and t["new_tmp"] == [], t
    assert kill_report["final_is_new"]
    random_trials = [t for t in trials if t["mode"] == "random"]
    counts = {s: sum(t["state"] == s for t in random_trials) for s in ("old", "new")}
    left = sum(len(t["new_tmp"]) for t in random_trials)
    with capsys.disabled():
        print(f"\n[save faults] one save takes {kill_report['save_ms']} ms; {len(trials)} killed saves survived "
              f"({RANDOM_TRIALS} at random delays in [0, one save]: {counts['old']} left the old model, "
              f"{counts['new']} the new; {left} left a temp file; {3 * WINDOW_TRIALS} inside os.replace/fsync)")


def test_the_next_save_removes_temp_files_of_killed_saves(kill_report):
    assert kill_report["stale_before_next_save"], "the kill trials left no temp file to clean up"
    assert kill_report["stale_after_next_save"] == []


FRESH_SCRIPT = textwrap.dedent(r"""
    import os, sys
    import fastnn
    new, old, target = sys.argv[1:4]
    a, b = fastnn.load(new), fastnn.load(old)
    sys.stdout.write("S"); sys.stdout.flush()
    while True:
        a.save(target)
        b.save(target)
""")


def _kill_fresh_trials(tmp_path, n_trials):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    y = X.sum(1)
    old = fastnn.DNNRegressor(hidden_units=(8,), epochs=2, random_state=0).fit(X, y)
    new = fastnn.DNNRegressor(hidden_units=(8,), epochs=2, random_state=1).fit(X, y)
    old_path, new_path, target = tmp_path / "old.fnn", tmp_path / "new.fnn", tmp_path / "model.fnn"
    old.save(old_path)
    new.save(new_path)
    t0 = time.perf_counter()
    new.save(tmp_path / "timing.fnn")
    save_s = time.perf_counter() - t0
    os.unlink(tmp_path / "timing.fnn")
    script = tmp_path / "fresh_saver.py"
    script.write_text(FRESH_SCRIPT)
    delays = random.Random(SEED)
    states = []
    for _ in range(n_trials):
        target.write_bytes(old_path.read_bytes())
        before = set(_temp_files(tmp_path))
        proc = subprocess.Popen([sys.executable, str(script), str(new_path), str(old_path), str(target)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready and proc.stdout.read(1) == b"S", proc.stderr.read() if not ready else "no S"
            time.sleep(delays.uniform(0.0, 2 * save_s))  # a fresh interpreter's first save is slower
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        data = target.read_bytes()
        state = "old" if data == old_path.read_bytes() else "new" if data == new_path.read_bytes() else "neither"
        assert state != "neither"
        np.testing.assert_array_equal(fastnn.load(target).predict(X), (old if state == "old" else new).predict(X))
        assert len(set(_temp_files(tmp_path)) - before) <= 1
        states.append(state)
    return states


def test_kill_fresh_interpreters(tmp_path):
    """The same, with a brand-new interpreter per trial (no fork): a reduced run."""
    assert len(_kill_fresh_trials(tmp_path, 1)) == 1


@pytest.mark.slow
def test_kill_fresh_interpreters_50(tmp_path):
    states = _kill_fresh_trials(tmp_path, 50)
    assert len(states) == 50


# ----------------------------------------------------------------------------- a damaged pipeline file


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 3)) * [1.0, 100.0, 0.01] + [0.0, 500.0, 0.0]
    y = X @ [1.0, 0.01, 50.0]
    pipe = make_pipeline(pre.StandardScaler(), pre.MinMaxScaler(feature_range=(-1, 1)),
                         fastnn.DNNRegressor(hidden_units=(8,), epochs=2, batch_norm=True, random_state=0)).fit(X, y)
    path = tmp_path_factory.mktemp("pipeline") / "pipe.fnn"
    P.save_pipeline(pipe, path, metadata={"features": ["a", "b", "c"], "target": "y"})
    return pipe, X, path


def _assert_same_pipeline(loaded, pipe, X):
    assert [name for name, _ in loaded.steps] == [name for name, _ in pipe.steps]
    assert [type(s) for _, s in loaded.steps] == [type(s) for _, s in pipe.steps]
    assert loaded.fastnn_metadata_ == {"features": ["a", "b", "c"], "target": "y"}
    np.testing.assert_array_equal(loaded.predict(X), pipe.predict(X))


def test_every_truncation_of_a_pipeline_file_is_a_format_error(saved_pipeline, tmp_path):
    _, _, path = saved_pipeline
    data = path.read_bytes()
    cut = tmp_path / "cut.fnn"
    for k in range(20):
        cut.write_bytes(data[:len(data) * k // 20])
        with pytest.raises(ModelFormatError) as info:
            fastnn.load(cut)
        assert str(cut) in str(info.value), (k, info.value)


def test_bit_flips_in_a_pipeline_file_are_caught_or_harmless(saved_pipeline, tmp_path):
    """Each of the 8 bits of the byte at every 1/20 of the file."""
    pipe, X, path = saved_pipeline
    _assert_same_pipeline(fastnn.load(path), pipe, X)
    data = path.read_bytes()
    flipped = tmp_path / "flipped.fnn"
    caught = harmless = 0
    for pos in np.linspace(0, len(data) - 1, 20).astype(int):
        for bit in range(8):
            corrupt = bytearray(data)
            corrupt[pos] ^= 1 << bit
            flipped.write_bytes(bytes(corrupt))
            try:
                loaded = fastnn.load(flipped)
            except ModelFormatError as exc:
                assert str(flipped) in str(exc)
                caught += 1
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"flip of bit {bit} at byte {pos}: {type(exc).__name__} instead of "
                            f"ModelFormatError: {exc}")
            else:  # a byte the reader does not use (a timestamp, an attribute)
                _assert_same_pipeline(loaded, pipe, X)
                harmless += 1
    assert caught + harmless == 160
    assert caught >= 100, (caught, harmless)  # the zip CRC catches every flip in the data
