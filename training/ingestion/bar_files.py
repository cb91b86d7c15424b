"""Turn a user's file of daily bars into clean, typed, session-close-stamped bars, or say what is wrong.

A bar of trading date D is stamped at D's session close (16:00 in the exchange's time zone by default),
stored as tz-aware UTC: nothing about bar D is known before that instant.

Two kinds of bad rows. *Malformed* rows (unreadable values, dates, symbols, duplicates) always refuse the
file. *Implausible* bars (prices outside (0, 1e9], volumes outside [0, 1e15], high < low, open or close
outside [low, high], weekend dates) follow a policy: refused by default, naming the lines, or dropped and
reported with ``on_invalid="drop"``. A bar dated after the ingest time is always refused: it cannot have happened yet.

A file is read and checked a chunk at a time (:data:`CHUNK_BYTES` of CSV text, :data:`CHUNK_ROWS` Parquet
rows), so memory holds one chunk whatever the file's size; refusals still name lines of the whole file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.contract import DEFAULT_EXCHANGE_TZ
from training.errors import InputError
from training.ingestion.file_lines import line_numbers as _rows
from training.ingestion.trade_dates import DateReader, session_close

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

DEFAULT_SESSION_CLOSE = time(16, 0)
# One chunk: a block of CSV text (decompressed), or a batch of Parquet rows. Text cells become Python strings,
# ~10x their bytes in memory, so a 16 MB block (~250k bars) costs a few hundred MB while it is checked.
CHUNK_BYTES = 16 << 20
CHUNK_ROWS = 250_000
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4", ".br")  # what pyarrow decompresses by the file's extension
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
    "as_of": ("asof", "knowledgetime", "knownat"),
}
REQUIRED = ("date", "open", "high", "low", "close", "volume")
# Plausible magnitudes: the dearest share ever quoted is under 1e6, the busiest day's volume under 1e11; a value
# beyond these bounds is a wrong column, a unit slip or garbage (1e308 overflows every ratio computed from it).
MAX_PRICE = 1e9
MAX_VOLUME = 1e15
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
    as_of: str | None = None


@dataclass(frozen=True)
class CleanBars:
    """One chunk's bars to stage, and the implausible rows dropped under ``on_invalid="drop"`` (line, reason, row).

    ``bars`` holds every row of the chunk with its file ``line``; those dropped are marked ``dropped`` and
    staged all the same, so a duplicate (symbol, date) is refused even when its twin is implausible.
    """

    bars: pd.DataFrame
    dropped: pd.DataFrame


def read_chunks(path: Path) -> Iterator[pd.DataFrame]:
    """The file's rows a chunk at a time, in order; CSV (optionally compressed) columns as text so validation
    sees what was written. The file is opened here, so an unreadable one is named before anything is loaded."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    suffixes = [s.lower() for s in path.suffixes]
    parquet = ".parquet" in suffixes or ".pq" in suffixes
    try:
        batches = _parquet_batches(path) if parquet else _csv_batches(path)
    except (ValueError, OSError) as exc:
        raise _unreadable(path, exc) from None
    return _frames(batches, path, text=not parquet)


def _unreadable(path: Path, exc: ValueError | OSError) -> InputError:
    """pyarrow's OSError for a compressed file is a truncated or corrupt stream; ValueError (ArrowInvalid) is a
    malformed row, invalid UTF-8 or a bad Parquet page."""
    if isinstance(exc, OSError) and path.suffix.lower() in _COMPRESSED:
        return InputError(f"{path}: truncated or corrupt compressed file ({exc}); nothing was loaded")
    return InputError(f"{path}: cannot be read as CSV or Parquet ({exc})")


def _frames(batches: Iterator[pa.RecordBatch], path: Path, text: bool) -> Iterator[pd.DataFrame]:
    rows = 0
    while True:
        try:
            batch = next(batches, None)
        except (ValueError, OSError) as exc:
            raise _unreadable(path, exc) from None
        if batch is None:
            return
        if text:
            _refuse_nul(batch, path, rows)
        rows += batch.num_rows
        yield batch.to_pandas()


