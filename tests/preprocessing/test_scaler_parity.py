"""Scaler parity with scikit-learn 1.9 (issue 17) and the float range (issue 15).

Exact statistics (a constant column's variance is 0, the mean of data at offsets of
1e8..1e12 is the correctly rounded mean), ``sample_weight``, ``copy=False`` in place,
``RobustScaler(with_centering, with_scaling, unit_variance)``, attribute dtypes, the
``positive_only`` tag, sparse input, callbacks, and overflow errors naming the column.
"""
from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

from fastnn import preprocessing as fp
from fastnn import threads

from support import OPENMP

sk_pre = pytest.importorskip("sklearn.preprocessing")

DTYPES = [np.float32, np.float64]
SCALERS = [fp.StandardScaler, fp.MinMaxScaler, fp.RobustScaler]


def exact_mean(col):
    """The correctly rounded mean of the finite values of col."""
    vals = [Fraction(float(v)) for v in col if not math.isnan(v)]
    return float(sum(vals, Fraction(0)) / len(vals))


# ----------------------------------------------------------------------------- exact statistics
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [0.0, 1e-10, 0.1, 7.25, -3.3e5, 1e10, 123456789.123])
def test_constant_column_has_exactly_zero_variance(simd, dtype, value):
    X = np.full((1031, 3), value, dtype=dtype)
    X[:, 1] = np.arange(1031)
    X[::7, 2] = np.nan
    for est in (fp.StandardScaler().fit(X), fp.StandardScaler().fit(X, sample_weight=np.linspace(0.5, 2, 1031))):
        assert est.var_[0] == 0.0 and est.var_[2] == 0.0
        assert est.mean_[0] == float(dtype(value)) and est.mean_[2] == float(dtype(value))
        assert est.scale_[0] == 1.0 and est.scale_[2] == 1.0
    streamed = fp.StandardScaler()
    for part in np.array_split(X, 9):
        streamed.partial_fit(part)
    assert streamed.var_[0] == 0.0 and streamed.mean_[0] == float(dtype(value))
    np.testing.assert_array_equal(fp.StandardScaler().fit_transform(X)[:, 0], 0.0)


@pytest.mark.parametrize("offset", [1e8, 1e9, 1e10, 1e11, 1e12])
def test_mean_is_correctly_rounded_at_large_offsets(simd, rng, offset):
    X = rng.standard_normal((5003, 4)) * [1.0, 10.0, 0.01, 1000.0] + offset
    X[rng.random(X.shape) < 0.02] = np.nan
    est = fp.StandardScaler().fit(X)
    expected = [exact_mean(X[:, j]) for j in range(4)]
    np.testing.assert_array_equal(est.mean_, expected)
    ref = sk_pre.StandardScaler().fit(X)
    np.testing.assert_allclose(est.var_, ref.var_, rtol=1e-6)


@pytest.mark.skipif(not OPENMP, reason="needs OpenMP threads")
@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_and_in_place_transform_identical_for_any_thread_count(rng, dtype):
    X = (rng.standard_normal((20011, 9)) * 3 + 1e6).astype(dtype)
    X[rng.random(X.shape) < 0.01] = np.nan
    w = rng.random(X.shape[0])
    runs = []
    for n in (1, 2, 3):
        with threads(n):
            est = fp.StandardScaler(copy=False).fit(X, sample_weight=w)
            Z = X.copy()
            est.transform(Z)
            mm = fp.MinMaxScaler().fit(X)
            runs.append((est.mean_, est.var_, Z, mm.scale_, mm.transform(X)))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", SCALERS)
