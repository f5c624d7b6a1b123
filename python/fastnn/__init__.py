"""fastnn: fast, trustworthy dense neural networks for tabular data.

The kernels are C++17 with OpenMP (``fastnn._core``), picked at import for the CPU's
SIMD path (AVX-512, AVX2+FMA or generic; ``FASTNN_SIMD`` forces one). This package is
the thin Python layer over them.
"""
from importlib.metadata import PackageNotFoundError, version as _dist_version

from fastnn import _core
from fastnn._config import get_num_threads, set_num_threads, show_config, threads
from fastnn import nn, ops, optim, preprocessing
from fastnn.nn import Sequential

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
