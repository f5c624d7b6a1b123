"""ops.batchnorm_forward / batchnorm_backward against a float64 NumPy reference and central
finite differences: training and inference, the Keras momentum convention with the unbiased
running variance, constant features, large-offset data, accumulation, every SIMD path,
bitwise determinism over thread counts, PyTorch, and input validation."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import ops

from support import tolerance
from reference import numerical_gradient

EPS = 1e-3
SHAPES = [(2, 1), (3, 5), (17, 8), (257, 7), (600, 33)]  # 257 and 600 rows span several 256-row chunks


def bn_reference(x, gamma, beta, eps=EPS):
    """(y, mean, invstd, biased var, unbiased var) in float64."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    invstd = 1.0 / np.sqrt(var + eps)
    y = np.asarray(gamma, np.float64) * (x - mean) * invstd + np.asarray(beta, np.float64)
    return y, mean, invstd, var, var * n / (n - 1)


def bn_backward_reference(gy, x, gamma, mean, invstd):
    """(dx, dgamma, dbeta) in float64 from the given statistics."""
    gy, x = np.asarray(gy, np.float64), np.asarray(x, np.float64)
    gamma, mean, invstd = (np.asarray(a, np.float64) for a in (gamma, mean, invstd))
    n = x.shape[0]
    xhat = (x - mean) * invstd
    dbeta = gy.sum(axis=0)
    dgamma = (gy * xhat).sum(axis=0)
    dx = gamma * invstd / n * (n * gy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def make(rng, n, c, dtype, loc=0.5, scale=2.0):
    x = (loc + scale * rng.standard_normal((n, c))).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    return x, gamma, beta


# ----------------------------------------------------------------------------- training forward


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_training_forward_matches_reference(simd, dtype, shape, rng):
    n, c = shape
    x, gamma, beta = make(rng, n, c, dtype)
    rm0 = rng.standard_normal(c).astype(dtype)
    rv0 = rng.uniform(0.5, 2.0, c).astype(dtype)
    rm, rv = rm0.copy(), rv0.copy()
    out = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=True, momentum=0.9, eps=EPS)
    y_ref, mean_ref, invstd_ref, _, unbiased = bn_reference(x, gamma, beta)
    tol = tolerance(dtype)
    assert out.y.dtype == dtype and out.y.shape == (n, c)
    assert out.mean.dtype == dtype and out.mean.shape == (c,)
    assert out.invstd.dtype == dtype and out.invstd.shape == (c,)
    np.testing.assert_allclose(out.y, y_ref, **tol)
    np.testing.assert_allclose(out.mean, mean_ref, **tol)
    np.testing.assert_allclose(out.invstd, invstd_ref, **tol)
    # Keras convention: momentum weighs the OLD value; the running variance is unbiased
    np.testing.assert_allclose(rm, 0.9 * rm0.astype(np.float64) + 0.1 * mean_ref, **tol)
    np.testing.assert_allclose(rv, 0.9 * rv0.astype(np.float64) + 0.1 * unbiased, **tol)


def test_momentum_and_unbiased_variance_exact_example():
    """x = [[0], [2]]: batch mean 1, biased variance 1, unbiased variance 2."""
    x = np.array([[0.0], [2.0]])
    gamma, beta = np.ones(1), np.zeros(1)
    rm, rv = np.array([10.0]), np.array([4.0])
    out = ops.batchnorm_forward(x, gamma, beta, rm, rv, momentum=0.75, eps=EPS)
    assert rm[0] == 0.75 * 10.0 + 0.25 * 1.0
    assert rv[0] == 0.75 * 4.0 + 0.25 * 2.0
    # normalized with the BIASED variance
    np.testing.assert_allclose(out.y[:, 0], [-1 / np.sqrt(1 + EPS), 1 / np.sqrt(1 + EPS)], rtol=1e-15)
    np.testing.assert_allclose(out.invstd, [1 / np.sqrt(1 + EPS)], rtol=1e-15)
    # momentum 1 keeps the running statistics, momentum 0 replaces them with the batch's
    rm, rv = np.array([10.0]), np.array([4.0])
    ops.batchnorm_forward(x, gamma, beta, rm, rv, momentum=1.0)
    assert rm[0] == 10.0 and rv[0] == 4.0
    ops.batchnorm_forward(x, gamma, beta, rm, rv, momentum=0.0)
    assert rm[0] == 1.0 and rv[0] == 2.0


