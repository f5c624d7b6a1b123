"""optim.global_norm / clip_by_global_norm / clip_by_value: the norm accumulated in float64
(float32 gradients near 1e20 do not overflow it), the exact clipping factor, lists of arrays
of any shapes, non-finite norms reported and never spread, every SIMD path, bitwise
determinism over thread counts, and input validation (nothing half-clipped on error)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn import optim


def norm_reference(arrays) -> float:
    return math.sqrt(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in arrays))


def make_grads(rng, dtype, shapes=((7,), (3, 4), (2, 3, 5), (), (0,), (1000,))):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# ----------------------------------------------------------------------------- global norm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_norm_matches_reference(simd, dtype, rng):
    grads = make_grads(rng, dtype)
    before = [g.copy() for g in grads]
    # float64 accumulation of float32 values: the norm is exact to float64 rounding
    assert optim.global_norm(grads) == pytest.approx(norm_reference(grads), rel=1e-13)
    assert optim.global_norm(grads[5]) == pytest.approx(norm_reference([grads[5]]), rel=1e-13)
    assert optim.global_norm([]) == 0.0
    assert all(np.array_equal(a, b) for a, b in zip(grads, before))  # reading only


def test_float32_gradients_near_1e20_do_not_overflow(simd):
    # squares of 1e20 are 1e40, beyond float32's 3.4e38: a float32 accumulator gives inf
    g = [np.full(1000, 1e20, np.float32), np.full((10, 10), -3e19, np.float32)]
    expected = norm_reference(g)
    norm = optim.global_norm(g)
    assert math.isfinite(norm)
    assert norm == pytest.approx(expected, rel=1e-13)
    clipped = [a.copy() for a in g]
    assert optim.clip_by_global_norm(clipped, 1.0) == pytest.approx(expected, rel=1e-13)
    assert all(np.isfinite(a).all() for a in clipped)
    assert optim.global_norm(clipped) == pytest.approx(1.0, rel=1e-6)
    # the largest float32 values too
    big = np.full(4, np.finfo(np.float32).max, np.float32)
    assert optim.global_norm(big) == pytest.approx(2 * float(np.finfo(np.float32).max), rel=1e-13)


# ----------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipping_factor_is_exact(simd, dtype, rng):
    grads = make_grads(rng, dtype)
    before = [g.copy() for g in grads]
    max_norm = 0.37
    norm = optim.clip_by_global_norm(grads, max_norm)
    expected_norm = norm_reference(before)
    assert norm == pytest.approx(expected_norm, rel=1e-13)
    # every array multiplied by the one factor max_norm / norm (rounded once to the dtype)
    factor = dtype(max_norm / norm)
    for got, old in zip(grads, before):
        assert got.shape == old.shape and got.dtype == dtype
        assert np.array_equal(got, old * factor)
    assert optim.global_norm(grads) == pytest.approx(max_norm, rel=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_clipping_at_or_below_max_norm(simd, dtype, rng):
    grads = make_grads(rng, dtype)
    before = [g.copy() for g in grads]
    norm = norm_reference(grads)
    assert optim.clip_by_global_norm(grads, norm * 1.5) == pytest.approx(norm, rel=1e-13)
    assert all(np.array_equal(a, b) for a, b in zip(grads, before))
    returned = optim.clip_by_global_norm(grads, optim.global_norm(grads))  # exactly at the norm
    assert all(np.array_equal(a, b) for a, b in zip(grads, before))
    assert returned == optim.global_norm(grads)


def test_single_array_and_max_norm_zero(rng):
    g = rng.standard_normal((5, 6)).astype(np.float32)
    before = g.copy()
    norm = optim.clip_by_global_norm(g, 1.0)
    assert norm == pytest.approx(norm_reference([before]), rel=1e-13)
    assert np.array_equal(g, before * np.float32(1.0 / norm))
    optim.clip_by_global_norm(g, 0.0)
    assert np.array_equal(g, np.zeros_like(g))
    # a zero gradient with max_norm 0 is not divided by zero
    z = np.zeros(10)
    assert optim.clip_by_global_norm(z, 0.0) == 0.0
    assert np.array_equal(z, np.zeros(10))


def test_views_of_one_flat_buffer_are_clipped_in_place(rng):
    flat = rng.standard_normal(100)
    views = [flat[:30].reshape(5, 6), flat[30:]]
    before = flat.copy()
    norm = optim.clip_by_global_norm(views, 1.0)
    assert np.array_equal(flat, before * (1.0 / norm))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_norm_leaves_everything_untouched(simd, bad, dtype, rng):
    grads = [rng.standard_normal(50).astype(dtype) * 100 for _ in range(3)]
    grads[1][17] = bad
    before = [g.copy() for g in grads]
    norm = optim.clip_by_global_norm(grads, 1.0)
    if np.isnan(bad):
        assert math.isnan(norm)
    else:
        assert norm == math.inf
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(grads, before))
    with pytest.raises(FloatingPointError, match="NaN or Inf"):
        optim.clip_by_global_norm(grads, 1.0, error_if_nonfinite=True)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(grads, before))
    assert math.isnan(optim.global_norm(grads)) == bool(np.isnan(bad))


def test_error_if_nonfinite_is_silent_for_a_finite_norm(rng):
    g = rng.standard_normal(20)
    before = g.copy()
    norm = optim.clip_by_global_norm(g, 0.5, error_if_nonfinite=True)
    assert np.array_equal(g, before * (0.5 / norm))


@pytest.mark.parametrize("max_norm,exc", [
    (-1.0, ValueError), (-1e-300, ValueError), (float("nan"), ValueError),
    ("1.0", TypeError), (None, TypeError), ([1.0], TypeError), (True, TypeError),
])
def test_bad_max_norm(max_norm, exc, rng):
    g = rng.standard_normal(10) * 10
    before = g.copy()
    with pytest.raises(exc, match="max_norm"):
        optim.clip_by_global_norm(g, max_norm)
    assert np.array_equal(g, before)


def test_bad_grads_leave_every_array_untouched(rng):
    good = rng.standard_normal(10) * 10
    before = good.copy()
    readonly = rng.standard_normal(10)
    readonly.flags.writeable = False
    strided = rng.standard_normal(20)[::2]
    cases = [
        ([good, [1.0, 2.0]], TypeError, r"grads\[1\] must be a numpy array"),
        ([good, np.ones(3, np.int64)], TypeError, r"grads\[1\] must be float32 or float64"),
        ([good, np.ones(3, np.float16)], TypeError, r"grads\[1\] must be float32 or float64"),
        ([good, strided], ValueError, r"grads\[1\] must be contiguous"),
        ([good, readonly], ValueError, "writeable"),
        ([good, None], TypeError, r"grads\[1\]"),
    ]
    for grads, exc, match in cases:
        with pytest.raises(exc, match=match):
            optim.clip_by_global_norm(grads, 1e-3)
        assert np.array_equal(good, before), match
    with pytest.raises(TypeError, match="grads"):
        optim.global_norm(np.ones(3, np.int32))


# ----------------------------------------------------------------------------- by value


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_by_value(simd, dtype, rng):
    grads = [rng.standard_normal((40, 3)).astype(dtype) * 3, rng.standard_normal(100_000).astype(dtype) * 3]
    grads[0][0, :] = [np.nan, np.inf, -np.inf]
    before = [g.copy() for g in grads]
    assert optim.clip_by_value(grads, -1.5, 2.0) is None
    for got, old in zip(grads, before):
        expected = np.clip(old, dtype(-1.5), dtype(2.0))  # np.clip keeps NaN
        assert np.array_equal(got, expected, equal_nan=True)
    assert np.isnan(grads[0][0, 0])
    assert grads[0][0, 1] == 2.0 and grads[0][0, 2] == -1.5


def test_clip_by_value_single_array_and_degenerate_range():
    g = np.array([-3.0, 0.5, 7.0], np.float32)
    optim.clip_by_value(g, 1.0, 1.0)
    assert np.array_equal(g, np.ones(3, np.float32))


@pytest.mark.parametrize("lo,hi,exc,match", [
    (1.0, -1.0, ValueError, "lo must be <= hi"),
    (float("nan"), 1.0, ValueError, "lo"),
    (-1.0, float("nan"), ValueError, "hi"),
    ("a", 1.0, TypeError, "lo"),
    (-1.0, None, TypeError, "hi"),
])
def test_clip_by_value_bad_bounds(lo, hi, exc, match):
    g = np.array([-3.0, 0.5, 7.0])
    with pytest.raises(exc, match=match):
        optim.clip_by_value(g, lo, hi)
    assert np.array_equal(g, [-3.0, 0.5, 7.0])


def test_clip_by_value_bad_grads():
    ro = np.array([5.0, -5.0])
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        optim.clip_by_value(ro, -1, 1)
    with pytest.raises(TypeError, match="grads"):
        optim.clip_by_value([5.0, -5.0], -1, 1)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_for_any_thread_count(simd, dtype, rng):
    base = [rng.standard_normal(300_001).astype(dtype), rng.standard_normal((700, 300)).astype(dtype)]
    results = []
    for threads in (1, 2, 3):
        with fastnn.threads(threads):
            grads = [g.copy() for g in base]
            norm = optim.clip_by_global_norm(grads, 10.0)
            optim.clip_by_value(grads, -1e-3, 2e-3)
            results.append((optim.global_norm(base), norm, grads))
    for norm0, norm, grads in results[1:]:
        assert norm0 == results[0][0] and norm == results[0][1]
        assert all(np.array_equal(a, b) for a, b in zip(grads, results[0][2]))
    assert results[0][0] == pytest.approx(norm_reference(base), rel=1e-12)


def lane_ordered_sum_of_squares(x: np.ndarray) -> float:
    """The documented reduction order of the kernel's sum of squares, in NumPy: chunks of
    16384 elements; in each, lane l sums the squares of elements l, l + 16, ... left to right
    (cumsum is sequential), the 16 lanes are added in order, then the chunks in order."""
    total = 0.0
    for start in range(0, x.size, 16384):
        squares = x[start:start + 16384].astype(np.float64) ** 2
        chunk = 0.0
        for lane in range(16):
            column = squares[lane::16]
            chunk += float(np.cumsum(column)[-1]) if column.size else 0.0
        total += chunk
    return total


@pytest.mark.parametrize("n", [1, 15, 17, 16384, 16385, 2 * 16384 + 3, 3 * 16384, 4 * 16384 + 1, 5 * 16384 + 7,
                               9 * 16384 + 1025])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_of_squares_keeps_its_reduction_order(simd, n, dtype, rng):
    # the kernel sums several chunks side by side; each must still add its lanes in order
    x = (rng.standard_normal(n) * np.exp(rng.uniform(-20, 20, n))).astype(dtype)
    want = lane_ordered_sum_of_squares(x)
    for threads in (1, 2, 3):
        with fastnn.threads(threads):
            assert optim.global_norm(x) ** 2 == pytest.approx(want, rel=1e-15)
            assert fastnn._core.sum_squares(x) == want
