"""Tables of the offline store. Plain PostgreSQL DDL, safe to run again; hypertables when TimescaleDB exists."""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.contract import AUDIT_FEATURE
from training.indicators.definitions import FEATURE_NAMES, REFERENCE_COLUMNS
from training.infra.db import timescaledb_available

if TYPE_CHECKING:
    import psycopg

OHLCV_TABLE = "market_data.ohlcv_daily"
FEATURES_TABLE = "features.technical_indicators"
# The Feast source of every feature view: each row also carries its own event timestamp as a value
# (AUDIT_FEATURE), so a joined or served row says which bar it describes.
FEATURE_SOURCE_QUERY = f"SELECT *, event_timestamp AS {AUDIT_FEATURE} FROM {FEATURES_TABLE}"

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

_FEATURE_COLUMNS = ",\n".join(f"    {name} double precision" for name in (*FEATURE_NAMES, *REFERENCE_COLUMNS))
FEATURES_DDL = f"""
CREATE SCHEMA IF NOT EXISTS features;
CREATE TABLE IF NOT EXISTS {FEATURES_TABLE} (
    symbol            text        NOT NULL,
    event_timestamp   timestamptz NOT NULL,
    created_timestamp timestamptz NOT NULL,
{_FEATURE_COLUMNS},
    PRIMARY KEY (symbol, event_timestamp)
);
"""


def _hypertable(conn: psycopg.Connection, table: str) -> None:
    """Daily bars: one-year chunks, compressed per symbol once they are old enough not to be rewritten."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute(
        "SELECT create_hypertable(%s, 'event_timestamp', chunk_time_interval => INTERVAL '365 days', "
        "if_not_exists => TRUE, migrate_data => TRUE)",
        (table,),
    )
    conn.execute(
        f"ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', "
        "timescaledb.compress_orderby = 'event_timestamp')"
    )
    conn.execute(
        "SELECT add_compression_policy(%s, compress_after => INTERVAL '730 days', if_not_exists => TRUE)", (table,)
    )


def ensure_ohlcv_table(conn: psycopg.Connection) -> None:
    conn.execute(OHLCV_DDL)
    if timescaledb_available(conn):
        _hypertable(conn, OHLCV_TABLE)


def ensure_features_table(conn: psycopg.Connection) -> None:
    conn.execute(FEATURES_DDL)
    if timescaledb_available(conn):
        _hypertable(conn, FEATURES_TABLE)
