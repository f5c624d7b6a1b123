"""Writes scalers_60c4ab6.npz (a pipeline of every fastnn scaler and a small DNNRegressor)
and scalers_60c4ab6_expected.npz (its input and predictions), with the fastnn of commit
60c4ab6: the file format before the scalers took copy=, with_centering=, ... and before
StandardScaler kept its moments about a shift. tests/persistence/test_pipeline_persistence.py checks
that today's fastnn loads the file and predicts the same.

Run with fastnn 60c4ab6 importable (e.g. ``pip install --target DIR`` of that commit,
then ``python make_scalers_60c4ab6.py DIR``).
"""
import sys
from pathlib import Path

if len(sys.argv) > 1:  # import fastnn from DIR, not from an editable checkout
    sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
    sys.path.insert(0, sys.argv[1])

import numpy as np  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

import fastnn  # noqa: E402
from fastnn import preprocessing as fp  # noqa: E402

HERE = Path(__file__).resolve().parent
rng = np.random.default_rng(60)
X = np.abs(rng.standard_normal((64, 3))) * [1.0, 1e3, 1e-2] + [0.5, 1e9, 0.0]
y = X @ np.array([1.0, 1e-3, 50.0]) - 1e6
pipe = make_pipeline(fp.LogScaler(offset=2.0), fp.Clipper(quantile_range=(2, 98)), fp.RobustScaler(),
                     fp.MinMaxScaler(feature_range=(-1, 1)), fp.StandardScaler(),
                     fastnn.DNNRegressor(hidden_units=(4,), epochs=2, batch_size=16, random_state=0))
pipe.fit(X, y)
fastnn.save(pipe, HERE / "scalers_60c4ab6.npz")
np.savez(HERE / "scalers_60c4ab6_expected.npz", X=X, pred=pipe.predict(X), Z=pipe[:-1].transform(X))
print("wrote", HERE / "scalers_60c4ab6.npz", "with fastnn from", Path(fastnn.__file__).parent)
