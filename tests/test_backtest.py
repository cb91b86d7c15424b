"""The backtest in plain arrays gives, to the last bit, what the DataFrame formulation of its rules gives.

A training run backtests every path over all its rows at once (25M at the scale benchmark), so the
backtest sorts an index and gathers four columns instead of sorting a DataFrame; the CV and hold-out
metrics must not move by a digit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from training.model.backtest import Backtest, backtest


def _dataframe_backtest(symbol: pd.Series, t0: pd.Series, position, next_ret, cost_bps: float) -> Backtest:
    """The reference: the rules written with a sorted DataFrame and pandas' groupby."""
    frame = pd.DataFrame({"symbol": symbol.array, "t0": t0.array, "position": position, "ret": next_ret})
    frame = frame.sort_values(["symbol", "t0"], kind="stable")
    previous = frame.groupby("symbol", sort=False, observed=True)["position"].shift(1).fillna(0.0)
    traded = (frame["position"] - previous).abs()
    frame["pnl"] = frame["position"] * frame["ret"] - traded * cost_bps / 1e4
    daily = frame.groupby("t0")["pnl"].mean().sort_index()
    equity = (1.0 + daily).cumprod()
    std = float(daily.std(ddof=1)) if len(daily) > 1 else 0.0
    return Backtest(
        daily=daily,
        sharpe=float(daily.mean() / std * np.sqrt(252)) if std > 0 else 0.0,
        max_drawdown=float((equity / equity.cummax() - 1.0).min()) if len(equity) else 0.0,
        total_return=float(equity.iloc[-1] - 1.0) if len(equity) else 0.0,
        turnover=float(traded.mean()) if len(traded) else 0.0,
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 12), st.sampled_from([-1.0, 0.0, 0.5, 1.0])),
        min_size=1,
        max_size=120,
    ),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["object", "sorted categories", "shuffled categories"]),
    st.sampled_from([0.0, 7.5]),
)
def test_the_array_backtest_equals_the_dataframe_backtest(rows, seed, symbol_kind, cost):
    names = [f"S{i}" for i, _, _ in rows]  # repeated (symbol, date) pairs included: ties keep their order
    if symbol_kind == "object":
        symbol = pd.Series(names, dtype=object)
    else:
        categories = sorted(set(names))
        if symbol_kind == "shuffled categories":
            categories = list(np.random.default_rng(seed).permutation(categories))
        symbol = pd.Series(pd.Categorical(names, categories=categories))
    t0 = pd.Series(pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta([d for _, d, _ in rows], unit="D"))
    position = np.array([p for _, _, p in rows])
    next_ret = np.random.default_rng(seed).normal(0.0, 0.02, len(rows))
    ours = backtest(symbol, t0, position, next_ret, cost)
    theirs = _dataframe_backtest(symbol, t0, position, next_ret, cost)
    pd.testing.assert_series_equal(ours.daily, theirs.daily, check_exact=True)
    assert ours.metrics() == theirs.metrics()


def test_a_large_panel_in_dataset_order_backtests_bit_for_bit():
    """Thousands of rows a date (pandas' groupby mean sums each date's rows in their order), rows ordered
    by (date, symbol) as the trainer holds them."""
    rng = np.random.default_rng(3)
    dates = pd.date_range("2020-01-01", periods=60, tz="UTC")
    symbols = [f"S{i:04d}" for i in range(2_000)]
    t0 = pd.Series(np.repeat(dates, len(symbols)))
    symbol = pd.Series(pd.Categorical(np.tile(symbols, len(dates)), categories=symbols))
    position = (rng.random(len(t0)) > 0.5).astype(np.float64)
    next_ret = rng.normal(0.0, 0.02, len(t0))
    ours, theirs = (
        backtest(symbol, t0, position, next_ret, 10.0),
        _dataframe_backtest(symbol, t0, position, next_ret, 10.0),
    )
    pd.testing.assert_series_equal(ours.daily, theirs.daily, check_exact=True)
    assert ours.metrics() == theirs.metrics()
