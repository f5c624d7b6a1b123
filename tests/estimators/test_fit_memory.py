"""fit allocates nothing proportional to the data beyond one small per-column or per-batch
buffer (fastnn issue 14, target "memory"): on a float32 C-contiguous X its peak of
tracemalloc-traced allocations stays within 5% of X's size, with and without early
stopping (the held-out rows are read by index, the row order is generated in the core,
the feature statistics and the finiteness check come from the column-statistics kernel);
any other dtype or layout pays for one float32 copy and no more. These are memory bounds,
not timings."""
import numpy as np
import pytest

import fastnn
from support import traced_peak

ROWS, FEATURES = 400_000, 16  # 24.4 MiB of float32: 5% is 1.2 MiB


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, FEATURES), dtype=np.float32)
    y = X[:, 0] * np.float32(2) - X[:, 1] + np.float32(0.5)
    # the first fit of a process imports modules and fills caches: not what is measured
    fastnn.DNNRegressor(hidden_units=(8,), epochs=1, early_stopping=True, random_state=0).fit(X[:500], y[:500])
    return X, y


def _regressor(**kwargs):
    return fastnn.DNNRegressor(hidden_units=(8,), epochs=1, batch_size=256, random_state=0, **kwargs)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_fit_on_float32_allocates_at_most_5_percent_of_X(data, early_stopping):
    X, y = data
    est = _regressor(early_stopping=early_stopping)
    peak = traced_peak(est.fit, X, y)
    assert est.n_iter_ == 1 and np.isfinite(est.history_["loss"][0])
    if early_stopping:
        assert np.isfinite(est.history_["val_loss"][0])
    assert peak <= 0.05 * X.nbytes, f"fit allocated {peak / X.nbytes:.1%} of X"


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_classifier_fit_allocates_at_most_5_percent_of_X(data, classes, early_stopping):
    X, _ = data
    labels = np.arange(X.shape[0]) % classes * 10  # int64: 8 bytes a row, an eighth of X
    est = fastnn.DNNClassifier(hidden_units=(8,), epochs=1, batch_size=256, random_state=0,
                               early_stopping=early_stopping)
    peak = traced_peak(est.fit, X, labels)
    assert list(est.classes_) == list(range(0, 10 * classes, 10)) and np.isfinite(est.history_["loss"][0])
    assert peak <= 0.05 * X.nbytes, f"fit allocated {peak / X.nbytes:.1%} of X"


@pytest.mark.parametrize("layout", ["float64", "fortran"])
def test_other_layouts_pay_one_float32_copy(data, layout):
    X, y = data
    Xo = X.astype(np.float64) if layout == "float64" else np.asfortranarray(X)
    peak = traced_peak(_regressor(early_stopping=True).fit, Xo, y)
    assert peak <= 1.05 * X.nbytes, f"fit allocated {peak / X.nbytes:.1%} of a float32 X"


def test_feature_statistics_come_from_the_whole_X(data):
    X, y = data
    est = _regressor().fit(X[:20_000], y[:20_000])
    np.testing.assert_allclose(est._feature_std_, X[:20_000].std(axis=0, dtype=np.float64), rtol=1e-12)


def test_nonfinite_X_is_refused_naming_the_column(data):
    X, y = data
    bad = X[:1000].copy()
    bad[7, 3] = np.nan
    bad[9, 5] = np.inf
    with pytest.raises(ValueError, match=r"column 3 \(1 value\), column 5 \(1 value\)"):
        _regressor().fit(bad, y[:1000])
    huge = X[:1000].astype(np.float64)
    huge[4, 2] = 1e300  # finite, beyond float32
    with pytest.raises(ValueError, match=r"outside float32's range.*column 2 reaches 1e\+300 \(row 4\)"):
        _regressor().fit(huge, y[:1000])
