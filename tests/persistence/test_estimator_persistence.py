"""Estimator persistence: ``DNNRegressor``/``DNNClassifier`` ``save`` and ``fastnn.load``
round trip bitwise (predictions, probabilities, classes, history, parameters) and continue
training bitwise (optimizer state, dropout counter and RNG restored); pickling and
``sklearn.base.clone`` work; saves are atomic; every damaged, tampered or newer file is a
``ModelFormatError`` (a ValueError), never another exception.

The container itself (zip layout, foreign files, permissions, symlinks, Sequential files)
is covered by test_persistence.py; this file covers what the estimators add on top.
"""
from __future__ import annotations

import copy
import os
import pathlib
import pickle
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import fastnn
from fastnn import nn, optim
from fastnn import persistence as P
from fastnn._errors import ModelFormatError

# ----------------------------------------------------------------------------- helpers


def regression_data(n=64, outputs=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    w = rng.standard_normal((4,) if outputs is None else (4, outputs))
    return X, X @ w + 0.1 * rng.standard_normal(n if outputs is None else (n, outputs))


def labels(kind, n=64, seed=1):
    rng = np.random.default_rng(seed)
    if kind == "int":
        return rng.integers(0, 2, n)
    if kind == "str":
        return np.array(["cat", "dog", "emu"], dtype=object)[rng.integers(0, 3, n)]
    if kind == "bool":
        return rng.integers(0, 2, n).astype(bool)
    raise AssertionError(kind)


def X_for(n=64, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 4))


SMALL = dict(hidden_units=(8, 6), epochs=3, batch_size=16, random_state=0)

# id -> (estimator factory, (X, y))
CASES = {
    "reg-1d": (lambda: fastnn.DNNRegressor(**SMALL), lambda: regression_data()),
    "reg-2d": (lambda: fastnn.DNNRegressor(**SMALL), lambda: regression_data(outputs=3)),
    "reg-bn-dropout": (lambda: fastnn.DNNRegressor(**SMALL, batch_norm=True, dropout=0.2),
                       lambda: regression_data()),
    "reg-adam-instance": (lambda: fastnn.DNNRegressor(**SMALL, optimizer=optim.Adam(lr=0.01)),
                          lambda: regression_data(outputs=2)),
    "reg-sgd-schedule": (lambda: fastnn.DNNRegressor(
        **SMALL, optimizer=optim.SGD(optim.ExponentialDecay(0.05, 100, 0.5), momentum=0.9)),
        lambda: regression_data()),
    "reg-early-stopping-plateau": (lambda: fastnn.DNNRegressor(
        **dict(SMALL, epochs=5), early_stopping=True, validation_fraction=0.25, lr_patience=1, loss="huber"),
        lambda: regression_data()),
    "clf-binary-int": (lambda: fastnn.DNNClassifier(**SMALL), lambda: (X_for(), labels("int"))),
    "clf-multiclass-str": (lambda: fastnn.DNNClassifier(**SMALL, batch_norm=True, dropout=0.2),
                           lambda: (X_for(), labels("str"))),
    "clf-bool": (lambda: fastnn.DNNClassifier(**SMALL), lambda: (X_for(), labels("bool"))),
    "clf-multiclass-adam": (lambda: fastnn.DNNClassifier(**SMALL, optimizer=optim.Adam(lr=0.01)),
                            lambda: (X_for(), labels("str"))),
    "clf-binary-sgd-schedule-bn-dropout": (lambda: fastnn.DNNClassifier(
        **SMALL, batch_norm=True, dropout=0.2,
        optimizer=optim.SGD(optim.ExponentialDecay(0.05, 100, 0.5), momentum=0.9)),
        lambda: (X_for(), labels("int"))),
}


def fitted(case):
    make, data = CASES[case]
    X, y = data()
    return make().fit(X, y), X, y


def comparable_params(est):
    """get_params() with callbacks -> None (never saved) and an optimizer instance as its
    saved description (optimizers have no value equality)."""
    params = est.get_params(deep=False)
    params["callbacks"] = None
    if isinstance(params["optimizer"], optim.Optimizer):
        params["optimizer"] = P.optimizer_state(params["optimizer"])[0]
    return params