def test_all_nan_column_gets_nan_statistics_as_sklearn(make):
    X = np.random.default_rng(3).standard_normal((40, 3))
    X[:, 1] = np.nan
    ours = make().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's 0 / 0 for the empty column
        ref = getattr(sk_pre, make.__name__)().fit(X)
        Zr = ref.transform(X)
    for name in ("mean_", "var_", "scale_", "center_", "data_min_", "data_max_", "min_"):
        if hasattr(ref, name):
            np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-12, equal_nan=True,
                                       err_msg=name)
    assert np.isnan(ours.scale_[1])
    np.testing.assert_allclose(ours.transform(X), Zr, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
@pytest.mark.parametrize("make", [fp.MinMaxScaler, fp.RobustScaler, lambda: fp.RobustScaler(unit_variance=True)])
def test_attribute_dtypes_follow_the_input_as_sklearn(make, dtype):
    X = np.random.default_rng(4).standard_normal((50, 3)).astype(dtype)
    ours = make()
    ref = getattr(sk_pre, type(ours).__name__)(**ours.get_params())
    ours.fit(X)
    ref.fit(X)
    for name in ("data_min_", "data_max_", "data_range_", "scale_", "min_", "center_"):
        if hasattr(ref, name):
            assert getattr(ours, name).dtype == dtype, name
            rtol = {np.float16: 2e-3, np.float32: 2e-7, np.float64: 1e-14}[dtype]
            np.testing.assert_allclose(getattr(ours, name).astype(np.float64), getattr(ref, name).astype(np.float64),
                                       rtol=rtol, atol=rtol, err_msg=name)
    assert ours.transform(X).dtype == dtype
    assert fp.StandardScaler().fit(X).mean_.dtype == np.float64


# ----------------------------------------------------------------------------- sample_weight
def exact_weighted_moments(X, w):
    """The correctly rounded weighted mean and population variance of each column (NaN skipped)."""
    means, variances = [], []
    for col in X.T.astype(np.float64):
        keep = ~np.isnan(col)
        xs = [Fraction(float(v)) for v in col[keep]]
        ws = [Fraction(float(v)) for v in w[keep]]
        total = sum(ws, Fraction(0))
        mean = sum((a * b for a, b in zip(ws, xs)), Fraction(0)) / total
        means.append(float(mean))
        variances.append(float(sum((a * (b - mean) ** 2 for a, b in zip(ws, xs)), Fraction(0)) / total))
    return np.array(means), np.array(variances)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_mean,with_std", [(True, True), (False, True), (True, False)])
def test_sample_weight_matches_sklearn(rng, dtype, with_mean, with_std):
    X = (rng.standard_normal((1001, 5)) * [1, 10, 100, 1e-3, 5] + [0, 5, -50, 1, 1e6]).astype(dtype)
    X[rng.random(X.shape) < 0.03] = np.nan
    w = rng.random(1001) * 4
    ours = fp.StandardScaler(with_mean=with_mean, with_std=with_std).fit(X, sample_weight=w)
    ref = sk_pre.StandardScaler(with_mean=with_mean, with_std=with_std).fit(X, sample_weight=w)
    mean, var = exact_weighted_moments(X, w)
    # the sum about the shift rounds relative to the spread: a few eps of (|mean| + std)
    eps = np.finfo(np.float64).eps
    assert np.all(np.abs(ours.mean_ - mean) <= 8 * eps * (np.abs(mean) + np.sqrt(var))), ours.mean_ - mean
    rt = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=rt)
    if with_std:
        np.testing.assert_allclose(ours.var_, var, rtol=1e-12)
        np.testing.assert_allclose(ours.var_, ref.var_, rtol=rt)
    # scikit-learn sums float32 data's weights in float32: 1e-7 apart
    np.testing.assert_allclose(ours.n_samples_seen_, ref.n_samples_seen_, rtol=1e-12 if dtype == np.float64 else 1e-6)
    # the transform against the exact moments; against scikit-learn's on the columns near 0
    # (its weighted sum of values near 1e6, column 4, is off by ~1e-10 relative)
    expected = (X.astype(np.float64) - (mean if with_mean else 0)) / (np.sqrt(var) if with_std else 1)
    Z = ours.transform(X)
    np.testing.assert_allclose(Z, expected.astype(dtype), rtol=rt, atol=rt, equal_nan=True)
    # scikit-learn subtracts the mean rounded to X's dtype: off by eps * |mean| / scale
    mean_over_scale = np.abs(ref.mean_ if with_mean else 0) / (ref.scale_ if with_std else 1)
    atol = 4 * np.finfo(dtype).eps * (mean_over_scale + 1)
    for j in range(4):
        np.testing.assert_allclose(Z[:, j], ref.transform(X)[:, j], rtol=rt, atol=max(rt, atol[j]), equal_nan=True)
    np.testing.assert_array_equal(fp.StandardScaler(with_mean=with_mean, with_std=with_std).fit_transform(
        X, sample_weight=w), Z)


