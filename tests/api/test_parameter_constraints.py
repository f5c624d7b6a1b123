"""One place for parameter validation (issue 13): every public class declares its
parameters once, in ``_parameter_checks`` (fastnn._checks' constraints, scikit-learn's
``_parameter_constraints`` style), and fastnn.ops and fastnn.optim one table each for their
functions' scalar arguments. This file walks every table: each bound is enforced at the
public edge with a ValueError/TypeError naming the argument, and a parameter of one name
(or of one meaning under another name) has the same constraint in ops, nn, optim, the
callbacks and the estimators."""
from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest

from fastnn import _checks, callbacks, estimators, nn, ops, optim
from fastnn._checks import Interval, Options, OrNone

X = np.arange(24, dtype=np.float32).reshape(12, 2) / 24
Y = np.linspace(0.0, 1.0, 12).astype(np.float32)


def _flat(n=6):
    return np.zeros(n, np.float32)


def _model():
    return nn.Sequential([nn.Dense(2, 1)], seed=0)


def _constructed(cls, **required):
    """The edge of a class that checks in its constructor."""
    return cls, lambda **kw: cls(**{**required, **kw})


def _fitted(cls, y):
    """The edge of an estimator: fit checks the parameters (scikit-learn's convention)."""
    return cls, lambda **kw: cls(**{"hidden_units": (3,), "epochs": 1, **kw}).fit(X, y)


# Each table, with the public edges that take its parameters: (the function or class whose
# signature says which names it takes, a call that runs it with every other argument valid).
TABLES = {
    "DNNRegressor": (estimators.DNNRegressor._parameter_checks, [_fitted(estimators.DNNRegressor, Y)]),
    "DNNClassifier": (estimators.DNNClassifier._parameter_checks, [_fitted(estimators.DNNClassifier, Y > 0.5)]),
    "Dense": (nn.Dense._parameter_checks, [_constructed(nn.Dense, in_features=2, out_features=3)]),
    "Activation": (nn.Activation._parameter_checks, [_constructed(nn.Activation, name="elu")]),
    "BatchNorm": (nn.BatchNorm._parameter_checks, [_constructed(nn.BatchNorm, num_features=2)]),
    "Dropout": (nn.Dropout._parameter_checks, [_constructed(nn.Dropout)]),
    "Sequential": (nn.Sequential._parameter_checks, [
        (nn.Sequential, lambda **kw: nn.Sequential([nn.Dense(2, 1)], **kw)),
        (nn.Sequential.train_epoch, lambda **kw: _model().train_epoch(X, Y, optimizer=optim.SGD(), **kw)),
        (nn.Sequential.train_step, lambda **kw: _model().train_step(X, Y, optimizer=optim.SGD(), **kw)),
        (nn.Sequential.predict, lambda **kw: _model().predict(X, **kw))]),
    **{cls.__name__: (cls._parameter_checks, [_constructed(cls)])
       for cls in (optim.SGD, optim.Adagrad, optim.Adam, optim.AdamW, optim.RMSProp)},
    "Constant": (optim.Constant._parameter_checks, [_constructed(optim.Constant, lr=0.1)]),
    "ExponentialDecay": (optim.ExponentialDecay._parameter_checks,
                         [_constructed(optim.ExponentialDecay, lr=0.1, decay_steps=10, decay_rate=0.5)]),
    "StepDecay": (optim.StepDecay._parameter_checks, [_constructed(optim.StepDecay, lr=0.1, step_size=10)]),
    "CosineDecay": (optim.CosineDecay._parameter_checks, [_constructed(optim.CosineDecay, lr=0.1, decay_steps=10)]),
    "optim functions": (optim._parameter_checks, [
        (optim.clip_by_global_norm, lambda **kw: optim.clip_by_global_norm(_flat(), **{"max_norm": 1.0, **kw})),
        (optim.clip_by_value, lambda **kw: optim.clip_by_value(_flat(), **{"lo": -1.0, "hi": 1.0, **kw}))]),
    "EarlyStopping": (callbacks.EarlyStopping._parameter_checks, [_constructed(callbacks.EarlyStopping)]),
    "ReduceLROnPlateau": (callbacks.ReduceLROnPlateau._parameter_checks, [_constructed(callbacks.ReduceLROnPlateau)]),
}

