"""Files fastnn writes: one atomic writer, and the checks of an output path made BEFORE
any work (so a mistyped path fails in a second, not after an hour of training).

The rules, for every file fastnn writes (models, predictions, the demo's data, logs it
owns):

- It is written to a temporary file in the target's folder, flushed to disk and renamed
  over the target (``atomic_write``): a signal, a full disk or a crash at any moment leaves
  the old file or the new one, never a torn one.
- It replaces only a regular file. A directory, a character or block device (``/dev/null``),
  a FIFO or a socket is refused: renaming over a device node would destroy it.
- The command line checks its outputs up front (``check_output_file``,
  ``check_output_folder``): an output must not be the same file as one of the command's
  inputs (compared by device and inode, so hard links and symlinks count), a trailing
  slash means a folder, and the folder must exist and be writable (proved by creating and
  removing a file there). Messages name the user's path, never a temporary file.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import stat
import tempfile
import threading
from typing import Callable, Iterable

__all__ = ["AtomicFile", "OutputPathError", "atomic_write", "atomic_write_text", "check_output_file", "check_output_folder",
           "file_kind"]


class OutputPathError(ValueError):
    """An output path that fastnn refuses to write (the message says why and names it)."""


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a regular file', 'a directory', 'a character device', ... for an ``st_mode``."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def _existing_kind(path: str) -> str | None:
    """What ``path`` is (following symlinks), or None when nothing is there."""
    try:
        return file_kind(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


# ----------------------------------------------------------------------------- writing


class AtomicFile:
    """A new version of ``path``, written through ``file`` (binary) and put in place by
    ``commit()``: until then the old file is untouched, and ``discard()`` (or an error in
    ``with AtomicFile(path) as f:``) removes the new version. For writers that stream over
    time (a log written epoch by epoch) as well as for one-shot writes (``atomic_write``).

    The new version is a temporary file in the target's folder (so the rename cannot
    cross file systems), flushed and fsynced before it is renamed over the target, then
    the folder is fsynced. Through a symlink the link's target is written (as
    ``open(path, "w")`` would), not the link replaced. A replaced file keeps its permission
    bits; a new one gets ``0o666 & ~umask``.

    Raises
    ------
    FileNotFoundError
        The folder does not exist.
    OutputPathError (a ValueError)
        ``path`` exists and is not a regular file (a directory, a device such as
        ``/dev/null``, a FIFO, a socket): replacing it would destroy it.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._target = os.path.realpath(self.path)
        self._directory, self._base = os.path.split(self._target)
        if not os.path.isdir(self._directory):
            raise FileNotFoundError(errno.ENOENT, f"cannot write {self.path!r}: no such directory", self._directory)
        try:
            st = os.stat(self._target)
        except FileNotFoundError:
            self._mode = _new_file_mode()
        else:
            if not stat.S_ISREG(st.st_mode):
                raise OutputPathError(f"cannot write {self.path!r}: it is {file_kind(st.st_mode)}, not a regular "
                                      "file, and fastnn only replaces regular files")
            self._mode = stat.S_IMODE(st.st_mode)
        # the pid in the name lets a later save tell a killed save's leftover from a live one
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self._base}.{os.getpid()}.", suffix=".tmp", dir=self._directory)
        self.file = os.fdopen(fd, "wb")

    def commit(self) -> None:
        """Make the new version the file (durably); the AtomicFile is closed after."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.chmod(self._tmp, self._mode)  # mkstemp made it 0600
            os.replace(self._tmp, self._target)
        except BaseException:  # KeyboardInterrupt too: never leave a half-written temp file
            self.discard()
            raise
        _fsync_directory(self._directory)
        _remove_stale_temps(self._directory, self._base)

    def discard(self) -> None:
        """Drop the new version: the old file stays as it was."""
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)

    def __enter__(self):
        return self.file

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write(path, write: Callable) -> None:
    """Write a file through ``write(f)`` (``f``: a binary file object) atomically: on any
    error or interrupt (KeyboardInterrupt too) the old file stays intact. See
    ``AtomicFile`` for the details and the errors."""
    with AtomicFile(path) as f:
        write(f)


def _remove_stale_temps(directory: str, base: str) -> None:
    """Delete temp files that saves of ``base`` left when their process was killed (a
    SIGKILL cannot be cleaned up after): those whose pid no longer runs. A live process's
    temp file (a concurrent save) and this process's own are left alone."""
    pattern = re.compile(re.escape(f".{base}.") + r"(\d+)\..*\.tmp")
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            m = pattern.fullmatch(name)
            if not m or int(m.group(1)) == os.getpid() or _process_alive(int(m.group(1))):
                continue
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


