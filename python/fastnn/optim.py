"""Optimizers (``SGD``, ``Adagrad``, ``Adam``, ``AdamW``, ``RMSProp``), learning-rate
schedules and gradient clipping. Each optimizer step is one fused in-place pass over a flat
buffer (the kernels are ``fastnn.ops.sgd_update`` and friends)."""
from __future__ import annotations

import inspect
import math
from typing import Sequence

import numpy as np

from fastnn import _core, ops
from fastnn._checks import (
    DECAY,
    FRACTION,
    MOMENTUM,
    NON_NEGATIVE,
    POSITIVE,
    Interval,
    ParameterChecked,
    check_bool,
    check_learning_rate,
    check_params,
)

# The scalar arguments of the clipping functions, declared once (fastnn._checks); each
# class below declares its own in ``_parameter_checks``.
_parameter_checks = {"max_norm": NON_NEGATIVE, "error_if_nonfinite": check_bool, "lo": Interval(float),
                     "hi": Interval(float)}

__all__ = [
    "SGD", "Adagrad", "Adam", "AdamW", "RMSProp", "Optimizer",
    "Constant", "CosineDecay", "ExponentialDecay", "Schedule", "StepDecay",
    "clip_by_global_norm", "clip_by_value", "global_norm",
]


_GRAD_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _grad_buffers(grads) -> list[np.ndarray]:
    """The arrays clipped in place: one float array or a sequence of them (any shape),
    each the caller's own contiguous, writeable float32/float64 array."""
    one = isinstance(grads, np.ndarray)
    arrays: Sequence = [grads] if one else list(grads)
    out = []
    for i, g in enumerate(arrays):
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{_grad_name(one, i)} must be a numpy array (clipped in place), got {type(g).__name__}")
        if g.dtype not in _GRAD_DTYPES:
            raise TypeError(f"{_grad_name(one, i)} must be float32 or float64, got {g.dtype}")
        if not g.flags.c_contiguous:
            raise ValueError(f"{_grad_name(one, i)} must be contiguous (it is scaled in place)")
        out.append(g if g.ndim == 1 else g.reshape(-1))
    return out


def _grad_name(one: bool, i: int) -> str:
    return "grads" if one else f"grads[{i}]"


def global_norm(grads) -> float:
    """Compute the global L2 norm of a set of arrays.

    The sum of squares is accumulated in float64 in a fixed order (float32 entries near
    1e20 do not overflow; identical for any thread count).

    Parameters
    ----------
    grads : ndarray or sequence of ndarray
        Float arrays, e.g. a model's flat gradient buffer.

    Returns
    -------
    float
        The square root of the sum of squares of every entry.
    """
    return math.sqrt(sum(_core.sum_squares(g) for g in _grad_buffers(grads)))


def clip_by_global_norm(grads, max_norm, *, error_if_nonfinite=False) -> float:
    """Scale every array in place by exactly ``max_norm / norm`` when the global norm
    exceeds ``max_norm`` (one factor for all), and return the norm before clipping.

    A non-finite norm (a NaN or Inf somewhere) leaves every gradient untouched and is
    returned as is (or raises ``FloatingPointError`` with ``error_if_nonfinite=True``):
    the NaN is reported, never spread into every gradient as PyTorch's default does.

    Parameters
    ----------
    grads : ndarray or sequence of ndarray
        Float arrays, e.g. a model's flat gradient buffer; scaled in place.
    max_norm : float
        The largest global norm allowed, >= 0 (0 zeroes every gradient).
    error_if_nonfinite : bool, default False
        Raise instead of returning a non-finite norm.

    Returns
    -------
    float
        The global norm before clipping.

    Raises
    ------
    FloatingPointError
        If the norm is not finite and ``error_if_nonfinite`` is True.
    """
    max_norm, error_if_nonfinite = check_params(_parameter_checks, {"max_norm": max_norm,
                                                                  "error_if_nonfinite": error_if_nonfinite}).values()
    buffers = _grad_buffers(grads)
    for g in buffers:
        if not g.flags.writeable:
            raise ValueError("grads must be writeable (they are scaled in place)")
    norm = math.sqrt(sum([_core.sum_squares(g) for g in buffers]))
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise FloatingPointError(f"the global gradient norm is {norm}: a gradient holds NaN or Inf")
        return norm
    if norm > max_norm:
        factor = max_norm / norm
        for g in buffers:
            _core.scale_(g, factor)
    return norm


