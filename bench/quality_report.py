"""Model quality against scikit-learn's MLP on its bundled datasets (the settings of
tests/estimators/test_estimators.py), printed as Markdown tables:

    python bench/quality_report.py

- diabetes: test R^2 on three 75/25 splits (features standardized on the training part),
  DNNRegressor(hidden_units=(64, 32), optimizer="adam", learning_rate=0.001) against
  MLPRegressor(hidden_layer_sizes=(64, 32)) (Adam at the same 0.001), both 200 epochs;
  also fastnn at its lecture default rate 0.05.
- digits: 5-fold cross-validated accuracy of MinMaxScaler + DNNClassifier((128, 64),
  Adam 0.001, dropout 0.2, batch norm, 100 epochs) against the same pipeline with
  MLPClassifier((128, 64), 100 epochs).
"""
import time
import warnings

import numpy as np
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline

import fastnn
from fastnn.preprocessing import MinMaxScaler, StandardScaler


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def diabetes():
    X, y = load_diabetes(return_X_y=True)
    print("| diabetes split | fastnn R² (lr 0.001) | fastnn R² (lr 0.05) | MLPRegressor R² | fastnn fit s | sklearn fit s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for split in range(3):
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=split)
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
        ours, t_ours = timed(lambda: fastnn.DNNRegressor(hidden_units=(64, 32), optimizer="adam", learning_rate=0.001,
                                                         epochs=200, random_state=0).fit(Xtr, ytr))
        fast = fastnn.DNNRegressor(hidden_units=(64, 32), optimizer="adam", epochs=200, random_state=0).fit(Xtr, ytr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs, t_theirs = timed(lambda: MLPRegressor(hidden_layer_sizes=(64, 32), max_iter=200,
                                                          random_state=0).fit(Xtr, ytr))
        print(f"| {split} | {ours.score(Xte, yte):.3f} | {fast.score(Xte, yte):.3f} | {theirs.score(Xte, yte):.3f} "
              f"| {t_ours:.2f} | {t_theirs:.2f} |", flush=True)


def digits():
    X, y = load_digits(return_X_y=True)
    ours, t_ours = timed(lambda: cross_val_score(make_pipeline(MinMaxScaler(), fastnn.DNNClassifier(
        hidden_units=(128, 64), optimizer="adam", learning_rate=0.001, epochs=100, dropout=0.2, batch_norm=True,
        random_state=0)), X, y, cv=5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, t_theirs = timed(lambda: cross_val_score(make_pipeline(MinMaxScaler(), MLPClassifier(
            hidden_layer_sizes=(128, 64), max_iter=100, random_state=0)), X, y, cv=5))
    print("\n| digits, 5-fold CV | mean accuracy | folds | seconds |")
    print("|---|---:|---|---:|")
    print(f"| fastnn DNNClassifier | {ours.mean():.4f} | {np.round(ours, 3).tolist()} | {t_ours:.1f} |")
    print(f"| scikit-learn MLPClassifier | {theirs.mean():.4f} | {np.round(theirs, 3).tolist()} | {t_theirs:.1f} |")


if __name__ == "__main__":
    diabetes()
    digits()
