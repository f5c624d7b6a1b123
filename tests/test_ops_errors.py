"""Bad input gets a clear ValueError/TypeError naming the argument: never a crash, never
garbage, never a write to a read-only or converted array."""
from __future__ import annotations

import numpy as np
import pytest

from fastnn import _core, ops

X = np.ones((4, 3), np.float32)
W = np.ones((3, 2), np.float32)


@pytest.mark.parametrize("bad,exc,match", [
    (None, TypeError, "x must be an array of numbers, got None"),
    (np.array([["a", "b", "c"]]), TypeError, "x must be an array of numbers"),
    (np.array([[object(), 1, 2]], dtype=object), TypeError, "x must be an array of numbers"),
    (np.ones((2, 3), np.complex64), TypeError, "x must be real, got complex"),
    (np.ones(3, np.float32), ValueError, r"x must be 2-D \(n_samples, in_features\), got shape \(3,\)"),
    (np.ones((2, 3, 1), np.float32), ValueError, "x must be 2-D"),
    ([[1, 2], [3]], TypeError, "x must be an array of numbers"),
])
def test_bad_x(bad, exc, match):
    with pytest.raises(exc, match=match):
        ops.dense_forward(bad, W)


def test_mismatched_inner_sizes():
    with pytest.raises(ValueError, match=r"w must have shape \(in_features, out_features\) = \(3, OC\).*got \(4, 2\)"):
        ops.dense_forward(X, np.ones((4, 2), np.float32))


def test_bias_of_wrong_length():
    with pytest.raises(ValueError, match=r"b must have shape \(2,\) \(out_features\), got \(3,\)"):
        ops.dense_forward(X, W, np.ones(3, np.float32))


@pytest.mark.parametrize("activation,exc,match", [
    ("gelu", ValueError, "activation must be one of"),
    ("RELU", ValueError, "activation must be one of"),
    (None, TypeError, "activation must be a string"),
    (3, TypeError, "activation must be a string"),
])
def test_unknown_activation(activation, exc, match):
    with pytest.raises(exc, match=match):
        ops.dense_forward(X, W, activation=activation)


def test_activation_parameters_are_validated():
    with pytest.raises(ValueError, match="negative_slope must be >= 0"):
        ops.dense_forward(X, W, activation="leaky_relu", negative_slope=-0.1)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        ops.activation_forward(X, "elu", alpha=0.0)
    with pytest.raises(ValueError, match="alpha must be finite"):
        ops.activation_forward(X, "elu", alpha=float("nan"))
    with pytest.raises(TypeError, match="negative_slope must be a real number"):
        ops.activation_forward(X, "leaky_relu", negative_slope="0.1")
    with pytest.raises(ValueError, match=r"activation='prelu' needs slope.*\(2,\)"):
        ops.dense_forward(X, W, activation="prelu")
    with pytest.raises(ValueError, match=r"slope must have shape \(2,\)"):
        ops.dense_forward(X, W, activation="prelu", slope=np.ones(3))
    with pytest.raises(ValueError, match="slope is only used by activation='prelu'"):
        ops.dense_forward(X, W, activation="relu", slope=np.ones(2))


def test_out_buffer_must_match_exactly():
    with pytest.raises(TypeError, match="out must have dtype float32, got float64"):
        ops.dense_forward(X, W, out=np.empty((4, 2)))
    with pytest.raises(ValueError, match=r"out must have shape \(4, 2\), got \(2, 4\)"):
        ops.dense_forward(X, W, out=np.empty((2, 4), np.float32))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        ops.dense_forward(X, W, out=np.empty((2, 4), np.float32).T)
    ro = np.empty((4, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        ops.dense_forward(X, W, out=ro)
    with pytest.raises(TypeError, match="out must be a numpy array, got list"):
        ops.dense_forward(X, W, out=[[0, 0]] * 4)


def test_backward_needs_what_it_reads():
    gy = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"activation='relu' backward needs out, the forward output"):
        ops.dense_backward(gy, X, W, None, "relu")
    with pytest.raises(ValueError, match="activation='prelu' backward needs preact"):
        ops.dense_backward(gy, X, W, None, "prelu", slope=np.ones(2))
    with pytest.raises(ValueError, match=r"grad_out must have shape \(4, 2\)"):
        ops.dense_backward(np.ones((4, 3), np.float32), X, W)
    with pytest.raises(ValueError, match=r"out must have shape \(4, 2\) \(the forward output\)"):
        ops.dense_backward(gy, X, W, np.ones((4, 3), np.float32), "relu")
    with pytest.raises(ValueError, match="accumulate=True adds into grad_w"):
        ops.dense_backward(gy, X, W, accumulate=True)


def test_read_only_inputs_are_never_written():
    x = np.ones((4, 3), np.float32)
    w = np.ones((3, 2), np.float32)
    for a in (x, w):
        a.flags.writeable = False
    ops.dense_forward(x, w, activation="relu")
    ops.dense_backward(np.ones((4, 2), np.float32), x, w, np.ones((4, 2), np.float32), "relu")
    assert (x == 1).all() and (w == 1).all()


def test_core_rejects_what_python_would_convert():
    """_core never converts silently: a converted out buffer would lose the write."""
    y = np.empty((4, 2), np.float32)
    code = _core.Activation.relu
    with pytest.raises(TypeError, match="x must be a numpy array of dtype float32"):
        _core.dense_forward(X.astype(np.float16), W, None, y, None, code, 0.0, None)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        _core.dense_forward(np.asfortranarray(np.ones((4, 3), np.float32)), W, None, y, None, code, 0.0, None)
    with pytest.raises(TypeError, match="must be a numpy array of dtype float32"):
        _core.dense_forward(X, W, None, y.astype(">f4"), None, code, 0.0, None)
    with pytest.raises(ValueError, match="x must be a 2-D numpy array"):
        _core.dense_forward(None, W, None, y, None, code, 0.0, None)
