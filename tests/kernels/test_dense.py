"""ops.dense_forward / ops.dense_backward against the float64 reference and against
central finite differences, on edge shapes, every activation, every SIMD path, and
bitwise determinism over thread counts and row batching."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import ops

from support import tolerance
from reference import ACTIVATIONS, activation_kwargs, dense_backward, dense_forward, numerical_gradient

# (N, IC, OC): batch 1, width 1, sizes off the register tile, and a large case.
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 9), (6, 16, 17), (13, 33, 31), (64, 16, 128), (97, 70, 65), (300, 257, 40)]


def make(rng, n, ic, oc, dtype, activation):
    x = rng.standard_normal((n, ic)).astype(dtype)
    w = (rng.standard_normal((ic, oc)) / np.sqrt(max(ic, 1))).astype(dtype)
    b = rng.standard_normal(oc).astype(dtype)
    kw = activation_kwargs(activation, oc, rng)
    if "slope" in kw:
        kw["slope"] = kw["slope"].astype(dtype)
    return x, w, b, kw


# Row shards of the 16-128-64-32-1 network (the thread-sharded engine runs 16..64 rows per
# call): a small W is read in place by the GEMM, its last partial panel with masked loads,
# remainder tiles take the narrow kernels and a one-output layer's dW the matrix-vector one.
SHARD_SHAPES = [(16, 16, 128), (33, 128, 64), (64, 64, 32), (16, 32, 1), (5, 64, 48), (40, 24, 16)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_backward_match_reference(simd, dtype, activation, shape, rng):
    check_layer_against_reference(dtype, activation, shape, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHARD_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_shard_shapes_match_reference(simd, dtype, activation, shape, rng):
    check_layer_against_reference(dtype, activation, shape, rng)


def check_layer_against_reference(dtype, activation, shape, rng):
    """Forward (fused epilogue, pre-activation copy) and backward against the float64 reference."""
    n, ic, oc = shape
    x, w, b, kw = make(rng, n, ic, oc, dtype, activation)
    z = np.empty((n, oc), dtype)
    y = ops.dense_forward(x, w, b, activation, preact_out=z, **kw)
    y_ref, z_ref = dense_forward(x, w, b, activation, **kw)
    assert y.dtype == dtype and y.shape == (n, oc)
    np.testing.assert_allclose(z, z_ref, **tolerance(dtype))
    np.testing.assert_allclose(y, y_ref, **tolerance(dtype))

    gy = rng.standard_normal((n, oc)).astype(dtype)
    grads = ops.dense_backward(gy, x, w, y, activation, preact=z, **kw)
    # The reference derivative is taken at the kernel's own z so a z near a kink (relu at 0)
    # cannot flip between the two.
    dx, dw, db, dslope = dense_backward(gy, x, w, z.astype(np.float64), activation, **kw)
    tol = tolerance(dtype)
    scale = max(1.0, float(np.sqrt(n)))
    np.testing.assert_allclose(grads.dx, dx, rtol=tol["rtol"], atol=tol["atol"] * scale)
    np.testing.assert_allclose(grads.dw, dw, rtol=tol["rtol"], atol=tol["atol"] * scale)
    np.testing.assert_allclose(grads.db, db, rtol=tol["rtol"], atol=tol["atol"] * scale)
    if activation == "prelu":
        np.testing.assert_allclose(grads.dslope, dslope, rtol=tol["rtol"], atol=tol["atol"] * scale)
    else:
        assert grads.dslope is None


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_finite_differences(simd, activation, rng):
    """float64 analytic gradients against central differences of L = sum(gy * y)."""
    n, ic, oc = 4, 3, 5
    x, w, b, kw = make(rng, n, ic, oc, np.float64, activation)
    # keep pre-activations away from the kinks at 0 where the derivative jumps
    z = x @ w + b
    b = b + np.where(np.abs(z).min(axis=0) < 1e-3, 0.1, 0.0)
    gy = rng.standard_normal((n, oc))
    params = {"x": x, "w": w, "b": b}
    if activation == "prelu":
        params["slope"] = kw.pop("slope")

    def loss():
        extra = {"slope": params["slope"]} if activation == "prelu" else {}
        return float((gy * ops.dense_forward(params["x"], params["w"], params["b"], activation, **kw, **extra)).sum())

    extra = {"slope": params["slope"]} if activation == "prelu" else {}
    z = np.empty((n, oc))
    y = ops.dense_forward(x, w, b, activation, preact_out=z, **kw, **extra)
    grads = ops.dense_backward(gy, x, w, y, activation, preact=z, **kw, **extra)
    analytic = {"x": grads.dx, "w": grads.dw, "b": grads.db, "slope": grads.dslope}
    for name, value in params.items():
        numeric = numerical_gradient(loss, value)
        np.testing.assert_allclose(analytic[name], numeric, rtol=1e-6, atol=1e-7, err_msg=f"d loss / d {name}")


@pytest.mark.parametrize("activation", ["relu", "prelu", "tanh"])
def test_bitwise_identical_for_any_thread_count(simd, activation, rng):
    n, ic, oc = 1100, 48, 300
    x, w, b, kw = make(rng, n, ic, oc, np.float32, activation)
    gy = rng.standard_normal((n, oc)).astype(np.float32)
    outs = []
    for threads in (1, 2, 3):
        with fastnn.threads(threads):
            z = np.empty((n, oc), np.float32)
            y = ops.dense_forward(x, w, b, activation, preact_out=z, **kw)
            g = ops.dense_backward(gy, x, w, y, activation, preact=z, **kw)
        outs.append((y, g))
    y0, g0 = outs[0]
    for y, g in outs[1:]:
        assert np.array_equal(y, y0)
        for got, want in zip(g, g0):
            if want is not None:
                assert np.array_equal(got, want)


def test_prediction_in_chunks_equals_all_at_once(simd, rng):
    x, w, b, _ = make(rng, 777, 20, 64, np.float32, "relu")
    whole = ops.dense_forward(x, w, b, "relu")
    chunks = np.concatenate([ops.dense_forward(x[i:i + 50], w, b, "relu") for i in range(0, 777, 50)])
    assert np.array_equal(whole, chunks)
    perm = rng.permutation(777)
    assert np.array_equal(ops.dense_forward(x[perm], w, b, "relu"), whole[perm])


def test_out_buffers_and_accumulate(simd, rng):
    n, ic, oc = 40, 12, 9
    x, w, b, _ = make(rng, n, ic, oc, np.float32, "sigmoid")
    out = np.empty((n, oc), np.float32)
    y = ops.dense_forward(x, w, b, "sigmoid", out=out)
    assert y is out
    gy = rng.standard_normal((n, oc)).astype(np.float32)
    first = ops.dense_backward(gy, x, w, y, "sigmoid")
    gw = first.dw.copy()
    gb = first.db.copy()
    again = ops.dense_backward(gy, x, w, y, "sigmoid", grad_w=gw, grad_b=gb, accumulate=True)
    assert again.dw is gw and again.db is gb
    np.testing.assert_allclose(gw, 2 * first.dw, rtol=1e-6)
    np.testing.assert_allclose(gb, 2 * first.db, rtol=1e-6)
    no_dx = ops.dense_backward(gy, x, w, y, "sigmoid", need_grad_x=False, bias=False)
    assert no_dx.dx is None and no_dx.db is None
    assert np.array_equal(no_dx.dw, first.dw)


def test_empty_batch(simd):
    x = np.zeros((0, 5), np.float32)
    w = np.ones((5, 3), np.float32)
    y = ops.dense_forward(x, w, np.ones(3, np.float32), "relu")
    assert y.shape == (0, 3)
    g = ops.dense_backward(np.zeros((0, 3), np.float32), x, w, y, "relu")
    assert g.dx.shape == (0, 5)
    assert np.array_equal(g.dw, np.zeros((5, 3), np.float32))
    assert np.array_equal(g.db, np.zeros(3, np.float32))


def test_zero_in_features_gives_activated_bias(simd):
    y = ops.dense_forward(np.zeros((4, 0), np.float32), np.zeros((0, 2), np.float32),
                          np.array([-1.0, 2.0], np.float32), "relu")
    assert np.array_equal(y, np.tile(np.array([0.0, 2.0], np.float32), (4, 1)))


def test_nan_and_inf_flow_through(simd):
    x = np.array([[np.nan, 1.0], [np.inf, 1.0], [1.0, 1.0]], np.float32)
    w = np.ones((2, 2), np.float32)
    for activation in ACTIVATIONS:
        kw = {"slope": np.full(2, 0.1, np.float32)} if activation == "prelu" else {}
        y = ops.dense_forward(x, w, None, activation, **kw)
        assert np.isnan(y[0]).all(), activation
        assert np.isfinite(y[2]).all(), activation
        assert not np.isfinite(y[1]).all() or activation in ("sigmoid", "tanh"), activation


def test_layouts_and_dtypes_are_converted_once(simd, rng):
    x64 = rng.standard_normal((30, 8))
    w64 = rng.standard_normal((8, 5))
    ref = ops.dense_forward(x64.astype(np.float32), w64.astype(np.float32))
    fortran = np.asfortranarray(x64.astype(np.float32))
    strided = np.zeros((30, 16), np.float32)
    strided[:, ::2] = x64
    readonly = x64.astype(np.float32)
    readonly.flags.writeable = False
    for x in (fortran, strided[:, ::2], readonly):
        assert np.array_equal(ops.dense_forward(x, w64.astype(np.float32)), ref)
    # ints are converted to float32; any float64 input makes the computation float64
    assert ops.dense_forward(np.ones((2, 3), np.int64), np.ones((3, 1), np.float32)).dtype == np.float32
    assert ops.dense_forward(x64, w64.astype(np.float32)).dtype == np.float64


@pytest.mark.parametrize("activation", ["relu", "elu", "sigmoid"])
def test_torch_linear_cross_check(activation, rng):
    torch = pytest.importorskip("torch")
    x, w, b, kw = make(rng, 64, 20, 33, np.float32, activation)
    gy = rng.standard_normal((64, 33)).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    lin = torch.nn.Linear(20, 33)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w.T))
        lin.bias.copy_(torch.tensor(b))
    act = {"relu": torch.relu, "elu": lambda t: torch.nn.functional.elu(t, alpha=kw["alpha"]),
           "sigmoid": torch.sigmoid}[activation]
    ty = act(lin(tx))
    ty.backward(torch.tensor(gy))
    y = ops.dense_forward(x, w, b, activation, **kw)
    g = ops.dense_backward(gy, x, w, y, activation, **kw)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g.dx, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g.dw, lin.weight.grad.numpy().T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g.db, lin.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


FAST_PATH_ACTIVATIONS = [("linear", {}), ("relu", {}), ("leaky_relu", {"negative_slope": 0.2}),
                         ("elu", {"alpha": 0.5}), ("sigmoid", {}), ("tanh", {})]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation,kwargs", FAST_PATH_ACTIVATIONS, ids=[a for a, _ in FAST_PATH_ACTIVATIONS])
def test_plain_inputs_skip_to_the_kernel_with_the_same_result(simd, dtype, activation, kwargs, rng):
    """Same-dtype C-contiguous arrays go straight to the kernel (``_core.dense_forward_plain``);
    the result is bitwise the general path's (forced here by passing ``out``)."""
    x = rng.standard_normal((37, 19)).astype(dtype)
    w = rng.standard_normal((19, 23)).astype(dtype)
    for b in (None, rng.standard_normal(23).astype(dtype)):
        fast = ops.dense_forward(x, w, b, activation, **kwargs)
        general = ops.dense_forward(x, w, b, activation, out=np.full((37, 23), np.nan, dtype), **kwargs)
        assert fast.dtype == dtype and fast.flags.c_contiguous and fast.flags.writeable
        assert np.array_equal(fast, general)
        assert not np.shares_memory(fast, x) and not np.shares_memory(fast, w)
        into = np.full((37, 23), np.nan, dtype)
        assert ops.dense_forward(x, w, b, activation, out=into, **kwargs) is into
        assert np.array_equal(into, general)


