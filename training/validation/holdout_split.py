"""The time hold-out split: train before a cutoff T, purge labels that reach T, embargo, then validate.

Splitting by time rather than by row keeps every symbol of a date on one side; purging drops training
samples whose label window reaches into the validation period; the embargo skips the bars right after T
whose features still overlap the training labels' information (serial correlation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.errors import InputError
from training.validation.split_invariants import bar_calendar, check_holdout, embargo_bars, to_ns

ROLES = ("train", "purged", "embargo", "validation")


@dataclass(frozen=True)
class HoldoutSplit:
    """Role of every sample (positionally aligned with the t0/t1 given) and the boundaries that set it.

    Made by :func:`holdout_split`; frozen, so the roles cannot drift from the boundaries after the fact.

    Attributes
    ----------
    cutoff : pandas.Timestamp
        T: training samples start and end before it.
    validation_start : pandas.Timestamp
        First decision time scored: ``embargo_bars`` bars after the cutoff on the bar calendar.
    embargo : float
        The embargo as a fraction of the bar calendar.
    embargo_bars : int
        ``ceil(embargo * n_bars)``, at least 1 when ``embargo`` > 0.
    n_bars : int
        Length of the bar calendar.
    role : ndarray of str
        Per sample: ``train`` (t0 < T and t1 < T), ``purged`` (t0 < T <= t1), ``embargo``
        (T <= t0 < validation_start) or ``validation`` (t0 >= validation_start).
    """

    cutoff: pd.Timestamp
    validation_start: pd.Timestamp
    embargo: float
    embargo_bars: int
    n_bars: int
    role: np.ndarray = field(repr=False)  # 'train' | 'purged' | 'embargo' | 'validation' per sample

    def mask(self, role: str) -> np.ndarray:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        return self.role == role

    @property
    def train_idx(self) -> np.ndarray:
        return np.flatnonzero(self.role == "train")

    @property
    def validation_idx(self) -> np.ndarray:
        return np.flatnonzero(self.role == "validation")

    def counts(self) -> dict[str, int]:
        return {role: int((self.role == role).sum()) for role in ROLES}

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for dataset metadata and MLflow."""
        return split_summary(self.cutoff, self.validation_start, self.embargo, self.embargo_bars, self.n_bars,
                             self.counts())  # fmt: skip

    def check(self, t0: Any, t1: Any, bar_times: Any = None) -> None:
        """Re-verify the invariants from the data (raises :class:`~split_invariants.LeakageError`)."""
        check_holdout(t0, t1, self.train_idx, self.validation_idx, self.embargo, self.cutoff, bar_times)


