"""Pipeline persistence: ``save_pipeline`` / ``load`` / ``load_pipeline`` round trip a
scikit-learn ``Pipeline`` of fastnn scalers and a fastnn estimator bitwise; the scaler
state functions (``scaler_state`` / ``scaler_from_state``) check every attribute against a
freshly fitted reference; a tampered file is a ``ModelFormatError``, a pipeline with other
steps a ``TypeError``, an unfitted one ``NotFittedError``.
"""
from __future__ import annotations


import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline

import fastnn
from fastnn import persistence as P
from fastnn import preprocessing as pre
from fastnn._errors import ModelFormatError

from support import GOLDEN

SMALL = dict(hidden_units=(8,), epochs=2, batch_size=16, random_state=0)


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)) * [1.0, 100.0, 0.01] + [0.0, 500.0, 0.0]
    return X, X @ [1.0, 0.01, 50.0] + 0.1 * rng.standard_normal(n)


def labels(n=64, seed=1):
    return np.array(["cat", "dog", "emu"])[np.random.default_rng(seed).integers(0, 3, n)]


SCALERS = {
    "standard": lambda: pre.StandardScaler(),
    "standard-no-std": lambda: pre.StandardScaler(with_std=False),
    "minmax": lambda: pre.MinMaxScaler(feature_range=(-1, 1), clip=True),
    "log": lambda: pre.LogScaler(offset=1000.0),
    "clipper-fixed": lambda: pre.Clipper(lower=[-1.0, 400.0, -0.01], upper=[2.0, 600.0, 0.01]),
    "clipper-quantiles": lambda: pre.Clipper(quantile_range=(5, 95)),
    "robust": lambda: pre.RobustScaler(quantile_range=(10, 90)),
}


def fitted(*scalers, classify=False):
    X, y = data()
    est = fastnn.DNNClassifier(**SMALL) if classify else fastnn.DNNRegressor(**SMALL)
    return make_pipeline(*scalers, est).fit(X, labels() if classify else y), X


def round_trip(pipe, tmp_path, **kw):
    path = tmp_path / "pipe.npz"
    P.save_pipeline(pipe, path, **kw)
    return fastnn.load(path)


def assert_same_scaler(a, b):
    assert type(a) is type(b)
    # sequences (lists, arrays) of numbers come back as tuples
    as_tuples = {k: tuple(np.asarray(v).tolist()) if isinstance(v, (list, np.ndarray)) else v
                 for k, v in a.get_params().items()}
    assert b.get_params() == as_tuples
    for key, value in vars(a).items():
        if key == "_rows" or key in as_tuples:
            continue
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(b, key), value)
            assert getattr(b, key).dtype == value.dtype
        else:
            assert getattr(b, key) == value, key


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", SCALERS)
def test_round_trip_each_scaler_bitwise(kind, tmp_path):
    pipe, X = fitted(SCALERS[kind]())
    loaded = round_trip(pipe, tmp_path)
    assert isinstance(loaded, Pipeline)
    assert [name for name, _ in loaded.steps] == [name for name, _ in pipe.steps]
    assert_same_scaler(pipe[0], loaded[0])
    np.testing.assert_array_equal(loaded[0].transform(X), pipe[0].transform(X))
    assert np.array_equal(loaded.predict(X), pipe.predict(X))
    assert loaded.fastnn_metadata_ == {}


def test_round_trip_classifier_chain_and_metadata(tmp_path):
    pipe, X = fitted(pre.Clipper(quantile_range=(1, 99)), pre.StandardScaler(), classify=True)
    meta = {"features": ["a", "b", "c"], "target": "species", "task": "classification"}
    loaded = round_trip(pipe, tmp_path, metadata=meta)
    assert loaded.fastnn_metadata_ == meta
    assert [type(s).__name__ for _, s in loaded.steps] == ["Clipper", "StandardScaler", "DNNClassifier"]
    assert np.array_equal(loaded.predict(X), pipe.predict(X))
    assert np.array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    assert loaded[-1].classes_.tolist() == ["cat", "dog", "emu"]
    assert loaded[-1].history_["loss"] == pipe[-1].history_["loss"]
    assert [f.mode for f in loaded[-1].diagnose()] == [f.mode for f in pipe[-1].diagnose()]
    assert P.load_pipeline(tmp_path / "pipe.npz").fastnn_metadata_ == meta


