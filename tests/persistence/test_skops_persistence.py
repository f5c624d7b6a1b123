"""Whole scikit-learn pipelines in fastnn model files (fastnn.save/load): scikit-learn
steps go through skops.io with fastnn's explicit trusted-type list, fastnn's own steps keep
their format, untrusted types are refused by name when saving and when loading (before
anything is built), and files written by the code of 60c4ab6 (format 1, before skops
parts) still load with the predictions they were written with.
"""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import persistence as P, preprocessing as pp
from fastnn._errors import ModelFormatError, UntrustedTypeError
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, PolynomialFeatures

import support
from support import flats_table

GOLDEN = str(support.GOLDEN)


# ----------------------------------------------------------------------------- files of 60c4ab6


def test_files_written_by_60c4ab6_still_load():
    expected = np.load(os.path.join(GOLDEN, "format1_expected.npz"))
    X = expected["X"]
    pipe = fastnn.load(os.path.join(GOLDEN, "format1_pipeline.npz"))
    assert [name for name, _ in pipe.steps] == ["log", "clip", "robust", "minmax", "std", "net"]
    assert pipe.fastnn_metadata_ == {"features": ["a", "b", "c"]}
    np.testing.assert_array_equal(pipe.predict(X), expected["pipeline"])
    clf = fastnn.load(os.path.join(GOLDEN, "format1_classifier.npz"))
    assert clf.predict(X).tolist() == expected["classifier"].tolist()
    np.testing.assert_array_equal(clf.predict_proba(X), expected["proba"])
    model, opt = P.load_sequential(os.path.join(GOLDEN, "format1_sequential.npz"))
    np.testing.assert_array_equal(model.predict(X), expected["sequential"])
    assert type(opt).__name__ == "Adam" and opt.iterations == 3


# ----------------------------------------------------------------------------- round trips

skops = pytest.importorskip("skops", reason="saving scikit-learn steps needs skops (pip install 'fastnn[skops]')")


@pytest.fixture(scope="module")
def table():
    return flats_table(n=200, seed=3, missing_age=15)


def tabular_pipeline(estimator):
    columns = ColumnTransformer([
        ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ("age", make_pipeline(SimpleImputer(strategy="median"), pp.RobustScaler()), ["age"]),
        ("log", FunctionTransformer(np.log1p), ["size"]),
    ], remainder="passthrough", sparse_threshold=0)
    return Pipeline([("columns", columns), ("std", pp.StandardScaler()), ("clip", pp.Clipper(-4, 4)),
                     ("net", estimator)])


def test_column_transformer_pipeline_round_trip(tmp_path, table):
    frame, y = table
    pipe = tabular_pipeline(fastnn.DNNRegressor(hidden_units=(8,), epochs=3, random_state=0)).fit(frame, y)
    path = tmp_path / "table.npz"
    fastnn.save(pipe, path, metadata={"target": "price"})
    header, arrays = P.read_model(path)
    # fastnn's steps keep their own format; the ColumnTransformer is one skops entry
    assert [sorted(k for k in step if k != "name") for step in header["steps"]] == \
        [["skops"], ["scaler"], ["scaler"], ["estimator"]]
    assert header["steps"][0]["skops"]["class"] == "sklearn.compose._column_transformer.ColumnTransformer"
    assert arrays["step0.skops"].dtype == np.uint8
    back = fastnn.load(path)
    assert [type(s).__name__ for _, s in back.steps] == ["ColumnTransformer", "StandardScaler", "Clipper",
                                                         "DNNRegressor"]
    assert back.fastnn_metadata_ == {"target": "price"}
    unseen = frame.copy()
    unseen.loc[:3, "city"] = "Lima"
    np.testing.assert_array_equal(back.predict(unseen), pipe.predict(unseen))
    # and again (skops names its entries by object id, so the bytes differ; the content does not)
    fastnn.save(back, tmp_path / "again.npz", metadata={"target": "price"})
    again_header, again_arrays = P.read_model(tmp_path / "again.npz")
    assert again_header == header
    for key, value in arrays.items():
        if key != "step0.skops":
            np.testing.assert_array_equal(again_arrays[key], value, err_msg=key)
    np.testing.assert_array_equal(fastnn.load(tmp_path / "again.npz").predict(unseen), pipe.predict(unseen))


