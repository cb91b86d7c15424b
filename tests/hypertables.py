"""What tests read of a table that may be a TimescaleDB hypertable: row counters and a settled compression state.

On a hypertable, rows live in its chunks (inheritance children), so the parent's own counters in
pg_stat_user_tables stay at zero; and the compression policy may compress chunks at any moment after the
write that created it, which changes the rows' physical versions. On plain PostgreSQL both reduce to the table.
"""

from __future__ import annotations

import time

import psycopg

# The chunks of a hypertable, and the compressed chunks its compressed rows live in.
_CHUNKS = """
SELECT inhrelid::regclass::text, true FROM pg_inherits WHERE inhparent = %(table)s::regclass
UNION ALL
SELECT format('%%I.%%I', z.schema_name, z.table_name), false
FROM _timescaledb_catalog.chunk c JOIN _timescaledb_catalog.chunk z ON z.id = c.compressed_chunk_id
WHERE format('%%I.%%I', c.schema_name, c.table_name)::regclass IN
      (SELECT inhrelid FROM pg_inherits WHERE inhparent = %(table)s::regclass)
"""


def is_hypertable(conn: psycopg.Connection, table: str) -> bool:
    if conn.execute("SELECT to_regclass('timescaledb_information.hypertables') IS NULL").fetchone()[0]:
        return False
    schema, name = table.split(".")
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = %s AND hypertable_name = %s)",
        (schema, name),
    ).fetchone()[0]


def relations(conn: psycopg.Connection, table: str) -> list[tuple[str, bool]]:
    """(relation, holds rows as such): the table, then on a hypertable its chunks and compressed chunks."""
    found = [(table, True)]
    if is_hypertable(conn, table):
        found += [tuple(row) for row in conn.execute(_CHUNKS, {"table": table})]
    return found


def row_counters(conn: psycopg.Connection, table: str) -> tuple[int, int, int, int]:
    """(inserted, updated, deleted, scans) of ``table`` as its backends last flushed them: writes summed over
    the table and its chunks, scans also over the compressed chunks (reading those scans nothing else)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    found = relations(conn, table)
    rows = [name for name, holds_rows in found if holds_rows]
    return conn.execute(
        "SELECT coalesce(sum(n_tup_ins) FILTER (WHERE relid = ANY(%(rows)s::regclass[])), 0)::bigint, "
        "coalesce(sum(n_tup_upd) FILTER (WHERE relid = ANY(%(rows)s::regclass[])), 0)::bigint, "
        "coalesce(sum(n_tup_del) FILTER (WHERE relid = ANY(%(rows)s::regclass[])), 0)::bigint, "
        "coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0)::bigint "
        "FROM pg_stat_user_tables WHERE relid = ANY(%(all)s::regclass[])",
        {"rows": rows, "all": [name for name, _ in found]},
    ).fetchone()


def row_versions(conn: psycopg.Connection, table: str) -> list[tuple[str, str, str, str]]:
    """(relation, ctid, xmin, xmax) of every stored tuple: the rows, or on a hypertable the rows of its chunks
    and the batches of its compressed chunks (a compressed chunk's rows have no ctid of their own)."""
    from psycopg import sql

    versions = []
    for name, _ in relations(conn, table):
        query = sql.SQL("SELECT {}, ctid::text, xmin::text, xmax::text FROM ONLY {}").format(
            sql.Literal(name), sql.Identifier(*name.split("."))
        )
        versions += [tuple(row) for row in conn.execute(query)]
    return sorted(versions)


def settle_compression(conn: psycopg.Connection, table: str, timeout: float = 60.0) -> None:
    """Wait for the compression policy's background run on ``table`` to end, then run the policy here: every
    chunk due is compressed when this returns, so nothing changes the rows' versions behind a test's back."""
    if not is_hypertable(conn, table):
        return
    schema, name = table.split(".")
    job = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' "
        "AND hypertable_schema = %s AND hypertable_name = %s",
        (schema, name),
    ).fetchone()
    if job is None:
        return
    deadline = time.monotonic() + timeout
    while conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND query LIKE '%%policy_compression%%' AND pid <> pg_backend_pid())"
    ).fetchone()[0]:
        assert time.monotonic() < deadline, f"the compression policy of {table} is still running"
        time.sleep(0.2)
    conn.execute("CALL run_job(%s)", job)


def uncompressed(conn: psycopg.Connection, table: str) -> None:
    """``table`` without its compression policy and with every chunk decompressed: a test that locks rows itself
    (which compressed rows do not allow) meets no background job."""
    if not is_hypertable(conn, table):
        return
    settle_compression(conn, table)
    conn.execute("SELECT remove_compression_policy(%s, if_exists => true)", (table,))
    conn.execute("SELECT count(decompress_chunk(c, true)) FROM show_chunks(%s) c", (table,))