def clip_by_value(grads, lo, hi) -> None:
    """Clamp every gradient entry to [lo, hi] in place (NaN stays NaN).

    Parameters
    ----------
    grads : ndarray or sequence of ndarray
        Float arrays, clamped in place.
    lo : float
        Lower bound.
    hi : float
        Upper bound, >= ``lo``.

    Raises
    ------
    ValueError
        If ``lo > hi`` or a bound is NaN.
    """
    lo, hi = check_params(_parameter_checks, {"lo": lo, "hi": hi}).values()
    if lo > hi:
        raise ValueError(f"lo must be <= hi, got lo={lo}, hi={hi}")
    buffers = _grad_buffers(grads)
    if not all(g.flags.writeable for g in buffers):  # all checked before any is clipped
        raise ValueError("grads must be writeable (they are clipped in place)")
    for g in buffers:
        _core.clip_value_(g, lo, hi)


# ----------------------------------------------------------------------------- schedules


class Schedule(ParameterChecked):
    """A learning rate as a function of the update count (0 for the first update).

    The built-in schedules have one implementation, the C++ one (``_core.Schedule``): the
    epoch loop evaluates it per update, and calling the schedule here evaluates the same
    code. A subclass that overrides ``__call__`` works for ``Optimizer.step`` but not in
    ``train_epoch``, which needs a built-in schedule."""

    def __call__(self, step: int) -> float:
        return self._kernel().at(int(step))

    def _kernel(self):
        """The ``_core.Schedule`` this schedule is (built from its current fields)."""
        raise TypeError(f"{type(self).__name__} has no C++ form: train_epoch takes the built-in schedules")

    def config(self) -> dict:
        """Describe the schedule as JSON (what model files store).

        Returns
        -------
        dict
            ``kind`` (the class name) and the constructor arguments.
        """
        return {"kind": type(self).__name__, **vars(self)}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """A constant learning rate.

    Parameters
    ----------
    lr : float
        The learning rate, >= 0.
    """

    _parameter_checks = {"lr": check_learning_rate}

    def __init__(self, lr):
        self._set_checked(lr=lr)

    def _kernel(self):
        return _core.Schedule(_core.ScheduleKind.constant, self.lr)


class ExponentialDecay(Schedule):
    """``lr * decay_rate ** (step / decay_steps)``, as Keras's ``ExponentialDecay``.

    Parameters
    ----------
    lr : float
        The initial learning rate.
    decay_steps : int
        Updates over which the rate is multiplied by ``decay_rate``.
    decay_rate : float
        The factor per ``decay_steps`` updates.
    staircase : bool, default False
        Floor the exponent (the rate changes every ``decay_steps`` updates).
    """

    _parameter_checks = {"lr": check_learning_rate, "decay_steps": POSITIVE, "decay_rate": POSITIVE,
                         "staircase": check_bool}

    def __init__(self, lr, decay_steps, decay_rate, staircase=False):
        self._set_checked(lr=lr, decay_steps=decay_steps, decay_rate=decay_rate, staircase=staircase)

    def _kernel(self):
        return _core.Schedule(_core.ScheduleKind.exponential, self.lr, self.decay_steps, self.decay_rate,
                              self.staircase)


