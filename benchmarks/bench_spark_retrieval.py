"""Point-in-time retrieval on Spark (local[2]): the project's Spark store vs Feast's stock Spark store, same run.

Subject: ``get_historical_features(...).to_df()`` through ``AsOfSparkOfflineStore`` (co-group by symbol,
sorted merge); reference: the same call through Feast's stock ``SparkOfflineStore`` (range join within the
TTL, then ``ROW_NUMBER``). One feature view of the 23 indicators plus ``bar_timestamp`` over a Parquet table
of synthetic daily rows (TTL 7 days, every bar carrying a created timestamp), and one entity row per symbol
and bar, shifted by an hour so no row sits on a bar. Both answers are checked equal before timing counts.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Result
from training.indicators.definitions import FEATURE_NAMES

SIZES = {False: ((100, 2500), (500, 2520)), True: ((20, 500),)}  # (symbols, bars): 250 k and 1.26 M entity rows
TARGET = "≤ 1.0 (faster than the stock Spark store)"


def _features(symbols: int, bars: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2000-01-03", periods=bars, tz="UTC") + pd.Timedelta(hours=21)
    frame = pd.DataFrame(
        {
            "symbol": np.repeat([f"S{i:04d}" for i in range(symbols)], bars),
            "event_timestamp": np.tile(days.to_numpy(), symbols),
        }
    )
    frame["created_timestamp"] = frame["event_timestamp"] + pd.Timedelta(minutes=5)
    for name in FEATURE_NAMES:
        frame[name] = rng.normal(size=len(frame))
    return frame


def _store(folder: Path, table: Path, store_type: str):
    from feast import Entity, FeatureStore, FeatureView, Field
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.repo_config import RepoConfig
    from feast.types import Float64, UnixTimestamp
    from feast.value_type import ValueType

    symbol = Entity(name="symbol", join_keys=["symbol"], value_type=ValueType.STRING)
    source = SparkSource(
        name="bench_features",
        query=f"SELECT *, event_timestamp AS bar_timestamp FROM parquet.`{table}`",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )
    schema = [Field(name=n, dtype=Float64) for n in FEATURE_NAMES] + [Field(name="bar_timestamp", dtype=UnixTimestamp)]
    view = FeatureView(name="indicators", entities=[symbol], ttl=timedelta(days=7), schema=schema, source=source)
    config = RepoConfig(
        project="bench_spark",
        provider="local",
        registry=str(folder / "registry.db"),
        offline_store={"type": store_type},
        online_store={"type": "sqlite", "path": str(folder / "online.db")},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    store.apply([symbol, source, view])
    return store


def _timed(store, entity: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    refs = [f"indicators:{n}" for n in (*FEATURE_NAMES, "bar_timestamp")]
    start = time.perf_counter()
    frame = store.get_historical_features(entity.copy(), refs).to_df()
    return time.perf_counter() - start, frame


def run(quick: bool) -> list[Result]:
    from training.engines.spark.lake_offline_store import CLASS_PATH
    from training.engines.spark.session import session

    os.environ.setdefault("SPARK_MASTER", "local[2]")
    session()
    results = []
    for symbols, bars in SIZES[quick]:
        with tempfile.TemporaryDirectory() as work:
            folder = Path(work)
            features = _features(symbols, bars)
            table = folder / "features"
            table.mkdir()
            features.to_parquet(table / "part-0.parquet", coerce_timestamps="us", index=False)
            entity = features[["symbol", "event_timestamp"]].assign(
                event_timestamp=features["event_timestamp"] + pd.Timedelta(hours=1)
            )
            ours = _store(folder / "ours", table, CLASS_PATH)
            stock = _store(folder / "stock", table, "spark")
            _timed(ours, entity.head(1000))  # JIT and Python workers warm, for both
            ours_s, ours_rows = _timed(ours, entity)
            stock_s, stock_rows = _timed(stock, entity)
            key = ["symbol", "event_timestamp"]
            pd.testing.assert_frame_equal(
                ours_rows.sort_values(key).reset_index(drop=True)[list(ours_rows.columns)],
                stock_rows.sort_values(key).reset_index(drop=True)[list(ours_rows.columns)],
                check_exact=True,
            )
            results.append(
                Result(
                    benchmark="point-in-time retrieval on Spark (local[2])",
                    size=f"{len(entity):,} entity rows",
                    subject="AsOfSparkOfflineStore",
                    subject_seconds=ours_s,
                    reference="Feast's stock SparkOfflineStore",
                    reference_seconds=stock_s,
                    target=TARGET,
                    notes="same rows (checked exactly); one run each after a warm-up",
                )
            )
    return results