def test_inputs_that_need_converting_or_explaining_take_the_general_path(simd, rng):
    """The kernel's direct entry declines (None) whatever it would have to convert, and
    ops.dense_forward then converts it or names the argument that is wrong."""
    from fastnn import _core
    code, param = ops._activation("relu", 0.01, 1.0)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    expected = ops.dense_forward(x, w, activation="relu")

    class Sub(np.ndarray):
        pass

    declined = {
        "fortran x": (np.asfortranarray(x), w, None),
        "strided w": (x, np.repeat(w, 2, axis=1)[:, ::2], None),
        "float64 w": (x, w.astype(np.float64), None),
        "list x": (x.tolist(), w, None),
        "subclass x": (x.view(Sub), w, None),
        "float64 b": (x, w, np.zeros(3)),
        "2-D b": (x, w, np.zeros((1, 3), np.float32)),
        "int x": (x.astype(np.int32), w, None),
        "no rows": (x[:0], w, None),
        "shape mismatch": (x, w[:4], None),
    }
    for label, (xi, wi, bi) in declined.items():
        assert _core.dense_forward_plain(xi, wi, bi, None, code, param) is None, label
    # an output the kernel could not write safely: the general path converts nothing into it,
    # it names the problem
    flat = np.zeros(64, np.float32)  # x in its first 40 values, an out over values 30..53
    read_only = np.zeros((8, 3), np.float32)
    read_only.flags.writeable = False
    square = np.zeros((8, 3), np.float32)
    cases = {  # label: (x, w, out)
        "read-only": (x, w, read_only), "float64": (x, w, np.zeros((8, 3))),
        "wrong shape": (x, w, np.zeros((3, 8), np.float32)),
        "fortran": (x, w, np.zeros((8, 3), np.float32, order="F")),
        "overlaps x": (flat[:40].reshape(8, 5), w, flat[30:54].reshape(8, 3)),
        "is x": (square, np.zeros((3, 3), np.float32), square),
    }
    for label, (xi, wi, o) in cases.items():
        assert _core.dense_forward_plain(xi, wi, None, o, code, param) is None, label
        with pytest.raises((TypeError, ValueError), match="out"):
            ops.dense_forward(xi, wi, out=o, activation="relu")
    for xi in (np.asfortranarray(x), x.view(Sub), x.tolist()):
        np.testing.assert_allclose(ops.dense_forward(xi, w, activation="relu"), expected, rtol=1e-6)
    assert ops.dense_forward(x, w.astype(np.float64), activation="relu").dtype == np.float64
    with pytest.raises(ValueError, match="w must have shape"):
        ops.dense_forward(x, w[:4])
    with pytest.raises(ValueError, match="b must have shape"):
        ops.dense_forward(x, w, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="prelu"):
        ops.dense_forward(x, w, activation="prelu")
    with pytest.raises(ValueError, match="activation"):
        ops.dense_forward(x, w, activation="swish")
    with pytest.raises((TypeError, ValueError), match="negative_slope"):
        ops.dense_forward(x, w, activation="leaky_relu", negative_slope=True)
    with pytest.raises(ValueError, match="negative_slope"):
        ops.dense_forward(x, w, activation="leaky_relu", negative_slope=-1.0)
