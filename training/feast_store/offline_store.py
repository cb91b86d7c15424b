"""Feast's PostgreSQL offline store with a point-in-time join that scales.

Select it in feature_store.yaml with ``type: training.feast_store.offline_store.AsOfPostgreSQLOfflineStore``.
Everything except ``get_historical_features`` and ``pull_latest_from_table_or_query`` (full pulls, saved
datasets, monitoring) is the stock store's. ``pull_latest_from_table_or_query`` (what materialization calls,
with ``materialization.pull_latest_features``) picks each entity's newest row in SQL, probing the source's
index once per key instead of ranking every row of the window: see :func:`latest_rows_query`.
``get_historical_features`` uploads the entity frame with COPY, joins with a sort-merge
(see :mod:`training.feast_store.pit_sql`) and streams results out in binary; the stock version uploads
with ``executemany``, joins every entity row with every feature row of its key and reads with
``fetchall``, which takes minutes at 250 k entity rows. ``filter_by_created_timestamp`` is answered too
(decision-time knowledge, :mod:`training.feast_store.decision_time`). Requests the sort-merge cannot answer
exactly (non-entity retrieval, entityless views, column types without a fixed
binary form, ``entity_select_mode: embed_query`` with an SQL entity query) are decided
:class:`~training.feast_store.plan.Unsupported` and handed to the stock implementation unchanged
(:mod:`training.feast_store.retrieval`, shared with the lake's store).

The store and job subclass Feast's classes and connections are opened from the store's own config fields;
the Feast internals this relies on are listed, and pinned by tests, in :mod:`training.feast_store.feast_internals`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from feast.data_source import DataSource
from feast.errors import ZeroColumnQueryResult
from feast.feature_view import FeatureView
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import (
    EntitySelectMode,
    PostgreSQLOfflineStore,
    PostgreSQLOfflineStoreConfig,
    PostgreSQLRetrievalJob,
)
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.registry.base_registry import BaseRegistry
from feast.infra.utils.postgres.postgres_config import PostgreSQLConfig
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.type_map import pg_type_code_to_arrow
from psycopg import sql
from pydantic import StrictStr

from training.feast_store import pit_join, pit_sql
from training.feast_store.decision_time import publication_lag
from training.feast_store.known_at import as_known, refuse_stock_store
from training.feast_store.plan import (
    KEY_PG_TYPES,
    Bounds,
    Decision,
    Joins,
    RetrievalPlan,
    Supported,
    Unsupported,
    entity_table,
)
from training.feast_store.retrieval import HistoricalRequest, ResolvedForEnvironment, answer
from training.infra.db import usable
from training.infra.pg_io import PG_TYPES, PgType

if TYPE_CHECKING:
    from feast.saved_dataset import ValidationReference

log = logging.getLogger(__name__)

CLASS_PATH = "training.feast_store.offline_store.AsOfPostgreSQLOfflineStore"
ODFV_CHUNK_ROWS = 50_000


class AsOfPostgreSQLOfflineStoreConfig(PostgreSQLOfflineStoreConfig, ResolvedForEnvironment):
    """The stock store's settings plus the sort memory of the join (``work_mem``, None: server default).

    ``entity_select_mode: embed_query`` is honoured: an SQL entity query then goes to the stock store, which
    embeds it (this store always stages entity rows in a temporary table).
    """

    type: Literal["training.feast_store.offline_store.AsOfPostgreSQLOfflineStore"] = CLASS_PATH  # type: ignore[assignment]
    work_mem: StrictStr | None = "64MB"
    password: StrictStr | None = None  # type: ignore[assignment]  # unset: libpq reads PGPASSWORD or ~/.pgpass


def connect(config: PostgreSQLConfig) -> psycopg.Connection:
    """A connection from the store's settings in feature_store.yaml, opened as Feast's stock store opens its
    own (same search path, SSL files and keepalive), so both stores read the same tables. A database whose
    TimescaleDB extension the server does not load is refused (its hypertables would read as empty)."""
    schema = (config.db_schema or config.user).strip()
    search_path = schema if schema == "public" else f"{schema},public"
    conn = psycopg.connect(
        host=config.host,
        port=int(config.port),
        dbname=config.database,
        user=config.user,
        password=config.password,
        sslmode=config.sslmode,
        sslkey=config.sslkey_path,
        sslcert=config.sslcert_path,
        sslrootcert=config.sslrootcert_path,
        keepalives_idle=config.keepalives_idle,
        options=f"-c search_path={search_path}",
    )
    return usable(conn)


class AsOfRetrievalJob(PostgreSQLRetrievalJob):
    """A retrieval run by :func:`pit_join.execute`; on-demand views and ``to_df`` come from Feast's base."""

    def __init__(
        self,
        plan: RetrievalPlan,
        config: RepoConfig,
        full_feature_names: bool,
        on_demand_feature_views: list[OnDemandFeatureView] | None,
        metadata: RetrievalMetadata,
    ):
        super().__init__(_describe(plan, metadata), config, full_feature_names, on_demand_feature_views, metadata)
        self.plan = plan

    def joined(self) -> pa.Table:
        """The entity rows with the joined feature columns, before on-demand views."""
        with connect(self.config.offline_store) as conn:
            return pit_join.execute(conn, self.plan)

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        """The hook Feast's ``RetrievalJob.to_arrow`` calls before it applies on-demand views."""
        return self.joined()

    def to_arrow(self, validation_reference: ValidationReference | None = None, timeout: int | None = None) -> pa.Table:
        """The result with on-demand views applied by Feast's own code, but ``ODFV_CHUNK_ROWS`` rows at a time.

        Feast hands a python-mode view the whole result as Python lists (``Table.to_pydict``): about 3 GB and
        many seconds at a million rows. Row-wise transformations give the same values chunk by chunk, in
        bounded memory, and only the columns the views read are converted. Each chunk goes through Feast's
        ``to_arrow`` as a :class:`TableJob` of its own. With a validation reference (which profiles the whole
        frame) Feast's path is kept.
        """
        if not self.on_demand_feature_views or validation_reference is not None:
            return super().to_arrow(validation_reference=validation_reference, timeout=timeout)
        table = self.joined()
        inputs = [c for c in table.column_names if c in self._on_demand_inputs()]
        pieces = [
            TableJob(table.slice(offset, ODFV_CHUNK_ROWS).select(inputs), self).to_arrow(timeout=timeout)
            for offset in range(0, max(table.num_rows, 1), ODFV_CHUNK_ROWS)
        ]
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


