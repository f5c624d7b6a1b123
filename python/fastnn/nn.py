"""Layers and ``Sequential``: a model whose parameters live in ONE flat buffer.

Every parameter tensor is a view into ``model.params`` and every gradient a view into
``model.grads`` (same size, same order), so one optimizer call and one clipping call cover
the whole model (llm.c's layout). Running statistics of batch norm live in a third flat
buffer, ``model.buffers``: they are state, not parameters (no gradient, no update).

``forward``/``backward`` run layer by layer through the fused kernels of ``fastnn.ops``.
"""
from __future__ import annotations

import math
import zlib
from typing import Callable, Iterable, NamedTuple

import numpy as np

from fastnn import _core, ops
from fastnn._checks import (
    NON_NEGATIVE,
    Interval,
    Options,
    OrNone,
    ParameterChecked,
    as_numeric,
    check_allocation,
    check_bool,
    check_count,
    check_ndim,
    check_params,
    check_seed,
    to_kernel,
)

__all__ = ["Activation", "BatchNorm", "Dense", "Dropout", "GradientReduction", "Layer", "Sequential"]

INITS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal")


class ParamSpec(NamedTuple):
    """One tensor a layer owns: its name, shape, and whether it is a weight (the tensors
    L1/L2 regularization applies to; not biases, batch-norm or PReLU parameters)."""

    name: str
    shape: tuple
    is_weight: bool


class Layer(ParameterChecked):
    """Base class. A layer declares its parameter and buffer tensors; ``Sequential``
    allocates them (as views into its flat buffers) and binds them with ``_bind``."""

    def param_specs(self) -> list[ParamSpec]:
        """Declare the trainable tensors this layer owns.

        Returns
        -------
        list of ParamSpec
            Name, shape and whether it is a weight, per tensor; ``Sequential`` allocates
            them in its flat buffers.
        """
        return []

    def buffer_specs(self) -> list[ParamSpec]:
        """Declare the non-trainable tensors this layer owns (running statistics).

        Returns
        -------
        list of ParamSpec
            Name and shape per tensor.
        """
        return []

    def output_features(self, in_features: int) -> int:
        """Compute the width of the layer's output.

        Parameters
        ----------
        in_features : int
            The width of its input.

        Returns
        -------
        int
            The width of its output.
        """
        return in_features

    def forward(self, x: np.ndarray, training: bool, cache: dict) -> np.ndarray:
        """Compute the layer's output for a batch.

        Parameters
        ----------
        x : ndarray of shape (n_samples, in_features)
            The layer's input.
        training : bool
            Training mode (dropout drops, batch norm uses the batch's statistics).
        cache : dict
            Filled with what ``backward`` needs; ``Sequential`` also puts ``seed`` and
            ``step`` there for the layers that draw random numbers.

        Returns
        -------
        ndarray of shape (n_samples, out_features)
            The layer's output.

        Raises
        ------
        NotImplementedError
            In the base class; every layer overrides it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad: np.ndarray, cache: dict, need_grad_x: bool) -> np.ndarray | None:
        """Accumulate the parameter gradients and return the gradient of the input.

        Parameters
        ----------
        grad : ndarray of shape (n_samples, out_features)
            Gradient of the loss with respect to the layer's output.
        cache : dict
            What ``forward`` stored for this batch.
        need_grad_x : bool
            Whether the gradient of the input is needed (False for the first layer).

        Returns
        -------
        ndarray of shape (n_samples, in_features) or None
            Gradient of the loss with respect to the input; None when not needed.

        Raises
        ------
        NotImplementedError
            In the base class; every layer overrides it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def _bind(self, params: dict, grads: dict, buffers: dict) -> None:
        self.p, self.g, self.b = params, grads, buffers

    def _init(self, rng: np.random.Generator, dtype) -> None:
        """Fill this layer's parameters and buffers with their initial values."""

    def __getstate__(self):
        # the bound tensors are views into a Sequential's flat buffers: pickling them would
        # copy them apart from the buffers; the Sequential binds them again on unpickling
        return {k: v for k, v in vars(self).items() if k not in ("p", "g", "b")}

    def __repr__(self):
        return f"{type(self).__name__}({self._describe()})"

    def _describe(self) -> str:
        return ""


