"""scikit-learn's own scaler tests pass with fastnn's scalers, except on sparse input.

Runs tests/preprocessing/sklearn_scaler_parity.py (see its docstring): the installed scikit-learn's
``sklearn/preprocessing/tests/test_data.py`` with fastnn's ``StandardScaler``,
``MinMaxScaler`` and ``RobustScaler`` substituted, the expected failures
(sklearn_scaler_parity_expected.py, each with its reason) as strict xfails. Skipped when
the installed scikit-learn has no tests or is not the version the list was made for.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import subprocess_env

from sklearn_scaler_parity_expected import EXPECTED_FAILURES

SCRIPT = Path(__file__).resolve().with_name("sklearn_scaler_parity.py")
SKIP_STATUS = 77


def test_sklearn_test_data_passes_with_fastnn_scalers_except_sparse_input(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(tmp_path), "-rfEX"],
                            capture_output=True, text=True, timeout=1800, env=subprocess_env())
    if result.returncode == SKIP_STATUS:
        pytest.skip(result.stdout.strip().splitlines()[-1])
    summary = " ".join(line for line in result.stdout.splitlines() if re.search(r"\d+ passed", line))
    assert result.returncode == 0, f"{summary}\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}"
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    assert counts.get("failed", 0) == 0 and counts.get("xpassed", 0) == 0, summary
    assert counts["xfailed"] == len(EXPECTED_FAILURES), summary  # each expected failure failed
    assert counts["passed"] > 200, summary


def test_substitution_keeps_the_other_imports():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from sklearn_scaler_parity import substituted_source
    finally:
        sys.path.remove(str(SCRIPT.parent))
    source = ("import numpy as np\nfrom sklearn.preprocessing import (\n    MaxAbsScaler,\n    MinMaxScaler,\n"
              "    RobustScaler,\n    StandardScaler,\n    scale,\n)\nfrom sklearn.preprocessing._data import "
              "_handle_zeros_in_scale\n\nX = 1\n")
    out = substituted_source(source)
    assert out.startswith(source.split("\nX = 1")[0])  # the imports themselves are untouched
    namespace = {}
    exec(compile(out, "substituted", "exec"), namespace)
    import fastnn.preprocessing as fp
    import sklearn.preprocessing as skp
    assert namespace["StandardScaler"] is fp.StandardScaler and namespace["RobustScaler"] is fp.RobustScaler
    assert namespace["MinMaxScaler"] is fp.MinMaxScaler
    assert namespace["MaxAbsScaler"] is skp.MaxAbsScaler and namespace["scale"] is skp.scale
    with pytest.raises(ValueError, match="no longer imports"):
        substituted_source("import numpy as np\nfrom sklearn.preprocessing import scale\n")