class TableJob(PostgreSQLRetrievalJob):
    """A result already in memory (with another job's views and metadata), for Feast's ``to_arrow`` to finish."""

    def __init__(self, table: pa.Table, like: PostgreSQLRetrievalJob):
        super().__init__("", like.config, like.full_feature_names, like.on_demand_feature_views, like.metadata)
        self.table = table

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        return self.table


class LatestRowsJob(PostgreSQLRetrievalJob):
    """The newest row of each entity, read with bound parameters; the result is typed as the stock job types it."""

    def __init__(self, query: sql.Composed, params: dict[str, Any], config: RepoConfig):
        @contextlib.contextmanager
        def rendered() -> Iterator[str]:  # to_sql: the query with its parameters inlined, for reading only
            with connect(config.offline_store) as conn:
                yield psycopg.ClientCursor(conn).mogrify(query, params)

        super().__init__(rendered, config, full_feature_names=False, on_demand_feature_views=None)
        self.query, self.params = query, params

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        with connect(self.config.offline_store) as conn, conn.cursor() as cur:
            conn.read_only = True
            cur.execute(self.query, self.params)
            if not cur.description:
                raise ZeroColumnQueryResult(self.query.as_string(conn))
            schema = pa.schema([(c.name, pg_type_code_to_arrow(c.type_code)) for c in cur.description])
            rows = cur.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
        return pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, schema, strict=True)],
                                    schema=schema)  # fmt: skip


class AsOfPostgreSQLOfflineStore(PostgreSQLOfflineStore):
    """PostgreSQL offline store whose point-in-time join is a sort-merge: O((n + m) log(n + m)), and whose
    latest-row pull reads one row per entity through the source's index."""

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
        """The newest row of each entity with ``start_date <= timestamp_field <= end_date`` (both ends included,
        as the stock store's BETWEEN), ties broken by ``created_timestamp_column`` descending.

        The stock query ranks every row of the window with ``ROW_NUMBER()`` and the database returns one per
        entity only after sorting them all; this one probes the source per entity key (see
        :func:`latest_rows_query`). Entityless views and "all columns" pulls (``feature_name_columns`` empty)
        keep the stock query.
        """
        if not join_key_columns or not feature_name_columns or not isinstance(data_source, PostgreSQLSource):
            return PostgreSQLOfflineStore.pull_latest_from_table_or_query(
                config,
                data_source,
                join_key_columns,
                feature_name_columns,
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
            )
        assert isinstance(config.offline_store, AsOfPostgreSQLOfflineStoreConfig)
        # Literal % of the source's SQL doubled: the query is run with bound parameters.
        source = sql.SQL(data_source.get_table_query_string().replace("%", "%%"))
        timestamps = [timestamp_field, *([created_timestamp_column] if created_timestamp_column else [])]
        params = {"start": start_date, "end": end_date}
        with connect(config.offline_store) as conn:
            conn.read_only = True
            query = latest_rows_query(conn, source, join_key_columns, feature_name_columns, timestamps, params)
        return LatestRowsJob(query, params, config)

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
        request = HistoricalRequest(
            config, feature_views, feature_refs, entity_df, registry, project, full_feature_names,
            filter_by_created_timestamp, kwargs,
        )  # fmt: skip

        def job(decision: Supported) -> RetrievalJob:
            plan, (low, high) = decision.plan, decision.bounds
            return AsOfRetrievalJob(
                plan,
                config,
                full_feature_names,
                OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry),
                RetrievalMetadata(
                    features=feature_refs,
                    keys=[c for c in _entity_columns(plan) if c != plan.timestamp_column],
                    min_event_timestamp=low,
                    max_event_timestamp=high,
                ),
            )

        decision = decide(request)
        if isinstance(decision, Unsupported):
            refuse_stock_store(decision.reason)
        return answer(PostgreSQLOfflineStore, request, decision, job)


