"""Point-in-time check for any feature function: values at t must not depend on bars after t.

A feature known at bar t's close may read bars ≤ t only. The check recomputes the features with the
bars after t removed, and with them replaced by other bars, and demands that every value at or before
t is unchanged, bit for bit (NaN equals NaN). Computation runs forward from each symbol's first bar,
so an honest feature gives identical floats; any difference means the future leaked in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

ComputeFn = Callable[["pd.DataFrame"], "pd.DataFrame"]
KEYS = ("symbol", "event_timestamp")


def perturb_future(bars: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Bars after ``t`` replaced by different but still valid bars (prices scaled, volume changed)."""
    altered = bars.copy()
    future = (altered["event_timestamp"] > t).to_numpy()
    scale = np.where(np.arange(future.sum()) % 2 == 0, 1.37, 0.61)
    for column in ("open", "high", "low", "close"):
        if column in altered:
            altered.loc[future, column] = altered.loc[future, column].to_numpy() * scale
    if "volume" in altered:
        altered.loc[future, "volume"] = altered.loc[future, "volume"].to_numpy() * 3.0 + 1.0
    return altered


def _upto(features: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    past = features[features["event_timestamp"] <= t]
    return past.sort_values(list(KEYS), kind="stable").reset_index(drop=True)


def assert_point_in_time(
    compute: ComputeFn, bars: pd.DataFrame, t: pd.Timestamp, altered: pd.DataFrame | None = None
) -> None:
    """Raise AssertionError naming the feature, symbol and time when a value at or before ``t`` changes
    after the bars later than ``t`` are removed, or replaced by ``altered`` (default: :func:`perturb_future`).

    ``compute`` maps a panel (symbol, event_timestamp, bar columns) to a frame with symbol,
    event_timestamp and one column per feature. ``altered`` must hold the same bars up to ``t``.
    """
    expected = _upto(compute(bars), t)
    variants = {
        "bars after t removed": bars[bars["event_timestamp"] <= t],
        "bars after t altered": perturb_future(bars, t) if altered is None else altered,
    }
    for how, variant in variants.items():
        got = _upto(compute(variant.reset_index(drop=True)), t)
        if len(got) != len(expected) or not all(
            np.array_equal(got[k].to_numpy(), expected[k].to_numpy()) for k in KEYS
        ):
            raise AssertionError(f"{how}: the rows at or before {t} differ ({len(got)} vs {len(expected)} rows)")
        for column in expected.columns.drop(list(KEYS)):
            before = expected[column].to_numpy(dtype=np.float64)
            after = got[column].to_numpy(dtype=np.float64)
            same = (before == after) | (np.isnan(before) & np.isnan(after))
            if not same.all():
                i = int(np.flatnonzero(~same)[0])
                raise AssertionError(
                    f"look-ahead in {column!r} ({how}): at {expected.loc[i, 'symbol']} "
                    f"{expected.loc[i, 'event_timestamp']} the value changed from {before[i]!r} to {after[i]!r}"
                )
