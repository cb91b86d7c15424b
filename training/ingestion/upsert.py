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
* Staging takes no lock on the table, so the plan and the writes run in a savepoint that is rerun after a
  deadlock (TimescaleDB's compression policy upgrades its lock on a chunk the plan has read): rolling back
  to the savepoint releases every lock the attempt took, and the file is not read again.
* A column absent from the file never erases stored values: a file without an adjusted close keeps each
  stored bar's adjustment factor (``adj_close / close``). A load that would leave a symbol with a mix
  of adjusted and raw bars is refused unless explicitly allowed: indicators would jump at the seam.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from training.errors import InputError
from training.infra import db
from training.infra.schema import (
    OHLCV_COLUMNS,
    OHLCV_HISTORY_TABLE,
    OHLCV_TABLE,
    OHLCV_VERSION_COLUMNS,
    create_ohlcv_table,
    make_hypertable,
)
from training.infra.versions import archive_sql
from training.ingestion.load_rules import (
    ADJUSTED,
    RAW,
    STAGED_COLUMNS,
    STORED_COLUMNS,
    VALUE_COLUMNS,
    IngestResult,
    duplicates_error,
    duplicates_query,
    merged_adjusted,
    mixed_adjustment_error,
    mixed_adjustment_query,
    taken_stamp_error,
    taken_stamp_query,
)
from training.ingestion.restatements import record_events

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

# One key for every ingest into the table (pg_advisory_xact_lock takes a bigint).
INGEST_LOCK_KEY = zlib.crc32(f"ingest {OHLCV_TABLE}".encode())


# One row per staged bar: its merged values, what is stored for its (symbol, trade_date), and what to do.
# Tables created by earlier versions may hold several rows for one date (one per session close used);
# the row at the file's stamp is the one compared, every other one is deleted.
_PLAN = f"""
CREATE TEMP TABLE ohlcv_plan ON COMMIT DROP AS
WITH stored AS (
    SELECT DISTINCT ON (t.symbol, t.trade_date)
           t.symbol, t.trade_date, {", ".join(f"t.{c}" for c in (*RAW, *ADJUSTED))}, t.created_timestamp,
           bool_or(t.event_timestamp = s.event_timestamp) OVER w AS same_stamp,
           bool_or(t.event_timestamp <> s.event_timestamp) OVER w AS restamped,
           min(t.event_timestamp) FILTER (WHERE t.event_timestamp <> s.event_timestamp) OVER w AS old_first,
           max(t.event_timestamp) FILTER (WHERE t.event_timestamp <> s.event_timestamp) OVER w AS old_last
    FROM ohlcv_stage s JOIN {OHLCV_TABLE} t ON t.symbol = s.symbol AND t.trade_date = s.trade_date
    WINDOW w AS (PARTITION BY t.symbol, t.trade_date)
    ORDER BY t.symbol, t.trade_date, t.event_timestamp = s.event_timestamp DESC, t.created_timestamp DESC
), merged AS (
    SELECT s.symbol, s.event_timestamp, s.trade_date, {", ".join(f"s.{c}" for c in RAW)},
           {", ".join(merged_adjusted(c) for c in ADJUSTED)},
           o.symbol IS NOT NULL AS known, coalesce(o.same_stamp, false) AS same_stamp,
           coalesce(o.restamped, false) AS restamped, o.old_first, o.old_last,
           {", ".join(f"o.{c} AS stored_{c}" for c in (*RAW, *ADJUSTED))}, o.created_timestamp AS stored_created,
           coalesce(s.known_at, now()) AS knowledge, false AS evented
    FROM ohlcv_stage s LEFT JOIN stored o ON o.symbol = s.symbol AND o.trade_date = s.trade_date
)
SELECT *, same_stamp AND ({", ".join(c for c in (*RAW, *ADJUSTED))})
          IS DISTINCT FROM ({", ".join(f"stored_{c}" for c in (*RAW, *ADJUSTED))}) AS changed
FROM merged
"""
_COUNTS = """
SELECT count(*), count(DISTINCT symbol), count(*) FILTER (WHERE NOT known),
       count(*) FILTER (WHERE restamped OR changed), count(*) FILTER (WHERE restamped),
       count(*) FILTER (WHERE changed), count(*) FILTER (WHERE NOT same_stamp)
FROM ohlcv_plan
"""
_DUPLICATES = duplicates_query("ohlcv_stage")
# The file's knowledge time (its as-of column) of a bar that replaces a version known later: versions would not
# follow each other in knowledge time. (symbol, trade_date, file line, the file's time, the stored version's.)
AS_OF = "known_at"
_KNOWN_BEFORE_STORED = """
SELECT p.symbol, p.trade_date, s.line, p.knowledge, p.stored_created FROM ohlcv_plan p
JOIN ohlcv_stage s ON s.symbol = p.symbol AND s.trade_date = p.trade_date
WHERE (p.changed OR p.restamped) AND s.known_at IS NOT NULL AND p.knowledge < p.stored_created
ORDER BY s.line LIMIT 1
"""
_MIXED = mixed_adjustment_query("ohlcv_plan", "ohlcv_stage", OHLCV_TABLE)
_STAMP_TAKEN = taken_stamp_query("ohlcv_plan", "ohlcv_stage", OHLCV_TABLE)
# Where the rows a DELETE/UPDATE touches lie, as constants: TimescaleDB filters compressed batches by
# constant conditions on the segment-by (symbol) and order-by (event_timestamp) columns, not by a join.
_DELETE_BOUNDS = "SELECT array_agg(DISTINCT symbol), min(old_first), max(old_last) FROM ohlcv_plan WHERE restamped"
_UPDATE_BOUNDS = (
    "SELECT array_agg(DISTINCT symbol), min(event_timestamp), max(event_timestamp) FROM ohlcv_plan WHERE changed"
)
_WITHIN = "t.symbol = ANY(%s::text[]) AND t.event_timestamp BETWEEN %s AND %s"
# Before a row is deleted or updated, its version goes to the history table, superseded now (the new
# version's created_timestamp): the same rows, selected the same way.
_RESTAMPED_ROWS = (
    "p.restamped AND t.symbol = p.symbol AND t.trade_date = p.trade_date AND t.event_timestamp <> p.event_timestamp "
    f"AND {_WITHIN}"
)
_CHANGED_ROWS = (
    f"p.changed AND NOT p.evented AND t.symbol = p.symbol AND t.event_timestamp = p.event_timestamp AND {_WITHIN}"
)
# A row's new version is known at the plan's ``knowledge`` (now()), never before the version it replaces
# (:data:`training.infra.versions.REPLACED_AT`).
_REPLACED_AT = "GREATEST(p.knowledge, t.created_timestamp)"
_ARCHIVE_RESTAMPED = archive_sql(OHLCV_TABLE, OHLCV_VERSION_COLUMNS, "ohlcv_plan p", _RESTAMPED_ROWS, _REPLACED_AT)
_ARCHIVE_CHANGED = archive_sql(OHLCV_TABLE, OHLCV_VERSION_COLUMNS, "ohlcv_plan p", _CHANGED_ROWS, _REPLACED_AT)
_DELETE_RESTAMPED = f"""
DELETE FROM {OHLCV_TABLE} t USING ohlcv_plan p
WHERE p.restamped AND t.symbol = p.symbol AND t.trade_date = p.trade_date AND t.event_timestamp <> p.event_timestamp
  AND {_WITHIN}
"""
_UPDATE_CHANGED = f"""
UPDATE {OHLCV_TABLE} t
SET ({", ".join(VALUE_COLUMNS)}, created_timestamp) = ({", ".join(f"p.{c}" for c in VALUE_COLUMNS)},
     CASE WHEN p.evented THEN t.created_timestamp ELSE {_REPLACED_AT} END)
FROM ohlcv_plan p WHERE p.changed AND t.symbol = p.symbol AND t.event_timestamp = p.event_timestamp AND {_WITHIN}
"""
_INSERT_NEW = f"""
INSERT INTO {OHLCV_TABLE} ({", ".join(STORED_COLUMNS)}, created_timestamp)
SELECT {", ".join(STORED_COLUMNS)}, knowledge FROM ohlcv_plan WHERE NOT same_stamp
"""


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
    raise duplicates_error(conn.execute(_DUPLICATES).fetchall())


def _refuse_mixed_adjustment(conn: psycopg.Connection) -> None:
    mixed = conn.execute(_MIXED).fetchall()
    if mixed:
        raise mixed_adjustment_error(mixed)


def _refuse_taken_stamps(conn: psycopg.Connection) -> None:
    taken = conn.execute(_STAMP_TAKEN).fetchone()
    if taken:
        raise taken_stamp_error(*taken)


def _refuse_knowledge_before_stored(conn: psycopg.Connection) -> None:
    found = conn.execute(_KNOWN_BEFORE_STORED).fetchone()
    if found:
        symbol, day, line, known, stored = found
        raise InputError(
            f"the knowledge time of {symbol} {day} (line {line}: {known.isoformat()}) is before that of its stored "
            f"version ({stored.isoformat()}): a version cannot replace one known later; nothing was loaded"
        )


def upsert_chunks(chunks: Iterable[pd.DataFrame], allow_mixed_adjustment: bool = False) -> IngestResult:
    """Stage validated bars chunk by chunk (see :func:`~training.ingestion.bar_files.clean_chunks`), then write
    them, all in one transaction: an error raised while ``chunks`` is read rolls everything back.

    Rows identical to the stored ones are left alone (created_timestamp too), so ingesting the same file
    twice writes nothing; a changed bar (a vendor correction) is updated and its created_timestamp renewed, its
    earlier version kept in the history table (:mod:`training.infra.versions`), unless a re-adjustment restated
    it exactly: then an adjustment event keeps what it was (:mod:`training.ingestion.restatements`).
    """
    with db.transaction() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK_KEY,))
        hypertable = create_ohlcv_table(conn)
        conn.execute(
            f"CREATE TEMP TABLE ohlcv_stage ({OHLCV_COLUMNS}, line bigint, dropped boolean, known_at timestamptz) "
            "ON COMMIT DROP"
        )
        any_dropped = False
        for bars in chunks:
            staged = bars.reindex(columns=[*STAGED_COLUMNS, AS_OF])
            db.copy_in(conn, "ohlcv_stage", staged)
            any_dropped = any_dropped or bool(staged["dropped"].any())
        _refuse_duplicates(conn)
        if any_dropped:
            conn.execute("DELETE FROM ohlcv_stage WHERE dropped")
        conn.execute("ANALYZE ohlcv_stage")
        if hypertable:
            make_hypertable(conn, OHLCV_TABLE, rows_from="ohlcv_stage")
            make_hypertable(conn, OHLCV_HISTORY_TABLE, rows_from="ohlcv_stage")
        return db.retry_lock_conflicts(lambda: _write(conn, allow_mixed_adjustment), "ingest")


