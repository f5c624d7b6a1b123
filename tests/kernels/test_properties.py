"""Property-based tests (hypothesis): fastnn's kernels, scalers and estimators against
independent references over random shapes (0, 1 and sizes just off the SIMD widths) and
random values, on every SIMD path this CPU has (RELIABILITY.md sections 1, 5 and 6).

* float64 paths are checked against the NumPy float64 reference (tests/reference.py or the
  short references below) to 1e-12 relative to the magnitude of the terms summed;
* float32 paths are checked against the float64 path of the same op on the same
  (float32) inputs, within the error-analysis bound of RELIABILITY section 1: a length-K
  dot product is within ``K u (|x| |w| + |b|)`` (u = 2**-24), plus a few ulps of the
  activation's own rounding -- rigorous, so they never flake, yet an indexing bug (an
  O(1) error) fails them;
* layouts (RELIABILITY N4): non-contiguous, Fortran, negative-stride, zero-stride and
  read-only inputs give bitwise the contiguous result and are never written;
* the scalers agree with scikit-learn's; ``partial_fit`` over any chunking of the rows
  gives the statistics of one ``fit``; ``DNNRegressor.partial_fit`` is deterministic and
  its ``predict`` does not depend on which rows are predicted together.

Every test is derandomized with no example database, so a CI run is reproducible; the
example counts keep the whole file at about 15 s on two cores.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import _core, ops, optim
from fastnn import preprocessing as fpp

import reference as ref
from reference import ACTIVATIONS
from support import SIMD_PATHS, STARTUP_PATH

# hypothesis' failure report imports mypy_extensions, whose DeprecationWarning the
# project's filterwarnings=error would turn into an INTERNALERROR hiding the failure
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

U32 = 2.0 ** -24
U64 = 2.0 ** -53
TOL64 = 1e-12  # "1e-12 relative-ish": relative to the magnitude of the summed terms


def props(examples):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# sizes around the SIMD widths (4 doubles / 8 floats per AVX2 register, 16 floats for
# AVX-512) and the GEMM tiles, plus 0 and 1
DIMS = st.sampled_from([0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 65])
POS_DIMS = st.sampled_from([1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 65])
SEEDS = st.integers(0, 2 ** 32 - 1)
PATHS = st.sampled_from(SIMD_PATHS)
DISTS = st.sampled_from(["normal", "uniform", "wide", "ints"])


@contextlib.contextmanager
def simd_path(name):
    _core._select_path(name)
    try:
        yield
    finally:
        _core._select_path(STARTUP_PATH)


def draw(rng, shape, dist, dtype=np.float64):
    """Random values: normal, uniform in [-2, 2], magnitudes spread over 1e-3..1e3, or
    small integers (exact products, pre-activations exactly at the kinks)."""
    if dist == "normal":
        a = rng.standard_normal(shape)
    elif dist == "uniform":
        a = rng.uniform(-2.0, 2.0, shape)
    elif dist == "wide":
        a = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)
    else:
        a = rng.integers(-3, 4, shape).astype(np.float64)
    return np.asarray(a, dtype=dtype)


def assert_within(actual, expected, bound, what):
    """|actual - expected| <= bound elementwise (a NaN anywhere fails)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    bound = np.broadcast_to(np.asarray(bound, np.float64), actual.shape)
    err = np.abs(actual - expected)
    bad = ~(err <= bound)
    if bad.any():
        ratio = np.where(bad, np.nan_to_num(err / np.maximum(bound, 1e-300), nan=np.inf), 0)
        i = np.unravel_index(np.argmax(ratio), actual.shape)
        raise AssertionError(f"{what}: {bad.sum()} of {bad.size} outside the bound; at {i}: |{actual[i]!r} - "
                             f"{expected[i]!r}| = {err[i]:.3g} > {bound[i]:.3g}")


def lipschitz(act, kw):
    """A bound on |act'|: turns a pre-activation error into an output error."""
    if act == "leaky_relu":
        return max(1.0, kw.get("negative_slope", 0.01))
    if act == "elu":
        return max(1.0, kw.get("alpha", 1.0))
    if act == "prelu":
        return max(1.0, float(np.abs(kw["slope"]).max(initial=0.0)))
    return 1.0


def act_scale(act, kw):
    """The absolute scale of the activation's own rounding: exp-based functions and the
    derivatives read back from their output (1 - y*y, y + alpha) lose a few ulps of 1 or
    alpha, not of the (possibly tiny) result."""
    if act == "elu":
        return kw.get("alpha", 1.0)
    return 1.0 if act in ("sigmoid", "tanh") else 0.0


def derivative_from_output(act, y, z, kw):
    """act' as the kernels compute it: from the forward output y (prelu: from z)."""
    if act == "linear":
        return np.ones_like(y)
    if act == "relu":
        return (y > 0).astype(np.float64)
    if act == "leaky_relu":
        return np.where(y > 0, 1.0, kw.get("negative_slope", 0.01))
    if act == "prelu":
        return np.where(z > 0, 1.0, kw["slope"])
    if act == "elu":
        return np.where(y > 0, 1.0, y + kw.get("alpha", 1.0))
    if act == "sigmoid":
        return y * (1 - y)
    return 1 - y * y


def dense_inputs(rng, n, ic, oc, act, bias, dist):
    x = draw(rng, (n, ic), dist)
    w = draw(rng, (ic, oc), dist) / math.sqrt(max(ic, 1))
    b = draw(rng, (oc,), dist) if bias else None
    kw = ref.activation_kwargs(act, oc, rng)
    return x, w, b, kw


# ----------------------------------------------------------------------------- dense layer


@props(300)
@given(path=PATHS, n=DIMS, ic=DIMS, oc=DIMS, act=st.sampled_from(ACTIVATIONS), bias=st.booleans(), dist=DISTS,
       seed=SEEDS)
