"""The lecture's soup, as a data set for ``fastnn demo``.

Each row is a pot of soup: chicken stock measured in litres next to vegetable stock
measured in millilitres (the lecture's example of features on very different scales),
salt in grams and cooking time in minutes. ``tastiness`` (0 to about 10) rises as the
salt concentration approaches 8 g per litre and falls away on both sides, needs time to
develop but suffers from overcooking, and likes some chicken in the mix; plus noise.
Deterministic for a given seed.
"""
from __future__ import annotations

import numpy as np

from fastnn._files import atomic_write_text

__all__ = ["FEATURES", "TARGET", "soup", "write_soup"]

FEATURES = ("chicken_stock_l", "veg_stock_ml", "salt_g", "minutes")
TARGET = "tastiness"


def soup(n_rows: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): ``X`` of shape (n_rows, 4) with the columns ``FEATURES`` (rounded as a cook
    would measure them), ``y`` of shape (n_rows,), the tastiness."""
    rng = np.random.default_rng(seed)
    chicken_l = np.round(rng.uniform(0.5, 3.0, n_rows), 2)
    veg_ml = np.round(rng.uniform(100.0, 2000.0, n_rows), -1)
    salt_g = np.round(rng.uniform(2.0, 30.0, n_rows), 1)
    minutes = np.round(rng.uniform(10.0, 120.0, n_rows))
    litres = chicken_l + veg_ml / 1000.0
    salinity = salt_g / litres  # grams per litre: the ratio is what the tongue tastes
    salt_taste = np.exp(-0.5 * (np.log(salinity / 8.0) / 0.45) ** 2)
    cooked = (1.0 - np.exp(-minutes / 25.0)) - 0.004 * np.maximum(minutes - 80.0, 0.0)
    chicken_share = chicken_l / litres
    y = 7.0 * salt_taste * cooked + 2.0 * chicken_share + rng.normal(0.0, 0.3, n_rows)
    X = np.column_stack([chicken_l, veg_ml, salt_g, minutes])
    return X, np.round(y, 3)


def write_soup(path, n_rows: int = 2000, seed: int = 0) -> None:
    """Write ``soup(n_rows, seed)`` to ``path`` as CSV with a header row."""
    X, y = soup(n_rows, seed)

    def write(f):
        f.write(",".join(FEATURES + (TARGET,)) + "\n")
        for row, target in zip(X.tolist(), y.tolist()):
            f.write(f"{row[0]:g},{row[1]:g},{row[2]:g},{row[3]:g},{target:g}\n")

    atomic_write_text(path, write)
