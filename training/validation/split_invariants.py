"""The leakage invariants of a split, recomputed from the samples' t0/t1 alone.

Each check raises :class:`LeakageError` naming the invariant and the first offending rows, so the
property tests, the splitters' canary tests and the ``verify-leakage`` audit share one definition of
"leaky". Rows are positions (0-based) into the ``t0``/``t1`` arrays given to the check.

Bar positions are counted on a bar calendar: the sorted distinct timestamps of ``bar_times`` when given,
else of ``t0`` and ``t1`` together (every decision bar and every label end). An embargo fraction f over a
calendar of n bars is ``ceil(f * n)`` bars (f * n rounded to 9 decimals first, so 0.07 * 100 is 7 bars, not
8), and at least one bar whenever f > 0.

One embargo for the whole project: the calendar is the distinct t0 and t1 of *all* the dataset's rows.
The builder's hold-out split sees every sample, so it counts on that calendar with ``bar_times=None``;
the trainer's cross-validation sees only the training rows, so it passes that calendar as ``bar_times``
(``training.model.trainer.bar_calendar``). "1 % of the bars" is therefore the same number of bars in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.errors import CheckFailed

MAX_REPORTED_ROWS = 5
_FAR_FUTURE = np.iinfo(np.int64).max


class LeakageError(CheckFailed):
    """A split lets information from the scored samples reach the training samples."""

    def __init__(self, invariant: str, message: str, rows: Sequence[int] | np.ndarray = ()) -> None:
        super().__init__(f"{invariant}: {message}")
        self.invariant = invariant
        self.rows = np.asarray(rows, dtype=np.int64)


def to_ns(values: Any, name: str = "timestamps") -> np.ndarray:
    """Nanoseconds since the epoch (UTC for tz-aware input) as int64; NaT or non-times raise ValueError."""
    if isinstance(values, np.ndarray) and values.dtype == np.int64:
        return values
    stamps = getattr(values, "array", None)  # a Series' or an Index's own array: read in place, not copied
    if not (isinstance(stamps, pd.arrays.DatetimeArray) and stamps.unit == "ns"):
        try:
            stamps = pd.DatetimeIndex(values).as_unit("ns").array
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be timestamps: {exc}") from None
    missing = int(stamps.isna().sum())
    if missing:
        raise ValueError(f"{name} holds {missing} missing timestamps (NaT)")
    return stamps.asi8


def bar_calendar(t0: np.ndarray, t1: np.ndarray, bar_times: Any = None) -> np.ndarray:
    """Sorted distinct bar timestamps (int64 ns) on which bars are counted."""
    if bar_times is not None:
        return np.unique(to_ns(bar_times, "bar_times"))
    return np.unique(np.concatenate([t0, t1]))


def embargo_bars(embargo: float, n_bars: int) -> int:
    """``ceil(embargo * n_bars)``, never silently zero: any positive fraction is at least one bar."""
    if embargo < 0:
        raise ValueError(f"embargo must be a non-negative fraction, got {embargo}")
    if embargo == 0:
        return 0
    # round first so 0.07 * 100 = 7.000000000000001 does not become 8 bars
    return max(1, math.ceil(round(embargo * n_bars, 9)))


def embargo_limit(calendar: np.ndarray, end: int, n_embargo: int) -> int:
    """Last timestamp (ns) inside the embargo of ``n_embargo`` bars counted after ``end``."""
    position = int(np.searchsorted(calendar, end, side="right")) - 1  # the bar at or before `end`
    target = position + n_embargo
    return int(calendar[target]) if target < len(calendar) else _FAR_FUTURE


def date_blocks(t0: np.ndarray, test_idx: np.ndarray) -> list[np.ndarray]:
    """Test rows grouped into blocks of consecutive sample dates (distinct t0 over all samples).

    Purging and the embargo apply to each block separately: a CPCV split whose test groups are not
    adjacent has one block per run of adjacent groups.
    """
    test_idx = np.asarray(test_idx, dtype=np.int64)
    if len(test_idx) == 0:
        return []
    dates = np.unique(t0)
    is_test_date = np.zeros(len(dates), dtype=bool)
    test_date_pos = np.searchsorted(dates, t0[test_idx])
    is_test_date[test_date_pos] = True
    run_start = is_test_date & ~np.r_[False, is_test_date[:-1]]
    run_id = np.cumsum(run_start)[test_date_pos]
    order = np.argsort(run_id, kind="stable")
    boundaries = np.flatnonzero(np.diff(run_id[order])) + 1
    return np.split(test_idx[order], boundaries)


def _fmt(ns: int) -> str:
    return "+inf" if ns == _FAR_FUTURE else str(pd.Timestamp(ns, tz="UTC"))


def _describe(rows: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> str:
    shown = ", ".join(f"{r} [{_fmt(t0[r])}, {_fmt(t1[r])}]" for r in rows[:MAX_REPORTED_ROWS])
    more = f" and {len(rows) - MAX_REPORTED_ROWS} more" if len(rows) > MAX_REPORTED_ROWS else ""
    return f"{shown}{more}"


def _prepare(t0: Any, t1: Any, *index_sets: Any) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    t0_ns, t1_ns = to_ns(t0, "t0"), to_ns(t1, "t1")
    if len(t0_ns) != len(t1_ns):
        raise ValueError(f"t0 has {len(t0_ns)} rows but t1 has {len(t1_ns)}")
    sets = [np.asarray(s, dtype=np.int64).ravel() for s in index_sets]
    for s in sets:
        if len(s) and (s.min() < 0 or s.max() >= len(t0_ns)):
            raise ValueError(f"row positions must lie in [0, {len(t0_ns)}), got {s.min()}..{s.max()}")
    return t0_ns, t1_ns, sets


def check_disjoint(train_idx: Any, test_idx: Any, what: str = "test") -> None:
    """No row is both trained on and scored."""
    both = np.intersect1d(np.asarray(train_idx), np.asarray(test_idx))
    if len(both):
        raise LeakageError("disjoint", f"{len(both)} rows are both training and {what} rows: {both[:5].tolist()}", both)


def check_no_overlap(t0: Any, t1: Any, train_idx: Any, test_idx: Any) -> None:
    """No training sample's [t0, t1] overlaps a test block's [min t0, max t1] (closed intervals)."""
    t0_ns, t1_ns, (train, test) = _prepare(t0, t1, train_idx, test_idx)
    check_disjoint(train, test)
    for block in date_blocks(t0_ns, test):
        lo, hi = int(t0_ns[block].min()), int(t1_ns[block].max())
        bad = train[(t0_ns[train] <= hi) & (t1_ns[train] >= lo)]
        if len(bad):
            raise LeakageError(
                "overlap",
                f"{len(bad)} training rows overlap the test block [{_fmt(lo)}, {_fmt(hi)}] "
                f"(min t0, max t1 of {len(block)} test rows); first: {_describe(np.sort(bad), t0_ns, t1_ns)}",
                np.sort(bad),
            )


def check_embargo(t0: Any, t1: Any, train_idx: Any, test_idx: Any, embargo: float, bar_times: Any = None) -> None:
    """No training sample starts within ``ceil(embargo * n_bars)`` bars after a test block's max t1."""
    t0_ns, t1_ns, (train, test) = _prepare(t0, t1, train_idx, test_idx)
    calendar = bar_calendar(t0_ns, t1_ns, bar_times)
    n_embargo = embargo_bars(embargo, len(calendar))
    if n_embargo == 0:
        return
    for block in date_blocks(t0_ns, test):
        hi = int(t1_ns[block].max())
        limit = embargo_limit(calendar, hi, n_embargo)
        bad = train[(t0_ns[train] > hi) & (t0_ns[train] <= limit)]
        if len(bad):
            raise LeakageError(
                "embargo",
                f"{len(bad)} training rows start within the embargo of {n_embargo} bars after the test block's "
                f"max t1 {_fmt(hi)} (embargo ends {_fmt(limit)}); first: {_describe(np.sort(bad), t0_ns, t1_ns)}",
                np.sort(bad),
            )


