"""The training engine's threads within a step (the team): where the batch's 64-row shards
share out evenly, each thread takes whole shards through the whole step (its shards' weight
gradients, loss and batch-norm statistics combined in shard order at the end); otherwise
each thread takes its own rows, columns or weight-gradient rows of every stage. Either way
an epoch is bitwise the same for any thread count and equals the unthreaded engine; the
statistics too. The team only forms
for steps with enough arithmetic: these tests lower that bar so that small models train on
a team of up to 4 threads (fewer cores than threads only slows them down)."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _core, nn, optim


@pytest.fixture
def team_for_any_model():
    """Every step of any model on the team: the bar lowered, and the tuner (which would put
    these tiny steps on one thread, where they are faster) told to use the team."""
    before, policy = _core._team_flops_per_thread(), _core._team_policy()
    _core._set_team_flops_per_thread(1.0)
    _core._set_team_policy("team")
    yield
    _core._set_team_flops_per_thread(before)
    _core._set_team_policy(policy)


def regularized(seed):
    return nn.Sequential([
        nn.Dense(5, 24, activation="relu"), nn.BatchNorm(24), nn.Dropout(0.2),
        nn.Dense(24, 12, activation="prelu"), nn.Activation("tanh"), nn.Dense(12, 1),
    ], seed=seed)


def wide_regularized(seed):
    # batch norm splits by columns (70 and 40: ranges of 16 and a ragged last one); dropout
    # by ranges of 512 elements on 40 columns (4 rows do not fill whole 64-element mask
    # words) and by rows on 48; an identity dropout between a column-split batch norm and a
    # row-split dense layer; a dropout right before a batch norm
    return nn.Sequential([
        nn.Dense(5, 70, activation="relu"), nn.BatchNorm(70), nn.Dropout(0.0), nn.Dense(70, 40, activation="elu"),
        nn.Dropout(0.3), nn.BatchNorm(40), nn.Dropout(0.1), nn.Dense(40, 48, activation="relu"), nn.Dropout(0.25),
        nn.Dense(48, 1),
    ], seed=seed)


def plain(seed):
    # a linear layer without bias under an activation layer: the activation's input
    # gradient overwrites what the linear layer above it reads as dz
    return nn.Sequential([
        nn.Dense(5, 40, activation="elu"), nn.Dense(40, 33, use_bias=False), nn.Activation("relu"),
        nn.Dense(33, 17, activation="leaky_relu"), nn.Dense(17, 1),
    ], seed=seed)


def classifier(seed):
    return nn.Sequential([nn.Activation("tanh"), nn.Dense(5, 20, activation="relu"), nn.Dense(20, 3)], seed=seed)


def data(n, classes=False):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    if classes:
        return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    return x, (x[:, 0] * x[:, 1] + 0.3 * x[:, 2]).astype(np.float32)


def train(make, threads, batch_size, n=203, epochs=2, classes=False, **kwargs):
    x, y = data(n, classes)
    model = make(3)
    opt = optim.Adam(lr=0.01)
    results = []
    with fastnn.threads(threads):
        for epoch in range(epochs):
            results.append(model.train_epoch(x, y, batch_size=batch_size, optimizer=opt, seed=epoch,
                                             loss="softmax_cross_entropy" if classes else "mse", **kwargs))
    return model, results


def assert_same(a, b):
    (ma, ra), (mb, rb) = a, b
    assert ma.params.tobytes() == mb.params.tobytes()
    assert ma.buffers.tobytes() == mb.buffers.tobytes()
    for x, y in zip(ra, rb):
        assert x.loss == y.loss and x.steps == y.steps and x.rows == y.rows
        np.testing.assert_array_equal(x.zero_fraction, y.zero_fraction)
        np.testing.assert_array_equal(x.grad_norm, y.grad_norm)
        np.testing.assert_array_equal(x.update_ratio, y.update_ratio)
        for fa, fb in zip(x.fired, y.fired):
            assert (fa is None) == (fb is None)
            if fa is not None:
                np.testing.assert_array_equal(fa, fb)


@pytest.mark.parametrize("make", [regularized, wide_regularized, plain],
                         ids=["bn-dropout-prelu", "wide-bn-dropout", "linear-under-activation"])
@pytest.mark.parametrize("batch_size", [64, 50, 7, 256, 130])
def test_any_thread_count_is_bitwise_the_unthreaded_engine(team_for_any_model, make, batch_size):
    # 203 rows in batches of 50 leave a last batch of 3: some threads get no rows. Batches
    # of more than one 64-row shard split by whole shards where the shards share out evenly:
    # 203 rows in one batch are 4 shards (2 and 4 threads take whole shards, 3 split the
    # weight gradients by element); batches of 130 are 3 shards, then 2 (73 rows)
    reference = train(make, 1, batch_size)
    for threads in (2, 3, 4):
        assert_same(train(make, threads, batch_size), reference)


def wide_dense(seed):
    return nn.Sequential([nn.Dense(5, 1024, activation="relu"), nn.Dense(1024, 1536, activation="elu"),
                          nn.Dense(1536, 1)], seed=seed)


def test_a_model_too_large_for_shard_scratch_splits_by_elements(team_for_any_model):
    # 1.58M dense weights: the 3 shards after the first thread's would need 19 MB of scratch,
    # past the team's 16 MiB bound, so the 4-shard batch splits each stage by elements (the
    # input gradients in two alternating buffers, dz in place) and still sums by shards
    reference = train(wide_dense, 1, 256, n=256, epochs=1)
    for threads in (2, 4):
        assert_same(train(wide_dense, threads, 256, n=256, epochs=1), reference)


def test_classifier_with_sample_weights_and_clipping(team_for_any_model):
    weights = np.random.default_rng(0).uniform(0.5, 1.5, 203).astype(np.float32)
    kwargs = dict(classes=True, sample_weight=weights / weights.mean(), clip_norm=0.5)
    for batch_size in (32, 128):
        reference = train(classifier, 1, batch_size, **kwargs)
        for threads in (2, 3):
            assert_same(train(classifier, threads, batch_size, **kwargs), reference)


def test_team_equals_the_kernels_own_threading(team_for_any_model):
    # the same thread count with and without a team (the bar at its default keeps these
    # small models off the team): the team changes who computes what, never a bit
    _core._set_team_flops_per_thread(1e12)
    without = train(plain, 3, 64)
    _core._set_team_flops_per_thread(1.0)
    assert_same(train(plain, 3, 64), without)


@pytest.mark.parametrize("make", [regularized, wide_regularized, plain], ids=["regularized", "wide", "plain"])
@pytest.mark.parametrize("policy", ["alternate", "auto"])
def test_switching_between_team_and_one_thread_changes_nothing(team_for_any_model, make, policy):
    """The tuner may move any step on or off the team (a step off it runs every kernel on one
    thread): 'alternate' switches every step, 'auto' wherever its timings lead it. Weights
    packed for a team step must not be read by the one-thread step after it."""
    reference = train(make, 1, 32)
    _core._set_team_policy(policy)
    for threads in (2, 3):
        assert_same(train(make, threads, 32, epochs=3), train(make, 1, 32, epochs=3))
        assert_same(train(make, threads, 128, epochs=3), train(make, 1, 128, epochs=3))  # by shards
    assert_same(train(make, 2, 32), reference)


def test_the_bar_refuses_nonsense():
    with pytest.raises(ValueError, match="positive"):
        _core._set_team_flops_per_thread(0.0)
    assert _core._team_flops_per_thread() > 0
    with pytest.raises(ValueError, match="'auto', 'team' or 'alternate'"):
        _core._set_team_policy("fast")
    assert _core._team_policy() == "auto"


OPTIMIZERS = {
    "sgd-nesterov-l1": lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True, l1=1e-3),
    "adagrad-l2": lambda: optim.Adagrad(lr=0.05, l2=1e-3),
    "adamw": lambda: optim.AdamW(lr=0.01, weight_decay=0.05),
    "rmsprop-centered": lambda: optim.RMSProp(lr=0.01, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_updates_in_slices_on_a_team(team_for_any_model, name):
    """On a team each thread updates its own slice of the flat buffers (parameters, gradients,
    every optimizer state, the weight mask of L1/L2 and weight decay): the same bits as one
    update by one thread."""
    x, y = data(203)
    models = []
    for threads in (1, 2, 3):
        model, opt = plain(7), OPTIMIZERS[name]()
        with fastnn.threads(threads):
            for epoch in range(2):
                model.train_epoch(x, y, batch_size=32, optimizer=opt, seed=epoch)
        models.append((model.params.tobytes(), [np.asarray(s).tobytes() for s in opt.state.values()]))
    assert models[1] == models[0] and models[2] == models[0]
