"""threadpoolctl sees and limits fastnn (python/fastnn/_threadpool.py): threadpool_info()
lists it, threadpool_limits() sets its threads for the calling thread inside the block and
restores the setting it found afterwards, also next to scikit-learn's own OpenMP runtime."""
from __future__ import annotations

import os
import threading

import pytest
from threadpoolctl import ThreadpoolController, threadpool_info, threadpool_limits

import fastnn
from fastnn import _core


def fastnn_entries(info=None):
    return [i for i in (info or threadpool_info()) if i["internal_api"] == "fastnn"]


def state():
    """Everything the thread setting is made of, for before/after comparisons."""
    return fastnn.get_num_threads(), _core.calling_thread_num_threads(), _core.explicit_num_threads()


def test_threadpool_info_lists_fastnn():
    (entry,) = fastnn_entries()
    assert entry["user_api"] == "openmp"
    assert os.path.realpath(entry["filepath"]) == os.path.realpath(_core.__file__)
    assert entry["version"] == _core.build_info()["version"]
    assert entry["num_threads"] == fastnn.get_num_threads()
    with fastnn.threads(3):
        assert fastnn_entries()[0]["num_threads"] == 3


@pytest.mark.parametrize("user_api", [None, "openmp"])
@pytest.mark.parametrize("explicit", [None, 3])
def test_limits_set_one_thread_inside_and_restore_after(user_api, explicit):
    if explicit is not None:
        fastnn.set_num_threads(explicit)
    try:
        before = state()
        with threadpool_limits(1, user_api=user_api):
            assert fastnn.get_num_threads() == 1
            assert fastnn_entries()[0]["num_threads"] == 1
        assert state() == before
    finally:
        fastnn._core.set_num_threads(0)


@pytest.mark.parametrize("fastnn_first", [True, False])
def test_limited_with_its_openmp_runtime_in_either_order(fastnn_first):
    """fastnn's default follows OpenMP's: limiting OpenMP's runtime before fastnn in the same
    block must not make fastnn's end of the block pin a number."""
    libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "openmp"]
    libs.sort(key=lambda lib: (lib.internal_api == "fastnn") != fastnn_first)
    assert libs[0 if fastnn_first else -1].internal_api == "fastnn" and len(libs) >= 2
    before = state()
    originals = [lib.num_threads for lib in libs]  # read first, as threadpool_limits does
    for lib in libs:
        lib.set_num_threads(1)
    assert fastnn.get_num_threads() == 1
    for lib, n in zip(libs, originals):
        lib.set_num_threads(n)
    assert state() == before == (before[0], 0, 0)


def test_limits_for_blas_only_leave_fastnn_alone():
    with fastnn.threads(3), threadpool_limits(1, user_api="blas"):
        assert fastnn.get_num_threads() == 3


def test_limit_by_internal_api_name():
    with fastnn.threads(3):
        controller = ThreadpoolController().select(internal_api="fastnn")
        with controller.limit(limits=2):
            assert fastnn.get_num_threads() == 2
        assert state() == (3, 0, 3)


def test_nested_limits_unwind_in_order():
    with fastnn.threads(4):
        with threadpool_limits(2):
            assert fastnn.get_num_threads() == 2
            with threadpool_limits(1):
                assert fastnn.get_num_threads() == 1
                with threadpool_limits(4):  # the same number as outside: still a limit of its own
                    assert fastnn.get_num_threads() == 4
                assert fastnn.get_num_threads() == 1
            assert fastnn.get_num_threads() == 2
        assert state() == (4, 0, 4)
        fastnn.set_num_threads(3)  # the block left no calling-thread pin behind
        assert fastnn.get_num_threads() == 3


def test_a_limit_never_undone_leaves_the_number_it_set():
    with fastnn.threads(3):
        limiter = threadpool_limits(1)
        try:
            assert fastnn.get_num_threads() == 1
        finally:
            limiter.restore_original_limits()
        assert state() == (3, 0, 3)


def test_the_limit_is_the_calling_threads():
    seen = []
    with fastnn.threads(3), threadpool_limits(1):
        worker = threading.Thread(target=lambda: seen.append(fastnn.get_num_threads()))
        worker.start()
        worker.join()
        assert fastnn.get_num_threads() == 1
    assert seen == [3]


def test_an_estimators_num_threads_still_applies_inside_a_limit():
    import numpy as np
    seen = []

    class Spy(fastnn.callbacks.Callback):
        def on_epoch_end(self, estimator, epoch, logs):
            seen.append(fastnn.get_num_threads())

    X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    with threadpool_limits(1):
        fastnn.DNNRegressor(hidden_units=(4,), epochs=1, num_threads=2, callbacks=[Spy()],
                            verbose=0).fit(X, X[:, 0])
        assert fastnn.get_num_threads() == 1
    assert seen == [2]


def test_next_to_scikit_learns_openmp_runtime():
    """scikit-learn's wheels bundle their own libgomp; with fastnn's loaded as well, every
    OpenMP runtime and fastnn are limited together and restored together."""
    import sklearn.cluster  # noqa: F401  (loads scikit-learn's OpenMP runtime when it has one)
    info = threadpool_info()
    openmp = [i for i in info if i["user_api"] == "openmp"]
    assert fastnn_entries(info)
    with fastnn.threads(2):
        before = [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "openmp"]
        with threadpool_limits(1, user_api="openmp"):
            inside = threadpool_info()
            assert {i["num_threads"] for i in inside if i["user_api"] == "openmp"} == {1}
            assert fastnn.get_num_threads() == 1
        after = [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "openmp"]
    assert after == before
    assert len(openmp) >= 2  # fastnn plus at least the OpenMP runtime it links


def test_joblib_workers_inherit_the_limit():
    joblib = pytest.importorskip("joblib")

    def threads_in_worker():
        import fastnn as fn
        return fn.get_num_threads()

    with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        seen = joblib.Parallel(n_jobs=2)(joblib.delayed(threads_in_worker)() for _ in range(2))
    assert seen == [1, 1]