def _write(conn: psycopg.Connection, allow_mixed_adjustment: bool) -> IngestResult:
    """Plan the staged bars against the table and write them, in a savepoint (see the module's docstring)."""
    with conn.transaction():
        conn.execute(_PLAN)
        rows, symbols, inserted, updated, restamped, changed, to_insert = conn.execute(_COUNTS).fetchone()
        if not allow_mixed_adjustment:
            _refuse_mixed_adjustment(conn)
        if to_insert:
            _refuse_taken_stamps(conn)
        if updated:
            _refuse_knowledge_before_stored(conn)
        if restamped:
            bounds = conn.execute(_DELETE_BOUNDS).fetchone()
            conn.execute(_ARCHIVE_RESTAMPED, bounds)
            conn.execute(_DELETE_RESTAMPED, bounds)
        readjusted = 0
        if changed:
            readjusted = record_events(conn)[1]
            bounds = conn.execute(_UPDATE_BOUNDS).fetchone()
            conn.execute(_ARCHIVE_CHANGED, bounds)
            conn.execute(_UPDATE_CHANGED, bounds)
        if to_insert:
            conn.execute(_INSERT_NEW)
    return IngestResult(rows, inserted, updated, symbols, restamped, readjusted)


def upsert_bars(bars: pd.DataFrame, allow_mixed_adjustment: bool = False) -> IngestResult:
    """:func:`upsert_chunks` of bars held whole (see :func:`~training.ingestion.bar_files.clean_bars`)."""
    return upsert_chunks([bars], allow_mixed_adjustment)
