"""The bars table of the offline store and the TimescaleDB hypertable settings every offline table shares.

Plain PostgreSQL DDL, safe to run again; hypertables when TimescaleDB exists. The features table is defined
with the indicators (:mod:`training.indicators.feature_table`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from training.infra.db import timescaledb_available

if TYPE_CHECKING:
    import psycopg

OHLCV_TABLE = "market_data.ohlcv_daily"

# Raw bars as traded plus their split/dividend-adjusted versions (NULL when the input had no adjusted
# close). One bar per (symbol, trade_date) is kept by training.ingestion.upsert (a read, then delete/update/insert
# under an advisory lock), not by a unique index: a hypertable's unique indexes must include its time
# column. The primary key stays as databases created by earlier versions have it.
OHLCV_DDL = f"""
CREATE SCHEMA IF NOT EXISTS market_data;
CREATE TABLE IF NOT EXISTS {OHLCV_TABLE} (
    symbol            text             NOT NULL,
    event_timestamp   timestamptz      NOT NULL,
    trade_date        date             NOT NULL,
    open              double precision NOT NULL CHECK (open > 0),
    high              double precision NOT NULL CHECK (high > 0),
    low               double precision NOT NULL CHECK (low > 0),
    close             double precision NOT NULL CHECK (close > 0),
    volume            double precision NOT NULL CHECK (volume >= 0),
    adj_open          double precision,
    adj_high          double precision,
    adj_low           double precision,
    adj_close         double precision,
    adj_volume        double precision,
    created_timestamp timestamptz      NOT NULL DEFAULT now(),
    CHECK (high >= low),
    PRIMARY KEY (symbol, event_timestamp)
);
"""

# The bars indicators and labels are computed from: split/dividend-adjusted where an adjusted close was given.
ADJUSTED_BAR_COLUMNS = (
    "COALESCE(adj_open, open) AS open, COALESCE(adj_high, high) AS high, COALESCE(adj_low, low) AS low, "
    "COALESCE(adj_close, close) AS close, COALESCE(adj_volume, volume) AS volume"
)


@dataclass(frozen=True)
class Compression:
    """A hypertable's compression settings as TimescaleDB reports them."""

    enabled: bool
    segmentby: tuple[str, ...] = ()
    orderby: tuple[str, ...] = ()  # column names, " DESC" appended when descending


# Daily bars: segments per symbol, ordered by time, so reading one symbol's history decompresses its batches only.
WANTED_COMPRESSION = Compression(True, ("symbol",), ("event_timestamp",))
CHUNK_INTERVAL = "365 days"
COMPRESS_AFTER = "730 days"


def compression_to_apply(current: Compression | None) -> bool:
    """Whether ``ALTER TABLE ... SET (timescaledb.compress ...)`` must run: only when the settings differ.

    Re-applying identical settings fails on TimescaleDB before 2.14 once chunks are compressed.
    """
    return current != WANTED_COMPRESSION


def parse_orderby(text: str | None) -> tuple[str, ...]:
    """``"event_timestamp, x DESC NULLS LAST"`` -> ("event_timestamp", "x DESC"): defaults dropped."""
    columns = []
    for part in (text or "").split(","):
        words = part.strip().strip('"').split()
        if not words:
            continue
        descending = "DESC" in (w.upper() for w in words[1:])
        columns.append(words[0].strip('"') + (" DESC" if descending else ""))
    return tuple(columns)


def read_compression(conn: psycopg.Connection, table: str) -> Compression | None:
    """The hypertable's compression settings (None: not a hypertable yet); a read, never a write."""
    schema, name = table.split(".")
    row = conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = %s AND hypertable_name = %s",
        (schema, name),
    ).fetchone()
    if row is None:
        return None
    if not row[0]:
        return Compression(False)
    if conn.execute("SELECT to_regclass('timescaledb_information.hypertable_compression_settings')").fetchone()[0]:
        found = conn.execute(  # TimescaleDB >= 2.14
            "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
            "WHERE hypertable = %s::regclass",
            (table,),
        ).fetchone()
        segmentby, orderby = found or (None, None)
        return Compression(True, parse_orderby(segmentby), parse_orderby(orderby))
    rows = conn.execute(  # older releases: one row per column
        "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc "
        "FROM timescaledb_information.compression_settings WHERE hypertable_schema = %s AND hypertable_name = %s",
        (schema, name),
    ).fetchall()
    segments = tuple(r[0] for r in sorted((r for r in rows if r[1] is not None), key=lambda r: r[1]))
    ordered = sorted((r for r in rows if r[2] is not None), key=lambda r: r[2])
    return Compression(True, segments, tuple(r[0] + ("" if r[3] else " DESC") for r in ordered))


def make_hypertable(conn: psycopg.Connection, table: str) -> None:
    """Daily bars: one-year chunks, compressed per symbol once they are old enough not to be rewritten.

    Every step reads first and changes only what differs, so a routine run never rewrites compression settings.
    """
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0]:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    current = read_compression(conn, table)
    if current is None:
        conn.execute(
            "SELECT create_hypertable(%s, 'event_timestamp', chunk_time_interval => %s::interval, "
            "migrate_data => TRUE)",
            (table, CHUNK_INTERVAL),
        )
        current = read_compression(conn, table)
    if compression_to_apply(current):
        segmentby, orderby = ", ".join(WANTED_COMPRESSION.segmentby), ", ".join(WANTED_COMPRESSION.orderby)
        conn.execute(
            f"ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = '{segmentby}', "
            f"timescaledb.compress_orderby = '{orderby}')"
        )
    conn.execute(
        "SELECT add_compression_policy(%s, compress_after => %s::interval, if_not_exists => TRUE)",
        (table, COMPRESS_AFTER),
    )


def ensure_ohlcv_table(conn: psycopg.Connection) -> None:
    conn.execute(OHLCV_DDL)
    if timescaledb_available(conn):
        make_hypertable(conn, OHLCV_TABLE)
