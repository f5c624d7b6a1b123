"""Regression tests decoded from the atheris fuzz targets (tests/fuzz/fuzz_ops.py,
tests/fuzz/fuzz_load.py; RELIABILITY.md M6, M7, P3, B5, B7).

Each crash input the fuzzers found is written out here as readable code: what the input
did, and what the contract says should happen. Every one of those bugs is fixed; these
tests keep them fixed (the harnesses no longer skip any input).

The last tests replay the harnesses themselves on fixed inputs: a cheap guard that they
still run against the current API (they are run for real only by hand and by
tools/sanitize.sh fuzz).
"""
from __future__ import annotations

import importlib.util
import io
import os
import random
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import nn, ops, optim, persistence

from support import TESTS

FUZZ_DIR = str(TESTS / "fuzz")


# ----------------------------------------------------------------------------- fuzz_ops findings


@pytest.mark.parametrize("arg", [np.zeros(3, np.float32), None], ids=["ndarray", "None"])
def test_optimizer_step_without_grads(arg):
    # fuzz_ops t_optimizer_class: opt.step(params, grads) where the fuzzed grads was None
    opt = optim.SGD(0.1)
    with pytest.raises(TypeError, match="model|grads"):
        opt.step(arg)


def test_refused_first_step_leaves_optimizer_state_empty():
    # fuzz_ops t_optimizer_class: Adagrad().step(params (5,), grads (0,)) -> ValueError, state changed
    opt = optim.Adagrad()
    with pytest.raises(ValueError, match="grads must have length 5"):
        opt.step(np.ones(5, np.float32), np.zeros(0, np.float32))
    assert opt.state == {} and opt.iterations == 0
    opt.step(np.ones(3, np.float32), np.ones(3, np.float32))  # today: "params do not match this optimizer's state"


def test_clip_by_value_refuses_before_clipping_any():
    # fuzz_ops t_clip_value: [writeable (4, 4) float32, read-only float32] -> ValueError, first one clipped
    g1 = np.array([5.0, -5.0, 0.5], np.float32)
    g2 = np.array([3.0], np.float32)
    g2.flags.writeable = False
    before = g1.copy()
    with pytest.raises(ValueError, match="writeable"):
        optim.clip_by_value([g1, g2], -1.0, 1.0)
    np.testing.assert_array_equal(g1, before)


LOSSES = {
    "mse": lambda p: ops.mse_loss(p, np.zeros_like(p)),
    "huber": lambda p: ops.huber_loss(p, np.zeros_like(p)),
    "bce": lambda p: ops.binary_cross_entropy_with_logits(p, np.zeros_like(p)),
    "softmax": lambda p: ops.softmax_cross_entropy_with_logits(p, np.zeros_like(p)),
}


@pytest.mark.parametrize("kind", list(LOSSES))
def test_loss_over_zero_outputs_is_refused(kind):
    # fuzz_ops t_loss: binary_cross_entropy_with_logits(float64 (6, 0), float64 (6, 0)) -> loss nan
    with pytest.raises(ValueError):
        LOSSES[kind](np.zeros((6, 0)))


@pytest.mark.parametrize("kind", list(LOSSES))
def test_loss_over_zero_rows_is_refused(kind):
    """The contract the case above should follow (passes today)."""
    with pytest.raises(ValueError, match="empty"):
        LOSSES[kind](np.zeros((0, 3)))


def test_softmax_cross_entropy_with_unnormalized_targets():
    """Decoded from a fuzz input that first looked like a wrong loss (the harness' reference
    assumed rows of the target sum to 1): for target probabilities the loss is
    ``-sum_k t_k log softmax(z)_k`` and its gradient ``(sum_k t_k) softmax(z) - t``, for any
    non-negative t. bool logits and targets are converted to float32."""
    z = np.ones((4, 4), bool)
    t = np.ones((4, 4), bool)
    out = ops.softmax_cross_entropy_with_logits(z, t, sample_weight=np.ones(4, bool))
    assert out.grad.dtype == np.float32
    np.testing.assert_allclose(out.loss, 4 * np.log(4), rtol=1e-6)
    np.testing.assert_allclose(out.grad, np.zeros((4, 4)), atol=1e-7)