_W = np.ones((2, 3), np.float32)
_G = np.ones((12, 3), np.float32)
OPS_CALLS = {
    "dense_forward": lambda **kw: ops.dense_forward(X, _W, **kw),
    "dense_backward": lambda **kw: ops.dense_backward(_G, X, _W, ops.dense_forward(X, _W), **kw),
    "activation_forward": lambda **kw: ops.activation_forward(X, **{"activation": "relu", **kw}),
    "activation_backward": lambda **kw: ops.activation_backward(X, X, **kw),
    "batchnorm_forward": lambda **kw: ops.batchnorm_forward(X, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2),
                                                            **kw),
    "dropout_forward": lambda **kw: ops.dropout_forward(X, **{"rate": 0.5, "seed": 0, **kw}),
    "dropout_backward": lambda **kw: ops.dropout_backward(X, **{"rate": 0.5, "seed": 0, **kw}),
    "dropout_mask": lambda **kw: ops.dropout_mask((3, 4), **{"rate": 0.5, "seed": 0, **kw}),
    "huber_loss": lambda **kw: ops.huber_loss(Y, Y, **kw),
    "sgd_update": lambda **kw: ops.sgd_update(_flat(), _flat(), **{"lr": 0.1, "velocity": _flat(), **kw}),
    "adagrad_update": lambda **kw: ops.adagrad_update(_flat(), _flat(), _flat(), **kw),
    "adam_update": lambda **kw: ops.adam_update(_flat(), _flat(), _flat(), _flat(), **{"step": 1, **kw}),
    "rmsprop_update": lambda **kw: ops.rmsprop_update(_flat(), _flat(), _flat(), **{"momentum_buffer": _flat(),
                                                                                  "grad_avg": _flat(), **kw}),
}
TABLES["ops functions"] = (ops._parameter_checks, [(getattr(ops, name), call) for name, call in OPS_CALLS.items()])

# Constraints that are functions of their own: the values each must refuse.
CUSTOM_PROBES = {
    ops._parameter_checks["rate"]: [(1.0, ValueError), (-0.1, ValueError), (1e-6, ValueError), ("0.2", TypeError)],
    estimators._hidden_units: [("64", TypeError), ((8, 0), ValueError), ((8, 2.5), TypeError)],
    estimators._optimizer: [("adamx", ValueError), (3, TypeError)],
    estimators._PARAMETER_CHECKS["callbacks"]: [(3, TypeError), (callbacks.EarlyStopping(), TypeError)],
    callbacks._check_monitor: [(3, TypeError)],
    _checks.check_bool: [(1, TypeError), ("yes", TypeError)],
}

# Parameters of one meaning under different names (the estimators speak scikit-learn's
# and the callbacks' language): each is compared under the name on the right.
SAME_QUANTITY = {"learning_rate": "lr", "dropout": "rate", "max_norm": "clip_norm", "lr_factor": "factor",
                 "tol": "rel_delta", "lr_patience": "patience"}
# One name, two meanings: these entries are compared with nothing else.
HOMONYMS = {("CosineDecay", "alpha"): "the final learning rate as a fraction of lr (elu's alpha is a scale, > 0)",
            ("Activation", "name"): "the activation of a parameter-free layer: prelu is refused with a remedy"}


def _interval_probes(c: Interval) -> list:
    if c.kind is int:
        probes = [(1.5, TypeError), (True, TypeError), ("1", TypeError)]
        if c.low is not None:
            probes.append((c.low - 1, ValueError))
        if c.high is not None:
            probes.append((c.high + 1, ValueError))
        return probes
    probes = [("1", TypeError), (None, TypeError), (math.nan, ValueError), (math.inf, ValueError)]
    if c.low is not None:
        probes.append((c.low if c.low_open else c.low - 1e-6, ValueError))
    if c.high is not None:
        probes.append((c.high if c.high_open else c.high + 1e-6, ValueError))
    return probes


