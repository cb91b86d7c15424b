"""The distribution of each model input over the rows a model was fitted on, kept with the model.

Serving compares each session's cross-section with it (:mod:`training.serving.drift`). Percentiles (101
values per input) describe a distribution in a few kilobytes whatever the number of rows, and give the
reference CDF a Kolmogorov-Smirnov test needs by interpolation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

ARTIFACT = "input_distribution.json"
PROBABILITIES = np.linspace(0.0, 1.0, 101)
SAMPLE_ROWS = 1_000_000  # percentiles from at most this many rows: exact to ~1e-3 in probability, 8 MB per input


def input_distribution(parts: Iterable[pd.DataFrame], inputs: list[str], rows_in_all: int) -> dict[str, Any]:
    """Percentiles of every input over the rows of ``parts`` (frames of the inputs, e.g. the training rows of
    each dataset part; ``rows_in_all`` of them), from every k-th row when there are more than SAMPLE_ROWS, so
    memory stays flat whatever the universe; non-finite values are left out, as training left such rows out."""
    step = max(1, -(-rows_in_all // SAMPLE_ROWS))
    values: dict[str, list[np.ndarray]] = {name: [] for name in inputs}
    rows = 0
    for part in parts:
        rows += len(part)
        for name in inputs:
            column = part[name].to_numpy(dtype=np.float64)[::step]
            values[name].append(column[np.isfinite(column)])
    percentiles = {}
    for name in inputs:
        finite = np.concatenate(values.pop(name)) if rows else np.empty(0)
        percentiles[name] = np.quantile(finite, PROBABILITIES).tolist() if len(finite) else None
    return {"rows": rows, "sampled_every": step, "probabilities": PROBABILITIES.tolist(), "percentiles": percentiles}
