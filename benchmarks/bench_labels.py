"""Triple-barrier labels over a synthetic panel: the vectorised labeller vs per-event Python loops.

Two per-event references, each timed on a subsample of events and scaled linearly to the full panel:
the textbook loop (AFML snippet 3.2 style: slice each event's price path as a pandas frame and find the
first touch of each barrier), and a tight scalar loop over numpy arrays, the fastest plain-Python form.
All use the default label configuration (fixed 2 % barriers, h = 5, high/low touch).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from benchmarks.common import Result, best_of
from training.config import default_config
from training.labeling.triple_barrier import LabelParams, triple_barrier_labels


def synthetic_panel(n_symbols: int, n_bars: int, seed: int = 0) -> pd.DataFrame:
    """Random-walk daily bars stamped at 16:00 New York, as UTC, on business days."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2000-01-03", periods=n_bars).tz_localize("America/New_York") + pd.Timedelta(hours=16)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.015, (n_symbols, n_bars)), axis=1)).ravel()
    wick = np.abs(rng.normal(0, 0.008, (2, close.size)))
    symbols = np.array([f"S{i:04d}" for i in range(n_symbols)], dtype=object)
    return pd.DataFrame(
        {
            "symbol": np.repeat(symbols, n_bars),
            "event_timestamp": pd.DatetimeIndex(np.tile(days.tz_convert("UTC").asi8, n_symbols), tz="UTC"),
            "high": close * (1 + wick[0]),
            "low": close * (1 - wick[1]),
            "close": close,
        }
    )


def pandas_loop_labels(bars: pd.DataFrame, params: LabelParams, events: int) -> int:
    """Per event, the pandas slice of bars D+1..D+h and the first timestamp touching each barrier."""
    done, h = 0, params.horizon
    for _, g in bars.groupby("symbol", sort=True):
        g = g.sort_values("event_timestamp").set_index("event_timestamp")
        for i in range(len(g) - h):
            entry = g["close"].iloc[i]
            path = g.iloc[i + 1 : i + h + 1]
            first_lower = path.index[path["low"] <= entry * (1 - params.stop_loss)].min()
            first_upper = path.index[path["high"] >= entry * (1 + params.profit_taking)].min()
            if pd.isna(first_lower) and pd.isna(first_upper):
                t1, label = path.index[-1], 0
            elif pd.isna(first_upper) or (not pd.isna(first_lower) and first_lower <= first_upper):
                t1, label = first_lower, -1
            else:
                t1, label = first_upper, 1
            _ = (g.index[i], t1, label, g["close"].loc[t1] / entry - 1)
            done += 1
            if done >= events:
                return done
    return done


def loop_labels(bars: pd.DataFrame, params: LabelParams, events: int) -> int:
    """The tight per-event loop on the first ``events`` decisions; returns how many it labelled."""
    done = 0
    for _, g in bars.groupby("symbol", sort=True):
        g = g.sort_values("event_timestamp")
        high, low, close = g["high"].to_numpy(), g["low"].to_numpy(), g["close"].to_numpy()
        stamps = g["event_timestamp"].to_numpy()
        for i in range(len(g) - params.horizon):
            entry = close[i]
            upper, lower = entry * (1 + params.profit_taking), entry * (1 - params.stop_loss)
            label, end = 0, i + params.horizon
            for k in range(i + 1, i + params.horizon + 1):
                if low[k] <= lower:
                    label, end = -1, k
                    break
                if high[k] >= upper:
                    label, end = 1, k
                    break
            _ = (stamps[i], stamps[end], label, close[end] / entry - 1)
            done += 1
            if done >= events:
                return done
    return done


def _scaled(loop, bars: pd.DataFrame, params: LabelParams, events: int, total: int) -> tuple[float, int]:
    start = time.perf_counter()
    done = loop(bars, params, events)
    return (time.perf_counter() - start) * total / done, done


def run(quick: bool) -> list[Result]:
    n_symbols, n_bars = (20, 2500) if quick else (1000, 2500)
    bars = synthetic_panel(n_symbols, n_bars)
    config = default_config().labels.model_dump()
    params = LabelParams.from_config(config)
    seconds, labels = best_of(lambda: triple_barrier_labels(bars, config), repeat=3)
    size = f"{len(bars):,} bars ({n_symbols} symbols x {n_bars}), {len(labels):,} labels"
    results = []
    for name, loop, events, target in (
        ("per-event loop, pandas slices (AFML 3.2 style)", pandas_loop_labels, 2_000, "ratio <= 0.01"),
        ("per-event loop, scalars over numpy arrays", loop_labels, 20_000 if quick else 200_000, "context only"),
    ):
        loop_seconds, looped = _scaled(loop, bars, params, events, len(labels))
        results.append(
            Result(
                benchmark="triple-barrier labels",
                size=size,
                subject="training.labeling.triple_barrier (vectorised)",
                subject_seconds=seconds,
                reference=name,
                reference_seconds=loop_seconds,
                target=f"subject about 1 s at 2.5 M bars; {target}",
                notes=f"loop timed on {looped:,} events, scaled linearly to {len(labels):,}; subject best of 3",
            )
        )
    return results
