"""The ``fastnn`` command line (also ``python -m fastnn``).

::

    fastnn train DATA.csv --target COLUMN [options]   train on a CSV file, save the model
    fastnn predict MODEL DATA.csv [--out FILE]         predictions as CSV
    fastnn diagnose MODEL                              the model and the training doctor's findings
    fastnn export MODEL OUT.onnx [--dtype float64]     the model as an ONNX file (needs fastnn[onnx])
    fastnn demo [--dir DIR] [--epochs N]               the lecture's soup, end to end
    fastnn bench [--threads N ...] [--budget S] [--json PATH]   against NumPy, PyTorch, scikit-learn, JAX
    fastnn config                                      how fastnn was built, what it runs on

A model file of ``train`` is a scikit-learn ``Pipeline`` (the scaler, then the
estimator) saved with ``fastnn.persistence.save_pipeline``; its metadata names the
feature and target columns, so ``predict`` reads the columns by name. With categorical
columns (text columns, found by ``train``, or named by ``--categorical``) the pipeline
starts with a ``ColumnTransformer`` that one-hot encodes them and scales the numeric ones
(``fastnn._categorical``), and the metadata's ``categorical`` names them, so ``predict``
reads them as text; categories that training did not see encode as all zeros and are
counted in one warning. ``--drop`` and ``--features`` choose the feature columns. Exit status: 0 on
success, 1 when training diverged (nothing is saved), 2 for a usage error (a bad option,
a missing or malformed file, an output path that cannot or must not be written, a model
too large for memory), always with a one-line message on stderr that starts
``fastnn: error:``; warnings of the libraries underneath become one-line
``fastnn: warning:`` notes.

Files: every output path is checked before any work (not the same file as an input, a
regular file or nothing yet, a writable folder; a trailing slash means a folder), and
every file is written atomically, so an interrupted command leaves the old file whole.
``train`` saves the model before it prints its report: a closed pipe (``| head``) loses
nothing.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import shlex
import sys
import warnings

import numpy as np

import fastnn
from fastnn._files import OutputPathError, atomic_write_text, check_output_file, check_output_folder

__all__ = ["main"]

SCALERS = ("standard", "minmax", "log", "robust", "none")
COMMANDS = ("train", "predict", "diagnose", "demo", "bench", "config", "export")
DEMO_EPOCHS = 60


class UsageError(Exception):
    """A mistake of the user's: reported as one line, exit status 2."""


