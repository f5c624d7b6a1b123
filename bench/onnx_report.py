"""ONNX export and ONNX Runtime inference against fastnn's own predict, and against
skl2onnx's export of the equivalent scikit-learn pipeline.

    python bench/onnx_report.py [--threads 1 2] [--repeats 7] [--rounds 3]

The models: W1's network (BENCHMARKS.md: 16 features, hidden 128-64-32 relu, 1 output)
behind a StandardScaler, as a fastnn pipeline (fastnn.preprocessing.StandardScaler +
DNNRegressor) and as a scikit-learn one (StandardScaler + MLPRegressor), both fitted for
two epochs on 5,000 rows of the W data (the weights do not change the timings).

Measured:
* export: ``fastnn.export_onnx`` of the fastnn pipeline against ``skl2onnx.to_onnx`` (plus
  serializing and writing the file) of the scikit-learn one; the median of 20 runs.
* inference on 1 row and on 100,000 rows (float32): fastnn's ``pipeline.predict``, ONNX
  Runtime on fastnn's file, ONNX Runtime on skl2onnx's file, scikit-learn's
  ``pipeline.predict``. Each (runner, thread count) runs in its own process, so no other
  library's spinning worker threads share the cores; ONNX Runtime gets
  ``intra_op_num_threads`` = the thread count, fastnn ``fastnn.threads(n)``, scikit-learn a
  threadpoolctl limit. 1 row: the median per call over ``--repeats`` batches of calls, each
  batch at least 0.2 s; 100,000 rows: the median of ``--repeats`` calls. Every runner is
  measured in ``--rounds`` rounds, interleaved, and the table shows its best round: on a
  shared machine the load of the moment slows some rounds, never speeds one up.

Benchmarks record; they never assert speed. The report also prints the largest
difference between ONNX Runtime's and fastnn's predictions (relative to their scale).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, when run from anywhere
from report import fmt_time  # noqa: E402

ROWS_FIT = 5_000
HIDDEN = (128, 64, 32)
RUNNERS = ("fastnn", "ort-fastnn", "ort-skl2onnx", "sklearn")


def _data():
    from fastnn._quickbench import w1_data
    return w1_data()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _per_call(fn, repeats: int, min_batch_seconds=0.2) -> float:
    """Median seconds per call over ``repeats`` batches of calls (each batch >= 0.2 s)."""
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_batch_seconds:
        fn()
        calls += 1
    per_batch = max(calls, 1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_batch):
            fn()
        times.append((time.perf_counter() - start) / per_batch)
    return statistics.median(times)


# ----------------------------------------------------------------------------- the models


def build(directory: str) -> dict:
    """Fit both pipelines, export them, and return the export timings and file paths."""
    import fastnn
    import skl2onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler as SkStandardScaler

    from fastnn.preprocessing import StandardScaler

    X, y = _data()
    Xf, yf = X[:ROWS_FIT], y[:ROWS_FIT]
    ours = Pipeline([("scale", StandardScaler()),
                     ("net", fastnn.DNNRegressor(hidden_units=HIDDEN, epochs=2, batch_size=256, random_state=0))])
    ours.fit(Xf, yf)
    theirs = Pipeline([("scale", SkStandardScaler()),
                       ("net", MLPRegressor(hidden_layer_sizes=HIDDEN, max_iter=2, batch_size=256, random_state=0))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(Xf, yf)
    paths = {name: os.path.join(directory, name) for name in ("fastnn.npz", "fastnn.onnx", "mlp.onnx", "mlp.pkl")}
    fastnn.save(ours, paths["fastnn.npz"])
    with open(paths["mlp.pkl"], "wb") as f:  # our own file, read back by our own process
        pickle.dump(theirs, f)

    def export_fastnn():
        fastnn.export_onnx(ours, paths["fastnn.onnx"])

    def export_skl2onnx():
        proto = skl2onnx.to_onnx(theirs, initial_types=[("X", FloatTensorType([None, X.shape[1]]))])
        with open(paths["mlp.onnx"], "wb") as f:
            f.write(proto.SerializeToString())

    return {"paths": paths, "export_fastnn_s": _median_time(export_fastnn, 20),
            "export_skl2onnx_s": _median_time(export_skl2onnx, 20)}


# ----------------------------------------------------------------------------- one runner, one process


def measure(runner: str, threads: int, paths: dict, repeats: int) -> dict:
    X, _ = _data()
    one = X[:1].copy()
    predict, context = _runner(runner, threads, paths)
    with context:
        result = {"one_row_s": _per_call(lambda: predict(one), repeats),
                  "all_rows_s": _median_time(lambda: predict(X), repeats)}
        result["prediction"] = np.asarray(predict(X[:2000]), np.float64).ravel().tolist()
    return result


def _runner(runner: str, threads: int, paths: dict):
    import contextlib
    if runner == "fastnn":
        import fastnn
        model = fastnn.load(paths["fastnn.npz"])
        return model.predict, fastnn.threads(threads)
    if runner.startswith("ort-"):
        import onnxruntime as rt
        options = rt.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        path = paths["fastnn.onnx" if runner == "ort-fastnn" else "mlp.onnx"]
        session = rt.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})[0]), contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    with open(paths["mlp.pkl"], "rb") as f:
        model = pickle.load(f)
    return model.predict, threadpool_limits(threads)


def _child(runner: str, threads: int, paths: dict, repeats: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--child", runner, str(threads), json.dumps(paths), str(repeats)],
                         capture_output=True, text=True, env=env, timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{runner} at {threads} threads failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the report


def report(threads_list, repeats: int, rounds: int) -> None:
    import fastnn
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn
    config = fastnn.show_config(print_=False)
    print(f"command: python bench/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}".rstrip())
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"CPU: {_cpu_model()} ({os.cpu_count()} logical cores); fastnn {config['version']} SIMD path "
          f"{config['simd_path']}, {config['compiler']}; onnx {onnx.__version__}, onnxruntime "
          f"{onnxruntime.__version__}, skl2onnx {skl2onnx.__version__}, scikit-learn {sklearn.__version__}, "
          f"numpy {np.__version__}")
    with tempfile.TemporaryDirectory(prefix="fastnn-onnx-bench-") as tmp:
        built = build(tmp)
        sizes = {k: os.path.getsize(v) for k, v in built["paths"].items() if k.endswith(".onnx")}
        print(f"\nexport (median of 20): fastnn.export_onnx {fmt_time(built['export_fastnn_s'])} "
              f"({sizes['fastnn.onnx'] / 1024:.0f} KiB); skl2onnx.to_onnx + write "
              f"{fmt_time(built['export_skl2onnx_s'])} ({sizes['mlp.onnx'] / 1024:.0f} KiB)")
        print(f"\ninference, W1 network {'-'.join(map(str, HIDDEN))} behind a StandardScaler, float32:")
        print("| threads | runner | 1 row (per call) | 100,000 rows | rows/s at 100,000 |")
        print("|---:|---|---:|---:|---:|")
        predictions, best = {}, {}
        for _ in range(rounds):  # interleaved: a burst of load on a shared machine hits every runner alike
            for threads in threads_list:
                for runner in RUNNERS:
                    r = _child(runner, threads, built["paths"], repeats)
                    predictions[runner] = np.asarray(r["prediction"])
                    old = best.get((threads, runner), {"one_row_s": np.inf, "all_rows_s": np.inf})
                    best[(threads, runner)] = {k: min(old[k], r[k]) for k in old}
        for (threads, runner), r in best.items():
            print(f"| {threads} | {runner} | {fmt_time(r['one_row_s'])} | {fmt_time(r['all_rows_s'])} | "
                  f"{100_000 / r['all_rows_s']:,.0f} |")
        for a, b in (("ort-fastnn", "fastnn"), ("ort-skl2onnx", "sklearn")):
            scale = np.abs(predictions[b]).max()
            print(f"\nlargest |{a} - {b}| over 2,000 rows: {np.abs(predictions[a] - predictions[b]).max() / scale:.2e} "
                  "of the largest prediction", end="")
        print()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        runner, threads, paths, repeats = argv[1], int(argv[2]), json.loads(argv[3]), int(argv[4])
        print(json.dumps(measure(runner, threads, paths, repeats)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    report(sorted(set(args.threads)), args.repeats, args.rounds)


if __name__ == "__main__":
    main()
