"""Golden test: a tiny fixed network's loss over 10 steps against the stored trajectory
that tests/golden/make_golden.py computed with PyTorch (float64)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fastnn import nn, optim

import support

GOLDEN = json.loads((support.GOLDEN / "tiny_network.json").read_text())


@pytest.mark.parametrize("name", sorted(GOLDEN["losses"]))
@pytest.mark.parametrize("path", ["train_step", "train_epoch"])
def test_loss_trajectory_matches_pytorch(simd, name, path):
    c = GOLDEN
    model = nn.Sequential([nn.Dense(3, 4, activation="tanh"), nn.Dense(4, 1)], seed=0, dtype=np.float64)
    p = model.named_params()
    p["0.weight"][...] = c["w0"]
    p["0.bias"][...] = c["b0"]
    p["1.weight"][...] = c["w1"]
    p["1.bias"][...] = c["b1"]
    h = c["optimizers"][name]
    opt = optim.SGD(lr=h["lr"], momentum=h["momentum"]) if name == "sgd_momentum" else optim.Adam(lr=h["lr"])
    x, y = np.array(c["x"]), np.array(c["y"])
    losses = []
    for _ in range(c["steps"]):
        if path == "train_step":
            losses.append(model.train_step(x, y, optimizer=opt))
        else:  # one full batch per epoch, in order: the same step
            losses.append(model.train_epoch(x, y, batch_size=len(x), optimizer=opt, shuffle=False).loss)
    np.testing.assert_allclose(losses, c["losses"][name], rtol=1e-12, atol=1e-14)
    assert losses[-1] < 0.75 * losses[0]  # and the case does train