class StepDecay(Schedule):
    """``lr * factor ** floor(step / step_size)``.

    Parameters
    ----------
    lr : float
        The initial learning rate.
    step_size : int
        Updates between two reductions.
    factor : float, default 0.1
        The factor of each reduction, in (0, 1) (as ReduceLROnPlateau's).
    """

    # factor: a reduction, as ReduceLROnPlateau's (and the estimators' lr_factor)
    _parameter_checks = {"lr": check_learning_rate, "step_size": POSITIVE, "factor": FRACTION}

    def __init__(self, lr, step_size, factor=0.1):
        self._set_checked(lr=lr, step_size=step_size, factor=factor)

    def _kernel(self):
        return _core.Schedule(_core.ScheduleKind.step, self.lr, self.step_size, self.factor)


class CosineDecay(Schedule):
    """Cosine from ``lr`` to ``lr * alpha`` over ``decay_steps`` updates, then flat.

    Parameters
    ----------
    lr : float
        The initial learning rate.
    decay_steps : int
        Updates of the cosine.
    alpha : float, default 0.0
        The final rate as a fraction of ``lr``.
    """

    # alpha: the final fraction of lr (a homonym of elu's alpha, which is > 0)
    _parameter_checks = {"lr": check_learning_rate, "decay_steps": POSITIVE, "alpha": NON_NEGATIVE}

    def __init__(self, lr, decay_steps, alpha=0.0):
        self._set_checked(lr=lr, decay_steps=decay_steps, alpha=alpha)

    def _kernel(self):
        return _core.Schedule(_core.ScheduleKind.cosine, self.lr, self.decay_steps, self.alpha)


_SCHEDULES = {cls.__name__: cls for cls in (Constant, ExponentialDecay, StepDecay, CosineDecay)}


def _schedule(lr) -> Schedule:
    if isinstance(lr, Schedule):
        return lr
    return Constant(lr)


# ----------------------------------------------------------------------------- optimizers


