"""Synchronous data-parallel training over MPI (mpi4py): when one machine is too slow.

``fastnn.distributed.fit(estimator, X, y)`` trains a ``DNNRegressor``/``DNNClassifier`` on
every rank of an MPI communicator at once. Launch the same script on every rank::

    # train.py, run as: mpiexec -n 4 python train.py
    import fastnn
    from fastnn import distributed

    X, y = load_the_data()                      # every rank reads the same rows
    reg = fastnn.DNNRegressor(hidden_units=(128, 64), optimizer="adam", learning_rate=1e-3,
                              batch_size=256, epochs=20, random_state=0)
    distributed.fit(reg, X, y)                  # collective: every rank calls it
    distributed.save(reg, "model.npz")          # collective: rank 0 alone writes, atomically

The algorithm (synchronous data parallelism, the llm.c layout makes it one call):

- Every rank builds the estimator's network from the same seed (rank 0's, broadcast), so
  all ranks start from identical weights.
- Every epoch, one shared seeded permutation of the global rows (the estimator's own:
  ``Generator(Philox(seed)).permutation(n)``) cuts the data into the global batches of
  ``batch_size`` rows that single-process ``fit`` would see. Each rank takes its
  contiguous part of each global batch (``shard_bounds``): the union over the ranks of one
  step is exactly one global batch.
- Training runs through the same C++ epoch as ``fit`` (one call per epoch, the same
  driver for history, the NaN trap, early stopping and callbacks). Each rank runs
  forward, the loss and backward on its part; then the engine's reduction stage
  (``nn.GradientReduction``) calls ONE
  ``comm.Allreduce(MPI.IN_PLACE, model.grads, op=MPI.SUM)``, which sums the flat gradient
  buffer, and the engine divides it by the number of ranks: the gradient of the mean loss over the
  global batch. Parts of unequal size (a global batch that does not split evenly, the
  short last batch) are weighted by their row counts before the sum (each rank's
  gradient times ``rows * ranks / global_rows``), so the result is still the mean over
  the global batch's rows.
- Clipping (``clip_norm``) uses the global norm of the REDUCED gradient; then every rank
  applies the same optimizer update to the same gradient, so the weights stay
  bitwise-identical on every rank (``debug=True`` checks it every epoch with a checksum).
- A non-finite loss on any rank or a non-finite reduced gradient is seen by every rank at
  once (a rank whose loss is not finite poisons its gradient before the sum):
  ``nan_policy="raise"`` raises ``TrainingDivergedError`` on every rank with the weights
  of the last finite update, ``"skip"`` skips the step on every rank.

What differs from single-process training:

- Batch normalization normalizes with PER-RANK batch statistics (as PyTorch's
  DistributedDataParallel without SyncBatchNorm): each rank's part of the batch is its own
  batch for the mean and variance. A rank's part of a single row is not trained on when
  the model has batch norm (its variance is zero): its rows count as absent for that step.
  The running statistics each rank accumulates are averaged over the ranks at the end of
  every epoch (one small Allreduce), so every rank holds the same inference model; the
  averaged running variance is the mean of the per-rank variances (it leaves out the
  spread between the ranks' means, which is small for random shards).
- Dropout: each rank draws its own masks. Rank 0 keeps the model's seed, rank r > 0 uses
  ``rank_seed(seed, r)``, a deterministic seed of its own; the masks are still keyed by
  (seed, step), so a run is reproducible for a given number of ranks.
- Without batch norm and dropout the result equals single-process training on the
  concatenated batches within float32 summation tolerance (the gradient is summed in a
  different order), not bitwise; with them it is a different (equally valid) run.
- Logs (``verbose``) and callbacks run on rank 0 alone; a callback's
  ``stop_training_`` is broadcast from rank 0. Callbacks must not change the model
  (``EarlyStopping(restore_best_weights=True)`` would change rank 0's only).
  ``early_stopping`` and ``lr_patience`` of the estimator work as in ``fit``: every rank
  computes the same validation loss on the same rows.
- The data is replicated: every rank passes the same full ``X`` and ``y`` (e.g. read
  from the same file) and touches only its part of each batch. ``debug=True`` checks
  that the ranks passed the same data.

Cost: one Allreduce of ``4 * n_params`` bytes per step (``allreduce_bytes``), one small
Allreduce per epoch (loss, statistics, batch-norm running statistics). See
docs/scaling.md for the measured compute per step and the ring-allreduce model.

mpi4py is an optional dependency (``pip install fastnn[mpi]``, or ``pip install mpi4py
mpich`` for an MPI library from PyPI); it is imported when a function here first needs it.
"""
from __future__ import annotations

