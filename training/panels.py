"""Panels of bars sorted by symbol: where each symbol's contiguous run of rows starts and ends.

Every per-symbol computation (indicators, backfill, labels) walks the same runs; this is the one place
that finds them.
"""

from __future__ import annotations

import numpy as np


def run_starts(keys: np.ndarray) -> np.ndarray:
    """Boolean mask over rows sorted by ``keys``: True where a new run (a new symbol) begins."""
    new = np.empty(len(keys), dtype=bool)
    if len(keys):
        new[0] = True
        np.not_equal(keys[1:], keys[:-1], out=new[1:])
    return new


def symbol_runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends): the rows ``[starts[i], ends[i])`` of the i-th symbol, for rows sorted by ``keys``."""
    starts = np.flatnonzero(run_starts(keys))
    return starts, np.append(starts[1:], len(keys)).astype(starts.dtype)
