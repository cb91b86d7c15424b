"""The point-in-time (as-of) join on Spark: a sort-merge within each join key, never a range join.

Entity rows and feature rows are co-grouped by join key (``cogroup(...).applyInArrow``), so one call sees
one symbol's entity rows and feature rows, whole, as Arrow tables (NULL stays NULL, NaN stays NaN). Inside,
the feature rows are sorted by (event timestamp, created timestamp); the newest created row of each event
timestamp is kept; a binary search gives each entity row the newest feature timestamp at or before its own;
the TTL is checked on that matched timestamp. O((n + m) log m) per key, against Feast's stock Spark join,
which joins every entity row with every feature row of its key inside the TTL and ranks them.

The rows matched are the PostgreSQL store's (:mod:`training.feast_store.pit_sql`) and the stock stores':
NULL keys and NULL timestamps never match, nor (when the view has one) feature rows whose created timestamp
is NULL; a feature row stamped exactly at the entity time is known at that time.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from datetime import datetime

    from pyspark.sql import DataFrame

    from training.feast_store.plan import JoinGroup

ROW_ID = "__asof_row"
ENTITY_TS = "__asof_ts"
FEATURE_TS = "__asof_fts"
CREATED = "__asof_created"
SUPERSEDED = "__asof_superseded"


def _micros(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps as int64 microseconds since 1970 (UTC) and where they are valid."""
    column = column.cast(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(column.type) else column
    as_int = column.cast(pa.int64())
    valid = pc.is_valid(as_int).to_numpy(zero_copy_only=False)
    return as_int.fill_null(0).to_numpy(zero_copy_only=False), valid


def newest_per_timestamp(features: pa.Table, created: bool) -> pa.Table:
    """Rows sorted by event timestamp, one per timestamp: the newest created (NULL created rows never match)."""
    if created:
        features = features.filter(pc.is_valid(features[CREATED]))
    features = features.filter(pc.is_valid(features[FEATURE_TS]))
    keys = [(FEATURE_TS, "ascending"), *([(CREATED, "ascending")] if created else [])]
    features = features.take(pc.sort_indices(features, sort_keys=keys))
    stamps, _ = _micros(features[FEATURE_TS])
    last_of_stamp = np.append(stamps[1:] != stamps[:-1], True) if len(stamps) else np.zeros(0, dtype=bool)
    return features.filter(pa.array(last_of_stamp))


def match_rows(entity: pa.Table, features: pa.Table, ttl: timedelta | None) -> pa.Array:
    """For each entity row, the position in ``newest_per_timestamp(features)`` it joins, NULL for none."""
    stamps, _ = _micros(features[FEATURE_TS])
    at, valid = _micros(entity[ENTITY_TS])
    position = np.searchsorted(stamps, at, side="right") - 1
    matched = valid & (position >= 0)
    if ttl is not None and len(stamps):
        matched &= stamps[np.clip(position, 0, None)] >= at - ttl // timedelta(microseconds=1)
    return pa.array(np.where(matched, position, 0), type=pa.int64(), mask=~matched)


def match_decision_time(entity: pa.Table, features: pa.Table, ttl: timedelta | None, lag: timedelta) -> pa.Array:
    """For each entity row, the position in ``features`` of the version usable at its decision time, NULL for
    none (the rule and its algorithm: :func:`training.feast_store.decision_time.match`, shared with the
    PostgreSQL store's definition)."""
    from training.feast_store.decision_time import NEVER, match

    valid_rows = pc.and_(pc.is_valid(features[FEATURE_TS]), pc.is_valid(features[CREATED]))
    kept = np.flatnonzero(valid_rows.to_numpy(zero_copy_only=False))  # NULL stamps never match
    usable = features.filter(valid_rows)
    event, _ = _micros(usable[FEATURE_TS])
    created, _ = _micros(usable[CREATED])
    superseded = None
    if SUPERSEDED in usable.column_names:
        ended, valid = _micros(usable[SUPERSEDED])
        superseded = np.where(valid, ended, NEVER)
    at, valid = _micros(entity[ENTITY_TS])
    micro = timedelta(microseconds=1)
    chosen = match(at, event, created, superseded, None if ttl is None else ttl // micro, lag // micro)
    found = valid & (chosen >= 0)
    return pa.array(np.where(found, kept[np.clip(chosen, 0, None)] if len(kept) else 0, 0), mask=~found)


def join_one_key(
    entity: pa.Table,
    features: pa.Table,
    *,
    ttl: timedelta | None,
    created: bool,
    columns: pa.Schema,
    lag: timedelta | None = None,
) -> pa.Table:
    """One key's entity row ids with the joined feature ``columns`` (a ``cogroup.applyInArrow`` function);
    ``lag``: join by decision time with that publication lag (None: by event time).

    Spark hands a side with no rows for the key as a table without columns: no entity rows give no output,
    no feature rows give NULLs of the columns' types.
    """
    if entity.num_rows == 0:
        return columns.insert(0, pa.field(ROW_ID, pa.int64())).empty_table()
    if features.num_rows == 0:
        taken = [pa.nulls(entity.num_rows, f.type) for f in columns]
    elif lag is not None and created:
        taken = features.select(columns.names).take(match_decision_time(entity, features, ttl, lag)).columns
    else:
        newest = newest_per_timestamp(features, created)
        taken = newest.select(columns.names).take(match_rows(entity, newest, ttl)).columns
    return pa.Table.from_arrays([entity[ROW_ID], *taken], names=[ROW_ID, *columns.names])


def join_group(
    entity: DataFrame,
    group: JoinGroup,
    source: DataFrame,
    bounds: tuple[datetime, datetime] | None,
    lag: timedelta | None = None,
) -> DataFrame:
    """``(ROW_ID, output features...)`` of every entity row for one group of views sharing a source.

    ``entity`` has ``ROW_ID``, ``ENTITY_TS`` and the group's join keys; ``source`` is the views' source as
    Spark reads it; ``lag``: join by decision time (a source with a ``superseded_timestamp`` column holds
    every version). Only feature rows that can match are shuffled: non-NULL keys, timestamps within the
    entity rows' range widened by the TTL.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    keys = list(group.join_keys)
    selected = [F.col(f"`{s}`").alias(k) for s, k in zip(group.key_sources, keys, strict=True)]
    selected.append(F.col(f"`{group.timestamp_field}`").alias(FEATURE_TS))
    if group.created_timestamp_column:
        selected.append(F.col(f"`{group.created_timestamp_column}`").alias(CREATED))
        if lag is not None and group.superseded_column:
            selected.append(F.col(f"`{group.superseded_column}`").alias(SUPERSEDED))
    columns = group.source_columns
    inner = [f"__asof_f{i}" for i in range(len(columns))]
    selected += [F.col(f"`{c}`").alias(name) for c, name in zip(columns, inner, strict=True)]
    rows = source.select(*selected)
    for k in keys:
        rows = rows.where(F.col(k).isNotNull())
    if bounds is None:
        rows = rows.where(F.lit(False))
    else:
        low, high = bounds
        rows = rows.where(F.col(FEATURE_TS) <= F.lit(high))
        if group.ttl is not None:
            rows = rows.where(F.col(FEATURE_TS) >= F.lit(low - group.ttl))
    schema = _output_schema(rows, inner)
    arrow_columns = to_arrow_schema(StructType(schema.fields[1:]))
    created = bool(group.created_timestamp_column)  # Feast's "no column" is an empty string
    kernel = partial(join_one_key, ttl=group.ttl, created=created, columns=arrow_columns, lag=lag)
    joined = entity.select(ROW_ID, ENTITY_TS, *keys).groupBy(*keys).cogroup(rows.groupBy(*keys))
    out = joined.applyInArrow(kernel, schema=schema)
    by_source = dict(zip(columns, inner, strict=True))
    return out.select(ROW_ID, *(F.col(by_source[f.source]).alias(f.output) for f in group.features))


def _output_schema(rows: DataFrame, inner: list[str]):
    from pyspark.sql.types import LongType, StructField, StructType

    fields = {f.name: f for f in rows.schema.fields}
    return StructType([StructField(ROW_ID, LongType()), *(fields[c] for c in inner)])
