"""Real services for every test: the configured PostgreSQL/Redis, or the embedded defaults.

Each test session gets its own PostgreSQL database and Feast project (so its Redis keys and registry
rows are its own) and a temporary state folder (SQLite online store, MLflow backend); nothing a user
built with `make train` is touched, and concurrent sessions do not collide.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from training import settings

BUNDLED_DATA = settings.PROJECT_ROOT / "data" / "stocks.csv.gz"


@pytest.fixture(scope="session", autouse=True)
def isolated_services(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("state")
    os.environ["OHLCV_STATE_DIR"] = str(state)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{state / 'mlflow.db'}")
    name = f"ohlcv_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    pg = settings.check_postgres()
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["PGDATABASE"] = name
    os.environ["FEAST_PROJECT"] = name
    settings.check_redis()
    yield name
    with psycopg.connect(pg.conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def conn(isolated_services):
    from training import db

    connection = db.connect(autocommit=True)
    yield connection
    connection.close()


@pytest.fixture
def empty_store(conn):
    """No market data and no features: each test that writes starts from empty tables."""
    for table in ("market_data.ohlcv_daily", "features.technical_indicators"):
        conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    return conn


@pytest.fixture(scope="session")
def bundled_raw() -> pd.DataFrame:
    return pd.read_csv(BUNDLED_DATA, dtype=str, keep_default_na=False)


@pytest.fixture
def write_csv(tmp_path: Path):
    def write(frame: pd.DataFrame, name: str = "bars.csv") -> Path:
        path = tmp_path / name
        frame.to_csv(path, index=False)
        return path

    return write