def test_default_momentum_is_keras_099(rng):
    x, gamma, beta = make(rng, 50, 4, np.float64)
    rm, rv = np.zeros(4), np.ones(4)
    ops.batchnorm_forward(x, gamma, beta, rm, rv)
    _, mean, _, _, unbiased = bn_reference(x, gamma, beta)
    np.testing.assert_allclose(rm, 0.01 * mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rv, 0.99 + 0.01 * unbiased, rtol=1e-12)


def test_running_statistics_converge_to_population(rng):
    """Repeated training steps on batches of one distribution drive the running statistics
    to its mean and variance (the unbiased update has no 1 - 1/N shrinkage)."""
    c = 3
    rm, rv = np.zeros(c), np.ones(c)
    gamma, beta = np.ones(c), np.zeros(c)
    loc, std = np.array([5.0, -2.0, 0.0]), np.array([3.0, 0.5, 1.0])
    for _ in range(400):
        x = loc + std * rng.standard_normal((4, c))  # tiny batches: the biased variance would be 25% low
        ops.batchnorm_forward(x, gamma, beta, rm, rv, momentum=0.99)
    np.testing.assert_allclose(rm, loc, atol=0.25 * std.max())
    np.testing.assert_allclose(rv / std ** 2, 1.0, atol=0.2)


def test_one_row_training_batch_is_value_error():
    x = np.ones((1, 4), np.float32)
    gamma, beta = np.ones(4, np.float32), np.zeros(4, np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="at least 2 rows|one row"):
        ops.batchnorm_forward(x, gamma, beta)
    with pytest.raises(ValueError, match="at least 2 rows|one row"):
        ops.batchnorm_forward(x, gamma, beta, rm, rv, training=True)
    assert np.array_equal(rm, np.zeros(4)) and np.array_equal(rv, np.ones(4))
    with pytest.raises(ValueError, match="at least 2 rows|one row"):
        ops.batchnorm_forward(np.ones((0, 4), np.float32), gamma, beta)
    # one row is fine at inference
    y = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=False).y
    np.testing.assert_allclose(y, np.full((1, 4), 1 / np.sqrt(1 + EPS)), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_features_give_beta(simd, dtype, rng):
    n = 300
    x, gamma, beta = make(rng, n, 5, dtype)
    x[:, 1] = 3.0
    x[:, 3] = -7.25
    rm, rv = np.zeros(5, dtype), np.ones(5, dtype)
    out = ops.batchnorm_forward(x, gamma, beta, rm, rv, momentum=0.0)
    assert np.isfinite(out.y).all() and np.isfinite(out.invstd).all()
    for j in (1, 3):
        assert np.array_equal(out.y[:, j], np.full(n, beta[j])), j
        assert out.mean[j] == x[0, j]
        np.testing.assert_allclose(out.invstd[j], 1 / np.sqrt(EPS), rtol=1e-6)
        assert rv[j] == 0.0
    y_ref = bn_reference(x, gamma, beta)[0]
    np.testing.assert_allclose(out.y, y_ref, **tolerance(dtype))
    gy = rng.standard_normal(x.shape).astype(dtype)
    g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd)
    assert np.isfinite(g.dx).all() and np.isfinite(g.dgamma).all()
    ref = bn_backward_reference(gy, x, gamma, out.mean, out.invstd)
    tol = tolerance(dtype)
    np.testing.assert_allclose(g.dx, ref[0], rtol=tol["rtol"], atol=tol["atol"] * np.sqrt(n))