def bits(a):
    """The exact bytes of a numeric array (or list): NaN compares equal to the same NaN."""
    a = np.asarray(a)
    return a.dtype.str, a.shape, a.tobytes()


def assert_same_history(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert len(a[key]) == len(b[key]), key
        assert bits(np.asarray(a[key], np.float64)) == bits(np.asarray(b[key], np.float64)), key


def assert_same_predictions(a, b, X):
    pa, pb = a.predict(X), b.predict(X)
    if pa.dtype.kind in "fc":
        assert bits(pa) == bits(pb)
    else:  # labels (object arrays of str have no fixed bytes)
        assert pa.shape == pb.shape and np.array_equal(pa, pb)
        assert [type(v) for v in pa.tolist()] == [type(v) for v in pb.tolist()]
    if hasattr(a, "predict_proba"):
        assert bits(a.predict_proba(X)) == bits(b.predict_proba(X))
        assert bits(a.decision_function(X)) == bits(b.decision_function(X))


def assert_same_estimator(loaded, est, X):
    assert type(loaded) is type(est)
    assert_same_predictions(loaded, est, X)
    if hasattr(est, "classes_"):
        assert np.array_equal(loaded.classes_, est.classes_)
    assert_same_history(loaded.history_, est.history_)
    assert loaded.loss_curve_ == est.loss_curve_
    assert loaded.n_iter_ == est.n_iter_ and loaded.n_features_in_ == est.n_features_in_
    assert bits(loaded.best_loss_) == bits(np.float64(est.best_loss_))
    assert comparable_params(loaded) == comparable_params(est)
    assert P.sequential_state(loaded.model_)[0] == P.sequential_state(est.model_)[0]
    assert bits(loaded.model_.params) == bits(est.model_.params)
    assert bits(loaded.model_.buffers) == bits(est.model_.buffers)
    assert P.optimizer_state(loaded.optimizer_)[0] == P.optimizer_state(est.optimizer_)[0]


def continue_training(est, X, y):
    est.partial_fit(X, y)
    est.partial_fit(X[::-1], y[::-1])
    return est


def assert_trains_on_identically(copy_, est, X, y):
    continue_training(copy_, X, y)
    continue_training(est, X, y)
    assert bits(copy_.model_.params) == bits(est.model_.params)
    assert bits(copy_.model_.buffers) == bits(est.model_.buffers)
    assert copy_.model_.step == est.model_.step
    assert P.optimizer_state(copy_.optimizer_)[0] == P.optimizer_state(est.optimizer_)[0]
    for name, arr in est.optimizer_.state.items():
        assert bits(copy_.optimizer_.state[name]) == bits(arr), name
    assert_same_predictions(copy_, est, X)
    assert copy_.n_iter_ == est.n_iter_
    assert copy_.history_["loss"] == est.history_["loss"]


def bad_estimator_file(path, match=None):
    """Loading ``path`` raises ModelFormatError (a ValueError) naming it, nothing else."""
    try:
        fastnn.load(path)
    except ModelFormatError as exc:
        assert isinstance(exc, ValueError)
        assert str(path) in str(exc)
        if match is not None:
            assert re.search(match, str(exc)), str(exc)
        return exc
    except Exception as exc:  # noqa: BLE001 - the point: no other exception type may escape
        pytest.fail(f"fastnn.load raised {type(exc).__name__} instead of ModelFormatError: {exc}")
    pytest.fail("fastnn.load accepted a bad file")


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("case", CASES)
def test_save_load_round_trip_is_bitwise(tmp_path, case):
    est, X, y = fitted(case)
    path = tmp_path / "est.fnn"
    est.save(path)
    loaded = fastnn.load(path)
    assert_same_estimator(loaded, est, X)
    X_new = np.random.default_rng(9).standard_normal((17, 4)) * 3
    assert_same_predictions(loaded, est, X_new)
    if not est.early_stopping:  # val_loss is recorded (as NaN) without a validation split
        assert np.isnan(loaded.history_["val_loss"]).all()
    else:
        assert np.isfinite(loaded.history_["val_loss"]).all() and np.isfinite(loaded.best_loss_)


@pytest.mark.parametrize("case", CASES)
def test_loaded_estimator_continues_training_bitwise(tmp_path, case):
    est, X, y = fitted(case)
    path = tmp_path / "est.fnn"
    est.save(path)
    assert_trains_on_identically(fastnn.load(path), est, X, y)


def test_save_accepts_str_paths_and_is_deterministic(tmp_path):
    est, X, _ = fitted("clf-multiclass-str")
    a, b = tmp_path / "a.fnn", str(tmp_path / "b.fnn")
    est.save(a)
    est.save(b)
    assert a.read_bytes() == pathlib.Path(b).read_bytes()
    assert_same_predictions(fastnn.load(b), est, X)


def test_saved_file_is_a_pickle_free_npz_with_versions(tmp_path):
    est, X, _ = fitted("reg-bn-dropout")
    path = tmp_path / "est.npz"
    est.save(path)
    with np.load(path, allow_pickle=False) as npz:  # a plain NumPy .npz
        assert "__header__" in npz.files and "model.params" in npz.files
        assert bits(npz["model.params"]) == bits(est.model_.params)
    header, arrays = P.read_model(path)
    assert header["class"] == "DNNRegressor"
    assert header["format_version"] == P.FORMAT_VERSION and header["fastnn_version"] == fastnn.__version__
    assert header["params"]["batch_norm"] is True and header["params"]["dropout"] == 0.2
    assert not any(a.dtype.hasobject for a in arrays.values())


def test_callbacks_and_generator_seeds_are_not_saved(tmp_path):
    class Recorder:
        def on_epoch_end(self, est, epoch, logs):
            pass

    X, y = regression_data()
    est = fastnn.DNNRegressor(**dict(SMALL, random_state=np.random.default_rng(3)), callbacks=[Recorder()])
    est.fit(X, y)
    est.save(tmp_path / "est.fnn")
    loaded = fastnn.load(tmp_path / "est.fnn")
    assert loaded.callbacks is None and loaded.random_state is None
    assert_same_predictions(loaded, est, X)


def test_object_dtype_labels_keep_their_dtype(tmp_path):
    est, X, _ = fitted("clf-multiclass-str")
    assert est.classes_.dtype == object
    est.save(tmp_path / "est.fnn")
    loaded = fastnn.load(tmp_path / "est.fnn")
    assert loaded.classes_.dtype == est.classes_.dtype
    assert loaded.predict(X).dtype == est.predict(X).dtype


def test_unfitted_save_is_not_fitted_error(tmp_path):
    for est in (fastnn.DNNRegressor(), fastnn.DNNClassifier()):
        with pytest.raises(NotFittedError):
            est.save(tmp_path / "est.fnn")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- pickle and clone


@pytest.mark.parametrize("case", ["reg-2d", "reg-sgd-schedule", "clf-multiclass-str",
                                  "clf-binary-sgd-schedule-bn-dropout"])
def test_pickle_round_trip_predicts_and_trains_on_bitwise(case):
    est, X, y = fitted(case)
    copy_ = pickle.loads(pickle.dumps(est))
    assert_same_estimator(copy_, est, X)
    if hasattr(est, "classes_"):
        assert copy_.classes_.dtype == est.classes_.dtype
    assert_trains_on_identically(copy_, est, X, y)


@pytest.mark.parametrize("case", ["reg-adam-instance", "clf-binary-sgd-schedule-bn-dropout"])
def test_clone_of_fitted_estimator_is_unfitted_with_equal_params(case):
    est, X, y = fitted(case)
    twin = clone(est)
    assert type(twin) is type(est)
    assert comparable_params(twin) == comparable_params(est)
    assert not hasattr(twin, "model_")
    with pytest.raises(NotFittedError):
        twin.predict(X)
    assert twin.optimizer is not est.optimizer  # the user's optimizer is never shared
    # same settings, same seed: fitting the clone reproduces the original bit for bit
    assert bits(twin.fit(X, y).model_.params) == bits(est.model_.params)


def test_deepcopy_of_fitted_estimator_is_independent():
    est, X, y = fitted("reg-bn-dropout")
    twin = copy.deepcopy(est)
    before = bits(est.model_.params)
    twin.partial_fit(X, y)
    assert bits(est.model_.params) == before


# ----------------------------------------------------------------------------- atomicity


def _fail_replacing(monkeypatch):
    def replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)


