"""Every public object has a numpydoc docstring that numpydoc.validate accepts for the
sections it needs: a docstring (GL08), every parameter documented (PR01) and no unknown
one (PR02), each with a type (PR04) and a description (PR07), a Returns section where a
value is returned (RT01) and a Yields section for generators (YD01).

The public objects are the names in ``__all__`` of fastnn and of its public modules, and
the public methods and properties those classes define. A method that overrides a base
method without a docstring of its own shows the base's (``help()`` and the docs do): the
base's docstring is validated, where it is defined."""
from __future__ import annotations

import importlib
import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate", reason="numpydoc is not installed (pip install '.[docs]')")

MODULES = ("fastnn", "fastnn.ops", "fastnn.nn", "fastnn.optim", "fastnn.preprocessing", "fastnn.estimators",
           "fastnn.doctor", "fastnn.persistence", "fastnn.callbacks", "fastnn.plotting", "fastnn.dask",
           "fastnn.distributed")
CHECKS = ("GL08", "PR01", "PR02", "PR04", "PR07", "RT01", "YD01")
# scikit-learn adds these to every estimator (metadata routing); their docstrings are its own.
SKLEARN_GENERATED = ("set_fit_request", "set_partial_fit_request", "set_score_request", "set_predict_request",
                     "set_transform_request", "set_inverse_transform_request")


def _defining_class(cls, name):
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def public_objects() -> list[str]:
    names = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue  # modules, constants and __version__ are documented in their module
            names.add(f"{obj.__module__}.{obj.__qualname__}")
            if not inspect.isclass(obj):
                continue
            for attr in dir(obj):
                owner = _defining_class(obj, attr)
                if attr.startswith("_") or attr in SKLEARN_GENERATED or not owner.__module__.startswith("fastnn"):
                    continue  # scikit-learn's and object's own methods are documented there
                value = vars(owner)[attr]
                if not (inspect.isfunction(value) or isinstance(value, (property, classmethod, staticmethod))):
                    continue
                func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                if not func.__doc__:  # an override: help() shows the base's docstring, validated there
                    base = next((k for k in owner.__mro__[1:] if k.__module__.startswith("fastnn")
                                 and getattr(vars(k).get(attr), "__doc__", None)), None)
                    if base is not None:
                        owner = base
                names.add(f"{owner.__module__}.{owner.__qualname__}.{attr}")
    return sorted(names)


PUBLIC = public_objects()


def test_the_public_objects_are_found():
    assert len(PUBLIC) > 120
    for expected in ("fastnn.estimators.DNNRegressor", "fastnn.estimators._BaseDNN.fit",
                     "fastnn.optim.Optimizer.state_dict", "fastnn.nn.Layer.forward",
                     "fastnn.estimators.DNNClassifier.predict_log_proba", "fastnn.persistence.load"):
        assert expected in PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_numpydoc_docstring(name):
    result = numpydoc_validate.validate(name)
    errors = [f"{code}: {message}" for code, message in result["errors"] if code in CHECKS]
    assert errors == [], f"{name}:\n  " + "\n  ".join(errors)


def test_fit_documents_sample_weight():
    from fastnn.estimators import DNNClassifier, DNNRegressor
    for cls in (DNNRegressor, DNNClassifier):
        assert "sample_weight : " in inspect.getdoc(cls.fit)
