"""Sequential.train_epoch: one C++ call per epoch that equals the step-by-step Python path
(forward, loss, backward, clip, update) over the same shuffled batches, bitwise; statistics; the stop on a non-finite loss or
gradient; the single-row last batch with batch norm; bad input."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim


def make(seed=1, dtype=np.float32):
    return nn.Sequential([
        nn.Dense(4, 16, activation="relu"), nn.BatchNorm(16), nn.Dropout(0.2),
        nn.Dense(16, 8, activation="prelu"), nn.Activation("tanh"), nn.Dense(8, 1),
    ], seed=seed, dtype=dtype)


def data(n=203, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] * x[:, 1] + 0.1 * x[:, 2]).astype(np.float32)


def python_epoch(model, opt, x, y, batch_size, seed, clip_norm, shuffle=True):
    """The same epoch, step by step from Python: forward, loss, backward, clip, update."""
    order = np.random.Generator(np.random.Philox(seed)).permutation(len(x)) if shuffle else np.arange(len(x))
    total = rows = 0
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        if len(idx) == 1:
            break  # the model has batch norm: a one-row batch is dropped
        out = model.forward(x[idx], training=True)
        value, grad = fastnn.ops.mse_loss(out, y[idx].reshape(-1, 1))
        model.backward(grad)
        if clip_norm is not None:
            optim.clip_by_global_norm(model.grads, clip_norm)
        opt.step(model)
        total += value * len(idx)
        rows += len(idx)
    return total / rows


@pytest.mark.parametrize("make_opt", [lambda: optim.Adam(lr=optim.CosineDecay(0.01, 50)),
                                      lambda: optim.SGD(lr=0.05, momentum=0.9, l2=1e-3),
                                      lambda: optim.Adagrad(lr=optim.StepDecay(0.05, 5, 0.5))])
@pytest.mark.parametrize("clip_norm", [None, 0.5])
def test_equals_the_step_by_step_python_path(simd, make_opt, clip_norm):
    x, y = data()
    a, b = make(), make()
    oa, ob = make_opt(), make_opt()
    for epoch in range(2):
        r = a.train_epoch(x, y, batch_size=32, optimizer=oa, clip_norm=clip_norm, seed=epoch)
        expected = python_epoch(b, ob, x, y, 32, epoch, clip_norm)
        assert r.loss == expected
        assert np.array_equal(a.params, b.params)
        assert np.array_equal(a.buffers, b.buffers)
        assert a.step == b.step and oa.iterations == ob.iterations
    assert r.steps == 7 and r.rows == 203 and not r.diverged


def test_bitwise_identical_for_any_thread_count():
    x, y = data(1500)
    results = []
    for threads in (1, 2, 3):
        m = make()
        with fastnn.threads(threads):
            m.train_epoch(x, y, batch_size=64, optimizer=optim.Adam(), seed=3)
        results.append(m.params.copy())
    assert all(np.array_equal(r, results[0]) for r in results)


def test_softmax_cross_entropy_with_labels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    m = nn.Sequential([nn.Dense(4, 32, activation="relu"), nn.Dense(32, 3)], seed=0)
    opt = optim.Adam(lr=0.01)
    first = m.train_epoch(x, labels, batch_size=32, loss="softmax_cross_entropy", optimizer=opt).loss
    for epoch in range(20):
        last = m.train_epoch(x, labels, batch_size=32, loss="softmax_cross_entropy", optimizer=opt, seed=epoch).loss
    assert last < 0.5 * first
    assert (m.predict(x).argmax(axis=1) == labels).mean() > 0.9


@pytest.mark.parametrize("width", [64, 150, 37, 8])  # strips of vectors, single vectors, a scalar tail
def test_statistics_before_dropout(width):
    x, y = data(512)
    m = nn.Sequential([nn.Dense(4, width, activation="relu"), nn.Dropout(0.5), nn.Dense(width, 1)], seed=0)
    r = m.train_epoch(x, y, batch_size=512, optimizer=optim.SGD(lr=0.0), shuffle=False)
    h = np.maximum(x @ m.named_params()["0.weight"] + m.named_params()["0.bias"], 0)
    assert r.zero_fraction[0] == pytest.approx((h == 0).mean())  # dropout zeros are not counted
    assert r.dead_units[0] == pytest.approx((h <= 0).all(axis=0).mean())
    assert np.isnan(r.zero_fraction[1]) and np.isnan(r.grad_norm[1])
    assert r.weight_norm[0] == pytest.approx(np.sqrt((m.params[:4 * width + width].astype(np.float64) ** 2).sum()))


def test_dead_layer_is_reported():
    x, y = data(256)
    m = nn.Sequential([nn.Dense(4, 8, activation="relu"), nn.Dense(8, 1)], seed=0)
    m.named_params()["0.bias"][...] = -100.0  # every unit outputs 0
    r = m.train_epoch(x, y, batch_size=64, optimizer=optim.SGD(lr=0.01))
    assert r.zero_fraction[0] == 1.0 and r.dead_units[0] == 1.0


def test_stops_before_a_non_finite_update():
    x, y = data(256)
    m = nn.Sequential([nn.Dense(4, 8, activation="relu"), nn.Dense(8, 1)], seed=0)
    y = y.copy()
    y[100] = np.nan  # the batch holding row 100 has a NaN loss
    opt = optim.Adam()
    r = m.train_epoch(x, y, batch_size=64, optimizer=opt, shuffle=False)
    assert r.diverged and r.bad_step == 1 and r.bad_layer == -1
    assert r.steps == 1 and opt.iterations == 1
    assert np.isfinite(m.params).all()
    m2 = nn.Sequential([nn.Dense(4, 8, activation="relu"), nn.Dense(8, 1)], seed=0)
    x2 = x.copy()
    x2[5, 0] = np.inf
    r2 = m2.train_epoch(x2, data(256)[1], batch_size=64, optimizer=optim.Adam(), shuffle=False)
    assert r2.diverged and r2.bad_step == 0 and np.isfinite(m2.params).all()


def test_single_row_last_batch_with_batch_norm_is_dropped():
    x, y = data(65)
    m = nn.Sequential([nn.Dense(4, 8), nn.BatchNorm(8), nn.Dense(8, 1)], seed=0)
    r = m.train_epoch(x, y, batch_size=32, optimizer=optim.SGD(lr=0.01))
    assert r.steps == 2 and r.rows == 64
    plain = nn.Sequential([nn.Dense(4, 8), nn.Dense(8, 1)], seed=0)
    r = plain.train_epoch(x, y, batch_size=32, optimizer=optim.SGD(lr=0.01))
    assert r.steps == 3 and r.rows == 65


def test_bad_input():
    x, y = data(50)
    m = make()
    opt = optim.Adam()
    with pytest.raises(ValueError, match="X has 3 features, but the model takes 4"):
        m.train_epoch(x[:, :3], y, optimizer=opt)
    with pytest.raises(ValueError, match="y has 49 rows but X has 50"):
        m.train_epoch(x, y[:49], optimizer=opt)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        m.train_epoch(x, y, batch_size=0, optimizer=opt)
    with pytest.raises(ValueError, match="loss must be one of"):
        m.train_epoch(x, y, loss="mae", optimizer=opt)
    with pytest.raises(TypeError, match="optimizer must be a fastnn.optim optimizer"):
        m.train_epoch(x, y, optimizer="adam")
    with pytest.raises(ValueError, match=r"y must have shape \(50, 1\)"):
        m.train_epoch(x, np.ones((50, 2)), optimizer=opt)
    with pytest.raises(ValueError, match="clip_norm must be >= 0"):
        m.train_epoch(x, y, optimizer=opt, clip_norm=-1)
    with pytest.raises(ValueError, match="another model"):
        small = nn.Sequential([nn.Dense(4, 1)], seed=0)
        small.train_epoch(x, y, optimizer=opt)
        make().train_epoch(x, y, optimizer=opt)


def small(seed=0, bn=False):
    layers = [nn.Dense(4, 8, activation="relu")] + ([nn.BatchNorm(8)] if bn else []) + [nn.Dense(8, 1)]
    return nn.Sequential(layers, seed=seed)


@pytest.mark.parametrize("bn", [False, True])
def test_skip_nonfinite_skips_the_bad_batch_and_its_running_statistics(bn):
    x, y = data(256)
    y_bad = y.copy()
    y_bad[100] = np.nan  # batch 1 of 4 (shuffle off)
    a, b = small(bn=bn), small(bn=bn)
    r = a.train_epoch(x, y_bad, batch_size=64, optimizer=optim.SGD(lr=0.05), shuffle=False, skip_nonfinite=True)
    assert r.skipped == 1 and r.steps == 3 and not r.diverged and r.bad_step == 1 and r.bad_layer == -1
    assert a.step == 4  # the skipped batch consumed its dropout key
    keep = np.r_[0:64, 128:256]  # the same epoch without batch 1
    opt = optim.SGD(lr=0.05)
    b.train_epoch(x[keep], y[keep], batch_size=64, optimizer=opt, shuffle=False)
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(a.buffers, b.buffers)  # batch 1 left no trace in the running statistics
    stop = small(bn=bn)
    r = stop.train_epoch(x, y_bad, batch_size=64, optimizer=optim.SGD(lr=0.05), shuffle=False)
    assert r.diverged and r.steps == 1 and stop.step == 1
    one = small(bn=bn)
    one.train_epoch(x[:64], y[:64], batch_size=64, optimizer=optim.SGD(lr=0.05), shuffle=False)
    assert np.array_equal(stop.buffers, one.buffers)  # the stopping batch's statistics were undone


def test_max_batches_replays_the_start_of_the_epoch():
    x, y = data()
    full, part = make(), make()
    of, op = optim.Adam(), optim.Adam()
    steps = []

    r = part.train_epoch(x, y, batch_size=32, optimizer=op, seed=4, max_batches=3)
    assert r.steps == 3 and part.step == 3 and op.iterations == 3
    order = np.random.Generator(np.random.Philox(4)).permutation(len(x))
    full.train_epoch(x[order[:96]], y[order[:96]], batch_size=32, optimizer=of, shuffle=False)
    assert np.array_equal(full.params, part.params)
    assert part.train_epoch(x, y, batch_size=32, optimizer=op, max_batches=0).steps == 0
    del steps


def test_sample_weight_scales_each_rows_loss():
    x, y = data(128)
    a, b, c = small(), small(), small()
    ones = a.train_epoch(x, y, batch_size=128, optimizer=optim.SGD(lr=0.1), shuffle=False,
                         sample_weight=np.ones(128))
    none = b.train_epoch(x, y, batch_size=128, optimizer=optim.SGD(lr=0.1), shuffle=False)
    assert ones.loss == none.loss and np.array_equal(a.params, b.params)
    # weights 1 on the first half and 0 on the second: scaled to mean 1 they are 2 and 0,
    # so the full batch's mean loss equals the unweighted mean over the first half
    w = np.r_[np.ones(64), np.zeros(64)]
    d = small()
    rw = c.train_epoch(x, y, batch_size=128, optimizer=optim.SGD(lr=0.1), shuffle=False, sample_weight=w)
    rh = d.train_epoch(x[:64], y[:64], batch_size=64, optimizer=optim.SGD(lr=0.1), shuffle=False)
    assert rw.loss == pytest.approx(rh.loss, rel=1e-6)
    np.testing.assert_allclose(c.params, d.params, rtol=1e-5, atol=1e-7)
    for bad, match in [(np.ones(5), "shape"), (-np.ones(128), "non-negative"), (np.zeros(128), "all zero")]:
        with pytest.raises(ValueError, match=match):
            small().train_epoch(x, y, optimizer=optim.SGD(), sample_weight=bad)


def test_update_ratio_and_mean_gradient_norm():
    x, y = data(256)
    m = small()
    before = {}

    opt = optim.SGD(lr=0.05)
    m.train_epoch(x, y, batch_size=64, optimizer=opt, shuffle=False, max_batches=3)
    before = m.params.copy()
    r_last = m.train_epoch(x[192:], y[192:], batch_size=64, optimizer=opt, shuffle=False)
    n0 = 4 * 8 + 8
    ratio = np.linalg.norm((m.params[:n0] - before[:n0]).astype(np.float64)) / np.linalg.norm(
        before[:n0].astype(np.float64))
    assert r_last.update_ratio[0] == pytest.approx(ratio, rel=1e-6)
    # grad_norm is the mean over the epoch's updates of each step's norm
    g = small()
    norms = []
    for start in range(0, 256, 64):
        out = g.forward(x[start:start + 64])
        g.backward(fastnn.ops.mse_loss(out, y[start:start + 64].reshape(-1, 1)).grad)
        norms.append(np.linalg.norm(g.grads[:n0].astype(np.float64)))
        optim.SGD(lr=0.05).step(g)
    r = small().train_epoch(x, y, batch_size=64, optimizer=optim.SGD(lr=0.05), shuffle=False)
    assert r.grad_norm[0] == pytest.approx(np.mean(norms), rel=1e-5)


def test_statistics_off_trains_the_same_bits():
    x, y = data()
    a, b = make(), make()
    ra = a.train_epoch(x, y, batch_size=32, optimizer=optim.Adam(), seed=2, clip_norm=0.5)
    rb = b.train_epoch(x, y, batch_size=32, optimizer=optim.Adam(), seed=2, clip_norm=0.5, statistics=False)
    assert np.array_equal(a.params, b.params) and ra.loss == rb.loss
    assert np.isnan(rb.zero_fraction[0]) and np.isnan(rb.grad_norm[0]) and np.isnan(rb.dead_units[0])


def _classifier_model(outputs):
    return nn.Sequential([nn.Dense(4, 8, activation="relu"), nn.Dense(8, outputs)], seed=5)


def test_uint8_labels_train_bitwise_like_their_wider_forms():
    """One byte per row (what the estimators pass): class indices for softmax cross-entropy,
    0/1 targets for bce; the engine widens each batch's labels."""
    x, _ = data()
    codes = (np.arange(len(x)) * 7 % 3).astype(np.uint8)
    wide = {"softmax_cross_entropy": (codes.astype(np.int64), 3), "bce": ((codes % 2).astype(np.float32), 1)}
    for loss, (reference, outputs) in wide.items():
        a, b = _classifier_model(outputs), _classifier_model(outputs)
        labels = codes if loss == "softmax_cross_entropy" else codes % 2
        ra = a.train_epoch(x, labels, batch_size=16, loss=loss, optimizer=optim.Adam(), seed=3)
        rb = b.train_epoch(x, reference, batch_size=16, loss=loss, optimizer=optim.Adam(), seed=3)
        assert ra.loss == rb.loss and np.array_equal(a.params, b.params), loss


def test_uint8_labels_out_of_range_are_refused():
    x, _ = data()
    with pytest.raises(ValueError, match="0 or 1 for the bce loss"):
        _classifier_model(1).train_epoch(x, np.full(len(x), 2, np.uint8), loss="bce", optimizer=optim.SGD(lr=0.1))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        _classifier_model(3).train_epoch(x, np.full(len(x), 3, np.uint8), loss="softmax_cross_entropy",
                                         optimizer=optim.SGD(lr=0.1))
    with pytest.raises(ValueError, match="one output"):
        _classifier_model(2).train_epoch(x, np.zeros(len(x), np.uint8), loss="bce", optimizer=optim.SGD(lr=0.1))