def _tiny_model(dtype=np.float32):
    return nn.Sequential([nn.Dense(2, 3, activation="elu"), nn.Dropout(0.5), nn.Dense(3, 1)], seed=3, dtype=dtype)


@pytest.mark.parametrize("method", ["train_step", "train_epoch"])
def test_train_step_with_scalar_y_is_a_value_error(method):
    # fuzz_ops t_sequential: train_step([[5e-324, 5e-324]], 1.5, loss="huber", optimizer=AdamW())
    model = _tiny_model(np.float64)
    params = model.params.copy()
    with pytest.raises(ValueError, match="y"):
        getattr(model, method)([[5e-324, 5e-324]], 1.5, loss="huber", optimizer=optim.AdamW())
    np.testing.assert_array_equal(model.params, params)


@pytest.mark.parametrize("method", ["train_step", "train_epoch"])
def test_training_on_zero_rows_is_refused(method):
    # fuzz_ops t_sequential: train_step(float32 (0, 3), float32 (0,), loss="mse", RMSProp(momentum=0.5))
    # returned a NaN loss, with no update and no error
    model = nn.Sequential([nn.Dense(3, 5, activation="leaky_relu"), nn.Dense(5, 1)], seed=3, dtype=np.float64)
    opt = optim.RMSProp(momentum=0.5)
    with pytest.raises(ValueError, match="X is empty"):
        getattr(model, method)(np.zeros((0, 3), np.float32), np.zeros(0, np.float32), loss="mse", optimizer=opt)
    assert opt.state == {} and model.step == 0


def _adam_reference(p, g, lr, b1, b2, eps, t):
    m = (1 - b1) * g
    v = (1 - b2) * g * g
    return p - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)


@pytest.mark.parametrize("step", [2 ** 63 - 512, 2 ** 63 - 1])
def test_adam_update_takes_steps_up_to_int64(step):
    # fuzz_ops t_optimizer_op: adam_update(..., step=9223372036854775807) was refused with the
    # false "adam step must be >= 1": the step went to C++ as a double that was cast to int64,
    # which overflows (undefined behaviour) from 2**63 - 512 on. It is now passed as an int.
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([0.3, -0.1, 2.0])
    m, v = np.zeros(3), np.zeros(3)
    expect = _adam_reference(p, g, 1e-3, 0.9, 0.999, 1e-7, float(step))
    ops.adam_update(p, g, m, v, step, 1e-3)
    np.testing.assert_allclose(p, expect, rtol=1e-12)


@pytest.mark.parametrize("step", [2 ** 63, 2 ** 64 - 1, 0])
def test_adam_update_refuses_steps_outside_int64(step):
    p = np.array([1.0, -2.0, 0.5])
    before = p.copy()
    m, v = np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match="step"):
        ops.adam_update(p, np.ones(3), m, v, step, 1e-3)
    assert p.tobytes() == before.tobytes() and not m.any() and not v.any()


@pytest.mark.parametrize("step", [1, 2, 2 ** 53 + 1, 2 ** 62])
def test_adam_update_large_steps_below_the_bug(step):
    """The same check where it passes today: bias correction vanishes for large steps."""
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([0.3, -0.1, 2.0])
    expect = _adam_reference(p, g, 1e-3, 0.9, 0.999, 1e-7, float(step))
    ops.adam_update(p, g, np.zeros(3), np.zeros(3), step, 1e-3)
    np.testing.assert_allclose(p, expect, rtol=1e-12)