class _Diverged(Exception):
    """Training diverged; the message and the findings are printed. Exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ----------------------------------------------------------------------------- option types


def _number(kind, low, high=None, low_open=False, high_open=False):
    """An argparse ``type`` parsing an int or float within bounds."""
    what = "an int" if kind is int else "a number"
    bounds = [f"{'>' if low_open else '>='} {low:g}"]
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (value is None or not math.isfinite(value) or (value <= low if low_open else value < low)
                or (high is not None and (value >= high if high_open else value > high))):
            raise argparse.ArgumentTypeError(f"must be {what} {' and '.join(bounds)}, got {text!r}")
        return value

    return parse


def _hidden(text):
    try:
        units = tuple(int(u) for u in text.split(","))
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive layer widths like 64,32, got {text!r}")
    return units


def _column_names(text):
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"must be comma-separated column names like id,name, got {text!r}")
    return list(dict.fromkeys(names))


def _categorical_option(text):
    return text if text in ("auto", "none") else _column_names(text)


def _parser() -> _Parser:
    parser = _Parser(prog="fastnn", description="fastnn: fast, trustworthy dense neural networks for tabular data.",
                     epilog="'fastnn COMMAND --help' describes a command.")
    parser.add_argument("--version", action="version", version=f"fastnn {fastnn.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train a model on a CSV file and save it",
                           description="Train a DNNRegressor (or DNNClassifier with --classify) on the columns of a "
                                       "CSV file, report its metrics and the training doctor's findings, and save "
                                       "the scaler and the network as one model file.")
    train.add_argument("data", metavar="DATA.csv", help="CSV file with a header row: numeric and text (categorical) "
                                                        "columns (.gz, .bz2 and .xz are decompressed)")
    train.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    _add_delimiter_option(train)
    _add_training_options(train)
    train.set_defaults(run=_train_command)

    predict = sub.add_parser("predict", help="predict with a saved model",
                             description="Predict the rows of a CSV file; the feature columns are found by name "
                                         "(other columns, such as the target, are ignored).")
    predict.add_argument("model", metavar="MODEL", help="a model file of 'fastnn train'")
    predict.add_argument("data", metavar="DATA.csv")
    predict.add_argument("--out", metavar="FILE", help="write the predictions here, replacing the file atomically "
                                                       "(a folder ending in '/': FOLDER/predictions.csv; '-' or "
                                                       "none: standard output)")
    _add_delimiter_option(predict)
    predict.set_defaults(run=_predict_command)

    diagnose = sub.add_parser("diagnose", help="describe a saved model and diagnose its training",
                              description="Print what a saved model is (task, features, layers, training) and "
                                          "what diagnose() finds in its training history.")
    diagnose.add_argument("model", metavar="MODEL")
    diagnose.set_defaults(run=_diagnose_command)
    _add_export_command(sub)

    demo = sub.add_parser("demo", help="the lecture's soup example, end to end",
                          description="Write a soup data set (stock in litres and in millilitres, salt, cooking "
                                      "time -> tastiness), train on it as 'fastnn train' does, and show why "
                                      "feature scaling matters.")
    demo.add_argument("--dir", default="fastnn-demo", help="directory for soup.csv and model.npz "
                                                           "(default: fastnn-demo)")
    demo.add_argument("--epochs", type=_number(int, 1), default=DEMO_EPOCHS,
                      help=f"training epochs (default {DEMO_EPOCHS})")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo_command)

    bench = sub.add_parser("bench", help="time fastnn against NumPy, PyTorch, scikit-learn and JAX (those installed)")
    bench.add_argument("--threads", type=_number(int, 1), nargs="+", default=[1, 2], metavar="N",
                       help="thread counts to time (default: 1 2)")
    bench.add_argument("--budget", type=_number(float, 0, low_open=True), default=0.25,
                       help="seconds per measurement (default 0.25)")
    bench.add_argument("--json", metavar="PATH", help="also write the rows and the configuration as JSON")
    bench.set_defaults(run=_bench_command)

    config = sub.add_parser("config", help="print how fastnn was built and what it runs on")
    config.set_defaults(run=lambda args: fastnn.show_config() or 0)
    return parser


_DELIMITER_NAMES = {",": ",", "comma": ",", ";": ";", "semicolon": ";", "\t": "\t", "\\t": "\t", "tab": "\t"}


def _delimiter(text):
    try:
        return _DELIMITER_NAMES[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"must be comma, semicolon or tab (or ',', ';', '\\t'), got {text!r}") from None


def _add_delimiter_option(p):
    p.add_argument("--delimiter", type=_delimiter, metavar="SEP",
                   help="the field separator: comma, semicolon or tab (default: found from the header)")


def _add_training_options(p):
    net = p.add_argument_group("the network")
    net.add_argument("--classify", action="store_true",
                     help="classification (DNNClassifier): the target holds class labels, text or numbers")
    net.add_argument("--hidden", type=_hidden, default=(64, 32), metavar="64,32",
                     help="hidden layer widths, input side first (default 64,32)")
    net.add_argument("--activation", default="relu", help="relu (default), leaky_relu, prelu, elu, sigmoid, tanh")
    net.add_argument("--dropout", type=_number(float, 0, 1, high_open=True), metavar="RATE",
                     help="DROP probability after every hidden layer, 0 <= RATE < 1 (0.2 is a good start)")
    net.add_argument("--batch-norm", action="store_true", help="batch normalization after every hidden layer")
    opt = p.add_argument_group("training")
    opt.add_argument("--optimizer", default="adagrad", help="adagrad (default), adam, adamw, sgd, rmsprop")
    opt.add_argument("--learning-rate", type=_number(float, 0, low_open=True), default=0.05, metavar="LR",
                     help="(default 0.05)")
    opt.add_argument("--epochs", type=_number(int, 1), default=100, metavar="N", help="(default 100)")
    opt.add_argument("--batch-size", type=_number(int, 1), default=32, metavar="N", help="(default 32)")
    opt.add_argument("--clip-norm", type=_number(float, 0, low_open=True), metavar="C",
                     help="clip the gradient to this global norm")
    opt.add_argument("--validation-fraction", type=_number(float, 0, 1, True, True), metavar="F",
                     help="hold out this share of the rows and stop early when their loss stops improving "
                          "(the best epoch's weights are kept); default: no validation, no early stopping")
    opt.add_argument("--patience", type=_number(int, 1), metavar="N",
                     help="early stopping: epochs without improvement (default 10)")
    opt.add_argument("--seed", type=_number(int, 0), default=0, help="random seed (default 0)")
    data = p.add_argument_group("the data")
    which = data.add_mutually_exclusive_group()
    which.add_argument("--features", type=_column_names, metavar="COL,...",
                       help="the feature columns, in this order (default: every column but the target and --drop)")
    which.add_argument("--drop", type=_column_names, metavar="COL,...",
                       help="columns that are not features, such as an ID or a free-text note")
    data.add_argument("--categorical", type=_categorical_option, default="auto", metavar="auto|none|COL,...",
                      help="auto (default): one-hot encode, inside the model, every text column (more than half "
                           "of its cells words); none: no one-hot encoding (a word is an error); COL,...: the text "
                           "columns and these columns too "
                           "(numeric codes such as a zip code). A missing cell of such a column is a category "
                           "of its own; a column with over 1,000 categories, or more than half the rows, is refused")
    data.add_argument("--scale", choices=SCALERS, default="standard",
                      help="scaling of the numeric features, saved with the model (default standard: z-score); "
                           "one-hot columns are not scaled")
    data.add_argument("--remove-outliers", choices=("zscore", "iqr"),
                      help="drop outlying training rows first (|z| > 3, or outside 1.5 IQR)")
    out = p.add_argument_group("output")
    out.add_argument("--out", default="model.npz", help="model file to write, replacing it atomically (default "
                                                        "model.npz; a folder ending in '/': FOLDER/model.npz)")
    out.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs (per-layer statistics) to DIR")
    out.add_argument("--quiet", action="store_true", help="no progress bar and no loss chart")


# ----------------------------------------------------------------------------- train


def _estimator(args, callbacks=None, verbose=None):
    """The estimator the training options describe (validated here: one clear line each)."""
    from fastnn import estimators
    for option, value, allowed in (("--optimizer", args.optimizer, tuple(estimators.OPTIMIZERS)),
                                   ("--activation", args.activation, estimators.ACTIVATIONS)):
        if value not in allowed:
            raise UsageError(f"{option} must be one of {', '.join(allowed)}; got {value!r}")
    if args.patience is not None and args.validation_fraction is None:
        raise UsageError("--patience needs --validation-fraction (early stopping watches the validation loss)")
    cls = estimators.DNNClassifier if args.classify else estimators.DNNRegressor
    early = args.validation_fraction is not None
    return cls(hidden_units=args.hidden, activation=args.activation, optimizer=args.optimizer,
               learning_rate=args.learning_rate, batch_size=args.batch_size, epochs=args.epochs,
               dropout=args.dropout, batch_norm=args.batch_norm, clip_norm=args.clip_norm,
               early_stopping=early, validation_fraction=args.validation_fraction if early else 0.1,
               patience=10 if args.patience is None else args.patience, random_state=args.seed,
               verbose=(0 if args.quiet else 1) if verbose is None else verbose, callbacks=callbacks)


def _scaler(name):
    from fastnn import preprocessing
    return {"standard": preprocessing.StandardScaler, "minmax": preprocessing.MinMaxScaler,
            "log": preprocessing.LogScaler, "robust": preprocessing.RobustScaler}[name]()


def _read(path, *, categorical_hint=False, **kw):
    """read_csv, its errors as one line (``_csv_error``)."""
    from fastnn._csv import CSVError, read_csv
    try:
        return read_csv(path, **kw)
    except CSVError as exc:
        raise _csv_error(exc, kw, categorical_hint) from None


def _csv_error(exc, kw, categorical_hint=False) -> UsageError:
    """A CSVError of ``read_csv(**kw)`` as a usage error, with a hint where one helps:
    --classify for a word in the target; with ``categorical_hint``, --categorical for a
    word in a feature."""
    hint = ""
    if exc.column is not None and exc.column == kw.get("target") and not kw.get("labels"):
        hint = " (for class labels use --classify)"
    elif categorical_hint and exc.problem == "not a number" and exc.column in kw.get("columns", ()):
        hint = f" (if {exc.column!r} holds categories, --categorical {exc.column} one-hot encodes it)"
    return UsageError(f"{exc}{hint}")


def _read_training_data(args, features, forced):
    """(X, y, features, target, categorical) of --target, the ``features`` and the
    categorical columns: the ``forced`` ones (--categorical COL,...) and, unless
    --categorical none, the text columns. A file of numbers is read once, as before; the
    text columns are looked for only when a feature read as numbers has a bad cell."""
    from fastnn._csv import CSVError, read_csv, text_columns
    kw = dict(target=args.target, columns=features, labels=args.classify, delimiter=args.delimiter)
    categorical = forced
    if args.categorical != "none":
        try:
            return (*read_csv(args.data, text=forced, **kw), forced)
        except CSVError as exc:  # a word, or a gap, in a feature read as numbers: a text column?
            if exc.problem is None or exc.column not in features:
                raise _csv_error(exc, kw) from None
            try:
                text = set(text_columns(args.data, features, delimiter=args.delimiter)) | set(forced)
            except CSVError as error:
                raise UsageError(str(error)) from None
            categorical = [c for c in features if c in text]
    return (*_read(args.data, text=categorical, categorical_hint=args.categorical != "none", **kw), categorical)


def _columns(args) -> tuple[list[str], list[str]]:
    """The feature columns (--features, or every column but the target and --drop) and the
    ones --categorical COL,... names, each checked against the file's header: one line
    naming the option."""
    from fastnn import _csv
    try:
        names = _csv.header(args.data, delimiter=args.delimiter)
        for option, asked in (("the target", [args.target]), ("named by --features", args.features or []),
                              ("named by --drop", args.drop or []), ("named by --categorical", args.categorical)):
            absent = [c for c in asked if c not in names] if isinstance(asked, list) else []
            if absent:
                raise _csv.no_columns(args.data, names, absent, option, args.delimiter)
        for option, asked in (("--features", args.features or []), ("--drop", args.drop or [])):
            if args.target in asked:
                raise UsageError(f"{option} names the target {args.target!r}, which is never a feature")
        features = args.features or [n for n in names if n != args.target and n not in (args.drop or [])]
        if not features:
            raise UsageError(f"--drop leaves no feature columns in {args.data}: its columns are "
                             f"{_csv.listing(names)}")
        forced = args.categorical if isinstance(args.categorical, list) else []
        stray = [c for c in forced if c not in features]
        if stray:
            raise UsageError(f"--categorical names {_csv.listing(stray)}, not among the feature columns (the target, "
                             "or left out by --features or --drop)")
    except _csv.CSVError as exc:
        raise UsageError(str(exc)) from None
    return features, forced


def _check_categories(X, features, categorical):
    """Refuse what one-hot encoding cannot do well or cannot save, before training."""
    from fastnn import _categorical
    problem = _categorical.too_many_categories(X, features, categorical)
    if problem:
        raise UsageError(problem)
    try:
        import skops.io  # noqa: F401 (the one-hot encoder is saved through skops)
    except ImportError:
        raise UsageError(f"one-hot encoding {_listing(categorical)} needs skops to save the model: pip install "
                         "'fastnn[skops]' (or --drop those columns, or --categorical none)") from None


def _remove_outliers(args, X, y, features, categorical):
    """The rows of X and y that --remove-outliers keeps, judged on the numeric features."""
    from fastnn.preprocessing import OutlierRemover
    numeric = [j for j, name in enumerate(features) if name not in categorical]
    if not numeric:
        raise UsageError("--remove-outliers judges the numeric features, and every feature is categorical")
    values = X[:, numeric].astype(np.float64)
    keep = OutlierRemover(method=args.remove_outliers).fit(values).mask(values)
    print(f"removed {X.shape[0] - int(keep.sum())} of {X.shape[0]} rows as outliers ({args.remove_outliers})")
    X, y = X[keep], y[keep]
    _check_rows(X.shape[0], f"after removing outliers, {args.data}")
    return X, y


def _pipeline(args, est, features, categorical):
    """The unfitted model: the scaler of --scale and the estimator, with the one-hot
    encoding of the categorical columns in front when there are any."""
    from sklearn.pipeline import Pipeline  # here: importing scikit-learn takes a second
    from fastnn import _categorical
    scaler = None if args.scale == "none" else _scaler(args.scale)
    if categorical:
        return _categorical.build(features, categorical, scaler, est)
    return Pipeline(([] if scaler is None else [(args.scale + "_scaler", scaler)]) + [("network", est)])


def _describe(pipeline, features) -> str:
    """The steps of a model, a ColumnTransformer with what it does to which columns."""
    from sklearn.compose import ColumnTransformer
    parts = []
    for _, step in pipeline.steps:
        if not isinstance(step, ColumnTransformer):
            parts.append(type(step).__name__)
            continue
        inner = [f"{t if isinstance(t, str) else type(t).__name__} {_listing([features[j] for j in cols])}"
                 for _, t, cols in getattr(step, "transformers_", step.transformers)
                 if len(cols) and not (isinstance(t, str) and t == "drop")]
        parts.append(f"ColumnTransformer({'; '.join(inner)})")
    return " -> ".join(parts)


def _tensorboard(log_dir):
    try:
        from fastnn.callbacks import TensorBoard
        return TensorBoard(log_dir)
    except ImportError as exc:
        raise UsageError(f"--tensorboard is not available: {exc}") from None


def _train_outputs(args) -> str:
    """Check --out and --tensorboard before any work (reading, training); the model path."""
    out = check_output_file(args.out, what="--out", default_name="model.npz", inputs=[("the data", args.data)])
    if args.tensorboard is not None:
        check_output_folder(args.tensorboard, what="--tensorboard")
        if os.path.abspath(args.tensorboard) == os.path.abspath(out):
            raise UsageError(f"--tensorboard {args.tensorboard!r} and --out {args.out!r} are the same path: the logs "
                             "are a folder, the model a file; choose two names")
    return out


def _check_rows(n: int, where: str) -> None:
    if n < 2:
        raise UsageError(f"{where}: {n} row{'' if n == 1 else 's'} to train on; training, and the R^2 or accuracy "
                         "reported on the training data, need at least 2 rows")


def _check_classes(y, target):
    """--classify on a target that is not made of classes: refused with the way out."""
    labels = np.unique(y)
    try:
        values = labels.astype(np.float64)
    except ValueError:  # text labels
        values = None
    if values is not None and not np.all(np.isfinite(values) & (values == np.round(values))):
        fractional = [str(v) for v, f in zip(labels, values) if f != np.round(f)][:3]
        raise UsageError(f"--classify: the target {target!r} holds numbers that are not whole ({', '.join(fractional)}"
                         f"{', ...' if len(labels) > 3 else ''}; {len(labels)} distinct values): it looks continuous. "
                         "Drop --classify to train a regressor, or make classes of it first")
    if len(labels) > max(2, len(y) // 2):
        raise UsageError(f"--classify: the target {target!r} has {len(labels)} distinct labels in {len(y)} rows, more "
                         "than half the rows: too few examples per class to learn. Drop --classify if it is a "
                         "quantity, or group the labels into fewer classes")


def _train(args, command: list[str]):
    """Train as ``args`` say, save, print the report; returns (pipeline, X, y).
    Raises UsageError, or _Diverged after printing the findings."""
    out = _train_outputs(args)
    X, y, features, target, categorical = _read_training_data(args, *_columns(args))
    _check_rows(X.shape[0], args.data)
    if categorical:
        _check_categories(X, features, categorical)
    if args.classify:
        _check_classes(y, target)
    from fastnn import _categorical, persistence
    task = "classification" if args.classify else "regression"
    plural = "s" if len(features) > 1 else ""
    onehot = f"; one-hot encoding {_listing(categorical)}" if categorical else ""
    print(f"read {args.data}: {X.shape[0]} rows, {len(features)} feature{plural} ({_listing(features)}), "
          f"target {target!r} ({task}){onehot}")
    callbacks = None if args.tensorboard is None else [_tensorboard(args.tensorboard)]
    est = _estimator(args, callbacks)
    if args.remove_outliers:
        X, y = _remove_outliers(args, X, y, features, categorical)
    pipeline = _pipeline(args, est, features, categorical)
    print(f"training {_describe(pipeline, features)} "
          f"(hidden {','.join(map(str, args.hidden))}, {args.activation}, {args.optimizer} at {args.learning_rate:g}) "
          f"for {'up to ' if est.early_stopping else ''}{args.epochs} epochs", flush=True)
    try:
        pipeline.fit(X, y)
    except fastnn.TrainingDivergedError as exc:
        inputs = _categorical.encoded_names(pipeline, features)
        print(f"fastnn: error: {_with_names(str(exc), inputs)}", file=sys.stderr)
        _print_findings(est.diagnose(), inputs, file=sys.stderr)
        print("nothing was saved", file=sys.stderr)
        raise _Diverged from None
    except ValueError as exc:  # the data do not suit the options (negative values for --scale log, one class)
        # the scaler's column j is the j-th numeric feature
        raise UsageError(_with_names(str(exc), [f for f in features if f not in categorical])) from None
    # save first, report after: a reader that leaves early (`| head`) must not cost the model
    metadata = {"features": features, "categorical": categorical, "target": target, "task": task,
                "fastnn_version": fastnn.__version__, "command": "fastnn " + shlex.join(command),
                "rows": int(X.shape[0]), "scale": args.scale}
    persistence.save_pipeline(pipeline, out, metadata=metadata)
    if not args.quiet:
        print("\n".join(_chart(est.history_["loss"], "training loss")))
    _print_metrics(pipeline, X, y)
    _print_findings(est.diagnose(), _categorical.encoded_names(pipeline, features))
    print(f"saved the model to {out}")
    if args.tensorboard:
        print(f"TensorBoard logs in {args.tensorboard}: tensorboard --logdir {shlex.quote(args.tensorboard)}")
    return pipeline, X, y


def _listing(names, limit=8):
    from fastnn._csv import listing
    return listing(names, limit).replace("'", "")


def _print_metrics(pipeline, X, y):
    est = pipeline[-1]
    h = est.history_
    loss = "cross-entropy" if hasattr(est, "classes_") else est.loss
    stopped = f" (early stopping after {est.n_iter_})" if est.n_iter_ < est.epochs else ""
    print(f"epochs trained: {est.n_iter_}{stopped}")
    print(f"training loss ({loss}, last epoch): {h['loss'][-1]:.6g}")
    if hasattr(est, "classes_"):
        print(f"accuracy on the training data: {pipeline.score(X, y):.4f}")
    else:
        print(f"R^2 on the training data: {pipeline.score(X, y):.4f}")
    val = np.asarray(h["val_loss"], dtype=np.float64)
    if np.isfinite(val).any():
        best = int(np.nanargmin(val))
        print(f"validation loss: {val[best]:.6g} at epoch {best + 1} (those weights are kept), "
              f"last {val[-1]:.6g}")


def _print_findings(findings, names, file=None):
    file = sys.stdout if file is None else file
    if not findings:
        print("diagnose(): no problems found", file=file)
        return
    print(f"diagnose() found {len(findings)} problem{'s' if len(findings) > 1 else ''}:", file=file)
    for finding in findings:
        first, *rest = _with_names(str(finding), names).splitlines()
        print("\n".join([f"  - {first}"] + [f"    {line.strip()}" for line in rest]), file=file)


def _with_names(text, names):
    """The column names for the indices in fastnn's messages: 'feature 3' -> "'salt_g'",
    'column 3' -> "column 'salt_g'"."""
    def name(m):
        j = int(m.group(2))
        if j >= len(names):
            return m.group(0)
        return repr(names[j]) if m.group(1) == "feature" else f"column {names[j]!r}"
    return re.sub(r"\b(feature|column) (\d+)\b", name, text)


def _chart(values, label, height=8, width=60) -> list[str]:
    """A text chart of ``values`` per epoch (log scale when they span over 10x)."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return []
    v = np.where(ok, v, np.nan)
    log = np.nanmax(v) / np.nanmin(v) > 10
    y = np.log10(v) if log else v
    edges = np.linspace(0, len(y), min(width, len(y)) + 1).astype(int)
    cols = [float(np.nanmean(y[a:b])) if np.isfinite(y[a:b]).any() else np.nan for a, b in zip(edges[:-1], edges[1:])]
    lo, hi = np.nanmin(cols), np.nanmax(cols)
    span = hi - lo if hi > lo else 1.0
    rows = [[" "] * len(cols) for _ in range(height)]
    for x, c in enumerate(cols):
        if np.isfinite(c):
            rows[height - 1 - int(round((c - lo) / span * (height - 1)))][x] = "*"
    top, bottom = (10 ** hi, 10 ** lo) if log else (hi, lo)
    labels = [f"{top:.3g}"] + [""] * (height - 2) + [f"{bottom:.3g}"]
    pad = max(len(s) for s in labels)
    lines = [f"{label} per epoch{' (log scale)' if log else ''}:"]
    lines += [f"{lab:>{pad}} |{''.join(row)}".rstrip() for lab, row in zip(labels, rows)]
    lines.append(" " * pad + " +" + "-" * len(cols))
    lines.append(" " * pad + f"  epoch 1{str(len(v)).rjust(len(cols) - 7)}")
    return lines


