"""Bars indexed per symbol, the dataset's bar calendar, and the value comparison every recomputing check shares.

Every check locates dataset rows in their symbol's bar history (how many bars lie before a decision,
which bar is the newest at or before it); doing it one way, here, keeps the checks consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RTOL = 1e-9  # recomputed values must agree to this relative error (TA-Lib's tolerance in the SPEC)
MISSING = np.iinfo(np.int64).min  # NaT as int64


def ns(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Nanoseconds since the epoch (UTC); NaT becomes :data:`MISSING` instead of raising."""
    stamps = getattr(values, "array", None)
    if isinstance(stamps, pd.arrays.DatetimeArray) and stamps.unit == "ns":
        return stamps.asi8  # read in place (UTC for tz-aware columns): a 25M-row column is 200 MB a copy
    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert("UTC")
    return index.as_unit("ns").asi8


def by_symbol(symbols: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(symbol, its positions in ``symbols``, ascending) per distinct symbol, in symbol order: one sort, not a
    scan of every row per symbol."""
    codes, uniques = pd.factorize(np.asarray(symbols))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    names = [str(u) for u in uniques]
    return [(names[k], order[bounds[k] : bounds[k + 1]]) for k in sorted(range(len(names)), key=names.__getitem__)]


def calendar(frame: pd.DataFrame) -> np.ndarray:
    """The embargo's bar calendar (:mod:`training.leakage.ref_splits`): distinct t0 and t1 of all rows, in ns."""
    return np.union1d(np.unique(ns(frame["event_timestamp"])), np.unique(ns(frame["t1"])))  # one sort at a time


def mismatch(expected: np.ndarray, actual: np.ndarray, rtol: float = RTOL) -> np.ndarray:
    """True where two float arrays disagree: NaN matches NaN, inf matches itself, else relative error > rtol."""
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        close = np.abs(expected - actual) <= rtol * np.maximum(np.abs(expected), np.abs(actual))
    return ~((expected == actual) | (np.isnan(expected) & np.isnan(actual)) | close)


def relative_error(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(expected - actual) / np.maximum(np.abs(expected), np.abs(actual))


@dataclass(frozen=True)
class BarHistory:
    """Adjusted bars sorted by (symbol, time); ``span(symbol)`` is that symbol's rows, oldest first."""

    bars: pd.DataFrame
    ts: np.ndarray  # int64 ns, aligned with ``bars``
    spans: dict[str, tuple[int, int]]

    @classmethod
    def of(cls, bars: pd.DataFrame) -> BarHistory:
        ordered = bars.sort_values(["symbol", "event_timestamp"], kind="stable").reset_index(drop=True)
        symbols = ordered["symbol"].to_numpy()
        starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]]) if len(symbols) else np.array([], int)
        ends = np.r_[starts[1:], len(symbols)]
        spans = {str(symbols[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}
        stamps = ns(ordered["event_timestamp"])
        if (stamps == MISSING).any():
            raise ValueError(f"{int((stamps == MISSING).sum())} bars have no event_timestamp")
        return cls(bars=ordered, ts=stamps, spans=spans)

    @property
    def bar_times(self) -> pd.Series:
        return self.bars["event_timestamp"]

    def span(self, symbol: str) -> tuple[int, int]:
        return self.spans.get(symbol, (0, 0))

    def count_before(self, symbols: np.ndarray, stamps: np.ndarray, inclusive: bool) -> np.ndarray:
        """Per row: bars of its symbol strictly before (or at or before, ``inclusive``) its stamp (int64 ns)."""
        counts = np.zeros(len(stamps), dtype=np.int64)
        side = "right" if inclusive else "left"
        for symbol, rows in by_symbol(symbols):
            start, end = self.span(symbol)
            counts[rows] = np.searchsorted(self.ts[start:end], stamps[rows], side=side)
        return counts

    def newest_at_or_before(self, symbols: np.ndarray, stamps: np.ndarray) -> np.ndarray:
        """Per row: timestamp (ns) of its symbol's newest bar at or before its stamp, :data:`MISSING` if none."""
        counts = self.count_before(symbols, stamps, inclusive=True)
        out = np.full(len(stamps), MISSING, dtype=np.int64)
        for symbol, rows in by_symbol(symbols):
            rows = rows[counts[rows] > 0]
            start, _ = self.span(symbol)
            out[rows] = self.ts[start + counts[rows] - 1]
        return out