def test_classifier_behind_an_ordinal_encoder(tmp_path):
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.integers(0, 4, 120), rng.standard_normal(120)])
    labels = np.where(X[:, 0] + X[:, 1] > 1.5, "yes", "no")
    pipe = Pipeline([("codes", ColumnTransformer([("o", OrdinalEncoder(), [0])], remainder="passthrough")),
                     ("clf", fastnn.DNNClassifier(hidden_units=(6,), epochs=3, random_state=0))]).fit(X, labels)
    fastnn.save(pipe, tmp_path / "clf.npz")
    back = fastnn.load(tmp_path / "clf.npz")
    assert back.predict(X).tolist() == pipe.predict(X).tolist()
    np.testing.assert_array_equal(back.predict_proba(X), pipe.predict_proba(X))


def test_the_trusted_list_is_explicit():
    trusted = P.trusted_skops_types()
    assert "sklearn.compose._column_transformer.ColumnTransformer" in trusted
    assert "numpy.log1p" in trusted and "fastnn.preprocessing.LogScaler" in trusted
    # skops itself trusts every scikit-learn class; fastnn does not
    assert "sklearn.decomposition._pca.PCA" not in trusted and "numpy.sin" not in trusted
    assert not any(t.startswith(("os.", "subprocess.", "builtins.eval", "builtins.exec")) for t in trusted)


def _own_function(v):
    return v


@pytest.mark.parametrize("step, name", [
    (FunctionTransformer(lambda v: v), "<lambda>"),
    (FunctionTransformer(_own_function), "test_skops_persistence._own_function"),
    (make_pipeline(SimpleImputer(), FunctionTransformer(np.sin)), "numpy.sin"),
    (PolynomialFeatures(), "sklearn.preprocessing._polynomial.PolynomialFeatures"),
], ids=["lambda", "own-function", "untrusted-ufunc", "untrusted-class"])
def test_untrusted_steps_are_refused_when_saving(tmp_path, step, name):
    X = np.abs(np.random.default_rng(0).standard_normal((30, 2)))
    pipe = Pipeline([("f", step), ("net", fastnn.DNNRegressor(hidden_units=(3,), epochs=1, random_state=0))])
    pipe.fit(X, X[:, 0])
    with pytest.raises(TypeError, match=f"pipeline step 'f'.*{name}"):
        fastnn.save(pipe, tmp_path / "m.npz")
    assert not os.listdir(tmp_path)


def test_unfitted_and_non_transformer_steps_are_refused(tmp_path):
    X = np.random.default_rng(0).standard_normal((30, 2))
    net = fastnn.DNNRegressor(hidden_units=(3,), epochs=1, random_state=0).fit(X, X[:, 0])
    with pytest.raises(NotFittedError):
        fastnn.save(Pipeline([("impute", SimpleImputer()), ("net", net)]), tmp_path / "m.npz")
    with pytest.raises(TypeError, match="only fitted transformers"):
        fastnn.save(Pipeline([("skip", "passthrough"), ("net", net)]), tmp_path / "m.npz")
    remover = pp.OutlierRemover().fit(X)
    with pytest.raises(TypeError, match="OutlierRemover"):
        fastnn.save(Pipeline([("out", remover), ("net", net)]), tmp_path / "m.npz")
    assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------------- hostile files


@pytest.fixture
def saved(tmp_path):
    X = np.column_stack([np.arange(40) % 3, np.linspace(0, 1, 40)])
    pipe = Pipeline([("columns", ColumnTransformer([("o", OneHotEncoder(), [0])], remainder="passthrough")),
                     ("net", fastnn.DNNRegressor(hidden_units=(3,), epochs=1, random_state=0))]).fit(X, X[:, 1])
    path = tmp_path / "m.npz"
    fastnn.save(pipe, path)
    return path, X