def test_large_offset_statistics_keep_float32_accuracy(simd, rng):
    """Mean 1e4, std 1 in float32: a one-pass E[x^2] - E[x]^2 in float32 loses the variance
    entirely. The statistics must be those of the float32 input to float32 accuracy."""
    n, c = 1000, 6
    x = (1e4 + rng.standard_normal((n, c))).astype(np.float32)
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    out = ops.batchnorm_forward(x, gamma, beta, rm, rv, momentum=0.0)
    _, mean_ref, invstd_ref, _, unbiased = bn_reference(x, gamma, beta)
    # the mean is float32 by the API: correctly rounded up to an ulp
    np.testing.assert_allclose(out.mean, mean_ref, rtol=np.finfo(np.float32).eps, atol=0)
    np.testing.assert_allclose(out.invstd, invstd_ref, rtol=2e-6)
    np.testing.assert_allclose(rv, unbiased, rtol=2e-6)
    # backward from the returned statistics follows the documented formula at those inputs
    gy = rng.standard_normal((n, c)).astype(np.float32)
    g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd)
    dx, dgamma, dbeta = bn_backward_reference(gy, x, gamma, out.mean, out.invstd)
    tol = tolerance(np.float32)
    np.testing.assert_allclose(g.dbeta, dbeta, rtol=tol["rtol"], atol=tol["atol"] * np.sqrt(n))
    np.testing.assert_allclose(g.dgamma, dgamma, rtol=tol["rtol"], atol=tol["atol"] * np.sqrt(n))
    np.testing.assert_allclose(g.dx, dx, rtol=tol["rtol"], atol=tol["atol"])


def test_large_offset_output_keeps_float32_accuracy(simd, rng):
    """y = (x - mean) * invstd for mean 1e4, std 1 in float32 must match the float64 value
    computed from the same float32 inputs to float32 accuracy: x - mean loses nothing when
    the mean is carried in float64 (as the kernel computes it), whereas rounding the
    mean to float32 first shifts every output of a column by up to half an ulp of 1e4,
    ~4.9e-4, i.e. ~4.9e-4 / |y| relative: float16-level accuracy."""
    n, c = 1000, 6
    x = (1e4 + rng.standard_normal((n, c))).astype(np.float32)
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    out = ops.batchnorm_forward(x, gamma, beta)
    y_ref = bn_reference(x, gamma, beta)[0]
    np.testing.assert_allclose(out.y, y_ref, **tolerance(np.float32))


# ----------------------------------------------------------------------------- inference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_uses_running_statistics_only(simd, dtype, rng):
    n, c = 64, 9
    x, gamma, beta = make(rng, n, c, dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    rm_ro, rv_ro = rm.copy(), rv.copy()
    rm_ro.flags.writeable = False  # inference only reads them
    rv_ro.flags.writeable = False
    out = ops.batchnorm_forward(x, gamma, beta, rm_ro, rv_ro, training=False)
    assert out.mean is None and out.invstd is None
    ref = gamma.astype(np.float64) * (x - rm.astype(np.float64)) / np.sqrt(rv.astype(np.float64) + EPS) + beta
    np.testing.assert_allclose(out.y, ref, **tolerance(dtype))
    assert np.array_equal(rm_ro, rm) and np.array_equal(rv_ro, rv)
    # no batch dependence: each row alone gives bitwise the same output
    for i in range(n):
        alone = ops.batchnorm_forward(x[i:i + 1], gamma, beta, rm, rv, training=False).y
        assert np.array_equal(alone[0], out.y[i]), i
    perm = rng.permutation(n)
    assert np.array_equal(ops.batchnorm_forward(x[perm], gamma, beta, rm, rv, training=False).y, out.y[perm])
    # eps is honoured at inference too
    y_eps = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=False, eps=0.5).y
    ref = gamma.astype(np.float64) * (x - rm.astype(np.float64)) / np.sqrt(rv.astype(np.float64) + 0.5) + beta
    np.testing.assert_allclose(y_eps, ref, **tolerance(dtype))


