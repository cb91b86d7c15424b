"""Compute the indicators of the definition table with TA-Lib, one symbol at a time.

TA-Lib is the engine, so values are TA-Lib's by construction; this module only feeds it contiguous
float64 slices per symbol, calls each (function, parameters) once however many features share it
(BBANDS feeds five), applies the formulas of the table, and blanks every value inside its warm-up.
All TA-Lib functions used are causal: the value at bar t reads bars ≤ t only.

Speed (see ``benchmarks/bench_indicators.py``): every TA-Lib output is copied straight into one
preallocated (features x bars) block that becomes the result frame without another copy, formulas
run per symbol on outputs still in cache, and a panel already sorted by (symbol, event_timestamp) is
not re-sorted. TA-Lib's Cython functions are called without the pandas/polars dispatch wrapper that
``talib.SMA`` & co. add around them; the C code and the results are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from training.indicators.definitions import INDICATORS, Indicator
from training.panels import run_starts

if TYPE_CHECKING:
    import pandas as pd

Arrays = Mapping[str, np.ndarray]
BAR_COLUMNS = ("open", "high", "low", "close", "volume")


def _bb_width(outputs: Arrays, bars: Arrays, out: np.ndarray) -> None:
    np.subtract(outputs["upperband"], outputs["lowerband"], out=out)
    np.divide(out, outputs["middleband"], out=out)


def _bb_pct_b(outputs: Arrays, bars: Arrays, out: np.ndarray) -> None:
    width = outputs["upperband"] - outputs["lowerband"]
    np.subtract(bars["close"], outputs["lowerband"], out=out)
    np.divide(out, width, out=out)


def _volume_change(outputs: Arrays, bars: Arrays, out: np.ndarray) -> None:
    """volume / previous volume − 1; NaN after a zero-volume bar: a change from nothing is undefined, not inf.

    NaN (a NULL in the table) drops the row from training and makes serving refuse it, as the on-demand
    view does for the volume ratios of a zero-volume bar (:mod:`training.indicators.scale_free`).
    """
    volume = bars["volume"]
    previous = volume[:-1]
    out[:] = np.nan
    np.divide(volume[1:], previous, out=out[1:], where=previous > 0)
    out[1:] -= 1.0


def _high_low_ratio(outputs: Arrays, bars: Arrays, out: np.ndarray) -> None:
    np.divide(bars["high"], bars["low"], out=out)


def _close_open_ratio(outputs: Arrays, bars: Arrays, out: np.ndarray) -> None:
    np.divide(bars["close"], bars["open"], out=out)


# Formula name -> function(TA-Lib outputs by name, bar columns, out): writes the values into ``out``.
# Formulas are elementwise over bars, or read earlier bars only, and declare that reach as ``shift``.
FORMULAS: dict[str, Callable[[Arrays, Arrays, np.ndarray], None]] = {
    "bb_width": _bb_width,
    "bb_pct_b": _bb_pct_b,
    "volume_change": _volume_change,
    "high_low_ratio": _high_low_ratio,
    "close_open_ratio": _close_open_ratio,
}


def _call_key(indicator: Indicator) -> tuple:
    return (indicator.function, indicator.inputs, tuple(sorted(indicator.params.items())))


_OUTPUT_NAMES: dict[str, list[str]] = {}


def _output_names(function: str) -> list[str]:
    if function not in _OUTPUT_NAMES:
        from talib import abstract

        _OUTPUT_NAMES[function] = list(abstract.Function(function).output_names)
    return _OUTPUT_NAMES[function]


def _talib_function(name: str) -> Callable:
    """TA-Lib's Cython function itself, without the wrapper that only converts pandas/polars Series."""
    import talib

    function = getattr(talib, name)
    return getattr(function, "__wrapped__", function)


@dataclass
class _Call:
    """One TA-Lib call per symbol: its outputs go to block rows (``direct``) and to the formulas reading them."""

    function: Callable
    inputs: tuple[str, ...]
    params: dict[str, float]
    names: list[str]
    direct: dict[str, np.ndarray]
    formulas: list[tuple[Callable, np.ndarray]]


def input_columns(indicators: tuple[Indicator, ...] = INDICATORS) -> tuple[str, ...]:
    """Bar columns the given indicators read, in the order of ``BAR_COLUMNS``."""
    needed = {c for i in indicators for c in i.inputs}
    return tuple(c for c in BAR_COLUMNS if c in needed) + tuple(sorted(needed - set(BAR_COLUMNS)))


def _plan(indicators: tuple[Indicator, ...], block: np.ndarray) -> tuple[list[_Call], list, list]:
    """Group the table into distinct TA-Lib calls; say where every value lands in ``block``."""
    calls: dict[tuple, _Call] = {}
    bar_formulas: list[tuple[Callable, np.ndarray]] = []  # formulas over bars only
    copies: list[tuple[np.ndarray, np.ndarray]] = []  # a feature repeating another's TA-Lib output
    for row, indicator in enumerate(indicators):
        if indicator.function is None:
            bar_formulas.append((FORMULAS[indicator.formula], block[row]))
            continue
        key = _call_key(indicator)
        if key not in calls:
            names = _output_names(indicator.function)
            calls[key] = _Call(
                _talib_function(indicator.function), indicator.inputs, dict(indicator.params), names, {}, []
            )
        call = calls[key]
        if indicator.formula is not None:
            call.formulas.append((FORMULAS[indicator.formula], block[row]))
        else:
            output = indicator.output or call.names[0]
            if output in call.direct:
                copies.append((block[row], call.direct[output]))
            else:
                call.direct[output] = block[row]
    return list(calls.values()), bar_formulas, copies