def probes(c) -> list:
    """(value, exception) pairs that ``c`` must refuse."""
    if isinstance(c, OrNone):
        return [(v, e) for v, e in probes(c.inner) if v is not None]
    if isinstance(c, Interval):
        return _interval_probes(c)
    if isinstance(c, Options):
        return [(3, TypeError), ("no-such-option", ValueError)] + [(v, ValueError) for v in c.remedies]
    assert c in CUSTOM_PROBES, f"no probes for the constraint {c!r}: add it to CUSTOM_PROBES"
    return CUSTOM_PROBES[c]


def _edges_taking(edges: list, name: str) -> list:
    """The calls of the edges whose function or class takes ``name``."""
    return [call for target, call in edges if name in inspect.signature(target).parameters]


CASES = [(label, name, value, error) for label, (table, _) in TABLES.items() for name, c in table.items()
         for value, error in probes(c)]


def _value_id(value) -> str:
    """A test id that is the same in every run (an object's repr holds its address)."""
    return repr(value) if isinstance(value, (str, int, float, tuple, type(None))) else type(value).__name__


@pytest.mark.parametrize("label, name, value, error", CASES,
                         ids=[f"{label}-{name}-{_value_id(value)}" for label, name, value, _ in CASES])
def test_every_bound_is_enforced_at_the_public_edge(label, name, value, error):
    table, edges = TABLES[label]
    calls = _edges_taking(edges, name)
    assert calls, f"{label}: no public call takes {name!r} (a stale table entry?)"
    for call in calls:
        with pytest.raises(error, match=re.escape(name)):
            call(**{name: value})


def test_every_constructor_argument_is_declared():
    """The table covers each public class's constructor (lr: a Schedule, or a number
    that Constant's table checks; layers and dtype: Sequential's structure; keep_prob:
    refused with the conversion)."""
    undeclared = {"lr", "layers", "dtype", "keep_prob", "loss",  # loss: the estimators check it per class
                  "random_state"}  # an int seed, a RandomState or a Generator, read once in fit
    for label, (table, edges) in TABLES.items():
        cls = edges[0][0]
        if not isinstance(cls, type):
            continue
        params = set(inspect.signature(cls).parameters) - undeclared
        assert params <= set(table), f"{label} does not declare {sorted(params - set(table))}"


def test_ops_calls_cover_every_function_with_scalar_arguments():
    taking = {name for name in ops.__all__ if callable(getattr(ops, name)) and not isinstance(getattr(ops, name), type)
              and set(inspect.signature(getattr(ops, name)).parameters) & set(ops._parameter_checks)}
    assert taking == set(OPS_CALLS)


def _canonical(c):
    return c.inner if isinstance(c, OrNone) else c


def test_one_quantity_has_one_constraint_everywhere():
    seen: dict = {}
    for label, (table, _) in TABLES.items():
        for name, c in table.items():
            if (label, name) in HOMONYMS:
                continue
            seen.setdefault(SAME_QUANTITY.get(name, name), []).append((label, name, _canonical(c)))
    shared = {q: uses for q, uses in seen.items() if len({u[0] for u in uses}) > 1}
    # the quantities issue 13 named, and the ones the estimators pass on to nn and optim
    assert {"lr", "rate", "momentum", "eps", "clip_norm", "l1", "l2", "seed", "patience", "factor"} <= set(shared)
    for quantity, uses in shared.items():
        distinct = []
        for _, _, c in uses:
            if c not in distinct:
                distinct.append(c)
        assert len(distinct) == 1, f"{quantity} has {len(distinct)} constraints: {uses}"


@pytest.mark.parametrize("c, accepted", [
    (_checks.check_learning_rate, [0.0, 1e-9, 3.0]),
    (_checks.MOMENTUM, [0.0, 0.5, 1.0]),
    (_checks.DECAY, [0.0, 0.999]),
    (_checks.FRACTION, [1e-9, 0.5, 0.999]),
    (_checks.POSITIVE, [1e-12, 2.0]),
    (_checks.check_seed, [0, 2 ** 64 - 1]),
    (_checks.check_count, [1, np.int64(7)]),
])
def test_closed_bounds_and_inner_values_are_accepted(c, accepted):
    for value in accepted:
        assert c("x", value) == value


def test_the_momentum_hint_names_the_convention():
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\], got 1.5 \(the weight of the OLD value"):
        nn.BatchNorm(3, momentum=1.5)