import contextlib
import zlib

import numpy as np

from fastnn import nn
from fastnn.estimators import _BaseDNN, _OneProcess

__all__ = ["allreduce_bytes", "check_in_sync", "checksum", "fit", "rank_seed", "save", "shard_bounds"]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("fastnn.distributed needs mpi4py and an MPI library: pip install 'fastnn[mpi]' "
                          "(or pip install mpi4py mpich, or your system's MPI and then mpi4py)") from exc
    return MPI


def _comm(comm):
    if comm is None:
        return _mpi().COMM_WORLD
    for attr in ("Allreduce", "allgather", "bcast", "Get_rank", "Get_size"):
        if not hasattr(comm, attr):
            raise TypeError(f"comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD), got {type(comm).__name__}")
    return comm


# ----------------------------------------------------------------------------- helpers


def rank_seed(seed: int, rank: int) -> int:
    """The model seed rank ``rank`` trains with: ``seed`` itself on rank 0, a distinct
    deterministic non-negative 63-bit seed derived from (seed, rank) on every other rank.
    The weights are initialized from ``seed`` before it is replaced, so only the dropout
    masks (keyed by the model seed and the step) differ between ranks.

    Parameters
    ----------
    seed : int
        The model seed.
    rank : int
        The rank, >= 0.

    Returns
    -------
    int
        The seed of that rank.
    """
    if rank == 0:
        return int(seed)
    words = np.random.SeedSequence([int(seed), int(rank)]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def shard_bounds(n_rows: int, size: int, rank: int) -> tuple:
    """The rows ``[start, stop)`` of a batch of ``n_rows`` that rank ``rank`` of ``size``
    takes: contiguous parts in rank order, the first ``n_rows % size`` parts one row
    longer. The parts of all ranks cover the batch exactly once.

    Parameters
    ----------
    n_rows : int
        Rows of the batch.
    size : int
        Number of ranks.
    rank : int
        This rank, in [0, size).

    Returns
    -------
    tuple of int
        ``(start, stop)``.
    """
    base, extra = divmod(int(n_rows), int(size))
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def allreduce_bytes(model) -> int:
    """Count the bytes one training step sends through ``Allreduce``.

    Parameters
    ----------
    model : fastnn.nn.Sequential
        The model.

    Returns
    -------
    int
        The size of its flat gradient buffer in bytes.
    """
    return int(model.grads.nbytes)


def checksum(model, optimizer=None) -> tuple:
    """Fingerprint a model's (and optimizer's) state.

    Parameters
    ----------
    model : fastnn.nn.Sequential
        The model.
    optimizer : fastnn.optim.Optimizer, optional
        Its optimizer.

    Returns
    -------
    tuple
        ``(float64 sum of the parameters, CRC-32 of their bytes, CRC-32 of the buffers'
        bytes, CRC-32 of the optimizer state's bytes)``: equal tuples mean bitwise-equal
        state.
    """
    state = 0
    if optimizer is not None:
        for name in sorted(optimizer.state):
            state = zlib.crc32(np.ascontiguousarray(optimizer.state[name]).view(np.uint8).data, state)
    return (float(model.params.sum(dtype=np.float64)), zlib.crc32(model.params.view(np.uint8).data),
            zlib.crc32(model.buffers.view(np.uint8).data), state)


def check_in_sync(model, comm=None, optimizer=None, where="") -> tuple:
    """Check that every rank holds the same state (collective).

    Parameters
    ----------
    model : fastnn.nn.Sequential
        This rank's model.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    optimizer : fastnn.optim.Optimizer, optional
        This rank's optimizer, checked too.
    where : str, default ""
        Named in the error message (e.g. "after epoch 3").

    Returns
    -------
    tuple
        Rank 0's ``checksum``.

    Raises
    ------
    RuntimeError
        Naming the ranks whose checksum differs from rank 0's.
    """
    comm = _comm(comm)
    sums = comm.allgather(checksum(model, optimizer))
    bad = [r for r, s in enumerate(sums) if s != sums[0]]
    if bad:
        raise RuntimeError(f"fastnn.distributed: the ranks' weights differ{where}: ranks {bad} differ from rank 0 "
                           f"(checksums (sum, crc params, crc buffers, crc optimizer) by rank: {sums})")
    return sums[0]


def _crc(*arrays) -> int:
    value = 0
    for a in arrays:
        if a is not None:
            value = zlib.crc32(np.ascontiguousarray(a).view(np.uint8).data, value)
    return value


# ----------------------------------------------------------------------------- fit


def fit(estimator, X, y, sample_weight=None, *, comm=None, debug=False, statistics=True):
    """Collective: train ``estimator`` (a ``DNNRegressor`` or ``DNNClassifier``) from
    scratch, data-parallel over the ranks of ``comm``, as ``estimator.fit(X, y)`` would.

    Every rank must call it with the same estimator parameters and the same data. On
    return every rank's estimator is fitted (``model_``, ``optimizer_``, ``history_``,
    ``n_iter_`` ...): ``predict``, ``score``, ``diagnose`` work on any rank; save with
    ``fastnn.distributed.save`` (rank 0 writes).

    Parameters
    ----------
    estimator : DNNRegressor or DNNClassifier
        Its parameters as for ``fit``.
    X : array-like of shape (n_samples, n_features)
        Training data, the same on every rank.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets, the same on every rank.
    sample_weight : array-like of shape (n_samples,), optional
        The same on every rank; scaled to mean 1 over the training rows, as ``fit`` does.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    debug : bool, default False
        Check that every rank passed the same data, and after every epoch that every rank
        holds bitwise-identical weights, batch-norm statistics and optimizer state (a
        checksum allgathered); a difference raises ``RuntimeError``.
    statistics : bool, default True
        Record the per-layer statistics of ``history_`` (zero fraction, dead units,
        gradient and weight norms, update ratio) that ``diagnose()`` reads; False saves
        their cost (NaN in ``history_``).

    Returns
    -------
    estimator
        Fitted. ``history_["loss"]`` is the mean loss over all ranks' rows;
        ``history_["time"]`` the wall time of the epoch on this rank.

    Raises
    ------
    RuntimeError
        With ``debug=True``, when the ranks' data or state differ.
    """
    if not isinstance(estimator, _BaseDNN):
        raise TypeError(f"estimator must be a DNNRegressor or DNNClassifier, got {type(estimator).__name__}")
    if not isinstance(debug, (bool, np.bool_)):
        raise TypeError(f"debug must be a bool, got {type(debug).__name__}")
    collective = _MPIRun(_comm(comm), _mpi(), bool(debug), bool(statistics))
    for attr in [k for k in vars(estimator) if k.endswith("_") and not k.startswith("__")]:
        delattr(estimator, attr)
    return estimator._fit(X, y, sample_weight, partial=False, classes=None, collective=collective)


class _MPIRun(_OneProcess):
    """The training driver's hooks for a run over the ranks of an MPI communicator (see
    the module docstring): one shared seed, per-rank dropout keys, the gradient Allreduce
    as the engine's reduction stage, and one small Allreduce of each epoch's tallies."""

    def __init__(self, comm, MPI, debug, statistics):
        self.comm, self.MPI, self.debug, self.statistics = comm, MPI, debug, statistics
        self.rank, self.ranks = comm.Get_rank(), comm.Get_size()
        self.describe = f" - {self.ranks} ranks"
        self.reduction = None

    def check_data(self, X, target, weight):
        if not self.debug:
            return
        crcs = self.comm.allgather((X.shape, _crc(X), _crc(target), _crc(weight)))
        bad = [r for r, c in enumerate(crcs) if c != crcs[0]]
        if bad:
            raise RuntimeError(f"fastnn.distributed.fit: ranks {bad} passed other data than rank 0 (every rank must "
                               "pass the same X, y and sample_weight)")

    def shared_seed(self, seed):
        # rank 0's seed for all (random_state=None draws a fresh one there)
        if self.rank == 0 and seed is None:
            seed = int(np.random.default_rng().integers(2 ** 31))
        return self.comm.bcast(seed if self.rank == 0 else None, root=0)

    @contextlib.contextmanager
    def training(self, model):
        model_seed = model.seed
        model.seed = rank_seed(model_seed, self.rank)  # the weights are drawn: only dropout keys differ
        grads, comm, MPI = model.grads, self.comm, self.MPI
        self.reduction = nn.GradientReduction(lambda: comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM), self.rank,
                                              self.ranks)
        try:
            yield
        finally:
            self.reduction = None
            model.seed = model_seed  # the saved model carries the seed its weights came from

    def combine(self, model, r):
        """The epoch's loss, zero and fired tallies summed over the ranks; the batch-norm
        running statistics averaged (every rank then holds the same inference model)."""
        fired = [f for f in r.fired if f is not None]
        sizes = [f.size for f in fired]
        vec = np.concatenate([[r.loss_sum, r.rows], r.zeros, r.seen,
                              np.concatenate(fired).astype(np.float64) if fired else np.zeros(0),
                              model.buffers.astype(np.float64)])
        self.comm.Allreduce(self.MPI.IN_PLACE, vec, op=self.MPI.SUM)
        n_layers = len(r.zeros)
        zeros, seen = vec[2:2 + n_layers], vec[2 + n_layers:2 + 2 * n_layers]
        k = 2 + 2 * n_layers
        everywhere = iter(np.split(vec[k:k + sum(sizes)] > 0, np.cumsum(sizes)[:-1]) if sizes else [])
        fired_all = [None if f is None else next(everywhere) for f in r.fired]
        if model.buffers.size:
            model.buffers[...] = (vec[k + sum(sizes):] / self.ranks).astype(model.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            zero_fraction = [float(z / n) if n > 0 else float("nan") for z, n in zip(zeros, seen)]
        dead = nn._dead_units(fired_all, self.statistics)
        return r._replace(loss=float(vec[0] / vec[1]) if vec[1] else float("nan"), rows=int(vec[1]),
                          zero_fraction=zero_fraction, dead_units=dead, fired=fired_all, zeros=list(zeros),
                          seen=list(seen), loss_sum=float(vec[0]))

    def agree(self, flag):
        return bool(self.comm.bcast(bool(flag), root=0))

    def all(self, flag):
        return bool(self.comm.allreduce(bool(flag), op=self.MPI.LAND))

    def after_epoch(self, est, epoch):
        if self.debug:
            check_in_sync(est.model_, self.comm, est.optimizer_, where=f" after epoch {epoch}")


# ----------------------------------------------------------------------------- save


def save(estimator, path, comm=None) -> None:
    """Collective: rank 0 alone writes ``estimator`` to ``path`` (``estimator.save``:
    atomic, temp file + rename); every rank returns once the file is complete, and every
    rank raises if the write failed. Calling ``estimator.save`` on every rank instead
    would have all ranks write the same file.

    Parameters
    ----------
    estimator : DNNRegressor or DNNClassifier
        The fitted estimator (the same on every rank).
    path : str or os.PathLike
        Where rank 0 writes.
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.

    Raises
    ------
    RuntimeError
        On the other ranks, if rank 0's write failed (rank 0 raises the original error).
    """
    comm = _comm(comm)
    error = None
    if comm.Get_rank() == 0:
        try:
            estimator.save(path)
        except Exception as exc:  # reported on every rank below
            error = exc
    failed = comm.bcast(None if error is None else f"{type(error).__name__}: {error}", root=0)
    if error is not None:
        raise error
    if failed is not None:
        raise RuntimeError(f"fastnn.distributed.save: rank 0 could not write {path!r}: {failed}")
