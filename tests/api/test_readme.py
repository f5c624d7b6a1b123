"""The README's Python examples run as written (in a temporary folder: they write files)."""
import re

import pytest

from support import ROOT

README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    if "fastnn.dask" in BLOCKS[index]:
        pytest.importorskip("dask")
        pytest.importorskip("dask_ml")
    if "distributed.fit" in BLOCKS[index]:
        pytest.skip("the MPI example runs under mpiexec: test_distributed.py::test_readme_mpi_example_runs_as_written")
    if "fastnn[skops]" in BLOCKS[index]:
        pytest.importorskip("skops", reason="the pipeline example needs fastnn[skops]")
        pytest.importorskip("pandas")
    if "export_onnx" in BLOCKS[index]:
        pytest.importorskip("onnxruntime", reason="the ONNX example needs fastnn[onnx] and onnxruntime")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {"__name__": "readme"})
