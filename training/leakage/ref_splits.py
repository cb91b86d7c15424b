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
    found = {"disjoint": np.intersect1d(train, test)}
    overlap, embargo = [], []
    for block in date_runs(t0, test):
        lo, hi = t0[block].min(), t1[block].max()
        overlap.append(train[(t0[train] <= hi) & (t1[train] >= lo)])
        if n_embargo:
            limit = bars_after(calendar, hi, n_embargo)
            embargo.append(train[(t0[train] > hi) & (t0[train] <= limit)])
    found["overlap"] = np.unique(np.concatenate(overlap)) if overlap else np.array([], dtype=np.int64)
    found["embargo"] = np.unique(np.concatenate(embargo)) if embargo else np.array([], dtype=np.int64)
    return found
