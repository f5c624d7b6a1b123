"""fastnn.callbacks: EarlyStopping, CSVLogger, TensorBoard, LambdaCallback with the estimators."""
from __future__ import annotations

import csv
import importlib.util
import math
import pickle
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_regression

from fastnn import TrainingDivergedError
from fastnn.callbacks import Callback, CSVLogger, EarlyStopping, LambdaCallback, TensorBoard
from fastnn.estimators import DNNRegressor

SCALARS = ["loss", "val_loss", "lr", "skipped", "time"]
PER_LAYER = ["zero_fraction", "dead_units", "grad_norm", "weight_norm", "update_ratio"]


@pytest.fixture(scope="module")
def data():
    X, y = make_regression(300, 5, noise=20, random_state=0)
    return X, (y - y.mean()) / y.std()


def regressor(callbacks, **kw):
    kw = {"hidden_units": (16, 8), "epochs": 15, "random_state": 0, **kw}
    return DNNRegressor(callbacks=callbacks, **kw)


class Snapshots(Callback):
    """Copies of the parameters and buffers after every epoch."""

    def __init__(self):
        self.params, self.buffers = {}, {}

    def on_epoch_end(self, estimator, epoch, logs):
        self.params[epoch] = estimator.model_.params.copy()
        self.buffers[epoch] = estimator.model_.buffers.copy()


def count_epoch(estimator, epoch, logs):
    """A module-level function: a LambdaCallback holding it pickles."""
    estimator.counted_ = getattr(estimator, "counted_", 0) + 1


# ----------------------------------------------------------------------------- EarlyStopping


def test_early_stopping_on_val_loss_stops_and_restores_best_weights(data):
    stop, snaps = EarlyStopping(patience=3), Snapshots()
    # adagrad at 0.5 with batch norm oscillates: val_loss is best early, then worsens
    est = regressor([snaps, stop], learning_rate=0.5, batch_norm=True, early_stopping=True, patience=100)
    est.fit(*data)
    val = est.history_["val_loss"]
    assert stop.stopped_epoch_ is not None and stop.stopped_epoch_ < 14
    assert est.n_iter_ == len(val) == stop.stopped_epoch_ + 1
    assert stop.stopped_epoch_ == stop.best_epoch_ + 3
    assert stop.best_ == min(val) == val[stop.best_epoch_]
    np.testing.assert_array_equal(est.model_.params, snaps.params[stop.best_epoch_])
    assert est.model_.buffers.size  # batch norm running statistics come back too
    np.testing.assert_array_equal(est.model_.buffers, snaps.buffers[stop.best_epoch_])
    assert not np.array_equal(est.model_.params, snaps.params[stop.stopped_epoch_])


def test_early_stopping_on_loss_without_validation(data):
    stop, snaps = EarlyStopping(monitor="loss", patience=3), Snapshots()
    est = regressor([stop, snaps], optimizer="adam")
    est.fit(*data)
    loss = est.history_["loss"]
    assert stop.stopped_epoch_ == stop.best_epoch_ + 3 == est.n_iter_ - 1
    assert stop.best_ == min(loss)
    # nothing else restores here: the estimator has no validation, so this is the callback's doing
    np.testing.assert_array_equal(est.model_.params, snaps.params[stop.best_epoch_])
    assert not np.array_equal(est.model_.params, snaps.params[est.n_iter_ - 1])


def test_early_stopping_restores_when_fit_runs_inside_an_except_block(data):
    stop, snaps = EarlyStopping(monitor="loss", patience=3), Snapshots()
    try:
        raise KeyError("unrelated, being handled around fit")
    except KeyError:
        est = regressor([stop, snaps], optimizer="adam").fit(*data)
    np.testing.assert_array_equal(est.model_.params, snaps.params[stop.best_epoch_])


def test_early_stopping_keeps_weights_when_asked(data):
    stop, snaps = EarlyStopping(monitor="loss", patience=3, restore_best_weights=False), Snapshots()
    est = regressor([stop, snaps], optimizer="adam").fit(*data)
    assert stop.stopped_epoch_ is not None
    np.testing.assert_array_equal(est.model_.params, snaps.params[est.n_iter_ - 1])


