"""fastnn.preprocessing against scikit-learn's scalers and NumPy references."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from fastnn import _core
from fastnn import threads as fastnn_threads
from fastnn import preprocessing as fp

from support import requires_openmp

sk_pre = pytest.importorskip("sklearn.preprocessing")


def awkward(rng, n=3001, dtype=np.float64):
    """Columns 1e-3 to 1e3 apart, a constant column, 5% NaN, a heavy-tailed column."""
    X = rng.standard_normal((n, 6))
    X[:, 0] = 1e-3 * X[:, 0] + 2e-3
    X[:, 1] = 1e3 * X[:, 1] - 5e2
    X[:, 2] = 7.25  # constant
    X[:, 3] = rng.standard_cauchy(n)  # heavy tail
    X[:, 5] = rng.exponential(3.0, n)
    X[rng.random((n, 6)) < 0.05] = np.nan
    return X.astype(dtype)


def tol(dtype):
    return {"rtol": 2e-5, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_standard_scaler_matches_sklearn(simd, rng, dtype):
    X = awkward(rng, dtype=dtype)
    ours, ref = fp.StandardScaler(), sk_pre.StandardScaler()
    Z, Zr = ours.fit_transform(X), ref.fit_transform(X)
    assert Z.dtype == dtype
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12 if dtype == np.float64 else 1e-6)
    np.testing.assert_allclose(ours.var_, ref.var_, rtol=1e-9 if dtype == np.float64 else 1e-5)
    np.testing.assert_allclose(ours.scale_, ref.scale_, rtol=1e-9 if dtype == np.float64 else 1e-5)
    np.testing.assert_array_equal(ours.n_samples_seen_, ref.n_samples_seen_)
    np.testing.assert_allclose(Z, Zr, equal_nan=True, **tol(dtype))
    assert np.array_equal(np.isnan(Z), np.isnan(X))
    assert ours.scale_[2] == 1.0  # constant column
    # an unseen value in the constant column is shifted, never blown up
    probe = np.nan_to_num(X[:2].copy())
    probe[:, 2] = 8.25
    np.testing.assert_allclose(ours.transform(probe)[:, 2], 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_mean,with_std", [(True, False), (False, True), (False, False)])
def test_standard_scaler_options(rng, dtype, with_mean, with_std):
    X = awkward(rng, n=500, dtype=dtype)
    ours = fp.StandardScaler(with_mean=with_mean, with_std=with_std).fit(X)
    ref = sk_pre.StandardScaler(with_mean=with_mean, with_std=with_std).fit(X)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), equal_nan=True, **tol(dtype))
    assert (ours.scale_ is None) == (ref.scale_ is None)
    assert (ours.mean_ is None) == (ref.mean_ is None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("feature_range", [(0, 1), (-3, 2)])
def test_minmax_scaler_matches_sklearn(simd, rng, dtype, clip, feature_range):
    X = awkward(rng, dtype=dtype)
    ours = fp.MinMaxScaler(feature_range=feature_range, clip=clip)
    ref = sk_pre.MinMaxScaler(feature_range=feature_range, clip=clip)
    Z, Zr = ours.fit_transform(X), ref.fit_transform(X)
    assert Z.dtype == dtype
    for name in ("data_min_", "data_max_", "data_range_", "scale_", "min_"):
        # scikit-learn computes min_ = lo - data_min_ * scale_ in float32 (cancellation):
        # absolute error ~ eps32 * |data_min_ * scale_|, in output units
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6,
                                   atol=1e-6 if dtype == np.float32 else 1e-12, err_msg=name)
    np.testing.assert_allclose(Z, Zr, equal_nan=True, **tol(dtype))
    unseen = np.nan_to_num(X[:50]) * 3 + 1  # outside the fitted range
    np.testing.assert_allclose(ours.transform(unseen), ref.transform(unseen), **tol(dtype))
    if clip:
        T = ours.transform(unseen)
        assert T.min() >= feature_range[0] and T.max() <= feature_range[1]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("quantile_range", [(25, 75), (10, 90), (0, 100)])
def test_robust_scaler_matches_sklearn(simd, rng, dtype, quantile_range):
    X = awkward(rng, dtype=dtype)
    ours = fp.RobustScaler(quantile_range=quantile_range).fit(X)
    ref = sk_pre.RobustScaler(quantile_range=quantile_range).fit(X)
    rt = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(ours.center_, ref.center_, rtol=rt, atol=rt)
    np.testing.assert_allclose(ours.scale_, ref.scale_, rtol=rt)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), equal_nan=True, **tol(dtype))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 100, 101])
def test_quantiles_match_numpy_percentile(rng, n):
    X = rng.standard_normal((n, 3))
    X[:, 1] = np.round(X[:, 1])  # ties
    percents = np.array([0.0, 10, 25, 50, 75, 90, 99.9, 100])
    q = percents / 100  # as numpy.percentile divides: the same q, so the same result bit for bit
    np.testing.assert_array_equal(_core.scaler_quantiles(X, q), np.percentile(X, percents, axis=0))


def chunks_of(X, k=13):
    cuts = np.sort(np.random.default_rng(5).choice(np.arange(1, X.shape[0]), k - 1, replace=False))
    return np.split(X, cuts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [fp.StandardScaler, fp.MinMaxScaler, fp.RobustScaler,
                                  lambda: fp.Clipper(quantile_range=(5, 95))])
def test_partial_fit_over_13_uneven_chunks_equals_fit(rng, dtype, make):
    X = awkward(rng, dtype=dtype)
    parts = chunks_of(X)
    assert len(parts) == 13 and len({len(p) for p in parts}) > 1
    whole, streamed = make().fit(X), make()
    for part in parts:
        streamed.partial_fit(part)
    for name in ("mean_", "var_", "scale_", "data_min_", "data_max_", "center_", "lower_", "upper_"):
        if hasattr(whole, name):
            np.testing.assert_allclose(getattr(streamed, name), getattr(whole, name), rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(streamed.n_samples_seen_, whole.n_samples_seen_)
    np.testing.assert_allclose(streamed.transform(X), whole.transform(X), equal_nan=True, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [fp.StandardScaler, fp.MinMaxScaler, fp.RobustScaler,
                                  lambda: fp.MinMaxScaler(feature_range=(-2, 5)), fp.LogScaler,
                                  lambda: fp.LogScaler(offset=3.5)])
def test_inverse_transform_round_trips(rng, dtype, make):
    X = np.abs(awkward(rng, n=400, dtype=dtype))
    est = make().fit(X)
    back = est.inverse_transform(est.transform(X))
    assert back.dtype == dtype
    np.testing.assert_allclose(back, X, equal_nan=True, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("make", [fp.StandardScaler, fp.MinMaxScaler, fp.RobustScaler, fp.LogScaler,
                                  fp.Clipper, fp.OutlierRemover])
def test_wrong_feature_count_after_fit_is_value_error(rng, make):
    est = make().fit(np.abs(rng.standard_normal((20, 4))))
    method = est.mask if isinstance(est, fp.OutlierRemover) else est.transform
    with pytest.raises(ValueError, match="3 features"):
        method(np.ones((5, 3)))


STATS_FIELDS = ("count", "sum", "m2", "min", "max", "shift")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_statistics_identical_for_any_thread_count(rng, dtype, weighted):
    X = awkward(rng, n=20011, dtype=dtype)
    X[:, 4] += 1e9  # a large offset
    w = rng.random(X.shape[0]) * 3 if weighted else None
    results = []
    for n in (1, 2, 3):
        _core.set_num_threads(n)
        results.append(_core.scaler_column_stats(X, moments=True, extrema=not weighted, weights=w))
    for other in results[1:]:
        for name in STATS_FIELDS:
            np.testing.assert_array_equal(getattr(results[0], name), getattr(other, name), err_msg=name)
    for n in (1, 2, 3):
        with fastnn_threads(n):
            est = fp.StandardScaler().fit(X, sample_weight=w)
        if n == 1:
            first = est
        np.testing.assert_array_equal(est.mean_, first.mean_)
        np.testing.assert_array_equal(est.var_, first.var_)


@requires_openmp
def test_transform_identical_for_any_thread_count(rng):
    X = awkward(rng, n=20011, dtype=np.float32)
    outs = []
    for n in (1, 2):
        _core.set_num_threads(n)
        outs.append(fp.StandardScaler().fit_transform(X))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_log_scaler(rng):
    X = np.abs(awkward(rng, n=300))
    np.testing.assert_allclose(fp.LogScaler().fit_transform(X), np.log(X + 1.0), equal_nan=True, rtol=1e-14)
    np.testing.assert_allclose(fp.LogScaler(offset=0.5).fit_transform(X), np.log(X + 0.5), equal_nan=True,
                               rtol=1e-14)
    X32 = X.astype(np.float32)
    assert fp.LogScaler().fit_transform(X32).dtype == np.float32


def test_log_scaler_errors_name_the_column(rng):
    X = np.abs(rng.standard_normal((30, 4)))
    bad = X.copy()
    bad[7, 2] = -1.0  # x + offset == 0
    with pytest.raises(ValueError, match=r"column 2\b.*offset"):
        fp.LogScaler().fit(bad)
    est = fp.LogScaler().fit(X)
    bad[7, 2] = -3.0
    with pytest.raises(ValueError, match=r"column 2\b"):
        est.transform(bad)
    fp.LogScaler(offset=4.0).fit(bad)  # -3 + 4 > 0: fine
    with pytest.raises(ValueError, match="offset"):
        fp.LogScaler(offset=float("nan")).fit(X)


def test_clipper_fixed_bounds_as_in_the_lecture(rng):
    X = 10 * rng.standard_normal((500, 3))
    X[3, 1] = np.nan
    Z = fp.Clipper(lower=-7, upper=10).fit_transform(X)
    np.testing.assert_array_equal(Z, np.clip(X, -7, 10))  # NaN kept
    only_upper = fp.Clipper(upper=10).fit_transform(X)
    np.testing.assert_array_equal(only_upper, np.minimum(X, 10))
    per_column = fp.Clipper(lower=[-1, -2, -3], upper=[1, 2, 3]).fit_transform(X)
    np.testing.assert_array_equal(per_column, np.clip(X, [-1, -2, -3], [1, 2, 3]))
    with pytest.raises(ValueError, match="lower must be <= upper"):
        fp.Clipper(lower=5, upper=1).fit(X)
    with pytest.raises(ValueError, match="either"):
        fp.Clipper(lower=0, quantile_range=(1, 99)).fit(X)
    with pytest.raises(ValueError, match="quantile range"):
        fp.Clipper(quantile_range=(90, 10)).fit(X)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipper_at_quantiles(rng, dtype):
    X = awkward(rng, dtype=dtype)
    est = fp.Clipper(quantile_range=(1, 99)).fit(X)
    lo, hi = np.nanpercentile(X.astype(np.float64), [1, 99], axis=0)
    np.testing.assert_allclose(est.lower_, lo, rtol=1e-12)
    np.testing.assert_allclose(est.upper_, hi, rtol=1e-12)
    np.testing.assert_allclose(est.transform(X), np.clip(X, lo.astype(dtype), hi.astype(dtype)), equal_nan=True,
                               **tol(dtype))


@pytest.mark.parametrize("method", ["zscore", "iqr"])
def test_outlier_remover_drops_planted_outliers_and_keeps_y_aligned(rng, method):
    X = rng.standard_normal((2000, 4))
    planted = np.array([5, 77, 1500])
    X[planted, [0, 2, 3]] = [40.0, -55.0, 80.0]
    X[10, 1] = np.nan  # NaN never makes a row an outlier
    y = np.arange(2000)
    remover = fp.OutlierRemover(method=method, threshold=6.0 if method == "zscore" else 4.0).fit(X)
    mask = remover.mask(X)
    assert mask.dtype == bool and mask.shape == (2000,)
    np.testing.assert_array_equal(np.flatnonzero(~mask), planted)
    Xk, yk = remover.remove(X, y)
    assert Xk.shape == (1997, 4)
    np.testing.assert_array_equal(Xk, X[yk])  # rows and targets stay in step
    np.testing.assert_array_equal(remover.remove(X), Xk)
    with pytest.raises(ValueError, match="one entry per row"):
        remover.remove(X, y[:-1])
    with pytest.raises(ValueError, match="method"):
        fp.OutlierRemover(method="mad").fit(X)


def test_outlier_remover_default_zscore_threshold_matches_numpy(rng):
    X = rng.standard_normal((3000, 2))
    mu, sd = X.mean(axis=0), X.std(axis=0)
    expected = (np.abs((X - mu) / sd) <= 3.0).all(axis=1)
    np.testing.assert_array_equal(fp.OutlierRemover().fit(X).mask(X), expected)


def test_infinity_and_bad_input_are_rejected(rng):
    X = rng.standard_normal((10, 3))
    X[4, 1] = np.inf
    for est in (fp.StandardScaler(), fp.MinMaxScaler(), fp.RobustScaler(), fp.Clipper()):
        with pytest.raises(ValueError, match="infinity"):
            est.fit(X)
    ok = fp.StandardScaler().fit(np.ones((4, 3)))
    with pytest.raises(ValueError, match="infinity"):
        ok.transform(X)
    with pytest.raises(ValueError, match="2D"):
        fp.StandardScaler().fit(np.ones(5))
    with pytest.raises(ValueError, match="feature range"):
        fp.MinMaxScaler(feature_range=(1, 0)).fit(X[:3, :1])


def test_pickle_round_trip(rng):
    X = awkward(rng, n=200)
    for est in (fp.StandardScaler(), fp.MinMaxScaler(clip=True), fp.RobustScaler(), fp.LogScaler(),
                fp.Clipper(quantile_range=(5, 95)), fp.OutlierRemover(method="iqr")):
        est.fit(np.abs(X))
        copy = pickle.loads(pickle.dumps(est))
        if isinstance(est, fp.OutlierRemover):
            np.testing.assert_array_equal(copy.mask(np.abs(X)), est.mask(np.abs(X)))
        else:
            np.testing.assert_array_equal(copy.transform(np.abs(X)), est.transform(np.abs(X)))


def test_feature_names_out_and_set_output(rng):
    X = rng.standard_normal((20, 3))
    est = fp.StandardScaler().fit(X)
    assert list(est.get_feature_names_out()) == ["x0", "x1", "x2"]
    assert est.set_output(transform="default") is est
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    est = fp.StandardScaler().set_output(transform="pandas").fit(df)
    assert list(est.feature_names_in_) == ["a", "b", "c"]
    out = est.transform(df)
    assert list(out.columns) == ["a", "b", "c"]


def _estimator_check_cases():
    from sklearn.utils.estimator_checks import parametrize_with_checks
    return parametrize_with_checks([
        fp.StandardScaler(), fp.StandardScaler(with_mean=False), fp.StandardScaler(with_std=False),
        fp.StandardScaler(with_mean=False, with_std=False), fp.StandardScaler(copy=False), fp.MinMaxScaler(),
        fp.MinMaxScaler(feature_range=(-1, 2), clip=True), fp.MinMaxScaler(copy=False), fp.RobustScaler(),
        fp.RobustScaler(with_centering=False), fp.RobustScaler(with_scaling=False),
        fp.RobustScaler(unit_variance=True, quantile_range=(10, 90)), fp.RobustScaler(copy=False),
        fp.LogScaler(), fp.LogScaler(offset=5.0), fp.LogScaler(offset=0.5),
        fp.Clipper(lower=-7, upper=10), fp.Clipper(quantile_range=(5, 95)),
    ], expected_failed_checks=_expected_failed_checks)


def _expected_failed_checks(estimator):
    if getattr(estimator, "copy", True) is False:
        # transform(X) then transform(X[idx]): the first call scaled X in place, so the second
        # sees scaled data. scikit-learn's own copy=False scalers fail this check too.
        return {"check_methods_sample_order_invariance": "copy=False transforms X in place (as scikit-learn's)"}
    return {}


@_estimator_check_cases()
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _misaligned_copy(X):
    """X's values in a C-contiguous array whose address is not a multiple of its itemsize
    (as a view into a byte buffer from pickle protocol 5 or dask can be)."""
    buf = bytearray(X.nbytes + 1)
    out = np.frombuffer(buf, dtype=X.dtype, offset=1, count=X.size).reshape(X.shape)
    out[...] = X
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


@pytest.mark.parametrize("make", [fp.StandardScaler, fp.MinMaxScaler, fp.RobustScaler, fp.LogScaler])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_input_gives_the_aligned_result(rng, make, dtype):
    """The kernels read through a T*, which needs alignment (UBSan's "load of misaligned
    address"): a misaligned input is read from an aligned copy, with identical results."""
    X = np.abs(rng.standard_normal((60, 4))).astype(dtype)
    Xm = _misaligned_copy(X)
    expected = make().fit(X).transform(X)
    got = make().fit(Xm).transform(Xm)
    np.testing.assert_array_equal(got, expected)


def test_misaligned_output_buffer_is_refused():
    x = np.ones((5, 3))
    out = _misaligned_copy(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="out must be aligned"):
        _core.scaler_affine(x, out, None, None, None, None, None)