def test_integer_weights_equal_repeated_rows_and_partial_fit_equals_fit(rng):
    X = rng.standard_normal((500, 3)) + [0, 1e9, -4]
    w = rng.integers(0, 4, 500)
    weighted = fp.StandardScaler().fit(X, sample_weight=w)
    repeated = fp.StandardScaler().fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(weighted.mean_, repeated.mean_, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(weighted.var_, repeated.var_, rtol=1e-10)
    assert weighted.n_samples_seen_ == float(w.sum())
    streamed = fp.StandardScaler()
    for part, pw in zip(np.array_split(X, 7), np.array_split(w, 7)):
        streamed.partial_fit(part, sample_weight=pw)
    np.testing.assert_allclose(streamed.mean_, weighted.mean_, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(streamed.var_, weighted.var_, rtol=1e-10)


@pytest.mark.parametrize("weights,match", [
    (-np.ones(10), "sample_weight must be >= 0"),
    (np.r_[np.ones(9), np.nan], "sample_weight must be finite"),
    (np.ones(9), r"sample_weight.shape == \(9,\), expected \(10,\)"),
    (np.ones((10, 2)), "sample_weight must be 1D"),
    (np.zeros(10), "sample_weight is all zero"),
])
def test_bad_sample_weight_is_a_clear_error_and_leaves_the_scaler_as_it_was(weights, match):
    X = np.random.default_rng(1).standard_normal((10, 2))
    est = fp.StandardScaler().fit(X)
    before = (est.mean_.copy(), est.var_.copy(), est.n_samples_seen_)
    with pytest.raises(ValueError, match=match):
        est.partial_fit(X, sample_weight=weights)
    np.testing.assert_array_equal(est.mean_, before[0])
    np.testing.assert_array_equal(est.var_, before[1])
    assert est.n_samples_seen_ == before[2]


# ----------------------------------------------------------------------------- copy=False
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [fp.StandardScaler, fp.MinMaxScaler, fp.RobustScaler,
                                  lambda copy: fp.MinMaxScaler(feature_range=(-2, 3), clip=True, copy=copy),
                                  lambda copy: fp.RobustScaler(with_centering=False, copy=copy)])
def test_copy_false_transforms_in_place(rng, make, dtype):
    X = (rng.standard_normal((300, 4)) * 5 + 2).astype(dtype)
    est = make(copy=False).fit(X)
    expected = make(copy=True).fit(X).transform(X)
    assert est.fit(X) is est and np.array_equal(X, X.copy())  # fit never writes
    Z = X.copy()
    out = est.transform(Z)
    assert out is Z
    np.testing.assert_array_equal(Z, expected)
    back = est.inverse_transform(Z)
    assert back is Z
    np.testing.assert_allclose(back, X, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("make", [fp.StandardScaler, fp.MinMaxScaler, fp.RobustScaler])
def test_copy_false_copies_when_it_must(rng, make):
    X = rng.standard_normal((60, 3))
    est = make(copy=False).fit(X)
    expected = make().fit(X).transform(X)
    cases = {"read-only": X.copy(), "Fortran": np.asfortranarray(X), "int": np.round(X * 10).astype(np.int64),
             "list": X.tolist(), "strided": np.repeat(X, 2, axis=1)[:, ::2]}
    cases["read-only"].flags.writeable = False
    for name, case in cases.items():
        before = np.array(case, dtype=np.float64, copy=True)
        out = est.transform(case)
        assert out is not case, name
        np.testing.assert_array_equal(np.asarray(case, dtype=np.float64), before, err_msg=name)
        if name != "int":
            np.testing.assert_array_equal(out, expected, err_msg=name)
    Z = X.copy()
    assert est.transform(Z) is Z
    if isinstance(est, fp.StandardScaler):
        Z = X.copy()
        assert fp.StandardScaler().fit(X).transform(Z, copy=False) is Z
        assert est.transform(X, copy=True) is not X
    assert make().fit(X).transform(X) is not X


def test_in_place_overflow_leaves_x_untouched():
    X = np.ones((1000, 3), dtype=np.float32)
    X[:, 1] = np.linspace(-1e-3, 1e-3, 1000)
    est = fp.StandardScaler(copy=False).fit(X)
    Z = X.copy()
    Z[777, 1] = 3e38  # (3e38 - mean) / 5.8e-4 overflows float32
    before = Z.copy()
    with pytest.raises(ValueError, match=r"column 1 \(row 777\).*overflows float32"):
        est.transform(Z)
    np.testing.assert_array_equal(Z, before)


# ----------------------------------------------------------------------------- RobustScaler
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_centering", [True, False])
@pytest.mark.parametrize("with_scaling", [True, False])
@pytest.mark.parametrize("unit_variance", [False, True])
@pytest.mark.parametrize("quantile_range", [(25, 75), (10, 90.5)])
def test_robust_scaler_parameters_match_sklearn(rng, dtype, with_centering, with_scaling, unit_variance,
                                                quantile_range):
    X = (rng.standard_cauchy((401, 4)) * [1, 100, 0.1, 3]).astype(dtype)
    X[rng.random(X.shape) < 0.05] = np.nan
    X[:, 3] = 2.5  # constant
    params = dict(with_centering=with_centering, with_scaling=with_scaling, unit_variance=unit_variance,
                  quantile_range=quantile_range)
    ours, ref = fp.RobustScaler(**params).fit(X), sk_pre.RobustScaler(**params).fit(X)
    rt = 1e-12 if dtype == np.float64 else 1e-6
    for name in ("center_", "scale_"):
        a, b = getattr(ours, name), getattr(ref, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=rt, atol=rt, err_msg=name)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=rt * 10, atol=rt * 10, equal_nan=True)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(X)), X, rtol=rt * 10, atol=rt * 10,
                               equal_nan=True)


