"""Scale-free forms of the level indicators, shared by Feast's on-demand view (training and serving).

Prices and volumes differ by orders of magnitude across symbols, and back-adjusted levels embed
corporate actions that happened later as a constant factor; dividing a level by the same bar's close
(or volume) removes both, so the model sees numbers comparable across symbols and free of that factor.

A non-positive reference (a zero-volume bar) has no such form: it is NaN, never ±inf, so training drops
the row and serving refuses it by name, exactly as for ``volume_change`` after a zero-volume bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from training.indicators.definitions import INDICATORS


def _column(values: Sequence[Any]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)  # None (a NULL in warm-up) becomes NaN


def _reference(values: Sequence[Any]) -> np.ndarray:
    """A close or volume to divide by: NaN where it is not positive, so no form is ever infinite."""
    column = _column(values)
    return np.where(column > 0, column, np.nan)


def scale_free_forms(inputs: Mapping[str, Sequence[Any]]) -> dict[str, list[float]]:
    """``relative``: level / reference − 1; ``ratio``: level / reference. Column lists in, lists out."""
    references = {name: _reference(inputs[name]) for name in ("close", "volume")}
    out: dict[str, list[float]] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for indicator in INDICATORS:
            if indicator.scale_free == "already":
                continue
            value = _column(inputs[indicator.name]) / references[indicator.reference]
            if indicator.scale_free == "relative":
                value = value - 1.0
            out[indicator.model_feature] = value.tolist()
    return out
