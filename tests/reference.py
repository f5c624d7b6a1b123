"""NumPy float64 reference implementations: the test oracle for every kernel."""
from __future__ import annotations

import numpy as np


def act_forward(name: str, z: np.ndarray, *, negative_slope=0.01, alpha=1.0, slope=None) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if name == "linear":
        return z.copy()
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, negative_slope * z)
    if name == "prelu":
        return np.where(z > 0, z, np.asarray(slope, np.float64) * z)
    if name == "elu":
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))
    if name == "sigmoid":
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if name == "tanh":
        return np.tanh(z)
    raise ValueError(name)


def act_derivative(name: str, z: np.ndarray, *, negative_slope=0.01, alpha=1.0, slope=None) -> np.ndarray:
    """d act / d z, evaluated at the pre-activation z."""
    z = np.asarray(z, dtype=np.float64)
    if name == "linear":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, negative_slope)
    if name == "prelu":
        return np.where(z > 0, 1.0, np.broadcast_to(np.asarray(slope, np.float64), z.shape))
    if name == "elu":
        return np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0)))
    if name == "sigmoid":
        s = act_forward("sigmoid", z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    raise ValueError(name)


def dense_forward(x, w, b=None, activation="linear", **kw):
    z = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    if b is not None:
        z = z + np.asarray(b, np.float64)
    return act_forward(activation, z, **kw), z


def dense_backward(grad_out, x, w, z, activation="linear", **kw):
    """(dx, dw, db, dslope) in float64 from the pre-activation z."""
    g = np.asarray(grad_out, np.float64)
    dz = g * act_derivative(activation, z, **kw)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    dslope = (g * np.minimum(z, 0)).sum(axis=0) if activation == "prelu" else None
    return dz @ w.T, x.T @ dz, dz.sum(axis=0), dslope


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar function f at x (float64, modified in place
    and restored)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


# Activations whose derivative is read from the forward output (all but prelu), and the
# extra keyword arguments each takes in the tests.
ACTIVATIONS = ("linear", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh")


def activation_kwargs(name: str, units: int, rng: np.random.Generator) -> dict:
    if name == "prelu":
        return {"slope": rng.uniform(-0.5, 0.5, size=units)}
    if name == "leaky_relu":
        return {"negative_slope": 0.1}
    if name == "elu":
        return {"alpha": 0.7}
    return {}
