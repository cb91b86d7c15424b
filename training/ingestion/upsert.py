"""Load clean bars into ``market_data.ohlcv_daily``: one bar per (symbol, trade date), one transaction.

How a load decides what to write, and why:

* Ingests are serialised by a transaction-level advisory lock taken before anything is read, so two
  concurrent loads see each other's result instead of racing (their outcome never depends on commit order).
* The file is staged with COPY a chunk at a time, as it is read and checked, inside the same transaction:
  a refusal anywhere in the file, its last chunk included, writes nothing. Checks that span the file run on
  the stage once it holds all of it (duplicate (symbol, date) rows, mixed adjustment). Then a single READ
  joins the stage to the table on (symbol, trade_date) and classifies every bar: new, unchanged, changed
  (same stamp, other values) or re-stamped (stored at another session close). Only then the writes run:
  DELETE the rows at an old stamp, UPDATE changed rows, INSERT new and re-stamped ones. No
  ``INSERT ... ON CONFLICT``: TimescaleDB decompresses every compressed chunk such a statement checks, and a
  hypertable cannot hold a unique index on (symbol, trade_date) (it must include the time column). A
  re-ingest of the same file issues no write at all.
* A column absent from the file never erases stored values: a file without an adjusted close keeps each
  stored bar's adjustment factor (``adj_close / close``). A load that would leave a symbol with a mix
  of adjusted and raw bars is refused unless explicitly allowed: indicators would jump at the seam.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from training.errors import InputError, name_some
from training.infra import db
from training.infra.schema import OHLCV_TABLE, ensure_ohlcv_table
from training.ingestion.file_lines import MAX_REPORTED_ROWS, name_lines

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

STORED_COLUMNS = (
    "symbol",
    "event_timestamp",
    "trade_date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "adj_open",
    "adj_high",
    "adj_low",
    "adj_close",
    "adj_volume",
)
_VALUE_COLUMNS = STORED_COLUMNS[2:]
# The stage also keeps each bar's file line (to name duplicates) and whether --on-invalid drop dropped it.
_STAGED_COLUMNS = (*STORED_COLUMNS, "line", "dropped")
_RAW = ("open", "high", "low", "close", "volume")
_ADJUSTED = ("adj_open", "adj_high", "adj_low", "adj_close", "adj_volume")
# One key for every ingest into the table (pg_advisory_xact_lock takes a bigint).
INGEST_LOCK_KEY = zlib.crc32(f"ingest {OHLCV_TABLE}".encode())


def _merged_adjusted(column: str) -> str:
    """The adjusted value to store: the file's, else the stored bar's factor applied to the file's raw values."""
    raw = column.removeprefix("adj_")
    rescaled = "s.volume / (o.adj_close / o.close)" if raw == "volume" else f"s.{raw} * (o.adj_close / o.close)"
    same_raw = f"({', '.join(f's.{c}' for c in _RAW)}) = ({', '.join(f'o.{c}' for c in _RAW)})"
    return (
        f"CASE WHEN s.adj_close IS NOT NULL THEN s.{column} WHEN o.adj_close IS NULL THEN NULL "
        f"WHEN {same_raw} THEN o.{column} ELSE {rescaled} END AS {column}"
    )


