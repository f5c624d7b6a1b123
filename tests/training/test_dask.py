"""fastnn.dask: estimators and scalers trained block by block on Dask arrays.

Everything runs on a dask.distributed LocalCluster bound to 127.0.0.1 with two worker
processes, started and stopped by the module fixture; the counting test uses Dask's
synchronous scheduler so that a counter in this process sees every block computation.
The data is larger than one block (20,000 x 8 in 8 blocks, or 4 blocks for the
pipeline; smaller sets in 4 blocks where only the mechanics matter).
"""
from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastnn  # noqa: E402
import fastnn.dask as fd  # noqa: E402
from fastnn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler  # noqa: E402

N, N_TEST, D, BLOCK = 20_000, 5_000, 8, 2_500
# batch_size 50 divides the 2,500-row blocks: no short last batch per block, so the
# streamed fit takes the same number of equal-sized steps per epoch as the in-memory one
REG = dict(hidden_units=(32, 16), batch_size=50, epochs=3, random_state=0)
CLF = dict(hidden_units=(32, 16), batch_size=50, epochs=3, random_state=0)
# Tolerances, measured on this data with random_state (estimator and fit) 0..9. The two
# fits differ only in which rows share a mini-batch (rows of one block, versus rows of
# the whole data) and in the order of the blocks, so they differ about as much as two
# seeds do. Test R^2 of the regressor, 8 blocks: in memory 0.9772 +- 0.0017, fastnn.dask
# 0.9760 +- 0.0023, largest per-seed gap 0.0043; the pipeline, 4 blocks: 0.9770 +- 0.0020
# vs 0.9769 +- 0.0021, gap <= 0.0032. 0.01 is over four seed-to-seed standard deviations.
R2_TOL = 0.01
# Test accuracy, 3 classes: 0.9150 +- 0.0028 vs 0.9166 +- 0.0038, largest gap 0.0078.
ACC_TOL = 0.02


