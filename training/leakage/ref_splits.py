"""The audit's own purge and embargo rules, written from the SPEC, sharing no code with the splitters.

The embargo (one definition for the hold-out and for cross-validation): a fraction f of the dataset's
bar calendar, the sorted distinct decision and label-end times (t0 and t1) of all its rows whatever
their role, is ``ceil(f * n_bars)`` bars (f * n_bars rounded to 9 decimals first, so 0.07 * 100 is 7, and at
least one bar when f > 0), counted on that calendar after the last label end it protects.
"""

from __future__ import annotations

import math

import numpy as np

FAR_FUTURE = np.iinfo(np.int64).max


def embargo_bars(fraction: float, n_bars: int) -> int:
    if fraction < 0:
        raise ValueError(f"embargo must be a non-negative fraction, got {fraction}")
    return 0 if fraction == 0 else max(1, math.ceil(round(fraction * n_bars, 9)))


def bars_after(calendar: np.ndarray, stamp: int, n: int) -> int:
    """The calendar time ``n`` bars after the newest calendar bar at or before ``stamp`` (far future past it)."""
    here = int(np.searchsorted(calendar, stamp, side="right")) - 1
    return int(calendar[here + n]) if here + n < len(calendar) else FAR_FUTURE


def date_runs(t0: np.ndarray, test: np.ndarray) -> list[np.ndarray]:
    """Test rows cut into runs of consecutive decision dates (dates of all rows): one purge span per run."""
    dates = np.unique(t0)
    tested = np.isin(dates, t0[test])
    blocks, current = [], []
    for k, date in enumerate(dates):
        if tested[k]:
            current.append(date)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return [test[np.isin(t0[test], block)] for block in blocks]


def fold_violations(t0: np.ndarray, t1: np.ndarray, train: np.ndarray, test: np.ndarray, n_embargo: int,
                    calendar: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """Training rows breaking each rule: scored too, label window overlapping a test block, start in its embargo."""
    # Boolean masks over all rows, read at the training positions: no per-block copies of t0[train] (at 20M
    # training rows each was 160 MB).
    tested = np.zeros(len(t0), dtype=bool)
    tested[test] = True
    overlap = np.zeros(len(t0), dtype=bool)
    embargo = np.zeros(len(t0), dtype=bool)
    for block in date_runs(t0, test):
        lo, hi = t0[block].min(), t1[block].max()
        overlap |= (t0 <= hi) & (t1 >= lo)
        if n_embargo:
            embargo |= (t0 > hi) & (t0 <= bars_after(calendar, hi, n_embargo))
    return {name: np.unique(train[mask[train]]) for name, mask in
            (("disjoint", tested), ("overlap", overlap), ("embargo", embargo))}  # fmt: skip