def test_dense_float64_matches_reference(path, n, ic, oc, act, bias, dist, seed):
    rng = np.random.default_rng(seed)
    x, w, b, kw = dense_inputs(rng, n, ic, oc, act, bias, dist)
    gy = rng.standard_normal((n, oc))
    with simd_path(path):
        z = np.empty((n, oc))
        y = ops.dense_forward(x, w, b, act, preact_out=z, **kw)
        g = ops.dense_backward(gy, x, w, y, act, preact=z, bias=bias, **kw)
    y_ref, z_ref = ref.dense_forward(x, w, b, act, **kw)
    mag = np.abs(x) @ np.abs(w) + (0 if b is None else np.abs(b))
    assert y.dtype == np.float64 and y.shape == (n, oc)
    assert_within(z, z_ref, TOL64 * mag, "z")
    assert_within(y, y_ref, TOL64 * (lipschitz(act, kw) * mag + np.abs(y_ref) + act_scale(act, kw)), "y")
    # the reference derivative at the kernel's own z: a z at a kink cannot flip between them
    dx, dw, db, dslope = ref.dense_backward(gy, x, w, z, act, **kw)
    dz_mag = np.abs(gy) * (np.abs(ref.act_derivative(act, z, **kw)) + act_scale(act, kw))
    assert_within(g.dx, dx, TOL64 * (dz_mag @ np.abs(w).T), "dx")
    assert_within(g.dw, dw, TOL64 * (np.abs(x).T @ dz_mag), "dw")
    if bias:
        assert_within(g.db, db, TOL64 * dz_mag.sum(axis=0), "db")
    else:
        assert g.db is None
    if act == "prelu":
        assert_within(g.dslope, dslope, TOL64 * (np.abs(gy) * np.abs(np.minimum(z, 0))).sum(axis=0), "dslope")
    if n == 0:
        assert not g.dw.any() and (g.db is None or not g.db.any())


@props(300)
@given(path=PATHS, n=DIMS, ic=DIMS, oc=DIMS, act=st.sampled_from(ACTIVATIONS), bias=st.booleans(), dist=DISTS,
       seed=SEEDS)
def test_dense_float32_within_error_bound_of_float64(path, n, ic, oc, act, bias, dist, seed):
    """RELIABILITY section 1: |y32 - y64| <= K u (|x| |w| + |b|) + activation ulps, with the
    float64 path run on the same float32 inputs. The backward gets the same forward output
    (and pre-activation) in both precisions, so only its own rounding is measured:
    ``dx`` sums OC products, ``dw``/``db``/``dslope`` sum N."""
    rng = np.random.default_rng(seed)
    x, w, b, kw = dense_inputs(rng, n, ic, oc, act, bias, dist)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    b32 = None if b is None else b.astype(np.float32)
    kw32 = {k: np.asarray(v, np.float32) if k == "slope" else v for k, v in kw.items()}
    kw64 = {k: np.asarray(v, np.float32).astype(np.float64) if k == "slope" else v for k, v in kw.items()}
    x64, w64 = x32.astype(np.float64), w32.astype(np.float64)
    b64 = None if b32 is None else b32.astype(np.float64)
    gy32 = rng.standard_normal((n, oc)).astype(np.float32)
    with simd_path(path):
        z32, z64 = np.empty((n, oc), np.float32), np.empty((n, oc))
        y32 = ops.dense_forward(x32, w32, b32, act, preact_out=z32, **kw32)
        y64 = ops.dense_forward(x64, w64, b64, act, preact_out=z64, **kw64)
        g32 = ops.dense_backward(gy32, x32, w32, y32, act, preact=z32, bias=bias, **kw32)
        g64 = ops.dense_backward(gy32.astype(np.float64), x64, w64, y32.astype(np.float64), act,
                                 preact=z32.astype(np.float64), bias=bias, **kw64)
    assert y32.dtype == np.float32 and y32.shape == (n, oc)
    mag = np.abs(x64) @ np.abs(w64) + (0 if b64 is None else np.abs(b64))
    assert_within(z32, z64, (ic + 2) * U32 * mag, "z32")
    bound = lipschitz(act, kw64) * (ic + 2) * U32 * mag + 8 * U32 * (np.abs(y64) + act_scale(act, kw64))
    assert_within(y32, y64, bound, "y32")
    d = derivative_from_output(act, y32.astype(np.float64), z32.astype(np.float64), kw64)
    dz_mag = np.abs(gy32.astype(np.float64)) * (np.abs(d) + act_scale(act, kw64))
    assert_within(g32.dx, g64.dx, (oc + 8) * U32 * (dz_mag @ np.abs(w64).T), "dx32")
    assert_within(g32.dw, g64.dw, (n + 8) * U32 * (np.abs(x64).T @ dz_mag), "dw32")
    if bias:
        assert_within(g32.db, g64.db, (n + 8) * U32 * dz_mag.sum(axis=0), "db32")
    if act == "prelu":
        zneg = np.abs(np.minimum(z32.astype(np.float64), 0))
        assert_within(g32.dslope, g64.dslope, (n + 8) * U32 * (np.abs(gy32) * zneg).sum(axis=0), "dslope32")


# ----------------------------------------------------------------------------- batch norm


def batchnorm_data(rng, n, c, dist):
    """Columns with an offset up to 10 standard deviations (well-conditioned variances),
    some exactly constant."""
    loc = rng.uniform(-10, 10, c)
    x = loc + draw(rng, (n, c), dist)
    const = rng.random(c) < 0.2
    x[:, const] = loc[const]
    return x


@props(200)
@given(path=PATHS, n=st.sampled_from([2, 3, 5, 8, 9, 17, 33, 65, 300]), c=POS_DIMS, dist=DISTS,
       momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]), eps=st.sampled_from([1e-3, 1e-5, 1.0]), seed=SEEDS)
def test_batchnorm_float64_matches_reference(path, n, c, dist, momentum, eps, seed):
    rng = np.random.default_rng(seed)
    x = batchnorm_data(rng, n, c, dist)
    gamma, beta = rng.uniform(-2, 2, c), rng.uniform(-2, 2, c)
    rm0, rv0 = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    rm, rv = rm0.copy(), rv0.copy()
    gy = rng.standard_normal((n, c))
    with simd_path(path):
        out = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=True, momentum=momentum, eps=eps)
        g = ops.batchnorm_backward(gy, x, gamma, out.mean, out.invstd)
        inference = ops.batchnorm_forward(x, gamma, beta, rm, rv, training=False, eps=eps).y
    mean, var = x.mean(axis=0), x.var(axis=0)
    scale = np.abs(x).max(axis=0)
    assert_within(out.mean, mean, TOL64 * scale, "mean")
    invstd = 1.0 / np.sqrt(var + eps)
    # a variance of values up to 10 sd off center loses up to ~100 n eps relatively
    assert_within(out.invstd, invstd, 1e-10 * invstd, "invstd")
    xhat = (x - mean) * invstd
    assert_within(out.y, gamma * xhat + beta, 1e-10 * (np.abs(gamma) * (np.abs(xhat) + 1) + np.abs(beta)), "y")
    # running statistics: Keras momentum (weight of the old value), unbiased running variance
    assert_within(rm, momentum * rm0 + (1 - momentum) * mean, TOL64 * (np.abs(rm0) + scale), "running_mean")
    assert_within(rv, momentum * rv0 + (1 - momentum) * var * n / (n - 1), 1e-10 * (rv0 + var * n / (n - 1)),
                  "running_var")
    r_invstd = 1.0 / np.sqrt(rv + eps)
    assert_within(inference, gamma * (x - rm) * r_invstd + beta,
                  1e-12 * (np.abs(gamma) * (np.abs(x) + np.abs(rm)) * r_invstd + np.abs(beta)), "inference y")
    # backward with the kernel's own statistics
    xh = (x - out.mean) * out.invstd
    dbeta, dgamma = gy.sum(axis=0), (gy * xh).sum(axis=0)
    dx = gamma * out.invstd / n * (n * gy - dbeta - xh * dgamma)
    assert_within(g.dbeta, dbeta, TOL64 * np.abs(gy).sum(axis=0), "dbeta")
    assert_within(g.dgamma, dgamma, TOL64 * np.abs(gy * xh).sum(axis=0), "dgamma")
    dx_mag = np.abs(gamma * out.invstd / n) * (n * np.abs(gy) + np.abs(gy).sum(axis=0) +
                                               np.abs(xh) * np.abs(gy * xh).sum(axis=0))
    assert_within(g.dx, dx, TOL64 * dx_mag, "dx")