def _train_command(args):
    try:
        _train(args, args.argv)
    except _Diverged:
        return 1
    return 0


# ----------------------------------------------------------------------------- predict, diagnose


def _load(path):
    """(model, estimator, metadata) of a model file: a pipeline of 'fastnn train', or a
    saved DNNRegressor/DNNClassifier (metadata empty)."""
    from fastnn import persistence
    from fastnn.estimators import DNNClassifier, DNNRegressor
    from sklearn.pipeline import Pipeline
    try:
        model = persistence.load(path)
    except fastnn.ModelFormatError as exc:
        raise UsageError(str(exc)) from None
    if isinstance(model, Pipeline):
        return model, model[-1], dict(getattr(model, "fastnn_metadata_", {}))
    if isinstance(model, (DNNRegressor, DNNClassifier)):
        return model, model, {}
    raise UsageError(f"{path} holds a {type(model).__name__}, not a model of 'fastnn train'")


def _feature_names(path, model, metadata) -> tuple[list[str], list[str]]:
    """The feature columns a model reads, and the categorical (text) ones among them."""
    names = metadata.get("features")
    if names is None and hasattr(model, "feature_names_in_"):
        names = [str(n) for n in model.feature_names_in_]
    width = model.n_features_in_
    if not (isinstance(names, list) and len(names) == width and all(isinstance(n, str) for n in names)):
        raise UsageError(f"{path} does not name its {width} feature columns: use a model saved by "
                         "'fastnn train' (or fastnn.persistence.save_pipeline with metadata={'features': [...]})")
    categorical = metadata.get("categorical", [])
    if not (isinstance(categorical, list) and all(isinstance(c, str) and c in names for c in categorical)):
        raise UsageError(f"{path}: the metadata's 'categorical' must list feature columns, got {categorical!r}")
    return names, categorical


