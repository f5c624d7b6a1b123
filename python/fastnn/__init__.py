"""fastnn: fast, trustworthy dense neural networks for tabular data.

The kernels are C++17 with OpenMP (``fastnn._core``), picked at import for the CPU's
SIMD path (AVX-512, AVX2+FMA or generic; ``FASTNN_SIMD`` forces one). This package is
the thin Python layer over them.
"""
from importlib.metadata import PackageNotFoundError, version as _dist_version

from fastnn import _core
from fastnn._config import get_num_threads, set_num_threads, show_config, threads
from fastnn import nn, ops, optim
from fastnn.nn import Sequential



def __getattr__(name):
    # fastnn.preprocessing builds on scikit-learn, whose import takes about a second:
    # load it on first use, not with every `import fastnn` (PEP 562).
    if name == "preprocessing":
        import importlib
        return importlib.import_module("fastnn.preprocessing")
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


try:
    __version__ = _dist_version("fastnn")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = _core.build_info()["version"]

__all__ = [
    "Sequential",
    "__version__",
    "get_num_threads",
    "nn",
    "ops",
    "optim",
    "preprocessing",
    "set_num_threads",
    "show_config",
    "threads",
]