def test_dropout_of_a_0d_bool_input():
    """Decoded from a fuzz input (the harness then mixed up the forward and backward masks):
    a 0-d bool x is converted to float32; the mask has one byte; the output is exactly
    0 or x * float32(1 / (1 - rate)); dropout_mask and dropout_backward agree with it."""
    rate, seed, step = 0.3333, 3, 3
    out = ops.dropout_forward(np.array(True), rate, seed=seed, step=step)
    assert out.y.shape == () and out.y.dtype == np.float32 and out.mask.shape == (1,)
    keep = bool(ops.dropout_mask((), rate, seed=seed, step=step))
    assert bool(out.mask[0] & 1) == keep
    assert out.y == (np.float32(1.0 / (1.0 - rate)) if keep else 0.0)
    g = np.linspace(-3, 3, 108, dtype=np.float32).reshape(9, 2, 6)
    dx = ops.dropout_backward(g, rate, seed=seed, step=step)  # regenerated for g's own 108 elements
    expect = g * np.where(ops.dropout_mask(g.shape, rate, seed=seed, step=step), np.float32(1 / (1 - rate)),
                          np.float32(0))
    np.testing.assert_array_equal(dx, expect)


# ----------------------------------------------------------------------------- fuzz_load findings


def _estimator_file(tmp_path, fitted=None, params=None):
    X = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    reg = fastnn.DNNRegressor(hidden_units=(8,), epochs=1, random_state=0).fit(X, X.sum(axis=1))
    good = tmp_path / "reg.npz"
    reg.save(good)
    header, arrays = persistence.read_model(good)
    header = {k: v for k, v in header.items() if k not in ("magic", "format_version", "fastnn_version", "arrays")}
    header["fitted"].update(fitted or {})
    header["params"].update(params or {})
    forged = tmp_path / "forged.npz"
    persistence.write_model(forged, header, arrays)
    return forged


@pytest.mark.parametrize("forged", [{"fitted": {"n_features_in_": 10 ** 12}},
                                    {"params": {"hidden_units": [2 ** 31 + 3]}}], ids=["n_features_in_", "hidden_units"])
def test_forged_estimator_widths_are_refused_before_allocating(tmp_path, forged):
    # fuzz_load: Pipeline files whose DNNRegressor header said n_features_in_=3000000000000,
    # or hidden_units=[2147483651] (the saved weights being those of 3 inputs, 3 hidden units)
    with pytest.raises(fastnn.ModelFormatError) as info:
        fastnn.load(_estimator_file(tmp_path, **forged))
    assert not isinstance(info.value.__cause__, MemoryError), str(info.value)
    # a width that does fit in memory: refused without building it
    scale = {key: {k: (2 * 10 ** 6 if k == "n_features_in_" else [2 * 10 ** 6]) for k in v} for key, v in forged.items()}
    path = _estimator_file(tmp_path, **scale)
    peak = _peak_bytes_of_refused_load(path)
    assert peak < 32 << 20, f"loading a {path.stat().st_size}-byte file peaked at {peak >> 20} MiB"


