"""fastnn.persistence: model files round trip bitwise (predictions and continued training),
saves are atomic, and every bad file (truncated, flipped, foreign, tampered, newer) is a
ModelFormatError naming the path; nothing is ever unpickled."""
from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn import persistence as P
from fastnn._errors import ModelFormatError

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits and symlinks")


def every_layer_model(dtype=np.float32, seed=5):
    return nn.Sequential([
        nn.Dense(4, 6, activation="prelu"),
        nn.BatchNorm(6, momentum=0.9, eps=1e-4),
        nn.Dropout(0.25),
        nn.Dense(6, 5, activation="elu", alpha=0.5, init="he_normal"),
        nn.Activation("leaky_relu", negative_slope=0.2),
        nn.Dense(5, 5, activation="tanh", use_bias=False, init="glorot_normal"),
        nn.Activation("sigmoid"),
        nn.Dense(5, 2),
    ], seed=seed, dtype=dtype)


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.standard_normal((n, 2))


def trained(dtype=np.float32, opt=None):
    model, opt = every_layer_model(dtype), opt or optim.Adam(lr=0.01)
    x, y = data()
    for epoch in range(2):
        model.train_epoch(x, y, batch_size=16, optimizer=opt, seed=epoch)
    return model, opt


def write_raw(path, header, arrays=None):
    """A file as a hostile or buggy writer would make it: any header, any entries."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        np.savez(f, __header__=np.frombuffer(raw, np.uint8), **(arrays or {}))


def assert_same_model(a, b):
    assert repr(a) == repr(b)
    assert P.sequential_state(a)[0] == P.sequential_state(b)[0]
    assert a.params.dtype == b.params.dtype
    assert a.params.tobytes() == b.params.tobytes() and a.buffers.tobytes() == b.buffers.tobytes()


def bad_file(path, match=None):
    """Loading ``path`` is a ModelFormatError that names it."""
    with pytest.raises(ModelFormatError, match=match) as info:
        P.load(path)
    assert str(path) in str(info.value)
    return info.value


# ----------------------------------------------------------------------------- round trips

OPTIMIZERS = {
    "adam-exponential": lambda: optim.Adam(lr=optim.ExponentialDecay(0.01, 3, 0.5, staircase=True)),
    "sgd-momentum-step": lambda: optim.SGD(lr=optim.StepDecay(0.05, 2, 0.5), momentum=0.9, nesterov=True),
    "adamw-cosine": lambda: optim.AdamW(lr=optim.CosineDecay(0.01, 10, alpha=0.1), weight_decay=0.05, l1=1e-4),
    "rmsprop-centered": lambda: optim.RMSProp(lr=0.005, momentum=0.5, centered=True, l2=1e-3),
    "adagrad": lambda: optim.Adagrad(lr=0.05, initial_accumulator_value=0.2),
}


@pytest.mark.parametrize("make_opt", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_predicts_and_trains_on_bitwise(tmp_path, dtype, make_opt):
    model, opt = trained(dtype, make_opt())
    path = tmp_path / "model.fnn"
    P.save_sequential(model, path, optimizer=opt)
    model2, opt2 = P.load_sequential(path)
    assert_same_model(model, model2)
    assert model2.step == model.step > 0 and opt2.iterations == opt.iterations > 0
    assert type(opt2) is type(opt) and opt2.schedule.config() == opt.schedule.config() and opt2.lr == opt.lr
    x, y = data(33, seed=1)
    assert model2.predict(x).tobytes() == model.predict(x).tobytes()
    r1 = model.train_epoch(x, y, batch_size=8, optimizer=opt, seed=9)
    r2 = model2.train_epoch(x, y, batch_size=8, optimizer=opt2, seed=9)
    assert r1.loss == r2.loss  # same dropout masks (step), same optimizer state and schedule position
    assert_same_model(model, model2)
    assert {k: v.tobytes() for k, v in opt.state.items()} == {k: v.tobytes() for k, v in opt2.state.items()}


def test_load_gives_the_model_and_an_unstepped_optimizer_round_trips(tmp_path):
    model = every_layer_model(np.float64)
    P.save_sequential(model, tmp_path / "plain.fnn")
    loaded = P.load(tmp_path / "plain.fnn")
    assert isinstance(loaded, nn.Sequential)
    assert_same_model(model, loaded)
    assert P.load_sequential(tmp_path / "plain.fnn")[1] is None
    P.save_sequential(model, str(tmp_path / "fresh.fnn"), optimizer=optim.SGD(lr=0.1))
    _, opt = P.load_sequential(str(tmp_path / "fresh.fnn"))
    assert isinstance(opt, optim.SGD) and opt.iterations == 0 and opt.state == {} and opt.lr == 0.1


def test_write_and_read_arrays_of_every_kind(tmp_path):
    arrays = {
        "fortran": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        "scalar": np.array(7, np.int64),
        "empty": np.zeros((0, 3)),
        "flags": np.array([True, False]),
        "big-endian": np.arange(3, dtype=">f8"),
        "complex": np.array([1 + 2j]),
        "labels": np.array(["cat", "dog"]),
        "nan.payload": np.array([0x7FC00001], np.uint32).view(np.float32),
    }
    path = pathlib.Path(tmp_path / "arrays.bin")
    P.write_model(path, {"class": "Arrays", "nested": {"a": [1, 2.5, None, "x"]}}, arrays)
    assert sorted(os.listdir(tmp_path)) == ["arrays.bin"]  # exactly at path: no .npz added, no temp left
    header, back = P.read_model(path)
    assert header["magic"] == P.MAGIC and header["format_version"] == P.FORMAT_VERSION
    assert header["fastnn_version"] == fastnn.__version__
    assert header["arrays"] == sorted(arrays) and header["nested"] == {"a": [1, 2.5, None, "x"]}
    assert back.keys() == arrays.keys()
    for name, arr in arrays.items():
        assert back[name].dtype == arr.dtype and back[name].shape == arr.shape, name
        assert back[name].tobytes() == arr.tobytes(), name
        assert back[name].flags.writeable, name


def test_the_same_model_gives_the_same_bytes(tmp_path):
    model, opt = trained()
    P.save_sequential(model, tmp_path / "a.fnn", opt)
    P.save_sequential(model, tmp_path / "b.fnn", opt)
    assert (tmp_path / "a.fnn").read_bytes() == (tmp_path / "b.fnn").read_bytes()


@pytest.mark.parametrize("header, arrays, error, match", [
    ({}, {"x": np.array([object()])}, TypeError, "object arrays"),
    ({}, {"x": np.array(["2026-01-01"], "datetime64[D]")}, TypeError, "only numbers"),
    ({}, {"x": np.zeros(2, [("a", "f4"), ("b", "i4")])}, TypeError, "only numbers"),
    ({}, {"__x": np.zeros(1)}, ValueError, "__x"),
    ({}, {"a/b": np.zeros(1)}, ValueError, "a/b"),
    ({}, {3: np.zeros(1)}, TypeError, "names must be strings"),
    ({"arrays": []}, {}, ValueError, "reserved"),
    ({"lr": {1, 2}}, {}, TypeError, "JSON"),
    ({"lr": float("nan")}, {}, ValueError, "JSON"),
    ([], {}, TypeError, "header must be a dict"),
])
def test_write_refuses_what_it_cannot_store_safely(tmp_path, header, arrays, error, match):
    with pytest.raises(error, match=match):
        P.write_model(tmp_path / "m.fnn", header, arrays)
    assert os.listdir(tmp_path) == []


class Odd(nn.Dense):
    pass


class Warmup(optim.Schedule):
    def __call__(self, step):
        return 0.01


def test_save_refuses_objects_it_could_not_rebuild(tmp_path):
    with pytest.raises(TypeError, match="layers\\[1\\]"):
        P.save_sequential(nn.Sequential([nn.Dense(2, 3), Odd(3, 1)]), tmp_path / "m.fnn")
    with pytest.raises(TypeError, match="schedule"):
        P.save_sequential(nn.Sequential([nn.Dense(2, 1)]), tmp_path / "m.fnn", optim.SGD(lr=Warmup()))
    with pytest.raises(TypeError, match="model"):
        P.save_sequential([nn.Dense(2, 1)], tmp_path / "m.fnn")
    model, opt = trained()
    with pytest.raises(ValueError, match="does not belong"):
        P.save_sequential(nn.Sequential([nn.Dense(2, 1)]), tmp_path / "m.fnn", opt)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- atomicity


def _fail_writing(monkeypatch, error):
    real = np.lib.format.write_array
    calls = []

    def write_array(fp, arr, **kw):
        calls.append(1)
        if len(calls) == 2:  # the header is written, the first array half way
            fp.write(b"\0" * 100)
            raise error
        return real(fp, arr, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", write_array)


def _fail_replacing(monkeypatch, error):
    def replace(src, dst):
        raise error

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["OSError", "KeyboardInterrupt"])
@pytest.mark.parametrize("fail", [_fail_writing, _fail_replacing], ids=["writing", "replacing"])
def test_a_failed_save_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, fail, error):
    path = tmp_path / "model.fnn"
    old = every_layer_model(seed=1)
    P.save_sequential(old, path)
    before = path.read_bytes()
    fail(monkeypatch, error)
    with pytest.raises(type(error)):
        P.save_sequential(every_layer_model(seed=2), path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.fnn"]
    assert path.read_bytes() == before
    assert_same_model(P.load(path), old)


def test_missing_paths_are_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        P.save_sequential(every_layer_model(), tmp_path / "nowhere" / "m.fnn")
    with pytest.raises(FileNotFoundError):
        P.load(tmp_path / "missing.fnn")
    with pytest.raises(IsADirectoryError):  # a path problem, not a format problem
        P.read_model(tmp_path)


@posix_only
def test_permissions_new_file_umask_and_replaced_file_kept(tmp_path):
    old_umask = os.umask(0o027)
    try:
        P.save_sequential(every_layer_model(), tmp_path / "new.fnn")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "new.fnn").stat().st_mode & 0o777 == 0o640
    kept = tmp_path / "kept.fnn"
    kept.write_bytes(b"old")
    kept.chmod(0o604)
    P.save_sequential(every_layer_model(), kept)
    assert kept.stat().st_mode & 0o777 == 0o604


@posix_only
def test_saving_through_a_symlink_writes_its_target(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "5.fnn"
    P.save_sequential(every_layer_model(seed=1), target)
    link = tmp_path / "latest.fnn"
    link.symlink_to(target)
    model = every_layer_model(seed=2)
    P.save_sequential(model, link)
    assert link.is_symlink()
    assert_same_model(P.load(target), model)


# ----------------------------------------------------------------------------- bad files


@pytest.fixture
def saved(tmp_path):
    model, opt = trained()
    path = tmp_path / "model.fnn"
    P.save_sequential(model, path, opt)
    return model, path


def test_every_truncation_is_a_format_error(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.fnn"
    for k in range(20):
        cut.write_bytes(data[:len(data) * k // 20])
        bad_file(cut)


def test_bit_flips_are_caught_or_harmless(saved, tmp_path):
    model, path = saved
    data = path.read_bytes()
    flipped = tmp_path / "flipped.fnn"
    rng = np.random.default_rng(4)
    caught = 0
    for pos in np.linspace(0, len(data) - 1, 20).astype(int):
        corrupt = bytearray(data)
        corrupt[pos] ^= 1 << int(rng.integers(8))
        flipped.write_bytes(bytes(corrupt))
        try:
            loaded = P.load(flipped)
        except ModelFormatError as exc:
            assert str(flipped) in str(exc)
            caught += 1
        else:  # the flip hit a byte the reader does not use (a timestamp, an attribute)
            assert_same_model(loaded, model)
    assert caught >= 10  # the CRC catches every flip in the data


class Pwn:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def _zip_with_text(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "hello")


def _np_save(path, save, **arrays):
    with open(path, "wb") as f:
        save(f, *arrays.values()) if save is np.save else save(f, **arrays)


FOREIGN = {
    "csv": (lambda p: p.write_text("a,b\n1,2\n"), "not a zip archive"),
    "pickle": (lambda p: p.write_bytes(pickle.dumps({"params": Pwn(p.parent / "pwned")})), "pickle"),
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "npy": (lambda p: _np_save(p, np.save, w=np.zeros(3)), r"\.npy"),
    "npz-without-header": (lambda p: _np_save(p, np.savez, w=np.zeros(3)), "no __header__"),
    "zip-of-text": (_zip_with_text, "notes.txt"),
    "json-list-header": (lambda p: write_raw(p, [1, 2]), "not an object"),
    "bad-utf8-header": (lambda p: write_raw(p, b"\xff\xfe{}"), "UTF-8"),
    "wrong-magic": (lambda p: write_raw(p, {"magic": "keras", "format_version": 1, "arrays": []}), "magic"),
    "object-array": (lambda p: write_raw(p, {"magic": P.MAGIC, "format_version": 1, "arrays": ["x"]},
                                         {"x": np.array([Pwn(p.parent / "pwned")], dtype=object)}), "object"),
}


@pytest.mark.parametrize("make, match", FOREIGN.values(), ids=FOREIGN.keys())
def test_foreign_files_are_format_errors_and_never_unpickled(tmp_path, make, match):
    path = tmp_path / "model.fnn"
    make(path)
    bad_file(path, match)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("version, match", [(2, "format 2.*reads format <= 1: upgrade fastnn"),
                                            ("1", "must be an int"), (0, "start at 1")])
def test_unreadable_format_versions(saved, monkeypatch, version, match):
    model, path = saved
    if version == 2:  # a newer fastnn
        monkeypatch.setattr(P._container, "FORMAT_VERSION", 2)  # what write_model writes
        P.save_sequential(model, path)
        monkeypatch.undo()
    else:
        header, arrays = P.read_model(path)
        write_raw(path, dict(header, format_version=version), arrays)
    bad_file(path, match)


def _dense(header):
    return header["model"]["layers"][0]["args"]


TAMPER = {
    "unknown-layer": (lambda h, a: h["model"]["layers"][1].update(type="Lambda"), "unknown layer type 'Lambda'"),
    "short-params": (lambda h, a: a.update({"model.params": a["model.params"][:-1]}), "must hold"),
    "params-dtype": (lambda h, a: a.update({"model.params": a["model.params"].astype(np.float64)}), "float32"),
    "string-width": (lambda h, a: _dense(h).update(in_features="4"), "in_features must be an int"),
    "bool-width": (lambda h, a: _dense(h).update(in_features=True), "in_features must be a number"),
    "list-slope": (lambda h, a: _dense(h).update(negative_slope=[0.1]), "negative_slope must be a number"),
    "float-width": (lambda h, a: _dense(h).update(in_features=4.5), "in_features"),
    "extra-arg": (lambda h, a: _dense(h).update(code="import os"), "takes"),
    "bad-activation": (lambda h, a: _dense(h).update(activation="gelu"), "activation"),
    "width-mismatch": (lambda h, a: h["model"]["layers"][3]["args"].update(in_features=7), "must hold|width"),
    "forged-width": (lambda h, a: _dense(h).update(out_features=10 ** 12), "must hold"),
    "dtype": (lambda h, a: h["model"].update(dtype="float16"), "dtype"),
    "step": (lambda h, a: h["model"].update(step=-1), "step"),
    "missing-key": (lambda h, a: h["model"].pop("seed"), "keys"),
    "optimizer-class": (lambda h, a: h["optimizer"].update({"class": "Evil"}), "unknown optimizer"),
    "schedule-kind": (lambda h, a: h["optimizer"]["lr"].update(kind="os.system"), "unknown schedule"),
    "schedule-value": (lambda h, a: h["optimizer"]["lr"].update(lr=-1.0), "lr"),
    "state-length": (lambda h, a: a.update({"optimizer.m": a["optimizer.m"][:3]}), "shape|length"),
    "state-gone": (lambda h, a: (a.pop("optimizer.m"), a.pop("optimizer.v")), "missing"),
    "class": (lambda h, a: h.update({"class": "NotAModel"}), "'NotAModel'"),
}


@pytest.mark.parametrize("edit, match", TAMPER.values(), ids=TAMPER.keys())
def test_tampered_files_are_format_errors(saved, edit, match):
    _, path = saved
    header, arrays = P.read_model(path)
    edit(header, arrays)
    header["arrays"] = sorted(arrays)  # a consistent forgery: only the content is wrong
    write_raw(path, header, arrays)
    bad_file(path, match)


@pytest.mark.parametrize("edit, match", [(lambda a: a.update(extra=np.zeros(1)), "not named by the header"),
                                         (lambda a: a.pop("model.buffers"), "missing")], ids=["extra", "missing"])
def test_the_header_lists_exactly_the_entries(saved, edit, match):
    _, path = saved
    header, arrays = P.read_model(path)
    edit(arrays)
    write_raw(path, header, arrays)
    bad_file(path, match)


def test_a_forged_array_shape_allocates_nothing(tmp_path):
    """An entry whose .npy header declares 80 GB but holds 8 bytes."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 10,)})
    member.write(b"\0" * 8)
    path = tmp_path / "bomb.fnn"
    header = {"magic": P.MAGIC, "format_version": 1, "arrays": ["w"]}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__header__.npy", _npy(np.frombuffer(json.dumps(header).encode(), np.uint8)))
        zf.writestr("w.npy", member.getvalue())
    bad_file(path, "declares")


def _npy(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


# ----------------------------------------------------------------------------- dispatch


def test_registered_loaders_build_their_class(tmp_path, monkeypatch):
    monkeypatch.setitem(P._LOADERS, "Toy", lambda header, arrays: (header["n"], arrays["w"].sum()))
    P.write_model(tmp_path / "toy.fnn", {"class": "Toy", "n": 3}, {"w": np.arange(4)})
    assert P.load(tmp_path / "toy.fnn") == (3, 6)
    P.write_model(tmp_path / "broken.fnn", {"class": "Toy"}, {"w": np.arange(4)})
    err = bad_file(tmp_path / "broken.fnn", "KeyError")  # a loader's own slip is still a format error
    assert isinstance(err.__cause__, KeyError)
    with pytest.raises(ModelFormatError, match="not a Sequential"):
        P.load_sequential(tmp_path / "toy.fnn")
    with pytest.raises(TypeError, match="class_name"):
        P.register_loader("", lambda h, a: None)
    with pytest.raises(TypeError, match="callable"):
        P.register_loader("Toy", None)
