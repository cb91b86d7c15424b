"""Turn a user's file of daily bars into clean, typed, session-close-stamped bars, or say what is wrong.

A bar of trading date D is stamped at D's session close (16:00 in the exchange's time zone by default),
stored as tz-aware UTC: nothing about bar D is known before that instant.

Two kinds of bad rows. *Malformed* rows (unreadable values, dates, symbols, duplicates) always refuse the
file. *Implausible* bars (non-positive prices, high < low, open or close outside [low, high], weekend
dates) follow a policy: refused by default, naming the lines, or dropped and reported with
``on_invalid="drop"``. A bar dated after the ingest time is always refused: it cannot have happened yet.
"""

from __future__ import annotations

import lzma
import zlib
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from training.contract import DEFAULT_EXCHANGE_TZ
from training.errors import InputError
from training.ingestion.file_lines import line_numbers as _rows
from training.ingestion.trade_dates import parse_dates, session_close

if TYPE_CHECKING:
    import pandas as pd

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
MAX_SYMBOL_LENGTH = 32  # exchange tickers are <= 12 characters; longer text is a wrong column or garbage
ON_INVALID = ("refuse", "drop")
_CONTROL_CHARACTERS = r"[\x00-\x1f\x7f-\x9f]"
_BLANKS = ("", "nan", "NaN", "NA", "<NA>", "null", "None", "NaT")


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


@dataclass(frozen=True)
class CleanBars:
    """Bars ready to store, and the implausible rows dropped under ``on_invalid="drop"`` (line, reason, row)."""

    bars: pd.DataFrame
    dropped: pd.DataFrame


class _NulGuard:
    """A binary stream that refuses NUL bytes: pandas' CSV parser silently cuts a field at one."""

    def __init__(self, stream: IO[bytes], path: Path) -> None:
        self._stream, self._path, self._lines = stream, path, 1

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        at = chunk.find(b"\x00")
        if at >= 0:
            line = self._lines + chunk.count(b"\n", 0, at)
            raise InputError(f"{self._path}: NUL byte at line {line}: a CSV file holds none (corrupt or binary file?)")
        self._lines += chunk.count(b"\n")
        return chunk

    def __iter__(self):  # pandas checks for a file-like object by these attributes
        return iter(self.read, b"")


