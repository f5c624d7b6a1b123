"""Safe model files: a zip of ``.npy`` arrays (the ``np.savez`` layout, uncompressed) with a
JSON header. Loading never unpickles and never runs code named by the file; every way a
file can be bad (foreign, truncated, corrupted, tampered, from a newer fastnn) is a
``ModelFormatError`` naming the path. Saving is atomic: a failed or interrupted save
leaves the old file as it was.

A pipeline's scikit-learn steps that are not fastnn's (``ColumnTransformer``,
``OneHotEncoder``, ...) are stored through skops.io, with an explicit list of trusted
types, as one uint8 entry each (``fastnn._skops_steps``); everything fastnn's own stays in
this format.

One module per topic:

- ``_container``: the file (``write_model``/``read_model``, ``FORMAT_VERSION``, ``MAGIC``);
- ``_fields``: constructor arguments to JSON and back, checked, for every saver;
- ``_sequential``/``_optimizer``/``_scalers``/``_estimators``: each kind of fastnn object
  as (JSON config, arrays) and back (``sequential_state``/``sequential_from_state``, ...);
- ``_pipeline``: scikit-learn pipelines ending in an estimator;
- ``_dispatch``: the public ``save``/``load``; ``load`` builds the header's ``"class"``
  through the loader registered for it (``register_loader``).
"""
from __future__ import annotations

from fastnn._errors import ModelFormatError
# _RESERVED and _LOADERS are private, but reached through the package by code that rewrites
# headers or swaps a loader (the tests): the keys write_model sets, the registry load reads
from fastnn.persistence._container import _RESERVED, FORMAT_VERSION, MAGIC, read_model, write_model  # noqa: F401
from fastnn.persistence._dispatch import _LOADERS, load, register_loader, save  # noqa: F401
from fastnn.persistence._optimizer import optimizer_from_state, optimizer_state
from fastnn.persistence._pipeline import load_pipeline, save_pipeline, trusted_skops_types
from fastnn.persistence._scalers import scaler_from_state, scaler_state
from fastnn.persistence._sequential import load_sequential, save_sequential, sequential_from_state, sequential_state

__all__ = [
    "FORMAT_VERSION", "MAGIC", "ModelFormatError", "load", "save", "load_pipeline", "load_sequential",
    "optimizer_from_state", "optimizer_state", "read_model", "register_loader", "save_pipeline",
    "save_sequential", "scaler_from_state", "scaler_state", "sequential_from_state", "sequential_state",
    "trusted_skops_types", "write_model",
]

# help(), repr() and the API docs show each public function at the path users import it
# from, not the private module that defines it (numpy's set_module does the same)
for _name in __all__:
    _obj = globals()[_name]
    if callable(_obj) and getattr(_obj, "__module__", "").startswith(__name__ + "."):
        _obj.__module__ = __name__
del _name, _obj