def latest_rows_query(
    conn: psycopg.Connection,
    source: sql.Composable,
    join_keys: list[str],
    features: list[str],
    timestamps: list[str],
    params: dict[str, Any],
) -> sql.Composed:
    """The newest row per key in ``[%(start)s, %(end)s]``: the stock pull's columns, rows and order of ties.

    With one join key, a skip scan: a recursive CTE walks the distinct keys (one index probe each, NULL
    apart) and a LATERAL subquery takes each key's newest row in the window (one backward probe of an index
    on (key, timestamp)), so the cost grows with the number of keys, not of rows. It is used only when
    PostgreSQL plans it without a sequential scan (the source is, or flattens to, a table indexed that way);
    otherwise, and with several keys, ``DISTINCT ON (keys) ... ORDER BY keys, timestamp DESC, created DESC``,
    which gives the same rows after one sort of the window.
    """
    columns = [*join_keys, *features, *timestamps]
    listed = sql.SQL(", ").join(sql.SQL("a.{}").format(sql.Identifier(c)) for c in columns)
    newest_first = sql.SQL(", ").join(sql.SQL("a.{} DESC").format(sql.Identifier(t)) for t in timestamps)
    window = sql.SQL("a.{} BETWEEN %(start)s::timestamptz AND %(end)s::timestamptz").format(
        sql.Identifier(timestamps[0])
    )
    keys = sql.SQL(", ").join(sql.SQL("a.{}").format(sql.Identifier(k)) for k in join_keys)
    distinct_on = sql.SQL(
        "SELECT DISTINCT ON ({keys}) {listed} FROM {source} a WHERE {window} ORDER BY {keys}, {newest_first}"
    ).format(keys=keys, listed=listed, source=source, window=window, newest_first=newest_first)
    if len(join_keys) != 1:
        return distinct_on
    key = sql.Identifier(join_keys[0])
    skip_scan = sql.SQL(
        """WITH RECURSIVE keys AS (
    (SELECT a.{key} AS k FROM {source} a WHERE a.{key} IS NOT NULL ORDER BY a.{key} LIMIT 1)
    UNION ALL
    SELECT (SELECT a.{key} FROM {source} a WHERE a.{key} > keys.k ORDER BY a.{key} LIMIT 1)
    FROM keys WHERE keys.k IS NOT NULL
)
SELECT newest.* FROM keys CROSS JOIN LATERAL (
    SELECT {listed} FROM {source} a WHERE a.{key} = keys.k AND {window} ORDER BY {newest_first} LIMIT 1
) AS newest
UNION ALL
(SELECT {listed} FROM {source} a WHERE a.{key} IS NULL AND {window} ORDER BY {newest_first} LIMIT 1)"""
    ).format(key=key, source=source, listed=listed, window=window, newest_first=newest_first)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(skip_scan), params)
        plan = cur.fetchone()[0]
    return distinct_on if _has_seq_scan(plan) else skip_scan


def _has_seq_scan(node: Any) -> bool:
    """Whether an EXPLAIN (FORMAT JSON) plan reads any relation sequentially."""
    if isinstance(node, list):
        return any(_has_seq_scan(n) for n in node)
    if isinstance(node, dict):
        return node.get("Node Type") == "Seq Scan" or any(_has_seq_scan(v) for v in node.values())
    return False


