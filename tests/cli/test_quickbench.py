"""The benchmark workloads (fastnn._quickbench, their one definition) and ``fastnn bench``:
every W workload trains in each installed library, thread counts are capped at the usable
CPUs, and ``--json`` writes the rows."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from fastnn import _quickbench as qb
from fastnn.cli import _parser
from support import subprocess_env

BASELINES = {"torch": "torch", "sklearn": "sklearn", "jax": "jax", "jax_scan": "jax"}


def test_w_workloads_are_the_reference_ones():
    assert {name: (wl.hidden, wl.batch, wl.regularized) for name, wl in qb.W_WORKLOADS.items()} == {
        "W1": ((128, 64, 32), 256, False), "W1R": ((128, 64, 32), 256, True), "W2": ((64, 32), 32, False)}
    X, y = qb.w1_data(1000)
    assert X.shape == (1000, 16) and y.shape == (1000,) and X.dtype == y.dtype == np.float32
    X_all, y_all = qb.w1_data()
    assert np.array_equal(X_all[:1000], X) and np.array_equal(y_all[:1000], y)


TRAIN = """
import json, sys
from fastnn import _quickbench as qb
X, y = qb.w1_data(4000)
try:
    t = qb.trainer(sys.argv[1], qb.W_WORKLOADS[sys.argv[2]], X, y)
except qb.Unsupported as exc:
    print(json.dumps({"unsupported": str(exc)}))
    sys.exit(0)
t.epoch()
first = t.mse()
for _ in range(3):
    t.epoch()
print(json.dumps({"first": first, "last": t.mse()}))
"""


@pytest.mark.parametrize("lib", ["fastnn", *BASELINES])
@pytest.mark.parametrize("name", list(qb.W_WORKLOADS))
def test_every_library_trains_every_workload_it_can(lib, name):
    """In a child interpreter: importing torch and JAX here would grow this process by
    hundreds of MiB for the rest of the session (and every child it starts inherits that
    peak in its own ru_maxrss)."""
    if lib != "fastnn" and importlib.util.find_spec(BASELINES[lib]) is None:
        pytest.skip(f"{lib} is not installed")
    r = subprocess.run([sys.executable, "-c", TRAIN, lib, name], capture_output=True, text=True, timeout=300,
                       env=subprocess_env())
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    if "unsupported" in result:
        assert lib in ("sklearn", "jax", "jax_scan") and name == "W1R", result
        return
    assert np.isfinite(result["first"]) and result["last"] < result["first"], result


def test_unknown_library_is_a_value_error():
    with pytest.raises(ValueError, match="lib must be one of"):
        qb.trainer("tensorflow", qb.W_WORKLOADS["W1"], *qb.w1_data(100))


def test_thread_counts_are_capped_at_the_usable_cpus(monkeypatch):
    monkeypatch.setattr(qb, "usable_cpus", lambda: 1)
    assert qb.capped_thread_counts([1, 2, 4]) == (1,)
    monkeypatch.setattr(qb, "usable_cpus", lambda: 3)
    assert qb.capped_thread_counts([2, 1, 8]) == (1, 2, 3)


def test_bench_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(qb, "usable_cpus", lambda: 1)
    monkeypatch.setattr(qb, "WORKLOADS", qb.WORKLOADS[:1])  # K1a only: the JSON, not the timing, is tested
    path = tmp_path / "bench.json"
    rows = qb.run((1, 2), budget=0.01, libraries=("fastnn", "numpy"), json_path=path)
    out = capsys.readouterr().out
    assert "capped at the 1 CPU(s)" in out
    report = json.loads(path.read_text())
    assert report["rows"] == rows and [r["threads"] for r in rows] == [1]
    assert report["usable_cpus"] == 1 and report["libraries"] == ["fastnn", "numpy"]
    assert report["fastnn_version"] == report["config"]["version"]
    assert rows[0]["fastnn_s"] > 0 and rows[0]["numpy_s"] > 0


def test_cli_bench_takes_json():
    args = _parser().parse_args(["bench", "--json", "out.json", "--threads", "1"])
    assert args.json == "out.json" and args.threads == [1]