class Dense(Layer):
    """Fully connected layer ``act(x @ weight + bias)``; ``weight`` is (in_features,
    out_features). Default init: Glorot uniform weights, zero biases (as TensorFlow's
    ``DNNRegressor``, Keras and scikit-learn); ``init`` picks another scheme. With
    ``activation="prelu"`` the layer also learns one ``slope`` per unit (starting at 0.25).

    Parameters
    ----------
    in_features : int
        Width of the input.
    out_features : int
        Width of the output (units).
    activation : str, default "linear"
        One of ``fastnn.ops.ACTIVATIONS``, fused into the layer.
    use_bias : bool, default True
        Learn a bias per unit.
    init : {"glorot_uniform", "glorot_normal", "he_uniform", "he_normal"}, default "glorot_uniform"
        Weight initialization.
    negative_slope : float, default 0.01
        Slope of ``leaky_relu`` for negative inputs.
    alpha : float, default 1.0
        Scale of ``elu`` for negative inputs.

    Raises
    ------
    ValueError
        If a size is not positive, or ``activation`` or ``init`` is unknown.
    """

    in_features: int
    out_features: int
    activation: str
    use_bias: bool
    init: str
    negative_slope: float
    alpha: float
    _parameter_checks = {"in_features": check_count, "out_features": check_count,
                         "activation": ops._parameter_checks["activation"], "use_bias": check_bool,
                         "init": Options(INITS), "negative_slope": ops._parameter_checks["negative_slope"],
                         "alpha": ops._parameter_checks["alpha"]}

    def __init__(self, in_features, out_features, activation="linear", use_bias=True, init="glorot_uniform",
                 negative_slope=0.01, alpha=1.0):
        self._set_checked(in_features=in_features, out_features=out_features, activation=activation,
                          use_bias=use_bias, init=init, negative_slope=negative_slope, alpha=alpha)

    def _act_kwargs(self):
        kw = {"negative_slope": self.negative_slope, "alpha": self.alpha}
        if self.activation == "prelu":
            kw["slope"] = self.p["slope"]
        return kw

    def param_specs(self):
        specs = [ParamSpec("weight", (self.in_features, self.out_features), True)]
        if self.use_bias:
            specs.append(ParamSpec("bias", (self.out_features,), False))
        if self.activation == "prelu":
            specs.append(ParamSpec("slope", (self.out_features,), False))
        return specs

    def output_features(self, in_features):
        if in_features != self.in_features:
            raise ValueError(f"Dense(in_features={self.in_features}) follows a layer of width {in_features}")
        return self.out_features

    def _init(self, rng, dtype):
        fan_in, fan_out = self.in_features, self.out_features
        w = self.p["weight"]
        if self.init == "glorot_uniform":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            w[...] = rng.uniform(-limit, limit, size=w.shape)
        elif self.init == "glorot_normal":
            w[...] = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=w.shape)
        elif self.init == "he_uniform":
            limit = math.sqrt(6.0 / fan_in)
            w[...] = rng.uniform(-limit, limit, size=w.shape)
        else:
            w[...] = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=w.shape)
        if self.use_bias:
            self.p["bias"][...] = 0
        if self.activation == "prelu":
            self.p["slope"][...] = 0.25

    def forward(self, x, training, cache):
        z = np.empty((x.shape[0], self.out_features), x.dtype) if self.activation == "prelu" else None
        y = ops.dense_forward(x, self.p["weight"], self.p.get("bias"), self.activation, preact_out=z,
                              **self._act_kwargs())
        cache.update(x=x, y=y, z=z)
        return y

    def backward(self, grad, cache, need_grad_x):
        g = ops.dense_backward(grad, cache["x"], self.p["weight"], cache["y"], self.activation, preact=cache["z"],
                               need_grad_x=need_grad_x, bias=self.use_bias, grad_w=self.g["weight"],
                               grad_b=self.g.get("bias"), grad_slope=self.g.get("slope"), **self._act_kwargs())
        return g.dx

    def _describe(self):
        return f"{self.in_features}, {self.out_features}, activation={self.activation!r}"


class Activation(Layer):
    """A parameter-free activation (``linear``, ``relu``, ``leaky_relu``, ``elu``,
    ``sigmoid``, ``tanh``); PReLU learns slopes, so it is ``Dense(..., activation="prelu")``.

    Parameters
    ----------
    name : str
        The activation.
    negative_slope : float, default 0.01
        Slope of ``leaky_relu`` for negative inputs.
    alpha : float, default 1.0
        Scale of ``elu`` for negative inputs.

    Raises
    ------
    ValueError
        If ``name`` is unknown or ``"prelu"``.
    """

    name: str
    negative_slope: float
    alpha: float
    _parameter_checks = {"name": Options(ops.ACTIVATIONS, {"prelu": "prelu has learned slopes: use "
                                                             "Dense(..., activation='prelu')"}),
                         "negative_slope": ops._parameter_checks["negative_slope"],
                         "alpha": ops._parameter_checks["alpha"]}

    def __init__(self, name, negative_slope=0.01, alpha=1.0):
        self._set_checked(name=name, negative_slope=negative_slope, alpha=alpha)

    def forward(self, x, training, cache):
        y = ops.activation_forward(x, self.name, negative_slope=self.negative_slope, alpha=self.alpha)
        cache.update(y=y)
        return y

    def backward(self, grad, cache, need_grad_x):
        return ops.activation_backward(grad, cache["y"], self.name, negative_slope=self.negative_slope,
                                       alpha=self.alpha).dx

    def _describe(self):
        return repr(self.name)


class BatchNorm(Layer):
    """Batch normalization per feature: ``gamma * (x - mean) / sqrt(var + eps) + beta``.

    ``momentum`` is the weight of the OLD running value (TensorFlow/Keras convention:
    ``running = momentum * running + (1 - momentum) * batch``); PyTorch's ``momentum=0.1``
    is fastnn's 0.9. Training normalizes with the biased batch variance; the running
    variance is updated with the unbiased one (as PyTorch). A training batch of one row is
    a ``ValueError``. Inference (and ``predict``) uses the running statistics.

    Parameters
    ----------
    num_features : int
        Width of the input (and output).
    momentum : float, default 0.99
        Weight of the old running value, in [0, 1].
    eps : float, default 1e-3
        Added to the variance, > 0.
    """

    num_features: int
    momentum: float
    eps: float
    _parameter_checks = {"num_features": check_count, "momentum": ops._parameter_checks["momentum"],
                         "eps": ops._parameter_checks["eps"]}

    def __init__(self, num_features, momentum=0.99, eps=1e-3):
        self._set_checked(num_features=num_features, momentum=momentum, eps=eps)

    def param_specs(self):
        return [ParamSpec("gamma", (self.num_features,), False), ParamSpec("beta", (self.num_features,), False)]

    def buffer_specs(self):
        return [ParamSpec("running_mean", (self.num_features,), False),
                ParamSpec("running_var", (self.num_features,), False)]

    def output_features(self, in_features):
        if in_features != self.num_features:
            raise ValueError(f"BatchNorm(num_features={self.num_features}) follows a layer of width {in_features}")
        return in_features

    def _init(self, rng, dtype):
        self.p["gamma"][...] = 1
        self.p["beta"][...] = 0
        self.b["running_mean"][...] = 0
        self.b["running_var"][...] = 1

    def forward(self, x, training, cache):
        out = ops.batchnorm_forward(x, self.p["gamma"], self.p["beta"], self.b["running_mean"], self.b["running_var"],
                                    training=training, momentum=self.momentum, eps=self.eps)
        cache.update(x=x, training=training, mean=out.mean, invstd=out.invstd)
        return out.y

    def backward(self, grad, cache, need_grad_x):
        if cache["training"]:
            return ops.batchnorm_backward(grad, cache["x"], self.p["gamma"], cache["mean"], cache["invstd"],
                                          grad_gamma=self.g["gamma"], grad_beta=self.g["beta"]).dx
        # inference mode: y = gamma * (x - running_mean) * s + beta with constants s
        s = 1.0 / np.sqrt(self.b["running_var"].astype(np.float64) + self.eps)
        xhat = (cache["x"] - self.b["running_mean"]) * s
        self.g["gamma"][...] = (grad * xhat).sum(axis=0)
        self.g["beta"][...] = grad.sum(axis=0)
        return (grad * (self.p["gamma"] * s)).astype(grad.dtype)

    def _describe(self):
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}"


