"""The distribution of each model input over the rows a model was fitted on, kept with the model.

Serving compares each session with it (:mod:`training.serving.drift`). Percentiles (101 values per input)
describe a distribution in a few kilobytes whatever the number of rows, and give a reference CDF by
interpolation. Two are kept per input: over the rows, and over the training sessions' cross-sectional
medians (one value per session). The second is what a session is judged against: symbols move together,
so a session is one draw from the distribution of sessions, not a sample of independent rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

ARTIFACT = "input_distribution.json"
PROBABILITIES = np.linspace(0.0, 1.0, 101)
SAMPLE_ROWS = 1_000_000  # percentiles from at most this many rows: exact to ~1e-3 in probability, 8 MB per input


def _percentiles(values: np.ndarray) -> list[float] | None:
    finite = values[np.isfinite(values)]
    return np.quantile(finite, PROBABILITIES).tolist() if len(finite) else None


def input_distribution(columns: Iterable[tuple[str, np.ndarray]], rows: int, sessions: np.ndarray) -> dict[str, Any]:
    """Percentiles of every input over ``rows`` rows, and of its per-session medians (``sessions``: each row's
    session, e.g. its event timestamp), given a column at a time (``(name, values)`` pairs, so memory holds one
    column, not the rows), from every k-th row when there are more than SAMPLE_ROWS; non-finite values are left
    out, as training left such rows out."""
    step = max(1, -(-rows // SAMPLE_ROWS))
    keys = np.asarray(sessions)[::step]
    percentiles, session_medians = {}, {}
    for name, values in columns:
        sample = np.asarray(values, dtype=np.float64)[::step]
        percentiles[name] = _percentiles(sample)
        medians = pd.Series(sample).groupby(keys, sort=False).median()  # NaN skipped; an all-NaN session is NaN
        session_medians[name] = _percentiles(medians.to_numpy(dtype=np.float64))
    return {
        "rows": rows,
        "sessions": len(pd.unique(keys)),
        "sampled_every": step,
        "probabilities": PROBABILITIES.tolist(),
        "percentiles": percentiles,
        "session_medians": session_medians,
    }
