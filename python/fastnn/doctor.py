"""The training doctor behind ``DNNRegressor.diagnose()`` / ``DNNClassifier.diagnose()``.

Each rule reads the numbers the C++ epoch loop records (``history_``: per hidden layer
gradient norms, weight norms, update-to-weight ratios, zero fractions and dead units),
the raw scale of every input feature, a probe of the hidden activations on training rows
and the divergence record, and reports a :class:`Finding` for one failure mode the lecture
names, with the evidence (numbers) and the remedy. The thresholds are rules of thumb,
chosen to flag a problem clearly before it silently costs accuracy; each is stated in
its finding.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Finding", "diagnose"]

# thresholds (see each rule)
VANISHING_RATIO = 1e-2      # input-side / output-side RMS gradient per parameter
EXPLODING_RATIO = 1e2       # the same ratio the other way round
EXPLODING_GROWTH = 1e3      # gradient norm growth from the first to the last epoch
EXPLODING_UPDATE = 0.5      # |update| / |weights| in one step
DEAD_SHARE = 0.5            # share of units that never fired in the last epoch
SATURATED_SHARE = 0.5       # share of sigmoid/tanh outputs in the flat tails
SCALE_RATIO = 100.0         # largest / smallest feature standard deviation
OVERFIT_GAP = 1.5           # validation loss / training loss
OVERFIT_RISE = 1.1          # last validation loss / best validation loss
MAX_DROPOUT = 0.5
MIN_ROWS = 10               # fewer training rows: the per-layer statistics mean nothing
SCALED_INPUT_MAX = 100.0    # |feature| beyond this: the features were not scaled
SCALED_TARGET_MAX = 1e6     # |target| beyond this: the loss and its gradient get huge
_RECENT = 3                 # epochs averaged for the per-layer statistics


@dataclass(frozen=True)
class Finding:
    """One diagnosis of a training run.

    Parameters
    ----------
    mode : str
        The failure mode, e.g. "vanishing gradients".
    evidence : str
        What the recorded numbers show.
    remedy : str
        What to change.
    numbers : dict, optional
        The evidence as data (per-layer values, ratios).
    """

    mode: str
    evidence: str
    remedy: str
    numbers: dict = field(default_factory=dict)

    def __str__(self):
        return f"{self.mode}: {self.evidence}\n    remedy: {self.remedy}"


def _recent(est, key):
    """Mean of a per-layer statistic over the last epochs, shape (n_hidden,) (NaN before
    the first epoch completed)."""
    rows = np.asarray(est.history_[key][-_RECENT:], dtype=np.float64)
    if rows.shape[0] == 0:
        return np.full(len(est._hidden_index_), np.nan)
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.where(np.isfinite(rows), rows, np.nan), axis=0) if np.isfinite(rows).any() else rows[-1]


def _fmt(values):
    return "[" + ", ".join(f"{v:.2g}" for v in values) + "]"


def _rms_gradients(est):
    """Per hidden layer: gradient norm / sqrt(parameter count), comparable across widths."""
    grad = _recent(est, "grad_norm")
    counts = np.array([est.model_.layers[i].in_features * est.model_.layers[i].out_features
                       for i in est._hidden_index_], dtype=np.float64)
    return grad / np.sqrt(counts)


def _vanishing(est):
    rms = _rms_gradients(est)
    saturation = np.asarray(getattr(est, "_saturation_", []), dtype=np.float64)
    saturating = est.activation in ("sigmoid", "tanh")
    if rms.size < 2 or not np.all(np.isfinite(rms)) or rms[-1] <= 0:
        return None
    ratio = rms[0] / rms[-1]
    saturated = saturating and saturation.size and saturation.max() > SATURATED_SHARE
    if ratio >= VANISHING_RATIO and not (saturated and ratio < 0.1):
        return None
    evidence = (f"the gradient per weight shrinks {1 / max(ratio, 1e-300):.3g}x from the last hidden layer to the "
                f"first (RMS per layer, input side first: {_fmt(rms)}; flagged below {VANISHING_RATIO:g})")
    if saturating and saturation.size:
        evidence += f"; {est.activation} outputs in the flat tails per layer: {_fmt(saturation)}"
    return Finding("vanishing gradients", evidence,
                   "use a non-saturating activation (activation='relu' or 'elu'), add batch_norm=True, or use fewer "
                   "hidden layers: the layers near the input barely learn",
                   {"rms_gradient": rms.tolist(), "ratio": float(ratio), "saturation": saturation.tolist()})


def _exploding(est):
    h = est.history_
    rms = _rms_gradients(est)
    grad = np.asarray(h["grad_norm"], dtype=np.float64).reshape(len(h["loss"]), len(est._hidden_index_))
    update = _recent(est, "update_ratio")
    reasons, numbers = [], {}
    if rms.size >= 2 and np.all(np.isfinite(rms)) and rms[-1] > 0 and rms[0] / rms[-1] > EXPLODING_RATIO:
        reasons.append(f"the gradient per weight grows {rms[0] / rms[-1]:.3g}x from the last hidden layer to the "
                       f"first (RMS per layer: {_fmt(rms)}; flagged above {EXPLODING_RATIO:g})")
        numbers["ratio"] = float(rms[0] / rms[-1])
    if grad.shape[0] >= 2:
        first, last = grad[0], grad[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = np.where(first > 0, last / first, np.nan)
        if np.nanmax(growth, initial=0.0) > EXPLODING_GROWTH:
            reasons.append(f"gradient norms grew up to {np.nanmax(growth):.3g}x from the first epoch to the last "
                           f"(per layer: {_fmt(growth)})")
            numbers["growth"] = growth.tolist()
    if update.size and np.nanmax(update, initial=0.0) > EXPLODING_UPDATE:
        reasons.append(f"one update changes the weights by up to {np.nanmax(update):.0%} of their norm (per layer: "
                       f"{_fmt(update)}; healthy is about 0.1%)")
        numbers["update_ratio"] = update.tolist()
    div = est.divergence_
    if div is not None:
        last_update = np.asarray(div["update_ratio"], dtype=np.float64)
        if div["layer"] is not None:
            reasons.append(f"the gradient of layer {div['layer']} overflowed at epoch {div['epoch']}")
        if np.nanmax(last_update, initial=0.0) > EXPLODING_UPDATE:
            reasons.append(f"before the overflow at epoch {div['epoch']}, step {div['step']}, the last finite update "
                           f"changed the weights by up to {np.nanmax(last_update):.3g}x their norm (per layer: "
                           f"{_fmt(last_update)})")
            numbers["divergence_update_ratio"] = last_update.tolist()
    if not reasons:
        return None
    return Finding("exploding gradients", "; ".join(reasons),
                   f"lower the learning rate (now {est.optimizer_.lr:g}), clip gradients (clip_norm=1.0), add weight "
                   "regularization (l2=1e-4), use a smaller batch_size or batch_norm=True", numbers)


def _dead_relu(est):
    if est.activation != "relu":
        return None
    dead = _recent(est, "dead_units")
    zero = _recent(est, "zero_fraction")
    bad = np.flatnonzero(dead > DEAD_SHARE)
    if bad.size == 0:
        return None
    layers = ", ".join(f"layer {i}: {dead[i]:.0%} of units never fired, {zero[i]:.0%} of outputs zero" for i in bad)
    return Finding("dead ReLU layers",
                   f"{layers} (last epochs; flagged above {DEAD_SHARE:.0%}); a dead unit passes no gradient and starves "
                   "the layers after it",
                   f"lower the learning rate (now {est.optimizer_.lr:g}); use activation='leaky_relu', 'prelu' or "
                   "'elu'; scale the features; batch_norm=True",
                   {"dead_units": dead.tolist(), "zero_fraction": zero.tolist(), "layers": bad.tolist()})


def _feature_scales(est):
    std = np.asarray(est._feature_std_, dtype=np.float64)
    live = np.flatnonzero(std > 0)
    if live.size < 2:
        return None
    hi, lo = live[np.argmax(std[live])], live[np.argmin(std[live])]
    ratio = std[hi] / std[lo]
    if ratio <= SCALE_RATIO:
        return None
    names = getattr(est, "feature_names_in_", None)
    name = (lambda j: repr(str(names[j]))) if names is not None else (lambda j: f"feature {j}")
    return Finding("features on very different scales",
                   f"{name(hi)} has standard deviation {std[hi]:.3g} but {name(lo)} {std[lo]:.3g}: {ratio:.3g}x apart "
                   f"(flagged above {SCALE_RATIO:g}x; the lecture's litres-vs-millilitres soup). One learning rate "
                   "cannot suit both",
                   "scale the features first: make_pipeline(fastnn.preprocessing.StandardScaler(), estimator) "
                   "(MinMaxScaler, RobustScaler or LogScaler for skewed, outlier-heavy or huge-range columns)",
                   {"feature_std": std.tolist(), "ratio": float(ratio), "largest": int(hi), "smallest": int(lo)})


def nan_trap_remedies(div, est) -> str:
    """What to change after the NaN trap, most likely cause first: a huge target, then
    unscaled features (only when the training inputs were in fact large: advising to scale
    features that a scaler already standardized sends the user the wrong way), then the
    learning rate, clipping and batch norm."""
    remedies = []
    target_max, input_max = div.get("target_max") or 0.0, div.get("input_max") or 0.0
    if target_max > SCALED_TARGET_MAX:
        remedies.append(f"scale the target: its values reach {target_max:.3g}, and the squared error of values that "
                        "large overflows float32 (sklearn.compose.TransformedTargetRegressor with a StandardScaler)")
    if input_max > SCALED_INPUT_MAX:
        remedies.append(f"scale the features: they reach {input_max:.3g} (fastnn.preprocessing.StandardScaler)")
    remedies.append(f"lower the learning rate (now {div['learning_rate']:g})")
    remedies.append("clip gradients (clip_norm=1.0)")
    if not getattr(est, "batch_norm", False):
        remedies.append("batch_norm=True")
    return "; ".join(remedies)


def _target_scale(est):
    target_max = getattr(est, "_target_max_", None)
    if target_max is None or not target_max > SCALED_TARGET_MAX:
        return None
    return Finding("target on a very large scale",
                   f"the target's values reach {target_max:.3g} (flagged above {SCALED_TARGET_MAX:g}); a network's "
                   "output layer starts near 0 and each update moves it a little, so it cannot reach values that "
                   "large, and their squared errors approach float32's limit",
                   "scale the target: sklearn.compose.TransformedTargetRegressor(regressor=..., "
                   "transformer=fastnn.preprocessing.StandardScaler())", {"target_max": float(target_max)})


def _few_rows(est):
    n = getattr(est, "_n_train_rows_", None)
    if n is None or n >= MIN_ROWS:
        return None
    return Finding("too few rows",
                   f"trained on {n} row{'s' if n != 1 else ''}: the per-layer statistics (dead units, gradient norms, "
                   f"update sizes) of so few rows say nothing about the network, so the doctor does not judge them "
                   f"(it needs at least {MIN_ROWS})",
                   "train on more rows: a network needs hundreds to learn anything it can generalize",
                   {"rows": int(n)})


def _nan_trap(est):
    div = est.divergence_
    skipped = int(np.sum(est.history_["skipped"]))
    if div is None and skipped == 0:
        return None
    parts = []
    if div is not None:
        where = "the loss" if div["layer"] is None else f"the gradient of layer {div['layer']}"
        parts.append(f"{where} became non-finite at epoch {div['epoch']}, step {div['step']} with learning rate "
                     f"{div['learning_rate']:g}; the weights were restored to the last finite step")
    if skipped:
        parts.append(f"{skipped} mini-batches were skipped for a non-finite loss or gradient (nan_policy='skip')")
    remedy = (nan_trap_remedies(div, est) if div is not None else
              nan_trap_remedies({"learning_rate": est.optimizer_.lr}, est) + "; or look for rows with extreme values")
    return Finding("NaN trap", "; ".join(parts), remedy, {"divergence": div, "skipped": skipped})


def _overfitting(est):
    h = est.history_
    val = np.asarray(h["val_loss"], dtype=np.float64)
    train = np.asarray(h["loss"], dtype=np.float64)
    ok = np.isfinite(val) & np.isfinite(train)
    if ok.sum() < 2:
        return None
    val, train = val[ok], train[ok]
    best = int(np.argmin(val))
    gap = val[-1] / train[-1] if train[-1] > 0 else np.inf
    rise = val[-1] / val[best] if val[best] > 0 else np.inf
    if not (gap > OVERFIT_GAP and rise > OVERFIT_RISE):
        return None
    return Finding("overfitting",
                   f"validation loss {val[-1]:.4g} is {gap:.3g}x the training loss {train[-1]:.4g} and rose {rise:.3g}x "
                   f"since its best ({val[best]:.4g}, epoch {best}); flagged when both exceed {OVERFIT_GAP:g}x and "
                   f"{OVERFIT_RISE:g}x",
                   "regularize: dropout=0.2 to 0.5, l2=1e-4, fewer hidden units, early_stopping=True with a small "
                   "patience (the best weights are restored), or more training data",
                   {"val_loss": float(val[-1]), "loss": float(train[-1]), "best_val_loss": float(val[best]),
                    "best_epoch": best})


def _dropout(est):
    rate = est.dropout or 0.0
    if rate <= MAX_DROPOUT:
        return None
    return Finding("dropout rate above 0.5",
                   f"dropout={rate:g} drops {rate:.0%} of the units of every hidden layer in each step; fastnn takes the "
                   f"DROP rate, so if you meant to keep {rate:.0%} (a keep probability) you asked for keeping "
                   f"{1 - rate:.0%}",
                   f"use dropout={1 - rate:g} if {rate:g} was a keep probability; rates of 0.1 to 0.5 are typical "
                   "(start at 0.2)", {"dropout": rate})


RULES = (_nan_trap, _target_scale, _exploding, _vanishing, _dead_relu, _feature_scales, _overfitting, _dropout)
# with too few rows only these rules judge anything: the others read per-layer statistics
FEW_ROWS_RULES = (_nan_trap, _few_rows, _dropout)


def diagnose(est) -> list[Finding]:
    """Diagnose the training of a fitted estimator.

    Parameters
    ----------
    est : DNNRegressor or DNNClassifier
        A fitted estimator (its ``history_`` holds the per-epoch statistics).

    Returns
    -------
    list of Finding
        The findings, most urgent first; empty when no rule fired.
    """
    rules = FEW_ROWS_RULES if _few_rows(est) is not None else RULES
    return [f for f in (rule(est) for rule in rules) if f is not None]
