"""Read the adjusted bars a dataset is built from, and refuse requests the offline store cannot answer."""

from __future__ import annotations

from datetime import date

import pandas as pd

from training import db
from training.errors import InputError
from training.schema import ADJUSTED_BAR_COLUMNS, OHLCV_TABLE

# Indicators and labels are computed on split/dividend-adjusted prices where the input had them.
_ADJUSTED_BARS = f"""
SELECT symbol, event_timestamp, trade_date, {ADJUSTED_BAR_COLUMNS}
FROM {OHLCV_TABLE}
WHERE (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s::text[]))
ORDER BY symbol, event_timestamp
"""


def known_symbols() -> list[str]:
    with db.connect() as conn:
        if conn.execute("SELECT to_regclass(%s)", (OHLCV_TABLE,)).fetchone()[0] is None:
            return []
        return [row[0] for row in conn.execute(f"SELECT DISTINCT symbol FROM {OHLCV_TABLE} ORDER BY 1")]


def load_bars(symbols: list[str] | None = None) -> pd.DataFrame:
    """Every adjusted bar of ``symbols`` (all symbols when None), sorted by (symbol, event_timestamp)."""
    known = known_symbols()
    if not known:
        raise InputError(f"{OHLCV_TABLE} is empty: run `python -m training ingest FILE` first")
    if symbols is not None:
        symbols = sorted({s.strip().upper() for s in symbols if s.strip()})
        unknown = [s for s in symbols if s not in known]
        if unknown:
            raise InputError(f"unknown symbol(s): {', '.join(unknown)}; the offline store has: {', '.join(known)}")
        if not symbols:
            raise InputError("no symbols given")
    with db.connect() as conn:
        bars = db.copy_out(conn, _ADJUSTED_BARS, {"symbols": symbols}, parse_dates=["event_timestamp"])
    bars["trade_date"] = pd.to_datetime(bars["trade_date"]).dt.date
    return bars


def decision_mask(bars: pd.DataFrame, start: date | None, end: date | None) -> pd.Series:
    """Bars whose trading date lies in [start, end]: the decisions a dataset may contain."""
    if start is not None and end is not None and start > end:
        raise InputError(f"empty date range: start {start} is after end {end}")
    mask = pd.Series(True, index=bars.index)
    if start is not None:
        mask &= bars["trade_date"] >= start
    if end is not None:
        mask &= bars["trade_date"] <= end
    if not mask.any():
        span = f"{bars['trade_date'].min()} .. {bars['trade_date'].max()}"
        raise InputError(f"no bars between {start or 'the first bar'} and {end or 'the last bar'} (data spans {span})")
    return mask