def _csv_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The file's rows, every column as text, a block of whole lines at a time.

    Text, because a type inferred from the first block would make a later block's bad value a conversion
    error naming no line, instead of the validation's message. Blocks cut here rather than by pyarrow's
    streaming reader (``open_csv``): that one reads ahead as fast as it can decompress, so its memory grows
    with the file (about 370 MB of Arrow buffers at 5M bars, 120 MB at 1.26M). Cutting at a newline is what
    pyarrow's own parser assumes too (``newlines_in_values`` is off by default).
    """
    import pyarrow as pa

    stream = pa.input_stream(str(path))  # decompressed by the file's extension, as pyarrow's readers do
    start = b""
    while b"\n" not in start and (block := stream.read(CHUNK_BYTES)):
        start += block
    header, _, rest = start.partition(b"\n")
    names = [name.lstrip() for name in _csv_block(header + b"\n", None).schema.names]  # as pandas' skipinitialspace
    return _csv_blocks(stream, rest, names)


def _csv_blocks(stream: pa.NativeFile, pending: bytes, names: list[str]) -> Iterator[pa.RecordBatch]:
    while block := stream.read(CHUNK_BYTES):
        text = pending + block
        cut = text.rfind(b"\n") + 1  # 0 for a line longer than a block: read on
        if cut:
            yield from _csv_block(text[:cut], names).to_batches()
        pending = text[cut:]
    if pending.strip():  # the last line, without its newline
        yield from _csv_block(pending, names).to_batches()


def _csv_block(text: bytes, names: list[str] | None) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    if names is None:  # the header line alone: its column names
        return pa_csv.read_csv(pa.py_buffer(text))
    return pa_csv.read_csv(
        pa.py_buffer(text),
        read_options=pa_csv.ReadOptions(column_names=names, block_size=len(text) + 1),
        convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )


def _parquet_batches(path: Path) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS)


def _refuse_nul(batch: pa.RecordBatch, path: Path, first_row: int) -> None:
    """A NUL byte in CSV text means a corrupt or binary file; name it as such, not as a strange value."""
    import pyarrow.compute as pc

    hits = [pc.index(pc.match_substring(column, "\x00"), True).as_py() for column in batch.columns]
    if any(hit >= 0 for hit in hits):
        line = min(hit for hit in hits if hit >= 0) + first_row + 2
        raise InputError(f"{path}: NUL byte at line {line}: a CSV file holds none (corrupt or binary file?)")


def _normalise(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def resolve_columns(found: list[str], mapping: ColumnMap, symbol: str | None) -> dict[str, str]:
    """Canonical field -> column of the file; raises naming every missing field and the option to map it, and
    any field two columns could hold (``Ticker`` and ``Symbol``, ``Close`` twice): guessing would store one
    column's values as the other's."""
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for field_name in ("symbol", *REQUIRED, "adj_close", "as_of"):
        explicit = getattr(mapping, field_name)
        if explicit is not None:
            if explicit not in found:
                raise InputError(
                    f"column {explicit!r} given for {field_name} is not in the file; columns are: {', '.join(found)}"
                )
            _refuse_twice(found, explicit)
            resolved[field_name] = explicit
            continue
        candidates = [c for c in found if _normalise(c) in ALIASES[field_name]]
        if len(candidates) > 1:
            _refuse_twice(found, candidates[0])
            option = f"--{field_name.replace('_', '-')}-column"
            raise InputError(
                f"columns {' and '.join(map(repr, candidates))} could each be the {field_name}; say which with {option}"
            )
        if candidates:
            resolved[field_name] = candidates[0]
        elif field_name in REQUIRED or (field_name == "symbol" and symbol is None):
            missing.append(field_name)
    if missing:
        options = ", ".join(f"--{m.replace('_', '-')}-column" for m in missing)
        extra = " (or give --symbol for a single-symbol file)" if "symbol" in missing else ""
        raise InputError(
            f"missing column(s): {', '.join(missing)}; the file has: {', '.join(found)}. Map them with {options}{extra}"
        )
    return resolved


def _refuse_twice(found: list[str], column: str) -> None:
    if found.count(column) > 1:
        raise InputError(f"column {column!r} appears {found.count(column)} times in the header; rename all but one")


def _numeric(raw: pd.Series, column: str, first_row: int) -> np.ndarray:
    import pandas as pd

    text = raw.astype(str).str.strip()
    blank = (text.isin(_BLANKS) | raw.isna()).to_numpy()
    if blank.any():
        raise InputError(f"missing value in column {column!r} at line(s) {_rows(blank, first_row)}")
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        example = text.to_numpy()[np.flatnonzero(bad)[0]]
        raise InputError(f"non-numeric value in column {column!r} at line(s) {_rows(bad, first_row)}, e.g. {example!r}")
    return values


def _symbols(raw: pd.DataFrame, columns: dict[str, str], symbol: str | None, first_row: int) -> pd.Series:
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
        raise InputError(f"empty symbol in {where} at line(s) {_rows(empty, first_row)}")
    control = text.str.contains(_CONTROL_CHARACTERS, regex=True).to_numpy()
    if control.any():
        example = text.to_numpy()[np.flatnonzero(control)[0]]
        raise InputError(
            f"control character in symbol in {where} at line(s) {_rows(control, first_row)}, e.g. {example!r}"
        )
    long = (text.str.len() > MAX_SYMBOL_LENGTH).to_numpy()
    if long.any():
        example = text.to_numpy()[np.flatnonzero(long)[0]]
        raise InputError(
            f"symbol longer than {MAX_SYMBOL_LENGTH} characters in {where} at line(s) {_rows(long, first_row)}, "
            f"e.g. {example[:20]!r}... ({len(example)} characters)"
        )
    return text.str.upper()  # contract.normalise_symbol, vectorised (text is stripped above)


def _implausible(out: pd.DataFrame, columns: dict[str, str], allow_weekends: bool) -> dict[str, np.ndarray]:
    """Reason -> mask of bars that parsed fine but cannot be a real daily bar."""
    checks: dict[str, np.ndarray] = {}
    for field_name in (*PRICE_COLUMNS, "adj_close"):
        if field_name in out:
            checks[f"non-positive price in column {columns[field_name]!r}"] = (out[field_name] <= 0).to_numpy()
            checks[f"price above {MAX_PRICE:,.0f} in column {columns[field_name]!r}"] = (
                out[field_name] > MAX_PRICE
            ).to_numpy()
    checks[f"negative volume in column {columns['volume']!r}"] = (out["volume"] < 0).to_numpy()
    checks[f"volume above {MAX_VOLUME:,.0f} in column {columns['volume']!r}"] = (out["volume"] > MAX_VOLUME).to_numpy()
    low, high = out["low"].to_numpy(), out["high"].to_numpy()
    checks["high < low"] = high < low
    for field_name in ("open", "close"):
        value = out[field_name].to_numpy()
        checks[f"{field_name} outside [low, high]"] = (value < low) | (value > high)
    if not allow_weekends:
        checks["weekend date"] = (out["trade_date_ts"].dt.dayofweek >= 5).to_numpy()
    return {reason: mask for reason, mask in checks.items() if mask.any()}


def _refuse_future(out: pd.DataFrame, now: datetime, first_row: int) -> None:
    """A bar whose session close is after the ingest time cannot be known yet: always refused."""
    future = (out["event_timestamp"] > now).to_numpy()
    if future.any():
        first = out.loc[future].iloc[0]
        raise InputError(
            f"bar(s) dated in the future at line(s) {_rows(future, first_row)}, e.g. {first.symbol} {first.trade_date} "
            f"(its session close is after now, {now:%Y-%m-%d %H:%M} UTC): a bar is known only after its close"
        )


# An ISO 8601 time that says its offset: "Z", "+02:00", "-0500" (or "UTC" as pandas writes it) at the end.
_OFFSET = r"(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$"


def _as_of(out: pd.DataFrame, raw: pd.Series, column: str, now: datetime, first_row: int) -> pd.Series:
    """The vendor's knowledge time of each bar (tz-aware UTC), or an InputError: every value must name its
    offset (a clock time alone is ambiguous), be no later than ``now`` (nothing is known in advance) and no
    earlier than its bar's session close (nothing is known about a bar before it closes)."""
    import pandas as pd

    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        stamps = raw.dt.tz_convert("UTC")
        missing = stamps.isna().to_numpy()
    elif pd.api.types.is_datetime64_any_dtype(raw.dtype):
        raise InputError(f"column {column!r} holds times without a time zone; store them with their offset (UTC)")
    else:
        text = raw.astype(str).str.strip()
        missing = (text.isin(_BLANKS) | raw.isna()).to_numpy()
        if missing.any():
            raise InputError(f"missing knowledge time in column {column!r} at line(s) {_rows(missing, first_row)}")
        naive = ~text.str.contains(_OFFSET, regex=True).to_numpy()
        if naive.any():
            example = text.to_numpy()[np.flatnonzero(naive)[0]]
            raise InputError(
                f"knowledge time without a time zone in column {column!r} at line(s) {_rows(naive, first_row)}, "
                f"e.g. {example!r}: give its offset (2024-03-01T22:00:00+00:00 or ...Z)"
            )
        stamps = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        missing = stamps.isna().to_numpy()
        if missing.any():
            example = text.to_numpy()[np.flatnonzero(missing)[0]]
            raise InputError(
                f"not an ISO 8601 time in column {column!r} at line(s) {_rows(missing, first_row)}, e.g. {example!r}"
            )
    if missing.any():
        raise InputError(f"missing knowledge time in column {column!r} at line(s) {_rows(missing, first_row)}")
    stamps = pd.Series(pd.DatetimeIndex(stamps).tz_convert("UTC"), index=out.index)
    later = (stamps > now).to_numpy()
    if later.any():
        raise InputError(
            f"knowledge time in the future in column {column!r} at line(s) {_rows(later, first_row)} (now is "
            f"{now:%Y-%m-%d %H:%M} UTC): a version cannot be known before it is written"
        )
    early = (stamps < out["event_timestamp"]).to_numpy()
    if early.any():
        first = out.loc[early].iloc[0]
        raise InputError(
            f"knowledge time before the bar's session close in column {column!r} at line(s) "
            f"{_rows(early, first_row)}, e.g. {first.symbol} {first.trade_date} known at "
            f"{stamps[early].iloc[0]:%Y-%m-%d %H:%M} UTC: a bar is known only after its close"
        )
    return stamps


