"""Fused in-place optimizer updates (ops.sgd_update, adagrad_update, adam_update,
rmsprop_update) on flat buffers: 25-step trajectories with changing gradients against a
float64 NumPy reference of each documented rule and against torch.optim, L1/L2
regularization and AdamW decay restricted to weight_mask, every SIMD path and thread
count, and in-place buffers that are not the caller's own exact arrays refused with
params left unchanged."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import ops

from support import tolerance

STEPS = 25

# name -> (kind, hyperparameters). lr values are large enough that every term matters.
CONFIGS = {
    "sgd": ("sgd", {"lr": 0.05}),
    "sgd_momentum": ("sgd", {"lr": 0.02, "momentum": 0.9}),
    "sgd_nesterov": ("sgd", {"lr": 0.02, "momentum": 0.9, "nesterov": True}),
    "sgd_momentum_l2": ("sgd", {"lr": 0.02, "momentum": 0.5, "l2": 0.05}),
    "adagrad": ("adagrad", {"lr": 0.05, "eps": 1e-7}),
    "adagrad_l2": ("adagrad", {"lr": 0.1, "eps": 1e-3, "l2": 0.1}),
    "adam": ("adam", {"lr": 0.01}),
    "adam_betas": ("adam", {"lr": 0.03, "beta1": 0.5, "beta2": 0.9, "eps": 1e-4}),
    "adamw": ("adam", {"lr": 0.01, "weight_decay": 0.1}),
    "adam_l2": ("adam", {"lr": 0.01, "l2": 0.2}),
    "rmsprop": ("rmsprop", {"lr": 0.01}),
    "rmsprop_rho": ("rmsprop", {"lr": 0.01, "rho": 0.5, "eps": 1e-3}),
    "rmsprop_momentum": ("rmsprop", {"lr": 0.01, "momentum": 0.8}),
    "rmsprop_centered": ("rmsprop", {"lr": 0.01, "centered": True}),
    "rmsprop_centered_momentum": ("rmsprop", {"lr": 0.005, "momentum": 0.7, "centered": True, "l2": 0.05}),
}

DEFAULTS = {
    "sgd": {"momentum": 0.0, "nesterov": False},
    "adagrad": {"lr": 0.05, "eps": 1e-7},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "weight_decay": 0.0},
    "rmsprop": {"lr": 1e-3, "rho": 0.9, "eps": 1e-7, "momentum": 0.0, "centered": False},
}


def new_states(kind, h, n, dtype):
    """The state buffers each optimizer needs, initialized as documented."""
    if kind == "sgd":
        return {"velocity": np.zeros(n, dtype)} if h.get("momentum", 0) > 0 else {}
    if kind == "adagrad":
        return {"accumulator": np.full(n, 0.1, dtype)}  # initial_accumulator_value
    if kind == "adam":
        return {"m": np.zeros(n, dtype), "v": np.zeros(n, dtype)}
    states = {"square_avg": np.zeros(n, dtype)}
    if h.get("momentum", 0) > 0:
        states["momentum_buffer"] = np.zeros(n, dtype)
    if h.get("centered"):
        states["grad_avg"] = np.zeros(n, dtype)
    return states


def ours_step(kind, p, g, states, h, t, mask=None):
    kw = dict(h)
    kw["weight_mask"] = mask
    if kind == "sgd":
        ops.sgd_update(p, g, kw.pop("lr"), velocity=states.get("velocity"), **kw)
    elif kind == "adagrad":
        ops.adagrad_update(p, g, states["accumulator"], **kw)
    elif kind == "adam":
        ops.adam_update(p, g, states["m"], states["v"], t, **kw)
    else:
        ops.rmsprop_update(p, g, states["square_avg"], momentum_buffer=states.get("momentum_buffer"),
                           grad_avg=states.get("grad_avg"), **kw)


def ref_step(kind, p, g, states, h, t, mask=None):
    """One step of the documented rule in float64 (p and states updated in place)."""
    h = {**DEFAULTS[kind], **h}
    lr, l1, l2 = h["lr"], h.get("l1", 0.0), h.get("l2", 0.0)
    marked = np.ones(p.shape, bool) if mask is None else np.asarray(mask, bool)
    g = g + np.where(marked, l1 * np.sign(p) + 2 * l2 * p, 0.0)  # regularization at the step's start
    if kind == "sgd":
        mu = h["momentum"]
        if mu > 0:
            v = states["velocity"]
            v[:] = mu * v + g
            p -= lr * (g + mu * v if h["nesterov"] else v)
        else:
            p -= lr * g
    elif kind == "adagrad":
        a = states["accumulator"]
        a += g * g
        p -= lr * g / (np.sqrt(a) + h["eps"])
    elif kind == "adam":
        b1, b2 = h["beta1"], h["beta2"]
        p -= np.where(marked, lr * h["weight_decay"] * p, 0.0)  # AdamW: decoupled, before the update
        m, v = states["m"], states["v"]
        m[:] = b1 * m + (1 - b1) * g
        v[:] = b2 * v + (1 - b2) * g * g
        p -= lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + h["eps"])
    else:
        rho, mu = h["rho"], h["momentum"]
        s = states["square_avg"]
        s[:] = rho * s + (1 - rho) * g * g
        avg = s
        if h["centered"]:
            ga = states["grad_avg"]
            ga[:] = rho * ga + (1 - rho) * g
            avg = s - ga * ga
        d = g / (np.sqrt(avg) + h["eps"])
        if mu > 0:
            b = states["momentum_buffer"]
            b[:] = mu * b + d
            d = b
        p -= lr * d


def gradient_sequence(rng, n, dtype, steps=STEPS):
    # changing gradients with a persistent component, so momentum and moments build up
    drift = rng.standard_normal(n)
    return [(0.5 * drift + rng.standard_normal(n)).astype(dtype) for _ in range(steps)]


def initial_params(rng, n, dtype):
    return (rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 2.0, n)).astype(dtype)


def trajectories(kind, h, p0, grads, mask=None):
    """(ours, reference) params and states after len(grads) steps from p0."""
    dtype = p0.dtype
    p, states = p0.copy(), new_states(kind, h, p0.size, dtype)
    rp = p0.astype(np.float64)
    rstates = {k: v.astype(np.float64) for k, v in states.items()}
    for t, g in enumerate(grads, start=1):
        ours_step(kind, p, g, states, h, t, mask)
        ref_step(kind, rp, g.astype(np.float64), rstates, h, t, mask)
    return (p, states), (rp, rstates)


def assert_trajectory_close(ours, ref, tol):
    (p, states), (rp, rstates) = ours, ref
    np.testing.assert_allclose(p, rp, **tol, err_msg="params")
    assert states.keys() == rstates.keys()
    for name in states:
        np.testing.assert_allclose(states[name], rstates[name], **tol, err_msg=name)


# float32: each step rounds every stored value (params and states) a few times to float32
# (2**-24 ~ 6e-8 relative each): over 25 steps the drift stays below 25 * 8 * 6e-8 ~ 1.2e-5,
# inside tolerance(float32) = 2e-5. float64: the same count of float64 roundings, ~1e-13.
TRAJECTORY_TOL = {np.float32: tolerance(np.float32), np.float64: tolerance(np.float64)}


# ----------------------------------------------------------------------------- trajectories


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_trajectory_matches_reference(simd, config, dtype, rng):
    kind, h = CONFIGS[config]
    n = 1000
    p0 = initial_params(rng, n, dtype)
    grads = gradient_sequence(rng, n, dtype)
    ours, ref = trajectories(kind, h, p0, grads)
    assert ours[0].dtype == dtype
    assert not np.array_equal(ours[0], p0)
    assert_trajectory_close(ours, ref, TRAJECTORY_TOL[dtype])


@pytest.mark.parametrize("config", list(CONFIGS))
def test_regularization_and_weight_mask_trajectory(simd, config, rng):
    """L1 (sign of p, 0 at 0) and L2 on the masked entries only; AdamW decay too. float64,
    where sign(p) of the kernel and of the reference agree."""
    kind, h = CONFIGS[config]
    h = {**h, "l1": 0.03, "l2": 0.07}
    n = 600
    p0 = initial_params(rng, n, np.float64)
    p0[:10] = 0.0  # sign(0) = 0: no L1 push at exactly zero
    mask = rng.uniform(size=n) < 0.6
    grads = gradient_sequence(rng, n, np.float64)
    for m in (mask, mask.astype(np.uint8), None):
        ours, ref = trajectories(kind, h, p0, grads, m)
        assert_trajectory_close(ours, ref, TRAJECTORY_TOL[np.float64])
    # the mask makes a difference: unmasked entries follow the unregularized rule
    ours, _ = trajectories(kind, h, p0, grads, mask)
    plain, _ = trajectories(kind, {k: v for k, v in h.items() if k not in ("l1", "l2", "weight_decay")}, p0, grads)
    assert np.array_equal(ours[0][~mask], plain[0][~mask])
    assert not np.array_equal(ours[0][mask], plain[0][mask])


def test_float32_l1_step(simd, rng):
    """One float32 step with L1, on params away from zero (where sign() is unambiguous)."""
    n = 500
    p = initial_params(rng, n, np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    mask = rng.uniform(size=n) < 0.5
    for kind, h in (("sgd", {"lr": 0.1}), ("adagrad", {"lr": 0.1}), ("adam", {"lr": 0.1}), ("rmsprop", {"lr": 0.1})):
        h = {**h, "l1": 0.4}
        ours, ref = trajectories(kind, h, p, [g], mask)
        assert_trajectory_close(ours, ref, tolerance(np.float32))


def test_l2_and_decay_touch_only_marked_entries_exactly():
    p0 = np.array([1.5, -2.0, 0.25, 3.0])
    mask = np.array([True, False, True, False])
    g = np.zeros(4)
    p = p0.copy()
    ops.sgd_update(p, g, 0.1, l2=0.5, weight_mask=mask)
    assert np.array_equal(p, np.where(mask, p0 - 0.1 * (2 * 0.5 * p0), p0))
    p = p0.copy()
    ops.sgd_update(p, g, 0.1, l1=0.5, weight_mask=mask)
    assert np.array_equal(p, np.where(mask, p0 - 0.1 * 0.5 * np.sign(p0), p0))
    # AdamW with a zero gradient: only the decoupled decay moves the marked entries
    p, m, v = p0.copy(), np.zeros(4), np.zeros(4)
    ops.adam_update(p, g, m, v, 1, lr=0.1, weight_decay=0.2, weight_mask=mask)
    assert np.array_equal(p, np.where(mask, p0 - (0.1 * 0.2) * p0, p0))
    assert np.array_equal(m, np.zeros(4)) and np.array_equal(v, np.zeros(4))
    # L1 at exactly zero: sign(0) = 0, the parameter stays at zero
    z = np.zeros(3, np.float32)
    ops.sgd_update(z, np.zeros(3, np.float32), 0.5, l1=1.0)
    assert np.array_equal(z, np.zeros(3, np.float32))


def test_sgd_without_momentum_is_exact(rng):
    p = rng.standard_normal(50)
    g = rng.standard_normal(50)
    expected = p - 0.3 * g
    ops.sgd_update(p, g, 0.3)
    assert np.array_equal(p, expected)


def test_adam_first_step_is_lr_times_sign(rng):
    """After bias correction the first Adam step is lr * g / (|g| + eps): ~ lr * sign(g)."""
    p0 = rng.standard_normal(100)
    g = rng.standard_normal(100)
    p, m, v = p0.copy(), np.zeros(100), np.zeros(100)
    ops.adam_update(p, g, m, v, 1, lr=0.01)
    np.testing.assert_allclose(p, p0 - 0.01 * g / (np.abs(g) + 1e-7), rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------------- PyTorch


def _torch_run(torch, opt_cls, opt_kwargs, p0, grads):
    tp = torch.nn.Parameter(torch.tensor(p0.copy()))
    opt = opt_cls([tp], **opt_kwargs)
    for g in grads:
        tp.grad = torch.tensor(g)
        opt.step()
    return tp.detach().numpy()


TORCH_CASES = {
    # ours (kind, hyper) , torch (class name, kwargs); torch's weight_decay = 2 * l2 (gradient of l2 * p**2)
    "sgd": (("sgd", {"lr": 0.05}), ("SGD", {"lr": 0.05})),
    "sgd_momentum": (("sgd", {"lr": 0.02, "momentum": 0.9}), ("SGD", {"lr": 0.02, "momentum": 0.9})),
    "sgd_nesterov": (("sgd", {"lr": 0.02, "momentum": 0.9, "nesterov": True}),
                     ("SGD", {"lr": 0.02, "momentum": 0.9, "nesterov": True})),
    "sgd_l2": (("sgd", {"lr": 0.02, "momentum": 0.5, "l2": 0.05}),
               ("SGD", {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.1})),
    "adagrad": (("adagrad", {"lr": 0.05, "eps": 1e-7}),
                ("Adagrad", {"lr": 0.05, "initial_accumulator_value": 0.1, "eps": 1e-7})),
    "adagrad_l2": (("adagrad", {"lr": 0.05, "eps": 1e-7, "l2": 0.05}),
                   ("Adagrad", {"lr": 0.05, "initial_accumulator_value": 0.1, "eps": 1e-7, "weight_decay": 0.1})),
    "adam": (("adam", {"lr": 0.01}), ("Adam", {"lr": 0.01, "eps": 1e-7})),
    "adam_betas": (("adam", {"lr": 0.03, "beta1": 0.5, "beta2": 0.9, "eps": 1e-4}),
                   ("Adam", {"lr": 0.03, "betas": (0.5, 0.9), "eps": 1e-4})),
    "adam_l2": (("adam", {"lr": 0.01, "l2": 0.1}), ("Adam", {"lr": 0.01, "eps": 1e-7, "weight_decay": 0.2})),
    "adamw": (("adam", {"lr": 0.01, "weight_decay": 0.1}),
              ("AdamW", {"lr": 0.01, "eps": 1e-7, "weight_decay": 0.1})),
    "rmsprop": (("rmsprop", {"lr": 0.01, "rho": 0.9, "eps": 1e-7}),
                ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-7})),
    "rmsprop_momentum": (("rmsprop", {"lr": 0.01, "rho": 0.8, "eps": 1e-6, "momentum": 0.8}),
                         ("RMSprop", {"lr": 0.01, "alpha": 0.8, "eps": 1e-6, "momentum": 0.8})),
    "rmsprop_centered": (("rmsprop", {"lr": 0.01, "rho": 0.9, "eps": 1e-7, "centered": True}),
                         ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-7, "centered": True})),
    "rmsprop_centered_momentum": (
        ("rmsprop", {"lr": 0.005, "rho": 0.9, "eps": 1e-7, "momentum": 0.7, "centered": True, "l2": 0.05}),
        ("RMSprop", {"lr": 0.005, "alpha": 0.9, "eps": 1e-7, "momentum": 0.7, "centered": True,
                     "weight_decay": 0.1})),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_trajectory_matches_torch(case, rng):
    torch = pytest.importorskip("torch")
    (kind, h), (cls_name, torch_kwargs) = TORCH_CASES[case]
    n = 300
    p0 = initial_params(rng, n, np.float64)
    grads = gradient_sequence(rng, n, np.float64)
    expected = _torch_run(torch, getattr(torch.optim, cls_name), torch_kwargs, p0, grads)
    p, states = p0.copy(), new_states(kind, h, n, np.float64)
    for t, g in enumerate(grads, start=1):
        ours_step(kind, p, g, states, h, t)
    # float64 on both sides, different operation order: agreement to ~1e-13 after 25 steps
    np.testing.assert_allclose(p, expected, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("config", ["sgd_nesterov", "adagrad_l2", "adamw", "rmsprop_centered_momentum"])
def test_bitwise_identical_for_any_thread_count(simd, config, rng):
    kind, h = CONFIGS[config]
    n = 100_003  # 7 chunks of 16384
    p0 = initial_params(rng, n, np.float32)
    grads = gradient_sequence(rng, n, np.float32, steps=3)
    mask = rng.uniform(size=n) < 0.5
    results = []
    for threads in (1, 2, 3):
        with fastnn.threads(threads):
            p, states = p0.copy(), new_states(kind, h, n, np.float32)
            for t, g in enumerate(grads, start=1):
                ours_step(kind, p, g, states, {**h, "l1": 0.01}, t, mask)
            results.append((p, states))
    for p, states in results[1:]:
        assert np.array_equal(p, results[0][0])
        assert all(np.array_equal(states[k], results[0][1][k]) for k in states)


# ----------------------------------------------------------------------------- bad buffers

N = 8


def _bad_buffers(dtype):
    """(description, bad value, exception) for a buffer that is written in place."""
    other = np.float64 if dtype == np.float32 else np.float32
    ro = np.zeros(N, dtype)
    ro.flags.writeable = False
    return [
        ("list", [0.0] * N, TypeError),
        ("read-only", ro, ValueError),
        ("strided view", np.zeros(2 * N, dtype)[::2], ValueError),
        ("float16", np.zeros(N, np.float16), TypeError),
        ("int64", np.zeros(N, np.int64), TypeError),
        ("wrong length", np.zeros(N + 1, dtype), ValueError),
        ("2-D", np.zeros((2, N // 2), dtype), ValueError),
        ("other float dtype", np.zeros(N, other), TypeError),
    ]


# optimizer -> (call(p, g, states), the names of its in-place state buffers, how to make them)
OPTIMIZERS = {
    "sgd": (lambda p, g, s: ops.sgd_update(p, g, 0.1, velocity=s["velocity"], momentum=0.9), ["velocity"]),
    "adagrad": (lambda p, g, s: ops.adagrad_update(p, g, s["accumulator"]), ["accumulator"]),
    "adam": (lambda p, g, s: ops.adam_update(p, g, s["m"], s["v"], 1), ["m", "v"]),
    "rmsprop": (lambda p, g, s: ops.rmsprop_update(p, g, s["square_avg"], momentum=0.5,
                                                   momentum_buffer=s["momentum_buffer"], centered=True,
                                                   grad_avg=s["grad_avg"]),
                ["square_avg", "momentum_buffer", "grad_avg"]),
}


def _good(names, dtype):
    return {name: np.full(N, 0.5, dtype) for name in names}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_bad_state_buffer_is_refused_and_nothing_changes(opt, dtype):
    call, names = OPTIMIZERS[opt]
    g = np.ones(N, dtype)
    for target in names:
        for desc, bad, exc in _bad_buffers(dtype):
            p = np.arange(N, dtype=dtype) + 1
            states = _good(names, dtype)
            states[target] = bad
            bad_before = np.array(bad, copy=True)
            with pytest.raises(exc, match=target):
                call(p, g, states)
            assert np.array_equal(p, np.arange(N, dtype=dtype) + 1), (target, desc)
            for name in names:
                if name != target:
                    assert np.array_equal(states[name], np.full(N, 0.5, dtype)), (target, desc, name)
            assert np.array_equal(np.asarray(bad), bad_before), (target, desc)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_bad_params_buffer_is_refused_and_nothing_changes(opt, dtype):
    call, names = OPTIMIZERS[opt]
    for desc, bad, exc in _bad_buffers(dtype):
        if desc == "other float dtype":
            continue  # params set the dtype
        states = _good(names, dtype)
        bad_before = np.array(bad, copy=True)
        # a params of the wrong length may be reported through the first buffer it mismatches
        with pytest.raises(exc, match="params"):
            call(bad, np.ones(N, dtype), states)
        assert np.array_equal(np.asarray(bad), bad_before), desc
        for name in names:
            assert np.array_equal(states[name], np.full(N, 0.5, dtype)), (desc, name)


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_bad_grads_and_mask(opt):
    call, names = OPTIMIZERS[opt]
    p0 = np.arange(N, dtype=np.float32) + 1
    cases = [
        (np.ones(N + 1, np.float32), ValueError, "grads"),
        (np.ones((2, N // 2), np.float32), ValueError, "grads"),
        (np.array(["a"] * N), TypeError, "grads"),
        (None, TypeError, "grads"),
    ]
    for g, exc, match in cases:
        p, states = p0.copy(), _good(names, np.float32)
        with pytest.raises(exc, match=match):
            call(p, g, states)
        assert np.array_equal(p, p0)
    # read-only, listed or other-dtype gradients are only read: accepted
    for g in (np.ones(N, np.float64), [1.0] * N, np.ones(2 * N, np.float32)[::2]):
        p, states = p0.copy(), _good(names, np.float32)
        call(p, g, states)
        assert not np.array_equal(p, p0)
    for mask, exc in ((np.ones(N + 1, bool), ValueError), (np.ones(N, np.float32), TypeError)):
        p = p0.copy()
        with pytest.raises(exc, match="weight_mask"):
            ops.sgd_update(p, np.ones(N, np.float32), 0.1, l2=0.1, weight_mask=mask)
        assert np.array_equal(p, p0)


@pytest.mark.parametrize("call,exc,match", [
    (lambda p, g: ops.sgd_update(p, g, -0.1), ValueError, "lr"),
    (lambda p, g: ops.sgd_update(p, g, float("nan")), ValueError, "lr"),
    (lambda p, g: ops.sgd_update(p, g, "0.1"), TypeError, "lr"),
    (lambda p, g: ops.sgd_update(p, g, 0.1, momentum=0.9), ValueError, "velocity"),
    (lambda p, g: ops.sgd_update(p, g, 0.1, nesterov=True), ValueError, "nesterov"),
    (lambda p, g: ops.sgd_update(p, g, 0.1, l1=-1.0), ValueError, "l1"),
    (lambda p, g: ops.sgd_update(p, g, 0.1, l2=float("nan")), ValueError, "l2"),
    (lambda p, g: ops.adagrad_update(p, g, np.full(N, 0.1, np.float32), eps=-1.0), ValueError, "eps"),
    (lambda p, g: ops.adam_update(p, g, np.zeros(N, np.float32), np.zeros(N, np.float32), 0), ValueError, "step"),
    (lambda p, g: ops.adam_update(p, g, np.zeros(N, np.float32), np.zeros(N, np.float32), 1.0), TypeError, "step"),
    (lambda p, g: ops.adam_update(p, g, np.zeros(N, np.float32), np.zeros(N, np.float32), 1, beta1=1.0),
     ValueError, "beta1"),
    (lambda p, g: ops.adam_update(p, g, np.zeros(N, np.float32), np.zeros(N, np.float32), 1, beta2=1.5),
     ValueError, "beta2"),
    (lambda p, g: ops.adam_update(p, g, np.zeros(N, np.float32), np.zeros(N, np.float32), 1, weight_decay=-0.1),
     ValueError, "weight_decay"),
    (lambda p, g: ops.rmsprop_update(p, g, np.zeros(N, np.float32), rho=1.0), ValueError, "rho"),
    (lambda p, g: ops.rmsprop_update(p, g, np.zeros(N, np.float32), momentum=0.5), ValueError, "momentum_buffer"),
    (lambda p, g: ops.rmsprop_update(p, g, np.zeros(N, np.float32), centered=True), ValueError, "grad_avg"),
])
def test_bad_hyperparameters(call, exc, match):
    p0 = np.arange(N, dtype=np.float32) + 1
    p = p0.copy()
    with pytest.raises(exc, match=match):
        call(p, np.ones(N, np.float32))
    assert np.array_equal(p, p0)
