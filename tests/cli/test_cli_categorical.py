"""Categorical and unwanted columns in the ``fastnn`` command line, run as subprocesses:
text columns one-hot encoded inside the saved pipeline (``--categorical auto|none|COL,...``),
``--drop`` and ``--features``, the warning for categories unseen in training, the refusal
of high-cardinality columns, missing cells as a category of their own, the scaler on the
numeric columns only, and ``predict``, ``diagnose`` and ``export`` (ONNX) on such models;
plus ``read_csv(text=...)``, ``text_columns`` and ``header`` directly.
"""
from __future__ import annotations

import csv
import re

import numpy as np
import pytest

import fastnn
from fastnn import _categorical
from fastnn._csv import CSVError, header, read_csv, text_columns

from support import run_cli as run, write_csv

pytest.importorskip("skops", reason="the one-hot encoder of a categorical model is saved through skops")

CITIES = {"Paris": 5.0, "Oslo": 2.0, "Rome": 0.0}
FEATURES = ["city", "size", "zone"]  # with --drop id: the file's order without id and price


def flats(n, seed):
    """Rows of (id, city, size, zone, price): id unique text, city text with missing cells
    spelled '' and 'NA', zone an integer code 1..3."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        city = str(rng.choice([*CITIES, "", "NA"]))
        size, zone = round(float(rng.uniform(20, 120)), 2), int(rng.integers(1, 4))
        price = 0.1 * size + CITIES.get(city, 1.0) + zone
        rows.append([f"F{seed}-{i:04d}", city, size, zone, round(price, 3)])
    return rows


def features_of(rows, categorical=("city", "zone")):
    """The object array 'fastnn predict' should give the model: FEATURES columns, text as
    stripped strings (missing cells: ''), numbers as floats."""
    X = np.empty((len(rows), 3), dtype=object)
    for i, (_, city, size, zone, _) in enumerate(rows):
        city = "" if city.strip().lower() in ("", "na", "n/a", "nan", "null", "none") else city.strip()
        X[i] = [city, float(size), str(zone) if "zone" in categorical else float(zone)]
    return X


def assert_usage_error(result, pattern):
    assert result.returncode == 2, result
    assert result.stderr.startswith("fastnn: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line
    assert re.search(pattern, result.stderr), result.stderr


def predictions(text):
    lines = text.splitlines()
    return lines[0].split(","), list(csv.reader(lines[1:]))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_categorical")
    write_csv(d / "flats.csv", ["id", "city", "size", "zone", "price"], flats(240, seed=1))
    return d


@pytest.fixture(scope="module")
def trained(work):
    """'fastnn train' with an ID column dropped and the numeric zone codes forced categorical."""
    result = run("train", "flats.csv", "--target", "price", "--drop", "id", "--categorical", "zone", "--epochs", 8,
                 "--hidden", "16", "--optimizer", "adam", "--learning-rate", 0.01, "--quiet", "--out", "flats.npz",
                 cwd=work)
    assert result.returncode == 0, result.stderr
    return result, work / "flats.npz"


# ----------------------------------------------------------------------------- train, predict, diagnose, export


def test_train_one_hot_encodes_text_and_forced_columns(trained):
    result, path = trained
    assert "read flats.csv: 240 rows, 3 features (city, size, zone), target 'price' (regression); one-hot " \
           "encoding city, zone" in result.stdout
    assert "ColumnTransformer(OneHotEncoder city, zone; StandardScaler size) -> DNNRegressor" in result.stdout
    model = fastnn.load(path)
    meta = model.fastnn_metadata_
    assert (meta["features"], meta["categorical"]) == (FEATURES, ["city", "zone"])
    assert [type(s).__name__ for _, s in model.steps] == ["ColumnTransformer", "DNNRegressor"]
    encoder = model[0].named_transformers_["onehot"]
    assert [list(c) for c in encoder.categories_] == [["", "Oslo", "Paris", "Rome"], ["1", "2", "3"]]
    assert model[-1].n_features_in_ == 4 + 3 + 1


def test_scaler_applies_to_numeric_columns_only(trained, work):
    model = fastnn.load(trained[1])
    X = features_of(flats(240, seed=1))
    encoded = model[0].transform(X)
    onehot, size = encoded[:, :7], encoded[:, 7]
    assert set(np.unique(onehot)) == {0.0, 1.0}  # not scaled
    np.testing.assert_array_equal(onehot.sum(axis=1), 2.0)  # one category of each column per row
    sizes = X[:, 1].astype(np.float64)
    np.testing.assert_allclose(size, (sizes - sizes.mean()) / sizes.std(), rtol=1e-12, atol=1e-12)
    result = run("train", "flats.csv", "--target", "price", "--drop", "id", "--scale", "none", "--epochs", 1,
                 "--quiet", "--out", "unscaled.npz", cwd=work)
    assert result.returncode == 0, result.stderr
    unscaled = fastnn.load(work / "unscaled.npz")
    np.testing.assert_array_equal(unscaled[0].transform(features_of(flats(5, 1), ()))[:, -2:],
                                  features_of(flats(5, 1), ())[:, 1:].astype(np.float64))


def test_predict_reads_text_columns_by_name(trained, work):
    path = trained[1]
    rows = flats(30, seed=2)  # the same categories, other rows
    # other column order, no target, no id, 'na' and ' Oslo ' spelled otherwise
    rows[0][1], rows[1][1] = "na", " Oslo "
    write_csv(work / "new.csv", ["zone", "note", "size", "city"], [[z, "x", s, c] for _, c, s, z, _ in rows])
    result = run("predict", path, "new.csv", cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # every category was seen in training: no warning
    head, out = predictions(result.stdout)
    assert head == ["price"]
    expected = fastnn.load(path).predict(features_of(rows))
    np.testing.assert_array_equal([float(r[0]) for r in out], expected)


def test_unseen_categories_encode_as_zeros_with_one_warning(trained, work):
    path = trained[1]
    rows = flats(10, seed=3)
    rows[0][1], rows[4][1], rows[5][3] = "Berlin", "Lima", 9
    write_csv(work / "unseen.csv", ["id", "city", "size", "zone"], [r[:4] for r in rows])
    result = run("predict", path, "unseen.csv", "--out", "unseen_pred.csv", cwd=work)
    assert result.returncode == 0, result.stderr
    warning = result.stderr.splitlines()
    assert len(warning) == 1, result.stderr
    assert warning[0] == ("fastnn: warning: 3 cells in 10 rows hold categories not seen in training, encoded as all "
                          "zeros: 'city' 2 (e.g. 'Berlin'), 'zone' 1 (e.g. '9')")
    model = fastnn.load(path)
    X = features_of(rows)
    encoded = model[0].transform(X)
    np.testing.assert_array_equal(encoded[[0, 4], :4], 0.0)  # no city column set
    np.testing.assert_array_equal(encoded[5, 4:7], 0.0)  # no zone column set
    _, out = predictions((work / "unseen_pred.csv").read_text())
    np.testing.assert_array_equal([float(r[0]) for r in out], model[-1].predict(encoded))


def test_diagnose_names_the_one_hot_inputs(trained, work):
    result = run("diagnose", trained[1], cwd=work)
    assert result.returncode == 0, result.stderr
    for text in ("features (3): city, size, zone",
                 "network inputs (8): city=(missing), city=Oslo, city=Paris, city=Rome, zone=1, zone=2, zone=3, size",
                 "pipeline: ColumnTransformer(OneHotEncoder city, zone; StandardScaler size) -> DNNRegressor",
                 "layers: Dense(8, 16"):
        assert text in result.stdout, result.stdout


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_export_runs_in_onnxruntime(trained, work, dtype):
    rt = pytest.importorskip("onnxruntime", reason="running the exported file needs onnxruntime")
    pytest.importorskip("skl2onnx", reason="pipelines with scikit-learn steps are converted by skl2onnx")
    result = run("export", trained[1], f"flats_{dtype}.onnx", "--dtype", dtype, cwd=work)
    assert result.returncode == 0, result.stderr
    session = rt.InferenceSession(str(work / f"flats_{dtype}.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("city", "tensor(string)"), ("size", f"tensor({'double' if dtype == 'float64' else 'float'})"),
        ("zone", "tensor(string)")]
    rows = flats(50, seed=4)
    rows[0][1] = "Berlin"  # unseen: all zeros in ONNX as in fastnn
    X = features_of(rows)
    feed = {"city": X[:, [0]].astype(str), "size": X[:, [1]].astype(dtype), "zone": X[:, [2]].astype(str)}
    (got,) = session.run(None, feed)
    expected = fastnn.load(trained[1]).predict(X)
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_classifier_with_text_features(work):
    rows = flats(200, seed=5)
    write_csv(work / "kinds.csv", ["id", "city", "size", "zone", "kind"],
              [[i, c, s, z, "big" if s > 70 else "small"] for i, c, s, z, _ in rows])
    result = run("train", "kinds.csv", "--target", "kind", "--classify", "--features", "size,city", "--epochs", 5,
                 "--hidden", "8", "--quiet", "--remove-outliers", "zscore", "--out", "kinds.npz", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "2 features (size, city), target 'kind' (classification); one-hot encoding city" in result.stdout
    assert "rows as outliers (zscore)" in result.stdout
    model = fastnn.load(work / "kinds.npz")
    assert model.fastnn_metadata_["features"] == ["size", "city"]
    pred = run("predict", "kinds.npz", "kinds.csv", cwd=work)
    assert pred.returncode == 0, pred.stderr
    head, out = predictions(pred.stdout)
    assert head == ["kind", "proba_big", "proba_small"]
    X = features_of(rows)[:, [1, 0]]
    assert [r[0] for r in out] == model.predict(X).tolist()
    rt = pytest.importorskip("onnxruntime", reason="running the exported file needs onnxruntime")
    pytest.importorskip("skl2onnx", reason="pipelines with scikit-learn steps are converted by skl2onnx")
    result = run("export", "kinds.npz", "kinds.onnx", cwd=work)
    assert result.returncode == 0, result.stderr
    session = rt.InferenceSession(str(work / "kinds.onnx"), providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, {"size": X[:, [0]].astype(np.float32), "city": X[:, [1]].astype(str)})
    assert labels.tolist() == model.predict(X).tolist()
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- errors and choices


def test_an_id_column_is_refused_with_the_way_out(work):
    result = run("train", "flats.csv", "--target", "price", "--out", "never.npz", cwd=work)
    assert_usage_error(result, r"categorical column 'id' \(240 distinct values in 240 rows\): too many categories to "
                               r"one-hot encode \(over 1,000, or more than half the rows.*drop it with --drop id$")
    assert not (work / "never.npz").exists()


def test_too_many_categories_limits():
    X = np.array([[f"c{i % 20}"] for i in range(40)], dtype=object)
    assert _categorical.too_many_categories(X, ["a"], ["a"]) is None  # 20 in 40 rows: half, not more
    X[0, 0] = "c-new"  # 21
    assert "'a' (21 distinct values in 40 rows)" in _categorical.too_many_categories(X, ["a"], ["a"])
    many = np.array([[f"c{i % 1000}", f"d{i % 1001}"] for i in range(3000)], dtype=object)
    message = _categorical.too_many_categories(many, ["a", "b"], ["a", "b"])
    assert "'b' (1001 distinct values in 3000 rows)" in message and "'a'" not in message
    assert message.endswith("drop it with --drop b")


def test_categorical_none_keeps_the_text_error(work):
    result = run("train", "flats.csv", "--target", "price", "--drop", "id", "--categorical", "none", cwd=work)
    assert_usage_error(result, r"flats\.csv, line 2, column 'city': not a number: '[A-Za-z]+'$")


def test_a_stray_word_in_a_numeric_column_is_an_error_not_a_category(tmp_path):
    rows = [[i, i % 3, 2.0 * i] for i in range(20)]
    rows[6][1] = "two"
    write_csv(tmp_path / "typo.csv", ["a", "b", "y"], rows)
    result = run("train", "typo.csv", "--target", "y", cwd=tmp_path)
    assert_usage_error(result, r"typo\.csv, line 8, column 'b': not a number: 'two' \(if 'b' holds categories, "
                               r"--categorical b one-hot encodes it\)$")


def test_missing_cells_of_a_text_column_are_one_category(trained, work):
    rows = flats(4, seed=6)
    for row, spelling in zip(rows, ["", "NA", "null", " n/a "]):
        row[1] = spelling
    write_csv(work / "gaps.csv", ["city", "size", "zone"], [r[1:4] for r in rows])
    result = run("predict", trained[1], "gaps.csv", cwd=work)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    model = fastnn.load(trained[1])
    X = features_of(rows)
    assert list(X[:, 0]) == [""] * 4
    np.testing.assert_array_equal(model[0].transform(X)[:, 0], 1.0)  # the column 'city=(missing)'
    np.testing.assert_array_equal([float(r[0]) for r in predictions(result.stdout)[1]], model.predict(X))


@pytest.mark.parametrize("options, message", [
    (("--drop", "id,ident"), r"flats\.csv has no column 'ident' \(named by --drop\); its columns are 'id', 'city', "
                             r"'size', 'zone', 'price'$"),
    (("--features", "size,room,area"), r"no columns 'room', 'area' \(named by --features\); its columns are 'id'"),
    (("--features", "size,price"), r"--features names the target 'price', which is never a feature"),
    (("--drop", "id,price"), r"--drop names the target 'price', which is never a feature"),
    (("--drop", "id", "--features", "size"), r"argument --features: not allowed with argument --drop"),
    (("--drop", "id,,city"), r"--drop: must be comma-separated column names like id,name, got 'id,,city'"),
    (("--drop", "id,city,size,zone"), r"--drop leaves no feature columns in flats\.csv: its columns are 'id'"),
    (("--drop", "id", "--categorical", "zone,floor"), r"no column 'floor' \(named by --categorical\)"),
    (("--features", "size,zone", "--categorical", "city"),
     r"--categorical names 'city', not among the feature columns"),
    (("--target", "cost"), r"flats\.csv has no column 'cost' \(the target\); its columns are 'id', 'city'"),
])
def test_column_options_errors(work, options, message):
    target = () if "--target" in options else ("--target", "price")
    assert_usage_error(run("train", "flats.csv", *target, *options, "--out", "never.npz", cwd=work), message)
    assert not (work / "never.npz").exists()


def test_predict_needs_the_categorical_columns(trained, work):
    write_csv(work / "no_city.csv", ["size", "zone"], [[50.0, 1]])
    assert_usage_error(run("predict", trained[1], "no_city.csv", cwd=work),
                       r"no_city\.csv has no column 'city' \(needed as features\); its columns are 'size', 'zone'$")


def test_remove_outliers_needs_a_numeric_feature(work):
    result = run("train", "flats.csv", "--target", "price", "--features", "city", "--remove-outliers", "iqr",
                 cwd=work)
    assert_usage_error(result, r"--remove-outliers judges the numeric features, and every feature is categorical")


def test_only_categorical_features(work):
    result = run("train", "flats.csv", "--target", "price", "--features", "city", "--epochs", 1, "--quiet",
                 "--out", "city_only.npz", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "training ColumnTransformer(OneHotEncoder city) -> DNNRegressor" in result.stdout
    model = fastnn.load(work / "city_only.npz")
    X = features_of(flats(6, seed=7))[:, :1]
    np.testing.assert_array_equal(model[0].transform(X).sum(axis=1), 1.0)
    pred = run("predict", "city_only.npz", "flats.csv", cwd=work)
    assert pred.returncode == 0, pred.stderr
    assert len(predictions(pred.stdout)[1]) == 240


def test_features_without_text_train_the_plain_pipeline(work):
    result = run("train", "flats.csv", "--target", "price", "--features", "zone,size", "--epochs", 1, "--quiet",
                 "--out", "plain.npz", cwd=work)
    assert result.returncode == 0, result.stderr
    model = fastnn.load(work / "plain.npz")
    assert [type(s).__name__ for _, s in model.steps] == ["StandardScaler", "DNNRegressor"]
    assert (model.fastnn_metadata_["features"], model.fastnn_metadata_["categorical"]) == (["zone", "size"], [])


# ----------------------------------------------------------------------------- reading


def test_read_csv_text_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('a,name,b,y\n1, x ,2,3\n4,"NA",5,6\n7,"y, z",8,9\n10,,11,12\n')
    X, y, names, _ = read_csv(path, target="y", text=["name"])
    assert X.dtype == object and names == ["a", "name", "b"]
    assert X.tolist() == [[1.0, "x", 2.0], [4.0, "", 5.0], [7.0, "y, z", 8.0], [10.0, "", 11.0]]
    assert all(type(v) is float for v in X[:, 0]) and all(type(v) is str for v in X[:, 1])
    np.testing.assert_array_equal(y, [3, 6, 9, 12])
    X, y, names, _ = read_csv(path, columns=["name"], text=["name"])  # text only
    assert X.tolist() == [["x"], [""], ["y, z"], [""]] and y is None
    # a label column is text too, but a missing label is an error (a category only in a feature)
    with pytest.raises(CSVError, match=r"line 3, column 'name': missing label: 'NA'"):
        read_csv(path, target="name", labels=True)


def test_read_csv_with_text_still_names_bad_numeric_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,name,y\n1,x,3\n4,y,oops\n")
    with pytest.raises(CSVError, match=r"t\.csv, line 3, column 'y': not a number: 'oops'") as info:
        read_csv(path, target="y", text=["name"])
    assert (info.value.line, info.value.column) == (3, "y")
    path.write_text("a,name,y\n1,x,3\n4,y\n")
    with pytest.raises(CSVError, match=r"t\.csv, line 3: 2 fields, but the header has 3 columns"):
        read_csv(path, target="y", text=["name"])
    path.write_text("a,name,y\n1,x,3\n4\n")  # a line without the column asked for
    with pytest.raises(CSVError, match=r"line 3: 1 fields, but the header has 3 columns"):
        text_columns(path, ["a", "name"])
    with pytest.raises(ValueError, match=r"text names \['y'\], which are not among the feature columns"):
        read_csv(path, target="y", text=["y"])


def test_text_columns_and_header(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("num;gaps;word;code;under;inf;typo\n1;;a;01;1_0;inf;1\n2.5;NA;3;02;2_0;1;x\n"
                    "-3e2;4;b;03;3;2;3\n")
    assert header(path) == ["num", "gaps", "word", "code", "under", "inf", "typo"]
    # text: more than half of the non-missing cells are not numbers ('1_0' is not one)
    assert text_columns(path, ["num", "gaps", "word", "code", "under", "inf", "typo"]) == ["word", "under"]
    assert text_columns(path, ["code", "num"], delimiter=";") == []
    with pytest.raises(CSVError, match=r"no column 'nope' \(asked for as features\); its columns are 'num'"):
        text_columns(path, ["num", "nope"])
    with pytest.raises(CSVError, match=r"is empty"):
        (tmp_path / "empty.csv").write_text("")
        header(tmp_path / "empty.csv")
