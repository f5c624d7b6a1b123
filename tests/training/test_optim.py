"""fastnn.optim: optimizer classes over a model's flat buffers (against PyTorch where
installed, and against the ops kernels), schedules, state_dict round trips."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fastnn import nn, ops, optim


def model(seed=0):
    return nn.Sequential([nn.Dense(3, 8, activation="relu"), nn.BatchNorm(8), nn.Dense(8, 1)], seed=seed,
                         dtype=np.float64)


def run(opt, steps=25, seed=0):
    m = model(seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.standard_normal((16, 3))
        y = rng.standard_normal((16, 1))
        m.train_step(x, y, optimizer=opt)
    return m


@pytest.mark.parametrize("make", [
    lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    lambda: optim.Adagrad(lr=0.05),
    lambda: optim.Adam(lr=0.01),
    lambda: optim.AdamW(lr=0.01, weight_decay=0.1),
    lambda: optim.RMSProp(lr=0.01, momentum=0.5, centered=True),
])
def test_against_torch(make):
    torch = pytest.importorskip("torch")
    opt = make()
    m = model()
    tm = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8, momentum=0.01, eps=1e-3),
                             torch.nn.Linear(8, 1)).double()
    p = m.named_params()
    with torch.no_grad():
        tm[0].weight.copy_(torch.tensor(p["0.weight"].T))
        tm[0].bias.copy_(torch.tensor(p["0.bias"]))
        tm[3].weight.copy_(torch.tensor(p["2.weight"].T))
        tm[3].bias.copy_(torch.tensor(p["2.bias"]))
    name = type(opt).__name__
    if name == "SGD":
        topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    elif name == "Adagrad":
        topt = torch.optim.Adagrad(tm.parameters(), lr=0.05, initial_accumulator_value=0.1, eps=1e-7)
    elif name == "AdamW":
        # torch decays every parameter; fastnn only the weights: give torch two groups
        weights = [tm[0].weight, tm[3].weight]
        others = [tm[0].bias, tm[2].weight, tm[2].bias, tm[3].bias]
        topt = torch.optim.AdamW([{"params": weights, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
                                 lr=0.01, eps=1e-7)
    elif name == "Adam":
        topt = torch.optim.Adam(tm.parameters(), lr=0.01, eps=1e-7)
    else:
        topt = torch.optim.RMSprop(tm.parameters(), lr=0.01, alpha=0.9, eps=1e-7, momentum=0.5, centered=True)
    rng = np.random.default_rng(1)
    for _ in range(25):
        x = rng.standard_normal((16, 3))
        y = rng.standard_normal((16, 1))
        ours = m.train_step(x, y, optimizer=opt)
        topt.zero_grad()
        loss = ((tm(torch.tensor(x)) - torch.tensor(y)) ** 2).mean()
        loss.backward()
        topt.step()
        assert ours == pytest.approx(loss.item(), rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(p["2.weight"].T, tm[3].weight.detach().numpy(), rtol=1e-8, atol=1e-10)


def test_regularization_only_touches_weights():
    m = model()
    before = m.params.copy()
    m.grads[...] = 0
    optim.SGD(lr=0.1, l2=0.5).step(m)
    changed = m.params != before
    assert np.array_equal(changed, m.weight_mask & (before != 0))
    np.testing.assert_allclose(m.params[m.weight_mask], before[m.weight_mask] * (1 - 0.1 * 2 * 0.5))


def test_step_on_flat_buffers_equals_the_kernel():
    rng = np.random.default_rng(0)
    p = rng.standard_normal(100)
    g = rng.standard_normal(100)
    q, m, v = p.copy(), np.zeros(100), np.zeros(100)
    opt = optim.Adam(lr=0.01)
    for step in range(1, 4):
        opt.step(p, g)
        ops.adam_update(q, g, m, v, step, 0.01)
    assert np.array_equal(p, q)


def test_state_dict_round_trip_continues_identically():
    a = optim.Adam(lr=0.01)
    m1 = run(a, steps=10)
    state = a.state_dict()
    b = optim.Adam(lr=0.01)
    b.load_state_dict(state)
    m2 = model()
    m2.params[...] = m1.params
    m2.buffers[...] = m1.buffers
    rng = np.random.default_rng(9)
    for _ in range(5):
        x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 1))
        m1.train_step(x, y, optimizer=a)
        m2.train_step(x, y, optimizer=b)
    assert np.array_equal(m1.params, m2.params)
    assert a.iterations == b.iterations == 15


def test_load_state_dict_rejects_mismatches():
    a = optim.Adam()
    run(a, steps=1)
    with pytest.raises(ValueError, match="is for 'Adam', not Adagrad"):
        optim.Adagrad().load_state_dict(a.state_dict())
    bad = a.state_dict()
    bad["state"]["v"] = bad["state"]["v"][:-1]
    with pytest.raises(ValueError, match="one length"):
        optim.Adam().load_state_dict(bad)
    bad = a.state_dict()
    del bad["state"]["v"]
    with pytest.raises(ValueError, match="needs"):
        optim.Adam().load_state_dict(bad)
    with pytest.raises(ValueError, match="another model"):
        a.step(nn.Sequential([nn.Dense(2, 1)], dtype=np.float64))


def test_schedules():
    assert optim.Constant(0.1)(100) == 0.1
    e = optim.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert e(10) == pytest.approx(0.05) and e(5) == pytest.approx(0.1 * 0.5 ** 0.5)
    assert optim.ExponentialDecay(0.1, 10, 0.5, staircase=True)(15) == pytest.approx(0.05)
    s = optim.StepDecay(1.0, step_size=3, factor=0.1)
    assert [s(i) for i in (0, 2, 3, 6)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    c = optim.CosineDecay(1.0, decay_steps=100, alpha=0.1)
    assert c(0) == pytest.approx(1.0) and c(50) == pytest.approx(0.55) and c(100) == c(200) == pytest.approx(0.1)
    opt = optim.SGD(lr=optim.StepDecay(1.0, step_size=2, factor=0.5))
    p, g = np.zeros(3), np.ones(3)
    lrs = []
    for _ in range(4):
        lrs.append(opt.lr)
        opt.step(p, g)
    assert lrs == [1.0, 1.0, 0.5, 0.5]
    assert p[0] == pytest.approx(-3.0)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: optim.SGD(lr=-1), ValueError, "lr must be >= 0"),
    (lambda: optim.SGD(nesterov=True), ValueError, "nesterov=True needs momentum"),
    (lambda: optim.Adam(beta1=1.0), ValueError, "beta1 must be in"),
    (lambda: optim.RMSProp(rho=1.0), ValueError, "rho must be in"),
    (lambda: optim.Adagrad(lr=float("nan")), ValueError, "lr must be finite"),
    (lambda: optim.Adam(l2="0.1"), TypeError, "l2 must be a real number"),
])
def test_bad_hyperparameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_adagrad_accumulator_starts_at_initial_value():
    opt = optim.Adagrad(lr=0.1, initial_accumulator_value=0.1)
    p, g = np.zeros(2), np.array([1.0, -2.0])
    opt.step(p, g)
    np.testing.assert_allclose(opt.state["accumulator"], 0.1 + g * g)
    np.testing.assert_allclose(p, -0.1 * g / (np.sqrt(0.1 + g * g) + 1e-7))
    assert math.isclose(opt.lr, 0.1)