def test_early_stopping_min_delta_and_mode(data):
    # no improvement is ever big enough: the first epoch stays best
    stop = EarlyStopping(monitor="loss", patience=2, min_delta=1e9)
    est = regressor([stop]).fit(*data)
    assert (stop.best_epoch_, stop.stopped_epoch_, est.n_iter_) == (0, 2, 3)
    # "max" on a falling loss: same story
    stop = EarlyStopping(monitor="loss", patience=4, mode="max")
    est = regressor([stop]).fit(*data)
    assert (stop.best_epoch_, stop.stopped_epoch_, stop.best_) == (0, 4, est.history_["loss"][0])


def test_early_stopping_val_loss_without_validation_is_a_clear_error(data):
    with pytest.raises(ValueError, match=r"early_stopping=True.*monitor='loss'"):
        regressor([EarlyStopping()]).fit(*data)
    # partial_fit never holds out validation rows, even with early_stopping=True
    est = regressor([EarlyStopping()], early_stopping=True)
    with pytest.raises(ValueError, match=r"val_loss=NaN at epoch 0.*partial_fit"):
        est.partial_fit(*data)


def test_early_stopping_unknown_or_per_layer_monitor(data):
    with pytest.raises(ValueError, match=r"'accuracy' is not in the epoch logs.*'loss'"):
        regressor([EarlyStopping(monitor="accuracy")]).fit(*data)
    with pytest.raises(ValueError, match="per-layer"):
        regressor([EarlyStopping(monitor="grad_norm")]).fit(*data)


def test_early_stopping_across_partial_fit_calls(data):
    stop = EarlyStopping(monitor="loss", patience=2, min_delta=1e9)
    snaps = Snapshots()
    est = regressor([stop, snaps])
    calls = 0
    while not getattr(est, "stop_training_", False):
        est.partial_fit(*data)
        calls += 1
    assert calls == 3 and (stop.best_epoch_, stop.stopped_epoch_) == (0, 2)
    np.testing.assert_array_equal(est.model_.params, snaps.params[0])
    # a later fit starts over
    est.fit(*data)
    assert stop.stopped_epoch_ == 2 and est.n_iter_ == 3


@pytest.mark.parametrize("kwargs, error, match", [
    ({"monitor": 3}, TypeError, "monitor must be a str"),
    ({"patience": 0}, ValueError, "patience must be >= 1"),
    ({"patience": 2.5}, TypeError, "patience must be an int"),
    ({"min_delta": -1.0}, ValueError, "min_delta must be >= 0"),
    ({"min_delta": "0"}, TypeError, "min_delta must be a real number"),
    ({"mode": "auto"}, ValueError, "mode must be one of"),
    ({"restore_best_weights": 1}, TypeError, "restore_best_weights must be a bool"),
])
def test_early_stopping_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**kwargs)


# ----------------------------------------------------------------------------- CSVLogger


def read_csv(path, separator=","):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f, delimiter=separator))


def expected_header(n_hidden):
    return ["epoch", *SCALARS, *(f"{key}_{i}" for key in PER_LAYER for i in range(n_hidden))]


def assert_rows_match_history(rows, history, first_epoch=0):
    header, body = rows[0], rows[1:]
    assert len(body) == len(history["loss"])
    for k, row in enumerate(body):
        values = dict(zip(header, row))
        assert int(values["epoch"]) == first_epoch + k
        for key in SCALARS:
            expected, got = history[key][k], float(values[key])
            assert got == expected or (math.isnan(expected) and math.isnan(got)), key
        for key in PER_LAYER:
            for i, expected in enumerate(history[key][k]):
                assert float(values[f"{key}_{i}"]) == expected, f"{key}_{i}"


