"""What a get_historical_features call asks for, reduced to the joins the sort-merge has to run.

Feature views reading the same source with the same keys, timestamps and TTL are joined once (this repo's
five family views all read one table), and every requested feature keeps Feast's output name and order.
Anything a plan cannot express exactly comes back as :class:`Unsupported` with its reason, and the store
hands the request to Feast's stock store instead of answering differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.feature_view import FeatureView
from feast.infra.offline_stores.offline_utils import FeatureViewQueryContext

from training.infra.pg_io import PgType


@dataclass(frozen=True)
class OutputFeature:
    """One result column: ``output`` is Feast's name for the source column ``source``."""

    source: str
    output: str


@dataclass
class JoinGroup:
    """Feature views that share a source, join keys, timestamp columns and TTL: one as-of join serves them."""

    table_subquery: str
    timestamp_field: str
    created_timestamp_column: str | None
    key_sources: tuple[str, ...]  # key columns in the source
    join_keys: tuple[str, ...]  # the same keys in the entity frame
    ttl: timedelta | None  # None: no lower bound (Feast's ttl None or 0)
    features: list[OutputFeature] = field(default_factory=list)
    superseded_column: str | None = None  # a source of every version: when each stopped being the known one

    @property
    def source_columns(self) -> list[str]:
        """Distinct source columns, in first-requested order."""
        return list(dict.fromkeys(f.source for f in self.features))


@dataclass
class RetrievalPlan:
    """Everything needed to run the join; built (and checked) when the job is created."""

    entity: pa.Table | str  # the entity rows with their output types, or an SQL query returning them
    entity_types: list[tuple[str, PgType]]  # for a query: its columns and their types
    timestamp_column: str
    groups: list[JoinGroup]
    group_types: list[list[PgType]]  # types of each group's source columns
    outputs: list[str]  # feature columns in Feast's order
    work_mem: str | None
    decision_lag: timedelta | None = None  # decision-time knowledge with this publication lag (None: event time)

    def join_keys(self) -> list[str]:
        return list(dict.fromkeys(k for g in self.groups for k in g.join_keys))


Bounds = tuple[datetime | None, datetime | None]


@dataclass(frozen=True)
class Supported:
    """The sort-merge answers the request exactly: its plan and the entity timestamps' range (for metadata)."""

    plan: RetrievalPlan
    bounds: Bounds


@dataclass(frozen=True)
class Unsupported:
    """The sort-merge cannot answer the request exactly; ``reason`` is logged and the stock store answers."""

    reason: str


Decision = Supported | Unsupported


@dataclass(frozen=True)
class Joins:
    """The joins a request needs and its feature output names in Feast's order."""

    groups: list[JoinGroup]
    outputs: list[str]


def join_groups(
    contexts: list[FeatureViewQueryContext], feature_views: list[FeatureView], full_feature_names: bool
) -> Joins | Unsupported:
    """The groups to join and the feature output names, or why the request is not supported."""
    views = {fv.projection.name_to_use(): fv for fv in feature_views}
    groups: dict[tuple, JoinGroup] = {}
    outputs: list[str] = []
    for ctx in contexts:
        fv = views.get(ctx.name)
        if fv is None:
            return Unsupported(f"feature view {ctx.name!r} has no query context match")
        reverse = {v: k for k, v in fv.batch_source.field_mapping.items()}
        key_sources = tuple(reverse.get(c.name, c.name) for c in fv.entity_columns)
        join_keys = tuple(fv.projection.join_key_map.get(c.name, c.name) for c in fv.entity_columns)
        if not join_keys:
            return Unsupported(f"feature view {ctx.name!r} has no entity (entityless views go to the stock store)")
        ttl = timedelta(seconds=ctx.ttl) if ctx.ttl else None
        key = (ctx.table_subquery, ctx.timestamp_field, ctx.created_timestamp_column, key_sources, join_keys, ttl)
        group = groups.setdefault(
            key,
            JoinGroup(
                ctx.table_subquery, ctx.timestamp_field, ctx.created_timestamp_column, key_sources, join_keys, ttl
            ),
        )
        for source in ctx.features:
            name = ctx.field_mapping.get(source, source)
            output = f"{ctx.name}__{name}" if full_feature_names else name
            group.features.append(OutputFeature(source, output))
            outputs.append(output)
    if len(set(outputs)) != len(outputs):
        return Unsupported("two requested features share an output name")
    return Joins(list(groups.values()), outputs)


# What a column of each Arrow type becomes after the stock store's round trip: it creates the upload table
# with feast.type_map.arrow_to_pg_type and reads results back with pg_type_code_to_arrow. Types missing
# here either fail in the stock store too or come back changed in ways not worth imitating.
_ROUND_TRIP: dict[pa.DataType, pa.DataType] = {
    pa.bool_(): pa.bool_(),
    pa.int16(): pa.int32(),
    pa.int32(): pa.int32(),
    pa.int64(): pa.int64(),
    pa.uint8(): pa.int32(),
    pa.uint16(): pa.int32(),
    pa.uint32(): pa.int64(),
    pa.uint64(): pa.int64(),
    pa.float32(): pa.float64(),  # arrow_to_pg_type says "float", which PostgreSQL reads as double precision
    pa.float64(): pa.float64(),
    pa.string(): pa.string(),
}

# PostgreSQL types of the upload table for each (round-tripped) Arrow type of a join key.
KEY_PG_TYPES: dict[pa.DataType, str] = {
    pa.bool_(): "boolean",
    pa.int32(): "integer",
    pa.int64(): "bigint",
    pa.float32(): "real",
    pa.float64(): "double precision",
    pa.string(): "text",
    pa.timestamp("us"): "timestamptz",
}


def entity_table(frame: pd.DataFrame) -> pa.Table | Unsupported:
    """The entity frame with the column types the stock store would return, or why it cannot be done.

    Timestamps become naive microseconds in UTC (PostgreSQL keeps microseconds; the stock store drops the
    zone when it reads them back); naive input is taken as UTC, as Feast does everywhere.
    """
    arrays, names = [], []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            arrays.append(_microseconds_utc(column))
        else:
            try:
                array = pa.array(column, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                return Unsupported(f"entity column {name!r} does not convert to Arrow ({exc})")
            if pa.types.is_timestamp(array.type):  # datetime objects in an object column, as drivers return them
                arrays.append(_microseconds_utc(pd.Series(pd.to_datetime(column, utc=True))))
                names.append(str(name))
                continue
            target = _ROUND_TRIP.get(array.type)
            if target is None:
                reason = f"entity column {name!r} has type {array.type}, which the stock store does not round-trip"
                return Unsupported(reason)
            arrays.append(array.cast(target))
        names.append(str(name))
    return pa.Table.from_arrays(arrays, names=names)


def _microseconds_utc(column: pd.Series) -> pa.Array:
    """Floor to microseconds in UTC, as a Python datetime (what psycopg sends) would keep them."""
    series = column.dt.tz_convert("UTC").dt.tz_localize(None) if column.dt.tz is not None else column
    nanos = series.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    missing = series.isna().to_numpy()
    micros = np.floor_divide(nanos, 1000).astype("datetime64[us]")
    return pa.array(micros, type=pa.timestamp("us"), mask=missing)
