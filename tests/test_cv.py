"""Purged K-fold and CPCV: invariants on random panels, scikit-learn's splitter conventions (parameters,
clone, metadata routing, doctests), and canaries proving the invariant checks fail on the classic leaky
splitters."""

from __future__ import annotations

import doctest
import math
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import config_context
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks

import training.validation.purged_cv
from tests.synthetic import sample_set, sample_sets
from training.errors import InputError
from training.validation.purged_cv import CombinatorialPurgedKFold, PurgedKFold, date_groups, make_cv
from training.validation.split_invariants import (
    LeakageError,
    bar_calendar,
    check_embargo,
    check_no_overlap,
    check_split,
    embargo_bars,
    embargo_limit,
    to_ns,
)

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EMBARGOS = st.sampled_from([0.0, 0.001, 0.02, 0.1])


def t1_series(samples: pd.DataFrame) -> pd.Series:
    return pd.Series(samples.t1.to_numpy(), index=pd.DatetimeIndex(samples.t0))


def fold_indices(cv: PurgedKFold | CombinatorialPurgedKFold, samples: pd.DataFrame) -> list[np.ndarray]:
    ids = cv.fold_ids(samples.t0)
    return [np.flatnonzero(ids == g) for g in range(ids.max() + 1)]


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
    cv = PurgedKFold(n_splits=n_splits, embargo=embargo)
    splits = list(cv.split(samples, t1=t1_series(samples)))
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


@SETTINGS
@given(samples=sample_sets(), n_folds=st.integers(3, 6), data=st.data(), embargo=EMBARGOS)
def test_cpcv_invariants_and_paths(samples: pd.DataFrame, n_folds: int, data: st.DataObject, embargo: float) -> None:
    k = data.draw(st.integers(1, n_folds - 1))
    cv = CombinatorialPurgedKFold(n_folds=n_folds, n_test_folds=k, embargo=embargo)
    splits = list(cv.split(samples, t1=t1_series(samples)))
    assert len(splits) == cv.get_n_splits() == math.comb(n_folds, k)
    folds = fold_indices(cv, samples)
    for (train, test), combination in zip(splits, cv.test_fold_combinations(), strict=True):
        np.testing.assert_array_equal(test, np.sort(np.concatenate([folds[g] for g in combination])))
        check_split(samples.t0, samples.t1, train, test, embargo)
        assert_minimal(samples, train, test, embargo)
    paths = cv.backtest_paths()
    assert paths.shape == (cv.n_test_paths, n_folds) and cv.n_test_paths == k * math.comb(n_folds, k) // n_folds
    combinations = cv.test_fold_combinations()
    for path in paths:  # each fold once per path, predicted by a split that tested it
        for g, split in enumerate(path):
            assert g in combinations[split]
    pairs = {(int(s), g) for path in paths for g, s in enumerate(path)}
    assert len(pairs) == paths.size == sum(len(c) for c in combinations)  # every (split, fold) used once
    path_ids = cv.get_path_ids()  # skfolio's layout of the same assignment
    assert path_ids.shape == (cv.get_n_splits(), k)
    for split, (combination, ids) in enumerate(zip(combinations, path_ids, strict=True)):
        assert all(paths[p, g] == split for g, p in zip(combination, ids, strict=True))


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
    a = list(PurgedKFold(4, embargo=0.02).split(samples, t1=t1_series(samples)))
    b = list(PurgedKFold(4, embargo=0.02).split(ordered, t1=t1_series(ordered)))
    for (train_a, test_a), (train_b, test_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.sort(order[train_b]), train_a)
        np.testing.assert_array_equal(np.sort(order[test_b]), test_a)


