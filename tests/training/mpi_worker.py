"""Run under ``mpiexec -n 2 python tests/training/mpi_worker.py OUT_DIR`` by test_distributed.py.

Every rank trains the cases of ``CASES`` with ``fastnn.distributed.fit`` (debug mode: the
ranks' checksums are compared every epoch) and writes ``OUT_DIR/<case>_rank<r>.npz`` with
its final parameters, buffers, optimizer state and loss history; rank 0 also writes the
bn_dropout model with ``distributed.save``. The test compares the files.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

import fastnn
from fastnn import distributed


def data(n=203, features=6, classes=None, seed=0):
    """The test's data set (the test rebuilds it for the single-process reference)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features)).astype(np.float32)
    score = np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] - 0.3 * X[:, 3]
    if classes is None:
        return X, (score + 0.1 * rng.standard_normal(n)).astype(np.float32)
    return X, np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))


# batch_size 25 over 203 rows: every batch splits 13/12 over 2 ranks, the last (3 rows) 2/1
COMMON = dict(hidden_units=(16, 8), batch_size=25, epochs=3, random_state=7, num_threads=1)
CASES = {
    "sgd": dict(estimator="DNNRegressor", optimizer="sgd", learning_rate=0.05, clip_norm=1.0),
    "adam": dict(estimator="DNNRegressor", optimizer="adam", learning_rate=0.01, weights=True),
    "clf": dict(estimator="DNNClassifier", optimizer="sgd", learning_rate=0.1, classes=3),
    "bn_dropout": dict(estimator="DNNRegressor", optimizer="adam", learning_rate=0.01, batch_norm=True, dropout=0.2,
                       clip_norm=1.0),
}


def sample_weight(n):
    return np.linspace(0.5, 2.0, n)


def build(case):
    kw = dict(CASES[case])
    cls = getattr(fastnn, kw.pop("estimator"))
    classes = kw.pop("classes", None)
    weights = kw.pop("weights", False)
    X, y = data(classes=classes)
    return cls(**COMMON, **kw), X, y, (sample_weight(len(X)) if weights else None)


def main(out):
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    for case in CASES:
        est, X, y, w = build(case)
        if case == "sgd":
            est.set_params(verbose=2)  # one line per epoch, from rank 0 alone
        start = time.perf_counter()
        distributed.fit(est, X, y, sample_weight=w, debug=True)
        seconds = time.perf_counter() - start
        arrays = {f"opt_{k}": v for k, v in est.optimizer_.state.items()}
        np.savez(os.path.join(out, f"{case}_rank{rank}.npz"), params=est.model_.params, buffers=est.model_.buffers,
                 loss=np.asarray(est.history_["loss"]), predict=est.predict(X[:20]).astype(np.float64),
                 seconds=seconds, size=comm.Get_size(), seed=est.model_.seed, step=est.model_.step, **arrays)
        if case == "bn_dropout":
            distributed.save(est, os.path.join(out, "model.npz"))
            assert os.path.exists(os.path.join(out, "model.npz"))  # complete on every rank after save returns
    # debug mode catches ranks that drifted apart
    est, X, y, w = build("sgd")
    distributed.fit(est, X, y)
    if rank == 1:
        est.model_.params[0] += np.float32(1e-3)
    try:
        distributed.check_in_sync(est.model_, comm)
    except RuntimeError as exc:
        caught = str(exc)
    else:
        caught = ""
    with open(os.path.join(out, f"desync_rank{rank}.txt"), "w") as f:
        f.write(caught)
    # the NaN trap: every rank stops at the same step with the last finite weights
    est, X, y, w = build("sgd")
    est.set_params(learning_rate=1e12, clip_norm=None)
    try:
        distributed.fit(est, X, y)
    except fastnn.TrainingDivergedError as exc:
        np.savez(os.path.join(out, f"diverged_rank{rank}.npz"), params=est.model_.params, epoch=exc.epoch,
                 step=exc.step, message=str(exc))


if __name__ == "__main__":
    main(sys.argv[1])