def split_summary(
    cutoff: pd.Timestamp, validation_start: pd.Timestamp, embargo: float, n_embargo: int, n_bars: int,
    counts: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    """The split as dataset metadata and MLflow record it."""
    return {
        "cutoff": cutoff.isoformat(),
        "validation_start": validation_start.isoformat(),
        "embargo": embargo,
        "embargo_bars": n_embargo,
        "n_bars": n_bars,
        "rows": counts,  # nested: the role "embargo" would overwrite the embargo fraction
    }


def timestamp_of(ns: int, tz: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(ns, tz="UTC")
    return stamp.tz_convert(tz) if tz is not None else stamp.tz_localize(None)


@dataclass(frozen=True)
class HoldoutBoundaries:
    """The split's boundaries (int64 ns), decided from the calendar alone, applied to any rows later.

    A universe's samples need not be in memory at once: the boundaries come from the distinct decision
    dates and their sample counts (a small array), then :meth:`roles` labels each partition's rows.
    """

    cutoff: int
    validation_start: int
    embargo: float
    embargo_bars: int
    n_bars: int

    def roles(self, t0_ns: np.ndarray, t1_ns: np.ndarray) -> np.ndarray:
        """``train`` (t0 < T and t1 < T), ``purged`` (t0 < T <= t1), ``embargo`` or ``validation`` per row."""
        role = np.full(len(t0_ns), "validation", dtype=object)
        role[t0_ns < self.validation_start] = "embargo"
        role[t0_ns < self.cutoff] = "purged"
        role[(t0_ns < self.cutoff) & (t1_ns < self.cutoff)] = "train"
        return role.astype(str)


def check_label_order(t0_ns: np.ndarray, t1_ns: np.ndarray) -> None:
    if (t1_ns <= t0_ns).any():
        raise InputError(f"{int((t1_ns <= t0_ns).sum())} samples have t1 <= t0")


def holdout_boundaries(
    dates: np.ndarray, counts: np.ndarray, calendar: np.ndarray, train_fraction: float = 0.7, embargo: float = 0.01
) -> HoldoutBoundaries:
    """Cutoff and validation start from the sorted distinct decision dates, their sample counts and the bar
    calendar (int64 ns); see :func:`holdout_split` for the rules."""
    if not 0 < train_fraction < 1:
        raise InputError(f"split.train_fraction must be between 0 and 1, got {train_fraction}")
    if len(dates) < 2:
        raise InputError(f"a time split needs samples on at least 2 dates, got {len(dates)}")
    before = np.cumsum(counts)[:-1] / counts.sum()  # share of samples before dates[1:]
    cutoff = int(dates[1 + int(np.argmin(np.abs(before - train_fraction)))])
    n_embargo = embargo_bars(embargo, len(calendar))
    position = int(np.searchsorted(calendar, cutoff)) + n_embargo
    if position >= len(calendar) or calendar[position] > dates[-1]:
        raise InputError(f"no validation samples remain after the cutoff and an embargo of {n_embargo} bars")
    return HoldoutBoundaries(cutoff, int(calendar[position]), float(embargo), n_embargo, len(calendar))


def holdout_split(
    t0: Any, t1: Any, train_fraction: float = 0.7, embargo: float = 0.01, bar_times: Any = None
) -> HoldoutSplit:
    """Split samples by time: train before a cutoff T, purge labels reaching T, embargo, then validate.

    Parameters
    ----------
    t0, t1 : array-like of timestamps, shape (n_samples,)
        Decision and label end times of each sample, in any order (the roles are positional).
    train_fraction : float, default=0.7
        T is the sample date that puts the share of samples with t0 < T closest to this (0 < f < 1), so
        all symbols of a date fall on one side.
    embargo : float, default=0.01
        Fraction of the bar calendar skipped after T before validation starts, rounded up to whole bars
        (at least one when positive).
    bar_times : array-like of timestamps, default=None
        Bar calendar on which the embargo is counted; None counts on the distinct t0 and t1.

    Returns
    -------
    HoldoutSplit
        The role of every sample and the boundaries; ``train_idx`` and ``validation_idx`` are positions.

    Raises
    ------
    InputError
        When t1 <= t0 for some sample, the lengths differ, fewer than two dates exist, nothing is left to
        validate after the embargo, or every training sample is purged.

    Notes
    -----
    Call as ``holdout_split(labels.t0, labels.t1, **config.split.model_dump())``. This is a single split, not a
    cross-validator: the folds of :mod:`training.validation.purged_cv` apply the same purge and embargo
    rules per test fold.

    Examples
    --------
    >>> import pandas as pd
    >>> t0 = pd.date_range("2024-01-01 21:00", periods=20, freq="D", tz="UTC")
    >>> split = holdout_split(t0, t0 + pd.Timedelta(days=2), train_fraction=0.7, embargo=0.1)
    >>> split.cutoff, split.embargo_bars, split.validation_start
    (Timestamp('2024-01-15 21:00:00+0000', tz='UTC'), 3, Timestamp('2024-01-18 21:00:00+0000', tz='UTC'))
    >>> split.counts()
    {'train': 12, 'purged': 2, 'embargo': 3, 'validation': 3}
    >>> split.validation_idx
    array([17, 18, 19])

    The two samples before T whose 2-day labels end at or after T are purged; the 3 embargo bars
    (ceil(0.1 * 22)) separate training from validation.
    """
    t0_ns, t1_ns = to_ns(t0, "t0"), to_ns(t1, "t1")
    if len(t0_ns) != len(t1_ns):
        raise InputError(f"t0 has {len(t0_ns)} rows but t1 has {len(t1_ns)}")
    check_label_order(t0_ns, t1_ns)
    dates, counts = np.unique(t0_ns, return_counts=True)
    bounds = holdout_boundaries(dates, counts, bar_calendar(t0_ns, t1_ns, bar_times), train_fraction, embargo)
    tz = pd.DatetimeIndex(t0).tz
    split = HoldoutSplit(
        cutoff=timestamp_of(bounds.cutoff, tz),
        validation_start=timestamp_of(bounds.validation_start, tz),
        embargo=bounds.embargo,
        embargo_bars=bounds.embargo_bars,
        n_bars=bounds.n_bars,
        role=bounds.roles(t0_ns, t1_ns),
    )
    if not split.counts()["train"]:
        raise InputError("every training sample was purged: the label horizon is too long for the training period")
    return split
