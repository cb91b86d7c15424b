"""Feast's Spark offline store with a point-in-time join that sorts within join keys instead of ranking pairs.

Select it in feature_store.yaml with ``type: training.engines.spark.lake_offline_store.AsOfSparkOfflineStore``
(the lake profile's template does). Everything except ``get_historical_features`` is the stock store's.
The stock join pairs each entity row with every feature row of its key inside the TTL and keeps the
newest with ``ROW_NUMBER``; this one co-groups entity and feature rows by key and merges them sorted
(:mod:`training.engines.spark.asof_join`), giving the same rows; ``filter_by_created_timestamp`` joins by decision
time (:mod:`training.feast_store.decision_time`) over every feature version (``features/`` and
``features_history/``, as PostgreSQL's store reads its table and history); within a build as known at a time it
reads the features' versions known then (:mod:`training.engines.spark.lake_versions`). Requests it cannot answer exactly
(timestamp-range retrieval, non-Spark sources, names that collide) are decided
:class:`~training.feast_store.plan.Unsupported` and handed to the stock store unchanged (refused within a build
as known at a time) by the fallback both stores share (:mod:`training.feast_store.retrieval`); the Feast
internals relied on are listed in :mod:`training.feast_store.feast_internals`.

The job is a :class:`SparkRetrievalJob` whose ``to_spark_df`` is the joined frame, so ``to_df``,
``to_arrow``, ``persist`` and on-demand views behave, and type columns, as the stock job's. A pandas entity
frame comes back in its own row order (the stock store's order is whatever Spark's shuffle leaves).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from feast.data_source import DataSource
from feast.feature_view import FeatureView
from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkOfflineStore,
    SparkOfflineStoreConfig,
    SparkRetrievalJob,
)
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.type_map import spark_schema_to_np_dtypes

from training.engines.spark import asof_join, lake_versions, quiet_feast_alpha_warnings
from training.feast_store.decision_time import publication_lag
from training.feast_store.known_at import refuse_stock_store
from training.feast_store.plan import JoinGroup, Unsupported
from training.feast_store.retrieval import HistoricalRequest, ResolvedForEnvironment, answer
from training.infra.versions import SUPERSEDED

quiet_feast_alpha_warnings()  # after Feast's Spark modules put their own filter first

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

CLASS_PATH = "training.engines.spark.lake_offline_store.AsOfSparkOfflineStore"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AsOfSparkOfflineStoreConfig(SparkOfflineStoreConfig, ResolvedForEnvironment):
    """The stock Spark store's settings (``spark_conf``, ``staging_location``, ...) under this store's type."""

    type: Literal["training.engines.spark.lake_offline_store.AsOfSparkOfflineStore"] = CLASS_PATH  # type: ignore[assignment]


@dataclass(frozen=True)
class SparkPlan:
    """What the sort-merge runs: entity rows with a row id, the groups to join, Feast's output order."""

    entity: DataFrame  # the entity rows plus ROW_ID and ENTITY_TS
    entity_columns: list[str]
    groups: list[JoinGroup]
    outputs: list[str]
    bounds: tuple[datetime, datetime] | None
    metadata: RetrievalMetadata
    ordered: bool  # a pandas entity frame's rows come back in its order; a Spark frame or query has none to keep
    lag: timedelta | None = None  # decision-time knowledge with this publication lag (None: event time)


SparkDecision = SparkPlan | Unsupported


class AsOfSparkRetrievalJob(SparkRetrievalJob):
    """A stock Spark job whose frame is the sort-merge's result (see the module docstring)."""

    def __init__(self, spark: SparkSession, plan: SparkPlan, config: RepoConfig, full_feature_names: bool, odfvs):
        description = "-- as-of sort-merge per join key (training.engines.spark.asof_join); groups: " + "; ".join(
            f"{g.table_subquery} on {', '.join(g.join_keys)}" for g in plan.groups
        )
        super().__init__(spark, description, full_feature_names, config, odfvs, plan.metadata)
        self.plan = plan

    def to_spark_df(self) -> DataFrame:
        from pyspark.sql import functions as F

        plan, result = self.plan, self.plan.entity
        for group in plan.groups:
            source = self.spark_session.sql(f"SELECT * FROM {group.table_subquery} AS asof_source")
            if plan.lag is not None and SUPERSEDED in source.columns:  # a source of every version
                group = dataclasses.replace(group, superseded_column=SUPERSEDED)
            result = result.join(
                asof_join.join_group(plan.entity, group, source, plan.bounds, plan.lag), asof_join.ROW_ID, "left"
            )
        columns = [F.col(f"`{c}`") for c in (*plan.entity_columns, *plan.outputs)]
        return (result.orderBy(asof_join.ROW_ID) if plan.ordered else result).select(*columns)


