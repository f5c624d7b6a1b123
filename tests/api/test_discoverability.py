"""What a user exploring fastnn sees: dir(), help() and tab completion list every public
name (the lazily imported ones too), and ``fastnn --version`` answers."""
from __future__ import annotations

import pydoc
import subprocess
import sys

import fastnn
from support import subprocess_env


def test_dir_lists_every_public_name():
    names = dir(fastnn)
    assert [n for n in fastnn.__all__ if n not in names] == []
    assert names == sorted(names)
    assert "get_num_threads" in names and "_LAZY" in names


def test_every_public_name_resolves():
    for name in fastnn.__all__:
        assert getattr(fastnn, name) is not None, name


def test_help_shows_the_lazy_names():
    text = pydoc.render_doc(fastnn, renderer=pydoc.plaintext)
    for name in ("DNNRegressor", "DNNClassifier", "save", "load", "plot_history", "preprocessing"):
        assert name in text, name


def test_a_child_interpreter_sees_the_lazy_names_in_dir_before_use():
    code = "import sys, fastnn; print('DNNRegressor' in dir(fastnn), 'fastnn.estimators' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=subprocess_env()).stdout.split()
    assert out == ["True", "False"]  # listed without importing scikit-learn


def test_version_option_prints_the_version_and_exits_0():
    result = subprocess.run([sys.executable, "-m", "fastnn", "--version"], capture_output=True, text=True,
                            timeout=120, env=subprocess_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"fastnn {fastnn.__version__}"
