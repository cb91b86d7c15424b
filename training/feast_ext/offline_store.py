"""Feast's PostgreSQL offline store with a point-in-time join that scales.

Select it in feature_store.yaml with ``type: training.feast_ext.offline_store.AsOfPostgreSQLOfflineStore``.
Everything except ``get_historical_features`` (materialization, pulls, saved datasets, monitoring) is the
stock store's. ``get_historical_features`` uploads the entity frame with COPY, joins with a sort-merge
(see :mod:`training.feast_ext.pit_sql`) and streams results out in binary; the stock version uploads
with ``executemany``, joins every entity row with every feature row of its key and reads with
``fetchall``, which takes minutes at 250 k entity rows. Requests the sort-merge cannot answer exactly
(non-entity retrieval, ``filter_by_created_timestamp``, entityless views, column types without a fixed
binary form) are handed to the stock implementation unchanged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from feast.errors import FeastEntityDFMissingColumnsError
from feast.feature_view import FeatureView
from feast.infra.offline_stores import offline_utils
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
    PostgreSQLRetrievalJob,
)
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.infra.utils.postgres.connection_utils import _get_conn
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from psycopg import sql
from pydantic import StrictStr

from training.feast_ext import pit_sql, retrieval
from training.feast_ext.plan import KEY_PG_TYPES, entity_table, join_groups
from training.pg_io import PG_TYPES, PgType

log = logging.getLogger(__name__)

CLASS_PATH = "training.feast_ext.offline_store.AsOfPostgreSQLOfflineStore"


class AsOfPostgreSQLOfflineStoreConfig(PostgreSQLOfflineStoreConfig):
    """The stock store's settings plus the sort memory of the join (``work_mem``, None: server default)."""

    type: Literal["training.feast_ext.offline_store.AsOfPostgreSQLOfflineStore"] = CLASS_PATH  # type: ignore[assignment]
    work_mem: StrictStr | None = "64MB"


ODFV_CHUNK_ROWS = 50_000


class AsOfRetrievalJob(PostgreSQLRetrievalJob):
    """A retrieval run by :func:`retrieval.execute`; on-demand views and ``to_df`` come from Feast's base."""

    def __init__(
        self,
        plan: retrieval.RetrievalPlan,
        config: RepoConfig,
        full_feature_names: bool,
        on_demand_feature_views: list[OnDemandFeatureView] | None,
        metadata: RetrievalMetadata,
    ):
        super().__init__(_describe(plan, metadata), config, full_feature_names, on_demand_feature_views, metadata)
        self.plan = plan
        self._chunk: pa.Table | None = None  # set while Feast's to_arrow applies on-demand views to one chunk

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        if self._chunk is not None:
            return self._chunk
        with _get_conn(self.config.offline_store) as conn:
            return retrieval.execute(conn, self.plan)

    def to_arrow(self, validation_reference: Any = None, timeout: int | None = None) -> pa.Table:
        """The result with on-demand views applied by Feast's own code, but ``ODFV_CHUNK_ROWS`` rows at a time.

        Feast hands a python-mode view the whole result as Python lists (``Table.to_pydict``): about 3 GB and
        many seconds at a million rows. Row-wise transformations give the same values chunk by chunk, in
        bounded memory, and only the columns the views read are converted. With a validation reference
        (which profiles the whole frame) Feast's path is kept.
        """
        if not self.on_demand_feature_views or validation_reference is not None:
            return super().to_arrow(validation_reference=validation_reference, timeout=timeout)
        table = self._to_arrow_internal(timeout=timeout)
        inputs = [c for c in table.column_names if c in self._on_demand_inputs()]
        pieces = []
        try:
            for offset in range(0, max(table.num_rows, 1), ODFV_CHUNK_ROWS):
                self._chunk = table.slice(offset, ODFV_CHUNK_ROWS).select(inputs)
                pieces.append(super().to_arrow(timeout=timeout))
        finally:
            self._chunk = None
        outputs = pa.concat_tables(pieces, promote_options="default")
        for name in outputs.column_names:
            if name not in inputs:
                table = table.append_column(name, outputs.column(name))
        return table

    def _on_demand_inputs(self) -> set[str]:
        """Columns an on-demand view may read: its sources' features (short and full names), request fields,
        and the join keys (online, Feast hands them to the transformation too)."""
        names: set[str] = set(self.plan.join_keys())
        for view in self.on_demand_feature_views:
            for projection in view.source_feature_view_projections.values():
                for feature in projection.features:
                    names |= {feature.name, f"{projection.name_to_use()}__{feature.name}"}
            for request in view.source_request_sources.values():
                names |= {field.name for field in request.schema}
        return names


