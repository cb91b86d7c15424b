"""PSR, DSR, MinTRL and PBO: the papers' worked example, internal consistency, and synthetic strategies.

Worked example (Bailey and López de Prado 2014, "The Deflated Sharpe Ratio", section "A numerical
example"): N = 100 trials whose annualised Sharpe ratios have variance 1/2, a selected strategy with an
annualised Sharpe ratio of 2.5 over 5 years of daily returns (T = 1250, 250 days a year), skewness -3 and
kurtosis 10. The paper finds SR0 = 0.1132 (daily) and DSR = 0.9004.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from training.model.overfitting import MIN_PBO_CONFIGURATIONS, pbo_of
from training.model.validity import (
    Moments,
    dsr,
    expected_max_sharpe,
    min_track_record,
    null_sharpe_variance,
    pbo_cscv,
    psr,
)


def test_the_deflated_sharpe_ratio_papers_numerical_example():
    daily = 2.5 / math.sqrt(250)
    moments = Moments(n=1250, sharpe=daily, skew=-3.0, kurtosis=10.0)
    variance = 0.5 / 250  # annualised variance 1/2 in daily units
    assert expected_max_sharpe(100, variance) == pytest.approx(0.1132, abs=5e-5)
    assert dsr(moments, trials=100, variance=variance) == pytest.approx(0.9004, abs=5e-5)


def test_psr_is_one_half_at_its_own_benchmark_and_min_trl_is_where_psr_reaches_95_percent():
    moments = Moments(n=500, sharpe=0.08, skew=-0.5, kurtosis=5.0)
    assert psr(moments, benchmark=0.08) == pytest.approx(0.5)
    needed = min_track_record(moments, alpha=0.05)
    at_min = Moments(n=needed, sharpe=0.08, skew=-0.5, kurtosis=5.0)
    assert psr(at_min) == pytest.approx(0.95, abs=1e-9)  # PSR uses sqrt(n - 1); MinTRL = 1 + ...
    assert min_track_record(Moments(500, -0.01, 0.0, 3.0)) == math.inf
    normal = Moments(n=1000, sharpe=0.05, skew=0.0, kurtosis=3.0)  # normal returns: the classic sqrt(n) z-score
    expected = stats.norm.cdf(0.05 * math.sqrt(999) / math.sqrt(1 + 0.05**2 / 2))
    assert psr(normal) == pytest.approx(expected)


def test_one_trial_deflates_nothing():
    moments = Moments(n=1000, sharpe=0.05, skew=0.0, kurtosis=3.0)
    assert dsr(moments, trials=1) == psr(moments)


returns_series = arrays(np.float64, st.integers(5, 400), elements=st.floats(-0.2, 0.2, allow_subnormal=False))


@settings(max_examples=200, deadline=None)
@given(returns=returns_series, trials=st.integers(1, 5000), more=st.integers(1, 5000))
def test_for_fixed_returns_adding_a_trial_never_raises_dsr(returns, trials, more):
    moments = Moments.of(returns)
    before, after = dsr(moments, trials), dsr(moments, trials + more)
    assert (math.isnan(before) and math.isnan(after)) or after <= before
    if math.isfinite(before):
        assert before <= psr(moments)  # deflating never helps


def test_the_null_variance_holds_with_few_trials_and_has_no_switch():
    """V[SR] depends on the series' own T only: Sharpe ratios a last bit apart change nothing, and two
    trials deflate a visible amount (a variance from two near-equal Sharpe ratios deflated nothing)."""
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0005, 0.01, 500)
    moments = Moments.of(returns)
    assert null_sharpe_variance(500) == pytest.approx(1 / 499)
    nudged = Moments(moments.n, np.nextafter(moments.sharpe, 1.0), moments.skew, moments.kurtosis)
    assert dsr(nudged, 2) == pytest.approx(dsr(moments, 2), abs=1e-9)
    assert psr(moments) - dsr(moments, 2) > 0.005
    assert [round(dsr(moments, n), 6) for n in (1, 2, 3, 5, 10)] == sorted(
        (round(dsr(moments, n), 6) for n in (1, 2, 3, 5, 10)), reverse=True
    )
    with pytest.raises(ValueError, match="must be positive"):
        dsr(moments, 2, variance=0.0)


def test_the_null_variance_is_the_spread_of_skill_less_sharpe_ratios():
    """What the null variance stands for: Sharpe ratios of T skill-less returns spread with variance 1/(T-1)."""
    sharpes = [Moments.of(series).sharpe for series in np.random.default_rng(8).normal(0, 0.01, (4000, 250))]
    assert np.var(sharpes) == pytest.approx(null_sharpe_variance(250), rel=0.08)


def _frame(columns: int, dates: int = 600, seed: int = 0) -> pd.DataFrame:
    index = pd.date_range("2020-01-01", periods=dates, freq="D", tz="UTC")
    return pd.DataFrame(np.random.default_rng(seed).normal(0, 0.01, (dates, columns)), index=index)


@pytest.mark.parametrize("columns", [1, 2, MIN_PBO_CONFIGURATIONS - 1])
def test_pbo_below_the_minimum_configurations_is_not_computed_and_says_why(columns):
    pbo, logits = pbo_of(_frame(columns))
    assert math.isnan(pbo["pbo"]) and len(logits) == 0 and pbo["configurations"] == columns
    assert f"{columns} configuration(s) tried" in pbo["reason"]
    assert f"at least {MIN_PBO_CONFIGURATIONS}" in pbo["reason"]


def test_pbo_from_the_minimum_configurations_comes_with_its_spread():
    pbo, logits = pbo_of(_frame(MIN_PBO_CONFIGURATIONS))
    assert 0 <= pbo["pbo"] <= 1 and pbo["combinations"] == math.comb(16, 8) == len(logits)
    quantiles = [pbo["logits"][f"logit_q{q}"] for q in ("05", "25", "50", "75", "95")]
    assert quantiles == sorted(quantiles) and quantiles[0] < quantiles[-1]
    assert pbo["pbo"] == pytest.approx(float((logits <= 0).mean()))
    short, _ = pbo_of(_frame(MIN_PBO_CONFIGURATIONS, dates=20))
    assert math.isnan(short["pbo"]) and "share 20 dates" in short["reason"]


def loop_pbo(returns: np.ndarray, s: int) -> float:
    """CSCV written as the paper's steps, one combination at a time (the vectorised version must agree)."""
    blocks = np.array_split(returns[len(returns) % s :], s)
    below = []
    for chosen in itertools.combinations(range(s), s // 2):
        inside = np.concatenate([blocks[i] for i in chosen])
        outside = np.concatenate([blocks[i] for i in range(s) if i not in chosen])
        best = np.argmax(inside.mean(axis=0) / inside.std(axis=0, ddof=1))
        oos = outside.mean(axis=0) / outside.std(axis=0, ddof=1)
        w = stats.rankdata(oos)[best] / (returns.shape[1] + 1)
        below.append(math.log(w / (1 - w)) <= 0)
    return float(np.mean(below))


def test_pbo_agrees_with_the_papers_steps_one_combination_at_a_time():
    returns = np.random.default_rng(5).normal(0.0, 0.01, (403, 7))
    assert pbo_cscv(returns, partitions=8).pbo == pytest.approx(loop_pbo(returns, 8))


def noise(seed: int, periods: int = 1000, strategies: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, (periods, strategies))


def best_of(returns: np.ndarray) -> tuple[Moments, float]:
    """The strategy with the best Sharpe ratio, and the variance of the Sharpe ratios over all of them."""
    moments = [Moments.of(returns[:, j]) for j in range(returns.shape[1])]
    sharpes = np.array([m.sharpe for m in moments])
    return moments[int(np.argmax(sharpes))], float(np.var(sharpes, ddof=1))


def test_pure_noise_tried_many_times_is_flagged_as_luck():
    pbos, dsrs, psrs = [], [], []
    for seed in range(10):
        returns = noise(seed)
        best, variance = best_of(returns)
        pbos.append(pbo_cscv(returns, partitions=10).pbo)
        dsrs.append(dsr(best, trials=returns.shape[1], variance=variance))
        psrs.append(psr(best))
    assert np.mean(pbos) >= 0.45  # the in-sample winner is out-of-sample median or worse about half the time
    assert np.mean(dsrs) <= 0.55  # deflated by 40 trials, the best of noise is no better than a coin
    assert np.mean(psrs) >= 0.9  # while its undeflated PSR looks convincing: why the deflation matters


def test_a_strategy_with_planted_skill_survives_deflation_and_is_not_overfit():
    for seed in range(10):
        returns = noise(seed)
        returns[:, 5] += 0.0025  # a daily Sharpe ratio of about 0.25 among 39 skill-less strategies
        best, variance = best_of(returns)
        assert best == Moments.of(returns[:, 5])
        assert pbo_cscv(returns, partitions=10).pbo <= 0.05
        assert dsr(best, trials=returns.shape[1], variance=variance) >= 0.95
