"""Re-adjustments as versioned events: a dividend or split that restates a symbol's adjusted history is one row
here, not one history row per restated bar; the bars "as known at" a time are derived from the stored versions
and the events known then, by the one query every reader uses (:func:`bars_known_at`).

An ingest that restates earlier ``adj_close`` values by a constant ratio (raw values unchanged) updates the bars
in place *keeping their created_timestamp* and records, per run of consecutive restated bars of a symbol, an
event (symbol, first and last event_timestamp, ratio, digits, created_timestamp = when it became known). A bar
version (the table's row, or a history row) created at C and superseded at S (infinity for the table's row)
holds, as known at T with C <= T < S, its stored values with every event covering it whose
created_timestamp lies in (T, S) undone, newest first: ``adj_close`` = ``adj_close / ratio`` (rounded to
``digits`` significant digits when the event says so) and the other adjusted prices from it and the raw prices,
as the ingest computes them (``open * (adj_close / close)``, ``volume / (adj_close / close)``).

Exact by construction: the ingest undoes each candidate event with this module's SQL expression and records it
only for bars where that gives back the stored version bit for bit; the others (a vendor's rounding can lose
what the ratio would need) are archived in the history table as before. An event covers only a run of bars it
restated exactly, so a bar the run does not hold is never touched by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from training.infra.versions import SUPERSEDED, has_history, history_table, known_at

if TYPE_CHECKING:
    import psycopg

ADJUSTMENTS_TABLE = "market_data.ohlcv_adjustments"
# Kept a plain table on TimescaleDB too: one row per restatement run (a few per dividend), read by symbol and
# range; chunking or compressing a few thousand rows would only add work to every as-of read.
ADJUSTMENTS_DDL = f"""
CREATE TABLE IF NOT EXISTS {ADJUSTMENTS_TABLE} (
    symbol            text             NOT NULL,
    first_timestamp   timestamptz      NOT NULL,
    last_timestamp    timestamptz      NOT NULL,
    ratio             double precision NOT NULL,
    digits            smallint,
    bars              integer          NOT NULL,
    created_timestamp timestamptz      NOT NULL,
    CHECK (ratio > 0), CHECK (first_timestamp <= last_timestamp), CHECK (digits BETWEEN 1 AND 15), CHECK (bars > 0),
    PRIMARY KEY (symbol, created_timestamp, first_timestamp)
);
"""
ADJUSTED_PRICES = ("adj_open", "adj_high", "adj_low", "adj_close", "adj_volume")
# Rounding candidates the ingest tries besides none: numeric holds a float8 to 15 significant digits.
DIGITS = (15, 14, 13, 12)


def restored_close(new: str, ratio: str, digits: str) -> str:
    """SQL: the adjusted close before an event (``ratio``, ``digits``) from the one after it (``new``).

    ``::numeric`` renders a float8 with 15 significant digits whatever the session's settings, and the rounded
    decimal comes back as the nearest float8, so the expression gives the same bits on every connection."""
    divided = f"({new} / {ratio})"
    rounded = f"round({divided}::numeric, ({digits} - 1 - floor(log(abs({divided}))))::int)::float8"
    return f"(CASE WHEN {digits} IS NULL THEN {divided} ELSE {rounded} END)"


def derived_prices(close: str, prefix: str = "") -> dict[str, str]:
    """SQL of each adjusted price of a bar whose adjusted close is ``close`` (its raw columns under ``prefix``),
    computed as :func:`training.ingestion.bar_files._adjusted` computes them from a file."""
    factor = f"({close} / {prefix}close)"
    return {
        "adj_open": f"{prefix}open * {factor}",
        "adj_high": f"{prefix}high * {factor}",
        "adj_low": f"{prefix}low * {factor}",
        "adj_close": close,
        "adj_volume": f"{prefix}volume / {factor}",
    }


def bars_known_at(
    table: str, columns: Sequence[str], known_at: datetime, history: bool = True, events: bool = True
) -> str:
    """``table`` (the bars table) as known at ``known_at``: a parenthesised SELECT of ``columns`` ready to stand
    where the table's name stood. ``history``/``events`` False: that table does not exist yet (a database from
    before versioning, or before adjustment events), so there is nothing of it to read."""
    from psycopg import sql

    at = sql.Literal(known_at).as_string()
    kept = ("symbol", "event_timestamp", "open", "high", "low", "close", "volume", *ADJUSTED_PRICES)
    base = list(dict.fromkeys((*kept, *columns)))
    listed = ", ".join(base)
    current = f"SELECT {listed}, 'infinity'::timestamptz AS {SUPERSEDED} FROM {table} WHERE created_timestamp <= {at}"
    older = (
        f" UNION ALL SELECT {listed}, {SUPERSEDED} FROM {history_table(table)} "
        f"WHERE created_timestamp <= {at} AND {SUPERSEDED} > {at}"
    )
    versions = current + (older if history else "")
    if not events:
        return f"(SELECT {', '.join(columns)} FROM ({versions}) AS v)"
    undone = restored_close("r.adj_close", "a.ratio", "a.digits")
    derived = derived_prices("f.adj_close", "v.")
    picked = ", ".join(
        f"CASE WHEN f.symbol IS NULL THEN v.{c} ELSE {derived[c]} END AS {c}" if c in derived else f"v.{c}"
        for c in columns
    )
    return f"""(WITH RECURSIVE versions AS ({versions}
), applied AS (
    SELECT v.symbol, v.event_timestamp, e.ratio, e.digits,
           row_number() OVER (PARTITION BY v.symbol, v.event_timestamp ORDER BY e.created_timestamp DESC) AS step
    FROM versions v JOIN {ADJUSTMENTS_TABLE} e
      ON e.symbol = v.symbol AND v.event_timestamp BETWEEN e.first_timestamp AND e.last_timestamp
    WHERE e.created_timestamp > {at} AND e.created_timestamp < v.{SUPERSEDED}
), restored AS (
    SELECT a.symbol, a.event_timestamp, v.adj_close, 0::bigint AS step
    FROM applied a JOIN versions v ON v.symbol = a.symbol AND v.event_timestamp = a.event_timestamp
    WHERE a.step = 1
    UNION ALL
    SELECT r.symbol, r.event_timestamp, {undone}, a.step
    FROM restored r JOIN applied a
      ON a.symbol = r.symbol AND a.event_timestamp = r.event_timestamp AND a.step = r.step + 1
), undone AS (
    SELECT DISTINCT ON (symbol, event_timestamp) symbol, event_timestamp, adj_close
    FROM restored ORDER BY symbol, event_timestamp, step DESC
)
SELECT {picked}
FROM versions v LEFT JOIN undone f ON f.symbol = v.symbol AND f.event_timestamp = v.event_timestamp)"""


def has_events(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (ADJUSTMENTS_TABLE,)).fetchone()[0]


def bars_relation(table: str, columns: Sequence[str], conn: psycopg.Connection) -> str:
    """What to read for the bars ``table``: its name, or within :func:`training.infra.versions.knowing` its rows
    as known then (:func:`bars_known_at`, given which of its version tables exist)."""
    at = known_at()
    if at is None:
        return table
    return bars_known_at(table, columns, at, history=has_history(conn, table), events=has_events(conn))
