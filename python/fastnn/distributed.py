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
- Each rank runs forward, the estimator's loss (``fastnn.ops``: mse, huber, binary or
  softmax cross-entropy) and backward on its part, then ONE
  ``comm.Allreduce(MPI.IN_PLACE, model.grads, op=MPI.SUM)`` sums the flat gradient
  buffer and it is divided by the number of ranks: the gradient of the mean loss over the
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

import math
import sys
import time
import zlib

import numpy as np

from fastnn import nn, ops, optim
from fastnn._config import threads

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


def _param_blocks(model) -> list:
    """Per layer, (begin, size) of its parameters in the flat buffer (layer order)."""
    blocks, offset = [], 0
    for layer in model.layers:
        size = sum(int(np.prod(s.shape)) for s in layer.param_specs())
        blocks.append((offset, size))
        offset += size
    return blocks


def _sum_squares(a) -> float:
    from fastnn import _core
    return float(_core.sum_squares(a)) if a.size else 0.0


def _loss(kind, pred, target, weight):
    """(loss, d loss / d pred) for the estimator's core loss name, through fastnn.ops."""
    if kind == "mse":
        return ops.mse_loss(pred, target, sample_weight=weight)
    if kind == "huber":
        return ops.huber_loss(pred, target, sample_weight=weight)
    if kind == "bce":
        return ops.binary_cross_entropy_with_logits(pred, target, sample_weight=weight)
    return ops.softmax_cross_entropy_with_logits(pred, target, sample_weight=weight)


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
    from sklearn.utils.validation import _check_sample_weight, validate_data

    from fastnn import estimators as est_mod

    if not isinstance(estimator, est_mod._BaseDNN):
        raise TypeError(f"estimator must be a DNNRegressor or DNNClassifier, got {type(estimator).__name__}")
    if not isinstance(debug, (bool, np.bool_)):
        raise TypeError(f"debug must be a bool, got {type(debug).__name__}")
    comm = _comm(comm)
    MPI = _mpi()
    rank = comm.Get_rank()
    est = estimator
    for attr in [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]:
        delattr(est, attr)
    p = est._validated_params()
    X, y = validate_data(est, X, y, reset=True, dtype=(np.float32, np.float64), ensure_all_finite=False,
                         multi_output=est._multi_output, y_numeric=est._y_numeric, ensure_min_samples=1)
    est_mod._check_finite_X(X, "fit")
    target, n_out = est._encode_targets(y, True, None)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if sample_weight.min() < 0:
            raise ValueError("sample_weight must be non-negative")
        if not sample_weight.sum() > 0:
            raise ValueError("sample_weight must not be all zero")
    if debug:
        crcs = comm.allgather((X.shape, _crc(X), _crc(target), _crc(sample_weight)))
        bad = [r for r, c in enumerate(crcs) if c != crcs[0]]
        if bad:
            raise RuntimeError(f"fastnn.distributed.fit: ranks {bad} passed other data than rank 0 (every rank must "
                               "pass the same X, y and sample_weight)")
    # one seed for all: rank 0's, broadcast (random_state=None draws a fresh one there)
    seed = est._seed_from(est.random_state) if rank == 0 else None
    if rank == 0 and seed is None:
        seed = int(np.random.default_rng().integers(2 ** 31))
    seed = comm.bcast(seed, root=0)
    est._rng_ = np.random.default_rng(seed)
    model_seed = int(est._rng_.integers(2 ** 31))
    est.model_ = est._build_model(p, X.shape[1], n_out, model_seed)
    est.model_.seed = rank_seed(model_seed, rank)  # the weights are drawn: only dropout keys differ
    est.optimizer_ = est._new_optimizer(p)
    est.history_ = {k: [] for k in ("loss", "val_loss", "lr", "skipped", "time") + est_mod._STAT_KEYS}
    est.n_iter_ = 0
    est.best_loss_ = np.inf
    est._feature_std_ = X.std(axis=0, dtype=np.float64)
    est.divergence_ = None
    X = np.ascontiguousarray(X, dtype=np.float32)
    Xt, yt, wt, Xv, yv, wv = est._split(X, target, sample_weight, p, False)
    if wt is not None:
        wt = nn._normalized_weights(wt, Xt.shape[0], np.float32)
    ctx = threads(p["num_threads"]) if p["num_threads"] else est_mod._NoThreads()
    trainer = _Trainer(est, p, comm, MPI, debug, statistics)
    with ctx:
        try:
            trainer.train(Xt, yt, wt, Xv, yv, wv)
        finally:
            est.model_.seed = model_seed  # the saved model carries the seed its weights came from
        est._saturation_ = est._probe_saturation(Xt[:est_mod._PROBE_ROWS])
    return est


