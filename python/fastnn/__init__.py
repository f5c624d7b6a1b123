"""fastnn: fast, trustworthy dense neural networks for tabular data.

The kernels are C++17 with OpenMP (``fastnn._core``), picked at import for the CPU's
SIMD path (AVX-512, AVX2+FMA or generic; ``FASTNN_SIMD`` forces one). This package is
the thin Python layer over them.
"""
from importlib.metadata import PackageNotFoundError, version as _dist_version

from fastnn import _core, _threadpool  # noqa: F401  (_threadpool: registers with threadpoolctl)
from fastnn._config import get_num_threads, set_num_threads, show_config, threads
from fastnn import nn, ops, optim
from fastnn._errors import ModelFormatError, TrainingDivergedError, TrainingDivergedWarning, UntrustedTypeError
from fastnn.nn import Sequential

# Loaded on first use, not with every `import fastnn`: the estimators and preprocessing
# build on scikit-learn, whose import takes about a second (PEP 562).
_LAZY = {"preprocessing": ("fastnn.preprocessing", None), "estimators": ("fastnn.estimators", None),
         "doctor": ("fastnn.doctor", None), "persistence": ("fastnn.persistence", None),
         "DNNRegressor": ("fastnn.estimators", "DNNRegressor"), "DNNClassifier": ("fastnn.estimators", "DNNClassifier"),
         "load": ("fastnn.persistence", "load"), "save": ("fastnn.persistence", "save"), "callbacks": ("fastnn.callbacks", None),
         "distributed": ("fastnn.distributed", None), "dask": ("fastnn.dask", None),
         "plot_history": ("fastnn.plotting", "plot_history"),
         "export_onnx": ("fastnn.onnx_export", "export_onnx")}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


def __dir__():
    # The lazy names are attributes too: dir(), help() and tab completion list them.
    return sorted(set(globals()) | set(_LAZY))


try:
    __version__ = _dist_version("fastnn")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = _core.build_info()["version"]

__all__ = [
    "DNNClassifier",
    "DNNRegressor",
    "ModelFormatError",
    "Sequential",
    "TrainingDivergedError",
    "TrainingDivergedWarning",
    "UntrustedTypeError",
    "callbacks",
    "__version__",
    "export_onnx",
    "get_num_threads",
    "load",
    "nn",
    "ops",
    "optim",
    "plot_history",
    "preprocessing",
    "save",
    "set_num_threads",
    "show_config",
    "threads",
]
