"""The Spark sort-merge offline store returns exactly what Feast's stock Spark store and the PostgreSQL stores return.

The tables of ``tests/test_offline_store.py`` (duplicate bars with other created timestamps, NULL created
timestamps, NULL features and a stored NaN, a view without a created column, a field mapping, two join
keys) are written as Parquet files and read through ``SparkSource``s shaped as the PostgreSQL ones (a query
source adding ``bar_timestamp``, path sources). Random entity frames (rows at bars, between bars, at both
sides of each TTL edge, before any bar, unknown symbols, duplicates) go through AsOfSparkOfflineStore,
Feast's stock Spark store (local[2]), the PostgreSQL sort-merge store on the same rows, and a
``pandas.merge_asof`` reference; all must agree exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import FeatureStore
from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkRetrievalJob
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.repo_config import RepoConfig

from tests.test_offline_store import (
    FEATURES,
    _entity_frame,
    _reference,
    _sorted,
    _store,
    definitions,
    write_pit_tables,
)
from training.engines.spark import lake_offline_store
from training.engines.spark.lake_offline_store import CLASS_PATH, AsOfSparkRetrievalJob
from training.feast_store.offline_store import CLASS_PATH as POSTGRES_CLASS_PATH
from training.feast_store.plan import Unsupported
from training.feast_store.retrieval import HistoricalRequest


@pytest.fixture(scope="module")
def tables(isolated_services) -> dict[str, pd.DataFrame]:
    return write_pit_tables()


@pytest.fixture(scope="module")
def postgres_store(tables, tmp_path_factory) -> FeatureStore:
    """The PostgreSQL sort-merge store on the same rows: both profiles must answer alike."""
    return _store(tmp_path_factory, POSTGRES_CLASS_PATH)


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """NaN in pandas is NULL here, as in the PostgreSQL tables; the one stored NaN is set apart below.
    Timestamps in microseconds, as PostgreSQL keeps them (Spark reads no nanosecond Parquet timestamps)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.timestamp("us", tz="UTC")))
    return table