@props(150)
@given(path=PATHS, n=st.sampled_from([2, 3, 7, 9, 17, 33, 65]), c=POS_DIMS, dist=DISTS, seed=SEEDS)
def test_batchnorm_float32_within_bound_of_float64(path, n, c, dist, seed):
    """The statistics accumulate in float64 in both precisions, so float32 adds only the
    rounding of the inputs' products and of the elementwise normalization: a few ulps of
    ``|gamma| (|xhat| + 1) + |beta|`` (forward) and of the backward's terms."""
    rng = np.random.default_rng(seed)
    x32 = batchnorm_data(rng, n, c, dist).astype(np.float32)
    gamma32, beta32 = rng.uniform(-2, 2, c).astype(np.float32), rng.uniform(-2, 2, c).astype(np.float32)
    gy32 = rng.standard_normal((n, c)).astype(np.float32)
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    with simd_path(path):
        o32 = ops.batchnorm_forward(x32, gamma32, beta32)
        o64 = ops.batchnorm_forward(f64(x32), f64(gamma32), f64(beta32))
        g32 = ops.batchnorm_backward(gy32, x32, gamma32, o32.mean, o32.invstd)
        g64 = ops.batchnorm_backward(f64(gy32), f64(x32), f64(gamma32), f64(o32.mean), f64(o32.invstd))
    assert o32.y.dtype == np.float32
    xhat = (f64(x32) - o64.mean) * o64.invstd
    assert_within(o32.mean, o64.mean, 2 * U32 * np.abs(f64(x32)).max(axis=0), "mean32")
    assert_within(o32.invstd, o64.invstd, 4 * U32 * o64.invstd, "invstd32")
    bound = 16 * U32 * (np.abs(f64(gamma32)) * (np.abs(xhat) + 1) + np.abs(f64(beta32)))
    assert_within(o32.y, o64.y, bound, "y32")
    xh = (f64(x32) - f64(o32.mean)) * f64(o32.invstd)
    gy = np.abs(f64(gy32))
    assert_within(g32.dbeta, g64.dbeta, (n + 8) * U32 * gy.sum(axis=0), "dbeta32")
    assert_within(g32.dgamma, g64.dgamma, (n + 8) * U32 * (gy * (np.abs(xh) + 1)).sum(axis=0), "dgamma32")
    dx_mag = np.abs(f64(gamma32) * f64(o32.invstd) / n) * (
        n * gy + gy.sum(axis=0) + (np.abs(xh) + 1) * (gy * (np.abs(xh) + 1)).sum(axis=0))
    assert_within(g32.dx, g64.dx, (n + 16) * U32 * dx_mag, "dx32")


# ----------------------------------------------------------------------------- losses


def loss_reference(kind, p, t, w, delta):
    """(loss, grad, per-term magnitude) in float64 for (N, K) predictions."""
    n, k = p.shape
    wn = w / w.sum()
    if kind == "softmax_index":
        t = np.eye(k)[t]
    if kind.startswith("softmax"):
        m = p.max(axis=1, keepdims=True)
        e = np.exp(p - m)
        s = e / e.sum(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(e.sum(axis=1))
        per = (t * (lse[:, None] - p)).sum(axis=1)
        grad = (t.sum(axis=1, keepdims=True) * s - t) * wn[:, None]
        mag = (np.abs(t) * (np.abs(m) + np.abs(p) + np.log(k) + 1)).sum(axis=1) + np.abs(m[:, 0])
        gmag = (np.abs(t).sum(axis=1, keepdims=True) + np.abs(t) + 1) * wn[:, None]
        return float((wn * per).sum()), grad, wn * mag, gmag
    r = p - t
    if kind == "mse":
        terms, grad, mag, gmag = r * r, 2 * r, r * r, 2 * (np.abs(p) + np.abs(t))
    elif kind == "huber":
        a = np.abs(r)
        terms = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
        grad, mag, gmag = np.clip(r, -delta, delta), np.abs(terms) + delta * a, np.abs(p) + np.abs(t)
    else:
        terms = np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))
        e = np.exp(-np.abs(p))
        s = np.where(p >= 0, 1 / (1 + e), e / (1 + e))
        grad, mag, gmag = s - t, np.abs(p) * (1 + np.abs(t)) + 1, 1 + np.abs(t)
    scale = (wn / k)[:, None]
    return float((terms * scale).sum()), grad * scale, mag * scale, gmag * scale


def call_loss(kind, p, t, w, delta):
    if kind == "mse":
        return ops.mse_loss(p, t, sample_weight=w)
    if kind == "huber":
        return ops.huber_loss(p, t, delta=delta, sample_weight=w)
    if kind == "bce":
        return ops.binary_cross_entropy_with_logits(p, t, sample_weight=w)
    return ops.softmax_cross_entropy_with_logits(p, t, sample_weight=w)


LOSS_KINDS = st.sampled_from(["mse", "huber", "bce", "softmax_index", "softmax_prob"])


