"""fastnn.nn: layers and Sequential with one flat parameter buffer and one flat gradient
buffer; gradients against central finite differences; predict in chunks; init; errors."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim

from reference import numerical_gradient


def mixed_model(dtype=np.float64, seed=3):
    return nn.Sequential([
        nn.Dense(4, 6, activation="prelu"),
        nn.BatchNorm(6),
        nn.Dropout(0.3),
        nn.Dense(6, 5, activation="tanh"),
        nn.Activation("elu"),
        nn.Dense(5, 5, activation="leaky_relu", negative_slope=0.1),
        nn.Activation("sigmoid"),
        nn.Dense(5, 2),
    ], seed=seed, dtype=dtype)


def test_flat_buffers_are_views():
    m = mixed_model(np.float32)
    assert m.params.ndim == 1 and m.grads.shape == m.params.shape
    total = 0
    for name, view in m.named_params().items():
        assert np.shares_memory(view, m.params), name
        assert np.shares_memory(m.named_grads()[name], m.grads), name
        total += view.size
    assert total == m.params.size
    m.named_params()["0.weight"][0, 0] = 123.0
    assert 123.0 in m.params
    m.params[:] = 0
    assert not m.named_params()["3.weight"].any()
    assert set(m.named_buffers()) == {"1.running_mean", "1.running_var"}
    # weights are marked for regularization; biases, prelu slopes, gamma and beta are not
    mask_entries = sum(v.size for k, v in m.named_params().items() if k.endswith("weight"))
    assert m.weight_mask.sum() == mask_entries


@pytest.mark.parametrize("seed", [0, 7])
def test_gradients_match_finite_differences(simd, seed):
    m = mixed_model(np.float64, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((9, 4))
    gy = rng.standard_normal((9, 2))
    step0 = m.step

    def loss():
        m.step = step0  # the same dropout mask on every evaluation
        return float((m.forward(x, training=True) * gy).sum())

    loss()
    gx = m.backward(gy)
    analytic = m.grads.copy()
    numeric = numerical_gradient(loss, m.params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gx, numerical_gradient(loss, x), rtol=1e-5, atol=1e-7)


def test_default_init_is_glorot_uniform_with_zero_bias_and_seeded():
    a = nn.Sequential([nn.Dense(100, 50), nn.Dense(50, 1)], seed=1)
    b = nn.Sequential([nn.Dense(100, 50), nn.Dense(50, 1)], seed=1)
    c = nn.Sequential([nn.Dense(100, 50), nn.Dense(50, 1)], seed=2)
    assert np.array_equal(a.params, b.params) and not np.array_equal(a.params, c.params)
    w = a.named_params()["0.weight"]
    limit = np.sqrt(6 / 150)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
    assert abs(w.std() - limit / np.sqrt(3)) < 0.05 * limit
    assert not a.named_params()["0.bias"].any()
    he = nn.Sequential([nn.Dense(200, 300, init="he_normal")], seed=0).named_params()["0.weight"]
    assert abs(he.std() - np.sqrt(2 / 200)) < 0.05 * np.sqrt(2 / 200)


def test_predict_is_inference_and_chunk_independent(rng):
    m = mixed_model(np.float32)
    x = rng.standard_normal((1000, 4)).astype(np.float32)
    for _ in range(3):
        m.forward(x[:64], training=True)  # moves the running statistics
    whole = m.predict(x)
    assert np.array_equal(whole, m.predict(x, batch_size=77))
    assert np.array_equal(whole[10:20], m.predict(x[10:20]))
    assert np.array_equal(whole, m.forward(x, training=False))  # dropout off, running statistics
    assert np.array_equal(m.predict(x), whole)  # inference changes nothing


def test_dropout_masks_change_per_training_step(rng):
    m = nn.Sequential([nn.Dense(3, 200), nn.Dropout(0.5)], seed=0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    a = m.forward(x) == 0
    b = m.forward(x) == 0
    assert a.any() and not np.array_equal(a, b)


def test_train_step_matches_the_manual_path(rng):
    x = rng.standard_normal((32, 4))
    y = rng.standard_normal(32)
    a = nn.Sequential([nn.Dense(4, 8, activation="relu"), nn.Dense(8, 1)], seed=5, dtype=np.float64)
    b = nn.Sequential([nn.Dense(4, 8, activation="relu"), nn.Dense(8, 1)], seed=5, dtype=np.float64)
    oa, ob = optim.Adam(lr=0.01), optim.Adam(lr=0.01)
    for _ in range(5):
        la = a.train_step(x, y, loss="mse", optimizer=oa, clip_norm=1.0)
        out = b.forward(x, training=True)
        value, grad = fastnn.ops.mse_loss(out, y.reshape(-1, 1))
        b.backward(grad)
        optim.clip_by_global_norm(b.grads, 1.0)
        ob.step(b)
        assert la == value
        assert np.array_equal(a.params, b.params)


def test_training_reduces_the_loss(rng):
    x = rng.standard_normal((256, 3)).astype(np.float32)
    y = (np.sin(x[:, 0]) + x[:, 1] * x[:, 2]).astype(np.float32)
    m = nn.Sequential([nn.Dense(3, 32, activation="relu"), nn.BatchNorm(32), nn.Dense(32, 1)], seed=0)
    opt = optim.Adam(lr=0.01)
    first = m.train_step(x, y, optimizer=opt)
    for _ in range(200):
        last = m.train_step(x, y, optimizer=opt)
    assert last < 0.3 * first


@pytest.mark.parametrize("layers,match", [
    ([nn.Dense(3, 4), nn.Dense(5, 1)], r"layers\[1\]: Dense\(in_features=5\) follows a layer of width 4"),
    ([nn.Dense(3, 4), nn.BatchNorm(5)], r"layers\[1\]: BatchNorm\(num_features=5\) follows a layer of width 4"),
    ([], "at least one layer"),
    ([nn.Dropout(0.1), nn.BatchNorm(4), nn.Dense(5, 1)],  # any layer may come first; widths still chain
     r"layers\[2\]: Dense\(in_features=5\) follows a layer of width 4"),
])
def test_bad_stacks(layers, match):
    with pytest.raises(ValueError, match=match):
        nn.Sequential(layers)


def test_bad_layers_and_inputs():
    with pytest.raises(ValueError, match="fastnn takes the DROP rate"):
        nn.Dropout(keep_prob=0.9)
    with pytest.raises(ValueError, match="rate must be in"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.Dense(3, 4, activation="gelu")
    with pytest.raises(ValueError, match="use Dense"):
        nn.Activation("prelu")
    with pytest.raises(ValueError, match="momentum must be in"):
        nn.BatchNorm(3, momentum=1.5)
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        nn.Dense(0, 4)
    with pytest.raises(TypeError, match="layers\\[0\\] must be a fastnn.nn layer"):
        nn.Sequential(["dense"])
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        nn.Sequential([nn.Dense(3, 1)], dtype=np.int32)
    m = nn.Sequential([nn.Dense(3, 2), nn.BatchNorm(2)], seed=0)
    with pytest.raises(ValueError, match="x has 4 features, but the model takes 3"):
        m.predict(np.ones((2, 4)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        m.forward(np.ones((1, 3)), training=True)
    with pytest.raises(RuntimeError, match="forward pass first"):
        nn.Sequential([nn.Dense(3, 2)]).backward(np.ones((1, 2)))
    m.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"grad_y must have shape \(4, 2\)"):
        m.backward(np.ones((4, 3)))
    with pytest.raises(ValueError, match="loss must be one of"):
        m.train_step(np.ones((4, 3)), np.ones((4, 2)), loss="mae", optimizer=optim.SGD())
    with pytest.raises(ValueError, match="y has 5 rows but X has 4"):
        m.train_step(np.ones((4, 3)), np.ones((5, 2)), optimizer=optim.SGD())
    with pytest.raises(ValueError, match="at least 2 rows"):
        m.train_step(np.ones((1, 3)), np.ones((1, 2)), optimizer=optim.SGD())
    with pytest.raises(FloatingPointError, match="the loss is not finite"):
        m.train_step(np.ones((4, 3)), np.full((4, 2), np.nan), optimizer=optim.SGD())
