"""Train fastnn estimators and scalers on Dask arrays and DataFrames, block by block.

Data bigger than memory stays in Dask: :func:`fit` computes one block of rows at a time
(and the next one in the background while the current one trains) and hands it to the
estimator's ``partial_fit``, for several epochs, in a seeded shuffled order. The whole
array is never materialized.

- ``fastnn.dask.fit(fastnn.DNNRegressor(...), X, y, epochs=20, random_state=0)``
- ``fastnn.dask.fit(fastnn.preprocessing.StandardScaler(), X)``: scalers take one pass
  over the blocks; their ``partial_fit`` merges are exact, so the statistics equal an
  in-memory ``fit`` up to float64 rounding.
- ``fastnn.dask.fit(make_pipeline(StandardScaler(), DNNClassifier()), X, y, epochs=20)``:
  one pass per transformer, then the transformed blocks stream into the estimator.

``dask_ml.wrappers.Incremental(fastnn.DNNRegressor(...))`` works too (one pass over the
blocks per ``fit``, one ``partial_fit`` per block, run on the workers).

This module needs the optional extra ``pip install 'fastnn[dask]'`` (dask, distributed,
dask-ml); the rest of fastnn never imports it.
"""
from __future__ import annotations

import concurrent.futures
import numbers
import warnings

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError("fastnn.dask needs the optional extra: pip install 'fastnn[dask]'") from exc

__all__ = ["fit"]