class AsOfPostgreSQLOfflineStore(PostgreSQLOfflineStore):
    """PostgreSQL offline store whose point-in-time join is a sort-merge: O((n + m) log(n + m))."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        assert isinstance(config.offline_store, AsOfPostgreSQLOfflineStoreConfig)
        if filter_by_created_timestamp:
            planned: Any = "filter_by_created_timestamp (a per-row filter the running max cannot apply)"
        elif kwargs.get("start_date") or kwargs.get("end_date"):
            planned = "a start_date/end_date range instead of entity rows"
        else:
            planned = _plan(config, feature_views, feature_refs, entity_df, registry, project, full_feature_names)
        if isinstance(planned, str):
            log.info("get_historical_features handed to Feast's stock PostgreSQL store: %s", planned)
            return PostgreSQLOfflineStore.get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,
                registry,
                project,
                full_feature_names,
                filter_by_created_timestamp,
                **kwargs,
            )
        plan, bounds = planned
        return AsOfRetrievalJob(
            plan,
            config,
            full_feature_names,
            OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry),
            RetrievalMetadata(
                features=feature_refs,
                keys=[c for c in _entity_columns(plan) if c != plan.timestamp_column],
                min_event_timestamp=bounds[0],
                max_event_timestamp=bounds[1],
            ),
        )


def _plan(
    config: RepoConfig,
    feature_views: list[FeatureView],
    feature_refs: list[str],
    entity_df: pd.DataFrame | str | None,
    registry: BaseRegistry,
    project: str,
    full_feature_names: bool,
) -> tuple[retrieval.RetrievalPlan, tuple[datetime | None, datetime | None]] | str:
    """The retrieval plan and the entity timestamp range, or the reason to use the stock store."""
    if entity_df is None:
        return "no entity dataframe (timestamp-range retrieval)"
    with _get_conn(config.offline_store) as conn:
        conn.read_only = True
        if isinstance(entity_df, pd.DataFrame):
            if entity_df.empty:
                return "empty entity dataframe"
            entity = entity_table(entity_df)
            if isinstance(entity, str):
                return entity
            entity_types: list[tuple[str, PgType]] = []
            schema = dict(zip(entity_df.columns, entity_df.dtypes, strict=True))
        elif isinstance(entity_df, str):
            entity, entity_types = entity_df, _query_types(conn, entity_df)
            if isinstance(entity_types, str):
                return entity_types
            schema = {name: _dtype_of(t) for name, t in entity_types}
        else:
            return f"entity dataframe of type {type(entity_df).__name__}"
        ts_column = offline_utils.infer_event_timestamp_from_entity_df(schema)
        join_keys = offline_utils.get_expected_join_keys(project, feature_views, registry)
        missing = ({ts_column} | join_keys) - set(schema)
        if missing:
            raise FeastEntityDFMissingColumnsError({ts_column, *join_keys}, missing)
        types = _column_types(entity, entity_types)
        if not pa.types.is_timestamp(types[ts_column]):
            return f"entity timestamp column {ts_column!r} is not a timestamp"
        if any(types[k] not in KEY_PG_TYPES for k in join_keys):
            return "a join key column type without an upload type"
        bounds = _entity_bounds(conn, entity, ts_column)
        contexts = offline_utils.get_feature_view_query_context(
            feature_refs, feature_views, registry, project, bounds if bounds[0] else (datetime.min, datetime.min)
        )
        grouped = join_groups(contexts, feature_views, full_feature_names)
        if isinstance(grouped, str):
            return grouped
        groups, outputs = grouped
        if set(outputs) & set(schema):
            return "a feature shares its name with an entity dataframe column"
        group_types = []
        for group in groups:
            found = _result_types(conn, pit_sql.describe_query(group))
            if isinstance(found, str):
                return found
            if any(t.binary is None for _, t in found):
                return "a feature column type without a fixed-width binary form"
            group_types.append([t for _, t in found])
    work_mem = config.offline_store.work_mem
    plan = retrieval.RetrievalPlan(entity, entity_types, ts_column, groups, group_types, outputs, work_mem)
    return plan, bounds


def _query_types(conn: Any, query: str) -> list[tuple[str, PgType]] | str:
    return _result_types(conn, sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(sql.SQL(query)))


def _result_types(conn: Any, query: sql.Composable) -> list[tuple[str, PgType]] | str:
    """Column names and supported types of a query's result, or why one is not supported."""
    with conn.cursor() as cur:
        cur.execute(query)
        found = [(c.name, PG_TYPES.get(c.type_code)) for c in cur.description]
    unsupported = [name for name, t in found if t is None]
    if unsupported:
        return f"columns of unsupported type: {', '.join(unsupported)}"
    if len({name for name, _ in found}) != len(found):
        return "duplicate column names"
    return found  # type: ignore[return-value]


