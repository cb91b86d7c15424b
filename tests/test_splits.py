"""The time hold-out split, its invariants, and canaries proving check_holdout fails on leaky splits."""

from __future__ import annotations

import doctest
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import training.validation.holdout_split
from tests.synthetic import sample_set, sample_sets
from training.errors import InputError
from training.validation.holdout_split import holdout_split
from training.validation.split_invariants import LeakageError, bar_calendar, check_holdout, embargo_bars, to_ns

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    samples=sample_sets(min_dates=20),
    train_fraction=st.floats(0.2, 0.8),
    embargo=st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.1]),
)
def test_holdout_invariants(samples: pd.DataFrame, train_fraction: float, embargo: float) -> None:
    try:
        split = holdout_split(samples.t0, samples.t1, train_fraction, embargo)
    except InputError as exc:  # tiny panels: everything purged or nothing left after the embargo
        assert "purged" in str(exc) or "no validation" in str(exc)
        return
    split.check(samples.t0, samples.t1)
    check_holdout(samples.t0, samples.t1, split.train_idx, split.validation_idx, embargo, split.cutoff)
    train, valid = samples.iloc[split.train_idx], samples.iloc[split.validation_idx]
    assert (train.t1 < split.cutoff).all() and (train.t1 < split.validation_start).all()
    assert (valid.t0 >= split.validation_start).all()
    calendar = bar_calendar(to_ns(samples.t0), to_ns(samples.t1))
    assert split.embargo_bars == embargo_bars(embargo, len(calendar))
    if embargo > 0:
        assert split.embargo_bars >= 1
    steps = np.searchsorted(calendar, to_ns([split.validation_start])[0]) - np.searchsorted(
        calendar, to_ns([split.cutoff])[0]
    )
    assert steps == split.embargo_bars
    # all symbols of a date on one side of the cutoff; cutoff the best date for the fraction
    before = samples.t0 < split.cutoff
    assert samples.groupby("t0")["t0"].transform(lambda t: t < split.cutoff).eq(before).all()
    shares = [(samples.t0 < d).mean() for d in np.unique(samples.t0)[1:]]
    assert abs(before.mean() - train_fraction) <= min(abs(s - train_fraction) for s in shares) + 1e-12
    roles = pd.Series(split.role)
    assert (roles[(samples.t0 < split.cutoff).to_numpy() & (samples.t1 >= split.cutoff).to_numpy()] == "purged").all()
    assert sum(split.counts().values()) == len(samples)


def test_summary_and_timezone() -> None:
    samples = sample_set(1, 200, 3, 5)
    split = holdout_split(samples.t0, samples.t1)
    assert str(split.cutoff.tz) == "UTC"
    summary = split.summary()
    assert summary["embargo_bars"] == 2 and summary["rows"]["train"] > 0 and summary["rows"]["validation"] > 0
    assert summary["embargo"] == 0.01  # the fraction, not the count of embargoed rows
    assert 0.65 < (samples.t0 < split.cutoff).mean() < 0.75


def test_bad_input() -> None:
    samples = sample_set(1, 30, 1, 3)
    with pytest.raises(InputError, match="t1 <= t0"):
        holdout_split(samples.t1, samples.t0)
    with pytest.raises(InputError, match="train_fraction"):
        holdout_split(samples.t0, samples.t1, train_fraction=1.0)
    with pytest.raises(InputError, match="no validation"):
        holdout_split(samples.t0, samples.t1, 0.7, embargo=0.45)


def test_docstring_examples_are_collected() -> None:
    """``make test`` runs the Examples as doctests: pyproject collects this module with --doctest-modules."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"].split()
    assert Path(training.validation.holdout_split.__file__).relative_to(ROOT).as_posix() in options["testpaths"]
    assert sum(len(test.examples) for test in doctest.DocTestFinder().find(training.validation.holdout_split)) >= 5


# --- canaries: check_holdout must fail on each kind of leaky hold-out --------------------------------------------


@pytest.fixture
def samples() -> pd.DataFrame:
    return sample_set(11, 120, 3, 5)


def test_canary_no_purge(samples: pd.DataFrame) -> None:
    split = holdout_split(samples.t0, samples.t1, 0.7, 0.02)
    leaky_train = np.flatnonzero((samples.t0 < split.cutoff).to_numpy())  # purged rows kept
    with pytest.raises(LeakageError, match="holdout-cutoff") as info:
        check_holdout(samples.t0, samples.t1, leaky_train, split.validation_idx, 0.02, split.cutoff)
    assert len(info.value.rows) == split.counts()["purged"]
    with pytest.raises(LeakageError, match=r"holdout-(overlap|embargo)"):  # caught without the cutoff too
        check_holdout(samples.t0, samples.t1, leaky_train, split.validation_idx, 0.02)


def test_canary_zero_embargo(samples: pd.DataFrame) -> None:
    leaky = holdout_split(samples.t0, samples.t1, 0.7, 0.0)
    with pytest.raises(LeakageError, match="holdout-embargo"):
        check_holdout(samples.t0, samples.t1, leaky.train_idx, leaky.validation_idx, 0.02, leaky.cutoff)
    with pytest.raises(LeakageError, match="holdout-embargo"):
        check_holdout(samples.t0, samples.t1, leaky.train_idx, leaky.validation_idx, 0.02)


def test_canary_validation_before_cutoff(samples: pd.DataFrame) -> None:
    split = holdout_split(samples.t0, samples.t1, 0.7, 0.02)
    leaky_validation = np.r_[np.flatnonzero(split.mask("embargo")), split.validation_idx]
    with pytest.raises(LeakageError, match="holdout-embargo"):
        check_holdout(samples.t0, samples.t1, split.train_idx, leaky_validation, 0.02, split.cutoff)
    with pytest.raises(LeakageError, match="disjoint"):
        check_holdout(samples.t0, samples.t1, split.train_idx, split.train_idx[:3], 0.02)