def _predict_command(args):
    out = None
    if args.out not in (None, "-"):  # before loading anything ("-": standard output)
        out = check_output_file(args.out, what="--out", default_name="predictions.csv",
                                inputs=[("the model", args.model), ("the data", args.data)])
    model, est, metadata = _load(args.model)
    features, categorical = _feature_names(args.model, model, metadata)
    X, _, _, _ = _read(args.data, columns=features, text=categorical, delimiter=args.delimiter)
    if categorical:
        from fastnn import _categorical
        unseen = _categorical.unseen(model, X, features)
        if unseen:
            warnings.warn(_categorical.unseen_message(unseen, X.shape[0]), stacklevel=1)
    try:
        pred = model.predict(X)
        proba = model.predict_proba(X) if hasattr(est, "classes_") else None
    except ValueError as exc:  # values the model cannot take (beyond float32, negative for a log scaler)
        raise UsageError(_with_names(str(exc), features)) from None
    name = metadata.get("target") or "prediction"
    header = [name] if pred.ndim == 1 else [f"{name}_{j}" for j in range(pred.shape[1])]
    columns = [pred.reshape(len(pred), -1)]
    if proba is not None:
        header += [f"proba_{c}" for c in est.classes_]
        columns.append(proba)
    if out is None:
        _write_predictions(sys.stdout, header, columns)
        return 1 if getattr(sys.stdout, "broken", False) else 0
    atomic_write_text(out, lambda f: _write_predictions(f, header, columns))
    print(f"wrote {len(pred)} predictions to {out}")
    return 0