_UMASK_LOCK = threading.Lock()


def _new_file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` would give a new file."""
    try:  # Linux shows the umask without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # elsewhere reading the umask means setting it: a restrictive value meanwhile, and a
    # lock so that two saving threads cannot restore each other's placeholder
    with _UMASK_LOCK:
        umask = os.umask(0o077)
        os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable; best effort (Windows cannot open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- checking outputs


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def _refuse_inputs(path: str, shown: str, what: str, inputs: Iterable[tuple[str, str]]) -> None:
    for input_what, input_path in inputs:
        if input_path is not None and _same_file(path, input_path):
            raise OutputPathError(f"{what} {shown!r} is the same file as {input_what} {os.fspath(input_path)!r}: "
                                  "writing it would destroy the input; choose another output name")


def _prove_writable(folder: str, shown: str, what: str) -> None:
    """Create and remove a file in ``folder``: the only test that sees read-only mounts,
    ACLs and quotas as the real write will."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastnn-write-check.", dir=folder)
    except OSError as exc:
        raise OutputPathError(f"cannot write {what} {shown!r}: the folder {folder!r} is not writable "
                              f"({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output_file(path, *, what: str, default_name: str, inputs: Iterable[tuple[str, str]] = ()) -> str:
    """Check, before any work, that a file can be written at ``path``; returns the path to
    write (``path`` itself, or ``path/default_name`` when ``path`` ends with a slash).

    ``what`` names the option in messages (``"--out"``); ``inputs`` are (what, path) pairs
    of the command's input files, which the output must not be. Raises
    ``OutputPathError`` (a ValueError) naming ``path``: a folder without a trailing slash,
    a device or other non-regular file, an input file, a read-only file, a missing or
    unwritable folder.
    """
    shown = os.fspath(path)
    if not shown:
        raise OutputPathError(f"{what} must name a file, got an empty path")
    if shown.endswith(("/", os.sep)):  # a folder: the file goes inside, under its usual name
        folder = shown.rstrip("/" + os.sep) or os.sep
        kind = _existing_kind(folder)
        if kind != "a directory":
            raise OutputPathError(f"{what} {shown!r} ends with a slash, so it names a folder, but "
                                  + (f"there is no folder {folder!r}" if kind is None else f"{folder!r} is {kind}"))
        target = os.path.join(shown, default_name)
    else:
        target = shown
    kind = _existing_kind(target)
    if kind == "a directory":
        raise OutputPathError(f"{what} {shown!r} is a directory: name a file, such as "
                              f"{os.path.join(shown, default_name)!r} (or write {shown.rstrip(os.sep) + os.sep!r})")
    if kind is not None and kind != "a regular file":
        raise OutputPathError(f"{what} {shown!r} is {kind}, not a regular file: fastnn writes a new file and renames "
                              "it into place, which would replace it; choose a regular file name")
    _refuse_inputs(target, shown, what, inputs)
    if kind is not None and not os.access(target, os.W_OK):
        raise OutputPathError(f"{what} {shown!r} is read-only: fastnn will not replace it (make it writable or choose "
                              "another name)")
    folder = os.path.dirname(os.path.realpath(target))
    if _existing_kind(folder) != "a directory":
        raise OutputPathError(f"cannot write {what} {shown!r}: there is no folder {os.path.dirname(target) or '.'!r}")
    _prove_writable(folder, shown, what)
    return target


def check_output_folder(path, *, what: str) -> str:
    """Check, before any work, that ``path`` can be a folder fastnn writes into (made
    when missing, as TensorBoard's writer does): it must be a folder or not exist, and
    its nearest existing folder must be writable. Returns ``path``."""
    shown = os.fspath(path)
    if not shown:
        raise OutputPathError(f"{what} must name a folder, got an empty path")
    probe = os.path.abspath(shown)
    while True:
        kind = _existing_kind(probe)
        if kind == "a directory":
            break
        if kind is not None:
            where = "" if probe == os.path.abspath(shown) else f" (its part {probe!r})"
            raise OutputPathError(f"{what} {shown!r}{where} is {kind}, not a folder: {what} takes a folder to "
                                  "write its files into")
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    _prove_writable(probe, shown, what)
    return shown


def atomic_write_text(path, write: Callable) -> None:
    """``atomic_write`` for text: ``write(f)`` gets a UTF-8 text file (``newline=""``, as
    the csv module wants)."""
    def write_binary(f):
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        try:
            write(text)
            text.flush()
        finally:
            text.detach()  # atomic_write flushes, syncs and closes the binary file itself

    atomic_write(path, write_binary)
