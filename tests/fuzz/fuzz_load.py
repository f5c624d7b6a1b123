"""atheris fuzz target for ``fastnn.load`` (RELIABILITY.md M7 / P6).

Bytes -> a temporary file -> ``fastnn.load(path)``. The oracle:

* only ``fastnn.ModelFormatError`` (a ``ValueError``, naming the path) or ``OSError`` may
  escape ``load`` -- never ``KeyError``, ``BadZipFile``, ``UnicodeDecodeError``, a JSON
  error, ``MemoryError`` -- and nothing is ever unpickled;
* a file ``load`` accepts gives a usable object: ``predict`` on a few rows of the right
  width works and has the documented shape (a pipeline's scalers may refuse those rows
  with a ``ValueError``), an estimator's ``diagnose()`` works, and saving it again and
  loading that gives bitwise the same predictions;
* memory stays under ``-rss_limit_mb`` (a forged size must not make ``load`` allocate
  more than the file holds) and each input runs within ``-timeout``.

Most byte-level mutations of a model file only break the zip CRC, so a custom mutator
also edits the archive structurally and rewrites it with valid CRCs: it changes values in
the JSON header, the dtype, shape or contents of the ``.npy`` entries, drops, duplicates
or renames entries (and sometimes just flips bytes, as libFuzzer would).

Make the seed corpus (a Sequential with optimizer state, a float64 Sequential, a
DNNRegressor, a DNNClassifier, a Pipeline of every scaler and a regressor, a Pipeline
whose ColumnTransformer is stored through skops, plus truncated and byte-flipped copies) with fastnn's own savers, then fuzz::

    python tests/fuzz/fuzz_load.py --make-corpus build/fuzz/corpus_load
    python tests/fuzz/fuzz_load.py -max_total_time=60 -rss_limit_mb=2048 -timeout=30 -max_len=100000 \
        build/fuzz/corpus_load

(``-max_len`` covers the skops seed, about 85 KB: skops stores every array as its own entry.)

Decode a crash: ``python tests/fuzz/fuzz_load.py --explain build/fuzz/crash-<sha1>``.
"""
from __future__ import annotations

import atexit
import io
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import warnings
import zipfile

import atheris

with atheris.instrument_imports(include=["fastnn"]):
    import numpy as np

    import fastnn
    import fastnn.persistence
    import fastnn.preprocessing
    try:  # the estimators (and pipelines) need scikit-learn; without it only Sequential files load
        import fastnn.estimators
        from sklearn.pipeline import Pipeline
        ESTIMATORS = (fastnn.estimators.DNNRegressor, fastnn.estimators.DNNClassifier)
    except ImportError:
        Pipeline, ESTIMATORS = None, ()
    try:  # imported here, once: the first load of a skops part would otherwise pay seconds of
        import skops.io  # noqa: F401  imports inside the time budget of one input
        import fastnn._skops_steps
        fastnn._skops_steps.trusted_types()
    except ImportError:
        pass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _instrument import instrument_package  # noqa: E402


EXPLAIN = False
_TMPDIR = tempfile.mkdtemp(prefix="fastnn-fuzz-load-")
atexit.register(shutil.rmtree, _TMPDIR, ignore_errors=True)
PATH = os.path.join(_TMPDIR, "model.npz")
RESAVED = os.path.join(_TMPDIR, "resaved.npz")
HEADER = "__header__.npy"
SLOW_SECONDS = 5.0  # a model file loads in milliseconds; seconds mean work the file does not hold
RSS_GROWTH_MB = 256  # seed files are < 20 KB: a load never needs hundreds of MB


# ----------------------------------------------------------------------------- the target


def _predict_input(obj):
    """(predict function, a few rows of the right width, expected output shape, allowed errors)."""
    if isinstance(obj, fastnn.nn.Sequential):
        x = np.linspace(-1, 1, 3 * obj.in_features).reshape(3, obj.in_features)
        return obj.predict, x, (3, obj.out_features), ()
    if Pipeline is not None and isinstance(obj, Pipeline):
        n = obj.n_features_in_  # the first step's: a ColumnTransformer may widen the rows
        x = np.linspace(1, 2, 3 * n).reshape(3, n)  # positive: LogScaler(offset >= 0) takes it
        return obj.predict, x, None, (ValueError,)  # a scaler may refuse rows (LogScaler, offset < -1)
    if ESTIMATORS and isinstance(obj, ESTIMATORS):
        n = obj.n_features_in_
        x = np.linspace(-1, 1, 3 * n).reshape(3, n)
        if isinstance(obj, ESTIMATORS[1]):
            shape = (3,)
        else:
            shape = (3,) if obj._y_ndim_ == 1 else (3, obj.model_.out_features)
        return obj.predict, x, shape, ()
    raise AssertionError(f"fastnn.load returned a {type(obj).__name__}")