def read_table(path: Path) -> pd.DataFrame:
    """CSV (optionally compressed) or Parquet, CSV columns as text so validation sees what was written."""
    import pandas as pd

    if not path.exists():
        raise InputError(f"{path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if ".parquet" in suffixes or ".pq" in suffixes:
            return pd.read_parquet(path)
        return _read_csv(path)
    except (EOFError, zlib.error, lzma.LZMAError) as exc:
        # click would turn an EOFError into a bare "Aborted!"
        raise InputError(f"{path}: truncated or corrupt compressed file ({exc}); nothing was loaded") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot be read as CSV or Parquet ({exc})") from None


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd
    from pandas.io.common import get_handle

    with get_handle(path, "rb", compression="infer", is_text=False) as handles:
        return pd.read_csv(
            _NulGuard(handles.handle, path), dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8"
        )


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


def _numeric(raw: pd.Series, column: str) -> np.ndarray:
    import pandas as pd

    text = raw.astype(str).str.strip()
    blank = (text.isin(_BLANKS) | raw.isna()).to_numpy()
    if blank.any():
        raise InputError(f"missing value in column {column!r} at line(s) {_rows(blank)}")
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        example = text.to_numpy()[np.flatnonzero(bad)[0]]
        raise InputError(f"non-numeric value in column {column!r} at line(s) {_rows(bad)}, e.g. {example!r}")
    return values


def _symbols(raw: pd.DataFrame, columns: dict[str, str], symbol: str | None) -> pd.Series:
    """Upper-cased symbols; a missing, control-character or over-long symbol refuses the file naming its lines."""
    import pandas as pd

    if "symbol" in columns:
        values = raw[columns["symbol"]]
        where = f"column {columns['symbol']!r}"
    else:
        values = pd.Series(symbol, raw.index, dtype=object)
        where = "--symbol"
    missing = values.isna().to_numpy()
    text = values.astype(str).str.strip()
    empty = missing | (text == "").to_numpy()
    if empty.any():
        raise InputError(f"empty symbol in {where} at line(s) {_rows(empty)}")
    control = text.str.contains(_CONTROL_CHARACTERS, regex=True).to_numpy()
    if control.any():
        example = text.to_numpy()[np.flatnonzero(control)[0]]
        raise InputError(f"control character in symbol in {where} at line(s) {_rows(control)}, e.g. {example!r}")
    long = (text.str.len() > MAX_SYMBOL_LENGTH).to_numpy()
    if long.any():
        example = text.to_numpy()[np.flatnonzero(long)[0]]
        raise InputError(
            f"symbol longer than {MAX_SYMBOL_LENGTH} characters in {where} at line(s) {_rows(long)}, "
            f"e.g. {example[:20]!r}... ({len(example)} characters)"
        )
    return text.str.upper()  # contract.normalise_symbol, vectorised (text is stripped above)


def _implausible(out: pd.DataFrame, columns: dict[str, str], allow_weekends: bool) -> dict[str, np.ndarray]:
    """Reason -> mask of bars that parsed fine but cannot be a real daily bar."""
    checks: dict[str, np.ndarray] = {}
    for field_name in (*PRICE_COLUMNS, "adj_close"):
        if field_name in out:
            checks[f"non-positive price in column {columns[field_name]!r}"] = (out[field_name] <= 0).to_numpy()
    checks[f"negative volume in column {columns['volume']!r}"] = (out["volume"] < 0).to_numpy()
    low, high = out["low"].to_numpy(), out["high"].to_numpy()
    checks["high < low"] = high < low
    for field_name in ("open", "close"):
        value = out[field_name].to_numpy()
        checks[f"{field_name} outside [low, high]"] = (value < low) | (value > high)
    if not allow_weekends:
        checks["weekend date"] = (out["trade_date_ts"].dt.dayofweek >= 5).to_numpy()
    return {reason: mask for reason, mask in checks.items() if mask.any()}


def _refuse_future(out: pd.DataFrame, now: datetime) -> None:
    """A bar whose session close is after the ingest time cannot be known yet: always refused."""
    future = (out["event_timestamp"] > now).to_numpy()
    if future.any():
        first = out.loc[future].iloc[0]
        raise InputError(
            f"bar(s) dated in the future at line(s) {_rows(future)}, e.g. {first.symbol} {first.trade_date} "
            f"(its session close is after now, {now:%Y-%m-%d %H:%M} UTC): a bar is known only after its close"
        )


def _apply_policy(
    raw: pd.DataFrame, out: pd.DataFrame, problems: dict[str, np.ndarray], on_invalid: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bars kept, report of dropped rows), or an InputError naming every kind of implausible bar."""
    import pandas as pd

    report_columns = ["line", "reason", *map(str, raw.columns)]
    if not problems:
        return out, pd.DataFrame(columns=report_columns)
    if on_invalid != "drop":
        found = "; ".join(f"{reason} at line(s) {_rows(mask)}" for reason, mask in problems.items())
        raise InputError(
            f"implausible bar(s): {found}. Fix the file, or give --on-invalid drop to load the other rows "
            "and list the dropped ones in a report"
        )
    bad = np.logical_or.reduce(list(problems.values()))
    if bad.all():
        raise InputError(f"every row is implausible ({', '.join(problems)}): nothing to load")
    reasons = ["; ".join(reason for reason, mask in problems.items() if mask[i]) for i in np.flatnonzero(bad)]
    dropped = raw.loc[bad].astype(str).copy()
    dropped.columns = list(map(str, raw.columns))
    dropped.insert(0, "reason", reasons)
    dropped.insert(0, "line", np.flatnonzero(bad) + 2)
    return out.loc[~bad], dropped.reset_index(drop=True)[report_columns]


def clean_bars(
    raw: pd.DataFrame,
    mapping: ColumnMap = ColumnMap(),
    symbol: str | None = None,
    exchange_tz: str = DEFAULT_EXCHANGE_TZ,
    close_time: time = DEFAULT_SESSION_CLOSE,
    date_format: str | None = None,
    on_invalid: str = "refuse",
    allow_weekends: bool = False,
    now: datetime | None = None,
) -> CleanBars:
    """Validate and normalise raw bars; every problem is an :class:`InputError` naming column and lines.

    ``raw`` must have a default RangeIndex (row i is file line i + 2). ``now`` (tz-aware, default the
    current time) is the ingest time no bar may close after.
    """
    import pandas as pd

    if on_invalid not in ON_INVALID:
        raise InputError(f"on_invalid must be one of {', '.join(ON_INVALID)}, not {on_invalid!r}")
    if raw.empty:
        raise InputError("the file holds no rows")
    raw = raw.reset_index(drop=True)
    columns = resolve_columns([str(c) for c in raw.columns], mapping, symbol)
    out = pd.DataFrame(index=raw.index)
    out["symbol"] = _symbols(raw, columns, symbol)
    dates = parse_dates(raw[columns["date"]], columns["date"], date_format)
    out["trade_date"] = dates.dt.date
    out["trade_date_ts"] = dates
    for field_name in (*PRICE_COLUMNS, "volume", "adj_close"):
        if field_name in columns:
            out[field_name] = _numeric(raw[columns[field_name]], columns[field_name])

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
    _refuse_future(out, now or datetime.now().astimezone())
    out, dropped = _apply_policy(raw, out, _implausible(out, columns, allow_weekends), on_invalid)
    out = out.drop(columns="trade_date_ts")
    if "adj_close" in out:
        factor = out["adj_close"] / out["close"]
        for field_name in ("open", "high", "low"):
            out[f"adj_{field_name}"] = out[field_name] * factor
        out["adj_volume"] = out["volume"] / factor
    bars = out.sort_values(["symbol", "event_timestamp"], kind="stable").reset_index(drop=True)
    return CleanBars(bars=bars, dropped=dropped)


def write_report(dropped: pd.DataFrame, path: Path) -> None:
    """The dropped rows as CSV, written whole (a temporary file renamed over ``path``) so a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    dropped.to_csv(partial, index=False)
    partial.replace(path)
