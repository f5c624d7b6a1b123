"""The public ``save`` and ``load``: ``load`` builds whatever the header's ``"class"``
names through the loader registered for it (``register_loader``), so a file never
chooses what code runs; ``save`` picks the saver by the object's type."""
from __future__ import annotations

from typing import Callable

from fastnn import nn
from fastnn._errors import ModelFormatError
from fastnn.persistence._container import _as_format_errors, read_model
from fastnn.persistence._estimators import _ESTIMATORS, estimator_from_state, save_estimator
from fastnn.persistence._pipeline import _pipeline_file, save_pipeline
from fastnn.persistence._sequential import _sequential_file, save_sequential

_LOADERS: dict[str, Callable[[dict, dict], object]] = {}


def register_loader(class_name: str, fn: Callable[[dict, dict], object]) -> None:
    """Teach ``load`` to build another class of model file.

    Parameters
    ----------
    class_name : str
        The header's ``"class"`` this loader handles (replacing any earlier loader for
        that name).
    fn : callable
        ``fn(header, arrays)`` returns the object. It should raise ``ModelFormatError``
        for what it finds wrong; any other exception is reported as one.

    Raises
    ------
    TypeError
        If ``class_name`` is not a str or ``fn`` is not callable.
    """
    if not isinstance(class_name, str) or not class_name:
        raise TypeError(f"class_name must be a non-empty string, got {class_name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(header, arrays), got {type(fn).__name__}")
    _LOADERS[class_name] = fn


def _loader(name):
    fn = _LOADERS.get(name) if isinstance(name, str) else None
    if fn is None:
        raise ModelFormatError(f"it holds a {name!r}, which this fastnn cannot build "
                               f"(known: {', '.join(sorted(_LOADERS))})")
    return fn


def save(obj, path, **kwargs) -> None:
    """Save a fastnn model to ``path``, atomically; ``load(path)`` gives it back.

    Parameters
    ----------
    obj : DNNRegressor, DNNClassifier, sklearn.pipeline.Pipeline or fastnn.nn.Sequential
        A fitted estimator, a scikit-learn ``Pipeline`` of fastnn scalers and trusted
        scikit-learn steps ending in one (see ``save_pipeline``), or a ``Sequential`` (see
        ``save_sequential``).
    path : str or os.PathLike
        Where to write.
    **kwargs
        ``metadata=`` for a pipeline, ``optimizer=`` for a ``Sequential``.

    Raises
    ------
    TypeError
        For any other object, or a keyword that does not apply to it.
    """
    from sklearn.pipeline import Pipeline
    if isinstance(obj, nn.Sequential):
        save_sequential(obj, path, **kwargs)
    elif isinstance(obj, Pipeline):
        save_pipeline(obj, path, **kwargs)
    elif type(obj).__name__ in _ESTIMATORS and type(obj).__module__ == "fastnn.estimators":
        if kwargs:
            raise TypeError(f"saving a {type(obj).__name__} takes no options, got {sorted(kwargs)}")
        save_estimator(obj, path)
    else:
        raise TypeError(f"fastnn.save takes a fastnn estimator, a Pipeline ending in one or a Sequential, "
                        f"got {type(obj).__name__}")


def load(path):
    """Load the object saved at ``path``; never unpickles.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    object
        An estimator, a Pipeline or a ``Sequential``, built by the loader registered
        for the header's ``"class"``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelFormatError
        If the file is not an intact fastnn model.
    """
    header, arrays = read_model(path)
    with _as_format_errors(path, "malformed model"):
        return _loader(header.get("class"))(header, arrays)


register_loader("Sequential", lambda header, arrays: _sequential_file(header, arrays)[0])
register_loader("Pipeline", _pipeline_file)
for _name in _ESTIMATORS:
    register_loader(_name, estimator_from_state)