@st.composite
def loss_cases(draw_, dtype):
    kind = draw_(LOSS_KINDS)
    n, k = draw_(POS_DIMS), draw_(POS_DIMS)
    one_d = kind in ("mse", "huber", "bce") and draw_(st.booleans())
    weighted = draw_(st.booleans())
    seed, dist = draw_(SEEDS), draw_(DISTS)
    rng = np.random.default_rng(seed)
    p = draw(rng, (n, 1 if one_d else k), dist, dtype)
    if kind == "softmax_index":
        t = rng.integers(0, k, n)
    elif kind == "softmax_prob":
        t = rng.dirichlet(np.ones(k), n).astype(dtype)
    elif kind == "bce":
        t = rng.integers(0, 2, p.shape).astype(dtype) if draw_(st.booleans()) else rng.random(p.shape).astype(dtype)
    else:
        t = draw(rng, p.shape, dist, dtype)
    w = None
    if weighted:
        w = rng.uniform(0, 3, n).astype(dtype)
        w[rng.random(n) < 0.2] = 0
        w[0] = max(w[0], 0.5)
    delta = draw_(st.sampled_from([1.0, 0.3, 2.5]))
    if one_d:
        p, t = p[:, 0], t[:, 0]
    return kind, p, t, w, delta


@props(250)
@given(path=PATHS, case=loss_cases(np.float64))
def test_losses_float64_match_reference(path, case):
    kind, p, t, w, delta = case
    with simd_path(path):
        out = call_loss(kind, p, t, w, delta)
    p2 = p.reshape(p.shape[0], -1)
    t2 = t if kind == "softmax_index" else t.reshape(p2.shape)
    wv = np.ones(p2.shape[0]) if w is None else w
    loss, grad, mag, gmag = loss_reference(kind, p2, t2, wv, delta)
    assert isinstance(out.loss, float) and out.grad.shape == p.shape and out.grad.dtype == np.float64
    assert_within(out.loss, loss, TOL64 * (mag.sum() + 1e-300), f"{kind} loss")
    assert_within(out.grad.reshape(p2.shape), grad, TOL64 * gmag, f"{kind} grad")


@props(200)
@given(path=PATHS, case=loss_cases(np.float32))
def test_losses_float32_within_bound_of_float64(path, case):
    """A weighted mean of N K terms: the sum loses at most (N K) u of the sum of the
    terms' magnitudes (any summation order), each term a few ulps of its own magnitude."""
    kind, p, t, w, delta = case
    f64 = lambda a: None if a is None else (a if a.dtype.kind == "i" else a.astype(np.float64))  # noqa: E731
    with simd_path(path):
        o32 = call_loss(kind, p, t, w, delta)
        o64 = call_loss(kind, f64(p), f64(t), f64(w), delta)
    assert o32.grad.dtype == np.float32
    p2 = f64(p).reshape(p.shape[0], -1)
    wv = np.ones(p2.shape[0]) if w is None else f64(w)
    _, _, mag, gmag = loss_reference(kind, p2, f64(t) if kind == "softmax_index" else f64(t).reshape(p2.shape),
                                     wv, delta)
    assert_within(o32.loss, o64.loss, (p2.size + 16) * U32 * mag.sum() + 1e-300, f"{kind} loss32")
    assert_within(o32.grad.reshape(p2.shape), o64.grad.reshape(p2.shape), 16 * U32 * gmag, f"{kind} grad32")


# ----------------------------------------------------------------------------- optimizers