def _apply_policy(
    raw: pd.DataFrame, problems: dict[str, np.ndarray], on_invalid: str, first_row: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """(mask of the rows dropped, report of them), or an InputError naming every kind of implausible bar."""
    import pandas as pd

    report_columns = ["line", "reason", *map(str, raw.columns)]
    if not problems:
        return np.zeros(len(raw), dtype=bool), pd.DataFrame(columns=report_columns)
    if on_invalid != "drop":
        found = "; ".join(f"{reason} at line(s) {_rows(mask, first_row)}" for reason, mask in problems.items())
        raise InputError(
            f"implausible bar(s): {found}. Fix the file, or give --on-invalid drop to load the other rows "
            "and list the dropped ones in a report"
        )
    bad = np.logical_or.reduce(list(problems.values()))
    reasons = ["; ".join(reason for reason, mask in problems.items() if mask[i]) for i in np.flatnonzero(bad)]
    dropped = raw.loc[bad].astype(str).copy()
    dropped.columns = list(map(str, raw.columns))
    dropped.insert(0, "reason", reasons)
    dropped.insert(0, "line", np.flatnonzero(bad) + first_row + 2)
    return bad, dropped.reset_index(drop=True)[report_columns]


def _typed(
    raw: pd.DataFrame, columns: dict[str, str], symbol: str | None, dates: DateReader, first_row: int
) -> pd.DataFrame:
    """The chunk's symbols, trading dates, prices and volumes, and each row's file line; refuses malformed rows."""
    import pandas as pd

    out = pd.DataFrame(index=raw.index)
    out["symbol"] = _symbols(raw, columns, symbol, first_row)
    days = dates(raw[columns["date"]], columns["date"], first_row)
    out["trade_date"] = days.dt.date
    out["trade_date_ts"] = days
    for field_name in (*PRICE_COLUMNS, "volume", "adj_close"):
        if field_name in columns:
            out[field_name] = _numeric(raw[columns[field_name]], columns[field_name], first_row)
    out["line"] = np.arange(len(raw)) + first_row + 2
    return out


def _adjusted(out: pd.DataFrame) -> pd.DataFrame:
    """Adjusted open, high, low and volume by the file's adjustment factor (adj_close / close), when it has one."""
    if "adj_close" in out:
        factor = out["adj_close"] / out["close"]
        for field_name in ("open", "high", "low"):
            out[f"adj_{field_name}"] = out[field_name] * factor
        out["adj_volume"] = out["volume"] / factor
    return out


def clean_chunks(
    chunks: Iterable[pd.DataFrame],
    mapping: ColumnMap = ColumnMap(),
    symbol: str | None = None,
    exchange_tz: str = DEFAULT_EXCHANGE_TZ,
    close_time: time = DEFAULT_SESSION_CLOSE,
    date_format: str | None = None,
    on_invalid: str = "refuse",
    allow_weekends: bool = False,
    now: datetime | None = None,
) -> Iterator[CleanBars]:
    """Validate and normalise a file's raw bars chunk by chunk; every problem is an :class:`InputError` naming
    column and lines.

    ``chunks`` are the file's rows in order: row i of the file, counted across chunks, is line i + 2. What
    spans the file holds across chunks: one column layout, one date format (``date_format``, or the one the
    first chunk fits), at least one row, and under ``on_invalid="drop"`` at least one plausible bar. Duplicate
    (symbol, date) rows are left to the stage, which holds the whole file
    (:func:`~training.ingestion.upsert.upsert_chunks`). ``now`` (tz-aware, default the current time) is the
    ingest time no bar may close after.
    """
    if on_invalid not in ON_INVALID:
        raise InputError(f"on_invalid must be one of {', '.join(ON_INVALID)}, not {on_invalid!r}")
    now = now or datetime.now().astimezone()
    dates = DateReader(date_format)
    columns: dict[str, str] = {}
    first_row, kept, kinds = 0, 0, dict[str, None]()  # kinds: every kind of implausible bar, in order
    for raw in chunks:
        if raw.empty:
            continue
        raw = raw.reset_index(drop=True)
        columns = columns or resolve_columns([str(c) for c in raw.columns], mapping, symbol)
        out = _typed(raw, columns, symbol, dates, first_row)
        try:
            out["event_timestamp"] = session_close(out["trade_date_ts"], exchange_tz, close_time)
        except Exception as exc:  # unknown zone names come from zoneinfo with varied types
            raise InputError(f"cannot stamp session closes in time zone {exchange_tz!r}: {exc}") from None
        _refuse_future(out, now, first_row)
        if "as_of" in columns:
            out["known_at"] = _as_of(out, raw[columns["as_of"]], columns["as_of"], now, first_row)
        problems = _implausible(out, columns, allow_weekends)
        out["dropped"], dropped = _apply_policy(raw, problems, on_invalid, first_row)
        yield CleanBars(bars=_adjusted(out.drop(columns="trade_date_ts")), dropped=dropped)
        first_row, kept, kinds = first_row + len(raw), kept + len(raw) - len(dropped), kinds | dict.fromkeys(problems)
    if not first_row:
        raise InputError("the file holds no rows")
    if not kept:
        raise InputError(f"every row is implausible ({', '.join(kinds)}): nothing to load")


def clean_bars(raw: pd.DataFrame, **options) -> CleanBars:
    """:func:`clean_chunks` of a file read whole, as one chunk (``raw`` in file order)."""
    (cleaned,) = clean_chunks([raw], **options)
    return cleaned


class DroppedReport:
    """The rows dropped under ``on_invalid="drop"``, as CSV: appended chunk by chunk to a hidden partial file that
    replaces ``path`` only when the block ends without error (after the load committed), so a reader never
    sees half a report and a refused load leaves none."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, 0
        self._partial = path.with_name(f".{path.name}.partial")
        self._started = False

    def __enter__(self) -> DroppedReport:
        return self

    def add(self, dropped: pd.DataFrame) -> None:
        if not self._started:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        dropped.to_csv(self._partial, mode="a" if self._started else "w", header=not self._started, index=False)
        self._started = True
        self.rows += len(dropped)

    def __exit__(self, kind, *_) -> None:
        if kind is None and self._started:
            self._partial.replace(self.path)
        else:
            self._partial.unlink(missing_ok=True)
