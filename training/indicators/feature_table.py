"""The features table of the offline store and the Feast source over it, generated from the definition table.

Plain PostgreSQL DDL, safe to run again; a hypertable when TimescaleDB exists (the bars' settings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.contract import AUDIT_FEATURE
from training.indicators.definitions import FAMILIES, FEATURE_NAMES, REFERENCE_COLUMNS
from training.infra.db import timescaledb_available
from training.infra.schema import OHLCV_TABLE, make_hypertable

if TYPE_CHECKING:
    import psycopg

FEATURES_TABLE = "features.technical_indicators"
# Every feature view carries its bar's own event timestamp as a value, so a served row says which bar each
# view describes (a materialize stopped between views leaves them disagreeing, and serving refuses that).
# Feast needs feature names unique across views: the audit view keeps AUDIT_FEATURE, which the model's
# service serves and the dataset keeps as feature_timestamp; the others get `<view>_bar_timestamp`.
AUDIT_VIEW = "price_action"
VIEW_BAR_FIELDS = {family: AUDIT_FEATURE if family == AUDIT_VIEW else f"{family}_bar_timestamp" for family in FAMILIES}


def feature_source_query(table: str = FEATURES_TABLE) -> str:
    """The Feast source of every feature view: each row plus its event timestamp under each view's name
    (``table``: the PostgreSQL table, or the lake's as Spark SQL names it)."""
    return (
        "SELECT *, " + ", ".join(f"event_timestamp AS {field}" for field in VIEW_BAR_FIELDS.values()) + f" FROM {table}"
    )


FEATURE_SOURCE_QUERY = feature_source_query()

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


def ensure_features_table(conn: psycopg.Connection) -> None:
    """The features table, a hypertable when TimescaleDB is usable (chunks sized from the bars: one row per bar)."""
    hypertable = timescaledb_available(conn)
    conn.execute(FEATURES_DDL)
    if hypertable:
        make_hypertable(conn, FEATURES_TABLE, rows_from=OHLCV_TABLE)