def _write_predictions(stream, header, columns):
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    for row in zip(*(c.tolist() for c in columns)):
        writer.writerow([repr(v) if isinstance(v, float) else v for part in row for v in part])
        if getattr(stream, "broken", False):  # the reader of standard output left
            return


def _diagnose_command(args):
    from sklearn.pipeline import Pipeline
    from fastnn import _categorical
    model, est, metadata = _load(args.model)
    task = "classification" if hasattr(est, "classes_") else "regression"
    names = metadata.get("features") or [f"x{j}" for j in range(model.n_features_in_)]
    pipeline = model if model is not est else Pipeline([("network", est)])
    print(f"model: {args.model}" + (f" (fastnn {metadata['fastnn_version']})" if "fastnn_version" in metadata else ""))
    if "command" in metadata:
        print(f"trained by: {metadata['command']}")
    target = f", target {metadata['target']!r}" if metadata.get("target") else ""
    classes = f", classes {', '.join(map(str, est.classes_))}" if task == "classification" else ""
    print(f"task: {task}{target}{classes}")
    print(f"features ({len(names)}): {', '.join(map(str, names))}")
    inputs = _categorical.encoded_names(pipeline, names)
    if inputs != names:
        print(f"network inputs ({len(inputs)}): {_listing(inputs, 20)}")
    print(f"pipeline: {_describe(pipeline, names)}")
    print("layers: " + " -> ".join(repr(layer) for layer in est.model_.layers))
    optimizer = est.optimizer if isinstance(est.optimizer, str) else type(est.optimizer).__name__
    print(f"optimizer: {optimizer}, learning rate {est.optimizer_.lr:g}, batch size {est.batch_size}")
    h = est.history_
    print(f"epochs trained: {est.n_iter_}")
    if h["loss"]:
        print(f"final loss: {h['loss'][-1]:.6g}")
        if np.isfinite(h["val_loss"][-1]):
            print(f"final val_loss: {h['val_loss'][-1]:.6g} (best {est.best_loss_:.6g})")
    _print_findings(est.diagnose(), inputs)
    return 0