class Dropout(Layer):
    """Inverted dropout. ``rate`` is the DROP probability (0 <= rate < 1): survivors are
    scaled by ``1 / (1 - rate)`` in training; inference is the identity. Passing
    ``keep_prob`` is refused: fastnn takes the drop rate, ``1 - keep_prob``.

    Parameters
    ----------
    rate : float
        The drop probability, in [0, 1).
    keep_prob : float, optional
        Refused (with the conversion in the message): dropout takes a drop rate.

    Raises
    ------
    ValueError
        If ``rate`` is out of range, missing, or ``keep_prob`` is passed.
    """

    rate: float
    _parameter_checks = {"rate": ops._parameter_checks["rate"]}

    def __init__(self, rate=None, *, keep_prob=None):
        if keep_prob is not None:
            raise ops.keep_prob_refusal(keep_prob)
        if rate is None:
            raise TypeError("Dropout needs rate, the drop probability in [0, 1)")
        self._set_checked(rate=rate)

    def forward(self, x, training, cache):
        if not training or self.rate == 0.0:
            cache.update(mask=None)
            return x
        out = ops.dropout_forward(x, self.rate, seed=cache["seed"], step=cache["step"])
        cache.update(mask=out.mask)
        return out.y

    def backward(self, grad, cache, need_grad_x):
        if cache["mask"] is None:
            return grad
        return ops.dropout_backward(grad, self.rate, mask=cache["mask"])

    def _describe(self):
        return f"rate={self.rate}"


_LOSS_KINDS = {
    "mse": _core.LossKind.mse,
    "huber": _core.LossKind.huber,
    "bce": _core.LossKind.bce_logits,
    "softmax_cross_entropy": _core.LossKind.softmax_ce,
}


class EpochResult(NamedTuple):
    """What ``Sequential.train_epoch`` returns (its Returns section describes each field).

    Parameters
    ----------
    loss : float
        Mean batch loss, weighted by rows.
    steps : int
        Updates made.
    rows : int
        Rows trained on.
    diverged : bool
        Whether the epoch stopped at a non-finite loss or gradient.
    bad_step : int
        The step that diverged, -1 if none.
    bad_layer : int
        The layer whose gradient diverged, -1 for the loss (or none).
    zero_fraction : list of float
        Per layer, the share of zero outputs.
    dead_units : list of float
        Per layer, the share of units that never output a positive value.
    grad_norm : list of float
        Per layer, the mean gradient norm over the epoch's updates.
    weight_norm : list of float
        Per layer, the weight norm at the end of the epoch.
    skipped : int
        Batches skipped with ``skip_nonfinite=True``.
    update_ratio : list of float
        Per layer, the norm of the last update over the norm of the weights before it.
    """

    loss: float
    steps: int
    rows: int
    diverged: bool
    bad_step: int
    bad_layer: int
    zero_fraction: list
    dead_units: list
    grad_norm: list
    weight_norm: list
    skipped: int = 0
    update_ratio: list = []
    # the raw tallies behind loss, zero_fraction and dead_units, for processes that add theirs
    fired: list = []        # per layer: bool per unit (output > 0 once), None where not tracked
    zeros: list = []        # per layer: zero outputs counted
    seen: list = []         # per layer: outputs counted
    loss_sum: float = 0.0   # the batch losses weighted by their rows


class GradientReduction(NamedTuple):
    """The reduction stage of ``Sequential.train_epoch``, between backward and clipping:
    ``ranks`` processes share every mini-batch, process ``rank`` takes its contiguous part
    of each (``fastnn.distributed.shard_bounds``), and after its backward pass ``sum()``
    must add the flat ``model.grads`` of all processes in place (an MPI ``Allreduce``).
    The engine scales each part's gradient by its share of the batch's rows and divides
    the sum by ``ranks``: every process then holds the gradient of the mean loss over the
    whole batch, checks and clips it, and applies the same update. A process whose loss
    is not finite sends NaN, so every process rejects that step together. ``sum=None``
    with ``ranks=1``: nothing extra runs.

    Parameters
    ----------
    sum : callable or None
        Called with no arguments after every backward pass (with the GIL); it must sum
        ``model.grads`` over the processes in place.
    rank : int, default 0
        This process's index among the ``ranks``.
    ranks : int, default 1
        How many processes share every batch.
    """

    sum: Callable[[], None] | None
    rank: int = 0
    ranks: int = 1


def _per_layer(fired, layers):
    """The core's fired flags, one array per layer (None for layers it does not track)."""
    return [f if isinstance(l, (Dense, Activation)) else None for f, l in zip(fired, layers)]


