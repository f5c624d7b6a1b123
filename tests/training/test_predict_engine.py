"""Sequential.predict is one call into the engine per chunk (issue 14's predict fast path):
bitwise the layer-by-layer inference path (``forward(training=False)``) for every layer
kind and activation, both dtypes, every SIMD path, any row count; and the estimators'
predict keeps every check on its fast path."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim


def _model(dtype):
    model = nn.Sequential([nn.Dense(6, 16, activation="prelu"), nn.BatchNorm(16), nn.Activation("elu"),
                           nn.Dropout(0.3), nn.Dense(16, 8, activation="leaky_relu"), nn.Activation("sigmoid"),
                           nn.Dense(8, 3, activation="tanh")], seed=4, dtype=dtype)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 6)).astype(dtype)
    model.train_epoch(X, X[:, :3], batch_size=64, optimizer=optim.Adam(lr=0.01))  # non-trivial running stats
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engine_predict_is_bitwise_the_layer_path(simd, dtype):
    model = _model(dtype)
    rng = np.random.default_rng(1)
    for n in (1, 7, 1024, 1025, 3000):
        x = rng.standard_normal((n, 6)).astype(dtype)
        reference = model.forward(x, training=False)  # layer by layer, through fastnn.ops
        assert model.predict(x).tobytes() == reference.tobytes(), (simd, n)
        assert model.predict(x, batch_size=33).tobytes() == reference.tobytes()
    assert model.predict(np.zeros((0, 6), dtype)).shape == (0, 3)


def test_estimator_predict_fast_path_keeps_its_checks():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    reg = fastnn.DNNRegressor(hidden_units=(8,), epochs=2, random_state=0).fit(X, X[:, 0])
    one = reg.predict(X[:1])
    assert one.dtype == np.float64 and one.shape == (1,)
    assert one[0] == reg.predict(X)[0]  # rows are independent: bitwise
    assert reg.predict(X[:1].astype(np.float32))[0] == reg.predict(X[:1].astype(np.float32).copy(order="F"))[0]
    with pytest.raises(ValueError, match="4 features"):
        reg.predict(X[:1, :3])
    with pytest.raises(ValueError, match="NaN or infinity"):
        reg.predict(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="outside float32"):
        reg.predict(np.full((1, 4), 1e39))
    with pytest.raises(ValueError, match="0 sample"):
        reg.predict(np.zeros((0, 4)))
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError, match="not fitted"):
        fastnn.DNNRegressor().predict(X[:1])
