"""The GEMM behind every dense layer: every microkernel against the float64 reference over
edge sizes (XNNPACK's generic tester: m in 1..MR, n in 1..2*NR+1), all three products a
dense layer needs (X W, dY W^T, X^T dY), depth blocking, accumulation and determinism."""
from __future__ import annotations

import numpy as np
import pytest

from fastnn import _core

KC = 256  # the driver's depth block (csrc/kernels/gemm/gemm.cpp): depths around it cross a block edge


def gemm_error_bound(a, b, dtype):
    """Rigorous bound for a float GEMM: |C - C_exact| <= gamma_k * (|A| @ |B|)."""
    k = a.shape[1]
    u = np.finfo(dtype).eps / 2
    gamma = (k + 1) * u / (1 - (k + 1) * u)
    return gamma * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))) + np.finfo(dtype).tiny


def run_gemm(a, b, *, trans_a=False, trans_b=False, c=None, accumulate=False, nthreads=0):
    """C = op(a) @ op(b) through the kernel, with a and b stored as the flags say."""
    a_store = np.ascontiguousarray(a.T if trans_a else a)
    b_store = np.ascontiguousarray(b.T if trans_b else b)
    if c is None:
        c = np.full((a.shape[0], b.shape[1]), np.nan, dtype=a.dtype)
    _core.gemm(a_store, b_store, c, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate, nthreads=nthreads)
    return c


def check(c, a, b, dtype, label, c0=None):
    ref = a.astype(np.float64) @ b.astype(np.float64)
    if c0 is not None:
        ref = ref + c0
    bound = gemm_error_bound(a, b, dtype) * (2 if c0 is not None else 1) + (np.abs(c0) * np.finfo(dtype).eps if c0 is not None else 0)
    bad = np.abs(c - ref) > bound
    assert not bad.any(), f"{label}: {bad.sum()} elements outside the error bound, first at {np.argwhere(bad)[0]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False)],
                         ids=["XW", "dYWt", "XtdY"])
def test_microkernel_edges(simd, dtype, trans_a, trans_b, rng):
    mr, nr = _core.gemm_tile()
    if dtype == np.float64:
        nr //= 2  # same rows, half the lanes per vector
    for k in (1, 3, 17):
        for m in range(1, mr + 1):
            for n in range(1, 2 * nr + 2):
                a = rng.standard_normal((m, k)).astype(dtype)
                b = rng.standard_normal((k, n)).astype(dtype)
                c = run_gemm(a, b, trans_a=trans_a, trans_b=trans_b)
                check(c, a, b, dtype, f"kernel={simd} {np.dtype(dtype).name} M={m} N={n} K={k} "
                                      f"trans_a={trans_a} trans_b={trans_b}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(1, KC + 1, 5), (13, 2 * KC + 3, 37), (70, KC - 1, 130), (129, 600, 65),
                                   (257, 64, 1), (3, 0, 4)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False)],
                         ids=["XW", "dYWt", "XtdY"])
def test_blocked_sizes(simd, dtype, m, k, n, trans_a, trans_b, rng):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = run_gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    check(c, a, b, dtype, f"kernel={simd} M={m} N={n} K={k}")


def test_zero_depth_gives_zeros(simd):
    c = run_gemm(np.zeros((4, 0), np.float32), np.zeros((0, 3), np.float32))
    assert np.array_equal(c, np.zeros((4, 3), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulate_adds_into_c(simd, dtype, rng):
    a = rng.standard_normal((45, 300)).astype(dtype)
    b = rng.standard_normal((300, 33)).astype(dtype)
    c0 = rng.standard_normal((45, 33)).astype(dtype)
    c = run_gemm(a, b, c=c0.copy(), accumulate=True)
    check(c, a, b, dtype, f"accumulate kernel={simd}", c0=c0.astype(np.float64))


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False)])
def test_bitwise_identical_for_any_thread_count(simd, trans_a, trans_b, rng):
    a = rng.standard_normal((301, 700)).astype(np.float32)
    b = rng.standard_normal((700, 190)).astype(np.float32)
    results = [run_gemm(a, b, trans_a=trans_a, trans_b=trans_b, nthreads=t) for t in (1, 2, 3, 5)]
    for r in results[1:]:
        assert np.array_equal(r, results[0])


def test_rows_do_not_depend_on_other_rows(simd, rng):
    """A row of C is bitwise the same whatever rows surround it (chunked predict == whole)."""
    a = rng.standard_normal((500, 300)).astype(np.float32)
    b = rng.standard_normal((300, 70)).astype(np.float32)
    whole = run_gemm(a, b)
    for lo, hi in [(0, 1), (3, 10), (7, 500), (499, 500), (100, 357)]:
        assert np.array_equal(run_gemm(a[lo:hi], b), whole[lo:hi]), (lo, hi)


