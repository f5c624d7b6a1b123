"""The ``fastnn`` command line (``python -m fastnn``), run as a subprocess: train, predict
and diagnose end to end for regression and classification (string labels); one-line
errors with exit status 2 for malformed CSV files, missing files and bad options; exit
status 1 and no file when training diverges; the demo; and ``read_csv`` directly.
"""
from __future__ import annotations

import csv
import re

import numpy as np
import pytest

import fastnn
from fastnn._csv import CSVError, read_csv
from fastnn.cli import _chart, _with_names

from support import ROOT, run_cli as run, write_csv




def read_back(path_or_text):
    lines = path_or_text.splitlines()
    return lines[0].split(","), list(csv.reader(lines[1:]))


def assert_usage_error(result, pattern):
    assert result.returncode == 2, result
    assert result.stderr.startswith("fastnn: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line
    assert re.search(pattern, result.stderr), result.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a regression CSV (a, b, c -> y) and a classification CSV (species)."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 3)) * [1.0, 1000.0, 1.0]
    y = X @ [1.0, 0.002, -1.0] + 0.1 * rng.standard_normal(150)
    write_csv(d / "reg.csv", ["a", "b", "c", "y"], np.column_stack([X, y]).tolist())
    species = np.array(["cat", "dog", "emu"])[(X[:, 0] > 0).astype(int) + (X[:, 2] > 0.5)]
    write_csv(d / "cls.csv", ["species", "a", "b", "c"], [[s, *r] for s, r in zip(species, X.tolist())])
    return d


@pytest.fixture(scope="module")
def regression(work):
    result = run("train", "reg.csv", "--target", "y", "--epochs", 5, "--hidden", "16,8", "--optimizer", "adam",
                 "--learning-rate", 0.01, "--out", "reg.npz", cwd=work)
    return result, work / "reg.npz"


@pytest.fixture(scope="module")
def classification(work):
    result = run("train", "cls.csv", "--target", "species", "--classify", "--epochs", 6, "--hidden", "16",
                 "--validation-fraction", 0.25, "--remove-outliers", "zscore", "--quiet", "--out", "cls.npz",
                 cwd=work)
    return result, work / "cls.npz"


# ----------------------------------------------------------------------------- end to end


def test_train_regression(regression):
    result, path = regression
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "read reg.csv: 150 rows, 3 features (a, b, c), target 'y' (regression)" in out
    assert "training loss per epoch" in out and "epochs trained: 5" in out
    assert re.search(r"R\^2 on the training data: -?\d", out)
    assert "diagnose()" in out and "saved the model to reg.npz" in out
    model = fastnn.load(path)
    meta = model.fastnn_metadata_
    assert (meta["features"], meta["target"], meta["task"]) == (["a", "b", "c"], "y", "regression")
    assert meta["command"].startswith("fastnn train reg.csv --target y")
    assert [type(s).__name__ for _, s in model.steps] == ["StandardScaler", "DNNRegressor"]


def test_predict_reads_features_by_name(regression, work):
    _, path = regression
    rng = np.random.default_rng(5)
    X = rng.standard_normal((7, 3))
    # other column order, an extra text column, no target
    write_csv(work / "new.csv", ["note", "c", "a", "b"], [["x", r[2], r[0], r[1]] for r in X.tolist()])
    result = run("predict", path, "new.csv", "--out", "pred.csv", cwd=work)
    assert result.returncode == 0, result.stderr
    header, rows = read_back((work / "pred.csv").read_text())
    assert header == ["y"]
    expected = fastnn.load(path).predict(X)
    np.testing.assert_array_equal(np.array([float(r[0]) for r in rows]), expected)


def test_predict_missing_feature_column(regression, work):
    write_csv(work / "partial.csv", ["a", "c"], [[1, 2]])
    assert_usage_error(run("predict", regression[1], "partial.csv", cwd=work), r"partial\.csv has no column 'b'")


def test_diagnose(regression, work):
    result = run("diagnose", regression[1], cwd=work)
    assert result.returncode == 0, result.stderr
    for text in ("task: regression, target 'y'", "features (3): a, b, c", "pipeline: StandardScaler -> DNNRegressor",
                 "layers: Dense(3, 16, activation='relu') -> Dense(16, 8", "epochs trained: 5", "final loss: ",
                 "diagnose()"):
        assert text in result.stdout


def test_classification_with_string_labels(classification, work):
    result, path = classification
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "target 'species' (classification)" in out and "rows as outliers (zscore)" in out
    assert "accuracy on the training data: " in out and "validation loss: " in out
    pred = run("predict", path, "cls.csv", cwd=work)  # to stdout; the label column is ignored
    assert pred.returncode == 0, pred.stderr
    header, rows = read_back(pred.stdout)
    assert header == ["species", "proba_cat", "proba_dog", "proba_emu"]
    model = fastnn.load(path)
    X = read_csv(work / "cls.csv", columns=["a", "b", "c"])[0]
    assert [r[0] for r in rows] == model.predict(X).tolist()
    np.testing.assert_array_equal(np.array([[float(v) for v in r[1:]] for r in rows]), model.predict_proba(X))
    diag = run("diagnose", path, cwd=work)
    assert "task: classification, target 'species', classes cat, dog, emu" in diag.stdout


# ----------------------------------------------------------------------------- errors

MALFORMED = {
    "non-numeric": ("a,b,y\n1,2,3\n4,abc,6\n", r"bad\.csv, line 3, column 'b': not a number: 'abc'"),
    "missing": ("a,b,y\n1,2,3\n\n4,5,NA\n", r"bad\.csv, line 4, column 'y': missing value: 'NA'"),
    "ragged": ("a,b,y\n1,2,3\n4,5\n", r"bad\.csv, line 3: 2 fields, but the header has 3 columns"),
    "no-target": ("a,b,c\n1,2,3\n", r"bad\.csv has no column 'y' \(the target\); its columns are 'a', 'b', 'c'"),
}


@pytest.mark.parametrize("text, message", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_csv(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    assert_usage_error(run("train", "bad.csv", "--target", "y", cwd=tmp_path), message)
    assert not (tmp_path / "model.npz").exists()


def test_missing_file(tmp_path):
    assert_usage_error(run("train", "missing.csv", "--target", "y", cwd=tmp_path),
                       r"No such file or directory: 'missing\.csv'")


@pytest.mark.parametrize("option, message", [(("--epochs", "0"), r"--epochs: must be an int >= 1, got '0'"),
                                              (("--optimizer", "adamx"), r"--optimizer must be one of .*adam")])
def test_bad_option_values(work, option, message):
    assert_usage_error(run("train", "reg.csv", "--target", "y", *option, cwd=work), message)


def test_divergence_exits_1_and_saves_nothing(work):
    result = run("train", "reg.csv", "--target", "y", "--scale", "none", "--optimizer", "sgd", "--learning-rate", 10,
                 "--epochs", 2, "--quiet", "--out", "diverged.npz", cwd=work)
    assert result.returncode == 1
    assert result.stderr.startswith("fastnn: error: training diverged")
    assert "NaN trap" in result.stderr and "nothing was saved" in result.stderr
    assert not (work / "diverged.npz").exists()


def test_demo(tmp_path):
    result = run("demo", "--dir", "d", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "soup.csv").is_file() and (tmp_path / "d" / "model.npz").is_file()
    out = result.stdout
    r2 = float(re.search(r"R\^2 on the training data: (\S+)", out).group(1))
    assert r2 > 0.8
    assert "WITHOUT feature scaling" in out and "features on very different scales: 'veg_stock_ml'" in out
    assert "fastnn predict d/model.npz d/soup.csv" in out and "tensorboard" in out
    X, y, names, _ = read_csv(tmp_path / "d" / "soup.csv", target="tastiness")
    assert X.shape == (2000, 4) and names == ["chicken_stock_l", "veg_stock_ml", "salt_g", "minutes"]


def test_no_command_prints_config_and_hint(tmp_path):
    result = run(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "simd_path" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("commands: train, predict, diagnose, demo")


# ----------------------------------------------------------------------------- read_csv


def csv_file(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_read_csv_basic_and_column_selection(tmp_path):
    path = csv_file(tmp_path, "a, b ,y\n1,2,3\n\n4,5e-1,-6\n")
    X, y, names, target = read_csv(path, target="y")
    np.testing.assert_array_equal(X, [[1, 2], [4, 0.5]])
    np.testing.assert_array_equal(y, [3, -6])
    assert (names, target) == (["a", "b"], "y") and X.dtype == np.float64 and X.flags.c_contiguous
    X, y, names, _ = read_csv(path, columns=["y", "a"])
    np.testing.assert_array_equal(X, [[3, 1], [-6, 4]])
    assert y is None and names == ["y", "a"]


def test_read_csv_labels_quotes_and_bom(tmp_path):
    path = csv_file(tmp_path, b'\xef\xbb\xbfx,label\n1,"a, b"\n2, cat \n"3",cat\n')
    X, y, names, target = read_csv(path, target="label", labels=True)
    np.testing.assert_array_equal(X, [[1], [2], [3]])
    assert y.tolist() == ["a, b", "cat", "cat"] and names == ["x"]


def test_read_csv_ignores_extra_columns_but_not_ragged_lines(tmp_path):
    path = csv_file(tmp_path, "a,note,b\n1,hello,2\n3,world,4\n")
    np.testing.assert_array_equal(read_csv(path, columns=["a", "b"])[0], [[1, 2], [3, 4]])
    path = csv_file(tmp_path, "a,note,b\n1,hello,2\n3,world,4,5\n")
    with pytest.raises(CSVError, match=r"line 3: 4 fields, but the header has 3 columns") as info:
        read_csv(path, columns=["a", "b"])
    assert info.value.line == 3


@pytest.mark.parametrize("cell, problem", [("", "missing value"), ("NaN", "missing value"), ("null", "missing value"),
                                           ("N/A", "missing value"), ("inf", "not a finite number"),
                                           ("1_000", "not a number"), ("12 kg", "not a number")])
def test_read_csv_bad_cells(tmp_path, cell, problem):
    path = csv_file(tmp_path, f"a,b\n1,2\n3,4\n5,{cell}\n")
    with pytest.raises(CSVError) as info:
        read_csv(path)
    assert str(info.value) == f"{path}, line 4, column 'b': {problem}: {cell!r}"
    assert (info.value.line, info.value.column) == (4, "b")


@pytest.mark.parametrize("text, message", [
    ("", "is empty: a header row"),
    ("a,b\n", "has a header but no data rows"),
    ("1,2\n3,4\n", "line 1: the first line must be a header row"),
    ("a,,c\n1,2,3\n", "line 1: the header has an empty column name"),
    ("a,b,a\n1,2,3\n", r"line 1: duplicate column names \['a'\]"),
    ("y\n1\n", "has no feature columns"),
])
def test_read_csv_bad_files(tmp_path, text, message):
    with pytest.raises(CSVError, match=message):
        read_csv(csv_file(tmp_path, text), target="y" if text.startswith("y") else None)


def test_read_csv_unknown_columns_and_labels(tmp_path):
    path = csv_file(tmp_path, "a,b\n1,x\n2,\n")
    with pytest.raises(CSVError, match=r"has no column 'z' \(the target\); its columns are 'a', 'b'"):
        read_csv(path, target="z")
    with pytest.raises(CSVError, match=r"has no columns 'p', 'q' \(needed as features\)"):
        read_csv(path, columns=["a", "p", "q"])
    with pytest.raises(CSVError, match=r"line 3, column 'b': missing label: ''"):
        read_csv(path, target="b", labels=True)
    with pytest.raises(CSVError, match=r"line 2, column 'b': not a number: 'x'"):
        read_csv(path, target="b")
    with pytest.raises(CSVError, match="not UTF-8"):
        read_csv(csv_file(tmp_path, b"a,b\n1,\xff\n"))
    with pytest.raises(FileNotFoundError):
        read_csv(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- presentation helpers


def test_chart_and_feature_names():
    lines = _chart(np.geomspace(100, 0.1, 200).tolist() + [float("nan")], "loss")
    assert lines[0] == "loss per epoch (log scale):"
    assert len(lines) == 1 + 8 + 2 and lines[-1].rstrip().endswith("201")
    assert all(len(line) <= 80 for line in lines)
    assert _chart([1.0], "loss") == [] and _chart([float("nan")] * 3, "loss") == []
    assert len(_chart([2.0, 2.0, 2.0], "loss")) == 11
    assert _with_names("feature 1 has std 3 but feature 0 1; feature 9; column 0", ["x", "y"]) == \
        "'y' has std 3 but 'x' 1; feature 9; column 'x'"


def test_the_shipped_example_csv_is_the_demo_data(tmp_path):
    from fastnn._demo import write_soup
    shipped = ROOT / "examples" / "soup.csv"
    write_soup(tmp_path / "soup.csv")
    assert shipped.read_bytes() == (tmp_path / "soup.csv").read_bytes()