def test_csv_logger_writes_header_and_one_exact_row_per_epoch(data, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("the previous run's log\n")
    seen = []

    def probe(est, epoch, logs):
        # during the run the previous log is whole, and the rows so far are on disk
        # (flushed) in the new version next to it, which replaces it at the end
        (temp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".log.csv.") and p.name.endswith(".tmp")]
        seen.append((path.read_text(), len(read_csv(temp)) - 1))

    est = regressor([CSVLogger(path), LambdaCallback(on_epoch_end=probe)], epochs=5, early_stopping=True).fit(*data)
    rows = read_csv(path)
    assert rows[0] == expected_header(2)
    assert_rows_match_history(rows, est.history_)
    assert seen == [("the previous run's log\n", k) for k in range(1, 6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]  # no temp file left


def test_csv_logger_of_an_interrupted_run_leaves_no_torn_file(data, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("the previous run's log\n")

    def interrupt(est, epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        regressor([CSVLogger(path), LambdaCallback(on_epoch_end=interrupt)], epochs=5).fit(*data)
    rows = read_csv(path)  # the new version, whole: the epochs that ran
    assert rows[0] == expected_header(2) and len(rows) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_csv_logger_partial_fit_calls_continue_one_file(data, tmp_path):
    path = tmp_path / "log.csv"
    est = regressor([CSVLogger(str(path))])
    for _ in range(3):
        est.partial_fit(*data)
    rows = read_csv(path)
    assert rows.count(expected_header(2)) == 1
    assert_rows_match_history(rows, est.history_)
    assert [r[1] for r in rows[1:]] == [repr(v) for v in est.history_["loss"]]  # full precision


def test_csv_logger_append_and_truncate(data, tmp_path):
    path = tmp_path / "log.csv"
    est = regressor([CSVLogger(path, append=True, separator=";")], epochs=2)
    est.fit(*data)
    est.fit(*data)  # appends: the header is not repeated
    rows = read_csv(path, ";")
    assert rows[0] == expected_header(2) and rows.count(rows[0]) == 1 and len(rows) == 5
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 0, 1]
    regressor([CSVLogger(path)], epochs=3).fit(*data)  # append=False: a new file
    assert len(read_csv(path)) == 4
    with pytest.raises(ValueError, match=r"has the columns .* but this run logs"):
        regressor([CSVLogger(path, append=True)], hidden_units=(4,), epochs=2).fit(*data)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"path": None}, TypeError, "path must be a str or os.PathLike"),
    ({"path": ""}, ValueError, "path must not be empty"),
    ({"path": "x.csv", "append": "yes"}, TypeError, "append must be a bool"),
    ({"path": "x.csv", "separator": ",,"}, ValueError, "separator must be one character"),
])
def test_csv_logger_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CSVLogger(**kwargs)


# ----------------------------------------------------------------------------- TensorBoard


def read_events(log_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_tensorboard_writes_scalars_and_histograms_tensorboard_reads(data, tmp_path):
    pytest.importorskip("tensorboardX")
    est = regressor([TensorBoard(tmp_path / "run")], epochs=4, early_stopping=True).fit(*data)
    acc = read_events(tmp_path / "run")
    tags = acc.Tags()
    expected = {"loss", "val_loss", "lr", "skipped"} | {f"layer_{i}/{key}" for i in range(2) for key in PER_LAYER}
    assert expected <= set(tags["scalars"])
    for tag in expected:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == list(range(4)), tag
        if "/" in tag:
            layer, key = tag.split("/")
            want = [row[int(layer[len("layer_"):])] for row in est.history_[key]]
        else:
            want = est.history_[tag]
        np.testing.assert_allclose([e.value for e in events], np.float32(want), rtol=1e-6, err_msg=tag)
    assert {"layer_0/weight", "layer_0/bias", "layer_1/weight", "layer_1/bias", "output/weight",
            "output/bias"} <= set(tags["histograms"])
    hist = acc.Histograms("output/weight")
    assert [h.step for h in hist] == list(range(4))
    assert hist[-1].histogram_value.num == est.model_.named_params()["2.weight"].size


def test_tensorboard_partial_fit_and_no_validation(data, tmp_path):
    pytest.importorskip("tensorboardX")
    est = regressor([TensorBoard(tmp_path, histograms=False)])
    for _ in range(3):  # three writers within a second: none overwrites another's file
        est.partial_fit(*data)
    acc = read_events(tmp_path)
    assert [e.step for e in acc.Scalars("loss")] == [0, 1, 2]
    assert "val_loss" not in acc.Tags()["scalars"]  # NaN: not written
    assert acc.Tags()["histograms"] == []


def test_tensorboard_without_tensorboardx_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"pip install 'fastnn\[tensorboard\]'"):
        TensorBoard("runs")


