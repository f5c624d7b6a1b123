"""Write the model files of format 1 that tests/persistence/test_pipeline_persistence.py loads, to
prove that files written before skops parts existed still load (RELIABILITY.md P1).

The checked-in files were written by the Python sources of main 60c4ab6: ``git archive
60c4ab6 python | tar -x -C /tmp/old60``, that checkout's ``fastnn`` imported ahead of the
installed one (the editable finder removed from ``sys.meta_path``), with the compiled
``_core`` of a later build (csrc/ and CMakeLists.txt are unchanged since 60c4ab6). They
equal the files the later code writes but for the wall-clock epoch times in the history.
Rerun this only to add cases, and from old code: the point of the files is where they
come from.

Writes, next to this script: format1_pipeline.npz (every scaler, then a DNNRegressor with
batch norm and dropout), format1_classifier.npz (a DNNClassifier with text labels),
format1_sequential.npz (a Sequential with its Adam state) and format1_expected.npz (the
input rows and what each model predicted for them when it was written).
"""
import os

import numpy as np
from sklearn.pipeline import Pipeline

import fastnn
from fastnn import nn, optim, persistence, preprocessing as pp

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    rng = np.random.default_rng(17)
    X = (rng.standard_normal((60, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, 1.0]).astype(np.float32)
    y = X @ np.array([1.0, 0.1, -5.0], np.float32)
    pipe = Pipeline([("log", pp.LogScaler(offset=5.0)), ("clip", pp.Clipper(quantile_range=(5, 95))),
                     ("robust", pp.RobustScaler()), ("minmax", pp.MinMaxScaler(clip=True)),
                     ("std", pp.StandardScaler()),
                     ("net", fastnn.DNNRegressor(hidden_units=(4,), batch_norm=True, dropout=0.1, epochs=3,
                                                 optimizer="adam", random_state=0))]).fit(X, y)
    fastnn.save(pipe, os.path.join(HERE, "format1_pipeline.npz"), metadata={"features": ["a", "b", "c"]})
    labels = np.array(["low", "mid", "high"])[(y > np.percentile(y, 33)).astype(int) + (y > np.percentile(y, 66))]
    clf = fastnn.DNNClassifier(hidden_units=(4,), activation="tanh", epochs=3, random_state=0).fit(X, labels)
    fastnn.save(clf, os.path.join(HERE, "format1_classifier.npz"))
    model = nn.Sequential([nn.Dense(3, 4, activation="prelu"), nn.BatchNorm(4), nn.Dense(4, 2)], seed=5)
    opt = optim.Adam(1e-2)
    for _ in range(3):
        model.train_step(X[:16], np.column_stack([y[:16], -y[:16]]), optimizer=opt)
    persistence.save_sequential(model, os.path.join(HERE, "format1_sequential.npz"), optimizer=opt)
    np.savez(os.path.join(HERE, "format1_expected.npz"), X=X, pipeline=pipe.predict(X),
             classifier=clf.predict(X).astype(str), proba=clf.predict_proba(X), sequential=model.predict(X))


if __name__ == "__main__":
    main()