def fit(estimator, X, y=None, *, epochs=1, shuffle=True, random_state=None, classes=None,
        sample_weight=None, client=None):
    """Fit ``estimator`` on Dask data, streaming blocks of rows through ``partial_fit``.

    The estimator starts from scratch (as its ``fit`` would). Transformers (fastnn
    scalers, or any object with ``partial_fit`` and ``transform``) take exactly one
    pass over the blocks, in block order. An estimator that predicts (``DNNRegressor``,
    ``DNNClassifier``, or any estimator with ``partial_fit`` and ``predict``) takes
    ``epochs`` passes; each pass visits the blocks in a seeded random order and
    permutes the rows of each block (seeded), and every block is one ``partial_fit``
    call, i.e. one epoch of the estimator over that block's rows. A scikit-learn
    ``Pipeline`` of transformers ending in such an estimator is fitted step by step:
    one pass per transformer (its input is the block transformed by the steps before
    it), then ``epochs`` passes of transformed blocks into the final estimator.

    Memory: at most two blocks of ``X`` (with their ``y`` and ``sample_weight``) are in
    this process at once, the one training and the next one being computed, plus the
    copies that shuffling and the transformers make of the block in training. Choose the
    chunk size along the rows so that a few blocks fit in memory comfortably; the blocks
    must be computable independently (``from_zarr``, ``read_parquet``, ``from_array``,
    ``map_blocks`` ...): a graph in which every block depends on a reduction over the
    whole array recomputes that reduction for every block (``persist`` it first).

    Parameters
    ----------
    estimator : estimator instance with ``partial_fit``, or a ``sklearn.pipeline.Pipeline``
        ``fastnn.DNNRegressor``, ``fastnn.DNNClassifier``, a ``fastnn.preprocessing``
        scaler, or a Pipeline of scalers and (last) an estimator. Changed in place and
        returned. ``RobustScaler`` and ``Clipper(quantile_range=...)`` keep every row they
        are fitted on (exact quantiles), so they hold the whole data in memory: a
        ``UserWarning`` says so.
    X : dask array of shape (n_samples, n_features), or dask DataFrame
        A DataFrame is converted with ``to_dask_array(lengths=True)`` (one pass that
        counts the rows of each partition), and its column names reach the first step
        (``feature_names_in_``). Unknown chunk sizes (``nan``, e.g. after boolean
        indexing) are computed first, with ``compute_chunk_sizes`` (one pass, which also
        fills them in on your array). Chunks along the columns are merged.
    y : dask array or Series of shape (n_samples,) or (n_samples, n_outputs), NumPy array, or None
        Targets, needed by a final estimator; rechunked to the row chunks of ``X`` when
        its chunks differ (a NumPy array is split along them). Ignored when there is no
        final estimator (scalers alone), as scikit-learn's ``fit(X, y=None)`` does.
    epochs : int >= 1, default 1
        Passes over the blocks for the final estimator. A transformer is always fitted
        in one pass, so with scalers alone ``epochs`` must be 1.
    shuffle : bool, default True
        Visit the blocks in a random order per epoch and permute the rows within each
        block. False: blocks in order, rows in order (the estimator's own
        ``partial_fit`` may still shuffle its mini-batches: fastnn's does, seeded by its
        ``random_state``).
    random_state : int, numpy Generator/RandomState or None
        Seeds the block order and the row permutations. With an int here AND an int
        ``random_state`` on the estimator (its initial weights, mini-batch shuffles and
        dropout masks), the fit is bitwise reproducible, with or without ``client`` and
        for any number of workers.
    classes : array-like or None
        All class labels, for a classifier (passed to every ``partial_fit`` call). None:
        computed with ``dask.array.unique(y)``, which costs one extra pass over ``y``
        (and over whatever ``y`` is computed from, e.g. the DataFrame partitions it was
        selected from). Only for classifiers.
    sample_weight : dask array or Series of shape (n_samples,), NumPy array, or None
        Per-row weights for the final estimator (transformers do not take them).
    client : distributed.Client or None
        Compute the blocks on this Dask cluster (``client.compute``, one block ahead).
        None: ``dask.compute`` in one background thread, one block ahead, on the current
        scheduler (the default ``Client`` when one exists, else Dask's local threads).

    Returns
    -------
    estimator
        The fitted estimator (the same object).

    Notes
    -----
    Every block is one ``partial_fit`` call, so a fastnn estimator's ``n_iter_``,
    ``history_`` and callbacks count blocks (``epochs * n_blocks`` entries), not passes.
    When a callback sets ``estimator.stop_training_ = True``, streaming stops after
    that block. Empty blocks, and blocks whose ``sample_weight`` is all zero, are
    skipped. An error raised while fitting a block names the block and its rows (as a
    note on the exception, Python >= 3.11). Validation happens before any training: a
    bad argument leaves the estimator as it was.
    """
    steps, final = _steps(estimator)
    epochs = _check_epochs(epochs)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__} {shuffle!r}")
    if final is None and epochs != 1:
        raise ValueError(f"epochs={epochs}: {type(estimator).__name__} has no final estimator that trains for epochs; "
                         "transformers are fitted in one pass over the blocks, so leave epochs=1")
    if final is None and sample_weight is not None:
        raise ValueError("sample_weight is for a final estimator; transformers (scalers) do not take it")
    if classes is not None and (final is None or not _is_classifier(final)):
        raise ValueError(f"classes is only for a classifier, got {type(final or estimator).__name__}")
    client = _check_client(client)
    seed_rng = _rng(random_state)

    X, columns = _as_dask("X", X, rows=None, allow_numpy=False)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D of shape (n_samples, n_features), got a {X.ndim}-D dask array of shape "
                         f"{X.shape}; for a single feature use X.reshape(-1, 1)")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    X = _known_chunks(X)
    if X.shape[0] == 0:
        raise ValueError("X has 0 rows: nothing to fit")
    if X.shape[1] == 0:
        raise ValueError("X has 0 columns (features): nothing to fit")
    if final is not None:
        if y is None:
            raise ValueError(f"y is required to fit {type(final).__name__}")
        y, _ = _as_dask("y", y, rows=X.chunks[0], allow_numpy=True)
        y = _aligned("y", y, X, ndims=(1, 2))
        if sample_weight is not None:
            sample_weight, _ = _as_dask("sample_weight", sample_weight, rows=X.chunks[0], allow_numpy=True)
            sample_weight = _aligned("sample_weight", sample_weight, X, ndims=(1,))
        if _is_classifier(final) and classes is None:
            classes = _compute(client, da.unique(y))[0]
    else:
        y = None

    for step in [s for _, s in steps] + ([final] if final is not None else []):
        _reset(step)

    fetch = _Fetcher(client)
    try:
        n = X.numblocks[0]
        # transformers: one pass each, blocks in order, rows in order
        for k, (name, step) in enumerate(steps):
            before = [s for _, s in steps[:k]]
            for i, (Xb, _, _) in fetch.stream(X, None, None, [(i, i) for i in range(n)]):
                if Xb.shape[0]:
                    with _context(f"fitting step {name!r} ({type(step).__name__})", i, X):
                        Xb = _transformed(before, Xb, columns)
                        step.partial_fit(Xb)
                del Xb  # before the generator fetches the next-but-one block
        if final is None:
            return estimator
        order_rng, row_rng = (np.random.default_rng(s) for s in seed_rng.integers(2 ** 63, size=2))
        schedule = [((e, int(i)), int(i)) for e in range(epochs)
                    for i in (order_rng.permutation(n) if shuffle else range(n))]
        kwargs = {} if classes is None else {"classes": classes}
        transformers = [s for _, s in steps]
        for (epoch, i), (Xb, yb, wb) in fetch.stream(X, y, sample_weight, schedule):
            if Xb.shape[0] and (wb is None or np.any(wb)):  # skip empty blocks and all-zero weights
                if shuffle:
                    perm = row_rng.permutation(Xb.shape[0])
                    Xb, yb = Xb[perm], yb[perm]
                    wb = None if wb is None else wb[perm]
                if wb is not None:
                    kwargs["sample_weight"] = wb
                with _context(f"epoch {epoch} of {type(final).__name__}", i, X):
                    Xb = _transformed(transformers, Xb, columns)
                    final.partial_fit(Xb, yb, **kwargs)
                kwargs.pop("sample_weight", None)
            del Xb, yb, wb  # before the generator fetches the next-but-one block
            if getattr(final, "stop_training_", False):
                break
    finally:
        fetch.close()
    return estimator


