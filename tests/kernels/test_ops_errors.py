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


def _aliasing_calls(rng):
    """(the arrays, [(output name, call)]) for calls whose output overlaps what the kernel reads."""
    x = rng.standard_normal((70, 70)).astype(np.float32)
    w = rng.standard_normal((70, 70)).astype(np.float32)
    g = rng.standard_normal((70, 70)).astype(np.float32)
    y = ops.dense_forward(x, w, None, "relu")
    bn = ops.batchnorm_forward(x, np.ones(70, np.float32), np.zeros(70, np.float32))
    buf = rng.standard_normal(140).astype(np.float32)
    return [x, w, g, y, bn.mean, bn.invstd, buf], [
        ("out", lambda: ops.dense_forward(x, w, out=x)),
        ("out", lambda: ops.dense_forward(x, w, out=w)),
        ("preact_out", lambda: ops.dense_forward(x, w, activation="prelu", slope=np.full(70, 0.1, np.float32),
                                                 out=np.empty_like(x), preact_out=x)),
        ("grad_x", lambda: ops.dense_backward(g, x, w, y, "relu", grad_x=g)),
        ("grad_w", lambda: ops.dense_backward(g, x, w, y, "relu", grad_w=w)),
        ("grad_x", lambda: ops.dense_backward(g, x, w, y, "relu", grad_x=(gx := np.empty_like(x)), grad_w=gx)),
        ("out", lambda: ops.batchnorm_forward(x, np.ones(70, np.float32), np.zeros(70, np.float32), out=x)),
        ("grad_x", lambda: ops.batchnorm_backward(g, x, np.ones(70, np.float32), bn.mean, bn.invstd, grad_x=x)),
        # elementwise ops run in place, but a shifted view of the same buffer is refused
        ("out", lambda: ops.activation_forward(buf[:100], "elu", out=buf[40:])),
        ("out", lambda: ops.dropout_forward(buf[:100], 0.5, seed=1, out=buf[40:])),
    ]


@pytest.mark.parametrize("case", range(10))
def test_output_aliasing_an_input_is_refused_before_writing(case):
    """RELIABILITY B3: an output that overlaps an input (or another output) is a ValueError
    naming the output, and nothing is written (a blocked GEMM would read its own results)."""
    arrays, calls = _aliasing_calls(np.random.default_rng(case))
    name, call = calls[case]
    before = [a.tobytes() for a in arrays]
    with pytest.raises(ValueError, match=f"^{name} shares memory with"):
        call()
    assert [a.tobytes() for a in arrays] == before


def test_elementwise_ops_run_in_place():
    """out=x IS allowed where each element is read before it is written."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((33, 17)).astype(np.float32)
    expected = ops.activation_forward(x, "elu")
    y = x.copy()
    assert ops.activation_forward(y, "elu", out=y) is y
    np.testing.assert_array_equal(y, expected)
    expected = ops.dropout_forward(x, 0.3, seed=4, step=2).y
    y = x.copy()
    ops.dropout_forward(y, 0.3, seed=4, step=2, out=y)
    np.testing.assert_array_equal(y, expected)
    g = x.copy()
    out = ops.activation_forward(x, "tanh")
    expected = ops.activation_backward(g, out, "tanh").dx
    np.testing.assert_array_equal(ops.activation_backward(g, out, "tanh", grad_in=g).dx, expected)
    np.testing.assert_array_equal(g, expected)