def test_estimator_alone_and_custom_step_names(tmp_path):
    X, y = data()
    pipe = Pipeline([("net", fastnn.DNNRegressor(**SMALL))]).fit(X, y)
    loaded = round_trip(pipe, tmp_path)
    assert [name for name, _ in loaded.steps] == ["net"]
    assert np.array_equal(loaded.predict(X), pipe.predict(X))


def test_standard_scaler_state_continues_partial_fit(rng):
    X = rng.standard_normal((40, 3))
    X[:7, 1] = np.nan  # columns saw different counts: n_samples_seen_ is an array
    sc = pre.StandardScaler().fit(X)
    assert isinstance(sc.n_samples_seen_, np.ndarray)
    loaded = P.scaler_from_state(*P.scaler_state(sc))
    assert_same_scaler(sc, loaded)
    more = rng.standard_normal((10, 3))
    assert_same_scaler(sc.partial_fit(more), loaded.partial_fit(more))


def test_scaler_state_keeps_feature_names_and_not_the_rows(rng):
    sc = pre.RobustScaler().fit(rng.standard_normal((30, 2)))
    sc.feature_names_in_ = np.array(["litres", "millilitres"], dtype=object)
    config, arrays = P.scaler_state(sc)
    assert config["fitted"]["feature_names_in_"] == ["litres", "millilitres"]
    assert set(arrays) == {"center_", "scale_"}  # the fitted rows (the training data) stay out
    loaded = P.scaler_from_state(config, arrays)
    assert loaded.feature_names_in_.tolist() == ["litres", "millilitres"]
    np.testing.assert_array_equal(loaded.scale_, sc.scale_)


# ----------------------------------------------------------------------------- refused at save


def test_non_fastnn_steps_are_type_errors(tmp_path):
    # scikit-learn steps before the estimator are saved through skops: tests/persistence/test_skops_persistence.py
    X, y = data()
    with pytest.raises(TypeError, match="last pipeline step"):
        P.save_pipeline(make_pipeline(pre.StandardScaler(), LinearRegression()).fit(X, y), tmp_path / "b")
    with pytest.raises(TypeError, match="Pipeline"):
        P.save_pipeline(fastnn.DNNRegressor(**SMALL).fit(X, y), tmp_path / "c")
    pipe, _ = fitted(pre.StandardScaler())
    with pytest.raises(TypeError, match="metadata"):
        P.save_pipeline(pipe, tmp_path / "d", metadata=["not", "a", "dict"])
    assert not list(tmp_path.iterdir())


def test_unfitted_steps_are_not_fitted_errors(tmp_path):
    with pytest.raises(NotFittedError):
        P.save_pipeline(make_pipeline(pre.StandardScaler(), fastnn.DNNRegressor(**SMALL)), tmp_path / "a")
    X, y = data()
    est = fastnn.DNNRegressor(**SMALL).fit(X, y)
    with pytest.raises(NotFittedError):
        P.save_pipeline(make_pipeline(pre.MinMaxScaler(), est), tmp_path / "b")
    assert not list(tmp_path.iterdir())