OPTIMIZERS = {
    "sgd": ("sgd", {"momentum": 0.0}),
    "momentum": ("sgd", {"momentum": 0.9}),
    "nesterov": ("sgd", {"momentum": 0.8, "nesterov": True}),
    "adagrad": ("adagrad", {"eps": 1e-7}),
    "adam": ("adam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-7}),
    "adamw": ("adam", {"beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.05}),
    "rmsprop": ("rmsprop", {"rho": 0.9, "eps": 1e-7}),
    "rmsprop_centered_momentum": ("rmsprop", {"rho": 0.8, "eps": 1e-6, "momentum": 0.5, "centered": True}),
}


def numpy_step(kind, h, p, g, s, t, mask):
    """The published update rules in ten-odd lines of NumPy (params and state in place)."""
    lr, l1, l2 = h["lr"], h.get("l1", 0.0), h.get("l2", 0.0)
    g = g + np.where(mask, l1 * np.sign(p) + 2 * l2 * p, 0.0)  # the penalty's gradient, on weights only
    if kind == "sgd":
        mu = h.get("momentum", 0.0)
        if mu:
            s["velocity"][:] = mu * s["velocity"] + g
        p -= lr * ((g + mu * s["velocity"] if h.get("nesterov") else s["velocity"]) if mu else g)
    elif kind == "adagrad":
        s["accumulator"] += g * g
        p -= lr * g / (np.sqrt(s["accumulator"]) + h["eps"])
    elif kind == "adam":
        p -= np.where(mask, lr * h.get("weight_decay", 0.0) * p, 0.0)  # AdamW: decoupled, first
        s["m"][:] = h["beta1"] * s["m"] + (1 - h["beta1"]) * g
        s["v"][:] = h["beta2"] * s["v"] + (1 - h["beta2"]) * g * g
        p -= lr / (1 - h["beta1"] ** t) * s["m"] / (np.sqrt(s["v"]) / np.sqrt(1 - h["beta2"] ** t) + h["eps"])
    else:
        rho = h["rho"]
        s["square_avg"][:] = rho * s["square_avg"] + (1 - rho) * g * g
        avg = s["square_avg"]
        if h.get("centered"):
            s["grad_avg"][:] = rho * s["grad_avg"] + (1 - rho) * g
            avg = avg - s["grad_avg"] ** 2
        d = g / (np.sqrt(avg) + h["eps"])
        if h.get("momentum", 0.0):
            s["momentum_buffer"][:] = h["momentum"] * s["momentum_buffer"] + d
            d = s["momentum_buffer"]
        p -= lr * d


def magnitude_step(kind, h, p, g, s, t, mask):
    """The same recurrence on magnitudes (every difference becomes a sum, centred RMSProp's
    ``sq - ga**2`` is charged its cancellation): first-order running error analysis, the
    accumulated rounding of the real update is within a few u of these magnitudes."""
    lr, l1, l2 = h["lr"], h.get("l1", 0.0), h.get("l2", 0.0)
    a = np.abs(g) + np.where(mask, l1 + 2 * l2 * p, 0.0)
    if kind == "sgd":
        mu = h.get("momentum", 0.0)
        if mu:
            s["velocity"][:] = mu * s["velocity"] + a
        return lr * ((a + mu * s["velocity"]) if mu else a)
    if kind == "adagrad":
        return lr * a / (np.sqrt(s["accumulator"]) + h["eps"])
    if kind == "adam":
        s["m"][:] = h["beta1"] * s["m"] + (1 - h["beta1"]) * a
        denom = np.sqrt(s["v"]) / np.sqrt(1 - h["beta2"] ** t) + h["eps"]
        return lr * h.get("weight_decay", 0.0) * p + lr / (1 - h["beta1"] ** t) * s["m"] / denom
    sq = s["square_avg"]
    avg, cond = sq, 1.0
    if h.get("centered"):
        avg = sq - s["grad_avg"] ** 2
        cond = 1 + (sq + s["grad_avg"] ** 2) / np.maximum(avg, 1e-300)
    d = a * cond / (np.sqrt(avg) + h["eps"])
    if h.get("momentum", 0.0):
        s["momentum_buffer"][:] = h["momentum"] * s["momentum_buffer"] + d
        d = s["momentum_buffer"]
    return lr * d


def fastnn_step(kind, h, p, g, s, t, mask):
    kw = {k: v for k, v in h.items() if k != "lr"}
    kw["weight_mask"] = mask
    if kind == "sgd":
        ops.sgd_update(p, g, h["lr"], velocity=s.get("velocity"), **kw)
    elif kind == "adagrad":
        ops.adagrad_update(p, g, s["accumulator"], h["lr"], **kw)
    elif kind == "adam":
        ops.adam_update(p, g, s["m"], s["v"], t, h["lr"], **kw)
    else:
        ops.rmsprop_update(p, g, s["square_avg"], h["lr"], momentum_buffer=s.get("momentum_buffer"),
                           grad_avg=s.get("grad_avg"), **kw)


def new_state(kind, h, n, dtype):
    names = {"sgd": ["velocity"] if h.get("momentum") else [], "adagrad": ["accumulator"], "adam": ["m", "v"],
             "rmsprop": ["square_avg"] + (["momentum_buffer"] if h.get("momentum") else []) +
             (["grad_avg"] if h.get("centered") else [])}[kind]
    return {k: np.full(n, 0.1 if k == "accumulator" else 0.0, dtype) for k in names}


@st.composite
def optimizer_cases(draw_):
    name = draw_(st.sampled_from(sorted(OPTIMIZERS)))
    kind, h = OPTIMIZERS[name]
    h = dict(h, lr=draw_(st.sampled_from([1e-3, 0.05, 0.5])))
    if draw_(st.booleans()):
        h.update(l1=draw_(st.sampled_from([0.0, 1e-3])), l2=draw_(st.sampled_from([0.0, 1e-2])))
    return kind, h, draw_(DIMS), draw_(st.integers(1, 4)), draw_(st.booleans()), draw_(SEEDS)


@props(250)
@given(path=PATHS, case=optimizer_cases())
def test_optimizer_float64_matches_numpy(path, case):
    kind, h, n, steps, masked, seed = case
    rng = np.random.default_rng(seed)
    p, mask = rng.standard_normal(n), (rng.random(n) < 0.7 if masked else np.ones(n, bool))
    p_ref, s, s_ref = p.copy(), new_state(kind, h, n, np.float64), new_state(kind, h, n, np.float64)
    scale, gmax = np.abs(p).copy(), np.zeros(n)
    with simd_path(path):
        for t in range(1, steps + 1):
            g = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 1)
            before = p_ref.copy()
            fastnn_step(kind, h, p, g, s, t, mask if masked else None)
            numpy_step(kind, h, p_ref, g, s_ref, t, mask)
            scale += np.abs(p_ref - before)
            gmax = np.maximum(gmax, np.abs(g) + 1)
    # relative to the summed magnitudes: centred RMSProp's sq - ga**2 and the momentum
    # buffers may cancel, so the bound is in units of what was added, not of the result
    assert_within(p, p_ref, 1e-11 * (scale + np.abs(p_ref)), f"{kind} params")
    for k in s:
        assert_within(s[k], s_ref[k], 1e-11 * (np.abs(s_ref[k]) + gmax * gmax), f"{kind} {k}")


@props(200)
@given(path=PATHS, case=optimizer_cases())
def test_optimizer_float32_within_bound_of_float64(path, case):
    """Each step rounds every product and sum once: the float32 parameters stay within a
    few u of the magnitudes the updates were built from (``magnitude_step``), accumulated
    over the steps, of the float64 kernel's."""
    kind, h, n, steps, masked, seed = case
    rng = np.random.default_rng(seed)
    p32 = rng.standard_normal(n).astype(np.float32)
    mask = rng.random(n) < 0.7 if masked else None
    p64 = p32.astype(np.float64)
    s32, s64 = new_state(kind, h, n, np.float32), new_state(kind, h, n, np.float64)
    smag = new_state(kind, h, n, np.float64)
    bound = np.abs(p64).copy()
    with simd_path(path):
        for t in range(1, steps + 1):
            g32 = (rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 1)).astype(np.float32)
            fastnn_step(kind, h, p32, g32, s32, t, mask)
            fastnn_step(kind, h, p64, g32.astype(np.float64), s64, t, mask)
            for k in ("accumulator", "v", "square_avg", "grad_avg"):  # positive or exact: read, not bounded
                if k in smag:
                    smag[k] = s64[k].copy()
            bound += magnitude_step(kind, h, np.abs(p64), g32.astype(np.float64), smag, t,
                                    np.ones(n, bool) if mask is None else mask) + np.abs(p64)
    assert_within(p32, p64, 32 * U32 * bound, f"{kind} params32")


@pytest.mark.parametrize("beta2", [0.999, 0.9999])
def test_float32_adam_rounds_one_minus_beta_once(beta2):
    """At step 1 Adam's bias corrections cancel exactly (m_hat = g, v_hat = g**2): the
    float32 step must agree with the float64 one to a few float32 roundings."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal(64).astype(np.float32)
    p = rng.standard_normal(64).astype(np.float32)
    p32, p64 = p.copy(), p.astype(np.float64)
    ops.adam_update(p32, g, np.zeros(64, np.float32), np.zeros(64, np.float32), 1, 1.0, beta2=beta2)
    ops.adam_update(p64, g.astype(np.float64), np.zeros(64), np.zeros(64), 1, 1.0, beta2=beta2)
    assert_within(p32, p64, 8 * U32 * (np.abs(p64) + np.abs(p64 - p)), "float32 Adam step")


# ----------------------------------------------------------------------------- clipping


@st.composite
def gradient_lists(draw_):
    seed = draw_(SEEDS)
    rng = np.random.default_rng(seed)
    count = draw_(st.integers(1, 4))
    dtypes = [draw_(st.sampled_from([np.float32, np.float64])) for _ in range(count)]
    sizes = [draw_(DIMS) for _ in range(count)]
    big = draw_(st.sampled_from([1.0, 1e-30, 1e20]))  # 1e20 squared overflows float32, not float64
    grads = [(rng.standard_normal(s) * big * 10.0 ** rng.uniform(-1, 1)).astype(d) for s, d in zip(sizes, dtypes)]
    special = draw_(st.sampled_from([None, None, None, np.nan, np.inf, 0.0]))
    if special is not None and sum(sizes):
        i = next(j for j, s in enumerate(sizes) if s)
        grads[i][rng.integers(sizes[i])] = special
        if special == 0.0:
            for gr in grads:
                gr[...] = 0
    ratio = draw_(st.sampled_from([0.0, 0.1, 0.5, 0.999, 1.0, 2.0]))
    return grads, ratio


@props(250)
@given(path=PATHS, case=gradient_lists())
def test_clip_by_global_norm(path, case):
    grads, ratio = case
    before = [g.copy() for g in grads]
    norm_ref = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in before))
    max_norm = ratio * norm_ref if math.isfinite(norm_ref) else 1.0
    with simd_path(path):
        norm = optim.clip_by_global_norm(grads, max_norm)
    if not math.isfinite(norm_ref):
        assert not math.isfinite(norm)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(grads, before)), "non-finite norm: grads changed"
        return
    assert math.isfinite(norm), "float64 accumulation keeps the norm of finite float32 gradients finite"
    assert abs(norm - norm_ref) <= TOL64 * norm_ref
    if not norm > max_norm:
        assert all(a.tobytes() == b.tobytes() for a, b in zip(grads, before)), "clipped below max_norm"
        return
    factor = max_norm / norm
    for a, b in zip(grads, before):  # exactly one factor for all, rounded once to each dtype
        np.testing.assert_array_equal(a, b * b.dtype.type(factor))
    clipped = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    assert clipped <= max_norm * (1 + 4 * U32) + 1e-300


# ----------------------------------------------------------------------------- layouts (N4)


def relayout(a, layout):
    """``a``'s values in another memory layout (``broadcast`` changes the values: every row
    is row 0; compare with its contiguous copy)."""
    if layout == "strided":
        big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "transposed":
        return a.T.copy().T
    if layout == "negative":
        flip = tuple(slice(None, None, -1) for _ in a.shape)
        return a[flip].copy()[flip]
    if layout == "broadcast":
        return np.broadcast_to(a[:1], a.shape) if a.ndim and a.shape[0] else a
    out = a.copy()
    out.flags.writeable = False
    return out


LAYOUT_OPS = ["dense_forward", "dense_backward", "activation_forward", "activation_backward", "batchnorm_forward",
              "batchnorm_backward", "dropout_forward", "dropout_backward", "mse", "softmax", "scaler"]


def run_op(op, arrays, act, kw):
    x, w, b, gy = arrays["x"], arrays["w"], arrays["b"], arrays["gy"]
    if op == "dense_forward":
        return [ops.dense_forward(x, w, b, act, **kw)]
    if op == "dense_backward":
        return list(ops.dense_backward(gy, x, w, arrays["y"], act, preact=arrays["z"], **kw))
    if op == "activation_forward":
        return [ops.activation_forward(x, act, **kw)]
    if op == "activation_backward":
        return list(ops.activation_backward(arrays["xo"], arrays["xo"], act, preact=x, **kw))
    if op == "batchnorm_forward":
        return list(ops.batchnorm_forward(x, arrays["gamma"], arrays["beta"]))[:3]
    if op == "batchnorm_backward":
        return list(ops.batchnorm_backward(arrays["xo"], x, arrays["gamma"], arrays["gamma"], arrays["gamma"]))
    if op == "dropout_forward":
        return list(ops.dropout_forward(x, 0.3, seed=11, step=5))
    if op == "dropout_backward":
        return [ops.dropout_backward(x, 0.3, seed=11, step=5)]
    if op == "mse":
        return list(ops.mse_loss(x, arrays["xo"]))
    if op == "softmax":
        return list(ops.softmax_cross_entropy_with_logits(x, arrays["xo"]))
    return [fpp.StandardScaler().fit(x).transform(arrays["xo"]), fpp.RobustScaler().fit_transform(x)]


@props(400)
@given(path=PATHS, op=st.sampled_from(LAYOUT_OPS),
       layout=st.sampled_from(["strided", "fortran", "transposed", "negative", "broadcast", "readonly"]),
       which=st.sampled_from(["x", "all"]), n=st.sampled_from([2, 3, 8, 9, 17, 33]), ic=POS_DIMS, oc=POS_DIMS,
       act=st.sampled_from(ACTIVATIONS), dtype=st.sampled_from([np.float32, np.float64]),
       threads=st.sampled_from([1, 2]), seed=SEEDS)
def test_layouts_give_bitwise_the_contiguous_result(path, op, layout, which, n, ic, oc, act, dtype, threads, seed):
    """RELIABILITY N4: a non-contiguous / Fortran / negative-stride / zero-stride / read-only
    input gives bitwise what its contiguous copy gives (on another thread count, too: the
    kernels promise thread-count independence) and is never written."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal
    arrays = {"x": c((n, ic)), "w": c((ic, oc)) / math.sqrt(ic), "b": c(oc), "gy": c((n, oc)), "xo": c((n, ic)),
              "gamma": rng.uniform(0.5, 2, ic), "beta": c(ic)}
    if op == "softmax":
        arrays["xo"] = rng.dirichlet(np.ones(ic), n)
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    kw = ref.activation_kwargs(act, oc if op.startswith("dense") else ic, rng)
    if "slope" in kw:
        kw["slope"] = kw["slope"].astype(dtype)
    if op == "dense_backward":
        z = np.empty((n, oc), dtype)
        arrays["y"] = ops.dense_forward(arrays["x"], arrays["w"], arrays["b"], act, preact_out=z, **kw)
        arrays["z"] = z
    moved = {k: relayout(v, layout) if (which == "all" or k == "x") else v for k, v in arrays.items()}
    contiguous = {k: np.ascontiguousarray(v) for k, v in moved.items()}  # broadcast: the materialized values
    snapshot = {k: v.tobytes() for k, v in moved.items()}
    with simd_path(path):
        with fastnn.threads(1):
            expected = run_op(op, contiguous, act, kw)
        with fastnn.threads(threads):
            got = run_op(op, moved, act, kw)
    for e, g in zip(expected, got):
        if e is None:
            assert g is None
        elif isinstance(e, float):
            assert e == g or (math.isnan(e) and math.isnan(g))
        else:
            assert e.dtype == g.dtype and e.shape == g.shape
            assert e.tobytes() == g.tobytes(), f"{op} with {layout} input differs from the contiguous result"
    for k, v in moved.items():
        assert v.tobytes() == snapshot[k], f"{op} wrote into its input {k} ({layout})"


