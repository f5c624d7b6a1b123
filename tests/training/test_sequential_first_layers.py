"""Any layer may come first in a Sequential (issue 13): BatchNorm(n) gives the width, a
model of width-free layers learns it at its first input (or takes input_dim), and such
models train (train_epoch and train_step), predict, save and load. Their forward and
backward follow PyTorch's BatchNorm1d and Dropout semantics."""
from __future__ import annotations

import numpy as np
import pytest

from fastnn import nn, ops, optim, persistence


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32) * 3 + 1


MODELS = {
    "batchnorm": lambda: nn.Sequential([nn.BatchNorm(8)], seed=1),
    "dropout": lambda: nn.Sequential([nn.Dropout(0.3)], seed=1),
    "activation-dense": lambda: nn.Sequential([nn.Activation("tanh"), nn.Dense(8, 2)], seed=1),
}


def _target(name, X):
    return X[:, :2] * 0.5 if name == "activation-dense" else X * 0.5 + 1


@pytest.mark.parametrize("name", list(MODELS))
def test_trains_predicts_saves_and_loads(name, X, tmp_path):
    model = MODELS[name]()
    y = _target(name, X)
    opt = optim.Adam(lr=0.05)
    first = model.train_epoch(X, y, batch_size=16, optimizer=opt, seed=3)
    for _ in range(5):
        last = model.train_epoch(X, y, batch_size=16, optimizer=opt, seed=3)
    assert np.isfinite(first.loss) and first.steps == 4
    if model.params.size:  # something to learn
        assert last.loss < first.loss
    loss = model.train_step(X[:16], y[:16], optimizer=opt)
    assert np.isfinite(loss)
    pred = model.predict(X)
    assert pred.shape == y.shape and np.all(np.isfinite(pred))
    path = tmp_path / "m.fnn"
    persistence.save_sequential(model, path, optimizer=opt)
    loaded, opt2 = persistence.load_sequential(path)
    assert (loaded.in_features, loaded.out_features) == (model.in_features, model.out_features) == (8, y.shape[1])
    assert loaded.predict(X).tobytes() == pred.tobytes()
    # and training continues bitwise the same
    a = model.train_epoch(X, y, batch_size=16, optimizer=opt, seed=9)
    b = loaded.train_epoch(X, y, batch_size=16, optimizer=opt2, seed=9)
    assert a.loss == b.loss and model.params.tobytes() == loaded.params.tobytes()


def test_width_free_model_learns_its_width_at_the_first_call_or_takes_input_dim(X, tmp_path):
    lazy = nn.Sequential([nn.Dropout(0.3), nn.Activation("relu")])
    assert lazy.in_features is None and lazy.params.size == 0
    persistence.save_sequential(lazy, tmp_path / "unbuilt.fnn")  # saved before any input: still lazy
    assert persistence.load_sequential(tmp_path / "unbuilt.fnn")[0].in_features is None
    assert lazy.predict(X).shape == X.shape and lazy.in_features == 8
    with pytest.raises(ValueError, match="has 5 features, but the model takes 8"):
        lazy.predict(X[:, :5])
    fixed = nn.Sequential([nn.Dropout(0.3)], input_dim=8)
    assert fixed.in_features == fixed.out_features == 8
    with pytest.raises(ValueError, match=r"layers\[1\]: Dense\(in_features=4\) follows a layer of width 8"):
        nn.Sequential([nn.Dropout(0.1), nn.Dense(4, 1)], input_dim=8)
    with pytest.raises(ValueError, match="input_dim"):
        nn.Sequential([nn.Dropout(0.1)], input_dim=0)


def test_batchnorm_first_matches_batchnorm1d_semantics(X):
    """Training forward normalizes with the biased batch variance; the running variance is
    updated with the unbiased one; fastnn's momentum 0.99 is PyTorch's 0.01."""
    model = nn.Sequential([nn.BatchNorm(8, momentum=0.9, eps=1e-3)], dtype=np.float64)
    x = X.astype(np.float64)
    y = model.forward(x, training=True)
    mean, var = x.mean(0), x.var(0)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-12, atol=1e-12)
    buffers = model.named_buffers()
    np.testing.assert_allclose(buffers["0.running_mean"], 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(buffers["0.running_var"], 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-12)
    dy = np.random.default_rng(1).standard_normal(x.shape)
    dx = model.backward(dy)
    # d/dx of the normalization, written out (PyTorch's BatchNorm1d backward)
    xhat, inv = (x - mean) / np.sqrt(var + 1e-3), 1 / np.sqrt(var + 1e-3)
    expected = inv * (dy - dy.mean(0) - xhat * (dy * xhat).mean(0))
    np.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.named_grads()["0.gamma"], (dy * xhat).sum(0), rtol=1e-10)
    torch = pytest.importorskip("torch")
    bn = torch.nn.BatchNorm1d(8, momentum=0.1, eps=1e-3, dtype=torch.float64)
    xt = torch.tensor(x, requires_grad=True)
    out = bn(xt)
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(buffers["0.running_var"], bn.running_var.numpy(), rtol=1e-12)


def test_dropout_first_matches_dropout_semantics(X):
    """Inverted dropout: training zeroes with probability rate and scales survivors by
    1/(1 - rate) (masks keyed by seed and step); inference is the identity."""
    model = nn.Sequential([nn.Dropout(0.25)], seed=5)
    y = model.forward(X, training=True)
    keep = ops.dropout_mask(X.shape, 0.25, seed=nn._layer_seed(5, 0), step=1)
    np.testing.assert_array_equal(y, np.where(keep, X * np.float32(1 / 0.75), 0))
    dy = np.ones_like(X)
    np.testing.assert_array_equal(model.backward(dy), np.where(keep, np.float32(1 / 0.75), 0))
    assert 0.6 < keep.mean() < 0.9
    np.testing.assert_array_equal(model.predict(X), X)
