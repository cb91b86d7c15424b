"""Small synthetic panels for the property tests of labels, weights, splits and splitters (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

SESSION_CLOSE_UTC = pd.Timedelta(hours=21)  # 16:00 New York in winter; only the order of stamps matters


def bar_panel(
    seed: int, n_symbols: int, n_bars: int | list[int], flat_share: float = 0.2, wide_share: float = 0.1
) -> pd.DataFrame:
    """Random daily bars: gaps of 1-9 days between bars, runs of flat bars (high = low = close), and some
    wide bars that can touch both barriers. Columns symbol, event_timestamp (tz-aware UTC), high, low, close."""
    rng = np.random.default_rng(seed)
    lengths = [n_bars] * n_symbols if isinstance(n_bars, int) else list(n_bars)
    frames = []
    for s, n in enumerate(lengths):
        gaps = rng.choice([1, 1, 1, 2, 3, 9], size=n)
        days = pd.Timestamp("2010-01-04", tz="UTC") + SESSION_CLOSE_UTC + pd.to_timedelta(np.cumsum(gaps), unit="D")
        flat = rng.random(n) < flat_share
        returns = np.where(flat, 0.0, rng.normal(0, 0.015, n))
        close = 50.0 * np.exp(np.cumsum(returns))
        spread = np.where(flat, 0.0, np.abs(rng.normal(0, 0.008, (2, n))))
        wide = rng.random(n) < wide_share
        spread[:, wide] = 0.05
        frames.append(
            pd.DataFrame(
                {
                    "symbol": f"S{s}",
                    "event_timestamp": days,
                    "high": close * (1 + spread[0]),
                    "low": close * (1 - spread[1]),
                    "close": close,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@st.composite
def panels(draw: st.DrawFn, max_symbols: int = 3, max_bars: int = 40) -> pd.DataFrame:
    n_symbols = draw(st.integers(1, max_symbols))
    lengths = draw(st.lists(st.integers(1, max_bars), min_size=n_symbols, max_size=n_symbols))
    seed = draw(st.integers(0, 2**32 - 1))
    flat = draw(st.sampled_from([0.0, 0.3, 1.0]))
    frame = bar_panel(seed, n_symbols, lengths, flat_share=flat)
    if draw(st.booleans()):
        frame = frame.sample(frac=1.0, random_state=seed % 1000).reset_index(drop=True)
    return frame


label_configs = st.fixed_dictionaries(
    {
        "profit_taking": st.sampled_from([0.005, 0.02, 0.05, 1.5]),
        "stop_loss": st.sampled_from([0.005, 0.02, 0.05, 1.0]),
        "horizon": st.integers(1, 6),
        "barriers": st.sampled_from(["fixed", "volatility"]),
        "volatility_span": st.integers(2, 6),
        "touch": st.sampled_from(["high_low", "close"]),
        "vertical_label": st.sampled_from(["zero", "sign"]),
    }
)


def sample_set(seed: int, n_dates: int, n_symbols: int, horizon: int, keep: float = 0.8) -> pd.DataFrame:
    """Samples (symbol, t0, t1) on a shared bar calendar, t1 1..horizon bars after t0, rows shuffled.

    Symbol S0 has a sample on every date; the others skip random dates, so dates differ in sample count.
    """
    rng = np.random.default_rng(seed)
    calendar = pd.Timestamp("2011-01-03", tz="UTC") + SESSION_CLOSE_UTC + pd.to_timedelta(np.arange(n_dates), "D")
    rows = []
    for s in range(n_symbols):
        for i in range(n_dates - horizon):
            if s == 0 or rng.random() < keep:
                rows.append((f"S{s}", calendar[i], calendar[i + int(rng.integers(1, horizon + 1))]))
    frame = pd.DataFrame(rows, columns=["symbol", "t0", "t1"])
    return frame.sample(frac=1.0, random_state=seed % 1000).reset_index(drop=True)


@st.composite
def sample_sets(draw: st.DrawFn, min_dates: int = 12) -> pd.DataFrame:
    n_dates = draw(st.integers(min_dates, 60))
    horizon = draw(st.integers(1, 6))
    return sample_set(draw(st.integers(0, 2**32 - 1)), n_dates, draw(st.integers(1, 4)), horizon)
