"""The command line never loses a file and never fails silently (issue 15): output paths are
checked before any work, every file is written atomically, a closed pipe does not cost the
model, degenerate data and options are one-line errors, and CSV variants are read.

Every data-loss case compares the old file's bytes after the refused or interrupted command.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnn
from fastnn import cli
from fastnn._files import OutputPathError

from support import run_cli, subprocess_env, write_csv

TRAIN = ("--epochs", 2, "--hidden", "8", "--quiet")


def assert_refused(result, pattern):
    """Exit status 2, one line on stderr matching ``pattern``, and no training started."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("fastnn: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert re.search(pattern, result.stderr), result.stderr
    assert "training" not in result.stdout, result.stdout
    assert ".tmp" not in result.stderr  # messages name the user's path, never a temp file


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with data.csv (a, b -> y) and model.npz trained on it."""
    d = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 2))
    write_csv(d / "data.csv", ["a", "b", "y"], np.column_stack([X, X @ [1.0, -1.0]]).tolist())
    result = run_cli("train", "data.csv", "--target", "y", *TRAIN, "--out", "model.npz", cwd=d)
    assert result.returncode == 0, result.stderr
    return d


@pytest.fixture
def snapshot(work):
    """The bytes of the folder's files, to compare after a command."""
    def take():
        return {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
    return take


# ----------------------------------------------------------------------------- outputs that are inputs


@pytest.mark.parametrize("argv, pattern", [
    (("predict", "model.npz", "data.csv", "--out", "model.npz"), r"--out 'model.npz' is the same file as the model"),
    (("predict", "model.npz", "data.csv", "--out", "data.csv"), r"--out 'data.csv' is the same file as the data"),
    (("train", "data.csv", "--target", "y", *TRAIN, "--out", "data.csv"), "same file as the data 'data.csv'"),
    (("train", "data.csv", "--target", "y", *TRAIN, "--out", "./sub/../data.csv"), "same file as the data"),
])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(work, snapshot, argv, pattern):
    (work / "sub").mkdir(exist_ok=True)
    before = snapshot()
    assert_refused(run_cli(*argv, cwd=work), pattern)
    assert snapshot() == before


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_links_to_an_input_are_the_same_file(work, snapshot, link):
    alias = work / f"alias-{link}.csv"
    if alias.exists() or alias.is_symlink():
        alias.unlink()
    (os.link if link == "hard" else os.symlink)(work / "data.csv", alias)
    before = snapshot()
    assert_refused(run_cli("train", "data.csv", "--target", "y", *TRAIN, "--out", alias.name, cwd=work),
                   "same file as the data")
    assert snapshot() == before


# ----------------------------------------------------------------------------- outputs that are not regular files


def test_a_fifo_is_refused_not_replaced(work, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_refused(run_cli("predict", "model.npz", "data.csv", "--out", fifo, cwd=work), r"is a named pipe \(FIFO\)")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_character_device_is_refused_not_replaced(work, tmp_path):
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own, inside tmp_path
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    result = run_cli("train", "data.csv", "--target", "y", *TRAIN, "--out", node, cwd=work)
    assert_refused(result, "is a character device, not a regular file")
    assert stat.S_ISCHR(os.stat(node).st_mode)  # on 60c4ab6 it became a regular file
    with pytest.raises(OutputPathError, match="character device"):
        fastnn.save(fastnn.load(work / "model.npz"), node)  # the library's writer refuses it too


def test_a_directory_without_a_slash_is_refused(work, tmp_path):
    assert_refused(run_cli("train", "data.csv", "--target", "y", *TRAIN, "--out", tmp_path, cwd=work),
                   r"is a directory: name a file, such as .*model\.npz")


def test_a_trailing_slash_means_a_folder(work, tmp_path):
    result = run_cli("train", "data.csv", "--target", "y", *TRAIN, "--out", f"{tmp_path}/", cwd=work)
    assert result.returncode == 0, result.stderr
    assert fastnn.load(tmp_path / "model.npz") is not None  # on 60c4ab6: a FILE named like the folder
    result = run_cli("predict", "model.npz", "data.csv", "--out", f"{tmp_path}/", cwd=work)
    assert result.returncode == 0 and (tmp_path / "predictions.csv").read_text().startswith("y\n")
    assert_refused(run_cli("train", "data.csv", "--target", "y", *TRAIN, "--out", f"{tmp_path}/new/", cwd=work),
                   r"ends with a slash, so it names a folder, but there is no folder")
    assert not (tmp_path / "new").exists()


def _without_dac_override(argv):
    """``argv`` run so that file permissions apply: as root, without the capability that
    bypasses them (setpriv); otherwise as is."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--", *argv]


def test_a_read_only_folder_is_refused_before_training(work, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    argv = _without_dac_override([sys.executable, "-m", "fastnn", "train", "data.csv", "--target", "y", *map(str, TRAIN),
                                  "--out", str(locked / "m.npz")])
    result = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=120, env=subprocess_env())
    try:
        assert_refused(result, rf"cannot write --out '{locked}/m.npz': the folder '{locked}' is not writable")
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o755)


def test_tensorboard_must_be_a_folder(work, snapshot):
    before = snapshot()
    assert_refused(run_cli("train", "data.csv", "--target", "y", *TRAIN, "--tensorboard", "data.csv", "--out",
                           "tb.npz", cwd=work), "--tensorboard 'data.csv' is a regular file, not a folder")
    assert snapshot() == before


def test_demo_dir_must_be_a_folder(work, snapshot):
    before = snapshot()
    assert_refused(run_cli("demo", "--dir", "data.csv", "--epochs", 1, "--quiet", cwd=work), "not a folder")
    assert snapshot() == before


# ----------------------------------------------------------------------------- interrupted and closed


def test_ctrl_c_while_writing_predictions_keeps_the_old_file(tmp_path):
    rows = 400_000
    rng = np.random.default_rng(1)
    X = rng.standard_normal((rows, 2))
    np.savetxt(tmp_path / "big.csv", np.column_stack([X, X[:, 0]]), delimiter=",", header="a,b,y", comments="",
               fmt="%.6f")
    assert run_cli("train", "big.csv", "--target", "y", *TRAIN, "--batch-size", 4096, "--out", "m.npz",
                   cwd=tmp_path, timeout=300).returncode == 0
    old = b"y\nthe old predictions, which must survive\n"
    (tmp_path / "old.csv").write_bytes(old)
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "predict", "m.npz", "big.csv", "--out", "old.csv"],
                            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # interrupt once the write has begun
        temps = [n for n in os.listdir(tmp_path) if n.startswith(".old.csv.") and n.endswith(".tmp")]
        if temps and os.path.getsize(tmp_path / temps[0]) > 0:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.005)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the predictions were written before the interrupt arrived (a very fast machine)")
    assert proc.returncode == 130 and "fastnn: interrupted" in err, (proc.returncode, err)
    assert (tmp_path / "old.csv").read_bytes() == old  # on 60c4ab6 it was cut short
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_a_closed_pipe_does_not_lose_the_model(work, tmp_path):
    with subprocess.Popen([sys.executable, "-m", "fastnn", "train", "data.csv", "--target", "y", "--epochs", "3",
                           "--hidden", "8", "--out", str(tmp_path / "piped.npz")], cwd=work, env=subprocess_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        first = proc.stdout.readline()  # `fastnn train ... | head -1`
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
    assert first.startswith(b"read data.csv")
    assert proc.returncode == 0, err  # on 60c4ab6: exit 1 and no model
    assert "Traceback" not in err
    est = fastnn.load(tmp_path / "piped.npz")
    assert est.predict(np.zeros((1, 2))).shape == (1,)


def test_predictions_to_a_closed_pipe_stop_quietly(work, tmp_path):
    rows = np.random.default_rng(2).standard_normal((50_000, 2))  # more output than a pipe buffers
    np.savetxt(tmp_path / "many.csv", rows, delimiter=",", header="a,b", comments="")
    with subprocess.Popen([sys.executable, "-m", "fastnn", "predict", str(work / "model.npz"), "many.csv"],
                          cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 1 and err == ""


# ----------------------------------------------------------------------------- degenerate training in the CLI


def test_batch_norm_with_batch_size_1_is_refused_and_nothing_saved(work):
    result = run_cli("train", "data.csv", "--target", "y", *TRAIN, "--batch-norm", "--batch-size", 1, "--out",
                     "bn.npz", cwd=work)
    assert result.returncode == 2 and "batch_size >= 2" in result.stderr, result.stderr
    assert not (work / "bn.npz").exists()


def test_values_outside_float32_are_refused_naming_the_column(tmp_path):
    rows = [[1.0, 2.0, 3.0], [2.0, 5e39, 1.0], [3.0, 1.0, 2.0], [4.0, 2.0, 0.5]]
    write_csv(tmp_path / "huge.csv", ["salt", "stock", "y"], rows)
    result = run_cli("train", "huge.csv", "--target", "y", *TRAIN, "--scale", "none", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "column 'stock' reaches 5e+39" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "model.npz").exists()


def test_predict_refuses_values_outside_float32(work, tmp_path):
    write_csv(tmp_path / "new.csv", ["a", "b"], [[0.0, 1.0], [1e39, 0.0]])
    result = run_cli("predict", work / "model.npz", "new.csv", cwd=tmp_path)
    assert result.returncode == 2 and "float32" in result.stderr and "'a'" in result.stderr, result.stderr
    assert result.stdout == ""  # no nan predictions with exit status 0


def test_one_row_is_a_clear_error(tmp_path):
    write_csv(tmp_path / "one.csv", ["a", "y"], [[1.0, 2.0]])
    result = run_cli("train", "one.csv", "--target", "y", *TRAIN, cwd=tmp_path)
    assert result.returncode == 2 and "1 row to train on" in result.stderr and "at least 2" in result.stderr
    assert "Warning" not in result.stderr


def test_classify_refuses_a_continuous_target(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))
    write_csv(tmp_path / "cont.csv", ["a", "b", "y"], np.column_stack([X, X[:, 0] * 3.7]).tolist())
    result = run_cli("train", "cont.csv", "--target", "y", "--classify", *TRAIN, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "looks continuous" in result.stderr and "Drop --classify" in result.stderr
    assert "UserWarning" not in result.stderr
    ids = [[float(i % 7), float(i)] for i in range(100)]  # whole numbers, but one class per row
    write_csv(tmp_path / "ids.csv", ["a", "id"], ids)
    result = run_cli("train", "ids.csv", "--target", "id", "--classify", *TRAIN, cwd=tmp_path)
    assert result.returncode == 2 and "100 distinct labels in 100 rows" in result.stderr, result.stderr


def test_a_model_too_large_for_memory_is_one_line(work):
    result = run_cli("train", "data.csv", "--target", "y", "--hidden", "1000000000", "--epochs", 1, "--out",
                     "huge.npz", cwd=work)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("fastnn: error: out of memory:") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and not (work / "huge.npz").exists()


def test_library_warnings_become_one_line_notes(monkeypatch, capsys):
    import warnings

    def warn(args):
        warnings.warn("overflow encountered in cast\n  with a second line", RuntimeWarning)
        return 0

    monkeypatch.setattr(cli, "_bench_command", warn)
    parser = cli._parser
    monkeypatch.setattr(cli, "_parser", lambda: _with_bench(parser(), warn))
    assert cli.main(["bench"]) == 0
    err = capsys.readouterr().err
    assert err == "fastnn: warning: overflow encountered in cast with a second line\n"


def _with_bench(parser, run):
    parser.set_defaults(run=run)
    for action in parser._subparsers._group_actions:
        action.choices["bench"].set_defaults(run=run)
    return parser


# ----------------------------------------------------------------------------- CSV variants


def _compressed(path, opener):
    with open(path, "rb") as src, opener(str(path) + {gzip.open: ".gz", bz2.open: ".bz2", lzma.open: ".xz"}[opener],
                                         "wb") as dst:
        dst.write(src.read())


@pytest.mark.parametrize("variant", [";", "\t", "gz", "bz2", "xz"])
def test_semicolon_tab_and_compressed_csv_files_train_and_predict(work, tmp_path, variant):
    text = (work / "data.csv").read_text()
    if variant in (";", "\t"):
        name = "data.txt"
        (tmp_path / name).write_text(text.replace(",", variant))
    else:
        opener = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}[variant]
        shutil.copy(work / "data.csv", tmp_path / "data.csv")
        _compressed(tmp_path / "data.csv", opener)
        name = f"data.csv.{variant}"
    result = run_cli("train", name, "--target", "y", *TRAIN, "--seed", 3, "--out", "m.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reference = run_cli("train", work / "data.csv", "--target", "y", *TRAIN, "--seed", 3, "--out", "ref.npz",
                        cwd=tmp_path)
    assert (tmp_path / "m.npz").read_bytes() != b"" and reference.returncode == 0
    same = run_cli("predict", "m.npz", name, cwd=tmp_path).stdout
    assert same == run_cli("predict", "ref.npz", work / "data.csv", cwd=tmp_path).stdout  # identical data read


def test_delimiter_option_and_the_hint_for_an_undetected_one(tmp_path):
    (tmp_path / "odd.csv").write_text("a|b|y\n1|2|3\n4|5|6\n")
    result = run_cli("train", "odd.csv", "--target", "y", *TRAIN, cwd=tmp_path)
    assert result.returncode == 2 and "has no column 'y'" in result.stderr
    (tmp_path / "semi.csv").write_text("a;b;y\n1;2;3\n4;5;6\n2;2;2\n")
    forced = run_cli("train", "semi.csv", "--target", "y", *TRAIN, "--delimiter", "comma", cwd=tmp_path)
    assert forced.returncode == 2 and "--delimiter" in forced.stderr, forced.stderr
    assert run_cli("train", "semi.csv", "--target", "y", *TRAIN, "--delimiter", "semicolon",
                   cwd=tmp_path).returncode == 0


def test_a_compressed_file_without_its_extension_says_what_is_supported(work, tmp_path):
    with open(work / "data.csv", "rb") as src, gzip.open(tmp_path / "data.csv", "wb") as dst:
        dst.write(src.read())
    result = run_cli("train", "data.csv", "--target", "y", *TRAIN, cwd=tmp_path)
    assert result.returncode == 2 and "looks gzip-compressed" in result.stderr, result.stderr
    assert "comma" in result.stderr and ".gz" in result.stderr


def test_errors_about_a_wide_csv_stay_short(tmp_path):
    header = [f"feature_{j}" for j in range(10_000)]
    write_csv(tmp_path / "wide.csv", header, [list(range(10_000))])
    result = run_cli("train", "wide.csv", "--target", "y", *TRAIN, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr) < 400, len(result.stderr)  # 69-89 KB on 60c4ab6
    assert "'feature_0'" in result.stderr and "and 9992 more" in result.stderr


def test_predict_out_dash_is_standard_output(work):
    result = run_cli("predict", "model.npz", "data.csv", "--out", "-", cwd=work)
    assert result.returncode == 0 and result.stdout.startswith("y\n") and len(result.stdout.splitlines()) == 121
    assert not (work / "-").exists()
