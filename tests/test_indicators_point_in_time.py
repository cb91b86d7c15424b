"""Point-in-time property of the indicator engine on random price paths, and a canary for the check itself.

The property: features at bar t never change when the bars after t are removed or altered. The same
check (``assert_point_in_time``) must fail on a deliberately leaky feature, otherwise passing it proves
nothing. The database-level version of the property lives in test_features_job.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from training.indicators.causality import assert_point_in_time, perturb_future
from training.indicators.compute import BAR_COLUMNS, compute_panel, compute_symbol
from training.indicators.definitions import FEATURE_NAMES, INDICATORS

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY0 = pd.Timestamp("2020-01-01 21:00", tz="UTC")


def _floats(n: int, low: float, high: float):
    return arrays(np.float64, n, elements=st.floats(low, high, allow_nan=False, allow_infinity=False))


@st.composite
def paths(draw, min_bars: int = 1, max_bars: int = 90) -> dict[str, np.ndarray]:
    """One symbol's valid bars: positive, high ≥ max(open, close), low ≤ min(open, close); volume may be 0."""
    n = draw(st.integers(min_bars, max_bars))
    close = 100.0 * np.exp(np.cumsum(draw(_floats(n, -0.15, 0.15))))
    open_ = close * np.exp(draw(_floats(n, -0.05, 0.05)))
    high = np.maximum(open_, close) * (1.0 + draw(_floats(n, 0.0, 0.05)))
    low = np.minimum(open_, close) * (1.0 - draw(_floats(n, 0.0, 0.05)))
    volume = draw(arrays(np.float64, n, elements=st.integers(0, 10**7).map(float)))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


@st.composite
def panels(draw) -> pd.DataFrame:
    """1-3 symbols of different lengths and start dates, rows shuffled."""
    names = draw(st.lists(st.sampled_from(["AAA", "BBB", "CCC"]), min_size=1, max_size=3, unique=True))
    frames = []
    for name in names:
        bars = draw(paths())
        first = DAY0 + pd.Timedelta(days=draw(st.integers(0, 40)))
        stamps = first + pd.to_timedelta(np.arange(len(bars["close"])), unit="D")
        frames.append(pd.DataFrame({"symbol": name, "event_timestamp": stamps, **bars}))
    panel = pd.concat(frames, ignore_index=True)
    return panel.sample(frac=1.0, random_state=draw(st.integers(0, 2**31 - 1))).reset_index(drop=True)


def _altered_future(panel: pd.DataFrame, t: pd.Timestamp, factor: float, volume_factor: float) -> pd.DataFrame:
    """Scaling a bar's four prices by one positive factor keeps it valid."""
    altered = panel.copy()
    future = altered["event_timestamp"] > t
    altered.loc[future, ["open", "high", "low", "close"]] *= factor
    altered.loc[future, "volume"] = altered.loc[future, "volume"] * volume_factor + 1.0
    return altered


@PROPERTY
@given(data=st.data())
def test_compute_panel_at_t_ignores_bars_after_t(data):
    panel = data.draw(panels())
    t = data.draw(st.sampled_from(sorted(panel["event_timestamp"].unique())))
    factor = data.draw(st.floats(0.2, 5.0))
    volume_factor = data.draw(st.floats(0.0, 10.0))
    assert_point_in_time(compute_panel, panel, t)
    assert_point_in_time(compute_panel, panel, t, altered=_altered_future(panel, t, factor, volume_factor))


@PROPERTY
@given(bars=paths(max_bars=120), data=st.data())
def test_compute_symbol_prefix_equals_full_history(bars, data):
    n = len(bars["close"])
    t = data.draw(st.integers(0, n - 1))
    full = compute_symbol(bars)
    prefix = compute_symbol({c: a[: t + 1] for c, a in bars.items()})
    other = {c: np.r_[a[: t + 1], a[t + 1 :][::-1]] for c, a in bars.items()}  # a different future
    changed = compute_symbol(other)
    for name in FEATURE_NAMES:
        np.testing.assert_array_equal(prefix[name], full[name][: t + 1], err_msg=name)
        np.testing.assert_array_equal(changed[name][: t + 1], full[name][: t + 1], err_msg=name)


