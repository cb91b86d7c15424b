"""Bulk transfer between Arrow and PostgreSQL: COPY in as CSV, COPY out as binary or CSV.

Row-by-row transfer (``executemany``, ``fetchall``) is what makes Feast's stock store slow on big entity
frames. COPY moves the same rows as one stream. Results come out in PostgreSQL's binary format because
the server then skips float-to-text formatting (its most expensive step here) and, with every column fixed
width and NULLs replaced by a bitmask column, the stream is a packed record array numpy reads in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql

if TYPE_CHECKING:
    import psycopg

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 (PostgreSQL's epoch) in microseconds since 1970-01-01
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
MASK_BITS = 63  # nullable columns per int8 mask column (bit 63 would be the sign)


@dataclass(frozen=True)
class PgType:
    """A PostgreSQL type we can move in bulk, with the Arrow type Feast's stock store returns for it."""

    name: str
    arrow: pa.DataType
    binary: str | None  # numpy format of its fixed-width binary COPY form; None: variable width
    default: str | None = None  # literal that stands in for NULL in binary output (the mask says which)


# Keys are type OIDs. Arrow types follow feast.type_map.pg_type_code_to_arrow, which is what the stock
# store applies to every result column (smallint becomes int32, timestamps lose their zone, ...).
PG_TYPES: dict[int, PgType] = {
    16: PgType("boolean", pa.bool_(), "?", "false"),
    20: PgType("bigint", pa.int64(), ">i8", "0"),
    21: PgType("smallint", pa.int32(), ">i2", "0"),
    23: PgType("integer", pa.int32(), ">i4", "0"),
    700: PgType("real", pa.float32(), ">f4", "0"),
    701: PgType("double precision", pa.float64(), ">f8", "0"),
    1114: PgType("timestamp", pa.timestamp("us"), ">i8", "'epoch'"),
    1184: PgType("timestamptz", pa.timestamp("us"), ">i8", "'epoch'"),
    25: PgType("text", pa.string(), None),
    1042: PgType("character", pa.string(), None),
    1043: PgType("character varying", pa.string(), None),
}


def copy_in_csv(conn: psycopg.Connection, table: sql.Composable, columns: list[str], data: pa.Table) -> None:
    """COPY ``data`` into ``table``: Arrow's C++ CSV writer quotes strings and leaves NULLs unquoted-empty."""
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(data, sink, pa_csv.WriteOptions(include_header=False))
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(memoryview(sink.getvalue()))


def copy_out_bytes(conn: psycopg.Connection, query: str, fmt: str) -> memoryview:
    """Stream ``COPY (query) TO STDOUT`` into one buffer (``query`` is fully bound SQL text)."""
    import io

    options = "FORMAT binary" if fmt == "binary" else "FORMAT csv, HEADER false"
    buffer = io.BytesIO()
    with (
        conn.cursor() as cur,
        cur.copy(sql.SQL("COPY ({}) TO STDOUT ({})").format(sql.SQL(query), sql.SQL(options))) as copy,
    ):  # type: ignore[arg-type]
        for block in copy:
            buffer.write(block)
    return buffer.getbuffer()


def binary_records(data: memoryview, formats: list[str]) -> list[np.ndarray]:
    """Columns of a binary COPY stream whose fields are all fixed width and non-NULL (views, big-endian)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if bytes(raw[: len(BINARY_SIGNATURE)]) != BINARY_SIGNATURE:
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension = int.from_bytes(bytes(raw[15:19]), "big")
    start, end = 19 + extension, len(raw) - 2
    if bytes(raw[end:]) != b"\xff\xff":
        raise ValueError("binary COPY stream without its trailer")
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, fmt in enumerate(formats):
        fields += [(f"len{i}", ">i4"), (f"val{i}", fmt)]
    record = np.dtype(fields)  # packed: no alignment padding, exactly the wire layout
    body = raw[start:end]
    if len(body) % record.itemsize:
        raise ValueError("binary COPY rows are not fixed width (a NULL or a variable-width column slipped in)")
    rows = body.view(record)
    widths = [np.dtype(fmt).itemsize for fmt in formats]
    if len(rows) and (
        (rows["count"] != len(formats)).any() or any((rows[f"len{i}"] != w).any() for i, w in enumerate(widths))
    ):
        raise ValueError("unexpected field count or width in binary COPY stream")
    return [rows[f"val{i}"] for i in range(len(formats))]


def to_arrow_array(values: np.ndarray, pg_type: PgType, null: np.ndarray | None) -> pa.Array:
    """A native-order Arrow array from decoded binary values (timestamps counted from PostgreSQL's epoch)."""
    native = values.astype(values.dtype.newbyteorder("="), copy=False)
    if pa.types.is_timestamp(pg_type.arrow):
        native = (native.astype(np.int64, copy=False) + PG_EPOCH_US).view("datetime64[us]")
    elif native.dtype != pg_type.arrow.to_pandas_dtype():
        native = native.astype(pg_type.arrow.to_pandas_dtype())
    return pa.array(native, type=pg_type.arrow, mask=null)


def read_csv_columns(data: memoryview, names: list[str], types: list[pa.DataType]) -> pa.Table:
    """Parse headerless CSV from PostgreSQL: NULL is an unquoted empty field, ``""`` an empty string."""
    reader = pa_csv.read_csv(
        pa.py_buffer(data),
        read_options=pa_csv.ReadOptions(column_names=names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict(zip(names, types, strict=True)),
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    return reader
