"""fastnn's own exception types (importable without scikit-learn)."""
from __future__ import annotations


class ModelFormatError(ValueError):
    """A file given to ``fastnn.load`` is not a model fastnn can read: truncated,
    corrupted, foreign, or written by a newer fastnn format."""


class UntrustedTypeError(ModelFormatError):
    """A model file holds a scikit-learn part (stored through skops) that names types
    fastnn does not trust to load.

    Parameters
    ----------
    message : str
        What was refused, naming the file.
    types : iterable of str
        The refused types (``module.qualname``), kept as the attribute ``types``.
    """

    def __init__(self, message: str, types):
        super().__init__(message)
        self.types = list(types)


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss or gradient (the lecture's NaN trap).

    The model was restored to its last finite weights before this was raised, so it is
    still usable.

    Parameters
    ----------
    message : str
        What happened and what to do about it.
    epoch : int
        The epoch (0-based) in which training diverged.
    step : int
        The step within that epoch (0-based).
    layer : int or None
        The hidden layer whose gradient was non-finite first, or None when the loss
        itself was non-finite.
    """

    def __init__(self, message: str, *, epoch: int, step: int, layer: int | None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.layer = layer


class TrainingDivergedWarning(RuntimeWarning):
    """With ``nan_policy="skip"``: training stopped early because it could no longer
    produce a finite update (a whole epoch was skipped, or an update overflowed the
    weights). The model keeps its last finite weights and ``diagnose()`` reports the NaN
    trap with its evidence."""