def test_large(simd, rng):
    a = rng.standard_normal((1030, 515)).astype(np.float32)
    b = rng.standard_normal((515, 1041)).astype(np.float32)
    check(run_gemm(a, b), a, b, np.float32, f"large kernel={simd}")


def test_inner_dimension_mismatch_is_an_error():
    with pytest.raises(ValueError, match="inner dimensions"):
        _core.gemm(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32), np.zeros((2, 5), np.float32))


def test_output_must_be_writeable_and_exact():
    a = np.zeros((2, 3), np.float32)
    b = np.zeros((3, 4), np.float32)
    c = np.zeros((2, 4), np.float32)
    c.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _core.gemm(a, b, c)
    with pytest.raises(TypeError, match="c must be a numpy array of dtype float32"):
        _core.gemm(a, b, np.zeros((2, 4), np.float64))
    with pytest.raises(ValueError, match=r"c must have shape \(2, 4\)"):
        _core.gemm(a, b, np.zeros((4, 2), np.float32))


# The small-shape paths (gemm.cpp): a small row-major B is read in place (masked loads on
# its last partial panel), remainder tiles use narrower kernels, a one-column C with A read
# by columns runs the matrix-vector kernel, and B may be packed once and reused. Each C
# element is the same fma chain on every one of these paths, so they agree bitwise with
# each other, not just within the error bound.

# Per row shard of a training step on the 16-128-64-32-1 and 16-64-32-1 networks:
# (in, out) pairs, run as forward X W, backward dY W^T and X^T dY.
SHARD_LAYERS = [(16, 128), (128, 64), (64, 32), (32, 1), (16, 64), (64, 1)]
SHARD_ROWS = [1, 5, 16, 33, 64]


def layer_products(rows, n_in, n_out, dtype, rng):
    """The three GEMMs of one dense layer on one shard: (a, b, trans_a, trans_b) as stored."""
    x = rng.standard_normal((rows, n_in)).astype(dtype)
    w = rng.standard_normal((n_in, n_out)).astype(dtype)
    dz = rng.standard_normal((rows, n_out)).astype(dtype)
    return {"XW": (x, w, False, False), "dYWt": (dz, w.T, False, True), "XtdY": (x.T, dz, True, False)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", SHARD_ROWS)
def test_shard_shapes_prepacked_equal_plain(simd, dtype, rows, rng):
    for n_in, n_out in SHARD_LAYERS:
        for name, (a, b, ta, tb) in layer_products(rows, n_in, n_out, dtype, rng).items():
            label = f"kernel={simd} {np.dtype(dtype).name} {name} rows={rows} {n_in}->{n_out}"
            plain = run_gemm(a, b, trans_a=ta, trans_b=tb)
            check(plain, a, b, dtype, label)
            c = np.full_like(plain, np.nan)
            a_store = np.ascontiguousarray(a.T if ta else a)
            b_store = np.ascontiguousarray(b.T if tb else b)
            _core.gemm(a_store, b_store, c, trans_a=ta, trans_b=tb, prepack_b=True)
            assert np.array_equal(c, plain), label


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prepacked_accumulates_and_ignores_thread_count(simd, dtype, rng):
    a = rng.standard_normal((70, 2 * KC + 5)).astype(dtype)  # three depth blocks
    b = rng.standard_normal((2 * KC + 5, 45)).astype(dtype)
    c0 = rng.standard_normal((70, 45)).astype(dtype)
    plain = run_gemm(a, b, c=c0.copy(), accumulate=True, nthreads=1)
    check(plain, a, b, dtype, f"accumulate kernel={simd}", c0=c0.astype(np.float64))
    for nthreads in (1, 2, 3):
        c = c0.copy()
        _core.gemm(a, b, c, accumulate=True, nthreads=nthreads, prepack_b=True)
        assert np.array_equal(c, plain), nthreads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(16, 128, 64), (64, 64, 64), (256, 64, 128), (13, 300, 47), (33, 64, 17),
                                   (40, 32, 16), (7, 16, 1), (100, 257, 1), (263, 40, 33)])
def test_in_place_packed_and_matvec_paths_agree_bitwise(simd, dtype, m, k, n, rng):
    """B in place (row-major) == B packed (stored transposed) == B prepacked, and A read by
    rows == A read by columns (the matrix-vector kernel when n == 1)."""
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    reference = run_gemm(a, b)
    check(reference, a, b, dtype, f"kernel={simd} {m}x{k}x{n}")
    for ta in (False, True):
        for tb in (False, True):
            assert np.array_equal(run_gemm(a, b, trans_a=ta, trans_b=tb), reference), (ta, tb)
    c = np.full_like(reference, np.nan)
    _core.gemm(a, b, c, prepack_b=True)
    assert np.array_equal(c, reference)

