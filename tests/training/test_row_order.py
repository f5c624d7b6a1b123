"""The estimators' row order (csrc/training/row_order.*): a keyed bijection of [0, n) by a
cycle-walked Feistel network, the held-out split it defines, and train_epoch visiting a
split's training rows in the order keyed by ``seed`` with nothing of size n built."""
import numpy as np
import pytest

import fastnn
from fastnn import _core, nn, optim


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9, 255, 256, 257, 1000, 4099])
def test_every_epoch_order_is_a_permutation(n):
    split = _core.RowSplit(n)
    for key in (0, 1, 12345, 2 ** 63 - 1):
        rows = split.epoch_rows(key, n)
        assert rows.dtype == np.int64 and np.array_equal(np.sort(rows), np.arange(n))


def test_orders_are_keyed_and_look_uniform():
    n = 1000
    split = _core.RowSplit(n)
    assert np.array_equal(split.epoch_rows(7, n), split.epoch_rows(7, n))
    assert not np.array_equal(split.epoch_rows(7, n), split.epoch_rows(8, n))
    # where row 0 lands over 4000 keys: each decile of positions about equally often
    # (chi-square with 9 degrees of freedom; 27.9 is its 0.1% tail)
    where = np.array([np.argsort(split.epoch_rows(key, n))[:2] for key in range(4000)])  # positions of rows 0, 1
    counts = np.bincount(where[:, 0] // 100, minlength=10)
    assert ((counts - 400.0) ** 2 / 400.0).sum() < 27.9
    # neighbouring rows part: which of rows 0 and 1 comes first is a coin flip, and they
    # are about n / 3 positions apart on average, as in a uniform shuffle
    assert 0.45 < np.mean(where[:, 0] < where[:, 1]) < 0.55
    assert 300 < np.mean(np.abs(where[:, 0] - where[:, 1])) < 367


def test_held_out_and_training_rows_partition_the_data():
    split = _core.RowSplit(1000, key=3, held=[100])
    assert (split.rows, split.held_out, split.training) == (1000, 100, 900)
    held, position = split.held_out_rows(0, 64)
    rest, _ = split.held_out_rows(position, 1000)
    held = np.concatenate([held, rest])
    training = split.epoch_rows(11, 900)
    assert held.size == 100 and np.array_equal(np.sort(np.concatenate([held, training])), np.arange(1000))
    assert not np.array_equal(np.sort(held), np.arange(100))  # a keyed choice, not the first rows
    with pytest.raises(ValueError, match="count"):
        split.epoch_rows(11, 901)


def test_stratified_split_holds_out_the_asked_count_of_each_class():
    codes = np.repeat(np.arange(3), [500, 300, 200]).astype(np.int64)
    split = _core.RowSplit(1000, key=5, held=[50, 30, 20], classes=codes)
    held = split.held_out_rows(0, 1000)[0]
    assert np.array_equal(np.bincount(codes[held], minlength=3), [50, 30, 20])
    training = split.epoch_rows(2, 900)
    assert np.intersect1d(held, training).size == 0 and training.size == 900
    binary = (np.arange(10) % 2).astype(np.float32)  # a binary target: float32 codes
    assert np.bincount(binary[_core.RowSplit(10, key=1, held=[1, 2], classes=binary).held_out_rows(0, 10)[0]
                              ].astype(int), minlength=2).tolist() == [1, 2]


def test_bad_splits_are_refused():
    codes = np.zeros(10, np.int64)
    with pytest.raises(ValueError, match="fewer rows"):
        _core.RowSplit(10, key=1, held=[1, 1], classes=codes)
    with pytest.raises(ValueError, match="out of range"):
        _core.RowSplit(10, key=1, held=[1, 1], classes=np.full(10, 7, np.int64))
    with pytest.raises(ValueError, match="out of range"):
        _core.RowSplit(10, key=1, held=[1, 1], classes=np.full(10, np.nan, np.float32))
    with pytest.raises(ValueError, match="more rows held out"):
        _core.RowSplit(10, key=1, held=[11])
    with pytest.raises(ValueError, match="classes"):
        _core.RowSplit(10, key=1, held=[1, 1])
    with pytest.raises(ValueError, match="shape"):
        _core.RowSplit(10, key=1, held=[1, 1], classes=np.zeros(9, np.int64))


def _model():
    return nn.Sequential([nn.Dense(4, 8, activation="relu"), nn.Dense(8, 1)], seed=3)


def test_train_epoch_on_a_split_visits_its_training_rows_in_the_keyed_order():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((301, 4)).astype(np.float32)
    y = rng.standard_normal((301, 1)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 301)
    split = _core.RowSplit(301, key=9, held=[30])
    a, b = _model(), _model()
    ra = a.train_epoch(X, y, batch_size=16, optimizer=optim.Adam(), seed=77, split=split, sample_weight=w)
    rows = split.epoch_rows(77, split.training)
    rb = b.train_epoch(X[rows], y[rows], batch_size=16, optimizer=optim.Adam(), shuffle=False, sample_weight=w[rows])
    assert ra.steps == rb.steps == 17 and ra.rows == 271
    assert np.array_equal(a.params, b.params) and ra.loss == rb.loss


def test_train_epoch_refuses_a_split_of_other_data():
    X = np.zeros((10, 4), np.float32)
    y = np.zeros((10, 1), np.float32)
    with pytest.raises(ValueError, match="split divides 11 rows, but X has 10"):
        _model().train_epoch(X, y, optimizer=optim.SGD(lr=0.1), split=_core.RowSplit(11))
    with pytest.raises(ValueError, match="shuffle=True"):
        _model().train_epoch(X, y, optimizer=optim.SGD(lr=0.1), split=_core.RowSplit(10), shuffle=False)
    with pytest.raises(TypeError, match="RowSplit"):
        _model().train_epoch(X, y, optimizer=optim.SGD(lr=0.1), split=np.arange(10))


def test_estimator_fit_is_reproducible_across_threads_and_save_load(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 4)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5, 0.0], np.float32)
    kw = dict(hidden_units=(8,), epochs=3, early_stopping=True, random_state=4)
    with fastnn.threads(1):
        a = fastnn.DNNRegressor(**kw).fit(X, y)
    b = fastnn.DNNRegressor(**kw, num_threads=3).fit(X, y)
    assert np.array_equal(a.model_.params, b.model_.params) and a.history_["val_loss"] == b.history_["val_loss"]
    a.save(tmp_path / "a.npz")
    back = fastnn.load(tmp_path / "a.npz")
    a.partial_fit(X, y)
    back.partial_fit(X, y)
    assert np.array_equal(a.model_.params, back.model_.params)


def test_classifier_holds_out_each_class_in_proportion():
    codes = np.repeat(np.arange(3), [700, 200, 100]).astype(np.uint8)
    est = fastnn.DNNClassifier()
    est.classes_ = np.array(["a", "b", "c"])
    held, classes = est._held_out_per_class(codes, 101)
    assert held == [71, 20, 10] and classes is codes  # 70.7, 20.2, 10.1: the largest remainder gets the extra row
    split = _core.RowSplit(1000, key=2, held=held, classes=classes)
    assert np.bincount(codes[split.held_out_rows(0, 1000)[0]], minlength=3).tolist() == held