def test_inference_needs_running_statistics():
    x = np.ones((3, 2), np.float32)
    g, b = np.ones(2, np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="running_mean"):
        ops.batchnorm_forward(x, g, b, training=False)
    with pytest.raises(ValueError, match="running_mean and running_var"):
        ops.batchnorm_forward(x, g, b, np.zeros(2, np.float32), training=False)


# ----------------------------------------------------------------------------- backward


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backward_matches_reference(simd, dtype, shape, rng):
    n, c = shape
    x, gamma, beta = make(rng, n, c, dtype)
    out = ops.batchnorm_forward(x, gamma, beta)
    gy = rng.standard_normal((n, c)).astype(dtype)
    g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd)
    assert g.dx.dtype == dtype and g.dx.shape == (n, c)
    assert g.dgamma.shape == (c,) and g.dbeta.shape == (c,)
    _, mean, invstd, _, _ = bn_reference(x, gamma, beta)  # the exact statistics, not the kernel's
    dx, dgamma, dbeta = bn_backward_reference(gy, x, gamma, mean, invstd)
    tol = tolerance(dtype)
    scale = max(1.0, float(np.sqrt(n)))  # dgamma, dbeta are sums over n rows
    np.testing.assert_allclose(g.dbeta, dbeta, rtol=tol["rtol"], atol=tol["atol"] * scale)
    np.testing.assert_allclose(g.dgamma, dgamma, rtol=tol["rtol"], atol=tol["atol"] * scale)
    np.testing.assert_allclose(g.dx, dx, rtol=tol["rtol"], atol=tol["atol"] * scale)


@pytest.mark.parametrize("shape", [(2, 3), (5, 4), (9, 2)])
def test_backward_matches_finite_differences(simd, shape, rng):
    """float64 analytic gradients against central differences of L = sum(gy * y)."""
    n, c = shape
    x, gamma, beta = make(rng, n, c, np.float64)
    gy = rng.standard_normal((n, c))

    def loss():
        return float((gy * ops.batchnorm_forward(x, gamma, beta, eps=EPS).y).sum())

    out = ops.batchnorm_forward(x, gamma, beta, eps=EPS)
    g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd)
    for name, value, analytic in (("x", x, g.dx), ("gamma", gamma, g.dgamma), ("beta", beta, g.dbeta)):
        numeric = numerical_gradient(loss, value)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7, err_msg=f"d loss / d {name}")


