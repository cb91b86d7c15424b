"""Row positions kept as runs ``[first, last + 1)``: a fold's rows are a few blocks of time, so its millions
of positions are a few hundred numbers while the run goes on, and a few kilobytes in ``cv_splits.json``."""

from __future__ import annotations

import numpy as np


def runs_of(positions: np.ndarray) -> np.ndarray:
    """The distinct positions as ascending runs, shape ``(k, 2)``, int64."""
    positions = np.unique(np.asarray(positions, dtype=np.int64))
    if not len(positions):
        return np.empty((0, 2), dtype=np.int64)
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    return np.column_stack([positions[np.r_[0, breaks]], positions[np.r_[breaks - 1, len(positions) - 1]] + 1])


def positions_of(runs: np.ndarray) -> np.ndarray:
    """The positions of ``runs``, ascending (what :func:`runs_of` was given, without repeats)."""
    runs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
    lengths = runs[:, 1] - runs[:, 0]
    if not lengths.sum():
        return np.empty(0, dtype=np.int64)
    # Each run's first position, then steps of one: a cumulative sum with each run's jump at its start.
    steps = np.ones(int(lengths.sum()), dtype=np.int64)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    nonempty = lengths > 0
    steps[starts[nonempty]] = runs[nonempty, 0] - np.r_[0, runs[nonempty, 1][:-1] - 1]
    return np.cumsum(steps)
