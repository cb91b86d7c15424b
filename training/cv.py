"""Purged K-fold and combinatorial purged cross-validation (AFML ch. 7 and 12) as scikit-learn splitters.

Folds are contiguous blocks of distinct decision dates (t0), so all symbols of a date fall in one fold.
For each block of test samples with span [min t0, max t1] (the maximum over the block, not the t1 of its
last row), a training sample is purged when its [t0, t1] overlaps that span, and samples starting within
the embargo, ``ceil(embargo * n_bars)`` bars after the block's max t1, are dropped too. Rows may come in
any order: everything is positional, aligned with the ``t1`` series given at construction.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils.validation import _num_samples

from training.invariants import bar_calendar, date_blocks, embargo_bars, embargo_limit, to_ns


def date_groups(t0: np.ndarray, n_groups: int) -> np.ndarray:
    """Group id (0 … n_groups-1) of each sample: contiguous runs of distinct dates, about equal in samples."""
    dates, inverse, counts = np.unique(t0, return_inverse=True, return_counts=True)
    if len(dates) < n_groups:
        raise ValueError(f"cannot split {len(dates)} distinct dates into {n_groups} folds")
    before = np.cumsum(counts) - counts
    bounds = np.searchsorted(before, np.arange(1, n_groups) * len(t0) / n_groups)  # first date of groups 1..
    for k in range(len(bounds)):  # every group keeps at least one date
        low = bounds[k - 1] + 1 if k else 1
        bounds[k] = min(max(bounds[k], low), len(dates) - (n_groups - 1 - k))
    return np.searchsorted(bounds, np.arange(len(dates)), side="right")[inverse]


class _PurgedSplitter(BaseCrossValidator):
    """Shared validation and purging; subclasses choose which groups are tested together."""

    def __init__(self, n_splits: int, t1: pd.Series, embargo: float, bar_times: Any) -> None:
        if not isinstance(n_splits, int | np.integer) or n_splits < 2:
            raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
        if not isinstance(t1, pd.Series):
            raise TypeError("t1 must be a pandas Series of label end times indexed by t0 (the decision times)")
        if embargo < 0:
            raise ValueError(f"embargo must be a non-negative fraction, got {embargo}")
        self.n_splits = int(n_splits)
        self.t1 = t1
        self.embargo = embargo
        self.bar_times = bar_times
        self._t0 = to_ns(t1.index, "t0 (index of t1)")
        self._t1 = to_ns(t1, "t1")
        bad = np.flatnonzero(self._t1 < self._t0)
        if len(bad):
            raise ValueError(f"{len(bad)} samples end before they start (t1 < t0), first at position {bad[0]}")
        self._calendar = bar_calendar(self._t0, self._t1, bar_times)
        self.embargo_bars_ = embargo_bars(embargo, len(self._calendar))

    def _check_rows(self, X: Any) -> None:
        n = _num_samples(X)
        if n != len(self._t0):
            raise ValueError(
                f"X has {n} rows but t1 has {len(self._t0)}: t1 must be positionally aligned with the rows of X"
            )

    def _train_indices(self, test: np.ndarray) -> np.ndarray:
        """Rows not in ``test``, minus those purged or embargoed against each test block."""
        keep = np.ones(len(self._t0), dtype=bool)
        keep[test] = False
        for block in date_blocks(self._t0, test):
            start, end = self._t0[block].min(), self._t1[block].max()
            keep &= ~((self._t0 <= end) & (self._t1 >= start))
            if self.embargo_bars_:
                limit = embargo_limit(self._calendar, int(end), self.embargo_bars_)
                keep &= ~((self._t0 > end) & (self._t0 <= limit))
        return np.flatnonzero(keep)

    def sample_groups(self) -> np.ndarray:
        """Fold / group id of every sample (positional)."""
        return date_groups(self._t0, self.n_splits)

    def group_indices(self) -> list[np.ndarray]:
        """Row positions of each group, in time order."""
        groups = self.sample_groups()
        return [np.flatnonzero(groups == g) for g in range(self.n_splits)]

    def _test_sets(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (train, test) row positions; ``y`` and ``groups`` are ignored (time comes from ``t1``)."""
        self._check_rows(X)
        for test in self._test_sets():
            yield self._train_indices(test), test