def _replace_skops_part(path, obj=None, data=None):
    header, arrays = P.read_model(path)
    data = skops.io.dumps(obj) if data is None else data
    arrays["step0.skops"] = np.frombuffer(data, np.uint8)
    P.write_model(path, {k: v for k, v in header.items() if k not in P._RESERVED}, arrays)


class Evil:
    """Builds a file when constructed by a loader that trusts it."""

    def __init__(self, target=None):
        self.target = target

    def __setstate__(self, state):
        open(state["target"], "w").close()


def test_an_untrusted_scikit_learn_class_is_refused_by_name(saved):
    from sklearn.decomposition import PCA
    path, X = saved
    _replace_skops_part(path, ColumnTransformer([("pca", PCA(1), [0, 1])]).fit(X))
    with pytest.raises(UntrustedTypeError, match=r"sklearn\.decomposition\._pca\.PCA") as info:
        fastnn.load(path)
    assert isinstance(info.value, ModelFormatError) and str(path) in str(info.value)
    assert info.value.types == ["sklearn.decomposition._pca.PCA"]


def test_a_hostile_class_is_refused_before_anything_is_built(saved, tmp_path):
    path, _ = saved
    pwned = tmp_path / "pwned"
    _replace_skops_part(path, Evil(str(pwned)))
    with pytest.raises(UntrustedTypeError, match=r"test_skops_persistence\.Evil"):
        fastnn.load(path)
    assert not pwned.exists()


def test_the_recorded_class_must_match_the_part(saved):
    path, X = saved
    _replace_skops_part(path, SimpleImputer().fit(X))  # trusted, but not what the header says
    with pytest.raises(ModelFormatError, match="ColumnTransformer.*holds a sklearn.impute._base.SimpleImputer"):
        fastnn.load(path)


@pytest.mark.parametrize("damage", ["compressed", "truncated", "not-a-zip", "no-schema"])
def test_damaged_skops_parts_are_format_errors(saved, damage):
    path, X = saved
    good = bytes(P.read_model(path)[1]["step0.skops"])
    if damage == "compressed":
        data = skops.io.dumps(ColumnTransformer([("o", OneHotEncoder(), [0])]).fit(X), compression=zipfile.ZIP_DEFLATED)
    elif damage == "truncated":
        data = good[:len(good) // 2]
    elif damage == "not-a-zip":
        data = b"\x80\x04not a zip"
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("other.json", "{}")
        data = buf.getvalue()
    _replace_skops_part(path, data=data)
    with pytest.raises(ModelFormatError, match=str(path)):
        fastnn.load(path)


def test_forged_array_sizes_inside_a_skops_part_allocate_nothing(saved):
    """An array inside the skops part declaring 50 million values over a few bytes: refused
    by fastnn's .npy reader before skops would allocate 400 MB for it."""
    import tracemalloc
    path, _ = saved
    inner = zipfile.ZipFile(io.BytesIO(bytes(P.read_model(path)[1]["step0.skops"])))
    entries, forged = [], 0
    for info in inner.infolist():
        content = inner.read(info)
        if info.filename.endswith(".npy") and not forged:
            arr = np.lib.format.read_array(io.BytesIO(content), allow_pickle=False)
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(arr.dtype),
                                                          "fortran_order": False, "shape": (50_000_000,)})
            content, forged = header.getvalue() + arr.tobytes(), 1
        entries.append((info.filename, content))
    assert forged
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries:
            zf.writestr(name, content)
    _replace_skops_part(path, data=buf.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match="declares"):
            fastnn.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"peaked at {peak >> 20} MiB"


def test_without_skops(saved, monkeypatch, tmp_path):
    from fastnn import _skops_steps
    path, X = saved
    monkeypatch.setattr(_skops_steps, "_skops", lambda: None)
    with pytest.raises(ModelFormatError, match=r"skops, which is not installed: pip install 'fastnn\[skops\]'"):
        fastnn.load(path)
    pipe = Pipeline([("impute", SimpleImputer().fit(X)),
                     ("net", fastnn.DNNRegressor(hidden_units=(3,), epochs=1, random_state=0).fit(X, X[:, 0]))])
    with pytest.raises(ImportError, match=r"fastnn\[skops\]"):
        fastnn.save(pipe, tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()