def _peak_bytes_of_refused_load(path) -> int:
    """Peak traced Python memory while ``fastnn.load(path)`` raises ModelFormatError."""
    tracemalloc.start()
    try:
        with pytest.raises(fastnn.ModelFormatError):
            fastnn.load(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _deflate_bomb(path, source, n_floats):
    """``source`` with its ``model.params`` entry replaced by a DEFLATE-compressed .npy of
    ``n_floats`` float32 zeros: about 1000 times smaller on disk than in memory."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if info.filename != "model.params.npy":
                dst.writestr(info, src.read(info))
                continue
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (n_floats,)})
            member = zipfile.ZipInfo("model.params.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            with dst.open(member, "w", force_zip64=True) as f:
                f.write(header.getvalue())
                chunk = bytes(1 << 20)
                for _ in range(n_floats * 4 >> 20):
                    f.write(chunk)


def test_compressed_entry_cannot_inflate_memory(tmp_path):
    source = tmp_path / "model.npz"
    fastnn.save(nn.Sequential([nn.Dense(2, 2)], seed=0), source)
    bomb = tmp_path / "bomb.npz"
    _deflate_bomb(bomb, source, 8 << 20)  # 32 MiB of float32 zeros
    assert bomb.stat().st_size < 64 << 10
    peak = _peak_bytes_of_refused_load(bomb)
    assert peak < 8 << 20, f"loading a {bomb.stat().st_size}-byte file peaked at {peak >> 20} MiB"


def test_truncated_and_flipped_files_are_format_errors(tmp_path):
    """The fuzz_load seed variants, as a plain test: every prefix and a flipped byte in the
    header, the data and the central directory give ModelFormatError naming the path."""
    path = tmp_path / "model.npz"
    model = nn.Sequential([nn.Dense(3, 4, activation="prelu"), nn.BatchNorm(4), nn.Dense(4, 2)], seed=1)
    persistence.save_sequential(model, path, optimizer=optim.Adam())
    data = path.read_bytes()
    bad = tmp_path / "bad.npz"
    variants = [data[:n] for n in (0, 1, 10, 100, len(data) // 2, len(data) - 1)]
    # a byte of the header's JSON, of the params data, of a name in the central directory
    # (a flip in a field zip readers ignore, such as the local zip64 extra field, is harmless)
    for where in (data.index(b'"magic"') + 2, data.index(b"model.params.npy") + 16 + 20 + 128 + 5,
                  data.rindex(b"model.params.npy") + 3):
        flipped = bytearray(data)
        flipped[where] ^= 0x20
        variants.append(bytes(flipped))
    for variant in variants:
        bad.write_bytes(variant)
        with pytest.raises(fastnn.ModelFormatError, match="bad.npz"):
            fastnn.load(bad)


# ----------------------------------------------------------------------------- replaying the harnesses


def _import_harness(name):
    pytest.importorskip("atheris")
    path = os.path.join(FUZZ_DIR, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_fastnn_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzz_ops_harness_replays_random_inputs():
    """fuzz_ops.TestOneInput on 300 fixed pseudo-random inputs: no oracle violation."""
    harness = _import_harness("fuzz_ops")
    rng = random.Random(20261127)
    for _ in range(300):
        harness.TestOneInput(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400))))


def test_fuzz_load_harness_replays_its_seed_corpus_and_mutations(tmp_path):
    """fuzz_load's --make-corpus seeds, and 60 structural mutations of them, through its oracle."""
    harness = _import_harness("fuzz_load")
    harness.make_corpus(str(tmp_path))
    seeds = sorted(tmp_path.iterdir())
    assert len(seeds) >= 10
    rng = random.Random(7)

    def flip_bytes(data, max_size):  # stands in for atheris.Mutate, which needs atheris.Fuzz running
        out = bytearray(data[:max_size])
        for _ in range(min(len(out), 3)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)

    for path in seeds:
        data = path.read_bytes()
        harness.TestOneInput(data)
        for _ in range(6 if len(data) > 1000 else 0):
            harness.TestOneInput(harness._structural_mutation(data, 1 << 16, rng.randrange(2 ** 32), flip_bytes))


def test_fuzz_load_harness_replays_skops_part_mutations(tmp_path):
    """The skops seed with 40 edits inside its skops part (class, module and loader names
    of the schema, dropped or damaged entries): each is refused as a ModelFormatError or
    loads into a pipeline that works."""
    pytest.importorskip("skops")
    harness = _import_harness("fuzz_load")
    harness.make_corpus(str(tmp_path))
    data = (tmp_path / "pipeline_skops.npz").read_bytes()
    entries = harness._read_zip(data)
    index = next(i for i, (name, _) in enumerate(entries) if name.endswith(".skops.npy"))
    rng = random.Random(11)

    def flip_bytes(content, max_size):
        out = bytearray(content[:max_size])
        for _ in range(3):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)

    for _ in range(40):
        mutated = list(entries)
        name, content = mutated[index]
        mutated[index] = (name, harness._mutate_skops(content, rng, flip_bytes))
        harness.TestOneInput(harness._write_zip(mutated))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
