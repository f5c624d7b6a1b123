"""fastnn.distributed: synchronous data-parallel training over MPI, on loopback.

One ``mpiexec -n 2 python tests/training/mpi_worker.py OUT`` run (about 8 s) trains the worker's
cases on 2 ranks; the tests read what each rank wrote:

- the ranks agree BITWISE (parameters, batch-norm buffers, optimizer state, loss history,
  predictions), also with dropout and batch norm;
- without dropout and batch norm the weights equal single-process training on the same
  global batches (``Sequential`` step by step, and the estimator's own ``fit``) within
  float32 summation tolerance: rtol 1e-5, atol 1e-6 after 27 steps (3 epochs of 9
  batches; the largest difference seen is 9e-8). The batches of 25 rows split 13/12
  over the ranks and the last one (3 rows) 2/1, so the row-count weighting is exercised;
- rank 0 wrote the model file (atomically: no temporary file left) and it loads;
- ``check_in_sync`` (debug mode) catches ranks that drifted apart.

Where mpi4py or an ``mpiexec`` is missing the MPI tests skip with the reason (``pytest
-ra`` prints it); ``pip install mpi4py mpich`` provides both.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import distributed, ops, optim

import mpi_worker as W
from support import ROOT, subprocess_env

HERE = Path(__file__).resolve().parent
RANKS = 2
EXACT_CASES = ("sgd", "adam", "clf")
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _mpiexec():
    """(command prefix, None) or (None, the reason MPI tests cannot run)."""
    if importlib.util.find_spec("mpi4py") is None:
        return None, "mpi4py is not installed (pip install 'fastnn[mpi]' or pip install mpi4py mpich)"
    # the mpiexec of the MPI that mpi4py loads: the mpich wheel puts it beside the interpreter
    here = Path(sys.executable).parent / "mpiexec"
    exe = str(here) if here.exists() else shutil.which("mpiexec") or shutil.which("mpirun")
    if exe is None:
        return None, "no mpiexec/mpirun found (pip install mpich, or apt-get install mpich)"
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{exe} --version failed: {exc}"
    cmd = [exe]
    if "HYDRA" in version:  # MPICH: start the ranks as local processes (no ssh, no host lookup)
        cmd += ["-launcher", "fork"]
    elif "Open MPI" in version or "OpenRTE" in version:
        cmd += ["--oversubscribe"] + (["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
    return cmd, None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cmd, reason = _mpiexec()
    if cmd is None:
        print(f"\nfastnn.distributed MPI tests skipped: {reason}")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("mpi")
    start = time.perf_counter()
    env = subprocess_env(OMP_NUM_THREADS=1, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run(cmd + ["-n", str(RANKS), sys.executable, str(HERE / "mpi_worker.py"), str(out)],
                              capture_output=True, text=True, timeout=180, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec -n {RANKS} timed out after 180 s: {exc.stdout!r} {exc.stderr!r}")
    print(f"\nmpiexec -n {RANKS} tests/training/mpi_worker.py: {time.perf_counter() - start:.1f} s")
    (out / "stdout.txt").write_text(proc.stdout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    size = int(np.load(out / "sgd_rank0.npz")["size"])
    assert size == RANKS, (f"the worker saw a communicator of {size} ranks: mpiexec ({cmd[0]}) and the MPI library "
                           "mpi4py loads do not belong together")
    return out


def test_readme_mpi_example_runs_as_written(tmp_path):
    """The README's MPI example, default estimator settings and all (it crashed on 60c4ab6:
    a helper the Python copy of the epoch needed had been removed)."""
    cmd, reason = _mpiexec()
    if cmd is None:
        pytest.skip(reason)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "mpiexec -n" in b]
    (tmp_path / "train.py").write_text(block)
    proc = subprocess.run(cmd + ["-n", str(RANKS), sys.executable, "train.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=subprocess_env(OMP_NUM_THREADS=1))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    reg = fastnn.load(tmp_path / "model.npz")
    assert reg.n_iter_ == 20 and reg.history_["loss"][-1] < reg.history_["loss"][0]


def _load(out, case):
    return [dict(np.load(out / f"{case}_rank{r}.npz")) for r in range(RANKS)]


# ------------------------------------------------------------------ single-process references


def _sequential_reference(case):
    """Single-process training on the same global batches, ``Sequential`` step by step:
    the estimator's network, seeds and permutations, the whole batch in one forward pass."""
    est, X, y, w = W.build(case)
    p = est._validated_params()
    target, n_out = est._encode_targets(y, True, None)
    rng = np.random.default_rng(est.random_state)
    model = est._build_model(p, X.shape[1], n_out, int(rng.integers(2 ** 31)))
    opt = est._new_optimizer(p)
    loss = ops.mse_loss if isinstance(est, fastnn.DNNRegressor) else ops.softmax_cross_entropy_with_logits
    n = X.shape[0]
    wn = None if w is None else (w * (n / w.sum())).astype(np.float32)  # mean 1, as fit scales them
    for _ in range(est.epochs):
        order = fastnn._core.RowSplit(n).epoch_rows(int(rng.integers(2 ** 63)), n)  # the estimators' row order
        for b0 in range(0, n, est.batch_size):
            idx = order[b0:b0 + est.batch_size]
            pred = model.forward(X[idx], training=True)
            if wn is None:
                grad = loss(pred, target[idx]).grad
            else:  # a batch's loss is sum(w * l) / rows (the weights have mean 1 over X)
                grad = loss(pred, target[idx], sample_weight=wn[idx]).grad
                grad = grad * np.float32(wn[idx].sum(dtype=np.float64) / len(idx))
            model.backward(grad)
            if est.clip_norm is not None:
                optim.clip_by_global_norm(model.grads, est.clip_norm)
            opt.step(model)
    return model.params