def _dead_units(fired, statistics) -> list:
    """Per layer, the share of units that never fired (NaN where not tracked or without
    statistics), from the per-layer fired flags (``_per_layer``)."""
    return [float("nan") if f is None or not statistics or not f.size else float(1.0 - f.mean()) for f in fired]


def _declared_width(layers) -> int | None:
    """The input width the layers declare: the first Dense's ``in_features`` or
    BatchNorm's ``num_features`` (Dropout and Activation in front keep the width); None
    when every layer is width-free."""
    for layer in layers:
        if isinstance(layer, Dense):
            return layer.in_features
        if isinstance(layer, BatchNorm):
            return layer.num_features
    return None


def _own_writable(a: np.ndarray) -> np.ndarray:
    """``a`` itself when it is a writable C-contiguous array owning its data, else a copy."""
    if a.flags.writeable and a.flags.c_contiguous and a.flags.owndata:
        return a
    return np.array(a, order="C", copy=True)


def _normalized_weights(sample_weight, n: int, dtype, split=None) -> np.ndarray:
    """Per-row loss weights scaled to mean 1 over the training rows (all ``n``, or the
    split's), see ``Sequential.train_epoch``. The one array it allocates is the result:
    the checks are reductions and the scaling is computed in float64 and written straight
    into ``dtype``."""
    w = as_numeric("sample_weight", sample_weight)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    low, high = (float(w.min()), float(w.max())) if n else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0:
        raise ValueError("sample_weight must be finite and non-negative")
    total = float(w.sum(dtype=np.float64))
    rows = n
    if split is not None:
        total -= sum(float(w[chunk].sum(dtype=np.float64)) for chunk in held_out_chunks(split))
        rows = split.training
    if n and not total > 0:
        raise ValueError("sample_weight must not be all zero" + (" on the training rows" if split is not None else ""))
    out = np.empty(n, dtype)
    np.multiply(w, np.float64(rows / total) if n else 1.0, out=out, dtype=np.float64, casting="same_kind")
    return out


# Rows per chunk when the held-out rows of a RowSplit are read (a few hundred KiB of X).
_HELD_OUT_CHUNK = 4096


def held_out_chunks(split):
    """The held-out rows of ``split`` (a ``fastnn._core.RowSplit``), as int64 index arrays
    of at most ``_HELD_OUT_CHUNK`` rows each: what is held out is read chunk by chunk, never
    gathered into one array."""
    position = 0
    while True:
        rows, position = split.held_out_rows(position, _HELD_OUT_CHUNK)
        if rows.size == 0:
            return
        yield rows


def _check_split(split, n: int, shuffle) -> None:
    if not isinstance(split, _core.RowSplit):
        raise TypeError(f"split must be a fastnn._core.RowSplit, got {type(split).__name__}")
    if split.rows != n:
        raise ValueError(f"split divides {split.rows} rows, but X has {n}")
    if not shuffle:
        raise ValueError("split visits the training rows in a keyed order: it needs shuffle=True")


def _layer_seed(seed: int, index: int) -> int:
    """A dropout key per layer, derived from the model seed (stable across runs)."""
    return zlib.crc32(f"fastnn-dropout:{index}".encode()) ^ (int(seed) & 0xFFFFFFFFFFFFFFFF)


# The flat buffers are fixed: every layer's tensors and the C++ core's offsets are views
# into them. Assigning a new array would leave those views on the old one (predict would
# silently ignore it), so assignment COPIES into the buffer.
def _flat_buffer(name: str) -> property:
    def get(self):
        return getattr(self, "_" + name)

    def set_(self, value):
        buffer = getattr(self, "_" + name)
        arr = as_numeric(name, value)
        if arr.shape != buffer.shape:
            raise ValueError(f"{name} must have shape {buffer.shape} (assigning copies into the model's flat "
                             f"buffer, which every layer views), got shape {arr.shape}; for one tensor "
                             f"write into its view: model.named_{name}()[key][...] = value")
        if not np.can_cast(arr.dtype, buffer.dtype, casting="same_kind"):
            raise TypeError(f"{name} must be a float array castable to {buffer.dtype}, got {arr.dtype}")
        buffer[...] = arr

    return property(get, set_, doc=f"The flat 1-D {name} buffer; every tensor is a view into it. Assigning an "
                                   f"array of the same shape copies it in (``model.{name} = a`` is "
                                   f"``model.{name}[...] = a``).")