@pytest.mark.parametrize("n", [64, 300])
def test_dense_forward_out_aliasing_an_input(n):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n)).astype(np.float32)
    w = rng.standard_normal((n, n)).astype(np.float32)
    expected = ops.dense_forward(x, w)
    try:
        y = ops.dense_forward(x, w, out=x)
    except ValueError as exc:
        assert "out" in str(exc)
        return
    np.testing.assert_array_equal(y, expected)


@props(100)
@given(shape=st.lists(st.sampled_from([0, 1, 2, 3, 7, 8, 9, 17, 33, 65]), min_size=0, max_size=3),
       rate=st.sampled_from([0.1, 0.25, 0.5, 0.9, 2.0 ** -16, 1 - 2.0 ** -16]), seed=st.integers(0, 2 ** 64 - 1),
       step=st.integers(0, 2 ** 64 - 1), dtype=st.sampled_from([np.float32, np.float64]), path=PATHS)
def test_dropout_outputs_are_zero_or_scaled_and_masks_are_prefix_stable(shape, rate, seed, step, dtype, path):
    """RELIABILITY N5/D3: training outputs are exactly x * 0 or x * (1 / (1 - rate)) (in the
    input dtype), backward applies the same mask, and element i's bit depends on (seed,
    step, i) only: the mask of n elements starts with the mask of any k < n."""
    rng = np.random.default_rng(seed % 2 ** 32)
    x = rng.standard_normal(shape).astype(dtype)
    with simd_path(path):
        out = ops.dropout_forward(x, rate, seed=seed, step=step)
        keep = ops.dropout_mask(x.shape, rate, seed=seed, step=step)
        dx = ops.dropout_backward(x, rate, mask=out.mask)
        longer = ops.dropout_mask((x.size + 37,), rate, seed=seed, step=step)
    scale = dtype(1.0 / (1.0 - rate))
    np.testing.assert_array_equal(out.y, x * np.where(keep, scale, dtype(0)))
    np.testing.assert_array_equal(dx, out.y)
    np.testing.assert_array_equal(longer[:x.size], keep.ravel())


