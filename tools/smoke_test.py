"""Smoke test of an installed fastnn wheel, run outside the source tree by
tools/build_wheel.sh and by cibuildwheel's test step: import, show_config, one W1 training
epoch, a save and load that predicts bitwise alike, and threadpoolctl limiting fastnn next
to scikit-learn's own OpenMP runtime. Exits non-zero on the first failure."""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np


def main() -> int:
    import fastnn
    from fastnn import nn, optim
    from fastnn._quickbench import w1_data

    here = os.path.dirname(os.path.abspath(fastnn.__file__))
    assert "site-packages" in here, f"fastnn imported from {here}, not from an installed wheel"
    print(f"fastnn {fastnn.__version__} from {here}")
    config = fastnn.show_config(print_=False)
    fastnn.show_config()
    if config["openmp"]["enabled"] and sys.platform.startswith("linux"):
        library = config["openmp"]["library"] or ""
        assert os.path.realpath(library).startswith(os.path.realpath(os.path.join(here, os.pardir))), \
            f"OpenMP runtime {library!r} is not the one bundled in the wheel"

    X, y = w1_data()
    model = nn.Sequential([nn.Dense(16, 128, activation="relu"), nn.Dense(128, 64, activation="relu"),
                           nn.Dense(64, 32, activation="relu"), nn.Dense(32, 1)], seed=0)
    start = time.perf_counter()
    first = model.train_epoch(X, y, batch_size=256, optimizer=optim.Adam(lr=1e-3), seed=0)
    print(f"W1 epoch ({X.shape[0]} rows): {time.perf_counter() - start:.2f} s, {first}")
    prediction = model.predict(X[:1000])
    assert np.isfinite(prediction).all()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w1.npz")
        fastnn.save(model, path)
        loaded = fastnn.load(path)
        again = loaded.predict(X[:1000])
        assert np.array_equal(prediction, again), "the loaded model predicts differently"
    print("save and load: bitwise equal predictions")

    import sklearn.cluster  # noqa: F401  (scikit-learn's wheels bundle their own libgomp)
    from threadpoolctl import threadpool_info, threadpool_limits
    info = threadpool_info()
    for entry in info:
        print(f"  threadpoolctl: {entry['internal_api']:<9} {entry['num_threads']} {entry['filepath']}")
    assert [e for e in info if e["internal_api"] == "fastnn"], "threadpoolctl does not list fastnn"
    with fastnn.threads(2):
        with threadpool_limits(1):
            assert fastnn.get_num_threads() == 1
            assert {e["num_threads"] for e in threadpool_info() if e["user_api"] == "openmp"} == {1}
        assert fastnn.get_num_threads() == 2
    print("threadpoolctl: fastnn and every OpenMP runtime limited to 1 inside the block, restored after")
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
