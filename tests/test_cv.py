"""Purged K-fold and CPCV: invariants on random panels, scikit-learn integration, and canaries proving the
invariant checks fail on the classic leaky splitters."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.synthetic import sample_set, sample_sets
from training.cv import CombinatorialPurgedKFold, PurgedKFold, date_groups, make_cv
from training.invariants import (
    LeakageError,
    bar_calendar,
    check_embargo,
    check_no_overlap,
    check_split,
    embargo_bars,
    embargo_limit,
    to_ns,
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EMBARGOS = st.sampled_from([0.0, 0.001, 0.02, 0.1])


def t1_series(samples: pd.DataFrame) -> pd.Series:
    return pd.Series(samples.t1.to_numpy(), index=pd.DatetimeIndex(samples.t0))


def assert_minimal(samples: pd.DataFrame, train: np.ndarray, test: np.ndarray, embargo: float) -> None:
    """Nothing is dropped that the invariants do not require (so the splitter is not merely over-purging)."""
    t0, t1 = to_ns(samples.t0), to_ns(samples.t1)
    calendar = bar_calendar(t0, t1)
    n_embargo = embargo_bars(embargo, len(calendar))
    required = np.zeros(len(samples), dtype=bool)
    required[test] = True
    test_dates = np.unique(t0[test])
    all_dates = np.unique(t0)
    is_test = np.isin(all_dates, test_dates)
    run = np.cumsum(is_test & ~np.r_[False, is_test[:-1]])
    for r in np.unique(run[is_test]):
        dates = all_dates[is_test & (run == r)]
        block = test[np.isin(t0[test], dates)]
        lo, hi = t0[block].min(), t1[block].max()
        required |= (t0 <= hi) & (t1 >= lo)
        if n_embargo:
            required |= (t0 > hi) & (t0 <= embargo_limit(calendar, hi, n_embargo))
    np.testing.assert_array_equal(np.sort(train), np.flatnonzero(~required))


@SETTINGS
@given(samples=sample_sets(), n_splits=st.integers(2, 5), embargo=EMBARGOS)
def test_purged_kfold_invariants(samples: pd.DataFrame, n_splits: int, embargo: float) -> None:
    cv = PurgedKFold(n_splits=n_splits, t1=t1_series(samples), embargo=embargo)
    splits = list(cv.split(samples))
    assert len(splits) == cv.get_n_splits() == n_splits
    tests = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(np.sort(tests), np.arange(len(samples)))  # test folds partition the rows
    previous_end = None
    for train, test in splits:
        assert train.dtype.kind == "i" and test.dtype.kind == "i" and len(test)
        check_split(samples.t0, samples.t1, train, test, embargo)
        assert_minimal(samples, train, test, embargo)
        dates = samples.t0.iloc[test]
        assert samples.t0.isin(dates).sum() == len(test)  # all symbols of a date in the same fold
        assert previous_end is None or dates.min() > previous_end  # contiguous, in time order
        previous_end = dates.max()
    if embargo > 0:
        assert cv.embargo_bars_ >= 1


@SETTINGS
@given(samples=sample_sets(), n_splits=st.integers(3, 6), data=st.data(), embargo=EMBARGOS)
def test_cpcv_invariants_and_paths(samples: pd.DataFrame, n_splits: int, data: st.DataObject, embargo: float) -> None:
    k = data.draw(st.integers(1, n_splits - 1))
    cv = CombinatorialPurgedKFold(n_splits=n_splits, n_test_groups=k, t1=t1_series(samples), embargo=embargo)
    splits = list(cv.split(samples))
    assert len(splits) == cv.get_n_splits() == math.comb(n_splits, k)
    groups = cv.group_indices()
    for (train, test), combination in zip(splits, cv.test_group_combinations(), strict=True):
        np.testing.assert_array_equal(test, np.sort(np.concatenate([groups[g] for g in combination])))
        check_split(samples.t0, samples.t1, train, test, embargo)
        assert_minimal(samples, train, test, embargo)
    paths = cv.backtest_paths()
    assert paths.shape == (cv.n_paths, n_splits) and cv.n_paths == k * math.comb(n_splits, k) // n_splits
    combinations = cv.test_group_combinations()
    for path in paths:  # each group once per path, predicted by a split that tested it
        for g, split in enumerate(path):
            assert g in combinations[split]
    pairs = {(int(s), g) for path in paths for g, s in enumerate(path)}
    assert len(pairs) == paths.size == sum(len(c) for c in combinations)  # every (split, group) used once


def test_date_groups_balance_and_cover() -> None:
    t0 = np.repeat(np.arange(10), [1, 1, 1, 1, 1, 1, 1, 1, 1, 50])  # one huge date at the end
    groups = date_groups(t0, 4)
    assert sorted(set(groups)) == [0, 1, 2, 3] and (np.diff(groups) >= 0).all()
    with pytest.raises(ValueError, match="distinct dates"):
        date_groups(np.arange(3), 4)


def test_rows_in_any_order_give_the_same_splits() -> None:
    samples = sample_set(5, 80, 3, 4)
    order = samples.sort_values(["t0", "symbol"]).index.to_numpy()
    ordered = samples.loc[order].reset_index(drop=True)
    a = list(PurgedKFold(4, t1=t1_series(samples), embargo=0.02).split(samples))
    b = list(PurgedKFold(4, t1=t1_series(ordered), embargo=0.02).split(ordered))
    for (train_a, test_a), (train_b, test_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.sort(order[train_b]), train_a)
        np.testing.assert_array_equal(np.sort(order[test_b]), test_a)


def test_length_mismatch_and_bad_arguments() -> None:
    samples = sample_set(5, 40, 2, 3)
    cv = PurgedKFold(3, t1=t1_series(samples))
    with pytest.raises(ValueError, match=r"X has 10 rows but t1 has \d+"):
        next(cv.split(np.zeros((10, 2))))
    with pytest.raises(ValueError, match="t1 < t0"):
        PurgedKFold(3, t1=pd.Series(samples.t0.to_numpy(), index=pd.DatetimeIndex(samples.t1)))
    with pytest.raises(TypeError, match="Series"):
        PurgedKFold(3, t1=samples.t1.to_numpy())
    with pytest.raises(ValueError, match="n_test_groups"):
        CombinatorialPurgedKFold(4, 4, t1=t1_series(samples))
    assert "PurgedKFold(" in repr(cv)


def test_make_cv_follows_config() -> None:
    samples = sample_set(5, 40, 2, 3)
    cv = make_cv({"method": "cpcv", "n_splits": 5, "embargo": 0.01, "cpcv_test_groups": 2}, t1_series(samples))
    assert isinstance(cv, CombinatorialPurgedKFold) and cv.get_n_splits() == 10 and cv.n_paths == 4
    cv = make_cv({"method": "purged_kfold", "n_splits": 4, "embargo": 0.01, "cpcv_test_groups": 2}, t1_series(samples))
    assert isinstance(cv, PurgedKFold) and cv.get_n_splits() == 4


@pytest.mark.parametrize(
    "make",
    [
        lambda t1: PurgedKFold(n_splits=4, t1=t1, embargo=0.02),
        lambda t1: CombinatorialPurgedKFold(n_splits=5, n_test_groups=2, t1=t1, embargo=0.02),
    ],
)
def test_runs_inside_sklearn(make) -> None:
    samples = sample_set(9, 120, 3, 5)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(samples), 3))
    y = (X[:, 0] + rng.normal(scale=0.5, size=len(samples)) > 0).astype(int)
    cv = make(t1_series(samples))
    scores = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression()), X, y, cv=cv)
    assert len(scores) == cv.get_n_splits() and np.isfinite(scores).all()
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=cv).fit(X, y)
    assert search.best_params_["C"] in (0.1, 1.0)
    assert len(search.cv_results_["split0_test_score"]) == 2


# --- canaries: the checks must fail on each classic leaky splitter -----------------------------------------------


@pytest.fixture
def panel() -> pd.DataFrame:
    return sample_set(3, 100, 3, 5)


def test_canary_naive_kfold(panel: pd.DataFrame) -> None:
    with pytest.raises(LeakageError, match="overlap") as info:
        for train, test in KFold(5).split(panel):
            check_no_overlap(panel.t0, panel.t1, train, test)
    assert len(info.value.rows) and "first:" in str(info.value)


def _leaky_splits(samples: pd.DataFrame, mode: str, n_splits: int = 4) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """PurgedKFold's folds with one classic bug each."""
    t0, t1 = to_ns(samples.t0), to_ns(samples.t1)
    for test in PurgedKFold(n_splits, t1=t1_series(samples), embargo=0.0).group_indices():
        first = test[np.argmin(t0[test])]
        last = test[np.argmax(t0[test])]  # the fold's last row in time
        start, end = t0[test].min(), t1[test].max()
        if mode == "purge_from_first_t1":
            start = t1[first]
        elif mode == "last_sample_t1":
            end = t1[last]
        keep = ~((t0 <= end) & (t1 >= start))
        keep[test] = False
        yield np.flatnonzero(keep), test