# --------------------------------------------------------------------------- checks


def _steps(estimator):
    """([(name, transformer), ...], final estimator or None), every part checked."""
    if isinstance(estimator, type):
        raise TypeError(f"estimator must be an instance, got the class {estimator.__name__}: "
                        f"pass {estimator.__name__}(...)")
    from sklearn.pipeline import Pipeline
    if isinstance(estimator, Pipeline):
        parts = [(name, step) for name, step in estimator.steps if step is not None and step != "passthrough"]
        if not parts:
            raise ValueError("the Pipeline has no steps to fit (all are 'passthrough')")
    else:
        parts = [(type(estimator).__name__, estimator)]
    *head, (_, last) = parts
    final = last if hasattr(last, "predict") else None
    transformers = head if final is not None else parts
    for name, step in transformers:
        if not (hasattr(step, "partial_fit") and hasattr(step, "transform")):
            raise TypeError(f"step {name!r} ({type(step).__name__}) must be a transformer with partial_fit and "
                            "transform (fastnn.preprocessing scalers: StandardScaler, MinMaxScaler, LogScaler, ...) "
                            "to be fitted block by block")
        if hasattr(step, "_store_rows"):
            warnings.warn(f"{type(step).__name__} keeps a copy of every row it is fitted on (for exact quantiles): "
                          "fitting it on Dask blocks still holds the whole data in memory", UserWarning,
                          stacklevel=3)
    if final is not None and not hasattr(final, "partial_fit"):
        raise TypeError(f"{type(final).__name__} has no partial_fit, so it cannot learn block by block; use "
                        "fastnn.DNNRegressor, fastnn.DNNClassifier or another estimator with partial_fit")
    return transformers, final


def _is_classifier(est):
    from sklearn.base import is_classifier
    return is_classifier(est)


def _check_epochs(epochs):
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral):
        raise TypeError(f"epochs must be an int >= 1, got {type(epochs).__name__} {epochs!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return int(epochs)


def _rng(random_state):
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2 ** 31))
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise TypeError(f"random_state must be None, an int >= 0 or a numpy Generator/RandomState, got "
                        f"{type(random_state).__name__} {random_state!r}")
    if random_state < 0:
        raise ValueError(f"random_state must be >= 0, got {random_state}")
    return np.random.default_rng(int(random_state))


def _check_client(client):
    if client is None:
        return None
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed comes with the extra
        raise ImportError("client= needs distributed: pip install 'fastnn[dask]'") from None
    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client or None, got {type(client).__name__}")
    return client


def _as_dask(name, obj, rows, allow_numpy):
    """(dask array, column names or None) from a dask array, DataFrame or Series (or a
    NumPy array split into ``rows`` chunks, when allowed)."""
    if isinstance(obj, da.Array):
        return obj, None
    if dask.is_dask_collection(obj) and hasattr(obj, "to_dask_array"):  # dask DataFrame / Series
        columns = getattr(obj, "columns", None)
        arr = obj.to_dask_array(lengths=True)
        return arr, None if columns is None else list(columns)
    if allow_numpy and isinstance(obj, np.ndarray):
        if obj.shape[:1] != (sum(rows),):
            raise ValueError(f"X has {sum(rows)} rows but {name} has {obj.shape[0] if obj.ndim else 0}")
        return da.from_array(obj, chunks=(rows,) + obj.shape[1:]), None
    also = " or a NumPy array" if allow_numpy else ""
    hint = ("; for in-memory data call estimator.fit(X, y), or wrap it with "
            "dask.array.from_array(X, chunks=(rows_per_block, -1))") if isinstance(obj, np.ndarray) else ""
    raise TypeError(f"{name} must be a dask array, DataFrame or Series{also}, got {type(obj).__name__}{hint}")