def test_backward_matches_finite_differences_with_tiny_variance(rng):
    """A feature whose variance is comparable to eps: the eps term matters in the gradient."""
    x = np.array([[1.0, 0.0], [1.01, 1.0], [0.99, 2.0], [1.02, -1.0]])
    gamma, beta = np.array([1.3, 0.7]), np.array([0.1, -0.2])
    gy = rng.standard_normal(x.shape)

    def loss():
        return float((gy * ops.batchnorm_forward(x, gamma, beta).y).sum())

    out = ops.batchnorm_forward(x, gamma, beta)
    g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd)
    np.testing.assert_allclose(g.dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulate_adds_into_grad_gamma_and_beta(simd, dtype, rng):
    n, c = 40, 6
    x, gamma, beta = make(rng, n, c, dtype)
    out = ops.batchnorm_forward(x, gamma, beta)
    gy = rng.standard_normal((n, c)).astype(dtype)
    first = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd)
    prior_gamma = rng.standard_normal(c).astype(dtype)
    prior_beta = rng.standard_normal(c).astype(dtype)
    dgamma, dbeta, dx = prior_gamma.copy(), prior_beta.copy(), np.full((n, c), 123.0, dtype)
    g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd, grad_x=dx, grad_gamma=dgamma, grad_beta=dbeta,
                               accumulate=True)
    assert g.dx is dx and g.dgamma is dgamma and g.dbeta is dbeta
    tol = tolerance(dtype)
    np.testing.assert_allclose(dgamma, prior_gamma.astype(np.float64) + first.dgamma, **tol)
    np.testing.assert_allclose(dbeta, prior_beta.astype(np.float64) + first.dbeta, **tol)
    assert np.array_equal(dx, first.dx)  # dx is overwritten, never accumulated
    # without accumulate, the buffers are overwritten
    g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd, grad_gamma=dgamma, grad_beta=dbeta)
    assert np.array_equal(dgamma, first.dgamma) and np.array_equal(dbeta, first.dbeta)
    with pytest.raises(ValueError, match="grad_gamma"):
        ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd, accumulate=True)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_for_any_thread_count(simd, dtype, rng):
    n, c = 3000, 37  # 12 row chunks
    x, gamma, beta = make(rng, n, c, dtype, loc=3.0)
    gy = rng.standard_normal((n, c)).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        with fastnn.threads(threads):
            rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
            out = ops.batchnorm_forward(x, gamma, beta, rm, rv)
            g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd)
            inf = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=False).y
            results.append((out.y, out.mean, out.invstd, rm, rv, g.dx, g.dgamma, g.dbeta, inf))
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            assert np.array_equal(a, b)


def test_layouts_and_read_only_inputs(rng):
    x, gamma, beta = make(rng, 30, 8, np.float32)
    ref = ops.batchnorm_forward(x, gamma, beta)
    strided = np.zeros((30, 16), np.float32)
    strided[:, ::2] = x
    ro = x.copy()
    ro.flags.writeable = False
    for variant in (np.asfortranarray(x), strided[:, ::2], ro):
        out = ops.batchnorm_forward(variant, gamma, beta)
        assert np.array_equal(out.y, ref.y) and np.array_equal(out.mean, ref.mean)
    buffers = np.empty_like(x), np.empty(8, np.float32), np.empty(8, np.float32)
    out = ops.batchnorm_forward(x, gamma, beta, out=buffers[0], mean_out=buffers[1], invstd_out=buffers[2])
    assert out.y is buffers[0] and out.mean is buffers[1] and out.invstd is buffers[2]
    assert np.array_equal(out.y, ref.y) and np.array_equal(out.invstd, ref.invstd)


def test_torch_cross_check(rng):
    torch = pytest.importorskip("torch")
    n, c = 32, 5
    x, gamma, beta = make(rng, n, c, np.float64)
    gy = rng.standard_normal((n, c))
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    # PyTorch's momentum weighs the NEW value: fastnn's 0.9 is torch's 0.1
    ty = torch.nn.functional.batch_norm(tx, t_rm, t_rv, tg, tb, training=True, momentum=0.1, eps=EPS)
    ty.backward(torch.tensor(gy))
    out = ops.batchnorm_forward(x, gamma, beta, rm, rv, momentum=0.9, eps=EPS)
    g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd)
    np.testing.assert_allclose(out.y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm, t_rm.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rv, t_rv.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.dgamma, tg.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.dbeta, tb.grad.numpy(), rtol=1e-10, atol=1e-12)
    ti = torch.nn.functional.batch_norm(torch.tensor(x), t_rm, t_rv, torch.tensor(gamma), torch.tensor(beta),
                                        training=False, eps=EPS)
    y_inf = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=False, eps=EPS).y
    np.testing.assert_allclose(y_inf, ti.numpy(), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- validation


def _args(dtype=np.float32, n=4, c=3):
    x = (np.ones((n, c)) + np.arange(n)[:, None]).astype(dtype)
    return x, np.ones(c, dtype), np.zeros(c, dtype)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"gamma": np.ones(4, np.float32)}, ValueError, r"gamma must have shape \(3,\)"),
    ({"beta": np.ones((3, 1), np.float32)}, ValueError, r"beta must have shape \(3,\)"),
    ({"gamma": None}, TypeError, "gamma"),
    ({"x": np.ones(3, np.float32)}, ValueError, "x must be 2-D"),
    ({"x": np.array([["a"]])}, TypeError, "x"),
    ({"momentum": 1.5}, ValueError, "momentum"),
    ({"momentum": -0.1}, ValueError, "momentum"),
    ({"momentum": float("nan")}, ValueError, "momentum"),
    ({"momentum": "0.9"}, TypeError, "momentum"),
    ({"eps": 0.0}, ValueError, "eps"),
    ({"eps": -1e-3}, ValueError, "eps"),
    ({"eps": float("nan")}, ValueError, "eps"),
])
def test_forward_bad_arguments(kwargs, exc, match):
    x, gamma, beta = _args()
    args = {"x": x, "gamma": gamma, "beta": beta, **kwargs}
    with pytest.raises(exc, match=match):
        ops.batchnorm_forward(args.pop("x"), args.pop("gamma"), args.pop("beta"), **args)