def test_bad_arguments_are_named_when_splitting() -> None:
    samples = sample_set(5, 40, 2, 3)
    t1 = t1_series(samples)
    cv = PurgedKFold(3)
    with pytest.raises(ValueError, match=r"X has 10 rows but t1 has \d+"):
        next(cv.split(np.zeros((10, 2)), t1=t1))
    with pytest.raises(TypeError, match=r"needs t1.*enable_metadata_routing"):
        next(cv.split(samples))
    with pytest.raises(ValueError, match="t1 < t0"):
        next(cv.split(samples, t1=pd.Series(samples.t0.to_numpy(), index=pd.DatetimeIndex(samples.t1))))
    with pytest.raises(TypeError, match="Series"):
        next(cv.split(samples, t1=samples.t1.to_numpy()))
    with pytest.raises(TypeError, match="DatetimeIndex"):
        next(cv.split(samples, t1=samples.t1))  # indexed by row number, not by t0
    with pytest.raises(ValueError, match="does not use groups"):
        next(cv.split(samples, groups=samples.symbol, t1=t1))
    with pytest.raises(ValueError, match="does not use groups"):
        cv.get_n_splits(groups=samples.symbol)
    with pytest.raises(ValueError, match="n_test_folds"):
        next(CombinatorialPurgedKFold(4, 4).split(samples, t1=t1))
    with pytest.raises(ValueError, match="n_test_folds"):
        CombinatorialPurgedKFold(4, 0).get_n_splits()
    for bad in (PurgedKFold(1), PurgedKFold(2.5), PurgedKFold(3, embargo=-0.1), CombinatorialPurgedKFold(1, 1)):
        with pytest.raises(ValueError, match=r"n_splits|n_folds|embargo"):
            next(bad.split(samples, t1=t1))


def test_make_cv_follows_config() -> None:
    cv = make_cv({"method": "cpcv", "n_splits": 5, "embargo": 0.01, "cpcv_test_groups": 2})
    assert cv.get_params() == {"n_folds": 5, "n_test_folds": 2, "embargo": 0.01}
    assert cv.get_n_splits() == 10 and cv.n_test_paths == 4
    cv = make_cv({"method": "purged_kfold", "n_splits": 4, "embargo": 0.01, "cpcv_test_groups": 2})
    assert cv.get_params() == {"n_splits": 4, "embargo": 0.01} and cv.get_n_splits() == 4
    with pytest.raises(InputError, match=r"'cv\.method' must be one of purged_kfold, cpcv"):
        make_cv({"method": "kfold", "n_splits": 4, "embargo": 0.01, "cpcv_test_groups": 2})


# --- scikit-learn's conventions ----------------------------------------------------------------------------------

SPLITTERS = [PurgedKFold(n_splits=4, embargo=0.02), CombinatorialPurgedKFold(n_folds=5, n_test_folds=2, embargo=0.02)]
IDS = ["purged_kfold", "cpcv"]


@pytest.mark.parametrize(
    "check",
    [
        estimator_checks.check_parameters_default_constructible,
        estimator_checks.check_no_attributes_set_in_init,
        estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
        estimator_checks.check_get_params_invariance,
        estimator_checks.check_set_params,
    ],
    ids=lambda check: check.__name__,
)
@pytest.mark.parametrize("cv", SPLITTERS, ids=IDS)
def test_estimator_checks_on_parameters(cv, check) -> None:
    check(type(cv).__name__, cv)


@pytest.mark.parametrize("cv", SPLITTERS, ids=IDS)
def test_clone_and_params_round_trip(cv) -> None:
    samples = sample_set(9, 60, 2, 3)
    twin = clone(cv)
    assert twin is not cv and type(twin) is type(cv) and twin.get_params() == cv.get_params()
    assert repr(twin) == repr(cv) == f"{type(cv).__name__}({', '.join(f'{k}={v}' for k, v in cv.get_params().items())})"
    assert vars(twin) == cv.get_params()  # __init__ stores the parameters and nothing else
    for (a_train, a_test), (b_train, b_test) in zip(
        cv.split(samples, t1=t1_series(samples)), twin.split(samples, t1=t1_series(samples)), strict=True
    ):
        np.testing.assert_array_equal(a_train, b_train)
        np.testing.assert_array_equal(a_test, b_test)
    assert twin.set_params(embargo=0.0) is twin and twin.embargo == 0.0 and cv.embargo == 0.02
    assert type(twin)(**cv.get_params()).get_params() == cv.get_params()
    with pytest.raises(ValueError, match="invalid parameter 't1'"):
        twin.set_params(t1=t1_series(samples))