def _fail_writing(monkeypatch):
    real, calls = np.lib.format.write_array, []

    def write_array(fp, arr, **kw):
        calls.append(1)
        if len(calls) == 3:  # header and one array written, the next one half way
            fp.write(b"\0" * 64)
            raise OSError(28, "No space left on device")
        return real(fp, arr, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", write_array)


@pytest.mark.parametrize("fail", [_fail_replacing, _fail_writing], ids=["replacing", "writing"])
def test_failed_save_over_a_model_keeps_the_old_one(tmp_path, monkeypatch, fail):
    old, X, y = fitted("clf-multiclass-str")
    path = tmp_path / "model.fnn"
    old.save(path)
    before = path.read_bytes()
    new = fastnn.DNNClassifier(**dict(SMALL, random_state=1)).fit(X, y)
    fail(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        new.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.fnn"]  # no temporary file left behind
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert path.read_bytes() == before
    assert_same_estimator(fastnn.load(path), old, X)


# ----------------------------------------------------------------------------- damaged files


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    est, X, _ = fitted("clf-binary-sgd-schedule-bn-dropout")
    path = tmp_path_factory.mktemp("saved") / "clf.fnn"
    est.save(path)
    return est, X, path


def test_every_truncation_is_a_format_error(saved_classifier, tmp_path):
    _, _, path = saved_classifier
    data = path.read_bytes()
    cut = tmp_path / "cut.fnn"
    for k in range(20):
        cut.write_bytes(data[:len(data) * k // 20])
        bad_estimator_file(cut)


def test_byte_flips_are_caught_or_harmless(saved_classifier, tmp_path):
    est, X, path = saved_classifier
    data = path.read_bytes()
    flipped = tmp_path / "flipped.fnn"
    caught = 0
    for i, pos in enumerate(np.linspace(0, len(data) - 1, 20).astype(int)):
        corrupt = bytearray(data)
        corrupt[pos] ^= 1 << (i % 8)
        flipped.write_bytes(bytes(corrupt))
        try:
            loaded = fastnn.load(flipped)
        except ModelFormatError as exc:
            assert str(flipped) in str(exc)
            caught += 1
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"flip at byte {pos}: {type(exc).__name__} instead of ModelFormatError: {exc}")
        else:  # the flip hit a byte the reader does not use (a timestamp, an attribute)
            assert_same_estimator(loaded, est, X)
    assert caught >= 10  # the CRC catches every flip in the data


def _without_reserved(header):
    return {k: v for k, v in header.items() if k not in P._RESERVED}


def _rewrite(path, edit):
    header, arrays = P.read_model(path)
    header = copy.deepcopy(_without_reserved(header))
    edit(header, arrays)
    P.write_model(path, header, arrays)


@pytest.fixture
def saved_regressor(tmp_path):
    est, X, y = fitted("reg-adam-instance")
    path = tmp_path / "reg.fnn"
    est.save(path)
    return est, X, path


def test_unchanged_rewrite_loads(saved_regressor):
    """The tampering below rewrites the file this way: unchanged, it still loads."""
    est, X, path = saved_regressor
    _rewrite(path, lambda h, a: None)
    assert_same_estimator(fastnn.load(path), est, X)


TAMPER = {
    "unknown-class": (lambda h, a: h.update({"class": "DNNTransformer"}), "DNNTransformer"),
    "class-not-a-string": (lambda h, a: h.update({"class": ["DNNRegressor"]}), None),
    "unknown-param": (lambda h, a: h["params"].update(evil="os.system"), "params"),
    "missing-param": (lambda h, a: h["params"].pop("epochs"), "params"),
    "params-not-an-object": (lambda h, a: h.update(params=None), None),
    "hidden-units-3-for-2-layers": (lambda h, a: h["params"].update(hidden_units=[8, 6, 4]), "hidden_units"),
    "hidden-units-string": (lambda h, a: h["params"].update(hidden_units="86"), "hidden_units"),
    "bad-activation": (lambda h, a: h["params"].update(activation="gelu"), "activation"),
    "optimizer-param-evil": (lambda h, a: h["params"]["optimizer"].update({"class": "Evil"}), "Evil"),
    "n-features-mismatch": (lambda h, a: h["fitted"].update(n_features_in_=5), "features"),
    "n-features-not-a-number": (lambda h, a: h["fitted"].update(n_features_in_=[4]), None),
    "fitted-missing": (lambda h, a: h.pop("fitted"), None),
    "rng-foreign": (lambda h, a: h["fitted"].update(rng={"bit_generator": "MT19937"}), None),
    "y-ndim-missing": (lambda h, a: h["fitted"].update(y_ndim=None), None),
    "history-loss-missing": (lambda h, a: a.pop("history.loss"), None),
    "history-lr-missing": (lambda h, a: a.pop("history.lr"), None),
    "feature-std-missing": (lambda h, a: a.pop("feature_std"), None),
    "model-params-short": (lambda h, a: a.update({"model.params": a["model.params"][:-1]}), "must hold"),
    "optimizer-state-missing": (lambda h, a: (a.pop("optimizer.m"), a.pop("optimizer.v")), "missing"),
    # the loader once accepted these and the estimator broke later
    "history-stat-missing": (lambda h, a: a.pop("history.grad_norm"), None),
    "history-length-mismatch": (
        lambda h, a: a.update({"history.weight_norm": a["history.weight_norm"][:1]}), None),
    "optimizer-state-wrong-shape": (
        lambda h, a: a.update({"optimizer.m": a["optimizer.m"][:5], "optimizer.v": a["optimizer.v"][:5]}), None),
    "hidden-units-wrong-width": (lambda h, a: h["params"].update(hidden_units=[9, 6]), "hidden_units"),
}


@pytest.mark.parametrize("edit, match", TAMPER.values(), ids=TAMPER.keys())
def test_tampered_estimator_files_are_format_errors(saved_regressor, edit, match):
    _, _, path = saved_regressor
    _rewrite(path, edit)
    bad_estimator_file(path, match)


CLASS_EDITS = {
    "binary-one-class": ("clf-binary-int", lambda h, a: a.update(classes=a["classes"][:1])),
    "binary-three-classes": ("clf-binary-int", lambda h, a: a.update(classes=np.array([0, 1, 2]))),
    "binary-classes-missing": ("clf-binary-int", lambda h, a: a.pop("classes")),
    "multiclass-two-classes": ("clf-multiclass-str", lambda h, a: a.update(classes=a["classes"][:2])),
    "multiclass-five-classes": ("clf-multiclass-str", lambda h, a: a.update(classes=np.array(list("abcde")))),
    "multiclass-2d-classes": ("clf-multiclass-str", lambda h, a: a.update(classes=np.array([["a", "b", "c"]]))),
}


@pytest.mark.parametrize("case, edit", CLASS_EDITS.values(), ids=CLASS_EDITS.keys())
def test_classes_that_do_not_fit_the_outputs_are_format_errors(tmp_path, case, edit):
    est, _, _ = fitted(case)
    path = tmp_path / "clf.fnn"
    est.save(path)
    _rewrite(path, edit)
    bad_estimator_file(path)


def test_a_newer_format_asks_to_upgrade(saved_regressor, monkeypatch):
    est, _, path = saved_regressor
    monkeypatch.setattr(P._container, "FORMAT_VERSION", P.FORMAT_VERSION + 1)  # what write_model writes
    est.save(path)
    monkeypatch.undo()
    bad_estimator_file(path, "upgrade")


# ----------------------------------------------------------------------------- dispatch


def test_load_returns_the_saved_kind(tmp_path):
    reg, X, _ = fitted("reg-1d")
    clf, _, _ = fitted("clf-bool")
    reg.save(tmp_path / "reg.fnn")
    clf.save(tmp_path / "clf.fnn")
    P.save_sequential(reg.model_, tmp_path / "seq.fnn", reg.optimizer_)
    assert type(fastnn.load(tmp_path / "reg.fnn")) is fastnn.DNNRegressor
    assert type(fastnn.load(tmp_path / "clf.fnn")) is fastnn.DNNClassifier
    seq = fastnn.load(tmp_path / "seq.fnn")
    assert type(seq) is nn.Sequential
    X32 = X.astype(np.float32)
    assert bits(seq.predict(X32)) == bits(reg.model_.predict(X32))
    with pytest.raises(ModelFormatError, match="not a Sequential"):
        P.load_sequential(tmp_path / "reg.fnn")