class Optimizer(ParameterChecked):
    """Base optimizer: one fused in-place update over a flat parameter buffer per step.

    ``step(model)`` updates ``model.params`` from ``model.grads`` (regularizing only the
    entries ``model.weight_mask`` marks); ``step(params, grads)`` works on any flat float
    buffers (every entry regularized). State buffers are created on the first step, sized
    like ``params``; ``state_dict``/``load_state_dict`` save and restore them with the
    update count.

    Parameters
    ----------
    lr : float or Schedule
        Learning rate, constant or a ``Schedule`` of the update count.
    l1 : float, default 0.0
        L1 penalty ``l1 * sum(abs(w))`` on the weights (adds ``l1 * sign(w)`` to their gradient).
    l2 : float, default 0.0
        L2 penalty ``l2 * sum(w ** 2)`` on the weights (adds ``2 * l2 * w`` to their gradient).
    """

    _state_names: tuple = ()
    # each optimizer's constructor arguments but lr: a Schedule, or a number that Constant checks
    _parameter_checks: dict = {"l1": NON_NEGATIVE, "l2": NON_NEGATIVE}

    def __init__(self, lr, l1=0.0, l2=0.0) -> None:
        self.schedule = _schedule(lr)
        self._set_checked(l1=l1, l2=l2)
        self.iterations = 0
        self.state: dict[str, np.ndarray] = {}

    @property
    def lr(self) -> float:
        """The learning rate the next update will use."""
        return self.schedule(self.iterations)

    def _prepare(self, params) -> None:
        """Create the state on the first update; afterwards params must match it."""
        if not isinstance(params, np.ndarray):
            raise TypeError(f"params must be a numpy array (updated in place), got {type(params).__name__}")
        if not self.state:
            self._init_state(params)
            return
        first = next(iter(self.state.values()))
        if first.shape != params.shape or first.dtype != params.dtype:
            raise ValueError("params do not match this optimizer's state (another model?): "
                             f"state is {first.dtype} {first.shape}, params {params.dtype} {params.shape}")

    def _init_state(self, params: np.ndarray) -> None:
        for name in self._state_names:
            self.state[name] = np.zeros_like(params)

    def step(self, model_or_params, grads=None) -> None:
        """One update: ``step(model)`` for a ``Sequential`` (its flat params and grads), or
        ``step(params, grads)`` for the caller's own 1-D arrays (params updated in place).
        Everything is checked before anything changes: a refused step leaves the params and
        this optimizer's state (even the state a first step would create) as they were.

        Parameters
        ----------
        model_or_params : fastnn.nn.Sequential or ndarray
            A model, or a 1-D float array of parameters (updated in place).
        grads : ndarray, optional
            With an array of parameters: the gradients, same shape and dtype.

        Raises
        ------
        TypeError
            If the arguments are not a model or a pair of arrays.
        ValueError
            If the arrays disagree in shape or dtype, or with the optimizer's state.
        """
        if grads is None:
            model = model_or_params
            if not all(hasattr(model, a) for a in ("params", "grads", "weight_mask")):
                raise TypeError("step(model) takes a fastnn.Sequential; to update arrays, pass "
                                f"step(params, grads), got model_or_params={type(model).__name__} and no grads")
            params, grads, mask = model.params, model.grads, model.weight_mask
        else:
            params, mask = model_or_params, None
        p = ops._flat("params", params, writes=True)  # TypeError for anything but the caller's array
        g = ops._flat("grads", grads, writes=False, dtype=p.dtype, n=p.shape[0])
        self._prepare(p)
        self._update(p, g, mask, self.lr)
        self.iterations += 1

    def _kernel(self) -> tuple:
        """(OptimizerKind, [state0, state1, state2], hyperparameters) for the fused kernel;
        the per-step learning rate and Adam step are added by the caller."""
        raise NotImplementedError

    def _hyper(self, lr) -> "_core.OptimizerHyper":
        """The hyperparameters by name, for the fused kernel (a misspelt name is a TypeError)."""
        return _core.OptimizerHyper(lr=float(lr), **self._kernel()[2])

    def _update(self, p, g, mask, lr) -> None:
        """The fused kernel over checked flat buffers (``step`` checks them)."""
        kind, (state0, state1, state2), _ = self._kernel()
        _core.optimizer_step(kind, p, g, state0, state1, state2, ops._weight_mask(mask, p.shape[0]), self._hyper(lr),
                             self.iterations + 1)

    def __repr__(self):
        names = [n for n in inspect.signature(type(self).__init__).parameters if n not in ("self", "lr")]
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in names if hasattr(self, n))
        lr = self.schedule.lr if isinstance(self.schedule, Constant) else self.schedule
        return f"{type(self).__name__}(lr={lr!r}, {args})"

    def __setstate__(self, state):
        self.__dict__.update(state)
        # unpickled state may be read-only (joblib memmaps): updates write it in place
        self.state = {k: np.array(v, order="C", copy=True) if not v.flags.writeable else v
                      for k, v in self.state.items()}

    def state_dict(self) -> dict:
        """Copy the optimizer's state (to save it, or to restore it later).

        Returns
        -------
        dict
            ``class`` (the optimizer's class name), ``iterations`` (the update count) and
            ``state`` (copies of the state buffers, by name).
        """
        return {"class": type(self).__name__, "iterations": self.iterations,
                "state": {k: v.copy() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from ``state_dict``; the next update continues from it.

        Parameters
        ----------
        state : dict
            What ``state_dict`` returned, for an optimizer of the same class.

        Raises
        ------
        ValueError
            If the state is for another class or its buffers are malformed.
        """
        if state.get("class") != type(self).__name__:
            raise ValueError(f"state_dict is for {state.get('class')!r}, not {type(self).__name__}")
        arrays = state.get("state", {})
        if arrays and set(arrays) != set(self._state_names):
            raise ValueError(f"state_dict holds {sorted(arrays)}, {type(self).__name__} needs {list(self._state_names)}")
        shapes = {np.asarray(v).shape for v in arrays.values()}
        if len(shapes) > 1 or any(len(s) != 1 for s in shapes):
            raise ValueError(f"state_dict arrays must be 1-D and of one length, got shapes {sorted(shapes)}")
        iterations = state.get("iterations")
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ValueError(f"state_dict iterations must be a non-negative int, got {iterations!r}")
        self.iterations = int(iterations)
        self.state = {k: np.array(v, copy=True) for k, v in arrays.items()}


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v = momentum * v + g``; ``p -= lr * (g + momentum * v if nesterov else v)``.

    Parameters
    ----------
    lr : float or Schedule, default 0.01
        Learning rate, constant or a ``Schedule`` of the update count.
    momentum : float, default 0.0
        Momentum factor, in [0, 1] (0: none): the weight of the old velocity.
    nesterov : bool, default False
        Nesterov momentum.
    l1 : float, default 0.0
        L1 penalty ``l1 * sum(abs(w))`` on the weights (adds ``l1 * sign(w)`` to their gradient).
    l2 : float, default 0.0
        L2 penalty ``l2 * sum(w ** 2)`` on the weights (adds ``2 * l2 * w`` to their gradient).
    """

    _parameter_checks = {**Optimizer._parameter_checks, "momentum": MOMENTUM, "nesterov": check_bool}

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, l1=0.0, l2=0.0):
        super().__init__(lr, l1, l2)
        self._set_checked(momentum=momentum, nesterov=nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self._state_names = ("velocity",) if self.momentum > 0 else ()

    def _kernel(self):
        return (_core.OptimizerKind.sgd, [self.state.get("velocity"), None, None],
                {"momentum": self.momentum, "nesterov": self.nesterov, "l1": self.l1, "l2": self.l2})


class Adagrad(Optimizer):
    """Adagrad as TensorFlow/Keras: the lecture's ``DNNRegressor`` default (lr 0.05).

    Parameters
    ----------
    lr : float or Schedule, default 0.05
        Learning rate, constant or a ``Schedule`` of the update count.
    initial_accumulator_value : float, default 0.1
        Starting value of the squared-gradient accumulator.
    eps : float, default 1e-7
        Added outside the square root, > 0.
    l1 : float, default 0.0
        L1 penalty ``l1 * sum(abs(w))`` on the weights (adds ``l1 * sign(w)`` to their gradient).
    l2 : float, default 0.0
        L2 penalty ``l2 * sum(w ** 2)`` on the weights (adds ``2 * l2 * w`` to their gradient).
    """

    _state_names = ("accumulator",)

    _parameter_checks = {**Optimizer._parameter_checks, "initial_accumulator_value": NON_NEGATIVE, "eps": POSITIVE}

    def __init__(self, lr=0.05, initial_accumulator_value=0.1, eps=1e-7, l1=0.0, l2=0.0):
        super().__init__(lr, l1, l2)
        self._set_checked(initial_accumulator_value=initial_accumulator_value, eps=eps)

    def _init_state(self, params):
        self.state["accumulator"] = np.full_like(params, self.initial_accumulator_value)

    def _kernel(self):
        return (_core.OptimizerKind.adagrad, [self.state["accumulator"], None, None],
                {"eps": self.eps, "l1": self.l1, "l2": self.l2})


class Adam(Optimizer):
    """Adam with bias correction (as PyTorch and optax).

    Parameters
    ----------
    lr : float or Schedule, default 1e-3
        Learning rate, constant or a ``Schedule`` of the update count.
    beta1 : float, default 0.9
        Decay of the first moment.
    beta2 : float, default 0.999
        Decay of the second moment.
    eps : float, default 1e-7
        Added to the square root of the bias-corrected second moment, > 0.
    l1 : float, default 0.0
        L1 penalty ``l1 * sum(abs(w))`` on the weights (adds ``l1 * sign(w)`` to their gradient).
    l2 : float, default 0.0
        L2 penalty ``l2 * sum(w ** 2)`` on the weights (adds ``2 * l2 * w`` to their gradient).
    """

    _state_names = ("m", "v")

    _parameter_checks = {**Optimizer._parameter_checks, "beta1": DECAY, "beta2": DECAY, "eps": POSITIVE}

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7, l1=0.0, l2=0.0):
        super().__init__(lr, l1, l2)
        self._set_checked(beta1=beta1, beta2=beta2, eps=eps)
        self.weight_decay = 0.0

    def _kernel(self):
        return (_core.OptimizerKind.adam, [self.state["m"], self.state["v"], None],
                {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps, "weight_decay": self.weight_decay,
                 "l1": self.l1, "l2": self.l2})


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter).

    ``p -= lr * weight_decay * p`` on the weights before each Adam update.

    Parameters
    ----------
    lr : float or Schedule, default 1e-3
        Learning rate, constant or a ``Schedule`` of the update count.
    weight_decay : float, default 0.01
        Decoupled decay factor.
    beta1 : float, default 0.9
        Decay of the first moment.
    beta2 : float, default 0.999
        Decay of the second moment.
    eps : float, default 1e-7
        Added to the square root of the bias-corrected second moment, > 0.
    l1 : float, default 0.0
        L1 penalty ``l1 * sum(abs(w))`` on the weights (adds ``l1 * sign(w)`` to their gradient).
    l2 : float, default 0.0
        L2 penalty ``l2 * sum(w ** 2)`` on the weights (adds ``2 * l2 * w`` to their gradient).
    """

    _parameter_checks = {**Adam._parameter_checks, "weight_decay": NON_NEGATIVE}

    def __init__(self, lr=1e-3, weight_decay=0.01, beta1=0.9, beta2=0.999, eps=1e-7, l1=0.0, l2=0.0):
        super().__init__(lr, beta1, beta2, eps, l1, l2)
        self._set_checked(weight_decay=weight_decay)


class RMSProp(Optimizer):
    """RMSProp (PyTorch's form), optional momentum and centering.

    Parameters
    ----------
    lr : float or Schedule, default 1e-3
        Learning rate, constant or a ``Schedule`` of the update count.
    rho : float, default 0.9
        Decay of the squared-gradient average.
    eps : float, default 1e-7
        Added outside the square root, > 0.
    momentum : float, default 0.0
        Momentum factor, in [0, 1] (0: none): the weight of the old velocity.
    centered : bool, default False
        Divide by the gradient's estimated variance instead of its second moment.
    l1 : float, default 0.0
        L1 penalty ``l1 * sum(abs(w))`` on the weights (adds ``l1 * sign(w)`` to their gradient).
    l2 : float, default 0.0
        L2 penalty ``l2 * sum(w ** 2)`` on the weights (adds ``2 * l2 * w`` to their gradient).
    """

    _parameter_checks = {**Optimizer._parameter_checks, "rho": DECAY, "eps": POSITIVE, "momentum": MOMENTUM,
                         "centered": check_bool}

    def __init__(self, lr=1e-3, rho=0.9, eps=1e-7, momentum=0.0, centered=False, l1=0.0, l2=0.0):
        super().__init__(lr, l1, l2)
        self._set_checked(rho=rho, eps=eps, momentum=momentum, centered=centered)
        self._state_names = ("square_avg",) + (("momentum_buffer",) if self.momentum > 0 else ()) + \
            (("grad_avg",) if self.centered else ())

    def _kernel(self):
        return (_core.OptimizerKind.rmsprop,
                [self.state["square_avg"], self.state.get("momentum_buffer"), self.state.get("grad_avg")],
                {"rho": self.rho, "eps": self.eps, "momentum": self.momentum, "centered": self.centered,
                 "l1": self.l1, "l2": self.l2})
