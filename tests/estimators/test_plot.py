"""fastnn.plotting.plot_history: the three panels, saving, and validation of the history."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.datasets import make_regression

from fastnn.estimators import DNNRegressor
from fastnn.plotting import plot_history

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted():
    X, y = make_regression(300, 5, noise=20, random_state=0)
    return DNNRegressor(hidden_units=(16, 8), epochs=8, early_stopping=True, random_state=0).fit(X, y / y.std())


def line_counts(fig):
    return [len(ax.lines) for ax in fig.axes]


def test_plot_history_renders_a_png(fitted, tmp_path):
    path = tmp_path / "history.png"
    fig = plot_history(fitted, path, title="make_regression")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    assert len(fig.axes) == 3
    assert line_counts(fig) == [2, 2, 2]  # loss + val_loss; one line per hidden layer twice
    loss_ax, zero_ax, grad_ax = fig.axes
    np.testing.assert_array_equal(loss_ax.lines[0].get_ydata(), fitted.history_["loss"])
    np.testing.assert_array_equal(zero_ax.lines[1].get_ydata(), np.asarray(fitted.history_["zero_fraction"])[:, 1])
    assert loss_ax.get_yscale() == "log" and grad_ax.get_yscale() == "log"


def test_plot_history_dict_without_validation_and_other_formats(tmp_path):
    X, y = make_regression(200, 4, random_state=1)
    est = DNNRegressor(hidden_units=(8, 6, 4), epochs=3, random_state=0).fit(X, y / y.std())
    fig = plot_history(est.history_)  # no path: nothing saved
    assert line_counts(fig) == [1, 3, 3]  # val_loss is all NaN: not drawn
    plot_history(est.history_, str(tmp_path / "history.svg"))
    assert (tmp_path / "history.svg").read_text().lstrip().startswith("<?xml")
    linear = DNNRegressor(hidden_units=(), epochs=2, random_state=0).fit(X, y)
    assert line_counts(plot_history(linear)) == [1, 0, 0]


def test_plot_history_log_scale_only_for_positive_values():
    history = {"loss": [1.0, 0.0], "grad_norm": [[1.0], [0.0]], "zero_fraction": [[0.1], [0.2]]}
    fig = plot_history(history)
    assert [ax.get_yscale() for ax in fig.axes] == ["linear", "linear", "linear"]


@pytest.mark.parametrize("history, match", [
    ({"val_loss": [1.0]}, "must hold a 'loss' list"),
    ({"loss": []}, "non-empty list"),
    ({"loss": 3.0}, "non-empty list"),
    ({"loss": [1.0, 2.0], "val_loss": [1.0]}, r"history\['val_loss'\] must have one entry per epoch .*\(2\), got 1"),
    ({"loss": [1.0, 2.0], "lr": [0.1, 0.1, 0.1]}, r"history\['lr'\] must have one entry per epoch"),
    ({"loss": [1.0, 2.0], "grad_norm": [[1.0, 2.0], [1.0]]}, r"history\['grad_norm'\] must hold per epoch a list"),
    ({"loss": [1.0, 2.0], "zero_fraction": [0.1, 0.2]}, r"history\['zero_fraction'\] must hold per epoch a list"),
    ({"loss": ["a", "b"]}, r"history\['loss'\] must hold one number per epoch"),
])
def test_plot_history_bad_history_is_a_value_error(history, match):
    with pytest.raises(ValueError, match=match):
        plot_history(history)


def test_plot_history_bad_arguments(fitted):
    with pytest.raises(ValueError, match="not fitted yet"):
        plot_history(DNNRegressor())
    with pytest.raises(TypeError, match="history must be an estimator's history_ dict"):
        plot_history([1.0, 2.0])
    with pytest.raises(TypeError, match="path must be a str"):
        plot_history(fitted, 3)
    with pytest.raises(TypeError, match="title must be a str"):
        plot_history(fitted, title=1)


def test_plot_history_without_matplotlib_says_how_to_install(monkeypatch, fitted):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[plot\]'"):
        plot_history(fitted)
