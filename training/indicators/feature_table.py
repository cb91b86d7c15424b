"""The features table of the offline store and the Feast source over it, generated from the definition table.

Plain PostgreSQL DDL, safe to run again; a hypertable when TimescaleDB exists (the bars' settings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.contract import AUDIT_FEATURE
from training.indicators.definitions import FAMILIES, FEATURE_NAMES, REFERENCE_COLUMNS
from training.infra.db import timescaledb_available
from training.infra.schema import OHLCV_TABLE, make_hypertable
from training.infra.versions import history_ddl, history_table

if TYPE_CHECKING:
    import psycopg

FEATURES_TABLE = "features.technical_indicators"
# Every feature view carries its bar's own event timestamp as a value, so a served row says which bar each
# view describes (a materialize stopped between views leaves them disagreeing, and serving refuses that).
# Feast needs feature names unique across views: the audit view keeps AUDIT_FEATURE, which the model's
# service serves and the dataset keeps as feature_timestamp; the others get `<view>_bar_timestamp`.
AUDIT_VIEW = "price_action"
VIEW_BAR_FIELDS = {family: AUDIT_FEATURE if family == AUDIT_VIEW else f"{family}_bar_timestamp" for family in FAMILIES}
# Two versions of one bar (a correction in place) share the bar's stamp: every view also carries its row's
# created_timestamp, which compute-features renews whenever a row's values change, in microseconds since the
# epoch (Feast keeps timestamps to the second; two writes within a second must still differ). A materialize
# stopped between views leaves them disagreeing, and serving refuses that too. Outside the model's service.
VIEW_VERSION_FIELDS = {family: f"{family}_row_version" for family in FAMILIES}
POSTGRES_ROW_VERSION = "(extract(epoch FROM created_timestamp) * 1000000)::bigint"


def feature_source_query(table: str = FEATURES_TABLE, row_version: str = POSTGRES_ROW_VERSION) -> str:
    """The Feast source of every feature view: each row plus its event timestamp and its version under each
    view's names (``table``: the PostgreSQL table, or the lake's as Spark SQL names it; ``row_version``: the
    created_timestamp in microseconds, in that SQL dialect)."""
    stamps = [f"event_timestamp AS {field}" for field in VIEW_BAR_FIELDS.values()]
    versions = [f"{row_version} AS {field}" for field in VIEW_VERSION_FIELDS.values()]
    return f"SELECT *, {', '.join([*stamps, *versions])} FROM {table}"


FEATURE_SOURCE_QUERY = feature_source_query()

_FEATURE_COLUMNS = ",\n".join(f"    {name} double precision" for name in (*FEATURE_NAMES, *REFERENCE_COLUMNS))
_COLUMNS = f"""
    symbol            text        NOT NULL,
    event_timestamp   timestamptz NOT NULL,
    created_timestamp timestamptz NOT NULL,
{_FEATURE_COLUMNS}"""
FEATURES_DDL = f"""
CREATE SCHEMA IF NOT EXISTS features;
CREATE TABLE IF NOT EXISTS {FEATURES_TABLE} ({_COLUMNS},
    PRIMARY KEY (symbol, event_timestamp)
);
"""
# Every feature row a recomputation replaced or removed (training.infra.versions).
FEATURES_HISTORY_TABLE = history_table(FEATURES_TABLE)
FEATURES_HISTORY_DDL = history_ddl(FEATURES_TABLE, _COLUMNS)
# A row version's columns in the table's order (the Feast source selects *), created_timestamp included.
FEATURE_ROW_COLUMNS = ("symbol", "event_timestamp", "created_timestamp", *FEATURE_NAMES, *REFERENCE_COLUMNS)


def ensure_features_table(conn: psycopg.Connection) -> None:
    """The features table and its history, hypertables when TimescaleDB is usable (chunks sized from the bars: one
    row per bar)."""
    hypertable = timescaledb_available(conn)
    conn.execute(FEATURES_DDL)
    conn.execute(FEATURES_HISTORY_DDL)
    if hypertable:
        make_hypertable(conn, FEATURES_TABLE, rows_from=OHLCV_TABLE)
        make_hypertable(conn, FEATURES_HISTORY_TABLE, rows_from=OHLCV_TABLE)