def _dtype_of(pg_type: PgType) -> Any:
    return "datetime64[ns]" if pa.types.is_timestamp(pg_type.arrow) else pg_type.arrow.to_pandas_dtype()


def _column_types(entity: pa.Table | str, entity_types: list[tuple[str, PgType]]) -> dict[str, pa.DataType]:
    if isinstance(entity, pa.Table):
        return {f.name: f.type for f in entity.schema}
    return {name: t.arrow for name, t in entity_types}


def _entity_columns(plan: retrieval.RetrievalPlan) -> list[str]:
    return plan.entity.column_names if isinstance(plan.entity, pa.Table) else [n for n, _ in plan.entity_types]


def _entity_bounds(conn: Any, entity: pa.Table | str, ts_column: str) -> tuple[datetime | None, datetime | None]:
    """The entity timestamps' range, tz-aware UTC (the stock store also computes it when planning)."""
    if isinstance(entity, pa.Table):
        bounds = retrieval._bounds(entity.column(ts_column))
        return bounds if bounds else (None, None)
    query = sql.SQL("SELECT min(q.{c})::timestamptz, max(q.{c})::timestamptz FROM ({e}) AS q").format(
        c=sql.Identifier(ts_column), e=sql.SQL(entity)
    )
    conn.execute("SET TimeZone = 'UTC'")
    row = conn.execute(query).fetchone()
    return (row[0], row[1]) if row else (None, None)


def _describe(plan: retrieval.RetrievalPlan, metadata: RetrievalMetadata) -> Any:
    """``to_sql``: the join of each group against a placeholder for the uploaded entity table."""

    low, high = metadata.min_event_timestamp, metadata.max_event_timestamp
    bounds = (low, high) if low is not None and high is not None else None

    @contextlib.contextmanager
    def query() -> Iterator[str]:
        keys = plan.join_keys()
        parts = []
        for group, types in zip(plan.groups, plan.group_types, strict=True):
            entity_keys = [pit_sql.key_column(keys.index(k)) for k in group.join_keys]
            parts.append(
                pit_sql.join_query(group, sql.Identifier("entity_rows"), entity_keys, types, bounds).as_string(None)
            )
        yield ";\n".join(parts)

    return query
