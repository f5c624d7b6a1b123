"""Degenerate training and inputs are refused or explained, never silent (issue 15):
batch norm with one-row batches, nan_policy="skip" that can no longer train, too few rows,
values outside float32, models too large for memory, assignment to the flat buffers, and
the type errors of hidden_units, callbacks, keep_prob and mixed labels."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import nn, ops, optim
from fastnn.callbacks import EarlyStopping
from fastnn.estimators import DNNClassifier, DNNRegressor


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5)).astype(np.float32)
    y = X @ rng.standard_normal(5) + 0.1 * rng.standard_normal(200)
    return X, y


# ----------------------------------------------------------------------------- batch norm, one-row batches


@pytest.mark.parametrize("kwargs, rows, match", [
    (dict(batch_size=1), 20, "batch_size >= 2"),
    (dict(batch_size=32), 1, "n_samples=1"),
    (dict(batch_size=32, early_stopping=True, validation_fraction=0.5), 3, "n_samples=1"),
])
def test_batch_norm_that_could_train_no_batch_is_refused_at_fit(data, kwargs, rows, match):
    X, y = data
    est = DNNRegressor(batch_norm=True, epochs=2, **kwargs)
    with pytest.raises(ValueError, match=match):
        est.fit(X[:rows], y[:rows])
    assert not hasattr(est, "model_")  # refused before anything was built


def test_batch_norm_partial_fit_of_one_row_is_refused_and_changes_nothing(data):
    X, y = data
    est = DNNRegressor(batch_norm=True, random_state=0).partial_fit(X, y)
    before = est.model_.params.copy(), est.n_iter_
    with pytest.raises(ValueError, match="n_samples=1"):
        est.partial_fit(X[:1], y[:1])
    assert np.array_equal(est.model_.params, before[0]) and est.n_iter_ == before[1]


def test_sequential_train_epoch_refuses_batch_norm_with_one_row_batches(data):
    X, y = data
    model = nn.Sequential([nn.Dense(5, 4), nn.BatchNorm(4), nn.Dense(4, 1)], seed=0)
    before = model.params.copy()
    for kwargs, rows in ((dict(batch_size=1), 10), (dict(batch_size=8), 1)):
        with pytest.raises(ValueError, match="at least 2 rows"):
            model.train_epoch(X[:rows], y[:rows], optimizer=optim.SGD(lr=0.1), **kwargs)
    assert np.array_equal(model.params, before)


# ----------------------------------------------------------------------------- nan_policy="skip"


@pytest.mark.parametrize("seed", [0, 1, 2, 26])
def test_skip_policy_never_raises_and_the_doctor_explains(data, seed):
    X, y = data
    X = (X - X.mean(0)) / X.std(0)  # standardized: the divergence is the learning rate's
    # The weights restored at the divergence must predict finite values for the training
    # rows: before they only had to be finite, and for 29 of random_state 0..29 they were so
    # large that predict overflowed to -inf (seed 26 was the one that did not).
    est = DNNRegressor(hidden_units=(64, 64, 64), optimizer="sgd", learning_rate=3.0, clip_norm=None, epochs=5,
                       nan_policy="skip", random_state=seed)
    with pytest.warns(fastnn.TrainingDivergedWarning,
                      match=r"training stopped.*nan_policy='skip'.*not finite.*finite outputs for every training row"):
        est.fit(X, y)  # the case: it raised TrainingDivergedError on 60c4ab6
    assert est.n_iter_ < 5  # stopped early
    assert np.all(np.isfinite(est.model_.params))
    assert np.all(np.isfinite(est.predict(X)))
    findings = {f.mode: f for f in est.diagnose()}
    trap = findings["NaN trap"]
    assert trap.numbers["divergence"]["epoch"] == est.n_iter_ - 1
    assert trap.numbers["skipped"] == sum(est.history_["skipped"]) > 0
    # the features were standardized: the advice must not send the user to scale them
    assert "scale the features" not in trap.remedy and "lower the learning rate (now 3)" in trap.remedy


def test_skip_policy_stops_when_a_whole_epoch_is_skipped_keeping_the_weights(data):
    X, y = data
    est = DNNRegressor(epochs=1, nan_policy="skip", random_state=0).fit(X, y)
    kept = est.model_.params.copy()
    bad = np.full_like(X, 3e38)  # every batch's gradient overflows: nothing can train
    with pytest.warns(fastnn.TrainingDivergedWarning, match="mini-batches were skipped"):
        est.set_params(epochs=4).partial_fit(bad, y)
    assert np.array_equal(est.model_.params, kept)
    assert est.history_["skipped"][-1] > 0 and np.isnan(est.history_["loss"][-1])


def test_skip_policy_fit_stops_after_the_first_fully_skipped_epoch(data):
    X, y = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = DNNRegressor(epochs=6, nan_policy="skip", random_state=0).fit(np.full_like(X, 3e38), y)
    assert [w.category for w in caught] == [fastnn.TrainingDivergedWarning]
    assert est.n_iter_ == 1  # the first epoch trained nothing: no second attempt
    assert "NaN trap" in {f.mode for f in est.diagnose()}


# ----------------------------------------------------------------------------- too few rows


def test_one_row_gets_a_clear_doctor_finding_and_score_error(data):
    X, y = data
    est = DNNRegressor(epochs=3, random_state=0).fit(X[:1], y[:1])
    modes = [f.mode for f in est.diagnose()]
    assert modes == ["too few rows"]  # not "dead ReLU layers: lower the learning rate"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw UndefinedMetricWarning
        with pytest.raises(ValueError, match="at least 2 rows"):
            est.score(X[:1], y[:1])
    assert np.isfinite(est.score(X[:2], y[:2]))


def test_too_few_rows_survives_save_and_load(data, tmp_path):
    X, y = data
    est = DNNRegressor(epochs=2, random_state=0).fit(X[:3], y[:3])
    est.save(tmp_path / "m.npz")
    assert [f.mode for f in fastnn.load(tmp_path / "m.npz").diagnose()] == ["too few rows"]


# ----------------------------------------------------------------------------- float32 range


@pytest.mark.parametrize("value", [1e39, -3.5e38, 1e300])
def test_features_outside_float32_are_refused_naming_the_column(data, value):
    X, y = data
    X64 = X.astype(np.float64)
    X64[7, 3] = value
    with pytest.raises(ValueError, match=rf"outside float32's range.*column 3 reaches {re.escape(f'{value:.3g}')} "
                                         r"\(row 7\)"):
        DNNRegressor(epochs=1).fit(X64, y)
    est = DNNRegressor(epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"predict has values outside float32's range.*column 3"):
        est.predict(X64)  # it returned nan with no error on 60c4ab6


def test_targets_outside_float32_are_refused_naming_y(data):
    X, y = data
    with pytest.raises(ValueError, match=r"y passed to fit has values outside float32.*output 0.*target"):
        DNNRegressor(epochs=1).fit(X, y * 1e300)


def test_nan_and_huge_values_are_named_together(data):
    X, y = data
    X64 = X.astype(np.float64)
    X64[1, 0], X64[2, 4] = np.nan, 1e40
    with pytest.raises(ValueError, match=r"NaN or infinity: column 0 \(1 value\).*outside float32.*column 4"):
        DNNRegressor(epochs=1).fit(X64, y)


def test_nan_trap_advice_names_the_input_range(data):
    X, y = data
    with pytest.raises(fastnn.TrainingDivergedError, match=r"scale the features: they reach [0-9.]+e\+30"):
        DNNRegressor(epochs=1, random_state=0).fit(X * 1e30, y)


def test_huge_targets_are_a_doctor_finding(data):
    X, y = data
    est = DNNRegressor(epochs=2, random_state=0).fit(X, y * 1e30)
    finding = {f.mode: f for f in est.diagnose()}["target on a very large scale"]
    assert finding.numbers["target_max"] > 1e30 and "TransformedTargetRegressor" in finding.remedy


# ----------------------------------------------------------------------------- memory before allocation


def test_a_model_too_large_for_memory_is_a_memory_error_before_allocating(data):
    X, y = data
    est = DNNRegressor(hidden_units=(10 ** 9,))
    with pytest.raises(MemoryError, match=r"Dense\(5, 1000000000.*bytes.*more than.*fewer or narrower layers"):
        est.fit(X, y)  # on 60c4ab6 the OOM killer ended the process at 24 GB
    assert not hasattr(est, "model_")
    with pytest.raises(MemoryError, match=r"layers\[1\]"):
        nn.Sequential([nn.Dense(4, 8), nn.Dense(8, 10 ** 10)])


def test_a_workspace_too_large_for_memory_is_a_memory_error(data):
    X, y = data
    rows = np.repeat(X[:, :1], 100, axis=0)[:20000]
    est = DNNRegressor(hidden_units=(2 * 10 ** 6,), batch_size=20000, epochs=1)
    with pytest.raises(MemoryError, match="training workspace.*smaller batch_size"):
        est.fit(rows, np.zeros(len(rows)))
    assert not hasattr(est, "model_")


# ----------------------------------------------------------------------------- Sequential's flat buffers


def test_assigning_params_copies_into_the_flat_buffer():
    model = nn.Sequential([nn.Dense(3, 2)], seed=0)
    flat = model.params
    x = np.ones((4, 3), np.float32)
    model.params = np.zeros_like(model.params)  # ignored by predict on 60c4ab6
    assert model.params is flat
    assert np.array_equal(model.predict(x), np.zeros((4, 2), np.float32))
    model.params = np.arange(model.params.size, dtype=np.float64)
    assert np.array_equal(model.named_params()["0.bias"], [6.0, 7.0])
    with pytest.raises(ValueError, match=r"params must have shape \(8,\).*named_params"):
        model.params = np.zeros(5)
    with pytest.raises(TypeError, match="params"):
        model.params = np.array(["a"] * 8)


# ----------------------------------------------------------------------------- clear type errors


def test_keep_prob_conversion_uses_the_callers_numbers():
    x = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"keep_prob=0\.9 keeps 90% of the units, so pass rate=0\.1.*drop 90% of the "
                                         r"units instead of 10%"):
        ops.dropout_forward(x, keep_prob=0.9, seed=0)  # a missing-argument TypeError on 60c4ab6
    with pytest.raises(ValueError, match=r"keep_prob=0\.75 keeps 75%.*pass dropout=0\.25"):
        DNNRegressor(keep_prob=0.75).fit(x, np.zeros(4))
    with pytest.raises(TypeError, match="rate is required"):
        ops.dropout_forward(x, seed=0)


@pytest.mark.parametrize("units, match", [("64,32", r"sequence of ints such as \(64, 32\), got str '64,32'"),
                                          (64.5, "sequence of ints such as")])
def test_hidden_units_type_errors_name_what_was_expected(data, units, match):
    X, y = data
    with pytest.raises(TypeError, match=match):
        DNNRegressor(hidden_units=units).fit(X, y)


@pytest.mark.parametrize("callbacks, match", [
    (print, r"list of callback objects.*got builtin_function_or_method.*LambdaCallback"),
    (EarlyStopping(), "wrap it in a list"),
    ([print], r"callbacks\[0\] must be a callback object.*LambdaCallback"),
    (["csv"], r"callbacks\[0\] must be a callback object.*got str"),
])
def test_callbacks_type_errors_name_what_was_expected(data, callbacks, match):
    X, y = data
    with pytest.raises(TypeError, match=match):
        DNNRegressor(epochs=1, callbacks=callbacks).fit(X, y)


@pytest.mark.parametrize("labels, error, match", [
    (["a", 1, "b", 2], TypeError, r"y mixes label types: 'a' \(str, row 0\), 1 \(number, row 1\)"),
    (["a", None, "b", "a"], ValueError, r"y has a missing label \(None\) at row 1"),
])
def test_mixed_or_missing_labels_are_named(data, labels, error, match):
    X, _ = data
    with pytest.raises(error, match=match):
        DNNClassifier(epochs=1).fit(X[:4], np.array(labels, dtype=object))
