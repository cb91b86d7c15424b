"""Every version a bar or feature row had, with the time it became known: a table holds the newest version of
each row, and its history table every version a write replaced or removed.

The pattern is SQL:2011's system-versioned table (current rows + a history table): readers that want the
latest knowledge read the table as before (same rows, same plans, same numbers); a row's
``created_timestamp`` is when its version became known, and a history row also carries
``superseded_timestamp``, when the next version (or its removal) became known. Nothing in a history table is
ever updated or deleted. As known at T, a key's version is the table's row if it was created at or before T,
else the history row with ``created_timestamp <= T < superseded_timestamp``: the versions of one key cover
disjoint intervals of knowledge time, so at most one answers.

A dataset build reads "as known at" a time through :func:`knowing`; every reader of the build's path asks
:func:`relation` for the table to read, so a build without a knowledge time runs the queries it always ran.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

HISTORY_SUFFIX = "_history"
SUPERSEDED = "superseded_timestamp"
_KNOWN_AT: ContextVar[datetime | None] = ContextVar("known_at", default=None)


def history_table(table: str) -> str:
    """``market_data.ohlcv_daily`` -> ``market_data.ohlcv_daily_history``."""
    return table + HISTORY_SUFFIX


def history_ddl(table: str, columns: str) -> str:
    """The history table of ``table`` (``columns``: its column definitions, created_timestamp among them): every
    replaced version once, keyed by the key and the time it became known."""
    return f"""
CREATE TABLE IF NOT EXISTS {history_table(table)} ({columns},
    {SUPERSEDED} timestamptz NOT NULL,
    CHECK ({SUPERSEDED} >= created_timestamp),
    PRIMARY KEY (symbol, event_timestamp, created_timestamp)
);
"""


# The knowledge time of a version replacing the row ``t``: now(), the writing transaction's start, unless the row
# was written by a transaction that started later but committed first (two writers waiting on one lock start in
# one order and write in the other): a version is never known before the one it replaces.
REPLACED_AT = "GREATEST(now(), t.created_timestamp)"


def archive_sql(table: str, columns: Sequence[str], joined: str, where: str, replaced_at: str = REPLACED_AT) -> str:
    """An INSERT copying the rows of ``table`` (aliased ``t``) that a write is about to replace or delete into its
    history, superseded at ``replaced_at`` (SQL; default now()): ``joined`` is the FROM clause's other relations,
    ``where`` selects the rows."""
    listed = ", ".join(columns)
    return (
        f"INSERT INTO {history_table(table)} ({listed}, created_timestamp, {SUPERSEDED}) "
        f"SELECT {', '.join(f't.{c}' for c in columns)}, t.created_timestamp, {replaced_at} "
        f"FROM {table} t{', ' + joined if joined else ''} WHERE {where}"
    )


def versions_sql(current: str, history: str | None, columns: Sequence[str], at: str, union: str = "UNION ALL") -> str:
    """The rule "as known at ``at``" in SQL that PostgreSQL and Spark both run: a parenthesised SELECT of
    ``columns`` from the ``current`` relation's rows created by then and the ``history`` relation's versions
    still current then (``history`` None: none kept yet). ``at`` is a timestamp expression of the dialect;
    ``union`` "UNION" also drops identical versions (a lake may hold one twice, see
    :mod:`training.engines.spark.lake_versions`)."""
    listed = ", ".join(columns)
    now_current = f"SELECT {listed} FROM {current} WHERE created_timestamp <= {at}"
    if history is None:
        return f"({now_current})"
    earlier = f"SELECT {listed} FROM {history} WHERE created_timestamp <= {at} AND {SUPERSEDED} > {at}"
    return f"({now_current} {union} {earlier})"


def known_at_relation(table: str, columns: Sequence[str], known_at: datetime, history: bool = True) -> str:
    """``table`` as known at ``known_at``: a parenthesised SELECT of ``columns`` (created_timestamp included
    when listed) ready to stand where the table's name stood. ``history`` False: the history table does not
    exist yet (a database from before versioning), so the current rows are all there is."""
    from psycopg import sql

    at = sql.Literal(known_at).as_string()
    return versions_sql(table, history_table(table) if history else None, columns, at)


def every_version_sql(
    current: str,
    history: str | None,
    columns: Sequence[str],
    at: str | None,
    no_time: str,
    union: str = "UNION ALL",
) -> str:
    """Every version of ``current``'s rows with ``superseded_timestamp`` (NULL: the current one), as a
    parenthesised SELECT in the SQL PostgreSQL and Spark both run: what a join by decision time reads (each
    row then takes the version known at its own time). ``at`` (a timestamp expression of the dialect): only what
    was known then: versions created after it are left out, and a supersession after it is not known yet
    (NULL). ``history`` None: none kept yet, current rows only. ``no_time``: the dialect's typed NULL timestamp;
    ``union`` as in :func:`versions_sql`."""
    listed = ", ".join(columns)
    now_current = f"SELECT {listed}, {no_time} AS {SUPERSEDED} FROM {current}"
    if at is not None:
        now_current += f" WHERE created_timestamp <= {at}"
    if history is None:
        return f"({now_current})"
    ended = f"CASE WHEN {SUPERSEDED} <= {at} THEN {SUPERSEDED} END" if at is not None else SUPERSEDED
    earlier = f"SELECT {listed}, {ended} AS {SUPERSEDED} FROM {history}"
    if at is not None:
        earlier += f" WHERE created_timestamp <= {at}"
    return f"({now_current} {union} {earlier})"


def every_version_relation(
    table: str, columns: Sequence[str], known_at: datetime | None = None, history: bool = True
) -> str:
    """:func:`every_version_sql` of ``table`` and its history table on PostgreSQL (``history`` False: no history
    table yet, current rows only)."""
    from psycopg import sql

    at = sql.Literal(known_at).as_string() if known_at is not None else None
    kept = history_table(table) if history else None
    return every_version_sql(table, kept, columns, at, "NULL::timestamptz")


@contextmanager
def knowing(known_at: datetime | None) -> Iterator[None]:
    """Within the block, :func:`relation` reads the tables as known at ``known_at`` (None: latest knowledge)."""
    if known_at is not None and known_at.tzinfo is None:
        raise ValueError("a knowledge time must be tz-aware")
    token = _KNOWN_AT.set(known_at)
    try:
        yield
    finally:
        _KNOWN_AT.reset(token)


def known_at() -> datetime | None:
    """The knowledge time of the enclosing :func:`knowing` block (None: latest knowledge)."""
    return _KNOWN_AT.get()


def relation(table: str, columns: Sequence[str], conn: psycopg.Connection | None = None) -> str:
    """What to read for ``table`` (callers give it an alias): its name, or within :func:`knowing` its rows as
    known then (``conn`` tells whether the history table exists; without one it is assumed to)."""
    at = known_at()
    if at is None:
        return table
    exists = conn is None or has_history(conn, table)
    return known_at_relation(table, columns, at, history=exists)


def has_history(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (history_table(table),)).fetchone()[0]


def database_now(conn: psycopg.Connection) -> datetime:
    """The server's clock, tz-aware UTC: the knowledge time a build records (writers stamp with the same clock)."""
    return conn.execute("SELECT statement_timestamp()").fetchone()[0].astimezone(UTC)