# ----------------------------------------------------------------------------- scalers


def scaler_data(rng, n, c, nan_fraction, dtype):
    """Columns of different offsets and scales, some exactly constant, NaN sprinkled in
    (every column keeps at least one value)."""
    loc = rng.uniform(-100, 100, c)
    scale = 10.0 ** rng.uniform(-3, 3, c)
    X = loc + scale * rng.standard_normal((n, c))
    const = rng.random(c) < 0.25
    X[:, const] = np.round(loc[const], 1)
    nan = rng.random((n, c)) < nan_fraction
    nan[rng.integers(0, n, c), np.arange(c)] = False
    X[nan] = np.nan
    return X.astype(dtype)


SCALERS = st.sampled_from(["StandardScaler", "MinMaxScaler", "RobustScaler"])


@props(120)
@given(kind=SCALERS, n=st.integers(1, 60), c=st.integers(1, 6), nan_fraction=st.sampled_from([0.0, 0.1, 0.4]),
       dtype=st.sampled_from([np.float64, np.float32]), seed=SEEDS)
def test_scalers_match_scikit_learn(kind, n, c, nan_fraction, dtype, seed):
    """Statistics agree with scikit-learn's to 1e-12 relative for float64 input (both
    accumulate in float64; the only differences are summation order and Chan's merge) and
    to one float32 rounding for float32 input where scikit-learn keeps float32
    (MinMaxScaler's scale_ and min_). Transforms: fastnn computes ``(x - shift) * scale +
    offset`` in float64 and rounds once; scikit-learn rounds after each operation in the
    input dtype, so they differ by a few ulps of the terms ``|x * scale| + |offset|``."""
    from sklearn import preprocessing as skp
    rng = np.random.default_rng(seed)
    X = scaler_data(rng, n, c, nan_fraction, dtype)
    X_new = scaler_data(rng, 7, c, nan_fraction, dtype)
    ours = getattr(fpp, kind)().fit(X)
    theirs = getattr(skp, kind)().fit(X)
    u = U32 if dtype == np.float32 else U64
    # float64 input: both accumulate in float64, so 1e-12 of the column's magnitude; float32
    # input: scikit-learn rounds some intermediates to float32 (quantiles, the min-max range,
    # scale_ and min_), a few u of the magnitudes involved
    tol = 4 * U32 if dtype == np.float32 else TOL64
    col = np.nanmax(np.abs(X.astype(np.float64)), axis=0)
    for attr in ("mean_", "var_", "scale_", "data_min_", "data_max_", "min_", "center_"):
        if not hasattr(theirs, attr):
            continue
        a, b = np.asarray(getattr(ours, attr), np.float64), np.asarray(getattr(theirs, attr), np.float64)
        if kind == "MinMaxScaler":
            rng_ = np.maximum(np.asarray(ours.data_range_, np.float64), 1e-300)
            rel = np.where(ours.data_range_ > 0, 2 * col / rng_, 1.0)  # the range's rounding, relatively
            if attr == "scale_":
                mag = np.abs(b) * rel
            elif attr == "min_":
                mag = np.abs(ours.data_min_ * ours.scale_) * (1 + rel)
            else:
                mag = col
        elif kind == "StandardScaler":
            if attr == "var_":
                mag = col ** 2
            elif attr == "scale_":  # sqrt turns a variance error dv into dv / (2 scale)
                mag = np.abs(b) + col ** 2 / (2 * np.maximum(np.abs(b), 1e-300))
            else:
                mag = col
        else:
            mag = 2 * col
        assert_within(a, b, tol * mag, f"{kind}.{attr}")
    if hasattr(theirs, "n_samples_seen_"):
        np.testing.assert_array_equal(np.asarray(ours.n_samples_seen_) * np.ones(c),
                                      np.asarray(theirs.n_samples_seen_) * np.ones(c))
    for data in (X, X_new):
        Z, Z_ref = ours.transform(data), theirs.transform(data)
        assert Z.dtype == dtype and Z.shape == data.shape
        np.testing.assert_array_equal(np.isnan(Z), np.isnan(Z_ref))
        x = np.abs(data.astype(np.float64))
        if kind == "MinMaxScaler":
            terms = x * theirs.scale_ + np.abs(theirs.min_)
            x_terms = x + 2 * np.abs(ours.data_min_) + ours.data_range_
        elif kind == "StandardScaler":
            # plus the two means' difference (checked above, to tol * col): fastnn sums x - x0
            # about a column value x0 (exact for data far from 0), scikit-learn sums x; each is
            # off by ~u * col, which is more than u * |mean| when the spread dwarfs the mean
            terms = ((x + np.abs(theirs.mean_)) / ours.scale_
                     + np.abs(ours.mean_ - theirs.mean_) / (8 * u * ours.scale_))
            x_terms = x + np.abs(ours.mean_)
        else:
            terms = (x + np.abs(theirs.center_)) / theirs.scale_
            x_terms = x + np.abs(ours.center_)
        ok = ~np.isnan(Z_ref)
        assert_within(Z[ok], Z_ref[ok], 8 * u * terms[ok], f"{kind}.transform")
        # inverse_transform undoes transform up to the roundings of both, in units of x
        back = ours.inverse_transform(Z)
        assert back.dtype == dtype
        assert_within(back[ok], data[ok], 16 * u * x_terms[ok], f"{kind}.inverse_transform(transform(X))")