def exercise(obj):
    """A loaded object must work: predict, diagnose, save again and load back identically."""
    predict, x, shape, allowed = _predict_input(obj)
    try:
        y = predict(x)
    except allowed:
        return
    if shape is not None:
        assert np.shape(y) == shape, f"predict gave shape {np.shape(y)}, expected {shape}"
    est = obj.steps[-1][1] if hasattr(obj, "steps") else obj
    if ESTIMATORS and isinstance(est, ESTIMATORS[1]):
        p = est.predict_proba(x[:, :est.n_features_in_]) if not hasattr(obj, "steps") else None
        if p is not None:
            assert p.shape == (3, len(est.classes_)), f"predict_proba shape {p.shape}"
    if hasattr(est, "diagnose"):
        est.diagnose()
    fastnn.save(obj, RESAVED)
    again = fastnn.load(RESAVED)
    y2 = _predict_input(again)[0](x)
    y, y2 = np.asarray(y), np.asarray(y2)
    assert np.array_equal(y, y2, equal_nan=y.dtype.kind == "f"), \
        "saving a loaded model and loading it again changed its predictions"


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _check_budget(start, peak_before, data):
    """A model file is parsed in time and memory proportional to its size: a forged size
    field must not make ``load`` allocate (or compute) much more than the file holds."""
    seconds = time.perf_counter() - start
    grown = _peak_rss_mb() - peak_before
    assert seconds < SLOW_SECONDS, f"fastnn.load of a {len(data)}-byte file took {seconds:.1f} s"
    assert grown < RSS_GROWTH_MB, f"fastnn.load of a {len(data)}-byte file raised the peak RSS by {grown:.0f} MB"