# ----------------------------------------------------------------------------- export


def _add_export_command(sub):
    export = sub.add_parser("export", help="write a saved model as an ONNX file",
                            description="Convert a model file (of 'fastnn train' or fastnn.save: a pipeline, an "
                                        "estimator or a Sequential) to ONNX for ONNX Runtime. The graph takes one "
                                        "input 'X' (or one per column for a pipeline with a ColumnTransformer) "
                                        "and outputs 'variable' (regression) or 'label' and 'probabilities' "
                                        "(classification). Needs the onnx package: pip install 'fastnn[onnx]'.")
    export.add_argument("model", metavar="MODEL", help="a model file of 'fastnn train' or fastnn.save")
    export.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write (replaced atomically)")
    export.add_argument("--dtype", choices=("float32", "float64"),
                        help="element type of the input and outputs (default: the network's, float32)")
    export.set_defaults(run=_export_command)


def _export_command(args):
    out = check_output_file(args.out, what="the output", default_name="model.onnx", inputs=[("the model", args.model)])
    try:
        from fastnn.onnx_export import export_onnx
        import onnx  # noqa: F401 (fail here, before loading the model)
    except ImportError as exc:
        raise UsageError(f"export needs the onnx package: pip install 'fastnn[onnx]' ({exc})") from None
    from fastnn import persistence
    try:
        model = persistence.load(args.model)
    except fastnn.ModelFormatError as exc:
        raise UsageError(str(exc)) from None
    try:
        export_onnx(model, out, dtype=args.dtype)
    except (TypeError, ValueError, ImportError) as exc:
        raise UsageError(f"cannot export {args.model}: {exc}") from None
    print(f"wrote the {type(model).__name__} to {out} (ONNX)")
    return 0


