"""Synthetic feature panels and Feast stores for the retrieval benchmark (its own PostgreSQL database).

A panel has the schema of features.technical_indicators (symbol, event_timestamp, created_timestamp and
the 23 indicators as double precision, some NULL as in a warm-up), one row per symbol and weekday bar
at 21:00 UTC. Feast sees it through five family views on one query source, like feature_repo/.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from training.indicators.definitions import FAMILIES, FEATURE_NAMES, by_family
from training.infra import settings

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

DATABASE = "ohlcv_bench_retrieval"
FIRST_BAR = pd.Timestamp("2004-01-05 21:00", tz="UTC")  # a Monday
TTL = timedelta(days=7)


def panel_table(symbols: int, bars: int) -> str:
    return f"panel_{symbols}x{bars}"


def bar_timestamps(bars: int) -> pd.DatetimeIndex:
    """Weekday closes: bar i is i // 5 weeks and i % 5 days after the first Monday."""
    i = np.arange(bars)
    return FIRST_BAR + pd.to_timedelta((i // 5) * 7 + i % 5, unit="D")


def symbol_names(symbols: int) -> list[str]:
    return [f"S{i:04d}" for i in range(symbols)]


def create_database() -> None:
    """A fresh benchmark database on the configured PostgreSQL (dropped first if a run left one)."""
    pg = settings.check_postgres()
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def drop_database() -> None:
    pg = settings.postgres()
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def create_panel(symbols: int, bars: int) -> None:
    """Generate the panel server-side (seeded), with its (symbol, event_timestamp) primary key."""
    table = sql.Identifier(panel_table(symbols, bars))
    columns = sql.SQL(", ").join(sql.SQL("{} double precision").format(sql.Identifier(n)) for n in FEATURE_NAMES)
    # Feature j is NULL on the first (j % 5) * 8 bars of every symbol, like indicators in their warm-up.
    values = sql.SQL(", ").join(
        sql.SQL("CASE WHEN i >= {} THEN random() * {} END").format(sql.Literal((j % 5) * 8), sql.Literal(10.0**j))
        for j in range(len(FEATURE_NAMES))
    )
    with psycopg.connect(settings.postgres().conninfo(DATABASE), autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (symbol text NOT NULL, event_timestamp timestamptz NOT NULL, "
                "created_timestamp timestamptz NOT NULL, {}, PRIMARY KEY (symbol, event_timestamp))"
            ).format(table, columns)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT 'S' || lpad(s::text, 4, '0'), t.ts, t.ts + interval '5 minutes', {} "
                "FROM generate_series(0, {} - 1) s, generate_series(0, {} - 1) i, "
                "LATERAL (SELECT {} + ((i / 5) * 7 + i % 5) * interval '1 day' AS ts) t"
            ).format(table, values, sql.Literal(symbols), sql.Literal(bars), sql.Literal(FIRST_BAR.to_pydatetime()))
        )
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))


def entity_frame(symbols: int, bars: int) -> pd.DataFrame:
    """One training sample per symbol and bar, at the bar's close (what the dataset builder asks for)."""
    stamps = bar_timestamps(bars)
    return pd.DataFrame(
        {
            "symbol": np.repeat(np.array(symbol_names(symbols), dtype=object), bars),
            "event_timestamp": np.tile(stamps.tz_localize(None).to_numpy(), symbols),
        }
    ).assign(event_timestamp=lambda f: f["event_timestamp"].dt.tz_localize("UTC"))


def feature_store(store_type: str, symbols: int, bars: int) -> tuple[FeatureStore, FeatureService]:
    """A FeatureStore on the panel with a file registry in a temporary folder, definitions applied."""
    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, RepoConfig
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
    from feast.types import Float64, UnixTimestamp
    from feast.value_type import ValueType

    pg = settings.postgres()
    folder = Path(tempfile.mkdtemp(prefix="bench_retrieval_"))
    offline = {
        "type": store_type,
        "host": pg.host,
        "port": pg.port,
        "database": DATABASE,
        "user": pg.user,
        "password": pg.password,
        "sslmode": pg.sslmode,
    }
    config = RepoConfig(
        project="bench_retrieval",
        provider="local",
        registry=str(folder / "registry.db"),
        offline_store=offline,
        online_store={"type": "sqlite", "path": str(folder / "online.db")},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
    source = PostgreSQLSource(
        name="panel_source",
        query=f"SELECT *, event_timestamp AS bar_timestamp FROM {panel_table(symbols, bars)}",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )
    views = []
    for family in FAMILIES:
        schema = [Field(name=i.name, dtype=Float64) for i in by_family(family)]
        if family == "price_action":
            schema.append(Field(name="bar_timestamp", dtype=UnixTimestamp))
        views.append(FeatureView(name=family, entities=[symbol], ttl=TTL, schema=schema, source=source))
    service = FeatureService(name="bench_service", features=views)
    store.apply([symbol, source, *views, service])
    return store, service
