"""Purged K-fold and combinatorial purged cross-validation (AFML ch. 7 and 12) as scikit-learn splitters.

Folds are contiguous blocks of distinct decision dates (t0), so all symbols of a date fall in one fold.
For each block of test samples with span [min t0, max t1] (the maximum over the block, not the t1 of its
last row), a training sample is purged when its [t0, t1] overlaps that span, and samples starting within
the embargo, ``ceil(embargo * n_bars)`` bars after the block's max t1, are dropped too. Rows may come in
any order: everything is positional, aligned with the ``t1`` series given to :meth:`split`.

The splitters follow ``sklearn.model_selection``: ``__init__`` stores parameters only (so ``clone`` and
``get_params``/``set_params`` work) and the event times reach ``split`` as metadata, the way ``groups``
reaches ``GroupKFold``: ``split(X, t1=t1)`` directly, or through scikit-learn's metadata routing.
"""

from __future__ import annotations

import inspect
import itertools
import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator

from training.config import CVConfig, cv_of
from training.validation.split_invariants import bar_calendar, date_blocks, embargo_bars, embargo_limit, to_ns


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


def _n_rows(X: Any) -> int:
    """Rows of an array-like, without scikit-learn's private helpers."""
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(X)


class _PurgedSplitter(BaseCrossValidator):
    """Parameters as in scikit-learn, event times as split metadata; subclasses choose the test sets.

    ``t1`` and ``bar_times`` are requested by default under metadata routing (as ``GroupKFold`` requests
    ``groups``); ``groups`` is not (``BaseCrossValidator`` marks it unused) and raises when given.
    """

    __metadata_request__split: ClassVar[dict[str, bool]] = {"t1": True, "bar_times": True}

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(name for name in signature.parameters if name != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters by name, as ``BaseEstimator.get_params`` (``deep`` has nothing to descend)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (validated when splitting, as in scikit-learn)."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; valid: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def _n_folds(self) -> int:
        raise NotImplementedError

    def _check_params(self, groups: Any) -> None:
        name = type(self).__name__
        if groups is not None:
            raise ValueError(
                f"{name} does not use groups: its folds are blocks of decision dates (the index of t1); pass t1"
            )
        embargo = self.embargo
        if not isinstance(embargo, numbers.Real) or isinstance(embargo, bool) or not embargo >= 0:
            raise ValueError(f"embargo must be a non-negative fraction, got {embargo!r}")

    def _event_times(self, X: Any, t1: Any, bar_times: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(t0, t1, bar calendar) as int64 ns, checked against X."""
        name = type(self).__name__
        if t1 is None:
            raise TypeError(
                f"{name}.split needs t1, a Series of label end times indexed by t0: call split(X, t1=t1), or under "
                "sklearn.set_config(enable_metadata_routing=True) pass params={'t1': t1} to cross_validate or "
                "t1=t1 to GridSearchCV.fit"
            )
        if not isinstance(t1, pd.Series) or not isinstance(t1.index, pd.DatetimeIndex):
            raise TypeError("t1 must be a pandas Series of label end times indexed by t0 (a DatetimeIndex)")
        t0_ns, t1_ns = to_ns(t1.index, "t0 (index of t1)"), to_ns(t1, "t1")
        bad = np.flatnonzero(t1_ns < t0_ns)
        if len(bad):
            raise ValueError(f"{len(bad)} samples end before they start (t1 < t0), first at position {bad[0]}")
        n = _n_rows(X)
        if n != len(t0_ns):
            raise ValueError(
                f"X has {n} rows but t1 has {len(t0_ns)}: t1 must be positionally aligned with the rows of X"
            )
        return t0_ns, t1_ns, bar_calendar(t0_ns, t1_ns, bar_times)

    def fold_ids(self, t0: Any) -> np.ndarray:
        """Fold id (0 … folds-1, in time order) of every sample, from its decision time ``t0`` (positional)."""
        self._check_params(None)
        return date_groups(to_ns(t0, "t0"), self._n_folds())

    def _test_sets(self, folds: list[np.ndarray]) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def split(
        self, X: Any, y: Any = None, groups: Any = None, *, t1: pd.Series | None = None, bar_times: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Generate purged and embargoed (train, test) row positions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Only its number of rows is used.
        y : array-like of shape (n_samples,), default=None
            Ignored; accepted for scikit-learn compatibility.
        groups : None
            Must be None: folds are blocks of dates, so groups would be silently overridden.
        t1 : pandas.Series of shape (n_samples,)
            Required. Label end times indexed by the decision times t0 (AFML's ``t1``), positionally
            aligned with the rows of X, in any order.
        bar_times : array-like of timestamps, default=None
            Bar calendar on which the embargo is counted; None counts on the distinct t0 and t1.

        Yields
        ------
        train : ndarray of int
            Training row positions, purged and embargoed against every contiguous block of the test set.
        test : ndarray of int
            Test row positions, sorted.
        """
        self._check_params(groups)
        t0_ns, t1_ns, calendar = self._event_times(X, t1, bar_times)
        n_embargo = embargo_bars(self.embargo, len(calendar))
        fold_of = date_groups(t0_ns, self._n_folds())
        folds = [np.flatnonzero(fold_of == g) for g in range(self._n_folds())]
        for test in self._test_sets(folds):
            keep = np.ones(len(t0_ns), dtype=bool)
            keep[test] = False
            for block in date_blocks(t0_ns, test):
                start, end = t0_ns[block].min(), t1_ns[block].max()
                keep &= ~((t0_ns <= end) & (t1_ns >= start))
                if n_embargo:
                    limit = embargo_limit(calendar, int(end), n_embargo)
                    keep &= ~((t0_ns > end) & (t0_ns <= limit))
            yield np.flatnonzero(keep), test


def _check_int(name: str, value: Any, low: int, high: float = math.inf) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not low <= value < high:
        bound = f"in [{low}, {high})" if high != math.inf else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


class PurgedKFold(_PurgedSplitter):
    """K contiguous folds of dates; each training set purged and embargoed against its test fold.

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds (>= 2), each a contiguous run of decision dates holding about 1/n_splits of the
        samples; every fold is the test set of one split.
    embargo : float, default=0.01
        Fraction of the bar calendar dropped after each test fold's max t1, rounded up to whole bars
        (never zero when positive).

    Notes
    -----
    The purge and the embargo are those of the module docstring (AFML 7.4): against each test fold's
    [min t0, max t1], over the label windows themselves, not a fixed number of rows.

    Event times are data, so they are arguments of :meth:`split`, not of the constructor:
    ``split(X, t1=t1, bar_times=None)`` with ``t1`` a Series of label end times indexed by t0. Under
    ``sklearn.set_config(enable_metadata_routing=True)`` both are requested by default, so
    ``cross_validate(est, X, y, cv=cv, params={"t1": t1})`` and ``GridSearchCV(est, grid, cv=cv).fit(X, y,
    t1=t1)`` route them here (``set_split_request`` can alias or refuse them). They are not read from X:
    a t1 column would reach the estimator as a feature. ``groups`` raises, ``y`` is ignored.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> t0 = pd.date_range("2024-01-01", periods=10, freq="D")
    >>> t1 = pd.Series(t0 + pd.Timedelta(days=1), index=t0)  # each label ends on the next bar
    >>> X, y = np.arange(20.0).reshape(10, 2), np.arange(10) % 2
    >>> cv = PurgedKFold(n_splits=3, embargo=0.1)
    >>> cv
    PurgedKFold(embargo=0.1, n_splits=3)
    >>> for train, test in cv.split(X, t1=t1):
    ...     print(train, test)
    [7 8 9] [0 1 2 3]
    [0 1 2] [4 5 6]
    [0 1 2 3 4 5] [7 8 9]

    Row 4 is purged from the first split (its label starts on the day the fold's last label ends), rows 5
    and 6 fall in the embargo of ``ceil(0.1 * 11) = 2`` bars. Through scikit-learn's metadata routing:

    >>> from sklearn import config_context
    >>> from sklearn.dummy import DummyClassifier
    >>> from sklearn.model_selection import cross_validate
    >>> with config_context(enable_metadata_routing=True):
    ...     scores = cross_validate(DummyClassifier(), X, y, cv=cv, params={"t1": t1})
    >>> len(scores["test_score"]) == cv.get_n_splits()
    True
    """

    def __init__(self, n_splits: int = 5, embargo: float = 0.01) -> None:
        self.n_splits = n_splits
        self.embargo = embargo

    def _n_folds(self) -> int:
        return int(self.n_splits)

    def _check_params(self, groups: Any) -> None:
        _check_int("n_splits", self.n_splits, 2)
        super()._check_params(groups)

    def get_n_splits(
        self, X: Any = None, y: Any = None, groups: Any = None, *, t1: Any = None, bar_times: Any = None
    ) -> int:
        """Number of splits :meth:`split` yields: ``n_splits``.

        Parameters
        ----------
        X, y, t1, bar_times : object
            Ignored (accepted because ``GridSearchCV`` passes the routed split metadata here too).
        groups : None
            Must be None, as in :meth:`split`.

        Returns
        -------
        int
        """
        self._check_params(groups)
        return int(self.n_splits)

    def _test_sets(self, folds: list[np.ndarray]) -> Iterator[np.ndarray]:
        yield from folds


class CombinatorialPurgedKFold(_PurgedSplitter):
    """CPCV: ``n_folds`` date folds, every choice of ``n_test_folds`` of them tested together.

    Parameters
    ----------
    n_folds : int, default=6
        Number of folds N (>= 2): contiguous runs of decision dates of about equal size.
    n_test_folds : int, default=2
        Folds k tested in each split, 1 <= k < N; there are C(N, k) splits.
    embargo : float, default=0.01
        Fraction of the bar calendar dropped after each contiguous block of test folds' max t1.

    Notes
    -----
    :meth:`get_n_splits` is the number of splits :meth:`split` yields, C(N, k). Each fold is tested in
    ``n_test_paths`` = k/N · C(N, k) splits, which :meth:`backtest_paths` arranges into as many complete
    backtest paths. Event times reach :meth:`split` as for :class:`PurgedKFold`.

    Compared with skfolio's ``CombinatorialPurgedCV(n_folds=10, n_test_folds=8, purged_size=0,
    embargo_size=0)``: the same parameter names and path count, but skfolio purges and embargoes a fixed
    number of observations around each test fold, with no label end times, so it can neither purge by the
    actual label windows nor keep all symbols of a date together; and its ``split(X, y)`` yields
    ``(train, [test per fold])``, which ``cross_validate`` cannot consume, while this one yields flat
    ``(train, test)`` pairs. skfolio's ``get_path_ids()`` (path id of each test fold of each split) is
    provided too; :meth:`backtest_paths` is the same assignment read per path.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> t0 = pd.date_range("2024-01-01", periods=8, freq="D")
    >>> t1 = pd.Series(t0 + pd.Timedelta(days=1), index=t0)
    >>> cv = CombinatorialPurgedKFold(n_folds=4, n_test_folds=2, embargo=0.0)
    >>> cv.get_n_splits(), cv.n_test_paths
    (6, 3)
    >>> for train, test in cv.split(np.zeros((8, 1)), t1=t1):
    ...     print(train, test)
    [5 6 7] [0 1 2 3]
    [7] [0 1 4 5]
    [3 4] [0 1 6 7]
    [0 7] [2 3 4 5]
    [0] [2 3 6 7]
    [0 1 2] [4 5 6 7]

    The folds are rows {0, 1}, {2, 3}, {4, 5} and {6, 7}; each contiguous block of test folds purges the
    labels overlapping it on both sides (the second split keeps row 7 only). The backtest paths, per path
    and in skfolio's layout (the path of each test fold of each split):

    >>> cv.backtest_paths()  # [path, fold] -> the split whose predictions fill that fold on that path
    array([[0, 0, 1, 2],
           [1, 3, 3, 4],
           [2, 4, 5, 5]])
    >>> cv.get_path_ids().tolist()
    [[0, 0], [1, 0], [2, 0], [1, 1], [2, 1], [2, 2]]
    """

    def __init__(self, n_folds: int = 6, n_test_folds: int = 2, embargo: float = 0.01) -> None:
        self.n_folds = n_folds
        self.n_test_folds = n_test_folds
        self.embargo = embargo

    def _n_folds(self) -> int:
        return int(self.n_folds)

    def _check_params(self, groups: Any) -> None:
        self._check_folds()
        super()._check_params(groups)

    def _check_folds(self) -> None:
        _check_int("n_folds", self.n_folds, 2)
        _check_int("n_test_folds", self.n_test_folds, 1, self.n_folds)

    def get_n_splits(
        self, X: Any = None, y: Any = None, groups: Any = None, *, t1: Any = None, bar_times: Any = None
    ) -> int:
        """Number of splits :meth:`split` yields: C(n_folds, n_test_folds).

        Parameters
        ----------
        X, y, t1, bar_times : object
            Ignored (accepted because ``GridSearchCV`` passes the routed split metadata here too).
        groups : None
            Must be None, as in :meth:`split`.

        Returns
        -------
        int
        """
        self._check_params(groups)
        return math.comb(int(self.n_folds), int(self.n_test_folds))

    def test_fold_combinations(self) -> list[tuple[int, ...]]:
        """The test folds of each split, in split order."""
        self._check_folds()
        return list(itertools.combinations(range(int(self.n_folds)), int(self.n_test_folds)))

    def _test_sets(self, folds: list[np.ndarray]) -> Iterator[np.ndarray]:
        for combination in self.test_fold_combinations():
            yield np.sort(np.concatenate([folds[g] for g in combination]))

    @property
    def n_test_paths(self) -> int:
        """Complete backtest paths: C(N-1, k-1) = k/N · C(N, k) (skfolio's name)."""
        return math.comb(int(self.n_folds) - 1, int(self.n_test_folds) - 1)

    def backtest_paths(self) -> np.ndarray:
        """Array (n_test_paths, n_folds): entry [p, g] is the split whose predictions fill fold g on path p.

        Path p takes, for each fold, the p-th split (in split order) that tests that fold, so every fold
        appears exactly once per path and every (split, test fold) pair is used exactly once.
        """
        by_fold: list[list[int]] = [[] for _ in range(int(self.n_folds))]
        for split, combination in enumerate(self.test_fold_combinations()):
            for g in combination:
                by_fold[g].append(split)
        return np.array(by_fold, dtype=np.int64).T

    def get_path_ids(self) -> np.ndarray:
        """Array (n_splits, n_test_folds): the path each test fold of each split belongs to (skfolio's layout)."""
        paths = self.backtest_paths()
        combinations = self.test_fold_combinations()
        ids = [[int(np.flatnonzero(paths[:, g] == s)[0]) for g in c] for s, c in enumerate(combinations)]
        return np.array(ids, dtype=np.int64)


def make_cv(cv: CVConfig | Mapping[str, Any]) -> PurgedKFold | CombinatorialPurgedKFold:
    """The splitter ``config.cv`` names, or a recorded cv mapping (a run's cv_splits.json, a leakage report)."""
    cv = cv if isinstance(cv, CVConfig) else cv_of(cv)
    if cv.method == "cpcv":
        return CombinatorialPurgedKFold(n_folds=cv.n_groups, n_test_folds=cv.test_groups, embargo=cv.embargo)
    return PurgedKFold(n_splits=cv.n_folds, embargo=cv.embargo)
