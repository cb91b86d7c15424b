"""PostgreSQL access: connections from :mod:`training.infra.settings`, bulk COPY in and out, TimescaleDB detection."""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from training.errors import ServiceUnavailable
from training.infra import settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    import psycopg

log = logging.getLogger(__name__)
T = TypeVar("T")


def connect(dbname: str | None = None, autocommit: bool = False) -> psycopg.Connection:
    """A connection to the configured PostgreSQL, or a one-line error naming the setting to fix.

    A database whose TimescaleDB extension the server does not load is refused here, before any statement
    can read its hypertables as empty or end the connection with FATAL.
    """
    import psycopg

    pg = settings.postgres()
    try:
        conn = psycopg.connect(pg.conninfo(dbname), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise settings.postgres_unreachable(pg, exc) from None
    return usable(conn)


@contextmanager
def transaction() -> Iterator[psycopg.Connection]:
    """One transaction: committed when the block ends, rolled back (nothing written) when it raises."""
    conn = connect()
    try:
        with conn.transaction():
            yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class TimescaleFacts:
    """What the catalog says about TimescaleDB on this server, for this role and database."""

    offered: bool  # pg_available_extensions lists it (its files are installed)
    created: bool  # pg_extension has it in this database
    preloaded: bool | None  # its loader is in shared_preload_libraries (None: this role cannot tell)
    may_create: bool  # superuser, or a trusted extension and CREATE on this database
    role: str = ""
    database: str = ""


NOT_OFFERED = "the server does not offer the timescaledb extension: plain tables"


@dataclass(frozen=True)
class TimescaleDecision:
    use: bool
    reason: str  # why not, or what is used: one line for the log
    refused: bool = False  # the database cannot be used at all; ``reason`` names the fix


def not_loaded(database: str) -> str:
    return (
        f"the timescaledb extension exists in database {database} but the server does not preload it, so its "
        'hypertables can be neither written (FATAL: extension "timescaledb" must be preloaded) nor read (compressed '
        "rows would be missed): set shared_preload_libraries = 'timescaledb' in postgresql.conf and restart "
        "PostgreSQL, or DROP EXTENSION timescaledb there if none of its tables is a hypertable"
    )


def decide_timescaledb(facts: TimescaleFacts) -> TimescaleDecision:
    """Hypertables only when TimescaleDB is loaded and usable: an unloaded one kills the connection (FATAL).

    A database that already has the extension but runs without its library is refused, not used with plain
    tables: every DDL statement there ends the connection, and reads of a hypertable miss its compressed rows.
    """
    if not facts.offered and not facts.created:
        return TimescaleDecision(False, NOT_OFFERED)
    if facts.created and facts.preloaded is False:
        return TimescaleDecision(False, not_loaded(facts.database), refused=True)
    if facts.preloaded is False:
        return TimescaleDecision(
            False,
            "timescaledb is installed but not in shared_preload_libraries (CREATE EXTENSION would fail with "
            "FATAL): plain tables; add it there and restart PostgreSQL to get hypertables",
        )
    if facts.created:
        return TimescaleDecision(True, "timescaledb is loaded and created in this database: hypertables")
    if facts.preloaded is None:
        return TimescaleDecision(
            False,
            f"role {facts.role} cannot see shared_preload_libraries, so whether timescaledb is loaded is unknown: "
            "plain tables; a superuser can run CREATE EXTENSION timescaledb to get hypertables",
        )
    if not facts.may_create:
        return TimescaleDecision(
            False,
            f"timescaledb is loaded but role {facts.role} may not create the extension: plain tables; a superuser "
            "can run CREATE EXTENSION timescaledb in this database to get hypertables",
        )
    return TimescaleDecision(True, "timescaledb is loaded and may be created: hypertables")


# The loader defines timescaledb.max_background_workers (a postmaster setting) only when it is preloaded, and
# any role sees it; shared_preload_libraries itself is visible to superusers and pg_read_all_settings only.
_TIMESCALE_FACTS = """
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
       (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'),
       EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.max_background_workers' AND vartype = 'integer'),
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
       coalesce((SELECT trusted FROM pg_available_extension_versions v JOIN pg_available_extensions a
                 ON a.name = v.name AND a.default_version = v.version WHERE v.name = 'timescaledb'), false)
           AND has_database_privilege(current_database(), 'CREATE'),
       current_user, current_database()
"""


def timescale_facts(conn: psycopg.Connection) -> TimescaleFacts:
    """Catalog reads only: safe on a database whose extension the server does not load."""
    offered, created, libraries, loader_settings, superuser, trusted_create, role, database = conn.execute(
        _TIMESCALE_FACTS
    ).fetchone()
    if libraries is not None:
        preloaded: bool | None = "timescaledb" in [name.strip().strip('"') for name in libraries.split(",")]
    elif loader_settings:
        preloaded = True
    else:  # a created extension whose loader defines no setting is not loaded; otherwise this role cannot tell
        preloaded = False if created else None
    return TimescaleFacts(offered, created, preloaded, bool(superuser) or trusted_create, role, database)


_loaded_checked: set[tuple[str, str, str]] = set()  # (host, port, database) found usable by this process


def usable(conn: psycopg.Connection) -> psycopg.Connection:
    """``conn``, or ServiceUnavailable naming the fix (``conn`` closed) when the database has TimescaleDB but the
    server does not load it. What every connection of the project passes through, the Feast store's included."""
    try:
        refuse_unloaded_timescaledb(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def refuse_unloaded_timescaledb(conn: psycopg.Connection) -> None:
    """Raise ServiceUnavailable naming the fix when the database has TimescaleDB but the server does not load it.

    Checked once per process and database; the connection is left idle (no transaction open).
    """
    info = conn.info
    key = (info.host, str(info.port), info.dbname)
    if key in _loaded_checked:
        return
    decision = decide_timescaledb(timescale_facts(conn))
    if not conn.autocommit:
        conn.rollback()
    if decision.refused:
        raise ServiceUnavailable(decision.reason)
    _loaded_checked.add(key)


_told: set[str] = set()


def timescaledb_available(conn: psycopg.Connection) -> bool:
    """Whether to make hypertables here; the reason is logged once per process (a WARNING when unusable)."""
    facts = timescale_facts(conn)
    decision = decide_timescaledb(facts)
    if decision.refused:
        raise ServiceUnavailable(decision.reason)
    if decision.reason not in _told:
        _told.add(decision.reason)
        level = logging.DEBUG if decision.reason == NOT_OFFERED else logging.INFO if decision.use else logging.WARNING
        log.log(level, "TimescaleDB: %s", decision.reason)
    return decision.use


# A write that meets another session's lock in a cycle (TimescaleDB's compression policy takes an exclusive lock
# on a chunk, then upgrades it to truncate the chunk) is cancelled by PostgreSQL's deadlock detector; so is
# one that waits longer than a lock_timeout the role sets. Either rolls the attempt back whole, so it is rerun.
LOCK_ATTEMPTS = 5
LOCK_PAUSE_SECONDS = 0.5  # before the second attempt; doubled before each next one (7.5 s in all, plus jitter)


def retry_lock_conflicts(attempt: Callable[[], T], what: str) -> T:
    """``attempt()`` (a whole transaction, or a savepoint after which nothing locks the tables it writes) run
    again after a deadlock or a lock timeout, with exponential backoff; after LOCK_ATTEMPTS, one line.
    """
    import psycopg

    number = 1
    while True:
        try:
            return attempt()
        except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable) as exc:
            cause = str(exc).splitlines()[0]
            if number >= LOCK_ATTEMPTS:
                raise ServiceUnavailable(
                    f"{what} met a lock held by another session (TimescaleDB's compression policy or another writer) "
                    f"on each of {number} attempt(s), last: {cause}: nothing was written; retry is safe"
                ) from None
            pause = LOCK_PAUSE_SECONDS * 2 ** (number - 1) * random.uniform(1.0, 1.5)
            number += 1
            log.warning("%s: %s; attempt %d of %d in %.1f s", what, cause, number, LOCK_ATTEMPTS, pause)
            time.sleep(pause)


def qualified(table: str) -> psycopg.sql.Composed:
    """``schema.table`` as a safely quoted identifier."""
    from psycopg import sql

    return sql.Identifier(*table.split("."))


# Distinct symbols by a skip scan of the (symbol, ...) primary key: one index probe per symbol, where SELECT
# DISTINCT reads every row (tens of millions in a universe).
_SYMBOLS = """
WITH RECURSIVE walk(symbol) AS (
    (SELECT symbol FROM {table} ORDER BY symbol LIMIT 1)
    UNION ALL
    SELECT (SELECT t.symbol FROM {table} t WHERE t.symbol > walk.symbol ORDER BY t.symbol LIMIT 1)
    FROM walk WHERE walk.symbol IS NOT NULL
)
SELECT symbol FROM walk WHERE symbol IS NOT NULL ORDER BY symbol
"""


def table_symbols(conn: psycopg.Connection, table: str) -> list[str]:
    """The sorted distinct symbols of ``table`` (keyed by symbol first); none when the table does not exist."""
    from psycopg import sql

    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return []
    return [row[0] for row in conn.execute(sql.SQL(_SYMBOLS).format(table=qualified(table)))]


def copy_in(conn: psycopg.Connection, table: str, frame: pd.DataFrame) -> int:
    """Bulk-load ``frame`` into ``table`` with COPY; NaN/None become NULL, floats keep every digit.

    Arrow's C++ CSV writer formats rows ~20x faster than ``DataFrame.to_csv``, with round-trip float text.
    """
    import pyarrow as pa

    from training.infra.pg_io import copy_in_csv

    copy_in_csv(conn, qualified(table), list(frame.columns), pa.Table.from_pandas(frame, preserve_index=False))
    return len(frame)


def copy_out(
    conn: psycopg.Connection,
    query: psycopg.sql.Composable | str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    parse_dates: Sequence[str] = (),
) -> pd.DataFrame:
    """Run ``query`` and stream its rows out with COPY (CSV) into Arrow's C++ parser: far faster than fetchall.

    ``symbol`` stays text even when a ticker looks like a number; ``parse_dates`` become tz-aware UTC.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    from psycopg import sql

    if isinstance(query, str):
        query = sql.SQL(query)  # type: ignore[arg-type]
    with conn.cursor() as cur:
        bound = query.as_string(conn) if params is None else _bind(cur, query, params)
        buffer = io.BytesIO()
        with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER true)").format(sql.SQL(bound))) as copy:
            for block in copy:
                buffer.write(block)
    options = pa_csv.ConvertOptions(column_types={"symbol": pa.string()}, strings_can_be_null=False)
    frame = pa_csv.read_csv(pa.py_buffer(buffer.getbuffer()), convert_options=options).to_pandas()
    for column in parse_dates:
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
    return frame


def _bind(cur: psycopg.Cursor, query: psycopg.sql.Composable, params: Sequence[Any] | Mapping[str, Any]) -> str:
    """Client-side binding for COPY, which takes no server-side parameters; psycopg quotes every value."""
    from psycopg import ClientCursor

    client = ClientCursor(cur.connection)
    return client.mogrify(query, params)