# ------------------------------------------------------------------ MPI runs


@pytest.mark.parametrize("case", list(W.CASES))
def test_ranks_agree_bitwise(runs, case):
    r0, r1 = _load(runs, case)
    assert set(r0) == set(r1)
    for key in r0:
        if key == "seconds":
            continue
        assert r0[key].dtype == r1[key].dtype and r0[key].shape == r1[key].shape, key
        assert r0[key].tobytes() == r1[key].tobytes(), f"{case}: {key} differs between the ranks"
    assert np.all(np.isfinite(r0["loss"])) and np.all(np.isfinite(r0["params"]))


@pytest.mark.parametrize("case", EXACT_CASES)
def test_equals_single_process_on_concatenated_batches(runs, case):
    r0, _ = _load(runs, case)
    np.testing.assert_allclose(r0["params"], _sequential_reference(case), **TOLERANCE)


@pytest.mark.parametrize("case", EXACT_CASES)
def test_equals_estimator_fit(runs, case):
    est, X, y, w = W.build(case)
    est.fit(X, y, sample_weight=w)
    r0, _ = _load(runs, case)
    np.testing.assert_allclose(r0["params"], est.model_.params, **TOLERANCE)
    np.testing.assert_allclose(r0["loss"], est.history_["loss"], rtol=1e-5)


def test_batch_norm_dropout_run(runs):
    r0, _ = _load(runs, "bn_dropout")
    assert np.all(np.isfinite(r0["loss"])) and r0["loss"][-1] < r0["loss"][0]
    assert r0["buffers"].size and np.all(np.isfinite(r0["buffers"]))
    # the model keeps the seed its weights came from (only the dropout keys were per rank)
    est, X, y, _ = W.build("bn_dropout")
    est.fit(X, y)
    assert int(r0["seed"]) == est.model_.seed


def test_rank0_wrote_the_model_atomically(runs):
    assert sorted(p.name for p in runs.iterdir() if p.name.startswith(".") or p.suffix == ".tmp") == []
    loaded = fastnn.load(runs / "model.npz")
    r0, _ = _load(runs, "bn_dropout")
    _, X, _, _ = W.build("bn_dropout")
    assert loaded.model_.params.tobytes() == r0["params"].tobytes()
    np.testing.assert_array_equal(loaded.predict(X[:20]), r0["predict"])
    assert loaded.n_iter_ == W.COMMON["epochs"] and len(loaded.history_["loss"]) == W.COMMON["epochs"]
    assert isinstance(loaded.diagnose(), list)


def test_debug_checksum_catches_drift(runs):
    for r in range(RANKS):
        text = (runs / f"desync_rank{r}.txt").read_text()
        assert "ranks [1] differ from rank 0" in text, text


def test_rank0_alone_logs(runs):
    lines = (runs / "stdout.txt").read_text().splitlines()
    epochs = [l for l in lines if l.startswith("epoch ")]
    assert [l.split(":")[0] for l in epochs] == [f"epoch {e + 1}" for e in range(W.COMMON["epochs"])], lines
    assert all(f"{RANKS} ranks" in l for l in epochs)


def test_divergence_stops_every_rank_at_the_same_step(runs):
    r0, r1 = (dict(np.load(runs / f"diverged_rank{r}.npz")) for r in range(RANKS))
    assert (int(r0["epoch"]), int(r0["step"])) == (int(r1["epoch"]), int(r1["step"]))
    assert "the NaN trap" in str(r0["message"])
    assert r0["params"].tobytes() == r1["params"].tobytes()
    assert np.all(np.isfinite(r0["params"]))


# ------------------------------------------------------------------ no MPI needed


def test_shard_bounds_cover_every_row_once():
    for n in (0, 1, 2, 3, 25, 256, 257):
        for size in (1, 2, 3, 8):
            parts = [distributed.shard_bounds(n, size, r) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            lengths = [hi - lo for lo, hi in parts]
            assert max(lengths) - min(lengths) <= 1


def test_rank_seed_is_deterministic_and_distinct():
    assert distributed.rank_seed(123, 0) == 123
    seeds = [distributed.rank_seed(123, r) for r in range(64)]
    assert len(set(seeds)) == 64 and all(0 <= s < 2 ** 63 for s in seeds)
    assert seeds == [distributed.rank_seed(123, r) for r in range(64)]


def test_checksum_sees_one_bit():
    model = fastnn.Sequential([fastnn.nn.Dense(3, 2)], seed=0)
    before = distributed.checksum(model)
    model.params.view(np.uint32)[0] ^= 1
    assert distributed.checksum(model) != before
    assert distributed.allreduce_bytes(model) == 4 * model.params.size


def test_fit_refuses_what_is_not_an_estimator():
    with pytest.raises(TypeError, match="DNNRegressor or DNNClassifier"):
        distributed.fit(object(), np.zeros((4, 2)), np.zeros(4))
