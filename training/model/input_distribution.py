"""The distribution of each model input over the rows a model was fitted on, kept with the model.

Serving compares each session's cross-section with it (:mod:`training.serving.drift`). Percentiles (101
values per input) describe a distribution in a few kilobytes whatever the number of rows, and give the
reference CDF a Kolmogorov-Smirnov test needs by interpolation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

ARTIFACT = "input_distribution.json"
PROBABILITIES = np.linspace(0.0, 1.0, 101)
SAMPLE_ROWS = 1_000_000  # percentiles from at most this many rows: exact to ~1e-3 in probability, 8 MB per input


def input_distribution(columns: Iterable[tuple[str, np.ndarray]], rows: int) -> dict[str, Any]:
    """Percentiles of every input over ``rows`` rows, given a column at a time (``(name, values)`` pairs, so
    memory holds one column, not the rows), from every k-th row when there are more than SAMPLE_ROWS;
    non-finite values are left out, as training left such rows out."""
    step = max(1, -(-rows // SAMPLE_ROWS))
    percentiles = {}
    for name, values in columns:
        sample = np.asarray(values, dtype=np.float64)[::step]
        finite = sample[np.isfinite(sample)]
        percentiles[name] = np.quantile(finite, PROBABILITIES).tolist() if len(finite) else None
    return {"rows": rows, "sampled_every": step, "probabilities": PROBABILITIES.tolist(), "percentiles": percentiles}