def target(X, rng):
    return (X[:, 0] + 2 * np.sin(X[:, 1]) + X[:, 2] * X[:, 3] + 0.5 * X[:, 4] ** 2 - X[:, 5]
            + 0.1 * rng.standard_normal(len(X)))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(20260101)
    X, Xt = rng.standard_normal((N, D)), rng.standard_normal((N_TEST, D))
    return X, target(X, rng), Xt, target(Xt, rng)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster
    # a free port for the dashboard: another test run on this machine may hold the default 8787
    kw = dict(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0")
    try:
        cluster = LocalCluster(processes=True, **kw)
    except Exception as exc:  # a sandbox that cannot spawn worker processes
        print(f"\nLocalCluster with worker processes failed ({exc!r}); using threads (processes=False)",
              file=sys.stderr)
        cluster = LocalCluster(processes=False, **kw)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def dask_xy(X, y, block=BLOCK):
    return da.from_array(X, chunks=(block, X.shape[1])), da.from_array(y, chunks=(block,) + y.shape[1:])


def small(n=4_000, block=1_000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(n)
    return X, y, *dask_xy(X, y, block)


def test_cluster_is_local_with_two_workers(client):
    workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    assert all(addr.split("://")[1].startswith("127.0.0.1:") for addr in workers)


# --------------------------------------------------------------------------- scalers


@pytest.mark.parametrize("Scaler, attrs", [
    (StandardScaler, ("mean_", "var_", "scale_", "n_samples_seen_")),
    (MinMaxScaler, ("data_min_", "data_max_", "data_range_", "scale_", "min_", "n_samples_seen_")),
])
def test_scaler_statistics_equal_in_memory_fit(client, Scaler, attrs):
    rng = np.random.default_rng(1)
    X = rng.normal(loc=np.arange(1, D + 1) * 10.0, scale=np.arange(1, D + 1), size=(N, D))
    X[rng.random(X.shape) < 0.01] = np.nan  # ignored by the fit, in memory and streamed
    Xd = da.from_array(X, chunks=(BLOCK, D))
    streamed = fd.fit(Scaler(), Xd)
    whole = Scaler().fit(X)
    for attr in attrs:
        np.testing.assert_allclose(getattr(streamed, attr), getattr(whole, attr), rtol=1e-12, atol=0, err_msg=attr)
    np.testing.assert_allclose(streamed.transform(X), whole.transform(X), rtol=1e-12, atol=1e-12)


def test_scaler_refit_starts_from_scratch(client):
    X, _, Xd, _ = small()
    scaler = fd.fit(StandardScaler(), Xd)
    assert fd.fit(scaler, Xd) is scaler
    assert scaler.n_samples_seen_ == len(X)  # not 2 * len(X): fit resets
    np.testing.assert_allclose(scaler.mean_, X.mean(axis=0), rtol=1e-12)


def test_quantile_scalers_warn_they_keep_every_row(client):
    X, _, Xd, _ = small()
    with pytest.warns(UserWarning, match="keeps a copy of every row"):
        est = fd.fit(RobustScaler(), Xd)
    np.testing.assert_allclose(est.center_, np.median(X, axis=0), rtol=1e-12)


# --------------------------------------------------------------------------- estimators


@pytest.fixture(scope="module")
def regressors(client, data):
    X, y, Xt, yt = data
    whole = fastnn.DNNRegressor(**REG).fit(X, y)
    streamed = fd.fit(fastnn.DNNRegressor(**REG), *dask_xy(X, y), epochs=REG["epochs"], random_state=0)
    return whole, streamed


def test_regressor_matches_in_memory_quality(regressors, data):
    _, _, Xt, yt = data
    whole, streamed = regressors
    r2_whole, r2_streamed = whole.score(Xt, yt), streamed.score(Xt, yt)
    print(f"\ntest R^2: in memory {r2_whole:.4f}, fastnn.dask {r2_streamed:.4f}")
    assert r2_whole > 0.97 and r2_streamed > 0.97
    assert abs(r2_streamed - r2_whole) <= R2_TOL
    # one partial_fit (one epoch over a block) per block and epoch
    assert streamed.n_iter_ == REG["epochs"] * N // BLOCK


def test_classifier_with_classes_matches_in_memory_accuracy(client, data):
    X, y, Xt, yt = data
    edges = np.quantile(y, [1 / 3, 2 / 3])
    labels = np.array(["high", "low", "mid"])
    names = np.array(["low", "mid", "high"])
    c, ct = names[np.searchsorted(edges, y)], names[np.searchsorted(edges, yt)]
    whole = fastnn.DNNClassifier(**CLF).fit(X, c)
    streamed = fd.fit(fastnn.DNNClassifier(**CLF), *dask_xy(X, c), epochs=CLF["epochs"], random_state=0,
                      classes=labels)
    acc_whole, acc_streamed = whole.score(Xt, ct), streamed.score(Xt, ct)
    print(f"\ntest accuracy: in memory {acc_whole:.4f}, fastnn.dask {acc_streamed:.4f}")
    np.testing.assert_array_equal(streamed.classes_, labels)
    assert acc_whole > 0.88 and acc_streamed > 0.88
    assert abs(acc_streamed - acc_whole) <= ACC_TOL
    assert streamed.predict_proba(Xt).shape == (N_TEST, 3)


def test_classifier_classes_computed_from_y(client):
    X, y, Xd, _ = small()
    labels = np.where(y > 0, "pos", "neg")
    clf = fd.fit(fastnn.DNNClassifier(hidden_units=(8,), random_state=0), Xd, da.from_array(labels, chunks=1_000))
    np.testing.assert_array_equal(clf.classes_, ["neg", "pos"])
    assert clf.score(X, labels) > 0.8


def test_pipeline_of_scaler_and_regressor_on_a_dataframe(client, data):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import make_pipeline
    X, y, Xt, yt = data
    cols = [f"f{j}" for j in range(D)]
    raw, raw_t = X * 100.0 + 7.0, Xt * 100.0 + 7.0  # badly scaled: the scaler matters
    frame = dd.from_pandas(pd.DataFrame(raw, columns=cols), npartitions=4)
    target_ = dd.from_pandas(pd.Series(y, name="y"), npartitions=4)
    pipe = fd.fit(make_pipeline(StandardScaler(), fastnn.DNNRegressor(**REG)), frame, target_,
                  epochs=REG["epochs"], random_state=0)
    scaler, reg = pipe[0], pipe[-1]
    whole = StandardScaler().fit(raw)
    np.testing.assert_allclose(scaler.mean_, whole.mean_, rtol=1e-12, atol=0)
    np.testing.assert_allclose(scaler.var_, whole.var_, rtol=1e-12, atol=0)
    assert list(scaler.feature_names_in_) == cols  # the DataFrame's columns reach the first step
    assert reg.n_iter_ == REG["epochs"] * 4
    in_memory = make_pipeline(StandardScaler(), fastnn.DNNRegressor(**REG)).fit(raw, y)
    r2 = pipe.score(pd.DataFrame(raw_t, columns=cols), yt)
    print(f"\npipeline test R^2: in memory {in_memory.score(raw_t, yt):.4f}, fastnn.dask {r2:.4f}")
    assert abs(r2 - in_memory.score(raw_t, yt)) <= R2_TOL


def test_dask_ml_incremental(client):
    pytest.importorskip("dask_ml")
    from dask_ml.wrappers import Incremental
    X, y, Xd, yd = small()
    Xt, yt, Xtd, _ = small(seed=1)
    inc = Incremental(fastnn.DNNRegressor(hidden_units=(16,), random_state=0), random_state=0)
    inc.fit(Xd, yd)  # one pass: one partial_fit per block, run on the workers
    assert inc.estimator_.n_iter_ == 4
    pred = inc.predict(Xtd)
    assert isinstance(pred, da.Array)
    pred = pred.compute()
    np.testing.assert_array_equal(pred, inc.estimator_.predict(Xt))
    assert 1 - np.sum((yt - pred) ** 2) / np.sum((yt - yt.mean()) ** 2) > 0.95
    inc.partial_fit(Xd, yd)  # continues from estimator_
    assert inc.estimator_.n_iter_ == 8


def test_dask_ml_incremental_classifier(client):
    pytest.importorskip("dask_ml")
    from dask_ml.wrappers import Incremental
    X, y, Xd, _ = small()
    labels = (y > 0).astype(int)
    inc = Incremental(fastnn.DNNClassifier(hidden_units=(8,), random_state=0))
    inc.fit(Xd, da.from_array(labels, chunks=1_000), classes=[0, 1])
    proba = inc.predict_proba(da.from_array(X, chunks=(1_000, 4))).compute()
    assert proba.shape == (len(X), 2)
    assert inc.score(Xd, da.from_array(labels, chunks=1_000)) > 0.8


# --------------------------------------------------------------------------- memory


def test_each_block_is_computed_once_per_pass():
    """Counted in this process (synchronous scheduler): every block is computed exactly
    once per pass, and X and y of a block come from ONE computation of their source."""
    n_blocks, rows = 6, 500
    counts = np.zeros(n_blocks, dtype=int)

    def source(block, block_id=None):
        counts[block_id[0]] += 1
        rng = np.random.default_rng(block_id[0])
        return rng.standard_normal(block.shape)

    X = da.zeros((n_blocks * rows, 4), chunks=(rows, 4)).map_blocks(source, dtype=float, meta=np.empty((0, 0)))
    y = X[:, 0] - X[:, 1]
    from sklearn.pipeline import make_pipeline
    with dask.config.set(scheduler="synchronous"):
        fd.fit(make_pipeline(StandardScaler(), fastnn.DNNRegressor(hidden_units=(4,), random_state=0)),
               X, y, epochs=3, random_state=0)
    np.testing.assert_array_equal(counts, 1 + 3)  # the scaler's pass, then three epochs


@pytest.mark.parametrize("use_client", [False, True], ids=["dask.compute", "client"])
def test_peak_memory_stays_near_two_blocks(client, use_client):
    """A 24 MB array in 12 blocks of 2 MB: the streamed fit peaks near two blocks in this
    process (the one training, the one being fetched); computing the whole array would
    need all twelve."""
    n_blocks, rows, cols = 12, 10_000, 25
    X = da.random.default_rng(0).standard_normal((n_blocks * rows, cols), chunks=(rows, cols))
    y = X[:, 0] - 2 * X[:, 1]
    block_bytes = rows * cols * 8
    est = fastnn.DNNRegressor(hidden_units=(8,), batch_size=256, random_state=0)
    tracemalloc.start()
    try:
        fd.fit(est, X, y, epochs=1, random_state=0, client=client if use_client else None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\npeak traced memory {peak / 2**20:.1f} MiB = {peak / block_bytes:.2f} blocks "
          f"(whole array {n_blocks} blocks)")
    assert peak < 4 * block_bytes


# --------------------------------------------------------------------------- determinism


def test_same_random_state_gives_bitwise_same_weights(client):
    X, y, Xd, yd = small()

    def run(seed, **kw):
        est = fastnn.DNNRegressor(hidden_units=(16,), random_state=0)
        return fd.fit(est, Xd, yd, epochs=2, random_state=seed, **kw).model_.params.copy()

    first = run(7)
    np.testing.assert_array_equal(run(7, client=client), first)  # and with or without client
    assert not np.array_equal(run(8), first)


def test_unshuffled_stream_is_partial_fit_over_the_blocks_in_order(client):
    X, y, Xd, yd = small()
    streamed = fd.fit(fastnn.DNNRegressor(hidden_units=(16,), random_state=0), Xd, yd, shuffle=False)
    by_hand = fastnn.DNNRegressor(hidden_units=(16,), random_state=0)
    for start in range(0, len(X), 1_000):
        by_hand.partial_fit(X[start:start + 1_000], y[start:start + 1_000])
    np.testing.assert_array_equal(streamed.model_.params, by_hand.model_.params)


def test_sample_weight_streams_with_its_rows(client):
    X, y, Xd, yd = small()
    w = np.ones(len(X))
    unweighted = fd.fit(fastnn.DNNRegressor(hidden_units=(16,), random_state=0), Xd, yd, random_state=1)
    ones = fd.fit(fastnn.DNNRegressor(hidden_units=(16,), random_state=0), Xd, yd, random_state=1,
                  sample_weight=da.from_array(w, chunks=700))  # rechunked to X's blocks
    np.testing.assert_allclose(ones.model_.params, unweighted.model_.params, rtol=1e-5, atol=1e-6)
    w[: len(X) // 2] = 0.0
    half = fd.fit(fastnn.DNNRegressor(hidden_units=(16,), random_state=0), Xd, yd, random_state=1, sample_weight=w)
    assert not np.allclose(half.model_.params, unweighted.model_.params)


def test_a_callback_can_stop_the_stream(client):
    from fastnn.callbacks import LambdaCallback
    X, y, Xd, yd = small()

    def stop_after_three(est, epoch, logs):
        est.stop_training_ = epoch >= 2

    reg = fastnn.DNNRegressor(hidden_units=(8,), random_state=0,
                              callbacks=[LambdaCallback(on_epoch_end=stop_after_three)])
    fd.fit(reg, Xd, yd, epochs=5, random_state=0)
    assert reg.n_iter_ == 3  # three blocks (partial_fit calls), not 5 epochs x 4 blocks


# --------------------------------------------------------------------------- input handling


def test_y_chunks_are_aligned_with_x(client):
    X, y, Xd, _ = small()
    reg = fd.fit(fastnn.DNNRegressor(hidden_units=(8,), random_state=0), Xd, da.from_array(y, chunks=300),
                 random_state=0)
    same = fd.fit(fastnn.DNNRegressor(hidden_units=(8,), random_state=0), Xd, da.from_array(y, chunks=1_000),
                  random_state=0)
    np.testing.assert_array_equal(reg.model_.params, same.model_.params)


def test_unknown_chunk_sizes_are_computed(client):
    X, y, Xd, yd = small()
    keep = da.from_array(X[:, 0] > -0.5, chunks=1_000)
    Xu, yu = Xd[keep], yd[keep]
    assert np.isnan(Xu.shape[0])
    reg = fd.fit(fastnn.DNNRegressor(hidden_units=(8,), random_state=0), Xu, yu, random_state=0)
    assert reg.n_iter_ == 4
    scaler = fd.fit(StandardScaler(), Xu)
    np.testing.assert_allclose(scaler.mean_, X[X[:, 0] > -0.5].mean(axis=0), rtol=1e-12)


def test_errors_name_the_problem(client):
    X, y, Xd, yd = small()
    reg = fastnn.DNNRegressor(hidden_units=(8,))
    with pytest.raises(TypeError, match="X must be a dask array.*from_array"):
        fd.fit(reg, X, yd)
    with pytest.raises(TypeError, match="y must be a dask array"):
        fd.fit(reg, Xd, list(y))
    with pytest.raises(ValueError, match="X must be 2-D.*reshape"):
        fd.fit(reg, Xd[:, 0], yd)
    with pytest.raises(ValueError, match="X has 4000 rows but y has 3999"):
        fd.fit(reg, Xd, yd[:-1])
    with pytest.raises(ValueError, match="X has 4000 rows but y has 10"):
        fd.fit(reg, Xd, y[:10])
    with pytest.raises(ValueError, match="y must have shape"):
        fd.fit(reg, Xd, da.zeros((4_000, 2, 2), chunks=1_000))
    with pytest.raises(ValueError, match="y is required"):
        fd.fit(reg, Xd)
    with pytest.raises(TypeError, match="instance, got the class DNNRegressor"):
        fd.fit(fastnn.DNNRegressor, Xd, yd)
    with pytest.raises(TypeError, match="no partial_fit"):
        from sklearn.ensemble import RandomForestRegressor
        fd.fit(RandomForestRegressor(), Xd, yd)
    with pytest.raises(TypeError, match="transformer with partial_fit and transform"):
        from fastnn.preprocessing import OutlierRemover
        fd.fit(OutlierRemover(), Xd)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        fd.fit(reg, Xd, yd, epochs=0)
    with pytest.raises(ValueError, match="leave epochs=1"):
        fd.fit(StandardScaler(), Xd, epochs=3)
    with pytest.raises(ValueError, match="classes is only for a classifier"):
        fd.fit(reg, Xd, yd, classes=[0, 1])
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        fd.fit(reg, Xd, yd, client="tcp://127.0.0.1:8786")
    with pytest.raises(TypeError, match="random_state must be"):
        fd.fit(reg, Xd, yd, random_state="seed")
    assert not hasattr(reg, "model_")  # nothing was trained


def test_an_error_in_a_block_says_which_block(client):
    X, y, Xd, yd = small()
    X = X.copy()
    X[2_500, 1] = np.nan
    with pytest.raises(ValueError, match="NaN") as info:
        fd.fit(fastnn.DNNRegressor(hidden_units=(8,)), da.from_array(X, chunks=(1_000, 4)), yd, shuffle=False)
    if sys.version_info >= (3, 11):
        assert "block 2 (rows 2000:3000)" in "\n".join(info.value.__notes__)


# --------------------------------------------------------------------------- optional extra


def test_without_dask_fastnn_works_and_fastnn_dask_says_what_to_install():
    """dask hidden (a None entry in sys.modules makes its import fail): fastnn, its
    estimators and scalers import and work, and never reach for dask; only
    ``import fastnn.dask`` fails, saying which extra to install."""
    code = ("import sys\n"
            "sys.modules['dask'] = None\n"
            "import numpy as np, fastnn\n"
            "from fastnn import estimators, preprocessing\n"
            "X = np.random.default_rng(0).standard_normal((64, 3)); y = X.sum(axis=1)\n"
            "reg = fastnn.DNNRegressor(hidden_units=(4,), epochs=2, random_state=0).fit(X, y)\n"
            "assert reg.predict(X).shape == (64,)\n"
            "preprocessing.StandardScaler().fit(X)\n"
            "assert sys.modules['dask'] is None\n"
            "assert 'distributed' not in sys.modules and 'dask_ml' not in sys.modules\n"
            "try:\n"
            "    import fastnn.dask\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
            "else:\n"
            "    raise SystemExit('import fastnn.dask did not fail')\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    assert "fastnn.dask needs the optional extra: pip install 'fastnn[dask]'" in out.stdout