def _compute_block(
    columns: dict[str, np.ndarray], starts: np.ndarray, ends: np.ndarray, indicators: tuple[Indicator, ...]
) -> np.ndarray:
    """(indicators x bars) values for bars grouped into contiguous symbol segments [start, end).

    Everything runs per symbol, formulas included, so no value ever reads another symbol's bars and
    each formula works on TA-Lib outputs that are still in cache.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    block = np.empty((len(indicators), n), dtype=np.float64)
    calls, bar_formulas, copies = _plan(indicators, block)
    jobs = [
        (
            c.function,
            [columns[name] for name in c.inputs],
            c.params,
            [(c.names.index(output), target) for output, target in c.direct.items()],
            c.names,
            c.formulas,
        )
        for c in calls
    ]
    any_formula = bool(bar_formulas) or any(c.formulas for c in calls)
    no_outputs: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            bars = {c: a[start:end] for c, a in columns.items()} if any_formula else no_outputs
            for function, arrays, params, direct, names, formulas in jobs:
                raw = function(*[a[start:end] for a in arrays], **params)
                if not isinstance(raw, tuple):
                    raw = (raw,)
                for position, target in direct:
                    target[start:end] = raw[position]
                if formulas:
                    outputs = dict(zip(names, raw, strict=True))
                    for formula, target in formulas:
                        formula(outputs, bars, target[start:end])
            for formula, target in bar_formulas:
                formula(no_outputs, bars, target[start:end])
    for target, source in copies:
        target[:] = source
    _blank_warmup(block, starts, ends, [i.lookback for i in indicators])
    return block


def _blank_warmup(block: np.ndarray, starts: np.ndarray, ends: np.ndarray, lookbacks: list[int]) -> None:
    """NaN for the first ``lookback`` bars of every symbol, each feature with its own lookback."""
    positions: dict[int, np.ndarray] = {}
    for row, lookback in enumerate(lookbacks):
        if lookback <= 0:
            continue
        if lookback not in positions:
            offsets = starts[:, None] + np.arange(lookback)[None, :]
            positions[lookback] = offsets[offsets < ends[:, None]]
        block[row, positions[lookback]] = np.nan


def compute_symbol(bars: Arrays, indicators: tuple[Indicator, ...] = INDICATORS) -> dict[str, np.ndarray]:
    """All indicators for one symbol's bars (oldest first); NaN inside each feature's warm-up."""
    columns = {c: np.ascontiguousarray(bars[c], dtype=np.float64) for c in input_columns(indicators)}
    n = len(next(iter(columns.values()))) if columns else 0
    block = _compute_block(columns, np.array([0]), np.array([n]), indicators)
    return {indicator.name: block[row] for row, indicator in enumerate(indicators)}


def _timestamp_keys(timestamps: pd.Series) -> np.ndarray:
    """Sortable int64 (datetime64, tz-aware or not) or plain values for any other dtype."""
    asi8 = getattr(timestamps.array, "asi8", None)
    return asi8 if asi8 is not None else timestamps.to_numpy()


def compute_panel(bars: pd.DataFrame, indicators: tuple[Indicator, ...] = INDICATORS) -> pd.DataFrame:
    """Indicators for a panel with columns symbol, event_timestamp and the bar columns the indicators read.

    Returns symbol, event_timestamp and one column per indicator, sorted by (symbol, event_timestamp),
    with a fresh RangeIndex. Symbols never mix: every TA-Lib call sees one symbol's contiguous history.
    A panel already in that order (as the features job reads it) is not re-sorted.
    """
    import pandas as pd

    needed = ("symbol", "event_timestamp", *input_columns(indicators))
    missing = [c for c in needed if c not in bars.columns]
    if missing:
        raise ValueError(f"compute_panel: missing column(s) {', '.join(missing)}")
    symbols = bars["symbol"].to_numpy()
    timestamps = bars["event_timestamp"]
    keys = _timestamp_keys(timestamps)
    new = run_starts(symbols)
    starts = np.flatnonzero(new)
    ordered = bool(np.all((keys[1:] > keys[:-1]) | new[1:])) and bool(
        np.all(symbols[starts[1:]] > symbols[starts[:-1]])
    )
    order = None
    if not ordered:
        codes, uniques = pd.factorize(symbols, sort=True)
        # Two stable passes (time, then symbol) equal np.lexsort; the symbol pass is a radix sort on
        # small integer codes, several times faster than lexsort on a shuffled panel.
        order = np.argsort(keys, kind="stable")
        order = order[np.argsort(codes.astype(np.min_scalar_type(len(uniques)))[order], kind="stable")]
        symbols, keys = symbols[order], keys[order]
        new = run_starts(symbols)
        starts = np.flatnonzero(new)
        if np.any((keys[1:] == keys[:-1]) & ~new[1:]):
            raise ValueError("compute_panel: duplicate (symbol, event_timestamp) rows")
    ends = np.append(starts[1:], len(symbols)) if len(starts) else starts.copy()

    columns = {}
    for c in input_columns(indicators):
        values = bars[c].to_numpy(dtype=np.float64)
        columns[c] = np.ascontiguousarray(values if order is None else values[order])
    block = _compute_block(columns, starts, ends, indicators)

    frame = pd.DataFrame(block.T, columns=[i.name for i in indicators], copy=False)
    # insert() copies, so the result never shares memory with ``bars``.
    frame.insert(0, "event_timestamp", timestamps.array if order is None else timestamps.array.take(order))
    frame.insert(0, "symbol", symbols)
    return frame
