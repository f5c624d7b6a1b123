"""The training doctor: every diagnose() finding is provoked on purpose and detected, and a
healthy fit gets none."""
import numpy as np
import pytest
from sklearn.datasets import make_regression

import fastnn
from fastnn import DNNRegressor
from fastnn.doctor import Finding


@pytest.fixture(scope="module")
def data():
    X, y = make_regression(1000, 8, noise=5.0, random_state=0)
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def _fit(est, X, y):
    try:
        est.fit(X, y)
    except fastnn.TrainingDivergedError:
        pass
    return {f.mode: f for f in est.diagnose()}


def test_a_healthy_fit_has_no_findings(data):
    X, y = data
    assert _fit(DNNRegressor(epochs=20, random_state=0), X, y) == {}


def test_vanishing_gradients_in_a_deep_sigmoid_net(data):
    X, y = data
    found = _fit(DNNRegressor(hidden_units=(32,) * 10, activation="sigmoid", epochs=5, random_state=0), X, y)
    f = found["vanishing gradients"]
    rms = f.numbers["rms_gradient"]
    assert len(rms) == 10 and rms[0] / rms[-1] < 1e-2 and f.numbers["ratio"] < 1e-2
    assert "relu" in f.remedy and "sigmoid" in f.evidence
    # the same depth with ReLU is not flagged
    assert "vanishing gradients" not in _fit(DNNRegressor(hidden_units=(32,) * 10, epochs=5, random_state=0), X, y)


def test_exploding_gradients_and_the_nan_trap(data):
    X, y = data
    est = DNNRegressor(hidden_units=(64,) * 6, optimizer="sgd", learning_rate=0.05, epochs=10, random_state=0)
    found = _fit(est, X, y * 100)
    assert est.divergence_ is not None
    f = found["exploding gradients"]
    assert max(f.numbers["divergence_update_ratio"]) > 0.5
    assert "clip_norm" in f.remedy and "learning rate" in f.remedy
    assert "NaN trap" in found


def test_nan_trap_is_reported_with_where_and_when(data):
    X, y = data
    est = DNNRegressor(optimizer="sgd", learning_rate=10.0, epochs=5, random_state=0)
    with pytest.raises(fastnn.TrainingDivergedError) as info:
        est.fit(X, y)
    f = {x.mode: x for x in est.diagnose()}["NaN trap"]
    assert f.numbers["divergence"]["epoch"] == info.value.epoch
    assert f"step {info.value.step}" in f.evidence and "learning rate 10" in f.evidence
    assert "lower the learning rate" in f.remedy


def test_skipped_batches_are_a_nan_trap_finding(data):
    X, y = data
    X = X.copy()
    X[[5, 6]] = 3e38
    est = DNNRegressor(epochs=2, nan_policy="skip", random_state=0)
    found = _fit(est, X, y)
    assert found["NaN trap"].numbers["skipped"] == sum(est.history_["skipped"]) >= 2
    assert "nan_policy='skip'" in found["NaN trap"].evidence


def test_dead_relu_after_a_huge_learning_rate(data):
    X, y = data
    found = _fit(DNNRegressor(learning_rate=5.0, epochs=5, random_state=0), X, y)
    f = found["dead ReLU layers"]
    assert max(f.numbers["dead_units"]) > 0.5
    assert "leaky_relu" in f.remedy and "never fired" in f.evidence


def test_features_on_very_different_scales(data):
    X, y = data
    X = X.copy()
    X[:, 3] *= 1e4  # litres and millilitres
    f = {x.mode: x for x in _fit(DNNRegressor(epochs=3, random_state=0), X, y).values()}[
        "features on very different scales"]
    assert f.numbers["largest"] == 3 and f.numbers["ratio"] > 1e3
    assert "feature 3" in f.evidence and "StandardScaler" in f.remedy


def test_overfitting_from_the_train_validation_gap(data):
    X, y = data
    Xs, ys = X[:60], y[:60] + np.random.default_rng(0).normal(0, 1, 60)
    est = DNNRegressor(hidden_units=(256, 256), optimizer="adam", learning_rate=0.01, epochs=300,
                       early_stopping=True, patience=1000, validation_fraction=0.3, random_state=0)
    f = _fit(est, Xs, ys)["overfitting"]
    assert f.numbers["val_loss"] > 1.5 * f.numbers["loss"]
    assert f.numbers["val_loss"] > 1.1 * f.numbers["best_val_loss"]
    assert "dropout" in f.remedy


def test_dropout_above_one_half_suggests_keep_prob_confusion(data):
    X, y = data
    f = _fit(DNNRegressor(dropout=0.8, epochs=2, random_state=0), X, y)["dropout rate above 0.5"]
    assert "dropout=0.2" in f.remedy


def test_findings_are_printable_and_typed(data):
    X, y = data
    est = DNNRegressor(dropout=0.9, epochs=1, random_state=0).fit(X, y)
    findings = est.diagnose()
    assert findings and all(isinstance(f, Finding) for f in findings)
    text = str(findings[0])
    assert findings[0].mode in text and "remedy:" in text


def test_diagnose_needs_a_fitted_estimator():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        DNNRegressor().diagnose()
