"""Standalone activations (ops.activation_forward / activation_backward): accuracy of the
vector math against the float64 reference, any input shape, NaN/Inf, every SIMD path."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import ops

from reference import ACTIVATIONS, act_derivative, act_forward, activation_kwargs

# float32 accuracy of the vector exp/expm1/sigmoid/tanh, relative to max(1, |y|): a few ulp.
F32_REL = 4 * np.finfo(np.float32).eps


def grid(dtype):
    """Values across the interesting ranges: tiny, near the tanh/expm1 branch points, the
    exp over/underflow edges, and far tails."""
    v = np.concatenate([
        np.linspace(-20, 20, 4001),
        np.geomspace(1e-8, 1, 50), -np.geomspace(1e-8, 1, 50),
        [0.0, -0.0, 0.49999, 0.5, 0.50001, 0.62499, 0.625, 0.62501, 9.0, 44.0, 87.0, 88.5, 89.0, 100.0,
         -87.0, -87.5, -88.0, -100.0, -104.0],
    ])
    return v.astype(dtype).reshape(-1, 1) * np.ones((1, 3), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_accuracy(simd, dtype, activation, rng):
    z = grid(dtype)
    kw = activation_kwargs(activation, z.shape[1], rng)
    if "slope" in kw:
        kw["slope"] = kw["slope"].astype(dtype)
    y = ops.activation_forward(z, activation, **kw)
    ref = act_forward(activation, z, **kw)
    assert y.dtype == dtype
    rel = 1e-14 if dtype == np.float64 else F32_REL
    err = np.abs(y - ref) / np.maximum(1.0, np.abs(ref))
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() <= rel, f"{activation} on {simd}: error {err.max():.3g} at z={z[worst]}"


def test_small_inputs_keep_relative_accuracy(simd):
    """tanh(x) ~ x and elu(x) ~ x near 0 must not lose digits to cancellation."""
    x = np.geomspace(1e-7, 0.3, 200).astype(np.float32).reshape(-1, 1)
    for activation in ("tanh", "elu"):
        for sign in (1, -1):
            y = ops.activation_forward(sign * x, activation)
            ref = act_forward(activation, sign * x.astype(np.float64))
            np.testing.assert_allclose(y, ref, rtol=4 * F32_REL, err_msg=f"{activation} sign {sign}")


def test_sigmoid_tails_are_accurate(simd):
    x = np.array([[-80.0, -30.0, -15.0, 15.0, 30.0, 80.0]], np.float32)
    y = ops.activation_forward(x, "sigmoid")
    np.testing.assert_allclose(y, act_forward("sigmoid", x), rtol=4 * F32_REL)
    assert (y[0, :3] > 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_reference(simd, dtype, activation, rng):
    z = rng.uniform(-4, 4, size=(37, 19)).astype(dtype)
    z[np.abs(z) < 1e-3] = 0.5  # stay off the kink at 0
    kw = activation_kwargs(activation, 19, rng)
    if "slope" in kw:
        kw["slope"] = kw["slope"].astype(dtype)
    y = ops.activation_forward(z, activation, **kw)
    gy = rng.standard_normal(z.shape).astype(dtype)
    grads = ops.activation_backward(gy, y, activation, preact=z, **kw)
    ref = gy * act_derivative(activation, z, **kw)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(grads.dx, ref, rtol=tol, atol=tol)
    if activation == "prelu":
        np.testing.assert_allclose(grads.dslope, (gy * np.minimum(z, 0)).sum(0), rtol=tol, atol=tol * 10)
    else:
        assert grads.dslope is None


def test_any_shape(simd, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = ops.activation_forward(x, "prelu", slope=np.full(5, 0.2, np.float32))
    assert y.shape == x.shape
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.2 * x), rtol=1e-6)
    assert ops.activation_forward(np.float32(-2.0), "relu").shape == ()
    assert ops.activation_forward(np.zeros((0, 4), np.float32), "tanh").shape == (0, 4)
    g = ops.activation_backward(np.ones((2, 3, 4, 5), np.float32), None, "prelu", preact=x,
                                slope=np.full(5, 0.2, np.float32))
    np.testing.assert_allclose(g.dslope, np.minimum(x, 0).reshape(-1, 5).sum(0), rtol=1e-5)


def test_nan_propagates_and_inf_saturates(simd):
    x = np.array([[np.nan, np.inf, -np.inf, 0.0]], np.float32)
    expected = {
        "linear": [np.nan, np.inf, -np.inf, 0.0],
        "relu": [np.nan, np.inf, 0.0, 0.0],
        "leaky_relu": [np.nan, np.inf, -np.inf, 0.0],
        "elu": [np.nan, np.inf, -1.0, 0.0],
        "sigmoid": [np.nan, 1.0, 0.0, 0.5],
        "tanh": [np.nan, 1.0, -1.0, 0.0],
    }
    for activation, want in expected.items():
        y = ops.activation_forward(x, activation)
        np.testing.assert_array_equal(y[0], np.array(want, np.float32), err_msg=activation)


def test_backward_dslope_is_thread_count_invariant(simd, rng):
    z = rng.standard_normal((3000, 40)).astype(np.float32)
    gy = rng.standard_normal(z.shape).astype(np.float32)
    slope = np.full(40, 0.25, np.float32)
    results = []
    for threads in (1, 2, 3):
        with fastnn.threads(threads):
            results.append(ops.activation_backward(gy, None, "prelu", preact=z, slope=slope).dslope)
    assert all(np.array_equal(r, results[0]) for r in results)
