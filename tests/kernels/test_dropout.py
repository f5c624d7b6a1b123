"""ops.dropout_forward / dropout_backward / dropout_mask and the Philox4x32-10 generator
behind them: known-answer vectors, the mask recomputed independently in NumPy from the
documented counter/key layout, the drop rate, exact inverted scaling, determinism over
(seed, step), prefix stability, every SIMD path and thread count, and input validation.

The mask layout asserted here is the documented one (ops.dropout_forward): element e uses
the (e % 2)-th 16-bit half of word (e // 2) % 4 of philox4x32_10(counter=(e // 8 low32,
e // 8 high32, step low32, step high32), key=(seed low32, seed high32)) and is dropped
when that 16-bit uniform < floor(rate * 65536)."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _core, ops

from support import SIMD_PATHS, STARTUP_PATH

MASK32 = 0xFFFFFFFF
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85

# Random123 known-answer vectors for philox4x32_10 (kat_vectors): counter, key, output.
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def philox_python(counter, key):
    """Scalar Philox4x32-10 from the paper (Salmon et al., SC11), in Python integers."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
        p0, p1 = PHILOX_M0 * c0, PHILOX_M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
    return c0, c1, c2, c3


def philox_numpy(blocks: np.ndarray, step: int, seed: int) -> np.ndarray:
    """Words (len(blocks), 4) of Philox4x32-10 at counters (block lo, block hi, step lo,
    step hi) with key (seed lo, seed hi), vectorized over blocks in uint64 arithmetic."""
    blocks = blocks.astype(np.uint64)
    m32 = np.uint64(MASK32)
    c0 = blocks & m32
    c1 = blocks >> np.uint64(32)
    c2 = np.full_like(blocks, step & MASK32)
    c3 = np.full_like(blocks, step >> 32)
    k0, k1 = seed & MASK32, seed >> 32
    for r in range(10):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
        p0 = np.uint64(PHILOX_M0) * c0
        p1 = np.uint64(PHILOX_M1) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & m32,
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & m32)
    return np.stack([c0, c1, c2, c3], axis=1)


def threshold(rate: float) -> int:
    """Element dropped when its 16-bit uniform < floor(rate * 65536) (exact in float64)."""
    return int(np.floor(rate * 65536.0))


