"""Turn a user's file of daily bars into clean, typed, session-close-stamped bars, or say what is wrong.

A bar of trading date D is stamped at D's session close (16:00 in the exchange's time zone by default),
stored as tz-aware UTC: nothing about bar D is known before that instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_EXCHANGE_TZ = "America/New_York"
DEFAULT_SESSION_CLOSE = time(16, 0)
PRICE_COLUMNS = ("open", "high", "low", "close")
# Canonical name -> spellings recognised without options (compared lower-case, without spaces/_/-).
ALIASES: dict[str, tuple[str, ...]] = {
    "symbol": ("symbol", "ticker"),
    "date": ("date", "tradedate", "day"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume",),
    "adj_close": ("adjclose", "adjustedclose"),
}
REQUIRED = ("date", "open", "high", "low", "close", "volume")
MAX_REPORTED_ROWS = 5


@dataclass(frozen=True)
class ColumnMap:
    """Which column of the file holds each field; None means "recognise it by its usual names"."""

    symbol: str | None = None
    date: str | None = None
    open: str | None = None
    high: str | None = None
    low: str | None = None
    close: str | None = None
    volume: str | None = None
    adj_close: str | None = None


def read_table(path: Path) -> pd.DataFrame:
    """CSV (optionally compressed) or Parquet, every column as text so validation sees what was written."""
    import pandas as pd

    if not path.exists():
        raise InputError(f"{path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if ".parquet" in suffixes or ".pq" in suffixes:
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot be read as CSV or Parquet ({exc})") from None


def _normalise(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def resolve_columns(found: list[str], mapping: ColumnMap, symbol: str | None) -> dict[str, str]:
    """Canonical field -> column of the file; raises naming every missing field and the option to map it."""
    by_normal = {_normalise(c): c for c in found}
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for field_name in ("symbol", *REQUIRED, "adj_close"):
        explicit = getattr(mapping, field_name)
        if explicit is not None:
            if explicit not in found:
                raise InputError(
                    f"column {explicit!r} given for {field_name} is not in the file; columns are: {', '.join(found)}"
                )
            resolved[field_name] = explicit
            continue
        match = next((by_normal[a] for a in ALIASES[field_name] if a in by_normal), None)
        if match is not None:
            resolved[field_name] = match
        elif field_name in REQUIRED or (field_name == "symbol" and symbol is None):
            missing.append(field_name)
    if missing:
        options = ", ".join(f"--{m.replace('_', '-')}-column" for m in missing)
        extra = " (or give --symbol for a single-symbol file)" if "symbol" in missing else ""
        raise InputError(
            f"missing column(s): {', '.join(missing)}; the file has: {', '.join(found)}. Map them with {options}{extra}"
        )
    return resolved


def _rows(mask: np.ndarray) -> str:
    """File line numbers (header is line 1) of the first offending rows."""
    lines = np.flatnonzero(mask)[:MAX_REPORTED_ROWS] + 2
    more = int(mask.sum()) - len(lines)
    return ", ".join(map(str, lines)) + (f" and {more} more" if more > 0 else "")


def _numeric(raw: pd.Series, column: str) -> np.ndarray:
    import pandas as pd

    text = raw.astype(str).str.strip()
    blank = text.isin(["", "nan", "NaN", "NA", "null", "None"]).to_numpy()
    if blank.any():
        raise InputError(f"missing value in column {column!r} at line(s) {_rows(blank)}")
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        example = text.to_numpy()[np.flatnonzero(bad)[0]]
        raise InputError(f"non-numeric value in column {column!r} at line(s) {_rows(bad)}, e.g. {example!r}")
    return values


def session_close(dates: pd.Series, exchange_tz: str, close_time: time) -> pd.Series:
    """Trading dates -> the UTC instant of that day's session close in the exchange's time zone."""
    import pandas as pd

    local = pd.to_datetime(dates) + pd.Timedelta(hours=close_time.hour, minutes=close_time.minute)
    return local.dt.tz_localize(exchange_tz, nonexistent="raise", ambiguous="raise").dt.tz_convert("UTC")


def clean_bars(
    raw: pd.DataFrame,
    mapping: ColumnMap = ColumnMap(),
    symbol: str | None = None,
    exchange_tz: str = DEFAULT_EXCHANGE_TZ,
    close_time: time = DEFAULT_SESSION_CLOSE,
) -> pd.DataFrame:
    """Validate and normalise raw bars; every problem is an :class:`InputError` naming column and lines."""
    import pandas as pd

    if raw.empty:
        raise InputError("the file holds no rows")
    columns = resolve_columns([str(c) for c in raw.columns], mapping, symbol)
    out = pd.DataFrame(index=raw.index)

    symbols = raw[columns["symbol"]].astype(str).str.strip() if "symbol" in columns else pd.Series(symbol, raw.index)
    empty = (symbols == "").to_numpy() | symbols.isna().to_numpy()
    if empty.any():
        raise InputError(f"empty symbol in column {columns.get('symbol')!r} at line(s) {_rows(empty)}")
    out["symbol"] = symbols.str.upper()

    date_text = raw[columns["date"]].astype(str).str.strip()
    dates = pd.to_datetime(date_text, errors="coerce", format="mixed")
    bad = dates.isna().to_numpy()
    if bad.any():
        example = date_text.to_numpy()[np.flatnonzero(bad)[0]]
        raise InputError(f"unparseable date in column {columns['date']!r} at line(s) {_rows(bad)}, e.g. {example!r}")
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    timed = (dates != dates.dt.normalize()).to_numpy()
    if timed.any():
        raise InputError(
            f"column {columns['date']!r} must hold trading dates, but line(s) {_rows(timed)} carry a time of day"
        )
    out["trade_date"] = dates.dt.date

    for field_name in (*PRICE_COLUMNS, "volume", "adj_close"):
        if field_name in columns:
            out[field_name] = _numeric(raw[columns[field_name]], columns[field_name])
    for field_name in (*PRICE_COLUMNS, "adj_close"):
        if field_name in out:
            bad = (out[field_name] <= 0).to_numpy()
            if bad.any():
                raise InputError(f"non-positive price in column {columns[field_name]!r} at line(s) {_rows(bad)}")
    bad = (out["volume"] < 0).to_numpy()
    if bad.any():
        raise InputError(f"negative volume in column {columns['volume']!r} at line(s) {_rows(bad)}")
    bad = (out["high"] < out["low"]).to_numpy()
    if bad.any():
        raise InputError(f"high < low at line(s) {_rows(bad)}")

    duplicated = out.duplicated(["symbol", "trade_date"], keep=False).to_numpy()
    if duplicated.any():
        first = out.loc[duplicated].iloc[0]
        raise InputError(
            f"duplicate (symbol, date) rows at line(s) {_rows(duplicated)}, e.g. {first.symbol} {first.trade_date}"
        )

    try:
        out["event_timestamp"] = session_close(dates, exchange_tz, close_time)
    except Exception as exc:  # unknown zone names come from zoneinfo with varied types
        raise InputError(f"cannot stamp session closes in time zone {exchange_tz!r}: {exc}") from None
    if "adj_close" in out:
        factor = out["adj_close"] / out["close"]
        for field_name in ("open", "high", "low"):
            out[f"adj_{field_name}"] = out[field_name] * factor
        out["adj_volume"] = out["volume"] / factor
    return out.sort_values(["symbol", "event_timestamp"], kind="stable").reset_index(drop=True)
