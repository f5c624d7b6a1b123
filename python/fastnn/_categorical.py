"""Categorical feature columns of the ``fastnn`` command line, one-hot encoded inside the model.

``fastnn train`` reads a text column (and any column named by ``--categorical``) as
strings (``fastnn._csv.read_csv(text=...)``) and trains
``Pipeline([("columns", ColumnTransformer), ("network", estimator)])``. The
``ColumnTransformer`` takes the features in the order of the model's ``features`` metadata
(an object array: str for the categorical columns, float for the others) and gives the
network:

* first the one-hot columns (scikit-learn's ``OneHotEncoder(handle_unknown="ignore")``),
  categorical column by categorical column, each category in sorted order; a category not
  seen in training encodes as all zeros (``unseen`` counts them for the warning);
* then the numeric columns, through the scaler of ``--scale`` (or passed through). The
  one-hot columns are not scaled: their 0 and 1 are already on the scale the scalers aim
  for, and scaling them would make a rare category's column huge.

A missing cell of a categorical column (empty, NA, N/A, NaN, null, None) is a category of
its own, ``MISSING_CATEGORY`` (the empty string), in training and in prediction alike; in
an exported ONNX graph, feed the empty string for it.

Every step is a scikit-learn class on ``fastnn._skops_steps``' trusted list or a fastnn
scaler, so ``fastnn.save`` stores the pipeline through skops and ``fastnn export`` converts
it with skl2onnx.
"""
from __future__ import annotations

import numpy as np

from fastnn._csv import MISSING_CATEGORY

__all__ = ["MAX_CATEGORIES", "build", "encoded_names", "too_many_categories", "unseen", "unseen_message"]

MAX_CATEGORIES = 1000  # more distinct values than this (or than half the rows): an ID or free text
_ENCODER = "onehot"


def too_many_categories(X, features, categorical) -> str | None:
    """The one-line refusal for the categorical columns of ``X`` with more than
    ``MAX_CATEGORIES`` distinct values, or more distinct values than half the rows (an ID,
    a name, free text: one-hot encoding them learns nothing that generalizes); None when
    there are none."""
    n = X.shape[0]
    crowded = []
    for name in categorical:
        distinct = len(np.unique(X[:, features.index(name)].astype(str)))
        if distinct > MAX_CATEGORIES or distinct > n / 2:
            crowded.append((name, distinct))
    if not crowded:
        return None
    what = ", ".join(f"{name!r} ({k} distinct values in {n} rows)" for name, k in crowded)
    s = "s" if len(crowded) > 1 else ""
    return (f"categorical column{s} {what}: too many categories to one-hot encode (over {MAX_CATEGORIES:,}, or more "
            f"than half the rows: an ID or free text, not a feature); drop {'them' if s else 'it'} with "
            f"--drop {','.join(name for name, _ in crowded)}")


def build(features, categorical, scaler, estimator):
    """The unfitted pipeline: one-hot for the ``categorical`` columns, ``scaler`` (None:
    none) for the other ``features``, then ``estimator``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder
    cat = [j for j, name in enumerate(features) if name in categorical]
    num = [j for j, name in enumerate(features) if name not in categorical]
    parts = [(_ENCODER, OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat)]
    if num:
        parts.append(("numeric", "passthrough" if scaler is None else scaler, num))
    columns = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("columns", columns), ("network", estimator)])


def _encoders(pipeline):
    """(column indices, categories) of every one-hot encoder in the leading ColumnTransformer."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder
    first = pipeline.steps[0][1]
    if not isinstance(first, ColumnTransformer):
        return []
    return [(list(cols), enc.categories_) for _, enc, cols in first.transformers_ if isinstance(enc, OneHotEncoder)]


def encoded_names(pipeline, features) -> list[str]:
    """The names of the network's inputs: ``column=category`` for each one-hot column
    (``column=(missing)`` for missing cells), the column's name for the others; the
    ``features`` themselves for a pipeline without a ColumnTransformer."""
    from sklearn.compose import ColumnTransformer
    first = pipeline.steps[0][1]
    if not isinstance(first, ColumnTransformer):
        return list(features)
    names = []
    for _, transformer, cols in first.transformers_:
        if (isinstance(transformer, str) and transformer == "drop") or len(cols) == 0:
            continue
        categories = getattr(transformer, "categories_", None)
        if categories is None:
            names += [features[j] for j in cols]
            continue
        for j, cats in zip(cols, categories):
            names += [f"{features[j]}={'(missing)' if c == MISSING_CATEGORY else c}" for c in cats]
    return names


def unseen(pipeline, X, features) -> list[tuple[str, int, str]]:
    """(column, number of cells, one example) for each categorical column of ``X`` holding
    categories that training did not see (they encode as all zeros)."""
    found = []
    for cols, categories in _encoders(pipeline):
        for j, cats in zip(cols, categories):
            values = X[:, j].astype(str)
            new = values[~np.isin(values, np.asarray(cats).astype(str))]
            if len(new):
                found.append((features[j], len(new), str(new[0])))
    return found


def unseen_message(found, n_rows: int) -> str:
    """One line for the warning about ``unseen``'s findings in ``n_rows`` rows."""
    cells = sum(count for _, count, _ in found)
    parts = ", ".join(f"{name!r} {count} (e.g. {example!r})" for name, count, example in found)
    return (f"{cells} cell{'s' if cells > 1 else ''} in {n_rows} rows hold categories not seen in training, "
            f"encoded as all zeros: {parts}")
