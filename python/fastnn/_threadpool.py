"""fastnn's thread setting as a threadpoolctl library, registered on ``import fastnn``.

``threadpoolctl.threadpool_info()`` then lists fastnn (``internal_api="fastnn"``), and
``threadpool_limits(n)``, ``threadpool_limits(n, user_api="openmp")``, joblib and the
scikit-learn tools built on them limit fastnn's kernels like any OpenMP library: the limit
holds for the calling thread, over any ``fastnn.set_num_threads`` setting, and is undone
when the block ends.

threadpoolctl finds ``fastnn/_core*.so`` among the loaded libraries by its file name and its
exported ``fastnn_threadpool_*`` functions (csrc/threadpool_api.cpp), and sets a limit by
calling them through ctypes on the limiting thread.
"""
from __future__ import annotations

import ctypes
import os
import threading

from threadpoolctl import LibController, register

_undo = threading.local()
_MAX_UNDO = 32


class FastnnController(LibController):
    """threadpoolctl's view of one loaded ``fastnn._core``.

    A limit is fastnn's calling-thread setting, the one the estimators' ``num_threads``
    uses. threadpoolctl reads every library's number when a block starts and, when it ends,
    sets that number back. This controller keeps a per-thread undo stack of (the number read
    at the start, the setting replaced): setting back the number on top restores the
    setting it replaced (usually none) instead of pinning the number, so after the block
    fastnn follows ``set_num_threads`` and OpenMP's default again. The number is the one
    read before the block's first limit: another OpenMP library limited in the same block
    (fastnn's default follows OpenMP's) must not change what counts as "set back". Setting
    the number fastnn already uses changes nothing.
    """

    user_api = "openmp"
    internal_api = "fastnn"
    filename_prefixes = ("_core.",)
    check_symbols = ("fastnn_threadpool_get_num_threads",)

    def _own(self) -> int:
        return int(self.dynlib.fastnn_threadpool_get_calling_thread_num_threads())

    def _set_own(self, n: int) -> None:
        self.dynlib.fastnn_threadpool_set_calling_thread_num_threads(ctypes.c_int(n))

    def get_num_threads(self) -> int:
        """Threads fastnn kernels called from this thread may use."""
        n = int(self.dynlib.fastnn_threadpool_get_num_threads())
        _undo.last_read = (self.filepath, n, self._own())
        return n

    def set_num_threads(self, num_threads: int) -> None:
        """Limit fastnn kernels called from this thread to ``num_threads`` threads."""
        stack = _undo.__dict__.setdefault("stack", [])
        if stack and stack[-1][0] == (self.filepath, num_threads):
            _, replaced = stack.pop()  # the end of a block: the number read at its start
            self._set_own(replaced)
            return
        last = getattr(_undo, "last_read", None)
        current, own = int(self.dynlib.fastnn_threadpool_get_num_threads()), self._own()
        if current == num_threads:
            # Already so (threadpoolctl also sets back libraries a block did not limit):
            # pinning the number would outlive the block.
            return
        if last is None or last[0] != self.filepath or last[2] != own:
            last = (self.filepath, current, own)  # no read since the last change: this one
        stack.append(((self.filepath, last[1]), last[2]))
        del stack[:-_MAX_UNDO]  # limits that are never undone must not grow it forever
        self._set_own(max(1, int(num_threads)))
        _undo.last_read = None

    def get_version(self) -> str | None:
        """fastnn's version when this library is the imported ``fastnn._core``."""
        from fastnn import _core
        same = os.path.realpath(self.filepath or "") == os.path.realpath(_core.__file__)
        return _core.build_info()["version"] if same else None


register(FastnnController)