def test_tensorboard_bad_arguments(tmp_path):
    pytest.importorskip("tensorboardX")
    with pytest.raises(TypeError, match="log_dir must be a str or os.PathLike"):
        TensorBoard(3)
    with pytest.raises(TypeError, match="histograms must be a bool"):
        TensorBoard(tmp_path, histograms="no")


# ----------------------------------------------------------------------------- LambdaCallback, pickling


def test_lambda_callback_order_of_calls(data):
    calls = []
    cb = LambdaCallback(on_train_begin=lambda est: calls.append(("begin", est.n_iter_)),
                        on_epoch_end=lambda est, epoch, logs: calls.append(("epoch", epoch, sorted(logs))),
                        on_train_end=lambda est: calls.append(("end", est.n_iter_)))
    est = regressor([cb], epochs=2).fit(*data)
    est.partial_fit(*data)
    keys = sorted(SCALARS + PER_LAYER)
    assert calls == [("begin", 0), ("epoch", 0, keys), ("epoch", 1, keys), ("end", 2),
                     ("begin", 2), ("epoch", 2, keys), ("end", 3)]
    with pytest.raises(TypeError, match="on_epoch_end must be callable"):
        LambdaCallback(on_epoch_end=3)


def test_estimator_with_callbacks_pickles_and_clones(data, tmp_path):
    csv_path = tmp_path / "log.csv"
    callbacks = [EarlyStopping(monitor="loss"), CSVLogger(csv_path), LambdaCallback(on_epoch_end=count_epoch)]
    if importlib.util.find_spec("tensorboardX") is not None:
        callbacks.append(TensorBoard(tmp_path / "tb"))
    est = regressor(callbacks, epochs=3).fit(*data)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(data[0]), est.predict(data[0]))
    assert loaded.counted_ == 3
    loaded.partial_fit(*data)  # the logger continues the same file
    rows = read_csv(csv_path)
    assert len(rows) == 5 and [int(r[0]) for r in rows[1:]] == [0, 1, 2, 3]
    fresh = clone(est)
    assert fresh.callbacks[1] is not est.callbacks[1]
    fresh.fit(*data)


def test_pickle_while_training_drops_open_files(data, tmp_path):
    blobs = []

    def snapshot(estimator, epoch, logs):
        blobs.append(pickle.dumps(estimator.callbacks[:2]))

    est = regressor([CSVLogger(tmp_path / "log.csv"), EarlyStopping(monitor="loss"),
                     LambdaCallback(on_epoch_end=snapshot)], epochs=2).fit(*data)
    logger, stop = pickle.loads(blobs[-1])
    assert logger._handle is None and stop.best_epoch_ == 1
    # used again without on_train_begin, the copy reopens the file to append
    logger.on_epoch_end(est, 2, {key: values[-1] for key, values in est.history_.items()})
    logger.on_train_end(est)
    rows = read_csv(tmp_path / "log.csv")
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2] and rows[3][1:] == rows[2][1:]


def test_training_error_closes_files_and_keeps_the_last_finite_weights(data, tmp_path):
    def explode(est, epoch, logs):
        if epoch == 1:
            est.optimizer_.schedule.lr = 1e30  # the next epoch diverges

    stop, snaps = EarlyStopping(monitor="loss", mode="max", patience=5), Snapshots()
    logger = CSVLogger(tmp_path / "l.csv")
    est = regressor([stop, snaps, logger, LambdaCallback(on_epoch_end=explode)], optimizer="sgd", learning_rate=0.01)
    with pytest.raises(TrainingDivergedError):
        est.fit(*data)
    assert stop.best_epoch_ == 0 and logger._handle is None and len(read_csv(tmp_path / "l.csv")) == 3
    # EarlyStopping restores nothing after an error: the estimator's last finite weights stay
    assert np.isfinite(est.model_.params).all()
    assert not np.array_equal(est.model_.params, snaps.params[0])