class AsOfSparkOfflineStore(SparkOfflineStore):
    """Spark offline store whose point-in-time join is a sort-merge within join keys."""

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: DataSource,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: datetime,
        end_date: datetime,
    ) -> RetrievalJob:
        """The stock pull, in the project's session (UTC, Arrow; see training.engines.spark.session): Feast would
        otherwise start a bare session of its own when materialization is the first Spark work of a process."""
        from training.engines.spark.session import session

        session()
        return SparkOfflineStore.pull_latest_from_table_or_query(
            config,
            data_source,
            join_key_columns,
            feature_name_columns,
            timestamp_field,
            created_timestamp_column,
            start_date,
            end_date,
        )

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | DataFrame | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        assert isinstance(config.offline_store, AsOfSparkOfflineStoreConfig)
        from training.engines.spark.session import session

        spark = session()
        request = HistoricalRequest(
            config, feature_views, feature_refs, entity_df, registry, project, full_feature_names,
            filter_by_created_timestamp, kwargs,
        )  # fmt: skip

        def job(plan: SparkPlan) -> RetrievalJob:
            odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
            return AsOfSparkRetrievalJob(spark, plan, config, full_feature_names, odfvs)

        decision = decide(spark, request)
        if isinstance(decision, Unsupported):
            refuse_stock_store(decision.reason)
        return answer(SparkOfflineStore, request, decision, job)


def decide(spark: SparkSession, request: HistoricalRequest) -> SparkDecision:
    """Whether the sort-merge answers this retrieval exactly: its plan, or why the stock store must answer."""
    from pyspark.sql import DataFrame as SparkFrame

    refused = request.refusal()
    if refused is not None:
        return refused
    entity_df = request.entity_df
    if not all(isinstance(fv.batch_source, SparkSource) for fv in request.feature_views):
        return Unsupported("a feature view whose source is not a SparkSource")
    if isinstance(entity_df, pd.DataFrame):
        schema = dict(zip(entity_df.columns, entity_df.dtypes, strict=True))
    elif isinstance(entity_df, str | SparkFrame):
        frame = spark.sql(entity_df) if isinstance(entity_df, str) else entity_df
        schema = dict(zip(frame.columns, spark_schema_to_np_dtypes(frame.dtypes), strict=True))
    else:
        return Unsupported(f"entity dataframe of type {type(entity_df).__name__}")
    if any(str(name).startswith("__asof_") for name in schema):
        return Unsupported("an entity column named like the join's own (__asof_*)")
    ts_column, _ = request.entity_columns(schema)
    entity = _entity_frame(spark, entity_df, ts_column)
    bounds = _bounds(entity)
    low, high = bounds or (_EPOCH, _EPOCH)  # no entity row: any stamp Feast can subtract a TTL from
    joins = request.joins((low, high), schema)
    if isinstance(joins, Unsupported):
        return joins
    lake_versions.as_known(spark, joins.groups, every_version=request.filter_by_created_timestamp)
    metadata = RetrievalMetadata(
        features=request.feature_refs,
        keys=[str(c) for c in schema if c != ts_column],
        min_event_timestamp=low if bounds else None,
        max_event_timestamp=high if bounds else None,
    )
    ordered = isinstance(entity_df, pd.DataFrame)
    lag = publication_lag() if request.filter_by_created_timestamp else None
    return SparkPlan(entity, [str(c) for c in schema], joins.groups, joins.outputs, bounds, metadata, ordered, lag)


def _entity_frame(spark: SparkSession, entity_df: pd.DataFrame | str | DataFrame, ts_column: str) -> DataFrame:
    """The entity rows on Spark with a row id and the timestamp as ENTITY_TS.

    A pandas frame is uploaded as the stock store uploads it (timestamps read as UTC), its row order kept
    as the id; rows of a query or Spark frame get ids from ``monotonically_increasing_id``, fixed by a
    local checkpoint so both uses of the frame see the same ids.
    """
    from pyspark.sql import functions as F

    if isinstance(entity_df, pd.DataFrame):
        frame = entity_df.copy()  # the stock store converts the caller's column in place; we do not
        frame[ts_column] = pd.to_datetime(frame[ts_column], utc=True)
        frame[asof_join.ROW_ID] = range(len(frame))
        uploaded = spark.createDataFrame(frame)
    else:
        source = spark.sql(entity_df) if isinstance(entity_df, str) else entity_df
        uploaded = source.withColumn(asof_join.ROW_ID, F.monotonically_increasing_id()).localCheckpoint()
    return uploaded.withColumn(asof_join.ENTITY_TS, F.col(f"`{ts_column}`").cast("timestamp"))


def _bounds(entity: DataFrame) -> tuple[datetime, datetime] | None:
    """The entity timestamps' range (tz-aware UTC), None when no row has one; read as microseconds since 1970,
    since PySpark turns collected timestamps into the driver's local time."""
    from pyspark.sql import functions as F

    stamp = F.col(asof_join.ENTITY_TS)
    low, high = entity.agg(F.unix_micros(F.min(stamp)), F.unix_micros(F.max(stamp))).collect()[0]
    if low is None:
        return None
    return _from_micros(low), _from_micros(high)


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)