def TestOneInput(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peak, start = _peak_rss_mb(), time.perf_counter()
        try:
            obj = fastnn.load(PATH)
        except fastnn.ModelFormatError as exc:
            if EXPLAIN:
                print(f"  -> ModelFormatError: {exc}")
            assert isinstance(exc, ValueError)
            assert PATH in str(exc), f"ModelFormatError does not name the path: {exc}"
            cause = exc.__cause__ or exc.__context__
            assert not isinstance(cause, (MemoryError, RecursionError)), \
                f"load ran out of memory / stack on a {len(data)}-byte file: {exc}"
            _check_budget(start, peak, data)
            return
        except OSError as exc:
            if EXPLAIN:
                print(f"  -> {type(exc).__name__}: {exc}")
            return
        _check_budget(start, peak, data)
        if EXPLAIN:
            print(f"  -> loaded {type(obj).__name__}")
        exercise(obj)


# ----------------------------------------------------------------------------- structural mutator

JSON_VALUES = [None, True, False, 0, -1, 1, 2, 3, 2 ** 31, 2 ** 63, 10 ** 7, 10 ** 12, -10 ** 12, 0.5, 1e308, -1e308,
               1e-320, "", "x", "Dense", "BatchNorm", "Dropout", "relu", "prelu", "float16", "float64", "Pipeline",
               "Sequential", "DNNRegressor", "DNNClassifier", "StandardScaler", "Adam", [], [1], [1, 2], {},
               {"kind": "Constant", "lr": 0.1}, "__header__", "model.params"]


def _read_zip(data):
    """[(name, bytes)] of a readable archive (CRCs checked), else None."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(info.filename, zf.read(info)) for info in zf.infolist()]
    except Exception:
        return None


def _write_zip(entries, compress=False):
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # duplicate names
                zf.writestr(info, content)
    return buf.getvalue()


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _npy_array(content):
    try:
        return np.lib.format.read_array(io.BytesIO(content), allow_pickle=False)
    except Exception:
        return None


def _json_nodes(obj, path=()):
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_nodes(v, path + (i,))


def _mutate_json(doc, rng):
    nodes = list(_json_nodes(doc))
    numbers = [n for n in nodes if isinstance(n[1], (int, float)) and not isinstance(n[1], bool)]
    if numbers and rng.random() < 0.5:  # sizes, counts and hyperparameters are where forgeries bite
        nodes = numbers
    path, value = nodes[rng.randrange(len(nodes))]
    if not path:
        return rng.choice([[], 1, "x", None, {"magic": "fastnn-model"}]) if rng.random() < 0.05 else doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    r = rng.random()
    if r < 0.15 and isinstance(parent, dict):
        del parent[key]
    elif r < 0.2 and isinstance(parent, list):
        del parent[key]
    elif r < 0.25 and isinstance(parent, list):
        parent.insert(key, parent[key])
    elif r < 0.55 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = rng.choice([value + 1, value - 1, -value, value * 1000, value * 10 ** 6, value * 10 ** 7,
                                  value * 10 ** 12, 0, value / 3, value + 2 ** 31])
    elif r < 0.6 and isinstance(parent, dict):
        parent[rng.choice(["x", "extra", "__class__", str(key) + "_"])] = rng.choice(JSON_VALUES)
    else:
        parent[key] = rng.choice(JSON_VALUES)
    return doc


def _mutate_array(arr, rng):
    r = rng.random()
    with np.errstate(all="ignore"):
        if r < 0.2:
            return arr.astype(rng.choice(["float16", "float32", "float64", "int8", "int64", "bool", "<U3", "uint8"]))
        if r < 0.35:
            return arr.reshape(-1)[: rng.randrange(arr.size + 1)] if arr.size else np.zeros(rng.randrange(4))
        if r < 0.45:
            return np.concatenate([arr.reshape(-1), arr.reshape(-1)[:1]]) if arr.size else arr
        if r < 0.55:
            return arr.reshape(-1, 1) if arr.ndim <= 1 else arr.reshape(-1)
        if r < 0.7 and arr.size and arr.dtype.kind == "f":
            out = arr.copy().reshape(-1)
            out[rng.randrange(out.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38, -1e300, 0.0])
            return out.reshape(arr.shape)
        if r < 0.8:
            return np.asfortranarray(arr.reshape(arr.shape + (1,)) if arr.ndim < 2 else arr)
    return None  # raw byte mutation instead


SKOPS_NAMES = ["sklearn.decomposition._pca.PCA", "builtins.eval", "os.system", "numpy.sin", "numpy.log1p",
               "sklearn.pipeline.Pipeline", "ObjectNode", "FunctionNode", "ReduceNode", "NdArrayNode"]


def _mutate_skops(content, rng, raw_mutate):
    """A structural edit inside a skops part (the uint8 entry holding a skops archive): a
    value of its schema.json (often a class, module or loader name), or an inner entry
    dropped or damaged; the archive is then written back with valid CRCs."""
    arr = _npy_array(content)
    inner = _read_zip(arr.tobytes()) if arr is not None and arr.dtype == np.uint8 else None
    if not inner:
        return raw_mutate(content, len(content) + 64)
    names = [n for n, _ in inner]
    j = names.index("schema.json") if "schema.json" in names and rng.random() < 0.7 else rng.randrange(len(inner))
    name, part = inner[j]
    if name == "schema.json":
        doc = json.loads(part)
        for _ in range(rng.randrange(1, 3)):
            nodes = [n for n in _json_nodes(doc) if n[0] and n[0][-1] in ("__class__", "__module__", "__loader__")]
            if nodes and rng.random() < 0.6:
                path, _ = nodes[rng.randrange(len(nodes))]
                parent = doc
                for key in path[:-1]:
                    parent = parent[key]
                parent[path[-1]] = rng.choice(SKOPS_NAMES + [v.rsplit(".", 1)[-1] for v in SKOPS_NAMES])
            else:
                doc = _mutate_json(doc, rng)
        inner[j] = (name, json.dumps(doc).encode("utf-8"))
    elif name.endswith(".npy") and rng.random() < 0.5:
        inner[j] = (name, _forged_npy(part, rng) or raw_mutate(part, len(part) + 64))
    elif rng.random() < 0.3:
        del inner[j]
    else:
        inner[j] = (name, raw_mutate(part, len(part) + 64))
    return _npy_bytes(np.frombuffer(_write_zip(inner), np.uint8))


def _forged_npy(content, rng):
    """The .npy ``content`` with its header declaring another shape or dtype over the same
    data bytes (a size the data does not hold), or None when it is not a readable .npy."""
    arr = _npy_array(content)
    if arr is None or arr.dtype.hasobject:
        return None
    shape = rng.choice([(10 ** 8,), (2 ** 31 + 1,), (arr.size + 1,), (3, 10 ** 7), ()])
    descr = rng.choice([np.lib.format.dtype_to_descr(arr.dtype), "<f8", "|O", "<U100000"])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    return header.getvalue() + arr.tobytes()


def custom_mutator(data, max_size, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _structural_mutation(data, max_size, seed)
        except Exception:  # the mutator only proposes inputs: never let it stop the run
            return atheris.Mutate(data, max_size)


def _structural_mutation(data, max_size, seed, raw_mutate=None):
    """One structural edit of ``data`` (``raw_mutate(bytes, max_size)``: libFuzzer's byte
    mutation, ``atheris.Mutate``, which only works inside ``atheris.Fuzz``)."""
    raw_mutate = raw_mutate or atheris.Mutate
    rng = random.Random(seed)
    entries = _read_zip(data) if rng.random() < 0.85 else None
    if not entries:
        return raw_mutate(data, max_size)
    names = [n for n, _ in entries]
    i = names.index(HEADER) if HEADER in names and rng.random() < 0.5 else rng.randrange(len(entries))
    name, content = entries[i]
    op = rng.random()
    if op < 0.08:
        del entries[i]
    elif op < 0.12:
        entries.append((name, content))
    elif op < 0.17:
        entries[i] = (rng.choice([name[:-4], name + "x", "model.extra.npy", "__header__.npy", "a/b.npy"]), content)
    elif op < 0.6 and name == HEADER:
        raw = _npy_array(content)
        try:
            doc = json.loads(raw.tobytes().decode("utf-8"))
        except Exception:
            doc = None
        if doc is None:
            entries[i] = (name, raw_mutate(content, len(content) + 64))
        else:
            for _ in range(rng.randrange(1, 4)):
                doc = _mutate_json(doc, rng)
            text = json.dumps(doc).encode("utf-8")
            entries[i] = (name, _npy_bytes(np.frombuffer(text, np.uint8)))
    elif op < 0.8 and name.endswith(".skops.npy"):
        entries[i] = (name, _mutate_skops(content, rng, raw_mutate))
    else:
        arr = _npy_array(content) if name != HEADER else None
        try:
            new = None if arr is None else _mutate_array(arr, rng)
        except Exception:  # e.g. string labels cast to int, a corrupted unicode dtype
            new = None
        entries[i] = (name, _npy_bytes(new) if new is not None else raw_mutate(content, len(content) + 64))
    out = _write_zip(entries, compress=rng.random() < 0.03)
    return out if len(out) <= max_size else raw_mutate(data, max_size)


# ----------------------------------------------------------------------------- seed corpus


def make_corpus(directory):
    """Valid files written by fastnn's own savers, and truncated / byte-flipped copies
    (the estimator and pipeline seeds need scikit-learn and are skipped without it)."""
    from fastnn import nn, optim
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5], np.float32)

    model = nn.Sequential([nn.Dense(3, 4, activation="prelu"), nn.BatchNorm(4), nn.Dropout(0.25),
                           nn.Activation("tanh"), nn.Dense(4, 2)], seed=1)
    opt = optim.Adam(1e-2)
    for _ in range(2):
        model.train_step(X[:8], np.stack([y[:8], -y[:8]], axis=1), optimizer=opt)
    fastnn.persistence.save_sequential(model, os.path.join(directory, "sequential_adam.npz"), optimizer=opt)
    small = nn.Sequential([nn.Dense(2, 3, activation="elu"), nn.Dense(3, 1)], seed=2, dtype=np.float64)
    fastnn.save(small, os.path.join(directory, "sequential_f64.npz"))

    if Pipeline is None:
        print("scikit-learn is not installed: no estimator or pipeline seeds")
    else:
        _estimator_seeds(directory, X, y)
    _damaged_seeds(directory)
    print(f"wrote {len(os.listdir(directory))} seed files to {directory}")


def _estimator_seeds(directory, X, y):
    from fastnn import preprocessing
    reg = fastnn.DNNRegressor(hidden_units=(4,), epochs=2, batch_norm=True, dropout=0.1, random_state=0).fit(X, y)
    fastnn.save(reg, os.path.join(directory, "regressor.npz"))
    labels = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)]
    clf = fastnn.DNNClassifier(hidden_units=(3,), epochs=2, optimizer="adam", random_state=0).fit(X, labels)
    fastnn.save(clf, os.path.join(directory, "classifier.npz"))
    pipe = Pipeline([("log", preprocessing.LogScaler(offset=10.0)), ("clip", preprocessing.Clipper(-5, 5)),
                     ("robust", preprocessing.RobustScaler()), ("minmax", preprocessing.MinMaxScaler()),
                     ("std", preprocessing.StandardScaler()),
                     ("reg", fastnn.DNNRegressor(hidden_units=(3,), epochs=1, random_state=0))]).fit(X, y)
    fastnn.save(pipe, os.path.join(directory, "pipeline.npz"), metadata={"features": ["a", "b", "c"]})
    _skops_seed(directory, X, y)


def _skops_seed(directory, X, y):
    """A pipeline whose ColumnTransformer (one-hot codes, imputed and log-scaled columns, a
    fastnn scaler inside) is stored through skops: the load path of scikit-learn steps."""
    try:
        import skops  # noqa: F401
    except ImportError:
        print("skops is not installed: no seed with a scikit-learn step")
        return
    from fastnn import preprocessing
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
    codes = np.column_stack([(X[:, 0] > 0).astype(np.float32), X[:, 1:]])
    codes[::7, 2] = np.nan
    columns = ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="ignore"), [0]),
                                 ("impute", SimpleImputer(), [2]),
                                 ("log", FunctionTransformer(np.log1p), [0]),
                                 ("std", preprocessing.StandardScaler(), [1])], sparse_threshold=0)
    pipe = Pipeline([("columns", columns), ("minmax", preprocessing.MinMaxScaler()),
                     ("reg", fastnn.DNNRegressor(hidden_units=(3,), epochs=1, random_state=0))]).fit(codes, y)
    fastnn.save(pipe, os.path.join(directory, "pipeline_skops.npz"))


def _damaged_seeds(directory):
    with open(os.path.join(directory, "sequential_adam.npz"), "rb") as f:
        data = f.read()
    for n in (0, 1, 10, 100, len(data) // 2, len(data) - 1):
        with open(os.path.join(directory, f"truncated_{n}.npz"), "wb") as f:
            f.write(data[:n])
    # a byte of the header's JSON, of the params data, of a name in the central directory
    for where in (data.index(b'"magic"') + 2, data.index(b"model.params.npy") + 16 + 20 + 128 + 5,
                  data.rindex(b"model.params.npy") + 3):
        flipped = bytearray(data)
        flipped[where] ^= 0x20
        with open(os.path.join(directory, f"flipped_{where}.npz"), "wb") as f:
            f.write(bytes(flipped))


def main(argv):
    global EXPLAIN
    if len(argv) == 3 and argv[1] == "--make-corpus":
        make_corpus(argv[2])
        return
    if len(argv) > 2 and argv[1] == "--explain":
        EXPLAIN = True
        for path in argv[2:]:
            with open(path, "rb") as f:
                data = f.read()
            print(f"== {path} ({len(data)} bytes)")
            entries = _read_zip(data)
            for name, content in entries or []:
                arr = _npy_array(content)
                if name == HEADER and arr is not None:
                    print(f"  {name}: {arr.tobytes()[:3000].decode('utf-8', 'replace')}")
                else:
                    print(f"  {name}: {len(content)} bytes, "
                          f"{'not .npy' if arr is None else f'{arr.dtype} {arr.shape}'}")
            TestOneInput(data)
        return
    instrument_package("fastnn")  # only when fuzzing: importing this module leaves fastnn as it is
    atheris.Setup(argv, TestOneInput, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
