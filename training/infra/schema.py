"""The bars table of the offline store and the TimescaleDB hypertable settings every offline table shares.

Plain PostgreSQL DDL, safe to run again; hypertables when TimescaleDB exists. The features table is defined
with the indicators (:mod:`training.indicators.feature_table`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from training.infra.adjustments import ADJUSTMENTS_DDL
from training.infra.db import timescaledb_available
from training.infra.versions import history_ddl, history_table

if TYPE_CHECKING:
    import psycopg

OHLCV_TABLE = "market_data.ohlcv_daily"

# Raw bars as traded plus their split/dividend-adjusted versions (NULL when the input had no adjusted
# close). One bar per (symbol, trade_date) is kept by training.ingestion.upsert (a read, then delete/update/insert
# under an advisory lock), not by a unique index: a hypertable's unique indexes must include its time
# column. The primary key stays as databases created by earlier versions have it.
# The columns as stored; a load's stage has them too (without the table's checks and key), so staging a file
# takes no lock on the table.
OHLCV_COLUMNS = """
    symbol            text             NOT NULL,
    event_timestamp   timestamptz      NOT NULL,
    trade_date        date             NOT NULL,
    open              double precision NOT NULL,
    high              double precision NOT NULL,
    low               double precision NOT NULL,
    close             double precision NOT NULL,
    volume            double precision NOT NULL,
    adj_open          double precision,
    adj_high          double precision,
    adj_low           double precision,
    adj_close         double precision,
    adj_volume        double precision,
    created_timestamp timestamptz      NOT NULL DEFAULT now()"""
OHLCV_DDL = f"""
CREATE SCHEMA IF NOT EXISTS market_data;
CREATE TABLE IF NOT EXISTS {OHLCV_TABLE} ({OHLCV_COLUMNS},
    CHECK (open > 0), CHECK (high > 0), CHECK (low > 0), CHECK (close > 0), CHECK (volume >= 0),
    CHECK (high >= low),
    PRIMARY KEY (symbol, event_timestamp)
);
"""

# Every version a correction, a re-adjustment or a re-stamp replaced (training.infra.versions).
OHLCV_HISTORY_TABLE = history_table(OHLCV_TABLE)
OHLCV_HISTORY_DDL = history_ddl(OHLCV_TABLE, OHLCV_COLUMNS)
# A bar version's columns besides created_timestamp, as both tables hold them.
OHLCV_VERSION_COLUMNS = (
    "symbol", "event_timestamp", "trade_date", "open", "high", "low", "close", "volume",
    "adj_open", "adj_high", "adj_low", "adj_close", "adj_volume",
)  # fmt: skip

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
COMPRESS_AFTER = "730 days"

# The chunk interval comes from the data's density when the hypertable is made: long enough that a chunk holds
# a full compressed batch (TimescaleDB compresses up to 1,000 rows of a segment into one) of every symbol,
# short enough that a chunk holds at most MAX_CHUNK_ROWS rows (with its index, well inside memory).
BATCH_ROWS = 1_000
MAX_CHUNK_ROWS = 2_000_000
MIN_CHUNK_DAYS, MAX_CHUNK_DAYS = 7, 3_650
DEFAULT_CHUNK_DAYS = 1_450  # no rows to measure: 1,000 sessions of 252 a year

_DENSITY = """
SELECT coalesce(sum(bars), 0), coalesce(sum(days), 0), coalesce(max(last) - min(first) + 1, 0)
FROM (SELECT count(*) AS bars, max(event_timestamp::date) - min(event_timestamp::date) + 1 AS days,
             min(event_timestamp::date) AS first, max(event_timestamp::date) AS last
      FROM {table} GROUP BY symbol) per_symbol
