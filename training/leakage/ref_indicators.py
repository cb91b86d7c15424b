"""The audit's own indicator reference: the SPEC's 23 formulas as direct TA-Lib calls, slow but plain.

Written from the SPEC's table (``SMA(close, n)``, ``MACD(close, 12, 26, 9)``, ...), not from the project's
indicator engine, so a wrong parameter, a shifted output or a look-ahead in that engine shows here as a
mismatch. The definition table (``training.indicators.definitions``) is used only for what it specifies,
the scale-free form of each level (which reference, relative or ratio), never for how a value is computed.
The warm-up is measured, not read: the first bar at which every formula here is finite on a long series.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import talib

from training.indicators.definitions import INDICATORS

REFERENCES = ("close", "volume")


def indicator_series(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray
) -> dict[str, np.ndarray]:
    """Every raw indicator over one symbol's bars (oldest first), one TA-Lib call per formula of the SPEC."""
    o, h, lo, c, v = (np.ascontiguousarray(a, dtype=np.float64) for a in (o, h, lo, c, v))
    out = {f"sma_{n}": talib.SMA(c, timeperiod=n) for n in (5, 10, 20)}
    out |= {f"ema_{n}": talib.EMA(c, timeperiod=n) for n in (12, 26)}
    out["rsi_14"] = talib.RSI(c, timeperiod=14)
    out |= {f"roc_{n}": talib.ROC(c, timeperiod=n) for n in (1, 5, 10)}
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    out["atr_14"] = talib.ATR(h, lo, c, timeperiod=14)
    upper, middle, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    out |= {"bb_upper": upper, "bb_middle": middle, "bb_lower": lower}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["bb_width"] = (upper - lower) / middle
        out["bb_pct_b"] = (c - lower) / (upper - lower)
        out |= {f"volume_sma_{n}": talib.SMA(v, timeperiod=n) for n in (5, 20)}
        previous = np.r_[np.nan, v[:-1]]
        out["volume_change"] = np.where(previous > 0, v / np.where(previous > 0, previous, 1.0) - 1.0, np.nan)
        out["high_low_ratio"] = h / lo
        out["close_open_ratio"] = c / o
    return out


def values_at_every_bar(bars: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every indicator, its model form and the reference columns at every bar of ``bars`` (one symbol's, oldest
    first). TA-Lib is causal (its value at bar i is the one it gives on the bars cut at i, bit for bit:
    tests/test_leakage.py proves it as a property), so one pass over the history gives every row's reference."""
    raw = indicator_series(bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"])
    refs = {name: np.asarray(bars[name], dtype=np.float64) for name in REFERENCES}
    values = raw | refs
    with np.errstate(divide="ignore", invalid="ignore"):
        for indicator in INDICATORS:  # the table's spec of each form: level / reference (- 1 when relative)
            if indicator.scale_free == "already":
                continue
            ref = refs[indicator.reference]
            form = np.where(ref > 0, raw[indicator.name] / np.where(ref > 0, ref, 1.0), np.nan)
            values[indicator.model_feature] = form - 1.0 if indicator.scale_free == "relative" else form
    return values


def values_at_last_bar(bars: dict[str, np.ndarray]) -> dict[str, float]:
    """Every indicator, its model form and the reference columns at the last bar of ``bars`` (nothing after it
    is given to TA-Lib)."""
    return {name: float(series[-1]) for name, series in values_at_every_bar(bars).items()}


@cache
def measured_warmup(n: int = 400, seed: int = 7) -> int:
    """Bars before the first row at which every indicator is finite, measured on a random positive walk."""
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o, h, lo = c * 1.001, c * 1.01, c * 0.99
    v = rng.uniform(1e5, 1e6, n)
    series = indicator_series(o, h, lo, c, v)
    return max(int(np.argmax(np.isfinite(s))) for s in series.values())