@pytest.mark.parametrize("quantile_range", [(0, 75), (25, 100), (40, 40)])
def test_robust_unit_variance_needs_an_open_quantile_range(quantile_range):
    with pytest.raises(ValueError, match="unit_variance=True needs 0 < q_min < q_max < 100"):
        fp.RobustScaler(unit_variance=True, quantile_range=quantile_range).fit(np.ones((5, 2)))
    fp.RobustScaler(quantile_range=quantile_range).fit(np.ones((5, 2)))  # fine without unit_variance


@pytest.mark.parametrize("make,name", [(fp.StandardScaler, "with_mean"), (fp.StandardScaler, "copy"),
                                       (fp.RobustScaler, "with_centering"), (fp.RobustScaler, "unit_variance"),
                                       (fp.MinMaxScaler, "copy")])
def test_boolean_parameters_are_checked(make, name):
    with pytest.raises(TypeError, match=f"{name} must be a bool, got 'yes'"):
        make(**{name: "yes"}).fit(np.ones((4, 2)))


# ----------------------------------------------------------------------------- tags, sparse, callbacks
@pytest.mark.parametrize("offset,positive_only", [(1.0, True), (0.5, True), (0.0, True), (-2.0, True),
                                                  (5.0, False), (1.5, False)])
def test_log_scaler_declares_positive_only_only_where_negatives_are_refused(offset, positive_only):
    from sklearn.utils import get_tags
    est = fp.LogScaler(offset=offset)
    assert get_tags(est).input_tags.positive_only is positive_only
    minus_one = np.array([[-1.0, 1.0], [-1.0, 1.0]]) + max(0.0, -offset)
    if positive_only:
        with pytest.raises(ValueError, match="Negative values in data"):
            est.fit(np.array([[-1.0, 2.0 - min(offset, 0.0)]]))
    else:
        est.fit(minus_one)  # x + offset > 0: accepted
        with pytest.raises(ValueError, match="Negative values in data"):
            est.fit(np.array([[-offset, 1.0]]))


@pytest.mark.parametrize("est,alternative", [
    (fp.StandardScaler(), "StandardScaler(with_mean=False)"), (fp.MinMaxScaler(), "MaxAbsScaler"),
    (fp.RobustScaler(), "RobustScaler(with_centering=False)"), (fp.LogScaler(), "FunctionTransformer"),
    (fp.Clipper(), "numpy.clip")])