# One row per staged bar: its merged values, what is stored for its (symbol, trade_date), and what to do.
# Tables created by earlier versions may hold several rows for one date (one per session close used);
# the row at the file's stamp is the one compared, every other one is deleted.
_PLAN = f"""
CREATE TEMP TABLE ohlcv_plan ON COMMIT DROP AS
WITH stored AS (
    SELECT DISTINCT ON (t.symbol, t.trade_date)
           t.symbol, t.trade_date, {", ".join(f"t.{c}" for c in (*_RAW, *_ADJUSTED))},
           bool_or(t.event_timestamp = s.event_timestamp) OVER w AS same_stamp,
           bool_or(t.event_timestamp <> s.event_timestamp) OVER w AS restamped,
           min(t.event_timestamp) FILTER (WHERE t.event_timestamp <> s.event_timestamp) OVER w AS old_first,
           max(t.event_timestamp) FILTER (WHERE t.event_timestamp <> s.event_timestamp) OVER w AS old_last
    FROM ohlcv_stage s JOIN {OHLCV_TABLE} t ON t.symbol = s.symbol AND t.trade_date = s.trade_date
    WINDOW w AS (PARTITION BY t.symbol, t.trade_date)
    ORDER BY t.symbol, t.trade_date, t.event_timestamp = s.event_timestamp DESC, t.created_timestamp DESC
), merged AS (
    SELECT s.symbol, s.event_timestamp, s.trade_date, {", ".join(f"s.{c}" for c in _RAW)},
           {", ".join(_merged_adjusted(c) for c in _ADJUSTED)},
           o.symbol IS NOT NULL AS known, coalesce(o.same_stamp, false) AS same_stamp,
           coalesce(o.restamped, false) AS restamped, o.old_first, o.old_last,
           {", ".join(f"o.{c} AS stored_{c}" for c in (*_RAW, *_ADJUSTED))}
    FROM ohlcv_stage s LEFT JOIN stored o ON o.symbol = s.symbol AND o.trade_date = s.trade_date
)
SELECT *, same_stamp AND ({", ".join(c for c in (*_RAW, *_ADJUSTED))})
          IS DISTINCT FROM ({", ".join(f"stored_{c}" for c in (*_RAW, *_ADJUSTED))}) AS changed
FROM merged
"""
_COUNTS = """
SELECT count(*), count(DISTINCT symbol), count(*) FILTER (WHERE NOT known),
       count(*) FILTER (WHERE restamped OR changed), count(*) FILTER (WHERE restamped),
       count(*) FILTER (WHERE changed), count(*) FILTER (WHERE NOT same_stamp)
FROM ohlcv_plan
"""
# Every row of a (symbol, trade_date) the file holds more than once, dropped rows included: a duplicate is
# malformed whatever its twin. The first few by line, and how many in all.
_DUPLICATES = """
SELECT s.line, s.symbol, s.trade_date, count(*) OVER ()
FROM ohlcv_stage s
JOIN (SELECT symbol, trade_date FROM ohlcv_stage GROUP BY 1, 2 HAVING count(*) > 1) d USING (symbol, trade_date)
ORDER BY s.line
LIMIT %s
"""
# Symbols the load would leave with both adjusted and raw bars: the merged file rows plus every stored bar
# of the file's symbols on a date the file does not hold.
_MIXED = f"""
WITH after AS (
    SELECT symbol, adj_close IS NOT NULL AS adjusted FROM ohlcv_plan
    UNION ALL
    SELECT t.symbol, t.adj_close IS NOT NULL FROM {OHLCV_TABLE} t
    WHERE t.symbol IN (SELECT symbol FROM ohlcv_stage)
      AND NOT EXISTS (SELECT 1 FROM ohlcv_stage s WHERE s.symbol = t.symbol AND s.trade_date = t.trade_date)
)
SELECT symbol, count(*) FILTER (WHERE adjusted), count(*) FILTER (WHERE NOT adjusted)
FROM after GROUP BY symbol HAVING bool_or(adjusted) AND bool_or(NOT adjusted)
ORDER BY symbol COLLATE "C"
"""
# A bar whose new stamp is already taken by a stored bar of another date the file does not touch.
_STAMP_TAKEN = f"""
SELECT p.symbol, p.trade_date, t.trade_date FROM ohlcv_plan p
JOIN {OHLCV_TABLE} t ON t.symbol = p.symbol AND t.event_timestamp = p.event_timestamp AND t.trade_date <> p.trade_date
WHERE NOT p.same_stamp
  AND NOT EXISTS (SELECT 1 FROM ohlcv_stage s WHERE s.symbol = t.symbol AND s.trade_date = t.trade_date)
LIMIT 1
"""
# Where the rows a DELETE/UPDATE touches lie, as constants: TimescaleDB filters compressed batches by
# constant conditions on the segment-by (symbol) and order-by (event_timestamp) columns, not by a join.
_DELETE_BOUNDS = "SELECT array_agg(DISTINCT symbol), min(old_first), max(old_last) FROM ohlcv_plan WHERE restamped"
_UPDATE_BOUNDS = (
    "SELECT array_agg(DISTINCT symbol), min(event_timestamp), max(event_timestamp) FROM ohlcv_plan WHERE changed"
)
_WITHIN = "t.symbol = ANY(%s::text[]) AND t.event_timestamp BETWEEN %s AND %s"
_DELETE_RESTAMPED = f"""
DELETE FROM {OHLCV_TABLE} t USING ohlcv_plan p
WHERE p.restamped AND t.symbol = p.symbol AND t.trade_date = p.trade_date AND t.event_timestamp <> p.event_timestamp
  AND {_WITHIN}
"""
_UPDATE_CHANGED = f"""
UPDATE {OHLCV_TABLE} t
SET ({", ".join(_VALUE_COLUMNS)}, created_timestamp) = ({", ".join(f"p.{c}" for c in _VALUE_COLUMNS)}, now())
FROM ohlcv_plan p WHERE p.changed AND t.symbol = p.symbol AND t.event_timestamp = p.event_timestamp AND {_WITHIN}
"""
_INSERT_NEW = f"""
INSERT INTO {OHLCV_TABLE} ({", ".join(STORED_COLUMNS)}, created_timestamp)
SELECT {", ".join(STORED_COLUMNS)}, now() FROM ohlcv_plan WHERE NOT same_stamp
"""