def uniform16(words: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The 16-bit uniform of element e from its block's 4 words: half e % 2 of word (e // 2) % 4."""
    word = words[e // 8, (e // 2) % 4]
    return (word >> (16 * (e % 2)).astype(np.uint64)) & np.uint64(0xFFFF)


def reference_keep(n: int, rate: float, seed: int, step: int) -> np.ndarray:
    """The documented mask: element e keeps iff its 16-bit uniform >= threshold."""
    words = philox_numpy(np.arange((n + 7) // 8, dtype=np.uint64), step, seed)
    return uniform16(words, np.arange(n, dtype=np.uint64)) >= np.uint64(threshold(rate))


def unpack(mask: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(mask, bitorder="little")[:n].astype(bool)


# ----------------------------------------------------------------------------- the generator


@pytest.mark.parametrize("counter,key,expected", KAT, ids=["zeros", "ones", "pi"])
def test_philox_known_answer_vectors(counter, key, expected):
    assert tuple(int(w) for w in _core.philox4x32_10(list(counter), list(key))) == expected
    # the independent implementations used as oracles below agree with Random123 too
    assert philox_python(counter, key) == expected
    got = philox_numpy(np.array([counter[0] | (counter[1] << 32)], np.uint64), counter[2] | (counter[3] << 32),
                       key[0] | (key[1] << 32))
    assert tuple(int(w) for w in got[0]) == expected


def test_mask_elements_match_core_philox():
    """A few elements in different blocks, with seed and step using both 32-bit halves,
    checked one by one against fastnn._core.philox4x32_10 and the drop rule."""
    rate, seed, step = 0.3, (7 << 32) | 0x1234ABCD, (3 << 32) | 5
    n = 70_001
    keep = ops.dropout_mask((n,), rate, seed=seed, step=step)
    t = threshold(rate)
    assert t == 19660  # floor(0.3 * 65536)
    for i in [0, 1, 2, 3, 4, 5, 7, 8, 63, 64, 65, 127, 128, 16383, 16384, 16385, 40_000, 65_539, n - 1]:
        block = i // 8
        words = _core.philox4x32_10([block & MASK32, block >> 32, step & MASK32, step >> 32],
                                    [seed & MASK32, seed >> 32])
        u = (int(words[(i // 2) % 4]) >> (16 * (i % 2))) & 0xFFFF
        assert bool(keep[i]) == (u >= t), f"element {i}"


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.875])
@pytest.mark.parametrize("seed,step", [(0, 0), (42, 1), ((5 << 32) | 99, (1 << 32) | 17), (2 ** 64 - 1, 2 ** 64 - 1)])
def test_whole_mask_matches_numpy_philox(simd, rate, seed, step):
    n = 50_003  # several parallel tasks, a ragged tail of a block and of a byte
    keep = ops.dropout_mask((n,), rate, seed=seed, step=step)
    assert keep.dtype == bool and keep.shape == (n,)
    differ = np.flatnonzero(keep != reference_keep(n, rate, seed, step))
    assert differ.size == 0, f"{differ.size} of {n} mask elements differ from the spec, first at {differ[:6]}"


def test_dropout_mask_shape():
    keep = ops.dropout_mask((3, 5, 7), 0.5, seed=1, step=2)
    assert keep.shape == (3, 5, 7)
    assert np.array_equal(keep.reshape(-1), ops.dropout_mask((105,), 0.5, seed=1, step=2))  # C order
    assert ops.dropout_mask((0,), 0.5, seed=1).shape == (0,)


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_drop_fraction_over_a_million_elements(rate):
    n = 1_000_000
    keep = ops.dropout_mask((n,), rate, seed=2026, step=3)
    # binomial std of the fraction is <= 5e-4: the 0.5% bound is ten standard deviations
    assert abs((~keep).mean() - rate) < 0.005
    # and it is the mask dropout_forward applies
    x = np.ones(n, np.float32)
    y, mask = ops.dropout_forward(x, rate, seed=2026, step=3)
    assert np.array_equal(unpack(mask, n), keep)
    assert np.array_equal(y != 0, keep)


def test_rates_below_the_mask_resolution_are_refused():
    """Rates are resolved to 2**-16: a smaller non-zero rate would silently drop nothing,
    so it is an error; 2**-16 itself drops about n / 65536 elements."""
    for rate in (1e-5, 2.0 ** -17):
        with pytest.raises(ValueError, match=r"2\*\*-16"):
            ops.dropout_mask((10,), rate, seed=4)
        with pytest.raises(ValueError, match=r"2\*\*-16"):
            ops.dropout_forward(np.ones(10, np.float32), rate, seed=4)
    n = 2_000_000
    dropped = int((~ops.dropout_mask((n,), 2.0 ** -16, seed=4, step=0)).sum())
    assert 1 <= dropped <= 70  # Poisson(30.5): outside this range with probability < 1e-7
    assert dropped == int((~reference_keep(n, 2.0 ** -16, 4, 0)).sum())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.2, 0.3, 0.5, 0.9])
def test_survivors_scaled_exactly_and_dropped_are_zero(simd, dtype, rate, rng):
    x = rng.standard_normal((301, 67)).astype(dtype)
    y, mask = ops.dropout_forward(x, rate, seed=11, step=4)
    assert y.dtype == dtype and y.shape == x.shape
    assert mask.dtype == np.uint8 and mask.shape == ((x.size + 7) // 8,)
    keep = unpack(mask, x.size).reshape(x.shape)
    assert np.array_equal(keep, ops.dropout_mask(x.shape, rate, seed=11, step=4))
    scale = dtype(1.0 / (1.0 - rate))  # the scale, rounded once to the array's dtype
    assert np.array_equal(y[keep], x[keep] * scale)
    assert np.all(y[~keep] == 0)
    exact = {0.2: 1.25, 0.5: 2.0}.get(rate)
    if exact is not None:  # 1/(1-rate) is representable: y is x/(1-rate) correctly rounded
        assert np.array_equal(y[keep], (x[keep].astype(np.float64) * exact).astype(dtype))


def test_expected_value_is_preserved(rng):
    x = rng.uniform(0.5, 1.5, 400_000).astype(np.float64)
    y, _ = ops.dropout_forward(x, 0.4, seed=3)
    # E[y] = E[x]; the mean of 4e5 Bernoulli-scaled samples has relative std < 0.2%
    assert abs(y.mean() / x.mean() - 1.0) < 0.01


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_and_rate_zero_are_identity(simd, dtype, rng):
    x = rng.standard_normal((40, 9)).astype(dtype)
    for kwargs in ({"rate": 0.5, "training": False}, {"rate": 0.0}, {"rate": 0.0, "training": False}):
        y, mask = ops.dropout_forward(x, seed=1, **kwargs)
        assert y.dtype == dtype and y is not x
        assert np.array_equal(y, x)
        assert mask is None
    assert ops.dropout_mask((100,), 0.0, seed=1).all()
    g = rng.standard_normal((40, 9)).astype(dtype)
    assert np.array_equal(ops.dropout_backward(g, 0.0), g)


def test_out_buffer_and_layouts(rng):
    x = rng.standard_normal((50, 20)).astype(np.float32)
    ref, ref_mask = ops.dropout_forward(x, 0.3, seed=8, step=1)
    out = np.empty_like(x)
    y, _ = ops.dropout_forward(x, 0.3, seed=8, step=1, out=out)
    assert y is out and np.array_equal(out, ref)
    fortran = np.asfortranarray(x)
    strided = np.zeros((50, 40), np.float32)
    strided[:, ::2] = x
    readonly = x.copy()
    readonly.flags.writeable = False
    for variant in (fortran, strided[:, ::2], readonly):
        y, mask = ops.dropout_forward(variant, 0.3, seed=8, step=1)
        assert np.array_equal(y, ref) and np.array_equal(mask, ref_mask)
    assert np.array_equal(readonly, x)


def test_dropped_nan_stays_visible():
    x = np.full(4000, np.nan, np.float32)
    y, mask = ops.dropout_forward(x, 0.5, seed=0)
    assert np.isnan(y).all()  # x * 0 for dropped elements, not a select: the NaN is not hidden
    x = np.full(4000, np.inf, np.float32)
    y, _ = ops.dropout_forward(x, 0.5, seed=0)
    keep = unpack(mask, 4000)
    assert np.isinf(y[keep]).all() and np.isnan(y[~keep]).all()


# ----------------------------------------------------------------------------- determinism


def test_same_seed_and_step_same_mask_and_others_independent():
    n, rate = 200_000, 0.5
    base = ops.dropout_mask((n,), rate, seed=77, step=10)
    assert np.array_equal(base, ops.dropout_mask((n,), rate, seed=77, step=10))
    x = np.ones(n, np.float32)
    assert np.array_equal(ops.dropout_forward(x, rate, seed=77, step=10).y != 0, base)
    for other in (ops.dropout_mask((n,), rate, seed=77, step=11), ops.dropout_mask((n,), rate, seed=78, step=10),
                  ops.dropout_mask((n,), rate, seed=77 + (1 << 32), step=10),
                  ops.dropout_mask((n,), rate, seed=77, step=10 + (1 << 32))):
        # an independent mask differs in 2 r (1 - r) = 50% of the places (std 0.11%)
        assert abs((other != base).mean() - 0.5) < 0.01


@pytest.mark.parametrize("k", [1, 3, 4, 7, 8, 9, 63, 64, 65, 1000, 16383, 16384, 16385, 32769])
def test_prefix_stability(k):
    n = 70_000
    full = ops.dropout_mask((n,), 0.35, seed=5, step=6)
    assert np.array_equal(ops.dropout_mask((k,), 0.35, seed=5, step=6), full[:k])
    x = np.arange(1, n + 1, dtype=np.float32)
    y_full, mask_full = ops.dropout_forward(x, 0.35, seed=5, step=6)
    y_k, mask_k = ops.dropout_forward(x[:k], 0.35, seed=5, step=6)
    assert np.array_equal(y_k, y_full[:k])
    assert np.array_equal(unpack(mask_k, k), unpack(mask_full, n)[:k])


def test_masks_identical_on_every_simd_path(rng):
    x = rng.standard_normal(100_003).astype(np.float32)
    g = rng.standard_normal(100_003).astype(np.float32)
    results = {}
    try:
        for path in SIMD_PATHS:
            _core._select_path(path)
            y, mask = ops.dropout_forward(x, 0.3, seed=123, step=9)
            results[path] = (y, mask, ops.dropout_mask(x.shape, 0.3, seed=123, step=9),
                             ops.dropout_backward(g, 0.3, seed=123, step=9))
    finally:
        _core._select_path(STARTUP_PATH)
    first = results[SIMD_PATHS[0]]
    for path, got in results.items():
        for a, b in zip(got, first):
            assert np.array_equal(a, b), path


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_for_any_thread_count(simd, dtype, rng):
    n = 300_001  # 19 parallel tasks of 16384 elements
    x = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    outs = []
    for threads in (1, 2, 3):
        with fastnn.threads(threads):
            y, mask = ops.dropout_forward(x, 0.45, seed=99, step=2)
            outs.append((y, mask, ops.dropout_mask((n,), 0.45, seed=99, step=2),
                         ops.dropout_backward(g, 0.45, mask=mask), ops.dropout_backward(g, 0.45, seed=99, step=2)))
    for got in outs[1:]:
        for a, b in zip(got, outs[0]):
            assert np.array_equal(a, b)
    assert np.array_equal(unpack(outs[0][1], n), outs[0][2])


# ----------------------------------------------------------------------------- backward


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_from_mask_equals_regenerated(simd, dtype, rng):
    x = rng.standard_normal((123, 45)).astype(dtype)
    g = rng.standard_normal((123, 45)).astype(dtype)
    rate, seed, step = 0.25, 31337, 12
    _, mask = ops.dropout_forward(x, rate, seed=seed, step=step)
    from_mask = ops.dropout_backward(g, rate, mask=mask)
    regenerated = ops.dropout_backward(g, rate, seed=seed, step=step)
    assert from_mask.dtype == dtype and from_mask.shape == g.shape
    assert np.array_equal(from_mask, regenerated)
    keep = unpack(mask, g.size).reshape(g.shape)
    assert np.array_equal(from_mask, np.where(keep, g * dtype(1.0 / (1.0 - rate)), 0))
    # the backward of a dropout is the same masked scaling: d(sum(g * y)) / dx
    buf = np.empty_like(g)
    assert ops.dropout_backward(g, rate, mask=mask, grad_in=buf) is buf
    assert np.array_equal(buf, from_mask)


def test_backward_needs_mask_or_seed():
    with pytest.raises(ValueError, match="mask"):
        ops.dropout_backward(np.ones(10, np.float32), 0.5)


def test_backward_rejects_a_wrong_mask():
    g = np.ones(100, np.float32)
    with pytest.raises(ValueError, match="mask"):
        ops.dropout_backward(g, 0.5, mask=np.zeros(12, np.uint8))  # 100 elements need 13 bytes
    with pytest.raises(ValueError, match="mask"):
        ops.dropout_backward(g, 0.5, mask=np.zeros(13, np.int64))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("rate", [float("nan"), -0.1, -1e-12, 1.0, 1.5, float("inf")])
def test_bad_rate_is_value_error(rate):
    x = np.ones(16, np.float32)
    with pytest.raises(ValueError, match="rate"):
        ops.dropout_forward(x, rate, seed=0)
    with pytest.raises(ValueError, match="rate"):
        ops.dropout_forward(x, rate, seed=0, training=False)
    with pytest.raises(ValueError, match="rate"):
        ops.dropout_backward(x, rate, seed=0)
    with pytest.raises(ValueError, match="rate"):
        ops.dropout_mask((16,), rate, seed=0)


@pytest.mark.parametrize("rate", ["0.5", None, True, [0.5]])
def test_non_number_rate_is_type_error(rate):
    with pytest.raises(TypeError, match="rate"):
        ops.dropout_forward(np.ones(4, np.float32), rate, seed=0)


@pytest.mark.parametrize("call", [
    lambda: ops.dropout_forward(np.ones(8, np.float32), 0.2, seed=0, keep_prob=0.8),
    lambda: ops.dropout_forward(np.ones(8, np.float32), 0.2, seed=0, training=False, keep_prob=0.8),
    lambda: ops.dropout_backward(np.ones(8, np.float32), 0.2, seed=0, keep_prob=0.8),
    lambda: ops.dropout_mask((8,), 0.2, seed=0, keep_prob=0.8),
])
def test_keep_prob_is_refused_with_an_explanation(call):
    with pytest.raises(ValueError, match=r"(?i)drop rate") as info:
        call()
    msg = str(info.value)
    # the conversion with the caller's own numbers (not a fixed "10%" example)
    assert "keep_prob=0.8 keeps 80% of the units, so pass rate=0.2" in msg
    assert "would drop 80% of the units instead of 20%" in msg


@pytest.mark.parametrize("name", ["seed", "step"])
def test_bad_seed_and_step(name):
    x = np.ones(8, np.float32)
    base = {"seed": 0, "step": 0}
    for bad, exc in [(-1, ValueError), (2 ** 64, ValueError), (1.5, TypeError), ("3", TypeError), (None, TypeError)]:
        with pytest.raises(exc, match=name):
            ops.dropout_forward(x, 0.5, **{**base, name: bad})
        with pytest.raises(exc, match=name):
            ops.dropout_mask((8,), 0.5, **{**base, name: bad})
    # numpy integers are integers
    ops.dropout_forward(x, 0.5, **{**base, name: np.uint64(2 ** 64 - 1)})


def test_bad_x_and_out():
    with pytest.raises(TypeError, match="x"):
        ops.dropout_forward(np.array(["a", "b"]), 0.5, seed=0)
    with pytest.raises(TypeError, match="x"):
        ops.dropout_forward(None, 0.5, seed=0)
    x = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="out"):
        ops.dropout_forward(x, 0.5, seed=0, out=np.empty((4, 5), np.float32))
    with pytest.raises(TypeError, match="out"):
        ops.dropout_forward(x, 0.5, seed=0, out=np.empty((4, 4), np.float64))
    with pytest.raises(ValueError, match="out"):
        ro = np.empty((4, 4), np.float32)
        ro.flags.writeable = False
        ops.dropout_forward(x, 0.5, seed=0, out=ro)


def test_mask_out_buffer_is_reused():
    x = np.ones((5, 13), np.float32)
    buf = np.empty((65 + 7) // 8, np.uint8)
    y, mask = ops.dropout_forward(x, 0.5, seed=3, step=1, mask_out=buf)
    assert mask is buf
    assert np.array_equal(unpack(buf, 65).reshape(5, 13), y != 0)
    with pytest.raises(ValueError, match=r"mask_out must have shape \(9,\)"):
        ops.dropout_forward(x, 0.5, seed=3, mask_out=np.empty(8, np.uint8))
    with pytest.raises(TypeError, match="mask_out must have dtype uint8"):
        ops.dropout_forward(x, 0.5, seed=3, mask_out=np.empty(9, np.int8))