def _known_chunks(arr):
    if any(np.isnan(c) for c in arr.chunks[0]):
        arr = arr.compute_chunk_sizes()  # one pass over the blocks, each counted and dropped
    return arr


def _aligned(name, arr, X, ndims):
    """``arr`` checked against X and chunked like X's rows (one chunk across columns)."""
    if arr.ndim not in ndims:
        shapes = " or ".join({1: "(n_samples,)", 2: "(n_samples, n_outputs)"}[d] for d in ndims)
        raise ValueError(f"{name} must have shape {shapes}, got a {arr.ndim}-D array of shape {arr.shape}")
    arr = _known_chunks(arr)
    if arr.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but {name} has {arr.shape[0]}: they must have the same rows")
    target = (X.chunks[0],) + tuple((n,) for n in arr.shape[1:])
    return arr if arr.chunks == target else arr.rechunk(target)


def _reset(est):
    """Back to unfitted, as the estimator's own ``fit`` starts."""
    if hasattr(est, "_reset"):  # fastnn.preprocessing
        est._reset()
        return
    for key in [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]:
        delattr(est, key)


# --------------------------------------------------------------------------- blocks


def _compute(client, *parts):
    if client is not None:
        return client.gather(client.compute(list(parts)))
    return dask.compute(*parts)


class _Fetcher:
    """Computes the blocks of a schedule, one ahead of the one being trained on."""

    def __init__(self, client):
        self.client = client
        self.pool = None if client is not None else concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="fastnn-dask-prefetch")
        self.pending = None

    def _submit(self, parts):
        parts = [p for p in parts if p is not None]
        if self.client is not None:
            return self.client.compute(parts)
        return self.pool.submit(dask.compute, *parts)

    def _result(self, handle):
        if self.client is not None:
            out = self.client.gather(handle)
            del handle[:]  # release the futures: the workers may drop the block
            return out
        return handle.result()

    def stream(self, X, y, w, schedule):
        """Yield ``(tag, (X block, y block or None, w block or None))`` for each
        ``(tag, block index)`` of ``schedule``, computing the next block in the
        background. The caller drops its references to a block before asking for the
        next one, so at most two blocks are held: the current one and the next."""
        def parts(i):
            return (X.blocks[i], None if y is None else y.blocks[i], None if w is None else w.blocks[i])

        def unpack(values):
            values = list(values)
            return tuple(values.pop(0) if p is not None else None for p in (X, y, w))

        if not schedule:
            return
        self.pending = self._submit(parts(schedule[0][1]))
        for k, (tag, _) in enumerate(schedule):
            following = self._submit(parts(schedule[k + 1][1])) if k + 1 < len(schedule) else None
            # no local name keeps the block: once the caller drops it, it is gone
            yield tag, unpack(self._take(following))

    def _take(self, following):
        """The current block's values; ``following`` becomes the pending fetch."""
        handle, self.pending = self.pending, following
        return self._result(handle)

    def close(self):
        pending, self.pending = self.pending, None
        if pending is not None:
            if self.client is not None:
                self.client.cancel(pending)
            else:
                pending.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _transformed(transformers, Xb, columns):
    if columns is not None:
        import pandas as pd  # a dask DataFrame came in, so pandas is there
        Xb = pd.DataFrame(Xb, columns=columns, copy=False)
    for t in transformers:
        Xb = t.transform(Xb)
    return Xb


class _context:
    """Adds which block (and rows) to an error raised while fitting it."""

    def __init__(self, what, i, X):
        self.what, self.i, self.X = what, i, X

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and hasattr(exc, "add_note"):  # Python >= 3.11
            start = int(sum(self.X.chunks[0][:self.i]))
            exc.add_note(f"fastnn.dask.fit: while {self.what} on block {self.i} "
                         f"(rows {start}:{start + self.X.chunks[0][self.i]})")
        return False