@pytest.fixture(scope="module")
def lake(tables, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lake")
    bars = _arrow(tables["bars"].drop(columns=["bar_timestamp"]))
    f_b = bars.column("f_b").to_numpy(zero_copy_only=False).copy()
    null = bars.column("f_b").is_null().to_numpy(zero_copy_only=False)
    null[0] = False  # row 0's f_b is the stored NaN: a value, not a NULL
    bars = bars.set_column(bars.schema.get_field_index("f_b"), "f_b", pa.array(f_b, mask=null))
    (folder / "bars").mkdir()
    half = bars.num_rows // 2  # two files, as a partitioned table has
    pq.write_table(bars.slice(0, half), folder / "bars" / "part-0.parquet")
    pq.write_table(bars.slice(half), folder / "bars" / "part-1.parquet")
    pq.write_table(_arrow(tables["other"]), folder / "other.parquet")
    pq.write_table(_arrow(tables["venue_bars"]), folder / "venue_bars.parquet")
    return folder


def _definitions(lake: Path) -> list[Any]:
    bars_source = SparkSource(
        name="bars_source",
        query=f"SELECT *, event_timestamp AS bar_timestamp FROM parquet.`{lake / 'bars'}`",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )
    other_source = SparkSource(
        name="other_source",
        path=str(lake / "other.parquet"),
        file_format="parquet",
        timestamp_field="ts",
        field_mapping={"ticker": "symbol", "raw_x": "x"},
    )
    venue_source = SparkSource(
        name="venue_source",
        path=str(lake / "venue_bars.parquet"),
        file_format="parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    return definitions(bars_source, other_source, venue_source)


def _spark_store(folder: Path, lake: Path, store_type: str) -> FeatureStore:
    config = RepoConfig(
        project="spark_pit",
        provider="local",
        registry=str(folder / "registry.db"),
        offline_store={"type": store_type},
        online_store={"type": "sqlite", "path": str(folder / "online.db")},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    store.apply(_definitions(lake))
    return store


@pytest.fixture(scope="module")
def spark_stores(spark, lake, tmp_path_factory) -> tuple[FeatureStore, FeatureStore]:
    return (
        _spark_store(tmp_path_factory.mktemp("asof_spark"), lake, CLASS_PATH),
        _spark_store(tmp_path_factory.mktemp("stock_spark"), lake, "spark"),
    )


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Spark hands timestamps back naive (its session time zone is UTC) in microseconds; so do we, here."""
    frame = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            frame[name] = column.astype("datetime64[us]")
    return _sorted(frame)


@pytest.mark.parametrize(("seed", "full_feature_names", "with_stock"), [(1, False, True), (2, True, False)])
def test_matches_stock_spark_postgres_and_merge_asof(
    spark_stores, postgres_store, tables, seed, full_feature_names, with_stock
):
    ours_store, stock_store = spark_stores
    entity = _entity_frame(seed, tables)
    before = entity.copy()
    job = ours_store.get_historical_features(entity, FEATURES, full_feature_names=full_feature_names)
    assert isinstance(job, AsOfSparkRetrievalJob)
    ours = job.to_df()
    pd.testing.assert_frame_equal(entity, before)  # the caller's frame is not converted in place
    assert (ours["row_id"].to_numpy() == entity["row_id"].to_numpy()).all()  # entity row order is kept
    if with_stock:  # Feast's stock Spark join takes ~15 s here: once is enough
        stock_job = stock_store.get_historical_features(entity, FEATURES, full_feature_names=full_feature_names)
        assert type(stock_job) is SparkRetrievalJob
        stock = stock_job.to_df()
        pd.testing.assert_frame_equal(_sorted(ours), _sorted(stock[list(ours.columns)]), check_exact=True)
    postgres = postgres_store.get_historical_features(entity, FEATURES, full_feature_names=full_feature_names).to_df()
    pd.testing.assert_frame_equal(_comparable(ours), _comparable(postgres), check_exact=True, check_dtype=False)
    reference = _reference(entity, tables, full_feature_names)[list(ours.columns)]
    pd.testing.assert_frame_equal(_comparable(ours), _comparable(reference), check_exact=True, check_dtype=False)
    f_a = ours["fv_a__f_a" if full_feature_names else "f_a"]
    assert 0 < f_a.notna().sum() < len(ours)  # some rows match, some do not


def test_null_and_nan_stay_apart(spark_stores, tables):
    """A stored NaN comes back as NaN, a NULL as NULL, on the Spark frame (pandas shows both as NaN)."""
    from pyspark.sql import functions as F

    ours_store, stock_store = spark_stores
    bars = tables["bars"]
    entity = pd.DataFrame({"symbol": [bars.loc[0, "symbol"]], "event_timestamp": [bars.loc[0, "event_timestamp"]]})
    entity = pd.concat([entity, _entity_frame(3, tables, n=60)[["symbol", "event_timestamp"]]], ignore_index=True)
    counts = []
    for store in (ours_store, stock_store):
        frame = store.get_historical_features(entity, ["fv_a:f_a", "fv_a:f_b"]).to_spark_df()
        counts.append(frame.agg(*(F.sum(F.isnan(c).cast("int")) for c in ("f_a", "f_b")),
                                *(F.sum(F.isnull(c).cast("int")) for c in ("f_a", "f_b"))).collect()[0])  # fmt: skip
    assert counts[0] == counts[1]
    assert counts[0][1] >= 1  # the stored NaN of row 0 joins as a NaN
    assert counts[0][2] >= 1 and counts[0][3] >= 1  # and NULLs as NULLs


def test_an_empty_entity_frame_gets_no_rows_and_the_features_columns(spark, spark_stores, tables):
    """On the Spark frame, on-demand columns computed on the executors (training.engines.spark.on_demand) included."""
    from training.engines.spark.on_demand import with_on_demand_features

    ours_store, _ = spark_stores
    entity = _entity_frame(4, tables, n=120)
    empty = spark.createDataFrame(entity).limit(0)
    frame = with_on_demand_features(ours_store.get_historical_features(empty, FEATURES))
    assert frame.count() == 0 and set(entity.columns) | {ref.split(":")[1] for ref in FEATURES} <= set(frame.columns)


def test_on_demand_columns_on_the_executors_equal_feasts_own(spark_stores, tables):
    from training.engines.spark.on_demand import with_on_demand_features

    ours_store, _ = spark_stores
    entity = _entity_frame(4, tables, n=120)
    job = ours_store.get_historical_features(entity, FEATURES)
    on_executors = with_on_demand_features(job).toPandas()
    expected = job.to_df()
    for name in ("a_plus_b", "c_twice"):
        np.testing.assert_array_equal(on_executors[name].to_numpy(), expected[name].to_numpy(), err_msg=name)


def test_sql_and_spark_entity_frames_match_the_pandas_path(spark, spark_stores, tables):
    ours_store, _ = spark_stores
    entity = _entity_frame(4, tables, n=120)
    spark.createDataFrame(entity).createOrReplaceTempView("asof_entity_rows")
    from_query = ours_store.get_historical_features("SELECT * FROM asof_entity_rows", FEATURES)
    assert isinstance(from_query, AsOfSparkRetrievalJob)
    from_frame = ours_store.get_historical_features(spark.table("asof_entity_rows"), FEATURES)
    expected = ours_store.get_historical_features(entity, FEATURES).to_df()
    for got in (from_query.to_df(), from_frame.to_df()):
        pd.testing.assert_frame_equal(_sorted(got), _sorted(expected), check_exact=True)


def test_filter_by_created_timestamp_matches_the_stock_spark_store_and_postgres(
    spark, spark_stores, postgres_store, tables
):
    """Decision-time knowledge on the lake: lag 0 is Feast's ``filter_by_created_timestamp`` (the stock Spark
    store's answer); with a publication lag both sort-merge stores still agree."""
    from datetime import timedelta

    from training.feast_store.decision_time import deciding

    ours_store, stock_store = spark_stores
    entity = _entity_frame(6, tables, n=150)
    job = ours_store.get_historical_features(entity, FEATURES, filter_by_created_timestamp=True)
    assert isinstance(job, AsOfSparkRetrievalJob) and job.plan.lag == timedelta(0)
    ours = job.to_df()
    stock = stock_store.get_historical_features(entity, FEATURES, filter_by_created_timestamp=True).to_df()
    pd.testing.assert_frame_equal(_sorted(ours), _sorted(stock[list(ours.columns)]), check_exact=True)
    for lag in (timedelta(0), timedelta(minutes=40)):
        with deciding(lag):
            ours = ours_store.get_historical_features(entity, FEATURES, filter_by_created_timestamp=True).to_df()
            postgres = postgres_store.get_historical_features(entity, FEATURES, filter_by_created_timestamp=True)
            postgres = postgres.to_df()
        pd.testing.assert_frame_equal(_comparable(ours), _comparable(postgres), check_exact=True, check_dtype=False)

    views = [ours_store.get_feature_view("fv_a")]
    clashing = entity.assign(f_a=1.0)
    request = HistoricalRequest(ours_store.config, views, ["fv_a:f_a"], clashing, ours_store.registry, "spark_pit")
    decided = lake_offline_store.decide(spark, request)
    assert isinstance(decided, Unsupported) and "shares its name" in decided.reason


def test_feast_reads_the_store_type_from_yaml(tmp_path):
    from feast.repo_config import load_repo_config

    (tmp_path / "feature_store.yaml").write_text(
        f"project: p\nprovider: local\nregistry: {tmp_path / 'registry.db'}\n"
        f"offline_store:\n  type: {CLASS_PATH}\n  spark_conf:\n    spark.sql.shuffle.partitions: '4'\n"
        "online_store:\n  type: sqlite\n  path: online.db\nentity_key_serialization_version: 3\n"
    )
    config = load_repo_config(tmp_path, tmp_path / "feature_store.yaml")
    assert type(config.offline_store).__name__ == "AsOfSparkOfflineStoreConfig"
    assert config.offline_store.spark_conf == {"spark.sql.shuffle.partitions": "4"}
