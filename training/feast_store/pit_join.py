"""Running a planned retrieval: upload entity rows with COPY, sort-merge per group, stream binary results.

Only the row id, join keys and timestamp of each entity row go to the server; the other entity columns
never leave the client. Each group's result comes back as ``(row id, values, null masks)`` and is placed
by row id, so the output keeps the entity frame's row order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from training.feast_store import pit_sql
from training.feast_store.plan import KEY_PG_TYPES, JoinGroup, RetrievalPlan
from training.infra import pg_io
from training.infra.pg_io import PgType

if TYPE_CHECKING:
    import psycopg


def execute(conn: psycopg.Connection, plan: RetrievalPlan) -> pa.Table:
    """The entity rows with every requested feature column appended (no on-demand views yet)."""
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")  # naive timestamps are UTC, as everywhere in Feast
        conn.execute("SET LOCAL jit = off")  # compiling the join's expressions cost ~1 s and saved less
        if plan.work_mem:
            conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(plan.work_mem)))
        entity = plan.entity if isinstance(plan.entity, pa.Table) else read_entity_query(conn, plan)
        table = sql.Identifier(f"feast_asof_entity_{uuid.uuid4().hex}")
        keys = plan.join_keys()
        upload_entity(conn, table, entity, keys, plan.timestamp_column)
        bounds = timestamp_bounds(entity.column(plan.timestamp_column))
        columns: dict[str, pa.Array] = {}
        for group, types in zip(plan.groups, plan.group_types, strict=True):
            entity_keys = [pit_sql.key_column(keys.index(k)) for k in group.join_keys]
            query = pit_sql.join_query(group, table, entity_keys, types, bounds, plan.decision_lag).as_string(conn)
            columns.update(_group_columns(conn, query, group, types, entity.num_rows))
    for name in plan.outputs:
        entity = entity.append_column(name, columns[name])
    return entity


def upload_entity(conn: psycopg.Connection, table: sql.Identifier, entity: pa.Table, keys: list[str], ts: str) -> None:
    """A temporary table (dropped at commit) of row id, join keys and UTC microseconds, loaded with COPY."""
    names = [pit_sql.ROW_ID, *(pit_sql.key_column(i) for i in range(len(keys))), pit_sql.ENTITY_TS]
    types = ["int8", *(KEY_PG_TYPES[entity.schema.field(k).type] for k in keys), "int8"]
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            table,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in zip(names, types, strict=True)
            ),
        )
    )
    data = pa.Table.from_arrays(
        [
            pa.array(np.arange(entity.num_rows, dtype=np.int64)),
            *(entity.column(k) for k in keys),
            entity.column(ts).cast(pa.int64()),  # microseconds since 1970 in UTC (see pit_sql.ENTITY_TS)
        ],
        names=names,
    )
    pg_io.copy_in_csv(conn, table, names, data)
    conn.execute(sql.SQL("ANALYZE {}").format(table))  # row counts and key statistics for the planner


def read_entity_query(conn: psycopg.Connection, plan: RetrievalPlan) -> pa.Table:
    """Rows of an SQL entity query, typed as the stock store returns them; timestamps travel as integers."""
    names = [name for name, _ in plan.entity_types]
    select, csv_types = [], []
    for name, pg_type in plan.entity_types:
        column = sql.SQL("q.{}").format(sql.Identifier(name))
        if pa.types.is_timestamp(pg_type.arrow):
            select.append(sql.SQL("(extract(epoch FROM {}) * 1000000)::int8").format(column))
            csv_types.append(pa.int64())
        else:
            select.append(column)
            csv_types.append(pg_type.arrow)
    assert isinstance(plan.entity, str)
    query = sql.SQL("SELECT {} FROM ({}) AS q").format(sql.SQL(", ").join(select), sql.SQL(plan.entity))
    table = pg_io.read_csv_columns(pg_io.copy_out_bytes(conn, query.as_string(conn), "csv"), names, csv_types)
    arrays = [
        table.column(n).cast(pa.timestamp("us")) if pa.types.is_timestamp(t.arrow) else table.column(n)
        for n, t in plan.entity_types
    ]
    return pa.Table.from_arrays(arrays, names=names)


def timestamp_bounds(timestamps: pa.ChunkedArray) -> tuple[datetime, datetime] | None:
    """The earliest and latest of naive UTC timestamps, tz-aware; None when all are missing."""
    extremes = pc.min_max(timestamps)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if low is None:
        return None
    return low.replace(tzinfo=UTC), high.replace(tzinfo=UTC)


def _group_columns(
    conn: psycopg.Connection, query: str, group: JoinGroup, types: list[PgType], n_rows: int
) -> dict[str, pa.Array]:
    """Run one group's join and return its output columns in entity row order."""
    n_masks = -(-len(types) // pg_io.MASK_BITS)
    formats = [">i8", *(t.binary for t in types), *([">i8"] * n_masks)]
    fields = pg_io.binary_records(pg_io.copy_out_bytes(conn, query, "binary"), formats)  # type: ignore[arg-type]
    rows: np.ndarray | None = fields[0].astype(np.int64)
    if len(rows) != n_rows:
        raise RuntimeError(f"as-of join returned {len(rows)} rows for {n_rows} entity rows")
    if np.array_equal(rows, np.arange(n_rows)):
        rows = None  # already in entity order (an entity frame sorted by key and time): nothing to move
    elif not (np.bincount(rows, minlength=n_rows) == 1).all():
        raise RuntimeError("as-of join returned an entity row twice")
    masks = [_placed(m, rows, np.dtype(np.int64)) for m in fields[1 + len(types) :]]
    by_source: dict[str, pa.Array] = {}
    for i, (column, pg_type) in enumerate(zip(group.source_columns, types, strict=True)):
        values = _placed(fields[1 + i], rows, fields[1 + i].dtype.newbyteorder("="))
        null = (masks[i // pg_io.MASK_BITS] >> (i % pg_io.MASK_BITS)) & 1 == 1
        by_source[column] = pg_io.to_arrow_array(values, pg_type, null)
    return {f.output: by_source[f.source] for f in group.features}


def _placed(values: np.ndarray, rows: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """``values`` rearranged so that element ``rows[i]`` holds ``values[i]``, in native byte order."""
    if rows is None:
        return values.astype(dtype)
    out = np.empty(len(values), dtype=dtype)
    out[rows] = values
    return out