@pytest.mark.parametrize("bad,exc,match", [
    ([0.0, 0.0, 0.0], TypeError, "running_mean must be a numpy array"),
    (np.zeros(3, np.float64), TypeError, "running_mean must have dtype float32"),
    (np.zeros(4, np.float32), ValueError, r"running_mean must have shape \(3,\)"),
    (np.zeros(6, np.float32)[::2], ValueError, "running_mean must be C-contiguous"),
    ("readonly", ValueError, "running_mean is read-only"),
])
def test_running_statistics_must_be_writable_buffers_in_training(bad, exc, match):
    x, gamma, beta = _args()
    if isinstance(bad, str):
        bad = np.zeros(3, np.float32)
        bad.flags.writeable = False
    rv = np.ones(3, np.float32)
    with pytest.raises(exc, match=match):
        ops.batchnorm_forward(x, gamma, beta, bad, rv)
    assert np.array_equal(rv, np.ones(3, np.float32))  # nothing half-updated
    rm = np.zeros(3, np.float32)
    with pytest.raises(exc, match=match.replace("running_mean", "running_var")):
        ops.batchnorm_forward(x, gamma, beta, rm, bad)
    assert np.array_equal(rm, np.zeros(3, np.float32))


def test_backward_bad_arguments(rng):
    x, gamma, beta = make(rng, 5, 3, np.float32)
    out = ops.batchnorm_forward(x, gamma, beta)
    gy = np.ones((5, 3), np.float32)
    with pytest.raises(ValueError, match="grad_out must have shape"):
        ops.batchnorm_backward(np.ones((5, 4), np.float32), x, gamma, out.mean, out.invstd)
    with pytest.raises(ValueError, match="mean must have shape"):
        ops.batchnorm_backward(gy, x, gamma, np.ones(4, np.float32), out.invstd)
    with pytest.raises(ValueError, match="invstd must have shape"):
        ops.batchnorm_backward(gy, x, gamma, out.mean, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="gamma must have shape"):
        ops.batchnorm_backward(gy, x, np.ones(2, np.float32), out.mean, out.invstd)
    with pytest.raises(TypeError, match="mean"):
        ops.batchnorm_backward(gy, x, gamma, None, out.invstd)
    with pytest.raises(ValueError, match="x must be 2-D"):
        ops.batchnorm_backward(gy, x.reshape(-1), gamma, out.mean, out.invstd)
    with pytest.raises(TypeError, match="grad_gamma"):
        ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd, grad_gamma=np.zeros(3, np.float64))
    with pytest.raises(ValueError, match="grad_x"):
        ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd, grad_x=np.zeros((3, 5), np.float32))