# ----------------------------------------------------------------------------- demo, bench


def _demo_command(args):
    from fastnn import _demo
    check_output_folder(args.dir, what="--dir")
    os.makedirs(args.dir, exist_ok=True)
    data, model = os.path.join(args.dir, "soup.csv"), os.path.join(args.dir, "model.npz")
    check_output_file(model, what="the demo's model", default_name="model.npz")  # before writing the data
    _demo.write_soup(data)
    print(f"wrote {data}: 2000 pots of soup. Chicken stock is measured in litres, vegetable stock in millilitres, "
          "salt in grams and cooking time in minutes; the target is their tastiness.\n")
    argv = ["train", data, "--target", _demo.TARGET, "--hidden", "64,32", "--optimizer", "adam",
            "--learning-rate", "0.003", "--epochs", str(args.epochs), "--scale", "standard", "--seed", "0",
            "--out", model] + (["--quiet"] if args.quiet else [])
    train_args = _parser().parse_args(argv)
    try:
        pipeline, X, y = _train(train_args, argv)
    except _Diverged:
        return 1
    print(f"\nThe lesson: the same network WITHOUT feature scaling ({args.epochs} epochs):")
    est = _estimator(train_args, verbose=0)
    try:
        est.fit(X, y)
    except fastnn.TrainingDivergedError as exc:
        print(f"  training diverged: {exc}")
    else:
        print(f"  R^2 on the training data: {est.score(X, y):.4f} (with scaling: {pipeline.score(X, y):.4f})")
    findings = est.diagnose()
    scale = [f for f in findings if f.mode == "features on very different scales"]
    _print_findings(scale or findings, list(_demo.FEATURES))
    others = [f.mode for f in findings if f not in scale]
    if scale and others:
        print(f"  (and {len(others)} more: {'; '.join(others)}; 'fastnn train ... --scale none' shows all)")
    print("\nNext, try:")
    for line in (f"fastnn predict {model} {data} --out predictions.csv",
                 f"fastnn diagnose {model}",
                 f"fastnn train {data} --target {_demo.TARGET} --scale none --optimizer adam --learning-rate 0.003",
                 f"fastnn train {data} --target {_demo.TARGET} --tensorboard runs/soup  (then: tensorboard "
                 "--logdir runs)"):
        print("  " + line)
    return 0