def decide(request: HistoricalRequest) -> Decision:
    """Whether the sort-merge answers this retrieval exactly: its plan, or why the stock store must answer."""
    refused = request.refusal()
    if refused is not None:
        return refused
    entity_df, config = request.entity_df, request.config
    if not isinstance(entity_df, pd.DataFrame | str):
        return Unsupported(f"entity dataframe of type {type(entity_df).__name__}")
    if isinstance(entity_df, str) and config.offline_store.entity_select_mode == EntitySelectMode.embed_query:
        return Unsupported("entity_select_mode embed_query (the stock store embeds the entity query)")
    with connect(config.offline_store) as conn:
        conn.read_only = True
        if isinstance(entity_df, pd.DataFrame):
            entity = entity_table(entity_df)
            if isinstance(entity, Unsupported):
                return entity
            entity_types: list[tuple[str, PgType]] = []
            schema = dict(zip(entity_df.columns, entity_df.dtypes, strict=True))
        else:
            found = _result_types(conn, sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(sql.SQL(entity_df)))
            if isinstance(found, Unsupported):
                return found
            entity, entity_types = entity_df, found
            schema = {name: _dtype_of(t) for name, t in entity_types}
        ts_column, join_keys = request.entity_columns(schema)
        types = _column_types(entity, entity_types)
        if not pa.types.is_timestamp(types[ts_column]):
            return Unsupported(f"entity timestamp column {ts_column!r} is not a timestamp")
        if any(types[k] not in KEY_PG_TYPES for k in join_keys):
            return Unsupported("a join key column type without an upload type")
        low, high = bounds = _entity_bounds(conn, entity, ts_column)
        joins = request.joins((low, high) if low and high else (datetime.min,) * 2, schema)
        if isinstance(joins, Unsupported):
            return joins
        as_known(joins.groups, conn, every_version=request.filter_by_created_timestamp)
        group_types = _group_types(conn, joins)
        if isinstance(group_types, Unsupported):
            return group_types
    work_mem = config.offline_store.work_mem
    lag = publication_lag() if request.filter_by_created_timestamp else None
    plan = RetrievalPlan(entity, entity_types, ts_column, joins.groups, group_types, joins.outputs, work_mem, lag)
    return Supported(plan, bounds)


def _group_types(conn: psycopg.Connection, joins: Joins) -> list[list[PgType]] | Unsupported:
    """The types of each group's source columns, all of which must have a fixed-width binary form."""
    group_types = []
    for group in joins.groups:
        found = _result_types(conn, pit_sql.describe_query(group))
        if isinstance(found, Unsupported):
            return found
        if any(t.binary is None for _, t in found):
            return Unsupported("a feature column type without a fixed-width binary form")
        group_types.append([t for _, t in found])
    return group_types


def _result_types(conn: psycopg.Connection, query: sql.Composed) -> list[tuple[str, PgType]] | Unsupported:
    """Column names and supported types of a query's result, or why one is not supported."""
    with conn.cursor() as cur:
        cur.execute(query)
        found = [(c.name, PG_TYPES.get(c.type_code)) for c in cur.description or []]
    unsupported = [name for name, t in found if t is None]
    if unsupported:
        return Unsupported(f"columns of unsupported type: {', '.join(unsupported)}")
    if len({name for name, _ in found}) != len(found):
        return Unsupported("duplicate column names")
    return [(name, t) for name, t in found if t is not None]


def _dtype_of(pg_type: PgType) -> np.dtype:
    return np.dtype("datetime64[ns]" if pa.types.is_timestamp(pg_type.arrow) else pg_type.arrow.to_pandas_dtype())


def _column_types(entity: pa.Table | str, entity_types: list[tuple[str, PgType]]) -> dict[str, pa.DataType]:
    if isinstance(entity, pa.Table):
        return {f.name: f.type for f in entity.schema}
    return {name: t.arrow for name, t in entity_types}


def _entity_columns(plan: RetrievalPlan) -> list[str]:
    return plan.entity.column_names if isinstance(plan.entity, pa.Table) else [n for n, _ in plan.entity_types]


def _entity_bounds(conn: psycopg.Connection, entity: pa.Table | str, ts_column: str) -> Bounds:
    """The entity timestamps' range, tz-aware UTC (the stock store also computes it when planning)."""
    if isinstance(entity, pa.Table):
        return pit_join.timestamp_bounds(entity.column(ts_column)) or (None, None)
    query = sql.SQL("SELECT min(q.{c})::timestamptz, max(q.{c})::timestamptz FROM ({e}) AS q").format(
        c=sql.Identifier(ts_column), e=sql.SQL(entity)
    )
    conn.execute("SET TimeZone = 'UTC'")
    row = conn.execute(query).fetchone()
    return (row[0], row[1]) if row else (None, None)


def _describe(plan: RetrievalPlan, metadata: RetrievalMetadata) -> Callable[[], contextlib.AbstractContextManager[str]]:
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
                pit_sql.join_query(
                    group, sql.Identifier("entity_rows"), entity_keys, types, bounds, plan.decision_lag
                ).as_string(None)
            )
        yield ";\n".join(parts)

    return query