@dataclass(frozen=True)
class IngestResult:
    rows: int
    inserted: int
    updated: int  # changed values or a new session-close stamp
    symbols: int
    restamped: int = 0  # of the updated: stored at another stamp, moved to the file's

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


def _refuse_duplicates(conn: psycopg.Connection) -> None:
    """A unique index tells whether any (symbol, date) repeats: building it sorts the stage once, where a
    hash aggregate over millions of keys spills to disk several times slower. The lines are looked up only
    when it fails (in a savepoint, so the transaction goes on to say where)."""
    import psycopg

    try:
        with conn.transaction():
            conn.execute("CREATE UNIQUE INDEX ON ohlcv_stage (symbol, trade_date)")
        return
    except psycopg.errors.UniqueViolation:
        pass
    raise duplicates_error(conn.execute(_DUPLICATES, (MAX_REPORTED_ROWS,)).fetchall())


def _refuse_mixed_adjustment(conn: psycopg.Connection) -> None:
    mixed = conn.execute(_MIXED).fetchall()
    if mixed:
        raise mixed_adjustment_error(mixed)


def _refuse_taken_stamps(conn: psycopg.Connection) -> None:
    taken = conn.execute(_STAMP_TAKEN).fetchone()
    if taken:
        raise taken_stamp_error(*taken)


# The refusals' messages, shared with the lake's load (training.spark.lake_ingest), which applies the same rules.
def duplicates_error(twins: Sequence[Sequence[Any]]) -> InputError:
    """``twins``: (line, symbol, trade_date, how many in all) of the first duplicated rows, by line."""
    _, symbol, day, total = twins[0]
    lines = name_lines([line for line, *_ in twins], total)
    return InputError(f"duplicate (symbol, date) rows at line(s) {lines}, e.g. {symbol} {day}")


def mixed_adjustment_error(mixed: Sequence[Sequence[Any]]) -> InputError:
    """``mixed``: (symbol, adjusted bars, raw bars) of every symbol the load would leave mixed."""
    named = name_some([f"{s} ({a} adjusted, {r} raw)" for s, a, r in mixed])
    return InputError(
        f"this load would leave {len(mixed)} symbol(s) with a mix of split/dividend-adjusted and raw bars: "
        f"{named}; indicators would jump where the series switch. Load a file with the adjusted close for "
        "those bars, or give --allow-mixed-adjustment to store them anyway"
    )


def taken_stamp_error(symbol: str, day: object, other: object) -> InputError:
    return InputError(
        f"the bar of {symbol} {day} would be stamped at the session close already stored for {symbol} {other}; "
        "check --exchange-tz and --session-close"
    )


def upsert_chunks(chunks: Iterable[pd.DataFrame], allow_mixed_adjustment: bool = False) -> IngestResult:
    """Stage validated bars chunk by chunk (see :func:`~training.ingestion.bar_files.clean_chunks`), then write
    them, all in one transaction: an error raised while ``chunks`` is read rolls everything back.

    Rows identical to the stored ones are left alone (created_timestamp too), so ingesting the same file
    twice writes nothing; a changed bar (a vendor correction) is updated and its created_timestamp renewed.
    """
    with db.transaction() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK_KEY,))
        ensure_ohlcv_table(conn)
        conn.execute(
            f"CREATE TEMP TABLE ohlcv_stage (LIKE {OHLCV_TABLE} INCLUDING DEFAULTS, line bigint, dropped boolean) "
            "ON COMMIT DROP"
        )
        any_dropped = False
        for bars in chunks:
            staged = bars.reindex(columns=list(_STAGED_COLUMNS))
            db.copy_in(conn, "ohlcv_stage", staged)
            any_dropped = any_dropped or bool(staged["dropped"].any())
        _refuse_duplicates(conn)
        if any_dropped:
            conn.execute("DELETE FROM ohlcv_stage WHERE dropped")
        conn.execute("ANALYZE ohlcv_stage")
        conn.execute(_PLAN)
        rows, symbols, inserted, updated, restamped, changed, to_insert = conn.execute(_COUNTS).fetchone()
        if not allow_mixed_adjustment:
            _refuse_mixed_adjustment(conn)
        if to_insert:
            _refuse_taken_stamps(conn)
        if restamped:
            conn.execute(_DELETE_RESTAMPED, conn.execute(_DELETE_BOUNDS).fetchone())
        if changed:
            conn.execute(_UPDATE_CHANGED, conn.execute(_UPDATE_BOUNDS).fetchone())
        if to_insert:
            conn.execute(_INSERT_NEW)
    return IngestResult(rows=rows, inserted=inserted, updated=updated, symbols=symbols, restamped=restamped)


def upsert_bars(bars: pd.DataFrame, allow_mixed_adjustment: bool = False) -> IngestResult:
    """:func:`upsert_chunks` of bars held whole (see :func:`~training.ingestion.bar_files.clean_bars`)."""
    return upsert_chunks([bars], allow_mixed_adjustment)
