"""Export fitted fastnn models to ONNX, for serving with ONNX Runtime (or any ONNX runtime).

``export_onnx(obj, path)`` writes one ONNX file for a ``fastnn.nn.Sequential``, a fitted
``DNNRegressor``/``DNNClassifier``, or a scikit-learn ``Pipeline`` of fitted fastnn scalers
ending in one of them (what ``fastnn.save`` stores and ``fastnn train`` saves). The graph is
built with the ``onnx`` package (``pip install fastnn[onnx]``); scikit-learn steps that are
not fastnn's (a ``ColumnTransformer`` with a ``OneHotEncoder``, ...) are converted by
skl2onnx, with which ``register_skl2onnx_converters`` registers fastnn's own converters.

The graph
---------
* One input ``"X"`` of shape ``(N, n_features)`` and element type ``dtype`` (float32 or
  float64; default: the network's dtype, float32 for the estimators).
* Regressors and ``Sequential``: one output ``"variable"`` of shape ``(N, n_outputs)`` and
  type ``dtype`` (skl2onnx's name and shape for scikit-learn regressors: a 1-D target
  gives ``(N, 1)``).
* Classifiers: ``"label"`` (shape ``(N,)``, int64 for integer classes, string for text
  classes, float64 / bool for such classes) and ``"probabilities"`` (``(N, n_classes)``,
  type ``dtype``, columns in ``classes_`` order): the outputs of skl2onnx's
  ``MLPClassifier`` converter with ``options={"zipmap": False}``.
* The model property ``feature_names`` (JSON list) names the columns of ``"X"`` when the
  object knows them (a ``fastnn train`` model's metadata, or ``feature_names_in_``).
* Every part computes in the precision fastnn uses, so ONNX Runtime reproduces fastnn's
  predictions up to the rounding of a different matrix product: scalers in float64, each
  rounded to ``dtype`` as fastnn's ``transform`` rounds to its input's dtype; the network in
  its own dtype (float32 for the estimators, also for float64 input, which is cast once as
  ``predict`` casts it); class probabilities from the logits in float64.
* Batch norm uses its running statistics: folded into the preceding ``Dense`` when that
  one has a linear activation, otherwise one multiply-add per feature. Dropout is absent.

What the graph does not do: it cannot refuse input as fastnn does. NaN or infinite
features propagate (fastnn's estimators raise), and ``LogScaler`` input with
``x + offset <= 0`` gives NaN or -inf (fastnn raises). ``OutlierRemover`` drops rows; it is
not a pipeline step and is refused.
"""
from __future__ import annotations

import json
import os

import numpy as np

from fastnn import nn

__all__ = ["DEFAULT_OPSET", "export_onnx", "register_skl2onnx_converters", "to_onnx"]

DEFAULT_OPSET = 15  # every op used here has had its current semantics since opset 13-15
INPUT_NAME = "X"
_SCALERS = ("StandardScaler", "MinMaxScaler", "LogScaler", "Clipper", "RobustScaler")
_ESTIMATORS = ("DNNRegressor", "DNNClassifier")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastnn[onnx]'") from None
    return onnx


# ----------------------------------------------------------------------------- graph builders


class _Builder:
    """Collects the nodes and initializers of one graph; every name it hands out is new.

    ``_Skl2OnnxBuilder`` offers the same three methods over skl2onnx's scope and
    container, so the translation of layers and scalers below is written once for both."""

    def __init__(self):
        self.nodes, self.initializers, self._taken = [], [], set()

    def name(self, hint: str) -> str:
        name, i = hint, 0
        while name in self._taken:
            i += 1
            name = f"{hint}_{i}"
        self._taken.add(name)
        return name

    def const(self, hint: str, value) -> str:
        from onnx import helper, numpy_helper
        arr = np.asarray(value)
        name = self.name(hint)
        if arr.dtype.kind in "US":
            strings: list = [str(v).encode("utf-8") for v in arr.ravel()]
            self.initializers.append(helper.make_tensor(name, _require_onnx().TensorProto.STRING, arr.shape, strings))
        else:
            self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list, hint: str, out: str | None = None, **attrs) -> str:
        from onnx import helper
        out = self.name(hint) if out is None else out
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(f"{hint}_{op_type}"), **attrs))
        return out


