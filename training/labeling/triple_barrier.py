"""Triple-barrier labels of a panel of daily bars, vectorised over every event at once.

A sample is a decision at bar D's close: entry = close(D). The label looks only at bars D+1 … D+h of the
same symbol (bars, not calendar days), so nothing at or before D other than the entry (and, for
volatility-scaled barriers, the returns up to D that define sigma) can change it. The first barrier
touched decides: +1 upper, -1 lower (a bar touching both counts as lower, the conservative reading of an
OHLC bar whose intrabar path is unknown), else the vertical barrier at D+h gives 0 or the sign of the
return. Samples whose D+h lies past the symbol's last bar are dropped rather than guessed.

The only Python loop runs over the h horizon steps; each step compares every event at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from training.errors import InputError
from training.panels import symbol_runs

BARRIER_NAMES = ("upper", "lower", "vertical")  # category codes 0, 1, 2 of the `barrier` column
LABEL_COLUMNS = ("symbol", "t0", "t1", "label", "ret", "barrier", "upper", "lower")
_UPPER, _LOWER, _VERTICAL = 0, 1, 2


@dataclass(frozen=True)
class LabelParams:
    """The ``labels`` section of the configuration (defaults equal the SPEC)."""

    profit_taking: float = 0.02
    stop_loss: float = 0.02
    horizon: int = 5
    barriers: str = "fixed"  # fixed | volatility
    volatility_span: int = 20
    touch: str = "high_low"  # high_low | close
    vertical_label: str = "zero"  # zero | sign

    def __post_init__(self) -> None:
        if not (self.profit_taking > 0 and self.stop_loss > 0):
            raise InputError(
                f"profit_taking and stop_loss must be positive, got {self.profit_taking}, {self.stop_loss}"
            )
        if int(self.horizon) != self.horizon or self.horizon < 1:
            raise InputError(f"labels.horizon must be a whole number of bars >= 1, got {self.horizon}")
        if int(self.volatility_span) != self.volatility_span or self.volatility_span < 2:
            raise InputError(f"labels.volatility_span must be a whole number >= 2, got {self.volatility_span}")
        for name, allowed in (("barriers", ("fixed", "volatility")), ("touch", ("high_low", "close"))):
            if getattr(self, name) not in allowed:
                raise InputError(f"labels.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.vertical_label not in ("zero", "sign"):
            raise InputError(f"labels.vertical_label must be zero or sign, got {self.vertical_label!r}")

    @classmethod
    def from_config(cls, labels: Mapping[str, Any] | LabelParams | None) -> LabelParams:
        """From the ``labels`` section as a mapping (``config.labels.model_dump()``, a dataset's metadata);
        unknown keys are an error, missing keys take defaults."""
        if labels is None:
            return cls()
        if isinstance(labels, LabelParams):
            return labels
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(labels) - known)
        if unknown:
            raise InputError(f"unknown label parameters {unknown}; known: {', '.join(sorted(known))}")
        return cls(**labels)


@dataclass(frozen=True)
class BarPanel:
    """Bars sorted by (symbol, timestamp) as flat arrays, with where each symbol's run starts and ends.

    ``order[i]`` is the row of the caller's frame holding sorted bar i; ``codes`` index ``symbols``.
    """

    symbols: np.ndarray
    codes: np.ndarray
    ts: np.ndarray  # int64, the timestamp column's own unit
    order: np.ndarray | None  # None when the input was already sorted
    group_start: np.ndarray  # per bar: sorted position of its symbol's first bar
    group_end: np.ndarray  # per bar: sorted position of its symbol's last bar

    def take(self, column: pd.Series, positions: np.ndarray) -> pd.Series:
        """Values of a column of the caller's frame at sorted positions, keeping the column's dtype."""
        rows = positions if self.order is None else self.order[positions]
        return column.take(rows).reset_index(drop=True)

    def values(self, column: pd.Series, dtype: Any = np.float64) -> np.ndarray:
        array = column.to_numpy(dtype=dtype)
        return array if self.order is None else array[self.order]


def _timestamps(column: pd.Series) -> np.ndarray:
    if not pd.api.types.is_datetime64_any_dtype(column):
        raise InputError(f"event_timestamp must be a datetime column (tz-aware UTC), got {column.dtype}")
    index = pd.DatetimeIndex(column)
    if index.hasnans:
        raise InputError(f"event_timestamp has {int(index.isna().sum())} missing values")
    return index.asi8


def bar_panel(bars: pd.DataFrame) -> BarPanel:
    """Sort (only if needed) and index a panel of bars; duplicate (symbol, event_timestamp) rows are an error."""
    missing = [c for c in ("symbol", "event_timestamp") if c not in bars.columns]
    if missing:
        raise InputError(f"bars lack column(s) {', '.join(missing)}")
    codes, symbols = pd.factorize(bars["symbol"], sort=True)
    if (codes < 0).any():
        raise InputError(f"symbol is missing in {int((codes < 0).sum())} bar rows")
    codes = codes.astype(np.int64, copy=False)
    ts = _timestamps(bars["event_timestamp"])
    same = codes[1:] == codes[:-1]
    ordered = bool(np.all((codes[1:] > codes[:-1]) | (same & (ts[1:] > ts[:-1]))))
    order = None
    if not ordered:
        order = np.lexsort((ts, codes))
        codes, ts = codes[order], ts[order]
        same = codes[1:] == codes[:-1]
        duplicate = np.flatnonzero(same & (ts[1:] == ts[:-1]))
        if len(duplicate):
            first = order[duplicate[0]]
            raise InputError(
                f"{len(duplicate)} duplicate (symbol, event_timestamp) bars, first: "
                f"{bars['symbol'].iloc[first]!r} at {bars['event_timestamp'].iloc[first]}"
            )
    starts, ends = symbol_runs(codes)
    ends = ends - 1  # inclusive: the position of each symbol's last bar
    lengths = ends - starts + 1
    return BarPanel(
        symbols=np.asarray(symbols),
        codes=codes,
        ts=ts,
        order=order,
        group_start=np.repeat(starts, lengths),
        group_end=np.repeat(ends, lengths),
    )


def _prices(bars: pd.DataFrame, panel: BarPanel, name: str) -> np.ndarray:
    if name not in bars.columns:
        raise InputError(f"bars lack column {name!r}")
    try:
        values = panel.values(bars[name])
    except (TypeError, ValueError):
        raise InputError(f"column {name!r} must be numeric") from None
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise InputError(f"column {name!r} has {int(bad.sum())} missing, infinite or non-positive prices")
    return values


def ewm_volatility(close: np.ndarray, panel: BarPanel, span: int) -> np.ndarray:
    """Per bar D: EWM standard deviation (pandas ``ewm(span).std()``, bias-corrected) of the symbol's
    close-to-close returns up to and including D; NaN until ``span`` returns exist (the warm-up rule
    applied to any lookback)."""
    returns = np.empty_like(close)
    returns[1:] = close[1:] / close[:-1] - 1.0
    returns[panel.group_start == np.arange(len(close))] = np.nan  # no return on a symbol's first bar
    sigma = pd.Series(returns).groupby(panel.codes, sort=True).ewm(span=span, min_periods=span).std()
    return sigma.droplevel(0).sort_index().to_numpy()


def triple_barrier_labels(bars: pd.DataFrame, params: Mapping[str, Any] | LabelParams | None = None) -> pd.DataFrame:
    """One row per sample with a full horizon: symbol, t0, t1, label (int8), ret, barrier, upper, lower.

    ``bars`` holds symbol, event_timestamp (bar close), close, and high/low unless ``touch == "close"``;
    prices adjusted, rows in any order. ``params`` is ``config.labels.model_dump()``. ``ret`` = close(t1)/entry - 1;
    ``barrier`` is categorical upper/lower/vertical. Output is sorted by (symbol, t0).
    """
    p = LabelParams.from_config(params)
    panel = bar_panel(bars)
    n, h = len(panel.codes), int(p.horizon)
    close = _prices(bars, panel, "close")
    if p.touch == "high_low":
        high, low = _prices(bars, panel, "high"), _prices(bars, panel, "low")
    else:
        high = low = close

    m = max(n - h, 0)  # candidate decision bars 0..m-1; bar i + h must exist and share the symbol
    valid = np.arange(m) + h <= panel.group_end[:m]
    entry = close[:m]
    if p.barriers == "volatility":
        scale = ewm_volatility(close, panel, int(p.volatility_span))[:m]
        valid &= np.isfinite(scale) & (scale > 0)  # a zero sigma would put both barriers at the entry
        scale = np.where(valid, scale, 0.0)
    else:
        scale = 1.0
    upper = entry * (1.0 + p.profit_taking * scale)
    lower = entry * (1.0 - p.stop_loss * scale)

    step = np.zeros(m, dtype=np.int64)  # horizon step of the first touch, 0 = none yet
    kind = np.full(m, _VERTICAL, dtype=np.int8)
    for k in range(1, h + 1):
        hit_lower = low[k : m + k] <= lower
        hit_upper = high[k : m + k] >= upper
        first = (step == 0) & (hit_lower | hit_upper)
        step[first] = k
        kind[first] = np.where(hit_lower[first], _LOWER, _UPPER)

    events = np.flatnonzero(valid)
    step, kind = step[events], kind[events]
    end = events + np.where(step > 0, step, h)
    ret = close[end] / entry[events] - 1.0
    label = np.select([kind == _UPPER, kind == _LOWER], [1, -1], 0).astype(np.int8)
    if p.vertical_label == "sign":
        vertical = kind == _VERTICAL
        label[vertical] = np.sign(ret[vertical]).astype(np.int8)

    columns = {
        "symbol": panel.symbols[panel.codes[events]],
        "t0": panel.take(bars["event_timestamp"], events),
        "t1": panel.take(bars["event_timestamp"], end),
        "label": label,
        "ret": ret,
        "barrier": pd.Categorical.from_codes(kind, categories=list(BARRIER_NAMES)),
        "upper": upper[events],
        "lower": lower[events],
    }
    out = pd.DataFrame(index=pd.RangeIndex(len(events)))
    for name, values in columns.items():  # one block per column: no consolidation copy of 2.5 M-row arrays
        out[name] = values
    return out