@pytest.mark.parametrize("mode", ["purge_from_first_t1", "last_sample_t1"])
def test_canary_wrong_purge_span(mode: str) -> None:
    samples = sample_set(3, 100, 3, 5)
    # the bug only matters when the first test row's t1 is after the fold's start / the last row is not the longest
    with pytest.raises(LeakageError, match="overlap"):
        for train, test in _leaky_splits(samples, mode):
            check_no_overlap(samples.t0, samples.t1, train, test)
    for train, test in _leaky_splits(samples, "correct"):  # the same harness without the bug passes
        check_no_overlap(samples.t0, samples.t1, train, test)


def test_canary_last_sample_t1_in_a_deterministic_panel() -> None:
    """On each date symbol B's label runs 4 bars and symbol A's 1 bar; A's row comes last."""
    days = pd.date_range("2012-01-02 21:00", periods=12, freq="D", tz="UTC")
    rows = [(s, days[i], days[i + (1 if s == "A" else 4)]) for i in range(8) for s in "BA"]
    samples = pd.DataFrame(rows, columns=["symbol", "t0", "t1"])
    test = np.arange(8)  # dates 0..3
    last_t1 = samples.t1[test[-1]]
    assert last_t1 == days[4] and samples.t1[test].max() == days[7]
    train = np.flatnonzero((samples.t0 > last_t1).to_numpy())  # purged only up to the last row's t1
    with pytest.raises(LeakageError, match="overlap") as info:
        check_no_overlap(samples.t0, samples.t1, train, test)
    assert samples.t0[info.value.rows[0]] == days[5]


def test_canary_zero_embargo(panel: pd.DataFrame) -> None:
    leaky = PurgedKFold(n_splits=5, t1=t1_series(panel), embargo=0.0)
    with pytest.raises(LeakageError, match="embargo") as info:
        for train, test in leaky.split(panel):
            check_no_overlap(panel.t0, panel.t1, train, test)  # purging alone is fine
            check_embargo(panel.t0, panel.t1, train, test, embargo=0.01)
    assert "1 bars" in str(info.value)
    assert PurgedKFold(n_splits=5, t1=t1_series(panel), embargo=1e-6).embargo_bars_ == 1  # never rounds to zero


def test_canary_shared_rows() -> None:
    samples = sample_set(3, 30, 1, 2)
    with pytest.raises(LeakageError, match="disjoint"):
        check_no_overlap(samples.t0, samples.t1, np.arange(10), np.arange(5, 15))