def _xy(samples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(samples), 3))
    return X, (X[:, 0] + rng.normal(scale=0.5, size=len(samples)) > 0).astype(int)


@pytest.mark.parametrize("cv", SPLITTERS, ids=IDS)
def test_cross_validate_routes_the_event_times(cv) -> None:
    samples = sample_set(9, 120, 3, 5)
    X, y = _xy(samples)
    t1 = t1_series(samples)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    with config_context(enable_metadata_routing=True):
        result = cross_validate(model, X, y, cv=cv, params={"t1": t1}, return_indices=True)
        aliased = cross_validate(
            model, X, y, cv=clone(cv).set_split_request(t1="label_end"), params={"label_end": t1}, return_indices=True
        )
    expected = list(cv.split(X, t1=t1))
    assert len(result["test_score"]) == cv.get_n_splits() == len(expected) and np.isfinite(result["test_score"]).all()
    for outcome in (result, aliased):
        for (train, test), got_train, got_test in zip(
            expected, outcome["indices"]["train"], outcome["indices"]["test"], strict=True
        ):
            np.testing.assert_array_equal(got_train, train)
            np.testing.assert_array_equal(got_test, test)
    with pytest.raises(TypeError, match="needs t1"):  # without routing the splitter says what is missing
        cross_validate(model, X, y, cv=cv)


@pytest.mark.parametrize("cv", SPLITTERS, ids=IDS)
def test_grid_search_routes_the_event_times(cv) -> None:
    samples = sample_set(9, 120, 3, 5)
    X, y = _xy(samples)
    with config_context(enable_metadata_routing=True):
        search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=cv).fit(X, y, t1=t1_series(samples))
    assert search.n_splits_ == cv.get_n_splits() and search.best_params_["C"] in (0.1, 1.0)
    assert f"split{cv.get_n_splits() - 1}_test_score" in search.cv_results_


def test_docstring_examples_are_collected() -> None:
    """``make test`` runs the Examples as doctests: pyproject collects this module with --doctest-modules."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"].split()
    assert Path(training.validation.purged_cv.__file__).relative_to(ROOT).as_posix() in options["testpaths"]
    assert sum(len(test.examples) for test in doctest.DocTestFinder().find(training.validation.purged_cv)) >= 5


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
    for test in fold_indices(PurgedKFold(n_splits, embargo=0.0), samples):
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
    leaky = PurgedKFold(n_splits=5, embargo=0.0)
    with pytest.raises(LeakageError, match="embargo") as info:
        for train, test in leaky.split(panel, t1=t1_series(panel)):
            check_no_overlap(panel.t0, panel.t1, train, test)  # purging alone is fine
            check_embargo(panel.t0, panel.t1, train, test, embargo=0.01)
    assert "1 bars" in str(info.value)
    tiny = PurgedKFold(n_splits=5, embargo=1e-6)  # never rounds to zero: at least one bar is dropped
    sizes = []
    for (train, test), (leaky_train, _) in zip(
        tiny.split(panel, t1=t1_series(panel)), leaky.split(panel, t1=t1_series(panel)), strict=True
    ):
        check_embargo(panel.t0, panel.t1, train, test, embargo=1e-6)
        sizes.append((len(train), len(leaky_train)))
    assert all(a <= b for a, b in sizes) and sum(a for a, _ in sizes) < sum(b for _, b in sizes)


def test_canary_shared_rows() -> None:
    samples = sample_set(3, 30, 1, 2)
    with pytest.raises(LeakageError, match="disjoint"):
        check_no_overlap(samples.t0, samples.t1, np.arange(10), np.arange(5, 15))