def _bench_command(args):
    from fastnn import _quickbench
    _quickbench.run(args.threads, budget=args.budget, json_path=args.json)
    return 0


# ----------------------------------------------------------------------------- main


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {os.fspath(exc.filename)!r}"
    return str(exc)


class _Stdout:
    """Standard output that outlives its reader: when ``fastnn train ... | head -1`` closes
    the pipe, the rest of the output is dropped (``broken`` turns True) and the command
    carries on, so the model is still saved. Everything else is the real stream's."""

    def __init__(self, stream):
        self.stream = stream
        self.broken = False

    def write(self, text):
        if not self.broken:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._lost()
        return len(text)

    def flush(self):
        if not self.broken:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._lost()

    def _lost(self):
        self.broken = True
        try:  # Python's flush at exit would fail again: point the descriptor at /dev/null
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):  # no descriptor (a captured stream)
            pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """A library's warning as one note, without the source line Python shows."""
    text = " ".join(str(message).split())
    print(f"fastnn: warning: {text}", file=sys.stderr)


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args_list = sys.argv[1:] if argv is None else [str(a) for a in argv]
    stdout = sys.stdout = _Stdout(sys.stdout)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _one_line_warning
            return _run(args_list)
    finally:
        sys.stdout = stdout.stream


def _run(args_list) -> int:
    try:
        args = _parser().parse_args(args_list)
        args.argv = args_list
        if args.command is None:
            fastnn.show_config()
            print(f"\ncommands: {', '.join(COMMANDS)} (fastnn COMMAND --help; start with 'fastnn demo')")
            return 0
        return args.run(args)
    except (UsageError, OutputPathError) as exc:
        print(f"fastnn: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # a model or copy too large, refused before allocating
        print(f"fastnn: error: out of memory: {' '.join(str(exc).split()) or 'an allocation failed'}",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # a pipe other than standard output (handled by _Stdout)
        return 1
    except OSError as exc:  # a missing input file, an unwritable output directory
        print(f"fastnn: error: {_describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