@PROPERTY
@given(panel=panels())
def test_symbols_never_mix_and_row_order_does_not_matter(panel):
    features = compute_panel(panel)
    assert list(features.columns) == ["symbol", "event_timestamp", *FEATURE_NAMES]
    assert features["symbol"].is_monotonic_increasing
    for symbol, group in panel.groupby("symbol"):
        group = group.sort_values("event_timestamp")
        alone = compute_symbol({c: group[c].to_numpy() for c in BAR_COLUMNS})
        rows = features[features["symbol"] == symbol]
        assert rows["event_timestamp"].tolist() == group["event_timestamp"].tolist()
        for name in FEATURE_NAMES:
            np.testing.assert_array_equal(rows[name].to_numpy(), alone[name], err_msg=f"{symbol} {name}")


@PROPERTY
@given(bars=paths(min_bars=0, max_bars=40))
def test_every_feature_is_nan_exactly_within_its_warmup_when_inputs_are_generic(bars):
    """Leading NaNs are the table's lookback (fewer bars: all NaN); NaN later only from a 0/0 formula."""
    values = compute_symbol(bars)
    n = len(bars["close"])
    for indicator in INDICATORS:
        column = values[indicator.name]
        assert np.isnan(column[: indicator.lookback]).all(), indicator.name
        later = column[indicator.lookback :]
        if indicator.formula is None:
            assert not np.isnan(later).any(), indicator.name
    assert len(values["sma_5"]) == n


# --- canary: the check must catch a leak ---------------------------------------------------------


def _centered_mean(panel: pd.DataFrame) -> pd.DataFrame:
    """A 5-bar moving average centred on t: reads two bars after t."""
    ordered = panel.sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)
    leaky = ordered.groupby("symbol")["close"].transform(lambda s: s.rolling(5, center=True).mean())
    return ordered[["symbol", "event_timestamp"]].assign(centered_sma_5=leaky)


def _tomorrow_close(panel: pd.DataFrame) -> pd.DataFrame:
    """Tomorrow's close shifted onto today: the classic off-by-one look-ahead."""
    ordered = panel.sort_values(["symbol", "event_timestamp"]).reset_index(drop=True)
    leaky = ordered.groupby("symbol")["close"].shift(-1)
    return ordered[["symbol", "event_timestamp"]].assign(next_close=leaky)


def _honest_plus(leak):
    """The real engine with one leaky column added: the leak must be found among honest features."""

    def compute(panel: pd.DataFrame) -> pd.DataFrame:
        honest = compute_panel(panel)
        return honest.merge(leak(panel), on=["symbol", "event_timestamp"], how="left")

    return compute


def _fixed_panel() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frames = []
    for name in ("AAA", "BBB"):
        close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, 60)))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": name,
                    "event_timestamp": DAY0 + pd.to_timedelta(np.arange(60), unit="D"),
                    "open": close,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": 1000.0 + np.arange(60),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(
    "leak, feature",
    [(_centered_mean, "centered_sma_5"), (_tomorrow_close, "next_close")],
    ids=["centered moving average", "shifted from the future"],
)
def test_canary_the_check_catches_a_leaky_feature(leak, feature):
    panel = _fixed_panel()
    t = panel["event_timestamp"].iloc[40]
    assert_point_in_time(compute_panel, panel, t)  # the honest engine passes on the same data
    with pytest.raises(AssertionError, match=f"look-ahead in '{feature}'"):
        assert_point_in_time(_honest_plus(leak), panel, t)
    with pytest.raises(AssertionError, match=f"look-ahead in '{feature}'"):
        assert_point_in_time(leak, panel, t, altered=perturb_future(panel, t))


def test_canary_a_leak_of_one_bar_is_caught_even_at_the_last_bar_before_the_cut():
    """Only the bar right at t sees the future: removing later bars must still expose it."""
    panel = _fixed_panel()
    t = panel["event_timestamp"].iloc[59 - 1]  # AAA's second-to-last bar
    with pytest.raises(AssertionError, match="bars after t removed"):
        assert_point_in_time(_tomorrow_close, panel, t)