class _Trainer:
    """The epoch loop of ``fit``; one instance per call."""

    def __init__(self, est, p, comm, MPI, debug, statistics):
        self.est, self.p, self.comm, self.MPI = est, p, comm, MPI
        self.debug, self.statistics = bool(debug), bool(statistics)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        model = est.model_
        self.hidden = list(est._hidden_index_)
        self.blocks = _param_blocks(model)
        self.has_bn = any(isinstance(l, nn.BatchNorm) for l in model.layers)
        self.kind = est._core_loss

    # one epoch ---------------------------------------------------------------------
    def epoch(self, Xt, yt, wt, order):
        est, p, model, opt = self.est, self.p, self.est.model_, self.est.optimizer_
        comm, MPI, size, rank = self.comm, self.MPI, self.size, self.rank
        n, B = Xt.shape[0], p["batch_size"]
        n_hidden, n_layers = len(self.hidden), len(model.layers)
        loss_sum, rows, steps, skipped = 0.0, 0, 0, 0
        zeros = np.zeros(n_hidden)
        seen = np.zeros(n_hidden)
        fired = [np.zeros(model.layers[i].out_features, bool) for i in self.hidden]
        grad_norm_sum = np.zeros(n_layers)
        before = None
        n_batches = -(-n // B)
        for b, b0 in enumerate(range(0, n, B)):
            batch = order[b0:b0 + B]
            counts = [shard_bounds(len(batch), size, r) for r in range(size)]
            counts = [hi - lo for lo, hi in counts]
            if self.has_bn:  # a part of one row cannot be batch-normalized: it sits this step out
                counts = [0 if c == 1 else c for c in counts]
            total = sum(counts)
            if total == 0:
                continue
            lo, hi = shard_bounds(len(batch), size, rank)
            mine = counts[rank]
            buffers_before = model.buffers.copy() if model.buffers.size else None
            local_loss = 0.0
            if mine:
                idx = batch[lo:hi]
                xb = Xt[idx]
                pred = model.forward(xb, training=True)
                w = None if wt is None else wt[idx]
                if w is not None and not w.sum(dtype=np.float64) > 0:
                    out = _loss(self.kind, pred, yt[idx], None)
                    local_loss, grad = 0.0, out.grad * 0
                else:
                    out = _loss(self.kind, pred, yt[idx], w)
                    local_loss, grad = out.loss, out.grad
                    if w is not None:  # the core's convention: weighted sum / rows (weights mean 1)
                        scale = float(w.sum(dtype=np.float64)) / mine
                        local_loss *= scale
                        grad = grad * np.float32(scale)
                model.backward(grad)
                if not math.isfinite(local_loss):
                    model.grads[...] = np.nan  # every rank sees it in the sum
                factor = mine * size / total
                if factor != 1.0:
                    model.grads *= np.float32(factor)
                if self.statistics:
                    for h, i in enumerate(self.hidden):
                        y = model._caches[i]["y"]
                        zeros[h] += np.count_nonzero(y == 0)
                        seen[h] += y.size
                        fired[h] |= (y > 0).any(axis=0)
            else:
                model.step += 1  # stay in step with the other ranks' dropout keys
                model.grads[...] = 0
            # ---- the one collective of the step
            comm.Allreduce(MPI.IN_PLACE, model.grads, op=MPI.SUM)
            if size > 1:
                model.grads *= np.float32(1.0 / size)
            if self.statistics:
                layer_sq = [(_sum_squares(model.grads[s:s + k]) if k else 0.0) for s, k in self.blocks]
                norm = math.sqrt(sum(layer_sq))
            else:
                layer_sq = None
                norm = math.sqrt(_sum_squares(model.grads))
            if not math.isfinite(norm):
                if buffers_before is not None:
                    model.buffers[...] = buffers_before
                if est.nan_policy == "skip":
                    skipped += 1
                    continue
                self._diverged(b, steps)
            if p["clip_norm"] is not None:
                optim.clip_by_global_norm(model.grads, p["clip_norm"])
            if self.statistics:
                grad_norm_sum += np.sqrt(layer_sq)
                if b == n_batches - 1:
                    before = model.params.copy()
            opt.step(model)
            loss_sum += local_loss * mine
            rows += mine
            steps += 1
        return loss_sum, rows, steps, skipped, zeros, seen, fired, grad_norm_sum, before

    def _diverged(self, step, done):
        est, model = self.est, self.est.model_
        bad = None
        for i in range(len(model.layers) - 1, -1, -1):  # the layer backward reached first
            s, k = self.blocks[i]
            if k and not np.all(np.isfinite(model.grads[s:s + k])):
                bad = i
                break
        layer = None
        if bad is not None:
            layer = next((h for h, i in enumerate(self.hidden) if i == bad), len(self.hidden))
        est.divergence_ = {"epoch": est.n_iter_, "step": int(step), "layer": layer, "restored_steps": int(done),
                           "learning_rate": float(est.optimizer_.lr), "grad_norm": [float("nan")] * len(self.hidden),
                           "update_ratio": [float("nan")] * len(self.hidden)}
        where = "the loss or a gradient" if layer is None else (
            f"the gradient of hidden layer {layer}" if layer < len(self.hidden) else "the gradient of the output layer")
        from fastnn._errors import TrainingDivergedError
        raise TrainingDivergedError(
            f"training diverged (the NaN trap) at epoch {est.n_iter_}, step {step}: {where} is not finite (on the "
            f"gradient summed over {self.size} ranks). Every rank holds the last weights that gave a finite loss "
            f"(epoch {est.n_iter_}, after {done} of its updates). Remedies: lower the learning rate (now "
            f"{est.divergence_['learning_rate']:g}); clip gradients (clip_norm=1.0); scale the features "
            "(fastnn.preprocessing.StandardScaler); batch_norm=True. diagnose() has the evidence.",
            epoch=est.n_iter_, step=step, layer=layer)

    # the epochs --------------------------------------------------------------------
    def train(self, Xt, yt, wt, Xv, yv, wv):
        est, p = self.est, self.p
        est.stop_training_ = False
        callbacks = p["callbacks"] if self.rank == 0 else []
        try:
            for cb in callbacks:
                getattr(cb, "on_train_begin", lambda e: None)(est)
            self._epochs(Xt, yt, wt, Xv, yv, wv, callbacks)
        finally:
            for cb in callbacks:
                getattr(cb, "on_train_end", lambda e: None)(est)

    def _epochs(self, Xt, yt, wt, Xv, yv, wv, callbacks):
        est, p, comm, MPI = self.est, self.p, self.comm, self.MPI
        model, opt = est.model_, est.optimizer_
        n_hidden = len(self.hidden)
        best = None
        since_best = since_lr = 0
        lr_best = np.inf
        for _ in range(p["epochs"]):
            epoch = est.n_iter_
            start = time.perf_counter()
            lr = opt.lr
            seed = int(est._rng_.integers(2 ** 63))
            order = np.random.Generator(np.random.Philox(seed)).permutation(Xt.shape[0]).astype(np.int64)
            loss_sum, rows, steps, skipped, zeros, seen, fired, gsum, before = self.epoch(Xt, yt, wt, order)
            # ---- one small collective per epoch: loss, statistics, batch-norm running statistics
            n_fired = sum(f.size for f in fired)
            vec = np.concatenate([[loss_sum, rows], zeros, seen, np.concatenate(fired).astype(np.float64)
                                  if n_fired else np.zeros(0), model.buffers.astype(np.float64)])
            comm.Allreduce(MPI.IN_PLACE, vec, op=MPI.SUM)
            loss_sum, rows = vec[0], vec[1]
            k = 2
            zeros, seen = vec[k:k + n_hidden], vec[k + n_hidden:k + 2 * n_hidden]
            k += 2 * n_hidden
            fired_all = vec[k:k + n_fired] > 0
            k += n_fired
            if model.buffers.size:
                model.buffers[...] = (vec[k:] / self.size).astype(model.dtype)
            loss = loss_sum / rows if rows else float("nan")
            if self.debug:
                check_in_sync(model, comm, opt, where=f" after epoch {epoch}")
            val_loss = np.nan if Xv is None else est._loss_on(Xv, yv, wv if wv is None or wv.sum() > 0 else None)
            self._record(loss, lr, val_loss, skipped, steps, zeros, seen, fired_all, fired, gsum, before,
                         time.perf_counter() - start)
            est.n_iter_ += 1
            monitored = loss if Xv is None else val_loss
            if Xv is not None:
                if monitored < est.best_loss_ * (1 - p["tol"]) or not np.isfinite(est.best_loss_):
                    est.best_loss_ = monitored
                    best = (model.params.copy(), model.buffers.copy())
                    since_best = 0
                else:
                    since_best += 1
            if p["lr_patience"] is not None:
                if monitored < lr_best * (1 - p["tol"]):
                    lr_best, since_lr = monitored, 0
                else:
                    since_lr += 1
                    if since_lr >= p["lr_patience"]:
                        opt.schedule.lr = max(opt.schedule.lr * p["lr_factor"], p["min_lr"])
                        since_lr = 0
            if self.rank == 0 and p["verbose"]:
                extra = "" if np.isnan(val_loss) else f" - val_loss {val_loss:.4g}"
                extra += f" - skipped {skipped}" if skipped else ""
                print(f"epoch {epoch + 1}: loss {loss:.4g}{extra} - lr {lr:.3g} - {self.size} ranks", file=sys.stdout,
                      flush=True)
            logs = {k: list(v[-1]) if isinstance(v[-1], list) else v[-1] for k, v in est.history_.items()}
            for cb in callbacks:
                getattr(cb, "on_epoch_end", lambda e, i, l: None)(est, epoch, logs)
            stop = est.stop_training_
            if p["callbacks"]:
                stop = comm.bcast(bool(stop), root=0)
                est.stop_training_ = stop
            if est.early_stopping and since_best >= p["patience"]:
                break
            if stop:
                break
        if best is not None:
            model.params[...], model.buffers[...] = best

    def _record(self, loss, lr, val_loss, skipped, steps, zeros, seen, fired_all, fired, gsum, before, seconds):
        est, model = self.est, self.est.model_
        h = est.history_
        nan = float("nan")
        h["loss"].append(float(loss))
        h["val_loss"].append(float(val_loss))
        h["lr"].append(float(lr))
        h["skipped"].append(int(skipped))
        h["time"].append(float(seconds))
        stats = {key: [nan] * len(self.hidden) for key in ("zero_fraction", "dead_units", "grad_norm",
                                                            "update_ratio")}
        weight_norm = []
        offset = 0
        for j, i in enumerate(self.hidden):
            s, k = self.blocks[i]
            weight_norm.append(math.sqrt(_sum_squares(model.params[s:s + k])))
            units = fired[j].size
            if self.statistics:
                if seen[j] > 0:
                    stats["zero_fraction"][j] = float(zeros[j] / seen[j])
                    stats["dead_units"][j] = float(1.0 - fired_all[offset:offset + units].mean())
                if steps:
                    stats["grad_norm"][j] = float(gsum[i] / steps)
                if before is not None:
                    d = model.params[s:s + k].astype(np.float64) - before[s:s + k]
                    base = float(np.dot(before[s:s + k].astype(np.float64), before[s:s + k]))
                    stats["update_ratio"][j] = math.sqrt(float(np.dot(d, d)) / base) if base > 0 else nan
            offset += units
        h["weight_norm"].append(weight_norm)
        for key, values in stats.items():
            h[key].append(values)
        est.loss_curve_ = h["loss"]


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
