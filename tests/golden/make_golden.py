"""Writes tests/golden/tiny_network.json: the loss trajectory of a tiny fixed network over
10 training steps, computed with PyTorch (float64) from the same weights, data and
optimizer settings that tests/training/test_golden.py gives fastnn.

    python tests/golden/make_golden.py      # needs torch; rerun only if the case changes
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import torch

HERE = pathlib.Path(__file__).parent


def case():
    """The fixed case, shared with the test: data, weights (in, out layout), settings."""
    rng = np.random.default_rng(2026)
    return {
        "x": rng.standard_normal((8, 3)).round(3).tolist(),
        "y": rng.standard_normal((8, 1)).round(3).tolist(),
        "w0": rng.uniform(-0.8, 0.8, (3, 4)).round(3).tolist(),
        "b0": rng.uniform(-0.1, 0.1, 4).round(3).tolist(),
        "w1": rng.uniform(-0.8, 0.8, (4, 1)).round(3).tolist(),
        "b1": [0.05],
        "optimizers": {"sgd_momentum": {"lr": 0.1, "momentum": 0.9}, "adam": {"lr": 0.05}},
        "steps": 10,
    }


def trajectory(c, name):
    lin0, lin1 = torch.nn.Linear(3, 4).double(), torch.nn.Linear(4, 1).double()
    with torch.no_grad():
        lin0.weight.copy_(torch.tensor(c["w0"], dtype=torch.float64).T)
        lin0.bias.copy_(torch.tensor(c["b0"], dtype=torch.float64))
        lin1.weight.copy_(torch.tensor(c["w1"], dtype=torch.float64).T)
        lin1.bias.copy_(torch.tensor(c["b1"], dtype=torch.float64))
    params = list(lin0.parameters()) + list(lin1.parameters())
    h = c["optimizers"][name]
    opt = (torch.optim.SGD(params, lr=h["lr"], momentum=h["momentum"]) if name == "sgd_momentum"
           else torch.optim.Adam(params, lr=h["lr"], eps=1e-7))
    x, y = torch.tensor(c["x"], dtype=torch.float64), torch.tensor(c["y"], dtype=torch.float64)
    losses = []
    for _ in range(c["steps"]):
        opt.zero_grad()
        loss = ((lin1(torch.tanh(lin0(x))) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


if __name__ == "__main__":
    c = case()
    c["losses"] = {name: trajectory(c, name) for name in c["optimizers"]}
    c["produced_by"] = f"torch {torch.__version__}, float64"
    (HERE / "tiny_network.json").write_text(json.dumps(c, indent=1) + "\n")
    print("wrote", HERE / "tiny_network.json")
