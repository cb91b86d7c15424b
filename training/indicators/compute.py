"""Compute the indicators of the definition table with TA-Lib, one symbol at a time.

TA-Lib is the engine, so values are TA-Lib's by construction; this module only feeds it contiguous
float64 arrays per symbol, calls each (function, parameters) once however many features share it
(BBANDS feeds five), applies the formulas of the table, and blanks every value inside its warm-up.
All TA-Lib functions used are causal: the value at bar t reads bars ≤ t only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from training.indicators.definitions import INDICATORS, Indicator

if TYPE_CHECKING:
    import pandas as pd

Arrays = Mapping[str, np.ndarray]
BAR_COLUMNS = ("open", "high", "low", "close", "volume")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


def _volume_change(outputs: Arrays, bars: Arrays) -> np.ndarray:
    volume = bars["volume"]
    change = np.full(volume.shape, np.nan)
    change[1:] = _ratio(volume[1:], volume[:-1]) - 1.0
    return change


FORMULAS: dict[str, Callable[[Arrays, Arrays], np.ndarray]] = {
    "bb_width": lambda o, b: _ratio(o["upperband"] - o["lowerband"], o["middleband"]),
    "bb_pct_b": lambda o, b: _ratio(b["close"] - o["lowerband"], o["upperband"] - o["lowerband"]),
    "volume_change": _volume_change,
    "high_low_ratio": lambda o, b: _ratio(b["high"], b["low"]),
    "close_open_ratio": lambda o, b: _ratio(b["close"], b["open"]),
}


def _call_key(indicator: Indicator) -> tuple:
    return (indicator.function, indicator.inputs, tuple(sorted(indicator.params.items())))


def compute_symbol(bars: Arrays, indicators: tuple[Indicator, ...] = INDICATORS) -> dict[str, np.ndarray]:
    """All indicators for one symbol's bars (oldest first); NaN inside each feature's warm-up."""
    import talib

    n = len(bars["close"])
    calls: dict[tuple, dict[str, np.ndarray]] = {}
    result: dict[str, np.ndarray] = {}
    for indicator in indicators:
        outputs: dict[str, np.ndarray] = {}
        if indicator.function is not None:
            key = _call_key(indicator)
            if key not in calls:
                function = getattr(talib, indicator.function)
                raw = function(*(bars[c] for c in indicator.inputs), **indicator.params)
                names = _output_names(indicator.function)
                calls[key] = dict(zip(names, raw if isinstance(raw, tuple) else (raw,), strict=True))
            outputs = calls[key]
        if indicator.formula is not None:
            values = FORMULAS[indicator.formula](outputs, bars)
        else:
            values = outputs[indicator.output or next(iter(outputs))]
        values = np.array(values, dtype=np.float64, copy=True)
        values[: min(indicator.lookback, n)] = np.nan
        result[indicator.name] = values
    return result


_OUTPUT_NAMES: dict[str, list[str]] = {}


def _output_names(function: str) -> list[str]:
    if function not in _OUTPUT_NAMES:
        from talib import abstract

        _OUTPUT_NAMES[function] = list(abstract.Function(function).output_names)
    return _OUTPUT_NAMES[function]


def compute_panel(bars: pd.DataFrame, indicators: tuple[Indicator, ...] = INDICATORS) -> pd.DataFrame:
    """Indicators for a panel with columns symbol, event_timestamp and the five bar columns.

    Returns symbol, event_timestamp and one column per indicator, sorted by (symbol, event_timestamp).
    Symbols never mix: every TA-Lib call sees one symbol's contiguous history.
    """
    import pandas as pd

    ordered = bars.sort_values(["symbol", "event_timestamp"], kind="stable").reset_index(drop=True)
    symbols = ordered["symbol"].to_numpy()
    columns = {c: np.ascontiguousarray(ordered[c].to_numpy(dtype=np.float64)) for c in BAR_COLUMNS}
    out = {i.name: np.empty(len(ordered)) for i in indicators}
    starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]]) if len(ordered) else np.array([], int)
    ends = np.r_[starts[1:], len(ordered)]
    for start, end in zip(starts, ends, strict=True):
        values = compute_symbol({c: a[start:end] for c, a in columns.items()}, indicators)
        for name, column in values.items():
            out[name][start:end] = column
    frame = pd.DataFrame(out)
    frame.insert(0, "event_timestamp", ordered["event_timestamp"].to_numpy())
    frame.insert(0, "symbol", symbols)
    return frame