def test_failed_save_keeps_the_old_file(tmp_path):
    pipe, X = fitted(pre.StandardScaler())
    path = tmp_path / "pipe.npz"
    P.save_pipeline(pipe, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="JSON"):
        P.save_pipeline(pipe, path, metadata={"bad": {1, 2}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pipe.npz"]


# ----------------------------------------------------------------------------- tampering


@pytest.fixture
def saved(tmp_path):
    """(path, header, arrays) of a saved StandardScaler -> MinMaxScaler -> DNNRegressor."""
    pipe, _ = fitted(pre.StandardScaler(), pre.MinMaxScaler())
    path = tmp_path / "pipe.npz"
    P.save_pipeline(pipe, path, metadata={"features": ["a", "b", "c"]})
    header, arrays = P.read_model(path)
    for key in ("magic", "format_version", "fastnn_version", "arrays"):
        del header[key]
    return path, header, arrays


def rewrite(path, header, arrays):
    P.write_model(path, header, arrays)
    return path


def edit_class(h, a):
    h["steps"][0]["scaler"]["class"] = "EvilScaler"


def edit_shape(h, a):
    a["step0.mean_"] = np.zeros(4)


def edit_missing_array(h, a):
    del a["step1.scale_"]


def edit_missing_scalar(h, a):
    del h["steps"][0]["scaler"]["fitted"]["n_samples_seen_"]


def edit_extra(h, a):
    a["step0.extra_"] = np.zeros(3)


def edit_dtype(h, a):
    a["step0.scale_"] = np.array(["a", "b", "c"])


def edit_param_value(h, a):
    h["steps"][1]["scaler"]["params"]["feature_range"] = [1, 0]


def edit_param_name(h, a):
    h["steps"][1]["scaler"]["params"]["no_such_param"] = True


def edit_param_type(h, a):
    h["steps"][1]["scaler"]["params"]["feature_range"] = {"lo": 0}


def edit_n_features(h, a):
    h["steps"][0]["scaler"]["fitted"]["n_features_in_"] = 4


def edit_huge_n_features(h, a):
    h["steps"][0]["scaler"]["fitted"]["n_features_in_"] = 10 ** 12


def edit_none(h, a):
    h["steps"][0]["scaler"]["fitted"]["mean_"] = None
    del a["step0.mean_"]


def edit_estimator_class(h, a):
    h["steps"][-1]["estimator"]["class"] = "Pipeline"


def edit_stray_array(h, a):
    a["step9.mean_"] = np.zeros(3)


def edit_step_name(h, a):
    h["steps"][1]["name"] = h["steps"][0]["name"]


def edit_no_steps(h, a):
    h["steps"] = []


def edit_metadata(h, a):
    h["metadata"] = ["features"]


def edit_step_keys(h, a):
    h["steps"][0]["transformer"] = h["steps"][0].pop("scaler")


@pytest.mark.parametrize("edit", [edit_class, edit_shape, edit_missing_array, edit_missing_scalar, edit_extra,
                                  edit_dtype, edit_param_value, edit_param_name, edit_param_type, edit_n_features,
                                  edit_huge_n_features, edit_none, edit_estimator_class, edit_stray_array,
                                  edit_step_name, edit_no_steps, edit_metadata, edit_step_keys],
                         ids=lambda f: f.__name__[5:])
def test_tampered_files_are_format_errors(saved, edit):
    path, header, arrays = saved
    edit(header, arrays)
    rewrite(path, header, arrays)
    with pytest.raises(ModelFormatError, match="cannot load"):
        fastnn.load(path)
    with pytest.raises(ModelFormatError):
        P.load_pipeline(path)


def test_untouched_rewrite_still_loads(saved):
    path, header, arrays = saved
    assert isinstance(fastnn.load(rewrite(path, header, arrays)), Pipeline)


def test_load_pipeline_refuses_other_models(tmp_path):
    X, y = data()
    fastnn.DNNRegressor(**SMALL).fit(X, y).save(tmp_path / "est.npz")
    with pytest.raises(ModelFormatError, match="not a Pipeline"):
        P.load_pipeline(tmp_path / "est.npz")


def test_a_loaded_quantile_scaler_refuses_partial_fit(tmp_path):
    import fastnn
    from fastnn.preprocessing import RobustScaler
    from sklearn.pipeline import make_pipeline
    X = np.random.default_rng(0).random((50, 3))
    pipe = make_pipeline(RobustScaler(), fastnn.DNNRegressor(epochs=1, random_state=0)).fit(X, X.sum(axis=1))
    P.save_pipeline(pipe, tmp_path / "m.npz")
    scaler = fastnn.load(tmp_path / "m.npz")[0]
    np.testing.assert_array_equal(scaler.transform(X), pipe[0].transform(X))
    with pytest.raises(ValueError, match="without its training rows"):
        scaler.partial_fit(X)  # the rows are not in the file: exact quantiles cannot continue
    scaler.fit(X)


def test_fastnn_save_dispatches_on_the_object(tmp_path):
    X = np.random.default_rng(1).random((40, 2))
    est = fastnn.DNNRegressor(epochs=1, random_state=0).fit(X, X[:, 0])
    pipe = make_pipeline(pre.StandardScaler(), fastnn.DNNRegressor(epochs=1, random_state=0)).fit(X, X[:, 0])
    model = fastnn.nn.Sequential([fastnn.nn.Dense(2, 1)])
    for obj, name in ((est, "est.npz"), (pipe, "pipe.npz"), (model, "seq.npz")):
        fastnn.save(obj, tmp_path / name)
        back = fastnn.load(tmp_path / name)
        assert type(back) is type(obj)
        np.testing.assert_array_equal(back.predict(X), obj.predict(X))
    with pytest.raises(TypeError, match="fastnn.save takes"):
        fastnn.save(LinearRegression().fit(X, X[:, 0]), tmp_path / "lr.npz")
    with pytest.raises(TypeError, match="no options"):
        fastnn.save(est, tmp_path / "x.npz", metadata={})




def test_file_of_60c4ab6_loads_and_predicts_the_same():
    """A pipeline saved by fastnn 60c4ab6 (tests/golden/make_scalers_60c4ab6.py), from before
    the scalers took copy=/with_centering=/... and before StandardScaler kept its moments
    about a shift, loads with those parameters at their defaults and gives the predictions
    it gave then (the scalers' statistics are the saved ones, so bit for bit)."""
    expected = np.load(GOLDEN / "scalers_60c4ab6_expected.npz")
    pipe = fastnn.load(GOLDEN / "scalers_60c4ab6.npz")
    robust, standard = pipe[2], pipe[4]
    assert robust.with_centering and robust.with_scaling and not robust.unit_variance and robust.copy
    assert standard.copy
    np.testing.assert_array_equal(pipe[:-1].transform(expected["X"]), expected["Z"])
    np.testing.assert_array_equal(pipe.predict(expected["X"]), expected["pred"])
    # partial_fit continues from the old moments: as one fit on the old rows and the new
    seen = pipe[:-2].transform(expected["X"])
    more = seen[:8] * 1.5
    standard.partial_fit(more)
    whole = pre.StandardScaler().fit(np.vstack([seen, more]))
    assert standard.n_samples_seen_ == 64 + 8
    np.testing.assert_allclose(standard.mean_, whole.mean_, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(standard.var_, whole.var_, rtol=1e-12)


def test_weighted_and_copy_false_scalers_round_trip(tmp_path):
    X, y = data()
    w = np.linspace(0.5, 3.0, len(X))
    standard = pre.StandardScaler(copy=False).fit(X, sample_weight=w)
    robust = pre.RobustScaler(with_centering=False, unit_variance=True, quantile_range=(10, 90)).fit(X)
    pipe = make_pipeline(standard, robust, fastnn.DNNRegressor(**SMALL)).fit(X, y)
    assert pipe[0].n_samples_seen_ == len(X)  # the pipeline's fit re-ran it unweighted: weight it again
    pipe[0].fit(X, sample_weight=w)
    assert isinstance(pipe[0].n_samples_seen_, float)
    back = round_trip(pipe, tmp_path)
    assert back[0].n_samples_seen_ == pytest.approx(w.sum()) and back[0].copy is False
    assert back[1].center_ is None and back[1].unit_variance
    np.testing.assert_array_equal(back[0].mean_, pipe[0].mean_)
    np.testing.assert_array_equal(back.predict(X.copy()), pipe.predict(X.copy()))  # copy=False scales in place