class PurgedKFold(_PurgedSplitter):
    """K contiguous folds of dates; each training set purged and embargoed against its test fold.

    ``t1``: label end times indexed by t0, positionally aligned with the rows of X (any order).
    ``embargo``: fraction of the bar calendar (distinct ``bar_times``, else of t0 and t1) dropped after each
    test fold's max t1, rounded up to whole bars (never zero when positive).
    """

    def __init__(self, n_splits: int = 5, t1: pd.Series | None = None, embargo: float = 0.01, bar_times: Any = None):
        if t1 is None:
            raise TypeError("PurgedKFold needs t1: a Series of label end times indexed by t0")
        super().__init__(n_splits, t1, embargo, bar_times)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def _test_sets(self) -> Iterator[np.ndarray]:
        yield from self.group_indices()


class CombinatorialPurgedKFold(_PurgedSplitter):
    """CPCV: N date groups, every choice of k test groups (C(N, k) splits), purged per contiguous test block.

    Each group is tested in phi = k/N * C(N, k) splits, which :meth:`backtest_paths` arranges into phi
    complete backtest paths.
    """

    def __init__(
        self,
        n_splits: int = 6,
        n_test_groups: int = 2,
        t1: pd.Series | None = None,
        embargo: float = 0.01,
        bar_times: Any = None,
    ):
        if t1 is None:
            raise TypeError("CombinatorialPurgedKFold needs t1: a Series of label end times indexed by t0")
        super().__init__(n_splits, t1, embargo, bar_times)
        if not isinstance(n_test_groups, int | np.integer) or not 1 <= n_test_groups < n_splits:
            raise ValueError(f"n_test_groups must be an integer in [1, n_splits), got {n_test_groups!r}")
        self.n_test_groups = int(n_test_groups)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return math.comb(self.n_splits, self.n_test_groups)

    def test_group_combinations(self) -> list[tuple[int, ...]]:
        """The test groups of each split, in split order."""
        return list(itertools.combinations(range(self.n_splits), self.n_test_groups))

    def _test_sets(self) -> Iterator[np.ndarray]:
        indices = self.group_indices()
        for combination in self.test_group_combinations():
            yield np.sort(np.concatenate([indices[g] for g in combination]))

    @property
    def n_paths(self) -> int:
        return math.comb(self.n_splits - 1, self.n_test_groups - 1)  # = k/N * C(N, k)

    def backtest_paths(self) -> np.ndarray:
        """Array (n_paths, N): entry [p, g] is the split whose predictions fill group g on path p.

        Path p takes, for each group, the p-th split (in split order) that tests that group, so every
        group appears exactly once per path and every (split, test group) pair is used exactly once.
        """
        by_group: list[list[int]] = [[] for _ in range(self.n_splits)]
        for split, combination in enumerate(self.test_group_combinations()):
            for g in combination:
                by_group[g].append(split)
        return np.array(by_group, dtype=np.int64).T


def make_cv(cv: Mapping[str, Any], t1: pd.Series, bar_times: Any = None) -> _PurgedSplitter:
    """The splitter chosen by ``config["cv"]`` (method, n_splits, embargo, cpcv_test_groups)."""
    if cv["method"] == "purged_kfold":
        return PurgedKFold(n_splits=cv["n_splits"], t1=t1, embargo=cv["embargo"], bar_times=bar_times)
    if cv["method"] == "cpcv":
        return CombinatorialPurgedKFold(
            n_splits=cv["n_splits"],
            n_test_groups=cv["cpcv_test_groups"],
            t1=t1,
            embargo=cv["embargo"],
            bar_times=bar_times,
        )
    raise ValueError(f"cv.method must be purged_kfold or cpcv, got {cv['method']!r}")