class _Skl2OnnxBuilder:
    """``_Builder``'s methods over skl2onnx's ``scope`` and ``container``."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def name(self, hint: str) -> str:
        return self.scope.get_unique_variable_name(hint)

    def const(self, hint: str, value) -> str:
        from onnx import numpy_helper
        arr = np.asarray(value)
        name = self.name(hint)
        if arr.dtype.kind in "US":
            self.container.add_initializer(name, _require_onnx().TensorProto.STRING, list(arr.shape),
                                           [str(v).encode("utf-8") for v in arr.ravel()])
        else:
            self.container.add_initializer(name, None, None, numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list, hint: str, out: str | None = None, **attrs) -> str:
        out = self.name(hint) if out is None else out
        self.container.add_node(op_type, inputs, out, name=self.scope.get_unique_operator_name(op_type),
                                op_version=_OP_VERSIONS.get(op_type), **attrs)
        return out


# the opset in which each op last changed its semantics (skl2onnx asks for it)
_OP_VERSIONS = {"Cast": 13, "MatMul": 13, "Add": 14, "Sub": 14, "Mul": 14, "Relu": 14, "LeakyRelu": 6,
                "Elu": 6, "PRelu": 9, "Sigmoid": 13, "Tanh": 13, "Exp": 13, "Log": 13, "Less": 13, "Greater": 13,
                "Where": 9, "Neg": 13, "Concat": 13, "Softmax": 13, "ArgMax": 13, "Gather": 13, "Reshape": 14,
                "Identity": 14}


def _cast(b, x: str, src, dst, hint="cast", out=None) -> str:
    """``x`` converted from numpy dtype ``src`` to ``dst``: no node when they are equal,
    unless the result must be named ``out`` (a graph output), then an Identity."""
    from onnx import helper
    src, dst = np.dtype(src), np.dtype(dst)
    if src != dst:
        return b.op("Cast", [x], hint, out=out, to=helper.np_dtype_to_tensor_dtype(dst))
    return x if out is None else b.op("Identity", [x], hint, out=out)


# ----------------------------------------------------------------------------- the network


def _network_steps(model: nn.Sequential) -> list:
    """The inference computation of ``model`` as a list of steps over numpy arrays (in
    float64): ("dense", weight, bias or None), ("act", name, parameter), ("affine", scale,
    shift). Dropout is gone; batch norm becomes an affine step, folded into the preceding
    dense step when nothing non-linear lies between them."""
    steps = []
    for i, layer in enumerate(model.layers):
        p = {k: v.astype(np.float64) for k, v in layer.p.items()} if hasattr(layer, "p") else {}
        if isinstance(layer, nn.Dense):
            steps.append(["dense", p["weight"], p.get("bias")])
            if layer.activation != "linear":
                steps.append(["act", layer.activation, _act_param(layer, p)])
        elif isinstance(layer, nn.Activation):
            if layer.name != "linear":
                steps.append(["act", layer.name, _act_param(layer, p)])
        elif isinstance(layer, nn.BatchNorm):
            mean, var = (layer.b[k].astype(np.float64) for k in ("running_mean", "running_var"))
            scale = p["gamma"] / np.sqrt(var + layer.eps)
            shift = p["beta"] - mean * scale
            if steps and steps[-1][0] == "dense":
                _, w, bias = steps[-1]
                steps[-1] = ["dense", w * scale, shift if bias is None else bias * scale + shift]
            else:
                steps.append(["affine", scale, shift])
        elif not isinstance(layer, nn.Dropout):
            raise TypeError(f"model.layers[{i}] is a {type(layer).__name__}, which ONNX export does not know")
    return steps


def _act_param(layer, p):
    name = getattr(layer, "activation", getattr(layer, "name", None))
    return {"leaky_relu": layer.negative_slope, "elu": layer.alpha, "prelu": p.get("slope")}.get(name)


def _emit_activation(b, x: str, name: str, param, dtype, hint: str) -> str:
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
    if name in simple:
        return b.op(simple[name], [x], hint)
    # float32 has fused ONNX Runtime kernels for these; float64 has none, so those are
    # written out as x < 0 ? f(x) : x
    if name == "leaky_relu":
        if dtype == np.float32:
            return b.op("LeakyRelu", [x], hint, alpha=float(param))
        negative = b.op("Mul", [x, b.const(f"{hint}_slope", np.asarray(param, dtype))], f"{hint}_scaled")
    elif name == "elu":
        if dtype == np.float32:
            return b.op("Elu", [x], hint, alpha=float(param))
        em1 = b.op("Sub", [b.op("Exp", [x], f"{hint}_exp"), b.const(f"{hint}_one", np.ones((), dtype))], f"{hint}_em1")
        negative = b.op("Mul", [em1, b.const(f"{hint}_alpha", np.asarray(param, dtype))], f"{hint}_scaled")
    elif name == "prelu":
        slope = b.const(f"{hint}_slope", param.astype(dtype))
        if dtype == np.float32:
            return b.op("PRelu", [x, slope], hint)
        negative = b.op("Mul", [x, slope], f"{hint}_scaled")
    else:
        raise ValueError(f"activation {name!r} has no ONNX translation")
    zero = b.const(f"{hint}_zero", np.zeros((), dtype))
    return b.op("Where", [b.op("Less", [x, zero], f"{hint}_isneg"), negative, x], hint)


def _emit_network(b, x: str, model: nn.Sequential, prefix: str) -> str:
    """Nodes computing ``model.predict`` on ``x`` (already of the model's dtype)."""
    dtype = model.dtype
    for i, step in enumerate(_network_steps(model)):
        hint = f"{prefix}{i}"
        if step[0] == "dense":
            _, w, bias = step
            x = b.op("MatMul", [x, b.const(f"{hint}_weight", w.astype(dtype))], f"{hint}_matmul")
            if bias is not None:
                x = b.op("Add", [x, b.const(f"{hint}_bias", bias.astype(dtype))], f"{hint}_dense")
        elif step[0] == "act":
            x = _emit_activation(b, x, step[1], step[2], dtype, f"{hint}_{step[1]}")
        else:
            _, scale, shift = step
            x = b.op("Mul", [x, b.const(f"{hint}_scale", scale.astype(dtype))], f"{hint}_bn_scaled")
            x = b.op("Add", [x, b.const(f"{hint}_shift", shift.astype(dtype))], f"{hint}_bn")
    return x


# ----------------------------------------------------------------------------- scalers


def _clip(b, x: str, lo, hi, hint: str) -> str:
    """``x`` clipped to per-column bounds (float64 arrays; +-inf or NaN: that side open).
    Written as selections, so NaN stays NaN as in fastnn."""
    lo = np.where(np.isnan(lo), -np.inf, lo)
    hi = np.where(np.isnan(hi), np.inf, hi)
    if np.isfinite(lo).any():
        low = b.const(f"{hint}_lower", lo)
        x = b.op("Where", [b.op("Less", [x, low], f"{hint}_below"), low, x], f"{hint}_lo")
    if np.isfinite(hi).any():
        high = b.const(f"{hint}_upper", hi)
        x = b.op("Where", [b.op("Greater", [x, high], f"{hint}_above"), high, x], f"{hint}_hi")
    return x


def _affine(b, x: str, hint: str, shift=None, scale=None, offset=None) -> str:
    """``(x - shift) * scale + offset`` per column in float64 (None: that part absent), the
    order of operations of fastnn's scaler kernel."""
    if shift is not None:
        x = b.op("Sub", [x, b.const(f"{hint}_shift", np.asarray(shift, np.float64))], f"{hint}_centered")
    if scale is not None:
        x = b.op("Mul", [x, b.const(f"{hint}_scale", np.asarray(scale, np.float64))], f"{hint}_scaled")
    if offset is not None:
        x = b.op("Add", [x, b.const(f"{hint}_offset", np.asarray(offset, np.float64))], f"{hint}_offset")
    return x


def _check_scaler(scaler, where: str):
    from fastnn import preprocessing
    name = type(scaler).__name__
    if type(scaler) is preprocessing.OutlierRemover:
        raise TypeError(f"{where} is an OutlierRemover: it drops rows (mask/remove) and is not a transform, "
                        "so it has no ONNX translation; remove outliers before the pipeline")
    if name not in _SCALERS or getattr(preprocessing, name, None) is not type(scaler):
        raise TypeError(f"{where} is a {type(scaler).__module__}.{type(scaler).__qualname__}: fastnn exports "
                        f"fastnn's scalers ({', '.join(_SCALERS)}); for other scikit-learn steps install "
                        "skl2onnx (see fastnn.onnx_export.register_skl2onnx_converters)")
    preprocessing.check_is_fitted(scaler)


def _emit_scaler(b, x: str, scaler, hint: str) -> str:
    """Nodes computing ``scaler.transform`` on ``x`` (float64), in float64."""
    name = type(scaler).__name__
    attr = lambda a: getattr(scaler, a, None)  # noqa: E731 (parameters may be absent: None)
    if name == "StandardScaler":
        scale = attr("scale_")
        return _affine(b, x, hint, shift=attr("mean_") if scaler.with_mean else None,
                       scale=None if not scaler.with_std or scale is None else 1.0 / scale)
    if name == "RobustScaler":
        scale = attr("scale_")
        return _affine(b, x, hint, shift=attr("center_"), scale=None if scale is None else 1.0 / scale)
    if name == "MinMaxScaler":
        x = _affine(b, x, hint, scale=scaler.scale_, offset=scaler.min_)
        if scaler.clip:
            lo, hi = (float(v) for v in scaler.feature_range)
            n = scaler.n_features_in_
            x = _clip(b, x, np.full(n, lo), np.full(n, hi), f"{hint}_clip")
        return x
    if name == "LogScaler":
        shifted = b.op("Add", [x, b.const(f"{hint}_offset", np.asarray(float(scaler.offset), np.float64))],
                       f"{hint}_shifted")
        return b.op("Log", [shifted], f"{hint}_log")
    if name == "Clipper":
        return _clip(b, x, np.asarray(scaler.lower_, np.float64), np.asarray(scaler.upper_, np.float64), hint)
    raise TypeError(f"no ONNX translation for {name}")


def _emit_scalers(b, x: str, scalers, dtype) -> str:
    """Each scaler in float64, its result rounded to ``dtype`` as fastnn's transform rounds
    to the dtype of its input (a no-op for float64)."""
    for name, scaler in scalers:
        x = _cast(b, x, dtype, np.float64, f"{name}_input")
        x = _emit_scaler(b, x, scaler, name)
        x = _cast(b, x, np.float64, dtype, f"{name}_out")
    return x


# ----------------------------------------------------------------------------- estimators


def _label_constant(classes):
    """``classes_`` as a constant an ONNX graph can hold (and the label's numpy dtype)."""
    classes = np.asarray(classes)
    if classes.dtype.kind == "O":
        if all(isinstance(c, str) for c in classes):
            classes = classes.astype(str)
        else:
            raise TypeError(f"classes_ {classes.tolist()!r} mix types or are not strings or numbers: ONNX labels "
                            "are one tensor type")
    if classes.dtype.kind in "iu":
        return classes.astype(np.int64)
    if classes.dtype.kind in "fb":
        return classes if classes.dtype.kind == "b" else classes.astype(np.float64)
    if classes.dtype.kind in "US":
        return classes.astype(str)
    raise TypeError(f"classes_ of dtype {classes.dtype} cannot be ONNX labels")


def _emit_estimator(b, x: str, est, dtype, outputs: list) -> None:
    """Nodes from ``x`` (of ``dtype``) to the estimator's outputs, named ``outputs``
    (["variable"] for a regressor, ["label", "probabilities"] for a classifier)."""
    model = est.model_
    z = _emit_network(b, _cast(b, x, dtype, model.dtype, "network_input"), model, "layer")
    if not hasattr(est, "classes_"):
        _cast(b, z, model.dtype, dtype, "variable", out=outputs[0])
        return
    classes = b.const("classes", _label_constant(est.classes_))
    z64 = _cast(b, z, model.dtype, np.float64, "logits")
    if model.out_features == 1:  # the logit of classes_[1]: p = sigmoid(z), 1 - p = sigmoid(-z)
        p = b.op("Concat", [b.op("Sigmoid", [b.op("Neg", [z64], "minus_logit")], "p0"),
                            b.op("Sigmoid", [z64], "p1")], "proba64", axis=1)
        positive = b.op("Greater", [z, b.const("zero", np.zeros((), model.dtype))], "positive")
        index = b.op("Reshape", [b.op("Cast", [positive], "index2d", to=_require_onnx().TensorProto.INT64),
                                 b.const("flat", np.array([-1], np.int64))], "index")
    else:
        p = b.op("Softmax", [z64], "proba64", axis=1)
        index = b.op("ArgMax", [z], "index", axis=1, keepdims=0)
    b.op("Gather", [classes, index], "label", out=outputs[0], axis=0)
    _cast(b, p, np.float64, dtype, "probabilities", out=outputs[1])


def _split(obj):
    """(scaler steps, estimator or Sequential) of an exportable object; TypeError otherwise."""
    from sklearn.pipeline import Pipeline
    if isinstance(obj, nn.Sequential):
        return [], obj
    if isinstance(obj, Pipeline):
        if not obj.steps:
            raise ValueError("obj is an empty Pipeline")
        *scalers, (last_name, est) = obj.steps
        for name, step in scalers:
            _check_scaler(step, f"pipeline step {name!r}")
        _check_estimator(est, f"the last pipeline step {last_name!r}")
        return scalers, est
    _check_estimator(obj, "obj")
    return [], obj


def _check_estimator(est, where: str):
    from fastnn import estimators
    if type(est).__name__ not in _ESTIMATORS or getattr(estimators, type(est).__name__) is not type(est):
        raise TypeError(f"{where} is a {type(est).__module__}.{type(est).__qualname__}: ONNX export takes a "
                        "fastnn.nn.Sequential, a fitted DNNRegressor/DNNClassifier, or a Pipeline of fastnn "
                        "scalers ending in one")
    estimators.check_is_fitted(est, "model_")


def _input_dtype(dtype, default):
    try:
        checked = np.dtype(default if dtype is None else dtype)
    except TypeError:
        checked = None
    if checked is None or checked not in _FLOATS:
        raise ValueError(f"dtype must be float32 or float64 (the ONNX input type), got {dtype!r}")
    return checked


def _fastnn_graph(obj, dtype, opset):
    onnx = _require_onnx()
    from onnx import helper
    scalers, est = _split(obj)
    model = est if isinstance(est, nn.Sequential) else est.model_
    dtype = _input_dtype(dtype, model.dtype)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    b = _Builder()
    for name in (INPUT_NAME, "variable", "label", "probabilities"):  # no step name may take them
        b.name(name)
    x = _emit_scalers(b, INPUT_NAME, scalers, dtype)
    n_in = model.in_features
    if isinstance(est, nn.Sequential):
        z = _emit_network(b, _cast(b, x, dtype, model.dtype, "network_input"), model, "layer")
        _cast(b, z, model.dtype, dtype, "variable", out="variable")
        outputs = [helper.make_tensor_value_info("variable", elem, [None, model.out_features])]
    elif hasattr(est, "classes_"):
        _emit_estimator(b, x, est, dtype, ["label", "probabilities"])
        labels = _label_constant(est.classes_).dtype
        label = onnx.TensorProto.STRING if labels.kind == "U" else helper.np_dtype_to_tensor_dtype(labels)
        outputs = [helper.make_tensor_value_info("label", label, [None]),
                   helper.make_tensor_value_info("probabilities", elem, [None, len(est.classes_)])]
    else:
        _emit_estimator(b, x, est, dtype, ["variable"])
        outputs = [helper.make_tensor_value_info("variable", elem, [None, model.out_features])]
    graph = helper.make_graph(b.nodes, f"fastnn_{type(est).__name__}", [
        helper.make_tensor_value_info(INPUT_NAME, elem, [None, n_in])], outputs, b.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fastnn",
                              producer_version=_version())
    names = _feature_names(obj, n_in)
    if names is not None:  # the column order of "X", for whoever serves the file
        helper.set_model_props(proto, {"feature_names": json.dumps(names)})
    return proto


def _feature_names(obj, n_in: int):
    """The input's column names: the metadata of a ``fastnn train`` pipeline, or the
    ``feature_names_in_`` of a model fitted on a DataFrame (None when neither names them)."""
    names = getattr(obj, "fastnn_metadata_", {}).get("features")
    if names is None and getattr(obj, "feature_names_in_", None) is not None:
        names = [str(n) for n in obj.feature_names_in_]
    if isinstance(names, list) and len(names) == n_in and all(isinstance(n, str) for n in names):
        return names
    return None


def _version():
    import fastnn
    return fastnn.__version__


def _is_fastnn_only(obj) -> bool:
    from sklearn.pipeline import Pipeline
    if not isinstance(obj, Pipeline):
        return True
    return all(type(step).__module__.startswith("fastnn.") for _, step in obj.steps)


def to_onnx(obj, *, dtype=None, opset=None, initial_types=None):
    """The ``onnx.ModelProto`` that ``export_onnx`` writes (see there), checked with
    ``onnx.checker``."""
    onnx = _require_onnx()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 15:
        raise ValueError(f"opset must be an int >= 15, got {opset!r}")
    if _is_fastnn_only(obj):
        if initial_types is not None:
            raise ValueError("initial_types is for pipelines with scikit-learn steps (converted by skl2onnx); "
                             "a fastnn model has the one input 'X'")
        proto = _fastnn_graph(obj, dtype, opset)
    else:
        proto = _skl2onnx_graph(obj, dtype, opset, initial_types)
    onnx.checker.check_model(proto)
    return proto


def export_onnx(obj, path, *, dtype=None, opset=None, initial_types=None) -> None:
    """Write ``obj`` to ``path`` as an ONNX model, atomically.

    Parameters
    ----------
    obj : fastnn.nn.Sequential, fitted DNNRegressor or DNNClassifier, or sklearn Pipeline
        A pipeline of fitted fastnn scalers (``StandardScaler``, ``MinMaxScaler``,
        ``LogScaler``, ``Clipper``, ``RobustScaler``) ending in a fitted estimator. A pipeline
        with other scikit-learn steps (``ColumnTransformer``, ``OneHotEncoder``, ...) is
        converted by skl2onnx, with fastnn's converters registered.
    path : str or os.PathLike
        The ONNX file to write (replaced atomically: on any error the old file stays).
    dtype : {None, numpy.float32, numpy.float64, "float32", "float64"}
        Element type of the input ``"X"`` and of the outputs; None: the network's dtype
        (float32 for the estimators). The graph computes in fastnn's own precision either way.
        With scikit-learn steps, float64 depends on skl2onnx's ops having double kernels in
        your runtime (ONNX Runtime 1.32 has none for the ``Imputer`` of ``SimpleImputer``).
    opset : int, optional
        ONNX opset of the default domain (>= 15; default ``DEFAULT_OPSET``).
    initial_types : list of (name, skl2onnx type), optional
        Only for pipelines converted by skl2onnx: its inputs. By default one input per
        column of a leading ``ColumnTransformer`` fitted on a DataFrame or named by the
        ``features`` metadata of a ``fastnn train`` model (string for the columns of an
        encoder fitted on text, else ``dtype``), or one input ``"X"``.

    Raises
    ------
    TypeError
        For an object or step with no ONNX translation (``OutlierRemover``, a scikit-learn
        step without skl2onnx or that skl2onnx cannot convert, such as a
        ``FunctionTransformer`` of ``np.log1p``), ``NotFittedError`` for an unfitted one.
    ImportError
        When the ``onnx`` package is missing (``pip install 'fastnn[onnx]'``).

    Notes
    -----
    The graph's inputs and outputs are described in the module docstring: ``"X"`` to
    ``"variable"`` (regression) or to ``"label"`` and ``"probabilities"`` (classification).
    Run it with ``onnxruntime.InferenceSession(path).run(None, {"X": X})``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    from fastnn._files import atomic_write
    data = to_onnx(obj, dtype=dtype, opset=opset, initial_types=initial_types).SerializeToString()
    atomic_write(path, lambda f: f.write(data))


# ----------------------------------------------------------------------------- skl2onnx


def _require_skl2onnx():
    try:
        import skl2onnx
    except ImportError:
        raise ImportError("exporting a pipeline with scikit-learn steps that are not fastnn's needs skl2onnx: "
                          "pip install skl2onnx") from None
    return skl2onnx


def _skl_dtype(variable):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    if isinstance(variable.type, DoubleTensorType):
        return np.dtype(np.float64)
    if isinstance(variable.type, FloatTensorType):
        return np.dtype(np.float32)
    raise TypeError(f"fastnn's ONNX converters take float or double tensors, got {variable.type}")


def _skl_tensor_type(dtype):
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    return DoubleTensorType if np.dtype(dtype) == np.float64 else FloatTensorType


def _skl_shape_scaler(operator):
    dtype = _skl_dtype(operator.inputs[0])
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = _skl_tensor_type(dtype)([n, operator.raw_operator.n_features_in_])


def _skl_shape_estimator(operator):
    from skl2onnx.common.data_types import BooleanTensorType, DoubleTensorType, Int64TensorType, StringTensorType
    est = operator.raw_operator
    dtype = _skl_dtype(operator.inputs[0])
    n = operator.inputs[0].get_first_dimension()
    if not hasattr(est, "classes_"):
        operator.outputs[0].type = _skl_tensor_type(dtype)([n, est.model_.out_features])
        return
    kind = _label_constant(est.classes_).dtype.kind
    label = {"i": Int64TensorType, "f": DoubleTensorType, "b": BooleanTensorType}.get(kind, StringTensorType)
    operator.outputs[0].type = label([n])
    operator.outputs[1].type = _skl_tensor_type(dtype)([n, len(est.classes_)])


def _skl_convert_scaler(scope, operator, container):
    b = _Skl2OnnxBuilder(scope, container)
    dtype = _skl_dtype(operator.inputs[0])
    x = _cast(b, operator.inputs[0].full_name, dtype, np.float64, "fastnn_scaler_input")
    x = _emit_scaler(b, x, operator.raw_operator, "fastnn_scaler")
    _cast(b, x, np.float64, dtype, "fastnn_scaler_out", out=operator.outputs[0].full_name)


def _skl_convert_estimator(scope, operator, container):
    b = _Skl2OnnxBuilder(scope, container)
    _emit_estimator(b, operator.inputs[0].full_name, operator.raw_operator, _skl_dtype(operator.inputs[0]),
                    [v.full_name for v in operator.outputs])


def register_skl2onnx_converters() -> None:
    """Teach skl2onnx fastnn's scalers and estimators (``skl2onnx.update_registered_converter``
    with a shape calculator and a converter each), so that ``skl2onnx.to_onnx`` converts
    pipelines that mix them with scikit-learn steps. Classifiers take skl2onnx's usual
    options (``zipmap``, ``nocl``). Safe to call more than once."""
    skl2onnx = _require_skl2onnx()
    from fastnn import estimators, preprocessing
    for name in _SCALERS:
        skl2onnx.update_registered_converter(getattr(preprocessing, name), f"Fastnn{name}", _skl_shape_scaler,
                                             _skl_convert_scaler)
    skl2onnx.update_registered_converter(estimators.DNNRegressor, "FastnnDNNRegressor", _skl_shape_estimator,
                                         _skl_convert_estimator)
    skl2onnx.update_registered_converter(estimators.DNNClassifier, "FastnnDNNClassifier", _skl_shape_estimator,
                                         _skl_convert_estimator,
                                         options={"zipmap": [True, False, "columns"], "nocl": [True, False]})


def _default_initial_types(pipeline, dtype):
    """One input per column of a leading ColumnTransformer that knows its column names
    (fitted on a DataFrame, or named by the metadata of a ``fastnn train`` model), string
    where an encoder was fitted on text; else one input "X" of ``dtype``."""
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.compose import ColumnTransformer
    first = pipeline.steps[0][1]
    tensor = _skl_tensor_type(dtype)
    names = getattr(first, "feature_names_in_", None)
    if names is None and isinstance(first, ColumnTransformer):
        names = _feature_names(pipeline, first.n_features_in_)
    if not isinstance(first, ColumnTransformer) or names is None:
        return [(INPUT_NAME, tensor([None, pipeline.n_features_in_]))]
    text = set()
    for _, transformer, columns in first.transformers_:
        categories = getattr(_last(transformer), "categories_", None)
        if categories is None:  # not an encoder ("passthrough", "drop", a scaler, ...)
            continue
        text.update(c for c, cats in zip(_column_names(columns, names), categories)
                    if np.asarray(cats).dtype.kind in "OUS")
    return [(str(c), StringTensorType([None, 1]) if c in text else tensor([None, 1])) for c in names]


def _column_names(columns, names) -> list:
    """The DataFrame column names a ColumnTransformer entry selects (names, indices, a
    slice or a boolean mask)."""
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, slice):
        return list(names[columns])
    columns = list(columns)
    if all(isinstance(c, str) for c in columns):
        return columns
    return list(np.asarray(names)[np.asarray(columns)])


def _last(transformer):
    steps = getattr(transformer, "steps", None)
    return steps[-1][1] if steps else transformer


def _skl2onnx_graph(pipeline, dtype, opset, initial_types):
    skl2onnx = _require_skl2onnx()
    register_skl2onnx_converters()
    est = pipeline.steps[-1][1]
    for name, step in pipeline.steps:
        if type(step).__name__ == "OutlierRemover":
            _check_scaler(step, f"pipeline step {name!r}")
    dtype = _input_dtype(dtype, np.float32)
    if initial_types is None:
        initial_types = _default_initial_types(pipeline, dtype)
    options = {id(est): {"zipmap": False}} if hasattr(est, "classes_") else None
    try:
        return skl2onnx.to_onnx(pipeline, initial_types=initial_types, target_opset={"": opset, "ai.onnx.ml": 1},
                                options=options)
    except (RuntimeError, NotImplementedError) as exc:  # skl2onnx's way of saying "no converter"
        raise TypeError(f"skl2onnx cannot convert this pipeline: {exc}") from exc
