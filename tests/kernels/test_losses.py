"""ops.mse_loss / huber_loss / binary_cross_entropy_with_logits /
softmax_cross_entropy_with_logits: values against float64 NumPy references, gradients
against the analytic reference and central finite differences, sample weights, extreme
logits, every SIMD path, bitwise determinism over thread counts, PyTorch, and bad input."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import ops

from support import tolerance
from reference import numerical_gradient


# ----------------------------------------------------------------------------- references


def _rows(a):
    a = np.asarray(a, np.float64)
    return a.reshape(-1, 1) if a.ndim == 1 else a


def _weighted_mean(per_sample, w):
    w = np.ones(len(per_sample)) if w is None else np.asarray(w, np.float64)
    return float((w * per_sample).sum() / w.sum())


def mse_ref(pred, target, w=None):
    r = _rows(pred) - _rows(target)
    return _weighted_mean((r ** 2).mean(axis=1), w)


def huber_ref(pred, target, delta=1.0, w=None):
    r = np.abs(_rows(pred) - _rows(target))
    elem = np.where(r <= delta, 0.5 * r ** 2, delta * (r - 0.5 * delta))
    return _weighted_mean(elem.mean(axis=1), w)


def bce_ref(z, t, w=None):
    z, t = _rows(z), _rows(t)
    elem = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return _weighted_mean(elem.mean(axis=1), w)


def logsumexp(z):
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def softmax_ce_ref(z, labels, w=None):
    z = np.asarray(z, np.float64)
    labels = np.asarray(labels)
    if labels.ndim == 1:
        per = logsumexp(z) - z[np.arange(len(z)), labels.astype(np.int64)]
    else:
        per = (labels.astype(np.float64) * (logsumexp(z)[:, None] - z)).sum(axis=1)
    return _weighted_mean(per, w)


def analytic_grad(kind, pred, target, w=None, delta=1.0):
    """d loss / d pred in float64 (the reference the finite differences confirm)."""
    p = np.asarray(pred, np.float64)
    n = p.shape[0]
    w = np.ones(n) if w is None else np.asarray(w, np.float64)
    if kind == "softmax":
        z = p
        soft = np.exp(z - logsumexp(z)[:, None])
        t = np.asarray(target)
        if t.ndim == 1:
            onehot = np.zeros_like(z)
            onehot[np.arange(n), t.astype(np.int64)] = 1.0
            d = soft - onehot
        else:
            t = t.astype(np.float64)
            d = t.sum(axis=1, keepdims=True) * soft - t
        return d * (w / w.sum())[:, None]
    p2, t2 = _rows(p), _rows(target)
    k = p2.shape[1]
    r = p2 - t2
    if kind == "mse":
        d = 2 * r
    elif kind == "huber":
        d = np.where(np.abs(r) <= delta, r, delta * np.sign(r))
    else:  # bce
        d = 1.0 / (1.0 + np.exp(-p2)) - t2
    return (d * (w / w.sum())[:, None] / k).reshape(p.shape)


LOSSES = {
    "mse": (lambda p, t, w=None: ops.mse_loss(p, t, sample_weight=w), mse_ref),
    "huber": (lambda p, t, w=None: ops.huber_loss(p, t, sample_weight=w),
              lambda p, t, w=None: huber_ref(p, t, 1.0, w)),
    "huber_0.3": (lambda p, t, w=None: ops.huber_loss(p, t, delta=0.3, sample_weight=w),
                  lambda p, t, w=None: huber_ref(p, t, 0.3, w)),
    "bce": (lambda p, t, w=None: ops.binary_cross_entropy_with_logits(p, t, sample_weight=w), bce_ref),
}


def make_inputs(name, rng, shape, dtype):
    pred = (2 * rng.standard_normal(shape)).astype(dtype)
    if name == "bce":
        target = rng.uniform(0, 1, shape).astype(dtype)
        target[..., ::3] = np.round(target[..., ::3])  # hard labels too
    else:
        target = (2 * rng.standard_normal(shape)).astype(dtype)
    return pred, target


def grad_kind(name):
    return name.split("_")[0]


def delta_of(name):
    return 0.3 if name == "huber_0.3" else 1.0


ELEMENTWISE_SHAPES = [(1,), (7,), (5, 1), (6, 3), (300, 4), (1100, 2)]


# ----------------------------------------------------------------------------- elementwise losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(LOSSES))
def test_elementwise_loss_matches_reference(simd, name, shape, dtype, rng):
    fn, ref = LOSSES[name]
    pred, target = make_inputs(name, rng, shape, dtype)
    out = fn(pred, target)
    assert isinstance(out.loss, float)
    assert out.grad.dtype == dtype and out.grad.shape == pred.shape
    tol = tolerance(dtype)
    np.testing.assert_allclose(out.loss, ref(pred, target), **tol)
    g_ref = analytic_grad(grad_kind(name), pred, target, delta=delta_of(name))
    # the gradient carries a 1/(N K) factor: compare relative to its own scale
    np.testing.assert_allclose(out.grad, g_ref, rtol=tol["rtol"], atol=tol["atol"] * np.abs(g_ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(LOSSES))
def test_elementwise_loss_with_sample_weights(simd, name, dtype, rng):
    fn, ref = LOSSES[name]
    pred, target = make_inputs(name, rng, (50, 3), dtype)
    w = rng.uniform(0, 3, 50).astype(dtype)
    w[::7] = 0.0
    out = fn(pred, target, w)
    tol = tolerance(dtype)
    np.testing.assert_allclose(out.loss, ref(pred, target, w), **tol)
    g_ref = analytic_grad(grad_kind(name), pred, target, w, delta=delta_of(name))
    np.testing.assert_allclose(out.grad, g_ref, rtol=tol["rtol"], atol=tol["atol"] * np.abs(g_ref).max())
    assert np.all(out.grad[w == 0] == 0)
    # integer weights are repetitions of the rows
    wi = rng.integers(0, 4, 50)
    wi[0] = 1
    rep = fn(np.repeat(pred, wi, axis=0), np.repeat(target, wi, axis=0))
    np.testing.assert_allclose(fn(pred, target, wi.astype(dtype)).loss, rep.loss, **tol)
    # scaling every weight leaves the weighted mean unchanged; unit weights are no weights
    np.testing.assert_allclose(fn(pred, target, w * dtype(8)).loss, out.loss, **tol)
    np.testing.assert_allclose(fn(pred, target, np.ones(50, dtype)).loss, fn(pred, target).loss, **tol)


@pytest.mark.parametrize("name", list(LOSSES))
def test_elementwise_gradient_matches_finite_differences(simd, name, rng):
    fn, _ = LOSSES[name]
    pred, target = make_inputs(name, rng, (6, 3), np.float64)
    if name.startswith("huber"):  # keep residuals off the kink at |r| = delta
        r = pred - target
        pred = np.where(np.abs(np.abs(r) - delta_of(name)) < 1e-3, pred + 0.01, pred)
    w = rng.uniform(0.5, 2, 6)
    for weights in (None, w):
        g = fn(pred, target, weights).grad
        numeric = numerical_gradient(lambda: fn(pred, target, weights).loss, pred)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)


def test_mse_has_no_one_half_and_averages_all_elements():
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    target = np.zeros((2, 2))
    out = ops.mse_loss(pred, target)
    assert out.loss == (1 + 4 + 9 + 25) / 4
    np.testing.assert_array_equal(out.grad, 2 * pred / 4)
    out = ops.mse_loss(pred, target, sample_weight=np.array([1.0, 3.0]))
    assert out.loss == pytest.approx((1 * (1 + 4) / 2 + 3 * (9 + 25) / 2) / 4, rel=1e-15)


def test_huber_regions():
    pred = np.array([0.5, -0.5, 3.0, -3.0, 1.0])
    out = ops.huber_loss(pred, np.zeros(5), delta=1.0)
    elem = np.array([0.125, 0.125, 2.5, 2.5, 0.5])
    assert out.loss == pytest.approx(elem.mean(), rel=1e-15)
    np.testing.assert_allclose(out.grad, np.array([0.5, -0.5, 1.0, -1.0, 1.0]) / 5, rtol=1e-15)
    with pytest.raises(ValueError, match="delta"):
        ops.huber_loss(pred, np.zeros(5), delta=0.0)
    with pytest.raises(ValueError, match="delta"):
        ops.huber_loss(pred, np.zeros(5), delta=float("nan"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_is_stable_for_extreme_logits(simd, dtype):
    z = np.array([[-1e4, 1e4, -100.0, 100.0, -800.0, 800.0, 0.0]], dtype)
    t = np.array([[0.0, 1.0, 1.0, 0.0, 0.5, 0.5, 1.0]], dtype)
    out = ops.binary_cross_entropy_with_logits(z, t)
    per = np.array([0.0, 0.0, 100.0, 100.0, 400.0, 400.0, np.log(2)])
    assert np.isfinite(out.loss)
    assert out.loss == pytest.approx(per.mean(), rel=1e-6 if dtype == np.float32 else 1e-13)
    g = np.array([0.0, 0.0, -1.0, 1.0, -0.5, 0.5, -0.5]) / 7
    assert np.isfinite(out.grad).all()
    np.testing.assert_allclose(out.grad[0], g, rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------------------- softmax cross-entropy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 2), (33, 10), (600, 3)], ids=lambda s: "x".join(map(str, s)))
def test_softmax_ce_matches_reference(simd, shape, dtype, rng):
    n, k = shape
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n).astype(dtype)
    tol = tolerance(dtype)
    for target in (labels, probs):
        out = ops.softmax_cross_entropy_with_logits(z, target)
        assert isinstance(out.loss, float) and out.grad.dtype == dtype and out.grad.shape == shape
        np.testing.assert_allclose(out.loss, softmax_ce_ref(z, target), **tol)
        g_ref = analytic_grad("softmax", z, target)
        np.testing.assert_allclose(out.grad, g_ref, rtol=tol["rtol"], atol=tol["atol"] * np.abs(g_ref).max())
    # one-hot probabilities are the same as the class indices
    onehot = np.eye(k, dtype=dtype)[labels]
    np.testing.assert_allclose(ops.softmax_cross_entropy_with_logits(z, onehot).loss,
                               ops.softmax_cross_entropy_with_logits(z, labels).loss, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_ce_with_sample_weights(simd, dtype, rng):
    n, k = 40, 4
    z = rng.standard_normal((n, k)).astype(dtype)
    labels = rng.integers(0, k, n)
    w = rng.uniform(0, 2, n).astype(dtype)
    w[3] = 0
    out = ops.softmax_cross_entropy_with_logits(z, labels, sample_weight=w)
    tol = tolerance(dtype)
    np.testing.assert_allclose(out.loss, softmax_ce_ref(z, labels, w), **tol)
    g_ref = analytic_grad("softmax", z, labels, w)
    np.testing.assert_allclose(out.grad, g_ref, rtol=tol["rtol"], atol=tol["atol"] * np.abs(g_ref).max())
    assert np.all(out.grad[3] == 0)
    wi = rng.integers(0, 3, n)
    wi[0] = 1
    rep = ops.softmax_cross_entropy_with_logits(np.repeat(z, wi, axis=0), np.repeat(labels, wi))
    np.testing.assert_allclose(ops.softmax_cross_entropy_with_logits(z, labels, wi.astype(dtype)).loss, rep.loss, **tol)


def test_softmax_ce_gradient_matches_finite_differences(simd, rng):
    n, k = 5, 4
    z = rng.standard_normal((n, k))
    w = rng.uniform(0.5, 2, n)
    labels = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    probs[0] *= 0.5  # soft targets need not sum to one: the gradient carries their mass
    for target in (labels, probs):
        for weights in (None, w):
            g = ops.softmax_cross_entropy_with_logits(z, target, weights).grad
            numeric = numerical_gradient(lambda: ops.softmax_cross_entropy_with_logits(z, target, weights).loss, z)
            np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_ce_is_stable_for_logits_of_1e4(simd, dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, -1e4]], dtype)
    labels = np.array([1, 0, 2, 0])
    out = ops.softmax_cross_entropy_with_logits(z, labels)
    per = np.array([2e4, 2e4 + np.log(2), np.log(3), np.log(3)])
    assert np.isfinite(out.loss) and np.isfinite(out.grad).all()
    assert out.loss == pytest.approx(per.mean(), rel=1e-6 if dtype == np.float32 else 1e-13)
    g = np.array([[1, -1, 0], [-1, 0.5, 0.5], [1 / 3, 1 / 3, -2 / 3], [-2 / 3, 1 / 3, 1 / 3]]) / 4
    np.testing.assert_allclose(out.grad, g, rtol=1e-6, atol=1e-12)
    right = ops.softmax_cross_entropy_with_logits(z[:1], np.array([0]))
    assert right.loss == 0.0 and np.isfinite(right.grad).all()


def test_softmax_ce_label_dtypes(rng):
    z = rng.standard_normal((6, 3))
    labels = np.array([0, 2, 1, 1, 0, 2])
    ref = ops.softmax_cross_entropy_with_logits(z, labels)
    for variant in (labels.astype(np.int32), labels.astype(np.uint8), labels.astype(np.float64), list(labels)):
        got = ops.softmax_cross_entropy_with_logits(z, variant)
        assert got.loss == ref.loss and np.array_equal(got.grad, ref.grad)


# ----------------------------------------------------------------------------- determinism, layouts


def test_bitwise_identical_for_any_thread_count(simd, rng):
    n = 5000  # 20 row chunks
    pred = rng.standard_normal((n, 3)).astype(np.float32)
    target = rng.standard_normal((n, 3)).astype(np.float32)
    prob_t = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    w = rng.uniform(0, 2, n).astype(np.float32)
    labels = rng.integers(0, 3, n)
    calls = [
        lambda: ops.mse_loss(pred, target, w),
        lambda: ops.huber_loss(pred, target, 0.5),
        lambda: ops.binary_cross_entropy_with_logits(pred, prob_t, w),
        lambda: ops.softmax_cross_entropy_with_logits(pred, labels, w),
        lambda: ops.softmax_cross_entropy_with_logits(pred.astype(np.float64), prob_t),
    ]
    results = []
    for threads in (1, 2, 3):
        with fastnn.threads(threads):
            results.append([call() for call in calls])
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            assert a.loss == b.loss and np.array_equal(a.grad, b.grad)


def test_layouts_and_dtype_conversion(rng):
    pred = rng.standard_normal((20, 4)).astype(np.float32)
    target = rng.standard_normal((20, 4)).astype(np.float32)
    ref = ops.mse_loss(pred, target)
    strided = np.zeros((20, 8), np.float32)
    strided[:, ::2] = pred
    ro = pred.copy()
    ro.flags.writeable = False
    for variant in (np.asfortranarray(pred), strided[:, ::2], ro):
        got = ops.mse_loss(variant, target)
        assert got.loss == ref.loss and np.array_equal(got.grad, ref.grad)
    assert np.array_equal(ro, pred)
    # a float64 target does not change a float32 prediction's dtype; int predictions are float32
    assert ops.mse_loss(pred, target.astype(np.float64)).grad.dtype == np.float32
    assert ops.mse_loss(np.arange(6).reshape(3, 2), np.zeros((3, 2))).grad.dtype == np.float32
    assert ops.mse_loss(pred.astype(np.float64), target).grad.dtype == np.float64


def test_torch_cross_check(rng):
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    n, k = 30, 4
    p = rng.standard_normal((n, k))
    t = rng.standard_normal((n, k))
    prob = rng.uniform(0, 1, (n, k))
    labels = rng.integers(0, k, n)

    def torch_loss(fn, x, *args, **kwargs):
        tx = torch.tensor(x, requires_grad=True)
        loss = fn(tx, *args, **kwargs)
        loss.backward()
        return loss.item(), tx.grad.numpy()

    pairs = [
        (ops.mse_loss(p, t), torch_loss(f.mse_loss, p, torch.tensor(t))),
        (ops.huber_loss(p, t, delta=0.7), torch_loss(f.huber_loss, p, torch.tensor(t), delta=0.7)),
        (ops.binary_cross_entropy_with_logits(p, prob),
         torch_loss(f.binary_cross_entropy_with_logits, p, torch.tensor(prob))),
        (ops.softmax_cross_entropy_with_logits(p, labels), torch_loss(f.cross_entropy, p, torch.tensor(labels))),
        (ops.softmax_cross_entropy_with_logits(p, prob / prob.sum(1, keepdims=True)),
         torch_loss(f.cross_entropy, p, torch.tensor(prob / prob.sum(1, keepdims=True)))),
    ]
    for ours, (t_loss, t_grad) in pairs:
        assert ours.loss == pytest.approx(t_loss, rel=1e-12)
        np.testing.assert_allclose(ours.grad, t_grad, rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- bad input


ELEMENTWISE_FNS = {
    "mse": ops.mse_loss,
    "huber": ops.huber_loss,
    "bce": ops.binary_cross_entropy_with_logits,
}


@pytest.mark.parametrize("name", list(ELEMENTWISE_FNS))
def test_elementwise_bad_inputs(name):
    fn = ELEMENTWISE_FNS[name]
    first = "logits" if name == "bce" else "pred"
    p = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="target must have"):
        fn(p, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="target must have"):
        fn(p, np.zeros(8, np.float32))
    with pytest.raises(ValueError, match=first):
        fn(np.zeros((2, 2, 2), np.float32), np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=first):
        fn(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
    with pytest.raises(TypeError, match=first):
        fn(np.array([["a", "b"]]), np.zeros((1, 2)))
    with pytest.raises(TypeError, match="target"):
        fn(p, None)
    _check_bad_weights(lambda w: fn(p, np.zeros((4, 2), np.float32), sample_weight=w))


def _check_bad_weights(call):
    for bad, exc in [
        (np.array([1.0, -1.0, 1.0, 1.0]), ValueError),
        (np.array([1.0, np.nan, 1.0, 1.0]), ValueError),
        (np.array([1.0, np.inf, 1.0, 1.0]), ValueError),
        (np.zeros(4), ValueError),
        (np.ones(3), ValueError),
        (np.ones((4, 1)), ValueError),
        (np.array(["a"] * 4), TypeError),
    ]:
        with pytest.raises(exc, match="sample_weight"):
            call(bad)


def test_softmax_ce_bad_inputs():
    z = np.zeros((4, 3), np.float32)
    cases = [
        (np.array([0, 1, 3, 0]), ValueError, r"labels must be class indices in \[0, 3\), got 3 at row 2"),
        (np.array([0, -1, 2, 0]), ValueError, r"labels.*got -1 at row 1"),
        (np.array([0.0, 1.5, 2.0, 0.0]), ValueError, "labels must be integers"),
        (np.array([0.0, np.nan, 2.0, 0.0]), ValueError, "labels must be integers"),
        (np.array([0, 1, 2]), ValueError, "labels must have shape"),
        (np.zeros((4, 2)), ValueError, "labels must have shape"),
        (np.zeros((4, 3, 1)), ValueError, "labels must have shape"),
        (np.array(["a", "b", "c", "d"]), TypeError, "labels"),
        (None, TypeError, "labels"),
    ]
    for labels, exc, match in cases:
        with pytest.raises(exc, match=match):
            ops.softmax_cross_entropy_with_logits(z, labels)
    with pytest.raises(ValueError, match="logits must be 2-D"):
        ops.softmax_cross_entropy_with_logits(np.zeros(4), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="logits"):
        ops.softmax_cross_entropy_with_logits(np.zeros((0, 3)), np.zeros(0, np.int64))
    _check_bad_weights(lambda w: ops.softmax_cross_entropy_with_logits(z, np.array([0, 1, 2, 0]), sample_weight=w))
