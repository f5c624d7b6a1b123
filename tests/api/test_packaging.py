"""The source distribution and the published metadata: LICENSE ships, outputs of the demo
and the benchmarks do not, and no extra pins an exact version. (The wheel's contents are
checked by tools/build_wheel.sh, which builds, repairs and installs one.)"""
from __future__ import annotations

import ast
import email.parser
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from support import ROOT

NOT_COPIED = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "wheelhouse", ".hypothesis",
                                    ".pytest_cache", ".mypy_cache", ".benchmarks", "fastnn-demo", "_build",
                                    "__pycache__", "*.so")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """An sdist built from a copy of the source tree into which the demo, the benchmarks and
    a build have written their outputs, and whose .gitignore is gone: pyproject's
    sdist.exclude alone must keep them out."""
    pytest.importorskip("scikit_build_core")
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not run from a source tree")
    src = tmp_path_factory.mktemp("src") / "fastnn"
    shutil.copytree(ROOT, src, ignore=NOT_COPIED)
    (src / ".gitignore").unlink(missing_ok=True)
    for stray in ("fastnn-demo/model.npz", "fastnn-demo/soup.csv", ".benchmarks/Linux-CPython/0001_x.json",
                  "build/dev/CMakeCache.txt", "docs/_build/html/index.html"):
        (src / stray).parent.mkdir(parents=True, exist_ok=True)
        (src / stray).write_text("output, not source\n")
    out = tmp_path_factory.mktemp("dist")
    code = f"import scikit_build_core.build as b; print(b.build_sdist({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    name = proc.stdout.strip().splitlines()[-1]
    with tarfile.open(out / name) as tar:
        members = tar.getnames()
        prefix = members[0].split("/")[0]
        pkg_info = tar.extractfile(f"{prefix}/PKG-INFO").read().decode()
    return [m[len(prefix) + 1:] for m in members if "/" in m], email.parser.Parser().parsestr(pkg_info)


def test_sdist_holds_what_a_build_needs(sdist):
    files, _ = sdist
    for needed in ("LICENSE", "README.md", "pyproject.toml", "CMakeLists.txt", "csrc/bindings/module.cpp",
                   "python/fastnn/__init__.py", "python/fastnn/py.typed", "python/fastnn/_core.pyi"):
        assert needed in files, needed


def test_sdist_leaves_out_outputs(sdist):
    files, _ = sdist
    strays = [f for f in files if f.split("/")[0] in ("fastnn-demo", ".benchmarks", "build")
              or f.startswith("docs/_build")]
    assert strays == []


def test_metadata_license_and_project_facts(sdist):
    _, meta = sdist
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Author"] == "fastnn developers"
    assert meta.get_all("Project-URL")
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert meta["Keywords"]


def test_no_exact_pins_in_published_metadata(sdist):
    _, meta = sdist
    requirements = meta.get_all("Requires-Dist")
    assert requirements
    specifiers = [r.split(";")[0] for r in requirements]
    assert [s for s in specifiers if "==" in s] == []


def test_dask_extra_holds_only_what_fastnn_dask_imports(sdist):
    _, meta = sdist
    dask_extra = sorted(r.split(";")[0].strip() for r in meta.get_all("Requires-Dist") if 'extra == "dask"' in r)
    names = sorted(r.split(">")[0].split("[")[0] for r in dask_extra)
    assert names == ["dask", "distributed"]
    tree = ast.parse((ROOT / "python/fastnn/dask.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert {"dask", "distributed"} <= imported
    assert "dask_ml" not in imported