class Sequential:
    """A stack of layers with ONE flat parameter buffer and ONE flat gradient buffer.

    Any layer may come first. The input width comes from ``input_dim``, else from the
    first ``Dense`` (its ``in_features``) or ``BatchNorm`` (its ``num_features``), with
    width-free ``Dropout``/``Activation`` layers in front of it keeping the width; a
    model of width-free layers only learns its width from its first input (as Keras
    builds lazily): ``Sequential([Dropout(0.3)])`` is a valid model.

    Parameters
    ----------
    layers : sequence of Layer
        The layers, input first.
    seed : int, default 0
        Seeds the weight initialization and the dropout masks.
    dtype : {np.float32, np.float64}, default np.float32
        Precision of parameters and computation (float32 is the fast path).
    input_dim : int or None, default None
        The input width; None: from the layers (or the first input).

    Attributes
    ----------
    in_features, out_features : int, or None until a width-free model sees its first input
    params, grads : 1-D arrays of the same size; every tensor is a view into them
    buffers : 1-D array of the running statistics (batch norm)
    weight_mask : bool array marking the entries of ``params`` that are weights
    step : int, training forward passes so far (keys the dropout masks)
    """

    # the scalar arguments of the constructor and of the training and inference methods
    _parameter_checks = {"seed": check_seed, "input_dim": OrNone(check_count), "batch_size": check_count,
                         "loss": Options(tuple(_LOSS_KINDS)), "clip_norm": OrNone(NON_NEGATIVE), "shuffle": check_bool,
                         "max_batches": OrNone(Interval(int, 0))}

    def __init__(self, layers: Iterable[Layer], seed=0, dtype=np.float32, input_dim=None):
        seed, input_dim = check_params(self._parameter_checks, {"seed": seed, "input_dim": input_dim}).values()
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a fastnn.nn layer, got {type(layer).__name__}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.layers = layers
        self._seed = int(seed)
        self.step = 0
        self._caches = None
        width = _declared_width(layers) if input_dim is None else input_dim
        self.in_features: int | None = None  # known once the width is (a width-free model: at its first input)
        self.out_features: int | None = None
        if width is not None:
            self._set_width(width)
        self._check_memory()
        self._allocate()
        rng = np.random.Generator(np.random.Philox(self.seed))
        for layer in layers:
            layer._init(rng, self.dtype)

    def _set_width(self, width: int) -> None:
        """Fix the input width and chain it through the layers (each checks its input)."""
        out = width
        for i, layer in enumerate(self.layers):
            try:
                out = layer.output_features(out)
            except ValueError as exc:
                raise ValueError(f"layers[{i}]: {exc}") from None
        self.in_features, self.out_features = width, out

    @property
    def seed(self) -> int:
        """Seeds the weight initialization and keys the dropout masks. Setting it re-keys
        the masks of later training (the engine is rebuilt with the new layer keys)."""
        return self._seed

    @seed.setter
    def seed(self, value):
        self._seed = self._parameter_checks["seed"]("seed", value)
        self._engine = self._build_engine()

    def _tensor_specs(self):
        """(layer index, ParamSpec) of every parameter and of every buffer, in buffer order."""
        return ([(i, s) for i, l in enumerate(self.layers) for s in l.param_specs()],
                [(i, s) for i, l in enumerate(self.layers) for s in l.buffer_specs()])

    def _check_memory(self):
        """MemoryError naming the size and the largest layer, BEFORE allocating a model that
        cannot fit (``Dense(16, 10**9)``): parameters, gradients, up to two optimizer state
        slots (Adam), the weight mask and the initializer's float64 draw of one layer."""
        p_specs, b_specs = self._tensor_specs()
        per_layer = [0] * len(self.layers)
        for i, spec in p_specs:
            per_layer[i] += math.prod(int(d) for d in spec.shape)
        n_params = sum(per_layer)
        n_buffers = sum(math.prod(int(d) for d in s.shape) for _, s in b_specs)
        big = max(range(len(per_layer)), key=per_layer.__getitem__)
        nbytes = n_params * (4 * self.dtype.itemsize + 1) + n_buffers * self.dtype.itemsize + per_layer[big] * 8
        check_allocation(nbytes, f"a model of {n_params} parameters (layers[{big}], {self.layers[big]!r}, holds "
                                 f"{per_layer[big]} of them), with its gradients and optimizer state,",
                         "use fewer or narrower layers")

    def _allocate(self):
        p_specs, b_specs = self._tensor_specs()
        size = lambda specs: sum(int(np.prod(s.shape)) for _, s in specs)
        self._params = np.zeros(size(p_specs), self.dtype)
        self._grads = np.zeros_like(self._params)
        self._buffers = np.zeros(size(b_specs), self.dtype)
        self.weight_mask = np.zeros(self._params.shape, bool)
        self._bind_views()

    params = _flat_buffer("params")
    grads = _flat_buffer("grads")
    buffers = _flat_buffer("buffers")

    def _bind_views(self):
        """Carve every layer's tensors out of the flat buffers (also after unpickling), and
        build the engine's model object over the same buffers, once."""
        p_specs, b_specs = self._tensor_specs()
        self._param_views, self._grad_views, self._buffer_views = {}, {}, {}
        self._offsets = {}  # "params:0.weight" -> its first element in the flat buffer
        per_layer = [({}, {}, {}) for _ in self.layers]
        offset = 0
        for i, spec in p_specs:
            n = int(np.prod(spec.shape))
            key = f"{i}.{spec.name}"
            self._offsets["params:" + key] = offset
            self._param_views[key] = per_layer[i][0][spec.name] = self.params[offset:offset + n].reshape(spec.shape)
            self._grad_views[key] = per_layer[i][1][spec.name] = self.grads[offset:offset + n].reshape(spec.shape)
            self.weight_mask[offset:offset + n] = spec.is_weight
            offset += n
        offset = 0
        for i, spec in b_specs:
            n = int(np.prod(spec.shape))
            self._offsets[f"buffers:{i}.{spec.name}"] = offset
            self._buffer_views[f"{i}.{spec.name}"] = per_layer[i][2][spec.name] = \
                self.buffers[offset:offset + n].reshape(spec.shape)
            offset += n
        for layer, (p, g, b) in zip(self.layers, per_layer):
            layer._bind(p, g, b)
        self._engine = self._build_engine()

    def _build_engine(self):
        """The C++ model object (``_core.Model``): the layers as offsets into the flat
        buffers, validated once there (every offset inside its buffer, widths chaining).
        None until the input width is known (a model of width-free layers only)."""
        if self.in_features is None:
            return None
        return _core.Model(self._layer_specs(), self._params, self._grads, self._buffers, self.in_features)

    def __getstate__(self):
        derived = ("_param_views", "_grad_views", "_buffer_views", "_caches", "_offsets", "_engine")
        return {k: v for k, v in vars(self).items() if k not in derived}

    def __setstate__(self, state):
        state = dict(state)
        for name in ("params", "grads", "buffers", "seed"):  # pickles of fastnn 0.1.0 name them without "_"
            if name in state:
                state["_" + name] = state.pop(name)
        state.pop("_specs", None)
        self.__dict__.update(state)
        for name in ("_params", "_grads", "_buffers", "weight_mask"):  # e.g. read-only joblib memmaps
            setattr(self, name, _own_writable(getattr(self, name)))
        self._caches = None
        self._bind_views()

    def named_params(self) -> dict:
        """Name the parameter tensors.

        Returns
        -------
        dict of str to ndarray
            ``{"0.weight": view (in, out), "0.bias": view, "1.gamma": ...}``, views into
            ``params``.
        """
        return dict(self._param_views)

    def named_grads(self) -> dict:
        """Name the gradient tensors, as ``named_params`` does the parameters.

        Returns
        -------
        dict of str to ndarray
            Views into ``grads``.
        """
        return dict(self._grad_views)

    def named_buffers(self) -> dict:
        """Name the running statistics (batch norm's ``running_mean`` and ``running_var``).

        Returns
        -------
        dict of str to ndarray
            Views into ``buffers``.
        """
        return dict(self._buffer_views)

    def _input(self, x, name="x"):
        x = as_numeric(name, x)
        check_ndim(name, x, 2, "(n_samples, n_features)")
        if self.in_features is None:  # width-free layers only: the first input fixes the width (as Keras)
            if x.shape[1] < 1:
                raise ValueError(f"{name} has no features: the model learns its width from its first input")
            self._set_width(int(x.shape[1]))
            self._engine = self._build_engine()
        if x.shape[1] != self.in_features:
            raise ValueError(f"{name} has {x.shape[1]} features, but the model takes {self.in_features}")
        return to_kernel(x, self.dtype)

    def forward(self, x, training=True):
        """Run the layers on a batch.

        Parameters
        ----------
        x : array-like of shape (n_samples, in_features)
            The batch.
        training : bool, default True
            Dropout on, batch norm on batch statistics (updating its running ones), and
            the inputs kept for ``backward``; False is inference.

        Returns
        -------
        ndarray of shape (n_samples, out_features)
            The output of the last layer.
        """
        h = self._input(x)
        caches = []
        if training:
            self.step += 1
        for i, layer in enumerate(self.layers):
            cache = {"seed": _layer_seed(self.seed, i), "step": self.step}
            h = layer.forward(h, training, cache)
            caches.append(cache)
        self._caches = caches
        self._batch_rows = x.shape[0] if hasattr(x, "shape") else len(x)
        return h

    def backward(self, grad_y):
        """Back-propagate through the last ``forward``, overwriting ``grads``.

        Parameters
        ----------
        grad_y : array-like of shape (n_samples, out_features)
            Gradient of the loss with respect to the output.

        Returns
        -------
        ndarray of shape (n_samples, in_features)
            Gradient of the loss with respect to the input.
        """
        if self._caches is None:
            raise RuntimeError("backward needs a forward pass first")
        g = as_numeric("grad_y", grad_y)
        n = self._batch_rows
        if g.shape != (n, self.out_features):
            raise ValueError(f"grad_y must have shape ({n}, {self.out_features}), got {g.shape}")
        g = to_kernel(g, self.dtype)
        self.grads[...] = 0
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, self._caches[i], need_grad_x=True)
        return g

    def train_step(self, x, y, loss="mse", optimizer=None, clip_norm=None):
        """Make one update in one call into the core.

        Forward (training), loss, backward, optional clipping by global norm and
        ``optimizer.step``.

        Parameters
        ----------
        x : array-like of shape (n_samples, in_features)
            The batch.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Its targets (class indices for a 1-D ``softmax_cross_entropy`` target).
        loss : {"mse", "huber", "bce", "softmax_cross_entropy"}, default "mse"
            The loss (``bce`` and ``softmax_cross_entropy`` take logits).
        optimizer : fastnn.optim.Optimizer
            The optimizer that makes the update.
        clip_norm : float, optional
            Clip the gradients to this global norm (>= 0) first.

        Returns
        -------
        float
            The loss before the update.

        Raises
        ------
        FloatingPointError
            If the loss or a gradient is not finite; the model is left untouched.
        """
        x = self._input(x)
        if x.shape[0] < 2 and any(isinstance(l, BatchNorm) for l in self.layers):
            raise ValueError("batch norm training needs at least 2 rows: the variance of 1 row is zero")
        fresh = getattr(optimizer, "state", None) == {}
        r = self.train_epoch(x, y, batch_size=max(1, x.shape[0]), loss=loss, optimizer=optimizer,
                             clip_norm=clip_norm, shuffle=False)
        if r.diverged:
            if fresh:  # no update happened: the optimizer stays unbound, as before the call
                optimizer.state.clear()
            where = "the loss" if r.bad_layer < 0 else f"the gradient of layer {r.bad_layer}"
            raise FloatingPointError(f"{where} is not finite: the model was not updated")
        return r.loss

    def _check_workspace(self, rows: int):
        """MemoryError before the core allocates an epoch's workspace: per layer its output
        and pre-activation for one batch, the gathered batch, four gradient buffers (two
        for dz when threads share a step) and the weights packed once per step."""
        widths = [self.in_features] + [spec.out_features for spec in self._engine.layers]
        nbytes = (rows * (2 * sum(widths[1:]) + widths[0] + 4 * max(widths)) + self.params.size) * self.dtype.itemsize
        check_allocation(nbytes, f"the training workspace of batches of {rows} rows through layers of up to "
                                 f"{max(widths)} units", "use a smaller batch_size")

    def _layer_specs(self) -> list:
        """The layers as the engine sees them (``_core.LayerSpec``): kinds, widths and
        offsets into the flat buffers (-1: absent)."""
        specs, width = [], self.in_features
        for i, layer in enumerate(self.layers):
            spec = _core.LayerSpec()
            names = [p.name for p in layer.param_specs()]
            spec.param_begin = self._offsets[f"params:{i}.{names[0]}"] if names else 0
            spec.param_size = sum(int(np.prod(p.shape)) for p in layer.param_specs())
            for name in ("weight", "bias", "slope", "gamma", "beta"):
                setattr(spec, name, self._offsets.get(f"params:{i}.{name}", -1))
            for name in ("running_mean", "running_var"):
                setattr(spec, name, self._offsets.get(f"buffers:{i}.{name}", -1))
            assert width is not None  # the engine is built once the width is known
            spec.in_features = width
            spec.out_features = width
            if isinstance(layer, (Dense, Activation)):
                name = layer.activation if isinstance(layer, Dense) else layer.name
                spec.activation, spec.alpha = ops._activation(name, layer.negative_slope, layer.alpha)
                spec.kind = _core.LayerKind.dense if isinstance(layer, Dense) else _core.LayerKind.activation
                if isinstance(layer, Dense):
                    spec.in_features, spec.out_features = layer.in_features, layer.out_features
            elif isinstance(layer, BatchNorm):
                spec.kind, spec.momentum, spec.eps = _core.LayerKind.batchnorm, layer.momentum, layer.eps
            elif isinstance(layer, Dropout):
                spec.kind, spec.rate = _core.LayerKind.dropout, layer.rate
            else:
                raise TypeError(f"the engine does not know layer {type(layer).__name__}")
            spec.seed = _layer_seed(self.seed, i)
            specs.append(spec)
            width = spec.out_features
        return specs

    def train_epoch(self, X, y, batch_size=32, loss="mse", optimizer=None, clip_norm=None, shuffle=True, seed=0, *,
                    sample_weight=None, skip_nonfinite=False, max_batches=None, statistics=True, reduction=None,
                    split=None):
        """One epoch in ONE call into the C++ core, with the GIL released: shuffle, gather
        each mini-batch, forward, loss, backward, optional clipping by global norm and the
        optimizer update, with no allocation per step.

        It equals a Python loop of ``train_step`` over the same batches, bitwise. The last
        partial batch is trained on, except a batch of a single row when the model has
        batch norm (its variance is zero): that row is dropped for this epoch (the next
        epoch's shuffle gives it another place). If the loss or a gradient becomes
        non-finite, the epoch stops BEFORE that update (batch-norm running statistics are
        restored too) and ``diverged`` names the step and the layer (-1: the loss); with
        ``skip_nonfinite=True`` such a batch is skipped instead and counted.

        ``sample_weight`` (one non-negative weight per row, not all zero) weights each row's
        loss; the weights are scaled to mean 1 over ``X``, so a batch's loss stays a mean
        and the learning rate keeps its meaning. ``max_batches`` stops after that many
        batches (replaying part of an epoch). ``statistics=False`` skips the per-layer
        statistics (they cost a few percent).

        Parameters
        ----------
        X : array-like of shape (n_samples, in_features)
            Training rows.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (class indices for a 1-D ``softmax_cross_entropy`` target). A 1-D
            uint8 ``y`` is read as it is, one byte per row: class indices, or with
            ``bce`` 0/1 targets.
        batch_size : int, default 32
            Rows per update.
        loss : {"mse", "huber", "bce", "softmax_cross_entropy"}, default "mse"
            The loss (``bce`` and ``softmax_cross_entropy`` take logits).
        optimizer : fastnn.optim.Optimizer
            The optimizer that makes the updates.
        clip_norm : float, optional
            Clip the gradients of each update to this global norm (>= 0).
        shuffle : bool, default True
            Shuffle the rows (with ``seed``) before batching.
        seed : int, default 0
            Seed of the shuffle.
        sample_weight : array-like of shape (n_samples,), optional
            Weight of each row's loss.
        skip_nonfinite : bool, default False
            Skip (and count) a batch with a non-finite loss or gradient instead of
            stopping.
        max_batches : int, optional
            Stop after this many batches.
        statistics : bool, default True
            Record the per-layer statistics.
        reduction : GradientReduction, optional
            The reduction stage for data-parallel training (see ``GradientReduction``):
            this process trains on its part of every batch and the gradients of all
            processes are summed before clipping and the update. None: one process.
        split : fastnn._core.RowSplit, optional
            Train only on the split's training rows (the estimators hold out validation
            rows this way), visited in an order keyed by ``seed`` that the core generates
            batch by batch, so nothing of size ``n_samples`` is built; needs
            ``shuffle=True``. ``sample_weight`` is then scaled to mean 1 over the training
            rows. None: every row, in a permutation drawn from ``seed``.

        Returns
        -------
        EpochResult
            ``(loss, steps, rows, diverged, bad_step, bad_layer, zero_fraction,
            dead_units, grad_norm, weight_norm, skipped, update_ratio, fired, zeros, seen,
            loss_sum)``: ``loss`` is the mean batch loss weighted by rows; per layer (NaN
            where a statistic does not apply): ``zero_fraction`` the share of zero outputs
            of Dense/Activation layers (before any dropout), ``dead_units`` the share of
            their units that never output a positive value, ``grad_norm`` the mean over
            the epoch's updates of the layer's gradient norm (before clipping),
            ``weight_norm`` at the end of the epoch, ``update_ratio`` the norm of the last
            update over the norm of the weights before it; ``fired``, ``zeros``, ``seen``
            and ``loss_sum`` are the raw tallies behind them.

        Raises
        ------
        TypeError
            If ``optimizer`` is not a ``fastnn.optim`` optimizer.
        ValueError
            If the loss is unknown or the data is malformed (shapes, an empty X, labels
            that are not integers).
        """
        from fastnn.optim import Optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn.optim optimizer, got {type(optimizer).__name__}")
        loss, batch_size, clip_norm, shuffle, seed, max_batches = check_params(self._parameter_checks, {
            "loss": loss, "batch_size": batch_size, "clip_norm": clip_norm, "shuffle": shuffle, "seed": seed,
            "max_batches": max_batches}).values()
        x = self._input(X, "X")
        n = x.shape[0]
        if n == 0:
            raise ValueError("X is empty: training needs at least one row")
        target = as_numeric("y", y)
        if target.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D (n_samples,) or 2-D (n_samples, n_outputs), got shape {target.shape}")
        if target.shape[0] != n:
            raise ValueError(f"y has {target.shape[0]} rows but X has {n}")
        labels = None
        if target.ndim == 1 and target.dtype == np.uint8 and loss in ("bce", "softmax_cross_entropy"):
            labels = np.ascontiguousarray(target)  # one byte per row, read as it is
            classes = 2 if loss == "bce" else self.out_features
            if n and labels.max() >= classes:
                raise ValueError("uint8 labels must be 0 or 1 for the bce loss" if loss == "bce" else
                                 f"labels must be class indices in [0, {self.out_features})")
            target = None
        elif loss == "softmax_cross_entropy" and target.ndim == 1:
            if target.dtype.kind == "f" and not np.all(target == np.round(target)):
                raise ValueError("class-index labels must be integers")
            labels = np.ascontiguousarray(target, dtype=np.int64)
            if n and (labels.min() < 0 or labels.max() >= self.out_features):
                raise ValueError(f"labels must be class indices in [0, {self.out_features})")
            target = None
        else:
            if target.ndim == 1:
                target = target.reshape(-1, 1)
            if target.shape != (n, self.out_features):
                raise ValueError(f"y must have shape ({n}, {self.out_features}), got {target.shape}")
            target = to_kernel(target, self.dtype)
        if split is not None:
            _check_split(split, n, shuffle)
        weights = None if sample_weight is None else _normalized_weights(sample_weight, n, self.dtype, split)
        max_batches = -1 if max_batches is None else max_batches
        if split is not None:
            order = split
        else:
            order = (np.random.Generator(np.random.Philox(int(seed))).permutation(n) if shuffle
                     else np.arange(n)).astype(np.int64)
        if reduction is not None and not isinstance(reduction, GradientReduction):
            raise TypeError(f"reduction must be a fastnn.nn.GradientReduction, got {type(reduction).__name__}")
        optimizer._prepare(self.params)
        kind, states, _ = optimizer._kernel()
        has_bn = any(isinstance(l, BatchNorm) for l in self.layers)
        if has_bn and min(batch_size, n) < 2:
            raise ValueError(f"batch norm trains on mini-batches of at least 2 rows (the variance of one row is 0), "
                             f"but every batch here has 1 row ({'batch_size=1' if batch_size < 2 else 'X has 1 row'})"
                             ": use batch_size >= 2, more rows, or a model without BatchNorm")
        self._check_workspace(min(batch_size, n))
        config = _core.EpochConfig()
        config.batch_size, config.loss, config.schedule = batch_size, _LOSS_KINDS[loss], optimizer.schedule._kernel()
        config.iteration, config.step = optimizer.iterations, self.step
        config.clip_norm = -1.0 if clip_norm is None else clip_norm
        config.skip_nonfinite, config.max_batches, config.statistics = bool(skip_nonfinite), max_batches, bool(statistics)
        red = reduction or GradientReduction(None)
        r = self._engine.train_epoch(x, target, labels, weights, order, kind, optimizer._hyper(optimizer.lr), *states,
                                     self.weight_mask.view(np.uint8), config, reduce=red.sum, rank=red.rank,
                                     ranks=red.ranks, order_key=seed if split is not None else 0)
        self.step += r.steps + r.skipped
        optimizer.iterations += r.steps
        fired = _per_layer(r.fired, self.layers)
        dead = _dead_units(fired, statistics)
        return EpochResult(r.loss_sum / r.rows if r.rows else float("nan"), r.steps, r.rows, r.diverged, r.bad_step,
                           r.bad_layer, r.zero_fraction, dead, r.grad_norm, r.weight_norm, r.skipped, r.update_ratio,
                           fired, r.zeros, r.seen, r.loss_sum)

    def predict(self, x, batch_size=65536):
        """Run inference (dropout off, batch norm on running statistics) in chunks.

        Every row is computed independently of the others, so the result equals one call
        on all rows, bitwise.

        Parameters
        ----------
        x : array-like of shape (n_samples, in_features)
            The rows.
        batch_size : int, default 65536
            Rows per chunk (bounds the memory of the intermediate outputs).

        Returns
        -------
        ndarray of shape (n_samples, out_features)
            The model's output.
        """
        x = self._input(x)
        batch_size = self._parameter_checks["batch_size"]("batch_size", batch_size)
        out = np.empty((x.shape[0], self.out_features), self.dtype)
        for start in range(0, x.shape[0], batch_size):  # one call into the engine per chunk
            self._engine.predict(x[start:start + batch_size], out[start:start + batch_size])
        return out

    def layer_outputs(self, x) -> list:
        """Run inference and keep every layer's output.

        For inspecting hidden activations, e.g. how many saturate or stay at zero.

        Parameters
        ----------
        x : array-like of shape (n_samples, in_features)
            The rows.

        Returns
        -------
        list of ndarray
            One output per layer, input side first.
        """
        h = self._input(x)
        outputs = []
        for layer in self.layers:
            h = layer.forward(h, False, {"seed": 0, "step": 0})
            outputs.append(h)
        return outputs

    def __repr__(self):
        inner = ",\n    ".join(repr(l) for l in self.layers)
        return f"Sequential([\n    {inner},\n], seed={self.seed}, dtype={self.dtype.name})"
