"""Row positions kept as runs ``[first, last + 1)``: a fold's rows are a few blocks of time, so its millions
of positions are a few hundred numbers while the run goes on, and a few kilobytes in ``cv_splits.json``."""

from __future__ import annotations

import numpy as np


def runs_of(positions: np.ndarray) -> np.ndarray:
    """The distinct positions as ascending runs, shape ``(k, 2)``, int64."""
    positions = np.asarray(positions, dtype=np.int64)
    if len(positions) > 1 and not (positions[1:] > positions[:-1]).all():  # fold positions come ascending
        positions = np.unique(positions)
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


def runs_within(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``runs_of(positions_of(outer)[positions_of(inner)])`` without either array of positions: ``inner``
    counts within the rows ``outer`` lists (a fit's rows within its fold's), a run at a time, so recording a
    20M-row fold costs kilobytes instead of a few 160 MB arrays."""
    outer = np.asarray(outer, dtype=np.int64).reshape(-1, 2)
    inner = np.asarray(inner, dtype=np.int64).reshape(-1, 2)
    offsets = np.r_[0, np.cumsum(outer[:, 1] - outer[:, 0])]  # index in the outer rows where each run starts
    pieces = []
    for first, end in inner:
        k = int(np.searchsorted(offsets, first, side="right")) - 1
        while first < end:
            stop = min(end, int(offsets[k + 1]))
            start_at = int(outer[k, 0]) + first - int(offsets[k])
            pieces.append((start_at, start_at + stop - first))
            first, k = stop, k + 1
    if not pieces:
        return np.empty((0, 2), dtype=np.int64)
    merged = [list(pieces[0])]
    for start, stop in pieces[1:]:  # runs of outer that touch merge into one
        if start == merged[-1][1]:
            merged[-1][1] = stop
        else:
            merged.append([start, stop])
    return np.asarray(merged, dtype=np.int64)
