"""Whole scikit-learn pipelines ending in a fastnn estimator: fastnn's own steps in this
package's format, any other scikit-learn step through skops.io with an explicit list of
trusted types (``fastnn._skops_steps``), as one uint8 entry each."""
from __future__ import annotations

from fastnn._errors import ModelFormatError
from fastnn.persistence._container import _RESERVED, _as_format_errors, read_model, write_model
from fastnn.persistence._estimators import _ESTIMATORS, estimator_from_state, estimator_state
from fastnn.persistence._fields import _allowed, _classes, _fields, _prefixed, _unprefixed
from fastnn.persistence._scalers import _SCALERS, scaler_from_state, scaler_state


def save_pipeline(pipeline, path, *, metadata=None) -> None:
    """Save a fitted scikit-learn ``Pipeline`` ending in a fastnn estimator to ``path``, atomically.

    The last step is a fitted ``fastnn.DNNRegressor`` or ``DNNClassifier``. Each step before
    it is either a fitted ``fastnn.preprocessing`` scaler (``StandardScaler``,
    ``MinMaxScaler``, ``LogScaler``, ``Clipper``, ``RobustScaler``), saved in fastnn's own
    format (``scaler_state``), or a fitted scikit-learn step of a trusted type
    (``ColumnTransformer``, ``OneHotEncoder``, ``SimpleImputer``, ...; see
    ``fastnn._skops_steps``), saved through skops.io (``pip install 'fastnn[skops]'``) as
    one uint8 entry; loading it never unpickles and refuses untrusted types by name. The
    file also holds the estimator's state (as ``est.save`` writes it) and ``metadata``, a
    JSON object of your own (the ``fastnn`` command line stores the feature and target
    column names there). ``fastnn.load(path)`` (or ``load_pipeline``) gives back a
    ``Pipeline`` of the same step names whose predictions are bitwise those of the
    original, with the metadata as its attribute ``fastnn_metadata_`` (a dict, empty when
    none was saved). The pipeline's ``memory`` and ``verbose`` are not saved.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        The fitted pipeline: fastnn scalers and trusted scikit-learn steps (through skops),
        ending in a fastnn estimator.
    path : str or os.PathLike
        Where to write.
    metadata : dict, optional
        A JSON object of your own, saved with the pipeline.

    Raises
    ------
    TypeError
        For a step that cannot be saved safely (``OutlierRemover`` drops rows and is not a
        pipeline step; a scikit-learn step holding an untrusted type, e.g. a
        ``FunctionTransformer`` of your own function).
    ImportError
        For a scikit-learn step without skops installed.
    sklearn.exceptions.NotFittedError
        For an unfitted step.
    ValueError
        When the steps disagree on the number of features.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted
    from fastnn import _skops_steps
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"pipeline must be a sklearn.pipeline.Pipeline, got {type(pipeline).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict (JSON object) or None, got {type(metadata).__name__}")
    if not pipeline.steps:
        raise ValueError("the pipeline has no steps")
    *others, (est_name, est) = pipeline.steps
    allowed = _classes("fastnn.preprocessing", _SCALERS)
    _allowed(est, _classes("fastnn.estimators", _ESTIMATORS), f"the last pipeline step {est_name!r}")
    steps, files, tail = [], {}, []
    for i, (name, step) in enumerate(others):
        where = f"pipeline step {name!r}"
        if type(step).__module__.startswith("fastnn."):  # fastnn's own: its format and checks
            _allowed(step, allowed, where)
            config, arrays = scaler_state(step)
            steps.append({"name": name, "scaler": config})
            files.update(_prefixed(f"step{i}.", arrays))
            tail.append((name, step))
            continue
        if not hasattr(step, "fit"):
            raise TypeError(f"{where} is {step!r}: only fitted transformers can be saved")
        check_is_fitted(step)
        files[f"step{i}.skops"] = _skops_steps.dumps_step(step, where)
        steps.append({"name": name, "skops": {"class": _skops_steps.step_class(step)}})
        tail = []
    est_header, est_arrays = estimator_state(est)  # NotFittedError when the estimator is not fitted
    widths = {name: step.n_features_in_ for name, step in tail + [(est_name, est)]}
    if len(set(widths.values())) > 1:
        raise ValueError(f"the pipeline's steps were fitted on different numbers of features: {widths}")
    steps.append({"name": est_name, "estimator": est_header})
    files.update(_prefixed(f"step{len(others)}.", est_arrays))
    write_model(path, {"class": "Pipeline", "steps": steps, "metadata": metadata}, files)


def _step_name(name, where: str, seen: set) -> str:
    if not isinstance(name, str) or not name or "__" in name or name in seen:
        raise ModelFormatError(f"{where}.name must be a distinct non-empty string without '__', got {name!r}")
    seen.add(name)
    return name


def _pipeline_file(header: dict, arrays: dict):
    from sklearn.pipeline import Pipeline
    keys = sorted(k for k in header if k not in _RESERVED + ("class",))
    if keys != ["metadata", "steps"]:
        raise ModelFormatError(f"the 'Pipeline' header has keys {keys}, expected ['metadata', 'steps']")
    steps, metadata = header["steps"], header["metadata"]
    if not isinstance(steps, list) or not steps:
        raise ModelFormatError(f"pipeline.steps must be a non-empty list, got {steps!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ModelFormatError(f"pipeline.metadata must be a JSON object, got {metadata!r}")
    prefixes = tuple(f"step{i}." for i in range(len(steps)))
    stray = sorted(k for k in arrays if not k.startswith(prefixes))
    if stray:
        raise ModelFormatError(f"arrays {stray} belong to no pipeline step")
    last = len(steps) - 1
    seen: set = set()
    est_name, est_header = _fields(steps[last], ("name", "estimator"), f"steps[{last}]")
    est_name = _step_name(est_name, f"steps[{last}]", seen)
    kind = est_header.get("class") if isinstance(est_header, dict) else None
    if kind not in _ESTIMATORS:
        raise ModelFormatError(f"steps[{last}].estimator must be a saved {' or '.join(_ESTIMATORS)}, got {kind!r}")
    est = estimator_from_state(est_header, _unprefixed(f"step{last}.", arrays))
    # the fastnn scalers after the last scikit-learn step see the estimator's features
    sklearn_steps = [i for i, step in enumerate(steps[:last]) if isinstance(step, dict) and "skops" in step]
    after = sklearn_steps[-1] if sklearn_steps else -1
    built = []
    for i, step in enumerate(steps[:last]):
        if i in sklearn_steps:
            built.append(_skops_step(step, i, _unprefixed(f"step{i}.", arrays), seen))
            continue
        name, config = _fields(step, ("name", "scaler"), f"steps[{i}]")
        name = _step_name(name, f"steps[{i}]", seen)
        width = est.n_features_in_ if i > after else None
        built.append((name, scaler_from_state(config, _unprefixed(f"step{i}.", arrays), width)))
    pipeline = Pipeline(built + [(est_name, est)])
    pipeline.fastnn_metadata_ = {} if metadata is None else metadata
    return pipeline


def trusted_skops_types() -> frozenset:
    """What a scikit-learn step stored through skops may name (``module.qualname``): the
    scikit-learn classes ``ColumnTransformer``, ``OneHotEncoder``, ``OrdinalEncoder``,
    ``SimpleImputer``, ``MissingIndicator``, ``StandardScaler``, ``MinMaxScaler``,
    ``MaxAbsScaler``, ``RobustScaler``, ``FunctionTransformer``, ``Pipeline``,
    ``FeatureUnion``; fastnn's scalers; NumPy arrays, dtypes and scalars; plain containers;
    and the NumPy functions a ``FunctionTransformer`` may hold (``np.log1p``, ``np.log``,
    ``np.sqrt``, ...). Anything else is refused when saving and when loading.

    Returns
    -------
    frozenset of str
        The trusted type names.
    """
    from fastnn import _skops_steps
    return _skops_steps.trusted_types()


def _skops_step(step, i: int, arrays: dict, seen: set):
    """(name, step) of a scikit-learn step stored through skops (see save_pipeline)."""
    from fastnn import _skops_steps
    name, config = _fields(step, ("name", "skops"), f"steps[{i}]")
    name = _step_name(name, f"steps[{i}]", seen)
    (recorded,) = _fields(config, ("class",), f"steps[{i}].skops")
    if not isinstance(recorded, str) or set(arrays) != {"skops"}:
        raise ModelFormatError(f"steps[{i}] must record its class as a string and hold exactly one array "
                               f"'step{i}.skops', got {recorded!r} and {sorted(arrays)}")
    return name, _skops_steps.loads_step(arrays["skops"], recorded, f"steps[{i}] ({name!r})")


def load_pipeline(path):
    """Load the ``Pipeline`` saved by ``save_pipeline``.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    sklearn.pipeline.Pipeline
        The pipeline; its ``fastnn_metadata_`` attribute is the saved metadata.

    Raises
    ------
    ModelFormatError
        For a file holding anything else.
    """
    header, arrays = read_model(path)
    with _as_format_errors(path, "malformed model"):
        if header.get("class") != "Pipeline":
            raise ModelFormatError(f"it holds a {header.get('class')!r}, not a Pipeline "
                                   "(fastnn.persistence.load reads any model)")
        return _pipeline_file(header, arrays)