@st.composite
def chunkings(draw_, n):
    cuts = sorted(set(draw_(st.lists(st.integers(1, n - 1), max_size=6)))) if n > 1 else []
    return [0] + cuts + [n]


@props(120)
@given(kind=SCALERS, n=st.integers(1, 80), c=st.integers(1, 5), nan_fraction=st.sampled_from([0.0, 0.2]),
       dtype=st.sampled_from([np.float64, np.float32]), seed=SEEDS, data=st.data())
def test_scaler_partial_fit_chunking_invariance(kind, n, c, nan_fraction, dtype, seed, data):
    """partial_fit over any row chunking gives the statistics of one fit: MinMaxScaler
    (minimum and maximum) and RobustScaler (exact quantiles over every row kept) bitwise, as
    their docstrings promise; StandardScaler (Chan's merge of float64 moments) to 1e-12
    relative. n_samples_seen_ is exact for all."""
    rng = np.random.default_rng(seed)
    X = scaler_data(rng, n, c, nan_fraction, dtype)
    cuts = data.draw(chunkings(n))
    whole = getattr(fpp, kind)().fit(X)
    parts = getattr(fpp, kind)()
    for a, b in zip(cuts[:-1], cuts[1:]):
        parts.partial_fit(X[a:b])
    np.testing.assert_array_equal(parts.n_samples_seen_, whole.n_samples_seen_)
    attrs = {"StandardScaler": ("mean_", "var_", "scale_"), "RobustScaler": ("center_", "scale_"),
             "MinMaxScaler": ("data_min_", "data_max_", "scale_", "min_")}[kind]
    for attr in attrs:
        a, b = getattr(parts, attr), getattr(whole, attr)
        if kind == "StandardScaler":
            # summation error is relative to the values' magnitude (offsets included);
            # sqrt turns a variance error dv into dv / (2 scale)
            col = np.nanmax(np.abs(X.astype(np.float64)), axis=0)
            mag = {"mean_": col, "var_": col ** 2, "scale_": col ** 2 / (2 * whole.scale_) + whole.scale_}[attr]
            assert_within(a, b, TOL64 * mag, f"{kind}.{attr}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{kind}.{attr}")
    Z_whole, Z_parts = whole.transform(X), parts.transform(X)
    if kind != "StandardScaler":
        np.testing.assert_array_equal(Z_parts, Z_whole)


# ----------------------------------------------------------------------------- DNNRegressor


def _without_single_rows(cuts):
    """Chunk boundaries with every 1-row chunk merged into the chunk after it (or, at the
    end, before it)."""
    kept = [cuts[0]]
    for cut in cuts[1:-1]:
        if cut - kept[-1] >= 2:
            kept.append(cut)
    if cuts[-1] - kept[-1] < 2 and len(kept) > 1:
        kept.pop()
    return kept + [cuts[-1]]


@props(40)
@given(n=st.integers(8, 60), c=st.integers(1, 4), hidden=st.sampled_from([(8,), (6, 4)]),
       batch_norm=st.booleans(), dropout=st.sampled_from([None, 0.2]),
       optimizer=st.sampled_from(["adagrad", "adam", "rmsprop"]), outputs=st.sampled_from([1, 2]), seed=SEEDS,
       data=st.data())
def test_dnn_regressor_partial_fit_is_deterministic_and_predict_row_independent(
        n, c, hidden, batch_norm, dropout, optimizer, outputs, seed, data):
    """The same sequence of chunks gives bitwise-identical weights twice (RELIABILITY D5);
    predictions of any subset, permutation or batching of the rows are bitwise the rows of
    predict on all of them (D6: each row is computed independently, batch norm uses its
    running statistics at inference)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, c)).astype(np.float32)
    y = X @ rng.standard_normal((c, outputs)) + 0.1 * rng.standard_normal((n, outputs))
    y = y[:, 0] if outputs == 1 else y
    cuts = data.draw(chunkings(n))
    if batch_norm:  # partial_fit refuses a 1-row chunk with batch norm (test_degenerate_training)
        cuts = _without_single_rows(cuts)

    def train():
        reg = fastnn.DNNRegressor(hidden_units=hidden, batch_norm=batch_norm, dropout=dropout, optimizer=optimizer,
                                  batch_size=8, random_state=int(seed % 1000))
        for a, b in zip(cuts[:-1], cuts[1:]):
            reg.partial_fit(X[a:b], y[a:b])
        return reg

    first, second = train(), train()
    assert first.model_.params.tobytes() == second.model_.params.tobytes()
    assert first.model_.buffers.tobytes() == second.model_.buffers.tobytes()
    assert first.optimizer_.iterations == second.optimizer_.iterations
    pred = first.predict(X)
    assert pred.tobytes() == second.predict(X).tobytes()
    perm = rng.permutation(n)
    assert first.predict(X[perm]).tobytes() == pred[perm].tobytes()
    subset = rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False)
    assert first.predict(X[subset]).tobytes() == pred[subset].tobytes()
    step = int(rng.integers(1, 8))
    batched = np.concatenate([first.predict(X[i:i + step]) for i in range(0, n, step)])
    assert batched.tobytes() == pred.tobytes()