def check_split(t0: Any, t1: Any, train_idx: Any, test_idx: Any, embargo: float, bar_times: Any = None) -> None:
    """Every cross-validation invariant of one (train, test) split: disjoint, purged, embargoed."""
    check_no_overlap(t0, t1, train_idx, test_idx)
    check_embargo(t0, t1, train_idx, test_idx, embargo, bar_times)


def check_holdout(
    t0: Any,
    t1: Any,
    train_idx: Any,
    validation_idx: Any,
    embargo: float,
    cutoff: Any = None,
    bar_times: Any = None,
) -> None:
    """The hold-out invariants: training labels end before the cutoff T and before validation starts,
    and at least ``ceil(embargo * n_bars)`` bars lie strictly between the last training t1 and the first
    validation t0 (validation starts no earlier than that many bars after T when T is given)."""
    t0_ns, t1_ns, (train, valid) = _prepare(t0, t1, train_idx, validation_idx)
    check_disjoint(train, valid, "validation")
    if len(train) == 0 or len(valid) == 0:
        raise LeakageError("holdout", f"empty split: {len(train)} training and {len(valid)} validation rows")
    calendar = bar_calendar(t0_ns, t1_ns, bar_times)
    n_embargo = embargo_bars(embargo, len(calendar))
    if cutoff is not None:
        cut = int(to_ns([cutoff], "cutoff")[0])
        bad = train[(t0_ns[train] >= cut) | (t1_ns[train] >= cut)]
        if len(bad):
            raise LeakageError(
                "holdout-cutoff",
                f"{len(bad)} training rows start or end at or after the cutoff {_fmt(cut)}; "
                f"first: {_describe(np.sort(bad), t0_ns, t1_ns)}",
                np.sort(bad),
            )
        position = int(np.searchsorted(calendar, cut))
        start = int(calendar[position + n_embargo]) if position + n_embargo < len(calendar) else _FAR_FUTURE
        bad = valid[t0_ns[valid] < start]
        if len(bad):
            raise LeakageError(
                "holdout-embargo",
                f"{len(bad)} validation rows start before {_fmt(start)}, {n_embargo} bars after the cutoff "
                f"{_fmt(cut)}; first: {_describe(np.sort(bad), t0_ns, t1_ns)}",
                np.sort(bad),
            )
    first_valid = int(t0_ns[valid].min())
    bad = train[t1_ns[train] >= first_valid]
    if len(bad):
        raise LeakageError(
            "holdout-overlap",
            f"{len(bad)} training labels end at or after the first validation t0 {_fmt(first_valid)}; "
            f"first: {_describe(np.sort(bad), t0_ns, t1_ns)}",
            np.sort(bad),
        )
    last_train = int(t1_ns[train].max())
    limit = embargo_limit(calendar, last_train, n_embargo) if n_embargo else last_train
    bad = valid[t0_ns[valid] <= limit]
    if len(bad):
        raise LeakageError(
            "holdout-embargo",
            f"{len(bad)} validation rows start within the embargo of {n_embargo} bars after the last training "
            f"t1 {_fmt(last_train)}; first: {_describe(np.sort(bad), t0_ns, t1_ns)}",
            np.sort(bad),
        )