"""


def chunk_days(bars: int, symbol_days: int, span_days: int) -> int:
    """Days per chunk for ``bars`` rows spread over ``symbol_days`` (each symbol's first to last day, summed)
    and ``span_days`` (the first to the last day of any symbol).

    >>> chunk_days(12_154, 17_650, 4_750)  # the bundled data: 5 symbols over 13 years
    1452
    >>> chunk_days(5_000 * 2_520, 5_000 * 3_650, 3_650)  # 5,000 symbols over 10 years: at most 2 M rows a chunk
    579
    """
    if bars == 0:
        return DEFAULT_CHUNK_DAYS
    full_batches = BATCH_ROWS * symbol_days / bars  # days in which one symbol has BATCH_ROWS bars
    bounded = MAX_CHUNK_ROWS * span_days / bars  # days in which the table gains MAX_CHUNK_ROWS rows
    return int(min(max(round(min(full_batches, bounded)), MIN_CHUNK_DAYS), MAX_CHUNK_DAYS))


def measured_chunk_days(conn: psycopg.Connection, rows_from: str) -> int:
    """:func:`chunk_days` of the rows of ``rows_from`` (a table with symbol and event_timestamp columns)."""
    from psycopg import sql

    from training.infra.db import qualified

    query = sql.SQL(_DENSITY).format(table=qualified(rows_from))
    bars, symbol_days, span_days = conn.execute(query).fetchone()
    return chunk_days(int(bars), int(symbol_days), int(span_days))


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


def has_compression_policy(conn: psycopg.Connection, table: str) -> bool:
    schema, name = table.split(".")
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' "
        "AND hypertable_schema = %s AND hypertable_name = %s)",
        (schema, name),
    ).fetchone()[0]


def make_hypertable(conn: psycopg.Connection, table: str, rows_from: str | None = None) -> None:
    """Daily bars: chunks sized from the density of ``rows_from`` (default: ``table``), compressed per symbol once
    they are old enough not to be rewritten.

    Every step reads first and changes only what differs, so a routine run writes no catalog row and takes no
    lock on the table.
    """
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0]:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    current = read_compression(conn, table)
    if current is None:
        days = measured_chunk_days(conn, rows_from or table)
        conn.execute(
            "SELECT create_hypertable(%s, 'event_timestamp', chunk_time_interval => make_interval(days => %s), "
            "migrate_data => TRUE)",
            (table, days),
        )
        current = read_compression(conn, table)
    if compression_to_apply(current):
        segmentby, orderby = ", ".join(WANTED_COMPRESSION.segmentby), ", ".join(WANTED_COMPRESSION.orderby)
        conn.execute(
            f"ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = '{segmentby}', "
            f"timescaledb.compress_orderby = '{orderby}')"
        )
    if not has_compression_policy(conn, table):
        conn.execute("SELECT add_compression_policy(%s, compress_after => %s::interval)", (table, COMPRESS_AFTER))
    allow_decompressing_writes(conn)


def allow_decompressing_writes(conn: psycopg.Connection) -> None:
    """Lift TimescaleDB's cap on the tuples one transaction may decompress (default 100,000), for this transaction
    only: a vendor's correction of 1 % of the bars touches a batch in nearly every compressed chunk, and the
    recomputed features of every later bar; the cap would refuse the whole write half-way through the data."""
    conn.execute("SELECT set_config('timescaledb.max_tuples_decompressed_per_dml_transaction', '0', true)")


def create_ohlcv_table(conn: psycopg.Connection) -> bool:
    """The bars table and its history as plain DDL; whether they are to be hypertables (decided before any DDL
    runs). A database from before versioning gains its (empty) history table here, on its next ingest."""
    hypertable = timescaledb_available(conn)
    conn.execute(OHLCV_DDL)
    conn.execute(OHLCV_HISTORY_DDL)
    conn.execute(ADJUSTMENTS_DDL)
    return hypertable


def ensure_ohlcv_table(conn: psycopg.Connection, rows_from: str | None = None) -> None:
    """The bars table and its history, hypertables when TimescaleDB is usable (chunks sized from ``rows_from``,
    default the bars table itself)."""
    if create_ohlcv_table(conn):
        make_hypertable(conn, OHLCV_TABLE, rows_from)
        make_hypertable(conn, OHLCV_HISTORY_TABLE, rows_from=OHLCV_TABLE)
