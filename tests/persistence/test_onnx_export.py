"""ONNX export (fastnn.export_onnx, ``fastnn export``): the exported file, run in ONNX
Runtime, reproduces fastnn's predictions for every layer, activation and scaler, for
float32 and float64 inputs; classifiers give skl2onnx's "label" and "probabilities";
pipelines with scikit-learn steps go through skl2onnx with fastnn's converters; bad
objects and paths are refused before anything is written.

The tolerance is 1e-5 relative to the size of the predictions (``rtol=1e-5`` and
``atol=1e-5 * max|prediction|``): ONNX Runtime multiplies matrices in another order than
fastnn's kernels, so float32 outputs near zero differ by a few float32 ulps of the
output's scale, not of the (tiny) value itself.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package (pip install 'fastnn[onnx]')")
rt = pytest.importorskip("onnxruntime", reason="running the exported files needs onnxruntime")

import fastnn  # noqa: E402
from fastnn import nn, preprocessing as pp  # noqa: E402
from fastnn.onnx_export import to_onnx  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from support import flats_table, subprocess_env  # noqa: E402

DTYPES = [np.float32, np.float64]
ACTIVATIONS = ["linear", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh"]


def session(path_or_proto):
    source = path_or_proto.SerializeToString() if hasattr(path_or_proto, "SerializeToString") else str(path_or_proto)
    return rt.InferenceSession(source, providers=["CPUExecutionProvider"])


def run_onnx(path_or_proto, X):
    return session(path_or_proto).run(None, {"X": X})


def assert_close(got, expected):
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4)) * [1.0, 3.0, 0.5, 2.0] + [0.0, 5.0, -1.0, 0.0]
    y = X @ np.array([1.0, -0.5, 2.0, 0.3]) + 0.1 * rng.standard_normal(200)
    return X, y


def fitted_regressor(X, y, **kw):
    kw = {"hidden_units": (16, 8), "epochs": 3, "random_state": 0, **kw}
    return fastnn.DNNRegressor(**kw).fit(X, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_regressor_every_activation_with_batch_norm_and_dropout(tmp_path, data, activation, dtype):
    X, y = data
    reg = fitted_regressor(X, y, activation=activation, batch_norm=True, dropout=0.2)
    path = tmp_path / "reg.onnx"
    fastnn.export_onnx(reg, path, dtype=dtype)
    (out,) = run_onnx(path, X.astype(dtype))
    assert out.dtype == dtype and out.shape == (len(X), 1)
    assert_close(out[:, 0], reg.predict(X.astype(dtype)))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Dropout" not in ops and "BatchNormalization" not in ops


@pytest.mark.parametrize("dtype", DTYPES)
def test_regressor_several_outputs(tmp_path, data, dtype):
    X, y = data
    reg = fitted_regressor(X, np.column_stack([y, -2 * y, y ** 2 / 10]))
    (out,) = run_onnx(to_onnx(reg, dtype=dtype), X.astype(dtype))
    assert out.shape == (len(X), 3)
    assert_close(out, reg.predict(X.astype(dtype)))


def trained_sequential(layers, model_dtype, X):
    """A Sequential whose batch norms have non-trivial running statistics and gammas."""
    model = nn.Sequential(layers, seed=3, dtype=model_dtype)
    rng = np.random.default_rng(1)
    for _ in range(5):
        model.forward(X[rng.permutation(len(X))[:64]], training=True)
    for name, value in model.named_params().items():
        if name.endswith(("gamma", "beta", "slope")):
            value[...] = rng.uniform(0.5, 1.5, value.shape) * (1 if name.endswith("gamma") else -0.2)
    return model


@pytest.mark.parametrize("input_dtype", DTYPES)
@pytest.mark.parametrize("model_dtype", DTYPES)
def test_sequential_every_layer(data, model_dtype, input_dtype):
    X, _ = data
    layers = [nn.Dense(4, 6, activation="prelu"), nn.BatchNorm(6), nn.Dropout(0.3), nn.Activation("elu"),
              nn.Dense(6, 5), nn.BatchNorm(5, eps=1e-5), nn.Activation("leaky_relu", negative_slope=0.2),
              nn.Dense(5, 5, activation="elu", alpha=0.7, use_bias=False), nn.Activation("tanh"),
              nn.Activation("sigmoid"), nn.Activation("relu"), nn.Dense(5, 2, activation="leaky_relu"),
              nn.Activation("linear")]
    model = trained_sequential(layers, model_dtype, X)
    (out,) = run_onnx(to_onnx(model, dtype=input_dtype), X.astype(input_dtype))
    assert out.dtype == input_dtype and out.shape == (len(X), 2)
    assert_close(out, model.predict(X.astype(input_dtype)))


def test_batch_norm_after_linear_dense_is_folded(data):
    X, _ = data
    model = trained_sequential([nn.Dense(4, 6), nn.BatchNorm(6), nn.Activation("relu"), nn.BatchNorm(6),
                                nn.Dense(6, 1)], np.float32, X)
    proto = to_onnx(model)
    ops = [n.op_type for n in proto.graph.node]
    # the first batch norm disappears into the first Dense; the second (after relu) is one Mul + Add
    assert ops.count("MatMul") == 2 and ops.count("Mul") == 1
    (out,) = run_onnx(proto, X.astype(np.float32))
    assert_close(out, model.predict(X))


SCALERS = {
    "standard": lambda: pp.StandardScaler(),
    "standard_no_mean": lambda: pp.StandardScaler(with_mean=False),
    "standard_no_std": lambda: pp.StandardScaler(with_std=False),
    "minmax": lambda: pp.MinMaxScaler(feature_range=(-1, 2)),
    "minmax_clip": lambda: pp.MinMaxScaler(clip=True),
    "log": lambda: pp.LogScaler(offset=20.0),
    "robust": lambda: pp.RobustScaler(quantile_range=(10, 90)),
    "clipper_fixed": lambda: pp.Clipper(lower=[-1, 4, -1.5, -2], upper=[1, 6, 0, 1]),
    "clipper_quantiles": lambda: pp.Clipper(quantile_range=(5, 95)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scaler", list(SCALERS))
def test_pipeline_with_each_scaler(data, scaler, dtype):
    X, y = data
    half = len(X) // 2  # fitted on one half, exported and run on all: unseen values leave the ranges
    # a step named like an output: the graph's names stay distinct
    pipe = Pipeline([("variable", SCALERS[scaler]()), ("reg", fastnn.DNNRegressor(hidden_units=(8,), epochs=3,
                                                                                   random_state=0))])
    pipe.fit(X[:half].astype(dtype), y[:half])
    Xt = X.astype(dtype)
    (out,) = run_onnx(to_onnx(pipe, dtype=dtype), Xt)
    assert out.dtype == dtype
    assert_close(out[:, 0], pipe.predict(Xt))
    if scaler == "minmax_clip":  # rows outside the fitted range reach the clipping
        t = pipe[0].transform(Xt[half:])
        assert (t == 0).any() and (t == 1).any()
    if scaler.startswith("clipper"):
        t = pipe[0].transform(Xt[half:])
        assert (t == pipe[0].lower_.astype(dtype)).any() and (t == pipe[0].upper_.astype(dtype)).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_pipeline_of_every_scaler(tmp_path, data, dtype):
    X, y = data
    pipe = Pipeline([("log", pp.LogScaler(offset=20.0)), ("clip", pp.Clipper(quantile_range=(2, 98))),
                     ("robust", pp.RobustScaler()), ("minmax", pp.MinMaxScaler(clip=True)),
                     ("std", pp.StandardScaler()),
                     ("reg", fastnn.DNNRegressor(hidden_units=(8, 4), activation="tanh", batch_norm=True,
                                                 epochs=3, random_state=0))]).fit(X[:150], y[:150])
    path = tmp_path / "pipe.onnx"
    fastnn.export_onnx(pipe, path, dtype=dtype)
    (out,) = run_onnx(path, X.astype(dtype))
    assert_close(out[:, 0], pipe.predict(X.astype(dtype)))


def class_labels(X, kind):
    codes = (X[:, 0] > 0).astype(int) + (X[:, 2] > -1).astype(int)
    if kind == "binary_int":
        return np.where(X[:, 0] > 0, 7, -3)
    if kind == "str":
        return np.array(["cat", "dog", "emu"])[codes]
    if kind == "bool":
        return X[:, 1] > 5
    return codes * 10  # multiclass integers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["binary_int", "bool", "str", "multi_int"])
def test_classifier_labels_and_probabilities(tmp_path, data, kind, dtype):
    X, _ = data
    labels = class_labels(X, kind)
    clf = fastnn.DNNClassifier(hidden_units=(8,), activation="elu", epochs=5, random_state=0)
    pipe = Pipeline([("std", pp.StandardScaler()), ("clf", clf)]).fit(X, labels)
    path = tmp_path / "clf.onnx"
    fastnn.export_onnx(pipe, path, dtype=dtype)
    sess = session(path)
    assert [o.name for o in sess.get_outputs()] == ["label", "probabilities"]
    label, proba = sess.run(None, {"X": X.astype(dtype)})
    assert proba.dtype == dtype and proba.shape == (len(X), len(clf.classes_))
    assert label.shape == (len(X),)
    expected_label = pipe.predict(X.astype(dtype))
    assert label.tolist() == expected_label.tolist()
    assert label.dtype.kind == {"str": "O", "bool": "b"}.get(kind, "i")
    assert_close(proba, pipe.predict_proba(X.astype(dtype)))


def test_classifier_labels_follow_the_logits_at_the_boundary():
    """fastnn picks classes_[1] when the logit is > 0 (a tie goes to classes_[0]); so does the graph."""
    model = nn.Sequential([nn.Dense(1, 1)], seed=0)
    model.params[...] = [1.0, 0.0]  # logit = x
    clf = fastnn.DNNClassifier(hidden_units=(), epochs=1, random_state=0).fit([[-1.0], [1.0]], ["no", "yes"])
    clf.model_ = model
    X = np.array([[-1e-30], [0.0], [1e-30], [2.0]], np.float32)
    label, _ = run_onnx(to_onnx(clf), X)
    assert label.tolist() == clf.predict(X).tolist() == ["no", "no", "yes", "yes"]


# ----------------------------------------------------------------------------- refusals


def test_outlier_remover_is_refused(data):
    X, y = data
    pipe = Pipeline([("out", pp.OutlierRemover()), ("reg", fastnn.DNNRegressor(epochs=1))])
    pipe.steps[0][1].fit(X)
    with pytest.raises(TypeError, match="OutlierRemover.*not a transform"):
        to_onnx(pipe)


def test_unfitted_and_foreign_objects_are_refused(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(NotFittedError):
        fastnn.export_onnx(fastnn.DNNRegressor(), path)
    with pytest.raises(TypeError, match="obj is a builtins.dict"):
        fastnn.export_onnx({}, path)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        fastnn.export_onnx(nn.Sequential([nn.Dense(2, 1)]), 3)
    for dtype in (np.int32, "float16", "no such type"):
        with pytest.raises(ValueError, match="dtype must be float32 or float64"):
            fastnn.export_onnx(nn.Sequential([nn.Dense(2, 1)]), path, dtype=dtype)
    with pytest.raises(ValueError, match="opset must be an int >= 15"):
        fastnn.export_onnx(nn.Sequential([nn.Dense(2, 1)]), path, opset=9)
    assert not path.exists()


def test_without_the_onnx_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[onnx\]'"):
        fastnn.export_onnx(nn.Sequential([nn.Dense(2, 1)]), tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)


def test_failed_export_leaves_the_old_file(tmp_path, monkeypatch):
    """export_onnx writes through fastnn.persistence's atomic writer: a failure at the
    rename leaves the old file and no temporary file."""
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    model = nn.Sequential([nn.Dense(2, 1)])

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        fastnn.export_onnx(model, path)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
    fastnn.export_onnx(model, path)
    assert onnx.load(str(path)).graph.input[0].name == "X"


# ----------------------------------------------------------------------------- skl2onnx


@pytest.fixture(scope="module")
def table():
    return flats_table()


def column_pipeline(estimator):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder
    columns = ColumnTransformer([("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                                 ("size", pp.LogScaler(), ["size"])],  # fastnn's converter inside skl2onnx's
                                remainder="passthrough", sparse_threshold=0)
    return Pipeline([("columns", columns), ("scale", pp.StandardScaler()), ("model", estimator)])


def frame_inputs(frame, dtype):
    from pandas.api.types import is_numeric_dtype
    return {c: frame[[c]].to_numpy().astype(dtype if is_numeric_dtype(frame[c]) else object) for c in frame.columns}


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_transformer_pipeline_exports_whole(tmp_path, table, dtype):
    pytest.importorskip("skl2onnx", reason="pipelines with scikit-learn steps are converted by skl2onnx")
    frame, y = table
    pipe = column_pipeline(fastnn.DNNRegressor(hidden_units=(8,), epochs=5, random_state=0)).fit(frame, y)
    path = tmp_path / "table.onnx"
    fastnn.export_onnx(pipe, path, dtype=dtype)
    sess = session(path)
    assert [i.name for i in sess.get_inputs()] == ["city", "size", "age", "rooms"]
    unseen = frame.copy()
    unseen.loc[:4, "city"] = "Lima"  # handle_unknown="ignore": all-zero one-hot
    (out,) = sess.run(None, frame_inputs(unseen, dtype))
    assert_close(out[:, 0], pipe.predict(unseen))


def test_column_transformer_classifier_with_skl2onnx_directly(table):
    skl2onnx = pytest.importorskip("skl2onnx", reason="pipelines with scikit-learn steps are converted by skl2onnx")
    from fastnn.onnx_export import register_skl2onnx_converters
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    frame, y = table
    labels = np.where(y > np.median(y), "high", "low")
    pipe = column_pipeline(fastnn.DNNClassifier(hidden_units=(6,), epochs=5, random_state=0)).fit(frame, labels)
    register_skl2onnx_converters()
    types = [("city", StringTensorType([None, 1]))]
    types += [(c, FloatTensorType([None, 1])) for c in ("size", "age", "rooms")]
    proto = skl2onnx.to_onnx(pipe, initial_types=types, options={id(pipe[-1]): {"zipmap": False}})
    label, proba = session(proto).run(None, frame_inputs(frame, np.float32))
    assert label.tolist() == pipe.predict(frame).tolist()
    assert_close(proba, pipe.predict_proba(frame))


def test_imputer_pipeline_has_one_input(data, dtype=np.float32):
    """A pipeline starting with a scikit-learn SimpleImputer: one input "X"; NaN imputed in the
    graph. float32 only: skl2onnx writes SimpleImputer as ai.onnx.ml Imputer, which ONNX
    Runtime 1.32 implements for float and int64 tensors, not double."""
    pytest.importorskip("skl2onnx", reason="pipelines with scikit-learn steps are converted by skl2onnx")
    from sklearn.impute import SimpleImputer
    X, y = data
    X = X.copy()
    X[::9, 1] = np.nan
    pipe = Pipeline([("impute", SimpleImputer(strategy="median")), ("std", pp.StandardScaler()),
                     ("net", fastnn.DNNRegressor(hidden_units=(8,), epochs=3, random_state=0))]).fit(X, y)
    (out,) = run_onnx(to_onnx(pipe, dtype=dtype), X.astype(dtype))
    assert out.dtype == dtype
    assert_close(out[:, 0], pipe.predict(X.astype(dtype)))


def test_mixed_classifier_pipeline_through_export_onnx(tmp_path, table):
    pytest.importorskip("skl2onnx", reason="pipelines with scikit-learn steps are converted by skl2onnx")
    frame, y = table
    labels = np.array(["low", "mid", "high"])[np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))]
    pipe = column_pipeline(fastnn.DNNClassifier(hidden_units=(6,), epochs=5, random_state=0)).fit(frame, labels)
    fastnn.export_onnx(pipe, tmp_path / "clf.onnx")
    sess = session(tmp_path / "clf.onnx")
    assert [o.name for o in sess.get_outputs()] == ["label", "probabilities"]
    label, proba = sess.run(None, frame_inputs(frame, np.float32))
    assert label.tolist() == pipe.predict(frame).tolist()
    assert_close(proba, pipe.predict_proba(frame))


def test_classifier_with_skl2onnx_default_zipmap(data):
    """skl2onnx's default for classifiers: "output_label" and a ZipMap of probabilities per
    class (float32 only, as for skl2onnx's own MLPClassifier: ONNX's ZipMap takes float)."""
    skl2onnx = pytest.importorskip("skl2onnx", reason="the converters are registered with skl2onnx")
    from fastnn.onnx_export import register_skl2onnx_converters
    from skl2onnx.common.data_types import FloatTensorType
    X, _ = data
    labels = class_labels(X, "str")
    clf = fastnn.DNNClassifier(hidden_units=(6,), epochs=3, random_state=0).fit(X, labels)
    register_skl2onnx_converters()
    proto = skl2onnx.to_onnx(clf, initial_types=[("X", FloatTensorType([None, X.shape[1]]))])
    X32 = X.astype(np.float32)
    label, maps = session(proto).run(None, {"X": X32})
    assert label.tolist() == clf.predict(X32).tolist()
    proba = np.array([[m[c] for c in clf.classes_] for m in maps])
    assert_close(proba, clf.predict_proba(X32))


# ----------------------------------------------------------------------------- the command line


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastnn", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=subprocess_env())


def test_cli_export(tmp_path, data):
    X, y = data
    pipe = Pipeline([("std", pp.StandardScaler()), ("net", fitted_regressor(X, y, batch_norm=True))])
    pipe[0].fit(X)
    pipe.steps[1] = ("net", fitted_regressor(pipe[0].transform(X), y, batch_norm=True))
    fastnn.save(pipe, tmp_path / "model.npz", metadata={"features": ["a", "b", "c", "d"]})
    result = cli("export", "model.npz", "model.onnx", "--dtype", "float64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model.onnx" in result.stdout
    (out,) = run_onnx(tmp_path / "model.onnx", X)
    assert out.dtype == np.float64
    assert_close(out[:, 0], pipe.predict(X))
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert props == {"feature_names": '["a", "b", "c", "d"]'}


def test_cli_export_of_a_saved_column_transformer_pipeline(tmp_path, table):
    """A model file whose ColumnTransformer is stored through skops exports whole."""
    pytest.importorskip("skl2onnx", reason="pipelines with scikit-learn steps are converted by skl2onnx")
    pytest.importorskip("skops", reason="saving scikit-learn steps needs fastnn[skops]")
    frame, y = table
    pipe = column_pipeline(fastnn.DNNRegressor(hidden_units=(8,), epochs=5, random_state=0)).fit(frame, y)
    fastnn.save(pipe, tmp_path / "table.npz")
    result = cli("export", "table.npz", "table.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (out,) = session(tmp_path / "table.onnx").run(None, frame_inputs(frame, np.float32))
    assert_close(out[:, 0], pipe.predict(frame))


def test_a_step_skl2onnx_cannot_convert(tmp_path, data):
    """FunctionTransformer(np.log1p) saves (a trusted NumPy function) but skl2onnx has no
    converter for it: a TypeError from the API, one line and status 2 from the CLI."""
    pytest.importorskip("skl2onnx", reason="pipelines with scikit-learn steps are converted by skl2onnx")
    pytest.importorskip("skops", reason="saving scikit-learn steps needs fastnn[skops]")
    from sklearn.preprocessing import FunctionTransformer
    X, y = data
    pipe = Pipeline([("log", FunctionTransformer(np.log1p)),
                     ("net", fastnn.DNNRegressor(hidden_units=(3,), epochs=1, random_state=0))]).fit(np.abs(X), y)
    with pytest.raises(TypeError, match="skl2onnx cannot convert.*FunctionTransformer"):
        to_onnx(pipe)
    fastnn.save(pipe, tmp_path / "log.npz")
    result = cli("export", "log.npz", "log.onnx", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("fastnn: error: cannot export log.npz")
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "log.onnx").exists()


def test_cli_export_refuses_bad_paths_before_work(tmp_path):
    model = tmp_path / "model.npz"
    fastnn.save(nn.Sequential([nn.Dense(2, 1)]), model)
    before = model.read_bytes()
    os.link(model, tmp_path / "alias.npz")
    for out, pattern in (("model.npz", "is the same file as the model"), ("alias.npz", "is the same file as the model"),
                         ("nodir/m.onnx", "there is no folder 'nodir'"), (".", "is a directory")):
        result = cli("export", "model.npz", out, cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.startswith("fastnn: error: "), result
        assert pattern in result.stderr, result.stderr
    assert model.read_bytes() == before
    result = cli("export", "missing.npz", "m.onnx", cwd=tmp_path)
    assert result.returncode == 2 and "missing.npz" in result.stderr
    result = cli("export", "model.npz", "model.onnx", cwd=tmp_path)  # a Sequential
    assert result.returncode == 0, result.stderr
    X = np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2)
    (out,) = run_onnx(tmp_path / "model.onnx", X)
    assert_close(out, fastnn.load(model).predict(X))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    result = cli("export", "junk.npz", "m.onnx", cwd=tmp_path)
    assert result.returncode == 2 and "not a fastnn model" in result.stderr
    assert not (tmp_path / "m.onnx").exists()