def test_sparse_input_is_refused_naming_sklearns_class(est, alternative):
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.random(20, 3, density=0.5, format="csr", random_state=0)
    with pytest.raises(TypeError, match="dense-only") as info:
        est.fit(X)
    assert alternative in str(info.value) and "scikit-learn" in str(info.value)
    fitted = type(est)().fit(X.toarray())
    with pytest.raises(TypeError, match="dense-only"):
        fitted.transform(X)
    assert "sparse" in type(est).__doc__


def test_standard_scaler_callbacks():
    pytest.importorskip("sklearn.callback")
    from sklearn.callback.tests._utils import RecordingCallback
    X = np.random.default_rng(0).random((10, 2))
    for method in ("fit", "partial_fit", "fit_transform"):
        cb = RecordingCallback()
        est = fp.StandardScaler().set_callbacks(cb)
        getattr(est, method)(X)
        for hook in ("setup", "teardown", "on_fit_task_begin", "on_fit_task_end"):
            assert cb.count_hooks(hook) == 1, (method, hook)
    with pytest.raises(TypeError, match="callbacks must be instances"):
        fp.StandardScaler().set_callbacks(print)


# ----------------------------------------------------------------------------- overflow (issue 15)
def test_variance_overflow_is_a_value_error_naming_the_column():
    X = np.ones((50, 3))
    X[:, 2] = np.linspace(-1e300, 1e300, 50)
    with pytest.raises(ValueError, match=r"variance of column 2 overflows float64"):
        fp.StandardScaler().fit(X)
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match=r"column 2 \('big'\)"):
        fp.StandardScaler().fit(pd.DataFrame(X, columns=["a", "b", "big"]))
    est = fp.StandardScaler().fit(X[:, :2])
    with pytest.raises(ValueError, match="variance of column 1 overflows"):  # partial_fit: unchanged on error
        est.partial_fit(X[:, 1:])
    assert est.n_samples_seen_ == 50


def test_minmax_range_overflow_is_a_value_error_naming_the_column():
    X = np.array([[0.0, -1.5e308], [1.0, 1.5e308]])
    with pytest.raises(ValueError, match=r"range \(max - min\) of column 1 overflows float64"):
        fp.MinMaxScaler().fit(X)
    X32 = np.array([[0.0, -3e38], [1.0, 3e38]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"column 1 overflows float32"):
        fp.MinMaxScaler().fit(X32)
    with pytest.raises(ValueError, match=r"quantile interpolation of column 1 overflows float64"):
        fp.RobustScaler(quantile_range=(0, 100)).fit(X)
    with pytest.raises(ValueError, match=r"quantile interpolation of column 1 overflows float64"):
        fp.Clipper(quantile_range=(1, 99)).fit(X)


@pytest.mark.parametrize("make", [fp.StandardScaler, fp.MinMaxScaler, fp.RobustScaler])
def test_scaled_values_overflowing_float32_are_a_value_error(make):
    X = np.zeros((100, 2), dtype=np.float32)
    X[:, 0] = np.linspace(0, 1e-3, 100)
    est = make().fit(X)
    big = X[:3].copy()
    big[1, 0] = 1e37
    with pytest.raises(ValueError, match=r"column 0 \(row 1\) holds 1e\+37.*overflows float32"):
        est.transform(big)
    assert np.isfinite(est.transform(big.astype(np.float64))).all()  # float64 output holds it


def test_inverse_transform_overflowing_float32_is_a_value_error():
    est = fp.StandardScaler().fit(np.array([[0.0, 0.0], [1e30, 0.0]], dtype=np.float32))  # scale_ 5e29
    with pytest.raises(ValueError, match=r"column 0 \(row 0\).*overflows float32"):
        est.inverse_transform(np.full((1, 2), 1e10, dtype=np.float32))


def test_float16_output_overflow_is_a_value_error():
    X = np.linspace(0, 1, 40, dtype=np.float16).reshape(20, 2)
    est = fp.StandardScaler().fit(X)
    with pytest.raises(ValueError, match="overflows float16"):
        est.transform(np.array([[60000.0, 0.5]], dtype=np.float16))
    assert est.transform(X).dtype == np.float16