# ----------------------------------------------------------------------------- one rule (issue 13)


def test_lr_patience_is_the_reduce_lr_on_plateau_callback(data):
    """The estimator's lr_patience installs ReduceLROnPlateau: passing the callback instead
    trains bitwise the same."""
    from fastnn.callbacks import ReduceLROnPlateau
    own = regressor(None, epochs=25, optimizer="sgd", learning_rate=0.3, lr_patience=2, lr_factor=0.5, tol=0.05)
    own.fit(*data)
    plateau = ReduceLROnPlateau("loss", patience=2, factor=0.5, min_lr=1e-6, rel_delta=0.05)
    given = regressor([plateau], epochs=25, optimizer="sgd", learning_rate=0.3).fit(*data)
    assert plateau.reductions_ >= 1 and min(given.history_["lr"]) < 0.3
    assert own.history_["lr"] == given.history_["lr"] and own.history_["loss"] == given.history_["loss"]
    assert own.model_.params.tobytes() == given.model_.params.tobytes()


def test_early_stopping_follows_the_callbacks_rule(data):
    """early_stopping=True stops where EarlyStopping's rule (rel_delta=tol) says, on the
    recorded val_loss, and keeps the best epoch's weights."""
    from fastnn.callbacks import _Monitor
    est = regressor(None, epochs=200, early_stopping=True, patience=3, tol=0.02, optimizer="adam",
                    learning_rate=0.05).fit(*data)
    rule = EarlyStopping("val_loss", patience=3, rel_delta=0.02)
    best, wait, stop = None, 0, None
    for epoch, value in enumerate(est.history_["val_loss"]):
        if _Monitor._improved(rule, value, best):
            best, wait = value, 0
        else:
            wait += 1
            if wait >= 3:
                stop = epoch
                break
    assert stop == est.n_iter_ - 1 < 199
    assert est.best_loss_ == best


def test_reduce_lr_on_plateau_checks_its_arguments():
    from fastnn.callbacks import ReduceLROnPlateau
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\), got 1.0"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match=r"rel_delta must be in \[0, 1\), got 1.5"):
        EarlyStopping(rel_delta=1.5)
    with pytest.raises(TypeError, match="patience"):
        ReduceLROnPlateau(patience=2.5)


def test_one_bound_per_quantity_everywhere():
    """A learning rate is >= 0 for the estimators, fastnn.optim and fastnn.ops alike (on
    60c4ab6 the estimator refused 0 and optim accepted it); a drop rate is [0, 1) in nn,
    ops and the estimators."""
    import fastnn
    from fastnn import nn, ops, optim
    X, y = np.ones((4, 2)), np.ones(4)
    for call in (lambda: DNNRegressor(learning_rate=-0.5).fit(X, y), lambda: optim.Adam(lr=-0.5),
                 lambda: ops.sgd_update(np.ones(3, np.float32), np.ones(3, np.float32), -0.5)):
        with pytest.raises(ValueError, match=r"(lr|learning_rate) must be >= 0, got -0.5"):
            call()
    frozen = DNNRegressor(learning_rate=0.0, epochs=1, random_state=0).fit(X, y)  # accepted everywhere: trains nothing
    assert frozen.n_iter_ == 1
    for call in (lambda: DNNRegressor(dropout=1.0).fit(X, y), lambda: nn.Dropout(1.0),
                 lambda: ops.dropout_forward(np.ones(3, np.float32), 1.0, seed=0)):
        with pytest.raises(ValueError, match=r"(rate|dropout) must be in \[0, 1\)"):
            call()
    assert fastnn.DNNRegressor._parameter_checks["batch_size"] is nn.check_count
